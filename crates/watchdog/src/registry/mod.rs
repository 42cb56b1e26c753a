//! The registry contract (DESIGN.md sections 1 and 2): znode paths, records, ACLs, sessions, and the
//! watchdog's publisher that keeps the marker and liveness node in step with the child.

mod acl;
pub mod claim;
pub mod next;
mod nodes;
mod paths;
mod publisher;
mod records;
pub mod server_version;
mod session;
pub mod tls_probe;

pub use acl::{digest_id, DeniedLog, NodeAcls, NodeKind};
pub use nodes::{
    delete_if_present, delete_tree, delete_trees, ensure_dirs, put_persistent, put_persistent_all,
    remove_agent, Removed,
};
pub use paths::{AgentId, Layout, PathError, DEFAULT_ROOT, MAX_ID_LEN};
pub use publisher::{Identity, Publisher, RegistryError, Update};
pub use records::{
    bound_command, decode, encode, session_hex, truncate_text, AgentKind, AgentState, Health,
    HealthStatus, LastExit, Liveness, Marker, RecordError, Timestamp, Versioned, MAX_COMMAND_ARGS,
    MAX_COMMAND_BYTES, MAX_LABELS, MAX_RECORD_BYTES, MAX_SHORT, MAX_STDERR_LINE,
    MAX_STDERR_TAIL_BYTES, MAX_TEXT, RECORD_VERSION,
};
pub use session::{session_is_gone, ConnectError, Session};
