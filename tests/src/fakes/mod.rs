//! Fake agents for the health-probe tests: real Flume and Kafka Connect cannot be installed here,
//! so two helper binaries of this package speak their HTTP formats, scriptable by the test.
//!
//! - `fake-flume` (`src/bin/fake-flume.rs`, model in [`flume_model`]): Flume's HTTP monitoring
//!   `GET /metrics`, every value a string, doubles as Java prints them ([`java`]).
//! - `fake-connect` (`src/bin/fake-connect.rs`, model in [`connect_model`]): a Connect worker's
//!   REST API (status, `?expand=status`, restart with `includeTasks`/`onlyFailed`).
//! - [`server`]: what both servers share (SO_REUSEADDR bind after a start delay, hang, exit,
//!   crash, control parameters). Every control endpoint lives under `/control/`.
//!
//! Test side: [`FakeFlume`] and [`FakeConnect`] are handles on a fake at an address, giving its
//! command line (to supervise it with zkwatchdog) and async calls for every control;
//! [`FakeProcess`] owns a fake a test starts itself, killed by pid on drop; [`free_port`] picks a
//! loopback port.

pub mod client;
pub mod connect;
pub mod connect_model;
pub mod connect_wire;
pub mod flume;
pub mod flume_model;
pub mod java;
pub mod process;
pub mod server;

pub use connect::FakeConnect;
pub use flume::{FakeFlume, FlumeMetrics};
pub use process::{free_port, FakeProcess};
