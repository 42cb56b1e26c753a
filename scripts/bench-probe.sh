#!/usr/bin/env bash
# bench-probe.sh — a benchmark (not a test): what health probing costs zkwatchdog, in CPU time,
# memory and ZooKeeper writes, on this machine.
#
# Usage: scripts/bench-probe.sh [--quick]
#
#   --quick   a smoke run: 10 s per run instead of 30
#
# What it does: builds the release binaries (zkwatchdog, and the tests' fake-flume), installs the
# Debian packages (scripts/install-deps.sh), starts a standalone ZooKeeper on a free loopback port
# (scripts/zk.sh), then runs zkwatchdog twice, each time supervising `fake-flume --listen
# 127.0.0.1:PORT --channel c1:10000` (a Flume agent's HTTP monitoring, whose every GET /metrics
# advances its counters one step) for DURATION seconds:
#
#   A. without a [probe] table;
#   B. with [probe] kind "flume", url http://127.0.0.1:PORT/metrics, interval INTERVAL_MS,
#      timeout 2s, start-grace 0s (channel-fill-threshold 80, the default). Halfway through, the
#      channel's size is set to 9000 of 10000 (90 % > 80 %: degraded) for HOLD_S seconds, while
#      the counters keep moving, then back to 100: exactly 2 writes of the liveness node are
#      expected (degraded, then ok), since health is written only when it changes.
#
# Each run's measurement window opens once the agent is up (A: its liveness node exists; B: the
# node says health "ok", i.e. after the first ok probe and its write) and lasts DURATION seconds.
# Figures, of the zkwatchdog process started (its pid: not the child, nor the guardian it forks):
# CPU time (utime + stime from /proc/PID/stat, all threads, converted with `getconf CLK_TCK`)
# spent in the window; VmRSS and VmHWM (/proc/PID/status) at its end; probes made (the fake's
# `steps` counter from GET /control/state: one per GET /metrics); CPU ms per probe, (CPU B - CPU
# A) / probes B; and the liveness node's writes in the window (its dataVersion, from `zk.sh cli
# PORT get -s`, at the window's start and end). /proc/PID/stat counts CPU time in clock ticks
# (usually 10 ms), so each such figure is good to about +-1 tick; the same CPU time is also read
# in ns from the scheduler (/proc/PID/task/*/schedstat, summed over the threads; exact when no
# thread came or went in the window, which the report says).
#
# Everything runs on 127.0.0.1, every wait is bounded, and everything the script started is
# stopped by pid on exit, also on failure or Ctrl-C. The scratch directory is removed after a
# successful run (set KEEP=1 to keep it) and kept, with its logs, after a failure.
#
# Environment: DURATION (seconds per run, default 30; 10 with --quick), INTERVAL_MS (the probe
#              interval, default 100), HOLD_S (how long the channel stays over the threshold,
#              default 3), ZKWATCHDOG_LOG (zkwatchdog's log filter; keep zkwatchdog at info or
#              lower: the script reads its "health changed" lines), TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

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
    duration="${DURATION:-10}"
else
    duration="${DURATION:-30}"
fi
interval_ms="${INTERVAL_MS:-100}"
hold_s="${HOLD_S:-3}"
if ! is_uint "$duration" || ((duration < 4)); then
    die "bad DURATION: $duration (whole seconds, at least 4)"
fi
if ! is_uint "$interval_ms" || ((interval_ms < 10)); then
    die "bad INTERVAL_MS: $interval_ms (at least 10)"
fi
if ! is_uint "$hold_s" || ((hold_s < 1 || 2 * hold_s >= duration)); then
    die "bad HOLD_S: $hold_s (at least 1, less than half of DURATION)"
fi
readonly duration interval_ms hold_s
readonly capacity=10000 fill_size=9000 normal_size=100
readonly up_wait_s=60   # bound on a run's start-up (ZooKeeper session, first spawn, first probe)
readonly stop_wait_s=20 # bound on a watchdog's planned stop
readonly change_wait_s=10 # bound on seeing a health change in the log

