"""Compressed inference (dpp compress) against our uncompressed model and DeePMD-kit TF's
compressed model: one frame per call, energy + forces + virial, float64.

The model and boxes are bench_infer.py's: the standard water shape (sel [46, 92], rcut 6,
embedding [25, 50, 100], axis 16, fitting [240, 240, 240]) with random weights and data
statistics, one .dp file for both codes; water frame 0 of data_0 replicated to 1,536 and 12,288
atoms. The smallest pair distance (for the tables' range) is that of the frame.

Methods, each (method, size) in its own process (peak RSS is its own):
  jit             DeepPot on our frozen uncompressed model (paddle.jit.load, DeepPot's default)
  jit_compressed  DeepPot on `dpp compress -s 0.01 -e 5 --order 5` of the same model (frozen)
  predictor, predictor_compressed
                  the same two frozen models through paddle.inference (DeepPot's backend
                  "predictor", which its default "auto" picks from 1,000 atoms per call)
  tf_compressed   DeePMD-kit's DeepPot on `dp --tf compress` of the converted .pb (same -s, -e),
                  through $DPKIT_PYTHON (default /work/dpkit/bin/python), when installed
  tf              DeePMD-kit's uncompressed .pb (only with --methods tf)

    python benchmarks/bench_compress.py                    # prints the table
    python benchmarks/bench_compress.py --write            # also appends to RESULTS_compress.md

Times: the median of the timed calls after one warm-up call. The energies and forces of every
method are compared with the uncompressed model's (max abs, eV/atom and eV/A).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_infer as bi  # noqa: E402  (same model, boxes, timing and RSS helpers)
from _machine import machine  # noqa: E402

REPO = bi.REPO
METHODS = ("jit", "jit_compressed", "predictor", "predictor_compressed", "tf_compressed", "tf")
STRIDE, EXTRAPOLATE, ORDER = 0.01, 5, 5  # dp compress takes an integer -e


def prepare(workdir: str, want_tf: bool) -> dict:
    """bench_infer's water.dp (plus min_nbor_dist), its frozen model, the compressed frozen model,
    and DeePMD-kit's .pb and compressed .pb; reused if present."""
    import numpy as np

    paths = bi.prepare(workdir, want_tf=False)
    paths.update(frozen_c=os.path.join(workdir, "water_compressed"), pb=os.path.join(workdir, "water.pb"),
                 pb_c=os.path.join(workdir, "water_compressed.pb"))
    if True:  # frozen again every run: a graph frozen by older code would measure the older graph
        from deepmd_paddle.model.tabulate import compress_model
        from deepmd_paddle.io.frozen import freeze, load_model
        from deepmd_paddle.io.dp_format import save_dp

        model = load_model(paths["dp"])
        if getattr(model, "min_nbor_dist", None) is None:  # the frame's smallest distance, stored for dp compress
            _, _, _, mind = model.descriptor.env_mat_raw(*bi._tensors(*bi.water(1)))
            model.min_nbor_dist = float(np.min(mind.numpy()))
            save_dp(model, paths["dp"])
            model = load_model(paths["dp"])
        compress_model(model, STRIDE, EXTRAPOLATE, ORDER)
        freeze(model, paths["frozen_c"])
    if want_tf:
        # DeePMD-kit 3.2's convert-backend stores {"model": ...} as the graph's training script, and
        # `dp --tf compress` then fails (learning_rate.start_lr missing): complete it first
        script = os.path.join(workdir, "dp_input.json")
        with open(script, "w") as f:
            json.dump({"model": bi.WATER_MODEL, "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-8,
                                                                  "decay_steps": 100},
                       "loss": {"type": "ener"},
                       "training": {"training_data": {"systems": [bi.WATER], "batch_size": 1}, "numb_steps": 0}}, f)
        fixed = os.path.join(workdir, "water_script.pb")
        steps = ((paths["pb"], [bi.DPKIT_DP, "convert-backend", paths["dp"], paths["pb"]]),
                 (fixed, [bi.DPKIT_PYTHON, os.path.abspath(__file__), "--fix-pb", paths["pb"], fixed, script]),
                 (paths["pb_c"], [bi.DPKIT_DP, "--tf", "compress", "-i", fixed, "-o", paths["pb_c"],
                                  "-s", str(STRIDE), "-e", str(EXTRAPOLATE)]))
        for dst, cmd in steps:
            if not os.path.exists(dst):
                out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
                if out.returncode:
                    sys.stderr.write(out.stderr[-2500:])
    return paths


