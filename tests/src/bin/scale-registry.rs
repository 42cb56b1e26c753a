//! `scale-registry`: fills a ZooKeeper with many agents for `scripts/bench-scale.sh`, fast.
//!
//! ```text
//! scale-registry register --zk HOSTS --group steady|rack --count N [--root PATH]
//!                [--sessions S] [--session-timeout-ms MS] [--in-flight M] [--tail-every E]
//! scale-registry watch-gone --zk HOSTS --group steady|rack --count N [--root PATH]
//!                [--timeout-s S]
//! scale-registry children --zk HOSTS --count N [--path PATH] [--in-flight M] [--keep]
//! ```
//!
//! `register` registers agents 0..N of the group as `zkwatchdog run` does (records from
//! `zkwatchdog_tests::scale`, built with the watchdog crate's registry types): for each agent its
//! PERSISTENT marker, then its EPHEMERAL liveness node, owned by one of S sessions (default 4;
//! agent i on session i mod S; session timeout default 10000 ms). Requests are pipelined: the
//! client sends up to M (default 1000) on a session before it waits for the oldest answer, so a
//! registration takes round trips / M, not round trips. Every E-th agent (default 10; 0: none)
//! crashed once before and its marker carries a ~1 KiB stderr tail. Prints one line
//! `ready count=N sessions=S session_ids=0x..,.. markers_ms=.. live_ms=.. bytes=..` and then
//! holds the sessions until SIGTERM or SIGINT, which closes them (the liveness nodes go at once)
//! and exits 0. A session that ends on its own (expired) exits 1. SIGKILL leaves the sessions to
//! expire on the server: the benchmark's lost rack.
//!
//! `watch-gone` puts a persistent recursive watch on `<root>/live`, prints
//! `armed present=P` (how many of the group's first N liveness nodes exist), and waits (at most
//! `--timeout-s`, default 120) until each of them is deleted; then prints
//! `gone count=C first_ns=.. last_ns=..`: how many went and the CLOCK_REALTIME times (ns) at which
//! the first and the last deletion event arrived. Exit 1 if not all went in time.
//!
//! `children` measures whether one getChildren answer with N children comes through this client:
//! it creates N empty children named like agent ids under PATH (default `/scale-children`),
//! lists them, prints `children created=N listed=L answer_bytes=B list_ms=..` (or the error),
//! and deletes them again (`--keep`: leaves them, e.g. to try `zkCli.sh ls PATH`; a later run
//! without it deletes them). Exit 1 if the list failed or came back short.
//!
//! Exit 2: bad usage, or ZooKeeper could not be reached.

use std::collections::VecDeque;
use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};
use zkwatchdog::registry::{encode, ensure_dirs, Layout, NodeAcls, Session, DEFAULT_ROOT};
use zkwatchdog_tests::scale::{self, Group, DEFAULT_TAIL_EVERY};
use zookeeper_client::{
    Acls, AddWatchMode, Client, CreateMode, Error as ZkError, EventType, SessionState,
};

#[derive(Debug)]
enum Cmd {
    Register,
    WatchGone,
    Children,
}

#[derive(Debug)]
struct Args {
    cmd: Cmd,
    zk: String,
    root: String,
    group: Group,
    count: usize,
    sessions: usize,
    session_timeout: Duration,
    in_flight: usize,
    tail_every: usize,
    timeout: Duration,
    path: String,
    keep: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("scale-registry: {msg} (see the header of tests/src/bin/scale-registry.rs)");
    std::process::exit(2);
}

