#!/usr/bin/env bash
# `sealsync reencrypt --all` of 1,000 SealedSecrets offline, next to the floor of the RSA work.
#
#   bash cli/benches/reencrypt_all.sh            # from the repository root
#
# Builds sealsync in release, makes two RSA-4096 keys, seals OBJECTS one-value Secrets to the
# old one into apps/app-NNN/overlays/prod/sealed.yaml (10 per file), and times
# `sealsync reencrypt --all -k old --cert new` of a fresh copy of the tree, process start
# included. Each value costs one RSA-4096 OAEP decryption (and one encryption, ~1/50 of it):
# the floor is OpenSSL's decryption through Python `cryptography` (cli/benches/floor.py, one
# core) times the cores. Prints values/s for both.
#
# Environment:
#   CARGO_TARGET_DIR   where cargo builds (default: target)
#   SEALSYNC_BIN       time this binary instead of building the release one
#   OBJECTS            SealedSecrets to re-encrypt (default 1000)
#   RUNS               timed runs (default 5); FLOOR_ROUNDS (default 3)
#   KEEP_WORKDIR=1     keep the generated files
# Not part of the test suite: nothing runs it but a human.

set -euo pipefail

OBJECTS=${OBJECTS:-1000}
RUNS=${RUNS:-5}
FLOOR_ROUNDS=${FLOOR_ROUNDS:-3}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

make_workdir reencrypt
cd "$work"

"$bin" keygen --key-out old-key.pem --cert-out old-cert.pem >/dev/null 2>&1
"$bin" keygen --key-out new-key.pem --cert-out new-cert.pem >/dev/null 2>&1
python3 - "$OBJECTS" >secrets.yaml <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i:05d}, namespace: prod}}\n"
          f"stringData: {{password: pw-{i:05d}}}")
PY
"$bin" seal -f secrets.yaml --cert old-cert.pem -o yaml >sealed.yaml
"$bin" seal -f secrets.yaml --cert old-cert.pem -o json >sealed.json

python3 - "$bin" "$OBJECTS" "$RUNS" "$FLOOR_ROUNDS" "$repo_root/cli/benches/floor.py" <<'PY'
import json, os, shutil, statistics, subprocess, sys, time

bin, objects, runs, floor_rounds, floor_py = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
docs = [d for d in open("sealed.yaml").read().split("---\n") if d.strip()]
assert len(docs) == objects
def make_tree(root):
    for i in range(0, objects, 10):
        folder = os.path.join(root, "apps", f"app-{i // 10:03d}", "overlays", "prod")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "sealed.yaml"), "w") as f:
            f.write("# sealed for prod\n---\n" + "---\n".join(docs[i:i + 10]))

walls, cpus = [], []
for run in range(runs):
    root = f"run-{run}"
    make_tree(root)
    t = time.perf_counter()
    child = subprocess.Popen([bin, "reencrypt", "--all", root, "-k", "old-key.pem",
                              "--cert", "new-cert.pem", "-o", "json"], stdout=subprocess.PIPE)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    walls.append(time.perf_counter() - t)
    cpus.append(usage.ru_utime + usage.ru_stime)
    summary = json.loads(out)
    assert status == 0 and summary["reencrypted"] == objects, summary
    shutil.rmtree(root)

floor = json.loads(subprocess.check_output(
    ["python3", floor_py, "old-key.pem", "sealed.json", floor_rounds]))
per_core = 1 / statistics.median(floor["batch_cpu"])
cores = os.cpu_count()
wall = statistics.median(walls)
print(f"values: {objects} (one per SealedSecret, RSA-4096), files: {(objects + 9) // 10}, runs: {runs}")
print(f"reencrypt --all: wall {wall:.2f} s median ({min(walls):.2f}-{max(walls):.2f}), "
      f"CPU {statistics.median(cpus):.2f} s: {objects / wall:.0f} values/s, "
      f"{objects / statistics.median(cpus):.0f} per CPU-second")
print(f"floor ({floor['openssl']}): {per_core:.0f} decryptions/s per core x {cores} cores = "
      f"{per_core * cores:.0f}/s")
print(f"load average: {os.getloadavg()}")
PY
