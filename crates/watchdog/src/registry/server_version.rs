//! Which ZooKeeper release the programs talk to, and what it allows them: the version each
//! server reports to the `srvr` four-letter word ([`parse_server_version`], [`classify_answer`]),
//! the decision over all servers of a connect string ([`decide`], [`watch_mode`]), and the I/O
//! that asks them ([`ask_servers`], [`check`]).
//!
//! Why `srvr`, asked over the session's own transport: it is the one four-letter word in the
//! default whitelist since 3.5.3 (checked on 3.5.10 and 3.9.5 without a whitelist in zoo.cfg), a
//! TLS server answers it on its secure client port to a client that completes the handshake (so
//! it works where no plaintext port is reachable, with the `[zk-tls]` certificates), and it
//! names the release, which a refusal can quote. A feature probe on the session cannot tell
//! 3.4 from 3.5 (both answer `addWatch` with UNIMPLEMENTED, checked on 3.4.14 and 3.5.10). Where
//! no server tells its version (the whitelist leaves `srvr` out), the verdict is
//! [`Verdict::Unknown`] and the caller decides by the session's answer to `addWatch`
//! ([`watch_mode_from_add_watch`]). Every server of the connect string is asked and the oldest
//! answer counts: the session may move to any of them (a rolling upgrade mixes releases).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zookeeper_client::Error as ZkError;

use super::access::ZkTls;
use super::tls_diagnosis::{endpoints, verifying_config, Endpoint};

/// Bound on asking one server (connect, handshake, question, answer).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// An answer longer than this is not a `srvr` answer (about 250 bytes): the rest is not read.
const MAX_ANSWER: u64 = 8 * 1024;

/// A ZooKeeper release, as `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        ServerVersion {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The oldest release both programs work with. 3.4 does not know `create2`, the request the
/// client sends for every `create`: it logs "Received packet at server of unknown type 15" and
/// answers UNIMPLEMENTED, so neither program can write a node (seen with 3.4.14: the watchdog
/// retries its registration forever while the child runs unregistered).
pub const MIN_SERVER_VERSION: ServerVersion = ServerVersion::new(3, 5, 0);
/// Persistent recursive watches (`addWatch`, ZOOKEEPER-1416) came with 3.6.0.
pub const PERSISTENT_WATCH_SINCE: ServerVersion = ServerVersion::new(3, 6, 0);

/// How the watcher follows the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// One persistent recursive watch on the root (3.6 and later).
    PersistentRecursive,
    /// One-shot watches on `agents/`, `live/` and each node, armed again after every event and
    /// every reconnection (3.5).
    OneShot,
}

/// A server too old to work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "zookeeper at {server} is version {found}, too old: zkwatchdog needs zookeeper {minimum} or later"
)]
pub struct TooOld {
    /// The server that reported the version (`tcp://host:port`).
    pub server: String,
    pub found: ServerVersion,
    pub minimum: ServerVersion,
}

/// The release named in a `srvr` (or `stat`) answer: its line `Zookeeper version: 3.5.10-<git
/// hash>, built on …`. Suffixes after the three numbers (`-SNAPSHOT`, a git hash, Debian's
/// `-${mvngit.commit.id}`) are ignored; `None` if there is no such line or it names no
/// `X.Y.Z`.
pub fn parse_server_version(answer: &str) -> Option<ServerVersion> {
    let line = answer
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Zookeeper version:"))?;
    let text = line.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let mut parts = text[..end].split('.');
    let mut number = || -> Option<u32> { parts.next()?.parse().ok() };
    let version = ServerVersion::new(number()?, number()?, number()?);
    Some(version)
}

/// The watch mode `version` allows, or why it is refused (below [`MIN_SERVER_VERSION`]).
pub fn watch_mode(version: ServerVersion, server: &str) -> Result<WatchMode, TooOld> {
    if version < MIN_SERVER_VERSION {
        Err(TooOld {
            server: server.to_owned(),
            found: version,
            minimum: MIN_SERVER_VERSION,
        })
    } else if version < PERSISTENT_WATCH_SINCE {
        Ok(WatchMode::OneShot)
    } else {
        Ok(WatchMode::PersistentRecursive)
    }
}

