#!/usr/bin/env bash
# demo.sh — the whole system on this machine, unattended, with nothing but the repository.
#
#   scripts/demo.sh            run the demo to the end, then stop everything it started
#   scripts/demo.sh --keep     leave ZooKeeper, MailDev, zkwatcher and the two surviving agents running
#   scripts/demo.sh --stop     stop what a --keep run left running
#   scripts/demo.sh --debug    use the debug build instead of the release build
#
# What it does: installs what is missing (scripts/install-deps.sh: ZooKeeper, a JRE, runit,
# aiosmtpd, openssl; MailDev 2.2.1 from npm into .demo/node_modules), builds zkwatchdog and
# zkwatcher (cargo build --release), starts a local ZooKeeper, MailDev (a mail catcher with a web
# UI), `zkwatcher run` and three agents wrapped by `zkwatchdog run` (flume-demo@HOST and
# connect-demo@HOST: shell loops that log to stderr; flume-probe-demo@HOST: the tests' fake Flume
# agent, serving Flume's JSON metrics, with a health probe). Then it crashes flume-demo's process
# (kill -9), waits for the alert email, stops connect-demo cleanly (SIGTERM: no alert), fills the
# fake Flume agent's channel past the probe's threshold (a DEGRADED email) and drains it again
# ("healthy again"), and shows the emails (from MailDev's REST API), `zkwatcher status`, and the
# znodes (zkCli.sh).
#
# Everything listens on 127.0.0.1; state and logs are in .demo/run. Ports: ZooKeeper 21810,
# SMTP 1025, web UI 1080, or the next free ones (override: DEMO_ZK_PORT, DEMO_SMTP_PORT,
# DEMO_WEB_PORT). Every wait is bounded; on failure the relevant log is printed. Only processes
# this script started (checked by pid, command name and a token in their environment) are
# signalled. Needs root only to install Debian packages that are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd -P)"

prog="demo.sh"
# shellcheck source=scripts/common.sh
source scripts/common.sh

readonly MAILDEV_VERSION=2.2.1
readonly DEMO_DIR="$REPO/.demo"
readonly RUN="$DEMO_DIR/run"
readonly GROUP_WAIT=1
readonly HOST="${HOSTNAME:-$(uname -n)}"
readonly FLUME_ID="flume-demo@$HOST"
readonly CONNECT_ID="connect-demo@$HOST"
readonly PROBE_ID="flume-probe-demo@$HOST"
readonly AGENTS=(flume-demo connect-demo flume-probe-demo)

keep=false
mode=run
profile=release
while (($# > 0)); do
    case "$1" in
    --keep) keep=true ;;
    --stop) mode=stop ;;
    --debug) profile=debug ;;
    -h | --help) usage ;;
    *)
        log "unknown argument: $1"
        usage
        ;;
    esac
    shift
done

started_at=$SECONDS
# The script's own stdout and stderr, for the exit trap: a signal can arrive while a function runs
# with its output redirected. Closed in every process started from here (3>&- 4>&-).
exec 3>&1 4>&2
if [[ -t 1 ]]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
elapsed() { echo "$((SECONDS - started_at))s"; }

# ---------------------------------------------------------------------------------------------
# Processes this script starts: $RUN/NAME.pid, $RUN/NAME.comm (the expected command name), and
# ZKWATCHDOG_DEMO=<token> in their environment. Nothing else is ever signalled.

token() { cat "$RUN/token" 2>/dev/null || true; }

# Print the pid of NAME if it is still the process we started (running, not a zombie).
ours() { # NAME
    local pid comm tok environ
    [[ -s "$RUN/$1.pid" ]] || return 1
    pid="$(<"$RUN/$1.pid")"
    is_uint "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == "$(cat "$RUN/$1.comm" 2>/dev/null)" ]] || return 1
    tok="$(token)"
    [[ -n "$tok" ]] || return 1
    environ="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ")" || return 1
    grep -qxF "ZKWATCHDOG_DEMO=$tok" <<<"$environ" || return 1
    echo "$pid"
}

