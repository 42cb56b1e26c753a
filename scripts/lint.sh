#!/usr/bin/env bash
# lint.sh — exactly what CI checks besides the tests: formatting, clippy (warnings are errors),
# the docs (warnings are errors), and every relative link of README.md and docs/*.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
python3 scripts/check-links.py
