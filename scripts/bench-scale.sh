#!/usr/bin/env bash
# bench-scale.sh — a benchmark (not a test): zkwatcher with many agents registered, and a rack of
# them lost at once; how long the watcher takes to read them all, its memory, and how long until
# every lost agent is named in an accepted email.
#
# Usage: scripts/bench-scale.sh --agents N --lost K [--group-wait D] [--in-flight M]
#
#   --agents N      agents in the registry in all (N >= 1)
#   --lost K        of them on the lost rack (1 <= K <= N)
#   --group-wait D  the watcher's group-wait (default 1s; a humantime duration: 0s, 500ms, 2s)
#   --in-flight M   requests the registering program keeps in flight per session (default 1000)
#
# What it does: builds the release binaries (`cargo build --release --locked --bins`), checks the
# Debian packages (scripts/install-deps.sh), starts on free loopback ports a standalone ZooKeeper
# with a 200 ms tick (scripts/zk.sh start-standalone DIR PORT 200) and the SMTP sink of
# scripts/bench-alert.sh (scripts/bench-alert-smtp.py: aiosmtpd, plain SMTP, which records the
# time each message is accepted and, with --save-dir, keeps the message). Then:
#
#  1. registration: `scale-registry register` (tests/src/bin/scale-registry.rs) registers the
#     N - K steady agents (agent-NNNNNN@host-NNNN) on 4 sessions with a 10 s timeout, and another
#     `scale-registry register` the K rack agents (rack-NNNNNN@lost-rack) on ONE session with a
#     2 s timeout. Records are built with the watchdog crate's registry types: a marker at
#     <root>/agents/<id> and an ephemeral liveness node at <root>/live/<id>; every 10th marker
#     carries an earlier crash with a ~1 KiB stderr tail. Both processes stay up holding their
#     sessions.
#  2. sync: `zkwatcher run` (group-wait D, log-format json, an [email] channel to the sink)
#     starts; SYNC TIME is from its start (the time taken right before it is spawned) until its
#     log says "reconciled: every agent read" with agents = N for the first time. Its memory
#     (VmRSS, VmHWM from /proc/PID/status) is read 1 s after it logs "leading": RSS idle.
#  3. the loss: `scale-registry watch-gone` puts a persistent recursive watch on <root>/live, then
#     the rack's process is SIGKILLed: its session is not closed, so ZooKeeper EXPIRES it after
#     its 2 s timeout and deletes the K liveness nodes. The time origin is the moment the FIRST
#     of them is seen deleted by watch-gone's watch (an event from the server, ~1 ms after the
#     deletion; CLOCK_REALTIME), not the kill: the expiry is what an on-call can be told about.
#     The benchmark ends when every one of the K ids has been named in the body of an accepted
#     message (the Nth message is kept as N.eml and searched for rack-NNNNNN@lost-rack): loss ->
#     all named. Messages counts the messages accepted from the kill until then plus group-wait
#     + 2 s after (no other mail is expected). RSS after is read at that point.
#
# Output: one Markdown table line per run (agents, lost, group-wait, sync s, RSS idle MB, RSS
# after MB, loss -> all named s, messages), then where the time went, from the watcher's log
# (JSON lines, µs timestamps): connected -> reconciled -> leading; and after the expiry, the
# first and last "down" conclusion about a rack agent, the "sending" lines, and each message's
# acceptance. Also the registration times and kill -> expiry.
#
# Everything runs on 127.0.0.1, every wait is bounded (the bounds grow with N and K), and
# everything the script started is stopped by pid on exit, also on failure or Ctrl-C. The scratch
# directory is removed after a successful run (KEEP=1 keeps it) and kept, with its logs, after a
# failure. Run it under `nice -n 19` beside other work; it uses both cores while it registers.
#
# Environment: ZKWATCHER_LOG (log filter; keep zkwatcher at info or lower), TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

prog="$(basename "$0")"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

