//! What the fake agents' servers share: binding (after an optional start delay, with
//! SO_REUSEADDR), the hang gate, the common controls (`/control/hang`, `/control/unhang`,
//! `/control/exit`, `/control/crash`), parameters from a query or a JSON body, and bad-request
//! answers.
//!
//! Every path under `/control/` is answered even while the fake is hung.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

/// How long the fake waits after answering `/control/exit` or `/control/crash` before it goes,
/// so that the answer reaches the client.
pub const GOODBYE_DELAY: Duration = Duration::from_millis(100);

/// Whether `path` is one of the fake's control endpoints (never held, never logged).
pub fn is_control(path: &str) -> bool {
    path == "/control" || path.starts_with("/control/")
}

/// Waits `start_delay` (a slow-starting agent), then listens on `addr` with SO_REUSEADDR, so a
/// fake can be restarted on the port of one that just died.
pub async fn listen(addr: SocketAddr, start_delay: Duration) -> std::io::Result<TcpListener> {
    tokio::time::sleep(start_delay).await;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The hang switch: while on, non-control requests are accepted but not answered.
#[derive(Debug, Clone)]
pub struct Hang(watch::Sender<bool>);

impl Default for Hang {
    fn default() -> Self {
        Hang(watch::channel(false).0)
    }
}

impl Hang {
    pub fn set(&self, on: bool) {
        self.0.send_replace(on);
    }

    pub fn is_on(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the switch is off.
    pub async fn pass(&self) {
        let mut rx = self.0.subscribe();
        // Err only if the sender is gone, which it is not while `self` lives.
        let _ = rx.wait_for(|hung| !hung).await;
    }
}

/// `app` with non-control requests held while `hang` is on.
pub fn hold_while_hung(app: Router, hang: Hang) -> Router {
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        let hang = hang.clone();
        async move {
            if !is_control(req.uri().path()) {
                hang.pass().await;
            }
            next.run(req).await
        }
    }))
}

/// `POST /control/hang`, `/control/unhang`, `/control/exit?code=N` (default 0),
/// `/control/crash` (SIGKILL to itself); each answers `{"ok": true}` first.
pub fn common_controls(hang: Hang) -> Router {
    Router::new()
        .route("/control/hang", post(hang_on))
        .route("/control/unhang", post(hang_off))
        .route("/control/exit", post(exit))
        .route("/control/crash", post(crash))
        .with_state(hang)
}

async fn hang_on(State(hang): State<Hang>) -> Response {
    hang.set(true);
    ok()
}

async fn hang_off(State(hang): State<Hang>) -> Response {
    hang.set(false);
    ok()
}

async fn exit(RawQuery(query): RawQuery, body: Bytes) -> Result<Response, BadRequest> {
    let code = Params::new(query, &body)?.parse("code")?.unwrap_or(0i32);
    tokio::spawn(async move {
        tokio::time::sleep(GOODBYE_DELAY).await;
        std::process::exit(code);
    });
    Ok(ok())
}

async fn crash() -> Response {
    tokio::spawn(async {
        tokio::time::sleep(GOODBYE_DELAY).await;
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    });
    ok()
}

/// `{"ok": true}`.
pub fn ok() -> Response {
    Json(serde_json::json!({ "ok": true })).into_response()
}

/// A control call the fake cannot carry out: 400 `{"error": "..."}`.
#[derive(Debug)]
pub struct BadRequest(pub String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0 });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

impl From<String> for BadRequest {
    fn from(msg: String) -> Self {
        BadRequest(msg)
    }
}

/// A control call's parameters: the query's, then a JSON object body's (which win).
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn new(query: Option<String>, body: &[u8]) -> Result<Self, BadRequest> {
        let mut map = BTreeMap::new();
        if let Some(q) = query {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&q)
                .map_err(|e| BadRequest(format!("bad query string: {e}")))?;
            map.extend(pairs);
        }
        if !body.iter().all(u8::is_ascii_whitespace) {
            let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
                .map_err(|e| BadRequest(format!("the body is not a JSON object: {e}")))?;
            for (k, v) in obj {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(k, v);
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The parameter `key` parsed, `None` when absent.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, BadRequest> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| BadRequest(format!("bad value {v:?} for {key}")))
            })
            .transpose()
    }

    /// The parameter `key` parsed; absent is an error.
    pub fn require<T: FromStr>(&self, key: &str) -> Result<T, BadRequest> {
        self.parse(key)?
            .ok_or_else(|| BadRequest(format!("missing parameter {key}")))
    }
}

/// Prints a usage error naming `prog` and exits with code 2.
pub fn usage(prog: &str, msg: &str) -> ! {
    eprintln!("{prog}: {msg} (see the header of tests/src/bin/{prog}.rs)");
    std::process::exit(2);
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Params;

    #[test]
    fn params_from_query_and_body() {
        let p = Params::new(
            Some("size=5&name=a%20b".into()),
            br#"{"size": 7, "on": true}"#,
        )
        .expect("valid");
        assert_eq!(p.parse::<u64>("size").expect("a number"), Some(7));
        assert_eq!(p.get("name"), Some("a b"));
        assert_eq!(p.parse::<bool>("on").expect("a bool"), Some(true));
        assert!(p.parse::<u64>("name").is_err());
        assert!(p.require::<u64>("absent").is_err());
        assert!(Params::new(None, b"[1]").is_err());
        assert!(Params::new(None, b"  \n").is_ok());
    }
}
