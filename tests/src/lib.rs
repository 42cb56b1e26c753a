//! Test fixtures for zkwatchdog's end-to-end tests: a real ZooKeeper (standalone or a 3-node
//! ensemble, driven through `scripts/zk.sh`), bounded polling helpers, a `zkwatchdog` process
//! under test (`watchdog`), paths to the workspace's built binaries (the supervisor, and
//! the `testchild` helper of this package), and fake Flume and Kafka Connect agents for the
//! health probes (`fakes`: the `fake-flume` and `fake-connect` helper binaries and their
//! test-side handles), the real Flume, Kafka and Kafka Connect through `scripts/agents.sh`
//! (`agents`) with Kafka's own console tools (`kafka_tools`: topics, produce, consume in a
//! group), scraping `/metrics` checked by `promtool` (`metrics`), and the scale benchmark's
//! agent ids and records (`scale`, for the `scale-registry` binary).

use std::path::PathBuf;
use std::process::Output;

pub mod agents;
pub mod chaos;
pub mod fakes;
pub mod kafka_tools;
pub mod metrics;
pub mod scale;
pub mod smtp;
pub mod wait;
pub mod watchdog;
pub mod watcher;
pub mod zk;
pub mod zk_tls;

/// The workspace root (the parent of this package's directory).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(PathBuf::from)
        .expect("CARGO_MANIFEST_DIR has a parent (the workspace root)")
}

/// The path of the workspace binary `name`, built in the same profile as the running test
/// (`target/<profile>/NAME`; the test executable itself lives in `target/<profile>/deps/`).
///
/// Panics with a clear message if the binary has not been built.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let mut dir = exe
        .parent()
        .map(PathBuf::from)
        .expect("the test executable has a parent directory");
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!(
            "binary `{name}` not found at {}: run `cargo build --workspace --bins` first \
             (same profile as the tests)",
            path.display()
        );
    }
    path
}

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
