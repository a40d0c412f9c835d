"""Train deepmd_paddle and DeePMD-kit (TensorFlow) from the same initial weights on the same
frames and print both learning curves side by side.

The water input of configs/water_se_e2_a.json is reduced to one frame of data_0 (so that both
codes draw the same batch every step), the learning rate is held at start_lr (or decays with ``--decay-steps``: the lr and the loss
prefactor schedules are then compared too), and:

1. ``dp --tf train`` with 0 steps gives DeePMD-kit's initial weights and statistics, which
   ``dp --tf freeze`` and ``dp convert-backend`` turn into a ``.dp`` file and ``dpp convert``
   into one of our checkpoints;
2. ``dp --tf train`` runs ``--steps`` steps from the same seeds (the same initial weights);
3. ``dpp train --init-model`` runs the same steps from the converted checkpoint.

Equal curves mean equal losses, gradients and Adam updates, step by step (measured on
2026-11-22: 40 steps, every rmse_e_trn and rmse_f_trn equal to the 3 printed digits).

    python tools/compare_training_with_deepmd.py --dp /work/dpkit/bin/dp --steps 40
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from bench_train import WATER, water_input  # noqa: E402


def one_frame_system(dest: str) -> str:
    src = os.path.join(WATER, "data_0")
    os.makedirs(os.path.join(dest, "set.000"))
    for name in ("type.raw", "type_map.raw"):
        shutil.copy(os.path.join(src, name), dest)
    for key in ("coord", "box", "energy", "force"):
        np.save(os.path.join(dest, "set.000", f"{key}.npy"), np.load(os.path.join(src, "set.000", f"{key}.npy"))[:1])
    return dest


def input_for(system: str, steps: int, decay_steps: int, total: int) -> dict:
    inp = water_input(total, decay_steps=decay_steps, disp_freq=max(1, total // 40))
    inp["training"]["numb_steps"] = steps
    tr = inp["training"]
    tr["training_data"]["systems"] = [system]
    tr["validation_data"].update(systems=[system], numb_btch=1)
    tr["save_freq"] = 10 ** 7
    return inp


def run(cmd: list[str], cwd: str) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{(r.stdout + r.stderr)[-3000:]}")


def curve(path: str) -> np.ndarray:
    return np.loadtxt(path, comments="#")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dp", default=shutil.which("dp") or "/work/dpkit/bin/dp", help="DeePMD-kit's dp")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--decay-steps", type=int, default=10 ** 7, help="learning-rate decay (default: none)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dpp_vs_tf_")
    system = one_frame_system(os.path.join(work, "one_frame"))
    for name, steps in (("tf0", 0), ("tf", args.steps), ("ours", args.steps)):
        os.makedirs(os.path.join(work, name))
        with open(os.path.join(work, name, "input.json"), "w") as f:
            json.dump(input_for(system, steps, args.decay_steps, args.steps), f, indent=1)
    t0 = os.path.join(work, "tf0")
    run([args.dp, "--tf", "train", "input.json"], t0)
    run([args.dp, "--tf", "freeze", "-o", "init.pb"], t0)
    run([args.dp, "convert-backend", "init.pb", "init.dp"], t0)
    run([sys.executable, "-m", "deepmd_paddle", "convert", "init.dp", "init.ckpt"], t0)
    run([args.dp, "--tf", "train", "input.json"], os.path.join(work, "tf"))
    run([sys.executable, "-m", "deepmd_paddle", "train", "input.json", "-o", ".", "--init-model",
         os.path.join(t0, "init.ckpt-0.safetensors")], os.path.join(work, "ours"))
    tf, ours = curve(os.path.join(work, "tf", "lcurve.out")), curve(os.path.join(work, "ours", "lcurve.out"))
    n = min(len(tf), len(ours))
    print("step   rmse_e_trn TF  ours       rmse_f_trn TF  ours")
    for a, b in zip(tf[:n], ours[:n]):
        print(f"{int(a[0]):4d}   {a[4]:.3e}  {b[4]:.3e}    {a[6]:.3e}  {b[6]:.3e}")
    rel = np.abs(tf[:n, [4, 6]] - ours[:n, [4, 6]]) / np.abs(tf[:n, [4, 6]])
    print(f"largest relative difference over {n} rows: {rel.max():.2e} (lcurve.out prints 3 digits); files in {work}")


if __name__ == "__main__":
    main()
