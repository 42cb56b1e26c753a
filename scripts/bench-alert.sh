#!/usr/bin/env bash
# bench-alert.sh — a benchmark (not a test): how long from an agent's death to the alert email,
# end to end through ZooKeeper, zkwatchdog, zkwatcher and a real SMTP server, on this machine.
#
# Usage: scripts/bench-alert.sh [--runs N] [--quick] [--flume]
#
#   --runs N  runs per measurement (default 30)
#   --quick   a smoke run: 5 runs per measurement (a --runs given as well wins)
#   --flume   measurement 1 with a REAL Apache Flume agent as the supervised child instead of
#             testchild (see below); measurement 2 is skipped (it does not depend on the child)
#
# What it does: builds the release binaries (`cargo build --release --bins`), installs the Debian
# packages (scripts/install-deps.sh), starts on free loopback ports a standalone ZooKeeper with a
# 200 ms tick (scripts/zk.sh; minSessionTimeout 400 ms, so a 2 s session timeout is granted), an
# SMTP sink (scripts/bench-alert-smtp.py: aiosmtpd, plain SMTP without TLS or AUTH, which records
# CLOCK_REALTIME in ns when a message is accepted, i.e. fully received, right before its "250")
# and `zkwatcher run` with group-wait = "0s" and an [email] channel to that sink. Then:
#
#  1. crash -> email: one `zkwatchdog` (id bench-crash, stable-after 500 ms) supervises testchild.
#     Each run SIGKILLs the child (time origin: bash's $EPOCHREALTIME, CLOCK_REALTIME, read right
#     before `kill -9`; no fork in between) and ends when the sink accepts the message whose
#     subject says "CRASHED bench-crash" (or "CRASHED and RECOVERED bench-crash"), or "RESTARTED
#     [and RECOVERED] bench-crash while unobserved": what the watcher says when the restart was
#     so quick that it never saw the liveness node missing (the subjects are counted). Before
#     the next run it waits for the restarted child and for the RECOVERED mail, and until the
#     child has run past stable-after (so runs never overlap and every restart is immediate).
#     One unmeasured warm-up crash comes first (the watcher's first SMTP connection opens there).
#  2. watchdog SIGKILL -> email: each run starts a fresh `zkwatchdog run --id bench-lost-N
#     --session-timeout 2s -- testchild`, waits until `zkwatcher status --json` says running and
#     the watcher has logged the agent up, SIGKILLs the zkwatchdog process (its child dies with
#     it through the guardian: checked) and ends when the sink accepts "LOST bench-lost-N". Runs
#     are sequential, one agent at a time; each kill comes a random 0-999 ms after the agent is
#     up, so it falls at a random point of the session's ping cycle. Reported in ms and as
#     multiples of the 2 s session timeout: ZooKeeper expires the session one timeout after it
#     last heard from the client, rounded up to its next tick (200 ms); the client (the
#     zookeeper-client crate) pings after ~300 ms of silence, so that was up to ~0.4 s before
#     the kill: expect about 0.8-1.1 x the timeout.
#  3. the watcher's memory (VmRSS, VmHWM from /proc/PID/status) right after it started leading,
#     and after all runs, with the number of agents then registered (the lost agents stay in the
#     registry with an open LOST incident each).
#
# With --flume (needs Java 17; `bash scripts/agents.sh install` fetches Flume from Maven Central
# into its cache once): the child of measurement 1 is Apache Flume 1.11.0 (agents.sh run-flume,
# which execs the JVM; heap 128 MB): seq source (totalEvents = 1000) -> memory channel ->
# file_roll sink into the scratch directory, HTTP monitoring on a free port (Flume binds it on all
# interfaces). The watchdog config is what an operator writes: kind = "flume", a [probe] with
# url = "http://127.0.0.1:PORT/metrics", interval = "1s" (and stop-timeout = "10s"). The wrapped
# command is `bash -c 'echo $$ >>PIDS; date +%s%N >>STARTED; shift 2; exec bash "$@"' bench-flume
# PIDS STARTED scripts/agents.sh run-flume ...`, so the pid written is the JVM's (checked:
# /proc/PID/comm is java, also right before each kill). Before each kill the script waits
# (bounded, 120 s) until /metrics answers with JSON (polled every 50 ms, then confirmed with
# `agents.sh wait-flume PORT`) and the JVM has run past stable-after: every run kills a started
# JVM and every restart is immediate. Reported besides: the time from spawn (the STARTED time) to
# /metrics answering, for the first start and for the restarts (Flume's start-up time here), the
# JVM's VmRSS/VmHWM (/proc/PID/status) when /metrics first answers, the events the sink wrote,
# and the probe's verdict (`zkwatcher status` health) on the last JVM, the restart after the last
# kill, once /metrics answers (bounded wait for "ok", untimed). The JVMs die with their zkwatchdog
# (its guardian kills the child's process group); a Flume JVM of this run (java running Flume,
# with a command line naming a path in the scratch directory) that is left anyway is killed by
# pid, like a leftover testchild.
#
# Each latency is split at the watcher's log line saying it concluded CRASHED/LOST (its log
# timestamps have µs resolution): death -> conclusion (ZooKeeper, watchdog), and conclusion ->
# accepted (incident write, rendering, SMTP); for crashes also at the child's exit time the
# watchdog recorded in the marker (last_exit.at, ms resolution, as the watcher logs it).
# Percentiles interpolate linearly between closest ranks (with 30 runs, p99 lies between the two
# largest values). "Sent on a fresh SMTP connection" counts alerts that did not reuse one of the
# watcher's pooled connections.
#
# Everything runs on 127.0.0.1, every wait is bounded, and everything the script started is
# stopped by pid on exit, also on failure or Ctrl-C. The scratch directory is removed after a
# successful run (set KEEP=1 to keep it) and kept, with its logs, after a failure.
#
# Environment: ZKWATCHDOG_LOG, ZKWATCHER_LOG (log filters; the watcher's must keep zkwatcher at
#              info or lower for the split), TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

