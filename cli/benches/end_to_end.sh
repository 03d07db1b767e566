#!/usr/bin/env bash
# End-to-end timings of the `sealsync` binary against the physical floor of the machine.
#
#   bash cli/benches/end_to_end.sh            # from the repository root
#
# Builds sealsync in release, makes an RSA-4096 key and certificate with `sealsync keygen`,
# a Secret with 40 values and one with 100, then times (process start included):
#   (a) `sealsync seal` of the 100-value Secret            goal: < 100 ms
#   (b) `sealsync unseal` of the 40-value SealedSecret     goal: per value <= 1.5x floor
#   (c) the floor: RSA-4096 OAEP-SHA256 decryptions (with label) of the same 40 ciphertexts
#       by OpenSSL through Python `cryptography`, timed in process; `openssl speed rsa4096`
#       (system OpenSSL) for reference.
# (a) and (b) run with rayon's default thread count and with RAYON_NUM_THREADS=1.
#
# Wall times come from hyperfine when installed (apt-get install hyperfine), from a Python
# loop otherwise. On a shared machine wall time includes waiting for a core, so CPU time
# (user + system) is reported too, and ratios are given both ways.
# Prints markdown tables; medians and ranges are over RUNS runs.
#
# Environment:
#   CARGO_TARGET_DIR   where cargo builds (default: target)
#   RUNS, WARMUP       runs per command (default 30) and warm-up runs (default 3)
#   FLOOR_ROUNDS       rounds of 40 decryptions for the floor (default 10)
#   COMPARE_NO_JITTER=1  also build sealsync with AWS_LC_SYS_NO_JITTER_ENTROPY=1 (in
#                      $CARGO_TARGET_DIR-nojitter) and time its unseal, to show what AWS-LC's
#                      CPU-jitter entropy seeding costs each process
#   NO_HYPERFINE=1     time with the Python loop even when hyperfine is installed
#   KEEP_WORKDIR=1     keep the temporary directory (keys, Secrets, raw timings)
# Not part of the test suite: nothing runs it but a human.

set -euo pipefail

RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
FLOOR_ROUNDS=${FLOOR_ROUNDS:-10}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo_root"
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
bin=$target_dir/release/sealsync

echo "building sealsync (release)..." >&2
cargo build --release -p sealsync-cli >&2
nojitter_bin=
if [[ ${COMPARE_NO_JITTER:-0} == 1 ]]; then
    echo "building sealsync with AWS_LC_SYS_NO_JITTER_ENTROPY=1..." >&2
    AWS_LC_SYS_NO_JITTER_ENTROPY=1 CARGO_TARGET_DIR=$target_dir-nojitter \
        cargo build --release -p sealsync-cli >&2
    nojitter_bin=$target_dir-nojitter/release/sealsync
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sealsync-bench.XXXXXX")
if [[ ${KEEP_WORKDIR:-0} == 1 ]]; then
    echo "work directory: $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi

"$bin" keygen --bits 4096 --key-out "$work/key.pem" --cert-out "$work/cert.pem" 2>/dev/null

# A Secret named NAME in namespace "bench" with COUNT random 32-byte values.
make_secret() {
    local name=$1 count=$2 i
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: bench\ntype: Opaque\ndata:\n' "$name"
    for ((i = 0; i < count; i++)); do
        printf '  key-%03d: %s\n' "$i" "$(head -c 32 /dev/urandom | base64 -w0)"
    done
}
for n in 1 40 100; do
    make_secret "s$n" "$n" >"$work/secret$n.yaml"
done
for n in 1 40; do
    "$bin" seal -f "$work/secret$n.yaml" --cert "$work/cert.pem" -o json >"$work/sealed$n.json"
done
# Sanity: unseal gives the 40 values back.
"$bin" unseal -f "$work/sealed40.json" -k "$work/key.pem" -o json >"$work/unsealed40.json"
python3 - "$work/secret40.yaml" "$work/unsealed40.json" <<'EOF'
import json, sys
want = dict(l.strip().split(": ", 1) for l in open(sys.argv[1]) if l.startswith("  key-"))
got = json.load(open(sys.argv[2]))["data"]
assert got == want, "unseal did not give back the sealed values"
EOF

