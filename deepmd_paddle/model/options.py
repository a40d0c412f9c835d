"""DeePMD-kit's options that decide which weights train, which type pairs interact and what an
isolated atom weighs: ``trainable``, ``exclude_types`` and ``atom_ener``, checked and turned
into what the layers use.

- ``trainable`` (descriptor, type embedding: one bool; fitting net: one bool, or one per layer,
  ``len(neuron) + 1`` with the output layer last, as DeePMD-kit's TensorFlow fitting takes it):
  an untrainable weight has ``stop_gradient`` set, so no gradient reaches it and the trainer
  leaves it out of the optimizer.
- ``exclude_types`` (se_e2_a): pairs ``[ti, tj]`` of types that do not see each other,
  symmetric. As in DeePMD-kit's TensorFlow descriptor, every slot of the neighbour-type-tj
  block of a centre of type ti, real neighbour or padding, gets the row ``R~ = 0`` (its
  ``build_type_exclude_mask`` applied to the normalised environment): such a slot adds
  ``G(0)^T 0 = 0`` to ``T_i``, and no force. The mask is a ``ntypes x nnei`` table of 0 and 1
  (``slot_mask``) that the environment-matrix kernel applies (``env_mat_excl``). (DeePMD-kit's
  backend-neutral descriptor masks the real neighbours only and keeps ``-davg/dstd`` in the
  padded slots of such a block; with ``type_one_side`` and non-zero ``davg`` its numbers differ
  from its TensorFlow backend's, which are the ones followed here: DeePMD-kit 3.2's numpy backend
  on ``tests/fixtures/deepmd_types/excl_one_side.dp`` is 3.4 eV off its TensorFlow ``DeepPot``.)
- ``atom_ener`` (ener fitting): per type, null or the energy of an isolated atom. For a type
  that has one, ``E_i = N(D_i) - N(0) + bias[t]`` and the bias is set to that energy
  (``EnergyFitting``; the statistics fit the other types' biases with those fixed). In a
  type-embedding model (one fitting net fed with ``[D, e(t)]``) DeePMD-kit subtracts
  ``N([0, e(t_i)])`` from every atom as soon as one type has an ``atom_ener``.
"""
from __future__ import annotations

import numpy as np


def check_trainable(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def check_layer_trainable(value, nlayer: int, key: str) -> list[bool]:
    """One flag per layer (hidden layers, then the output layer) from a bool or a list."""
    if isinstance(value, bool):
        return [value] * nlayer
    if not (isinstance(value, (list, tuple)) and all(isinstance(v, bool) for v in value) and len(value) == nlayer):
        raise ValueError(f"{key} must be true, false or a list of {nlayer} of them (one per hidden layer, then the "
                         f"output layer: len(neuron) + 1), got {value!r}")
    return list(value)


def set_trainable(layer, flag: bool) -> None:
    """Mark a layer's parameters as trained or fixed (``Dense.trainable`` is what it serializes)."""
    for p in layer.parameters():
        p.stop_gradient = not flag
    for sub in [layer, *layer.sublayers()]:
        if hasattr(sub, "trainable"):
            sub.trainable = flag


def check_pairs(pairs, ntypes: int, key: str = "descriptor.exclude_types") -> list[list[int]]:
    """The pairs as given (DeePMD-kit serializes them so), each two type indices < ntypes."""
    out = []
    for p in pairs or []:
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(t, (int, np.integer))
                                                                     and not isinstance(t, bool) for t in p)):
            raise ValueError(f"{key}: each entry must be a pair of type indices [i, j], got {p!r}")
        if not all(0 <= t < ntypes for t in p):
            raise ValueError(f"{key}: pair {list(p)} names a type outside 0..{ntypes - 1} (the type_map has "
                             f"{ntypes} types)")
        out.append([int(p[0]), int(p[1])])
    return out


def pair_set(pairs) -> set:
    """The symmetric set of excluded (ti, tj)."""
    return {(a, b) for a, b in pairs} | {(b, a) for a, b in pairs}


def slot_mask(pairs, sel) -> np.ndarray | None:
    """ntypes x nnei float64: 0 where the slot's neighbour type is excluded for the centre type,
    1 elsewhere; None when nothing is excluded."""
    if not pairs:
        return None
    excluded = pair_set(pairs)
    ntypes = len(sel)
    slot_type = np.repeat(np.arange(ntypes), sel)
    return np.array([[0.0 if (ti, int(t)) in excluded else 1.0 for t in slot_type] for ti in range(ntypes)])


def vacuum_types(atom_ener, ntypes: int, key: str = "fitting_net.atom_ener") -> list:
    """Per type, the energy of an isolated atom or None (a shorter list leaves the rest None)."""
    values = list(atom_ener or [])
    if len(values) > ntypes:
        raise ValueError(f"{key} has {len(values)} entries for {ntypes} types")
    for v in values:
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)):
            raise ValueError(f"{key}: entries must be numbers or null, got {v!r}")
    return [None if v is None else float(v) for v in values] + [None] * (ntypes - len(values))


def trained_parameters(model) -> list:
    """The parameters an optimizer updates: the trainable ones (untrainable weights are left out)."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    if not params:
        raise ValueError("nothing to train: descriptor.trainable, fitting_net.trainable (every layer) and the type "
                         "embedding's trainable are all false")
    return params