def fix_pb(src: str, dst: str, script: str) -> None:
    """Copy a TF graph with its training script replaced by ``script`` (model section kept)."""
    import tensorflow.compat.v1 as tf

    gd = tf.GraphDef()
    with open(src, "rb") as f:
        gd.ParseFromString(f.read())
    with open(script) as f:
        full = json.load(f)
    for node in gd.node:
        if node.name == "train_attr/training_script":
            full["model"] = json.loads(node.attr["value"].tensor.string_val[0])["model"]
            node.attr["value"].tensor.string_val[0] = json.dumps(full).encode()
    with open(dst, "wb") as f:
        f.write(gd.SerializeToString())


def worker(method: str, rep: int, paths: dict, min_time: float, max_calls: int, workdir: str) -> dict:
    import numpy as np

    coord, box, atype = bi.water(rep)
    n = coord.shape[1]
    if method.startswith("tf"):
        from deepmd.infer import DeepPot
        dp = DeepPot(paths["pb_c"] if method == "tf_compressed" else paths["pb"])
    else:
        from deepmd_paddle.infer import DeepPot
        backend, _, compressed = method.partition("_")
        dp = DeepPot(paths["frozen_c"] if compressed else paths["frozen"], backend=backend)
    base = bi.peak_rss_mb()
    t0 = time.perf_counter()
    e, f, v = dp.eval(coord, box, atype)
    first = time.perf_counter() - t0
    times, start = [], time.perf_counter()
    while not times or (time.perf_counter() - start < min_time and len(times) < max_calls):
        t0 = time.perf_counter()
        e, f, v = dp.eval(coord, box, atype)
        times.append(time.perf_counter() - t0)
    np.savez(os.path.join(workdir, f"out_{method}_{rep}.npz"), e=np.ravel(e), f=np.asarray(f).reshape(-1, 3))
    return {"method": method, "natoms": n, "calls": len(times), "us_per_atom": float(np.median(times)) / n * 1e6,
            "first_s": first, "peak_rss_mb": bi.peak_rss_mb(), "base_rss_mb": base}


def run(method: str, rep: int, paths: dict, args) -> dict | None:
    return bi.run(method, rep, paths, args, script=__file__, extra=("--workdir", args.workdir))


def errors(workdir: str, method: str, rep: int) -> str:
    """max |dE|/atom, max |dF| against our uncompressed model."""
    import numpy as np

    try:
        a = np.load(os.path.join(workdir, f"out_jit_{rep}.npz"))
        b = np.load(os.path.join(workdir, f"out_{method}_{rep}.npz"))
    except OSError:
        return ""
    n = a["f"].shape[0]
    return f"{np.abs(a['e'] - b['e']).max() / n:.1e} / {np.abs(a['f'] - b['f']).max():.1e}"