# Fallback timer: runs a command RUNS times, writes hyperfine-like JSON with per-run wall
# times and mean user/system CPU (from wait4).
cat >"$work/timer.py" <<'EOF'
import json, os, subprocess, sys, time
out, warmup, runs, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
times, user, system = [], 0.0, 0.0
for i in range(warmup + runs):
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    assert os.waitstatus_to_exitcode(status) == 0, cmd
    if i >= warmup:
        times.append(wall)
        user += usage.ru_utime
        system += usage.ru_stime
print(json.dumps({"results": [{"times": times, "user": user / runs, "system": system / runs}]}),
      file=open(out, "w"))
EOF

use_hyperfine=0
if [[ ${NO_HYPERFINE:-0} != 1 ]] && command -v hyperfine >/dev/null; then
    use_hyperfine=1
fi

# time_cmd LABEL [VAR=VALUE...] -- CMD...: timings in $work/LABEL.json.
time_cmd() {
    local label=$1
    shift
    local env=()
    while [[ $1 != -- ]]; do
        env+=("$1")
        shift
    done
    shift
    if [[ $use_hyperfine == 1 ]]; then
        env "${env[@]}" hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
            --export-json "$work/$label.json" -- "$(printf '%q ' "$@")" >/dev/null 2>&1
    else
        env "${env[@]}" python3 "$work/timer.py" "$work/$label.json" "$WARMUP" "$RUNS" "$@"
    fi
}

# The floor: OpenSSL (through Python cryptography) decrypting the RSA parts of the 40 values
# of sealed40.json with their label: each decryption timed alone (wall), and each round of
# 40 timed as a whole (wall and CPU), like the unseal it is compared with.
floor=("$repo_root/cli/benches/floor.py" "$work/key.pem" "$work/sealed40.json" "$FLOOR_ROUNDS")

seal100=("$bin" seal -f "$work/secret100.yaml" --cert "$work/cert.pem")
unseal40=("$bin" unseal -f "$work/sealed40.json" -k "$work/key.pem")
unseal1=("$bin" unseal -f "$work/sealed1.json" -k "$work/key.pem")

echo "timing (RUNS=$RUNS)..." >&2
python3 "${floor[@]}" >"$work/floor.json"
time_cmd version -- "$bin" --version
time_cmd seal100 -- "${seal100[@]}"
time_cmd seal100_1t RAYON_NUM_THREADS=1 -- "${seal100[@]}"
time_cmd unseal1 -- "${unseal1[@]}"
time_cmd unseal1_1t RAYON_NUM_THREADS=1 -- "${unseal1[@]}"
time_cmd unseal40 -- "${unseal40[@]}"
time_cmd unseal40_1t RAYON_NUM_THREADS=1 -- "${unseal40[@]}"
if [[ -n $nojitter_bin ]]; then
    time_cmd nj_unseal1_1t RAYON_NUM_THREADS=1 -- "$nojitter_bin" unseal -f "$work/sealed1.json" -k "$work/key.pem"
    time_cmd nj_unseal40 -- "$nojitter_bin" unseal -f "$work/sealed40.json" -k "$work/key.pem"
    time_cmd nj_unseal40_1t RAYON_NUM_THREADS=1 -- "$nojitter_bin" unseal -f "$work/sealed40.json" -k "$work/key.pem"
fi
# The floor again after the commands, so a change of load shows.
python3 "${floor[@]}" >"$work/floor2.json"
speed=$(openssl speed -seconds 3 rsa4096 2>/dev/null | grep -E '^rsa 4096' || true)

python3 - "$work" "$RUNS" "$speed" "$([[ $use_hyperfine == 1 ]] && echo hyperfine || echo 'Python loop')" <<'EOF'
import json, os, statistics, sys

work, runs, speed, timer = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def stats(xs):
    return statistics.median(xs), min(xs), max(xs)

def fmt(xs, scale=1000, digits=1):
    med, lo, hi = stats(xs)
    return f"{med * scale:.{digits}f} | {lo * scale:.{digits}f}-{hi * scale:.{digits}f}"

floors = [json.load(open(f"{work}/{f}.json")) for f in ("floor", "floor2")]
single = floors[0]["single"] + floors[1]["single"]
batch_wall = floors[0]["batch_wall"] + floors[1]["batch_wall"]
batch_cpu = floors[0]["batch_cpu"] + floors[1]["batch_cpu"]
f_single, f_wall, f_cpu = (statistics.median(x) for x in (single, batch_wall, batch_cpu))

