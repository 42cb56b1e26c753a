//! The registry contract (DESIGN.md sections 1 and 2): znode paths, records, sessions, and the
//! watchdog's publisher that keeps the marker and liveness node in step with the child.

mod paths;
mod publisher;
mod records;
mod session;

pub use paths::{AgentId, Layout, PathError, DEFAULT_ROOT, MAX_ID_LEN};
pub use publisher::{remove_agent, Identity, Publisher, RegistryError, Removed, Update};
pub use records::{
    decode, encode, session_hex, AgentKind, AgentState, Health, HealthStatus, LastExit, Liveness,
    Marker, RecordError, Timestamp, Versioned, MAX_RECORD_BYTES, RECORD_VERSION,
};
pub use session::{delete_if_present, ensure_dir, session_is_gone, Session};
