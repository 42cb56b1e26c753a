//! One connection to one Kafka broker: the framing (a 4-byte big-endian length, the request
//! header in the version each API and version need, the body), correlation ids checked, answers
//! bounded in size, every connect and round trip under the caller's deadline, and the API
//! versions negotiated once with ApiVersions when the connection opens.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, ListGroupsRequest,
    ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::error::{api_name, KafkaError};

/// The largest answer accepted (a Metadata answer of a cluster with many thousand partitions is
/// a few MiB); anything larger is taken for garbage rather than allocated.
pub const MAX_RESPONSE: usize = 64 << 20;

/// The `client.id` the brokers see (in their request logs and quotas).
const CLIENT_ID: &str = "zkwatchdog";

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// A request this client sends, with its API key and answer type (the crate's own `Request`
/// trait needs its `broker` feature, which also builds the request decoders we never use).
pub trait Api: Message + Encodable {
    /// The API key.
    const KEY: ApiKey;
    /// The answer's type.
    type Response: Decodable;
}

macro_rules! apis {
    ($($key:ident: $req:ty => $resp:ty,)*) => {
        $(impl Api for $req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = $resp;
        })*
    };
}

apis! {
    Metadata: MetadataRequest => MetadataResponse,
    ListOffsets: ListOffsetsRequest => ListOffsetsResponse,
    ListGroups: ListGroupsRequest => ListGroupsResponse,
    FindCoordinator: FindCoordinatorRequest => FindCoordinatorResponse,
    OffsetFetch: OffsetFetchRequest => OffsetFetchResponse,
    DescribeGroups: DescribeGroupsRequest => DescribeGroupsResponse,
    ConsumerGroupDescribe: ConsumerGroupDescribeRequest => ConsumerGroupDescribeResponse,
}

/// The highest version both sides speak, or `None` when the ranges do not meet (or the broker
/// does not offer the API).
pub fn negotiate(client: VersionRange, broker: Option<(i16, i16)>) -> Option<i16> {
    let (min, max) = broker?;
    let both = client.intersect(&VersionRange { min, max });
    (!both.is_empty()).then_some(both.max)
}

/// A request framed for the wire: length, header, body.
pub fn frame<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    req: &R,
) -> Result<Bytes, String> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(|e| format!("encoding the request header: {e}"))?;
    req.encode(&mut buf, version)
        .map_err(|e| format!("encoding the request (version {version}): {e}"))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| "request too large".to_string())?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The body of an answer frame (without its length prefix), after its header: checks that the
/// header carries `correlation_id`.
pub fn unframe(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> Result<Bytes, String> {
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|e| format!("undecodable response header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "correlation id {} where {correlation_id} was sent",
            header.correlation_id
        ));
    }
    Ok(frame)
}

/// The size an answer's length prefix announces, if it is acceptable.
pub fn answer_size(prefix: [u8; 4]) -> Result<usize, String> {
    let n = i32::from_be_bytes(prefix);
    match usize::try_from(n) {
        Ok(n) if n <= MAX_RESPONSE => Ok(n),
        Ok(n) => Err(format!("{n}-byte answer, over the limit of {MAX_RESPONSE}")),
        Err(_) => Err(format!("negative answer length {n}")),
    }
}

