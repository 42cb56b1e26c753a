#!/usr/bin/env bash
# demo.sh — the whole system on this machine, unattended, with the real Flume and Kafka Connect.
#
#   scripts/demo.sh            run the demo to the end, then stop everything it started
#   scripts/demo.sh --keep     leave ZooKeeper, MailDev, zkwatcher, the Kafka broker and the Flume agent running
#   scripts/demo.sh --stop     stop what a --keep run left running
#   scripts/demo.sh --release  use the release build (a cold release build takes about twice as
#                              long as a debug one on 2 cores); --debug: the debug build (default)
#
# What it does: installs what is missing (scripts/install-deps.sh: ZooKeeper, a JRE, maven,
# runit, aiosmtpd, openssl; MailDev 2.2.1 from npm into .demo/node_modules; the real Flume 1.11.0,
# Kafka 4.4.0 and Kafka Connect 4.3.1 from Maven Central: scripts/agents.sh install), builds
# zkwatchdog and zkwatcher (debug by default: a cold release build alone takes most of the 6
# minutes the whole demo may take on a fresh 2-core machine), and starts a local ZooKeeper,
# MailDev (a mail catcher with a web UI), `zkwatcher run` and three agents wrapped by
# `zkwatchdog run` (agents.sh run-* execs the JVM, so the JVM is zkwatchdog's child):
#   kafka-demo@HOST    a real Kafka broker (KRaft), probed over the Kafka protocol: partitions
#                      and the lag of every consumer group;
#   flume-demo@HOST    a real Flume agent (seq source -> memory channel -> file_roll sink),
#                      probed on its JSON /metrics;
#   connect-demo@HOST  a real Kafka Connect worker (distributed), probed on its REST API, with
#                      restart-failed-tasks.
# Then it kills the Flume JVM (kill -9), waits for the CRASHED email, the restart (generation 2,
# probe ok) and the RECOVERED email; creates a FileStreamSink connector whose file lies in a
# directory that does not exist (its task goes FAILED: a DEGRADED email), creates the directory
# and waits until zkwatchdog's remediation (POST /connectors/NAME/restart?includeTasks=true&
# onlyFailed=true) brings the task back (RECOVERED email) and a record produced to the topic
# reaches the file; lets a consumer group stop halfway through a topic (its lag passes the broker
# probe's lag-threshold: a DEGRADED email about kafka-demo naming the group, the topic and the
# lag) and resume (RECOVERED); stops the Connect worker cleanly (SIGTERM to its zkwatchdog: no
# email); and
# shows the emails (from MailDev's REST API), `zkwatcher status`, metrics, the znodes (zkCli.sh)
# and the logs. About a minute and a half once installed and built.
#
# Everything listens on 127.0.0.1 except Flume's HTTP monitoring port, which Flume binds on all
# interfaces (it has no setting for the address). State and logs are in .demo/run. Ports:
# ZooKeeper 21810, SMTP 1025, web UI 1080, Flume metrics 34545, Kafka 39092 (controller 39093),
# Connect REST 38083, Prometheus 9464 (flume-demo's zkwatchdog) and 9465 (zkwatcher), or the next
# free ones (override: DEMO_ZK_PORT, DEMO_SMTP_PORT, DEMO_WEB_PORT, DEMO_FLUME_PORT,
# DEMO_KAFKA_PORT, DEMO_CONNECT_PORT, DEMO_PROM_PORT). Every wait is bounded; on failure the
# relevant log is printed. Only processes this script started (checked by pid, command name and
# a token in their environment) are signalled. Needs root only to install Debian packages that
# are missing.
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
readonly KAFKA_ID="kafka-demo@$HOST"
# Stopped in this order: the worker before the broker it needs.
readonly AGENTS=(flume-demo connect-demo kafka-demo)
readonly CONNECTOR=demo-file-sink
readonly TOPIC=demo-events
readonly FLUME_EVENTS=5000
readonly LAG_TOPIC=demo-orders
readonly LAG_GROUP=demo-billing
readonly LAG_RECORDS=100
readonly LAG_THRESHOLD=20

keep=false
mode=run
profile=debug
while (($# > 0)); do
    case "$1" in
    --keep) keep=true ;;
    --stop) mode=stop ;;
    --debug) profile=debug ;;
    --release) profile=release ;;
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
agents_sh() { bash "$REPO/scripts/agents.sh" "$@" 3>&- 4>&-; }

