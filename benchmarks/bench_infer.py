"""Inference speed as in MD: one frame per call, energy + forces + virial; nets in float64 or float32.

Water (frame 0 of ../shared/data/water/data_0, 192 atoms, box 12.44 A) replicated to 192,
1,536, 12,288 and 98,304 atoms; the standard water model shape (examples/water/se_e2_a:
sel [46, 92], rcut 6, embedding [25, 50, 100], axis 16, fitting [240, 240, 240]) with random
weights, written as a DeePMD-kit .dp file so that DeePMD-kit evaluates the same model.
``--precision float32`` sets both nets' ``precision`` in that file: our frozen model runs its nets
in float32, and DeePMD-kit's ``dp convert-backend`` builds its TensorFlow graph with float32 nets
from the same file (coordinates in, energies, forces and virials out in float64 in both codes).

Methods, each (method, size) in its own process so that its peak RSS is its own:
  dynamic    DeepPot on the .dp file: the EnergyModel in dynamic mode
  jit        DeepPot on the frozen model (dpp freeze, C++ operator graph), paddle.jit.load (default)
  predictor  the same frozen model through paddle.inference
  tf         DeePMD-kit's DeepPot on the .pb converted with `dp convert-backend` (TensorFlow),
             through $DPKIT_PYTHON (default /work/dpkit/bin/python), when installed

    python benchmarks/bench_infer.py                         # everything, prints a table
    python benchmarks/bench_infer.py --reps 1 2 --methods predictor tf
    python benchmarks/bench_infer.py --profile               # where the time goes, per stage
    python benchmarks/bench_infer.py --write                 # also store RESULTS_infer.md
    python benchmarks/bench_infer.py --precision float32     # both codes' nets in float32

Frames above the atom budget ($DEEPMD_PADDLE_ATOM_BUDGET, DeepPot's default) are evaluated in
blocks of centre atoms. Times: the median of the timed calls after one warm-up call. Quote
ratios measured side by side: absolute times drift between runs and machines.
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
from _machine import machine as _machine, peak_rss_mb  # noqa: E402,F401  (benchmarks/ is on sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
WATER = os.path.join(os.path.dirname(REPO), "shared", "data", "water", "data_0")
DPKIT_PYTHON = os.environ.get("DPKIT_PYTHON", "/work/dpkit/bin/python")
DPKIT_DP = os.path.join(os.path.dirname(DPKIT_PYTHON), "dp")
METHODS = ("dynamic", "jit", "predictor", "tf")
WATER_MODEL = {
    "type_map": ["O", "H"],
    "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5, "neuron": [25, 50, 100],
                   "axis_neuron": 16, "type_one_side": False, "resnet_dt": False, "seed": 1},
    "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "seed": 1},
}


def water(rep: int):
    """Frame 0 of data_0 replicated rep x rep x rep: coord [1, n, 3], box [1, 9], atype [n]."""
    import numpy as np

    coord = np.load(os.path.join(WATER, "set.000", "coord.npy"))[0].reshape(-1, 3).astype(np.float64)
    box = np.load(os.path.join(WATER, "set.000", "box.npy"))[0].reshape(3, 3).astype(np.float64)
    atype = np.loadtxt(os.path.join(WATER, "type.raw"), dtype=np.int32).reshape(-1)
    shifts = np.array([[i, j, k] for i in range(rep) for j in range(rep) for k in range(rep)]) @ box
    big = (coord[None] + shifts[:, None]).reshape(-1, 3)
    return big[None], (box * rep).reshape(1, 9), np.tile(atype, len(shifts))


# ----------------------------------------------------------------------------- preparation
def prepare(workdir: str, want_tf: bool, precision: str = "float64") -> dict:
    """water.dp (random weights, data statistics) and its .pb, reused if present; the frozen model.
    float32: water_float32.dp etc., the same weights rounded, both nets in float32."""
    import numpy as np

    tag = "" if precision == "float64" else "_" + precision
    paths = {"dp": os.path.join(workdir, f"water{tag}.dp"), "frozen": os.path.join(workdir, f"water{tag}_frozen"),
             "pb": os.path.join(workdir, f"water{tag}.pb")}
    if not os.path.exists(paths["dp"]):
        from deepmd_paddle.io.dp_format import save_dp
        from deepmd_paddle.model import EnergyModel

        from deepmd_paddle.config import normalize_model

        section = json.loads(json.dumps(WATER_MODEL))
        for part in ("descriptor", "fitting_net"):
            section[part]["precision"] = precision
        model = EnergyModel.from_config(normalize_model(section))
        env, _, _, _ = model.descriptor.env_mat_raw(*_tensors(*water(1)))  # statistics of the real frame
        env = env.numpy().reshape(-1, model.descriptor.nnei, 4)
        davg, dstd = np.zeros([2, model.descriptor.nnei, 4]), np.ones([2, model.descriptor.nnei, 4])
        davg[..., 0], dstd[..., 0], dstd[..., 1:] = env[..., 0].mean(), env[..., 0].std(), env[..., 1:].std()
        model.descriptor.set_stat(davg, dstd)
        model.fitting.set_bias([-93.5, -187.0])
        save_dp(model, paths["dp"])
    # frozen again every run: a graph frozen by older code would measure the older graph
    from deepmd_paddle.io.frozen import freeze

    freeze(paths["dp"], paths["frozen"])
    if want_tf and not os.path.exists(paths["pb"]):
        out = subprocess.run([DPKIT_DP, "convert-backend", paths["dp"], paths["pb"]], capture_output=True, text=True)
        if out.returncode:
            sys.stderr.write(out.stderr[-1500:])
    if want_tf and os.path.exists(paths["pb"]):  # DeePMD-kit's nets in `precision`: the dtype of their weights
        from deepmd_paddle.io.tf_graph import load_pb

        got = {str(p.dtype).replace("paddle.", "") for p in load_pb(paths["pb"]).parameters()}
        if got != {precision}:
            raise SystemExit(f"{paths['pb']}: DeePMD-kit's nets hold {sorted(got)} weights, not {precision}")
    return paths


def _tensors(coord, box, atype):
    import paddle

    return paddle.to_tensor(coord), paddle.to_tensor(atype[None]), paddle.to_tensor(box)


# ----------------------------------------------------------------------------- workers
def worker(method: str, rep: int, paths: dict, min_time: float, max_calls: int) -> dict:
    """Time one (method, size) in this process."""
    import numpy as np

    coord, box, atype = water(rep)
    n = coord.shape[1]
    if method == "tf":
        from deepmd.infer import DeepPot
        dp = DeepPot(paths["pb"])
    else:
        from deepmd_paddle.infer import DeepPot
        dp = DeepPot(paths["dp"]) if method == "dynamic" else DeepPot(paths["frozen"], backend=method)
    base = peak_rss_mb()  # the loaded model, before the first call
    t0 = time.perf_counter()
    e, f, v = dp.eval(coord, box, atype)  # warm-up: first calls build caches and plans
    first = time.perf_counter() - t0
    times, start = [], time.perf_counter()
    while not times or (time.perf_counter() - start < min_time and len(times) < max_calls):
        t0 = time.perf_counter()
        e, f, v = dp.eval(coord, box, atype)
        times.append(time.perf_counter() - t0)
    return {"method": method, "natoms": n, "calls": len(times), "us_per_atom": float(np.median(times)) / n * 1e6,
            "first_s": first, "peak_rss_mb": peak_rss_mb(),
            "base_rss_mb": base, "energy": float(np.ravel(e)[0]), "force_00": float(np.ravel(f)[0])}


def profile_worker(rep: int, paths: dict, repeats: int = 3) -> dict:
    """Dynamic model, stage by stage (best of ``repeats``), microseconds per atom."""
    import numpy as np
    import paddle

    from deepmd_paddle.io.dp_format import load_dp

    model = load_dp(paths["dp"]).eval()
    for p in model.parameters():  # as DeepPot does: no weight gradients in the force backward
        p.stop_gradient = True
    coord, atype, box = _tensors(*water(rep))
    n = coord.shape[1]
    stages = {}

    def tick(name, t0):
        t = time.perf_counter()
        stages.setdefault(name, []).append(t - t0)
        return t

    for _ in range(repeats + 1):
        t = time.perf_counter()
        with paddle.no_grad():
            nlist, shift, _, _ = model.descriptor.neighbor_list(coord, atype, box)
        t = tick("neighbour list", t)
        rij = model.kernels.build_rij(coord, nlist, shift, None)
        rij.stop_gradient = False
        env = model.descriptor.env_mat(rij, nlist, atype)
        t = tick("r_ij + env mat", t)
        flat, at = env.reshape([-1, model.descriptor.nnei, 4]), atype.reshape([-1])
        descs, energies = [], []
        mode = model.descriptor.embedding_path(False)  # as forward_lower picks it: the fused operator, when built
        for ti, idx in model.centre_blocks(at):
            descs.append(model.descriptor(paddle.gather(flat, idx), ti, mode))
        float(descs[-1].sum())
        t = tick("embedding + descriptor", t)
        for (ti, _), d in zip(model.centre_blocks(at), descs):
            energies.append(model.fitting(d, ti))
        total = paddle.concat(energies).sum()
        float(total)
        t = tick("fitting", t)
        (g,) = paddle.grad(total, rij)
        float(g.sum())
        t = tick("backward (paddle.grad)", t)
        force, virial, _ = model.kernels.prod_force_virial(coord, g, rij, nlist, None)
        float(force.sum() + virial.sum())
        tick("force + virial", t)
    return {"natoms": n, "mode": mode, "stages": {k: float(np.min(v[1:])) / n * 1e6 for k, v in stages.items()}}


def predictor_profile_worker(rep: int, paths: dict, calls: int = 3) -> None:
    """The frozen program under paddle.inference's profiler: it prints op totals to stdout."""
    import paddle

    from deepmd_paddle.io.frozen_file import FrozenFile
    from deepmd_paddle.kernels.build import load_library

    load_library()
    coord, box, atype = water(rep)
    with FrozenFile(paths["frozen"]).programs([""]) as prefix:  # the periodic program, unpacked for the load
        cfg = paddle.inference.Config(prefix + ".json", prefix + ".pdiparams")
        cfg.disable_onednn()
        cfg.enable_profile()
        cfg.set_cpu_math_library_num_threads(len(os.sched_getaffinity(0)))
        pred = paddle.inference.create_predictor(cfg)
    for _ in range(calls):
        for name, x in zip(["coord", "atype", "box"], [coord, atype[None], box]):
            pred.get_input_handle(name).copy_from_cpu(x)
        pred.run()


