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
