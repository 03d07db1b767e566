#!/usr/bin/env bash
# The whole test suite: builds or reuses the real components the integration tests run
# against (tests/harness/build.sh), checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/sealsync"
# Compiled Rust dependencies (the AWS SDK, kube, AWS-LC) are reused across clones and runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/cargo-target}"

started=$SECONDS
echo "== components (tests/harness/build.sh)"
bash tests/harness/build.sh
set -a
eval "$(bash tests/harness/paths.sh)"
set +a
echo "== components ready after $((SECONDS - started)) s"

echo "== container image (controller/image/build.sh; a static release build, long when cold)"
SEALSYNC_IMAGE="$(bash controller/image/build.sh test | tail -n 1)"
export SEALSYNC_IMAGE
echo "== $SEALSYNC_IMAGE ready after $((SECONDS - started)) s"

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked
echo "== whole suite took $((SECONDS - started)) s"