command -v cargo >/dev/null 2>&1 || die "cargo is not installed"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"

# --- build and dependencies ----------------------------------------------------------------------
log "building release binaries"
cargo build --release -p zkwatchdog --bin zkwatchdog -p zkwatchdog-tests --bin fake-flume
bash scripts/install-deps.sh

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
readonly zkwatchdog="$target_dir/release/zkwatchdog"
readonly fake_flume="$target_dir/release/fake-flume"
[[ -x "$zkwatchdog" && -x "$fake_flume" ]] || die "release binaries missing in $target_dir/release"
clk_tck="$(getconf CLK_TCK)"
if ! is_uint "$clk_tck" || ((clk_tck < 1)); then
    die "bad getconf CLK_TCK: $clk_tck"
fi
readonly clk_tck

# --- scratch directory and cleanup ---------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-probe.XXXXXX")"
readonly work
zk_dir="$work/zk"
declare -A pids=()     # run name -> pid of its zkwatchdog, while it may be running
declare -A children=() # run name -> pid of its fake-flume child, once known
zk_started=0
ok=0

# SIGTERM, then SIGKILL after $3 s, to pid $2 (named $1); reaps it.
stop_pid() {
    local name="$1" pid="$2"
    if is_running "$pid"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        if ! wait_gone "$pid" "$3"; then
            log "$name (pid $pid) ignored SIGTERM for $3 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            wait_gone "$pid" 5
        fi
    fi
    wait "$pid" 2>/dev/null
}

# True if pid $1 still runs fake-flume (a recorded child pid may have been reused since).
is_our_fake() {
    is_running "$1" && [[ "$(readlink "/proc/$1/exe" 2>/dev/null)" == "$fake_flume" ]]
}

cleanup() {
    local status=$? name pid
    trap - EXIT INT TERM
    set +e
    for name in "${!pids[@]}"; do
        stop_pid "zkwatchdog $name" "${pids[$name]}" 10
    done
    # The watchdog stops its child (and its guardian kills the child's group if it dies): only a
    # child that outlived both is left to kill here.
    for name in "${!children[@]}"; do
        pid="${children[$name]}"
        if wait_gone "$pid" 5 || ! is_our_fake "$pid"; then
            continue
        fi
        log "killing the leftover fake-flume of run $name (pid $pid)"
        kill -KILL "$pid" 2>/dev/null
    done
    ((zk_started)) && stop_zk "$zk_dir"
    leave_scratch "$work" "$ok" "$status"
}
on_exit cleanup

# CPU time of pid $1 (all its threads, not its children) in ms: utime + stime.
cpu_ms() {
    local rest
    rest="$(sed 's/^.*) //' "/proc/$1/stat")"
    # After the comm field, utime and stime are the 12th and 13th fields (14 and 15 overall).
    awk -v hz="$clk_tck" '{ print int(($12 + $13) * 1000 / hz) }' <<<"$rest"
}

# "NS TIDS": on-CPU time of pid $1's threads in ns, summed from /proc/PID/task/*/schedstat (the
# scheduler's own clock, not ticks), and their tids, comma-separated. A thread that exits takes
# its time with it: the sum is exact between two samples with the same tids.
cpu_sched() {
    local f ns sum=0 tids=""
    for f in "/proc/$1"/task/*/schedstat; do
        read -r ns _ <"$f" 2>/dev/null || continue
        sum=$((sum + ns))
        f="${f%/schedstat}"
        tids="${tids:+$tids,}${f##*/}"
    done
    echo "$sum $tids"
}

# `get -s` of a znode: the data line, then "dataVersion N" (prints nothing if it is missing).
# zkCli.sh prints its connection chatter too; only the JSON line and the stat are kept.
zk_get() { # PATH
    bash scripts/zk.sh cli "$zk_port" get -s "$1" 2>/dev/null |
        awk '/^\{/ { data = $0 } /^dataVersion = / { v = $3 }
             END { if (data != "" && v != "") { print data; print "dataVersion", v } }' || true
}

