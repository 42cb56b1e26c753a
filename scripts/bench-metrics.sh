#!/usr/bin/env bash
# bench-metrics.sh — a benchmark (not a test): what serving Prometheus metrics costs zkwatchdog
# and zkwatcher, in memory and CPU, and how long one scrape takes, on this machine.
#
# Usage: scripts/bench-metrics.sh
#
# What it does: builds the release binaries, installs the Debian packages
# (scripts/install-deps.sh), starts a standalone ZooKeeper on a free loopback port (scripts/zk.sh),
# then for each program runs it twice, A without and B with --metrics-addr 127.0.0.1:PORT:
#   zkwatchdog run -- sleep 3600                 (one agent, connected, no probe)
#   zkwatcher run with one generic webhook      (leading, nothing to send)
# Each run waits until the program is up (zkwatchdog: its liveness node; zkwatcher: "leading" in
# its log), then IDLE_S seconds (default 5); it reports VmRSS (/proc/PID/status) at the end of
# that wait. Run B then scrapes GET /metrics SCRAPES times (default 200) back to back with curl
# and reports the scrape time (curl's time_total: connect, request, answer) p50/p99/max, the
# body size, VmRSS after the scrapes, and the program's CPU time per scrape (on-CPU ns of all its
# threads from /proc/PID/task/*/schedstat over all the scrapes, divided by SCRAPES).
#
# Everything runs on 127.0.0.1, every wait is bounded, and everything the script started is
# stopped by pid on exit. The scratch directory is removed after a successful run (KEEP=1 keeps
# it) and kept, with its logs, after a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

prog="$(basename "$0")"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

(($# == 0)) || usage
idle_s="${IDLE_S:-5}"
scrapes="${SCRAPES:-200}"
is_uint "$idle_s" || die "bad IDLE_S: $idle_s"
is_uint "$scrapes" && ((scrapes >= 10)) || die "bad SCRAPES: $scrapes (at least 10)"
readonly idle_s scrapes up_wait_s=60

command -v curl >/dev/null 2>&1 || die "curl is not installed"
log "building release binaries"
cargo build --release -p zkwatchdog --bin zkwatchdog -p zkwatcher --bin zkwatcher
bash scripts/install-deps.sh
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
readonly zkwatchdog="$target_dir/release/zkwatchdog" zkwatcher="$target_dir/release/zkwatcher"

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-metrics.XXXXXX")"
readonly work
zk_dir="$work/zk"
zk_started=0
ok=0
running="" # pid of the program of the current run

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$running" ]] && is_running "$running"; then
        kill -TERM "$running" 2>/dev/null
        wait_gone "$running" 20 || kill -KILL "$running" 2>/dev/null
    fi
    ((zk_started)) && stop_zk "$zk_dir"
    leave_scratch "$work" "$ok" "$status"
}
on_exit cleanup

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((15000 + RANDOM % 17001))
        port_free "$p" && echo "$p" && return 0
    done
    die "no free port found in 15000-32000"
}

# On-CPU ns of pid $1's threads (the scheduler's clock, /proc/PID/task/*/schedstat).
cpu_ns() { cat "/proc/$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d\n", s }'; }
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

zk_port="$(free_port)"
zk_started=1
bash scripts/zk.sh start-standalone "$zk_dir" "$zk_port" >&2 || die "ZooKeeper did not start"
zk="127.0.0.1:$zk_port"

# Waits (bounded) until $1 (a command) succeeds while pid $2 runs.
wait_for() {
    local deadline=$(($(now_ms) + up_wait_s * 1000))
    until eval "$1"; do
        is_running "$2" || die "pid $2 exited; see $work"
        (($(now_ms) < deadline)) || die "timed out waiting for: $1"
        sleep 0.1
    done
}

# run PROGRAM A|B: starts it, waits until up and IDLE_S more, writes "RSS_KB" and, for B, the
# scrape figures on a second line, into $work/PROGRAM-A|B.out. (Not in a subshell: the cleanup
# must know the pid it started.)
run() {
    local program="$1" variant="$2" dir="$work/$1-$2" flags=() pid port
    mkdir -p "$dir"
    if [[ "$variant" == B ]]; then
        port="$(free_port)"
        flags=(--metrics-addr "127.0.0.1:$port")
    fi
    if [[ "$program" == zkwatchdog ]]; then
        ZKWATCHDOG_LOG=info "$zkwatchdog" run --zk "$zk" --id "bench-$variant@metrics" \
            "${flags[@]}" -- sleep 3600 >"$dir/log" 2>&1 &
        pid=$!
        running=$pid
        wait_for "bash scripts/zk.sh cli $zk_port stat /zkwatchdog/live/bench-$variant@metrics 2>/dev/null | grep -q ephemeralOwner" "$pid"
    else
        printf 'zk-hosts = "%s"\n[[webhook]]\nkind = "generic"\nurl = "http://127.0.0.1:1/hook"\n' \
            "$zk" >"$dir/watcher.toml"
        ZKWATCHER_LOG=info "$zkwatcher" run --config "$dir/watcher.toml" "${flags[@]}" \
            >"$dir/log" 2>&1 &
        pid=$!
        running=$pid
        wait_for "grep -q 'leading: this watcher' '$dir/log'" "$pid"
    fi
    sleep "$idle_s"
    rss_kb "$pid" >"$work/$program-$variant.out"
    if [[ "$variant" == B ]]; then
        local before after
        before="$(cpu_ns "$pid")"
        for _ in $(seq 1 "$scrapes"); do
            curl -sS --max-time 5 -o "$dir/body" -w '%{time_total}\n' "http://127.0.0.1:$port/metrics"
        done >"$dir/times"
        after="$(cpu_ns "$pid")"
        sort -n "$dir/times" | awk -v n="$scrapes" -v ns=$((after - before)) \
            -v bytes="$(wc -c <"$dir/body")" -v rss="$(rss_kb "$pid")" '
            { t[NR] = $1 * 1000 }
            END {
                printf "after %d scrapes VmRSS %d kB; scrape p50 %.2f ms, p99 %.2f ms, max %.2f ms; %d bytes; CPU %.3f ms/scrape\n",
                    n, rss, t[int(n * 0.5)], t[int(n * 0.99)], t[n], bytes, ns / 1e6 / n
            }' >>"$work/$program-$variant.out"
    fi
    kill -TERM "$pid"
    wait_gone "$pid" 20 || die "$program did not stop"
    wait "$pid" 2>/dev/null || true
    running=""
}

for program in zkwatchdog zkwatcher; do
    run "$program" A
    run "$program" B
    a="$(cat "$work/$program-A.out")"
    b="$(cat "$work/$program-B.out")"
    rss_b="$(head -n1 <<<"$b")"
    printf '%s: VmRSS without metrics %d kB, with %d kB (%+d kB); %s\n' \
        "$program" "$a" "$rss_b" $((rss_b - a)) "$(tail -n1 <<<"$b")"
done
ok=1
