#!/usr/bin/env bash
# zk.sh — a real ZooKeeper (Debian's `zookeeper` package, or a release from Maven Central: see
# ZK_VERSION) on loopback, for development and tests.
#
# Usage: zk.sh COMMAND [ARGS...]
#
#   install                              install zookeeper (+ a JRE) with apt-get if missing, and
#                                        fetch the release ZK_VERSION names, if it names one
#   install-version VERSION...           fetch these releases (X.Y.Z) from Maven Central into the
#                                        cache (idempotent; needs `mvn` once per version)
#   version                              print the ZooKeeper that ZK_VERSION selects and its
#                                        classpath (fails if not installed)
#   start-standalone DIR PORT [TICK_MS]  one server, client port PORT, data in DIR/data
#   start-ensemble DIR BASE_PORT [TICK_MS]
#                                        3 nodes in DIR/n1..n3; client ports BASE_PORT..BASE_PORT+2,
#                                        quorum ports BASE_PORT+100+N, election ports BASE_PORT+200+N
#   start-standalone-tls DIR PORT CERT_DIR [TICK_MS]
#   start-ensemble-tls DIR BASE_PORT CERT_DIR [TICK_MS]
#                                        the same, each server also serving TLS on a secure client
#                                        port (its client port + 300), with the certificates that
#                                        `zk-certs.sh CERT_DIR` makes (made here if missing) and
#                                        client certificates required (ZK_TLS_CLIENT_AUTH)
#   start-node DIR N [nowait]            (re)start ensemble node N (1..3) and wait until it is leader
#                                        or follower (`nowait`: don't, e.g. while quorum is lost)
#   stop-node DIR N [kill]               stop ensemble node N (SIGTERM, SIGKILL after 10 s; `kill`: at once)
#   leader DIR                           print N of the ensemble node that is leader (exit 1 if none)
#   status DIR                           print each server's mode: standalone|leader|follower,
#                                        not-serving (alive, e.g. electing) or down
#   stop DIR                             stop every server started in DIR (standalone or ensemble)
#   cli PORT [ARGS...]                   zkCli.sh -server 127.0.0.1:PORT ARGS...
#   cli-tls PORT CERT_DIR [ARGS...]      the same over TLS to a secure client port, trusting
#                                        CERT_DIR/ca.pem and presenting CERT_DIR/client-keystore.pem
#
# Everything listens on 127.0.0.1 only. Servers run detached (setsid + nohup) with their output in
# DIR/zk.log (DIR/nN/zk.log for ensemble nodes) and their pid in DIR/zk.pid (DIR/nN/zk.pid).
# Data survives stop/start with the same DIR. Starting is idempotent. Only processes named by a pid
# file AND still being a java process whose command line holds that server's zoo.cfg are signalled.
# Every wait is bounded; on failure the tail of the log is printed to stderr.
#
# Versions: ZK_VERSION unset, empty or "debian" runs Debian's package (3.8.0); X.Y.Z runs that
# release, fetched by `install`/`install-version` into ZK_CACHE/zookeeper-X.Y.Z (ZK_CACHE defaults
# to ~/.cache/zkwatchdog). The start commands write the version into each server's zoo.cfg, and a
# server is always (re)started with the version written there: start-node keeps an ensemble on
# one version whatever ZK_VERSION says then, while start-standalone/start-ensemble rewrite zoo.cfg
# (so a standalone server stopped and started again with another ZK_VERSION is upgraded in
# place). Tried: 3.4.14 (no TLS: it has no secureClientPort), 3.5.10, 3.8.0 (Debian), 3.9.5.
#
# Environment: ZK_LOG_LEVEL (slf4j-simple level for the server log, default "warn"; the
#              QuorumPeer logger is always at info, to show elections),
#              ZK_WAIT_S (overrides the start waits: 60 s standalone, 90 s ensemble),
#              ZK_HEAP (the servers' -Xmx, default 256m; bench-scale.sh raises it for 100,000 agents),
#              ZK_JAVA_DIR (default /usr/share/java), JAVA (default "java"),
#              ZK_TLS_CLIENT_AUTH (ssl.clientAuth of TLS servers: need (default), want or none).
set -euo pipefail