# spawn NAME COMM LOG COMMAND...: start COMMAND detached (its own session, so a Ctrl-C reaches
# only this script, whose trap stops it by pid), output appended to LOG; wait until it has
# exec'd COMM.
spawn() {
    local name="$1" comm="$2" logf="$3" pidf="$RUN/$1.pid" pid deadline
    shift 3
    rm -f -- "$pidf"
    echo "$comm" >"$RUN/$name.comm"
    # shellcheck disable=SC2016 # expanded by the inner bash
    ZKWATCHDOG_DEMO="$(token)" setsid bash -c 'echo "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
        "$pidf" "$@" </dev/null >>"$logf" 2>&1 3>&- 4>&- &
    deadline=$(($(now_ms) + 10000))
    until [[ -s "$pidf" ]]; do
        (($(now_ms) < deadline)) || die "$name: no pid file after 10 s"
        sleep 0.02
    done
    pid="$(<"$pidf")"
    until ours "$name" >/dev/null; do
        if [[ ! -d "/proc/$pid" ]] || (($(now_ms) >= deadline)); then
            log "$name (pid $pid) did not start: $*"
            show_log "$logf"
            exit 1
        fi
        sleep 0.02
    done
}

# stop_proc NAME SECONDS: SIGTERM, then SIGKILL after SECONDS; prints the exit status when known.
stop_proc() {
    local name="$1" secs="$2" pid deadline rc=0
    pid="$(ours "$name")" || {
        rm -f -- "$RUN/$name.pid"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now_ms) + secs * 1000))
    while ours "$name" >/dev/null; do
        if (($(now_ms) >= deadline)); then
            log "$name (pid $pid) still running $secs s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$(($(now_ms) + 5000))
            while ours "$name" >/dev/null; do
                (($(now_ms) < deadline)) || die "$name (pid $pid) survived SIGKILL"
                sleep 0.05
            done
            break
        fi
        sleep 0.05
    done
    rm -f -- "$RUN/$name.pid"
    # Reap it when it is our child (not after --keep), to report its exit status.
    if wait "$pid" 2>/dev/null; then rc=0; else rc=$?; fi
    if ((rc == 127)); then
        echo "stopped $name (pid $pid)"
    else
        echo "stopped $name (pid $pid), exit status $rc"
    fi
}

zk_running() {
    local pid
    [[ -s "$RUN/zk/zk.pid" ]] || return 1
    pid="$(<"$RUN/zk/zk.pid")"
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == java ]]
}

any_running() {
    local name
    for name in "${AGENTS[@]}" zkwatcher maildev; do
        ours "$name" >/dev/null && return 0
    done
    zk_running
}

stop_all() {
    local name
    for name in "${AGENTS[@]}"; do
        stop_proc "$name" 40 # zkwatchdog: planned stop, no alert
    done
    stop_proc zkwatcher 15
    stop_proc maildev 15
    if [[ -d "$RUN/zk" ]]; then
        bash scripts/zk.sh stop "$RUN/zk" && echo "stopped ZooKeeper"
    fi
}

show_log() { # FILE...
    local f
    for f in "$@"; do
        if [[ -f "$f" ]]; then
            echo "---- last 40 lines of $f ----" >&2
            tail -n 40 -- "$f" >&2
            echo "----" >&2
        fi
    done
}

