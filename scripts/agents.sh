#!/usr/bin/env bash
# agents.sh — the real Apache Flume, Apache Kafka and Kafka Connect, from Maven Central, for the
# tests and the demo. Versions are pinned here and nowhere else.
#
#   agents.sh install                      resolve every jar into the cache (idempotent; offline
#                                          once cached; needs `mvn` and Java 17)
#   agents.sh versions                     print the pinned versions
#   agents.sh classpath flume|kafka|connect
#
#   Foreground (what `zkwatchdog` wraps: the script `exec`s the JVM, so the JVM is the child):
#   agents.sh run-flume   DIR --name AGENT --conf FILE --metrics-port P [--reload]
#   agents.sh run-kafka   DIR --port P --controller-port C
#   agents.sh run-kafka   DIR --port P --join FIRST_DIR --node-id N [--controller-port C]
#   agents.sh run-connect DIR --port P --bootstrap HOST:PORT [--group G] [--topic-prefix T]
#
#   Background (pid file DIR/agent.pid, log DIR/log, waits until ready):
#   agents.sh start-flume|start-kafka|start-connect DIR (same options as run-*)
#
#   Kafka: without --join, DIR is a single KRaft node (broker and controller in one process,
#   node.id 1). With --join FIRST_DIR, DIR is a broker-only node (process.roles=broker) with
#   node.id N (not 1) joining the cluster of the node in FIRST_DIR (started at least once, so
#   formatted): its controller port and cluster id are read from FIRST_DIR (server.properties,
#   data/meta.properties); --controller-port, if given, must be that port. A second broker
#   makes replication factor 2 possible (the internal topics keep replication factor 1).
#   agents.sh stop DIR                     SIGTERM by the pid file, SIGKILL after 30 s
#
#   Readiness (bounded: --timeout SECONDS, default 120):
#   agents.sh wait-flume PORT              Flume's /metrics answers with JSON
#   agents.sh wait-kafka HOST:PORT         the port accepts and the broker answers a metadata
#                                          request
#   agents.sh wait-connect PORT            Connect's `GET /` answers
#
#   agents.sh kafka-tool CLASS [ARGS...]   run a Kafka tool class (e.g.
#                                          org.apache.kafka.tools.TopicCommand) on the broker's
#                                          classpath
#
# The cache is ${ZKW_AGENTS_CACHE:-$HOME/.cache/zkwatchdog-agents}. Every port is bound on
# 127.0.0.1 except Flume's HTTP monitoring, which Flume binds on all interfaces (it has no
# setting for the address).
#
# What each program needs here (2 cores, Java 17; measured, see docs/real-agents.md):
#   Flume 1.11.0   runs on Java 17 without extra flags; heap 128 MB; /metrics answers 2 s after
#                  start; RSS about 170 MB.
#   Kafka 4.4.0    Java 17+; heap 256 MB; ready (metadata) about 4 s after start; RSS about
#                  360 MB. Storage is formatted once per DIR (KRaft, --standalone; a joining
#                  broker: -t with the first node's cluster id, no controller of its own).
#   Connect 4.3.1  heap 256 MB; `GET /` answers 6–9 s after start (two workers at once);
#                  RSS about 390 MB. connect-file 4.4.0 is not served by Maven Central here, and
#                  connect-file 4.3.1 cannot load in a 4.4.0 worker (AppInfoParser moved to an
#                  internals package in kafka-clients 4.4.0), so the worker runs 4.3.1, with
#                  connect-file 4.3.1 on its plugin.path, against the 4.4.0 broker.
set -euo pipefail

FLUME_VERSION=1.11.0
FLUME_LOG4J_VERSION=2.18.0
KAFKA_VERSION=4.4.0
CONNECT_VERSION=4.3.1
KAFKA_LOG4J_VERSION=2.25.3

FLUME_HEAP=${ZKW_FLUME_HEAP:-128m}
KAFKA_HEAP=${ZKW_KAFKA_HEAP:-256m}
CONNECT_HEAP=${ZKW_CONNECT_HEAP:-256m}

prog=$(basename "$0")
here=$(cd "$(dirname "$0")" && pwd)
cache=${ZKW_AGENTS_CACHE:-$HOME/.cache/zkwatchdog-agents}

die() {
    echo "$prog: $*" >&2
    exit 1
}

flume_dir() { echo "$cache/flume-$FLUME_VERSION"; }
kafka_dir() { echo "$cache/kafka-$KAFKA_VERSION"; }
connect_dir() { echo "$cache/connect-$CONNECT_VERSION"; }
plugins_dir() { echo "$cache/connect-plugins-$CONNECT_VERSION"; }

