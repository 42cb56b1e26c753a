#!/usr/bin/env bash
# demo.sh — see zkwatchdog work on this machine with nothing but the repository:
# installs what is missing, starts a local ZooKeeper on a loopback port, wraps a command with
# zkwatchdog, shows the registry with zkCli.sh, crashes the agent (SIGKILL) and shows the exit
# record and the restart, then stops it cleanly and shows that the registry is empty.
#
#   scripts/demo.sh            run unattended to the end, then clean up
#   scripts/demo.sh --keep     leave ZooKeeper and the agent running, and say how to stop them
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
[[ "${1:-}" == "--keep" ]] && keep=true

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
bounded_wait() { # bounded_wait SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "demo: timed out waiting for $what" >&2; exit 1; }
        sleep 0.2
    done
}

say "installing what is missing and building"
bash scripts/install-deps.sh
cargo build --release --quiet -p zkwatchdog
wd=target/release/zkwatchdog

work=$(mktemp -d -t zkwatchdog-demo-XXXXXX)
port=${DEMO_ZK_PORT:-21810}
zk_dir="$work/zk"
wd_pid=""
cleanup() {
    local status=$?
    if ! $keep || ((status != 0)); then
        [[ -n "$wd_pid" ]] && kill -TERM "$wd_pid" 2>/dev/null && wait "$wd_pid" 2>/dev/null
        bash scripts/zk.sh stop "$zk_dir" >/dev/null 2>&1 || true
        rm -rf -- "$work"
    fi
    exit "$status"
}
trap cleanup EXIT INT TERM

zkcli() { bash scripts/zk.sh cli "$port" "$@" 2>/dev/null | grep -v -e '^WATCHER::' -e '^WatchedEvent' -e '^$' -e '^Connecting to' || true; }

say "starting ZooKeeper on 127.0.0.1:$port"
bash scripts/zk.sh start-standalone "$zk_dir" "$port"

say "wrapping an agent: zkwatchdog run --zk 127.0.0.1:$port --id demo-agent@$(hostname) -- sh -c '...'"
"$wd" run --zk "127.0.0.1:$port" --session-timeout 4s --id "demo-agent@$(hostname)" --name demo-agent --kind generic \
    -- sh -c 'echo "demo agent starting, pid $$" >&2; exec sleep 100000' >"$work/watchdog.log" 2>&1 &
wd_pid=$!
live="/zkwatchdog/live/demo-agent@$(hostname)"
marker="/zkwatchdog/agents/demo-agent@$(hostname)"
bounded_wait 30 "the liveness node" bash -c "bash scripts/zk.sh cli $port stat '$live' 2>&1 | grep -q ephemeralOwner"

say "the registry: zkCli.sh -server 127.0.0.1:$port ls /zkwatchdog/agents ; get <marker> ; get <liveness>"
zkcli ls /zkwatchdog/agents
zkcli get "$marker"
zkcli get "$live"

child=$(zkcli get "$live" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["child_pid"])')
say "crashing the agent: kill -9 $child"
kill -KILL "$child"
bounded_wait 30 "the restart" bash -c "bash scripts/zk.sh cli $port get '$live' 2>/dev/null | grep -q '\"generation\":2'"
say "the marker now holds last_exit (what the watcher alerts on), and a new child runs as generation 2"
zkcli get "$marker"
zkcli get "$live"

if $keep; then
    say "left running: zkwatchdog pid $wd_pid (log $work/watchdog.log), ZooKeeper in $zk_dir"
    echo "stop them with: kill -TERM $wd_pid; bash scripts/zk.sh stop $zk_dir"
    exit 0
fi

say "planned stop: kill -TERM <zkwatchdog>: the marker and liveness node go in one transaction"
kill -TERM "$wd_pid"
wait "$wd_pid" && echo "zkwatchdog exited with code 0"
wd_pid=""
zkcli ls /zkwatchdog/agents
zkcli ls /zkwatchdog/live

say "zkwatchdog's log"
cat "$work/watchdog.log"
