//! Kafka (issue 13): what the probe of a Kafka broker and of consumer groups reads, as plain
//! data.
//!
//! - [`snapshot`]: the cluster's metadata and the groups' offsets as read at one instant; the
//!   pure evaluators (`probe::kafka`, `probe::lag`) judge these, the wire client produces them.

pub mod snapshot;