# ---------------------------------------------------------------------------------------------
# Processes this script starts: $RUN/NAME.pid, $RUN/NAME.comm (the expected command name), and
# ZKWATCHDOG_DEMO=<token> in their environment. Nothing else is ever signalled. The agents' JVMs
# (the Kafka broker among them) are children of their zkwatchdog and stop with it.

token() { cat "$RUN/token" 2>/dev/null || true; }

# ours_pid PIDFILE COMM: print the pid in PIDFILE if it is a process named COMM that carries our
# token in its environment (running, not a zombie).
ours_pid() {
    local pid comm tok environ
    [[ -s "$1" ]] || return 1
    pid="$(<"$1")"
    is_uint "$pid" || return 1
    is_running "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == "$2" ]] || return 1
    tok="$(token)"
    [[ -n "$tok" ]] || return 1
    environ="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ")" || return 1
    grep -qxF "ZKWATCHDOG_DEMO=$tok" <<<"$environ" || return 1
    echo "$pid"
}

# Print the pid of NAME if it is still the process we started.
ours() { # NAME
    ours_pid "$RUN/$1.pid" "$(cat "$RUN/$1.comm" 2>/dev/null)"
}

# The Kafka broker's JVM, by agents.sh's pid file.

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
        stop_proc "$name" 45 # zkwatchdog: planned stop, no alert (its stop-timeout is 30 s)
    done
    stop_proc zkwatcher 15
    stop_proc maildev 15
    if [[ -d "$RUN/zk" ]]; then
        bash scripts/zk.sh stop "$RUN/zk" 3>&- 4>&- && echo "stopped ZooKeeper"
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

say "installing what is missing (install-deps.sh, MailDev $MAILDEV_VERSION, agents.sh install)"
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
# Flume, Kafka and Kafka Connect into ~/.cache/zkwatchdog-agents (install-deps.sh brought mvn).
agents_sh install
agents_sh versions | sed 's/^/  /'

build=(cargo build -p zkwatchdog -p zkwatcher)
[[ "$profile" == debug ]] || build+=(--release)
say "building zkwatchdog and zkwatcher (${build[*]})"
command -v cargo >/dev/null 2>&1 || die "cargo is missing: install a Rust toolchain (https://rustup.rs)"
"${build[@]}"
wd="$REPO/target/$profile/zkwatchdog"
wc="$REPO/target/$profile/zkwatcher"
[[ -x "$wd" && -x "$wc" ]] || die "missing $wd or $wc after the build"

prepared_at=$SECONDS
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

ports=()
pick() { # PREFERRED: a free port not picked yet, appended to `ports`
    local p
    p="$(free_port "$1" ${ports[@]+"${ports[@]}"})"
    ports+=("$p")
}
pick "${DEMO_ZK_PORT:-21810}" && zk_port=${ports[-1]}
pick "${DEMO_SMTP_PORT:-1025}" && smtp_port=${ports[-1]}
pick "${DEMO_WEB_PORT:-1080}" && web_port=${ports[-1]}
pick "${DEMO_FLUME_PORT:-34545}" && flume_port=${ports[-1]}
pick "${DEMO_KAFKA_PORT:-39092}" && kafka_port=${ports[-1]}
pick "$((kafka_port + 1))" && controller_port=${ports[-1]}
pick "${DEMO_CONNECT_PORT:-38083}" && connect_port=${ports[-1]}
# Prometheus metrics of flume-demo's zkwatchdog and of zkwatcher.
pick "${DEMO_PROM_PORT:-9464}" && prom_port=${ports[-1]}
pick "$((prom_port + 1))" && wprom_port=${ports[-1]}
zk="127.0.0.1:$zk_port"
web="http://127.0.0.1:$web_port"
connect="http://127.0.0.1:$connect_port"
cat >"$RUN/ports" <<EOF
zk=$zk_port
smtp=$smtp_port
web=$web_port
flume_metrics=$flume_port
kafka=$kafka_port
kafka_controller=$controller_port
connect_rest=$connect_port
watchdog_prometheus=$prom_port
watcher_prometheus=$wprom_port
EOF

