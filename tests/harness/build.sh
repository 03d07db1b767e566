#!/usr/bin/env bash
# Build and cache the pinned real components used by sealsync integration tests.
#
#   build.sh [--print-env] [component...]
#
# Components: kubernetes etcd vault sealed-secrets helm moto external-secrets kustomize
# (default: all).
# Each lands in ${XDG_CACHE_HOME:-~/.cache}/sealsync/<component>-<version>/bin/
# (override the root with SEALSYNC_CACHE_DIR). A component dir counts as built
# only when its .complete stamp matches the current inputs (version, wrapper
# go.mod/go.sum/tools.go, module.sum + overlay or requirements.txt, Go/Python
# version, recipe);
# anything else is deleted and rebuilt. Builds go to a temp dir that is renamed
# into place, under a per-component flock, so concurrent callers are safe.
#
# Progress ("<component> <version>: cached" / "built in Ns") goes to stderr.
# With --print-env, stdout gets SEALSYNC_*=/abs/path lines for the requested
# components (see paths.sh), e.g.  eval "$(tests/harness/build.sh --print-env)"
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

print_env=0
comps=()
for a in "$@"; do
  case "$a" in
    --print-env) print_env=1 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $a" ;;
    *) component_version "$a" >/dev/null; comps+=("$a") ;;
  esac
done
[[ ${#comps[@]} -gt 0 ]] || comps=("${ALL_COMPONENTS[@]}")

log() { echo "$*" >&2; }

# ---------------------------------------------------------------- inputs ----

tool_fingerprint() { # what the build depends on besides the pinned files
  if [[ "$1" == moto ]]; then
    "${PYTHON:-python3}" -c 'import sys,platform; print(sys.version.split()[0], platform.machine())'
  else
    go env GOVERSION GOOS GOARCH
  fi
}

input_files() {
  if [[ "$1" == moto ]]; then
    echo "$HARNESS_DIR/python/moto/requirements.txt"
  elif builds_in_module "$1"; then
    echo "$HARNESS_DIR/go/$1/module.sum"
    overlay_files "$1"
  else
    printf '%s\n' "$HARNESS_DIR/go/$1/go.mod" "$HARNESS_DIR/go/$1/go.sum" "$HARNESS_DIR/go/$1/tools.go"
    overlay_files "$1"
  fi
}

overlay_files() { # the Go files of go/<component>/overlay/, if any
  [[ -d "$HARNESS_DIR/go/$1/overlay" ]] || return 0
  find "$HARNESS_DIR/go/$1/overlay" -type f -name '*.go' | LC_ALL=C sort
}

expected_stamp() {
  local comp="$1" h
  local tags; tags="$(component_build_tags "$comp")"
  # (No line for no tags: the stamps of components built without any stay as they were.)
  h="$( { echo "recipe=$HARNESS_RECIPE"; [[ -z "$tags" ]] || echo "tags=$tags"
          tool_fingerprint "$comp"; input_files "$comp" | while IFS= read -r f; do cat "$f"; done; } | sha256sum | cut -d' ' -f1)"
  printf 'component=%s\nversion=%s\ninputs_sha256=%s\n' "$comp" "$(component_version "$comp")" "$h"
}

# Fail early if versions.env and the committed wrapper files disagree.
check_pins() {
  local comp="$1" ver f
  ver="$(component_version "$comp")"
  while read -r f; do [[ -f "$f" ]] || die "$comp: missing $f (run gen-go-mods.sh $comp)"; done < <(input_files "$comp")
  if [[ "$comp" == moto ]]; then
    grep -qx "moto==$ver" "$HARNESS_DIR/python/moto/requirements.txt" ||
      die "moto: python/moto/requirements.txt does not pin moto==$ver (run gen-go-mods.sh moto)"
    return
  fi
  local mod; mod="$(component_module "$comp")"
  if builds_in_module "$comp"; then
    grep -qE "^${mod//./\\.} ${ver//./\\.} h1:" "$HARNESS_DIR/go/$comp/module.sum" ||
      die "$comp: go/$comp/module.sum does not pin $mod $ver (run gen-go-mods.sh $comp)"
  else
    grep -qE "^(require)?[[:space:]]*${mod//./\\.} ${ver//./\\.}( |$)" "$HARNESS_DIR/go/$comp/go.mod" ||
      die "$comp: go/$comp/go.mod does not require $mod $ver (run gen-go-mods.sh $comp)"
  fi
}

is_built() { # dir expected-stamp
  local comp="$1" dir="$2" stamp="$3" bin _
  [[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$stamp" ]] || return 1
  while read -r bin _; do [[ -x "$dir/bin/$bin" ]] || return 1; done < <(component_binaries "$comp")
  while read -r f; do [[ -e "$dir/$f" ]] || return 1; done < <(component_files "$comp")
}

# ---------------------------------------------------------------- builders --

go_ldflags() { # component binary  (run inside go/<component>)
  local comp="$1" bin="$2" v date
  v="$(component_version "$comp")"
  # Release commit time of the pinned module, for reproducible build dates.
  date="$(go list -mod=readonly -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$(component_module "$comp")")"
  case "$comp" in
    kubernetes)
      local mm="${v#v}" pkg; mm="${mm%.*}"
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf -- "-X %s.%s=%s " "$pkg" gitVersion "$v" "$pkg" gitMajor "${mm%%.*}" \
          "$pkg" gitMinor "${mm#*.}" "$pkg" gitTreeState clean "$pkg" buildDate "$date"
      done ;;
    vault) printf -- "-X github.com/hashicorp/vault/version.BuildDate=%s" "$date" ;;
    sealed-secrets) printf -- "-X main.VERSION=%s" "$v" ;;
    helm)
      local hm k; hm="$(helm_module)"
      k="$(go list -mod=readonly -m -f '{{.Version}}' k8s.io/client-go)"; k="${k#v0.}"; k="${k%%.*}"
      printf -- "-X %s/internal/version.version=%s -X %s/internal/version.metadata= " "$hm" "$v" "$hm"
      printf -- "-X %s/internal/version.gitTreeState=clean " "$hm"
      # Default .Capabilities.KubeVersion for `helm template` (as helm's Makefile does).
      printf -- "-X %s/pkg/lint/rules.k8sVersionMajor=1 -X %s/pkg/lint/rules.k8sVersionMinor=%s " "$hm" "$hm" "$k"
      printf -- "-X %s/pkg/chartutil.k8sVersionMajor=1 -X %s/pkg/chartutil.k8sVersionMinor=%s" "$hm" "$hm" "$k" ;;
  esac
}

