//! The `zkwatcher` command line: `run`, `status`, `silence`, `unsilence`, `test-notify`.
//! Exit codes: 0 success, 1 runtime failure, 2 bad config or usage.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing::error;
use zkwatchdog::config::ZkArgs;
use zkwatchdog::configfile::parse_duration;
use zkwatchdog::logging::{self, LogFormat};
use zkwatchdog::registry::server_version::WatchMode;
use zkwatchdog::registry::{AgentId, NodeAcls, Session, Timestamp};
use zkwatcher::config::{self, Config, Needs, Overrides};
use zkwatcher::notice::{Notice, Origin};
use zkwatcher::notify::Channel;
use zkwatcher::{status, watch};

#[derive(Debug, Parser)]
#[command(
    name = "zkwatcher",
    version,
    about = "Watch the zkwatchdog registry and notify people when an agent dies abnormally"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    zk: ZkArgs,
    /// Log lines: "human" or "json" (one object per line; events about an agent name it)
    /// [default: the config's `log-format`, else human].
    #[arg(long, value_name = "FORMAT", env = "ZKWATCHER_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Track the registry and send notifications (runs until SIGTERM or SIGINT).
    Run {
        #[command(flatten)]
        common: Common,
        /// Serve Prometheus metrics at http://ADDR/metrics, e.g. "127.0.0.1:9465".
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
    },
    /// Show every registered agent, like `supervisorctl status`.
    Status {
        #[command(flatten)]
        common: Common,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mute notifications for one agent for a while (incidents are still recorded).
    Silence {
        #[command(flatten)]
        common: Common,
        /// The agent id.
        id: String,
        /// How long, e.g. "2h", "30m".
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why (shown in status and logs).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove an agent's silence.
    Unsilence {
        #[command(flatten)]
        common: Common,
        /// The agent id.
        id: String,
    },
    /// Check the config as `run` would read it (channels built, their secrets read), print a
    /// summary, and exit: 0 when it is valid, 2 with every problem listed (for `ExecStartPre`,
    /// like `nginx -t`). ZooKeeper is not contacted and nothing is sent.
    CheckConfig {
        #[command(flatten)]
        common: Common,
    },
    /// Send one test message on every configured channel.
    TestNotify {
        #[command(flatten)]
        common: Common,
    },
}

fn main() -> ExitCode {
    zkwatchdog::install_crypto_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zkwatcher: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Cmd::Run {
                common,
                metrics_addr,
            } => run(common, metrics_addr).await,
            Cmd::Status { common, json } => status_cmd(common, json).await,
            Cmd::Silence {
                common,
                id,
                duration,
                reason,
            } => silence(common, id, Some((duration, reason))).await,
            Cmd::Unsilence { common, id } => silence(common, id, None).await,
            Cmd::TestNotify { common } => test_notify(common).await,
            Cmd::CheckConfig { common } => check_config(&common),
        }
    })
}

/// The one-line reason for exiting: plain on stderr, or an error event in JSON mode.
fn say(reason: &str) {
    logging::say("zkwatcher", reason);
}

fn load(common: &Common, needs: Needs) -> Result<Config, ExitCode> {
    load_with(common, needs, None)
}

/// [`load`], with `run`'s own flag.
fn load_with(
    common: &Common,
    needs: Needs,
    metrics_addr: Option<String>,
) -> Result<Config, ExitCode> {
    let overrides = Overrides {
        zk: common.zk.clone(),
        metrics_addr,
    };
    // Logging starts once the config is read: the flag, else the config's `log-format`.
    let result = config::load(common.zk.config.as_deref(), overrides, needs);
    let from_file = result.as_ref().ok().and_then(|c| c.log_format);
    let format = common.log_format.or(from_file).unwrap_or_default();
    logging::init(format, "ZKWATCHER_LOG", None);
    result.map_err(|e| {
        say(&e.to_string());
        ExitCode::from(2)
    })
}

/// Loads a config that must name channels, and builds them.
fn load_with_channels(
    common: &Common,
    metrics_addr: Option<String>,
) -> Result<(Config, Vec<Channel>), ExitCode> {
    let config = load_with(common, Needs::Channels, metrics_addr)?;
    let channels = channels(&config)?;
    Ok((config, channels))
}

fn channels(config: &Config) -> Result<Vec<Channel>, ExitCode> {
    let mut out = Vec::new();
    let fail = |e: &dyn std::error::Error| {
        say(&logging::chain(e));
        ExitCode::from(2)
    };
    if let Some(email) = &config.email {
        out.push(Channel::email(email).map_err(|e| fail(&e))?);
    }
    for w in &config.webhooks {
        out.push(Channel::webhook(w).map_err(|e| fail(&e))?);
    }
    Ok(out)
}