def accuracy(models: list, nframes: int = 4) -> list:
    """Compressed vs uncompressed (dynamic models, float64) on the first frames of water data_3:
    max |dE|/atom and max |dF|, for orders 5 and 3 at stride 0.01 and 5 at 0.1."""
    import numpy as np
    import paddle

    from deepmd_paddle.model.tabulate import compress_model
    from deepmd_paddle.io.load import load_model

    data = os.path.join(os.path.dirname(bi.WATER), "data_3", "set.000")
    coord = paddle.to_tensor(np.load(os.path.join(data, "coord.npy"))[:nframes].reshape(nframes, -1, 3))
    box = paddle.to_tensor(np.load(os.path.join(data, "box.npy"))[:nframes])
    atype = np.loadtxt(os.path.join(os.path.dirname(data), "type.raw"), dtype=np.int32)
    atype = paddle.to_tensor(np.tile(atype, (nframes, 1)))
    lines = ["| model | order | stride | max dE/atom (eV) | max dF (eV/A) | out-of-range inputs |", "| --- | --- | --- | --- | --- | --- |"]
    from deepmd_paddle.cli.model import min_nbor_dist_from_input

    for path in models:
        base = load_model(path)
        mnd = None  # the model's own, else the water training data's (configs/water_se_e2_a.json systems)
        if getattr(base, "min_nbor_dist", None) is None:
            mnd = min_nbor_dist_from_input(os.path.join(REPO, "configs", "water_se_e2_a.json"), base.descriptor.rcut,
                                           base.type_map)
        ref = base(coord, atype, box)
        for order, stride in ((5, 0.01), (3, 0.01), (5, 0.1), (3, 0.1)):
            model = compress_model(load_model(path), stride, 5, order, min_nbor_dist=mnd)
            out = model(coord, atype, box)
            de = np.abs(out["energy"].numpy() - ref["energy"].numpy()).max() / coord.shape[1]
            df = np.abs(out["force"].numpy() - ref["force"].numpy()).max()
            lines.append(f"| {os.path.basename(path.rstrip('/'))} | {order} | {stride} | {de:.1e} | {df:.1e} | "
                         f"{model.descriptor.tabulation.n_out_of_range} |")
            print(lines[-1], flush=True)
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, nargs="+", default=[2, 4], help="replications per box edge (n = 192 r^3)")
    ap.add_argument("--methods", nargs="+", default=["jit", "jit_compressed", "tf_compressed"], choices=METHODS)
    ap.add_argument("--min-time", type=float, default=5.0)
    ap.add_argument("--max-calls", type=int, default=10)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "deepmd_paddle_bench_compress"))
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS_compress.md")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--fix-pb", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--accuracy", nargs="+", metavar="MODEL",
                    help="instead of timing: compressed vs uncompressed errors of these models on water data_3")
    args = ap.parse_args()
    if args.fix_pb:
        fix_pb(*args.fix_pb)
        return
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), json.loads(args.worker[2]),
                                args.min_time, args.max_calls, args.workdir)))
        return
    if args.accuracy:
        lines = accuracy(args.accuracy)
        if args.write:
            write(lines, args)
        return
    os.makedirs(args.workdir, exist_ok=True)
    have_tf = any(m.startswith("tf") for m in args.methods) and os.path.exists(bi.DPKIT_PYTHON)
    paths = prepare(args.workdir, have_tf)
    methods = [m for m in args.methods if not m.startswith("tf") or have_tf]
    lines = ["| atoms | method | us/atom/step | uncompressed (same backend) / this | tf_compressed / this | peak RSS MB (base) | "
             "max dE/atom / max dF vs uncompressed | calls |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    print("\n".join(lines), flush=True)
    for rep in args.reps:
        row = {m: run(m, rep, paths, args) for m in methods}
        tfc = row.get("tf_compressed")
        for m in methods:
            r, ref = row[m], row.get(m.partition("_")[0])  # the uncompressed model of the same backend
            if r is None:
                line = f"| {192 * rep ** 3:,} | {m} | failed | | | | | |"
            else:
                sp = f"{ref['us_per_atom'] / r['us_per_atom']:.2f}" if ref else ""
                st = f"{tfc['us_per_atom'] / r['us_per_atom']:.2f}" if tfc else ""
                err = errors(args.workdir, m, rep) if m != "jit" else ""
                line = (f"| {r['natoms']:,} | {m} | {r['us_per_atom']:.1f} | {sp} | {st} | "
                        f"{r['peak_rss_mb']:.0f} ({r['base_rss_mb']:.0f}) | {err} | {r['calls']} |")
            lines.append(line)
            print(line, flush=True)
    if args.write:
        write(lines, args)


def write(lines: list, args) -> None:
    load = os.getloadavg()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    what = "" if args.accuracy else (f"{args.threads} threads per method; tables: -s {STRIDE} -e {EXTRAPOLATE} "
                                     f"--order {ORDER}; ")
    head = [f"`python benchmarks/bench_compress.py {' '.join(sys.argv[1:])}` on {when}; {machine()}; {what}"
            f"load average after the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.", ""]
    path = os.path.join(REPO, "benchmarks", "RESULTS_compress.md")
    with open(path, "a") as f:
        f.write("\n".join(head + lines) + "\n\n")
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
