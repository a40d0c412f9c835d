"""Input validation for the energy model: clear errors instead of NaNs or silent truncation.

These run eagerly (NumPy on small arrays) before the traced part of the model, so they never
enter an exported static graph.
"""
from __future__ import annotations

import warnings

import numpy as np

# two atoms closer than this are taken to overlap (the environment matrix has 1/r)
MIN_PAIR_DISTANCE = 1e-3


def check_inputs(coord, atype, box, ntypes: int, type_map=None, rcut: float | None = None):
    """Validate shapes and values; coord [nf, nloc, 3], atype [nf, nloc], box [nf, 9] or None.

    Shapes and type names here; the value checks (finite numbers, box volume, boxes too thin
    for rcut) are the operator's ``ops.check_values``, shared by both paths."""
    from ..ops import check_values

    shape = list(coord.shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"coord must have shape [nframes, natoms, 3], got {shape}")
    nf, nloc = shape[0], shape[1]
    if nloc == 0:
        raise ValueError("coord has no atoms")
    if list(atype.shape) != [nf, nloc]:
        raise ValueError(f"atom types must have shape [nframes, natoms] = {[nf, nloc]}, got {list(atype.shape)}")
    at = np.asarray(atype.numpy() if hasattr(atype, "numpy") else atype)
    bad = np.flatnonzero((at < 0) | (at >= ntypes))
    if bad.size:
        k = bad[0]
        names = f" {list(type_map)}" if type_map is not None else ""
        raise ValueError(
            f"atom type {int(at.reshape(-1)[k])} of atom {k % nloc} is out of range: the model has "
            f"{ntypes} types{names} (allowed 0..{ntypes - 1})"
        )
    if box is not None and list(box.shape) != [nf, 9]:
        raise ValueError(f"box/cell must have shape [nframes, 9] = {[nf, 9]}, got {list(box.shape)}")
    check_values(np.asarray(coord.numpy() if hasattr(coord, "numpy") else coord), None if box is None else
                 np.asarray(box.numpy() if hasattr(box, "numpy") else box), at, ntypes, rcut)


def check_neighbors(nmax, mindist, sel, coord, box, type_map=None):
    """Raise on overlapping atoms; warn when neighbours beyond ``sel`` were dropped."""
    md = np.asarray(mindist.numpy())
    f = int(np.argmin(md))
    if md[f] < MIN_PAIR_DISTANCE:
        where = _closest_pair(coord[f].numpy(), None if box is None else box[f].numpy())
        raise ValueError(
            f"atoms overlap in frame {f}: the smallest pair distance is {md[f]:.3g} A "
            f"(at most {MIN_PAIR_DISTANCE} A is refused){where}"
        )
    nm = np.asarray(nmax.numpy()).max(axis=0)
    over = [t for t in range(len(sel)) if nm[t] > sel[t]]
    if over:
        names = type_map if type_map is not None else list(range(len(sel)))
        detail = ", ".join(f"type {names[t]}: up to {nm[t]} within rcut, sel = {sel[t]}" for t in over)
        warnings.warn(f"neighbours beyond sel were dropped ({detail}); raise sel for an exact model", stacklevel=3)


def _closest_pair(c, box):
    """Name the closest pair for an error message (small systems only)."""
    n = len(c)
    if n > 4000:
        return ""
    d = c[None] - c[:, None]
    if box is not None:
        b = box.reshape(3, 3)
        frac = d @ np.linalg.inv(b)
        d = (frac - np.round(frac)) @ b
    r = np.linalg.norm(d, axis=-1) + np.eye(n) * 1e300
    i, j = np.unravel_index(np.argmin(r), r.shape)
    return f", between atoms {min(i, j)} and {max(i, j)}"
