//! `fake-connect`: a Kafka Connect worker's REST API, scriptable by tests. The model is
//! `zkwatchdog_tests::fakes::connect_model`.
//!
//! ```text
//! fake-connect --listen ADDR                   e.g. 127.0.0.1:8083; also the worker_id (required)
//!   [--connector NAME[:TASKS[:sink|source]]]... default none; TASKS default 1, type sink
//!   [--start-delay MS]                         wait before binding (a slow-starting worker)
//!   [--restart-ms MS]                          how long a restart shows RESTARTING (default 300)
//!   [--no-expand]                              ignore ?expand= like a pre-2.3 worker
//! ```
//!
//! REST API: `GET /`, `GET /connectors[?expand=status]`, `GET /connectors/{name}/status`,
//! `GET /connectors/{name}/tasks/{id}/status`,
//! `POST /connectors/{name}/restart[?includeTasks=&onlyFailed=]`; errors as Connect's
//! `{"error_code": N, "message": "..."}`. Controls (POST, parameters in the query or a JSON object
//! body; answered even while hung; never logged):
//!
//! ```text
//! /control/connector/{name}/task/{id}/fail[?trace=T]     task FAILED (default Java trace)
//! /control/connector/{name}/task/{id}/state?state=S[&trace=T]
//! /control/connector/{name}/fail[?trace=T]               the connector itself FAILED
//! /control/connector/{name}/state?state=S[&trace=T]
//! /control/restart-conflicts?n=N                         next N restart calls answer 409
//! /control/restart-fails?on=true|false                   restarted units fail again
//! /control/hang, /control/unhang, /control/exit?code=N, /control/crash
//! GET /control/requests                                  every non-control request received
//! GET /control/state                                     the ConnectState as JSON
//! ```
//!
//! Bad usage exits with code 2; a failed bind or serve with code 1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use zkwatchdog_tests::fakes::connect_model::{
    ConnectorType, LoggedRequest, RestartOutcome, State as UnitState, Worker,
};
use zkwatchdog_tests::fakes::server::{self, ok, usage, BadRequest, Hang, Params};

const PROG: &str = "fake-connect";

#[derive(Debug)]
struct Opts {
    listen: SocketAddr,
    connectors: Vec<(String, u32, ConnectorType)>,
    start_delay: Duration,
    restart_delay: Duration,
    no_expand: bool,
}

fn parse_connector(value: &str) -> Option<(String, u32, ConnectorType)> {
    let mut parts = value.split(':');
    let name = parts.next().filter(|n| !n.is_empty())?.to_owned();
    let tasks = parts.next().map_or(Some(1), |t| t.parse().ok())?;
    let kind = match parts.next() {
        None | Some("sink") => ConnectorType::Sink,
        Some("source") => ConnectorType::Source,
        Some(_) => return None,
    };
    parts.next().is_none().then_some((name, tasks, kind))
}

fn parse(mut args: impl Iterator<Item = String>) -> Opts {
    let mut o = Opts {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        connectors: Vec::new(),
        start_delay: Duration::ZERO,
        restart_delay: Duration::from_millis(300),
        no_expand: false,
    };
    let mut listen = None;
    while let Some(flag) = args.next() {
        if flag == "--no-expand" {
            o.no_expand = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| usage(PROG, &format!("{flag} needs a value")));
        let ms = |what: &str| {
            value
                .parse()
                .map(Duration::from_millis)
                .unwrap_or_else(|_| usage(PROG, &format!("{what} needs milliseconds")))
        };
        match flag.as_str() {
            "--listen" => {
                listen = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| usage(PROG, "bad --listen")),
                )
            }
            "--connector" => o
                .connectors
                .push(parse_connector(&value).unwrap_or_else(|| {
                    usage(PROG, "--connector needs NAME[:TASKS[:sink|source]]")
                })),
            "--start-delay" => o.start_delay = ms("--start-delay"),
            "--restart-ms" => o.restart_delay = ms("--restart-ms"),
            other => usage(PROG, &format!("unknown argument {other:?}")),
        }
    }
    o.listen = listen.unwrap_or_else(|| usage(PROG, "--listen is required"));
    o
}

#[derive(Debug, Clone)]
struct App {
    worker: Arc<Mutex<Worker>>,
    requests: Arc<Mutex<Vec<LoggedRequest>>>,
    hang: Hang,
    no_expand: bool,
}

impl App {
    fn worker(&self) -> MutexGuard<'_, Worker> {
        self.worker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Connect's error body.
fn error(status: StatusCode, message: String) -> Response {
    let body = json!({ "error_code": status.as_u16(), "message": message });
    (status, Json(body)).into_response()
}

fn router(app: App) -> Router {
    let hang = app.hang.clone();
    let log = app.requests.clone();
    let routes = Router::new()
        .route("/", get(version))
        .route("/connectors", get(connectors))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks/{id}/status", get(task_status))
        .route("/connectors/{name}/restart", post(restart))
        .route("/control/state", get(state))
        .route("/control/requests", get(requests))
        .route(
            "/control/connector/{name}/{action}",
            post(connector_control),
        )
        .route(
            "/control/connector/{name}/task/{id}/{action}",
            post(task_control),
        )
        .route("/control/restart-conflicts", post(restart_conflicts))
        .route("/control/restart-fails", post(restart_fails))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "HTTP 404 Not Found".into()) })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP 405 Method Not Allowed".into(),
            )
        })
        .with_state(app)
        .merge(server::common_controls(hang.clone()));
    // The log layer is outside the hang gate: a held request is logged when it arrives.
    server::hold_while_hung(routes, hang).layer(middleware::from_fn(
        move |req: Request, next: Next| {
            let log = log.clone();
            async move {
                if !server::is_control(req.uri().path()) {
                    let entry = LoggedRequest {
                        method: req.method().to_string(),
                        path: req.uri().path().to_owned(),
                        query: req.uri().query().map(str::to_owned),
                    };
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
                }
                next.run(req).await
            }
        },
    ))
}

