//! Every error type this library's operations return, in one place. Each keeps what caused it
//! as its `source` (a ZooKeeper answer, an I/O error, a TLS failure); both programs print an
//! error with its whole cause chain ([`crate::logging::chain`]). Validation problems are not
//! errors of this kind: they are collected per key into one [`ConfigError`].

pub use crate::configfile::{ConfigError, Problem};
pub use crate::deregister::DeregisterError;
pub use crate::kafka::KafkaError;
pub use crate::metrics_http::MetricsError;
pub use crate::probe::driver::ProbeError;
pub use crate::registry::{ConnectError, PathError, RecordError, RegistryError};