agents=""
lost=""
group_wait=1s
in_flight=1000
while (($# > 0)); do
    case "$1" in
        --agents | --lost | --group-wait | --in-flight)
            (($# >= 2)) || usage
            case "$1" in
                --agents) agents="$2" ;;
                --lost) lost="$2" ;;
                --group-wait) group_wait="$2" ;;
                --in-flight) in_flight="$2" ;;
            esac
            shift
            ;;
        -h | --help) usage ;;
        *) log "unknown argument: $1" && usage ;;
    esac
    shift
done
is_uint "$agents" && ((agents >= 1)) || die "--agents N is required (N >= 1)"
is_uint "$lost" && ((lost >= 1 && lost <= agents)) || die "--lost K is required (1 <= K <= N)"
is_uint "$in_flight" && ((in_flight >= 1)) || die "bad --in-flight: $in_flight"
[[ "$group_wait" =~ ^[0-9]+(ms|s|m)$ ]] || die "bad --group-wait: $group_wait (e.g. 0s, 500ms, 2s)"
readonly agents lost group_wait in_flight
readonly steady=$((agents - lost))

readonly zk_tick_ms=200
readonly steady_sessions=4
readonly steady_timeout_ms=10000
readonly rack_timeout_ms=2000
# Bounds on the waits, growing with the registry.
readonly register_wait_s=$((60 + agents / 200))
readonly sync_wait_s=$((60 + agents / 100))
readonly expiry_wait_s=30
readonly named_wait_s=$((60 + lost / 50))

command -v cargo >/dev/null 2>&1 || die "cargo is not installed"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"

# --- build and dependencies ----------------------------------------------------------------------
log "building release binaries: cargo build --release --locked --bins"
cargo build --release --locked --bins
bash scripts/install-deps.sh
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null ||
    die "/usr/bin/python3 cannot import aiosmtpd (package python3-aiosmtpd)"

target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
readonly zkwatcher="$target_dir/release/zkwatcher"
readonly registry="$target_dir/release/scale-registry"
for bin in "$zkwatcher" "$registry"; do
    [[ -x "$bin" ]] || die "missing release binary $bin"
done

# --- scratch directory and cleanup ---------------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/bench-scale.XXXXXX")"
readonly work
zk_dir="$work/zk"
mail="$work/mail.tsv" # the sink's record: TIME_NS CONN NTH SUBJECT
mkdir -p -- "$work/mail"
declare -A pids=() # name -> pid of what this script started, while it may be running
zk_started=0
ok=0

cleanup() {
    local status=$? name
    trap - EXIT INT TERM
    set +e
    # The watcher first (nothing it would say now is measured), then the registering processes
    # (closing their sessions removes their liveness nodes), then the sink.
    for name in watch-gone watcher rack steady smtp; do
        [[ -z "${pids[$name]:-}" ]] || stop_pid "$name" "${pids[$name]}" 15
    done
    ((zk_started)) && stop_zk "$zk_dir"
    leave_scratch "$work" "$ok" "$status"
}
on_exit cleanup

# Waits (at most $3 s) until file $1 has a line matching the ERE $2, while process $4 (a name in
# pids) runs; prints the first such line. Dies with the process's log ($5) otherwise.
wait_line() { # FILE ERE SECONDS NAME LOG
    local deadline=$(($(now_ms) + $3 * 1000)) line
    until line="$(grep -m 1 -E -- "$2" "$1" 2>/dev/null)"; do
        if ! is_running "${pids[$4]}"; then
            tail_of "$5"
            die "$4 exited before '$2' appeared in $1"
        fi
        if (($(now_ms) >= deadline)); then
            tail_of "$5"
            die "no '$2' in $1 within $3 s"
        fi
        sleep 0.05
    done
    echo "$line"
}

# The value of KEY=VALUE in line $1.
field() { # LINE KEY
    local f
    for f in $1; do
        if [[ "$f" == "$2="* ]]; then
            echo "${f#*=}"
            return 0
        fi
    done
    die "no $2= in: $1"
}

# --- ports, ZooKeeper, SMTP sink -----------------------------------------------------------------