# wait_for SECONDS WHAT "LOG FILES" COMMAND...: poll COMMAND until it succeeds, or fail printing
# the logs.
wait_for() {
    local secs="$1" what="$2" logs="$3" deadline
    shift 3
    deadline=$(($(now_ms) + secs * 1000))
    until "$@" >/dev/null 2>&1; do
        if (($(now_ms) >= deadline)); then
            log "timed out after $secs s waiting for $what"
            # shellcheck disable=SC2086 # a list of paths without spaces
            show_log $logs
            exit 1
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------

if [[ "$mode" == stop ]]; then
    [[ -f "$RUN/token" ]] || {
        echo "no demo state in $RUN: nothing to stop"
        exit 0
    }
    stop_all
    rm -f -- "$RUN/token"
    echo "everything the demo started is stopped (logs remain in $RUN)"
    exit 0
fi

if [[ -f "$RUN/token" ]] && any_running; then
    die "a demo started with --keep is still running; stop it first: scripts/demo.sh --stop"
fi

# Pick PREFERRED, or the next port that can be bound on 127.0.0.1 and is not in USED.
free_port() { # PREFERRED USED...
    local first="$1" p="$1" used
    shift
    for ((; p < first + 200; p++)); do
        for used in "$@"; do
            [[ "$p" != "$used" ]] || continue 2
        done
        # shellcheck disable=SC2016
        if python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port in $first..$((p - 1))"
}

say "installing what is missing (scripts/install-deps.sh, MailDev $MAILDEV_VERSION from npm)"
bash scripts/install-deps.sh
if ! command -v npm >/dev/null 2>&1; then
    ((EUID == 0)) || die "npm is missing; install it (apt-get install nodejs npm) or run as root"
    log "installing nodejs and npm with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
maildev_bin="$DEMO_DIR/node_modules/.bin/maildev"
installed_version="$(node -p "require('$DEMO_DIR/node_modules/maildev/package.json').version" 2>/dev/null || true)"
if [[ "$installed_version" != "$MAILDEV_VERSION" || ! -x "$maildev_bin" ]]; then
    log "npm install --prefix .demo maildev@$MAILDEV_VERSION"
    mkdir -p "$DEMO_DIR"
    npm install --prefix "$DEMO_DIR" --no-audit --no-fund --loglevel=error \
        "maildev@$MAILDEV_VERSION" >"$DEMO_DIR/npm-install.log" 2>&1 || {
        show_log "$DEMO_DIR/npm-install.log"
        die "npm install maildev@$MAILDEV_VERSION failed"
    }
fi
[[ -x "$maildev_bin" ]] || die "$maildev_bin missing after npm install"
echo "MailDev $MAILDEV_VERSION in .demo/node_modules"

build=(cargo build --bins -p zkwatchdog -p zkwatcher -p zkwatchdog-tests --bin fake-flume)
[[ "$profile" == debug ]] || build+=(--release)
say "building zkwatchdog and zkwatcher (${build[*]})"
command -v cargo >/dev/null 2>&1 || die "cargo is missing: install a Rust toolchain (https://rustup.rs)"
"${build[@]}"
wd="$REPO/target/$profile/zkwatchdog"
wc="$REPO/target/$profile/zkwatcher"
fake_flume="$REPO/target/$profile/fake-flume"
[[ -x "$wd" && -x "$wc" && -x "$fake_flume" ]] || die "missing $wd, $wc or $fake_flume after the build"

rm -rf -- "$RUN"
mkdir -p "$RUN"
echo "ZKWATCHDOG_DEMO-$(date +%s%N)-$$" >"$RUN/token"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    exec 1>&3 2>&4
    if ! $keep || ((status != 0)); then
        ((status == 0)) || log "failed (exit status $status); stopping everything it started"
        say "cleaning up: stopping everything this demo started"
        stop_all || true
        rm -f -- "$RUN/token"
        ((status == 0)) || log "logs are in $RUN"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

zk_port="$(free_port "${DEMO_ZK_PORT:-21810}")"
smtp_port="$(free_port "${DEMO_SMTP_PORT:-1025}" "$zk_port")"
web_port="$(free_port "${DEMO_WEB_PORT:-1080}" "$zk_port" "$smtp_port")"
metrics_port="$(free_port "${DEMO_FLUME_PORT:-34545}" "$zk_port" "$smtp_port" "$web_port")"
# Prometheus metrics of zkwatcher and of flume-demo's zkwatchdog.
prom_port="$(free_port "${DEMO_PROM_PORT:-9464}" "$zk_port" "$smtp_port" "$web_port" "$metrics_port")"
wprom_port="$(free_port "$((prom_port + 1))" "$zk_port" "$smtp_port" "$web_port" "$metrics_port" "$prom_port")"
zk="127.0.0.1:$zk_port"
web="http://127.0.0.1:$web_port"
cat >"$RUN/ports" <<EOF
zk=$zk_port
smtp=$smtp_port
web=$web_port
flume_metrics=$metrics_port
watchdog_prometheus=$prom_port
watcher_prometheus=$wprom_port
EOF

zkcli() {
    bash scripts/zk.sh cli "$zk_port" "$@" 2>/dev/null |
        grep -v -e '^WATCHER::' -e '^WatchedEvent' -e '^$' -e '^Connecting to' || true
}

say "starting ZooKeeper on $zk (scripts/zk.sh start-standalone .demo/run/zk $zk_port)"
bash scripts/zk.sh start-standalone "$RUN/zk" "$zk_port" 3>&- 4>&-

say "starting MailDev: SMTP 127.0.0.1:$smtp_port, web UI $web"
mkdir -p "$RUN/maildev-mail"
spawn maildev node "$RUN/maildev.log" "$maildev_bin" --ip 127.0.0.1 --smtp "$smtp_port" \
    --web "$web_port" --mail-directory "$RUN/maildev-mail"
# shellcheck disable=SC2016
http_ok() { python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$1"; }
wait_for 60 "MailDev's web UI at $web" "$RUN/maildev.log" http_ok "$web/healthz"
# shellcheck disable=SC2016
wait_for 30 "MailDev's SMTP port $smtp_port" "$RUN/maildev.log" \
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$smtp_port"
echo "MailDev up (pid $(ours maildev))"

say "starting zkwatcher run --config .demo/run/watcher.toml"
cat >"$RUN/watcher.toml" <<EOF
# written by scripts/demo.sh
zk-hosts = "$zk"
session-timeout = "4s"
group-wait = "${GROUP_WAIT}s"
retry-initial = "1s"
retry-max = "10s"
metrics-addr = "127.0.0.1:$wprom_port"

[email]
url = "smtp://127.0.0.1:$smtp_port"
from = "zkwatchdog demo <zkwatcher@example.com>"
to = ["oncall@example.com"]
timeout = "10s"
EOF
cat "$RUN/watcher.toml"
spawn zkwatcher zkwatcher "$RUN/zkwatcher.log" "$wc" run --config "$RUN/watcher.toml"
wait_for 30 "zkwatcher to lead (log line 'leading')" "$RUN/zkwatcher.log" \
    grep -q 'leading' "$RUN/zkwatcher.log"
echo "zkwatcher up (pid $(ours zkwatcher)) and leading"

say "starting three agents under zkwatchdog (session timeout 4s)"
# shellcheck disable=SC2016 # expanded by the agents' shells
flume_cmd='echo "flume-demo: agent a1 starting, pid $$" >&2; n=0
while :; do n=$((n + 1)); echo "flume-demo: sink k1 delivered batch $n (100 events)" >&2; sleep 1; done'
# shellcheck disable=SC2016
connect_cmd='echo "connect-demo: worker starting, pid $$" >&2; n=0
while :; do n=$((n + 1)); echo "connect-demo: task jdbc-source-0 committed offsets ($n)" >&2; sleep 1; done'
echo "zkwatchdog run --zk $zk --session-timeout 4s --id $FLUME_ID --kind flume -- sh -c '...'"
spawn flume-demo zkwatchdog "$RUN/flume-demo.log" "$wd" run --zk "$zk" --session-timeout 4s \
    --id "$FLUME_ID" --name flume-demo --kind flume --metrics-addr "127.0.0.1:$prom_port" \
    -- sh -c "$flume_cmd"
echo "zkwatchdog run --zk $zk --session-timeout 4s --id $CONNECT_ID --kind kafka-connect -- sh -c '...'"
spawn connect-demo zkwatchdog "$RUN/connect-demo.log" "$wd" run --zk "$zk" --session-timeout 4s \
    --id "$CONNECT_ID" --name connect-demo --kind kafka-connect -- sh -c "$connect_cmd"

# status_field ID FIELD: a field of one row of `zkwatcher status --json` ("" if absent).
cat >"$RUN/flume-probe.toml" <<EOF
zk-hosts = "$zk"
session-timeout = "4s"
id = "$PROBE_ID"
name = "flume-probe-demo"
kind = "flume"
command = ["$fake_flume", "--listen", "127.0.0.1:$metrics_port", "--channel", "c1:10000"]

[probe]
url = "http://127.0.0.1:$metrics_port/metrics"
interval = "500ms"
timeout = "2s"
start-grace = "10s"
channel-fill-threshold = 80.0
EOF
echo "zkwatchdog run --config .demo/run/flume-probe.toml   (the fake Flume agent, probed every 500ms)"
spawn flume-probe-demo zkwatchdog "$RUN/flume-probe-demo.log" "$wd" run --config "$RUN/flume-probe.toml"

status_field() {
    "$wc" status --zk "$zk" --json 2>/dev/null | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["id"] == sys.argv[1]]
v = rows[0].get(sys.argv[2]) if rows else None
print("" if v is None else v)' "$1" "$2"
}
is_running_gen() { # ID GENERATION
    [[ "$(status_field "$1" state)" == running && "$(status_field "$1" generation)" == "$2" ]]
}
wait_for 30 "$FLUME_ID to run" "$RUN/flume-demo.log" is_running_gen "$FLUME_ID" 1
wait_for 30 "$CONNECT_ID to run" "$RUN/connect-demo.log" is_running_gen "$CONNECT_ID" 1
# logged ID TEXT: zkwatcher's log has a line about agent ID that contains TEXT.
logged() {
    awk -v id="agent=\"$1\"" -v text="$2" 'index($0, id) && index($0, text) { found = 1 }
        END { exit !found }' "$RUN/zkwatcher.log"
}
wait_for 15 "zkwatcher to log $FLUME_ID up" "$RUN/zkwatcher.log" logged "$FLUME_ID" " up "
wait_for 15 "zkwatcher to log $CONNECT_ID up" "$RUN/zkwatcher.log" logged "$CONNECT_ID" " up "

say "zkwatcher status --zk $zk"
"$wc" status --zk "$zk"
say "the registry (zkCli.sh): ls /zkwatchdog/agents ; ls /zkwatchdog/live"
zkcli ls /zkwatchdog/agents
zkcli ls /zkwatchdog/live

# The child to crash: pid from `zkwatcher status --json`, and it must be the child of the
# zkwatchdog we started.
child="$(status_field "$FLUME_ID" pid)"
flume_wd="$(ours flume-demo)" || die "flume-demo's zkwatchdog is not running"
is_uint "$child" || die "no pid for $FLUME_ID in zkwatcher status --json"
parent="$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$child/status" 2>/dev/null || true)"
[[ "$parent" == "$flume_wd" ]] ||
    die "pid $child is not the child of our zkwatchdog $flume_wd (its parent: ${parent:-gone})"
