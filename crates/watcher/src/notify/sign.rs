//! Webhook signatures (DingTalk and Feishu robots with "signature" security), as pure functions
//! of the secret and the timestamp so that they can be checked against fixed vectors.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(message);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// DingTalk: `base64(HmacSHA256(key = secret, message = timestamp_ms + "\n" + secret))`.
///
/// The caller URL-encodes the result and appends `&timestamp=<ms>&sign=<sign>` to the robot URL.
pub fn dingtalk(secret: &str, timestamp_ms: u64) -> String {
    let message = format!("{timestamp_ms}\n{secret}");
    hmac_sha256_base64(secret.as_bytes(), message.as_bytes())
}

/// Feishu/Lark: `base64(HmacSHA256(key = timestamp_secs + "\n" + secret, message = ""))`.
///
/// Feishu's documented scheme uses the string-to-sign as the KEY and signs an empty message; the
/// result goes into the JSON body with `"timestamp"` (seconds, as a string).
pub fn feishu(secret: &str, timestamp_secs: u64) -> String {
    let key = format!("{timestamp_secs}\n{secret}");
    hmac_sha256_base64(key.as_bytes(), b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Both vectors were produced once with OpenSSL, independently of this code:
    //   printf '1700000000000\nSEC0123456789abcdef' \
    //     | openssl dgst -sha256 -hmac 'SEC0123456789abcdef' -binary | base64
    //   printf '' | openssl dgst -sha256 -hmac "$(printf '1700000000\nfeishu-secret')" -binary \
    //     | base64

    #[test]
    fn dingtalk_matches_openssl() {
        assert_eq!(
            dingtalk("SEC0123456789abcdef", 1_700_000_000_000),
            "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="
        );
    }

    #[test]
    fn feishu_matches_openssl() {
        assert_eq!(
            feishu("feishu-secret", 1_700_000_000),
            "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="
        );
    }

    #[test]
    fn signatures_depend_on_time_and_secret() {
        assert_ne!(dingtalk("a", 1), dingtalk("a", 2));
        assert_ne!(dingtalk("a", 1), dingtalk("b", 1));
        assert_ne!(feishu("a", 1), feishu("a", 2));
        assert_ne!(feishu("a", 1), feishu("b", 1));
    }
}