# The `go build -overlay` file laying go/<component>/overlay/ over the module at srcdir
# (each overlay file replaces the file of the same path there).
write_overlay() { # component srcdir
  local comp="$1" src="$2" f rel sep=""
  printf '{"Replace": {'
  while read -r f; do
    rel="${f#"$HARNESS_DIR/go/$comp/overlay/"}"
    [[ -f "$src/$rel" ]] ||
      die "$comp: overlay $rel replaces no file of $(component_module "$comp") $(component_version "$comp")"
    printf '%s\n  "%s": "%s"' "$sep" "$src/$rel" "$f"; sep=","
  done < <(overlay_files "$comp")
  printf '\n}}\n'
}

build_go() { # component outdir
  local comp="$1" out="$2" bin pkg tag src f
  local flags=(-mod=readonly -trimpath -tags "$(component_build_tags "$comp")")
  cd "$HARNESS_DIR/go/$comp"
  # Its source is read before the build (which would download it), for the overlay.
  go mod download "$(component_module "$comp")"
  src="$(go list -mod=readonly -m -f '{{.Dir}}' "$(component_module "$comp")")"
  [[ -d "$src" ]] || die "$comp: $(component_module "$comp") not in the module cache"
  if [[ -d overlay ]]; then
    # go lays no overlay over files in the module cache: the module is copied out, the
    # overlay laid over the copy, and a go.mod of the build's own (-modfile) points at it.
    cp -R "$src" "$out/.src"; chmod -R u+w "$out/.src"
    write_overlay "$comp" "$out/.src" > "$out/.overlay.json"
    { cat go.mod; echo "replace $(component_module "$comp") => $out/.src"; } > "$out/.go.mod"
    cp go.sum "$out/.go.sum"
    flags+=(-modfile "$out/.go.mod" -overlay "$out/.overlay.json")
  fi
  while read -r bin pkg tag; do
    if [[ -n "$tag" ]]; then
      log "  go test -c -tags $tag $pkg"
      CGO_ENABLED=0 go test -c -mod=readonly -trimpath -tags "$tag" \
        -ldflags "-s -w" -o "$out/bin/$bin" "$pkg"
    else
      log "  go build ${flags[*]} $pkg"
      CGO_ENABLED=0 go build "${flags[@]}" \
        -ldflags "-s -w $(go_ldflags "$comp" "$bin")" -o "$out/bin/$bin" "$pkg"
    fi
  done < <(component_binaries "$comp")
  rm -rf "$out/.src" "$out/.overlay.json" "$out/.go.mod" "$out/.go.sum"
  # Non-binary files shipped in the pinned module (e.g. the SealedSecret CRD).
  while read -r f; do
    mkdir -p "$(dirname "$out/$f")"
    cp -R "$src/${f#share/}" "$out/$f"
    chmod -R u+w "$out/$f"
  done < <(component_files "$comp")
}