def op_shares(stdout: str) -> dict:
    """{op: ms} from the profiler's event summary (top-level events only)."""
    totals = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and (parts[0].startswith("pd_op.") or parts[0].startswith("custom_op.")):
            try:
                totals[parts[0].split(".", 1)[1]] = float(parts[2])
            except ValueError:
                pass
    return totals


# ----------------------------------------------------------------------------- driver
def run(method: str, rep: int, paths: dict, args, script: str = __file__, extra: tuple = ()) -> dict | None:
    """One (method, size) case in a fresh process of ``script`` (DeePMD-kit's python for tf*);
    the worker's last JSON line, or None with its error on stderr."""
    python = DPKIT_PYTHON if method.startswith("tf") else sys.executable
    cmd = [python, os.path.abspath(script), "--worker", method, str(rep), json.dumps(paths),
           "--min-time", str(args.min_time), "--max-calls", str(args.max_calls), *extra]
    env = dict(os.environ)
    threads = str(args.threads)
    env.update(OMP_NUM_THREADS=threads, DP_INTRA_OP_PARALLELISM_THREADS=threads, DP_INTER_OP_PARALLELISM_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    sys.stderr.write(f"{method} x {192 * rep ** 3} failed:\n{out.stderr[-2500:]}\n")
    return None


def machine() -> str:
    return _machine(with_paddle=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, nargs="+", default=[1, 2, 4, 8], help="replications per box edge (n = 192 r^3)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--min-time", type=float, default=5.0, help="seconds of timed calls per case (at least one call)")
    ap.add_argument("--max-calls", type=int, default=20)
    ap.add_argument("--tf-max-atoms", type=int, default=12288,
                    help="largest size given to DeePMD-kit TF (one frame is one graph call: memory grows with it)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="threads for every method")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "deepmd_paddle_bench_infer"))
    ap.add_argument("--profile", action="store_true", help="time the dynamic model's stages instead")
    ap.add_argument("--write", action="store_true", help="store the table in benchmarks/RESULTS_infer.md")
    ap.add_argument("--precision", choices=("float64", "float32"), default="float64",
                    help="the nets' precision in both codes (default float64)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--profile-worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--predictor-profile-worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), json.loads(args.worker[2]),
                                args.min_time, args.max_calls)))
        return
    if args.profile_worker:
        print(json.dumps(profile_worker(int(args.profile_worker[0]), json.loads(args.profile_worker[1]))))
        return
    if args.predictor_profile_worker:
        predictor_profile_worker(int(args.predictor_profile_worker[0]), json.loads(args.predictor_profile_worker[1]))
        return
    os.makedirs(args.workdir, exist_ok=True)
    have_tf = "tf" in args.methods and os.path.exists(DPKIT_PYTHON)
    paths = prepare(args.workdir, have_tf, args.precision)
    lines = []
    if args.profile:
        lines += profile_table(args.reps, paths)
    else:
        lines += timing_table(args, paths, have_tf)
    if args.write:
        import paddle

        when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        head = [f"`python benchmarks/bench_infer.py {' '.join(sys.argv[1:])}` on {when}; {machine()}; "
                f"paddle {paddle.__version__}; {args.threads} threads per method; nets in {args.precision}, one frame "
                "per call.", ""]
        path = os.path.join(REPO, "benchmarks", "RESULTS_infer.md")
        with open(path, "a") as f:
            f.write("\n".join(head + lines) + "\n\n")
        print(f"appended to {path}")


