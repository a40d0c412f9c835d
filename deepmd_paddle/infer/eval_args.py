"""The arguments of ``DeepPot.eval`` read once, strictly: every ambiguity is an error that names it.

DeePMD-kit reshapes ``coords`` to ``[-1, natoms * 3]``, so 96 atom types with the coordinates of
192 atoms become two frames of 96 atoms, and ``cells`` to ``[nframes, 9]``. Here the frame count
comes from the arrays' own shapes:

- ``atom_types``: ``[natoms]`` (every frame) or ``[nframes, natoms]``; integers or element names;
- ``coords``: ``[nframes, natoms, 3]``, ``[nframes, natoms * 3]``, or one frame ``[natoms, 3]`` /
  ``[natoms * 3]``; real numbers; a list of frames of different sizes is refused;
- ``cells``: None (open boundaries), one cell ``[9]`` / ``[3, 3]`` / ``[1, 9]`` for every frame, or
  ``[nframes, 9]`` / ``[nframes, 3, 3]`` (rows a, b, c); per-frame cell lengths ``[nframes, 3]``
  are refused (they are not cell vectors);
- keyword arguments DeePMD-kit's ``eval`` does not define raise ``TypeError``.
"""
from __future__ import annotations

import numpy as np

from ..kernels import check_frames

EVAL_KEYWORDS = ("atomic", "fparam", "aparam", "mixed_type")


def eval_inputs(coords, cells, atom_types, type_map: list, rcut: float, **kwargs):
    """(coord float64 [nf, na, 3], box float64 [nf, 9] or None, atype int32 [nf, na]), checked
    (shapes here, values by ``kernels.check_frames``); ``kwargs``: the other arguments of
    ``eval``, which must be DeePMD-kit's."""
    unknown = sorted(set(kwargs) - set(EVAL_KEYWORDS))
    if unknown:
        raise TypeError(f"DeepPot.eval got unknown keyword argument(s) {unknown}; allowed: coords, cells, "
                        f"atom_types, {', '.join(EVAL_KEYWORDS)}")
    atomic = kwargs.get("atomic", False)
    if not isinstance(atomic, (bool, np.bool_)) and atomic not in (0, 1):
        raise TypeError(f"atomic must be True or False, got {atomic!r}")
    atype = _atom_types(atom_types, type_map)
    na = atype.shape[-1]
    coord = _numbers("coords", coords)
    nf = _frames(coord, na, atype)
    coord = coord.reshape(nf, na, 3)
    atype = np.ascontiguousarray(np.broadcast_to(atype, (nf, na)), dtype=np.int32)
    box = None if cells is None else _cells(_numbers("cells", cells), nf)
    check_frames(coord, atype, box, len(type_map), type_map, rcut)
    return np.ascontiguousarray(coord), box, atype