# POST or GET to the fake agent on port $1: path $2, method $3; prints the body (bounded: 5 s).
fake_http() { # PORT PATH METHOD
    python3 - "$@" <<'EOF'
import sys, urllib.request
port, path, method = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                             data=b"" if method == "POST" else None)
with urllib.request.urlopen(req, timeout=5) as r:
    sys.stdout.write(r.read().decode())
EOF
}

# How many GET /metrics the fake agent on port $1 has answered.
fake_steps() { # PORT
    fake_http "$1" /control/state GET | python3 -c 'import json, sys; print(json.load(sys.stdin)["steps"])'
}

# Number of "health changed" lines with status $2 (Ok, Degraded, Unknown) in log $1.
health_changes() { # LOG STATUS
    grep -F "health changed" "$1" | grep -c "status=$2" || true
}

# --- ports, ZooKeeper ------------------------------------------------------------------------------

zk_port="$(free_port)"
readonly zk_port

zk_started=1
bash scripts/zk.sh start-standalone "$zk_dir" "$zk_port" >&2 || {
    tail_of "$zk_dir/zk.log"
    die "ZooKeeper did not start"
}
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# Sleeps until $3 (ms since the epoch), checking every 0.1 s that zkwatchdog (pid $2) of run $1
# still runs.
alive_until() { # NAME PID MS
    while (($(now_ms) < $3)); do
        is_running "$2" || { tail_of "$work/$1/zkwatchdog.log" && die "run $1: zkwatchdog exited"; }
        sleep 0.1
    done
}

