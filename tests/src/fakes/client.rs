//! The HTTP side of a fake's test handle: requests to its API as a probe would make them, its
//! control calls, and bounded waits for it to answer or to be gone.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::process::FakeProcess;
use crate::wait::wait_until;

/// Timeout of one control call (generous: the machine may be loaded).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one fake at `addr`. No connection is reused (a restarted fake must not meet a
/// stale pooled connection) and no proxy is used (loopback only).
#[derive(Debug, Clone)]
pub struct Control {
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Control {
    pub fn new(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .expect("build an HTTP client");
        Control { addr, http }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` + `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// One request, bounded by `timeout`: `(status, body)`, or the transport error as text.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        let what = format!("{method} {}", self.url(path_and_query));
        let response = self
            .http
            .request(method, self.url(path_and_query))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("{what}: reading the body: {e}"))?;
        Ok((status, body))
    }

    /// A control call that must succeed (2xx); panics otherwise.
    pub async fn post(&self, path_and_query: &str) -> String {
        match self
            .request(Method::POST, path_and_query, CONTROL_TIMEOUT)
            .await
        {
            Ok((status, body)) if (200..300).contains(&status) => body,
            Ok((status, body)) => panic!("POST {path_and_query}: HTTP {status}: {body}"),
            Err(e) => panic!("{e}"),
        }
    }

    /// A GET whose 200 answer is JSON of type `T`; panics otherwise.
    pub async fn get_json<T: DeserializeOwned>(&self, path_and_query: &str) -> T {
        match self
            .request(Method::GET, path_and_query, CONTROL_TIMEOUT)
            .await
        {
            Ok((200, body)) => serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("GET {path_and_query}: unexpected JSON ({e}): {body}")),
            Ok((status, body)) => panic!("GET {path_and_query}: HTTP {status}: {body}"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Waits up to `deadline` until the fake answers `GET /control/state`.
    pub async fn wait_ready(&self, deadline: Duration) {
        self.wait_ready_inner(None, deadline).await
    }

    /// As [`wait_ready`](Self::wait_ready), but panics at once if `process` (the fake) exits
    /// first, e.g. because it could not bind its port.
    pub async fn wait_ready_process(&self, process: &mut FakeProcess, deadline: Duration) {
        self.wait_ready_inner(Some(process), deadline).await
    }

    async fn wait_ready_inner(&self, mut process: Option<&mut FakeProcess>, deadline: Duration) {
        let what = format!("the fake agent at {} to answer", self.addr);
        wait_until(&what, deadline, || {
            let exited = process
                .as_mut()
                .and_then(|p| Some((p.pid(), p.try_exit_status()?)));
            async move {
                if let Some((pid, status)) = exited {
                    panic!(
                        "the fake agent at {} (pid {pid}) exited: {status}",
                        self.addr
                    );
                }
                let r = self
                    .request(Method::GET, "/control/state", Duration::from_secs(2))
                    .await;
                matches!(r, Ok((200, _))).then_some(())
            }
        })
        .await
    }

    /// Waits up to `deadline` until nothing accepts connections at the fake's address.
    pub async fn wait_gone(&self, deadline: Duration) {
        let what = format!("the fake agent at {} to stop listening", self.addr);
        let addr = self.addr;
        wait_until(&what, deadline, || async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        })
        .await
    }

    /// `POST /control/hang`: later non-control requests get no answer until [`unhang`](Self::unhang).
    pub async fn hang(&self) {
        self.post("/control/hang").await;
    }

    pub async fn unhang(&self) {
        self.post("/control/unhang").await;
    }

    /// `POST /control/exit?code=N`: the fake answers, then exits with `code`.
    pub async fn exit(&self, code: i32) {
        self.post(&format!("/control/exit?code={code}")).await;
    }

    /// `POST /control/crash`: the fake SIGKILLs itself, answering first if it can (a lost answer
    /// is not an error here).
    pub async fn crash(&self) {
        let _ = self
            .request(Method::POST, "/control/crash", CONTROL_TIMEOUT)
            .await;
    }
}