async fn run(common: Common, metrics_addr: Option<String>) -> ExitCode {
    let (config, channels) = match load_with_channels(&common, metrics_addr) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let mode = match check_server_version(&config).await {
        Ok(mode) => mode,
        Err(code) => return code,
    };
    let names: Vec<&str> = channels.iter().map(|c| c.name()).collect();
    tracing::info!(zk = %config.zk_hosts, root = %config.layout.root(), channels = ?names, group_wait = ?config.group_wait, "zkwatcher starting");
    let metrics = zkwatcher::metrics::WatcherMetrics::new(
        &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
    );
    // Kept until the watcher stops; a busy address is a start-up error, like a bad config.
    let _metrics_server = match config.metrics_addr {
        None => None,
        Some(addr) => {
            match zkwatchdog::metrics_http::MetricsServer::start(addr, metrics.render()) {
                Ok(server) => Some(server),
                Err(e) => {
                    say(&logging::chain(&e));
                    return ExitCode::from(2);
                }
            }
        }
    };
    watch::run(config, channels, metrics, mode, shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// The watch mode the ZooKeeper release allows: one-shot watches for 3.5, the persistent
/// recursive watch from 3.6 and when no server tells its release (a server that then answers
/// `addWatch` with UNIMPLEMENTED gets one-shot watches, see `RegistryWatch::arm`). Refuses, at
/// start and like a bad config (exit 2), a ZooKeeper older than 3.5 (no node can be written).
/// Servers that do not answer now are no reason to refuse: the watcher waits for them.
async fn check_server_version(config: &Config) -> Result<WatchMode, ExitCode> {
    use zkwatchdog::registry::server_version::{check, Verdict};
    match check(&config.zk_hosts, config.zk_access.tls.as_ref()).await {
        Err(too_old) => {
            say(&too_old.to_string());
            Err(ExitCode::from(2))
        }
        Ok(Verdict::Known {
            version,
            server,
            mode,
        }) => {
            match mode {
                WatchMode::OneShot => {
                    tracing::info!(%version, %server, "zookeeper release (no persistent watches before 3.6: following the registry with one-shot watches, about two per agent)")
                }
                WatchMode::PersistentRecursive => {
                    tracing::info!(%version, %server, "zookeeper release")
                }
            }
            Ok(mode)
        }
        Ok(Verdict::Unknown) => Ok(WatchMode::PersistentRecursive),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

async fn connect(config: &Config) -> Result<Session, ExitCode> {
    Session::connect(&config.zk_hosts, config.session_timeout, &config.zk_access)
        .await
        .map_err(|e| {
            say(&format!(
                "cannot connect to zookeeper at {}: {}",
                config.zk_hosts,
                logging::chain(&e)
            ));
            ExitCode::from(1)
        })
}

async fn status_cmd(common: Common, json: bool) -> ExitCode {
    let config = match load(&common, Needs::Registry) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let session = match connect(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let settle = zkwatcher::tracker::settle_time(config.session_timeout);
    let rows = status::rows(&session.client, &config.layout, settle).await;
    session.close(Duration::from_secs(2)).await;
    match rows {
        Ok(rows) if json => match serde_json::to_string_pretty(&rows) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zkwatcher: {e}");
                ExitCode::from(1)
            }
        },
        Ok(rows) => {
            print!("{}", status::table(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!(
                "reading the registry failed: {}",
                logging::chain(&e)
            ));
            ExitCode::from(1)
        }
    }
}

async fn silence(common: Common, id: String, set: Option<(String, String)>) -> ExitCode {
    let config = match load(&common, Needs::Registry) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let id = match AgentId::new(id) {
        Ok(id) => id,
        Err(e) => {
            say(&format!("invalid agent id: {e}"));
            return ExitCode::from(2);
        }
    };
    let silence = match set {
        None => None,
        Some((duration, reason)) => match parse_duration(&duration) {
            Ok(d) => {
                let by = format!(
                    "{}@{}",
                    std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                    watch::host()
                );
                match zkwatcher::silence::new(&id, d, reason, by, Timestamp::now()) {
                    Some(s) => Some(s),
                    None => {
                        say("--for must be more than 0s");
                        return ExitCode::from(2);
                    }
                }
            }
            Err(e) => {
                say(&format!("--for: {e}"));
                return ExitCode::from(2);
            }
        },
    };
    let session = match connect(&config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let acls = NodeAcls::new(&config.zk_access);
    let (client, layout) = (&session.client, &config.layout);
    let result = match &silence {
        Some(s) => zkwatcher::silence::put(client, layout, &acls, &id, s).await,
        None => zkwatcher::silence::remove(client, layout, &id).await,
    };
    session.close(Duration::from_secs(2)).await;
    match (result, silence) {
        (Ok(()), Some(s)) => {
            println!("{id} silenced until {} ({})", s.until, layout.silence(&id));
            ExitCode::SUCCESS
        }
        (Ok(()), None) => {
            println!("{id} is no longer silenced");
            ExitCode::SUCCESS
        }
        (Err((znode, e)), _) => {
            match acls.denied(&znode, &e) {
                Some(why) => say(&why),
                None => say(&format!("writing {znode} failed: {}", logging::chain(&e))),
            }
            ExitCode::from(1)
        }
    }
}

fn check_config(common: &Common) -> ExitCode {
    let (config, channels) = match load_with_channels(common, None) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let origin = common.zk.origin();
    let names: Vec<&str> = channels.iter().map(|c| c.name()).collect();
    println!(
        "{origin}: ok: zookeeper {}{}, channels: {}",
        config.zk_hosts,
        config.layout.root(),
        names.join(", ")
    );
    ExitCode::SUCCESS
}

async fn test_notify(common: Common) -> ExitCode {
    let (config, channels) = match load_with_channels(&common, None) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let origin = Origin {
        zk_hosts: config.zk_hosts.clone(),
        root: config.layout.root().to_string(),
        watcher_host: watch::host(),
    };
    let mut failed = 0;
    for channel in &channels {
        match channel.send(&Notice::Test, &origin).await {
            Ok(()) => println!("{}: accepted", channel.name()),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {}", channel.name(), e.message);
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