readonly JAVA_DIR="${ZK_JAVA_DIR:-/usr/share/java}"
readonly JAVA_BIN="${JAVA:-java}"
readonly ZKCLI=/usr/share/zookeeper/bin/zkCli.sh
readonly ZK_CACHE_DIR="${ZK_CACHE:-$HOME/.cache/zkwatchdog}"
# The slf4j that replaces each release's own logging backend (see scripts/zk/zookeeper-pom.xml).
readonly SLF4J_VERSION=2.0.17
readonly MAIN_CLASS=org.apache.zookeeper.server.quorum.QuorumPeerMain
# Minimal server classpath, found by trial with a copy of zookeeper.jar stripped of its manifest
# (whose Class-Path would otherwise pull in netty, jetty, jackson...): the NIO connection factory
# (the default) needs no netty; metrics-core and snappy-java are loaded unconditionally.
readonly CLASSPATH_JARS=(zookeeper zookeeper-jute slf4j-api slf4j-simple metrics-core snappy-java)
# TLS needs the Netty connection factory. zookeeper.jar's manifest names netty-buffer, -common,
# -handler and -transport, but not netty-codec (SslHandler's superclass: without it every TLS
# handshake fails with ClassNotFoundException io.netty.handler.codec.ByteToMessageDecoder) nor
# netty-resolver. All come with Debian's libnetty-java, a dependency of zookeeper.
readonly TLS_CLASSPATH_JARS=(netty-codec netty-resolver)
readonly TLS_PORT_OFFSET=300
readonly STANDALONE_WAIT_S="${ZK_WAIT_S:-60}"
readonly ENSEMBLE_WAIT_S="${ZK_WAIT_S:-90}"
readonly STOP_WAIT_S=10
readonly ENSEMBLE_SIZE=3
[[ "$STANDALONE_WAIT_S" =~ ^[0-9]+$ ]] || { echo "zk.sh: bad ZK_WAIT_S: $STANDALONE_WAIT_S" >&2; exit 2; }

prog="$(basename "$0")"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

check_port() {
    if ! is_uint "$1" || (($1 < 1 || $1 > 65535)); then
        die "bad port: $1"
    fi
}

check_tick() {
    if ! is_uint "$1" || (($1 < 1)); then
        die "bad tick: $1"
    fi
}

# Make DIR exist and print its absolute physical path (pid checks match on it).
abs_dir() {
    mkdir -p -- "$1"
    (cd -- "$1" && pwd -P)
}

# Existing DIR, absolute, or fail.
existing_dir() {
    [[ -d "$1" ]] || die "no such directory: $1"
    (cd -- "$1" && pwd -P)
}