prog="$(basename "$0")"
root="$PWD"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

runs=""
quick=0
flume=0
while (($# > 0)); do
    case "$1" in
        --quick) quick=1 ;;
        --flume) flume=1 ;;
        --runs)
            (($# >= 2)) || usage
            runs="$2"
            shift
            ;;
        --runs=*) runs="${1#--runs=}" ;;
        -h | --help) usage ;;
        *) log "unknown argument: $1" && usage ;;
    esac
    shift
done
if [[ -z "$runs" ]]; then
    if ((quick)); then runs=5; else runs=30; fi
fi
if ! is_uint "$runs" || ((runs < 1)); then
    die "bad --runs: $runs"
fi
readonly runs flume

readonly zk_tick_ms=200
readonly session_timeout_ms=2000
readonly stable_after_ms=500
readonly run_wait_s=30 # bound on every per-run wait
readonly crash_id=bench-crash
readonly flume_wait_s=120 # --flume: bound on each wait for Flume's /metrics

command -v cargo >/dev/null 2>&1 || die "cargo is not installed"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"

# --- build and dependencies ----------------------------------------------------------------------
log "building release binaries: cargo build --release --bins"
cargo build --release --bins
bash scripts/install-deps.sh
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null ||
    die "/usr/bin/python3 cannot import aiosmtpd (package python3-aiosmtpd)"
if ((flume)); then
    command -v curl >/dev/null 2>&1 || die "curl is not installed (needed with --flume)"
    bash scripts/agents.sh install
fi

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
readonly zkwatchdog="$target_dir/release/zkwatchdog"
readonly zkwatcher="$target_dir/release/zkwatcher"
readonly testchild="$target_dir/release/testchild"
for bin in "$zkwatchdog" "$zkwatcher" "$testchild"; do
    [[ -x "$bin" ]] || die "missing release binary $bin"
done

# --- scratch directory and cleanup ---------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-alert.XXXXXX")"
readonly work
zk_dir="$work/zk"
mail="$work/mail.tsv" # the sink's record: TIME_NS CONN NTH SUBJECT
declare -A pids=()    # name -> pid of what this script started, while it may be running
zk_started=0
ok=0

# Pids of testchild and zkwatchdog processes (a watchdog's guardian included) this run started,
# and with --flume of Flume JVMs (java running org.apache.flume.node.Application) and their
# wrapper (bash, before it execs java): that executable, with a command line naming a path in
# $work.
our_leftovers() {
    local f pid exe cmdline
    for f in /proc/[0-9]*/cmdline; do
        pid="${f#/proc/}"
        pid="${pid%/cmdline}"
        exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || continue
        case "$exe" in
            "$testchild" | "$zkwatchdog") ;;
            */java | */bash) ((flume)) || continue ;;
            *) continue ;;
        esac
        cmdline="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
        # A bash only when it is a Flume wrapper (this script runs bash too, and so may others), a
        # java only when it is Flume (ZooKeeper's JVM names $work too; zk.sh stops it).
        if [[ "$exe" == */bash && "$cmdline" != *"/agents.sh run-flume $work/"* ]] ||
            [[ "$exe" == */java && "$cmdline" != *" org.apache.flume.node.Application "* ]]; then
            continue
        fi
        if [[ "$cmdline" == *" $work/"* ]] && is_running "$pid"; then
            echo "$pid"
        fi
    done
}