/// The watch mode the session's answer to `addWatch` shows, when no version is known: accepted
/// means 3.6 or later, UNIMPLEMENTED means older (3.5: [`MIN_SERVER_VERSION`] cannot be checked
/// this way). `None` for any other error, which says nothing about the release (retry).
pub fn watch_mode_from_add_watch(result: Result<(), &ZkError>) -> Option<WatchMode> {
    match result {
        Ok(()) => Some(WatchMode::PersistentRecursive),
        Err(ZkError::Unimplemented) => Some(WatchMode::OneShot),
        Err(_) => None,
    }
}

/// What one server answered to `srvr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It named its release.
    Version(ServerVersion),
    /// `srvr` is not in its `4lw.commands.whitelist`.
    NotAllowed,
    /// No usable answer (down, not serving, a TLS failure, something else): why.
    Nothing(String),
}

/// Classifies the text a server sent back to `srvr`.
pub fn classify_answer(text: &str) -> Answer {
    if let Some(version) = parse_server_version(text) {
        Answer::Version(version)
    } else if text.contains("is not executed because it is not in the whitelist") {
        Answer::NotAllowed
    } else if text.trim().is_empty() {
        Answer::Nothing("it closed the connection without an answer".to_owned())
    } else {
        let mut first = text.lines().next().unwrap_or_default().to_owned();
        super::records::truncate_text(&mut first, 120);
        Answer::Nothing(format!("unexpected answer: {first:?}"))
    }
}

/// What the answers of all servers allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The oldest release that answered, and the watch mode it allows.
    Known {
        version: ServerVersion,
        server: String,
        mode: WatchMode,
    },
    /// No server told its release: decide by the session's answer to `addWatch`.
    Unknown,
}

/// The verdict over the answers of every server of a connect string: the oldest release that
/// answered decides; a release below [`MIN_SERVER_VERSION`] is refused.
pub fn decide(answers: &[(String, Answer)]) -> Result<Verdict, TooOld> {
    let oldest = answers
        .iter()
        .filter_map(|(server, answer)| match answer {
            Answer::Version(v) => Some((*v, server)),
            _ => None,
        })
        .min_by_key(|(v, _)| *v);
    match oldest {
        None => Ok(Verdict::Unknown),
        Some((version, server)) => Ok(Verdict::Known {
            version,
            server: server.clone(),
            mode: watch_mode(version, server)?,
        }),
    }
}

