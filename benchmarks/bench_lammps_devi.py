"""Cost of model deviation in LAMMPS: seconds per MD step with 1 model, 4 models (deviation every
step) and 4 models with out_freq 10, from LAMMPS's loop time (`lmp`, the plugin found through
LAMMPS_PLUGIN_PATH), on water (the 192-atom reference frame replicated) with the DeePMD-kit
reference water model of ../shared and three copies whose fitting nets are perturbed.
Printed: s/step of each run and its ratio to the 1-model run (4 models every step: ideally 4).

    python benchmarks/bench_lammps_devi.py                 # 1,536 atoms, 20 steps, 1 rank
    python benchmarks/bench_lammps_devi.py --rep 1 --steps 40 --np 2
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "reference", "deepmd-kit")
sys.path.insert(0, REPO)

INPUT = """units metal
atom_style atomic
read_data water.data
pair_style deepmd {models} out_freq {freq} out_file devi.out
pair_coeff * * O H
velocity all create 330 4928 mom yes rot yes dist gaussian
timestep 0.0005
fix 1 all nve
thermo {steps}
run 0
run {steps}
"""


def prepare(tmp: str, rep: int) -> list[str]:
    from deepmd_paddle.io.dp_format import load_dp, save_dp
    from deepmd_paddle.lammps.data import write_data

    ref = np.load(os.path.join(SHARED, "water_se_e2_a_two_side_ref.npz"))
    coord, cell = ref["coord"][0].reshape(-1, 3).astype(np.float64), ref["cell"][0].reshape(3, 3).astype(np.float64)
    shifts = [np.array([i, j, k]) @ cell for i in range(rep) for j in range(rep) for k in range(rep)]
    write_data(os.path.join(tmp, "water.data"), np.concatenate([coord + s for s in shifts]), cell * rep,
               np.tile(ref["atype"], len(shifts)), ["O", "H"])
    models = [os.path.join(SHARED, "water_se_e2_a_two_side.dp")]
    for seed in range(3):
        m = load_dp(models[0])
        rng = np.random.default_rng(seed)
        for p in m.fitting.parameters():
            p.set_value(p.numpy() * (1 + 0.05 * rng.standard_normal(p.shape)))
        models.append(os.path.join(tmp, f"m{seed}.dp"))
        save_dp(m, models[-1])
    return models


def run(tmp: str, models: list[str], freq: int, steps: int, nproc: int, plugin_dir: str) -> float:
    with open(os.path.join(tmp, "in.bench"), "w") as f:
        f.write(INPUT.format(models=" ".join(models), freq=freq, steps=steps))
    lmp = os.path.join(os.path.dirname(sys.executable), "lmp")
    cmd = [lmp, "-in", "in.bench", "-log", "none", "-nocite"]
    if nproc > 1:
        cmd = [shutil.which("mpirun", path=os.path.dirname(sys.executable)) or "mpirun", "-np", str(nproc)] + cmd
    env = dict(os.environ, LAMMPS_PLUGIN_PATH=plugin_dir, PYTHONPATH=REPO)
    out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env, check=True).stdout
    loops = re.findall(r"Loop time of ([0-9.eE+-]+) on", out)
    return float(loops[-1]) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rep", type=int, default=2, help="replicas of the 192-atom box per direction")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--np", type=int, default=1, help="MPI ranks")
    args = ap.parse_args()
    from deepmd_paddle.lammps.build import build_plugin

    plugin_dir = str(build_plugin().parent)
    with tempfile.TemporaryDirectory(prefix="bench_devi_") as tmp:
        models = prepare(tmp, args.rep)
        natoms = 192 * args.rep**3
        one = run(tmp, models[:1], 0, args.steps, args.np, plugin_dir)
        print(f"{natoms} atoms, {args.np} rank(s), {args.steps} steps")
        print(f"1 model:                   {one:.4f} s/step  1.00")
        for freq in (1, 10):
            t = run(tmp, models, freq, args.steps, args.np, plugin_dir)
            print(f"4 models, out_freq {freq:<2d}:     {t:.4f} s/step  {t / one:.2f}")


if __name__ == "__main__":
    main()
