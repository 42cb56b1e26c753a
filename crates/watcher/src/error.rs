//! Every error type this library's operations return, in one place, besides the watchdog
//! library's ([`zkwatchdog::error`]: configuration, sessions, records). Each keeps its cause
//! as its `source` where it has one; `zkwatcher` prints the whole chain
//! ([`zkwatchdog::logging::chain`]).

pub use crate::notify::{BuildError, SendError};
pub use zkwatchdog::error::{ConfigError, ConnectError, RecordError};
