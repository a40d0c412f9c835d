"""The reciprocal-space part of the Ewald sum of point charges in a periodic box, as DeePMD-kit's
DPLR defines it (its ``EwaldRecp``): energy, forces and virial.

Box rows a, b, c (Angstrom), volume V, reciprocal vectors a*, b*, c* (the rows of inv(box)^T, no
2 pi), charges q_i (e) at r_i. For integer triples m with |m_d| <= K_d / 2, m != 0,
``k_m = m_0 a* + m_1 b* + m_2 c*``, ``S(m) = sum_i q_i exp(2 pi i k_m . r_i)``:

    E   = c / (2 pi V) sum_m exp(-pi^2 |k_m|^2 / beta^2) / |k_m|^2 |S(m)|^2
    F_i = -dE/dr_i
    W   = c / (2 pi V) sum_m e_m (delta_ab - 2 (1 + pi^2 |k_m|^2 / beta^2) k_a k_b / |k_m|^2)

with e_m the m-th term of E and c = 14.399645... eV Angstrom / e^2 (DeePMD-kit's electrostatic
conversion). The grid K_d is the smallest even integer with K_d h >= |box row d| (h the spacing,
``ewald_h``); beta is ``ewald_beta`` (1/Angstrom). There is no real-space or self term: in DPLR the
model learns the short-range part. Everything is float64 NumPy; the sums over the grid are products of
per-direction phase tables (see ``ewald_recp``).
"""
from __future__ import annotations

import math

import numpy as np

ELECTROSTATIC = 14.39964535475696995031  # e^2 / (4 pi eps0) in eV Angstrom (DeePMD-kit's constant)


def grid(box: np.ndarray, spacing: float) -> list[int]:
    """K_d per box row: the smallest even integer with K_d * spacing >= |row d|."""
    out = []
    for row in np.asarray(box, "float64").reshape(3, 3):
        length = math.sqrt(float(row @ row))
        k = int(length / spacing)
        if k * spacing < length:
            k += 1
        out.append(k + (k % 2))
    return out


def reciprocal(box: np.ndarray) -> tuple[np.ndarray, float]:
    """(rows a*, b*, c* with a* . a = 1, |V|) of the box rows."""
    box = np.asarray(box, "float64").reshape(3, 3)
    a, b, c = box
    volume = float(a @ np.cross(b, c))
    return np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)]) / abs(volume), abs(volume)


def ewald_recp(coord, charge, box, spacing: float, beta: float):
    """(energy float, force natoms x 3, virial 9) of one frame: coord natoms x 3, charge natoms,
    box 3 x 3 (rows). Units: eV, eV/Angstrom, eV (DeePMD-kit's virial sign).

    exp(2 pi i k_m . r_j) factorises over the three reciprocal directions, so S(m) on the whole
    (K_0+1)(K_1+1)(K_2+1) grid is one complex matrix product of per-direction phase tables
    (natoms x (K_d+1) each, the only trigonometry), and so are the forces."""
    coord = np.asarray(coord, "float64").reshape(-1, 3)
    charge = np.asarray(charge, "float64").reshape(-1)
    if charge.shape[0] != coord.shape[0]:
        raise ValueError(f"ewald_recp: {coord.shape[0]} positions but {charge.shape[0]} charges")
    if not (spacing > 0 and beta > 0):
        raise ValueError(f"ewald_recp: ewald_h ({spacing}) and ewald_beta ({beta}) must be positive")
    rec, volume = reciprocal(box)
    frac = coord @ rec.T  # fractional coordinates, n x 3
    n, kk = coord.shape[0], grid(box, spacing)
    ms = [np.arange(-k // 2, k // 2 + 1) for k in kk]
    # phase tables e_d[j, m_d] = exp(2 pi i m_d s_jd)
    e0, e1, e2 = (np.exp(2j * math.pi * np.outer(frac[:, d], ms[d])) for d in range(3))
    n0, n1, n2 = (len(m) for m in ms)
    a01 = (e0[:, :, None] * e1[:, None, :]).reshape(n, n0 * n1)  # n x (m0, m1)
    s = ((a01 * charge[:, None]).T @ e2).reshape(n0, n1, n2)  # S(m)
    m = np.stack(np.meshgrid(*ms, indexing="ij"), axis=-1).astype("float64")  # n0 x n1 x n2 x 3
    k = m @ rec  # Cartesian wave vectors
    k2 = np.einsum("...d,...d->...", k, k)
    k2[n0 // 2, n1 // 2, n2 // 2] = 1.0  # (m = 0 is left out: its weight is set to 0 below)
    g = np.exp(-math.pi ** 2 * k2 / beta ** 2) / k2
    g[n0 // 2, n1 // 2, n2 // 2] = 0.0
    e_m = g * (s.real ** 2 + s.imag ** 2)
    pre = ELECTROSTATIC / (2.0 * math.pi * volume)
    energy = float(e_m.sum()) * pre
    v = -2.0 * (1.0 + math.pi ** 2 * k2 / beta ** 2) / k2
    kf = k.reshape(-1, 3)
    virial = (np.einsum("k,ka,kb->ab", (e_m * v).reshape(-1), kf, kf) + np.eye(3) * e_m.sum()) * pre
    # F_j = 4 pi q_j Im(sum_m exp(2 pi i k_m . r_j) g_m conj(S_m) k_m) (times pre)
    force = np.empty([n, 3])
    hs = g * np.conj(s)
    for a in range(3):
        t = e2 @ (hs * k[..., a]).reshape(n0 * n1, n2).T  # n x (m0, m1)
        force[:, a] = np.einsum("jm,jm->j", a01, t).imag
    force *= (4.0 * math.pi * pre) * charge[:, None]
    return energy, force, virial.reshape(9)