# The ZooKeeper ZK_VERSION selects: "debian" or a release X.Y.Z.
selected_version() {
    local v="${ZK_VERSION:-debian}"
    [[ "$v" == debian || "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
        die "bad ZK_VERSION: '$v' (a release X.Y.Z, or debian)"
    echo "$v"
}

# Where release VERSION's jars are cached (complete once it holds .complete).
version_dir() { # VERSION
    echo "$ZK_CACHE_DIR/zookeeper-$1"
}

# Is release A (X.Y.Z) at least B? Debian's package counts as its own version.
version_at_least() { # A B
    local a="$1"
    [[ "$a" != debian ]] || a="$(debian_version)"
    [[ "$(printf '%s\n' "$2" "$a" | sort -V | head -n 1)" == "$2" ]]
}

# The upstream version of Debian's package (3.8.0 on Debian 12).
debian_version() {
    local v
    v="$(dpkg-query -W -f='${Version}' zookeeper 2>/dev/null || true)"
    v="${v%%-*}"
    echo "${v:-3.8.0}"
}

# The version a server's zoo.cfg was written for (Debian's for one written before versions).
server_version() { # SDIR
    local v
    v="$(sed -n 's/^# zk.sh zookeeper //p' "$1/zoo.cfg" 2>/dev/null | tail -n 1)"
    echo "${v:-debian}"
}

# Fetch release VERSION's runtime jars from Maven Central into its cache directory, atomically (a
# half-copied directory is never taken for a complete one). A no-op once cached.
fetch_version() { # VERSION
    local v="$1" dest log
    dest="$(version_dir "$v")"
    [[ -f "$dest/.complete" ]] && return 0
    command -v mvn >/dev/null 2>&1 || die "mvn is not installed (needed once, to fetch ZooKeeper $v)"
    mkdir -p -- "$ZK_CACHE_DIR"
    rm -rf -- "$dest.tmp"
    log "fetching ZooKeeper $v from Maven Central into $dest"
    log="$(mktemp)"
    if ! mvn -B -q -f "$(dirname "${BASH_SOURCE[0]}")/zk/zookeeper-pom.xml" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest.tmp" \
        -Dzk.version="$v" -Dslf4j.version="$SLF4J_VERSION" >"$log" 2>&1; then
        cat -- "$log" >&2
        rm -f -- "$log"
        rm -rf -- "$dest.tmp"
        die "could not resolve org.apache.zookeeper:zookeeper:$v"
    fi
    rm -f -- "$log"
    [[ -f "$dest.tmp/zookeeper-$v.jar" ]] || die "no zookeeper-$v.jar among the resolved jars"
    touch "$dest.tmp/.complete"
    rm -rf -- "$dest"
    mv -- "$dest.tmp" "$dest"
}

# The classpath of release VERSION (all of its cached jars), or fail naming the install command.
version_classpath() { # VERSION
    local dir
    dir="$(version_dir "$1")"
    [[ -f "$dir/.complete" ]] ||
        die "ZooKeeper $1 is not installed in $dir (run: $prog install-version $1)"
    echo "$dir/*"
}

classpath() { # SDIR
    local cp="" jar version
    version="$(server_version "$1")"
    if [[ "$version" != debian ]]; then
        version_classpath "$version"
        return
    fi
    local -a jars=("${CLASSPATH_JARS[@]}")
    if [[ -n "$(cfg_value "$1/zoo.cfg" secureClientPort)" ]]; then
        jars+=("${TLS_CLASSPATH_JARS[@]}")
    fi
    for jar in "${jars[@]}"; do
        [[ -f "$JAVA_DIR/$jar.jar" ]] || die "missing $JAVA_DIR/$jar.jar (run: $prog install)"
        cp="${cp:+$cp:}$JAVA_DIR/$jar.jar"
    done
    echo "$cp"
}

# Send a four-letter word to 127.0.0.1:PORT and print the answer ("" if none). Bounded (2 s).
four_letter() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "%s" "$2" >&3 && cat <&3' \
        _ "$1" "$2" 2>/dev/null || true
}

# Print the mode (standalone|leader|follower|...) a server on PORT reports, "" if none.
server_mode() {
    four_letter "$1" srvr | sed -n 's/^Mode: //p'
}

# Does the server on PORT serve the data directory DATA? (guards against a stranger on the port)
serves_data_dir() {
    four_letter "$1" conf | grep -qxF "dataDir=$2/version-2"
}

cfg_value() { # FILE KEY
    sed -n "s/^$2=//p" "$1" | tail -n 1
}

# Is PID a running java process whose command line contains CFG (the server's zoo.cfg)?
is_our_java() { # PID CFG
    local pid="$1" cfg="$2" comm cmdline
    is_uint "$pid" || return 1
    is_running "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == java ]] || return 1
    cmdline="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    grep -qxF -- "$cfg" <<<"$cmdline"
}

# Print the pid of the live server whose state lives in SDIR (pid file + zoo.cfg), or fail.
live_pid() { # SDIR
    local pid
    [[ -f "$1/zk.pid" ]] || return 1
    pid="$(head -n 1 "$1/zk.pid" 2>/dev/null)" || return 1
    is_our_java "$pid" "$1/zoo.cfg" || return 1
    echo "$pid"
}

log_tail() { # LOGFILE
    if [[ -f "$1" ]]; then
        echo "---- last 40 lines of $1 ----" >&2
        tail -n 40 -- "$1" >&2
        echo "----" >&2
    else
        echo "(no log file $1)" >&2
    fi
}

# Set by the -tls commands: the certificate directory (absolute) whose server-keystore.pem and
# ca.pem every server written by write_cfg serves TLS with, on its client port + TLS_PORT_OFFSET.
TLS_CERTS=""

# The zoo.cfg lines for TLS on the secure client port PORT (TLS_CERTS must be set).
tls_cfg_lines() { # PORT
    echo "secureClientPort=$(($1 + TLS_PORT_OFFSET))"
    echo "secureClientPortAddress=127.0.0.1"
    echo "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory"
    echo "ssl.keyStore.location=$TLS_CERTS/server-keystore.pem"
    echo "ssl.keyStore.type=PEM"
    echo "ssl.trustStore.location=$TLS_CERTS/ca.pem"
    echo "ssl.trustStore.type=PEM"
    echo "ssl.clientAuth=${ZK_TLS_CLIENT_AUTH:-need}"
}

# Make the certificates in CERT_DIR (idempotent) and set TLS_CERTS to its absolute path.
use_tls_certs() { # CERT_DIR
    version_at_least "$SELECTED_VERSION" 3.5.0 ||
        die "ZooKeeper $SELECTED_VERSION has no TLS for clients (secureClientPort): 3.5 or later"
    case "${ZK_TLS_CLIENT_AUTH:-need}" in
    need | want | none) ;;
    *) die "bad ZK_TLS_CLIENT_AUTH: $ZK_TLS_CLIENT_AUTH (need, want or none)" ;;
    esac
    bash "$(dirname "${BASH_SOURCE[0]}")/zk-certs.sh" "$1"
    TLS_CERTS="$(existing_dir "$1")"
}

