//! The cluster under test and the faults carried out on it: a 3-node ZooKeeper ensemble, the
//! capturing SMTP server, two `zkwatcher run` replicas, and `zkwatchdog` agents wrapping
//! `testchild` (the last ones each in its own network namespace). [`run`] starts everything,
//! plays a [`Plan`] in real time, waits for the notices to arrive, and scores them.
//!
//! Concurrency: one task per fault. A fault on an agent holds that agent's lock for its whole
//! duration (fault, hold, undo, settle), so faults on one agent never overlap even when the run
//! falls behind its plan; infrastructure faults share one lock. An ensemble outage takes the
//! outage lock for writing: faults whose ground truth needs ZooKeeper (planned stops, freezes,
//! partitions, crash loops) hold it for reading, so none of them runs near an outage, and every
//! agent fault waits for the ensemble to be back before it settles and lets the next one start.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::sync::{Mutex, RwLock};
use zookeeper_client::Client;

use super::mail::{parse_all, Mail};
use super::netns::NetnsLink;
use super::plan::{FaultKind, Plan, PlannedFault};
use super::score::{score, Executed, Score};
use crate::bin_path;
use crate::smtp::{SmtpOptions, SmtpServer};
use crate::watchdog::{process_alive, read_pids};
use crate::watcher::WatcherProc;
use crate::zk::{ZkEnsemble, ENSEMBLE_SIZE};

/// Session timeout of the watchdogs and watchers (ZooKeeper's tick is 200 ms).
pub const SESSION_TIMEOUT: &str = "2s";
/// Settle time after an agent fault is undone, before the agent's next fault.
const SETTLE: Duration = Duration::from_secs(6);
/// How long the run waits for the notices of the last faults.
const DRAIN: Duration = Duration::from_secs(90);
/// How long it keeps listening once everything expected arrived (late duplicates).
const QUIET: Duration = Duration::from_secs(15);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub events: usize,
    pub agents: usize,
    pub netns_agents: usize,
    /// Faults not started within this time after the run's start are skipped.
    pub max_run: Duration,
    /// Where the logs, the captured messages and the results go.
    pub out: PathBuf,
}

