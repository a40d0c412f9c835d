"""Initial data and starting configuration for the DP-GEN copper example.

Writes, under the folder given (default: here)::

    init/data      EMT-labelled frames of a 32-atom FCC copper cell (DeePMD npy, type_map Cu):
                   Langevin MD at 300 K from a randomly strained cell (deepmd_paddle.data.demo)
    init/POSCAR    the perfect 32-atom cell, the start of every LAMMPS exploration

    python make_init.py [FOLDER] [--frames N]
"""
import argparse
import os

import numpy as np
from ase.build import bulk
from ase.io import write

from deepmd_paddle.data.demo import label_md, write_system


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=".")
    p.add_argument("--frames", type=int, default=20, help="labelled frames (default 20)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    init = os.path.join(args.folder, "init")
    os.makedirs(init, exist_ok=True)
    write(os.path.join(init, "POSCAR"), atoms, format="vasp", direct=True)
    arrays, types = label_md(atoms.copy(), np.random.default_rng(args.seed), 300.0, args.frames, 5, ["Cu"])
    write_system(os.path.join(init, "data"), arrays, types, ["Cu"])
    print(f"{init}/data: {args.frames} EMT frames of {len(atoms)} Cu atoms; {init}/POSCAR: the start of the MD")


if __name__ == "__main__":
    main()
