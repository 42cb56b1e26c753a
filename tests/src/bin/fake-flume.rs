//! `fake-flume`: a Flume agent as its HTTP monitoring (`-Dflume.monitoring.type=http`) shows it,
//! scriptable by tests. The model is `zkwatchdog_tests::fakes::flume_model`.
//!
//! ```text
//! fake-flume --listen ADDR                 e.g. 127.0.0.1:41414 (required)
//!   [--channel NAME:CAPACITY]...           default c1:10000
//!   [--sink NAME[:CHANNEL]]...             default k1 (draining the first channel)
//!   [--source NAME]...                     default r1
//!   [--start-delay MS]                     wait before binding (a slow-starting agent)
//!   [--omit-field FIELD]...                leave FIELD out of every component
//!   [--extra-component TYPE.NAME]...       add a component of an unknown type, e.g. OTHER.x
//! ```
//!
//! `GET /metrics` answers Flume's JSON (every value a string) and advances the flow one step.
//! Controls (POST, parameters in the query or a JSON object body; answered even while hung):
//!
//! ```text
//! /control/channel/{name}?size=N                 set a channel's size
//! /control/sink/{name}/stall[?failures_per_step=N]  stall a sink (counters flat)
//! /control/sink/{name}/resume                    resume it
//! /control/sink/{name}/connection-failures?n=N   add N to its ConnectionFailedCount
//! /control/omit-field?field=F[&on=false]         drop (or restore) a field everywhere
//! /control/extra-component?name=TYPE.NAME[&on=false]  add (or remove) an unknown component
//! /control/malformed?on=true|false               /metrics answers non-JSON
//! /control/hang, /control/unhang, /control/exit?code=N, /control/crash
//! GET /control/state                             the FlumeState as JSON
//! ```
//!
//! Bad usage exits with code 2; a failed bind or serve with code 1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use zkwatchdog_tests::fakes::flume_model::FlumeState;
use zkwatchdog_tests::fakes::server::{self, ok, usage, BadRequest, Hang, Params};

const PROG: &str = "fake-flume";

#[derive(Debug)]
struct Opts {
    listen: SocketAddr,
    channels: Vec<(String, u64)>,
    sinks: Vec<(String, Option<String>)>,
    sources: Vec<String>,
    start_delay: Duration,
    omit_fields: Vec<String>,
    extra_components: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Opts {
    let mut listen = None;
    let (mut channels, mut sinks, mut sources) = (Vec::new(), Vec::new(), Vec::new());
    let (mut omit_fields, mut extra_components) = (Vec::new(), Vec::new());
    let mut start_delay = Duration::ZERO;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(PROG, &format!("{flag} needs a value")));
        match flag.as_str() {
            "--listen" => {
                let addr = value
                    .parse()
                    .unwrap_or_else(|_| usage(PROG, "bad --listen"));
                listen = Some(addr);
            }
            "--channel" => {
                let (name, cap) = value
                    .split_once(':')
                    .and_then(|(n, c)| Some((n.to_owned(), c.parse().ok()?)))
                    .unwrap_or_else(|| usage(PROG, "--channel needs NAME:CAPACITY"));
                channels.push((name, cap));
            }
            "--sink" => sinks.push(match value.split_once(':') {
                Some((name, channel)) => (name.to_owned(), Some(channel.to_owned())),
                None => (value, None),
            }),
            "--source" => sources.push(value),
            "--start-delay" => {
                let ms = value
                    .parse()
                    .unwrap_or_else(|_| usage(PROG, "--start-delay needs milliseconds"));
                start_delay = Duration::from_millis(ms);
            }
            "--omit-field" => omit_fields.push(value),
            "--extra-component" => extra_components.push(value),
            other => usage(PROG, &format!("unknown argument {other:?}")),
        }
    }
    if channels.is_empty() {
        channels.push(("c1".to_owned(), 10_000));
    }
    if sinks.is_empty() {
        sinks.push(("k1".to_owned(), None));
    }
    if sources.is_empty() {
        sources.push("r1".to_owned());
    }
    Opts {
        listen: listen.unwrap_or_else(|| usage(PROG, "--listen is required")),
        channels,
        sinks,
        sources,
        start_delay,
        omit_fields,
        extra_components,
    }
}

