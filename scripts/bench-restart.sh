#!/usr/bin/env bash
# bench-restart.sh — a benchmark (not a test): restart latency of zkwatchdog side by side with
# Debian's runit `runsv`, both supervising the same crashing child, on this machine.
#
# Usage: scripts/bench-restart.sh [--quick]
#
#   --quick   a smoke run: 10 crashes per supervisor instead of 50
#
# What it does: builds the release binaries, installs the Debian packages (scripts/install-deps.sh),
# starts a standalone ZooKeeper on a free loopback port (scripts/zk.sh), then runs each supervisor
# in turn on one `run` script, `#!/bin/sh exec testchild --started-file S --exit-file E
# --exit-after MS --code 1`, until the child has started N+1 times. The child runs MS ms (past
# 1 s), so both supervisors restart it at once: runsv only waits 1 s after a child that ran less
# than 1 s, and zkwatchdog is given stable-after = "1s". A restart's latency is the time from the
# child's last moment (testchild's --exit-file, CLOCK_REALTIME, right before exit) to the next
# child's first moment (--started-file, first thing in main): it covers reaping, whatever the
# supervisor does before it respawns, fork, exec of /bin/sh and of testchild, and testchild's
# start-up. (zkwatchdog records exits in ZooKeeper off that path: its log shows the respawn first.)
# Percentiles interpolate linearly between closest ranks. Memory is read from /proc/PID/status
# (VmRSS, VmHWM) of the supervisor process alone (not its child), after ~10 crashes and at the end.
#
# Everything runs on 127.0.0.1, every wait is bounded, and everything the script started is
# stopped by pid on exit, also on failure or Ctrl-C. The scratch directory is removed after a
# successful run (set KEEP=1 to keep it) and kept, with its logs, after a failure.
#
# Environment: CRASHES (N, default 50; 10 with --quick), RUN_MS (the child's run time, default
#              1100), ZKWATCHDOG_LOG (zkwatchdog's log filter, default its own), TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."

prog="$(basename "$0")"
root="$PWD"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

quick=0
while (($# > 0)); do
    case "$1" in
        --quick) quick=1 ;;
        -h | --help) usage ;;
        *) log "unknown argument: $1" && usage ;;
    esac
    shift
done

if ((quick)); then
    crashes="${CRASHES:-10}"
else
    crashes="${CRASHES:-50}"
fi
run_ms="${RUN_MS:-1100}"
if ! is_uint "$crashes" || ((crashes < 1)); then
    die "bad CRASHES: $crashes"
fi
if ! is_uint "$run_ms" || ((run_ms < 1)); then
    die "bad RUN_MS: $run_ms"
fi
if ((run_ms < 1100)); then
    log "warning: RUN_MS=$run_ms: a child that runs less than ~1 s is restarted after a 1 s delay"
fi
readonly crashes run_ms
# Both waits for N+1 starts are bounded by this: 60 s for start-up (ZooKeeper session, first
# spawn) plus, per start, twice the child's run time and one second more.
readonly wait_s=$((60 + (crashes + 1) * (2 * run_ms + 1000) / 1000))
readonly stop_wait_s=20
# Memory is sampled once this many children have started (~10 crashes), and again at the end.
readonly sample_at=$((crashes + 1 < 11 ? crashes + 1 : 11))

command -v cargo >/dev/null 2>&1 || die "cargo is not installed"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"

# --- build and dependencies ----------------------------------------------------------------------
log "building release binaries"
cargo build --release -p zkwatchdog -p zkwatchdog-tests --bins
bash scripts/install-deps.sh
command -v runsv >/dev/null 2>&1 || die "runsv is missing (package runit)"

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
readonly zkwatchdog="$target_dir/release/zkwatchdog"
readonly testchild="$target_dir/release/testchild"
[[ -x "$zkwatchdog" && -x "$testchild" ]] || die "release binaries missing in $target_dir/release"

# --- scratch directory and cleanup ---------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-restart.XXXXXX")"
readonly work
zk_dir="$work/zk"
svc="$work/service"
declare -A sup_pid=()   # supervisor name -> pid, while it may be running
zk_started=0
ok=0

