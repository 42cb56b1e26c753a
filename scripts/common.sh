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