cleanup() {
    local status=$? name pid
    trap - EXIT INT TERM
    set +e
    # Watchdogs first (a planned stop sends no mail), then the watcher, then the sink.
    for name in "${!pids[@]}"; do
        [[ "$name" == watcher || "$name" == smtp ]] || stop_pid "$name" "${pids[$name]}" 10
    done
    for name in watcher smtp; do
        [[ -z "${pids[$name]:-}" ]] || stop_pid "$name" "${pids[$name]}" 10
    done
    for pid in $(our_leftovers); do
        log "killing a leftover process of this run (pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline"))"
        kill -KILL "$pid" 2>/dev/null
    done
    ((zk_started)) && stop_zk "$zk_dir"
    leave_scratch "$work" "$ok" "$status"
}
on_exit cleanup

# Prints "TIME_NS CONN NTH" of the first mail after line $1 of the sink's record whose subject
# says "$2 $3" or "$2 and <WORD> $3" (e.g. "CRASHED and RECOVERED bench-crash: ..."), $3 followed
# by ":" or " "; $2 is an awk regex ("CRASHED|RESTARTED"). Fails if none. With $2 = RECOVERED,
# "<WORD> and RECOVERED $3" matches too.
find_mail() {
    [[ -f "$mail" ]] || return 1
    awk -F'\t' -v from="$1" -v kind="$2" -v id="$3" '
        NR > from && ($4 ~ (" (" kind ") (and [A-Z]+ )?" id "[: ]") ||
                      (kind == "RECOVERED" && $4 ~ (" [A-Z]+ and RECOVERED " id "[: ]"))) {
            print $1, $2, $3
            found = 1
            exit
        }
        END { exit !found }' "$mail"
}

# Waits (bounded) for such a mail and prints it; dies with the logs on timeout.
wait_mail() { # FROM_LINE KIND ID
    local deadline=$(($(now_ms) + run_wait_s * 1000)) found
    until found="$(find_mail "$@")"; do
        if (($(now_ms) >= deadline)); then
            tail_of "$work/watcher.log"
            log "mails after line $1:"
            tail -n +"$(($1 + 1))" "$mail" >&2 || true
            die "no '$2 $3' mail within $run_wait_s s"
        fi
        is_running "${pids[watcher]}" || { tail_of "$work/watcher.log" && die "zkwatcher exited"; }
        sleep 0.01
    done
    echo "$found"
}

# Waits (bounded) until file $1 has at least $2 lines.
wait_lines() { # FILE N WHAT
    local deadline=$(($(now_ms) + run_wait_s * 1000))
    while (($(count_lines "$1") < $2)); do
        (($(now_ms) < deadline)) || die "timed out after $run_wait_s s waiting for $3"
        sleep 0.01
    done
}

# The state `zkwatcher status --json` reports for agent $1 ("" if none or on error).
agent_state() {
    "$zkwatcher" status --json --zk "127.0.0.1:$zk_port" 2>/dev/null |
        jq -r --arg id "$1" '.[] | select(.id == $id) | .state' 2>/dev/null || true
}

# Waits (bounded) until the registry says agent $1 is running AND the watcher has logged it up
# (so it saw the liveness node: a vanishing one is then judged at once, without a settle time).
wait_agent_up() { # ID
    local deadline=$(($(now_ms) + run_wait_s * 1000))
    until [[ "$(agent_state "$1")" == running ]] && watcher_saw_up "$1"; do
        (($(now_ms) < deadline)) || { tail_of "$work/watcher.log" && die "agent $1 not up within $run_wait_s s"; }
        sleep 0.05
    done
}

# The health `zkwatcher status --json` reports for agent $1 ("" if none or on error).
agent_health() {
    "$zkwatcher" status --json --zk "127.0.0.1:$zk_port" 2>/dev/null |
        jq -r --arg id "$1" '.[] | select(.id == $id) | .health // ""' 2>/dev/null || true
}

watcher_saw_up() { # ID
    grep -F " up " "$work/watcher.log" | grep -qF "agent=\"$1\"" ||
        grep -F " up " "$work/watcher.log" | grep -qF "agent=$1 "
}

# --flume: waits (bounded) until pid $1, the wrapper that wrote it, has exec'd down to the JVM
# (/proc/PID/comm is "java": the wrapper's bash execs agents.sh, which execs java).
wait_java() { # PID WHAT
    local deadline=$(($(now_ms) + run_wait_s * 1000)) comm=""
    while :; do
        read -r comm 2>/dev/null <"/proc/$1/comm" || comm=""
        [[ "$comm" != java ]] || return 0
        if ! is_running "$1"; then
            tail_of "$work/crash/zkwatchdog.log"
            die "$2 (pid $1) exited before it became the JVM"
        fi
        if (($(now_ms) >= deadline)); then
            tail_of "$work/crash/zkwatchdog.log"
            die "$2 (pid $1) is still '$comm', not java, after $run_wait_s s"
        fi
        sleep 0.01
    done
}

# --flume: true when Flume's /metrics answers with JSON (agents.sh's own test).
flume_answers() {
    local body
    body="$(curl -sf --max-time 2 "http://127.0.0.1:$flume_port/metrics" 2>/dev/null)" &&
        [[ "$body" == "{"* ]]
}