fn parse() -> Args {
    let mut argv = std::env::args().skip(1);
    let cmd = match argv.next().as_deref() {
        Some("register") => Cmd::Register,
        Some("watch-gone") => Cmd::WatchGone,
        Some("children") => Cmd::Children,
        Some(other) => usage(&format!("unknown command {other:?}")),
        None => usage("a command is needed"),
    };
    let mut a = Args {
        cmd,
        zk: String::new(),
        root: DEFAULT_ROOT.to_string(),
        group: Group::Steady,
        count: 0,
        sessions: 4,
        session_timeout: Duration::from_millis(10_000),
        in_flight: 1000,
        tail_every: DEFAULT_TAIL_EVERY,
        timeout: Duration::from_secs(120),
        path: "/scale-children".to_string(),
        keep: false,
    };
    while let Some(flag) = argv.next() {
        let mut value = || {
            argv.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        fn num(flag: &str, v: String) -> usize {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
        }
        match flag.as_str() {
            "--zk" => a.zk = value(),
            "--root" => a.root = value(),
            "--group" => {
                let v = value();
                a.group = Group::parse(&v)
                    .unwrap_or_else(|| usage(&format!("--group: steady or rack, not {v:?}")));
            }
            "--count" => a.count = num(&flag, value()),
            "--sessions" => a.sessions = num(&flag, value()),
            "--session-timeout-ms" => {
                a.session_timeout = Duration::from_millis(num(&flag, value()) as u64)
            }
            "--in-flight" => a.in_flight = num(&flag, value()),
            "--tail-every" => a.tail_every = num(&flag, value()),
            "--timeout-s" => a.timeout = Duration::from_secs(num(&flag, value()) as u64),
            "--path" => a.path = value(),
            "--keep" => a.keep = true,
            other => usage(&format!("unknown flag {other:?}")),
        }
    }
    if a.zk.is_empty() {
        usage("--zk is required");
    }
    if a.sessions == 0 || a.in_flight == 0 {
        usage("--sessions and --in-flight must be at least 1");
    }
    a
}

fn main() -> ExitCode {
    let args = parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scale-registry: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let result = match args.cmd {
            Cmd::Register => register(&args).await,
            Cmd::WatchGone => watch_gone(&args).await,
            Cmd::Children => children(&args).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("scale-registry: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Starts request `i` for `i` in `0..count`, keeping at most `in_flight` unanswered, and waits
/// for the answers in order (a session answers in order). Stops at the first error.
async fn pipelined<F, Fut>(count: usize, in_flight: usize, mut start: F) -> Result<(), ZkError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), ZkError>>,
{
    let mut queue = VecDeque::with_capacity(in_flight.min(count));
    for i in 0..count {
        if queue.len() >= in_flight {
            if let Some(oldest) = queue.pop_front() {
                oldest.await?;
            }
        }
        queue.push_back(start(i));
    }
    while let Some(f) = queue.pop_front() {
        f.await?;
    }
    Ok(())
}

async fn connect(args: &Args, timeout: Duration) -> Result<Client, String> {
    Client::connector()
        .with_session_timeout(timeout)
        .with_connection_timeout(Duration::from_secs(5))
        .connect(&args.zk)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.zk))
}

fn layout(args: &Args) -> Result<Layout, String> {
    Layout::new(&args.root).map_err(|e| format!("--root: {e}"))
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

async fn register(args: &Args) -> Result<ExitCode, String> {
    let layout = layout(args)?;
    let mut sessions = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let client = connect(args, args.session_timeout).await?;
        let states = client.state_watcher();
        sessions.push(Session { client, states });
    }
    let granted = sessions[0].client.session_timeout();
    if granted != args.session_timeout {
        eprintln!(
            "scale-registry: the server granted a session timeout of {granted:?}, not {:?}",
            args.session_timeout
        );
    }
    let dirs = [layout.agents_dir(), layout.live_dir()];
    ensure_dirs(&sessions[0].client, &layout, &dirs, &NodeAcls::open())
        .await
        .map_err(|(path, e)| format!("cannot create {path}: {e}"))?;

    let now = SystemTime::now();
    let n = args.sessions;
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let (mut markers_ms, mut live_ms, mut bytes) = (0, 0, 0usize);
    for (s, session) in sessions.iter().enumerate() {
        let client = &session.client;
        let sid = client.session_id().0;
        // This session's agents: s, s + n, s + 2n, ...
        let indexes: Vec<usize> = (s..args.count).step_by(n).collect();
        let markers: Vec<String> = indexes
            .iter()
            .map(|&i| layout.marker(&scale::agent_id(args.group, i)))
            .collect();
        let lives: Vec<String> = indexes
            .iter()
            .map(|&i| layout.live(&scale::agent_id(args.group, i)))
            .collect();
        let started = Instant::now();
        pipelined(indexes.len(), args.in_flight, |k| {
            let data = encode(&scale::marker(
                args.group,
                indexes[k],
                sid,
                args.tail_every,
                now,
            ));
            bytes += data.len();
            let answer = client.create(&markers[k], &data, &persistent);
            async move { answer.await.map(drop) }
        })
        .await
        .map_err(|e| format!("creating the markers: {e} (run against an empty registry)"))?;
        markers_ms += ms(started);
        let started = Instant::now();
        pipelined(indexes.len(), args.in_flight, |k| {
            let data = encode(&scale::liveness(indexes[k], sid, args.tail_every, now));
            bytes += data.len();
            let answer = client.create(&lives[k], &data, &ephemeral);
            async move { answer.await.map(drop) }
        })
        .await
        .map_err(|e| format!("creating the liveness nodes: {e}"))?;
        live_ms += ms(started);
    }
    let ids: Vec<String> = sessions
        .iter()
        .map(|s| zkwatchdog::registry::session_hex(s.client.session_id().0))
        .collect();
    println!(
        "ready count={} sessions={} session_ids={} markers_ms={markers_ms} live_ms={live_ms} bytes={bytes}",
        args.count,
        sessions.len(),
        ids.join(",")
    );

    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT: {e}"))?;
    // Any session's end (the state watchers report changes; Disconnected is survivable).
    let (tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    for (i, session) in sessions.iter().enumerate() {
        let (mut states, tx, id) = (session.states.clone(), tx.clone(), ids[i].clone());
        tokio::spawn(async move {
            loop {
                match states.changed().await {
                    s @ (SessionState::Expired
                    | SessionState::Closed
                    | SessionState::AuthFailed) => {
                        let _ = tx.send((id, s));
                        return;
                    }
                    other => eprintln!("scale-registry: session {id} is {other:?}"),
                }
            }
        });
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        Some((id, state)) = ended.recv() => {
            eprintln!("scale-registry: session {id} ended ({state:?}): its agents are gone");
            return Ok(ExitCode::from(1));
        }
    }
    for session in sessions {
        session.close(Duration::from_secs(5)).await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch_gone(args: &Args) -> Result<ExitCode, String> {
    let layout = layout(args)?;
    let client = connect(args, Duration::from_secs(10)).await?;
    let dir = layout.live_dir();
    let mut watch = client
        .watch(&dir, AddWatchMode::PersistentRecursive)
        .await
        .map_err(|e| format!("cannot watch {dir}: {e}"))?;
    let wanted: std::collections::BTreeSet<String> = (0..args.count)
        .map(|i| layout.live(&scale::agent_id(args.group, i)))
        .collect();
    let present = client
        .list_children(&dir)
        .await
        .map_err(|e| format!("cannot list {dir}: {e}"))?
        .into_iter()
        .filter(|name| wanted.contains(&format!("{dir}/{name}")))
        .count();
    println!("armed present={present}");
    let deadline = tokio::time::Instant::now() + args.timeout;
    let (mut count, mut first, mut last) = (0usize, 0u128, 0u128);
    while count < present {
        let event = match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(e) => e,
            Err(_) => break,
        };
        let at = now_ns();
        if event.event_type == EventType::Session {
            if matches!(
                event.session_state,
                SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
            ) {
                eprintln!("scale-registry: watch-gone's session ended");
                break;
            }
            continue;
        }
        if event.event_type == EventType::NodeDeleted && wanted.contains(&event.path) {
            if count == 0 {
                first = at;
            }
            last = at;
            count += 1;
        }
    }
    println!("gone count={count} first_ns={first} last_ns={last}");
    drop(watch);
    let states = client.state_watcher();
    Session { client, states }
        .close(Duration::from_secs(5))
        .await;
    Ok(if count == present {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn children(args: &Args) -> Result<ExitCode, String> {
    let client = connect(args, Duration::from_secs(30)).await?;
    let parent = args.path.trim_end_matches('/').to_string();
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    match client.create(&parent, &[], &persistent).await {
        Ok(_) | Err(ZkError::NodeExists) => {}
        Err(e) => return Err(format!("cannot create {parent}: {e}")),
    }
    let names: Vec<String> = (0..args.count)
        .map(|i| scale::agent_id(Group::Steady, i).to_string())
        .collect();
    let paths: Vec<String> = names.iter().map(|n| format!("{parent}/{n}")).collect();
    let started = Instant::now();
    pipelined(paths.len(), args.in_flight, |i| {
        let answer = client.create(&paths[i], &[], &persistent);
        async move {
            match answer.await {
                Ok(_) | Err(ZkError::NodeExists) => Ok(()),
                Err(e) => Err(e),
            }
        }
    })
    .await
    .map_err(|e| format!("creating the children: {e}"))?;
    eprintln!(
        "scale-registry: {} children created in {} ms",
        paths.len(),
        ms(started)
    );
    // The answer's size on the wire: reply header (16) + vector length (4) + per name 4 + bytes.
    let answer_bytes: usize = 20 + names.iter().map(|n| 4 + n.len()).sum::<usize>();
    let started = Instant::now();
    let listed = client.list_children(&parent).await;
    let list_ms = ms(started);
    let ok = match &listed {
        Ok(found) => {
            println!(
                "children created={} listed={} answer_bytes={answer_bytes} list_ms={list_ms}",
                paths.len(),
                found.len()
            );
            found.len() == paths.len()
        }
        Err(e) => {
            println!(
                "children created={} listed=error answer_bytes={answer_bytes} list_ms={list_ms} error={e}",
                paths.len()
            );
            false
        }
    };
    if args.keep {
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    // Clean up on a fresh session if the list broke this one.
    let client = if client.state() == SessionState::SyncConnected {
        client
    } else {
        connect(args, Duration::from_secs(30)).await?
    };
    let started = Instant::now();
    pipelined(paths.len(), args.in_flight, |i| {
        let answer = client.delete(&paths[i], None);
        async move {
            match answer.await {
                Ok(()) | Err(ZkError::NoNode) => Ok(()),
                Err(e) => Err(e),
            }
        }
    })
    .await
    .map_err(|e| format!("deleting the children: {e}"))?;
    match client.delete(&parent, None).await {
        Ok(()) | Err(ZkError::NoNode) => {}
        Err(e) => return Err(format!("cannot delete {parent}: {e}")),
    }
    eprintln!("scale-registry: children deleted in {} ms", ms(started));
    let states = client.state_watcher();
    Session { client, states }
        .close(Duration::from_secs(5))
        .await;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
