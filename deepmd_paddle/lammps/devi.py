"""Model deviation in LAMMPS: the rows of DeePMD-kit's ``model_devi.out`` that ``pair_style deepmd
M1 M2 ... out_freq N out_file FILE [atomic] [relative L] [relative_v L]`` writes (rank 0).

Columns (DeePMD-kit's pair style, ``source/lmp/pair_deepmd.cpp``): ``step``, ``max_devi_v``,
``min_devi_v``, ``avg_devi_v``, ``max_devi_f``, ``min_devi_f``, ``avg_devi_f`` and, with
``atomic``, the force deviation of every atom in the order of the atom IDs. No energy column.

- force, per atom: ``infer.model_devi.calc_model_devi_f`` (the norm of the standard deviation
  over the models; ``relative``: divided by ``|<F_i>| + l``);
- virial, per component of ``W / N`` (N atoms): the standard deviation over the models, max and
  min over the 9 components and ``avg_devi_v`` their RMS (``calc_model_devi_v``). ``relative_v`` divides each component
  by ``|<W_ab / N>| + l``, as the pair style does (``DeepPotModelDevi::compute_relative_std`` on
  single components); DeePMD-kit's Python ``calc_model_devi_v`` divides by the norm of the mean
  virial instead, so only without ``relative_v`` do the two files agree.

Units as DeePMD-kit converts them: the deviations are computed in the model's units (eV,
Angstrom), the levels ``l`` of ``relative``/``relative_v`` are divided by the energy factor
first, and the virial columns are multiplied by the energy factor, the force columns by the force
factor (with ``relative`` too). Rows: ``%12d`` then `` %18.6e`` per value; the header is
DeePMD-kit's (``#`` + the names right-aligned in 11 and 19 characters). The files of
tests/fixtures/lammps_devi, written by DeePMD-kit 3.2.0's pair style, come out the same character
for character.
"""
from __future__ import annotations

import numpy as np

from ..infer.model_devi import calc_model_devi_f, calc_model_devi_v

NAMES = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f")


def header(atomic: bool) -> str:
    line = "#" + f"{'step':>11}" + "".join(f"{n:>19}" for n in NAMES)
    return line + (f"{'atm_devi_f(N)':>19}" if atomic else "") + "\n"


def format_row(step: int, values) -> str:
    return f"{int(step):12d}" + "".join(f" {v:18.6e}" for v in values) + "\n"


def virial_devi(vs, natoms: int, relative_v: float | None = None) -> np.ndarray:
    """vs: nmodels x 9 virials (the whole system) -> (max, min, RMS) over the 9 components of the
    deviation of ``W / natoms`` (see the module docstring for ``relative_v``)."""
    v = np.asarray(vs, dtype=np.float64).reshape(-1, 9) / natoms
    if relative_v is None:
        return np.array([x[0] for x in calc_model_devi_v(v[:, None])])
    devi = np.std(v, axis=0) / (np.abs(np.mean(v, axis=0)) + relative_v)  # the pair style's, per component
    return np.array([devi.max(), devi.min(), np.sqrt(np.mean(devi**2))])


def devi_row(fs, vs, relative: float | None = None, relative_v: float | None = None,
             atomic: bool = False) -> np.ndarray:
    """The values of a row (model units): fs nmodels x natoms x 3 (atoms in ID order), vs
    nmodels x 9 -> [max_v, min_v, avg_v, max_f, min_f, avg_f (, per-atom force deviations)]."""
    fs = np.asarray(fs, dtype=np.float64)
    max_f, min_f, avg_f, per_atom = calc_model_devi_f(fs[:, None], relative=relative, atomic=True)
    row = [virial_devi(vs, fs.shape[1], relative_v), [max_f[0], min_f[0], avg_f[0]]]
    if atomic:
        row.append(per_atom[0])
    return np.concatenate(row)


class DeviWriter:
    """``out_file`` on rank 0: truncated with DeePMD-kit's header (appended to after a restart);
    a row per deviation step, flushed, so that a run that stops keeps its rows."""

    def __init__(self, path: str, atomic: bool, append: bool = False):
        self.path = path
        self.file = open(path, "a" if append else "w", encoding="utf-8")
        if not append:
            self.file.write(header(atomic))
            self.file.flush()

    def write(self, step: int, values) -> None:
        self.file.write(format_row(step, values))
        self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
