#!/usr/bin/env bash
# zk-certs.sh — certificates for TLS between zkwatchdog/zkwatcher and ZooKeeper, made with openssl.
#
# Usage: zk-certs.sh DIR
#
# Writes into DIR (created if missing), all PEM, keys unencrypted (PKCS#8), mode 600 for keys:
#   ca.pem ca.key                   the CA that signs everything below
#   server.pem server.key           server certificate, SAN IP:127.0.0.1 and DNS:localhost
#                                   (clients check the name or address they connected to)
#   server-keystore.pem             server.key + server.pem: ZooKeeper's ssl.keyStore (type PEM)
#   client.pem client.key           client certificate (CN zkwatchdog-client), for ssl.clientAuth=need
#   client-keystore.pem             client.key + client.pem: zkCli.sh's zookeeper.ssl.keyStore (PEM)
#   other-ca.pem other-ca.key       a second, unrelated CA: a wrong ca-file for negative tests
#   other-client.pem other-client.key  a client certificate signed by other-ca (not trusted)
#
# Idempotent: files that exist are kept (delete DIR to start over). Quiet unless something fails.
# Certificates are valid for 10 years; keys are EC P-256 (fast to make, spoken by rustls and Java).
set -euo pipefail

prog="$(basename "$0")"
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

(($# == 1)) || usage
command -v openssl >/dev/null 2>&1 || die "openssl is not installed (scripts/install-deps.sh)"
mkdir -p -- "$1"
dir="$(cd -- "$1" && pwd -P)"
readonly DAYS=3650
errlog="$(mktemp)"
trap 'rm -f -- "$errlog"' EXIT

# Run openssl quietly; on failure show what it said.
ossl() {
    if ! openssl "$@" >"$errlog" 2>&1; then
        cat -- "$errlog" >&2
        die "openssl $1 failed"
    fi
}

new_key() { # NAME
    [[ -s "$dir/$1.key" ]] && return 0
    (
        umask 077
        ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$1.key.tmp"
    )
    mv -f -- "$dir/$1.key.tmp" "$dir/$1.key"
}

new_ca() { # NAME CN
    new_key "$1"
    [[ -s "$dir/$1.pem" ]] && return 0
    ossl req -x509 -new -key "$dir/$1.key" -days "$DAYS" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/$1.pem.tmp"
    mv -f -- "$dir/$1.pem.tmp" "$dir/$1.pem"
}

new_leaf() { # NAME CN CA EXTENSIONS...
    local name="$1" cn="$2" ca="$3" ext
    shift 3
    new_key "$name"
    [[ -s "$dir/$name.pem" ]] && return 0
    ext="$(mktemp)"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "$@" >"$ext"
    ossl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$dir/$name.csr"
    ossl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
        -CAcreateserial -days "$DAYS" -extfile "$ext" -out "$dir/$name.pem.tmp"
    rm -f -- "$ext" "$dir/$name.csr"
    mv -f -- "$dir/$name.pem.tmp" "$dir/$name.pem"
}

new_ca ca "zkwatchdog test CA"
new_ca other-ca "zkwatchdog other CA"
new_leaf server "localhost" ca \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost"
new_leaf client "zkwatchdog-client" ca \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"
new_leaf other-client "zkwatchdog-other-client" other-ca \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"

# Java's PEM key stores: the private key, then the certificate, in one file.
keystore() { # NAME
    [[ -s "$dir/$1-keystore.pem" ]] && return 0
    (
        umask 077
        cat -- "$dir/$1.key" "$dir/$1.pem" >"$dir/$1-keystore.pem.tmp"
    )
    mv -f -- "$dir/$1-keystore.pem.tmp" "$dir/$1-keystore.pem"
}
keystore server
keystore client