# --flume: waits (bounded by $flume_wait_s, and while pid $1 lives) until /metrics answers,
# polling every 50 ms; sets flume_ready_ns (CLOCK_REALTIME right after the first answer) and
# flume_early (1 when it answered at the first try already, so the time is only an upper bound).
wait_flume_ready() { # PID
    local deadline=$(($(now_ms) + flume_wait_s * 1000))
    flume_early=1
    until flume_answers; do
        flume_early=0
        if ! is_running "$1"; then
            tail_of "$work/crash/zkwatchdog.log"
            die "the Flume JVM (pid $1) exited before its /metrics answered"
        fi
        if (($(now_ms) >= deadline)); then
            tail_of "$work/crash/zkwatchdog.log"
            die "Flume's /metrics (port $flume_port) did not answer within $flume_wait_s s"
        fi
        sleep 0.05
    done
    flume_ready_ns="$(epoch_ns)"
    # The project's readiness gate (the same test; at once now).
    bash scripts/agents.sh wait-flume "$flume_port" --timeout "$flume_wait_s" >&2 ||
        { tail_of "$work/crash/zkwatchdog.log" && die "agents.sh wait-flume $flume_port failed"; }
}

# Progress: one updated line on a terminal, a line per 10 runs (and the last) otherwise.
progress() { # WHAT RUN
    if [[ -t 2 ]]; then
        printf '\r%s: %s run %d/%d' "$prog" "$1" "$2" "$runs" >&2
    elif (($2 > 0 && ($2 % 10 == 0 || $2 == runs))); then
        printf '%s: %s run %d/%d\n' "$prog" "$1" "$2" "$runs" >&2
    fi
}

# --- ports, ZooKeeper, SMTP sink, watcher ---------------------------------------------------------

zk_port="$(free_port)"
smtp_port="$(free_port "$zk_port")"
flume_port=""
if ((flume)); then
    flume_port="$(free_port "$zk_port" "$smtp_port")"
fi
readonly zk_port smtp_port flume_port

zk_started=1
bash scripts/zk.sh start-standalone "$zk_dir" "$zk_port" "$zk_tick_ms" >&2 || {
    tail_of "$zk_dir/zk.log"
    die "ZooKeeper did not start"
}
grep -qx "minSessionTimeout=$((2 * zk_tick_ms))" "$zk_dir/zoo.cfg" ||
    die "unexpected minSessionTimeout in $zk_dir/zoo.cfg"

# Each long-running process gets a session of its own (setsid, which does not fork here: a
# background job of a script is no process-group leader, so $! is its pid): Ctrl-C reaches only
# this script, which then stops them by pid like on any other exit.
setsid /usr/bin/python3 scripts/bench-alert-smtp.py --port "$smtp_port" --out "$mail" \
    --pid-file "$work/smtp.pid" --exit-with-parent </dev/null >"$work/smtp.log" 2>&1 &
pids[smtp]=$!
deadline=$(($(now_ms) + 10000))
until [[ -s "$work/smtp.pid" ]]; do
    is_running "${pids[smtp]}" || { tail_of "$work/smtp.log" && die "the SMTP sink exited"; }
    (($(now_ms) < deadline)) || die "the SMTP sink did not listen within 10 s"
    sleep 0.02
done

cat >"$work/watcher.toml" <<EOF
zk-hosts = "127.0.0.1:$zk_port"
group-wait = "0s"

[email]
url = "smtp://127.0.0.1:$smtp_port"
from = "zkwatcher bench <bench@localhost>"
to = ["oncall@localhost"]
timeout = "10s"
EOF
setsid "$zkwatcher" run --config "$work/watcher.toml" </dev/null >"$work/watcher.log" 2>&1 &
pids[watcher]=$!
deadline=$(($(now_ms) + 30000))
until grep -qs "leading" "$work/watcher.log"; do
    is_running "${pids[watcher]}" || { tail_of "$work/watcher.log" && die "zkwatcher exited"; }
    (($(now_ms) < deadline)) || { tail_of "$work/watcher.log" && die "zkwatcher not leading within 30 s"; }
    sleep 0.05
done
read -r rss_start hwm_start < <(mem_of "${pids[watcher]}")
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. child crash -> email -----------------------------------------------------------------------
mkdir -p -- "$work/crash" "$work/lost"
if ((flume)); then
    # seq (1000 events, then idle) -> memory channel -> file_roll: every component registers its
    # counters, so the probe reads a source, a channel and a sink.
    mkdir -p -- "$work/flume/out"
    cat >"$work/flume/agent.conf" <<EOF
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = 1000
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 1000
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = $work/flume/out
EOF
    # The wrapper records its pid (the JVM's, down the two execs) and its start time, like
    # testchild's --pid-file and --started-file; TOML literal string, no quote inside.
    # shellcheck disable=SC2016 # expanded by the wrapper's bash, not here
    wrapper='echo $$ >>"$1"; date +%s%N >>"$2"; shift 2; exec bash "$@"'
    cat >"$work/crash.toml" <<EOF
