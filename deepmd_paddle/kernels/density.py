"""A bound on the work of the neighbour search, checked before it starts.

In a periodic box the search visits (periodic images x atoms) candidates for each atom, a few
times the expected number of neighbours within rcut, ``nloc x (4/3) pi rcut^3 / volume``. Dense
matter has ~0.1 atoms/A^3, ~100 neighbours at rcut = 6 A; coordinates and box in nm instead of
Angstrom are 1000x denser, and a 0.12 A box asked for millions (the search hung for minutes).
"""
from __future__ import annotations

import numpy as np

MAX_NEIGHBORS = 2e4  # expected neighbours per atom that the search accepts


def check_density(nloc: int, volume: np.ndarray, rcut: float, where) -> None:
    """Raise ValueError naming ``where(f)`` for the first frame (``volume``: nf, A^3) whose density
    asks for more than ``MAX_NEIGHBORS`` neighbours per atom within ``rcut``."""
    volume = np.abs(np.asarray(volume, dtype=np.float64))
    nnei = nloc / volume * (4.0 / 3.0 * np.pi * rcut ** 3)
    f = int(np.argmax(nnei))
    if nnei[f] > MAX_NEIGHBORS:
        raise ValueError(
            f"box of {where(f)} holds {nloc} atoms in {volume[f]:.4g} A^3 ({nloc / volume[f]:.3g} atoms/A^3, dense "
            f"matter ~0.1): about {nnei[f]:.3g} neighbours per atom within rcut = {rcut} A (at most "
            f"{MAX_NEIGHBORS:.0e}); are the coordinates and box in Angstrom? (in nm they are 1000x too dense)")
