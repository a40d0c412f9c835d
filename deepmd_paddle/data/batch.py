"""Batches: frames of one system at a time, systems drawn at random in proportion to their size.

DeePMD-kit's rules:
- ``batch_size``: an int for every system, one int per system, ``"auto:N"`` (``"auto"`` is
  ``"auto:32"``): the smallest batch with ``batch x natoms >= N``, i.e. ``ceil(N / natoms)``;
  ``"max:N"``: the largest with ``batch x natoms <= N``, at least 1, i.e. ``max(1, N // natoms)``;
  ``"filter:N"``: ``"max:N"`` after removing the systems of more than N atoms.
- a system has ``sum over its sets of max(1, set frames // batch)`` batches (a system read
  through dpdata is one set); ``auto_prob: prob_sys_size`` draws a system
  with probability proportional to that count, ``prob_uniform`` uniformly,
  ``prob_sys_size;0:k:w0;k:n:w1`` gives block [0, k) weight w0 and [k, n) weight w1 (shared in
  proportion to size inside a block); ``sys_probs`` gives the probabilities directly.
- inside a system, frames go in a shuffled order, reshuffled when it runs out.

The sampler's whole state (generator and positions) is a JSON-able dict, so a restarted run
draws the same batches as one that was never stopped.
"""
from __future__ import annotations

import logging
import re

import numpy as np

from deepmd_paddle.data.system import DataError, System

log = logging.getLogger(__name__)


def check_batch_size(spec, nsystems: int) -> None:
    """Raise ``DataError`` unless ``spec`` is a valid ``batch_size`` for ``nsystems`` systems."""
    ok = (isinstance(spec, int) and spec >= 1) or (
        isinstance(spec, list) and len(spec) == nsystems and all(isinstance(b, int) and b >= 1 for b in spec)) or (
        isinstance(spec, str) and re.fullmatch(r"auto(:[1-9]\d*)?|(max|filter):[1-9]\d*", spec) is not None)
    if not ok:
        raise DataError(f"batch_size: got {spec!r}; allowed: an int >= 1, a list of {nsystems} such ints "
                        "(one per system), 'auto', 'auto:N', 'max:N' or 'filter:N'")