zkcli() {
    bash scripts/zk.sh cli "$zk_port" "$@" 2>/dev/null 3>&- 4>&- |
        grep -v -e '^WATCHER::' -e '^WatchedEvent' -e '^$' -e '^Connecting to' || true
}
# shellcheck disable=SC2016
http_ok() { python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$1"; }

say "starting ZooKeeper on $zk (scripts/zk.sh start-standalone .demo/run/zk $zk_port)"
bash scripts/zk.sh start-standalone "$RUN/zk" "$zk_port" 3>&- 4>&-

# status_field ID FIELD: a field of one row of `zkwatcher status --json` ("" if absent).
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
health_is() { [[ "$(status_field "$1" health)" == "$2"* ]]; }
# logged ID TEXT: zkwatcher's log has a line about agent ID that contains TEXT.
logged() {
    awk -v id="agent=\"$1\"" -v text="$2" 'index($0, id) && index($0, text) { found = 1 }
        END { exit !found }' "$RUN/zkwatcher.log"
}
# emails_matching REGEX: how many MailDev emails have a subject matching REGEX.
emails_matching() {
    python3 -c '
import json, re, sys, urllib.request
mails = json.load(urllib.request.urlopen(sys.argv[1] + "/email", timeout=5))
print(sum(1 for m in mails if re.search(sys.argv[2], m.get("subject", ""))))' "$web" "$1"
}
has_email() { (($(emails_matching "$1") > 0)); }
subjects() { # REGEX: the subjects of the MailDev emails matching REGEX
    python3 -c '
import json, re, sys, urllib.request
for m in json.load(urllib.request.urlopen(sys.argv[1] + "/email", timeout=5)):
    if re.search(sys.argv[2], m.get("subject", "")):
        print("  Subject: " + m["subject"])' "$web" "$1"
}

# The broker first (a JVM that takes a few seconds): MailDev and zkwatcher start meanwhile.
say "starting the Kafka broker under zkwatchdog: zkwatchdog run --config .demo/run/kafka-demo.toml"
cat >"$RUN/kafka-demo.toml" <<EOF
# written by scripts/demo.sh
zk-hosts = "$zk"
session-timeout = "4s"
id = "$KAFKA_ID"
name = "kafka-demo"
kind = "kafka"
# agents.sh formats the storage once and execs the broker's JVM: the JVM is zkwatchdog's child.
command = ["bash", "$REPO/scripts/agents.sh", "run-kafka", "$RUN/kafka",
           "--port", "$kafka_port", "--controller-port", "$controller_port"]

[restart]
stop-timeout = "30s"

[probe]
bootstrap = "127.0.0.1:$kafka_port"
interval = "1s"
timeout = "5s"
start-grace = "120s"
# A group more than $LAG_THRESHOLD records behind on a topic is degraded; the window rules
# (STOP, STALL, REWIND, WARN) judge the last 5 probes.
lag-threshold = $LAG_THRESHOLD
lag-window = 5
lag-min-unchanged = "10s"
EOF
cat "$RUN/kafka-demo.toml"
spawn kafka-demo zkwatchdog "$RUN/kafka-demo.log" "$wd" run --config "$RUN/kafka-demo.toml"

say "starting MailDev: SMTP 127.0.0.1:$smtp_port, web UI $web"
mkdir -p "$RUN/maildev-mail"
spawn maildev node "$RUN/maildev.log" "$maildev_bin" --ip 127.0.0.1 --smtp "$smtp_port" \
    --web "$web_port" --mail-directory "$RUN/maildev-mail"
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

say "starting the Flume agent under zkwatchdog: zkwatchdog run --config .demo/run/flume-demo.toml"
mkdir -p "$RUN/flume/out"
cat >"$RUN/flume/a1.conf" <<EOF
# written by scripts/demo.sh: a bounded seq source -> memory channel -> file_roll sink. Every
# component registers counters, which Flume serves as JSON on its HTTP monitoring port.
a1.sources = r1
a1.channels = c1
a1.sinks = k1
a1.sources.r1.type = seq
a1.sources.r1.totalEvents = $FLUME_EVENTS
a1.sources.r1.channels = c1
a1.channels.c1.type = memory
a1.channels.c1.capacity = 10000
a1.channels.c1.transactionCapacity = 100
a1.sinks.k1.type = file_roll
a1.sinks.k1.channel = c1
a1.sinks.k1.sink.directory = $RUN/flume/out
EOF
# Flume binds its HTTP monitoring port on all interfaces: it has no setting for the address.
cat >"$RUN/flume-demo.toml" <<EOF
# written by scripts/demo.sh
zk-hosts = "$zk"
session-timeout = "4s"
id = "$FLUME_ID"
name = "flume-demo"
kind = "flume"
# agents.sh execs the JVM: the JVM is zkwatchdog's child.
command = ["bash", "$REPO/scripts/agents.sh", "run-flume", "$RUN/flume", "--name", "a1",
           "--conf", "$RUN/flume/a1.conf", "--metrics-port", "$flume_port"]
metrics-addr = "127.0.0.1:$prom_port"

[probe]
url = "http://127.0.0.1:$flume_port/metrics"
interval = "1s"
timeout = "2s"
start-grace = "60s"
channel-fill-threshold = 80.0
EOF
cat "$RUN/flume-demo.toml"
spawn flume-demo zkwatchdog "$RUN/flume-demo.log" "$wd" run --config "$RUN/flume-demo.toml"

say "waiting for the Kafka broker to be probed ok (log .demo/run/kafka-demo.log)"
# zkwatcher status says "ok" once the broker answered the probe's Metadata and group reads.
broker_ok() { health_is "$KAFKA_ID" ok; }
wait_for 200 "$KAFKA_ID to be probed ok" "$RUN/kafka-demo.log" broker_ok
kafka_pid="$(status_field "$KAFKA_ID" pid)"
echo "Kafka broker up on 127.0.0.1:$kafka_port (pid $kafka_pid, $(elapsed) into the demo):" \
    "$(status_field "$KAFKA_ID" health)"

say "starting the Kafka Connect worker under zkwatchdog: zkwatchdog run --config .demo/run/connect-demo.toml"
cat >"$RUN/connect-demo.toml" <<EOF
# written by scripts/demo.sh
zk-hosts = "$zk"
session-timeout = "4s"
id = "$CONNECT_ID"
name = "connect-demo"
kind = "kafka-connect"
command = ["bash", "$REPO/scripts/agents.sh", "run-connect", "$RUN/connect",
           "--port", "$connect_port", "--bootstrap", "127.0.0.1:$kafka_port",
           "--group", "zkwatchdog-demo", "--topic-prefix", "zkwatchdog-demo"]

[restart]
stop-timeout = "30s"

[probe]
url = "$connect"
interval = "1s"
timeout = "5s"
start-grace = "120s"
restart-failed-tasks = true
task-restart-initial = "10s"
task-restart-max = "60s"
EOF
cat "$RUN/connect-demo.toml"
spawn connect-demo zkwatchdog "$RUN/connect-demo.log" "$wd" run --config "$RUN/connect-demo.toml"

say "Flume: $FLUME_ID running and probed ok"
wait_for 60 "$FLUME_ID to run" "$RUN/flume-demo.log" is_running_gen "$FLUME_ID" 1
wait_for 60 "$FLUME_ID to be probed ok" "$RUN/flume-demo.log" health_is "$FLUME_ID" ok
wait_for 15 "zkwatcher to log $FLUME_ID up" "$RUN/zkwatcher.log" logged "$FLUME_ID" " up "
echo "\$ curl -s http://127.0.0.1:$flume_port/metrics    (what the probe reads; every value a string)"
python3 - "http://127.0.0.1:$flume_port/metrics" <<'EOF'
import json, sys, urllib.request
m = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))
keys = ("EventAcceptedCount", "ChannelSize", "ChannelFillPercentage", "EventPutSuccessCount",
        "EventTakeSuccessCount", "EventDrainSuccessCount", "ConnectionFailedCount")