# Pids of testchild processes this run started: their command line names a file in $work.
our_testchildren() {
    local f pid cmdline
    for f in /proc/[0-9]*/cmdline; do
        pid="${f#/proc/}"
        pid="${pid%/cmdline}"
        cmdline="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
        if [[ "$cmdline" == "$testchild "* && "$cmdline" == *" $work/"* ]]; then
            echo "$pid"
        fi
    done
}

cleanup() {
    local status=$? name pid
    trap - EXIT INT TERM
    set +e
    for name in "${!sup_pid[@]}"; do
        pid="${sup_pid[$name]}"
        if is_running "$pid"; then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null
            if ! wait_gone "$pid" 10; then
                log "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null
                wait_gone "$pid" 5
            fi
        fi
        wait "$pid" 2>/dev/null
    done
    for pid in $(our_testchildren); do
        log "killing a leftover testchild (pid $pid)"
        kill -KILL "$pid" 2>/dev/null
    done
    ((zk_started)) && stop_zk "$zk_dir"
    leave_scratch "$work" "$ok" "$status"
}
on_exit cleanup

# Prints the last lines of a log file to stderr.
log_tail() {
    if [[ -s "$1" ]]; then
        log "last lines of $1:"
        tail -n 30 -- "$1" >&2
    fi
}

# The supervisor's own processes: pid $1 and those of its children that run the same executable
# (zkwatchdog's guardian is a fork of it; the supervised sh/testchild are not).
supervisor_pids() {
    local exe f pid rest ppid
    exe="$(readlink "/proc/$1/exe")"
    echo "$1"
    for f in /proc/[0-9]*/stat; do
        pid="${f#/proc/}"
        pid="${pid%/stat}"
        rest="$(sed 's/^.*) //' "$f" 2>/dev/null)" || continue
        # After the comm field: state, ppid, ...
        read -r _ ppid _ <<<"$rest"
        if [[ "$ppid" == "$1" && "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$exe" ]]; then
            echo "$pid"
        fi
    done
}

# Appends one line per process of supervisor $2 (pid $3) to $1:
# "COMM PID VmRSS VmHWM Pss", in kB (Pss from smaps_rollup shares out pages shared after fork).
sample_mem() {
    local pid comm pss
    for pid in $(supervisor_pids "$3"); do
        comm="$(cat "/proc/$pid/comm")"
        pss="$(awk '$1 == "Pss:" { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)"
        awk -v comm="$comm" -v pid="$pid" -v pss="${pss:-?}" \
            '$1 == "VmRSS:" { rss = $2 } $1 == "VmHWM:" { hwm = $2 }
             END { print comm, pid, rss, hwm, pss }' "/proc/$pid/status" >>"$1"
    done
}

declare -A sampled=()

# Waits (bounded by $wait_s) until supervisor $1 (pid $2) has started its child N+1 times,
# sampling its memory on the way; dies with its log if it exits or the time runs out.
wait_starts() {
    local name="$1" pid="$2" out="$3" logfile="$4"
    local want=$((crashes + 1)) n=0 last=-1 deadline=$(($(now_ms) + wait_s * 1000))
    while :; do
        n="$(count_lines "$out/started")"
        if ((n != last)); then
            # Progress: one updated line on a terminal, a line per 10 starts otherwise.
            if [[ -t 2 ]]; then
                printf '\r%s: %s: %d/%d starts' "$prog" "$name" "$n" "$want" >&2
            elif ((n % 10 == 0 || n == want)); then
                printf '%s: %s: %d/%d starts\n' "$prog" "$name" "$n" "$want" >&2
            fi
            last="$n"
        fi
        if [[ -z "${sampled[$name]:-}" ]] && ((n >= sample_at)); then
            sample_mem "$work/mem-early-$name" "$name" "$pid"
            sampled[$name]=1
        fi
        if ((n >= want)); then
            [[ ! -t 2 ]] || echo >&2
            sample_mem "$work/mem-end-$name" "$name" "$pid"
            return 0
        fi
        if ! is_running "$pid"; then
            [[ ! -t 2 ]] || echo >&2
            log_tail "$logfile"
            die "$name (pid $pid) exited after $n of $want starts"
        fi
        if (($(now_ms) >= deadline)); then
            [[ ! -t 2 ]] || echo >&2
            log_tail "$logfile"
            die "$name: only $n of $want starts within $wait_s s"
        fi
        sleep 0.05
    done
}