/// Asks every server of `hosts` (a connect string) `srvr`, all at once, each bounded by
/// [`ASK_TIMEOUT`]; servers spoken to over TLS (see [`endpoints`]) are asked over TLS with the
/// `[zk-tls]` certificates. Answers in the order of the connect string.
pub async fn ask_servers(hosts: &str, tls: Option<&ZkTls>) -> Vec<(String, Answer)> {
    let config = match tls.map(verifying_config) {
        Some(Ok(c)) => Some(Arc::new(c)),
        Some(Err(e)) => {
            let why = format!("the [zk-tls] certificates are unusable: {e}");
            return endpoints(hosts, true)
                .into_iter()
                .map(|ep| (ep.to_string(), Answer::Nothing(why.clone())))
                .collect();
        }
        None => None,
    };
    let mut asks = tokio::task::JoinSet::new();
    for (i, endpoint) in endpoints(hosts, tls.is_some()).into_iter().enumerate() {
        let config = config.clone();
        asks.spawn(async move {
            let answer = match tokio::time::timeout(ASK_TIMEOUT, ask(&endpoint, config)).await {
                Ok(Ok(text)) => classify_answer(&text),
                Ok(Err(why)) => Answer::Nothing(why),
                Err(_) => Answer::Nothing(format!("no answer within {ASK_TIMEOUT:?}")),
            };
            (i, endpoint.to_string(), answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = asks.join_next().await {
        if let Ok(answer) = done {
            answers.push(answer);
        }
    }
    answers.sort_by_key(|(i, _, _)| *i);
    answers.into_iter().map(|(_, s, a)| (s, a)).collect()
}

/// [`ask_servers`], then [`decide`].
pub async fn check(hosts: &str, tls: Option<&ZkTls>) -> Result<Verdict, TooOld> {
    decide(&ask_servers(hosts, tls).await)
}

/// One server: connect (TLS if its endpoint says so), send `srvr`, read the answer to its end.
async fn ask(
    endpoint: &Endpoint,
    config: Option<Arc<rustls::ClientConfig>>,
) -> Result<String, String> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if !endpoint.tls {
        return exchange(tcp).await;
    }
    let config = config.ok_or("written tcp+tls:// but TLS is not configured")?;
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|e| format!("not a TLS server name: {e}"))?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    exchange(stream).await
}

async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> Result<String, String> {
    stream
        .write_all(b"srvr")
        .await
        .map_err(|e| format!("cannot send srvr: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("cannot send srvr: {e}"))?;
    let mut answer = Vec::new();
    // The server closes the connection after answering; a TLS server may do so without a
    // close_notify, which is an error here only if nothing came before it.
    let read = (&mut stream)
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await;
    match read {
        Err(e) if answer.is_empty() => Err(format!("no answer: {e}")),
        _ => Ok(String::from_utf8_lossy(&answer).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V3_5_10: &str = "Zookeeper version: 3.5.10-a32c7183d42325b03e44a06aade6a0f16955bf13, \
                           built on 05/29/2022 16:59 GMT\nLatency min/avg/max: 0/0/0\n\
                           Mode: standalone\nNode count: 5\n";

    #[test]
    fn versions_are_read_from_srvr_answers() {
        let v = |a, b, c| Some(ServerVersion::new(a, b, c));
        let table: [(&str, Option<ServerVersion>); 11] = [
            (V3_5_10, v(3, 5, 10)),
            (
                "Zookeeper version: 3.9.5-293c895a8d966a3ecb92872be4a1daf87d725da2, built on \
                 2026-02-11 20:18 UTC\nMode: leader\n",
                v(3, 9, 5),
            ),
            // Debian's package leaves the git property unexpanded.
            (
                "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\n",
                v(3, 8, 0),
            ),
            (
                "Zookeeper version: 3.4.14-4c25d480e66aadd371de8bd2fd8da255ac140bcf, built on \
                 03/06/2019 16:18 GMT\n",
                v(3, 4, 14),
            ),
            (
                "Zookeeper version: 3.10.0-SNAPSHOT, built on x\n",
                v(3, 10, 0),
            ),
            ("Zookeeper version: 3.9.5", v(3, 9, 5)),
            (
                "srvr is not executed because it is not in the whitelist.\n",
                None,
            ),
            (
                "This ZooKeeper instance is not currently serving requests\n",
                None,
            ),
            ("Zookeeper version: 3.9, built on x\n", None),
            ("Zookeeper version: unknown\n", None),
            ("", None),
        ];
        for (answer, expected) in table {
            assert_eq!(parse_server_version(answer), expected, "answer {answer:?}");
        }
    }

    #[test]
    fn each_release_gets_the_watch_mode_it_supports() {
        let too_old = |found| {
            Err(TooOld {
                server: "tcp://zk:2181".to_owned(),
                found,
                minimum: MIN_SERVER_VERSION,
            })
        };
        let table = [
            (
                ServerVersion::new(3, 4, 14),
                too_old(ServerVersion::new(3, 4, 14)),
            ),
            (
                ServerVersion::new(2, 9, 9),
                too_old(ServerVersion::new(2, 9, 9)),
            ),
            (ServerVersion::new(3, 5, 0), Ok(WatchMode::OneShot)),
            (ServerVersion::new(3, 5, 10), Ok(WatchMode::OneShot)),
            (
                ServerVersion::new(3, 6, 0),
                Ok(WatchMode::PersistentRecursive),
            ),
            (
                ServerVersion::new(3, 8, 0),
                Ok(WatchMode::PersistentRecursive),
            ),
            (
                ServerVersion::new(3, 9, 5),
                Ok(WatchMode::PersistentRecursive),
            ),
            (
                ServerVersion::new(4, 0, 0),
                Ok(WatchMode::PersistentRecursive),
            ),
        ];
        for (version, expected) in table {
            assert_eq!(watch_mode(version, "tcp://zk:2181"), expected, "{version}");
        }
    }

    #[test]
    fn a_refusal_names_the_server_the_version_and_the_minimum() {
        let e =
            watch_mode(ServerVersion::new(3, 4, 14), "tcp://zk1:2181").expect_err("3.4 is refused");
        assert_eq!(
            e.to_string(),
            "zookeeper at tcp://zk1:2181 is version 3.4.14, too old: zkwatchdog needs \
             zookeeper 3.5.0 or later"
        );
    }

    #[test]
    fn answers_are_classified() {
        let table = [
            (V3_5_10, Answer::Version(ServerVersion::new(3, 5, 10))),
            (
                "srvr is not executed because it is not in the whitelist.\n",
                Answer::NotAllowed,
            ),
            (
                "",
                Answer::Nothing("it closed the connection without an answer".to_owned()),
            ),
            (
                "This ZooKeeper instance is not currently serving requests\n",
                Answer::Nothing(
                    "unexpected answer: \"This ZooKeeper instance is not currently serving \
                     requests\""
                        .to_owned(),
                ),
            ),
        ];
        for (text, expected) in table {
            assert_eq!(classify_answer(text), expected, "{text:?}");
        }
    }

    #[test]
    fn the_oldest_answering_server_decides() {
        let version = |a, b, c| Answer::Version(ServerVersion::new(a, b, c));
        let nothing = || Answer::Nothing("down".to_owned());
        let at = |n: u16, answer: Answer| (format!("tcp://zk{n}:2181"), answer);
        let known = |n: u16, v: ServerVersion, mode| {
            Ok(Verdict::Known {
                version: v,
                server: format!("tcp://zk{n}:2181"),
                mode,
            })
        };
        type Row = (Vec<(String, Answer)>, Result<Verdict, TooOld>);
        let table: Vec<Row> = vec![
            (vec![], Ok(Verdict::Unknown)),
            (
                vec![at(1, nothing()), at(2, Answer::NotAllowed)],
                Ok(Verdict::Unknown),
            ),
            (
                vec![at(1, version(3, 9, 5)), at(2, version(3, 9, 5))],
                known(
                    1,
                    ServerVersion::new(3, 9, 5),
                    WatchMode::PersistentRecursive,
                ),
            ),
            // A rolling upgrade from 3.5: the session may land on the old server.
            (
                vec![
                    at(1, version(3, 9, 5)),
                    at(2, version(3, 5, 10)),
                    at(3, nothing()),
                ],
                known(2, ServerVersion::new(3, 5, 10), WatchMode::OneShot),
            ),
            (
                vec![
                    at(1, nothing()),
                    at(2, version(3, 4, 14)),
                    at(3, version(3, 8, 0)),
                ],
                Err(TooOld {
                    server: "tcp://zk2:2181".to_owned(),
                    found: ServerVersion::new(3, 4, 14),
                    minimum: MIN_SERVER_VERSION,
                }),
            ),
            // One server whose whitelist leaves srvr out: the others still tell.
            (
                vec![at(1, Answer::NotAllowed), at(2, version(3, 8, 0))],
                known(
                    2,
                    ServerVersion::new(3, 8, 0),
                    WatchMode::PersistentRecursive,
                ),
            ),
        ];
        for (answers, expected) in table {
            assert_eq!(decide(&answers), expected, "{answers:?}");
        }
    }

    #[test]
    fn the_answer_to_add_watch_tells_the_mode_when_no_version_is_known() {
        assert_eq!(
            watch_mode_from_add_watch(Ok(())),
            Some(WatchMode::PersistentRecursive)
        );
        assert_eq!(
            watch_mode_from_add_watch(Err(&ZkError::Unimplemented)),
            Some(WatchMode::OneShot)
        );
        assert_eq!(
            watch_mode_from_add_watch(Err(&ZkError::ConnectionLoss)),
            None
        );
        assert_eq!(watch_mode_from_add_watch(Err(&ZkError::NoAuth)), None);
    }

    /// A loopback server that answers every connection with `answer` and closes it.
    async fn answering_server(answer: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut word = [0u8; 4];
                if conn.read_exact(&mut word).await.is_ok() && &word == b"srvr" {
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            }
        });
        port
    }

    #[tokio::test]
    async fn every_server_of_a_connect_string_is_asked_in_order() {
        let new =
            answering_server("Zookeeper version: 3.9.5-293c, built on x\nMode: follower\n").await;
        let old = answering_server(V3_5_10).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let hosts = format!("127.0.0.1:{new},127.0.0.1:{old},127.0.0.1:{closed}/chroot");
        let answers = ask_servers(&hosts, None).await;
        assert_eq!(answers.len(), 3, "{answers:?}");
        assert_eq!(answers[0].0, format!("tcp://127.0.0.1:{new}"));
        assert_eq!(answers[0].1, Answer::Version(ServerVersion::new(3, 9, 5)));
        assert_eq!(answers[1].1, Answer::Version(ServerVersion::new(3, 5, 10)));
        assert!(
            matches!(&answers[2].1, Answer::Nothing(why) if why.starts_with("cannot connect")),
            "{answers:?}"
        );
        assert_eq!(
            decide(&answers),
            Ok(Verdict::Known {
                version: ServerVersion::new(3, 5, 10),
                server: format!("tcp://127.0.0.1:{old}"),
                mode: WatchMode::OneShot,
            })
        );
    }
}
