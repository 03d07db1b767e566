#!/usr/bin/env bash
# `sealsync sync` of a repository of 1,000 SealedSecrets into the local store: the first sync,
# then syncs that change nothing, with and without the store's memory of what each file was
# synced from (docs/sync.md, "The local store").
#
#   bash cli/benches/sync_noop.sh            # from the repository root
#
# Builds sealsync in release, makes an RSA-4096 key, seals OBJECTS one-value Secrets to it
# into apps/app-NNN/overlays/prod/sealed.yaml (10 per file), syncs them once into a fresh
# store, then times RUNS syncs of the unchanged repository with the memory in place, and RUNS
# with the memory deleted before each (every SealedSecret opened again, as before the memory
# existed). Process start included. The RSA floor: cli/benches/floor.py (OpenSSL through
# Python `cryptography`), one core, times the cores.
#
# Environment:
#   CARGO_TARGET_DIR   where cargo builds (default: target)
#   SEALSYNC_BIN       time this binary instead of building the release one
#   OBJECTS            SealedSecrets (default 1000); RUNS timed runs of each kind (default 5)
#   FLOOR_ROUNDS       (default 3); KEEP_WORKDIR=1 keeps the generated files
# Not part of the test suite: nothing runs it but a human.

set -euo pipefail

OBJECTS=${OBJECTS:-1000}
RUNS=${RUNS:-5}
FLOOR_ROUNDS=${FLOOR_ROUNDS:-3}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

make_workdir sync
cd "$work"

"$bin" keygen --key-out key.pem --cert-out cert.pem >/dev/null 2>&1
python3 - "$OBJECTS" >secrets.yaml <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i:05d}, namespace: prod}}\n"
          f"stringData: {{password: pw-{i:05d}}}")
PY
"$bin" seal -f secrets.yaml --cert cert.pem -o yaml >sealed.yaml
"$bin" seal -f secrets.yaml --cert cert.pem -o json >sealed.json

python3 - "$bin" "$OBJECTS" "$RUNS" "$FLOOR_ROUNDS" "$repo_root/cli/benches/floor.py" <<'PY'
import json, os, statistics, subprocess, sys, time

bin, objects, runs, floor_rounds, floor_py = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
docs = [d for d in open("sealed.yaml").read().split("---\n") if d.strip()]
assert len(docs) == objects
for i in range(0, objects, 10):
    folder = os.path.join("repo", "apps", f"app-{i // 10:03d}", "overlays", "prod")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "sealed.yaml"), "w") as f:
        f.write("# sealed for prod\n---\n" + "---\n".join(docs[i:i + 10]))

def sync(expect):
    t = time.perf_counter()
    child = subprocess.Popen([bin, "sync", "repo", "-k", "key.pem", "--out", "store", "-o", "json"],
                             stdout=subprocess.PIPE)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t
    report = json.loads(out)
    actions = {row["action"] for row in report["secrets"]}
    assert status == 0 and len(report["secrets"]) == objects and actions == {expect}, actions
    return wall, usage.ru_utime + usage.ru_stime

first = sync("created")
kinds = {"with memory": [], "memory deleted": []}
for run in range(runs):
    kinds["with memory"].append(sync("unchanged"))
    os.remove(os.path.join("store", ".sealsync-memory.json"))
    kinds["memory deleted"].append(sync("unchanged"))

floor = json.loads(subprocess.check_output(
    ["python3", floor_py, "key.pem", "sealed.json", floor_rounds]))
per_core = 1 / statistics.median(floor["batch_cpu"])
print(f"SealedSecrets: {objects} (one RSA-4096 value each), files: {(objects + 9) // 10}, runs: {runs}")
print(f"first sync: wall {first[0]:.2f} s, CPU {first[1]:.2f} s")
for kind, timings in kinds.items():
    walls, cpus = [w for w, _ in timings], [c for _, c in timings]
    print(f"no-op sync, {kind}: wall {statistics.median(walls):.3f} s median "
          f"({min(walls):.3f}-{max(walls):.3f}), CPU {statistics.median(cpus):.3f} s")
print(f"floor ({floor['openssl']}): {per_core:.0f} decryptions/s per core x {os.cpu_count()} cores")
print(f"load average: {os.getloadavg()}")
PY
