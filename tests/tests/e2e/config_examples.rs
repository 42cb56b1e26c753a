//! Every example config in `config/` parses and validates.

use zkwatchdog::config;
use zkwatchdog_tests::repo_root;

#[test]
fn watchdog_example_config_is_valid_and_documents_every_key() {
    let path = repo_root().join("config/watchdog.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let raw =
        config::parse_raw(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
    let c = raw
        .validate(&path.display().to_string(), true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.id.as_str(), "flume-nginx@host-a");
    // Every key the config accepts appears in the example.
    for key in [
        "zk-hosts",
        "root",
        "session-timeout",
        "id",
        "name",
        "kind",
        "command",
        "[labels]",
        "stderr-tail-lines",
        "child-outlives-watchdog",
        "[restart]",
        "policy",
        "success-codes",
        "stable-after",
        "stop-signal",
        "stop-timeout",
        "backoff-initial",
        "backoff-max",
        "backoff-jitter",
        "max-restarts",
        "restart-window",
    ] {
        assert!(
            text.contains(key),
            "{key} is not documented in {}",
            path.display()
        );
    }
}