for name in sorted(m):
    print("  %-11s %s" % (name, ", ".join('"%s": "%s"' % (k, m[name][k]) for k in keys if k in m[name])))
EOF
say "zkwatcher status --zk $zk"
"$wc" status --zk "$zk"

# The child to crash: pid from `zkwatcher status --json`, and it must be the child of the
# zkwatchdog we started (agents.sh exec'd the JVM, so it is a java process).
child="$(status_field "$FLUME_ID" pid)"
flume_wd="$(ours flume-demo)" || die "flume-demo's zkwatchdog is not running"
is_uint "$child" || die "no pid for $FLUME_ID in zkwatcher status --json"
parent="$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$child/status" 2>/dev/null || true)"
[[ "$parent" == "$flume_wd" ]] ||
    die "pid $child is not the child of our zkwatchdog $flume_wd (its parent: ${parent:-gone})"
[[ "$(cat "/proc/$child/comm" 2>/dev/null)" == java ]] || die "pid $child is not a JVM"
flume_rss="$(sed -n 's/^VmRSS:[[:space:]]*//p' "/proc/$child/status" 2>/dev/null || true)"

say "crashing $FLUME_ID: kill -9 $child (the Flume JVM, child of zkwatchdog pid $flume_wd)"
kill -KILL "$child"
crash_ms=$(now_ms)
wait_for 30 "the CRASHED email for $FLUME_ID in MailDev" "$RUN/zkwatcher.log $RUN/maildev.log" \
    has_email "CRASHED.*flume-demo@"
