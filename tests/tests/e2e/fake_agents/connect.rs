//! `fake-connect`: Kafka Connect's REST shapes, `?expand=status` with and without support, 404,
//! 409, 204 and 202 restarts with RESTARTING → RUNNING, restarts that keep failing, the request
//! log, bad controls, hang and crash.

use reqwest::Method;
use serde_json::{json, Value};
use zkwatchdog_tests::fakes::connect_model::{ConnectorStatus, State, DEFAULT_TRACE};
use zkwatchdog_tests::fakes::FakeConnect;
use zkwatchdog_tests::wait::wait_until;

use super::{assert_killed, json, ANSWER, SHORT, WAIT};

const CONFLICT: &str = "Cannot complete request momentarily due to stale configuration \
                        (typically caused by a concurrent config change)";
const TRACE: &str = "java.lang.RuntimeException: boom\n\tat com.example.Sink.put(Sink.java:42)";

/// `(status, JSON body)` of a request that must be answered (`Value::Null` for an empty body).
async fn call(fake: &FakeConnect, method: Method, path: &str) -> (u16, Value) {
    let (status, body) = fake.request(method, path, ANSWER).await.expect(path);
    let v = if body.is_empty() {
        Value::Null
    } else {
        json(&body)
    };
    (status, v)
}

fn task_states(s: &ConnectorStatus) -> Vec<State> {
    s.tasks.iter().map(|t| t.state).collect()
}

