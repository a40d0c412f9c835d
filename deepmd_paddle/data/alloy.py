"""A five-element data set the package makes itself: FCC Cu-Ag-Au-Ni-Pd labelled by ASE's EMT.

32-atom cubic FCC cells (2x2x2) of five compositions (``COMPOSITIONS``: near-equiatomic, and
rich in Cu, Ni, Pd or Ag+Au), sites assigned at random for every trajectory, the lattice constant
from Vegard's rule over EMT's elemental ones (``LATTICE``), then Langevin MD at 300, 700 and
1100 K under a random strain of up to 2 % per component (``demo.label_md``, as the copper demo).
One system per composition (atoms ordered by type); validation trajectories are separate runs.
Labels: energy, forces, virial (``-V * stress``, DeePMD-kit's sign). Everything follows from
``seed``. Defaults: 5 compositions x 3 temperatures x (2 training + 1 validation) trajectories
of 10 frames: 300 training and 150 validation frames, about 20 s of EMT on one core.

    python -m deepmd_paddle.data.alloy -o configs/alloy_data   # then: dpp train configs/alloy_type_embedding.json
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from .demo import label_md, write_system

TYPE_MAP = ["Cu", "Ag", "Au", "Ni", "Pd"]
LATTICE = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89}  # FCC lattice constants, A
COMPOSITIONS = {  # atoms of each type_map element in the 32-atom cell
    "equi": (7, 7, 6, 6, 6),
    "cu_rich": (16, 4, 4, 4, 4),
    "ni_rich": (4, 4, 4, 16, 4),
    "pd_rich": (4, 4, 4, 4, 16),
    "agau_rich": (4, 10, 10, 4, 4),
}
TEMPERATURES = (300.0, 700.0, 1100.0)


def _cell(rng, counts):
    """A 32-atom FCC cell of the given composition, sites at random, atoms ordered by type."""
    from ase.build import bulk

    symbols = np.repeat(TYPE_MAP, counts)
    a = float(np.dot(counts, [LATTICE[s] for s in TYPE_MAP]) / np.sum(counts))  # Vegard
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 2, 2))
    if len(atoms) != len(symbols):
        raise ValueError(f"a composition must count {len(atoms)} atoms, got {counts}")
    atoms.positions = atoms.positions[rng.permutation(len(atoms))]  # random sites, types stay sorted
    atoms.set_chemical_symbols(symbols.tolist())
    return atoms


def make_alloy(outdir: str, seed: int = 7, compositions: dict | None = None, temperatures=TEMPERATURES,
               segments: int = 2, valid_segments: int = 1, frames_per_segment: int = 10, every: int = 5) -> dict:
    """Write ``outdir/train/<name>`` and ``outdir/valid/<name>`` per composition; returns
    ``{"train": outdir/train, "valid": outdir/valid, "n_train": frames, "n_valid": frames}``."""
    compositions = COMPOSITIONS if compositions is None else compositions
    rng = np.random.default_rng(seed)
    total = {"train": 0, "valid": 0}
    for name, counts in compositions.items():
        for part, count in (("train", segments), ("valid", valid_segments)):
            segs = [label_md(_cell(rng, counts), rng, t, frames_per_segment, every, TYPE_MAP)
                    for t in temperatures for _ in range(count)]
            if not segs:
                continue
            arrays = {k: np.concatenate([s[0][k] for s in segs]) for k in segs[0][0]}
            write_system(os.path.join(outdir, part, name), arrays, segs[0][1], TYPE_MAP)
            total[part] += len(arrays["energy"])
    return {"train": os.path.join(outdir, "train"), "valid": os.path.join(outdir, "valid"),
            "n_train": total["train"], "n_valid": total["valid"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepmd_paddle.data.alloy", description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", default="alloy_data", help="output folder (default alloy_data)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--frames", type=int, default=10, help="frames per trajectory (default 10)")
    args = p.parse_args(argv)
    out = make_alloy(args.output, seed=args.seed, frames_per_segment=args.frames)
    print(f"wrote {out['n_train']} training frames to {out['train']} and {out['n_valid']} validation frames "
          f"to {out['valid']} (type_map {TYPE_MAP})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