echo "alert email arrived $(($(now_ms) - crash_ms)) ms after the kill"
wait_for 60 "$FLUME_ID to be restarted (generation 2)" "$RUN/flume-demo.log" \
    is_running_gen "$FLUME_ID" 2
wait_for 60 "$FLUME_ID (generation 2) to be probed ok" "$RUN/flume-demo.log" \
    health_is "$FLUME_ID" ok
echo "generation 2 runs (pid $(status_field "$FLUME_ID" pid)) and its /metrics probe is ok again," \
    "$(($(now_ms) - crash_ms)) ms after the kill"
wait_for 30 "the RECOVERED email for $FLUME_ID" "$RUN/zkwatcher.log $RUN/maildev.log" \
    has_email "RECOVERED.*flume-demo@|flume-demo@.*RECOVERED"
echo "$FLUME_ID was restarted by zkwatchdog and zkwatcher reported the crash and the recovery"
echo "(one email when the restart came within group-wait = ${GROUP_WAIT}s of the crash):"
subjects "flume-demo@"

say "Kafka Connect: $CONNECT_ID running and probed ok"
wait_for 120 "$CONNECT_ID's REST API at $connect" "$RUN/connect-demo.log" http_ok "$connect/"
wait_for 60 "$CONNECT_ID to be probed ok" "$RUN/connect-demo.log" health_is "$CONNECT_ID" ok
echo "worker $connect answers: $(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$connect/")"

# put_connector: PUT /connectors/NAME/config (retried while the worker still joins its group:
# 409 or 500 during the first rebalance).
sink_dir="$RUN/connect/sink-out"
put_connector() {
    python3 - "$connect" "$CONNECTOR" "$TOPIC" "$sink_dir/events.txt" <<'EOF'
import json, sys, urllib.request
base, name, topic, path = sys.argv[1:]
body = json.dumps({"connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
                   "tasks.max": "1", "topics": topic, "file": path}).encode()
req = urllib.request.Request("%s/connectors/%s/config" % (base, name), data=body, method="PUT",
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).status)
EOF
}
task_state() {
    python3 - "$connect" "$CONNECTOR" <<'EOF'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen("%s/connectors/%s/status" % tuple(sys.argv[1:]), timeout=5))
print(",".join(t["state"] for t in s.get("tasks", [])) or "none")
EOF
}
task_is() { [[ "$(task_state)" == "$1" ]]; }

say "creating connector $CONNECTOR (FileStreamSink, topic $TOPIC) writing into a directory that does not exist"
echo "\$ curl -X PUT $connect/connectors/$CONNECTOR/config -d '{\"connector.class\":" \
    "\"org.apache.kafka.connect.file.FileStreamSinkConnector\", \"topics\": \"$TOPIC\"," \
    "\"file\": \"$sink_dir/events.txt\"}'"
wait_for 60 "PUT $connect/connectors/$CONNECTOR/config to be accepted" "$RUN/connect-demo.log" \
    put_connector
wait_for 60 "task 0 of $CONNECTOR to fail" "$RUN/connect-demo.log" task_is FAILED
failed_ms=$(now_ms)
echo "task 0 is FAILED: $(python3 - "$connect" "$CONNECTOR" <<'EOF'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen("%s/connectors/%s/status" % tuple(sys.argv[1:]), timeout=5))
print(s["tasks"][0].get("trace", "").splitlines()[0])
EOF
)"
wait_for 60 "the DEGRADED email for $CONNECT_ID" "$RUN/zkwatcher.log $RUN/connect-demo.log" \
    has_email "DEGRADED.*connect-demo@"
