//! The registry contract both programs share (DESIGN.md sections 1 and 2): znode paths, records,
//! ACLs, sessions, the access settings they are opened with, and the node operations. A leaf:
//! it depends on nothing else of this crate. The watchdog's publisher, which keeps the marker
//! and liveness node in step with the child, is [`crate::publisher`].

mod access;
mod acl;
mod nodes;
mod paths;
mod records;
pub mod secret;
pub mod server_version;
pub mod session;
pub mod tls_diagnosis;

pub use access::{ZkAccess, ZkAuth, ZkTls, ZkTlsIdentity};

pub use acl::{digest_id, DeniedLog, NodeAcls, NodeKind};
pub use nodes::{
    delete_if_present, delete_tree, delete_trees, ensure_dirs, put_persistent, put_persistent_all,
    remove_agent, RegistryError, Removed,
};
pub use paths::{AgentId, Layout, PathError, DEFAULT_ROOT, MAX_ID_LEN};
pub use records::{
    bound_command, decode, encode, session_hex, truncate_text, AgentKind, AgentState, Health,
    HealthStatus, LastExit, Liveness, Marker, RecordError, Timestamp, Versioned, MAX_COMMAND_ARGS,
    MAX_COMMAND_BYTES, MAX_LABELS, MAX_RECORD_BYTES, MAX_SHORT, MAX_STDERR_LINE,
    MAX_STDERR_TAIL_BYTES, MAX_TEXT, RECORD_VERSION,
};
pub use secret::Secret;
pub use session::{session_is_gone, ConnectError, Session};