def batch_sizes(spec, natoms: list[int]) -> list[int]:
    """Frames per batch for each system (see the module docstring)."""
    check_batch_size(spec, len(natoms))
    if isinstance(spec, int):
        return [spec] * len(natoms)
    if isinstance(spec, list):
        return list(spec)
    rule = int(spec.split(":")[1]) if ":" in spec else 32
    if spec.startswith(("max:", "filter:")):
        return [max(1, rule // n) for n in natoms]
    return [max(1, -(-rule // n)) for n in natoms]


def filter_systems(spec, systems: list[System]) -> list[System]:
    """``batch_size: "filter:N"`` keeps the systems of at most N atoms (DeePMD-kit's rule); any
    other ``batch_size`` keeps them all."""
    if not (isinstance(spec, str) and spec.startswith("filter:")):
        return systems
    rule = int(spec.split(":")[1])
    kept = [s for s in systems if s.natoms <= rule]
    if not kept:
        raise DataError(f"batch_size {spec!r}: no system left after removing the systems of more than {rule} atoms "
                        f"(they have {sorted({s.natoms for s in systems})} atoms)")
    if len(kept) < len(systems):
        log.warning("batch_size %r: removed %d system(s) of more than %d atoms: %s", spec, len(systems) - len(kept),
                    rule, [s.path for s in systems if s.natoms > rule])
    return kept


def numb_batches(sys: System, batch: int) -> int:
    """Batches of ``sys`` at ``batch`` frames each: per set, at least 1 (DeePMD-kit's count)."""
    counts = [n for _, n in sys.sources] or [sys.nframes]
    return sum(max(1, n // batch) for n in counts)


def epoch_steps(nbatches: list[int], probs: np.ndarray) -> int:
    """Steps of one epoch: the largest nbatches / probability over the systems that are drawn
    (DeePMD-kit's ``compute_total_numb_batch``)."""
    nb, p = np.asarray(nbatches, np.float64), np.asarray(probs, np.float64)
    live = p > 0
    return int(np.ceil(np.max(nb[live] / p[live])))


def system_probs(auto_prob: str, sys_probs, nbatches: list[int]) -> np.ndarray:
    """Probability of drawing each system."""
    n = len(nbatches)
    if sys_probs is not None:
        p = np.asarray(sys_probs, dtype=np.float64)
        if p.shape != (n,) or (p < 0).any() or p.sum() <= 0:
            raise DataError(f"sys_probs: need {n} non-negative numbers, got {sys_probs}")
        return p / p.sum()
    if auto_prob == "prob_uniform":
        return np.full(n, 1.0 / n)
    if auto_prob == "prob_sys_size":
        auto_prob = f"prob_sys_size;0:{n}:1.0"
    try:
        if not auto_prob.startswith("prob_sys_size;"):
            raise ValueError
        blocks = [(int(a), int(b), float(w)) for a, b, w in (blk.split(":") for blk in auto_prob.split(";")[1:])]
        if not all(0 <= a < b <= n and w >= 0 for a, b, w in blocks) or sum(w for *_, w in blocks) <= 0:
            raise ValueError
    except ValueError:
        raise DataError(f"auto_prob: got {auto_prob!r}; allowed: prob_sys_size, prob_uniform, "
                        f"prob_sys_size;start:end:weight;... (0 <= start < end <= {n} systems)") from None
    p = np.zeros(n)
    nb = np.asarray(nbatches, dtype=np.float64)
    total = sum(w for *_, w in blocks)
    for start, end, w in blocks:
        p[start:end] = nb[start:end] / nb[start:end].sum() * w / total
    return p


def run_length(training: dict, data: "DataSet") -> int:
    """``numb_steps``, or ``ceil(numb_epoch x epoch_steps)`` when only ``numb_epoch`` is given
    (DeePMD-kit's TensorFlow rule: the whole data set's batches, whatever the number of workers)."""
    if training.get("numb_steps") is not None:
        return int(training["numb_steps"])
    steps = int(np.ceil(float(training["numb_epoch"]) * epoch_steps(data.nbatches, data.probs)))
    log.info("numb_steps = %d from numb_epoch = %s and %d batches an epoch", steps, training["numb_epoch"],
             epoch_steps(data.nbatches, data.probs))
    return steps


class DataSet:
    """Systems with their batch sizes, probabilities and a seeded sampler."""

    def __init__(self, systems: list[System], batch_size="auto", auto_prob="prob_sys_size",
                 sys_probs=None, seed: int | None = None):
        self.systems = systems = filter_systems(batch_size, systems)
        self.batch_size = batch_sizes(batch_size, [s.natoms for s in systems])
        self.nbatches = [numb_batches(s, b) for s, b in zip(systems, self.batch_size)]
        self.probs = system_probs(auto_prob, sys_probs, self.nbatches)
        self.rng = np.random.default_rng(seed)
        self.order = [self.rng.permutation(s.nframes) for s in systems]
        self.cursor = [0] * len(systems)

    def next_batch(self) -> dict:
        """One batch of numpy arrays: see ``make_batch``."""
        i = int(self.rng.choice(len(self.systems), p=self.probs))
        sys, bs = self.systems[i], self.batch_size[i]
        if self.cursor[i] + bs > sys.nframes:
            self.order[i] = self.rng.permutation(sys.nframes)
            self.cursor[i] = 0
        idx = np.resize(self.order[i][self.cursor[i]:self.cursor[i] + bs], bs)  # repeats if bs > nframes
        self.cursor[i] += bs
        return make_batch(sys, idx)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": [o.tolist() for o in self.order],
                "cursor": list(self.cursor)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = [np.asarray(o, dtype=np.int64) for o in state["order"]]
        self.cursor = list(state["cursor"])


def make_batch(sys: System, idx: np.ndarray) -> dict:
    """Frames ``idx`` of ``sys``::

        coord  nf x natoms x 3      atype  nf x natoms (int32)   box  nf x 9 or None
        energy nf x 1               force  nf x natoms x 3       virial nf x 9
        atom_ener, atom_pref, atom_ener_coeff  nf x natoms  (when a loss asked for them: data.atom_data)
        find_<label>: 1.0 when every frame has the label, else 0.0
        natoms: int                 fparam nf x nfp, aparam nf x natoms x nap (when the system has them)
    """
    nf = len(idx)
    batch = {
        "coord": sys.coord[idx],
        "atype": np.broadcast_to(sys.atype, (nf, sys.natoms)).astype(np.int32),
        "box": None if sys.box is None else sys.box[idx],
        "natoms": sys.natoms,
    }
    for name in sys.labels:  # energy, force, virial, and the per-atom data a loss asked for (atom_data)
        label = sys.labels[name][idx]
        batch[name] = label.reshape(nf, 1) if name == "energy" else label
        batch[f"find_{name}"] = float(sys.found[name][idx].all())
    for name, values in sys.params.items():  # fparam nf x nfp, aparam nf x natoms x nap (data.params)
        batch[name] = values[idx]
    return batch