# --- one run ---------------------------------------------------------------------------------------
# run_one NAME PROBE(0|1): runs zkwatchdog for the window and writes its figures to $work/NAME.res
# as "key value" lines.
run_one() {
    local name="$1" probe="$2"
    local id="bench-probe-$name" dir="$work/$name" fake_port pid deadline got="" data version0
    local cpu0 cpu1 ns0 ns1 tids0 tids1 steps0 steps1 t0 t1 half rss hwm version1 status1 ok_open stop_status=0
    mkdir -p -- "$dir"
    fake_port="$(free_port "$zk_port")"
    cat >"$dir/zkwatchdog.toml" <<EOF
zk-hosts = "127.0.0.1:$zk_port"
id = "$id"
kind = "flume"
command = ["$fake_flume", "--listen", "127.0.0.1:$fake_port", "--channel", "c1:$capacity"]
EOF
    if ((probe)); then
        cat >>"$dir/zkwatchdog.toml" <<EOF

[probe]
kind = "flume"
url = "http://127.0.0.1:$fake_port/metrics"
interval = "${interval_ms}ms"
timeout = "2s"
start-grace = "0s"
EOF
    fi

    log "run $name: zkwatchdog $( ((probe)) && echo "with a flume probe every $interval_ms ms" || echo "without a probe"), $duration s"
    # A session of its own (setsid, which does not fork here: a background job of a script is no
    # process-group leader, so $! is zkwatchdog's pid): Ctrl-C reaches only this script, which
    # then stops it by pid like on any other exit.
    setsid "$zkwatchdog" run --config "$dir/zkwatchdog.toml" </dev/null >"$dir/zkwatchdog.log" 2>&1 &
    pid=$!
    pids[$name]=$pid

    # Up: the liveness node exists (B: and says health "ok"; its log says so first).
    deadline=$(($(now_ms) + up_wait_s * 1000))
    while :; do
        is_running "$pid" || { tail_of "$dir/zkwatchdog.log" && die "run $name: zkwatchdog exited"; }
        (($(now_ms) < deadline)) || { tail_of "$dir/zkwatchdog.log" && die "run $name: not up within $up_wait_s s"; }
        if ((!probe)) || (($(health_changes "$dir/zkwatchdog.log" Ok) > 0)); then
            got="$(zk_get "/zkwatchdog/live/$id")"
            if [[ -n "$got" ]] && { ((!probe)) || [[ "$got" == *'"status":"ok"'* ]]; }; then
                break
            fi
        fi
        sleep 0.2
    done
    # The window opens.
    cpu0="$(cpu_ms "$pid")"
    read -r ns0 tids0 < <(cpu_sched "$pid")
    t0="$(now_ms)"
    data="$(head -n 1 <<<"$got")"
    version0="$(awk '$1 == "dataVersion" { print $2 }' <<<"$got")"
    children[$name]="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["child_pid"])' "$data")"
    is_our_fake "${children[$name]}" || die "run $name: child_pid ${children[$name]} is not fake-flume"
    steps0="$(fake_steps "$fake_port")"
    cp "$dir/zkwatchdog.log" "$dir/zkwatchdog.log.at-open"
    ok_open="$(health_changes "$dir/zkwatchdog.log.at-open" Ok)"

    half=$((t0 + duration * 500))
    alive_until "$name" "$pid" "$half"
    if ((probe)); then
        log "run $name: channel c1 size $fill_size/$capacity for $hold_s s, then $normal_size"
        fake_http "$fake_port" "/control/channel/c1?size=$fill_size" POST >/dev/null
        alive_until "$name" "$pid" $((half + hold_s * 1000))
        fake_http "$fake_port" "/control/channel/c1?size=$normal_size" POST >/dev/null
    fi
    alive_until "$name" "$pid" $((t0 + duration * 1000))
    # The window closes.
    cpu1="$(cpu_ms "$pid")"
    read -r ns1 tids1 < <(cpu_sched "$pid")
    t1="$(now_ms)"
    read -r rss hwm < <(mem_of "$pid")
    steps1="$(fake_steps "$fake_port")"
    # B: let the write of the recovery (if any) land before reading the node: wait (bounded) for
    # the log to show it. The dataVersion is read after the window; what matters is the count.
    if ((probe)); then
        deadline=$(($(now_ms) + change_wait_s * 1000))
        until (($(health_changes "$dir/zkwatchdog.log" Ok) > ok_open)) || (($(now_ms) >= deadline)); do
            sleep 0.1
        done
    fi
    got="$(zk_get "/zkwatchdog/live/$id")"
    [[ -n "$got" ]] || die "run $name: cannot read /zkwatchdog/live/$id"
    version1="$(awk '$1 == "dataVersion" { print $2 }' <<<"$got")"
    status1="$(head -n 1 <<<"$got" | python3 -c 'import json, sys; print(json.load(sys.stdin)["health"]["status"])')"

    stop_pid "zkwatchdog $name" "$pid" "$stop_wait_s" || stop_status=$?
    unset "pids[$name]"
    if ((stop_status != 0)); then
        tail_of "$dir/zkwatchdog.log"
        die "run $name: zkwatchdog exited with status $stop_status after SIGTERM (expected 0)"
    fi
    wait_gone "${children[$name]}" 5 || die "run $name: fake-flume outlived its watchdog"

    {
        echo "window_ms $((t1 - t0))"
        echo "cpu_ms $((cpu1 - cpu0))"
        echo "cpu_total_ms $cpu1"
        echo "sched_ns $((ns1 - ns0))"
        echo "threads $(tr ',' '\n' <<<"$tids1" | wc -l)"
        echo "same_threads $([[ "$tids0" == "$tids1" ]] && echo yes || echo no)"
        echo "rss_kb $rss"
        echo "hwm_kb $hwm"
        echo "probes $((steps1 - steps0))"
        echo "probes_before $steps0"
        echo "writes $((version1 - version0))"
        echo "version_open $version0"
        echo "health_end $status1"
        # "health changed" lines in the window, by status.
        for s in Ok Degraded Unknown; do
            echo "changes_$s $(($(health_changes "$dir/zkwatchdog.log" "$s") - $(health_changes "$dir/zkwatchdog.log.at-open" "$s")))"
        done
    } >"$work/$name.res"
}

run_one A 0
run_one B 1
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report -----------------------------------------------------------------------------------------
rev="$(git -C "$root" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)"
untracked="$(git -C "$root" status --porcelain 2>/dev/null | grep -c '^??' || true)"
cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"

