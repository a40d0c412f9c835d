"""The machine's matrix-product rates: NumPy's BLAS against Paddle's (MKL) in float64 and
float32, one thread, CPU time per product (robust to other jobs on the machine), with MKL's
default kernel choice and with ``MKL_DEBUG_CPU_TYPE=5`` (what ``deepmd_paddle`` sets on AMD CPUs,
deepmd_paddle/runtime.py). Each setting runs in its own process (MKL reads it once).

    python benchmarks/bench_gemm.py [--sizes 240 1536] [--min-time 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import paddle
sizes, min_time = json.loads(sys.argv[1]), float(sys.argv[2])
def rate(f, n):
    f(); t = time.process_time(); k = 0
    while time.process_time() - t < min_time:
        f(); k += 1
    return 2 * n ** 3 / ((time.process_time() - t) / k) / 1e9
out = {}
for dt in ("float64", "float32"):
    for n in sizes:
        a, b = np.random.rand(n, n).astype(dt), np.random.rand(n, n).astype(dt)
        pa, pb = paddle.to_tensor(a), paddle.to_tensor(b)
        out[f"{dt} {n}"] = (rate(lambda: a @ b, n), rate(lambda: paddle.matmul(pa, pb), n))
print(json.dumps(out))
"""


def measure(env_extra: dict, sizes, min_time) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **env_extra)
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sizes), str(min_time)], env=env,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[240, 1536])
    p.add_argument("--min-time", type=float, default=1.0, help="CPU seconds per case")
    args = p.parse_args()
    default = measure({}, args.sizes, args.min_time)
    amd = measure({"MKL_DEBUG_CPU_TYPE": "5"}, args.sizes, args.min_time)
    print("| precision, n x n | NumPy GFLOP/s | Paddle (MKL default) | Paddle (MKL_DEBUG_CPU_TYPE=5) |")
    print("| --- | --- | --- | --- |")
    for key in default:
        print(f"| {key} | {default[key][0]:.1f} | {default[key][1]:.1f} | {amd[key][1]:.1f} |")


if __name__ == "__main__":
    main()
