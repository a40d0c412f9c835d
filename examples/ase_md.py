"""Molecular dynamics of liquid water with the ASE calculator ``deepmd_paddle.calculator.DP``.

64 H2O (192 atoms, frame 0 of ../shared/data/water/data_0, box 12.44 A), velocities drawn at
300 K, optionally ``--equilibrate`` Langevin steps at that temperature (the DFT frame is not at
equilibrium for the model), then NVE (velocity Verlet) or NVT (Langevin) steps. In NVE the
total energy must stay constant: the script reports its drift per atom (the slope of a
straight-line fit, and the largest excursion from the start of the run).

    python examples/ase_md.py                                   # NVE, 1,000 steps of 0.5 fs
    python examples/ase_md.py --equilibrate 400                 # after 200 fs of NVT at 300 K
    python examples/ase_md.py --model frozen_model.pb --ensemble nvt --steps 20000
    python examples/ase_md.py --freeze                          # freeze the .dp first (faster)

``--model`` takes anything ``deepmd_paddle.infer.DeepPot`` reads: a frozen model, a training
checkpoint or a DeePMD-kit .dp file (default: DeePMD-kit's reference water model in ../shared).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED = os.path.join(os.path.dirname(REPO), "shared")
DEFAULT_MODEL = os.path.join(SHARED, "reference", "deepmd-kit", "water_se_e2_a_two_side.dp")
WATER = os.path.join(SHARED, "data", "water", "data_0")


def water_box(path: str = WATER):
    from ase import Atoms

    coord = np.load(os.path.join(path, "set.000", "coord.npy"))[0].reshape(-1, 3)
    cell = np.load(os.path.join(path, "set.000", "box.npy"))[0].reshape(3, 3)
    types = np.loadtxt(os.path.join(path, "type.raw"), dtype=int)
    with open(os.path.join(path, "type_map.raw")) as f:
        names = f.read().split()
    atoms = Atoms([names[t] for t in types], positions=coord, cell=cell, pbc=True)
    atoms.wrap()
    return atoms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--freeze", action="store_true", help="freeze --model first and run the frozen model")
    ap.add_argument("--ensemble", choices=["nve", "nvt"], default="nve")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--equilibrate", type=int, default=0, help="Langevin steps at --temperature before the run")
    ap.add_argument("--dt", type=float, default=0.5, help="time step, fs")
    ap.add_argument("--temperature", type=float, default=300.0, help="K: initial velocities, NVT target")
    ap.add_argument("--friction", type=float, default=0.01, help="NVT Langevin friction, 1/fs")
    ap.add_argument("--every", type=int, default=10, help="log every N steps")
    ap.add_argument("--log", default="md.log")
    ap.add_argument("--traj", default=None, help="ASE trajectory file (optional)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    from ase import units
    from ase.md.langevin import Langevin
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    from deepmd_paddle.calculator import DP

    model = args.model
    if args.freeze:
        from deepmd_paddle.io.frozen import freeze

        model = os.path.splitext(os.path.basename(args.model))[0] + "_frozen.pb"
        freeze(args.model, model)
    atoms = water_box()
    atoms.calc = DP(model)
    rng = np.random.default_rng(args.seed)
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution  # ASE >= 3.27 / older
    thermalize(atoms, temperature_K=args.temperature, rng=rng)
    vd.Stationary(atoms)
    dt = args.dt * units.fs
    if args.equilibrate:
        Langevin(atoms, dt, temperature_K=args.temperature, friction=args.friction / units.fs, rng=rng).run(args.equilibrate)
    if args.ensemble == "nve":
        dyn = VelocityVerlet(atoms, dt)
    else:
        dyn = Langevin(atoms, dt, temperature_K=args.temperature, friction=args.friction / units.fs, rng=rng)
    if args.traj:
        from ase.io.trajectory import Trajectory

        dyn.attach(Trajectory(args.traj, "w", atoms).write, interval=args.every)
    n = len(atoms)
    rows = []
    start = time.perf_counter()

    def record():
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        rows.append((dyn.nsteps * args.dt, epot, ekin, epot + ekin, atoms.get_temperature()))
        line = f"{rows[-1][0]:10.1f} {epot:16.6f} {ekin:12.6f} {epot + ekin:16.6f} {rows[-1][4]:9.2f}"
        log.write(line + "\n")
        log.flush()

    with open(args.log, "w") as log:
        log.write(f"# {args.ensemble.upper()} water, {n} atoms, dt {args.dt} fs, model {model}, "
                  f"after {args.equilibrate} NVT steps\n")
        log.write(f"# {'time_fs':>8} {'Epot_eV':>16} {'Ekin_eV':>12} {'Etot_eV':>16} {'T_K':>9}\n")
        dyn.attach(record, interval=args.every)
        dyn.run(args.steps)
    wall = time.perf_counter() - start
    t, epot, ekin, etot, temp = (np.array(c) for c in zip(*rows))
    slope = np.polyfit(t / 1000.0, etot / n, 1)[0]  # eV/atom/ps
    excursion = np.abs(etot - etot[0]).max() / n
    print(f"{args.ensemble.upper()} {args.steps} steps x {args.dt} fs, {n} atoms, {wall:.0f} s "
          f"({wall / args.steps / n * 1e6:.0f} us/atom/step); T {temp.mean():.0f} +- {temp.std():.0f} K")
    if args.ensemble == "nve":
        print(f"total energy drift: {slope:+.2e} eV/atom/ps (fit), {slope * t[-1] / 1000:+.2e} eV/atom over the run; "
              f"largest |Etot - Etot(0)|/N: {excursion:.2e} eV/atom")
    return {"drift_per_ps": slope, "excursion": excursion, "wall": wall}


if __name__ == "__main__":
    main()