rows = [
    ("version", "`sealsync --version` (process start)"),
    ("seal100", "(a) `seal`, 100 values"),
    ("seal100_1t", "(a) `seal`, 100 values, RAYON_NUM_THREADS=1"),
    ("unseal1", "`unseal`, 1 value"),
    ("unseal1_1t", "`unseal`, 1 value, RAYON_NUM_THREADS=1"),
    ("unseal40", "(b) `unseal`, 40 values"),
    ("unseal40_1t", "(b) `unseal`, 40 values, RAYON_NUM_THREADS=1"),
    ("nj_unseal1_1t", "`unseal`, 1 value, 1 thread, AWS-LC without CPU-jitter entropy"),
    ("nj_unseal40", "(b) `unseal`, 40 values, AWS-LC without CPU-jitter entropy"),
    ("nj_unseal40_1t", "(b) `unseal`, 40 values, 1 thread, AWS-LC without CPU-jitter entropy"),
]
res = {}
for label, title in rows:
    if os.path.exists(f"{work}/{label}.json"):
        r = json.load(open(f"{work}/{label}.json"))["results"][0]
        res[label] = (r["times"], r["user"] + r["system"], title)

print(f"### End to end ({timer}, {runs} runs each, process start included)\n")
print("| command | wall median ms | wall min-max ms | CPU (user+sys) mean ms |")
print("|---|---:|---:|---:|")
for label, (times, cpu, title) in res.items():
    print(f"| {title} | {fmt(times)} | {cpu * 1000:.1f} |")

print("\n### Floor: one RSA-4096 OAEP-SHA256 decryption with label, same ciphertexts\n")
print(f"Python cryptography {floors[0]['openssl']}, {len(single)} decryptions "
      f"(measured before and after the commands above).\n")
print("| measure | median ms | min-max ms |")
print("|---|---:|---:|")
print(f"| wall, each decryption timed alone | {fmt(single, digits=2)} |")
print(f"| wall, rounds of 40 / 40 | {fmt(batch_wall, digits=2)} |")
print(f"| CPU, rounds of 40 / 40 | {fmt(batch_cpu, digits=2)} |")
if speed:
    f = speed.split()  # rsa 4096 bits <sign s> <verify s> <sign/s> <verify/s>
    print(f"| `openssl speed -seconds 3 rsa4096`, sign (private-key op), system OpenSSL "
          f"| {float(f[3].rstrip('s')) * 1000:.2f} | |")

print("\n### Unseal cost per value (total / 40) against the floor\n")
print("Wall ratios use the floor's rounds of 40 (both include waiting for a core); "
      "CPU ratios use CPU time on both sides.\n")
print("| 40-value unseal | wall per value ms, median (min-max) | ratio wall | "
      "CPU per value ms | ratio CPU |")
print("|---|---:|---:|---:|---:|")
for label in ("unseal40", "unseal40_1t", "nj_unseal40", "nj_unseal40_1t"):
    if label not in res:
        continue
    times, cpu, title = res[label]
    med, lo, hi = stats([t / 40 for t in times])
    print(f"| {title.removeprefix('(b) `unseal`, 40 values').strip(', ') or 'default threads'} "
          f"| {med * 1000:.2f} ({lo * 1000:.2f}-{hi * 1000:.2f}) | {med / f_wall:.2f}x "
          f"| {cpu / 40 * 1000:.2f} | {cpu / 40 / f_cpu:.2f}x |")

seal = statistics.median(res["seal100"][0])
seal_1t = statistics.median(res["seal100_1t"][0])
print(f"\nSealing 100 values: median {seal * 1000:.1f} ms "
      f"({seal_1t * 1000:.1f} ms on one thread); goal < 100 ms.")
u1_cpu, u40_cpu = res["unseal1_1t"][1], res["unseal40_1t"][1]
print(f"Unseal, one thread: fixed CPU cost (1-value unseal minus one floor decryption) "
      f"{(u1_cpu - f_cpu) * 1000:.1f} ms; marginal CPU per extra value "
      f"{(u40_cpu - u1_cpu) / 39 * 1000:.2f} ms (floor {f_cpu * 1000:.2f} ms).")
if "nj_unseal1_1t" in res:
    print(f"Without CPU-jitter entropy: fixed CPU cost "
          f"{(res['nj_unseal1_1t'][1] - f_cpu) * 1000:.1f} ms.")
EOF
