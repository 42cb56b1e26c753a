//! `chaos`: the chaos suite's runner (`scripts/chaos.sh` builds and runs it; docs/chaos.md).
//!
//! ```text
//! chaos [--events N] [--seed N] [--agents N] [--netns-agents N] [--max-run SECONDS]
//!       [--out DIR] [--json FILE] [--plan] [--rescore RESULT_JSON]
//!       [--check] [--min-recall PERCENT] [--max-false-alarms N] [--max-duplicates N]
//! ```
//!
//! Plays a seeded schedule of faults against the real programs and prints one table of what the
//! on-call received. `--plan` prints the schedule and exits; `--rescore` scores the faults and
//! messages of an earlier run's `result.json` again (after a change of the scoring) and prints
//! the table. `--check` exits 1 when recall is
//! below `--min-recall` (default 100), or false alarms or duplicates exceed their maximum
//! (default 0 each). Exit 2: bad usage or the cluster could not be set up.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use zkwatchdog_tests::chaos::mail::{parse_all, Mail};
use zkwatchdog_tests::chaos::plan::{plan, Shape};
use zkwatchdog_tests::chaos::score::{score, table, Executed};
use zkwatchdog_tests::chaos::world::{run, Options};
use zkwatchdog_tests::smtp::CapturedMail;

#[derive(Debug)]
struct Args {
    opts: Options,
    json: Option<PathBuf>,
    plan_only: bool,
    rescore: Option<PathBuf>,
    check: bool,
    min_recall: f64,
    max_false_alarms: usize,
    max_duplicates: usize,
}

fn usage(msg: &str) -> ! {
    eprintln!("chaos: {msg} (see the header of tests/src/bin/chaos.rs or docs/chaos.md)");
    std::process::exit(2);
}

fn parse() -> Args {
    let mut a = Args {
        opts: Options {
            seed: 1,
            events: 40,
            agents: 8,
            netns_agents: 2,
            max_run: Duration::ZERO,
            out: PathBuf::new(),
        },
        json: None,
        plan_only: false,
        rescore: None,
        check: false,
        min_recall: 100.0,
        max_false_alarms: 0,
        max_duplicates: 0,
    };
    let mut max_run = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
        }
        match flag.as_str() {
            "--events" => a.opts.events = num(&flag, value()),
            "--seed" => a.opts.seed = num(&flag, value()),
            "--agents" => a.opts.agents = num(&flag, value()),
            "--netns-agents" => a.opts.netns_agents = num(&flag, value()),
            "--max-run" => max_run = Some(Duration::from_secs(num(&flag, value()))),
            "--out" => out = Some(PathBuf::from(value())),
            "--json" => a.json = Some(PathBuf::from(value())),
            "--plan" => a.plan_only = true,
            "--rescore" => a.rescore = Some(PathBuf::from(value())),
            "--check" => a.check = true,
            "--min-recall" => a.min_recall = num(&flag, value()),
            "--max-false-alarms" => a.max_false_alarms = num(&flag, value()),
            "--max-duplicates" => a.max_duplicates = num(&flag, value()),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if a.opts.agents == 0 || a.opts.netns_agents > a.opts.agents {
        usage("--agents must be at least 1 and at least --netns-agents");
    }
    a.opts.max_run = max_run.unwrap_or(Duration::from_secs(4 * 3600));
    a.opts.out = out.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("zkwatchdog-chaos-{}", std::process::id()))
    });
    a
}

fn main() -> ExitCode {
    let args = parse();
    let shape = Shape {
        agents: args.opts.agents,
        netns_agents: args.opts.netns_agents,
    };
    let plan = plan(args.opts.seed, args.opts.events, shape);
    if args.plan_only {
        for f in &plan.faults {
            println!(
                "#{:<4} +{:>7.1}s {:<16} {:<9} hold {:.1}s",
                f.seq,
                f.at_ms as f64 / 1000.0,
                f.kind.name(),
                f.agent
                    .map(|i| format!("chaos-{:02}", i + 1))
                    .unwrap_or_else(|| "-".into()),
                f.hold_ms as f64 / 1000.0
            );
        }
        println!("span {:.0}s", plan.span_ms() as f64 / 1000.0);
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.rescore {
        #[derive(serde::Deserialize)]
        struct Earlier {
            executed: Vec<Executed>,
            mails: Vec<Mail>,
        }
        let earlier: Earlier = match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("chaos: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        // Parse the messages again from mails.jsonl when it is there (a newer parser may read
        // more of them); the Message-IDs come from the earlier parse.
        let mut mails = earlier.mails;
        let jsonl = path.with_file_name("mails.jsonl");
        if let Ok(text) = std::fs::read_to_string(&jsonl) {
            let mut agents: Vec<String> = earlier
                .executed
                .iter()
                .filter_map(|e| e.agent.clone())
                .collect();
            agents.sort();
            agents.dedup();
            let captured: Vec<CapturedMail> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| {
                    let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                    CapturedMail {
                        received_at: field("received_at"),
                        mail_from: String::new(),
                        rcpt_tos: Vec::new(),
                        subject: field("subject"),
                        from: String::new(),
                        to: String::new(),
                        body: field("body"),
                        message_id: field("message_id"),
                        html: None,
                        tls: false,
                        auth_user: None,
                        raw: String::new(),
                    }
                })
                .collect();
            let mut again = parse_all(&captured, &agents);
            for m in &mut again {
                m.message_id = mails.get(m.index).and_then(|e| e.message_id.clone());
            }
            mails = again;
        }
        print!("{}", table(&score(&earlier.executed, &mails)));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(run(&args.opts, plan)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    let s = &report.score;
    print!("{}", table(s));
    println!("logs and messages: {}", args.opts.out.display());
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| args.opts.out.join("result.json"));
    if let Err(e) = std::fs::write(&json_path, json) {
        eprintln!("chaos: cannot write {}: {e}", json_path.display());
    }
    if args.check {
        let mut failed = Vec::new();
        if s.recall_percent < args.min_recall {
            failed.push(format!(
                "recall {:.1}% < {}%",
                s.recall_percent, args.min_recall
            ));
        }
        if s.false_alarms > args.max_false_alarms {
            failed.push(format!(
                "false alarms {} > {}",
                s.false_alarms, args.max_false_alarms
            ));
        }
        // A copy that repeats the first's Message-ID is the documented at-least-once window (a
        // leader killed after the server accepted a message and before it recorded that): a
        // mail store that deduplicates by Message-ID drops it. Only the others count here.
        let outside_window = s.duplicates.saturating_sub(s.duplicates_same_message_id);
        if outside_window > args.max_duplicates {
            failed.push(format!(
                "duplicates {} (not repeating a Message-ID) > {}",
                outside_window, args.max_duplicates
            ));
        }
        if !failed.is_empty() {
            eprintln!("chaos: check failed: {}", failed.join("; "));
            return ExitCode::from(1);
        }
        println!("chaos: check passed");
    }
    ExitCode::SUCCESS
}
