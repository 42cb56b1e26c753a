//! The webhook channels: one HTTP POST per notice, shaped for the receiver (our own JSON, a
//! DingTalk or Feishu robot, a Slack incoming webhook), accepted only on 2xx and, where the
//! service reports errors in the body (DingTalk `errcode`, Feishu `code`), a zero code.
//!
//! The generic webhook carries an idempotency key (`Idempotency-Key` header, `idempotency_key`
//! field), the same on every send of the same notification (`key.rs`). DingTalk and Feishu
//! render markup, so their messages are made from a copy of the notice whose text from records
//! is defanged (`escape.rs`).
//!
//! The generic webhook's body is bounded like the email: the first agents' items in detail, with
//! their stderr tails and probe details trimmed as the email trims them, then compact items (no
//! `cause`), within [`GENERIC_BODY_CAP`] bytes; the body counts them (`items_detailed`,
//! `items_compact`). A batch whose items do not all fit, or that the receiver refuses as too
//! big (HTTP 413), is sent as two halves, recursively, each with its own idempotency key; one
//! agent refused as too big is sent once more with the brief text and a compact item. Parts the
//! receiver accepted are remembered, so that a retry of the whole batch does not send them again.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::{json, Value};

use super::render::{self, Rendered, DEFAULT_SUBJECT_PREFIX, MARKDOWN_CAP};
use super::settings::{Secret, WebhookKind, WebhookSettings};
use super::{escape, key, sign, BuildError, SendError};
use crate::incident::{Cause, Resolution, Severity};
use crate::notice::{Notice, NoticeItem, Origin};
use crate::notify::render::one_line;

/// Feishu rejects request bodies over 20 kB.
const FEISHU_TEXT_CAP: usize = 18_000;
/// Slack truncates messages after 40 000 characters.
const SLACK_TEXT_CAP: usize = 35_000;
/// DingTalk's answer when a robot sends more than 20 messages a minute.
const DINGTALK_RATE_LIMITED: i64 = 130_101;
/// How long DingTalk's rate limit lasts.
const DINGTALK_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest part of a reply body quoted in an error.
const REPLY_SNIPPET: usize = 200;
/// Hard cap on a generic webhook request body: the text (at most [`render::TEXT_CAP`]) and the
/// items. Receivers often refuse more (nginx's default is 1 MiB: the 413 answer splits).
pub(crate) const GENERIC_BODY_CAP: usize = 2_000_000;
/// At most this many items of a batch are in detail (with their cause), as in the email.
const GENERIC_DETAILED_MAX: usize = 20;
/// The detailed items stop here (bytes), as the email's detail budget.
const GENERIC_DETAIL_BUDGET: usize = 200_000;
/// Room kept for the counts and the JSON around the items.
const GENERIC_CLOSING_ROOM: usize = 1_024;
/// How many accepted idempotency keys the channel remembers (parts of split batches).
const ACCEPTED_MEMORY: usize = 4_096;
/// Most of a reply body read: the services' verdicts are small JSON objects, and an endpoint
/// answering megabytes must not make the watcher hold them.
const MAX_REPLY: usize = 64 * 1024;

