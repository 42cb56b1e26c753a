//! Scraping a program's `/metrics` endpoint under test: fetch the exposition over loopback, read
//! samples out of it by name and labels, wait until they say something, and validate the text
//! with the real `promtool check metrics` (Debian's `prometheus` package).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fakes::free_port;
use crate::wait::POLL_INTERVAL;

/// A free loopback address for a metrics server.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// One scrape: the text exposition as served.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub body: String,
}

impl Scrape {
    /// The value of the sample `name` whose labels are exactly `labels` (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
        self.body.lines().find_map(|line| {
            let (n, l, v) = parse_sample(line)?;
            (n == name
                && l.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .eq(want.clone()))
            .then_some(v)
        })
    }

    /// Like [`value`](Self::value), but an absent series panics, naming it and showing the
    /// scrape.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in the scrape:\n{}", self.body))
    }
}

/// Parses `name{k="v",...} value` (or `name value`); `None` for comments and blank lines.
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_string(), BTreeMap::new(), value));
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut val = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => val.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => val.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_string(), val);
        rest = &after[end + 1..];
    }
    Some((name.to_string(), labels, value))
}

/// `GET http://ADDR/metrics`: the body of a 200 answer, or why not.
pub async fn scrape(addr: SocketAddr) -> Result<Scrape, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics on {addr}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET /metrics on {addr}: {}", response.status()));
    }
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok(Scrape { body })
}

/// Scrapes `addr` until `ok` holds for a scrape and returns that scrape; panics naming `what`
/// with the last scrape (or error) once `deadline` passes.
pub async fn wait_for(
    addr: SocketAddr,
    what: &str,
    deadline: Duration,
    mut ok: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let start = Instant::now();
    let mut last = String::from("(no scrape yet)");
    while start.elapsed() < deadline {
        match scrape(addr).await {
            Ok(s) if ok(&s) => return s,
            Ok(s) => last = s.body,
            Err(e) => last = e,
        }
        tokio::time::sleep(POLL_INTERVAL * 5).await;
    }
    panic!("timed out after {deadline:?} waiting for {what}; last scrape:\n{last}");
}

/// Runs `promtool check metrics` on `body`; panics with promtool's output unless it exits 0
/// (lint problems such as a counter without `_total` make it exit non-zero too). Input and
/// output go through files, so that no pipe can fill up; a promtool still running after 30 s is
/// killed (by its pid) before the panic.
pub fn promtool_check(body: &str) {
    let dir = tempfile::tempdir().expect("a directory for promtool's input and output");
    let input = dir.path().join("scrape.txt");
    let output = dir.path().join("promtool.out");
    std::fs::write(&input, body).expect("write the scrape");
    let out = std::fs::File::create(&output).expect("create promtool's output file");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&input).expect("open the scrape"))
        .stdout(out.try_clone().expect("share the output file"))
        .stderr(out)
        .spawn()
        .expect("run promtool (Debian package `prometheus`; see scripts/install-deps.sh)");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for promtool") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("promtool check metrics (pid {pid}) did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = std::fs::read_to_string(&output).unwrap_or_default();
    assert!(
        status.success(),
        "promtool check metrics (pid {pid}) exited with {status}:\n{said}\n--- the scrape ---\n{body}",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_labels_escapes_and_infinities() {
        let s = Scrape {
            body: "# HELP x y\n# TYPE x counter\nx_total{agent=\"a@h\",kind=\"si\\\"g\"} 2\n\
                   h_bucket{channel=\"email\",le=\"+Inf\"} 3\nplain 1.5\n"
                .into(),
        };
        assert_eq!(
            s.value("x_total", &[("kind", "si\"g"), ("agent", "a@h")]),
            Some(2.0)
        );
        assert_eq!(s.value("x_total", &[("agent", "a@h")]), None);
        assert_eq!(
            s.value("h_bucket", &[("channel", "email"), ("le", "+Inf")]),
            Some(3.0)
        );
        assert_eq!(s.value("plain", &[]), Some(1.5));
    }
}
