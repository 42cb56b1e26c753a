#!/usr/bin/env bash
# bench-kafka-probe.sh — a benchmark (not a test): what the Kafka probe (kind = "kafka") costs
# zkwatchdog, in time per probe, CPU time and memory, against the real Kafka broker.
#
# Usage: scripts/bench-kafka-probe.sh [--quick]
#
#   --quick   a smoke run: 10 s per run instead of 30
#
# What it does: builds the release zkwatchdog, installs what is missing (scripts/install-deps.sh,
# scripts/agents.sh install), starts a standalone ZooKeeper (scripts/zk.sh) and a Kafka 4.4
# broker (agents.sh start-kafka) on free loopback ports, creates a topic of PARTITIONS partitions,
# writes 1000 records and lets KAFKA_GROUPS consumer groups commit 300 each; then runs zkwatchdog twice,
# each supervising `sleep`, for DURATION seconds:
#
#   A. without a [probe] table;
#   B. with [probe] kind "kafka", bootstrap the broker, interval INTERVAL_MS, timeout 5s,
#      start-grace 0s: every probe reads the cluster's Metadata and every group's offsets
#      (ListGroups, FindCoordinator, OffsetFetch, DescribeGroups, ListOffsets), judges them and
#      updates the lag gauges.
#
# Figures, of the zkwatchdog process (not its child): CPU time in the window (utime + stime,
# /proc/PID/stat), VmRSS and VmHWM at its end, probes made (zkwatchdog_probe_results_total from
# its /metrics), CPU ms per probe ((CPU B - CPU A) / probes B), and the time one probe takes: the
# driver waits INTERVAL_MS after each probe ends, so a probe takes window / probes - interval.
#
# Everything runs on 127.0.0.1, every wait is bounded, and what the script started is stopped by
# pid on exit. The scratch directory is removed after a successful run (KEEP=1 keeps it).
#
# Environment: DURATION (seconds per run, default 30; 10 with --quick), INTERVAL_MS (default
#              200), KAFKA_GROUPS (default 3), PARTITIONS (default 3), TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

prog="$(basename "$0")"
# shellcheck source=scripts/common.sh
source scripts/common.sh

quick=0
while (($# > 0)); do
    case "$1" in
    --quick) quick=1 ;;
    -h | --help) usage ;;
    *) log "unknown argument: $1" && usage ;;
    esac
    shift
done
duration="${DURATION:-$((quick ? 10 : 30))}"
interval_ms="${INTERVAL_MS:-200}"
groups="${KAFKA_GROUPS:-3}"
partitions="${PARTITIONS:-3}"
for v in duration interval_ms groups partitions; do
    is_uint "${!v}" && ((${!v} >= 1)) || die "bad ${v^^}: ${!v}"
done
readonly duration interval_ms groups partitions

log "building the release zkwatchdog"
cargo build --release --locked -p zkwatchdog --bin zkwatchdog
bash scripts/install-deps.sh
bash scripts/agents.sh install >/dev/null
target_dir="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
readonly zkwatchdog="$target_dir/release/zkwatchdog"
clk_tck="$(getconf CLK_TCK)"

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-kafka-probe.XXXXXX")"
readonly work
pid=""
zk_started=0
kafka_started=0
ok=0
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n "$pid" ]] && is_running "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        wait_gone "$pid" 20 || kill -KILL "$pid" 2>/dev/null
    fi
    ((kafka_started)) && bash scripts/agents.sh stop "$work/kafka" >/dev/null 2>&1
    ((zk_started)) && stop_zk "$work/zk"
    leave_scratch "$work" "$ok" "$status"
}
on_exit cleanup

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
used=()
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((15000 + RANDOM % 17001))
        if [[ " ${used[*]-} " != *" $p "* ]] && port_free "$p" && port_free "$((p + 1))"; then
            used+=("$p" "$((p + 1))")
            echo "$p"
            return 0
        fi
    done
    die "no free port found in 15000-32000"
}
zk_port="$(free_port)"
kafka_port="$(free_port)"
metrics_port="$(free_port)"
zk_started=1
bash scripts/zk.sh start-standalone "$work/zk" "$zk_port" >&2 || die "ZooKeeper did not start"
kafka_started=1
bash scripts/agents.sh --timeout 180 start-kafka "$work/kafka" --port "$kafka_port" \
    --controller-port "$((kafka_port + 1))" >&2 || die "Kafka did not start (log: $work/kafka/log)"
