//! `zkwatcher silence` and `unsilence`: the silence record (pure) and its write or removal at
//! `<root>/silences/<id>`. The leader reads silences with the incidents and mutes what they
//! cover ([`crate::book`]).

use std::time::Duration;

use zkwatchdog::registry::{
    delete_if_present, encode, ensure_dirs, put_persistent, AgentId, Layout, NodeAcls, Timestamp,
    RECORD_VERSION,
};
use zookeeper_client::{Client, Error as ZkError};

use crate::incident::Silence;

/// The silence `zkwatcher silence ID --for DURATION --reason REASON` writes, set by
/// `created_by` (`user@host`) at `now`; `None` for a zero duration (it would mute nothing).
pub fn new(
    id: &AgentId,
    duration: Duration,
    reason: String,
    created_by: String,
    now: Timestamp,
) -> Option<Silence> {
    (!duration.is_zero()).then(|| Silence {
        v: RECORD_VERSION,
        id: id.to_string(),
        until: Timestamp(now.0 + duration),
        reason,
        created_at: now,
        created_by,
    })
}

/// A failed write: the znode, and ZooKeeper's answer.
pub type WriteError = (String, ZkError);

/// Writes `silence`, made by [`new`] for `id` (creating `<root>/silences` with `acls` if
/// needed).
pub async fn put(
    client: &Client,
    layout: &Layout,
    acls: &NodeAcls,
    id: &AgentId,
    silence: &Silence,
) -> Result<(), WriteError> {
    let dirs = [layout.silences_dir()];
    ensure_dirs(client, layout, &dirs, acls).await?;
    let path = layout.silence(id);
    put_persistent(client, &path, &encode(silence), acls)
        .await
        .map_err(|e| (path, e))
}

/// Removes the silence of `id`, if there is one.
pub async fn remove(client: &Client, layout: &Layout, id: &AgentId) -> Result<(), WriteError> {
    let path = layout.silence(id);
    delete_if_present(client, &path)
        .await
        .map(|_| ())
        .map_err(|e| (path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_lasts_its_duration_and_a_zero_one_is_refused() {
        let id = AgentId::new("flume-nginx@host-a".to_string()).expect("a valid id");
        let now = Timestamp::now();
        let s = new(
            &id,
            Duration::from_secs(7200),
            "disk swap".into(),
            "ops@h".into(),
            now,
        )
        .expect("two hours");
        assert_eq!(s.id, "flume-nginx@host-a");
        assert_eq!(s.until, Timestamp(now.0 + Duration::from_secs(7200)));
        assert!(s.active_at(now) && !s.active_at(s.until));
        assert_eq!(
            (s.reason.as_str(), s.created_by.as_str()),
            ("disk swap", "ops@h")
        );
        assert!(new(&id, Duration::ZERO, String::new(), String::new(), now).is_none());
    }
}
