# shellcheck shell=bash
# common.sh — helpers shared by the scripts in this folder; source it, don't run it.
# Expects $prog to be set (the calling script's name, for messages).

usage() { # print the calling script's header comment as its usage, exit 2
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

log() {
    # shellcheck disable=SC2154 # $prog is set by the sourcing script
    echo "$prog: $*" >&2
}

die() {
    log "$*"
    exit 1
}

now_ms() {
    local t
    t="$(date +%s%N)"
    echo $((t / 1000000))
}

is_uint() {
    [[ "${1:-}" =~ ^[0-9]+$ ]]
}

# True while pid $1 exists and is not a zombie (PID 1 here may be slow to reap).
is_running() {
    local state
    [[ -r "/proc/$1/stat" ]] || return 1
    state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# Waits up to $2 seconds for pid $1 to be gone (or a zombie); returns 1 on timeout.
wait_gone() {
    local pid="$1" deadline=$(($(now_ms) + $2 * 1000))
    while is_running "$pid"; do
        (($(now_ms) < deadline)) || return 1
        sleep 0.02
    done
}

# --- what the benchmark scripts share (a script defines its own where it needs another) ---

port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

free_port() { # EXCEPT...
    local p
    for _ in $(seq 1 100); do
        p=$((15000 + RANDOM % 17001))
        if [[ " $* " != *" $p "* ]] && port_free "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found in 15000-32000"
}

# SIGTERM, then SIGKILL after $3 s, to pid $2 (named $1); reaps it.
stop_pid() {
    local name="$1" pid="$2"
    if is_running "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        if ! wait_gone "$pid" "$3"; then
            log "$name (pid $pid) ignored SIGTERM for $3 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            wait_gone "$pid" 5
        fi
    fi
    wait "$pid" 2>/dev/null
}

tail_of() { # LOGFILE
    if [[ -s "$1" ]]; then
        log "last lines of $1:"
        tail -n 30 -- "$1" >&2
    fi
}

count_lines() {
    if [[ -f "$1" ]]; then
        wc -l <"$1"
    else
        echo 0
    fi
}

# CLOCK_REALTIME in ns from bash's $EPOCHREALTIME (µs resolution, no fork).
epoch_ns() {
    local t="${EPOCHREALTIME/[.,]/}"
    echo $((10#$t * 1000))
}

# "VmRSS VmHWM" of pid $1, in kB.
mem_of() {
    awk '$1 == "VmRSS:" { rss = $2 } $1 == "VmHWM:" { hwm = $2 } END { print rss, hwm }' \
        "/proc/$1/status"
}

# Stops the ZooKeeper server(s) started in DIR (scripts/zk.sh).
stop_zk() { # DIR
    bash scripts/zk.sh stop "$1" >/dev/null 2>&1 || log "could not stop ZooKeeper in $1"
}

# Ends a run: removes the scratch directory WORK after a successful run (OK = 1) unless KEEP=1,
# else keeps it and says so; exits with STATUS.
leave_scratch() { # WORK OK STATUS
    if (($2)) && [[ "${KEEP:-0}" != 1 ]]; then
        rm -rf -- "$1"
    else
        log "scratch directory kept: $1"
    fi
    exit "$3"
}

# Runs FUNCTION on exit, also after Ctrl-C (130) or SIGTERM (143).
on_exit() { # FUNCTION
    # shellcheck disable=SC2064 # the function name is meant to be expanded now
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
