//! What can go wrong talking to a Kafka cluster, each failure saying what failed and where.

use kafka_protocol::messages::ApiKey;

/// A failed Kafka admin read: connecting, a timeout, a broker error code or a malformed answer,
/// each naming the broker address and the API involved.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The bootstrap list was empty.
    #[error("no bootstrap address given")]
    NoBootstrap,
    /// The TCP connection could not be made.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The deadline passed while connecting (`api` is `connect`) or during a request.
    #[error("timed out during {api} with {addr}")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The API in flight, or `connect`.
        api: &'static str,
    },
    /// Reading or writing the connection failed (the broker closed it, a reset, ...).
    #[error("{api} with {addr}: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// The API in flight.
        api: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No version of an API is spoken by both the broker and this client (the broker is too
    /// old, or too new, for it).
    #[error(
        "{addr} does not support {api} in a version this client speaks (broker: {broker}, \
         client: {client})"
    )]
    Unsupported {
        /// `host:port`.
        addr: String,
        /// The API.
        api: &'static str,
        /// The broker's version range (`none` when it does not offer the API at all).
        broker: String,
        /// This client's version range.
        client: String,
    },
    /// The broker answered with an error code.
    #[error("broker error {code} ({name}) for {api} from {addr}{context}")]
    Broker {
        /// `host:port`.
        addr: String,
        /// The API.
        api: &'static str,
        /// Kafka's error code.
        code: i16,
        /// Its name (`CoordinatorNotAvailable`, ...).
        name: String,
        /// What it was about (`: group g`, `: partition t-0`), possibly empty.
        context: String,
    },
    /// The answer could not be decoded, or contradicts itself or the request.
    #[error("malformed {api} answer from {addr}: {reason}")]
    Malformed {
        /// `host:port`.
        addr: String,
        /// The API.
        api: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A broker id named by an answer (leader, coordinator) is not among the brokers of the
    /// Metadata answer.
    #[error("broker {id} is not in the cluster's metadata")]
    UnknownBroker {
        /// The broker id.
        id: i32,
    },
}

impl KafkaError {
    /// A [`KafkaError::Broker`] for a non-zero `code`.
    pub(crate) fn broker(addr: &str, api: ApiKey, code: i16, context: String) -> Self {
        KafkaError::Broker {
            addr: addr.to_string(),
            api: api_name(api),
            code,
            name: error_name(code),
            context,
        }
    }
}

/// Kafka's name of error `code` (`CoordinatorNotAvailable`), or `unknown error code N`.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        None => "none".to_string(),
        Some(kafka_protocol::error::ResponseError::Unknown(c)) => format!("unknown error code {c}"),
        Some(e) => format!("{e}"),
    }
}

/// The name of an API, for messages.
pub fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ConsumerGroupDescribe => "ConsumerGroupDescribe",
        ApiKey::CreateTopics => "CreateTopics",
        _ => "another API",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_have_kafka_names() {
        assert_eq!(error_name(15), "CoordinatorNotAvailable");
        assert_eq!(error_name(3), "UnknownTopicOrPartition");
        assert_eq!(error_name(-1), "UnknownServerError");
        assert_eq!(error_name(0), "none");
        assert_eq!(error_name(30000), "unknown error code 30000");
    }

    #[test]
    fn a_broker_error_says_api_code_name_and_where() {
        let e = KafkaError::broker("h:9092", ApiKey::OffsetFetch, 16, ": group g".into());
        assert_eq!(
            e.to_string(),
            "broker error 16 (NotCoordinator) for OffsetFetch from h:9092: group g"
        );
    }
}