zk-hosts = "127.0.0.1:$zk_port"
id = "$crash_id"
kind = "flume"
session-timeout = "$((session_timeout_ms / 1000))s"
command = ["bash", "-c", '$wrapper', "bench-flume", "$work/crash/pids", "$work/crash/started",
           "$root/scripts/agents.sh", "run-flume", "$work/flume", "--name", "a1",
           "--conf", "$work/flume/agent.conf", "--metrics-port", "$flume_port"]

[restart]
stable-after = "${stable_after_ms}ms"
backoff-initial = "1s"
stop-timeout = "10s"

[probe]
url = "http://127.0.0.1:$flume_port/metrics"
interval = "1s"
EOF
    : >"$work/flume.tsv" # RUN SPAWN_NS READY_NS EARLY VMRSS_KB VMHWM_KB PID
else
    cat >"$work/crash.toml" <<EOF
zk-hosts = "127.0.0.1:$zk_port"
id = "$crash_id"
session-timeout = "$((session_timeout_ms / 1000))s"
command = ["$testchild", "--pid-file", "$work/crash/pids", "--started-file", "$work/crash/started"]

[restart]
stable-after = "${stable_after_ms}ms"
backoff-initial = "1s"
EOF
fi
log "1. child crash -> email: 1 warm-up + $runs runs$( ((flume)) && echo ", the child a Flume JVM")"
setsid "$zkwatchdog" run --config "$work/crash.toml" </dev/null >"$work/crash/zkwatchdog.log" 2>&1 &
pids[crash-watchdog]=$!
wait_lines "$work/crash/pids" 1 "the first child of $crash_id"
wait_agent_up "$crash_id"