async fn version() -> Response {
    let body = json!({
        "version": "3.7.0",
        "commit": "2ae524ed625438c5",
        "kafka_cluster_id": "fake-kafka-cluster",
    });
    Json(body).into_response()
}

async fn connectors(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let mut worker = app.worker();
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap_or_default();
    let expand: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "expand")
        .map(|(_, v)| v.as_str())
        .collect();
    if app.no_expand || expand.is_empty() {
        return Json(worker.names()).into_response();
    }
    // Unknown expansions are ignored, as Connect does: each connector maps to an object holding
    // the expansions it knows.
    let now = Instant::now();
    let mut out = serde_json::Map::new();
    for name in worker.names() {
        let mut entry = serde_json::Map::new();
        if expand.contains(&"status") {
            if let Some(s) = worker.status(&name, now) {
                entry.insert("status".into(), json!(s));
            }
        }
        out.insert(name, entry.into());
    }
    Json(out).into_response()
}

async fn status(State(app): State<App>, Path(name): Path<String>) -> Response {
    match app.worker().status(&name, Instant::now()) {
        Some(s) => Json(s).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("No status found for connector {name}"),
        ),
    }
}

async fn task_status(State(app): State<App>, Path((name, id)): Path<(String, String)>) -> Response {
    let found = app.worker().status(&name, Instant::now()).and_then(|s| {
        let id: u32 = id.parse().ok()?;
        s.tasks.into_iter().find(|t| t.id == id)
    });
    match found {
        Some(t) => Json(t).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("No status found for task {name}-{id}"),
        ),
    }
}

/// JAX-RS reads a boolean query parameter as `Boolean.valueOf`: only "true" (any case) is true.
fn java_bool(pairs: &[(String, String)], key: &str) -> bool {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"))
}

async fn restart(
    State(app): State<App>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(&query.unwrap_or_default()).unwrap_or_default();
    let include_tasks = java_bool(&pairs, "includeTasks");
    let only_failed = java_bool(&pairs, "onlyFailed");
    let outcome = app
        .worker()
        .restart(&name, include_tasks, only_failed, Instant::now());
    match outcome {
        RestartOutcome::NotFound => {
            error(StatusCode::NOT_FOUND, format!("Unknown connector: {name}"))
        }
        RestartOutcome::Conflict => error(
            StatusCode::CONFLICT,
            "Cannot complete request momentarily due to stale configuration (typically caused \
             by a concurrent config change)"
                .into(),
        ),
        RestartOutcome::NoContent => StatusCode::NO_CONTENT.into_response(),
        RestartOutcome::Accepted(s) => (StatusCode::ACCEPTED, Json(s)).into_response(),
    }
}

async fn state(State(app): State<App>) -> Response {
    let hung = app.hang.is_on();
    Json(app.worker().snapshot(hung, Instant::now())).into_response()
}

async fn requests(State(app): State<App>) -> Response {
    let log = app.requests.lock().unwrap_or_else(|p| p.into_inner());
    Json(log.clone()).into_response()
}

/// The state and trace an action sets: `fail` is FAILED, `state` takes `?state=`.
fn target(action: &str, params: &Params) -> Result<(UnitState, Option<String>), BadRequest> {
    let state = match action {
        "fail" => UnitState::Failed,
        "state" => params.require::<UnitState>("state")?,
        other => return Err(BadRequest(format!("unknown action {other:?}"))),
    };
    Ok((state, params.get("trace").map(str::to_owned)))
}

async fn connector_control(
    State(app): State<App>,
    Path((name, action)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let (state, trace) = target(&action, &Params::new(query, &body)?)?;
    app.worker().set_connector(&name, state, trace)?;
    Ok(ok())
}

async fn task_control(
    State(app): State<App>,
    Path((name, id, action)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let id: u32 = id
        .parse()
        .map_err(|_| BadRequest(format!("bad task id {id:?}")))?;
    let (state, trace) = target(&action, &Params::new(query, &body)?)?;
    app.worker().set_task(&name, id, state, trace)?;
    Ok(ok())
}

async fn restart_conflicts(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let n = Params::new(query, &body)?.require("n")?;
    app.worker().queue_conflicts(n);
    Ok(ok())
}

async fn restart_fails(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let on = Params::new(query, &body)?.parse("on")?.unwrap_or(true);
    app.worker().set_restart_fails(on);
    Ok(ok())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = parse(std::env::args().skip(1));
    let worker = Worker::new(o.listen.to_string(), &o.connectors, o.restart_delay);
    let app = App {
        worker: Arc::new(Mutex::new(worker)),
        requests: Arc::default(),
        hang: Hang::default(),
        no_expand: o.no_expand,
    };
    let listener = server::listen(o.listen, o.start_delay)
        .await
        .unwrap_or_else(|e| {
            eprintln!("{PROG}: cannot listen on {}: {e}", o.listen);
            std::process::exit(1)
        });
    if let Err(e) = axum::serve(listener, router(app)).await {
        eprintln!("{PROG}: serving failed: {e}");
        std::process::exit(1);
    }
}