sleep 2 # let the agent log a few lines: they show up in the alert's stderr tail

say "crashing $FLUME_ID: kill -9 $child (the agent's process, child of zkwatchdog pid $flume_wd)"
kill -KILL "$child"
crash_ms=$(now_ms)

# emails_matching REGEX: how many MailDev emails have a subject matching REGEX.
emails_matching() {
    python3 -c '
import json, re, sys, urllib.request
mails = json.load(urllib.request.urlopen(sys.argv[1] + "/email", timeout=5))
print(sum(1 for m in mails if re.search(sys.argv[2], m.get("subject", ""))))' "$web" "$1"
}
has_email() { (($(emails_matching "$1") > 0)); }
wait_for 30 "the CRASHED email for $FLUME_ID in MailDev" "$RUN/zkwatcher.log $RUN/maildev.log" \
    has_email "CRASHED.*flume-demo@"
echo "alert email arrived $(($(now_ms) - crash_ms)) ms after the kill"
wait_for 30 "$FLUME_ID to be restarted (generation 2)" "$RUN/flume-demo.log" \
    is_running_gen "$FLUME_ID" 2
wait_for 30 "the RECOVERED email for $FLUME_ID" "$RUN/zkwatcher.log $RUN/maildev.log" \
    has_email "RECOVERED.*flume-demo@|flume-demo@.*RECOVERED"
