"""Statistics taken from the data before training (DeePMD-kit's conventions, TensorFlow backend).

Neighbours: for every frame, the largest number of type-t neighbours within ``rcut`` of any atom,
and the smallest distance between two atoms. ``sel: "auto:f"`` (``"auto"`` = ``"auto:1.1"``)
becomes ``ceil4(int(max_t * f))``, the maximum over the data rounded up to a multiple of 4.

Descriptor normalisation (se_e2_a), per centre type t, over every neighbour slot (padded slots,
whose row is 0, included) of every type-t atom in the sampled frames, with n the slot count::

    davg[t, :, 0] = sum(R0) / n                       davg[t, :, 1:] = 0
    dstd[t, :, 0] = sqrt(sum(R0^2)/n - (sum(R0)/n)^2)
    dstd[t, :, 1:] = sqrt(sum(R123^2)/(3n) - (sum(R123)/(3n))^2)

a standard deviation below ``data_stat_protect`` (1e-2) is raised to it; a type with no atoms in
the sample gets davg 0 and dstd 1/rcut.

Energy bias: per-type atomic energies b minimising sum_frames (E - sum_t N_t b_t)^2 (types with a
fixed ``atom_ener`` keep it; the others are fitted to the rest)
(``np.linalg.lstsq`` with the fitting net's ``rcond``).

The sample is ``data_stat_nbatch`` batches of every system (frames chosen by the seed).
"""
from __future__ import annotations

import logging

import numpy as np
import paddle

from deepmd_paddle.data.system import DataError, System

log = logging.getLogger(__name__)

CHUNK = 4  # frames per call of the neighbour search (bounds the memory of the brute-force path)
AUTO_SEL_MAX = 2000  # neighbours within rcut (all types) that sel "auto" accepts; a list of ints is not bounded


def check_system_frames(sys: System, rcut: float, ntypes: int) -> None:
    """Every frame of ``sys`` as the neighbour search will see it (finite numbers, box volume, plane
    spacings and density against ``rcut``: ``kernels.checks.check_values``), before any search; a
    ``DataError`` names the set's file and the frame."""
    from deepmd_paddle.kernels.checks import check_values

    try:
        check_values(sys.coord, sys.box, np.broadcast_to(sys.atype, (sys.nframes, sys.natoms)), ntypes, rcut,
                     where=sys.where)
    except ValueError as e:
        raise DataError(str(e)) from None


def stat_frames(systems: list[System], batch_size: list[int], nbatch: int, seed: int | None) -> list[np.ndarray]:
    """Indices of the frames of each system used for statistics."""
    rng = np.random.default_rng(seed)
    return [np.sort(rng.permutation(s.nframes)[: min(s.nframes, nbatch * b)]) for s, b in zip(systems, batch_size)]


def _chunks(sys: System, idx: np.ndarray, dtype: str):
    """Paddle (coord, atype, box) of frames ``idx`` in groups of ``CHUNK``."""
    for start in range(0, len(idx), CHUNK):
        part = idx[start:start + CHUNK]
        coord = paddle.to_tensor(sys.coord[part].astype(dtype))  # nf x nloc x 3
        atype = paddle.to_tensor(np.broadcast_to(sys.atype, (len(part), sys.natoms)).astype(np.int32))
        box = None if sys.box is None else paddle.to_tensor(sys.box[part].astype(dtype))  # nf x 9
        yield coord, atype, box


def neighbor_stat(systems: list[System], rcut: float, type_map: list[str]) -> tuple[float, np.ndarray]:
    """(smallest pair distance, largest neighbour count of each type) over every frame."""
    from deepmd_paddle.kernels import default_backend

    search = default_backend().neighbor_list
    min_dist, max_nbor = np.inf, np.zeros(len(type_map), dtype=np.int64)
    for sys in systems:
        check_system_frames(sys, rcut, len(type_map))
        for coord, atype, box in _chunks(sys, np.arange(sys.nframes), "float64"):
            _, _, nmax, mindist = search(coord, box, atype, float(rcut), [1] * len(type_map), check=False)  # checked above
            max_nbor = np.maximum(max_nbor, nmax.numpy().max(axis=0))
            min_dist = min(min_dist, float(mindist.numpy().min()))
    return min_dist, max_nbor


def auto_sel_factor(sel: str) -> float:
    """The factor of "auto" (1.1) or "auto:<factor>"; ValueError for anything else."""
    words = sel.split(":")
    if words[0] != "auto" or len(words) > 2:
        raise ValueError(f"not 'auto' or 'auto:<factor>': {sel!r}")
    factor = float(words[1]) if len(words) == 2 else 1.1
    if not factor > 0:
        raise ValueError(f"the factor of {sel!r} must be positive")
    return factor


