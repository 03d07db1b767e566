#!/usr/bin/env bash
# Print SEALSYNC_*=/abs/path lines for the cached components.
#   paths.sh [component...]   (default: all)
# Only components with a .complete stamp for the version in versions.env are
# printed; for any other requested component a message goes to stderr and the
# exit status is 1 (build.sh does the full stamp check and (re)builds):
#   eval "$(tests/harness/build.sh --print-env)"
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

comps=("$@"); [[ ${#comps[@]} -gt 0 ]] || comps=("${ALL_COMPONENTS[@]}")
rc=0
for c in "${comps[@]}"; do
  dir="$(component_dir "$c")"
  built=1
  grep -qx "version=$(component_version "$c")" "$dir/.complete" 2>/dev/null || built=0
  while read -r bin _; do [[ -x "$dir/bin/$bin" ]] || built=0; done < <(component_binaries "$c")
  if [[ $built == 0 ]]; then
    echo "paths.sh: $c $(component_version "$c") is not built (run tests/harness/build.sh $c)" >&2
    rc=1; continue
  fi
  for e in "${ENV_VARS[@]}"; do
    read -r var comp bin <<<"$e"
    if [[ "$comp" == "$c" ]]; then echo "$var=$dir/bin/$bin"; fi
  done
  for e in "${ENV_FILES[@]}"; do
    read -r var comp rel <<<"$e"
    if [[ "$comp" == "$c" ]]; then echo "$var=$dir/$rel"; fi
  done
done
exit $rc
