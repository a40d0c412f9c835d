"""Write a LAMMPS data file from a frame of a DeePMD system folder, optionally replicated.

    python make_data.py ../../../shared/data/water/data_0 water.data              # 192 atoms
    python make_data.py ../../../shared/data/water/data_0 water_1536.data -r 2 2 2
"""
import argparse
import glob
import os

import numpy as np

from deepmd_paddle.lammps.data import write_data


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("system", help="DeePMD system folder (type.raw, type_map.raw, set.*/coord.npy, box.npy)")
    p.add_argument("output", help="LAMMPS data file to write")
    p.add_argument("-f", "--frame", type=int, default=0, help="frame index in the first set (default 0)")
    p.add_argument("-r", "--replicate", type=int, nargs=3, default=[1, 1, 1], metavar=("NA", "NB", "NC"))
    a = p.parse_args()
    atype = np.loadtxt(os.path.join(a.system, "type.raw"), dtype=np.int32).reshape(-1)
    type_map = open(os.path.join(a.system, "type_map.raw")).read().split()
    sets = sorted(glob.glob(os.path.join(a.system, "set.*")))
    coord = np.load(os.path.join(sets[0], "coord.npy"))[a.frame].reshape(-1, 3).astype(np.float64)
    cell = np.load(os.path.join(sets[0], "box.npy"))[a.frame].reshape(3, 3).astype(np.float64)
    shifts = np.array([[i, j, k] for i in range(a.replicate[0]) for j in range(a.replicate[1])
                       for k in range(a.replicate[2])]) @ cell
    coord = (coord[None] + shifts[:, None]).reshape(-1, 3)
    atype = np.tile(atype, len(shifts))
    cell = cell * np.array(a.replicate)[:, None]
    write_data(a.output, coord, cell, atype, type_map)
    print(f"wrote {a.output}: {len(atype)} atoms, types {type_map}")


if __name__ == "__main__":
    main()
