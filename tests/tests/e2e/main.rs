//! The end-to-end tests: one test binary, one module per area.

mod acl;
mod cli;
mod config_examples;
mod fake_agents;
mod health_alerts;
mod metrics;
mod probes;
mod smtp_fixture;
mod tls;
mod watchdog;
mod watcher;
mod watcher_delivery;
mod watcher_registry;
mod zk_fixture;