/// An open connection with its negotiated API versions.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: TcpStream,
    deadline: Instant,
    next_correlation: i32,
    /// The broker's range for each API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions, all before `deadline`
    /// (which also bounds every later round trip).
    pub async fn open(addr: &str, deadline: Instant) -> Result<Self, KafkaError> {
        let stream = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| KafkaError::Timeout {
                addr: addr.to_string(),
                api: "connect",
            })?
            .map_err(|source| KafkaError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            deadline,
            next_correlation: 1,
            versions: HashMap::new(),
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// ApiVersions at this client's highest version; a broker that does not speak it answers
    /// UNSUPPORTED_VERSION with a version-0 body naming its own range, and is asked again.
    async fn negotiate(&mut self) -> Result<(), KafkaError> {
        let ours = ApiVersionsRequest::VERSIONS;
        let mut answer = self.api_versions(ours.max).await?;
        if answer.error_code == UNSUPPORTED_VERSION {
            let theirs = answer
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .map(|k| (k.min_version, k.max_version));
            let version = negotiate(ours, theirs)
                .ok_or_else(|| self.unsupported(ApiKey::ApiVersions, ours, theirs))?;
            answer = self.api_versions(version).await?;
        }
        if answer.error_code != 0 {
            return Err(KafkaError::broker(
                &self.addr,
                ApiKey::ApiVersions,
                answer.error_code,
                String::new(),
            ));
        }
        self.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// One ApiVersions round trip at `version`; an UNSUPPORTED_VERSION answer comes in version
    /// 0 whatever was asked, so a body that does not decode at `version` is tried at 0.
    async fn api_versions(&mut self, version: i16) -> Result<ApiVersionsResponse, KafkaError> {
        let mut req = ApiVersionsRequest::default();
        if version >= 3 {
            req.client_software_name = StrBytes::from_static_str("zkwatchdog");
            req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        }
        let body = self.round_trip(ApiKey::ApiVersions, version, &req).await?;
        match ApiVersionsResponse::decode(&mut body.clone(), version) {
            Ok(a) if a.error_code != UNSUPPORTED_VERSION || version == 0 => Ok(a),
            first => ApiVersionsResponse::decode(&mut body.clone(), 0)
                .ok()
                .filter(|a| a.error_code == UNSUPPORTED_VERSION)
                .map_or_else(
                    || {
                        first.map_err(|e| {
                            self.malformed(ApiKey::ApiVersions, format!("version {version}: {e}"))
                        })
                    },
                    Ok,
                ),
        }
    }

    /// The highest version of request `R` both sides speak.
    pub fn version<R: Api>(&self) -> Result<i16, KafkaError> {
        let theirs = self.versions.get(&(R::KEY as i16)).copied();
        negotiate(R::VERSIONS, theirs).ok_or_else(|| self.unsupported(R::KEY, R::VERSIONS, theirs))
    }

    /// Sends `req` at `version` (from [`Connection::version`]) and decodes the answer.
    pub async fn call<R: Api>(&mut self, req: &R, version: i16) -> Result<R::Response, KafkaError> {
        let api = R::KEY;
        let mut body = self.round_trip(api, version, req).await?;
        R::Response::decode(&mut body, version)
            .map_err(|e| self.malformed(api, format!("version {version}: {e}")))
    }

    /// Writes one request and reads its answer's body, before the deadline.
    async fn round_trip<R: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
    ) -> Result<Bytes, KafkaError> {
        let id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let out = frame(api, version, id, req).map_err(|reason| self.malformed(api, reason))?;
        let addr = self.addr.clone();
        let exchange = async {
            self.stream.write_all(&out).await?;
            let mut prefix = [0u8; 4];
            self.stream.read_exact(&mut prefix).await?;
            let size = answer_size(prefix).map_err(std::io::Error::other)?;
            let mut frame = vec![0u8; size];
            self.stream.read_exact(&mut frame).await?;
            Ok::<_, std::io::Error>(Bytes::from(frame))
        };
        let answer = timeout_at(self.deadline, exchange)
            .await
            .map_err(|_| KafkaError::Timeout {
                addr: addr.clone(),
                api: api_name(api),
            })?
            .map_err(|source| KafkaError::Io {
                addr,
                api: api_name(api),
                source,
            })?;
        unframe(api, version, id, answer).map_err(|reason| self.malformed(api, reason))
    }

    /// A [`KafkaError::Malformed`] about this connection's broker.
    pub fn malformed(&self, api: ApiKey, reason: String) -> KafkaError {
        KafkaError::Malformed {
            addr: self.addr.clone(),
            api: api_name(api),
            reason,
        }
    }

    /// A [`KafkaError::Broker`] about this connection's broker.
    pub fn broker_error(&self, api: ApiKey, code: i16, context: String) -> KafkaError {
        KafkaError::broker(&self.addr, api, code, context)
    }

    fn unsupported(
        &self,
        api: ApiKey,
        ours: VersionRange,
        theirs: Option<(i16, i16)>,
    ) -> KafkaError {
        KafkaError::Unsupported {
            addr: self.addr.clone(),
            api: api_name(api),
            broker: theirs.map_or_else(|| "none".to_string(), |(a, b)| format!("{a}..{b}")),
            client: ours.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
