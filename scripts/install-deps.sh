#!/usr/bin/env bash
# install-deps.sh — install the Debian packages zkwatchdog's tests and benchmarks need.
#
#   zookeeper             a real ZooKeeper (scripts/zk.sh runs it on loopback)
#   default-jre-headless  only if there is no `java`
#   runit                 runsv, for a supervisor benchmark
#   python3-aiosmtpd      a real SMTP server for alert tests
#   procps                ps, pgrep, pkill... used by tests
#   systemd               systemd-analyze verify, for the units in config/systemd/ (works
#                         without systemd as PID 1)
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
for pkg in zookeeper runit python3-aiosmtpd procps openssl systemd; do
    installed "$pkg" || missing+=("$pkg")
done
if ! command -v java >/dev/null 2>&1 && ! installed default-jre-headless; then
    missing+=(default-jre-headless)
fi

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID != 0)); then
    die "must run as root to install: ${missing[*]}"
fi

log="$(mktemp)"
trap 'rm -f -- "$log"' EXIT

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
[[ -f /usr/share/java/zookeeper.jar ]] || die "/usr/share/java/zookeeper.jar missing after install"
command -v java >/dev/null 2>&1 || die "java missing after install"
