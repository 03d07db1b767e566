# Shared by the CLI's benchmark scripts: `source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.
#
# Sets `repo_root` (and changes to it) and `bin`: $SEALSYNC_BIN, else the release build of
# sealsync under $CARGO_TARGET_DIR (default: target), built first.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo_root"
bin=${SEALSYNC_BIN:-${CARGO_TARGET_DIR:-$repo_root/target}/release/sealsync}
if [[ -z ${SEALSYNC_BIN:-} ]]; then
    echo "building sealsync (release)..." >&2
    cargo build --release -p sealsync-cli >&2
fi

# A fresh work directory named after $1 in $work, removed on exit unless KEEP_WORKDIR=1.
make_workdir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/sealsync-$1-bench.XXXXXX")
    if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then
        echo "work directory: $work" >&2
    else
        trap 'rm -rf "$work"' EXIT
    fi
}