echo
echo "== the cost of health probing: zkwatchdog without and with a flume probe =="
echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:     nproc $(nproc), kernel $(uname -r)${cpu:+, $cpu}"
echo "load avg:    $load_start before the runs, $load_end after (1/5/15 min)"
echo "zkwatchdog:  $("$zkwatchdog" --version 2>/dev/null || echo '?'), git $rev$( ((untracked > 0)) && echo " (+$untracked untracked paths)")"
echo "zookeeper:   $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?'), standalone on 127.0.0.1:$zk_port"
echo "agent:       fake-flume, one channel c1 (capacity $capacity), one source, one sink"
echo "runs:        $duration s each; B probes every $interval_ms ms (timeout 2s, start-grace 0s),"
echo "             channel c1 at $fill_size/$capacity for $hold_s s halfway; CLK_TCK $clk_tck"
echo
python3 - "$work" "$interval_ms" "$clk_tck" <<'EOF'
import sys

work, interval_ms, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def load(name):
    with open(f"{work}/{name}.res") as f:
        return dict(line.split() for line in f if line.strip())


a, b = load("A"), load("B")
num = lambda r, k: int(r[k])
mb = lambda kb: kb / 1024
probes = num(b, "probes")
window = {r: num(x, "window_ms") for r, x in (("A", a), ("B", b))}
# CPU of the window: ticks from /proc/PID/stat, and ns from schedstat.
extra = num(b, "cpu_ms") - num(a, "cpu_ms")
extra_sched = (num(b, "sched_ns") - num(a, "sched_ns")) / 1e6
per = lambda x: x / probes if probes else float("nan")

print(f"{'':<18}{'window s':>9}{'CPU ms':>8}{'CPU ms/probe':>14}{'probes':>8}"
      f"{'RSS MB':>8}{'HWM MB':>8}{'liveness writes':>17}")
for label, r, ms_probe in (("A: no probe", a, "-"), (f"B: probe {interval_ms} ms", b, f"{per(extra):.3f}")):
    print(f"{label:<18}{num(r, 'window_ms') / 1000:>9.1f}{num(r, 'cpu_ms'):>8}{ms_probe:>14}"
          f"{num(r, 'probes'):>8}{mb(num(r, 'rss_kb')):>8.1f}{mb(num(r, 'hwm_kb')):>8.1f}"
          f"{num(r, 'writes'):>17}")
print(f"  (CPU: utime + stime of the zkwatchdog process from /proc/PID/stat, {1000 / hz:g} ms ticks;"
      f" RSS, HWM at the window's end)")
print()
print("the same CPU from the scheduler's clock (/proc/PID/task/*/schedstat, summed over threads):")
for label, r in (("A: no probe", a), (f"B: probe {interval_ms} ms", b)):
    note = "" if r["same_threads"] == "yes" else "  (threads came or went: a lower bound)"
    print(f"  {label:<18}{num(r, 'sched_ns') / 1e6:>9.3f} ms, "
          f"{100 * num(r, 'sched_ns') / 1e6 / window[label[0]]:.3f} % of one core, "
          f"{r['threads']} threads{note}")
print(f"  probing: {extra_sched:.3f} ms over {probes} probes = {per(extra_sched):.4f} ms/probe"
      f" (ticks: {extra} ms, {per(extra):.3f} ms/probe, +-{per(2 * 1000 / hz):.3f})")
print()
print(f"probes made in B's window: {probes} (GET /metrics answered, from the fake's /control/state;"
      f" {window['B'] / interval_ms:.0f} at one per {interval_ms} ms), {b['probes_before']} before it")
print(f"liveness writes in B's window: {num(b, 'writes')}, expected 2 (degraded, then ok);"
      f" 'health changed' log lines: {b['changes_Degraded']} degraded, {b['changes_Ok']} ok,"
      f" {b['changes_Unknown']} unknown; health at the end: {b['health_end']};"
      f" dataVersion {b['version_open']} when the window opened")
print(f"liveness writes in A's window: {num(a, 'writes')}, expected 0 (health stays {a['health_end']})")
EOF

ok=1