# mvn with its output kept out of sight unless it fails.
quiet_mvn() {
    local log
    log=$(mktemp)
    if ! mvn -B -q "$@" >"$log" 2>&1; then
        cat -- "$log" >&2
        rm -f -- "$log"
        return 1
    fi
    rm -f -- "$log"
}

# copy_deps POM DEST -Dprop=value... — the runtime dependencies of POM into DEST, atomically
# (a half-copied directory is never taken for a complete one).
copy_deps() {
    local pom=$1 dest=$2
    shift 2
    [[ -f $dest/.complete ]] && return 0
    command -v mvn >/dev/null 2>&1 || die "mvn is not installed (needed once, to fetch $(basename "$dest"))"
    rm -rf -- "$dest.tmp"
    echo "$prog: fetching $(basename "$dest") from Maven Central" >&2
    quiet_mvn -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$dest.tmp" "$@" || die "could not resolve $(basename "$dest")"
    touch "$dest.tmp/.complete"
    rm -rf -- "$dest"
    mv -- "$dest.tmp" "$dest"
}

cmd_install() {
    command -v java >/dev/null 2>&1 || die "java is not installed (Java 17 is needed)"
    mkdir -p -- "$cache"
    copy_deps "$here/agents/flume-pom.xml" "$(flume_dir)" \
        -Dflume.version="$FLUME_VERSION" -Dflume.log4j.version="$FLUME_LOG4J_VERSION"
    copy_deps "$here/agents/kafka-pom.xml" "$(kafka_dir)" \
        -Dkafka.version="$KAFKA_VERSION" -Dkafka.log4j.version="$KAFKA_LOG4J_VERSION"
    copy_deps "$here/agents/connect-pom.xml" "$(connect_dir)" \
        -Dconnect.version="$CONNECT_VERSION" -Dkafka.log4j.version="$KAFKA_LOG4J_VERSION"
    local plugins
    plugins=$(plugins_dir)
    if [[ ! -f $plugins/.complete ]]; then
        rm -rf -- "$plugins.tmp"
        echo "$prog: fetching connect-file $CONNECT_VERSION from Maven Central" >&2
        quiet_mvn dependency:copy -Dartifact="org.apache.kafka:connect-file:$CONNECT_VERSION" \
            -DoutputDirectory="$plugins.tmp/connect-file" || die "could not resolve connect-file"
        touch "$plugins.tmp/.complete"
        rm -rf -- "$plugins"
        mv -- "$plugins.tmp" "$plugins"
    fi
}

cmd_versions() {
    echo "flume $FLUME_VERSION (log4j $FLUME_LOG4J_VERSION)"
    echo "kafka $KAFKA_VERSION (log4j $KAFKA_LOG4J_VERSION)"
    echo "connect $CONNECT_VERSION (connect-file $CONNECT_VERSION)"
    java -version 2>&1 | head -n 1
}

classpath() {
    local dir
    case $1 in
    flume) dir=$(flume_dir) ;;
    kafka) dir=$(kafka_dir) ;;
    connect) dir=$(connect_dir) ;;
    *) die "unknown program '$1' (flume, kafka or connect)" ;;
    esac
    [[ -f $dir/.complete ]] || die "$1 is not installed: run '$prog install' first"
    echo "$dir/*"
}

# Options shared by the run-/start- commands, parsed into globals.
parse_opts() {
    name='' conf='' metrics_port='' port='' controller_port='' bootstrap='' group=''
    topic_prefix='' reload=false join='' node_id=''
    while (($#)); do
        case $1 in
        --name) name=$2; shift 2 ;;
        --conf) conf=$2; shift 2 ;;
        --metrics-port) metrics_port=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --controller-port) controller_port=$2; shift 2 ;;
        --bootstrap) bootstrap=$2; shift 2 ;;
        --group) group=$2; shift 2 ;;
        --topic-prefix) topic_prefix=$2; shift 2 ;;
        --reload) reload=true; shift ;;
        --join) join=$2; shift 2 ;;
        --node-id) node_id=$2; shift 2 ;;
        *) die "unknown option '$1'" ;;
        esac
    done
}

need() {
    local value=$1 flag=$2 what=$3
    [[ -n $value ]] || die "$what needs $flag"
}

# The log4j2 configuration of every program here: everything to stderr, so that the wrapping
# zkwatchdog passes it through and keeps its last lines for the exit record.
log4j_config() {
    local dir=$1
    cat >"$dir/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR">
      <PatternLayout pattern="%d{ISO8601} %-5p [%t] %c{1}: %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="org.apache.kafka.clients" level="warn"/>
    <Logger name="org.apache.kafka.common.config" level="warn"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="warn"/>
    <Logger name="org.apache.kafka.common.utils.internals.AppInfoParser" level="warn"/>
    <Logger name="org.apache.kafka.connect.runtime.isolation" level="warn"/>
    <Logger name="org.apache.zookeeper" level="warn"/>
    <Root level="info"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
EOF
    echo "$dir/log4j2.xml"
}

