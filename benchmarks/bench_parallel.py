"""Data-parallel training throughput on water: ``dpp train --nproc 2`` (2 processes of 1 thread,
gloo) against ``dpp train`` (1 process of 1 thread), the same per-process batch (``auto``: 1
frame of 192 atoms), DeePMD-kit's water se_e2_a settings, float64.

    python benchmarks/bench_parallel.py                    # 2 pairs, 60 timed steps each
    python benchmarks/bench_parallel.py --steps 100 --pairs 3 --write

Both runs go through the command line as a user would start them. Their speed is the trainer's
own "s/step" (the mean over each ``disp_freq`` interval of forward, backward, gradient
all-reduce and Adam; validation and lcurve.out writing at display steps are excluded from it in
both runs alike); the first interval is warm-up and dropped. Frames per second = frames per
step (1 per process) / s/step. The runs alternate (parallel, single, parallel, ...) so that the
ratio of each pair is measured under about the same load; the load average (/proc/loadavg) is
printed with each run. ``--write`` appends the table to benchmarks/RESULTS_parallel.md.

On a machine shared with other jobs the wall-clock ratio mostly measures how many cores the
scheduler lends each run, so the table also gives the CPU seconds per step of the (rank 0)
process: parallel / single CPU per frame is the work data parallelism adds (all-reduces,
bookkeeping), which wall time on idle cores cannot hide.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from _machine import machine  # noqa: E402
from bench_train import WATER, water_input  # noqa: E402

SPEED = re.compile(r"step\s+(\d+) .* ([0-9.]+) s/step \(CPU ([0-9.]+) s\)")
ONE_THREAD = {"DP_INTRA_OP_PARALLELISM_THREADS": "1", "DEEPMD_PADDLE_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run(nproc: int, input_file: str, outdir: str) -> tuple[float, float, float, float]:
    """(wall s/step, CPU s/step, both after the first interval, load before, load after) of one
    ``dpp train``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env.update(ONE_THREAD)
    cmd = [sys.executable, "-m", "deepmd_paddle", "train", input_file, "-o", outdir]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    before = load()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    after = load()
    text = r.stdout + r.stderr
    if nproc > 1:
        with open(os.path.join(outdir, "log", "workerlog.0")) as f:
            text = f.read()
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    speeds = [(float(m.group(2)), float(m.group(3))) for m in SPEED.finditer(text)]
    if len(speeds) < 2:
        sys.exit(f"no s/step lines after warm-up in the output of {' '.join(cmd)}:\n{text[-2000:]}")
    timed = speeds[1:]  # the first interval holds the warm-up
    return statistics.mean(w for w, _ in timed), statistics.mean(c for _, c in timed), before, after


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60, help="timed steps per run (default 60)")
    p.add_argument("--interval", type=int, default=20, help="disp_freq: steps per speed sample (default 20)")
    p.add_argument("--pairs", type=int, default=2, help="(parallel, single) pairs (default 2)")
    p.add_argument("--nproc", type=int, default=2, help="processes of the parallel run (default 2)")
    p.add_argument("--write", action="store_true", help="write benchmarks/RESULTS_parallel.md")
    args = p.parse_args()
    if not os.path.isdir(WATER):
        sys.exit(f"water data not found at {WATER}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = water_input(args.interval + args.steps, disp_freq=args.interval)
        raw["training"]["validation_data"]["numb_btch"] = 1
        raw["training"]["save_freq"] = 10 ** 9  # only the final checkpoint
        input_file = os.path.join(tmp, "input.json")
        with open(input_file, "w") as f:
            json.dump(raw, f)
        for i in range(args.pairs):
            par = run(args.nproc, input_file, os.path.join(tmp, f"par{i}"))
            one = run(1, input_file, os.path.join(tmp, f"one{i}"))
            fps_par, fps_one = args.nproc / par[0], 1 / one[0]
            rows.append((par, one, fps_par, fps_one))
            print(f"pair {i}: {args.nproc} x 1 thread {par[0]:.3f} s/step, CPU {par[1]:.3f} ({fps_par:.2f} "
                  f"frames/s, load {par[2]:.2f}->{par[3]:.2f}); 1 x 1 thread {one[0]:.3f} s/step, CPU {one[1]:.3f} "
                  f"({fps_one:.2f} frames/s, load {one[2]:.2f}->{one[3]:.2f}); ratio {fps_par / fps_one:.2f}",
                  flush=True)
    ratios = [r[2] / r[3] for r in rows]
    lines = [
        f"`python benchmarks/bench_parallel.py --steps {args.steps} --interval {args.interval} --pairs {args.pairs}"
        f" --nproc {args.nproc}`, {time.strftime('%Y-%m-%d %H:%M %Z')}, {machine()}.", "",
        "| pair | load before->after (parallel / single run) | "
        f"{args.nproc} x 1 thread: s/step (CPU s/step) | 1 x 1 thread: s/step (CPU s/step) | "
        "frames/s parallel | frames/s single | frames/s ratio | CPU per step parallel / single |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, (par, one, fp, fo) in enumerate(rows):
        lines.append(f"| {i} | {par[2]:.2f}->{par[3]:.2f} / {one[2]:.2f}->{one[3]:.2f} | {par[0]:.3f} ({par[1]:.3f}) | "
                     f"{one[0]:.3f} ({one[1]:.3f}) | {fp:.2f} | {fo:.2f} | {fp / fo:.2f} | {par[1] / one[1]:.3f} |")
    lines += ["", f"frames/s ratio, {args.nproc} processes / 1 process: best {max(ratios):.2f}, "
              f"median {statistics.median(ratios):.2f} (target >= 1.7 for 2 processes)"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(os.path.join(HERE, "RESULTS_parallel.md"), "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
