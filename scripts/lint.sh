#!/usr/bin/env bash
# lint.sh — exactly what CI checks besides the tests: formatting, clippy (warnings are errors),
# and the docs (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