# flume_argv DIR: the java command line of a Flume agent (in the array `argv`).
flume_argv() {
    local dir=$1
    need "$name" --name "a Flume agent"
    need "$conf" --conf "a Flume agent"
    need "$metrics_port" --metrics-port "a Flume agent"
    [[ -f $conf ]] || die "no Flume configuration at $conf"
    local cp log4j
    cp=$(classpath flume)
    log4j=$(log4j_config "$dir")
    argv=(java "-Xmx$FLUME_HEAP" -XX:+UseSerialGC "-Dlog4j.configurationFile=$log4j"
        -Dflume.monitoring.type=http "-Dflume.monitoring.port=$metrics_port"
        -cp "$cp" org.apache.flume.node.Application -n "$name" -f "$conf")
    # Without --no-reload-conf Flume polls the file every 30 s and restarts every component
    # (counters back to 0) when it changed; the tests ask for that explicitly.
    $reload || argv+=(--no-reload-conf)
}

# The value of KEY in the properties file FILE (empty if absent).
prop() {
    sed -n "s/^$2=//p" "$1" | tail -n 1
}

# kafka_join: check --join/--node-id/--controller-port; sets `cluster_id` and `controller_port`
# from the first node's directory.
kafka_join() {
    need "$node_id" --node-id "a joining Kafka broker"
    [[ $node_id =~ ^[0-9]+$ && $node_id != 1 ]] ||
        die "--node-id must be a number other than 1 (the first node's), not '$node_id'"
    local first
    first=$(cd "$join" 2>/dev/null && pwd) || die "no Kafka node directory at $join"
    [[ -f $first/server.properties && -f $first/data/meta.properties ]] ||
        die "$first is not a started Kafka node (no server.properties or data/meta.properties)"
    cluster_id=$(prop "$first/data/meta.properties" cluster.id)
    [[ -n $cluster_id ]] || die "no cluster.id in $first/data/meta.properties"
    local voters first_port
    voters=$(prop "$first/server.properties" controller.quorum.bootstrap.servers)
    first_port=${voters##*:}
    [[ -n $first_port ]] || die "no controller.quorum.bootstrap.servers in $first/server.properties"
    if [[ -n $controller_port && $controller_port != "$first_port" ]]; then
        die "--controller-port $controller_port is not the controller port of $first ($first_port)"
    fi
    controller_port=$first_port
}

# kafka_argv DIR: format the storage once, write server.properties; the broker's command line.
kafka_argv() {
    local dir=$1 roles=broker,controller id=1 listeners cluster_id=''
    need "$port" --port "a Kafka broker"
    if [[ -n $join ]]; then
        kafka_join
        roles=broker id=$node_id
        listeners=PLAINTEXT://127.0.0.1:$port
    else
        [[ -z $node_id || $node_id == 1 ]] || die "--node-id needs --join (a single node is node 1)"
        need "$controller_port" --controller-port "a Kafka broker"
        listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
    fi
    local cp log4j props
    cp=$(classpath kafka)
    log4j=$(log4j_config "$dir")
    props=$dir/server.properties
    cat >"$props" <<EOF
process.roles=$roles
node.id=$id
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=$listeners
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    local jvm=(java "-Xmx$KAFKA_HEAP" "-Xms$KAFKA_HEAP" -XX:+UseSerialGC
        "-Dlog4j2.configurationFile=$log4j" -cp "$cp")
    if [[ ! -f $dir/data/meta.properties ]]; then
        local format=(--standalone)
        if [[ -n $join ]]; then
            # A broker-only node has no controller to bootstrap: the first node's cluster id.
            format=()
        else
            cluster_id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null) ||
                die "kafka StorageTool random-uuid failed"
        fi
        "${jvm[@]}" kafka.tools.StorageTool format "${format[@]+"${format[@]}"}" \
            -t "$cluster_id" -c "$props" >"$dir/format.log" 2>&1 || {
            cat -- "$dir/format.log" >&2
            die "formatting the Kafka storage in $dir/data failed"
        }
    elif [[ -n $join ]]; then
        local have
        have=$(prop "$dir/data/meta.properties" cluster.id)
        [[ $have == "$cluster_id" ]] ||
            die "$dir/data belongs to cluster $have, not to the cluster of $join ($cluster_id)"
    fi
    argv=("${jvm[@]}" kafka.Kafka "$props")
}

