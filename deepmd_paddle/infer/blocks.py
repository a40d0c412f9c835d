"""Frames larger than a call's atom budget, evaluated in blocks of centre atoms: the neighbour
list is built once for the frame (by the caller), each block's energy and its share of forces
and virials come from a runner's ``lower`` (``EnergyModel.forward_lower``), and the shares add
up. ``DeepPot`` uses it for frames over its budget, the LAMMPS pair style for every step (its
local atoms are the centres, its ghost atoms the periodic images)."""
from __future__ import annotations

import numpy as np


def lower_in_blocks(lower, coord, atype, nlist, shift, budget: int, fparam=None, aparam=None) -> dict:
    """{atom_energy nf x nc x 1, energy nf x 1, force nf x nall x 3, virial nf x 9, atom_virial
    nf x nall x 9}: ``lower`` over blocks of at most ``budget`` of the nc centre atoms
    0..nc-1 (nlist nf x nc x nnei, shift nf x nc x nnei x 3; None: no shifts). fparam nf x nfp and
    aparam nf x nc x nap (the centre atoms'), when the model takes them."""
    nf, nall = atype.shape
    nc = nlist.shape[1]
    out = {"atom_energy": np.empty([nf, nc, 1]), "force": np.zeros([nf, nall, 3]), "virial": np.zeros([nf, 9]),
           "atom_virial": np.zeros([nf, nall, 9])}
    zeros = None
    for c in range(0, nc, budget):
        centre = np.arange(c, min(nc, c + budget), dtype=np.int64)
        if shift is None:
            if zeros is None or zeros.shape[1] != len(centre):
                zeros = np.zeros([nf, len(centre), nlist.shape[2], 3])
            sh = zeros
        else:
            sh = np.ascontiguousarray(shift[:, centre])
        ap = None if aparam is None else np.ascontiguousarray(aparam[:, centre])
        res = lower(coord, atype, np.ascontiguousarray(nlist[:, centre]), sh, centre, fparam, ap)
        out["atom_energy"][:, centre] = res["atom_energy"].reshape(nf, len(centre), 1)
        for key in ("force", "virial", "atom_virial"):
            out[key] += res[key].reshape(out[key].shape)
    out["energy"] = out["atom_energy"].sum(axis=1)
    return out


def descriptor_in_blocks(desc, coord, atype, nlist, shift, budget: int, ndesc: int) -> np.ndarray:
    """The descriptor of the centre atoms 0..nc-1 (nf x nc x ndesc), ``budget`` centres per call."""
    nf, nc = nlist.shape[0], nlist.shape[1]
    out = np.empty([nf, nc, ndesc])
    for c in range(0, nc, budget):
        centre = np.arange(c, min(nc, c + budget), dtype=np.int64)
        out[:, centre] = desc(coord, atype, np.ascontiguousarray(nlist[:, centre]),
                              np.ascontiguousarray(shift[:, centre]), centre)
    return out
