//! `testchild`: a small, scriptable process used as the supervised child in tests and benchmarks.
//!
//! ```text
//! testchild [FLAGS]
//!   --started-file PATH      append the CLOCK_REALTIME time in ns, taken first thing in main
//!   --pid-file PATH          append "PID\n" once signal handling is set up (so: ready)
//!   --grandchildren N        spawn N grandchildren (this binary re-exec'd with --sleep) ...
//!   --grandchild-file PATH   ... and append their pids here, one per line
//!   --stderr TEXT            write TEXT as a line to stderr at start (repeatable)
//!   --stdout TEXT            write TEXT as a line to stdout at start (repeatable)
//!   --stderr-bytes N         then write N bytes of "x" to stderr, with no newline
//!   --exit-after MS          exit after MS milliseconds ...
//!   --code N                 ... with exit code N (default 1)
//!   --exit-file PATH         with --exit-after: append the CLOCK_REALTIME time in ns, taken as
//!                            late as possible, right before that exit (the file is opened at
//!                            start, so only the clock read and one write(2) precede exit)
//!   --ignore-term            ignore SIGTERM (to test SIGKILL escalation)
//!   --signal-file PATH       append the name (HUP, USR1, USR2, TERM) of each of those signals
//!                            received; on TERM exit 0 (unless --ignore-term)
//!   --sleep                  just sleep forever (what grandchildren run)
//! ```
//!
//! Otherwise it sleeps forever. Without `--signal-file` the signals keep their default action
//! (SIGTERM kills it), except SIGTERM with `--ignore-term`. Grandchildren are spawned before any
//! signal set-up, so they keep default dispositions; they are not waited for (they are orphaned
//! when this process dies, as a real agent's helpers would be). Bad usage exits with code 2.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{SigSet, Signal};

#[derive(Debug, Default)]
struct Opts {
    started_file: Option<String>,
    pid_file: Option<String>,
    grandchildren: usize,
    grandchild_file: Option<String>,
    stderr: Vec<String>,
    stdout: Vec<String>,
    stderr_bytes: usize,
    exit_after_ms: Option<u64>,
    code: i32,
    exit_file: Option<String>,
    ignore_term: bool,
    signal_file: Option<String>,
    sleep: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("testchild: {msg} (see the header of tests/src/bin/testchild.rs)");
    std::process::exit(2);
}

fn parse(args: impl Iterator<Item = String>) -> Opts {
    let mut o = Opts {
        code: 1,
        ..Opts::default()
    };
    let mut args = args;
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--started-file" => o.started_file = Some(value(&flag)),
            "--pid-file" => o.pid_file = Some(value(&flag)),
            "--grandchildren" => {
                o.grandchildren = value(&flag)
                    .parse()
                    .unwrap_or_else(|_| usage("--grandchildren needs a number"))
            }
            "--grandchild-file" => o.grandchild_file = Some(value(&flag)),
            "--stderr" => o.stderr.push(value(&flag)),
            "--stdout" => o.stdout.push(value(&flag)),
            "--stderr-bytes" => {
                o.stderr_bytes = value(&flag)
                    .parse()
                    .unwrap_or_else(|_| usage("--stderr-bytes needs a number"))
            }
            "--exit-after" => {
                o.exit_after_ms = Some(
                    value(&flag)
                        .parse()
                        .unwrap_or_else(|_| usage("--exit-after needs milliseconds")),
                )
            }
            "--code" => {
                o.code = value(&flag)
                    .parse()
                    .unwrap_or_else(|_| usage("--code needs a number"))
            }
            "--exit-file" => o.exit_file = Some(value(&flag)),
            "--ignore-term" => o.ignore_term = true,
            "--signal-file" => o.signal_file = Some(value(&flag)),
            "--sleep" => o.sleep = true,
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if o.exit_file.is_some() && o.exit_after_ms.is_none() {
        usage("--exit-file needs --exit-after");
    }
    o
}

/// Opens `path` for appending (created if missing), exiting with code 3 on failure.
fn open_append(path: &str) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| {
            eprintln!("testchild: cannot open {path}: {e}");
            std::process::exit(3)
        })
}

/// The CLOCK_REALTIME time in ns since the epoch (0 if the clock is before it).
fn realtime_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Appends `line` + "\n" to `path` in one write (O_APPEND), exiting with code 3 on failure.
fn append(path: &str, line: &str) {
    let result = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = result {
        eprintln!("testchild: cannot append to {path}: {e}");
        std::process::exit(3);
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() {
    let started = SystemTime::now();
    let o = parse(std::env::args().skip(1));
    if let Some(path) = &o.started_file {
        append(path, &realtime_ns(started).to_string());
    }
    if o.sleep {
        sleep_forever();
    }

    // Grandchildren first: they must not inherit any signal set-up.
    if o.grandchildren > 0 {
        let exe = std::env::current_exe().unwrap_or_else(|e| {
            eprintln!("testchild: cannot find own executable: {e}");
            std::process::exit(3)
        });
        for _ in 0..o.grandchildren {
            let child = Command::new(&exe)
                .arg("--sleep")
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    eprintln!("testchild: cannot spawn a grandchild: {e}");
                    std::process::exit(3)
                });
            if let Some(path) = &o.grandchild_file {
                append(path, &child.id().to_string());
            }
            // Not waited for: the grandchild outlives us unless the supervisor kills it.
            std::mem::forget(child);
        }
    }

    // Signals handled synchronously by sigwait in the main thread; blocked before any thread
    // starts, so every thread inherits the mask.
    let mut handled = SigSet::empty();
    if o.signal_file.is_some() {
        for s in [
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGTERM,
        ] {
            handled.add(s);
        }
    }
    if o.ignore_term {
        handled.add(Signal::SIGTERM);
    }
    if let Err(e) = handled.thread_block() {
        eprintln!("testchild: cannot block signals: {e}");
        std::process::exit(3);
    }

    for line in &o.stderr {
        eprintln!("{line}");
    }
    if o.stderr_bytes > 0 {
        let chunk = vec![b'x'; 64 * 1024];
        let mut err = std::io::stderr().lock();
        let mut left = o.stderr_bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            if err.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
        let _ = err.flush();
    }
    for line in &o.stdout {
        println!("{line}");
    }
    let _ = std::io::stdout().flush();

    if let Some(path) = &o.pid_file {
        append(path, &std::process::id().to_string());
    }

    if let Some(ms) = o.exit_after_ms {
        let code = o.code;
        // Opened now, so that the timestamp below is followed only by one write(2) and exit.
        let mut exit_file = o
            .exit_file
            .as_deref()
            .map(|p| (p.to_owned(), open_append(p)));
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            if let Some((path, file)) = &mut exit_file {
                let line = format!("{}\n", realtime_ns(SystemTime::now()));
                if let Err(e) = file.write_all(line.as_bytes()) {
                    eprintln!("testchild: cannot append to {path}: {e}");
                    std::process::exit(3);
                }
            }
            std::process::exit(code);
        });
    }

    if handled.iter().next().is_none() {
        sleep_forever();
    }
    loop {
        let sig = match handled.wait() {
            Ok(sig) => sig,
            Err(e) => {
                eprintln!("testchild: sigwait failed: {e}");
                std::process::exit(3);
            }
        };
        if let Some(path) = &o.signal_file {
            let name = sig.as_str().trim_start_matches("SIG");
            append(path, name);
        }
        if sig == Signal::SIGTERM && !o.ignore_term {
            std::process::exit(0);
        }
    }
}
