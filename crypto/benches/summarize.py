#!/usr/bin/env python3
"""Markdown table of the `sealing` bench: per-iteration median and range of each sample.

    python3 crypto/benches/summarize.py [${CARGO_TARGET_DIR:-target}/criterion]

Criterion prints confidence intervals of the mean; on a shared machine the median and the
range of the per-sample times say more. Ratios are to `open_value/aws_lc_rs_oaep_decrypt`.
"""

import json
import os
import statistics
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
ORDER = [
    "seal_value/rsa4096_32B",
    "open_value/sealsync_open_value",
    "open_value/aws_lc_rs_oaep_decrypt",
    "open_value/rsa_crate_oaep_decrypt",
] + [f"keyring_open/{which}/{n}" for n in (1, 3, 10) for which in ("newest", "oldest")]
REFERENCE = "open_value/aws_lc_rs_oaep_decrypt"


def per_iteration(bench):
    path = os.path.join(root, bench, "new", "sample.json")
    if not os.path.exists(path):
        return None
    sample = json.load(open(path))
    return [t / n / 1e6 for t, n in zip(sample["times"], sample["iters"])]  # ms


rows = {bench: per_iteration(bench) for bench in ORDER}
reference = statistics.median(rows[REFERENCE]) if rows.get(REFERENCE) else None
print("| benchmark | median ms | min-max ms | samples | vs aws-lc-rs decrypt |")
print("|---|---:|---:|---:|---:|")
for bench, times in rows.items():
    if not times:
        continue
    med = statistics.median(times)
    ratio = f"{med / reference:.2f}x" if reference else ""
    print(f"| `{bench}` | {med:.3f} | {min(times):.3f}-{max(times):.3f} | {len(times)} | {ratio} |")
