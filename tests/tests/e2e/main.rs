//! The end-to-end tests: one test binary, one module per area.

mod cli;
mod config_examples;
mod watchdog;
mod zk_fixture;
