#!/usr/bin/env bash
# Builds the container image of sealsync-controller with podman, without a registry or a
# Docker daemon: a statically linked binary (glibc, crt-static) in a `FROM scratch` image.
#
#   bash controller/image/build.sh [TAG]      (TAG defaults to the workspace version)
#
# The last line of stdout is the image reference, localhost/sealsync-controller:<TAG>.
# CARGO_TARGET_DIR: where cargo builds the static binary (default: CI's cache,
# ~/.cache/sealsync/cargo-target; it lands under x86_64-unknown-linux-gnu/, apart from
# the test builds). SEALSYNC_IMAGE_PROFILE: the cargo profile (default: release).
# The same commit gives the same image: file times and the creation time are the commit's
# time, Cargo.lock is enforced, the registry's paths in the binary are remapped. Workspace
# sources reach rustc by paths relative to the checkout, so checkouts at different paths
# build the same binary and, sharing a target dir, reuse the dependencies' artifacts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

workspace_field() { sed -n "/^\[workspace.package\]/,/^\[/s/^$1 = \"\(.*\)\"/\1/p" Cargo.toml; }
version="$(workspace_field version)"
tag="${1:-$version}"
reference="localhost/sealsync-controller:$tag"
profile="${SEALSYNC_IMAGE_PROFILE:-release}"
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sealsync/cargo-target}"
revision="$(git rev-parse HEAD)"
git diff --quiet HEAD -- || revision="$revision-dirty"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"

command -v podman >/dev/null ||
  { echo "podman not found: apt-get install -y podman runc (or bash tests/harness/build.sh as root)" >&2; exit 1; }

# RUSTFLAGS reach only the target's crates with --target, not build scripts.
export RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
cargo build --locked --profile "$profile" --target "$target" -p sealsync-controller >&2
[[ "$profile" == dev ]] && profile_dir=debug || profile_dir="$profile"
binary="$CARGO_TARGET_DIR/$target/$profile_dir/sealsync-controller"
if readelf -l "$binary" | grep -q INTERP; then
  echo "$binary is dynamically linked; a scratch image needs a static one" >&2
  exit 1
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/sealsync-controller"
ln -s sealsync-controller "$rootfs/usr/local/bin/controller"
# The trust store for TLS to anything but the API server (whose CA comes with the
# credentials): Debian's ca-certificates bundle of the build host.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# The user for tools that look the uid up; /etc/hosts before DNS, as in a Debian image
# (the kubelet and podman mount /etc/hosts and /etc/resolv.conf).
install -d -m 0755 "$rootfs/etc"
printf 'root:x:0:0:root:/:/sbin/nologin\nsealsync:x:1001:1001:sealsync:/:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nsealsync:x:1001:\n' > "$rootfs/etc/group"
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
find "$rootfs" -exec touch -h -d "@$epoch" {} +

# --no-cache: podman's layer cache does not key on --build-arg values, so a cached LABEL
# step would keep the revision of an earlier build. There is one layer; nothing is lost.
podman --cgroup-manager cgroupfs build --no-cache --timestamp "$epoch" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg SOURCE="$(workspace_field repository)" \
  --build-arg LICENSES="$(workspace_field license)" \
  -f "$root/controller/image/Containerfile" -t "$reference" "$context" >&2
echo "$reference"