echo "$FLUME_ID was restarted by zkwatchdog and zkwatcher reported the recovery"

say "planned stop of $CONNECT_ID: kill -TERM $(ours connect-demo) (its zkwatchdog)"
stop_proc connect-demo 40
wait_for 15 "zkwatcher to see $CONNECT_ID leave" "$RUN/zkwatcher.log" \
    logged "$CONNECT_ID" "gone from the registry"
sleep "$((GROUP_WAIT + 1))" # longer than group-wait: an alert, if any, would have been sent
n="$(emails_matching "connect-demo@")"
((n == 0)) || die "$n email(s) about $CONNECT_ID after a planned stop"
echo "marker and liveness node removed together; zkwatcher logged it as gone; no email about it"

say "a health probe: filling CHANNEL.c1 of $PROBE_ID to 93% (threshold 80%)"
fill() { # SIZE
    python3 -c 'import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=b"", method="POST")
urllib.request.urlopen(req, timeout=5).read()' \
        "http://127.0.0.1:$metrics_port/control/channel/c1?size=$1"
}
health_is() { [[ "$(status_field "$PROBE_ID" health)" == "$1"* ]]; }
wait_for 30 "$PROBE_ID to be probed ok" "$RUN/flume-probe-demo.log" health_is ok
echo "POST http://127.0.0.1:$metrics_port/control/channel/c1?size=9300   (the fake agent's control)"
fill 9300
wait_for 30 "the DEGRADED email for $PROBE_ID" "$RUN/zkwatcher.log $RUN/flume-probe-demo.log" \
    has_email "DEGRADED.*flume-probe-demo@"
