#!/usr/bin/env bash
# chaos.sh — the chaos suite: a seeded, reproducible schedule of faults played against the real
# programs, scored by what the on-call received (docs/chaos.md).
#
#   scripts/chaos.sh [--release] [--no-build] [RUNNER OPTIONS]
#
# RUNNER OPTIONS (tests/src/bin/chaos.rs):
#   --events N            faults to play (default 40; 1000 is the benchmark, about an hour)
#   --seed N              the schedule's seed (default 1): same seed, same schedule
#   --agents N            zkwatchdog agents (default 8) ...
#   --netns-agents N      ... of which this many run in their own network namespace (default 2;
#                         0 runs without root and without partitions)
#   --max-run SECONDS     faults planned later than this are skipped (default 4 h)
#   --plan                print the schedule and exit
#   --json FILE           the machine-readable result (default: result.json in the run directory)
#   --check               exit 1 if recall < --min-recall (default 100), or false alarms >
#                         --max-false-alarms (default 0), or duplicates > --max-duplicates
#                         (default 0)
#
# What runs (everything on 127.0.0.1, plus one veth pair per namespaced agent on 10.231.0.0/16):
# a 3-node ZooKeeper ensemble (scripts/zk.sh), the capturing SMTP server (scripts/smtp-capture.py),
# two `zkwatcher run` replicas mailing it, and `zkwatchdog run` agents wrapping testchild. Builds
# the binaries first (debug, or --release) unless --no-build. Installs missing Debian packages
# (scripts/install-deps.sh). Needs root for `ip netns` unless --netns-agents 0.
#
# Everything the run started is stopped on exit, also on failure or Ctrl-C: processes by the
# pids the runner recorded, ZooKeeper nodes by their pid files, namespaces and links by name;
# namespaces a killed earlier run left behind (zkchaos-PID-N whose PID is gone) are deleted
# first. Logs, the captured messages and result.json stay in the run directory,
# ${CHAOS_DIR:-TARGET/chaos}/run-SEED-PID. The whole run is bounded by CHAOS_TIMEOUT seconds
# (default 5 h).
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

prog="$(basename "$0")"
# shellcheck source=scripts/common.sh
source scripts/common.sh

profile=debug
build=true
args=()
seed=1
netns_agents=2
has_out=false
while (($#)); do
    case "$1" in
    --release) profile=release ;;
    --no-build) build=false ;;
    -h | --help) usage ;;
    *)
        case "$1" in
        --seed) seed="${2:-}" ;;
        --netns-agents) netns_agents="${2:-}" ;;
        --out) has_out=true ;;
        esac
        args+=("$1")
        ;;
    esac
    shift
done

if [[ "$netns_agents" != 0 ]] && ((EUID != 0)); then
    die "partitions need root (ip netns); run as root or with --netns-agents 0"
fi

bash scripts/install-deps.sh
command -v ip >/dev/null 2>&1 || die "ip (iproute2) is missing"

target="${CARGO_TARGET_DIR:-$PWD/target}"
if $build; then
    flags=(--locked -p zkwatchdog -p zkwatcher -p zkwatchdog-tests --bins)
    [[ $profile == release ]] && flags+=(--release)
    cargo build "${flags[@]}"
fi
runner="$target/$profile/chaos"
[[ -x "$runner" ]] || die "$runner is not built (run without --no-build)"

# Namespaces and links of earlier runs whose runner is gone.
while read -r ns _; do
    if [[ "$ns" =~ ^zkchaos-([0-9]+)-([0-9]+)$ ]] && ! is_running "${BASH_REMATCH[1]}"; then
        timeout 10 ip link del "zkc${BASH_REMATCH[1]}h${BASH_REMATCH[2]}" >/dev/null 2>&1 || true
        timeout 10 ip netns del "$ns" >/dev/null 2>&1 || true
    fi
done < <(timeout 10 ip netns list 2>/dev/null || true)

run_dir="${CHAOS_DIR:-$target/chaos}/run-$seed-$$"
mkdir -p -- "$run_dir/tmp"
out="$run_dir"
$has_out || args+=(--out "$out")
export TMPDIR="$run_dir/tmp"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$? kind name
    # The runner cleans up after itself; this is for a runner that was killed or crashed. The
    # state file lists what it started and created (the runner names only its own).
    for state in "$run_dir"/state "$run_dir"/*/state; do
        [[ -f "$state" ]] || continue
        while read -r kind name; do
            case "$kind" in
            pid)
                # Only a process of this run: its command line names the run directory (its
                # config file is there), so a recycled pid is never touched.
                if is_running "$name" &&
                    tr '\0' ' ' <"/proc/$name/cmdline" 2>/dev/null | grep -qF -- "$run_dir"; then
                    kill -CONT "$name" 2>/dev/null || true
                    kill -KILL "$name" 2>/dev/null || true
                fi
                ;;
            link) timeout 10 ip link del "$name" >/dev/null 2>&1 || true ;;
            netns) timeout 10 ip netns del "$name" >/dev/null 2>&1 || true ;;
            esac
        done <"$state"
    done
    while IFS= read -r -d '' pidfile; do
        bash scripts/zk.sh stop "$(dirname -- "$pidfile")" >/dev/null 2>&1 || true
    done < <(find "$run_dir/tmp" -name zk.pid -print0 2>/dev/null)
    rm -rf -- "$run_dir/tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "run directory $run_dir"
# --foreground: Ctrl-C reaches the runner (the trap above cleans up after it).
timeout --foreground --signal=TERM --kill-after=30 "${CHAOS_TIMEOUT:-18000}" "$runner" "${args[@]}"