def sel_from_counts(max_nbor, factor: float) -> list[int]:
    """DeePMD-kit's rule: int(count x factor) rounded up to a multiple of 4."""
    return [4 * ((int(m * factor) + 3) // 4) for m in max_nbor]


def resolve_sel(sel, systems: list[System], rcut: float, type_map: list[str], max_nbor=None) -> list[int]:
    """``sel`` as a list of ints: "auto[:factor]" from the data (``max_nbor``: neighbor_stat's counts
    when the caller ran it already), a given list as it is."""
    if not isinstance(sel, str):
        return [int(s) for s in sel]
    factor = auto_sel_factor(sel)
    if max_nbor is None:
        _, max_nbor = neighbor_stat(systems, rcut, type_map)
    if max_nbor.sum() > AUTO_SEL_MAX:
        raise DataError(f"sel {sel!r}: the data have up to {max_nbor.tolist()} neighbours of each type {type_map} "
                        f"within rcut = {rcut} A ({int(max_nbor.sum())} in all; 'auto' accepts {AUTO_SEL_MAX}, dense "
                        "matter has ~100 at 6 A). Are the coordinates and boxes in Angstrom (in nm they are 1000x "
                        "too dense)? To train on such data anyway, give sel as a list of numbers")
    out = sel_from_counts(max_nbor, factor)
    log.info("sel %r -> %s (largest neighbour counts %s)", sel, out, max_nbor.tolist())
    return out


def sel_and_min_dist(sel, systems: list[System], rcut: float, type_map: list[str],
                     skip: bool = False) -> tuple[list[int], float | None]:
    """``resolve_sel``'s sel and the data's smallest pair distance from one neighbour search, which
    training stores for ``dpp compress`` (as DeePMD-kit does); None when ``skip`` (DeePMD-kit's
    ``--skip-neighbor-stat``: no search, sel must be numbers) or no pair is within ``rcut``."""
    if skip:
        return resolve_sel(sel, systems, rcut, type_map), None
    min_dist, max_nbor = neighbor_stat(systems, rcut, type_map)
    return resolve_sel(sel, systems, rcut, type_map, max_nbor), float(min_dist) if np.isfinite(min_dist) else None


def env_mat_stat(descriptor, systems: list[System], frames: list[np.ndarray], dtype: str = "float64",
                 protect: float = 1e-2, set_davg_zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """davg, dstd (ntypes x nnei x 4) of the descriptor's environment matrix (module docstring).

    ``dtype`` is the model's precision, in which coordinates are fed.
    """
    sums = env_mat_sums(descriptor, systems, frames, dtype)
    return stat_from_sums(sums, descriptor.get_nnei(), descriptor.rcut, protect, set_davg_zero)


def env_mat_sums(descriptor, systems: list[System], frames: list[np.ndarray], dtype: str = "float64") -> np.ndarray:
    """Per centre type (ntypes x 5): sum R0, sum R0^2, sum R123, sum R123^2, number of slots n."""
    ntypes = len(descriptor.sel)
    sums = np.zeros((ntypes, 5))
    for sys, idx in zip(systems, frames):
        for coord, atype, box in _chunks(sys, idx, dtype):
            env = descriptor.env_mat_raw(coord, atype, box)[0].numpy()  # nf x nloc x nnei x 4
            for t in range(ntypes):
                rows = env[:, sys.atype == t]  # nf x nt x nnei x 4
                r, a = rows[..., 0], rows[..., 1:]
                sums[t] += [r.sum(), (r * r).sum(), a.sum(), (a * a).sum(), r.size]
    return sums


def stat_from_sums(sums: np.ndarray, nnei: int, rcut: float, protect: float = 1e-2,
                   set_davg_zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """davg, dstd (ntypes x nnei x 4) from ``env_mat_sums``."""
    ntypes = len(sums)
    davg = np.zeros((ntypes, nnei, 4))
    dstd = np.ones((ntypes, nnei, 4)) / rcut
    for t, (sr, sr2, sa, sa2, n) in enumerate(sums):
        if n == 0:
            continue
        if not set_davg_zero:
            davg[t, :, 0] = sr / n
        dstd[t, :, 0] = _std(sr2, sr, n, protect)
        dstd[t, :, 1:] = _std(sa2, sa, 3 * n, protect)
    return davg, dstd


def _std(sum2: float, sum1: float, n: float, protect: float) -> float:
    return max(np.sqrt(max(sum2 / n - (sum1 / n) ** 2, 0.0)), protect)


def energy_bias(energy: np.ndarray, counts: np.ndarray, rcond: float | None = None, assigned=None) -> np.ndarray:
    """Per-type energies b minimising ||counts @ b - energy|| (nframes; nframes x ntypes).
    ``assigned``: per type None or a fixed value (DeePMD-kit's ``atom_ener``): those types keep
    it, the others are fitted to what remains of the energies (min-norm, their columns zeroed)."""
    counts = np.array(counts, np.float64)
    energy = np.array(energy, np.float64).reshape(len(counts), -1)
    given = list(assigned or []) + [None] * (counts.shape[1] - len(assigned or []))
    fixed = np.array([a is not None for a in given])
    values = np.array([0.0 if a is None else a for a in given])
    if fixed.any():
        energy = energy - (counts[:, fixed] @ values[fixed]).reshape(-1, 1)
        counts[:, fixed] = 0.0
    b = np.linalg.lstsq(counts, energy, rcond=rcond)[0].reshape(-1)
    b[fixed] = values[fixed]
    return b


def data_energy_bias(systems: list[System], frames: list[np.ndarray], ntypes: int, rcond=None,
                     assigned=None) -> np.ndarray:
    """``energy_bias`` over the sampled frames that carry an energy label (``assigned``: see there)."""
    energy, counts = [], []
    for sys, idx in zip(systems, frames):
        idx = idx[sys.found["energy"][idx]]
        energy.append(sys.labels["energy"][idx])
        counts.append(np.broadcast_to(sys.type_counts(ntypes), (len(idx), ntypes)))
    energy, counts = np.concatenate(energy), np.concatenate(counts)
    if len(energy) == 0:
        log.warning("no energy labels in the statistics sample: energy bias left at 0")
        return np.array([0.0 if a is None else a for a in (assigned or [])] + [0.0] * (ntypes - len(assigned or [])))
    return energy_bias(energy, counts, rcond, assigned)