# A component built inside a copy of its downloaded module (see builds_in_module).
build_in_module() { # component outdir
  local comp="$1" out="$2" mod ver info sum dir src ov f bin pkg
  mod="$(component_module "$comp")"; ver="$(component_version "$comp")"
  info="$(cd "$out" && go mod download -json "$mod@$ver")"
  sum="$(sed -n 's/^\t"Sum": "\(.*\)",$/\1/p' <<<"$info")"
  dir="$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$info")"
  [[ "$mod $ver $sum" == "$(cat "$HARNESS_DIR/go/$comp/module.sum")" ]] ||
    die "$comp: $mod $ver has checksum $sum, go/$comp/module.sum pins another"
  # The module cache is read-only and go refuses a main module inside it.
  src="$out/.src"; ov="$out/.overlay.json"
  cp -R "$dir" "$src"; chmod -R u+w "$src"
  write_overlay "$comp" "$src" > "$ov"
  cd "$src"
  while read -r bin pkg; do
    log "  go build -overlay $pkg (inside $mod@$ver)"
    CGO_ENABLED=0 go build -mod=readonly -trimpath -overlay "$ov" -ldflags "-s -w" -o "$out/bin/$bin" "$pkg"
  done < <(component_binaries "$comp")
  while read -r f; do
    mkdir -p "$(dirname "$out/$f")"
    cp -R "$src/${f#share/}" "$out/$f"
  done < <(component_files "$comp")
  cd "$out"; rm -rf "$src" "$ov"
}

build_moto() { # outdir
  local out="$1"
  "${PYTHON:-python3}" -m venv "$out"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$out/bin/python" -m pip install -q --no-deps \
    -r "$HARNESS_DIR/python/moto/requirements.txt"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$out/bin/python" -m pip check
  # pip's console scripts hard-code the venv path in their shebang, which breaks
  # when the temp dir is renamed; replace the entry point with a relocatable one.
  rm -f "$out/bin/moto_server"
  cat > "$out/bin/moto_server" <<'EOF'
#!/bin/sh
# moto_server from this venv; relocatable (does not depend on the venv's path).
here="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"
exec "$here/python" -m moto.server "$@"
EOF
  chmod +x "$out/bin/moto_server"
  "$out/bin/python" -c 'import moto.server' # import check
}

# ---------------------------------------------------------------- podman ----

# tests/tests/image.rs runs sealsync's container image with podman and runc (crun fails in
# this sandbox), from Debian's packages; CI runs as root on a fresh machine.
ensure_podman() {
  command -v podman >/dev/null && command -v runc >/dev/null && return 0
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null ||
    die "podman and runc are missing: apt-get install -y podman runc (as root)"
  log "podman, runc: installing from Debian's packages"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >&2
}

# ---------------------------------------------------------------- driver ----

ensure() {
  local comp="$1" ver dir stamp lockfd tmp logf start
  ver="$(component_version "$comp")"; dir="$(component_dir "$comp")"
  [[ "$comp" == moto ]] || command -v go >/dev/null || die "go not found on PATH"
  check_pins "$comp"
  stamp="$(expected_stamp "$comp")"
  mkdir -p "$CACHE_ROOT/logs"
  exec {lockfd}>"$CACHE_ROOT/.$comp.lock"
  flock "$lockfd"
  if is_built "$comp" "$dir" "$stamp"; then
    log "$comp $ver: cached"
    exec {lockfd}>&-; return 0
  fi
  if [[ -e "$dir" ]]; then log "$comp $ver: stale or incomplete, rebuilding"; rm -rf "$dir"; fi
  rm -rf "$CACHE_ROOT/.tmp-$comp-$ver".* # leftovers of killed builds (we hold the lock)
  tmp="$(mktemp -d "$CACHE_ROOT/.tmp-$comp-$ver.XXXXXX")"
  logf="$CACHE_ROOT/logs/$comp-$ver.log"
  log "$comp $ver: building (log: $logf)"
  start=$SECONDS
  mkdir -p "$tmp/bin"
  # Not `if ! ( ... )`: errexit is ignored inside a subshell used as a condition.
  local rc=0
  set +e
  (
    set -euo pipefail
    if [[ "$comp" == moto ]]; then build_moto "$tmp"
    elif builds_in_module "$comp"; then build_in_module "$comp" "$tmp"
    else build_go "$comp" "$tmp"; fi
  ) >"$logf" 2>&1
  rc=$?
  set -e
  printf '%s\n' "$stamp" > "$tmp/.complete"
  if [[ $rc != 0 ]] || ! is_built "$comp" "$tmp" "$stamp"; then
    tail -n 40 "$logf" >&2
    rm -rf "$tmp"
    die "$comp $ver: build failed (exit $rc; full log: $logf)"
  fi
  mv -T "$tmp" "$dir"
  log "$comp $ver: built in $((SECONDS - start))s"
  exec {lockfd}>&-
}

ensure_podman
mkdir -p "$CACHE_ROOT"
for c in "${comps[@]}"; do ensure "$c"; done

if [[ $print_env == 1 ]]; then
  "$HARNESS_DIR/paths.sh" "${comps[@]}"
fi
