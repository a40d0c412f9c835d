"""Type embedding vs per-type embedding nets on the five-element EMT alloy (issue 7).

Both variants train from the same config (configs/alloy_type_one_side.json): same descriptor
widths, fitting net, learning rate, loss, seed and steps; they differ only in
``model.descriptor.type_embedding`` (absent: 5 embedding nets, ``type_one_side: true``; or
``true``: one net fed with [R~[0], neighbour element properties]). The two trainers run
interleaved, ``--block`` steps each in turn, so that both see the same machine load; the time
ratio is taken block pair by block pair (median). After ``--steps`` steps each model is tested on
all validation frames (force and energy RMSE).

    python benchmarks/bench_type_embedding.py                       # 2,000 steps, data made in a temp folder
    python benchmarks/bench_type_embedding.py --steps 200 --data /tmp/alloy_data --variants te te_centre learned

Prints a Markdown table; ``--write`` appends it, with the command, date, machine and load
average, to benchmarks/RESULTS_type_embedding.md.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "alloy_type_one_side.json")
RESULTS = os.path.join(REPO, "benchmarks", "RESULTS_type_embedding.md")
VARIANTS = {  # name -> (label, descriptor keys changed from the per-type config)
    "per_type": ("per-type nets (type_one_side: true)", {}),
    "te": ("type embedding: element properties of the neighbour", {"type_embedding": True}),
    "te_centre": ("type embedding: properties of neighbour and centre (type_one_side: false)",
                  {"type_embedding": True, "type_one_side": False}),
    "learned": ("type embedding: learned, width 8", {"type_embedding": {"neuron": [8]}}),
}


def variant_config(data: str, name: str, steps: int, seed: int) -> dict:
    with open(CONFIG) as f:
        raw = json.load(f)
    raw = json.loads(json.dumps(raw))
    raw["model"]["descriptor"].update(copy.deepcopy(VARIANTS[name][1]))
    tr = raw["training"]
    tr["training_data"]["systems"] = [os.path.join(data, "train")]
    tr["validation_data"]["systems"] = [os.path.join(data, "valid")]
    tr.update(numb_steps=steps, seed=seed, disp_training=False, save_freq=10 ** 9)
    return raw


def test_rmse(model, valid: str) -> dict:
    """Force RMSE (eV/A) and energy RMSE per atom (eV) over every validation frame."""
    import paddle

    from deepmd_paddle.data.system import load_system
    from deepmd_paddle.model.energy_model import EnergyModel  # noqa: F401

    df, de, nf_tot, na_tot = 0.0, 0.0, 0, 0
    for name in sorted(os.listdir(valid)):
        s = load_system(os.path.join(valid, name), model.type_map)
        for lo in range(0, s.nframes, 10):
            idx = np.arange(lo, min(lo + 10, s.nframes))
            atype = np.broadcast_to(s.atype, (len(idx), s.natoms)).astype(np.int32)
            out = model(paddle.to_tensor(s.coord[idx]), paddle.to_tensor(atype), paddle.to_tensor(s.box[idx]))
            f = out["force"].numpy().reshape(len(idx), -1)
            e = out["energy"].numpy().reshape(-1)
            df += ((f - s.labels["force"][idx].reshape(len(idx), -1)) ** 2).sum()
            de += (((e - s.labels["energy"][idx]) / s.natoms) ** 2).sum()
            nf_tot += len(idx)
            na_tot += len(idx) * s.natoms
    return {"force": float(np.sqrt(df / (3 * na_tot))), "energy": float(np.sqrt(de / nf_tot))}


def set_threads(n: int) -> None:
    """n threads for Paddle's math library AND for OpenMP (the bias_tanh operator runs its large
    calls with omp_get_max_threads() threads, which neither Paddle's setting nor
    DEEPMD_PADDLE_NUM_THREADS caps). On a machine shared with other jobs, two-thread parallel
    regions wait for descheduled threads; one thread per process gives comparable numbers."""
    import ctypes

    from paddle.base import core

    core.set_num_threads(n)
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(n)
    except OSError:
        print("libgomp not found: OpenMP thread count left as it is")


def run(data: str, variants: list[str], steps: int, block: int, seed: int, warmup: int, threads: int) -> dict:
    from deepmd_paddle import config
    from deepmd_paddle.train.trainer import Trainer

    trainers, tmp = {}, tempfile.mkdtemp(prefix="bench_te_")
    times, cpu = {v: [] for v in variants}, {v: [] for v in variants}
    for v in variants:
        trainers[v] = Trainer(config.normalize(variant_config(data, v, steps, seed)), os.path.join(tmp, v))
        trainers[v].model.train()
    if threads:
        set_threads(threads)
    step = 0
    for _ in range(warmup):  # first steps: allocations, operator loading
        for v in variants:
            lr, _, loss, _ = trainers[v].forward_step(step)
            trainers[v].update(loss, lr)
        step += 1
    while step < steps:
        n = min(block, steps - step)
        for v in variants:
            t0, c0 = time.perf_counter(), time.process_time()
            for s in range(step, step + n):
                lr, _, loss, _ = trainers[v].forward_step(s)
                trainers[v].update(loss, lr)
            times[v].append((time.perf_counter() - t0) / n)
            cpu[v].append((time.process_time() - c0) / n)
        step += n
    out = {}
    for v in variants:
        m = trainers[v].model
        m.eval()
        out[v] = {"s_per_step": statistics.median(times[v]), "blocks": times[v], "cpu_blocks": cpu[v],
                  "params": int(sum(np.prod(p.shape) for p in m.descriptor.parameters())),
                  "sel": list(m.descriptor.sel), **test_rmse(m, os.path.join(data, "valid"))}
    return out


def table(res: dict, ref: str = "per_type") -> str:
    lines = ["| variant | s/step (median of blocks) | wall time vs per-type (median of block ratios) | "
             "CPU time vs per-type | descriptor parameters | force RMSE (eV/A) | vs per-type | "
             "energy RMSE (eV/atom) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def ratio(key, r):
        return statistics.median(a / b for a, b in zip(r[key], res[ref][key]))

    for v, r in res.items():
        lines.append(f"| {VARIANTS[v][0]} | {r['s_per_step']:.4f} | {ratio('blocks', r):.3f} | "
                     f"{ratio('cpu_blocks', r):.3f} | {r['params']} | {r['force']:.4f} | "
                     f"{r['force'] / res[ref]['force']:.3f} | {r['energy']:.2e} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from _machine import machine

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="alloy data folder (made with deepmd_paddle.data.alloy if absent)")
    p.add_argument("--variants", nargs="+", default=["per_type", "te"], choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--block", type=int, default=50, help="steps per variant in turn (default 50)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, nargs="+", default=[1])
    p.add_argument("--threads", type=int, default=0,
                   help="threads of Paddle's math library and of OpenMP (default: the trainer's setting, "
                        "all usable cores; use 1 on a loaded machine, see set_threads)")
    p.add_argument("--write", action="store_true", help="append the table to " + os.path.relpath(RESULTS, REPO))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = args.data or os.path.join(tempfile.mkdtemp(prefix="alloy_"), "data")
    if not os.path.isdir(os.path.join(data, "train")):
        from deepmd_paddle.data.alloy import make_alloy

        made = make_alloy(data)
        print(f"made {made['n_train']} training and {made['n_valid']} validation frames in {data}")
    load0 = os.getloadavg()
    t0 = time.time()
    text = []
    for seed in args.seed:
        res = run(data, args.variants, args.steps, args.block, seed, args.warmup, args.threads)
        text.append(f"seed {seed}, sel {res[args.variants[0]]['sel']}:\n\n{table(res, args.variants[0])}\n")
        print(text[-1], flush=True)
    load1 = os.getloadavg()
    head = (f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, `python benchmarks/"
            f"bench_type_embedding.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n"
            f"{machine()}; {args.steps} steps per variant, blocks of {args.block} steps in turn, "
            f"{args.threads or 'all usable'} thread(s); load average "
            f"(1/5/15 min) {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at start, "
            f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} at end; wall {time.time() - t0:.0f} s\n\n")
    print(head)
    if args.write:
        new = not os.path.isfile(RESULTS)
        with open(RESULTS, "a") as f:
            if new:
                f.write("# Type embedding vs per-type embedding nets (issue 7)\n\n")
            f.write(head + "\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
