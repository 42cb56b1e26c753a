//! The lease under which a leader's sends go out.
//!
//! Before sends go out, the leader asks ZooKeeper whether its election node still exists and is
//! its session's ([`Candidate::confirm`]). A yes proves more than the moment of the answer:
//! ZooKeeper expires a session no sooner than one session timeout after the last request it got
//! from it, and the request reached it after we asked. So our node, and our leadership, last at
//! least until *asked + session timeout*; no other replica can take over before then. The lease
//! is two thirds of that (a margin for the two clocks' rates; ZooKeeper's own rounding of expiry
//! times errs towards later). A send that takes long (a slow mail relay) renews it by asking
//! again every third of its length.
//!
//! What the lease guards against is a replica frozen past its session (a GC pause, SIGSTOP, a
//! stalled VM) that thaws in the middle of a send, after the next leader sent the same notice.
//! So before every step of a send (every poll of its future) the guard looks at the clock:
//!
//! - while the lease holds, the send goes on;
//! - once it ran out, the send stops if this process was seen frozen (a gap of more than a
//!   quarter of the lease between two of its own ticks, 100 ms apart) and thawed after the lease
//!   ran out: what it decided may already have been sent by another leader;
//! - otherwise the process ran all along and only ZooKeeper is silent or gone (an outage, a
//!   session that expired meanwhile): the send goes on. Its message may already be with the
//!   receiver, which is waiting to answer; dropping it would lose the record of its delivery and
//!   make it go out twice, while a delivery finished is handed to whoever leads
//!   ([`crate::receipt`]).
//!
//! What remains is the moment between the check and the write of the message's last bytes
//! within one step. [`Lease`] is the decision (pure, table-tested); [`Fence::guard`] carries it
//! out.

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{interval, sleep, sleep_until, timeout_at, Instant, MissedTickBehavior};
use zookeeper_client::{Client, Error as ZkError};

use crate::election::Candidate;

/// How often a send in flight notes that its process runs.
pub const TICK: Duration = Duration::from_millis(100);

/// What a send in flight knows about its leadership and about its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    length: Duration,
    /// When the latest confirmation that counts was asked.
    asked: Instant,
    /// When this process was last seen running.
    last_seen: Instant,
    /// When it was last seen running again after a gap (a freeze or a stall).
    thawed_at: Option<Instant>,
}

impl Lease {
    /// The lease a confirmation asked at `asked` gives, in a session of `session_timeout`. The
    /// process was running when it asked.
    pub fn new(asked: Instant, session_timeout: Duration) -> Self {
        Lease {
            length: session_timeout * 2 / 3,
            asked,
            last_seen: asked,
            thawed_at: None,
        }
    }

    /// Until then (not at it) our leadership is certain.
    pub fn until(&self) -> Instant {
        self.asked + self.length
    }

    /// When a send still in flight asks again: a third of the way.
    pub fn renew_at(&self) -> Instant {
        self.asked + self.length / 3
    }

    /// A gap longer than this between two sightings of the process is a freeze.
    fn freeze_gap(&self) -> Duration {
        self.length / 4
    }

    /// A confirmation asked at `asked` said yes. An answer to an older question than the one
    /// that counts changes nothing.
    pub fn confirmed(&mut self, asked: Instant) {
        self.asked = self.asked.max(asked);
    }

    /// The process is running at `now`.
    pub fn seen(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_seen) > self.freeze_gap() {
            self.thawed_at = Some(now);
        }
        self.last_seen = self.last_seen.max(now);
    }

    /// Whether the send may take a step at `now` (module documentation).
    pub fn may_step(&self, now: Instant) -> bool {
        if now < self.until() {
            return true;
        }
        self.thawed_at.is_none_or(|t| t < self.until())
    }
}

/// A send was dropped because it could no longer show that this watcher leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not sent: this watcher was frozen past the lease of its leadership confirmation; it stays \
     pending"
)]
pub struct Lapsed;

/// What a send in flight needs to keep its lease: the session's client and our election node.
#[derive(Debug, Clone)]
pub struct Fence {
    pub lease: Lease,
    pub client: Client,
    pub node: Candidate,
}

impl Fence {
    /// Runs `send` step by step while [`Lease::may_step`], renewing the lease meanwhile;
    /// `Err(Lapsed)` if it may not (`send` is then dropped where it stood).
    pub async fn guard<F: Future>(self, send: F) -> Result<F::Output, Lapsed> {
        let Fence {
            lease,
            client,
            node,
        } = self;
        let lease = Mutex::new(lease);
        let ticks = async {
            let mut every = interval(TICK);
            every.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if !sighting(&lease) {
                    return;
                }
            }
        };
        // Each round waits at least a sixth of the lease; the rounds end with the send, or when
        // ZooKeeper says that we no longer lead (the lease then runs out).
        let renewals = async {
            loop {
                let current = *lock(&lease);
                sleep_until(current.renew_at()).await;
                let asked = Instant::now();
                match timeout_at(asked + current.length, node.confirm(&client)).await {
                    Ok(Ok(true)) => lock(&lease).confirmed(asked),
                    Ok(Ok(false) | Err(ZkError::SessionExpired | ZkError::NoNode)) => break,
                    // No answer now (a connection loss, an outage): ask again a little later.
                    Ok(Err(_)) | Err(_) => sleep(current.length / 6).await,
                }
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            biased;
            result = step_while(&lease, send) => result,
            () = ticks => Err(Lapsed),
            never = renewals => match never {},
        }
    }
}