/// Everything a run produced.
#[derive(Debug, Serialize)]
pub struct Report {
    pub plan: Plan,
    pub executed: Vec<Executed>,
    pub score: Score,
    pub mails: Vec<Mail>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The runner's log: one line per step, timestamped from the start, also on stderr.
#[derive(Debug)]
struct Log {
    start: Instant,
    file: StdMutex<File>,
}

impl Log {
    fn line(&self, text: &str) {
        let line = format!("[{:>8.1}s] {text}", self.start.elapsed().as_secs_f64());
        // Never panic on a full disk or a closed stderr: the run goes on and says so at the end.
        let _ = writeln!(std::io::stderr(), "{line}");
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// One `zkwatchdog run` agent and its directory.
#[derive(Debug)]
struct Agent {
    id: String,
    dir: PathBuf,
    netns: Option<String>,
    proc: Option<Child>,
}

impl Agent {
    fn config_path(&self) -> PathBuf {
        self.dir.join("watchdog.toml")
    }

    fn crash_file(&self) -> PathBuf {
        self.dir.join("crash-loop")
    }

    fn write_config(&self, zk_hosts: &str) -> Result<(), String> {
        let pids = self.dir.join("child.pids").display().to_string();
        let script = format!(
            "[ -e '{}' ] && exit 3; exec '{}' --pid-file '{pids}'",
            self.crash_file().display(),
            bin_path("testchild").display()
        );
        let command = ["/bin/sh".to_string(), "-c".to_string(), script];
        let config = format!(
            "zk-hosts = {zk_hosts:?}\nid = {:?}\nsession-timeout = {SESSION_TIMEOUT:?}\n\
             command = {command:?}\n\n[restart]\nstable-after = \"1s\"\n\
             backoff-initial = \"300ms\"\nbackoff-max = \"1s\"\n",
            self.id
        );
        std::fs::write(self.config_path(), config)
            .map_err(|e| format!("cannot write {}: {e}", self.config_path().display()))
    }

    /// Starts the watchdog (in its namespace, if any); its pid goes to the state file.
    fn start(&mut self, state: &Path) -> Result<u32, String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("watchdog.log"))
            .map_err(|e| format!("cannot open the watchdog log: {e}"))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot clone a file handle: {e}"))?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin_path("zkwatchdog"));
                c
            }
            None => Command::new(bin_path("zkwatchdog")),
        };
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env_remove("ZK_HOSTS")
            .env("ZKWATCHDOG_LOG", "info,zookeeper_client=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start zkwatchdog for {}: {e}", self.id))?;
        let pid = child.id();
        record_pid(state, pid);
        self.proc = Some(child);
        Ok(pid)
    }

    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Child::id)
    }

    fn signal(&self, signal: Signal) -> Result<(), String> {
        let pid = self.pid().ok_or("the watchdog is not running")?;
        kill(Pid::from_raw(pid as i32), signal)
            .map_err(|e| format!("cannot send {signal} to {pid}: {e}"))
    }

    /// Waits (bounded) for the watchdog to exit; false if it did not.
    async fn wait_exit(&mut self, deadline: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            match self.proc.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => {
                    self.proc = None;
                    return true;
                }
                Some(Ok(None)) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        false
    }

    /// SIGKILL (also when stopped), then reap.
    async fn kill_hard(&mut self) {
        if self.signal(Signal::SIGKILL).is_ok() {
            self.wait_exit(Duration::from_secs(10)).await;
        }
    }

    /// The newest child's pid if it is alive and not `not`.
    fn live_child(&self, not: Option<u32>) -> Option<u32> {
        read_pids(&self.dir.join("child.pids"))
            .last()
            .copied()
            .filter(|p| Some(*p) != not && process_alive(*p))
    }

    async fn wait_child(&self, not: Option<u32>, deadline: Duration) -> Option<u32> {
        let start = Instant::now();
        loop {
            if let Some(p) = self.live_child(not) {
                return Some(p);
            }
            if start.elapsed() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn record_pid(state: &Path, pid: u32) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(state) {
        let _ = writeln!(f, "pid {pid}");
    }
}

/// The cluster.
struct World {
    ens: ZkEnsemble,
    smtp: SmtpServer,
    agents: Vec<Mutex<Agent>>,
    links: Vec<NetnsLink>,
    watchers: StdMutex<Vec<WatcherProc>>,
    infra: Mutex<()>,
    outage: RwLock<()>,
    log: Log,
    state: PathBuf,
    out: PathBuf,
}

impl World {
    fn start_watcher(&self) -> WatcherProc {
        let w = WatcherProc::start(
            &self.ens.connect_string(),
            "group-wait = \"1s\"",
            Some(&self.smtp),
            "",
        );
        record_pid(&self.state, w.pid());
        w
    }

    /// The pid of the leading watcher, from the election nodes (lowest sequence leads).
    async fn leader_pid(&self) -> Option<u32> {
        let connect = self.ens.connect_string();
        let lookup = async {
            let client = Client::connector()
                .with_session_timeout(Duration::from_secs(4))
                .connect(&connect)
                .await
                .ok()?;
            // Only the election's nodes: the leader keeps its `handled` record there too.
            let mut names: Vec<String> = client
                .list_children("/zkwatchdog/watchers")
                .await
                .ok()?
                .into_iter()
                .filter(|n| n.starts_with("n-"))
                .collect();
            names.sort();
            let first = names.first()?;
            let (data, _) = client
                .get_data(&format!("/zkwatchdog/watchers/{first}"))
                .await
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
            v.get("pid")?.as_u64().map(|p| p as u32)
        };
        tokio::time::timeout(Duration::from_secs(8), lookup)
            .await
            .ok()
            .flatten()
    }

    fn copy_logs(&self) {
        if let Ok(watchers) = self.watchers.lock() {
            for w in watchers.iter() {
                let _ = std::fs::write(self.out.join(format!("watcher-{}.log", w.pid())), w.log());
            }
        }
    }
}

/// A fault's outcome before it becomes an [`Executed`].
struct Outcome {
    at_ms: u64,
    held: Duration,
    skipped: Option<String>,
}

impl Outcome {
    fn skipped(why: String) -> Self {
        Outcome {
            at_ms: now_ms(),
            held: Duration::ZERO,
            skipped: Some(why),
        }
    }
}

async fn blocking<T: Send + 'static>(
    world: &Arc<World>,
    f: impl FnOnce(&World) -> T + Send + 'static,
) -> Result<T, String> {
    let w = world.clone();
    tokio::task::spawn_blocking(move || f(&w))
        .await
        .map_err(|e| format!("a fixture call failed: {e}"))
}