echo "DEGRADED email arrived $(($(now_ms) - failed_ms)) ms after the task was seen FAILED:"
subjects "DEGRADED.*connect-demo@"
echo "zkwatcher status: $CONNECT_ID $(status_field "$CONNECT_ID" state)"

say "repairing: mkdir $sink_dir; zkwatchdog restarts the failed task (task-restart-initial = 10s)"
mkdir -p "$sink_dir"
wait_for 90 "task 0 of $CONNECTOR to run again" "$RUN/connect-demo.log" task_is RUNNING
echo "task 0 is RUNNING again, $(($(now_ms) - failed_ms)) ms after it was seen FAILED"
wait_for 60 "the RECOVERED email for $CONNECT_ID" "$RUN/zkwatcher.log $RUN/maildev.log" \
    has_email "RECOVERED.*connect-demo@|connect-demo@.*RECOVERED"
subjects "RECOVERED.*connect-demo@"
echo "the restarts zkwatchdog asked for (the worker's request log, passed through .demo/run/connect-demo.log):"
grep -F "POST /connectors/$CONNECTOR/restart" "$RUN/connect-demo.log" |
    sed -e 's/^.*RestServer: /  /' || die "no restart request in the worker's log"

say "a record through the repaired pipeline: Kafka topic $TOPIC -> $sink_dir/events.txt"
record="hello from the zkwatchdog demo at $(date -u +%FT%TZ)"
echo "\$ echo '$record' | kafka-console-producer --bootstrap-server 127.0.0.1:$kafka_port --topic $TOPIC"
echo "$record" | timeout 60 bash "$REPO/scripts/agents.sh" kafka-tool \
    org.apache.kafka.tools.ConsoleProducer --bootstrap-server "127.0.0.1:$kafka_port" \
    --topic "$TOPIC" >"$RUN/producer.log" 2>&1 3>&- 4>&- || {
    show_log "$RUN/producer.log"
    die "the console producer failed"
}
wait_for 60 "the record in $sink_dir/events.txt" "$RUN/connect-demo.log" \
    grep -qF "$record" "$sink_dir/events.txt"
echo "\$ cat $sink_dir/events.txt"
sed 's/^/  /' "$sink_dir/events.txt"

say "Kafka: consumer group $LAG_GROUP stops halfway through topic $LAG_TOPIC"
kafka_tool() { # CLASS ARGS...: a Kafka tool on the demo's broker, output in $RUN/kafka-tool.log
    timeout 120 bash "$REPO/scripts/agents.sh" kafka-tool "$@" >>"$RUN/kafka-tool.log" 2>&1 3>&- 4>&- || {
        show_log "$RUN/kafka-tool.log"
        die "kafka-tool $1 failed"
    }
}
# consume N: the console consumer of group $LAG_GROUP reads N records, commits them and exits.
consume() {
    kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer \
        --bootstrap-server "127.0.0.1:$kafka_port" --topic "$LAG_TOPIC" --group "$LAG_GROUP" \
        --from-beginning --max-messages "$1" --timeout-ms 60000 \
        --consumer-property max.poll.records=1 >/dev/null
}
kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$kafka_port" \
    --create --topic "$LAG_TOPIC" --partitions 1 --replication-factor 1
echo "\$ seq $LAG_RECORDS | kafka-console-producer --topic $LAG_TOPIC    ($LAG_RECORDS records)"
seq "$LAG_RECORDS" | kafka_tool org.apache.kafka.tools.ConsoleProducer \
    --bootstrap-server "127.0.0.1:$kafka_port" --topic "$LAG_TOPIC"
read_first=$((LAG_RECORDS * 3 / 10))
echo "\$ kafka-console-consumer --group $LAG_GROUP --max-messages $read_first    (then it stops)"
consume "$read_first"
stopped_ms=$(now_ms)
echo "$LAG_GROUP committed $read_first of $LAG_RECORDS records and stopped: lag" \
    "$((LAG_RECORDS - read_first)) > lag-threshold $LAG_THRESHOLD"
