//! Serving Prometheus metrics: `GET /metrics` over HTTP/1 (axum) on the one address given by
//! `--metrics-addr` / `metrics-addr`, shared by both programs, plus the small helpers their metric
//! definitions have in common (the address parser, one-hot state gauges, ZooKeeper session state
//! names).
//!
//! The server is a task on the caller's runtime. A scrape only reads atomics and formats text,
//! so it never holds up the supervision or watch loop it shares a thread with.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntGaugeVec, Registry, TextEncoder};
use thiserror::Error;
use tokio::task::JoinHandle;
use zookeeper_client::SessionState;

/// The metrics server could not start.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Parses a `metrics-addr` value: `IP:PORT` (e.g. `127.0.0.1:9464`, `[::1]:9464`,
/// `0.0.0.0:9464` for every interface). Host names are refused: the address is bound as given.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid address {text:?}; write IP:PORT, e.g. \"127.0.0.1:9464\""))
}

/// What a scrape returns: called once per `GET /metrics`, it refreshes values computed on demand
/// (uptimes) and encodes the registry.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Encodes every metric of `registry` in the Prometheus text format (version 0.0.4, the format
/// `promtool check metrics` reads).
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// The running metrics server; dropping it stops serving.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` now (so a busy or forbidden address is a start-up error) and serves
    /// `GET /metrics` from a task on the current runtime. Every other path answers 404.
    pub fn start(addr: SocketAddr, render: Render) -> Result<Self, MetricsError> {
        let bind = |source| MetricsError::Bind { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        std_listener.set_nonblocking(true).map_err(bind)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move { ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], render()) }
            }),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(%addr, error = %e, "the metrics server stopped");
            }
        });
        tracing::info!(%addr, "serving Prometheus metrics at /metrics");
        Ok(MetricsServer { addr, task })
    }

    /// The bound address (the real port when `addr` asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What both programs export besides their own metrics: the standard `process_*` series of the
/// process (CPU seconds, resident and virtual memory, open and maximum file descriptors, start
/// time; from `/proc`) and `<program>_build_info{version="…"} 1`.
pub fn register_process_and_build(registry: &Registry, program: &str) {
    let process = prometheus::process_collector::ProcessCollector::for_self();
    registry
        .register(Box::new(process))
        .expect("the process collector is registered once");
    let build = IntGaugeVec::new(
        prometheus::Opts::new(
            format!("{program}_build_info"),
            format!("Always 1; the labels say which {program} this is."),
        ),
        &["version"],
    )
    .expect("valid metric definition");
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry
        .register(Box::new(build))
        .expect("metric names are unique");
}

/// Sets a one-hot state gauge: `1` for the series whose last label is `current`, `0` for the
/// other `states`. `fixed` are the labels before the state label (e.g. the agent id).
pub fn set_one_hot(gauge: &IntGaugeVec, fixed: &[&str], states: &[&str], current: &str) {
    for state in states {
        let mut labels = fixed.to_vec();
        labels.push(state);
        gauge
            .with_label_values(&labels)
            .set(i64::from(*state == current));
    }
}

/// ZooKeeper session states as metric labels; `connecting` means no session yet (or a new one
/// being opened after the last one ended).
pub const ZK_STATES: [&str; 7] = [
    "connecting",
    "connected",
    "read_only",
    "disconnected",
    "expired",
    "closed",
    "auth_failed",
];

/// The label of a session state (one of [`ZK_STATES`]).
pub fn zk_state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::SyncConnected => "connected",
        SessionState::ConnectedReadOnly => "read_only",
        SessionState::Disconnected => "disconnected",
        SessionState::Expired => "expired",
        SessionState::Closed => "closed",
        SessionState::AuthFailed => "auth_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    #[test]
    fn addresses_are_ip_and_port() {
        assert_eq!(parse_addr(" 127.0.0.1:9464 ").map(|a| a.port()), Ok(9464));
        assert!(parse_addr("[::1]:9464").is_ok());
        for bad in [
            "localhost:9464",
            "127.0.0.1",
            ":9464",
            "127.0.0.1:99999",
            "",
        ] {
            let err = parse_addr(bad).expect_err(bad);
            assert!(err.contains("IP:PORT"), "{err}");
        }
    }

    #[test]
    fn one_hot_marks_exactly_the_current_state() {
        let registry = Registry::new();
        let g = IntGaugeVec::new(Opts::new("s", "state"), &["agent", "state"]).expect("valid");
        registry.register(Box::new(g.clone())).expect("registers");
        set_one_hot(&g, &["a"], &["x", "y", "z"], "y");
        set_one_hot(&g, &["a"], &["x", "y", "z"], "z");
        let text = encode(&registry);
        assert!(text.contains("s{agent=\"a\",state=\"x\"} 0"), "{text}");
        assert!(text.contains("s{agent=\"a\",state=\"y\"} 0"), "{text}");
        assert!(text.contains("s{agent=\"a\",state=\"z\"} 1"), "{text}");
    }

    #[test]
    fn every_session_state_has_a_listed_label() {
        for s in [
            SessionState::SyncConnected,
            SessionState::ConnectedReadOnly,
            SessionState::Disconnected,
            SessionState::Expired,
            SessionState::Closed,
            SessionState::AuthFailed,
        ] {
            assert!(ZK_STATES.contains(&zk_state_name(s)));
        }
    }

    #[tokio::test]
    async fn serves_metrics_and_reports_a_busy_address_by_name() {
        let registry = Registry::new();
        let c = prometheus::IntCounter::new("hits_total", "hits").expect("valid");
        registry.register(Box::new(c.clone())).expect("registers");
        c.inc();
        let render: Render = Arc::new(move || encode(&registry));
        let server = MetricsServer::start("127.0.0.1:0".parse().expect("addr"), render.clone())
            .expect("binds");
        let err = MetricsServer::start(server.addr(), render).expect_err("port is taken");
        assert!(
            err.to_string().contains(&server.addr().to_string()),
            "{err}"
        );
        let url = format!("http://{}/metrics", server.addr());
        let response = reqwest::get(&url).await.expect("scrape");
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            prometheus::TEXT_FORMAT
        );
        let body = response.text().await.expect("body");
        assert!(body.contains("hits_total 1"), "{body}");
        let other = reqwest::get(format!("http://{}/", server.addr()))
            .await
            .expect("get /");
        assert_eq!(other.status(), reqwest::StatusCode::NOT_FOUND);
    }
}