# Write a zoo.cfg for one server. SDIR PORT TICK [server lines...]
write_cfg() {
    local sdir="$1" port="$2" tick="$3"
    shift 3
    mkdir -p -- "$sdir/data"
    {
        echo "# written by zk.sh $(date -Is)"
        echo "# zk.sh zookeeper $SELECTED_VERSION"
        echo "tickTime=$tick"
        echo "dataDir=$sdir/data"
        echo "clientPort=$port"
        echo "clientPortAddress=127.0.0.1"
        echo "admin.enableServer=false"
        echo "4lw.commands.whitelist=*"
        echo "minSessionTimeout=$((2 * tick))"
        echo "maxSessionTimeout=60000"
        echo "maxClientCnxns=0"
        if [[ -n "$TLS_CERTS" ]]; then
            tls_cfg_lines "$port"
        fi
        if (($# > 0)); then
            echo "initLimit=10"
            echo "syncLimit=5"
            printf '%s\n' "$@"
        fi
    } >"$sdir/zoo.cfg.tmp"
    mv -f -- "$sdir/zoo.cfg.tmp" "$sdir/zoo.cfg"
}

# Launch the server described by SDIR/zoo.cfg, detached; pid in SDIR/zk.pid, output in SDIR/zk.log.
launch() { # SDIR
    local sdir="$1" cp
    cp="$(classpath "$sdir")"
    rm -f -- "$sdir/zk.pid"
    echo "==== zk.sh: starting $sdir/zoo.cfg at $(date -Is) ====" >>"$sdir/zk.log"
    # bash -c writes its own pid (it then execs java, so it is java's pid) before exec: exact even
    # if setsid had to fork.
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid nohup bash -c 'echo "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$sdir/zk.pid" \
        "$JAVA_BIN" "-Xmx${ZK_HEAP:-256m}" -Xms16m -XX:+UseSerialGC -Xshare:auto -XX:TieredStopAtLevel=1 \
        -Djava.net.preferIPv4Stack=true -Dzookeeper.jmx.log4j.disable=true \
        -Dorg.slf4j.simpleLogger.defaultLogLevel="${ZK_LOG_LEVEL:-warn}" \
        -Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.quorum.QuorumPeer=info \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS" \
        -cp "$cp" "$MAIN_CLASS" "$sdir/zoo.cfg" \
        </dev/null >>"$sdir/zk.log" 2>&1 &
    disown 2>/dev/null || true
    local deadline=$(($(now_ms) + 5000))
    until [[ -s "$sdir/zk.pid" ]]; do
        (($(now_ms) < deadline)) || die "no pid file $sdir/zk.pid after 5 s"
        sleep 0.02
    done
    # The pid file is written just before the exec: wait until the process is java (or gone).
    local pid
    pid="$(head -n 1 "$sdir/zk.pid")"
    while is_running "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != java ]]; do
        (($(now_ms) < deadline)) || die "pid $pid did not exec java within 5 s"
        sleep 0.01
    done
}

# Wait until the server in SDIR answers with a mode matching REGEX and serves its own data dir.
wait_mode() { # SDIR REGEX TIMEOUT_S
    local sdir="$1" re="$2" port mode deadline pid answer
    port="$(cfg_value "$sdir/zoo.cfg" clientPort)"
    deadline=$(($(now_ms) + $3 * 1000))
    while :; do
        if ! pid="$(live_pid "$sdir")"; then
            log "server $sdir exited while starting (port $port)"
            log_tail "$sdir/zk.log"
            exit 1
        fi
        answer="$(four_letter "$port" srvr)"
        mode="$(sed -n 's/^Mode: //p' <<<"$answer")"
        if [[ "$mode" =~ ^($re)$ ]] && serves_data_dir "$port" "$sdir/data"; then
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            log "timed out after $3 s waiting for $sdir (pid $pid, 127.0.0.1:$port) to report" \
                "mode '$re' (last answer: '$(head -n 1 <<<"${answer:-no answer}")')"
            log_tail "$sdir/zk.log"
            exit 1
        fi
        sleep 0.1
    done
}

# Fail if something already listens on PORT (unless it is this very server).
ensure_port_free() { # PORT WHAT
    # shellcheck disable=SC2016 # expanded by the inner bash
    if (timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1") 2>/dev/null; then
        die "port 127.0.0.1:$1 ($2) is already in use"
    fi
}

# Start the server in SDIR unless it is running already. Does not wait.
start_server() { # SDIR
    local sdir="$1" port
    if live_pid "$sdir" >/dev/null; then
        return 0
    fi
    port="$(cfg_value "$sdir/zoo.cfg" clientPort)"
    ensure_port_free "$port" "client port of $sdir"
    port="$(cfg_value "$sdir/zoo.cfg" secureClientPort)"
    [[ -z "$port" ]] || ensure_port_free "$port" "secure client port of $sdir"
    launch "$sdir"
}

# Signal and reap the servers in the given SDIRs. MODE: term|kill.
stop_servers() { # MODE SDIR...
    local mode="$1" sdir pid
    shift
    local -a pids=() dirs=()
    for sdir in "$@"; do
        [[ -f "$sdir/zk.pid" ]] || continue
        if pid="$(live_pid "$sdir")"; then
            if [[ "$mode" == kill ]]; then
                kill -KILL "$pid" 2>/dev/null || true
            else
                kill -TERM "$pid" 2>/dev/null || true
            fi
            pids+=("$pid")
            dirs+=("$sdir")
        else
            log "removing stale pid file $sdir/zk.pid (not a running java with $sdir/zoo.cfg)"
            rm -f -- "$sdir/zk.pid"
        fi
    done
    local deadline=$(($(now_ms) + STOP_WAIT_S * 1000)) killed=0 i alive
    while :; do
        alive=0
        for i in "${!pids[@]}"; do
            if is_running "${pids[$i]}"; then
                alive=1
            fi
        done
        ((alive)) || break
        if ((!killed && $(now_ms) >= deadline)); then
            for i in "${!pids[@]}"; do
                if is_our_java "${pids[$i]}" "${dirs[$i]}/zoo.cfg"; then
                    log "pid ${pids[$i]} (${dirs[$i]}) ignored SIGTERM for ${STOP_WAIT_S} s: SIGKILL"
                    kill -KILL "${pids[$i]}" 2>/dev/null || true
                fi
            done
            killed=1
            deadline=$(($(now_ms) + 5000))
        elif ((killed && $(now_ms) >= deadline)); then
            die "servers ${pids[*]} still running after SIGKILL"
        fi
        sleep 0.05
    done
    for sdir in "${dirs[@]}"; do
        rm -f -- "$sdir/zk.pid"
    done
}

node_dir() { # DIR N
    if ! is_uint "$2" || (($2 < 1 || $2 > ENSEMBLE_SIZE)); then
        die "bad node number: $2 (1..$ENSEMBLE_SIZE)"
    fi
    [[ -f "$1/n$2/zoo.cfg" ]] || die "$1/n$2/zoo.cfg missing: run start-ensemble first"
    echo "$1/n$2"
}

# Wait until every node is leader/follower and exactly one is leader.
wait_ensemble() { # DIR TIMEOUT_S
    local dir="$1" deadline n modes leaders ok mode port
    deadline=$(($(now_ms) + $2 * 1000))
    while :; do
        leaders=0 ok=1 modes=""
        for ((n = 1; n <= ENSEMBLE_SIZE; n++)); do
            if ! live_pid "$dir/n$n" >/dev/null; then
                log "node $n ($dir/n$n) exited while the ensemble was starting"
                log_tail "$dir/n$n/zk.log"
                exit 1
            fi
            port="$(cfg_value "$dir/n$n/zoo.cfg" clientPort)"
            mode="$(server_mode "$port")"
            modes+=" n$n=${mode:-none}"
            case "$mode" in
            leader) leaders=$((leaders + 1)) ;;
            follower) ;;
            *) ok=0 ;;
            esac
            if [[ -n "$mode" ]] && ! serves_data_dir "$port" "$dir/n$n/data"; then
                die "port $port answers but is not node $n of $dir"
            fi
        done
        if ((ok && leaders == 1)); then
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            log "timed out after $2 s waiting for the ensemble in $dir:$modes"
            for ((n = 1; n <= ENSEMBLE_SIZE; n++)); do
                log_tail "$dir/n$n/zk.log"
            done
            exit 1
        fi
        sleep 0.1
    done
}