: >"$work/crash.tsv" # RUN T0_NS MAIL_NS CONN NTH
for ((r = 0; r <= runs; r++)); do
    is_running "${pids[crash-watchdog]}" || { tail_of "$work/crash/zkwatchdog.log" && die "zkwatchdog exited"; }
    n="$(count_lines "$work/crash/pids")"
    wait_lines "$work/crash/started" "$n" "the start time of child $n"
    if ((flume)); then
        # A started JVM: its pid is the one written, and its /metrics answers.
        child="$(tail -n 1 "$work/crash/pids")"
        wait_java "$child" "child $n of $crash_id"
        wait_flume_ready "$child"
        read -r rss hwm < <(mem_of "$child")
        echo "$r $(tail -n 1 "$work/crash/started") $flume_ready_ns $flume_early $rss $hwm $child" \
            >>"$work/flume.tsv"
    fi
    # Let the child run past stable-after, so that its restart is immediate.
    started="$(tail -n 1 "$work/crash/started")"
    while (($(epoch_ns) < started + (stable_after_ms + 100) * 1000000)); do
        sleep 0.02
    done
    child="$(tail -n 1 "$work/crash/pids")"
    if ((flume)); then
        read -r comm <"/proc/$child/comm" || comm=""
        [[ "$comm" == java ]] || die "run $r: pid $child is '$comm', not the Flume JVM"
    fi
    before="$(count_lines "$mail")"
    t0="${EPOCHREALTIME/[.,]/}"
    kill -KILL "$child"
    t0=$((10#$t0 * 1000))
    read -r t_mail conn nth < <(wait_mail "$before" "CRASHED|RESTARTED" "$crash_id")
    wait_mail "$before" RECOVERED "$crash_id" >/dev/null
    wait_lines "$work/crash/pids" $((n + 1)) "the restart of $crash_id after run $r"
    if ((r > 0)); then
        echo "$r $t0 $t_mail $conn $nth" >>"$work/crash.tsv"
    fi
    progress crash "$r"
done
[[ ! -t 2 ]] || echo >&2
if ((flume)); then
    # The probe's verdict on real Flume counters, once, on the last JVM (the restart after the
    # last kill; nothing is timed any more): bounded wait until the registry says "ok".
    child="$(tail -n 1 "$work/crash/pids")"
    wait_java "$child" "the last child of $crash_id"
    wait_flume_ready "$child"
    deadline=$(($(now_ms) + run_wait_s * 1000))
    until [[ "$(agent_health "$crash_id")" == ok ]] || (($(now_ms) >= deadline)); do
        sleep 0.1
    done
    health_ms=$((($(epoch_ns) - $(tail -n 1 "$work/crash/started")) / 1000000))
    printf '%s\t%s\n' "$health_ms" "$(agent_health "$crash_id")" >"$work/flume-probe.tsv"
fi

# --- 2. watchdog SIGKILL -> email ------------------------------------------------------------------
children_left=0
if ((flume)); then
    log "2. watchdog SIGKILL -> email: skipped (--flume; it does not depend on the child)"
else
    log "2. watchdog SIGKILL -> email: $runs runs," \
        "session timeout $((session_timeout_ms / 1000)) s"
    : >"$work/lost.tsv" # RUN T0_NS MAIL_NS CONN NTH
    for ((r = 1; r <= runs; r++)); do
        id="bench-lost-$r"
        setsid "$zkwatchdog" run --zk "127.0.0.1:$zk_port" --id "$id" \
            --session-timeout "$((session_timeout_ms / 1000))s" -- \
            "$testchild" --pid-file "$work/lost/$r.pid" </dev/null >"$work/lost/$r.log" 2>&1 &
        pids[$id]=$!
        wait_lines "$work/lost/$r.pid" 1 "the child of $id"
        wait_agent_up "$id"
        # Kill at a random moment of the session's ping cycle (the client pings after ~300 ms of
        # silence), not right after the writes of the start-up, which just refreshed the session.
        sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
        child="$(head -n 1 "$work/lost/$r.pid")"
        before="$(count_lines "$mail")"
        t0="${EPOCHREALTIME/[.,]/}"
        kill -KILL "${pids[$id]}"
        t0=$((10#$t0 * 1000))
        wait "${pids[$id]}" 2>/dev/null || true
        unset "pids[$id]"
        read -r t_mail conn nth < <(wait_mail "$before" LOST "$id")
        echo "$r $t0 $t_mail $conn $nth" >>"$work/lost.tsv"
        if ! wait_gone "$child" 5; then
            log "run $r: the child (pid $child) outlived its SIGKILLed zkwatchdog by 5 s:" \
                "killing it"
            kill -KILL "$child" 2>/dev/null || true
            children_left=$((children_left + 1))
        fi
        progress lost "$r"
    done
    [[ ! -t 2 ]] || echo >&2
fi

# --- 3. memory, then stop --------------------------------------------------------------------------
read -r rss_end hwm_end < <(mem_of "${pids[watcher]}")
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
"$zkwatcher" status --json --zk "127.0.0.1:$zk_port" >"$work/status.json" 2>"$work/status.err" ||
    { cat "$work/status.err" >&2 && die "zkwatcher status failed"; }
agents="$(jq -r '"\(length) (" + (group_by(.state) | map("\(length) \(.[0].state)") | join(", ")) + ")"' "$work/status.json")"

stop_pid crash-watchdog "${pids[crash-watchdog]}" 20
unset "pids[crash-watchdog]"
left="$(our_leftovers | tr '\n' ' ')"
[[ -z "${left// /}" ]] || die "processes left after the runs: $left"

# --- report -----------------------------------------------------------------------------------------
rev="$(git -C "$root" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)"
untracked="$(git -C "$root" status --porcelain 2>/dev/null | grep -c '^??' || true)"
cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"

echo
echo "== alert latency: agent death -> email accepted by the SMTP server =="
echo "date:        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine:     nproc $(nproc), kernel $(uname -r)${cpu:+, $cpu}"
echo "load avg:    $load_start before the runs, $load_end after (1/5/15 min)"
echo "zkwatchdog:  $("$zkwatchdog" --version 2>/dev/null || echo '?'), git $rev$( ((untracked > 0)) && echo " (+$untracked untracked paths)")"
echo "zookeeper:   $(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || echo '?'), standalone on 127.0.0.1:$zk_port, tickTime $zk_tick_ms ms"
echo "smtp:        aiosmtpd $(/usr/bin/python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)'), 127.0.0.1:$smtp_port, plain SMTP (no TLS, no AUTH)"
echo "watcher:     group-wait 0s, one [email] channel; watchdogs: session timeout $((session_timeout_ms / 1000)) s"
if ((flume)); then
    echo "flume:       $(bash scripts/agents.sh versions | head -n 1), $(java -version 2>&1 | head -n 1)," \
        "heap ${ZKW_FLUME_HEAP:-128m}"
    echo "             seq (1000 events) -> memory -> file_roll; /metrics on port $flume_port;" \
        "probe kind flume, interval 1s"
fi
echo
python3 - "$work" "$runs" "$session_timeout_ms" "$flume" <<'EOF'
import os
import re
import sys
from datetime import datetime, timezone

work, n, timeout_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
flume = sys.argv[4] == "1"


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def load(name):
    with open(f"{work}/{name}.tsv") as f:
        rows = [line.split() for line in f if line.strip()]
    if len(rows) != n:
        sys.exit(f"{name}: {len(rows)} runs recorded, expected {n}")
    return [(int(r), int(t0), int(t1), int(conn), int(nth)) for r, t0, t1, conn, nth in rows]


def rfc3339_ns(text):
    """2026-01-02T03:04:05.123456Z -> ns since the epoch (None if unparsable)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    if not m:
        return None
    secs = int(datetime.fromisoformat(m.group(1)).replace(tzinfo=timezone.utc).timestamp())
    frac = int(((m.group(2) or "") + "000000000")[:9])
    return secs * 1_000_000_000 + frac


# The watcher's "down" lines: "<time> WARN ...: down agent="ID" ... LastExit { at: <time>, ...":
# per agent, (time of the line, last_exit.at or None).
downs = {}
ansi = re.compile(r"\x1b\[[0-9;]*m")
with open(f"{work}/watcher.log", errors="replace") as f:
    for line in f:
        line = ansi.sub("", line)
        m = re.match(
            r"(\S+)\s+WARN\s.*?\s(?:down|restarted while unobserved)\s+agent=\"?([^\s\"]+)", line
        )
        if not m or (t := rfc3339_ns(m.group(1))) is None:
            continue
        e = re.search(r"LastExit \{ at: (\S+?),", line)
        downs.setdefault(m.group(2), []).append((t, rfc3339_ns(e.group(1)) if e else None))

subjects = {}
with open(f"{work}/mail.tsv", errors="replace") as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 4:
            subjects[int(parts[0])] = parts[3]


def down_of(agent, t0, t1):
    """The first "down" line of agent between t0 (less 1 ms: log times are µs) and t1."""
    for t, exit_at in downs.get(agent, []):
        if t0 - 1_000_000 <= t <= t1:
            return t, exit_at
    return None


cols = ("min", "p50", "p90", "p99", "max", "mean")


def table(title, rows_by_label, fmt="{:>10.1f}"):
    print(title)
    print(f"{'':<40}{'n':>4}" + "".join(f"{c:>10}" for c in cols))
    for label, xs in rows_by_label:
        if not xs:
            print(f"{label:<40}{0:>4}   (no data)")
            continue
        v = {
            "min": min(xs),
            "p50": pct(xs, 50),
            "p90": pct(xs, 90),
            "p99": pct(xs, 99),
            "max": max(xs),
            "mean": sum(xs) / len(xs),
        }
        print(f"{label:<40}{len(xs):>4}" + "".join(fmt.format(v[c]) for c in cols))


def ms(a, b):
    return (b - a) / 1e6


def slowest(agent, rows, k=3):
    """One line with the k slowest runs: total (kill -> concluded + concluded -> accepted)."""
    out = []
    for r, t0, t1, _, _ in sorted(rows, key=lambda row: row[1] - row[2])[:k]:
        d = down_of(agent.format(r), t0, t1)
        split = f" = {ms(t0, d[0]):.1f} + {ms(d[0], t1):.1f}" if d else ""
        out.append(f"run {r}: {ms(t0, t1):.1f}{split}")
    print("   slowest runs, ms = kill -> concluded + concluded -> accepted:")
    print(f"     {'; '.join(out)}")


crash = load("crash")
lost = [] if flume else load("lost")

c_total, c_exit, c_detect, c_notify = [], [], [], []
kinds = {}  # the subject's first word(s) -> latencies
for _, t0, t1, _, _ in crash:
    c_total.append(ms(t0, t1))
    m = re.search(r"\] (.*?) bench-crash[: ]", subjects.get(t1, ""))
    kinds.setdefault(m.group(1) if m else "?", []).append(ms(t0, t1))
    d = down_of("bench-crash", t0, t1)
    if d:
        c_detect.append(ms(t0, d[0]))
        c_notify.append(ms(d[0], t1))
        if d[1] is not None:
            c_exit.append(ms(t0, d[1]))
l_total, l_detect, l_notify = [], [], []
for r, t0, t1, _, _ in lost:
    l_total.append(ms(t0, t1))
    d = down_of(f"bench-lost-{r}", t0, t1)
    if d:
        l_detect.append(ms(t0, d[0]))
        l_notify.append(ms(d[0], t1))

table(
    f"1. child SIGKILL -> CRASHED (or RESTARTED) email accepted, ms ({n} runs, after 1 warm-up)"
    + ("\n   the child: a real Flume JVM (kill -9 of the java process)" if flume else ""),
    [("total: kill -> accepted", c_total)]
    + [(f"  subject {k} <id>", xs) for k, xs in sorted(kinds.items(), key=lambda kv: -len(kv[1]))]
    + [
        ("  kill -> watchdog's last_exit.at (1)", c_exit),
        ("  kill -> watcher concluded (2)", c_detect),
        ("  watcher concluded -> accepted", c_notify),
    ],
)
fresh = sum(1 for *_, nth in crash if nth == 1)
print("   (1) last_exit.at is truncated to the ms, so it reads up to 1 ms early (even before the kill)")
print("   (2) its log line 'down ... CRASHED', or 'restarted while unobserved' when it missed the")
print("       liveness node's absence (the restart is immediate) and only saw the next generation")
print(f"   sent on a fresh SMTP connection: {fresh} of {n}")
slowest("bench-crash", crash)
print()
if flume:
    with open(f"{work}/flume.tsv") as f:
        starts = [line.split() for line in f if line.strip()]
    if len(starts) != n + 1:
        sys.exit(f"flume: {len(starts)} JVM starts recorded, expected {n + 1}")
    # RUN SPAWN_NS READY_NS EARLY VMRSS_KB VMHWM_KB PID
    up = [ms(int(row[1]), int(row[2])) for row in starts]
    rss = [int(row[4]) / 1024 for row in starts]
    hwm = [int(row[5]) / 1024 for row in starts]
    print(f"1b. the Flume agent: {n + 1} JVM starts (the first, then the restart after each kill")
    print("    but the last), each waited for before its kill")
    table(
        "    spawn -> /metrics answers (Flume's start-up), ms; the JVM's memory then, MB",
        [
            ("spawn -> /metrics, ms: first start", up[:1]),
            ("  restarts", up[1:]),
            ("JVM VmRSS at /metrics, MB: first", rss[:1]),
            ("  restarts", rss[1:]),
            ("JVM VmHWM at /metrics, MB: all", hwm),
        ],
    )
    first = starts[0]
    print(
        f"   first start: pid {first[6]} (java), /metrics answered {up[0]:.0f} ms after spawn"
        + (" (at the first poll: an upper bound)" if first[3] == "1" else "")
        + f", VmRSS {rss[0]:.1f} MB"
    )
    early = sum(1 for row in starts[1:] if row[3] == "1")
    if early:
        print(f"   restarts whose /metrics answered at the first poll (upper bounds): {early}")
    print("   spawn = the wrapper's start time (date +%s%N before its two execs); /metrics is")
    print("   polled every 50 ms (curl), so a start-up reads up to ~60 ms long")
    files = [os.path.join(d, f) for d, _, fs in os.walk(f"{work}/flume/out") for f in fs]
    events = 0
    for name in files:
        with open(name, "rb") as f:
            events += sum(1 for _ in f)
    print(
        f"   events the file_roll sink wrote: {events} in {len(files)} files (1000 per JVM that"
        f" got that far;\n   {n + 2} JVMs started, the last one stopped after the runs)"
    )
    with open(f"{work}/flume-probe.tsv") as f:
        health_ms, health = f.read().rstrip("\n").split("\t", 1)
    print(
        f"   the probe's health of the last JVM (zkwatcher status): {health or '?'}, "
        f"{int(health_ms) / 1000:.1f} s after its spawn"
        + ("" if health == "ok" else " (not ok within the bounded wait)")
    )
    print()
    print("2. zkwatchdog SIGKILL -> LOST email: skipped (--flume: it does not depend on the child;")
    print("   run without --flume for it)")
    print()
else:
    table(
        f"2. zkwatchdog SIGKILL -> LOST email accepted, ms ({n} runs, one at a time, "
        f"session timeout {timeout_ms / 1000:g} s)",
        [
            ("total: kill -> accepted", l_total),
            ("  kill -> watcher concluded LOST", l_detect),
            ("  watcher concluded -> accepted", l_notify),
        ],
    )
    fresh = sum(1 for *_, nth in lost if nth == 1)
    print(f"   sent on a fresh SMTP connection: {fresh} of {n}")
    slowest("bench-lost-{}", lost)
    print()
    table(
        f"   the same, as multiples of the {timeout_ms / 1000:g} s session timeout",
        [
            ("total: kill -> accepted", [x / timeout_ms for x in l_total]),
            ("  kill -> watcher concluded LOST", [x / timeout_ms for x in l_detect]),
        ],
        fmt="{:>10.3f}",
    )
    print()
by_kind = {}
for subject in subjects.values():
    m = re.match(r"\[zkwatchdog\] (.*?) (bench-[a-z]+(?:-\d+)?)[: ]", subject)
    key = m.group(1) if m else subject
    by_kind[key] = by_kind.get(key, 0) + 1
print(
    f"mails accepted in all: {len(subjects)} (warm-up included): "
    + ", ".join(f"{c} {k}" for k, c in sorted(by_kind.items(), key=lambda kv: -kv[1]))
)
print()
EOF
echo "3. zkwatcher memory, kB (/proc/PID/status of pid ${pids[watcher]})"
printf '%-38s%10s%10s\n' "" VmRSS VmHWM
printf '%-38s%10s%10s\n' "after it started leading, 0 agents" "$rss_start" "$hwm_start"
printf '%-38s%10s%10s\n' "after all runs" "$rss_end" "$hwm_end"
echo "   agents registered after the runs: $agents"
if ((flume)); then
    echo "   children outliving their SIGKILLed watchdog: - (measurement 2 skipped)"
else
    echo "   children outliving their SIGKILLed watchdog: $children_left"
fi

ok=1
