//! `fake-flume`: Flume's `/metrics` JSON, flow and stall dynamics, robustness knobs, hang, exit,
//! crash, start delay and restart on the same port.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use reqwest::Method;
use serde_json::Value;
use zkwatchdog_tests::fakes::{FakeFlume, FlumeMetrics};

use super::{assert_killed, json, ANSWER, SHORT, WAIT};

const CHANNEL_FIELDS: &[&str] = &[
    "Type",
    "ChannelSize",
    "ChannelCapacity",
    "ChannelFillPercentage",
    "EventPutAttemptCount",
    "EventPutSuccessCount",
    "EventTakeAttemptCount",
    "EventTakeSuccessCount",
    "StartTime",
    "StopTime",
];
const SINK_FIELDS: &[&str] = &[
    "Type",
    "EventDrainAttemptCount",
    "EventDrainSuccessCount",
    "ConnectionCreatedCount",
    "ConnectionClosedCount",
    "ConnectionFailedCount",
    "BatchEmptyCount",
    "BatchUnderflowCount",
    "BatchCompleteCount",
    "StartTime",
    "StopTime",
];
const SOURCE_FIELDS: &[&str] = &[
    "Type",
    "EventReceivedCount",
    "EventAcceptedCount",
    "AppendReceivedCount",
    "AppendAcceptedCount",
    "AppendBatchReceivedCount",
    "AppendBatchAcceptedCount",
    "OpenConnectionCount",
    "StartTime",
    "StopTime",
];

/// The raw `/metrics` JSON, checked to be an object of objects of strings only.
async fn raw_metrics(fake: &FakeFlume) -> Value {
    let (status, body) = fake.get("/metrics", ANSWER).await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    let components = v.as_object().expect("an object of components");
    for (name, fields) in components {
        let fields = fields
            .as_object()
            .unwrap_or_else(|| panic!("{name}: {fields}"));
        for (field, value) in fields {
            assert!(value.is_string(), "{name}.{field} is not a string: {value}");
        }
    }
    v
}