/// Polls `send` only while the lease lets it: the check comes before every step.
async fn step_while<F: Future>(lease: &Mutex<Lease>, send: F) -> Result<F::Output, Lapsed> {
    let mut send = pin!(send);
    std::future::poll_fn(|cx| match sighting(lease) {
        true => send.as_mut().poll(cx).map(Ok),
        false => Poll::Ready(Err(Lapsed)),
    })
    .await
}

/// Notes that the process runs now; whether the send may take a step.
fn sighting(lease: &Mutex<Lease>) -> bool {
    let mut lease = lock(lease);
    let now = Instant::now();
    lease.seen(now);
    lease.may_step(now)
}

fn lock(lease: &Mutex<Lease>) -> std::sync::MutexGuard<'_, Lease> {
    lease.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sightings of the process at `seen` (ms after the asking), every one checked; `may` is
    /// whether a step may be taken at `at`. Session 3 s: a lease of 2 s, a freeze gap of 500 ms.
    #[test]
    fn a_step_is_taken_unless_the_process_thawed_after_the_lease_ran_out() {
        #[rustfmt::skip]
        let table: [(&str, &[u64], u64, bool); 9] = [
            ("at once", &[], 10, true),
            ("within the lease, after a freeze", &[], 1_999, true),
            ("frozen across the end of the lease", &[], 2_000, false),
            ("frozen 5 s", &[], 5_000, false),
            ("ran all along, ZooKeeper silent", &[100, 500, 900, 1_300, 1_700, 2_100], 2_200, true),
            ("a stall inside the lease, then frozen past its end", &[100, 700, 1_000], 3_000, false),
            ("a short stall inside the lease, then running",
                &[100, 700, 1_000, 1_400, 1_800, 2_200], 2_300, true),
            ("thawed just before the end", &[100, 1_900, 2_300], 2_400, true),
            ("ran, then frozen past the end", &[100, 500, 900, 1_300, 1_700], 2_500, false),
        ];
        let t0 = Instant::now();
        for (what, seen, at, may) in table {
            let mut lease = Lease::new(t0, ms(3_000));
            for &s in seen {
                lease.seen(t0 + ms(s));
            }
            lease.seen(t0 + ms(at));
            assert_eq!(lease.may_step(t0 + ms(at)), may, "{what}");
        }
    }

    #[test]
    fn a_send_in_flight_asks_again_a_third_of_the_way() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, ms(4_500));
        assert_eq!(lease.renew_at(), t0 + ms(1_000));
        assert_eq!(lease.until(), t0 + ms(3_000));
    }

    #[test]
    fn a_confirmation_extends_from_its_asking_and_an_older_one_changes_nothing() {
        let t0 = Instant::now();
        // (confirmations asked at these offsets, in the order answered; until, from t0)
        let table: [(&[u64], u64); 4] = [
            (&[], 2_000),
            (&[500], 2_500),
            (&[700, 300], 2_700),
            (&[1_500, 1_900], 3_900),
        ];
        for (asks, until) in table {
            let mut lease = Lease::new(t0, ms(3_000));
            for &asked in asks {
                lease.confirmed(t0 + ms(asked));
            }
            assert_eq!(lease.until(), t0 + ms(until), "confirmations {asks:?}");
        }
    }

    /// After a freeze past the lease, the send's next step never runs (here: a future that
    /// would finish at its first poll).
    #[tokio::test]
    async fn a_send_frozen_past_its_lease_takes_no_further_step() {
        let asked = Instant::now()
            .checked_sub(ms(5_000))
            .expect("an instant 5 s ago");
        let lease = Lease::new(asked, ms(3_000));
        let polled = std::sync::atomic::AtomicBool::new(false);
        let send = std::future::poll_fn(|_| {
            polled.store(true, std::sync::atomic::Ordering::SeqCst);
            Poll::Ready(())
        });
        let steps = step_while(&Mutex::new(lease), send).await;
        assert_eq!(steps, Err(Lapsed));
        assert!(!polled.load(std::sync::atomic::Ordering::SeqCst));

        let fresh = Mutex::new(Lease::new(Instant::now(), ms(3_000)));
        assert_eq!(step_while(&fresh, std::future::ready(7)).await, Ok(7));
    }
}
