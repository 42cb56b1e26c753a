//! The `zkwatchdog` command line: parse, set up logging, load the config, run, map the result
//! to an exit code (0 planned stop, 1 runtime failure, 2 bad config, 3 give-up).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zkwatchdog::config::{self, Overrides, ZkArgs};
use zkwatchdog::logging::{self, LogFormat};
use zkwatchdog::run::RunResult;

#[derive(Debug, Parser)]
#[command(
    name = "zkwatchdog",
    version,
    about = "Supervise an agent and publish its liveness in ZooKeeper"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    zk: ZkArgs,
    /// Log lines: "human" or "json" (one object per line, with the agent id on every line)
    /// [default: the config's `log-format`, else human].
    #[arg(long, value_name = "FORMAT", env = "ZKWATCHDOG_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

/// What `run` (and `check-config`) take beyond the shared flags.
#[derive(Debug, Args)]
struct AgentArgs {
    /// Agent id [default: NAME@HOSTNAME].
    #[arg(long)]
    id: Option<String>,
    /// Agent name [default: the command's file name].
    #[arg(long)]
    name: Option<String>,
    /// Agent kind: flume, kafka-connect, kafka or generic [default: generic].
    #[arg(long)]
    kind: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. "127.0.0.1:9464".
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// The command to supervise (overrides `command` in the config).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl AgentArgs {
    fn overrides(self, common: &Common) -> Overrides {
        Overrides {
            id: self.id,
            name: self.name,
            kind: self.kind,
            command: self.command,
            metrics_addr: self.metrics_addr,
            ..overrides(common)
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run COMMAND under supervision.
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Check the config as `run` would read it (with the same flags), print what it runs, and
    /// exit: 0 when it is valid, 2 with every problem listed (for `ExecStartPre`, like
    /// `nginx -t`). Nothing is started and ZooKeeper is not contacted.
    CheckConfig {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Remove an agent from the registry for good (marker and liveness node).
    Deregister {
        #[command(flatten)]
        common: Common,
        /// Agent id.
        #[arg(long)]
        id: String,
    },
}

/// Sets up logging once the config is read (the agent id goes on every JSON line): the flag,
/// else the config's `log-format`, else human.
fn init_logging(flag: Option<LogFormat>, config: Option<LogFormat>, agent: Option<&str>) {
    let format = flag.or(config).unwrap_or_default();
    logging::init(format, "ZKWATCHDOG_LOG", agent);
}

/// The one-line reason for exiting: plain on stderr, or an error event in JSON mode.
fn say(reason: &str) {
    logging::say("zkwatchdog", reason);
}

fn overrides(common: &Common) -> Overrides {
    Overrides {
        zk: common.zk.clone(),
        ..Overrides::default()
    }
}

fn main() -> ExitCode {
    zkwatchdog::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run { common, agent } => {
            let o = agent.overrides(&common);
            let config = match config::load(common.zk.config.as_deref(), o, true) {
                Ok(c) => c,
                Err(e) => {
                    init_logging(common.log_format, None, None);
                    say(&e.to_string());
                    return ExitCode::from(2);
                }
            };
            init_logging(
                common.log_format,
                config.log_format,
                Some(config.id.as_str()),
            );
            let guardian = if config.child_outlives_watchdog {
                None
            } else {
                // SAFETY: the process is still single-threaded: the runtime starts below, and
                // nothing before this line starts a thread (logging writes synchronously).
                match unsafe { zkwatchdog::guardian::Guardian::spawn() } {
                    Ok(g) => Some(g),
                    Err(e) => {
                        eprintln!("zkwatchdog: cannot start the guardian process: {e}");
                        return ExitCode::from(1);
                    }
                }
            };
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            runtime.block_on(async move {
                let control = match zkwatchdog::signals::listen() {
                    Ok(rx) => rx,
                    Err(e) => {
                        eprintln!("zkwatchdog: cannot install signal handlers: {e}");
                        return ExitCode::from(1);
                    }
                };
                match zkwatchdog::run::run(config, control, guardian).await {
                    RunResult::Stopped => ExitCode::SUCCESS,
                    RunResult::StoppedUnregistered(e) => {
                        say(&format!(
                            "stopped, but the agent is still registered: {}",
                            logging::chain(&e)
                        ));
                        ExitCode::from(1)
                    }
                    RunResult::Fatal(why) => {
                        say(&format!("gave up: {why}"));
                        // Its own code, so that a service manager can tell a give-up (final:
                        // the marker says `fatal` and the watcher has alerted) from a failure
                        // of the watchdog itself.
                        ExitCode::from(3)
                    }
                    RunResult::MetricsUnavailable(e) => {
                        say(&logging::chain(&e));
                        ExitCode::from(2)
                    }
                    RunResult::Refused(why) => {
                        say(&why);
                        ExitCode::from(2)
                    }
                }
            })
        }
        Cmd::CheckConfig { common, agent } => {
            let o = agent.overrides(&common);
            init_logging(common.log_format, None, None);
            let origin = common.zk.origin();
            match config::load(common.zk.config.as_deref(), o, true) {
                Ok(c) => {
                    println!(
                        "{origin}: ok: agent {} ({}), zookeeper {}{}, command {:?}",
                        c.id,
                        c.kind.as_str(),
                        c.zk_hosts,
                        c.layout.root(),
                        c.command
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    say(&e.to_string());
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Deregister { common, id } => {
            let o = Overrides {
                id: Some(id),
                ..overrides(&common)
            };
            let config = match config::load(common.zk.config.as_deref(), o, false) {
                Ok(c) => c,
                Err(e) => {
                    init_logging(common.log_format, None, None);
                    say(&e.to_string());
                    return ExitCode::from(2);
                }
            };
            init_logging(
                common.log_format,
                config.log_format,
                Some(config.id.as_str()),
            );
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            runtime.block_on(async move {
                match zkwatchdog::deregister::deregister(&config).await {
                    Ok(warning) => {
                        if let Some(w) = warning {
                            match logging::format() {
                                LogFormat::Human => eprintln!("zkwatchdog: warning: {w}"),
                                LogFormat::Json => tracing::warn!("{w}"),
                            }
                        }
                        println!("deregistered {}", config.id);
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        say(&logging::chain(&e));
                        ExitCode::from(1)
                    }
                }
            })
        }
    }
}

/// One thread: the child is forked from it, and `PR_SET_PDEATHSIG` follows that thread's life.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("zkwatchdog: cannot start the runtime: {e}");
            None
        }
    }
}
