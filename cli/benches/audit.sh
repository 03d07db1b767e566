#!/usr/bin/env bash
# `sealsync audit` of a generated GitOps repository with 10,000 manifests, without keys.
#
#   bash cli/benches/audit.sh            # from the repository root
#
# Builds sealsync in release, generates apps/app-NNNN/{base,overlays/{dev,prod}} with
# Deployments, Services, ConfigMaps and SealedSecrets (two ~700-character ciphertexts each,
# the size of RSA-4096 values), one manifest per file plus a kustomization.yaml per folder,
# and times `sealsync audit -o json` of the whole tree (process start included). Goal: < 2 s.
# Prints the median and range over RUNS runs (hyperfine when installed, a Python loop
# otherwise) and the number of files and documents the audit reports.
#
# Environment:
#   CARGO_TARGET_DIR   where cargo builds (default: target)
#   SEALSYNC_BIN       time this binary instead of building the release one
#   MANIFESTS          manifests to generate (default 10000)
#   RUNS, WARMUP       timed runs (default 10) and warm-up runs (default 2)
#   KEEP_WORKDIR=1     keep the generated repository
# Not part of the test suite: nothing runs it but a human.

set -euo pipefail

MANIFESTS=${MANIFESTS:-10000}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-2}

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

make_workdir audit

python3 - "$work/repo" "$MANIFESTS" <<'PY'
import base64, os, random, sys

root, total = sys.argv[1], int(sys.argv[2])
random.seed(1)
def ciphertext():
    return base64.b64encode(random.randbytes(530)).decode()

kinds = ["Deployment", "Service", "ConfigMap", "SealedSecret"]
written = 0
app = 0
while written < total:
    for env in ["base", "overlays/dev", "overlays/prod"]:
        folder = os.path.join(root, "apps", f"app-{app:04d}", env)
        os.makedirs(folder, exist_ok=True)
        names = []
        for kind in kinds:
            if written >= total:
                break
            name = f"app-{app:04d}-{kind.lower()}"
            ns = "default" if env == "base" else env.split("/")[1]
            if kind == "Deployment":
                body = (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
                        f"  labels: {{app: app-{app:04d}}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: app-{app:04d}}}\n"
                        f"  template:\n    metadata:\n      labels: {{app: app-{app:04d}}}\n    spec:\n      containers:\n"
                        f"      - name: app\n        image: registry.example.com/app:{app}.0.1\n        ports: [{{containerPort: 8080}}]\n"
                        f"        envFrom: [{{secretRef: {{name: {name}}}}}]\n")
            elif kind == "Service":
                body = (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n"
                        f"  selector: {{app: app-{app:04d}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n")
            elif kind == "ConfigMap":
                body = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n"
                        f"  LOG_LEVEL: info\n  DB_HOST: db.{ns}.svc.cluster.local\n  FEATURE_FLAGS: 'a,b,c'\n")
            else:
                body = (f"apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
                        f"spec:\n  encryptedData:\n    password: {ciphertext()}\n    username: {ciphertext()}\n"
                        f"  template:\n    metadata:\n      name: {name}\n      namespace: {ns}\n")
            file = f"{kind.lower()}.yaml"
            with open(os.path.join(folder, file), "w") as f:
                f.write(body)
            names.append(file)
            written += 1
        with open(os.path.join(folder, "kustomization.yaml"), "w") as f:
            f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
            f.writelines(f"- {n}\n" for n in names)
    app += 1
PY

echo "generated: $(find "$work/repo" -name '*.yaml' | wc -l) files, $(du -sh "$work/repo" | cut -f1)" >&2
"$bin" audit -o json --fail-on error "$work/repo" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("audit reports:", r["summary"])'

if command -v hyperfine >/dev/null; then
    hyperfine --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/hyperfine.json" \
        "$bin audit -o json --fail-on error $work/repo" >&2
    python3 - "$work/hyperfine.json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"][0]
t = r["times"]
print(f"audit of the generated repository: median {statistics.median(t):.3f} s, range {min(t):.3f}-{max(t):.3f} s over {len(t)} runs "
      f"(user {r['user']:.3f} s, system {r['system']:.3f} s mean)")
PY
else
    python3 - "$bin" "$work/repo" "$RUNS" "$WARMUP" <<'PY'
import resource, statistics, subprocess, sys, time
bin, repo, runs, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cmd = [bin, "audit", "-o", "json", "--fail-on", "error", repo]
times, cpu = [], []
for i in range(warmup + runs):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if i >= warmup:
        times.append(elapsed)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
print(f"audit of the generated repository: median {statistics.median(times):.3f} s, range {min(times):.3f}-{max(times):.3f} s over {runs} runs "
      f"(CPU median {statistics.median(cpu):.3f} s)")
PY
fi
