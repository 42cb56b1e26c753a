#!/usr/bin/env bash
# install-deps.sh — install the Debian packages zkwatchdog's tests and benchmarks need.
#
#   zookeeper             a real ZooKeeper (scripts/zk.sh runs it on loopback)
#   default-jre-headless  only if there is no `java`
#   runit                 runsv, for a supervisor benchmark
#   python3-aiosmtpd      a real SMTP server for alert tests
#   procps                ps, pgrep, pkill... used by tests
#   prometheus            promtool, which checks the /metrics output of both programs in tests
#                         (the package's own server is kept from starting during the install:
#                         see policy-rc.d below)
#   openssl               test certificates (scripts/zk-certs.sh) for TLS to ZooKeeper
#   libnetty-java         netty-codec/netty-resolver jars a TLS ZooKeeper needs (zookeeper already
#                         depends on it; listed because scripts/zk.sh names its jars)
#   curl                  readiness checks of the real Flume and Kafka Connect (scripts/agents.sh)
#   maven                 only if there is no `mvn`: scripts/agents.sh resolves Flume, Kafka and
#                         Kafka Connect from Maven Central with it
#   systemd               systemd-analyze verify, for the units in config/systemd/ (works
#                         without systemd as PID 1)
#   iproute2              `ip netns` / `ip link`: the chaos suite's network partitions
#                         (scripts/chaos.sh; a minimal Debian image may lack it)
#
# Idempotent: packages already installed (dpkg -s) are skipped, and `apt-get update` runs at most
# once, only when something must be installed. Needs root. Quiet unless something fails.
set -euo pipefail

prog="$(basename "$0")"

die() {
    echo "$prog: $*" >&2
    exit 1
}

installed() {
    dpkg -s "$1" >/dev/null 2>&1 &&
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for pkg in zookeeper runit python3-aiosmtpd procps openssl prometheus libnetty-java systemd curl iproute2; do
    installed "$pkg" || missing+=("$pkg")
done
if ! command -v java >/dev/null 2>&1 && ! installed default-jre-headless; then
    missing+=(default-jre-headless)
fi
if ! command -v mvn >/dev/null 2>&1 && ! installed maven; then
    missing+=(maven)
fi

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    die "must run as root to install: ${missing[*]}"
fi

log="$(mktemp)"
trap 'rm -f -- "$log"' EXIT

# The prometheus package's postinst starts a Prometheus server (invoke-rc.d or systemd), which a
# test machine does not want and which fails in a container without an init system, failing the
# install. Debian's standard switch for that is /usr/sbin/policy-rc.d exiting 101 ("action not
# allowed"), honoured by invoke-rc.d and deb-systemd-invoke: provide one for the duration of the
# install unless the machine has its own (containers usually do).
policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ " ${missing[*]} " == *" prometheus "* && ! -e $policy ]]; then
    printf '#!/bin/sh\n# installed by zkwatchdog install-deps.sh for one apt-get run\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=true
fi
trap 'rm -f -- "$log"; if $own_policy; then rm -f -- "$policy"; fi' EXIT

echo "$prog: installing ${missing[*]}" >&2
if ! apt-get update -qq >"$log" 2>&1; then
    cat -- "$log" >&2
    die "apt-get update failed"
fi
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >"$log" 2>&1; then
    cat -- "$log" >&2
    die "apt-get install ${missing[*]} failed"
fi

for pkg in "${missing[@]}"; do
    installed "$pkg" || die "$pkg is still not installed"
done
# Only promtool is wanted: keep the package's server from starting at the next boot too (its
# postinst enables the unit; it would listen on *:9090). Both tools are no-ops where systemd is
# not PID 1 or the unit is already disabled.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
    fi
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi
[[ -f /usr/share/java/zookeeper.jar ]] || die "/usr/share/java/zookeeper.jar missing after install"
[[ -f /usr/share/java/netty-codec.jar ]] || die "/usr/share/java/netty-codec.jar missing after install"
command -v java >/dev/null 2>&1 || die "java missing after install"
command -v promtool >/dev/null 2>&1 || die "promtool missing after installing prometheus"
command -v ip >/dev/null 2>&1 || die "ip missing after installing iproute2"
