//! Property tests: nothing a person or another program can put in an incident or silence znode,
//! or in the watcher's config file, makes the watcher panic, and every error says where.

mod config;
mod incident;
#[allow(dead_code)]
#[path = "../../../watchdog/tests/props/strategy.rs"]
mod strategy;
