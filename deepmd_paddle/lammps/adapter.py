"""The model side of the LAMMPS pair style: what ``src/bridge.cpp`` calls each step.

``LammpsModel(path, elements)`` loads a model with ``DeepPot`` and maps LAMMPS types to model
types; ``compute`` receives the addresses of LAMMPS's arrays, views them with numpy and runs the
``lower`` program (``EnergyModel.forward_lower``, through ``infer.blocks``) with the local atoms as centres::

    coord [1, nall, 3] (local + ghost atoms), atype [1, nall], nlist [1, nc, nnei],
    shift = 0 (the ghosts are the periodic images), centre = the block's local atoms
    -> atom_energy [1, nc, 1], force [1, nall, 3], virial [1, 9], atom_virial [1, nall, 9]

E = sum of the local atoms' energies; the forces on ghost atoms go back to LAMMPS, which adds
them to their owners (reverse communication), so every pair term counts once over all ranks.
The model's virial is ``W[a][b] = -sum_ij g_a r_b`` (``g = dE/dr_ij``): with ``F = -g`` the force
on neighbour j, ``W[a][b] = sum F_a r_b``, DeePMD-kit's sign, which is LAMMPS's. LAMMPS's
``xy = sum r_x F_y`` is ``W[1][0]``: its xx yy zz xy xz yz (global and per atom; a per-atom
virial is not symmetric) are indices 0 4 8 3 6 7 of the row-major 3 x 3.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from .. import runtime
from ..infer import DeepPot
from ..infer.blocks import lower_in_blocks
from ..io.frozen import frozen_prefix

LAMMPS_VIRIAL = [0, 4, 8, 3, 6, 7]  # LAMMPS's xx yy zz xy xz yz in the model's row-major 3 x 3


def _view(addr: int, n: int, ctype, shape):
    """numpy view of the n values at address addr (no copy)."""
    if n == 0:
        return np.zeros(shape, dtype=np.dtype(ctype))
    return np.ctypeslib.as_array((ctype * n).from_address(addr)).reshape(shape)


class LammpsModel:
    """A model for ``pair_style deepmd/paddle PATH`` + ``pair_coeff * * ELEMENTS``."""

    def __init__(self, path: str, elements: str, backend: str | None = None):
        if frozen_prefix(path) is None and not os.path.exists(path):
            raise FileNotFoundError(f"model file {path!r} does not exist (a frozen model from `dpp freeze`, "
                                    "a checkpoint, or a DeePMD-kit .dp/.yaml/.pb file)")
        runtime.share_cores()  # several ranks on one machine split its cores
        self.dp = DeepPot(path, backend=backend)
        type_map = self.dp.get_type_map()
        names = elements.split()
        unknown = [n for n in names if n not in type_map]
        if unknown:
            raise ValueError(f"pair_coeff element(s) {unknown} are not in the model's type map; allowed: {type_map}")
        self.types = [type_map.index(n) for n in names]
        self.nnei = sum(self.dp.get_sel())

    def info(self):
        """(rcut, sel, model type of each LAMMPS type) for the pair style."""
        return self.dp.get_rcut(), list(self.dp.get_sel()), list(self.types)

    def compute(self, nloc, nall, x, atype, nlist, nnei, f, eatom, vatom, out):
        """Add forces (and per-atom energy/virial when their addresses are not 0) to LAMMPS's
        arrays; out[0] = energy, out[1:7] = virial (xx yy zz xy xz yz). Addresses are ints (see the
        module docstring)."""
        out_e = _view(out, 7, ctypes.c_double, [7])
        out_e[:] = 0.0
        if nloc == 0:
            return
        if nnei != self.nnei:
            raise ValueError(f"the pair style passed {nnei} neighbour slots, the model has {self.nnei}")
        coord = _view(x, nall * 3, ctypes.c_double, [1, nall, 3])
        types = _view(atype, nall, ctypes.c_int32, [1, nall])
        nl = _view(nlist, nloc * nnei, ctypes.c_int32, [1, nloc, nnei])
        force = _view(f, nall * 3, ctypes.c_double, [nall, 3])
        e_atom = _view(eatom, nall, ctypes.c_double, [nall]) if eatom else None
        v_atom = _view(vatom, nall * 6, ctypes.c_double, [nall, 6]) if vatom else None
        res = lower_in_blocks(self.dp.runner_for(nloc).lower, coord, types, nl, None, self.dp.atom_budget)
        out_e[0] = res["energy"].sum()
        out_e[1:] = res["virial"].reshape(9)[LAMMPS_VIRIAL]
        force += res["force"].reshape(nall, 3)
        if e_atom is not None:
            e_atom[:nloc] += res["atom_energy"].reshape(-1)
        if v_atom is not None:
            v_atom += res["atom_virial"].reshape(nall, 9)[:, LAMMPS_VIRIAL]