async fn agent_fault(world: Arc<World>, f: PlannedFault) -> Outcome {
    let index = f.agent.unwrap_or(0);
    let hold = Duration::from_millis(f.hold_ms);
    let mut agent = world.agents[index].lock().await;
    // Faults whose ground truth needs ZooKeeper stay clear of ensemble outages.
    let guard = if f.kind.outage_safe() {
        None
    } else {
        Some(world.outage.read().await)
    };
    let label = format!("#{} {} {}", f.seq, f.kind.name(), agent.id);
    let before = agent.live_child(None);
    let outcome = match f.kind {
        FaultKind::Crash | FaultKind::CrashLoop => {
            let Some(pid) = agent.wait_child(None, Duration::from_secs(15)).await else {
                return Outcome::skipped("no running child".into());
            };
            if f.kind == FaultKind::CrashLoop {
                if let Err(e) = std::fs::write(agent.crash_file(), b"") {
                    return Outcome::skipped(format!("cannot create the crash file: {e}"));
                }
            }
            let at_ms = now_ms();
            if let Err(e) = kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
                let _ = std::fs::remove_file(agent.crash_file());
                return Outcome::skipped(format!("cannot kill child {pid}: {e}"));
            }
            world.log.line(&format!("{label}: child {pid} SIGKILLed"));
            if f.kind == FaultKind::CrashLoop {
                tokio::time::sleep(hold).await;
                let _ = std::fs::remove_file(agent.crash_file());
                world.log.line(&format!("{label}: crash loop over"));
            }
            if agent
                .wait_child(Some(pid), Duration::from_secs(30))
                .await
                .is_none()
            {
                world
                    .log
                    .line(&format!("{label}: no new child within 30 s"));
            }
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        FaultKind::PlannedStop | FaultKind::WatchdogKill => {
            let signal = if f.kind == FaultKind::PlannedStop {
                Signal::SIGTERM
            } else {
                Signal::SIGKILL
            };
            let at_ms = now_ms();
            if let Err(e) = agent.signal(signal) {
                return Outcome::skipped(e);
            }
            if !agent.wait_exit(Duration::from_secs(30)).await {
                world
                    .log
                    .line(&format!("{label}: did not exit within 30 s; SIGKILL"));
                agent.kill_hard().await;
            }
            world
                .log
                .line(&format!("{label}: watchdog {signal}, exited"));
            tokio::time::sleep(hold).await;
            if let Err(e) = agent.start(&world.state) {
                world.log.line(&format!("{label}: {e}"));
            }
            if agent
                .wait_child(before, Duration::from_secs(30))
                .await
                .is_none()
            {
                world.log.line(&format!(
                    "{label}: restarted watchdog has no child within 30 s"
                ));
            }
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        FaultKind::WatchdogFreeze => {
            let at_ms = now_ms();
            if let Err(e) = agent.signal(Signal::SIGSTOP) {
                return Outcome::skipped(e);
            }
            world.log.line(&format!("{label}: watchdog SIGSTOPped"));
            tokio::time::sleep(hold).await;
            let _ = agent.signal(Signal::SIGCONT);
            world.log.line(&format!("{label}: watchdog SIGCONTed"));
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        FaultKind::Partition => {
            let Some(link) = world
                .links
                .iter()
                .find(|l| agent.netns.as_deref() == Some(l.ns.as_str()))
            else {
                return Outcome::skipped("the agent has no network namespace".into());
            };
            if let Err(e) = link.cut() {
                return Outcome::skipped(e);
            }
            let at_ms = now_ms();
            world
                .log
                .line(&format!("{label}: link {} cut", link.host_if));
            tokio::time::sleep(hold).await;
            if let Err(e) = link.restore() {
                world.log.line(&format!("{label}: restore failed: {e}"));
            }
            world.log.line(&format!("{label}: link restored"));
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        _ => Outcome::skipped("not an agent fault".into()),
    };
    drop(guard);
    // Wait for the ensemble if it is down (a crash during an outage is detected after it), then
    // let the agent settle before its next fault.
    drop(world.outage.read().await);
    tokio::time::sleep(SETTLE).await;
    outcome
}

async fn infra_fault(world: Arc<World>, f: PlannedFault) -> Outcome {
    let hold = Duration::from_millis(f.hold_ms);
    let _infra = world.infra.lock().await;
    let label = format!("#{} {}", f.seq, f.kind.name());
    match f.kind {
        FaultKind::WatcherKill | FaultKind::WatcherFreeze => {
            let Some(pid) = world.leader_pid().await else {
                return Outcome::skipped("no leading watcher found".into());
            };
            let at_ms = now_ms();
            {
                let mut watchers = world.watchers.lock().unwrap_or_else(|p| p.into_inner());
                let Some(w) = watchers.iter_mut().find(|w| w.pid() == pid) else {
                    return Outcome::skipped(format!("leader pid {pid} is not ours"));
                };
                if f.kind == FaultKind::WatcherKill {
                    let _ = std::fs::write(world.out.join(format!("watcher-{pid}.log")), w.log());
                    w.kill();
                } else {
                    w.signal(Signal::SIGSTOP);
                }
            }
            world.log.line(&format!("{label}: leader {pid}"));
            tokio::time::sleep(hold).await;
            {
                let mut watchers = world.watchers.lock().unwrap_or_else(|p| p.into_inner());
                if f.kind == FaultKind::WatcherKill {
                    watchers.retain(|w| w.pid() != pid);
                    let new = world.start_watcher();
                    world
                        .log
                        .line(&format!("{label}: new watcher {}", new.pid()));
                    watchers.push(new);
                } else if let Some(w) = watchers.iter().find(|w| w.pid() == pid) {
                    w.signal(Signal::SIGCONT);
                    world.log.line(&format!("{label}: {pid} thawed"));
                }
            }
            tokio::time::sleep(Duration::from_secs(4)).await;
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        FaultKind::ZkLeaderKill => {
            let Ok(Some(n)) = blocking(&world, |w| w.ens.try_leader()).await else {
                return Outcome::skipped("no ZooKeeper leader".into());
            };
            let at_ms = now_ms();
            if let Err(e) = blocking(&world, move |w| w.ens.kill_node(n)).await {
                return Outcome::skipped(e);
            }
            world.log.line(&format!("{label}: node {n} killed"));
            tokio::time::sleep(hold).await;
            if let Err(e) = blocking(&world, move |w| w.ens.start_node(n)).await {
                world.log.line(&format!("{label}: restart failed: {e}"));
            }
            world.log.line(&format!("{label}: node {n} back"));
            tokio::time::sleep(Duration::from_secs(3)).await;
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        FaultKind::EnsembleOutage => {
            let outage = world.outage.write().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let at_ms = now_ms();
            let _ = blocking(&world, |w| {
                for n in 1..=ENSEMBLE_SIZE {
                    w.ens.kill_node(n);
                }
            })
            .await;
            world.log.line(&format!("{label}: every node killed"));
            tokio::time::sleep(hold).await;
            let back = blocking(&world, |w| {
                for n in 1..=ENSEMBLE_SIZE {
                    w.ens.start_node_nowait(n);
                }
                w.ens.leader()
            })
            .await;
            world.log.line(&format!("{label}: ensemble back: {back:?}"));
            tokio::time::sleep(Duration::from_secs(8)).await;
            drop(outage);
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        FaultKind::SmtpOutage => {
            let at_ms = now_ms();
            let _ = blocking(&world, |w| w.smtp.stop()).await;
            world.log.line(&format!("{label}: SMTP server stopped"));
            tokio::time::sleep(hold).await;
            if let Err(e) = blocking(&world, |w| w.smtp.start_again()).await {
                world.log.line(&format!("{label}: restart failed: {e}"));
            }
            world.log.line(&format!("{label}: SMTP server back"));
            Outcome {
                at_ms,
                held: hold,
                skipped: None,
            }
        }
        _ => Outcome::skipped("not an infrastructure fault".into()),
    }
}

/// Starts the cluster, plays `plan`, waits for the notices and scores them.
pub async fn run(opts: &Options, plan: Plan) -> Result<Report, String> {
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let state = opts.out.join("state");
    let log = Log {
        start: Instant::now(),
        file: StdMutex::new(
            File::create(opts.out.join("runner.log"))
                .map_err(|e| format!("cannot create the runner log: {e}"))?,
        ),
    };
    log.line(&format!(
        "seed {} events {} agents {} ({} in network namespaces), plan span {:.0}s",
        opts.seed,
        plan.faults.len(),
        opts.agents,
        opts.netns_agents,
        plan.span_ms() as f64 / 1000.0
    ));
    let (ens, smtp) = tokio::task::spawn_blocking(|| {
        (
            ZkEnsemble::start(),
            SmtpServer::start(SmtpOptions::default()),
        )
    })
    .await
    .map_err(|e| format!("cannot start ZooKeeper and SMTP: {e}"))?;
    let ports: Vec<u16> = (1..=ENSEMBLE_SIZE).map(|n| ens.client_port(n)).collect();
    log.line(&format!(
        "ensemble {} in {}, SMTP {}",
        ens.connect_string(),
        ens.dir().display(),
        smtp.url()
    ));

    let mut links = Vec::new();
    let mut agents = Vec::new();
    for i in 0..opts.agents {
        let id = format!("chaos-{:02}", i + 1);
        let dir = opts.out.join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let in_netns = plan.shape.in_netns(i);
        let (netns, zk_hosts) = if in_netns {
            let mut link = NetnsLink::create(links.len() + 1, &state)?;
            link.forward(&ports).await?;
            let hosts = link.connect_string(&ports);
            let ns = link.ns.clone();
            log.line(&format!(
                "{id}: namespace {ns}, veth {} {} <-> {}",
                link.host_if, link.host_ip, link.ns_ip
            ));
            links.push(link);
            (Some(ns), hosts)
        } else {
            (None, ens.connect_string())
        };
        let mut agent = Agent {
            id,
            dir,
            netns,
            proc: None,
        };
        agent.write_config(&zk_hosts)?;
        agent.start(&state)?;
        agents.push(agent);
    }
    let world = Arc::new(World {
        ens,
        smtp,
        agents: agents.into_iter().map(Mutex::new).collect(),
        links,
        watchers: StdMutex::new(Vec::new()),
        infra: Mutex::new(()),
        outage: RwLock::new(()),
        log,
        state,
        out: opts.out.clone(),
    });
    {
        let first = world.start_watcher();
        let second = world.start_watcher();
        let mut w = world.watchers.lock().unwrap_or_else(|p| p.into_inner());
        w.push(first);
        w.push(second);
    }
    let ids: Vec<String> = (0..opts.agents)
        .map(|i| format!("chaos-{:02}", i + 1))
        .collect();
    // Every agent up (a child running) and a watcher leading that has seen them.
    for a in &world.agents {
        let a = a.lock().await;
        if a.wait_child(None, Duration::from_secs(60)).await.is_none() {
            return Err(format!("{} has no running child after 60 s", a.id));
        }
    }
    let ready = Instant::now();
    while world.leader_pid().await.is_none() {
        if ready.elapsed() > Duration::from_secs(60) {
            return Err("no watcher leads after 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let preexisting = world.smtp.try_messages().map(|m| m.len()).unwrap_or(0);
    world.log.line(&format!(
        "cluster up ({preexisting} messages before the first fault); playing the plan"
    ));

    let start = Instant::now();
    let mut tasks = Vec::new();
    for f in plan.faults.clone() {
        let due = Duration::from_millis(f.at_ms);
        if due > opts.max_run {
            tasks.push((f, None));
            continue;
        }
        tokio::time::sleep(due.saturating_sub(start.elapsed())).await;
        let w = world.clone();
        let kind = f.kind;
        let g = f.clone();
        let handle = tokio::spawn(async move {
            if kind.on_agent() {
                agent_fault(w, g).await
            } else {
                infra_fault(w, g).await
            }
        });
        tasks.push((f, Some(handle)));
    }
    let mut executed = Vec::new();
    let hard_end = start + opts.max_run + Duration::from_secs(180);
    for (f, handle) in tasks {
        let agent = f.agent.map(|i| ids[i].clone());
        let outcome = match handle {
            None => Outcome::skipped("beyond --max-run".into()),
            Some(mut h) => {
                let left = hard_end.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, &mut h).await {
                    Ok(Ok(o)) => o,
                    Ok(Err(e)) => Outcome::skipped(format!("the fault's task failed: {e}")),
                    Err(_) => {
                        h.abort();
                        Outcome::skipped("did not finish in time".into())
                    }
                }
            }
        };
        if let Some(why) = &outcome.skipped {
            world
                .log
                .line(&format!("#{} {} skipped: {why}", f.seq, f.kind.name()));
        }
        executed.push(Executed {
            seq: f.seq,
            kind: f.kind,
            agent,
            at_ms: outcome.at_ms,
            held_ms: outcome.held.as_millis() as u64,
            skipped: outcome.skipped,
        });
    }
    world.log.line("plan played; waiting for the notices");

    // Drain: until every abnormal fault has a down notice (or DRAIN passes), then QUIET more.
    let drain_start = Instant::now();
    loop {
        if let Ok(captured) = world.smtp.try_messages() {
            let s = score(&executed, &parse_all(&captured, &ids));
            if s.detected + s.folded == s.abnormal {
                break;
            }
        }
        if drain_start.elapsed() > DRAIN {
            world
                .log
                .line("drain deadline passed with faults unannounced");
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(QUIET).await;
    let captured = blocking(&world, |w| w.smtp.try_messages())
        .await?
        .map_err(|e| format!("cannot read the captured messages: {e}"))?;
    if let Ok(mut f) = File::create(opts.out.join("mails.jsonl")) {
        for m in &captured {
            let _ = writeln!(
                f,
                "{}",
                serde_json::json!({"received_at": m.received_at, "subject": m.subject, "body": m.body})
            );
        }
    }
    let mails = parse_all(&captured, &ids);
    let s = score(&executed, &mails);
    world.copy_logs();
    world.log.line("scored; stopping everything");

    // Teardown: watchers first (no more mail), then the agents; the fixtures stop the rest.
    if let Ok(mut w) = world.watchers.lock() {
        for w in w.iter_mut() {
            w.signal(Signal::SIGCONT);
            w.kill();
        }
    }
    for a in &world.agents {
        let mut a = a.lock().await;
        let _ = a.signal(Signal::SIGCONT);
        a.kill_hard().await;
    }
    for l in &world.links {
        let _ = l.restore();
    }
    // The fixtures' drops block (zk.sh stop): off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || drop(world)).await;
    Ok(Report {
        plan,
        executed,
        score: s,
        mails,
    })
}
