"""Seeded initial weights, drawn exactly as DeePMD-kit's TensorFlow backend draws them.

DeePMD-kit (TF) gives every layer the normal initialisers of the DeePMD papers: weights
N(0, 1/sqrt(n_in + n_out)), biases N(bavg, 1), timesteps ``idt`` N(1, 0.001) in embedding nets and
N(0.1, 0.001) in fitting nets (the energy bias is added apart, so bavg is 0). Each tensor is
drawn by TensorFlow's ``random_normal`` op with its own op-level seed and no graph-level seed:

* a net whose layers start at seed ``b`` gives layer ``j`` (0-based) the seeds ``b + 3j``
  (weights), ``b + 3j + 1`` (bias) and ``b + 3j + 2`` (timestep);
* an embedding net built from seed ``s`` starts at ``b = s + 3`` (its layers count from 1), a
  fitting net at ``b = s``; each net of a section moves the section's seed on by
  ``3 * (number of layers + 1)``: 12 for se_e2_a's [25, 50, 100] embedding nets, and for a
  [240, 240, 240] fitting net (three hidden layers and the output layer);
* se_e2_a builds its nets centre type by centre type, neighbour type within (``type_one_side``:
  neighbour types only); the energy fitting builds one net per type in type order.

TensorFlow's op (graph seed 87654321, TensorFlow's default when only the op seed is set) runs
Philox-4x32-10 (Salmon et al., SC'11) with key = graph seed and counter = (block index, op seed):
each 128-bit block gives two float64 uniforms from 52 mantissa bits each (first word's low 20
bits, then the second word), and Box-Muller turns them into two normals (sin, cos).

Following the same recipe here means a DeePMD-kit input with its ``seed`` keys starts from
DeePMD-kit's own initial weights (tests/test_init.py checks this against weights written by
``dp --tf train``), so runs of the two codes can be compared seed for seed. Without a seed the
weights are a fresh NumPy draw.
"""
from __future__ import annotations

import numpy as np

TF_DEFAULT_GRAPH_SEED = 87654321
_MAXINT32 = 2 ** 31 - 1
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)  # Philox-4x32 multipliers
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)  # Weyl key increments
_LO32 = np.uint64(0xFFFFFFFF)


def philox4x32(counter: np.ndarray, key) -> np.ndarray:
    """Philox-4x32-10 of ``counter`` (n x 4 uint32) under ``key`` (2 uint32): n x 4 uint32."""
    c0, c1, c2, c3 = (counter[:, i].astype(np.uint64) for i in range(4))
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(10):
        p0, p1 = _M0 * c0, _M1 * c2  # 32 x 32 -> 64-bit products
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _LO32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _LO32)
        k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def standard_normal(n: int, op_seed: int, graph_seed: int = TF_DEFAULT_GRAPH_SEED) -> np.ndarray:
    """The first ``n`` float64 values of TensorFlow's ``random_normal`` with these seeds."""
    seed, seed2 = graph_seed % _MAXINT32, op_seed % _MAXINT32  # TensorFlow truncates both
    nblocks = (n + 1) // 2
    block = np.arange(nblocks, dtype=np.uint64)
    counter = np.empty((nblocks, 4), np.uint32)
    counter[:, 0], counter[:, 1] = block & _LO32, block >> np.uint64(32)
    counter[:, 2], counter[:, 3] = seed2 & 0xFFFFFFFF, seed2 >> 32
    x = philox4x32(counter, (seed & 0xFFFFFFFF, seed >> 32)).astype(np.uint64)

    def uniform(hi, lo):  # [0, 1): 1.m - 1 with m = 20 bits of hi, 32 bits of lo
        bits = ((hi & np.uint64(0xFFFFF)) << np.uint64(32)) | lo | (np.uint64(1023) << np.uint64(52))
        return bits.view(np.float64) - 1.0

    u1 = np.maximum(uniform(x[:, 0], x[:, 1]), 1.0e-7)
    angle, radius = 2.0 * np.pi * uniform(x[:, 2], x[:, 3]), np.sqrt(-2.0 * np.log(u1))
    return np.stack([np.sin(angle) * radius, np.cos(angle) * radius], axis=1).reshape(-1)[:n]


def normal(shape, op_seed: int | None, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
    """``random_normal(shape, mean, std, float64, seed=op_seed)`` as TensorFlow 1.x graphs draw it;
    ``op_seed`` None: a fresh NumPy draw (nothing to reproduce; also what a model being loaded
    gets before its stored weights replace it)."""
    shape = tuple(int(d) for d in shape)
    if op_seed is None:
        return np.random.default_rng().normal(mean, std, shape)
    return standard_normal(int(np.prod(shape)), op_seed).reshape(shape) * std + mean


def check_seed(seed):
    """``seed`` if it is an integer or None (no seed: the weights differ run to run)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an integer or null, got {seed!r}")
    return None if seed is None else int(seed)


def shifted(seed: int | None, offset: int) -> int | None:
    """The seed ``offset`` further on (None stays None)."""
    return None if seed is None else seed + offset


def net_seed_shift(neuron) -> int:
    """How far a section's seed moves per net of widths ``neuron`` (DeePMD-kit's rule; the same
    for an embedding net and for a fitting net, which has one more layer but counts from 0)."""
    return 3 * (len(neuron) + 1)
