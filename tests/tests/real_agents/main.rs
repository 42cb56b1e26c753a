//! End-to-end tests against the REAL programs: Apache Flume 1.11, Apache Kafka 4.4 and Kafka
//! Connect, installed from Maven Central by `scripts/agents.sh` and wrapped by `zkwatchdog`
//! exactly as docs/production.md tells an operator to (foreground, the JVM `exec`ed), with a real
//! ZooKeeper, `zkwatcher` and a real SMTP server with STARTTLS and AUTH; and zkwatchdog's Kafka
//! admin client against the real broker.
//!
//! JVMs are heavy for a 2-core machine: every test holds a [`jvm_slot`] while its JVMs run.
//!
//! [`jvm_slot`]: zkwatchdog_tests::agents::jvm_slot

mod common;
mod connect;
mod flume;
mod kafka;
mod kafka_client;
mod kafka_cluster;
