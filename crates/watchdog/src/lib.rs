//! zkwatchdog: supervises one data-pipeline agent (a Flume agent, a Kafka Connect worker, any
//! long-running command) and publishes it in ZooKeeper as a PERSISTENT marker plus an EPHEMERAL
//! liveness node, so that `zkwatcher` can tell a crash from a planned stop.
//!
//! The [`registry`] module is the contract with the watcher: paths, records and their JSON.

pub mod backoff;
pub mod child;
pub mod config;
pub mod configfile;
pub mod deregister;
pub mod error;
pub mod exit;
pub mod group;
pub mod guardian;
pub mod kafka;
pub mod lines;
pub mod logging;
pub mod metrics;
pub mod metrics_http;
pub mod probe;
pub mod publisher;
pub mod redact;
pub mod registry;
pub mod run;
pub mod secret;
pub mod signals;
pub mod supervisor;
pub mod systemd;

/// Makes aws-lc-rs the process's TLS crypto provider: the one this build links (rustls, and
/// through it zookeeper-client's TLS, reqwest and lettre are all built on it). Each binary calls
/// it first thing in `main`; a second call finds it installed, which is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
