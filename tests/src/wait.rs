//! Bounded polling: wait until a condition yields a value, or panic naming what was awaited.
//!
//! Every wait has a deadline; an async probe that hangs is cut off at the deadline too.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the condition is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every ~20 ms until it returns `Some(value)`, and returns that value.
///
/// Panics with `what` if `deadline` passes first (including while one call of `f` is pending).
pub async fn wait_until<F, Fut, T>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining.max(Duration::from_millis(1)), f()).await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(_) => panic!(
                "timed out after {deadline:?} waiting for {what} (a probe was still pending, \
                 {attempts} attempts)"
            ),
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what} ({attempts} attempts)");
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline.saturating_sub(start.elapsed()))).await;
    }
}

/// Synchronous variant of [`wait_until`]: polls `f` every ~20 ms until it returns `Some`.
///
/// Panics with `what` if `deadline` passes first. `f` itself must not block for long.
pub fn wait_until_sync<F, T>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Option<T>,
{
    let start = Instant::now();
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if let Some(value) = f() {
            return value;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what} ({attempts} attempts)");
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_sub(start.elapsed())));
    }
}