zk_port="$(free_port)"
smtp_port="$(free_port "$zk_port")"
readonly zk_port smtp_port
readonly zk="127.0.0.1:$zk_port"

zk_started=1
# zk.sh gives the server 256 MB of heap; the records of 100,000 agents alone are some 80 MB:
# 1 GB above 50,000 agents.
zk_heap=256m
(( agents > 50000 )) && zk_heap=1g
ZK_HEAP="${ZK_HEAP:-$zk_heap}" bash scripts/zk.sh start-standalone "$zk_dir" "$zk_port" "$zk_tick_ms" >&2 || {
    tail_of "$zk_dir/zk.log"
    die "ZooKeeper did not start"
}
grep -qx "minSessionTimeout=$((2 * zk_tick_ms))" "$zk_dir/zoo.cfg" ||
    die "unexpected minSessionTimeout in $zk_dir/zoo.cfg"

# Each long-running process gets a session of its own (setsid): Ctrl-C reaches only this script,
# which then stops them by pid like on any other exit.
setsid /usr/bin/python3 scripts/bench-alert-smtp.py --port "$smtp_port" --out "$mail" \
    --save-dir "$work/mail" --pid-file "$work/smtp.pid" --exit-with-parent \
    </dev/null >"$work/smtp.log" 2>&1 &
pids[smtp]=$!
deadline=$(($(now_ms) + 10000))
until [[ -s "$work/smtp.pid" ]]; do
    is_running "${pids[smtp]}" || { tail_of "$work/smtp.log" && die "the SMTP sink exited"; }
    (($(now_ms) < deadline)) || die "the SMTP sink did not listen within 10 s"
    sleep 0.02
done

# --- 1. registration ----------------------------------------------------------------------------
# register NAME GROUP COUNT SESSIONS TIMEOUT_MS: starts it, waits for its "ready" line.
register() {
    setsid "$registry" register --zk "$zk" --group "$2" --count "$3" --sessions "$4" \
        --session-timeout-ms "$5" --in-flight "$in_flight" \
        </dev/null >"$work/$1.out" 2>"$work/$1.log" &
    pids[$1]=$!
    wait_line "$work/$1.out" '^ready ' "$register_wait_s" "$1" "$work/$1.log" >/dev/null
}
log "1. registering $agents agents: $steady steady on $steady_sessions sessions, $lost on the rack's one session"
steady_ready="ready count=0 sessions=0 session_ids= markers_ms=0 live_ms=0 bytes=0"
if ((steady > 0)); then
    register steady steady "$steady" "$steady_sessions" "$steady_timeout_ms"
    steady_ready="$(head -n 1 "$work/steady.out")"
fi
register rack rack "$lost" 1 "$rack_timeout_ms"
rack_ready="$(head -n 1 "$work/rack.out")"
log "   steady: $steady_ready"
log "   rack:   $rack_ready"

# --- 2. the watcher's sync ------------------------------------------------------------------------
cat >"$work/watcher.toml" <<EOF
zk-hosts = "$zk"
group-wait = "$group_wait"
log-format = "json"

[email]
url = "smtp://127.0.0.1:$smtp_port"
from = "zkwatcher bench <bench@localhost>"
to = ["oncall@localhost"]
timeout = "30s"
EOF
log "2. starting zkwatcher: sync of $agents agents"
t_start="$(epoch_ns)"
setsid "$zkwatcher" run --config "$work/watcher.toml" </dev/null >"$work/watcher.log" 2>&1 &
pids[watcher]=$!
line="$(wait_line "$work/watcher.log" '"message":"reconciled: every agent read"' \
    "$sync_wait_s" watcher "$work/watcher.log")"
[[ "$line" == *"\"agents\":$agents,"* ]] || die "the first reconcile did not read $agents agents: $line"
wait_line "$work/watcher.log" '"message":"leading: ' "$sync_wait_s" watcher "$work/watcher.log" >/dev/null
sleep 1 # idle: whatever the take-over started has settled
read -r rss_idle hwm_idle < <(mem_of "${pids[watcher]}")
before="$(count_lines "$mail")"
((before == 0)) || log "warning: $before messages before the loss (expected none): see $mail"

