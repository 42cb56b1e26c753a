//! The watcher's config loading (`parse` = TOML + `validate`): arbitrary text and generated
//! documents built from the real key names with random values and types never panic, and every
//! error names a key or the file.

use proptest::prelude::*;
use zkwatchdog::configfile::ConfigError;
use zkwatcher::config::{parse, Needs};

const ORIGIN: &str = "/etc/zkwatcher/prop.toml";

const TOP: &[&str] = &[
    "zk-hosts",
    "root",
    "session-timeout",
    "group-wait",
    "repeat-interval",
    "zk-loss-alert-after",
    "retry-initial",
    "retry-max",
    "log-format",
    "metrics-addr",
];
const ZK_AUTH: &[&str] = &["scheme", "user", "password-env", "password-file", "admin"];
const ZK_TLS: &[&str] = &["ca-file", "cert-file", "key-file"];
const EMAIL: &[&str] = &[
    "url",
    "username",
    "password-env",
    "password-file",
    "from",
    "to",
    "ca-file",
    "timeout",
    "subject-prefix",
];
const WEBHOOK: &[&str] = &[
    "name",
    "kind",
    "url",
    "secret-env",
    "secret-file",
    "timeout",
    "min-interval",
];

fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        ".{0,12}".prop_map(toml::Value::String),
        proptest::sample::select(vec![
            "json",
            "human",
            "JSON",
            "10s",
            "0s",
            "-1s",
            "500ms",
            "580000000000y",
            "smtp://127.0.0.1:25",
            "smtps://mail:465",
            "smtp://mail:25?tls=required",
            "smtp://:0",
            "http://127.0.0.1:1/x",
            "https://oapi.dingtalk.com/robot/send?access_token=x",
            "dingtalk",
            "feishu",
            "slack",
            "generic",
            "a <a@b.c>",
            "oncall@example.com",
            "not an address",
            "/nonexistent/file",
            "PATH",
            "",
            "/zkwatchdog",
            "/",
            "0.0.0.0:9465",
            "localhost:9465",
            "digest",
            "admin:x1nq8J5GOJVPY6zgBh+o9nGwGqU=",
            "/etc/hostname",
        ])
        .prop_map(|s| toml::Value::String(s.to_string())),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        proptest::collection::vec(inner, 0..4).prop_map(toml::Value::Array)
    })
}

fn table(keys: &'static [&'static str]) -> impl Strategy<Value = toml::Table> {
    proptest::collection::vec(
        (
            prop_oneof![
                9 => proptest::sample::select(keys).prop_map(str::to_string),
                1 => "[a-z-]{1,10}",
            ],
            toml_value(),
        ),
        0..7,
    )
    .prop_map(|kv| kv.into_iter().collect())
}

fn document() -> impl Strategy<Value = String> {
    (
        table(TOP),
        proptest::option::of(table(EMAIL)),
        proptest::collection::vec(table(WEBHOOK), 0..3),
        proptest::option::of(table(ZK_AUTH)),
        proptest::option::of(table(ZK_TLS)),
    )
        .prop_map(|(mut doc, email, webhooks, zk_auth, zk_tls)| {
            for (name, t) in [("email", email), ("zk-auth", zk_auth), ("zk-tls", zk_tls)] {
                if let Some(t) = t {
                    doc.insert(name.into(), toml::Value::Table(t));
                }
            }
            if !webhooks.is_empty() {
                doc.insert(
                    "webhook".into(),
                    toml::Value::Array(webhooks.into_iter().map(toml::Value::Table).collect()),
                );
            }
            toml::to_string(&doc).unwrap_or_default()
        })
}

fn check_error(e: &ConfigError, text: &str) {
    assert_eq!(e.origin, ORIGIN);
    assert!(e.to_string().contains(ORIGIN), "{e}");
    assert!(!e.problems.is_empty(), "an error with no problem: {e}");
    for p in &e.problems {
        assert!(!p.message.trim().is_empty(), "empty message in {e}");
        if p.key.is_empty() {
            let located = p.message.contains("line")
                || p.message.contains('`')
                || p.message.contains("key")
                || p.message.contains("[email]");
            assert!(
                located,
                "a problem that says neither key nor place: {p:?}\n{text}"
            );
        }
    }
}

fn load(text: &str) {
    for needs in [Needs::Registry, Needs::Channels] {
        if let Err(e) = parse(text, ORIGIN, needs) {
            check_error(&e, text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        load(&text);
    }

    #[test]
    fn generated_documents_never_panic_and_errors_name_keys(doc in document()) {
        load(&doc);
    }
}
