"""Brute-force NumPy references for the neighbour list and the environment matrix.

O(N^2 * images), float64, written for clarity; tests hold the C++ operator and the plain-Paddle
twins to these. Conventions (see deepmd_paddle/kernels/build.py): slots grouped by neighbour type,
``sel[t]`` per type, nearest first, ties broken by local index then by the integer lattice
shift (lexicographic); ``r_ij = coord[j] + shift - coord[i]``.
"""
from __future__ import annotations

import numpy as np


def switch(r, rcut_smth, rcut):
    u = np.clip((r - rcut_smth) / (rcut - rcut_smth), 0.0, 1.0)
    return u**3 * (-6 * u**2 + 15 * u - 10) + 1


def neighbor_list_np(coord, box, atype, rcut, sel):
    """(nlist, shift, nmax, mindist) for coord [nf, nloc, 3], box [nf, 9] or None."""
    coord = np.asarray(coord, dtype=np.float64)
    nf, nloc, _ = coord.shape
    nnei, ntypes = int(sum(sel)), len(sel)
    nlist = -np.ones((nf, nloc, nnei), dtype=np.int32)
    shift = np.zeros((nf, nloc, nnei, 3))
    nmax = np.zeros((nf, ntypes), dtype=np.int32)
    mindist = np.full(nf, float(rcut))
    offsets = np.concatenate([[0], np.cumsum(sel)])
    for f in range(nf):
        x = coord[f]
        if box is None:
            H = np.eye(3)
            images = np.zeros((1, 3), dtype=np.int64)
            wrap = np.zeros((nloc, 3), dtype=np.int64)
        else:
            H = np.asarray(box[f], dtype=np.float64).reshape(3, 3)
            frac = x @ np.linalg.inv(H)
            wrap = np.floor(frac).astype(np.int64)
            spacing = abs(np.linalg.det(H)) / np.linalg.norm(np.cross(H[[1, 2, 0]], H[[2, 0, 1]]), axis=1)
            n = np.ceil(rcut / spacing).astype(int)  # wrapped fractional differences are in (-1, 1)
            grids = np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij")
            images = np.stack([g.ravel() for g in grids], axis=1)
        xw = x - wrap @ H if box is not None else x
        tr = images @ H  # nimg x 3
        zero_img = np.all(images == 0, axis=1)
        for i in range(nloc):
            # d[k, j] = (xw[j] - xw[i]) + tr[k]: self images are exact multiples of the lattice
            d = (xw[None, :, :] - xw[i]) + tr[:, None, :]
            r2 = (d**2).sum(-1)  # nimg x nloc
            r2[zero_img, i] = np.inf
            mindist[f] = min(mindist[f], np.sqrt(r2.min()))
            k_idx, j_idx = np.nonzero((r2 < rcut * rcut) & (r2 > 0))
            s = images[k_idx] - wrap[j_idx] + wrap[i]  # integer shift wrt the given coords
            for t in range(ntypes):
                m = atype[f, j_idx] == t
                kk, jj, ss = k_idx[m], j_idx[m], s[m]
                rr = r2[kk, jj]
                nmax[f, t] = max(nmax[f, t], len(jj))
                order = np.lexsort((ss[:, 2], ss[:, 1], ss[:, 0], jj, rr))[: sel[t]]
                lo = offsets[t]
                nlist[f, i, lo : lo + len(order)] = jj[order]
                shift[f, i, lo : lo + len(order)] = ss[order] @ H
    return nlist, shift, nmax, mindist


def build_rij_np(coord, nlist, shift):
    """r_ij = coord[j] + shift - coord[i] (padded slots: coord[0] + shift - coord[i])."""
    coord = np.asarray(coord)
    nf = coord.shape[0]
    j = np.clip(nlist, 0, None)
    cj = coord[np.arange(nf)[:, None, None], j]
    return cj + shift - coord[:, :, None, :]


def env_mat_np(rij, nlist, atype, davg, dstd, rcut, rcut_smth):
    """(R - davg[t_i]) / dstd[t_i], R = w(r) [1/r, x/r^2, y/r^2, z/r^2], 0 on padded slots."""
    rij = np.asarray(rij, dtype=np.float64)
    used = nlist >= 0
    r = np.linalg.norm(np.where(used[..., None], rij, 1.0), axis=-1)
    w = np.where(used, switch(r, rcut_smth, rcut), 0.0)
    R = np.concatenate([(w / r)[..., None], (w / r**2)[..., None] * rij], axis=-1)
    R = np.where(used[..., None], R, 0.0)
    return (R - davg[atype]) / dstd[atype]


def random_frames(kind, natoms=40, nframes=2, seed=0, min_dist=0.7, ntypes=2):
    """Random frames with a minimum pair separation and some atoms outside the box.

    kind: "ortho", "triclinic", "small" (plane spacing below a cutoff of 3-4: several images
    per direction, also of the atom itself) or "open". Returns coord, box (None if open), atype.
    """
    rng = np.random.default_rng(seed)
    base = {
        "ortho": np.diag([7.0, 7.5, 8.0]),
        "triclinic": np.array([[7.0, 0.0, 0.0], [2.1, 6.6, 0.0], [-1.4, 1.7, 7.2]]),
        "small": np.array([[2.6, 0.0, 0.0], [0.7, 2.4, 0.0], [0.5, -0.6, 2.2]]),
        "open": np.diag([7.0, 7.0, 7.0]),
    }[kind]
    coords, boxes = [], []
    for _ in range(nframes):
        H = base * rng.uniform(0.97, 1.03)
        pts = []
        while len(pts) < natoms:
            p = rng.uniform(0, 1, 3) @ H
            d = np.array(pts) - p if pts else np.zeros((0, 3))
            if kind != "open" and len(d):
                fr = d @ np.linalg.inv(H)
                d = (fr - np.round(fr)) @ H
            if not len(d) or np.linalg.norm(d, axis=1).min() > min_dist:
                pts.append(p)
        pts = np.array(pts)
        if kind != "open":
            pts += rng.integers(-2, 3, (natoms, 3)) @ H  # unwrapped coordinates
        coords.append(pts)
        boxes.append(H.reshape(9))
    atype = rng.integers(0, ntypes, (nframes, natoms)).astype(np.int32)
    return np.array(coords), None if kind == "open" else np.array(boxes), atype


def random_stats(ntypes, nnei, seed=0):
    """davg, dstd [ntypes, nnei, 4] that make every normalisation term nontrivial."""
    rng = np.random.default_rng(seed)
    davg = rng.uniform(-0.2, 0.2, (ntypes, nnei, 4))
    dstd = rng.uniform(0.5, 1.5, (ntypes, nnei, 4))
    return davg, dstd