# --- 3. the loss ------------------------------------------------------------------------------------
log "3. dropping the rack's session ($lost agents; it expires after $((rack_timeout_ms / 1000)) s)"
setsid "$registry" watch-gone --zk "$zk" --group rack --count "$lost" \
    --timeout-s $((expiry_wait_s + rack_timeout_ms / 1000)) \
    </dev/null >"$work/watch-gone.out" 2>"$work/watch-gone.log" &
pids[watch-gone]=$!
armed="$(wait_line "$work/watch-gone.out" '^armed ' 30 watch-gone "$work/watch-gone.log")"
(($(field "$armed" present) == lost)) || die "watch-gone sees $(field "$armed" present) of the $lost rack liveness nodes"
t_kill="$(epoch_ns)"
kill -KILL "${pids[rack]}"
wait "${pids[rack]}" 2>/dev/null || true
unset "pids[rack]"
gone="$(wait_line "$work/watch-gone.out" '^gone ' $((expiry_wait_s + 10)) watch-gone "$work/watch-gone.log")"
(($(field "$gone" count) == lost)) || die "only $(field "$gone" count) of $lost rack liveness nodes went: $gone"
t_expiry="$(field "$gone" first_ns)"
wait "${pids[watch-gone]}" 2>/dev/null || true
unset "pids[watch-gone]"

# Polls the kept messages (those after line $before of the sink's record) until every rack id is
# named; prints "NTH TIME_NS" of the message that completed the set.
named="$(python3 - "$work/mail" "$mail" "$before" "$lost" "$named_wait_s" <<'EOF'
import email, email.policy, os, re, sys, time
mail_dir, tsv, before, lost, wait_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rack = re.compile(r"rack-(\d{6})@lost-rack")
seen, n = set(), before
deadline = time.monotonic() + wait_s
while time.monotonic() < deadline:
    with open(tsv, encoding="utf-8") as f:
        lines = f.read().splitlines()
    while n < len(lines):
        n += 1
        with open(os.path.join(mail_dir, f"{n}.eml"), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        seen.update(int(i) for i in rack.findall(text) if int(i) < lost)
        if len(seen) == lost:
            print(n, lines[n - 1].split("\t")[0])
            sys.exit(0)
    time.sleep(0.05)
sys.stderr.write(f"only {len(seen)} of {lost} rack agents named within {wait_s} s\n")
sys.exit(1)
EOF
)" || { tail_of "$work/watcher.log" && die "not every lost agent was named in a message"; }
read -r _ t_named <<<"$named"
# Later messages, if any, are counted too: wait group-wait + 2 s for them.
gw_ms="$(python3 -c 'import re, sys; v, u = re.fullmatch(r"(\d+)(ms|s|m)", sys.argv[1]).groups(); print(int(v) * {"ms": 1, "s": 1000, "m": 60000}[u])' "$group_wait")"
sleep "$(((gw_ms + 2000) / 1000)).$(printf '%03d' $(((gw_ms + 2000) % 1000)))"
read -r rss_after hwm_after < <(mem_of "${pids[watcher]}")
messages=$(($(count_lines "$mail") - before))

# --- report ------------------------------------------------------------------------------------------
python3 - "$work" "$agents" "$lost" "$group_wait" "$t_start" "$t_kill" "$t_expiry" "$t_named" \
    "$before" "$messages" "$rss_idle" "$hwm_idle" "$rss_after" "$hwm_after" \
    "$steady_ready" "$rack_ready" "$gone" "$in_flight" <<'EOF'
import datetime, json, re, sys
(work, agents, lost, group_wait, t_start, t_kill, t_expiry, t_named, before, messages,
 rss_idle, hwm_idle, rss_after, hwm_after, steady_ready, rack_ready, gone, in_flight) = sys.argv[1:]
t_start, t_kill, t_expiry, t_named = int(t_start), int(t_kill), int(t_expiry), int(t_named)
before, messages = int(before), int(messages)

def kv(line):
    return dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)

