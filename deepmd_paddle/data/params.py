"""Frame and atomic parameters of the data: ``set.*/fparam.npy`` (nf x numb_fparam) and
``set.*/aparam.npy`` (nf x natoms*numb_aparam), read when the model's fitting net takes them.

A set without the file is an error naming it and the key that asks for it, unless
``default_fparam`` covers a missing ``fparam.npy`` (its values then stand for every frame of the
set, as DeePMD-kit's PyTorch backend fills them). An LMDB database's frames carry them as fields
(data.lmdb): the same rules, frame by frame.

Statistics (DeePMD-kit's ``deepmd/tf/fit/stat.py`` and ``StatItem``): per component, over the
sampled frames (and, for aparam, every atom of them) of all systems::

    avg = sum(x) / n        std = sqrt(max(sum(x^2)/n - avg^2, 0)), raised to ``protection`` when smaller

and the model stores ``inv_std = 1 / std``.
"""
from __future__ import annotations

import os

import numpy as np

from deepmd_paddle.data.system import DataError, System, _read

KEYS = {"fparam": "model/fitting_net/numb_fparam", "aparam": "model/fitting_net/numb_aparam"}


def attach(systems: list[System], numb_fparam: int, numb_aparam: int, default_fparam=None) -> None:
    """Read ``fparam``/``aparam`` of every system into ``System.params`` (fparam nf x numb_fparam,
    aparam nf x natoms x numb_aparam); DataError naming the file and the key when one is missing
    or of the wrong shape."""
    for sys in systems:
        sys.params = {}
        for kind, n in (("fparam", numb_fparam), ("aparam", numb_aparam)):
            if n:
                sys.params[kind] = _read_kind(sys, kind, n, default_fparam if kind == "fparam" else None)


def _read_kind(sys: System, kind: str, n: int, default) -> np.ndarray:
    width = n if kind == "fparam" else n * sys.natoms
    if sys.keys:  # an LMDB database: a field of each frame (data.lmdb)
        from deepmd_paddle.data.lmdb import stacked

        try:
            out = stacked(sys, kind, width, None if default is None else np.asarray(default, np.float64).ravel())[0]
        except ValueError as e:
            raise DataError(f"{e}: {KEYS[kind]} = {n} asks for {width} {kind} value(s) in each frame") from None
        return out if kind == "fparam" else out.reshape(-1, sys.natoms, n)
    if not sys.sources:
        raise DataError(f"{sys.path}: {KEYS[kind]} = {n} asks for {kind}.npy in each set of a DeePMD npy system; "
                        "this system was read through dpdata (fmt): convert it to deepmd/npy with the "
                        f"{kind}.npy files")
    parts = []
    for folder, nf in sys.sources:
        fname = os.path.join(folder, f"{kind}.npy")
        arr = _read(fname, width, nframes=nf)
        if arr is None and default is not None:
            arr = np.tile(np.asarray(default, np.float64).reshape(1, n), (nf, 1))
        if arr is None:
            per = "per frame" if kind == "fparam" else f"per atom ({sys.natoms} atoms x {n} per frame)"
            hint = " or set model/fitting_net/default_fparam" if kind == "fparam" else ""
            raise DataError(f"{fname} is missing: {KEYS[kind]} = {n} asks for {n} {kind} value(s) {per}; "
                            f"add the file{hint}")
        parts.append(arr)
    out = np.concatenate(parts)
    return out if kind == "fparam" else out.reshape(-1, sys.natoms, n)


def stat_item(x: np.ndarray) -> np.ndarray:
    """[number, sum, sum of squares] per component of ``x`` (rows x width): width x 3."""
    x = np.asarray(x, np.float64)
    return np.stack([np.full(x.shape[1], float(x.shape[0])), x.sum(axis=0), (x * x).sum(axis=0)], axis=1)


def avg_inv_std(items: np.ndarray, protection: float) -> tuple[np.ndarray, np.ndarray]:
    """(avg, 1/std) from ``stat_item`` rows (DeePMD-kit's StatItem: avg 0 and std 0.1 without data)."""
    n, s, s2 = items[:, 0], items[:, 1], items[:, 2]
    safe = np.where(n > 0, n, 1.0)
    avg = np.where(n > 0, s / safe, 0.0)
    std = np.sqrt(np.clip(s2 / safe - avg * avg, 0.0, None))
    std = np.where(np.abs(std) < protection, protection, std)
    std = np.where(n > 0, std, 0.1)
    return avg, 1.0 / std


def param_stats(systems: list[System], frames: list[np.ndarray], protection: float = 1e-2) -> dict:
    """{"fparam": (avg, inv_std), "aparam": (avg, inv_std)} over the frames ``frames[i]`` of each
    system (the kinds that ``attach`` read)."""
    out = {}
    for kind in ("fparam", "aparam"):
        rows = [s.params[kind][idx] for s, idx in zip(systems, frames) if kind in getattr(s, "params", {})]
        if rows:
            width = rows[0].shape[-1]
            items = sum(stat_item(r.reshape(-1, width)) for r in rows)
            out[kind] = avg_inv_std(items, protection)
    return out