def timing_table(args, paths, have_tf) -> list[str]:
    methods = [m for m in args.methods if m != "tf" or have_tf]
    head = f"| atoms | method ({args.precision}) |"
    lines = [head + " us/atom/step | vs tf | peak RSS MB (base) | calls | first call s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    print("\n".join(lines), flush=True)
    results = {}
    for rep in args.reps:
        row = {}
        for method in methods:
            if method == "tf" and 192 * rep ** 3 > args.tf_max_atoms:
                row[method] = None
                continue
            row[method] = run(method, rep, paths, args)
        tf = row.get("tf")
        for method in methods:
            r = row[method]
            if r is None and method == "tf" and 192 * rep ** 3 > args.tf_max_atoms:
                line = f"| {192 * rep ** 3:,} | {method} | not run (--tf-max-atoms {args.tf_max_atoms}) | | | | |"
            elif r is None:
                line = f"| {192 * rep ** 3:,} | {method} | failed | | | | |"
            else:
                ratio = f"{r['us_per_atom'] / tf['us_per_atom']:.2f}" if tf and method != "tf" else ""
                line = (f"| {r['natoms']:,} | {method} | {r['us_per_atom']:.0f} | {ratio} | "
                        f"{r['peak_rss_mb']:.0f} ({r['base_rss_mb']:.0f}) | {r['calls']} | {r['first_s']:.1f} |")
                results[(method, r["natoms"])] = r
            lines.append(line)
            print(line, flush=True)
    notes = []
    for method in methods:
        sizes = sorted(n for m, n in results if m == method)
        if len(sizes) > 1:
            lo, hi = results[(method, sizes[0])], results[(method, sizes[-1])]
            notes.append(f"- {method}: us/atom at {sizes[-1]:,} atoms / at {sizes[0]:,} atoms = "
                         f"{hi['us_per_atom'] / lo['us_per_atom']:.2f}; peak RSS there {hi['peak_rss_mb'] / 1024:.1f} GB")
    for n in sorted({n for _, n in results}):
        es = {m: results[(m, n)]["energy"] for m in methods if (m, n) in results}
        spread = max(es.values()) - min(es.values()) if es else 0.0
        if spread > 1e-8 * max(abs(e) for e in es.values()):  # (float32 nets: ~1e-10 of these |E|)
            notes.append(f"- {n:,} atoms: energies differ between methods: {es}")
    print("\n".join(notes))
    return lines + [""] + notes


def profile_table(reps, paths) -> list[str]:
    lines = ["| stage | " + " | ".join(f"{192 * r ** 3:,} atoms" for r in reps) + " |",
             "| --- |" + " --- |" * len(reps)]
    cols, mode = [], None
    for rep in reps:
        cmd = [sys.executable, os.path.abspath(__file__), "--profile-worker", str(rep), json.dumps(paths)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        res = next((json.loads(x) for x in out.stdout.splitlines()[::-1] if x.startswith("{")), None)
        if res is None:
            sys.stderr.write(out.stderr[-2000:])
        cols.append(res["stages"] if res else {})
        mode = res.get("mode") if res else None
    names = list(next((c for c in cols if c), {}))
    for name in names + ["total"]:
        vals = [sum(c.values()) if name == "total" else c.get(name) for c in cols]
        lines.append(f"| {name} | " + " | ".join("" if v is None else f"{v:.1f}" for v in vals) + " |")
    lines.insert(0, f"Dynamic model (embedding mode {mode!r}), microseconds per atom per stage (best of 3 after a "
                    "warm-up):\n")
    groups = {"C++ fused embedding (se_a_embed_cached: G, dG/ds kept)": ["se_a_embed", "se_a_embed_cached"],
              "its gradient (a contraction when cached)": ["se_a_embed_grad", "se_a_embed_cached_grad"],
              "C++ D = T T<^T (se_a_descriptor, +grad)": ["se_a_descriptor", "se_a_descriptor_grad"],
              "matmul (fitting)": ["matmul"], "matmul_grad": ["matmul_grad"],
              "tanh: C++ bias_tanh (+grad), Paddle tanh (+grad)": ["bias_tanh", "bias_tanh_grad", "tanh", "tanh_",
                                                                 "tanh_grad", "tanh_grad_"],
              "add, add_grad, concat (+grad), multiply (+grad)": ["add", "add_", "add_n", "add_grad", "concat",
                                                                  "concat_grad", "multiply", "multiply_grad"],
              "C++ neighbour list + env mat (+grad)": ["deepmd_neighbor_list", "deepmd_env_mat", "deepmd_env_mat_grad"],
              "force, virial: C++ deepmd_prod_force_virial or index_add": ["deepmd_prod_force_virial", "index_add",
                                                                            "index_add_"]}
    shares = []
    for rep in reps:
        cmd = [sys.executable, os.path.abspath(__file__), "--predictor-profile-worker", str(rep), json.dumps(paths)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        shares.append(op_shares(out.stdout))
    lines += ["", "Frozen program under paddle.inference's profiler, share of operator time (3 calls):", "",
              "| operators | " + " | ".join(f"{192 * r ** 3:,} atoms" for r in reps) + " |",
              "| --- |" + " --- |" * len(reps)]
    for label, names in list(groups.items()) + [("everything else", None)]:
        vals = []
        for tot in shares:
            total = sum(tot.values()) or 1.0
            grouped = {n for ns in groups.values() for n in ns}
            part = sum(v for k, v in tot.items() if (k in names if names else k not in grouped))
            vals.append(f"{100 * part / total:.0f}%")
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
