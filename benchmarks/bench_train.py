"""Training speed on water (DeePMD-kit's examples/water/se_e2_a settings, batch 1, float64 or float32),
side by side with DeePMD-kit when its ``dp`` is installed, and optionally the 2,000-step accuracy
check of the training issue (decay_steps 200, test on all of data_3).

    python benchmarks/bench_train.py                  # speed; DeePMD-kit too if `dp` is found
    python benchmarks/bench_train.py --accuracy       # + 2,000 steps and `dpp test` on data_3
    python benchmarks/bench_train.py --dp /path/to/dp --steps 100 --warmup 20
    python benchmarks/bench_train.py --precision float32   # both codes' nets in float32
    python benchmarks/bench_train.py --precision mixed-bfloat16   # training/mixed_precision

Prints a Markdown table and, with ``--write``, stores it in benchmarks/RESULTS_train.md.
Absolute times drift between runs and machines: quote the ratio measured side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CONFIG = os.path.join(REPO, "configs", "water_se_e2_a.json")
PRECISIONS = ("float64", "float32", "mixed-bfloat16", "mixed-float16")
WATER = os.path.join(os.path.dirname(REPO), "shared", "data", "water")


def water_input(numb_steps: int, decay_steps: int = 5000, disp_freq: int = 100, precision: str = "float64") -> dict:
    """The water config as DeePMD-kit reads it (absolute data paths, no comments), with the
    descriptor's and fitting net's ``precision`` (one of PRECISIONS)."""
    with open(CONFIG) as f:
        raw = json.load(f)
    mixed = precision.startswith("mixed-")  # nets in float32, their products in bfloat16/float16
    for part in ("descriptor", "fitting_net"):
        raw["model"][part]["precision"] = "float32" if mixed else precision
    if mixed:
        raw["training"]["mixed_precision"] = {"output_prec": "float32", "compute_prec": precision[len("mixed-"):]}
    tr = raw["training"]
    for key in ("training_data", "validation_data"):
        tr[key]["systems"] = [os.path.normpath(os.path.join(os.path.dirname(CONFIG), p)) for p in tr[key]["systems"]]
    tr.update(numb_steps=numb_steps, disp_freq=disp_freq, save_freq=max(numb_steps, 1))
    raw["learning_rate"]["decay_steps"] = decay_steps
    return raw


def ours(steps: int, warmup: int, precision: str = "float64") -> float:
    """Seconds per training step (forward with create_graph, loss, backward, Adam) after warm-up."""
    from deepmd_paddle import config
    from deepmd_paddle.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config.normalize(water_input(warmup + steps, precision=precision)), tmp)
        for step in range(warmup):
            lr, _, loss, _ = trainer.forward_step(step)
            trainer.update(loss, lr)
        t0 = time.perf_counter()
        for step in range(warmup, warmup + steps):
            lr, _, loss, _ = trainer.forward_step(step)
            trainer.update(loss, lr)
        return (time.perf_counter() - t0) / steps


def deepmd_kit(dp: str, steps: int, warmup: int, precision: str = "float64") -> float | None:
    """DeePMD-kit's own "average training time" (it excludes its first disp_freq batches)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = water_input(warmup + steps, disp_freq=warmup, precision=precision)
        with open(os.path.join(tmp, "input.json"), "w") as f:
            json.dump(raw, f)
        r = subprocess.run([dp, "--tf", "train", "input.json"], cwd=tmp, capture_output=True, text=True)
        m = re.search(r"average training time: ([0-9.]+) s/batch", r.stdout + r.stderr)
        if r.returncode != 0 or not m:
            print((r.stdout + r.stderr)[-2000:], file=sys.stderr)
            return None
        return float(m.group(1))


def accuracy(outdir: str, steps: int = 2000) -> dict:
    """Train with DeePMD-kit's settings for ``steps`` (decay_steps 200), test on all of data_3."""
    from deepmd_paddle import config
    from deepmd_paddle.cli import load_evaluator, test_model
    from deepmd_paddle.train.trainer import train

    t0 = time.perf_counter()
    result = train(config.normalize(water_input(steps, decay_steps=200)), outdir)
    wall = time.perf_counter() - t0
    errors = test_model(load_evaluator(result["checkpoint"]), [os.path.join(WATER, "data_3")])
    return {"wall": wall, "e": errors["energy"]["rmse"], "f": errors["force"]["rmse"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=50, help="timed steps (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--dp", default=shutil.which("dp") or ("/work/dpkit/bin/dp" if os.path.exists("/work/dpkit/bin/dp")
                                                         else None), help="DeePMD-kit's dp executable")
    p.add_argument("--precision", choices=PRECISIONS, default="float64",
                   help="the nets' precision in both codes (default float64); mixed-bfloat16/mixed-float16: "
                   "training/mixed_precision with output_prec float32 (what DeePMD-kit's TF backend allows)")
    p.add_argument("--accuracy", action="store_true", help="also run the 2,000-step accuracy check")
    p.add_argument("--accuracy-dir", default=os.path.join(tempfile.gettempdir(), "dpp_water_2000"))
    p.add_argument("--write", action="store_true", help="write the table to benchmarks/RESULTS_train.md")
    args = p.parse_args()
    if not os.path.isdir(WATER):
        sys.exit(f"water data not found at {WATER}")
    if args.dp and not (os.path.isfile(args.dp) and os.access(args.dp, os.X_OK)):
        p.error(f"--dp {args.dp}: not an executable file (DeePMD-kit's dp; without --dp and dp on PATH, "
                "DeePMD-kit is skipped)")

    ours_s = ours(args.steps, args.warmup, args.precision)
    dp_s = deepmd_kit(args.dp, args.steps, args.warmup, args.precision) if args.dp else None
    rows = [f"| code | s/batch (water, 192 atoms, batch 1, {args.precision}) | ratio to ours |", "| --- | --- | --- |",
            f"| deepmd_paddle | {ours_s:.4f} | 1.00 |"]
    if dp_s is not None:
        rows.append(f"| DeePMD-kit TF ({args.dp}) | {dp_s:.4f} | {dp_s / ours_s:.2f} |")
    lines = [f"Training speed, {args.steps} steps after {args.warmup} warm-up steps, "
             f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}:", "", *rows]
    report(lines, args.write)
    if args.accuracy:
        acc = accuracy(args.accuracy_dir)
        lines += ["", "Accuracy on all of data_3 after 2,000 steps (decay_steps 200, otherwise DeePMD-kit's "
                  "water se_e2_a settings):", "",
                  "| code | force RMSE (eV/A) | energy RMSE (eV/atom) | wall time |", "| --- | --- | --- | --- |",
                  f"| deepmd_paddle | {acc['f']:.3f} | {acc['e']:.2e} | {acc['wall']:.0f} s |",
                  "| DeePMD-kit TF (measured earlier on this machine class) | 0.228 | 2.6e-03 | |"]
        report(lines, args.write)


def report(lines: list[str], write: bool) -> None:
    """Print the table now (the accuracy run takes long); with ``write`` also store it."""
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if write:
        with open(os.path.join(REPO, "benchmarks", "RESULTS_train.md"), "w") as f:
            f.write("# Training benchmarks\n\n`python benchmarks/bench_train.py --accuracy --write`\n\n" + text)


if __name__ == "__main__":
    main()
