//! The end-to-end tests: one test binary, one module per area.

mod acl;
mod bounds;
mod cli;
mod config_examples;
mod daemonize;
mod email_bounds;
mod fake_agents;
mod health_alerts;
mod logs;
mod metrics;
mod probes;
mod reload;
mod service_units;
mod smtp_fixture;
mod status_conflict;
mod tls;
mod watchdog;
mod watchdog_faults;
mod watcher;
mod watcher_delivery;
mod watcher_leadership;
mod watcher_registry;
mod watcher_zk_loss;
mod webhook_bounds;
mod zk_fixture;
mod zkcli_by_hand;
