"""Input checks at the API boundaries: clear errors instead of NaNs, hangs or silent truncation.

``check_frames`` is the one check of coordinates, types and boxes (the model's forward,
``DeepPot.eval``, the neighbour-search wrapper and the statistics call it); ``check_neighbors``
reads the neighbour search's ``nmax`` and ``mindist``. They run eagerly on NumPy arrays before
the traced part of the model, so they never enter an exported static graph.
"""
from __future__ import annotations

import warnings

import numpy as np

from .density import check_density

# two atoms closer than this are taken to overlap (the environment matrix has 1/r)
MIN_PAIR_DISTANCE = 1e-3
MAX_IMAGES = 1e6  # periodic images per neighbourhood that check_frames accepts


def check_frames(coord, atype, box, ntypes: int, type_map=None, rcut: float | None = None):
    """Validate shapes and values; coord [nf, nloc, 3], atype [nf, nloc], box [nf, 9] or None
    (NumPy arrays or Paddle tensors): types in range, finite numbers, boxes with a volume and not
    too thin for rcut."""
    shape = list(coord.shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"coord must have shape [nframes, natoms, 3], got {shape}")
    nf, nloc = shape[0], shape[1]
    if nloc == 0:
        raise ValueError("coord has no atoms")
    if list(atype.shape) != [nf, nloc]:
        raise ValueError(f"atom types must have shape [nframes, natoms] = {[nf, nloc]}, got {list(atype.shape)}")
    at = np.asarray(atype.numpy() if hasattr(atype, "numpy") else atype)
    if box is not None and list(box.shape) != [nf, 9]:
        raise ValueError(f"box/cell must have shape [nframes, 9] = {[nf, 9]}, got {list(box.shape)}")
    check_values(np.asarray(coord.numpy() if hasattr(coord, "numpy") else coord), None if box is None else
                 np.asarray(box.numpy() if hasattr(box, "numpy") else box), at, ntypes, rcut, type_map)


def check_values(coord: np.ndarray, box, atype: np.ndarray, ntypes: int, rcut: float | None = None,
                 type_map=None, where=None) -> None:
    """The value half of ``check_frames`` on NumPy arrays of the right shapes: types in range,
    finite numbers, boxes with volume, not too thin and not too dense for the neighbour search.
    ``where(f)`` names frame f in the messages (default "frame f"; the data checks name the file)."""
    where = where or (lambda f: f"frame {f}")
    nf, nloc = coord.shape[0], coord.shape[1]
    at = np.asarray(atype).reshape(-1)
    bad = np.flatnonzero((at < 0) | (at >= ntypes))
    if bad.size:
        k = int(bad[0])
        where = f"index {k % nloc}" + (f" of frame {k // nloc}" if nf > 1 else "")
        raise ValueError(
            f"atom type {int(at[k])} at {where} is out of range: the model has ntypes = {ntypes} "
            f"(allowed 0..{ntypes - 1})" + (f"; the types are {list(type_map)}" if type_map is not None else "")
        )
    if not np.isfinite(coord).all():
        raise ValueError("coord contains NaN or infinite values")
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(nf, 3, 3)
        if not np.isfinite(b).all():
            raise ValueError("box contains NaN or infinite values")
        det = np.linalg.det(b)
        scale = np.prod(np.linalg.norm(b, axis=-1), axis=-1)
        for f in range(nf):
            if not abs(det[f]) > 1e-10 * scale[f] or scale[f] == 0.0:
                raise ValueError(
                    f"box of {where(f)} has zero volume (det = {det[f]:.3g}); its rows must be "
                    "three independent lattice vectors a, b, c"
                )
        if rcut is not None:
            spacing = np.abs(det)[:, None] / np.linalg.norm(np.cross(b[:, [1, 2, 0]], b[:, [2, 0, 1]]), axis=-1)
            images = np.prod(2 * np.ceil(rcut / spacing) + 1, axis=-1)  # nf
            f = int(np.argmax(images))
            if images[f] > MAX_IMAGES:
                raise ValueError(
                    f"box of {where(f)} is too thin for rcut = {rcut}: its plane spacings "
                    f"{np.round(spacing[f], 4).tolist()} A need {images[f]:.3g} periodic images "
                    f"(at most {MAX_IMAGES:.0e})"
                )
            check_density(nloc, det, rcut, where)  # images x atoms: the search's work


def check_cutoffs(rcut, sel=None, rcut_smth=None) -> None:
    """rcut > 0, 0 <= rcut_smth < rcut, sel a non-empty list of non-negative integers: the one
    check of the cut-offs (the descriptor, the kernels and the input file use it)."""
    if not rcut > 0:
        raise ValueError(f"rcut must be positive, got {rcut}")
    if rcut_smth is not None and not 0 <= rcut_smth < rcut:
        raise ValueError(f"rcut_smth must satisfy 0 <= rcut_smth < rcut = {rcut}, got {rcut_smth}")
    if sel is not None and (len(sel) == 0 or any(int(s) != s or s < 0 for s in sel)):
        raise ValueError(f"sel must be a non-empty list of non-negative integers, got {sel}")


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