# Sends SIGTERM to supervisor $1 (pid $2) and waits for it (bounded); its exit status goes to
# stop_status. (Not in a command substitution: `wait` only works on this shell's own children.)
stop_supervisor() {
    local name="$1" pid="$2"
    kill -TERM "$pid"
    wait_gone "$pid" "$stop_wait_s" || die "$name (pid $pid) still running $stop_wait_s s after SIGTERM"
    stop_status=0
    wait "$pid" || stop_status=$?
    unset "sup_pid[$name]"
}

# --- ZooKeeper ------------------------------------------------------------------------------------

port=""
for _ in $(seq 1 100); do
    p=$((15000 + RANDOM % 17001))
    if port_free "$p"; then
        port="$p"
        break
    fi
done
[[ -n "$port" ]] || die "no free port found in 15000-32000"
readonly port

zk_started=1
bash scripts/zk.sh start-standalone "$zk_dir" "$port" >&2 || {
    log_tail "$zk_dir/zk.log"
    die "ZooKeeper did not start"
}

# --- the shared run script ------------------------------------------------------------------------
# One script for both supervisors; BENCH_OUT (set in each supervisor's environment, which both
# pass on to the child) says where its started/exited files go.
mkdir -p -- "$svc" "$work/zkwatchdog" "$work/runsv"
cat >"$svc/run" <<EOF
#!/bin/sh
exec $testchild --started-file "\${BENCH_OUT:?}/started" --exit-file "\${BENCH_OUT:?}/exited" --exit-after $run_ms --code 1
EOF
chmod +x "$svc/run"

# --- zkwatchdog -----------------------------------------------------------------------------------
# Each supervisor runs in a session of its own (setsid, which does not fork here: a background job
# of a script is no process-group leader, so $! stays the supervisor's pid), so that Ctrl-C reaches
# only this script, which then stops the supervisor by pid like on any other exit.
cat >"$work/zkwatchdog.toml" <<EOF
zk-hosts = "127.0.0.1:$port"
id = "bench@local"
session-timeout = "5s"
command = ["$svc/run"]

[restart]
stable-after = "1s"
backoff-initial = "1s"
EOF

log "zkwatchdog: $crashes crashes (child runs $run_ms ms; at most $wait_s s)"
BENCH_OUT="$work/zkwatchdog" setsid "$zkwatchdog" run --config "$work/zkwatchdog.toml" \
    </dev/null >"$work/zkwatchdog.log" 2>&1 &
sup_pid[zkwatchdog]=$!
wait_starts zkwatchdog "${sup_pid[zkwatchdog]}" "$work/zkwatchdog" "$work/zkwatchdog.log"
stop_supervisor zkwatchdog "${sup_pid[zkwatchdog]}"
if ((stop_status != 0)); then
    log_tail "$work/zkwatchdog.log"
    die "zkwatchdog exited with status $stop_status after SIGTERM (expected 0)"
fi

# --- runsv ----------------------------------------------------------------------------------------
log "runsv: $crashes crashes (child runs $run_ms ms; at most $wait_s s)"
BENCH_OUT="$work/runsv" setsid runsv "$svc" </dev/null >"$work/runsv.log" 2>&1 &
sup_pid[runsv]=$!
wait_starts runsv "${sup_pid[runsv]}" "$work/runsv" "$work/runsv.log"
# SIGTERM to runsv is `sv exit`: it sends the child TERM (and CONT), does not restart it, and
# exits 0 once it is down.
stop_supervisor runsv "${sup_pid[runsv]}"
((stop_status == 0)) || die "runsv exited with status $stop_status after SIGTERM (expected 0)"
left="$(our_testchildren | tr '\n' ' ')"
[[ -z "$left" ]] || die "testchild processes left after stopping the supervisors: $left"