fn field_names(v: &Value, component: &str) -> BTreeSet<String> {
    v[component]
        .as_object()
        .unwrap_or_else(|| panic!("no component {component} in {v}"))
        .keys()
        .cloned()
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn count(m: &FlumeMetrics, component: &str, field: &str) -> u64 {
    m[component][field]
        .parse()
        .unwrap_or_else(|_| panic!("{component}.{field} = {:?}", m[component][field]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_flume_json_with_every_value_a_string() {
    let (fake, _process) = FakeFlume::start(&["--channel", "c1:1000000"]).await;
    fake.set_channel_size("c1", 5).await;
    let v = raw_metrics(&fake).await;
    let keys: BTreeSet<String> = v.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, names(&["CHANNEL.c1", "SINK.k1", "SOURCE.r1"]));
    assert_eq!(field_names(&v, "CHANNEL.c1"), names(CHANNEL_FIELDS));
    assert_eq!(field_names(&v, "SINK.k1"), names(SINK_FIELDS));
    assert_eq!(field_names(&v, "SOURCE.r1"), names(SOURCE_FIELDS));
    assert_eq!(v["CHANNEL.c1"]["Type"], "CHANNEL");
    assert_eq!(v["SINK.k1"]["Type"], "SINK");
    assert_eq!(v["SOURCE.r1"]["Type"], "SOURCE");
    assert_eq!(v["CHANNEL.c1"]["ChannelCapacity"], "1000000");
    assert_eq!(v["CHANNEL.c1"]["ChannelSize"], "5");
    // Java's Double.toString: scientific notation below 1e-3.
    assert_eq!(v["CHANNEL.c1"]["ChannelFillPercentage"], "5.0E-4");
    assert_eq!(v["SINK.k1"]["StopTime"], "0");
    let start: i64 = v["SINK.k1"]["StartTime"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("StartTime is a Java long");
    assert!(start > 1_500_000_000_000, "StartTime in ms: {start}");

    fake.set_channel_size("c1", 932_000).await;
    let m = fake.metrics().await;
    assert_eq!(m["CHANNEL.c1"]["ChannelFillPercentage"], "93.2");
    fake.set_channel_size("c1", 0).await;
    let m = fake.metrics().await;
    assert_eq!(m["CHANNEL.c1"]["ChannelFillPercentage"], "0.0");

    let (status, body) = fake.get("/", ANSWER).await.expect("GET /");
    assert_eq!(status, 200);
    assert!(body.contains("./metrics"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scrape_is_one_step_and_a_stalled_sink_stays_flat() {
    let (fake, _process) = FakeFlume::start(&[]).await;
    fake.set_channel_size("c1", 7_000).await;
    let a = fake.metrics().await;
    let b = fake.metrics().await;
    for (component, field) in [
        ("CHANNEL.c1", "EventPutSuccessCount"),
        ("CHANNEL.c1", "EventTakeSuccessCount"),
        ("SINK.k1", "EventDrainSuccessCount"),
        ("SOURCE.r1", "EventAcceptedCount"),
    ] {
        let (x, y) = (count(&a, component, field), count(&b, component, field));
        assert_eq!(y, x + 100, "{component}.{field}: {x} then {y}");
    }
    assert_eq!(b["CHANNEL.c1"]["ChannelSize"], "7000");
    assert_eq!(b["CHANNEL.c1"]["ChannelFillPercentage"], "70.0");

    fake.stall_sink_failing("k1", 2).await;
    assert!(fake.state().await.sinks["k1"].stalled);
    let c = fake.metrics().await;
    let d = fake.metrics().await;
    for (component, field) in [
        ("CHANNEL.c1", "EventTakeSuccessCount"),
        ("SINK.k1", "EventDrainSuccessCount"),
    ] {
        assert_eq!(
            count(&c, component, field),
            count(&b, component, field),
            "{field}"
        );
        assert_eq!(
            count(&d, component, field),
            count(&b, component, field),
            "{field}"
        );
    }
    assert_eq!(
        count(&d, "CHANNEL.c1", "EventPutSuccessCount"),
        count(&b, "CHANNEL.c1", "EventPutSuccessCount") + 200
    );
    assert_eq!(d["CHANNEL.c1"]["ChannelSize"], "7000");
    let failed = count(&d, "SINK.k1", "ConnectionFailedCount");
    assert_eq!(failed, count(&b, "SINK.k1", "ConnectionFailedCount") + 4);

    fake.add_connection_failures("k1", 5).await;
    fake.resume_sink("k1").await;
    let e = fake.metrics().await;
    assert_eq!(count(&e, "SINK.k1", "ConnectionFailedCount"), failed + 5);
    assert_eq!(
        count(&e, "SINK.k1", "EventDrainSuccessCount"),
        count(&d, "SINK.k1", "EventDrainSuccessCount") + 100
    );
    let state = fake.state().await;
    assert!(!state.sinks["k1"].stalled);
    assert_eq!(state.steps, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_from_the_command_line_and_robustness_knobs() {
    let args = [
        "--channel",
        "a:100",
        "--channel",
        "b:200",
        "--sink",
        "k1:a",
        "--sink",
        "k2:b",
        "--source",
        "r1",
        "--source",
        "r2",
        "--omit-field",
        "ChannelFillPercentage",
        "--extra-component",
        "OTHER.x",
    ];
    let (fake, _process) = FakeFlume::start(&args).await;
    fake.stall_sink("k2").await;
    let v = raw_metrics(&fake).await;
    let keys: BTreeSet<String> = v.as_object().expect("object").keys().cloned().collect();
    let want = [
        "CHANNEL.a",
        "CHANNEL.b",
        "SINK.k1",
        "SINK.k2",
        "SOURCE.r1",
        "SOURCE.r2",
        "OTHER.x",
    ];
    assert_eq!(keys, names(&want));
    assert_eq!(v["OTHER.x"]["Type"], "OTHER");
    assert!(v["CHANNEL.a"].get("ChannelFillPercentage").is_none(), "{v}");
    // k2 drains b and is stalled: only a's takes move.
    assert_eq!(v["CHANNEL.a"]["EventTakeSuccessCount"], "100");
    assert_eq!(v["CHANNEL.b"]["EventTakeSuccessCount"], "0");

    fake.omit_field("EventTakeSuccessCount").await;
    fake.add_component("ODD.y").await;
    let v = raw_metrics(&fake).await;
    assert!(v["CHANNEL.b"].get("EventTakeSuccessCount").is_none(), "{v}");
    assert_eq!(v["ODD.y"]["Type"], "ODD");

    fake.set_malformed(true).await;
    let (status, body) = fake.get("/metrics", ANSWER).await.expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    fake.set_malformed(false).await;
    raw_metrics(&fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_calls_are_400_and_harmless() {
    let (fake, mut process) = FakeFlume::start(&[]).await;
    for path in [
        "/control/channel/nope?size=1",
        "/control/channel/c1?size=lots",
        "/control/channel/c1",
        "/control/sink/k1/dance",
        "/control/sink/nope/stall",
        "/control/sink/k1/connection-failures?n=-3",
        "/control/exit?code=soon",
    ] {
        let (status, body) = fake.request(Method::POST, path, ANSWER).await.expect(path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(json(&body)["error"].is_string(), "{path}: {body}");
    }
    let (status, _) = fake
        .request(Method::POST, "/control/channel/c1?size=1", ANSWER)
        .await
        .expect("POST");
    assert_eq!(status, 200);
    assert!(process.try_exit_status().is_none(), "the fake died");
    assert_eq!(fake.state().await.channels["c1"].size, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_agent_accepts_but_never_answers_while_control_does() {
    let (fake, _process) = FakeFlume::start(&[]).await;
    fake.hang().await;
    let err = fake
        .get("/metrics", SHORT)
        .await
        .expect_err("a hung fake answered");
    assert!(err.contains("/metrics"), "{err}");
    let state = fake.state().await;
    assert!(state.hung);
    assert_eq!(state.steps, 0, "the held scrape must not have run");
    fake.unhang().await;
    fake.metrics().await;
    assert_eq!(fake.state().await.steps, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_with_a_code_and_crash() {
    let (fake, mut process) = FakeFlume::start(&[]).await;
    fake.exit(3).await;
    assert_eq!(process.wait_exit(WAIT).code(), Some(3));

    let (fake, mut process) = FakeFlume::start(&[]).await;
    fake.crash().await;
    assert_killed(process.wait_exit(WAIT));
    fake.wait_gone(WAIT).await;
}

/// A connection to `addr` on which one HTTP/1.1 request has been answered, left open.
fn kept_alive_connection(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).expect("connect to the fake");
    conn.set_read_timeout(Some(ANSWER))
        .expect("set a read timeout");
    let request = format!("GET /control/state HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    conn.write_all(request.as_bytes()).expect("send a request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).expect("read the answer");
        assert!(
            n > 0,
            "the fake closed the connection: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a content-length header");
            if body.len() >= length {
                return conn;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_agent_restarts_on_the_same_port_at_once() {
    let (fake, mut process) = FakeFlume::start(&[]).await;
    fake.metrics().await;
    // A kept-alive connection the fake's side closes first when it dies: its port is left in
    // TIME_WAIT, which only SO_REUSEADDR lets the next fake bind through.
    let mut conn = kept_alive_connection(fake.addr());
    fake.crash().await;
    assert_killed(process.wait_exit(WAIT));
    let mut rest = [0u8; 64];
    assert_eq!(
        conn.read(&mut rest).expect("read after the crash"),
        0,
        "expected EOF"
    );

    let mut again = fake.spawn(&[]);
    fake.wait_ready_process(&mut again, WAIT).await;
    assert!(
        again.try_exit_status().is_none(),
        "the restarted fake exited"
    );
    let state = fake.state().await;
    assert!(!state.hung);
    assert_eq!(state.steps, 0, "a fresh agent");
    fake.metrics().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_delay_postpones_listening() {
    let fake = FakeFlume::on_free_port();
    let started = Instant::now();
    let _process = fake.spawn(&["--start-delay", "2000"]);
    let early = fake.get("/control/state", SHORT).await;
    assert!(
        early.is_err() || started.elapsed().as_millis() >= 2000,
        "answered before its start delay: {early:?}"
    );
    fake.wait_ready(WAIT).await;
    assert!(
        started.elapsed().as_millis() >= 2000,
        "ready after {:?}",
        started.elapsed()
    );
}