bootstrap="127.0.0.1:$kafka_port"
tool() { bash scripts/agents.sh kafka-tool "$@" >>"$work/tools.log" 2>&1 || die "kafka-tool $1 failed (see $work/tools.log)"; }
log "topic bench ($partitions partitions), 1000 records, $groups groups at offset 300 in all"
tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create --topic bench \
    --partitions "$partitions" --replication-factor 1
seq 1000 | tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$bootstrap" --topic bench
for g in $(seq 1 "$groups"); do
    tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bootstrap" \
        --topic bench --group "bench-$g" --from-beginning --max-messages 300 --timeout-ms 60000 \
        --consumer-property max.poll.records=1
done

cpu_ms() { sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$clk_tck" '{ print int(($12 + $13) * 1000 / hz) }'; }
mem_of() { awk '$1 == "VmRSS:" { r = $2 } $1 == "VmHWM:" { h = $2 } END { print r, h }' "/proc/$1/status"; }
probes() {
    python3 -c 'import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
              if l.startswith("zkwatchdog_probe_results_total"))))' "http://127.0.0.1:$metrics_port/metrics"
}

# run NAME PROBE_TOML: prints "cpu_ms rss_kb hwm_kb probes"
run() {
    local name="$1" cfg="$work/$1.toml" start_cpu end_cpu p0 p1
    cat >"$cfg" <<EOF
zk-hosts = "127.0.0.1:$zk_port"
id = "bench-kafka-$name@bench"
command = ["sleep", "3600"]
metrics-addr = "127.0.0.1:$metrics_port"
$2
EOF
    "$zkwatchdog" run --config "$cfg" >"$work/$name.log" 2>&1 &
    pid=$!
    local deadline=$(($(now_ms) + 30000))
    until probes >/dev/null 2>&1; do
        (($(now_ms) < deadline)) || die "run $name: no /metrics within 30 s (log: $work/$name.log)"
        is_running "$pid" || die "run $name: zkwatchdog exited (log: $work/$name.log)"
        sleep 0.1
    done
    sleep 2 # the first probes, the first liveness write
    start_cpu="$(cpu_ms "$pid")"
    p0="$(probes)"
    sleep "$duration"
    end_cpu="$(cpu_ms "$pid")"
    p1="$(probes)"
    read -r rss hwm < <(mem_of "$pid")
    kill -TERM "$pid"
    wait_gone "$pid" 20 || die "run $name: zkwatchdog did not stop"
    wait "$pid" 2>/dev/null || true
    pid=""
    echo "$((end_cpu - start_cpu)) $rss $hwm $((p1 - p0))"
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
log "run A: no probe, $duration s"
read -r cpu_a rss_a hwm_a _ < <(run a "")
log "run B: kind = \"kafka\" every $interval_ms ms, $duration s"
read -r cpu_b rss_b hwm_b probes_b < <(run b "[probe]
kind = \"kafka\"
bootstrap = \"$bootstrap\"
interval = \"${interval_ms}ms\"
timeout = \"5s\"
start-grace = \"0s\"")
((probes_b > 0)) || die "run B made no probes (log: $work/b.log)"
grep -q 'health changed.*Ok' "$work/b.log" || log "warning: run B never logged health ok"
python3 - "$duration" "$interval_ms" "$cpu_a" "$cpu_b" "$probes_b" "$rss_a" "$hwm_a" "$rss_b" "$hwm_b" "$groups" "$partitions" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import sys
d, iv, ca, cb, n, ra, ha, rb, hb, g, p = map(int, sys.argv[1:12])
print(f"Kafka probe against a real Kafka 4.4 broker: {g} groups on a topic of {p} partitions, "
      f"probe every {iv} ms, {d} s per run (load {sys.argv[12]} -> {sys.argv[13]})")
print(f"{'run':<22}{'CPU ms':>8}{'probes':>8}{'RSS kB':>9}{'HWM kB':>9}")
print(f"{'A: no probe':<22}{ca:>8}{'-':>8}{ra:>9}{ha:>9}")
print(f"{'B: kind = kafka':<22}{cb:>8}{n:>8}{rb:>9}{hb:>9}")
per = d * 1000 / n - iv
print(f"one probe takes {per:.1f} ms (window / probes - interval); "
      f"CPU per probe {(cb - ca) / n:.2f} ms; RSS +{rb - ra} kB with the Kafka client loaded")
EOF
ok=1
