//! The chaos suite (`scripts/chaos.sh`, docs/chaos.md): a seeded, reproducible schedule of faults
//! ([`plan`]) carried out against the real programs — `zkwatchdog` wrapping `testchild`, two
//! `zkwatcher run` replicas, a 3-node ZooKeeper ensemble, the capturing SMTP server, one watchdog
//! per network namespace for real partitions ([`netns`]) — by [`world`], then scored from what the
//! SMTP server accepted, the on-call's view ([`mail`], [`score`]).
//!
//! The planning, the parsing of the mails and the scoring are pure and table-tested here; only
//! [`world`] and [`netns`] do I/O.

pub mod mail;
pub mod netns;
pub mod plan;
pub mod rng;
pub mod score;
pub mod world;