def ns(ts):
    d = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(d.timestamp()) * 10**9 + d.microsecond * 1000

events = []
with open(f"{work}/watcher.log", encoding="utf-8") as f:
    for line in f:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        e["ns"] = ns(e["timestamp"])
        events.append(e)

def first(pred, after=0):
    return next((e for e in events if e["ns"] >= after and pred(e)), None)

def last(pred, after=0):
    return next((e for e in reversed(events) if e["ns"] >= after and pred(e)), None)

def msg(text):
    return lambda e: e.get("message", "") == text

def s(a, b):
    return "-" if a is None or b is None else f"{(b - a) / 1e9:.3f}"

def at(e):
    return None if e is None else e["ns"]

mb = lambda kb: f"{int(kb) / 1024:.1f}"
connected = first(msg("connected to zookeeper"))
reconciled = first(msg("reconciled: every agent read"))
leading = first(lambda e: e.get("message", "").startswith("leading: "))
ups = [e for e in events if e.get("message") == "up" and e["ns"] <= at(reconciled)]
rack_down = lambda e: e.get("message") == "down" and str(e.get("agent", "")).startswith("rack-")
down1, downN = first(rack_down, t_kill), last(rack_down, t_kill)
downs = sum(1 for e in events if e["ns"] >= t_kill and rack_down(e))
sends = [e for e in events if e["ns"] >= t_kill and e.get("message") == "sending"]
with open(f"{work}/mail.tsv", encoding="utf-8") as f:
    accepted = [line.rstrip("\n").split("\t") for line in f][before:]

print()
print("| agents | lost | group-wait | sync s | RSS idle MB | RSS after MB | loss -> all named s | messages |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {agents} | {lost} | {group_wait} | {s(t_start, at(reconciled))} | {mb(rss_idle)} "
      f"| {mb(rss_after)} | {s(t_expiry, t_named)} | {messages} |")
print()
st, rk = kv(steady_ready), kv(rack_ready)
print(f"registration (in flight {in_flight} per session): steady {st['count']} agents on "
      f"{st['sessions']} sessions: markers {st['markers_ms']} ms, liveness {st['live_ms']} ms; "
      f"rack {rk['count']}: markers {rk['markers_ms']} ms, liveness {rk['live_ms']} ms; "
      f"{(int(st['bytes']) + int(rk['bytes'])) / 2**20:.1f} MiB of records")
print(f"memory, MB: idle VmRSS {mb(rss_idle)} VmHWM {mb(hwm_idle)}; after VmRSS {mb(rss_after)} "
      f"VmHWM {mb(hwm_after)}")
def row(label, value, note=""):
    print(f"  {label:<44}{value:>9}" + (f"  {note}" if note else ""))

print("the watcher's start, s from its spawn:")
row("connected to zookeeper", s(t_start, at(connected)))
if ups:
    row("first agent read ('up')", s(t_start, ups[0]["ns"]))
    row(f"last agent read ('up', {len(ups)} in all)", s(t_start, ups[-1]["ns"]))
if reconciled is not None:
    row("reconciled: every agent read", s(t_start, at(reconciled)),
        f"(its own count: agents={reconciled.get('agents')}, elapsed_ms={reconciled.get('elapsed_ms')})")
row("leading (take-over done)", s(t_start, at(leading)))
g = kv(gone)
print(f"the loss: kill -9 -> first liveness node deleted (the expiry) {s(t_kill, t_expiry)} s; "
      f"first -> last deleted {s(int(g['first_ns']), int(g['last_ns']))} s")
print("after the expiry, s:")
row("first 'down' (LOST) of a rack agent", s(t_expiry, at(down1)))
row(f"last 'down' ({downs} rack agents)", s(t_expiry, at(downN)))
for e in sends:
    row(f"'sending' ({e.get('channel')}, agents={e.get('agents', 1)})", s(t_expiry, e["ns"]))
for r in accepted:
    row(f"accepted: {r[3][:40]}", s(t_expiry, int(r[0])))
row("every lost agent named", s(t_expiry, t_named))
EOF
ok=1