# connect_argv DIR: write worker.properties; a distributed Connect worker's command line.
connect_argv() {
    local dir=$1
    need "$port" --port "a Connect worker"
    need "$bootstrap" --bootstrap "a Connect worker"
    local cp log4j props prefix=${topic_prefix:-zkw-connect}
    cp=$(classpath connect)
    log4j=$(log4j_config "$dir")
    props=$dir/worker.properties
    cat >"$props" <<EOF
bootstrap.servers=$bootstrap
group.id=${group:-zkw-connect}
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.storage.topic=$prefix-offsets
offset.storage.replication.factor=1
offset.storage.partitions=1
config.storage.topic=$prefix-configs
config.storage.replication.factor=1
status.storage.topic=$prefix-status
status.storage.replication.factor=1
status.storage.partitions=1
listeners=http://127.0.0.1:$port
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$port
plugin.path=$(plugins_dir)
offset.flush.interval.ms=1000
scheduled.rebalance.max.delay.ms=5000
EOF
    argv=(java "-Xmx$CONNECT_HEAP" -XX:+UseSerialGC "-Dlog4j2.configurationFile=$log4j"
        -cp "$cp" org.apache.kafka.connect.cli.ConnectDistributed "$props")
}

instance_dir() {
    [[ -n ${1:-} ]] || die "missing the instance directory"
    mkdir -p -- "$1"
    (cd "$1" && pwd)
}

cmd_run() {
    local program=$1 dir
    dir=$(instance_dir "${2:-}")
    shift 2
    parse_opts "$@"
    "${program}_argv" "$dir"
    cd "$dir"
    exec "${argv[@]}"
}

cmd_start() {
    local program=$1 dir
    dir=$(instance_dir "${2:-}")
    shift 2
    parse_opts "$@"
    if [[ -f $dir/agent.pid ]] && kill -0 "$(cat "$dir/agent.pid")" 2>/dev/null; then
        die "$program in $dir is already running (pid $(cat "$dir/agent.pid"))"
    fi
    "${program}_argv" "$dir"
    (cd "$dir" && exec "${argv[@]}" </dev/null >>"$dir/log" 2>&1) &
    echo $! >"$dir/agent.pid"
    local ready
    case $program in
    flume) ready=(wait_flume "$metrics_port") ;;
    kafka) ready=(wait_kafka "127.0.0.1:$port") ;;
    connect) ready=(wait_connect "$port") ;;
    esac
    if ! "${ready[@]}" "$timeout" "$(cat "$dir/agent.pid")"; then
        tail -n 30 -- "$dir/log" >&2 || true
        die "$program in $dir did not become ready within ${timeout}s (log: $dir/log)"
    fi
}

cmd_stop() {
    local dir=${1:-}
    [[ -n $dir && -f $dir/agent.pid ]] || return 0
    local pid
    pid=$(cat -- "$dir/agent.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f -- "$dir/agent.pid"
}

# until_ready SECONDS PID CHECK... — runs CHECK every half second until it succeeds (0), the
# deadline passes or PID (if not empty) is gone (1).
until_ready() {
    local seconds=$1 pid=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        "$@" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.5
    done
    return 1
}

flume_answers() {
    curl -sf --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null | grep -q '^{'
}
wait_flume() { until_ready "$2" "${3:-}" flume_answers "$1"; }

connect_answers() {
    curl -sf --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null | grep -q '"version"'
}
wait_connect() { until_ready "$2" "${3:-}" connect_answers "$1"; }

port_open() {
    local host=${1%:*} port=${1##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
kafka_answers() {
    port_open "$1" || return 1
    java -Xmx64m -XX:TieredStopAtLevel=1 -cp "$(classpath kafka)" \
        org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --list >/dev/null 2>&1
}
wait_kafka() {
    # The port first (cheap), then one metadata request per try (a JVM each).
    until_ready "$2" "${3:-}" port_open "$1" && until_ready "$2" "${3:-}" kafka_answers "$1"
}

timeout=120
args=()
while (($#)); do
    case $1 in
    --timeout) timeout=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"

case ${1:-} in
install) cmd_install ;;
versions) cmd_versions ;;
classpath) classpath "${2:-}" ;;
run-flume | run-kafka | run-connect) cmd_run "${1#run-}" "${@:2}" ;;
start-flume | start-kafka | start-connect) cmd_start "${1#start-}" "${@:2}" ;;
stop) cmd_stop "${2:-}" ;;
wait-flume) wait_flume "${2:?port}" "$timeout" || die "Flume on port $2 not ready within ${timeout}s" ;;
wait-kafka) wait_kafka "${2:?host:port}" "$timeout" || die "Kafka at $2 not ready within ${timeout}s" ;;
wait-connect) wait_connect "${2:?port}" "$timeout" || die "Connect on port $2 not ready within ${timeout}s" ;;
kafka-tool)
    shift
    exec java -Xmx128m -XX:TieredStopAtLevel=1 -cp "$(classpath kafka)" "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
