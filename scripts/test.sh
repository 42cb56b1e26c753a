#!/usr/bin/env bash
# test.sh — THE test command: installs what the tests need (Debian packages: ZooKeeper, a JRE,
# runit, aiosmtpd; the real Flume, Kafka and Kafka Connect from Maven Central through
# scripts/agents.sh), builds the workspace, and runs every test against real servers and real
# processes. Servers are started by the tests themselves (scripts/zk.sh, on loopback ports) and
# stopped by them; anything a crashed test run left behind is stopped here, by pid file. Then a
# short seeded run of the chaos suite (scripts/chaos.sh, docs/chaos.md: about 4 minutes) checks
# recall (100 %), false alarms (0) and duplicates (CHAOS_MAX_DUPLICATES, default 0; a copy that
# repeats the first's Message-ID is the documented at-least-once window and does not count).
# CHAOS=0 skips it (e.g. when only a test-name filter is run). ZKWATCHDOG_TEST_ZK_VERSION=X.Y.Z
# runs every ZooKeeper the tests start as that release (fetched here, from Maven Central, through
# scripts/zk.sh); unset: Debian's package. A whole run (no arguments) then runs the core scenarios
# again against ZooKeeper 3.5.10 (the watcher's one-shot watches) and 3.9.5 (about 30 s each).
#
#   scripts/test.sh [extra arguments for the test binaries, e.g. a test-name filter]
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null 2>&1 || {
    echo "test.sh: cargo is not installed (this project needs a Rust toolchain, 1.85 or newer)" >&2
    exit 1
}

bash scripts/install-deps.sh
bash scripts/agents.sh install
# The old releases tests/tests/e2e/zk_version.rs checks the refusals against, those the core
# scenarios run against below, and the release the fixtures run if one is named (cached after the
# first run: about 10 s each).
bash scripts/zk.sh install-version 3.4.14 3.5.10 3.9.5
if [[ -n "${ZKWATCHDOG_TEST_ZK_VERSION:-}" && "$ZKWATCHDOG_TEST_ZK_VERSION" != debian ]]; then
    bash scripts/zk.sh install-version "$ZKWATCHDOG_TEST_ZK_VERSION"
fi

# Every temporary directory the tests make (ZooKeeper data, pid files, configs) goes here, so
# that the cleanup below can find servers a killed test run left behind.
scratch="$PWD/target/test-scratch"
rm -rf -- "$scratch"
mkdir -p -- "$scratch"
export TMPDIR="$scratch"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local status=$?
    # Stop only servers the tests started, each by the pid file in its own directory (an
    # ensemble node's directory is stopped like a standalone server's).
    while IFS= read -r -d '' pidfile; do
        bash scripts/zk.sh stop "$(dirname -- "$pidfile")" >/dev/null 2>&1 || true
    done < <(find "$scratch" -name zk.pid -print0 2>/dev/null)
    # Kafka brokers and Flume agents the real-agent tests started in the background.
    while IFS= read -r -d '' pidfile; do
        bash scripts/agents.sh stop "$(dirname -- "$pidfile")" >/dev/null 2>&1 || true
    done < <(find "$scratch" -name agent.pid -print0 2>/dev/null)
    exit "$status"
}
trap cleanup EXIT

cargo build --workspace --bins --locked
# The end-to-end tests mostly wait on real servers; a few more threads than cores keeps the
# run short without starving them.
log="$scratch/cargo-test.log"
set +e
cargo test --workspace --locked -- --test-threads "${TEST_THREADS:-4}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The core scenarios against the oldest release the watcher supports (3.5: one-shot watches,
# no persistent ones) and the newest tested, named exactly to keep each pass short.
core=(
    watcher::child_crash_sends_one_email_naming_agent_signal_and_stderr_then_recovery
    watcher_delivery::planned_stop_sends_nothing_and_leaves_no_incident
    watcher_delivery::killed_watchdog_is_one_lost_email_after_the_session_timeout
    watcher_registry::a_crash_during_a_watcher_failover_is_reported_by_the_new_leader
    watcher_registry::fifty_agents_lost_at_once_are_one_grouped_email_listing_all
)
if (($# == 0)); then
    for release in 3.5.10 3.9.5; do
        echo "test.sh: the core scenarios against ZooKeeper $release" | tee -a "$log"
        ZKWATCHDOG_TEST_ZK_VERSION=$release cargo test -p zkwatchdog-tests --test e2e --locked -- \
            --exact --test-threads 4 "${core[@]}" 2>&1 | tee -a "$log"
        ((PIPESTATUS[0] == 0)) || status=1
    done
fi
chaos_status=0
if [[ "${CHAOS:-1}" != 0 ]]; then
    # After the tests, alone: it measures detection times and must not compete with them.
    CHAOS_DIR="$scratch/chaos" CHAOS_TIMEOUT=900 bash scripts/chaos.sh --no-build \
        --events 40 --seed 1 --check --max-duplicates "${CHAOS_MAX_DUPLICATES:-0}" \
        2>"$scratch/chaos.log"
    chaos_status=$?
    ((chaos_status == 0)) || tail -n 60 "$scratch/chaos.log" >&2
fi
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often a
# doc-test binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
if [[ "${CHAOS:-1}" != 0 ]]; then
    if ((chaos_status == 0)); then echo "chaos: passed"; else echo "chaos: FAILED (exit $chaos_status)"; fi
fi
((status != 0)) || status=$chaos_status
exit "$status"
