//! Tests of the fake agents themselves (`fake-flume`, `fake-connect`), run as processes and
//! driven over loopback HTTP like the health probes will drive them: formats, dynamics, the
//! controls, hanging, exiting, crashing and restarting on the same port. The fakes stay for the
//! states the real programs cannot be driven into on purpose (see `probes.rs`).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

mod connect;
mod flume;

/// Deadline of every wait (generous: a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(20);
/// Timeout of a request that must be answered.
const ANSWER: Duration = Duration::from_secs(10);
/// Timeout of a request that a hung fake must leave unanswered.
const SHORT: Duration = Duration::from_secs(1);

/// `body` as JSON; panics with the body if it is not.
fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Panics unless `status` is death by SIGKILL.
fn assert_killed(status: ExitStatus) {
    assert_eq!(
        status.signal(),
        Some(9),
        "expected death by SIGKILL: {status:?}"
    );
}