echo "zkwatcher status, health of $PROBE_ID: $(status_field "$PROBE_ID" health)"
fill 100
wait_for 30 "the healthy-again email for $PROBE_ID" "$RUN/zkwatcher.log $RUN/flume-probe-demo.log" \
    has_email "RECOVERED.*flume-probe-demo@"
echo "the channel drained: the probe reports ok again and zkwatcher sent the recovery"

say "the emails, from MailDev's REST API (GET $web/email)"
python3 - "$web" <<'EOF'
import json, sys, urllib.request
web = sys.argv[1]
mails = json.load(urllib.request.urlopen(web + "/email", timeout=5))
for i, m in enumerate(mails, 1):
    def addrs(key):
        return ", ".join(a.get("address", "") for a in m.get(key) or [])
    print("-" * 100)
    print("email %d of %d   (in the browser: %s/#/email/%s)" % (i, len(mails), web, m.get("id")))
    print("Date:    %s" % m.get("date"))
    print("From:    %s" % addrs("from"))
    print("To:      %s" % addrs("to"))
    print("Subject: %s" % m.get("subject"))
    print()
    for line in (m.get("text") or "").rstrip().splitlines():
        print("    " + line)
print("-" * 100)
EOF
echo "Open MailDev in a browser: $web"
echo "(on a remote machine: ssh -L $web_port:127.0.0.1:$web_port HOST, then open http://127.0.0.1:$web_port)"

say "zkwatcher status --zk $zk"
"$wc" status --zk "$zk"

say "Prometheus metrics (a few lines of each)"
prom() { # URL PATTERN
    python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")' "$1" |
        grep -E "$2" | grep -v '^#' || true
}
echo "\$ curl -s http://127.0.0.1:$prom_port/metrics    (flume-demo's zkwatchdog)"
prom "http://127.0.0.1:$prom_port/metrics" \
    'zkwatchdog_(child_restarts_total|state\{.*"running"|zk_session_state\{.*"connected")'
echo "\$ curl -s http://127.0.0.1:$wprom_port/metrics    (zkwatcher)"
prom "http://127.0.0.1:$wprom_port/metrics" \
    'zkwatcher_(incidents_(opened|notified)_total|notification_attempts_total|leader)'

say "the znodes (scripts/zk.sh cli $zk_port ...)"
for dir in agents live incidents; do
    echo "\$ ls /zkwatchdog/$dir"
    zkcli ls "/zkwatchdog/$dir"
done
echo "\$ get /zkwatchdog/agents/$FLUME_ID      (the marker: last_exit of the crash)"
zkcli get "/zkwatchdog/agents/$FLUME_ID" | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        print(json.dumps(json.loads(line), indent=2))
    except ValueError:
        print(line, end="")'
echo "\$ get /zkwatchdog/live/$FLUME_ID"
zkcli get "/zkwatchdog/live/$FLUME_ID"

say "the logs (in $RUN)"
echo "--- zkwatcher.log (long lines cut)"
awk '{ print (length($0) > 190 ? substr($0, 1, 190) " ..." : $0) }' "$RUN/zkwatcher.log"
echo "--- flume-demo.log (zkwatchdog and the agent's stderr; last 25 lines)"
tail -n 25 "$RUN/flume-demo.log"

if $keep; then
    say "left running after $(elapsed) (stop everything with: scripts/demo.sh --stop)"
    echo "ZooKeeper   $zk (pid $(cat "$RUN/zk/zk.pid"), data in $RUN/zk)"
    echo "MailDev     $web  SMTP 127.0.0.1:$smtp_port (pid $(ours maildev))"
    echo "zkwatcher   pid $(ours zkwatcher), log $RUN/zkwatcher.log"
    echo "flume-demo  zkwatchdog pid $(ours flume-demo), log $RUN/flume-demo.log"
    echo "flume-probe-demo  zkwatchdog pid $(ours flume-probe-demo), log $RUN/flume-probe-demo.log"
    echo "            fake Flume metrics at http://127.0.0.1:$metrics_port/metrics"
    echo
    echo "Try:  $wc status --zk $zk"
    echo "      kill -9 PID      (PID: the agent's pid from the status above)"
    echo "      and watch the alert arrive in $web"
    exit 0
fi

say "demo finished in $(elapsed); stopping everything"
