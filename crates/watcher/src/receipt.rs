//! `<root>/watchers/receipts/r-<seq>`: a send this replica saw accepted but could not record,
//! handed to whoever leads.
//!
//! A leader whose session ends between the server's acceptance and the record of it (an ensemble
//! outage, a freeze) keeps the delivery and records it at its own next take-over. If another
//! replica leads next, that one would send the notice again, possibly grouped with other agents
//! under another `Message-ID` (chaos #374). So on every new session, before it joins the
//! election (where removing its own stale node may make the other replica leader at once), a
//! replica writes what it kept as receipts; a leader applies every receipt at take-over and
//! before each round of sends, then deletes it. A receipt applied twice changes nothing: a
//! delivery already recorded stays as it is.

use serde::{Deserialize, Serialize};
use zkwatchdog::registry::{Layout, Versioned, RECORD_VERSION};

use crate::notice::NoticeKey;

/// One accepted send: the channel and what it carried, item by item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub v: u32,
    pub channel: String,
    pub items: Vec<NoticeKey>,
}

impl Receipt {
    pub fn new(channel: &str, items: &[NoticeKey]) -> Self {
        Receipt {
            v: RECORD_VERSION,
            channel: channel.to_string(),
            items: items.to_vec(),
        }
    }
}

impl Versioned for Receipt {
    fn version(&self) -> u32 {
        self.v
    }
}

/// The directory of receipts.
pub fn dir(layout: &Layout) -> String {
    format!("{}/receipts", layout.watchers_dir())
}

/// The prefix of a new receipt's path (ZooKeeper appends the sequence number).
pub fn prefix(layout: &Layout) -> String {
    format!("{}/r-", dir(layout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Occurrence;
    use crate::notice::Phase;
    use zkwatchdog::registry::Timestamp;

    #[test]
    fn a_receipt_reads_back_as_written() {
        let key = NoticeKey {
            agent: "a@h".to_string(),
            phase: Phase::OpenedAndResolved,
            occurrence: Occurrence {
                opened_at: Timestamp(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500),
                ),
                seq: 2,
            },
        };
        let r = Receipt::new("email", &[key]);
        let json = serde_json::to_string(&r).expect("encode");
        assert!(json.contains("\"phase\":\"opened-and-resolved\""), "{json}");
        let back: Receipt = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, r);
        let l = Layout::new("/zkwatchdog").expect("a layout");
        assert_eq!(prefix(&l), "/zkwatchdog/watchers/receipts/r-");
    }
}