cmd_install() {
    local updated=0
    apt_install() {
        if ((!updated)); then
            apt-get update -qq
            updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
    }
    if ! command -v "$JAVA_BIN" >/dev/null 2>&1; then
        apt_install default-jre-headless
    fi
    if [[ ! -f /usr/share/java/zookeeper.jar ]]; then
        apt_install zookeeper
    fi
    if [[ "$SELECTED_VERSION" != debian ]]; then
        fetch_version "$SELECTED_VERSION"
    fi
}

cmd_install_version() { # VERSION...
    (($# >= 1)) || usage
    local v
    for v in "$@"; do
        [[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "bad version: '$v' (X.Y.Z)"
    done
    for v in "$@"; do
        fetch_version "$v"
    done
}

cmd_version() {
    (($# == 0)) || usage
    if [[ "$SELECTED_VERSION" == debian ]]; then
        echo "debian $(debian_version) $JAVA_DIR"
    else
        echo "$SELECTED_VERSION $(version_classpath "$SELECTED_VERSION")"
    fi
}

cmd_start_standalone() { # DIR PORT [TICK_MS]
    (($# >= 2 && $# <= 3)) || usage
    local dir port="$2" tick="${3:-200}"
    check_port "$port"
    [[ -z "$TLS_CERTS" ]] || check_port "$((port + TLS_PORT_OFFSET))"
    check_tick "$tick"
    dir="$(abs_dir "$1")"
    if live_pid "$dir" >/dev/null; then
        wait_mode "$dir" standalone "$STANDALONE_WAIT_S"
        echo "already running: 127.0.0.1:$(cfg_value "$dir/zoo.cfg" clientPort) ($dir)"
        return 0
    fi
    [[ ! -d "$dir/n1" ]] || die "$dir holds an ensemble"
    ensure_port_free "$port" "client port"
    [[ -z "$TLS_CERTS" ]] || ensure_port_free "$((port + TLS_PORT_OFFSET))" "secure client port"
    write_cfg "$dir" "$port" "$tick"
    local t0
    t0="$(now_ms)"
    launch "$dir"
    wait_mode "$dir" standalone "$STANDALONE_WAIT_S"
    echo "started: 127.0.0.1:$port$(secure_note "$dir") pid $(cat "$dir/zk.pid")" \
        "in $(($(now_ms) - t0)) ms ($dir)"
}

# ", TLS on 127.0.0.1:SECURE_PORT" if the server in SDIR serves TLS, else nothing.
secure_note() { # SDIR
    local port
    port="$(cfg_value "$1/zoo.cfg" secureClientPort)"
    [[ -z "$port" ]] || echo ", TLS on 127.0.0.1:$port"
}

# The TLS port only opens after the plaintext one that wait_mode checks: wait for it too.
wait_secure_port() { # SDIR TIMEOUT_S
    local port deadline
    port="$(cfg_value "$1/zoo.cfg" secureClientPort)"
    [[ -n "$port" ]] || return 0
    deadline=$(($(now_ms) + $2 * 1000))
    # shellcheck disable=SC2016 # expanded by the inner bash
    until (timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port") 2>/dev/null; do
        if (($(now_ms) >= deadline)); then
            log "timed out after $2 s waiting for the secure client port 127.0.0.1:$port of $1"
            log_tail "$1/zk.log"
            exit 1
        fi
        sleep 0.05
    done
}

cmd_start_standalone_tls() { # DIR PORT CERT_DIR [TICK_MS]
    (($# >= 3 && $# <= 4)) || usage
    use_tls_certs "$3"
    cmd_start_standalone "$1" "$2" ${4:+"$4"}
    wait_secure_port "$(existing_dir "$1")" "$STANDALONE_WAIT_S"
}

cmd_start_ensemble_tls() { # DIR BASE_PORT CERT_DIR [TICK_MS]
    (($# >= 3 && $# <= 4)) || usage
    use_tls_certs "$3"
    cmd_start_ensemble "$1" "$2" ${4:+"$4"}
    local dir n
    dir="$(existing_dir "$1")"
    for ((n = 1; n <= ENSEMBLE_SIZE; n++)); do
        wait_secure_port "$dir/n$n" "$ENSEMBLE_WAIT_S"
    done
}

cmd_start_ensemble() { # DIR BASE_PORT [TICK_MS]
    (($# >= 2 && $# <= 3)) || usage
    local dir base="$2" tick="${3:-200}" n
    check_port "$base"
    check_port "$((base + 200 + ENSEMBLE_SIZE))"
    [[ -z "$TLS_CERTS" ]] || check_port "$((base + ENSEMBLE_SIZE - 1 + TLS_PORT_OFFSET))"
    check_tick "$tick"
    dir="$(abs_dir "$1")"
    [[ ! -f "$dir/zoo.cfg" ]] || die "$dir holds a standalone server"
    local -a servers=()
    for ((n = 1; n <= ENSEMBLE_SIZE; n++)); do
        servers+=("server.$n=127.0.0.1:$((base + 100 + n)):$((base + 200 + n))")
    done
    local t0
    t0="$(now_ms)"
    for ((n = 1; n <= ENSEMBLE_SIZE; n++)); do
        local sdir="$dir/n$n"
        if live_pid "$sdir" >/dev/null; then
            continue
        fi
        ensure_port_free "$((base + n - 1))" "client port of node $n"
        ensure_port_free "$((base + 100 + n))" "quorum port of node $n"
        ensure_port_free "$((base + 200 + n))" "election port of node $n"
        [[ -z "$TLS_CERTS" ]] ||
            ensure_port_free "$((base + n - 1 + TLS_PORT_OFFSET))" "secure client port of node $n"
        write_cfg "$sdir" "$((base + n - 1))" "$tick" "${servers[@]}"
        [[ -f "$sdir/data/myid" ]] || echo "$n" >"$sdir/data/myid"
        launch "$sdir"
    done
    wait_ensemble "$dir" "$ENSEMBLE_WAIT_S"
    echo "ensemble up: 127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))" \
        "leader n$(find_leader "$dir") in $(($(now_ms) - t0)) ms ($dir)"
}

cmd_start_node() { # DIR N [nowait]
    (($# == 2 || $# == 3)) || usage
    local dir sdir
    dir="$(existing_dir "$1")"
    sdir="$(node_dir "$dir" "$2")"
    start_server "$sdir"
    if (($# == 3)); then
        [[ "$3" == nowait ]] || usage
        echo "node $2: started (pid $(cat "$sdir/zk.pid"))"
        return 0
    fi
    wait_mode "$sdir" 'leader|follower' "$ENSEMBLE_WAIT_S"
    wait_secure_port "$sdir" "$ENSEMBLE_WAIT_S"
    echo "node $2: $(server_mode "$(cfg_value "$sdir/zoo.cfg" clientPort)")"
}

cmd_stop_node() { # DIR N [kill]
    (($# == 2 || $# == 3)) || usage
    local dir sdir mode=term
    if (($# == 3)); then
        [[ "$3" == kill ]] || usage
        mode="kill"
    fi
    dir="$(existing_dir "$1")"
    sdir="$(node_dir "$dir" "$2")"
    stop_servers "$mode" "$sdir"
}

find_leader() { # DIR
    local n port
    for ((n = 1; n <= ENSEMBLE_SIZE; n++)); do
        [[ -f "$1/n$n/zoo.cfg" ]] || continue
        port="$(cfg_value "$1/n$n/zoo.cfg" clientPort)"
        if [[ "$(server_mode "$port")" == leader ]]; then
            echo "$n"
            return 0
        fi
    done
    return 1
}

cmd_leader() { # DIR
    (($# == 1)) || usage
    local dir
    dir="$(existing_dir "$1")"
    find_leader "$dir" || die "no leader in $dir"
}

# The server directories in DIR: DIR itself (standalone) and/or DIR/nN (ensemble).
server_dirs() { # DIR
    local n
    if [[ -f "$1/zoo.cfg" || -f "$1/zk.pid" ]]; then
        echo "$1"
    fi
    for ((n = 1; n <= ENSEMBLE_SIZE; n++)); do
        if [[ -f "$1/n$n/zoo.cfg" || -f "$1/n$n/zk.pid" ]]; then
            echo "$1/n$n"
        fi
    done
}

cmd_status() { # DIR
    (($# == 1)) || usage
    local dir sdir name port mode pid any=0
    dir="$(existing_dir "$1")"
    while IFS= read -r sdir; do
        any=1
        if [[ "$sdir" == "$dir" ]]; then name=standalone; else name="${sdir##*/}"; fi
        port="$(cfg_value "$sdir/zoo.cfg" clientPort 2>/dev/null || true)"
        mode="down"
        if pid="$(live_pid "$sdir")"; then
            mode="$(server_mode "$port")"
            # Alive but no mode: starting, or in a leader election (srvr says "not serving").
            mode="${mode:-not-serving} pid=$pid"
        fi
        echo "$name 127.0.0.1:${port:-?}$(secure_note "$sdir") $mode"
    done < <(server_dirs "$dir")
    ((any)) || echo "no server configured in $dir"
}

cmd_stop() { # DIR
    (($# == 1)) || usage
    [[ -d "$1" ]] || return 0
    local dir
    dir="$(existing_dir "$1")"
    local -a sdirs=()
    mapfile -t sdirs < <(server_dirs "$dir")
    ((${#sdirs[@]} == 0)) || stop_servers term "${sdirs[@]}"
}

# Run the command-line client of the release ZK_VERSION selects (its own classpath; Debian's is
# zkCli.sh, which the callers run themselves), with CLI_JVM_FLAGS, and ARGS... for the client.
exec_release_cli() { # PORT ARGS...
    local port="$1" cp
    shift
    cp="$(version_classpath "$SELECTED_VERSION")"
    exec "$JAVA_BIN" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$cp" "${CLI_JVM_FLAGS[@]}" \
        org.apache.zookeeper.ZooKeeperMain -server "127.0.0.1:$port" "$@"
}

cmd_cli() { # PORT [ARGS...]
    (($# >= 1)) || usage
    check_port "$1"
    local port="$1"
    shift
    # 3.4's client cannot connect on Java 14+ ("Unable to canonicalize address 127.0.0.1/
    # <unresolved>"): Debian's 3.8 client serves it.
    if [[ "$SELECTED_VERSION" != debian ]] && version_at_least "$SELECTED_VERSION" 3.5.0; then
        CLI_JVM_FLAGS=()
        exec_release_cli "$port" "$@"
    fi
    exec "$ZKCLI" -server "127.0.0.1:$port" "$@"
}

cmd_cli_tls() { # PORT CERT_DIR [ARGS...]
    (($# >= 2)) || usage
    check_port "$1"
    local port="$1" certs
    certs="$(existing_dir "$2")"
    shift 2
    if [[ "$SELECTED_VERSION" != debian ]]; then
        CLI_JVM_FLAGS=(
            -Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty
            -Dzookeeper.client.secure=true
            "-Dzookeeper.ssl.keyStore.location=$certs/client-keystore.pem"
            -Dzookeeper.ssl.keyStore.type=PEM
            "-Dzookeeper.ssl.trustStore.location=$certs/ca.pem"
            -Dzookeeper.ssl.trustStore.type=PEM
        )
        exec_release_cli "$port" "$@"
    fi
    local jar cp="/etc/zookeeper/conf:$JAVA_DIR/zookeeper.jar"
    for jar in "${TLS_CLASSPATH_JARS[@]}"; do
        cp+=":$JAVA_DIR/$jar.jar"
    done
    # zkEnv.sh sets CLASSPATH itself; a second -cp (in CLIENT_JVMFLAGS, after its own) wins.
    export CLIENT_JVMFLAGS="-cp $cp \
-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty \
-Dzookeeper.client.secure=true \
-Dzookeeper.ssl.keyStore.location=$certs/client-keystore.pem -Dzookeeper.ssl.keyStore.type=PEM \
-Dzookeeper.ssl.trustStore.location=$certs/ca.pem -Dzookeeper.ssl.trustStore.type=PEM"
    exec "$ZKCLI" -server "127.0.0.1:$port" "$@"
}

# The ZooKeeper ZK_VERSION selects, checked once: every command that writes a zoo.cfg uses it.
SELECTED_VERSION="$(selected_version)"
readonly SELECTED_VERSION

main() {
    (($# >= 1)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
    install) cmd_install "$@" ;;
    install-version) cmd_install_version "$@" ;;
    version) cmd_version "$@" ;;
    start-standalone) cmd_start_standalone "$@" ;;
    start-ensemble) cmd_start_ensemble "$@" ;;
    start-standalone-tls) cmd_start_standalone_tls "$@" ;;
    start-ensemble-tls) cmd_start_ensemble_tls "$@" ;;
    start-node) cmd_start_node "$@" ;;
    stop-node) cmd_stop_node "$@" ;;
    leader) cmd_leader "$@" ;;
    status) cmd_status "$@" ;;
    stop) cmd_stop "$@" ;;
    cli) cmd_cli "$@" ;;
    cli-tls) cmd_cli_tls "$@" ;;
    -h | --help | help) usage ;;
    *) usage ;;
    esac
}

main "$@"