/// Reads at most [`MAX_REPLY`] bytes of the body (a failed read ends it early).
async fn read_reply(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_REPLY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_REPLY {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

pub(crate) struct Webhook {
    name: String,
    kind: WebhookKind,
    /// Holds the access token of most services: never printed.
    url: Url,
    secret: Option<Secret>,
    min_interval: Duration,
    timeout: Duration,
    client: reqwest::Client,
    /// Idempotency keys of parts the receiver accepted lately, oldest first.
    accepted: Mutex<VecDeque<String>>,
}

/// Why one request did not go through.
enum Refusal {
    /// HTTP 413: a smaller body may pass.
    TooBig(SendError),
    /// Anything else: the dispatcher retries later.
    Other(SendError),
}

impl Refusal {
    fn into_error(self) -> SendError {
        match self {
            Refusal::TooBig(e) | Refusal::Other(e) => e,
        }
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.url.host_str())
            .field("signed", &self.secret.is_some())
            .field("min_interval", &self.min_interval)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub(crate) fn new(settings: &WebhookSettings) -> Result<Webhook, BuildError> {
        let url_error = |reason: String| BuildError::Url {
            name: settings.name.clone(),
            reason,
        };
        let url = Url::parse(&settings.url).map_err(|e| url_error(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(url_error(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("zkwatcher/", env!("CARGO_PKG_VERSION")))
            // A redirected POST turns into a GET: treat a redirect as the error it is.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| BuildError::Client {
                name: settings.name.clone(),
                source: source.without_url(),
            })?;
        Ok(Webhook {
            name: settings.name.clone(),
            kind: settings.kind,
            url,
            secret: settings.secret.clone(),
            min_interval: settings.min_interval,
            timeout: settings.timeout,
            client,
            accepted: Mutex::new(VecDeque::new()),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn min_interval(&self) -> Duration {
        self.min_interval
    }

    pub(crate) async fn send(&self, notice: &Notice, origin: &Origin) -> Result<(), SendError> {
        let clock = SystemTime::now();
        if self.kind == WebhookKind::Generic {
            return self.send_generic(notice, origin, clock).await;
        }
        let defanged;
        let notice = match self.kind {
            WebhookKind::DingTalk | WebhookKind::Feishu => {
                defanged = escape::defang_notice(notice);
                &defanged
            }
            WebhookKind::Generic | WebhookKind::Slack => notice,
        };
        let rendered = render::render(notice, origin, DEFAULT_SUBJECT_PREFIX);
        let now = clock
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secret = self.secret.as_ref().map(Secret::expose);
        let (url, body) = match self.kind {
            WebhookKind::DingTalk => (
                dingtalk_url(&self.url, secret, now.as_millis() as u64),
                dingtalk_payload(&rendered),
            ),
            WebhookKind::Feishu => {
                let text = render::chat_text(notice, origin, &rendered, "\n\n", FEISHU_TEXT_CAP);
                (
                    self.url.clone(),
                    feishu_payload(&text, secret, now.as_secs()),
                )
            }
            WebhookKind::Slack | WebhookKind::Generic => {
                let text = render::chat_text(notice, origin, &rendered, "\n", SLACK_TEXT_CAP);
                (self.url.clone(), json!({ "text": slack_escape(&text) }))
            }
        };
        // Plain JSON values: cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let reply = self
            .post(url, body, None)
            .await
            .map_err(Refusal::into_error)?;
        match self.kind {
            WebhookKind::DingTalk => self.check_code(&reply, &["errcode"], "errmsg"),
            WebhookKind::Feishu => self.check_code(&reply, &["code", "StatusCode"], "msg"),
            WebhookKind::Generic | WebhookKind::Slack => Ok(()),
        }
    }

    /// The generic webhook: bounded bodies, split in halves when too big (module
    /// documentation); `Ok` once the receiver accepted every part.
    async fn send_generic(
        &self,
        notice: &Notice,
        origin: &Origin,
        clock: SystemTime,
    ) -> Result<(), SendError> {
        // Depth first, the first half before the second: parts go out in the notice's order.
        let mut todo: Vec<(Cow<'_, Notice>, bool)> = vec![(Cow::Borrowed(notice), false)];
        while let Some((part, brief)) = todo.pop() {
            let idempotency_key = key::notification_key(&self.name, &part, clock);
            if self.was_accepted(&idempotency_key) {
                continue;
            }
            let rendered = match brief {
                false => render::render(&part, origin, DEFAULT_SUBJECT_PREFIX),
                true => render::render_brief(&part, origin, DEFAULT_SUBJECT_PREFIX),
            };
            let body = generic_body(&part, origin, &rendered, &idempotency_key, brief);
            if body.bytes.len() > GENERIC_BODY_CAP || body.left_out > 0 || rendered.unlisted > 0 {
                if let Some(halves) = halves(&part) {
                    todo.extend(halves.into_iter().rev().map(|h| (Cow::Owned(h), false)));
                    continue;
                }
            }
            match self
                .post(self.url.clone(), body.bytes, Some(&idempotency_key))
                .await
            {
                Ok(_) => self.remember(idempotency_key),
                Err(Refusal::TooBig(err)) => match halves(&part) {
                    Some(halves) => {
                        tracing::warn!(
                            channel = %self.name,
                            agents = part_len(&part),
                            error = %err.message,
                            "the webhook refused a body as too big; sending it in two halves"
                        );
                        todo.extend(halves.into_iter().rev().map(|h| (Cow::Owned(h), false)));
                    }
                    None if !brief && matches!(*part, Notice::Incidents { .. }) => {
                        todo.push((part, true))
                    }
                    None => return Err(err),
                },
                Err(Refusal::Other(err)) => return Err(err),
            }
        }
        Ok(())
    }

    /// One POST of a JSON `body`; the reply (at most [`MAX_REPLY`] bytes) on a 2xx answer.
    async fn post(
        &self,
        url: Url,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<String, Refusal> {
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Refusal::Other(self.fail(describe(&e.without_url(), self.timeout))))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reply = read_reply(response).await;

        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after
                .map(|d| format!(", retry after {}s", d.as_secs()))
                .unwrap_or_default();
            return Err(Refusal::Other(SendError {
                retry_after,
                ..self.fail(format!("rate limited (HTTP 429){wait}"))
            }));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(Refusal::TooBig(
                self.fail(format!("HTTP {status}: {}", snippet(&reply))),
            ));
        }
        if !status.is_success() {
            return Err(Refusal::Other(SendError {
                retry_after,
                ..self.fail(format!("HTTP {status}: {}", snippet(&reply)))
            }));
        }
        Ok(reply)
    }

    fn was_accepted(&self, key: &str) -> bool {
        let accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        accepted.iter().any(|a| a == key)
    }

    fn remember(&self, key: String) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        if accepted.len() >= ACCEPTED_MEMORY {
            accepted.pop_front();
        }
        accepted.push_back(key);
    }

    /// DingTalk and Feishu answer 200 even when they refuse a message; the verdict is a code in
    /// the JSON reply.
    fn check_code(&self, reply: &str, codes: &[&str], message: &str) -> Result<(), SendError> {
        let value: Value = serde_json::from_str(reply).map_err(|_| {
            self.fail(format!(
                "the reply is not the service's JSON: {}",
                snippet(reply)
            ))
        })?;
        let code = codes
            .iter()
            .find_map(|c| value.get(*c).and_then(Value::as_i64));
        let detail = value
            .get(message)
            .or_else(|| value.get("StatusMessage"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match code {
            Some(0) => Ok(()),
            Some(code) => Err(SendError {
                retry_after: (self.kind == WebhookKind::DingTalk && code == DINGTALK_RATE_LIMITED)
                    .then_some(DINGTALK_RETRY_AFTER),
                ..self.fail(format!("refused with code {code}: {}", snippet(detail)))
            }),
            None => Err(self.fail(format!(
                "the reply has no {} field: {}",
                codes.join(" or "),
                snippet(reply)
            ))),
        }
    }

    fn fail(&self, reason: String) -> SendError {
        SendError::new(format!(
            "webhook {} ({}): {reason}",
            self.name,
            self.kind.as_str()
        ))
    }
}

/// The robot URL with `&timestamp=<ms>&sign=<urlencoded signature>` appended when a secret is
/// set; the existing query (`access_token=…`) is kept.
fn dingtalk_url(url: &Url, secret: Option<&str>, timestamp_ms: u64) -> Url {
    let mut url = url.clone();
    if let Some(secret) = secret {
        url.query_pairs_mut()
            .append_pair("timestamp", &timestamp_ms.to_string())
            .append_pair("sign", &sign::dingtalk(secret, timestamp_ms));
    }
    url
}

fn dingtalk_payload(rendered: &Rendered) -> Value {
    // DingTalk's title shows in the notification preview; the markdown is already capped.
    debug_assert!(rendered.markdown.len() <= MARKDOWN_CAP);
    json!({
        "msgtype": "markdown",
        "markdown": { "title": rendered.subject, "text": rendered.markdown },
    })
}

fn feishu_payload(text: &str, secret: Option<&str>, timestamp_secs: u64) -> Value {
    let mut body = json!({
        "msg_type": "text",
        "content": { "text": text },
    });
    if let (Some(secret), Value::Object(map)) = (secret, &mut body) {
        map.insert("timestamp".into(), timestamp_secs.to_string().into());
        map.insert("sign".into(), sign::feishu(secret, timestamp_secs).into());
    }
    body
}

/// Slack's three control characters in message text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The generic webhook's document.
#[derive(Debug, Serialize)]
struct GenericPayload<'a> {
    source: &'static str,
    event: &'static str,
    /// The same on every send of the same notification (also the `Idempotency-Key` header).
    idempotency_key: &'a str,
    watcher_host: &'a str,
    zk_hosts: &'a str,
    root: &'a str,
    subject: &'a str,
    text: &'a str,
    items: Vec<Value>,
    /// `incidents` only: how many of `items` are in detail (with their `cause`, tails
    /// trimmed), and how many were left compact (no `cause`) to bound the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    items_detailed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items_compact: Option<usize>,
    /// Agents of the batch with no item at all (only when the batch cannot be split).
    #[serde(skip_serializing_if = "is_zero")]
    items_left_out: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    down_for_ms: Option<u64>,
    /// `zk-lost` only: `unreachable`, `tls` or `refused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_kind: Option<&'static str>,
    /// `zk-lost` only: why the watcher cannot work with ZooKeeper (`null` when the client said
    /// no more than "disconnected").
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Option<&'a str>>,
}

#[derive(Debug, Serialize)]
struct GenericItem<'a> {
    agent: &'a str,
    phase: &'static str,
    headline: &'static str,
    severity: Severity,
    summary: String,
    /// Bounded ([`render::bounded_cause`]); absent in a compact item.
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<Cause>,
    /// Set on the items left compact to bound the body.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    compact: bool,
    occurrences: u32,
    opened_at: String,
    resolved_at: Option<String>,
    resolution: Option<&'a Resolution>,
    host: Option<&'a str>,
    kind: Option<&'static str>,
    state: Option<&'static str>,
    restarts: Option<u64>,
    generation: Option<u64>,
    /// The marker's `conflict`: another watchdog most likely uses the same agent id.
    #[serde(skip_serializing_if = "Option::is_none")]
    conflict: Option<&'a str>,
}

fn generic_item(item: &NoticeItem, compact: bool) -> GenericItem<'_> {
    let marker = item.marker.as_ref();
    GenericItem {
        agent: &item.agent,
        phase: key::phase_name(item.phase),
        headline: item.cause.headline(),
        severity: item.cause.severity(),
        summary: render::bounded_summary(item),
        cause: (!compact).then(|| render::bounded_cause(&item.cause)),
        compact,
        occurrences: item.occurrences,
        opened_at: item.opened_at.to_string(),
        resolved_at: item.resolved_at.map(|t| t.to_string()),
        resolution: item.resolution.as_ref(),
        host: marker.map(|m| m.host.as_str()),
        kind: marker.map(|m| m.kind.as_str()),
        state: marker.map(|m| m.state.as_str()),
        restarts: marker.map(|m| m.restarts),
        generation: marker.map(|m| m.generation),
        conflict: marker.and_then(|m| m.conflict.as_deref()),
    }
}

/// A generic webhook body and how many agents of its batch have no item in it.
struct GenericBody {
    bytes: Vec<u8>,
    left_out: usize,
}

/// The generic webhook's document (module documentation): `brief` leaves every item compact.
fn generic_body(
    notice: &Notice,
    origin: &Origin,
    rendered: &Rendered,
    idempotency_key: &str,
    brief: bool,
) -> GenericBody {
    let trouble = match notice {
        Notice::ZkLost { trouble, .. } => Some(trouble),
        _ => None,
    };
    let (event, since, down_for) = match notice {
        Notice::Incidents { .. } => ("incidents", None, None),
        Notice::ZkLost {
            since, down_for, ..
        } => ("zk-lost", Some(since), Some(down_for)),
        Notice::ZkBack { since, down_for } => ("zk-back", Some(since), Some(down_for)),
        Notice::Test => ("test", None, None),
    };
    let mut payload = GenericPayload {
        source: "zkwatcher",
        event,
        idempotency_key,
        watcher_host: &origin.watcher_host,
        zk_hosts: &origin.zk_hosts,
        root: &origin.root,
        subject: &rendered.subject,
        text: &rendered.text,
        items: Vec::new(),
        items_detailed: None,
        items_compact: None,
        items_left_out: 0,
        since: since.map(|t| t.to_string()),
        down_for_ms: down_for.map(|d| d.as_millis() as u64),
        reason_kind: trouble.map(|t| t.kind()),
        reason: trouble.map(|t| t.reason()),
    };
    // Plain structs of strings, numbers and the serializable records: cannot fail.
    if let Notice::Incidents { items } = notice {
        let around = json_len(&payload) + GENERIC_CLOSING_ROOM;
        let budget = GENERIC_BODY_CAP.saturating_sub(around);
        let (mut used, mut detailed, mut compact) = (0, 0, 0);
        for (index, item) in items.iter().enumerate() {
            let mut value = None;
            if !brief && index < GENERIC_DETAILED_MAX {
                let v = serde_json::to_value(generic_item(item, false)).unwrap_or(Value::Null);
                let len = json_len(&v) + 1;
                if index == 0 || used + len <= GENERIC_DETAIL_BUDGET.min(budget) {
                    value = Some((v, len, true));
                }
            }
            let (v, len, in_detail) = value.unwrap_or_else(|| {
                let v = serde_json::to_value(generic_item(item, true)).unwrap_or(Value::Null);
                let len = json_len(&v) + 1;
                (v, len, false)
            });
            if index > 0 && used + len > budget {
                break;
            }
            used += len;
            payload.items.push(v);
            match in_detail {
                true => detailed += 1,
                false => compact += 1,
            }
        }
        payload.items_detailed = Some(detailed);
        payload.items_compact = Some(compact);
        payload.items_left_out = items.len() - payload.items.len();
    }
    GenericBody {
        bytes: serde_json::to_vec(&payload).unwrap_or_default(),
        left_out: payload.items_left_out,
    }
}

/// The size of `value` as JSON, for the body's budget.
fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0)
}

/// The two halves of a grouped notice; `None` for a notice of one agent or none.
fn halves(notice: &Notice) -> Option<[Notice; 2]> {
    let Notice::Incidents { items } = notice else {
        return None;
    };
    if items.len() < 2 {
        return None;
    }
    let (first, second) = items.split_at(items.len() / 2);
    let part = |items: &[NoticeItem]| Notice::Incidents {
        items: items.to_vec(),
    };
    Some([part(first), part(second)])
}

fn part_len(notice: &Notice) -> usize {
    match notice {
        Notice::Incidents { items } => items.len(),
        _ => 0,
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A reqwest error with its causes, on one line (`error sending request: … Connection refused`).
fn describe(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("no answer within {}", render::humanize(timeout));
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    one_line(&text)
}

fn snippet(s: &str) -> String {
    let s = one_line(s);
    match s.char_indices().nth(REPLY_SNIPPET) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None if s.is_empty() => "(empty reply)".to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    use zkwatchdog::registry::Timestamp;

    use super::*;
    use crate::notice::{Phase, ZkTrouble};
    use crate::notify::render::tests::{crashed, lost, origin};
    use crate::notify::Channel;

    const TOKEN: &str = "tok-4f1e";
    const SECRET: &str = "SEC-hunter2-signing";

    fn settings(kind: WebhookKind, url: String, secret: Option<&str>) -> WebhookSettings {
        WebhookSettings {
            name: format!("{}-1", kind.as_str()),
            kind,
            url,
            secret: secret.map(|s| Secret(s.to_string())),
            timeout: Duration::from_secs(5),
            min_interval: Duration::from_secs(3),
        }
    }

    async fn mock(reply: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(reply)
            .mount(&server)
            .await;
        server
    }

    async fn only_request(server: &MockServer) -> Request {
        let mut requests = server.received_requests().await.expect("recording is on");
        assert_eq!(requests.len(), 1, "exactly one POST");
        requests.remove(0)
    }

    fn notice() -> Notice {
        Notice::Incidents {
            items: vec![crashed("flume-nginx@host-a")],
        }
    }

    /// HMAC-SHA256, base64: computed here with the hmac crate directly, independently of
    /// `sign.rs`.
    fn hmac_b64(key: &[u8], message: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(message);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn assert_clean(err: &SendError) {
        assert!(!err.message.contains(TOKEN), "{}", err.message);
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(!err.message.contains('\n'), "{}", err.message);
    }

    #[tokio::test]
    async fn a_huge_error_body_is_read_only_up_to_the_cap() {
        // 16 MB of HTML in a 502: the error quotes a snippet, and only 64 KiB are ever held.
        let server =
            mock(ResponseTemplate::new(502).set_body_string("<p>".repeat(5_500_000))).await;
        let url = format!("{}/hook", server.uri());
        let response = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .expect("an answer");
        assert_eq!(read_reply(response).await.len(), MAX_REPLY);
        let channel = Channel::webhook(&settings(WebhookKind::Generic, url, None)).expect("build");
        let err = channel.send(&notice(), &origin()).await.expect_err("502");
        assert!(err.message.contains("HTTP 502"), "{}", err.message);
        assert!(
            err.message.len() < 2 * REPLY_SNIPPET + 200,
            "{}",
            err.message.len()
        );
        assert_clean(&err);
    }

    #[tokio::test]
    async fn dingtalk_markdown_with_a_verifiable_signature() {
        let server =
            mock(ResponseTemplate::new(200).set_body_json(json!({"errcode": 0, "errmsg": "ok"})))
                .await;
        let url = format!("{}/hook?access_token={TOKEN}", server.uri());
        let channel =
            Channel::webhook(&settings(WebhookKind::DingTalk, url, Some(SECRET))).expect("build");
        assert_eq!(channel.name(), "dingtalk-1");
        assert_eq!(channel.min_interval(), Duration::from_secs(3));
        assert!(!format!("{channel:?}").contains(TOKEN));
        channel.send(&notice(), &origin()).await.expect("accepted");

        let request = only_request(&server).await;
        let query: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in {query:?}"))
        };
        assert_eq!(get("access_token"), TOKEN, "existing query kept");
        let timestamp = get("timestamp");
        let ms: u128 = timestamp.parse().expect("milliseconds");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        assert!(now - ms < 60_000, "a current timestamp in ms: {ms}");
        // query_pairs() has already URL-decoded the sign.
        let want = hmac_b64(
            SECRET.as_bytes(),
            format!("{timestamp}\n{SECRET}").as_bytes(),
        );
        assert_eq!(get("sign"), want);
        // And it was URL-encoded on the wire (base64 '+', '/', '=' are escaped).
        let raw = request.url.query().expect("query");
        let raw_sign = raw
            .split('&')
            .find_map(|pair| pair.strip_prefix("sign="))
            .expect("sign in the raw query");
        assert!(!raw_sign.contains(['+', '/', '=']), "{raw_sign}");

        let body: Value = request.body_json().expect("json");
        assert_eq!(body["msgtype"], "markdown");
        let title = body["markdown"]["title"].as_str().expect("title");
        assert_eq!(
            title,
            "[zkwatchdog] CRASHED flume-nginx@host-a: killed by SIGKILL after 3h12m"
        );
        let text = body["markdown"]["text"].as_str().expect("text");
        assert!(text.contains("flume-nginx@host-a"), "{text}");
        assert!(text.len() <= MARKDOWN_CAP);
        let agent = request
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            agent,
            Some(concat!("zkwatcher/", env!("CARGO_PKG_VERSION")))
        );
    }

    #[tokio::test]
    async fn dingtalk_without_secret_is_not_signed() {
        let server =
            mock(ResponseTemplate::new(200).set_body_json(json!({"errcode": 0, "errmsg": "ok"})))
                .await;
        let url = format!("{}/hook?access_token={TOKEN}", server.uri());
        let channel = Channel::webhook(&settings(WebhookKind::DingTalk, url, None)).expect("build");
        channel.send(&notice(), &origin()).await.expect("accepted");
        let request = only_request(&server).await;
        assert_eq!(
            request.url.query(),
            Some(format!("access_token={TOKEN}").as_str())
        );
    }

    #[tokio::test]
    async fn dingtalk_errcode_is_a_refusal() {
        let server = mock(ResponseTemplate::new(200).set_body_json(
            json!({"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/]"}),
        ))
        .await;
        let url = format!("{}/hook?access_token={TOKEN}", server.uri());
        let channel =
            Channel::webhook(&settings(WebhookKind::DingTalk, url, Some(SECRET))).expect("build");
        let err = channel
            .send(&notice(), &origin())
            .await
            .expect_err("refused");
        assert!(err.message.contains("dingtalk-1"), "{}", err.message);
        assert!(err.message.contains("310000"), "{}", err.message);
        assert!(err.message.contains("sign not match"), "{}", err.message);
        assert_eq!(err.retry_after, None);
        assert_clean(&err);

        let server = server_with(json!({"errcode": 130101, "errmsg": "send too fast"})).await;
        let url = format!("{}/hook?access_token={TOKEN}", server.uri());
        let channel = Channel::webhook(&settings(WebhookKind::DingTalk, url, None)).expect("build");
        let err = channel.send(&notice(), &origin()).await.expect_err("rate");
        assert_eq!(err.retry_after, Some(Duration::from_secs(60)));
    }

    async fn server_with(body: Value) -> MockServer {
        mock(ResponseTemplate::new(200).set_body_json(body)).await
    }

    #[tokio::test]
    async fn feishu_text_with_signature_in_the_body() {
        let server = server_with(json!({"code": 0, "msg": "success", "data": {}})).await;
        let url = format!("{}/hook", server.uri());
        let channel =
            Channel::webhook(&settings(WebhookKind::Feishu, url, Some(SECRET))).expect("build");
        channel.send(&notice(), &origin()).await.expect("accepted");

        let body: Value = only_request(&server).await.body_json().expect("json");
        assert_eq!(body["msg_type"], "text");
        let text = body["content"]["text"].as_str().expect("text");
        assert!(
            text.starts_with(
                "[zkwatchdog] CRASHED flume-nginx@host-a: killed by SIGKILL after 3h12m\n\n"
            ),
            "{text}"
        );
        assert!(text.contains("zkCli.sh -server"), "{text}");
        let timestamp = body["timestamp"].as_str().expect("timestamp is a string");
        let secs: u64 = timestamp.parse().expect("seconds");
        assert!(
            secs > 1_700_000_000 && secs < 10_000_000_000,
            "seconds, not ms"
        );
        // Feishu: the string to sign is the KEY, the message is empty.
        let want = hmac_b64(format!("{timestamp}\n{SECRET}").as_bytes(), b"");
        assert_eq!(body["sign"], want);
    }

    #[tokio::test]
    async fn feishu_codes_old_and_new() {
        let old = server_with(json!({"StatusCode": 0, "StatusMessage": "success"})).await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Feishu,
            format!("{}/hook", old.uri()),
            None,
        ))
        .expect("build");
        channel
            .send(&Notice::Test, &origin())
            .await
            .expect("old reply accepted");
        let body: Value = only_request(&old).await.body_json().expect("json");
        assert!(body.get("sign").is_none(), "unsigned without a secret");

        let refused = server_with(json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"})).await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Feishu,
            format!("{}/hook", refused.uri()),
            Some(SECRET),
        ))
        .expect("build");
        let err = channel
            .send(&Notice::Test, &origin())
            .await
            .expect_err("refused");
        assert!(err.message.contains("19021"), "{}", err.message);
        assert!(err.message.contains("feishu-1"), "{}", err.message);
        assert_clean(&err);

        let garbage = mock(ResponseTemplate::new(200).set_body_string("<html>proxy</html>")).await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Feishu,
            format!("{}/hook", garbage.uri()),
            None,
        ))
        .expect("build");
        let err = channel
            .send(&Notice::Test, &origin())
            .await
            .expect_err("not json");
        assert!(
            err.message.contains("not the service's JSON"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn slack_text_and_429_retry_after() {
        let ok = mock(ResponseTemplate::new(200).set_body_string("ok")).await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Slack,
            format!("{}/hook", ok.uri()),
            None,
        ))
        .expect("build");
        channel.send(&notice(), &origin()).await.expect("accepted");
        let body: Value = only_request(&ok).await.body_json().expect("json");
        let text = body["text"].as_str().expect("text");
        assert!(
            text.starts_with(
                "[zkwatchdog] CRASHED flume-nginx@host-a: killed by SIGKILL after 3h12m\n"
            ),
            "{text}"
        );
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only text");

        let limited = mock(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "7")
                .set_body_string("rate_limited"),
        )
        .await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Slack,
            format!("{}/hook", limited.uri()),
            None,
        ))
        .expect("build");
        let err = channel.send(&notice(), &origin()).await.expect_err("429");
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        assert!(err.message.contains("slack-1"), "{}", err.message);
        assert!(err.message.contains("429"), "{}", err.message);
    }

    #[tokio::test]
    async fn generic_webhooks_carry_an_idempotency_key_stable_across_resends() {
        let server = mock(ResponseTemplate::new(204)).await;
        let url = format!("{}/hook", server.uri());
        let notice = Notice::Incidents {
            items: vec![crashed("a@host-a"), lost("b@host-b", Timestamp::now())],
        };
        // Two leaders (two channels) send the same notification, then the next phase.
        for _ in 0..2 {
            let channel = Channel::webhook(&settings(WebhookKind::Generic, url.clone(), None))
                .expect("build");
            channel.send(&notice, &origin()).await.expect("accepted");
        }
        let mut resolved = notice.clone();
        if let Notice::Incidents { items } = &mut resolved {
            items[0].phase = Phase::Resolved;
        }
        Channel::webhook(&settings(WebhookKind::Generic, url, None))
            .expect("build")
            .send(&resolved, &origin())
            .await
            .expect("accepted");

        let requests = server.received_requests().await.expect("recording is on");
        assert_eq!(requests.len(), 3);
        let keys: Vec<(String, String)> = requests
            .iter()
            .map(|r| {
                let header = r
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .expect("Idempotency-Key header")
                    .to_string();
                let body: Value = r.body_json().expect("json");
                let field = body["idempotency_key"].as_str().expect("field").to_string();
                (header, field)
            })
            .collect();
        for (header, field) in &keys {
            assert_eq!(header, field);
            assert_eq!(header.len(), 32, "{header}");
        }
        assert_eq!(keys[0], keys[1], "a resend carries the same key");
        assert_ne!(keys[0], keys[2], "another phase, another key");
    }

    /// Hand-written markup in every field that comes from a record.
    fn injected(field: &str, payload: &str) -> NoticeItem {
        let mut item = crashed("x@h");
        let Cause::Crashed { exit, .. } = &mut item.cause else {
            unreachable!("crashed() is a crash");
        };
        match field {
            "agent id" => item.agent = format!("x{payload}@h"),
            "signal" => exit.signal = Some(format!("SIGKILL{payload}")),
            "stderr" => exit.stderr_tail.push(format!("ERROR {payload}")),
            "probe restart" => exit.probe_restart = Some(format!("fill 95% {payload}")),
            "daemonized" => exit.daemonized = Some(format!("daemonized {payload}")),
            "host" => {
                if let Some(m) = &mut item.marker {
                    m.host = format!("host-a {payload}");
                }
            }
            "health detail" => {
                item.cause = Cause::Degraded {
                    detail: format!("task 0 FAILED {payload}\ntrace: {payload}\n{payload}"),
                }
            }
            "command line" => {
                if let Some(m) = &mut item.marker {
                    m.command.push(payload.to_string());
                }
            }
            other => unreachable!("{other}"),
        }
        item
    }

    #[tokio::test]
    async fn dingtalk_and_feishu_never_render_markup_from_records() {
        let payloads = [
            "[click](http://evil.example/phish)",
            "![x](http://evil.example/p.png)",
            "<a href=\"http://evil.example\">x</a>",
            "<font color=red>URGENT</font>",
            "<at user_id=\"all\">everyone</at>",
            "[ref]\n[ref]: http://evil.example",
            "`code` \n# heading\n- list",
        ];
        let fields = [
            "agent id",
            "signal",
            "stderr",
            "probe restart",
            "daemonized",
            "host",
            "health detail",
            "command line",
        ];
        for kind in [WebhookKind::DingTalk, WebhookKind::Feishu] {
            let reply = match kind {
                WebhookKind::DingTalk => json!({"errcode": 0}),
                _ => json!({"code": 0}),
            };
            let server = server_with(reply).await;
            let channel = Channel::webhook(&settings(kind, format!("{}/hook", server.uri()), None))
                .expect("build");
            for field in fields {
                for payload in payloads {
                    // Alone, and in a group (the compact form).
                    for items in [
                        vec![injected(field, payload)],
                        vec![injected(field, payload); 25],
                    ] {
                        channel
                            .send(&Notice::Incidents { items }, &origin())
                            .await
                            .expect("accepted");
                    }
                }
            }
            let requests = server.received_requests().await.expect("recording is on");
            assert_eq!(requests.len(), fields.len() * payloads.len() * 2);
            for request in requests {
                let body: Value = request.body_json().expect("json");
                let text = match kind {
                    WebhookKind::DingTalk => body["markdown"]["text"].as_str(),
                    _ => body["content"]["text"].as_str(),
                }
                .expect("text")
                .to_string();
                for bad in [
                    "](",
                    "![",
                    "<",
                    "`code`",
                    "[ref]",
                    "\n# heading",
                    "\n- list",
                ] {
                    assert!(
                        !text.contains(bad),
                        "{} rendered {bad:?} from a record:\n{text}",
                        kind.as_str()
                    );
                }
                // What was written is still there to read, defanged.
                assert!(
                    text.contains("［click］(http://evil.example/phish)")
                        || text.contains("!［x］")
                        || text.contains("＜")
                        || text.contains("［ref］")
                        || text.contains("｀code｀")
                        || !text.contains("evil"),
                    "{text}"
                );
            }
        }
    }

    #[tokio::test]
    async fn generic_payload_lists_items() {
        let server = mock(ResponseTemplate::new(204)).await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Generic,
            format!("{}/hook", server.uri()),
            None,
        ))
        .expect("build");
        let mut gone = lost("b@host-b", Timestamp::now());
        gone.marker = None;
        let notice = Notice::Incidents {
            items: vec![crashed("a@host-a"), gone],
        };
        channel.send(&notice, &origin()).await.expect("accepted");
        let body: Value = only_request(&server).await.body_json().expect("json");
        assert_eq!(body["source"], "zkwatcher");
        assert_eq!(body["event"], "incidents");
        assert_eq!(body["watcher_host"], "w1");
        assert_eq!(body["subject"], "[zkwatchdog] 2 agents: 1 CRASHED, 1 LOST");
        assert!(body["text"]
            .as_str()
            .is_some_and(|t| t.contains("a@host-a")));
        let items = body["items"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        let a = &items[0];
        assert_eq!(a["agent"], "a@host-a");
        assert_eq!(a["phase"], "opened");
        assert_eq!(a["headline"], "CRASHED");
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["cause"]["kind"], "crashed");
        assert_eq!(a["cause"]["exit"]["signal"], "SIGKILL");
        assert_eq!(a["host"], "host-a");
        assert_eq!(a["kind"], "flume");
        assert_eq!(a["state"], "restarting");
        assert_eq!(a["restarts"], 4);
        assert_eq!(a["generation"], 5);
        assert!(a["opened_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(a["resolved_at"], Value::Null);
        let b = &items[1];
        assert_eq!(b["headline"], "LOST");
        assert_eq!(b["host"], Value::Null, "marker gone");

        for (notice, event) in [
            (
                Notice::ZkLost {
                    since: Timestamp::now(),
                    down_for: Duration::from_secs(65),
                    trouble: ZkTrouble::Unreachable(Some("no available hosts".into())),
                },
                "zk-lost",
            ),
            (
                Notice::ZkBack {
                    since: Timestamp::now(),
                    down_for: Duration::from_secs(120),
                },
                "zk-back",
            ),
            (Notice::Test, "test"),
        ] {
            let server = mock(ResponseTemplate::new(200)).await;
            let channel = Channel::webhook(&settings(
                WebhookKind::Generic,
                format!("{}/hook", server.uri()),
                None,
            ))
            .expect("build");
            channel.send(&notice, &origin()).await.expect("accepted");
            let body: Value = only_request(&server).await.body_json().expect("json");
            assert_eq!(body["event"], event);
            assert_eq!(body["items"], json!([]));
            let zk_lost = event == "zk-lost";
            assert_eq!(body.get("reason").is_some(), zk_lost, "{body}");
            if zk_lost {
                assert_eq!(body["reason_kind"], "unreachable");
                assert_eq!(body["reason"], "no available hosts");
            }
        }
    }

    /// The ACL explanation a watcher with the wrong password gets for its election node.
    const NOAUTH: &str = "zookeeper refused access to /zkwatchdog/watchers/n- (NoAuth): this \
        session is authenticated as digest:watcher:x, but /zkwatchdog/watchers/n- or its parent \
        /zkwatchdog/watchers belongs to another identity; check zk-auth's user and password";

    fn refused() -> Notice {
        Notice::ZkLost {
            since: Timestamp::now(),
            down_for: Duration::from_secs(90),
            trouble: ZkTrouble::Refused(NOAUTH.into()),
        }
    }

    /// Every webhook kind carries why the watcher cannot work with ZooKeeper: a field in our
    /// JSON, a line in the chat services' text.
    #[tokio::test]
    async fn every_kind_says_why_zookeeper_is_lost() {
        let server = mock(ResponseTemplate::new(200)).await;
        let url = format!("{}/hook", server.uri());
        let channel = Channel::webhook(&settings(WebhookKind::Generic, url, None)).expect("build");
        channel.send(&refused(), &origin()).await.expect("accepted");
        let body: Value = only_request(&server).await.body_json().expect("json");
        assert_eq!(body["event"], "zk-lost");
        assert_eq!(body["reason_kind"], "refused");
        assert_eq!(body["reason"], NOAUTH);
        assert!(body["subject"]
            .as_str()
            .is_some_and(|s| s.ends_with("credentials refused")));

        let ok = json!({"errcode": 0, "code": 0, "errmsg": "ok"});
        for kind in [
            WebhookKind::DingTalk,
            WebhookKind::Feishu,
            WebhookKind::Slack,
        ] {
            let server = mock(ResponseTemplate::new(200).set_body_json(ok.clone())).await;
            let url = format!("{}/hook", server.uri());
            let channel = Channel::webhook(&settings(kind, url, None)).expect("build");
            channel.send(&refused(), &origin()).await.expect("accepted");
            let body: Value = only_request(&server).await.body_json().expect("json");
            let text = match kind {
                WebhookKind::DingTalk => body["markdown"]["text"].as_str(),
                WebhookKind::Feishu => body["content"]["text"].as_str(),
                _ => body["text"].as_str(),
            }
            .unwrap_or_else(|| panic!("{kind:?}: no text in {body}"))
            .to_string();
            assert!(
                text.contains(&format!("Cause: {NOAUTH}")),
                "{kind:?}: {text}"
            );
            assert!(text.contains("credentials refused"), "{kind:?}: {text}");
        }
    }

    #[tokio::test]
    async fn http_errors_and_unreachable_receivers() {
        let server = mock(ResponseTemplate::new(500).set_body_string("boom\nstack")).await;
        let url = format!("{}/hook?access_token={TOKEN}", server.uri());
        let channel = Channel::webhook(&settings(WebhookKind::Generic, url, None)).expect("build");
        let err = channel.send(&notice(), &origin()).await.expect_err("500");
        assert!(err.message.contains("HTTP 500"), "{}", err.message);
        assert!(err.message.contains("boom stack"), "{}", err.message);
        assert_clean(&err);

        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}/hook?access_token={TOKEN}");
        let channel =
            Channel::webhook(&settings(WebhookKind::DingTalk, url, Some(SECRET))).expect("build");
        let err = channel
            .send(&notice(), &origin())
            .await
            .expect_err("refused");
        assert!(
            err.message.starts_with("webhook dingtalk-1 (dingtalk): "),
            "{}",
            err.message
        );
        assert_clean(&err);
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out() {
        let server = mock(ResponseTemplate::new(200).set_delay(Duration::from_secs(5))).await;
        let mut s = settings(WebhookKind::Slack, format!("{}/hook", server.uri()), None);
        s.timeout = Duration::from_millis(200);
        let channel = Channel::webhook(&s).expect("build");
        let err = channel
            .send(&notice(), &origin())
            .await
            .expect_err("timeout");
        assert_eq!(
            err.message,
            "webhook slack-1 (slack): no answer within 200ms"
        );
    }

    #[test]
    fn bad_urls_are_build_errors_without_the_token() {
        for url in ["not a url", "ftp://example.com/hook?access_token=tok-4f1e"] {
            let err = Channel::webhook(&settings(WebhookKind::Slack, url.into(), None))
                .expect_err("bad url");
            assert!(matches!(err, BuildError::Url { .. }), "{err:?}");
            assert!(
                err.to_string().starts_with("webhook slack-1: invalid url"),
                "{err}"
            );
            assert!(!err.to_string().contains(TOKEN), "{err}");
        }
    }

    /// A crashed item whose stderr tail is `lines` lines of `width` bytes.
    fn crashed_with_tail(agent: &str, lines: usize, width: usize) -> NoticeItem {
        let mut item = crashed(agent);
        if let Cause::Crashed { exit, .. } = &mut item.cause {
            exit.stderr_tail = (0..lines)
                .map(|i| format!("{i:06} {}", "x".repeat(width.saturating_sub(7))))
                .collect();
        }
        item
    }

    /// Every item of every request: (agent, compact), and checks each body's bounds.
    fn items_of(bodies: &[Value]) -> Vec<(String, bool)> {
        let mut all = Vec::new();
        for body in bodies {
            let items = body["items"].as_array().expect("items");
            let compact = items.iter().filter(|i| i["compact"] == true).count();
            assert_eq!(
                body["items_compact"], compact,
                "the body counts its compact items"
            );
            assert_eq!(body["items_detailed"], items.len() - compact);
            assert!(items.len() - compact <= GENERIC_DETAILED_MAX);
            for item in items {
                let is_compact = item["compact"] == true;
                assert_eq!(item["cause"].is_null(), is_compact, "{item}");
                if let Some(tail) = item["cause"]["exit"]["stderr_tail"].as_array() {
                    assert!(tail.len() <= 41, "{} tail lines", tail.len());
                    assert!(tail
                        .iter()
                        .all(|l| l.as_str().is_some_and(|l| l.len() <= 500)));
                }
                all.push((
                    item["agent"].as_str().unwrap_or_default().to_string(),
                    is_compact,
                ));
            }
        }
        all
    }

    #[tokio::test]
    async fn ten_thousand_agents_with_huge_tails_make_bounded_bodies_naming_every_agent() {
        let server = mock(ResponseTemplate::new(204)).await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Generic,
            format!("{}/hook", server.uri()),
            None,
        ))
        .expect("build");
        // 30 crash loops with 64 KB stderr tails, then 10 000 lost agents.
        let mut items: Vec<NoticeItem> = (0..30)
            .map(|i| crashed_with_tail(&format!("crash-{i:02}@h"), 1_000, 64))
            .collect();
        items.extend((0..10_000).map(|i| lost(&format!("lost-{i:05}@rack-7"), Timestamp::now())));
        let notice = Notice::Incidents { items };
        channel.send(&notice, &origin()).await.expect("accepted");

        let requests = server.received_requests().await.expect("recording is on");
        let sizes: Vec<usize> = requests.iter().map(|r| r.body.len()).collect();
        assert!(
            sizes.iter().all(|&n| n <= GENERIC_BODY_CAP),
            "body sizes {sizes:?}"
        );
        let bodies: Vec<Value> = requests
            .iter()
            .map(|r| r.body_json().expect("json"))
            .collect();
        let keys: std::collections::HashSet<&str> = bodies
            .iter()
            .map(|b| b["idempotency_key"].as_str().expect("a key"))
            .collect();
        assert_eq!(keys.len(), bodies.len(), "each part has its own key");
        let all = items_of(&bodies);
        assert_eq!(all.len(), 10_030, "every agent has exactly one item");
        let names: std::collections::HashSet<&str> = all.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names.len(), 10_030);
        // The first part starts in detail, tails trimmed, and says so.
        let first = &bodies[0]["items"][0];
        assert_eq!(first["agent"], "crash-00@h");
        let tail = first["cause"]["exit"]["stderr_tail"]
            .as_array()
            .expect("a tail");
        assert_eq!(tail.len(), 40);
        assert_eq!(tail[0], "… 961 earlier lines left out");
        assert!(
            all.iter().any(|(_, compact)| *compact),
            "the rest is compact"
        );
        assert!(
            requests.len() <= 16,
            "{} requests for 10 030 agents",
            requests.len()
        );
    }

    #[tokio::test]
    async fn a_413_splits_the_batch_and_accepted_parts_are_not_sent_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        const LIMIT: usize = 100_000;
        let small = Arc::new(AtomicUsize::new(0));
        let seen = small.clone();
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(move |request: &Request| {
                if request.body.len() > LIMIT {
                    return ResponseTemplate::new(413).set_body_string("Request Entity Too Large");
                }
                // The second part that fits fails once, as a flaky receiver would.
                match seen.fetch_add(1, Ordering::SeqCst) {
                    1 => ResponseTemplate::new(503),
                    _ => ResponseTemplate::new(200),
                }
            })
            .mount(&server)
            .await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Generic,
            format!("{}/hook", server.uri()),
            None,
        ))
        .expect("build");
        // 40 agents, 16 KB of tail each after trimming: 20 in detail make ~340 KB.
        let items: Vec<NoticeItem> = (0..40)
            .map(|i| crashed_with_tail(&format!("a-{i:02}@h"), 40, 400))
            .collect();
        let notice = Notice::Incidents { items };
        let err = channel
            .send(&notice, &origin())
            .await
            .expect_err("the 503 fails the send");
        assert!(err.message.contains("503"), "{}", err.message);
        // The dispatcher retries the whole batch later.
        channel.send(&notice, &origin()).await.expect("accepted");

        let requests = server.received_requests().await.expect("recording is on");
        assert!(
            requests.iter().any(|r| r.body.len() > LIMIT),
            "the first body was too big"
        );
        let accepted: Vec<Value> = requests
            .iter()
            .filter(|r| r.body.len() <= LIMIT)
            .map(|r| r.body_json().expect("json"))
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, b)| b)
            .collect();
        let mut keys: Vec<&str> = accepted
            .iter()
            .map(|b| b["idempotency_key"].as_str().expect("a key"))
            .collect();
        let parts = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), parts, "no accepted part was sent again");
        let mut agents: Vec<String> = items_of(&accepted).into_iter().map(|(a, _)| a).collect();
        agents.sort();
        let want: Vec<String> = (0..40).map(|i| format!("a-{i:02}@h")).collect();
        assert_eq!(agents, want, "every agent accepted exactly once");
    }

    #[tokio::test]
    async fn one_agent_refused_as_too_big_is_sent_again_compact() {
        const LIMIT: usize = 10_000;
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(|request: &Request| match request.body.len() > LIMIT {
                true => ResponseTemplate::new(413),
                false => ResponseTemplate::new(200),
            })
            .mount(&server)
            .await;
        let channel = Channel::webhook(&settings(
            WebhookKind::Generic,
            format!("{}/hook", server.uri()),
            None,
        ))
        .expect("build");
        let notice = Notice::Incidents {
            items: vec![crashed_with_tail("big@h", 40, 400)],
        };
        channel.send(&notice, &origin()).await.expect("accepted");
        let requests = server.received_requests().await.expect("recording is on");
        let sizes: Vec<usize> = requests.iter().map(|r| r.body.len()).collect();
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        assert!(sizes[0] > LIMIT && sizes[1] <= LIMIT, "{sizes:?}");
        let body: Value = requests[1].body_json().expect("json");
        assert_eq!(body["items"][0]["agent"], "big@h");
        assert_eq!(body["items"][0]["compact"], true);
        assert_eq!(body["items_compact"], 1);
        assert_eq!(body["items_detailed"], 0);
    }
}
