"""Issue 3's accuracy check: water, DeePMD-kit's standard se_e2_a settings with 2,000 steps and
decay_steps 200, trained from given seeds and tested on all of data_3 (force and energy RMSE).

    python tools/water_2000_steps.py --seeds 10,1 11,2 --code ours tf --out /tmp/water2000
    python tools/water_2000_steps.py --precision mixed-bfloat16 --code ours tf --out /tmp/water2000

``--seeds T,N``: the training seed T and the nets' seed N (descriptor and fitting_net). ``ours``
runs deepmd_paddle's trainer and ``dpp test``'s evaluation in this process; ``tf`` runs
DeePMD-kit (``dp --tf train``, ``freeze``, ``test -n 1000``) from ``--dp`` with the same input.
For the same nets' seed both codes start from the same initial weights (deepmd_paddle/model/init.py
draws them as DeePMD-kit's TensorFlow backend does); the training seeds give each code its own
batch order. ``--precision`` (bench_train's): float64 (the default), float32 (descriptor and fitting net), or
mixed-bfloat16 / mixed-float16 (``training/mixed_precision`` {output_prec float32, compute_prec ...},
the same section for both codes: DeePMD-kit 3.2's TensorFlow backend takes output_prec float32 only).
``--steps N`` shortens the run (a smoke test; the learning rate then decays over N steps as it
does over 2,000). ``--init-model CKPT`` starts ours from a checkpoint instead. One JSON line per run
is printed and appended to OUT/results.jsonl. Each run takes 4-8 minutes with OMP_NUM_THREADS=1 and another run beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from bench_train import PRECISIONS, WATER, water_input  # noqa: E402


def config_for(seed: int, netseed: int, precision: str = "float64", steps: int = 2000) -> dict:
    inp = water_input(steps, decay_steps=max(1, steps // 10), precision=precision)
    inp["training"]["seed"] = seed
    inp["training"]["save_freq"] = steps
    # (DeePMD-kit's TensorFlow trainer saves its checkpoint only on a display step)
    inp["training"]["disp_freq"] = min(inp["training"]["disp_freq"], steps)
    inp["model"]["descriptor"]["seed"] = netseed
    inp["model"]["fitting_net"]["seed"] = netseed
    return inp


def run_ours(seed: int, netseed: int, out: str, init_model: str | None, precision: str, steps: int) -> dict:
    from deepmd_paddle import config
    from deepmd_paddle.cli import load_evaluator, test_model
    from deepmd_paddle.train.trainer import train

    res = train(config.normalize(config_for(seed, netseed, precision, steps)), out, init_model=init_model)
    err = test_model(load_evaluator(res["checkpoint"]), [os.path.join(WATER, "data_3")])
    return {"energy_rmse": err["energy"]["rmse"], "force_rmse": err["force"]["rmse"]}


def run_tf(seed: int, netseed: int, out: str, dp: str, precision: str, steps: int) -> dict:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "input.json"), "w") as f:
        json.dump(config_for(seed, netseed, precision, steps), f, indent=1)
    for cmd in ([dp, "--tf", "train", "input.json"], [dp, "--tf", "freeze", "-o", "frozen.pb"],
                [dp, "--tf", "test", "-m", "frozen.pb", "-s", os.path.join(WATER, "data_3"), "-n", "1000"]):
        r = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{(r.stdout + r.stderr)[-3000:]}")
    log = r.stdout + r.stderr
    e = float(re.search(r"Energy RMSE/Natoms\s*:\s*([0-9.eE+-]+)", log).group(1))
    f = float(re.search(r"Force\s+RMSE\s*:\s*([0-9.eE+-]+)", log).group(1))
    return {"energy_rmse": e, "force_rmse": f}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", default=["10,1"], help="training seed,nets seed (default 10,1)")
    p.add_argument("--code", nargs="+", default=["ours"], choices=["ours", "tf"])
    p.add_argument("--out", default="water2000")
    p.add_argument("--dp", default="/work/dpkit/bin/dp", help="DeePMD-kit's dp (for --code tf)")
    p.add_argument("--init-model", help="ours only: start from this checkpoint")
    p.add_argument("--precision", default="float64", choices=PRECISIONS,
                   help="float64, float32, or mixed-bfloat16/mixed-float16 (training/mixed_precision, output float32)")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000; fewer: a smoke test)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for pair in args.seeds:
        seed, netseed = (int(v) for v in pair.split(","))
        for code in args.code:
            tag = "" if args.precision == "float64" else f"_{args.precision}"
            out = os.path.join(args.out, f"{code}_{seed}_{netseed}{tag}")
            t0 = time.perf_counter()
            err = (run_ours(seed, netseed, out, args.init_model, args.precision, args.steps) if code == "ours"
                   else run_tf(seed, netseed, out, args.dp, args.precision, args.steps))
            row = {"code": code, "seed": seed, "netseed": netseed, "init_model": args.init_model,
                   "precision": args.precision, "steps": args.steps,
                   "wall_s": round(time.perf_counter() - t0, 1), **err}
            print(json.dumps(row), flush=True)
            with open(os.path.join(args.out, "results.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
