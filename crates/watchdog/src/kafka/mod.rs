//! Kafka (issue 13): what the probe of a Kafka broker and of consumer groups reads, as plain
//! data, and the small admin client that reads it.
//!
//! - [`snapshot`]: the cluster's metadata and the groups' offsets as read at one instant; the
//!   pure evaluators (`probe::kafka`, `probe::lag`) judge these, the wire client produces them.
//! - [`client`]: [`read_cluster`] and [`read_groups`], the reads the probe makes (Metadata,
//!   ListOffsets, ListGroups, FindCoordinator, OffsetFetch, DescribeGroups,
//!   ConsumerGroupDescribe), each call under one deadline.
//! - [`wire`]: one connection to one broker: framing, correlation ids, bounded answers, API
//!   versions negotiated with ApiVersions.
//! - [`answers`]: pure translations of the answers into the snapshot types.
//! - [`error`]: [`KafkaError`], saying what failed and where.

pub mod answers;
pub mod client;
pub mod error;
pub mod snapshot;
pub mod wire;

pub use client::{read_cluster, read_groups, Client, Groups};
pub use error::KafkaError;