/// Waits until every unit of `connector` is in `state`.
async fn wait_all(fake: &FakeConnect, connector: &str, state: State) -> ConnectorStatus {
    wait_until(&format!("{connector} all {state:?}"), WAIT, || async {
        let s = fake.status(connector).await;
        (s.connector.state == state && s.tasks.iter().all(|t| t.state == state)).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_list_and_expanded_status() {
    let (fake, _p) =
        FakeConnect::start(&["--connector", "s3:2", "--connector", "src:1:source"]).await;
    let (status, v) = call(&fake, Method::GET, "/").await;
    assert_eq!(status, 200);
    for key in ["version", "commit", "kafka_cluster_id"] {
        assert!(v[key].is_string(), "{key} in {v}");
    }
    assert_eq!(
        call(&fake, Method::GET, "/connectors").await,
        (200, json!(["s3", "src"]))
    );

    let (status, v) = call(&fake, Method::GET, "/connectors?expand=status").await;
    assert_eq!(status, 200);
    let w = fake.worker_id();
    let want = json!({
        "s3": {"status": {
            "name": "s3",
            "connector": {"state": "RUNNING", "worker_id": w},
            "tasks": [
                {"id": 0, "state": "RUNNING", "worker_id": w},
                {"id": 1, "state": "RUNNING", "worker_id": w},
            ],
            "type": "sink",
        }},
        "src": {"status": {
            "name": "src",
            "connector": {"state": "RUNNING", "worker_id": w},
            "tasks": [{"id": 0, "state": "RUNNING", "worker_id": w}],
            "type": "source",
        }},
    });
    assert_eq!(v, want);
    let (_, v) = call(&fake, Method::GET, "/connectors?expand=info").await;
    assert_eq!(
        v,
        json!({"s3": {}, "src": {}}),
        "unknown expansions are ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_worker_ignores_expand() {
    let (fake, _p) = FakeConnect::start(&["--connector", "s3", "--no-expand"]).await;
    let got = call(&fake, Method::GET, "/connectors?expand=status").await;
    assert_eq!(got, (200, json!(["s3"])));
    let s = fake.status("s3").await;
    assert_eq!(task_states(&s), [State::Running]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_connectors_and_paths_are_404_with_connect_error_bodies() {
    let (fake, _p) = FakeConnect::start(&["--connector", "s3:2"]).await;
    let want = json!({"error_code": 404, "message": "No status found for connector nope"});
    assert_eq!(
        call(&fake, Method::GET, "/connectors/nope/status").await,
        (404, want)
    );
    let want = json!({"error_code": 404, "message": "Unknown connector: nope"});
    let path = "/connectors/nope/restart?includeTasks=true&onlyFailed=true";
    assert_eq!(call(&fake, Method::POST, path).await, (404, want));
    let (status, v) = call(&fake, Method::GET, "/connectors/s3/tasks/1/status").await;
    assert_eq!(
        (status, v["id"].clone(), v["state"].clone()),
        (200, json!(1), json!("RUNNING"))
    );
    let (status, v) = call(&fake, Method::GET, "/connectors/s3/tasks/2/status").await;
    assert_eq!((status, v["error_code"].clone()), (404, json!(404)));
    let (status, v) = call(&fake, Method::GET, "/no/such/path").await;
    assert_eq!((status, v["error_code"].clone()), (404, json!(404)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_failed_tasks_shows_restarting_then_running() {
    let (fake, _p) = FakeConnect::start(&["--connector", "s3:3"]).await;
    fake.fail_task("s3", 1, Some(TRACE)).await;
    let s = fake.status("s3").await;
    assert_eq!(
        task_states(&s),
        [State::Running, State::Failed, State::Running]
    );
    assert_eq!(s.tasks[1].trace.as_deref(), Some(TRACE));
    assert_eq!(s.tasks[0].trace, None);

    let path = "/connectors/s3/restart?includeTasks=true&onlyFailed=true";
    let (status, v) = call(&fake, Method::POST, path).await;
    assert_eq!(status, 202, "{v}");
    let s: ConnectorStatus = serde_json::from_value(v).expect("a status body");
    assert_eq!(s.connector.state, State::Running);
    assert_eq!(
        task_states(&s),
        [State::Running, State::Restarting, State::Running]
    );
    let s = wait_all(&fake, "s3", State::Running).await;
    assert_eq!(s.tasks[1].trace, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_everything_is_202_and_connector_only_is_204() {
    let (fake, _p) = FakeConnect::start(&["--connector", "s3:2"]).await;
    let path = "/connectors/s3/restart?includeTasks=true&onlyFailed=false";
    let (status, v) = call(&fake, Method::POST, path).await;
    assert_eq!(status, 202, "{v}");
    let s: ConnectorStatus = serde_json::from_value(v).expect("a status body");
    assert_eq!(s.connector.state, State::Restarting);
    assert_eq!(task_states(&s), [State::Restarting, State::Restarting]);
    wait_all(&fake, "s3", State::Running).await;

    assert_eq!(
        call(&fake, Method::POST, "/connectors/s3/restart").await,
        (204, Value::Null)
    );
    let path = "/connectors/s3/restart?includeTasks=false&onlyFailed=false";
    assert_eq!(call(&fake, Method::POST, path).await, (204, Value::Null));
    wait_all(&fake, "s3", State::Running).await;

    // onlyFailed without includeTasks restarts a FAILED connector and leaves the tasks alone.
    fake.fail_connector("s3", None).await;
    let s = fake.status("s3").await;
    assert_eq!(s.connector.state, State::Failed);
    assert_eq!(s.connector.trace.as_deref(), Some(DEFAULT_TRACE));
    assert!(DEFAULT_TRACE.lines().count() > 3 && DEFAULT_TRACE.contains("\n\tat "));
    let (status, v) = call(
        &fake,
        Method::POST,
        "/connectors/s3/restart?onlyFailed=true",
    )
    .await;
    assert_eq!(status, 202);
    let s: ConnectorStatus = serde_json::from_value(v).expect("a status body");
    assert_eq!(s.connector.state, State::Restarting);
    assert_eq!(task_states(&s), [State::Running, State::Running]);
    wait_all(&fake, "s3", State::Running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_conflicts_answer_409_then_the_restart_goes_through() {
    let (fake, _p) = FakeConnect::start(&["--connector", "s3:1"]).await;
    fake.fail_task("s3", 0, None).await;
    fake.queue_conflicts(2).await;
    let path = "/connectors/s3/restart?includeTasks=true&onlyFailed=true";
    for _ in 0..2 {
        let want = json!({"error_code": 409, "message": CONFLICT});
        assert_eq!(call(&fake, Method::POST, path).await, (409, want));
    }
    assert_eq!(fake.status("s3").await.tasks[0].state, State::Failed);
    let (status, _) = call(&fake, Method::POST, path).await;
    assert_eq!(status, 202);
    wait_all(&fake, "s3", State::Running).await;
    assert_eq!(fake.state().await.restart_conflicts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_that_keep_failing_fail_again_with_the_same_trace() {
    let (fake, _p) = FakeConnect::start(&["--connector", "s3:2"]).await;
    fake.fail_task("s3", 0, Some(TRACE)).await;
    fake.restart_fails(true).await;
    let path = "/connectors/s3/restart?includeTasks=true&onlyFailed=true";
    for _ in 0..2 {
        let (status, v) = call(&fake, Method::POST, path).await;
        assert_eq!(status, 202);
        let s: ConnectorStatus = serde_json::from_value(v).expect("a status body");
        assert_eq!(task_states(&s), [State::Restarting, State::Running]);
        let s = wait_until("task 0 FAILED again", WAIT, || async {
            let s = fake.status("s3").await;
            (s.tasks[0].state == State::Failed).then_some(s)
        })
        .await;
        assert_eq!(s.tasks[0].trace.as_deref(), Some(TRACE));
        assert_eq!(s.tasks[1].state, State::Running);
    }
    assert!(fake.state().await.restart_fails);
    fake.restart_fails(false).await;
    let (status, _) = call(&fake, Method::POST, path).await;
    assert_eq!(status, 202);
    wait_all(&fake, "s3", State::Running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_has_every_api_call_and_no_control() {
    let (fake, _p) = FakeConnect::start(&["--connector", "s3:1"]).await;
    fake.fail_task("s3", 0, None).await;
    call(&fake, Method::GET, "/connectors?expand=status").await;
    call(
        &fake,
        Method::POST,
        "/connectors/s3/restart?includeTasks=true&onlyFailed=true",
    )
    .await;
    call(&fake, Method::GET, "/connectors/s3/status").await;
    let log: Vec<(String, String, Option<String>)> = fake
        .requests()
        .await
        .into_iter()
        .map(|r| (r.method, r.path, r.query))
        .collect();
    // The handle's readiness probe and controls are under /control/: not logged.
    let want = [
        ("GET", "/connectors", Some("expand=status")),
        (
            "POST",
            "/connectors/s3/restart",
            Some("includeTasks=true&onlyFailed=true"),
        ),
        ("GET", "/connectors/s3/status", None),
    ]
    .map(|(m, p, q)| (m.to_owned(), p.to_owned(), q.map(str::to_owned)));
    assert_eq!(log, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_calls_are_400() {
    let (fake, mut process) = FakeConnect::start(&["--connector", "s3:1"]).await;
    for path in [
        "/control/connector/s3/task/x/fail",
        "/control/connector/s3/task/1/fail",
        "/control/connector/nope/fail",
        "/control/connector/s3/state?state=BOGUS",
        "/control/connector/s3/task/0/state",
        "/control/connector/s3/explode",
        "/control/restart-conflicts?n=-1",
        "/control/restart-fails?on=maybe",
    ] {
        let (status, v) = call(&fake, Method::POST, path).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    fake.set_task_state("s3", 0, State::Paused).await;
    fake.set_connector_state("s3", State::Unassigned).await;
    let s = fake.status("s3").await;
    assert_eq!(
        (s.connector.state, s.tasks[0].state),
        (State::Unassigned, State::Paused)
    );
    assert!(process.try_exit_status().is_none(), "the fake died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_holds_requests_until_unhang_and_crash_kills() {
    let (fake, mut process) = FakeConnect::start(&["--connector", "s3:1"]).await;
    fake.hang().await;
    let err = fake.request(Method::GET, "/connectors", SHORT).await;
    assert!(err.is_err(), "a hung fake answered: {err:?}");
    assert!(fake.state().await.hung);
    let held = {
        let fake = fake.clone();
        tokio::spawn(async move {
            fake.request(Method::GET, "/connectors/s3/status", WAIT)
                .await
        })
    };
    wait_until("the held request to arrive", WAIT, || async {
        let log = fake.requests().await;
        log.iter()
            .any(|r| r.path == "/connectors/s3/status")
            .then_some(())
    })
    .await;
    fake.unhang().await;
    let answer = tokio::time::timeout(WAIT, held)
        .await
        .expect("answered after unhang");
    let (status, body) = answer.expect("task").expect("the held request");
    assert_eq!(status, 200, "{body}");

    fake.crash().await;
    assert_killed(process.wait_exit(WAIT));
    fake.wait_gone(WAIT).await;
}