# --- report ---------------------------------------------------------------------------------------
rev="$(git -C "$root" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)"
untracked="$(git -C "$root" status --porcelain 2>/dev/null | grep -c '^??' || true)"
cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"

echo
echo "== restart latency: zkwatchdog vs runit runsv =="
echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:     nproc $(nproc), kernel $(uname -r)${cpu:+, $cpu}"
echo "zkwatchdog:  $("$zkwatchdog" --version 2>/dev/null || echo '?'), git $rev$( ((untracked > 0)) && echo " (+$untracked untracked paths)")"
echo "runsv:       runit $(dpkg-query -W -f='${Version}' runit 2>/dev/null || echo '?')"
echo "zookeeper:   $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?'), standalone on 127.0.0.1:$port"
echo "child:       /bin/sh run script -> exec testchild, exits with code 1 after $run_ms ms"
echo
python3 - "$crashes" "$work" "$sample_at" <<'EOF'
import sys

n = int(sys.argv[1])
work = sys.argv[2]
sample_at = int(sys.argv[3])


def load(path):
    with open(path) as f:
        return [int(line) for line in f if line.strip()]


def latencies(name):
    starts = load(f"{work}/{name}/started")
    exits = load(f"{work}/{name}/exited")
    if len(starts) < n + 1 or len(exits) < n:
        sys.exit(f"{name}: {len(starts)} starts and {len(exits)} exits, need {n + 1} and {n}")
    out = []
    for i in range(n):
        if not starts[i] < exits[i] < starts[i + 1]:
            sys.exit(f"{name}: timestamps out of order at crash {i + 1}")
        out.append((starts[i + 1] - exits[i]) / 1e6)
    return out


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


stats = {}
for name in ("zkwatchdog", "runsv"):
    xs = latencies(name)
    stats[name] = {
        "min": min(xs),
        "p50": pct(xs, 50),
        "p90": pct(xs, 90),
        "p99": pct(xs, 99),
        "max": max(xs),
        "mean": sum(xs) / len(xs),
    }

cols = ("min", "p50", "p90", "p99", "max", "mean")
print(f"restart latency, ms: child's exit -> next child's start, {n} crashes each")
print(f"{'supervisor':<12}{'n':>5}" + "".join(f"{c:>10}" for c in cols))
for name, s in stats.items():
    print(f"{name:<12}{n:>5}" + "".join(f"{s[c]:>10.3f}" for c in cols))
z, r = stats["zkwatchdog"], stats["runsv"]
print(f"ratio zkwatchdog/runsv: p50 {z['p50'] / r['p50']:.2f}x, p99 {z['p99'] / r['p99']:.2f}x")
print()


def load_mem(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


print("supervisor memory, kB, from /proc/PID/status and smaps_rollup (the supervised child excluded)")
early_col = f"VmRSS@start#{sample_at}"
print(
    f"{'process':<34}{early_col:>16}{'VmRSS@end':>11}{'VmHWM@end':>11}{'Pss@end':>9}"
)
for name in ("zkwatchdog", "runsv"):
    early = {pid: rss for _, pid, rss, _, _ in load_mem(f"{work}/mem-early-{name}")}
    end = load_mem(f"{work}/mem-end-{name}")
    total = [0, 0, 0, 0]
    for i, (comm, pid, rss, hwm, pss) in enumerate(end):
        label = f"{name} main" if i == 0 else f"{name} {comm}"
        row = [early.get(pid, "?"), rss, hwm, pss]
        print(f"{label + ' (' + pid + ')':<34}{row[0]:>16}{row[1]:>11}{row[2]:>11}{row[3]:>9}")
        for j, v in enumerate(row):
            total[j] = total[j] + int(v) if isinstance(total[j], int) and v.isdigit() else "?"
    if len(end) > 1:
        label = f"{name} total ({len(end)} processes)"
        print(f"{label:<34}{total[0]:>16}{total[1]:>11}{total[2]:>11}{total[3]:>9}")
EOF

ok=1