wait_for 60 "the DEGRADED email for $KAFKA_ID naming $LAG_GROUP" \
    "$RUN/zkwatcher.log $RUN/kafka-demo.log" has_email "DEGRADED.*kafka-demo@.*$LAG_GROUP"
echo "DEGRADED email arrived $(($(now_ms) - stopped_ms)) ms after the consumer stopped:"
subjects "kafka-demo@"
echo "zkwatcher status: $KAFKA_ID health $(status_field "$KAFKA_ID" health)"

say "the consumer comes back and catches up"
consume "$((LAG_RECORDS - read_first))"
wait_for 60 "the RECOVERED email for $KAFKA_ID" "$RUN/zkwatcher.log $RUN/kafka-demo.log" \
    has_email "RECOVERED.*kafka-demo@|kafka-demo@.*RECOVERED"
subjects "kafka-demo@"

say "memory: resident size of each JVM"
connect_child="$(status_field "$CONNECT_ID" pid)"
rss() { sed -n 's/^VmRSS:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null || echo "?"; }
echo "Flume agent (generation 1, before the kill)  ${flume_rss:-?}"
echo "Flume agent (generation 2)                   $(rss "$(status_field "$FLUME_ID" pid)")"
echo "Kafka Connect worker                         $(rss "$connect_child")"
echo "Kafka broker                                 $(rss "$kafka_pid")"
echo "ZooKeeper                                    $(rss "$(cat "$RUN/zk/zk.pid")")"

say "planned stop of $CONNECT_ID: kill -TERM $(ours connect-demo) (its zkwatchdog)"
before="$(emails_matching "connect-demo@")"
stop_proc connect-demo 45
wait_for 15 "zkwatcher to see $CONNECT_ID leave" "$RUN/zkwatcher.log" \
    logged "$CONNECT_ID" "gone from the registry"
sleep "$((GROUP_WAIT + 1))" # longer than group-wait: an alert, if any, would have been sent
n="$(emails_matching "connect-demo@")"
((n == before)) || die "$((n - before)) email(s) about $CONNECT_ID after a planned stop"
echo "the worker stopped (SIGTERM to its process group); marker and liveness node removed together;"
echo "zkwatcher logged it as gone; no email about it"

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
    'zkwatchdog_(child_restarts_total|state\{.*"running"|zk_session_state\{.*"connected"|probe_)'
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
cut_long() { awk '{ print (length($0) > 190 ? substr($0, 1, 190) " ..." : $0) }'; }
echo "--- zkwatcher.log (long lines cut)"
cut_long <"$RUN/zkwatcher.log"
# zkwatchdog's own lines (RFC 3339 time, 'Z'); the agents' log4j lines have a comma in the time.
own='^[0-9-]+T[0-9:.]+Z +[A-Z]+ zkwatchdog'
echo "--- flume-demo.log: zkwatchdog's lines (and the Flume JVMs' in between, not shown)"
grep -E "$own" "$RUN/flume-demo.log" | cut_long || true
echo "--- connect-demo.log: zkwatchdog's lines and the worker's request log for PUT/POST"
grep -E "$own|RestServer.*\"(PUT|POST) " "$RUN/connect-demo.log" | cut_long || true

if $keep; then
    say "left running after $(elapsed) (stop everything with: scripts/demo.sh --stop)"
    echo "ZooKeeper     $zk (pid $(cat "$RUN/zk/zk.pid"), data in $RUN/zk)"
    echo "MailDev       $web  SMTP 127.0.0.1:$smtp_port (pid $(ours maildev))"
    echo "zkwatcher     pid $(ours zkwatcher), log $RUN/zkwatcher.log"
    echo "kafka-demo    zkwatchdog pid $(ours kafka-demo), broker 127.0.0.1:$kafka_port, log $RUN/kafka-demo.log"
    echo "flume-demo    zkwatchdog pid $(ours flume-demo), log $RUN/flume-demo.log"
    echo "              Flume metrics at http://127.0.0.1:$flume_port/metrics"
    echo
    echo "Try:  $wc status --zk $zk"
    echo "      kill -9 PID      (PID: the Flume agent's pid from the status above)"
    echo "      and watch the alert arrive in $web"
    exit 0
fi

say "demo finished in $(elapsed) (installs and build $((prepared_at - started_at))s, the demo $((SECONDS - prepared_at))s); stopping everything"
