"""Write a LAMMPS data file (``atom_style atomic``, ``units metal``) of one configuration.

LAMMPS wants a restricted triclinic cell: a along x, b in the xy plane (rows
``a = (lx, 0, 0)``, ``b = (xy, ly, 0)``, ``c = (xz, yz, lz)``). Another cell is rotated into that
form and the coordinates with it: the returned ``rotation`` maps the given frame to LAMMPS's
(``x_lammps = x @ rotation``); forces and virials come back in LAMMPS's frame.
"""
from __future__ import annotations

import numpy as np


def lammps_cell(cell) -> tuple[np.ndarray, np.ndarray]:
    """(the cell as LAMMPS holds it, 3 x 3 rows, lower triangular; rotation 3 x 3)."""
    h = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if h[0, 1] == 0 and h[0, 2] == 0 and h[1, 2] == 0 and np.all(np.diag(h) > 0):
        return h.copy(), np.eye(3)
    # h^T = Q R (QR of the column matrix): h = R^T Q^T, so x @ Q maps to the lower triangle R^T
    q, r = np.linalg.qr(h.T)
    s = np.diag(np.sign(np.diag(r)))  # positive diagonal
    q, r = q @ s, s @ r
    if np.linalg.det(q) < 0:
        raise ValueError("the cell is left-handed (det < 0): LAMMPS needs a right-handed cell")
    return r.T, q


def write_data(path, coord, cell, atype, type_map, masses=None) -> np.ndarray:
    """Write ``path``; coord [na, 3] (Angstrom), cell [3, 3] or [9] rows a, b, c, atype [na]
    (model type indices, LAMMPS type = index + 1), type_map: element names (for the masses).
    Returns the rotation (identity for a LAMMPS-shaped cell)."""
    from ase.data import atomic_masses, atomic_numbers

    coord = np.asarray(coord, dtype=np.float64).reshape(-1, 3)
    atype = np.asarray(atype).reshape(-1)
    if masses is None:
        unknown = [n for n in type_map if n not in atomic_numbers]
        if unknown:
            raise ValueError(f"no mass for type(s) {unknown}: pass masses=")
        masses = [float(atomic_masses[atomic_numbers[n]]) for n in type_map]
    h, rot = lammps_cell(cell)
    h, x = h.tolist(), (coord @ rot).tolist()  # Python floats: repr gives the shortest exact digits
    masses = [float(m) for m in masses]
    lines = ["LAMMPS data file written by deepmd_paddle", "", f"{len(atype)} atoms", f"{len(type_map)} atom types", "",
             f"0.0 {h[0][0]!r} xlo xhi", f"0.0 {h[1][1]!r} ylo yhi", f"0.0 {h[2][2]!r} zlo zhi"]
    if h[1][0] != 0 or h[2][0] != 0 or h[2][1] != 0:
        lines.append(f"{h[1][0]!r} {h[2][0]!r} {h[2][1]!r} xy xz yz")
    lines += ["", "Masses", ""] + [f"{t + 1} {m!r}  # {n}" for t, (n, m) in enumerate(zip(type_map, masses))]
    lines += ["", "Atoms  # atomic", ""]
    lines += [f"{i + 1} {int(t) + 1} {p[0]!r} {p[1]!r} {p[2]!r}" for i, (t, p) in enumerate(zip(atype, x))]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return rot