def _numbers(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except ValueError as e:  # a ragged list: frames of different sizes
        raise ValueError(f"{name}: frames of different sizes ({str(e).split('.')[0]}); one call evaluates frames "
                         "of the same atoms: call eval once per system") from None
    if arr.dtype == object:
        raise ValueError(f"{name}: frames of different sizes or non-numbers (an object array); one call "
                         "evaluates frames of the same atoms: call eval once per system")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def types_from_symbols(symbols, type_map, type_dict: dict | None = None) -> np.ndarray:
    """Type indices of element names; an unknown name raises ValueError naming the allowed ones."""
    lookup = dict(type_dict) if type_dict else {name: i for i, name in enumerate(type_map)}
    symbols = np.asarray(symbols)
    unknown = sorted(set(symbols.reshape(-1).tolist()) - set(lookup))
    if unknown:
        raise ValueError(f"element(s) {unknown} are not in the model's type map {list(type_map)}"
                         + (" (nor in type_dict)" if type_dict else ""))
    return np.vectorize(lookup.__getitem__, otypes=[np.int32])(symbols)


def _atom_types(atom_types, type_map) -> np.ndarray:
    atype = np.asarray(atom_types)
    if atype.dtype.kind in "US":  # element names
        atype = types_from_symbols(atype, type_map)
    if atype.ndim not in (1, 2) or atype.shape[-1] == 0:
        raise ValueError(f"atom_types must have shape [natoms] or [nframes, natoms], got {list(atype.shape)}")
    if atype.dtype.kind not in "iu":
        if atype.dtype.kind == "f" and np.all(atype == np.round(atype)):
            return atype.astype(np.int64)
        raise ValueError(f"atom_types must be integers (or element names), got dtype {atype.dtype}")
    return atype


def _frames(coord: np.ndarray, na: int, atype: np.ndarray) -> int:
    """The frame count that ``coord``'s shape states, consistent with ``na`` atoms."""
    shape = list(coord.shape)
    expected = f"[nframes, {na}, 3], [nframes, {na * 3}], [{na}, 3] or [{na * 3}] for {na} atom types"
    if coord.ndim == 3 and shape[1:] == [na, 3] or coord.ndim == 2 and shape[1] == na * 3:
        nf = shape[0]
    elif coord.ndim == 2 and shape == [na, 3] or coord.ndim == 1 and shape == [na * 3]:
        nf = 1
    else:
        raise ValueError(f"coords of shape {shape} do not hold whole frames of {na} atoms (as atom_types has); "
                         f"expected {expected}")
    if nf == 0:
        raise ValueError(f"coords of shape {shape} hold no frames")
    if atype.ndim == 2 and atype.shape[0] != nf:
        raise ValueError(f"atom_types has {atype.shape[0]} frames but coords have {nf}")
    return nf


def _cells(box: np.ndarray, nf: int) -> np.ndarray:
    shape = list(box.shape)
    if shape in ([9], [3, 3], [1, 9], [1, 3, 3]):
        one = box.reshape(1, 9)
        if nf == 3 and shape == [3, 3] and abs(np.linalg.det(one.reshape(3, 3))) < 1e-10:
            raise ValueError("cells of shape [3, 3] with 3 frames are read as one 3 x 3 cell for every frame, and "
                             "it has no volume; for the cell lengths of each frame give [3, 9] cells (rows a, b, c)")
        return np.ascontiguousarray(np.broadcast_to(one, (nf, 9)))
    if shape in ([nf, 9], [nf, 3, 3]):
        return np.ascontiguousarray(box.reshape(nf, 9))
    if box.ndim in (1, 2) and shape[-1] == 3:
        raise ValueError(f"cells of shape {shape} look like cell lengths; give the cell vectors, [{nf}, 9] "
                         "(rows a, b, c: e.g. np.diag(lengths).reshape(9) for an orthorhombic cell)")
    raise ValueError(f"cells must have shape [nframes, 9] = [{nf}, 9] (or [{nf}, 3, 3], or one cell [9] or [3, 3] "
                     f"for every frame), got {shape}")


def param_inputs(fparam, aparam, nf: int, na: int, dim_fparam: int, dim_aparam: int, default_fparam=None):
    """(fparam float64 [nf, dim_fparam] or None, aparam float64 [nf, na, dim_aparam] or None) from
    ``eval``'s arguments, with DeePMD-kit's accepted sizes: fparam of nf x dim_fparam values, or
    dim_fparam for every frame; aparam of nf x na x dim_aparam values, na x dim_aparam for every
    frame, or dim_aparam for every atom. A model without them refuses them; a model with them
    needs them (fparam: unless the model has a ``default_fparam``)."""
    out = []
    # name, value, width, the shapes its values may fill (broadcast to the full shape, the first)
    for name, value, dim, forms in (("fparam", fparam, dim_fparam, ([nf, dim_fparam], [1, dim_fparam])),
                                    ("aparam", aparam, dim_aparam, ([nf, na, dim_aparam], [1, na, dim_aparam],
                                                                    [1, 1, dim_aparam]))):
        if dim == 0:
            if value is not None:
                raise ValueError(f"this model takes no {name} (get_dim_{name}() = 0); leave {name} out")
            out.append(None)
            continue
        if value is None and name == "fparam" and default_fparam is not None:
            value = default_fparam
        elif value is None:
            raise ValueError(f"this model takes {name} (get_dim_{name}() = {dim}): give {name} of shape {forms[0]}")
        arr = _numbers(name, value)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} holds NaN or inf values")
        form = next((f for f in forms if arr.size == int(np.prod(f))), None)
        if form is None:
            sizes = " or ".join(f"{f} ({int(np.prod(f))} values)" for f in forms)
            raise ValueError(f"{name} of shape {list(arr.shape)} ({arr.size} values) does not fit {nf} frame(s) of "
                             f"{na} atoms with get_dim_{name}() = {dim}; expected {sizes}")
        out.append(np.ascontiguousarray(np.broadcast_to(arr.reshape(form), forms[0])))
    return out[0], out[1]
