//! The framing and version negotiation as pure functions, and a connection against a fake
//! broker that answers garbage, the wrong correlation id, an oversized frame or nothing.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::MetadataRequest;
use tokio::net::TcpListener;

use super::*;

fn range(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

#[test]
fn negotiation_takes_the_highest_common_version_or_none() {
    let cases = [
        (range(0, 13), Some((0, 12)), Some(12)),
        (range(0, 9), Some((1, 12)), Some(9)),
        (range(4, 6), Some((0, 3)), None),
        (range(1, 9), None, None),
        (range(0, 0), Some((0, 0)), Some(0)),
    ];
    for (client, broker, want) in cases {
        assert_eq!(negotiate(client, broker), want, "{client:?} {broker:?}");
    }
}

#[test]
fn answer_sizes_over_the_limit_or_negative_are_refused() {
    assert_eq!(answer_size(16i32.to_be_bytes()), Ok(16));
    assert!(answer_size((MAX_RESPONSE as i32 + 1).to_be_bytes()).is_err());
    assert!(answer_size((-1i32).to_be_bytes()).is_err());
    // What an HTTP server's first bytes would announce: 1.2 GB.
    assert!(answer_size(*b"HTTP").is_err());
}

#[test]
fn a_frame_carries_its_length_and_header_and_the_answer_header_is_checked() {
    let out = frame(ApiKey::Metadata, 12, 7, &MetadataRequest::default()).expect("frame");
    let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
    assert_eq!(len, out.len() - 4);
    assert_eq!(&out[4..8], &[0, 3, 0, 12], "api key 3, version 12");
    assert_eq!(&out[8..12], &7i32.to_be_bytes());
    // An answer: correlation id, (flexible header) no tagged fields, then the body.
    let answer = Bytes::from_static(&[0, 0, 0, 7, 0, 0xAB]);
    assert_eq!(
        unframe(ApiKey::Metadata, 12, 7, answer.clone()).as_deref(),
        Ok(&[0xAB][..])
    );
    let wrong = unframe(ApiKey::Metadata, 12, 8, answer).expect_err("a wrong correlation id");
    assert!(
        wrong.contains("correlation id 7 where 8 was sent"),
        "{wrong}"
    );
    assert!(unframe(ApiKey::Metadata, 12, 7, Bytes::from_static(&[0, 0])).is_err());
}

#[test]
fn a_field_the_version_lacks_is_an_encoding_error_not_a_panic() {
    let mut req = MetadataRequest::default();
    req.allow_auto_topic_creation = false;
    assert!(frame(ApiKey::Metadata, 3, 1, &req).is_err());
}

/// A fake broker on a loopback port: reads one request and answers `answer` (or nothing).
async fn fake(answer: Option<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut req = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        let _ = s.read_exact(&mut req).await;
        match answer {
            Some(a) => {
                let _ = s.write_all(&a).await;
                let _ = s.shutdown().await;
            }
            None => tokio::time::sleep(std::time::Duration::from_secs(30)).await,
        }
    });
    addr
}

fn deadline_ms(ms: u64) -> Instant {
    Instant::now() + std::time::Duration::from_millis(ms)
}

/// An ApiVersions answer (version 4) with correlation id `id` offering `apis`.
fn api_versions_answer(id: i32, apis: &[(ApiKey, i16, i16)]) -> Vec<u8> {
    let mut body = ApiVersionsResponse::default();
    body.api_keys = apis
        .iter()
        .map(|&(k, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = k as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_i32(id);
    // The crate encodes answers only with its `broker` feature: the body by hand (version 4,
    // flexible): error code, compact array of (key, min, max, no tags), throttle, no tags.
    buf.put_i16(0);
    buf.put_u8(apis.len() as u8 + 1);
    for a in &body.api_keys {
        buf.put_i16(a.api_key);
        buf.put_i16(a.min_version);
        buf.put_i16(a.max_version);
        buf.put_u8(0);
    }
    buf.put_i32(0);
    buf.put_u8(0);
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

#[tokio::test]
async fn a_negotiated_connection_knows_the_brokers_versions_and_names_a_missing_api() {
    let addr = fake(Some(api_versions_answer(1, &[(ApiKey::Metadata, 0, 12)]))).await;
    let conn = Connection::open(&addr, deadline_ms(5000))
        .await
        .expect("open");
    assert_eq!(conn.version::<MetadataRequest>().ok(), Some(12));
    let e = conn
        .version::<OffsetFetchRequest>()
        .expect_err("no OffsetFetch");
    assert_eq!(
        e.to_string(),
        format!(
            "{addr} does not support OffsetFetch in a version this client speaks (broker: none, \
             client: 1..9)"
        )
    );
}

#[tokio::test]
async fn garbage_a_wrong_correlation_id_a_huge_frame_and_silence_are_errors() {
    let cases: [(Option<Vec<u8>>, &str); 5] = [
        (
            Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
            "answer, over the limit",
        ),
        (
            Some(api_versions_answer(99, &[])),
            "correlation id 99 where 1 was sent",
        ),
        (
            Some(vec![0, 0, 0, 6, 0, 0, 0, 1, 0xFF, 0xFF]),
            "malformed ApiVersions answer",
        ),
        (Some(vec![0, 0, 0, 9, 0, 0]), "early eof"),
        (None, "timed out during ApiVersions"),
    ];
    for (answer, want) in cases {
        let addr = fake(answer).await;
        let e = Connection::open(&addr, deadline_ms(500))
            .await
            .expect_err("a bad answer");
        assert!(e.to_string().contains(want), "{e} (wanted {want})");
    }
}