#[derive(Debug, Clone)]
struct App {
    agent: Arc<Mutex<FlumeState>>,
    hang: Hang,
}

impl App {
    fn agent(&self) -> MutexGuard<'_, FlumeState> {
        self.agent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn router(app: App) -> Router {
    let hang = app.hang.clone();
    let routes = Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/control/state", get(state))
        .route("/control/channel/{name}", post(set_channel))
        .route("/control/sink/{name}/{action}", post(sink_control))
        .route("/control/omit-field", post(omit_field))
        .route("/control/extra-component", post(extra_component))
        .route("/control/malformed", post(malformed))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .with_state(app)
        .merge(server::common_controls(hang.clone()));
    server::hold_while_hung(routes, hang)
}

/// What Flume's monitoring server answers at `/`.
async fn index() -> Response {
    let html = "For Flume metrics please click <a href = \"./metrics\"> here</a>.";
    ([(header::CONTENT_TYPE, "text/html;charset=utf-8")], html).into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    let mut agent = app.agent();
    agent.step();
    if agent.malformed {
        let html = "<html><body><h2>HTTP ERROR 500</h2></body></html>";
        return ([(header::CONTENT_TYPE, "text/html;charset=utf-8")], html).into_response();
    }
    let body = serde_json::to_string(&agent.metrics()).unwrap_or_else(|_| "{}".to_owned());
    (
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body,
    )
        .into_response()
}

async fn state(State(app): State<App>) -> Response {
    let mut snapshot = app.agent().clone();
    snapshot.hung = app.hang.is_on();
    Json(snapshot).into_response()
}

async fn set_channel(
    State(app): State<App>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let size = Params::new(query, &body)?.require("size")?;
    app.agent().set_channel_size(&name, size)?;
    Ok(ok())
}

async fn sink_control(
    State(app): State<App>,
    Path((name, action)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let params = Params::new(query, &body)?;
    let mut agent = app.agent();
    match action.as_str() {
        "stall" => agent.stall_sink(&name, params.parse("failures_per_step")?.unwrap_or(0))?,
        "resume" => agent.resume_sink(&name)?,
        "connection-failures" => agent.add_connection_failures(&name, params.require("n")?)?,
        other => return Err(BadRequest(format!("unknown sink action {other:?}"))),
    }
    Ok(ok())
}

async fn omit_field(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let params = Params::new(query, &body)?;
    let field: String = params.require("field")?;
    let mut agent = app.agent();
    if params.parse("on")?.unwrap_or(true) {
        agent.omitted_fields.insert(field);
    } else {
        agent.omitted_fields.remove(&field);
    }
    Ok(ok())
}

async fn extra_component(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let params = Params::new(query, &body)?;
    let name: String = params.require("name")?;
    let mut agent = app.agent();
    if params.parse("on")?.unwrap_or(true) {
        agent.extra_components.insert(name);
    } else {
        agent.extra_components.remove(&name);
    }
    Ok(ok())
}

async fn malformed(
    State(app): State<App>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, BadRequest> {
    let on = Params::new(query, &body)?.parse("on")?.unwrap_or(true);
    app.agent().malformed = on;
    Ok(ok())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = parse(std::env::args().skip(1));
    let mut agent = FlumeState::new(&o.channels, &o.sinks, &o.sources, server::now_ms())
        .unwrap_or_else(|e| usage(PROG, &e));
    agent.omitted_fields.extend(o.omit_fields);
    agent.extra_components.extend(o.extra_components);
    let app = App {
        agent: Arc::new(Mutex::new(agent)),
        hang: Hang::default(),
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
