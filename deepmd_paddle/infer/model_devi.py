"""Model deviation (``dpp model-devi``): how much an ensemble of models disagrees, per frame.

DeePMD-kit's definitions (its docs' "Calculate Model Deviation"; Eqs. 71-72 of the DeePMD-kit v2
paper), with ``<.>`` the mean over the models (population standard deviation) and N atoms:

- force, per atom: ``eps_F,i = |std_models(F_i)|``, the norm of the per-component standard
  deviation; ``max/min/avg_devi_f`` over atoms. With ``relative = l``: ``eps_F,i / (|<F_i>| + l)``.
- virial (divided by N before): ``eps_V,ab = std_models(V_ab)``; ``max/min_devi_v`` over the 9
  components, ``avg_devi_v = |eps_V| / 3`` (the RMS); ``relative_v = l``: ``eps_V / (|<V>| + l)``.
- energy (per atom): ``devi_e = std_models(E/N)``.
- ``real_*`` given: the RMS over the models of the difference to the labels replaces the std,
  and the relative magnitudes are those of the labels.

The output is DeePMD-kit's ``model_devi.out``: a ``# <system>`` line, a ``# step max_devi_v ...
devi_e [atm_devi_f(N)]`` header, one row per frame (step = frame index x frequency), format
``%12d`` then ``%19.6e``, one block per system. The Python functions keep DeePMD-kit's
signatures and return values (``deepmd.infer.model_devi``; DP-GEN and dpgen2 call them).
"""
from __future__ import annotations

import argparse
import os

import numpy as np

COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")


def calc_model_devi_f(fs, real_f=None, relative: float | None = None, atomic: bool = False):
    """fs: n_models x n_frames x n_atoms x 3 (real_f: n_frames x n_atoms x 3) ->
    (max, min, avg) over atoms, each [n_frames], and with ``atomic`` the per-atom deviation
    [n_frames, n_atoms] as a fourth item."""
    fs = np.asarray(fs)
    if real_f is None:
        devi = np.linalg.norm(np.std(fs, axis=0), axis=-1)  # n_frames x n_atoms
    else:
        devi = np.linalg.norm(np.sqrt(np.mean(np.square(fs - real_f), axis=0)), axis=-1)
    if relative is not None:
        magnitude = np.linalg.norm(np.mean(fs, axis=0) if real_f is None else np.asarray(real_f), axis=-1)
        devi = devi / (magnitude + relative)
    out = (np.max(devi, axis=-1), np.min(devi, axis=-1), np.mean(devi, axis=-1))
    return out + (devi,) if atomic else out


def calc_model_devi_v(vs, real_v=None, relative: float | None = None):
    """vs: n_models x n_frames x 9 (real_v: n_frames x 9) -> (max, min, RMS) over the 9
    components, each [n_frames]. (Divide by the number of atoms before, as calc_model_devi does.)"""
    vs = np.asarray(vs)
    if real_v is None:
        devi = np.std(vs, axis=0)  # n_frames x 9
    else:
        devi = np.sqrt(np.mean(np.square(vs - real_v), axis=0))
    if relative is not None:
        # per frame (DeePMD-kit's C++ compute_relative_std_v); its Python function broadcasts the
        # n_frames magnitudes against the 9 components, which only works for a single frame
        magnitude = np.linalg.norm(np.mean(vs, axis=0) if real_v is None else np.asarray(real_v), axis=-1)
        devi = devi / (magnitude[..., None] + relative)
    return np.max(devi, axis=-1), np.min(devi, axis=-1), np.linalg.norm(devi, axis=-1) / 3


def calc_model_devi_e(es, real_e=None) -> np.ndarray:
    """es: n_models x n_frames x 1, energies per atom (real_e: n_frames x 1) -> [n_frames]."""
    es = np.asarray(es)
    devi = np.std(es, axis=0) if real_e is None else np.sqrt(np.mean(np.square(es - real_e), axis=0))
    return np.squeeze(devi, axis=-1)


def _header(header: str, atomic: bool) -> str:
    title = f"{'step':10s}" + "".join(f"{c:19s}" for c in COLUMNS) + (f"{'atm_devi_f(N)':19s}" if atomic else "")
    return f"{header}\n{title}"


def _write_rows(f, devi: np.ndarray, header: str, atomic: bool) -> None:
    np.savetxt(f, devi, fmt=["%12d"] + ["%19.6e"] * (devi.shape[1] - 1), delimiter="", header=_header(header, atomic))


def write_model_devi_out(devi: np.ndarray, fname: str, header: str = "", atomic: bool = False) -> np.ndarray:
    """Append ``devi`` (rows ``[step, *COLUMNS(, per-atom force deviations)]``) to ``fname`` under
    DeePMD-kit's two header lines; returns ``devi``."""
    devi = np.asarray(devi)
    if devi.ndim != 2 or (devi.shape[1] != 8 if not atomic else devi.shape[1] <= 8):
        raise ValueError(f"model deviation rows must be n_frames x {'more than 8' if atomic else '8'} columns "
                         f"(step, {', '.join(COLUMNS)}{', per-atom force deviations' if atomic else ''}); "
                         f"got shape {devi.shape}")
    with open(fname, "ab") as f:
        _write_rows(f, devi, header, atomic)
    return devi


def check_type_maps(models) -> list[str]:
    maps = [list(m.get_type_map()) for m in models]
    if any(tm != maps[0] for tm in maps[1:]):
        raise ValueError(f"the models have different type maps: {maps}; model deviation needs identical ones")
    return maps[0]


def calc_model_devi(coord, box, atype, models, fname: str | None = None, frequency: int = 1,
                    mixed_type: bool = False, fparam=None, aparam=None, real_data: dict | None = None,
                    atomic: bool = False, relative: float | None = None, relative_v: float | None = None) -> np.ndarray:
    """Rows ``[step, *COLUMNS]`` (n_frames x 8, plus n_atoms columns with ``atomic``) for frames
    ``coord`` [nf, na(*3)], ``box`` [nf, 9] or None, ``atype`` [na] ([nf, na] with ``mixed_type``);
    ``models``: ``DeepPot`` objects. ``real_data``: {"energy" [nf, 1] per atom, "force"
    [nf, na, 3], "virial" [nf, 9] per atom}: RMS errors against the labels instead of deviations.
    Appends to ``fname`` when given."""
    if len(models) < 2 and real_data is None:
        raise ValueError(f"model deviation needs at least 2 models, got {len(models)}")
    check_type_maps(models)
    coord = np.asarray(coord)
    natom = np.asarray(atype).shape[-1]
    extra = {k: v for k, v in (("fparam", fparam), ("aparam", aparam)) if v is not None}
    rets = [m.eval(coord, box, atype, mixed_type=mixed_type, **extra) for m in models]
    es = np.array([np.reshape(r[0], (-1, 1)) / natom for r in rets])
    fs = np.array([np.reshape(r[1], (len(es[0]), natom, 3)) for r in rets])
    vs = np.array([np.reshape(r[2], (-1, 9)) / natom for r in rets])
    real = real_data or {}
    devi_f = calc_model_devi_f(fs, real.get("force"), relative=relative, atomic=atomic)
    devi = np.column_stack([np.arange(coord.shape[0], dtype=np.int64) * frequency,
                            *calc_model_devi_v(vs, real.get("virial"), relative=relative_v), *devi_f[:3],
                            calc_model_devi_e(es, real.get("energy"))])
    if atomic:
        devi = np.concatenate([devi, devi_f[3]], axis=1)
    if fname:
        write_model_devi_out(devi, fname, atomic=atomic)
    return devi


def system_label(path: str, spec: str) -> str:
    """How a system is named in output headers: as DeePMD-kit's ``expand_sys_str`` spells it
    (relative to the working folder when the user's path was relative)."""
    return path if os.path.isabs(os.path.expanduser(spec)) else os.path.relpath(path)


def make_model_devi(*, models: list, system: str, output: str, frequency: int = 1, real_error: bool = False,
                    atomic: bool = False, relative: float | None = None, relative_v: float | None = None,
                    fmt: str | None = None, **kwargs) -> list[np.ndarray]:
    """``dpp model-devi``: every system found under ``system``; returns the rows per system.
    ``output`` is replaced (not appended to, unlike DeePMD-kit) only when every model and system
    has been read and evaluated."""
    from ..data.params import attach
    from ..data.system import expand_systems, load_system
    from ..utils.files import atomic_output, check_writable
    from .deeppot import DeepPot

    check_writable(output, "-o/--output")
    dps = [DeepPot(m) for m in models]
    if len(dps) < 2 and not real_error:
        raise ValueError(f"-m/--models: model deviation needs at least 2 models, got {len(dps)}")
    type_map = check_type_maps(dps)
    paths = expand_systems(system, os.getcwd(), fmt, "-s/--system")
    results = []
    for path in paths:
        s = load_system(path, type_map, fmt)
        # fparam.npy / aparam.npy when the models take them (DeePMD-kit's dp model-devi reads them too)
        attach([s], dps[0].get_dim_fparam(), dps[0].get_dim_aparam(), dps[0].get_default_fparam())
        real = None
        if real_error:
            missing = [k for k in ("energy", "force", "virial") if not s.found[k].all()]
            if missing:
                raise ValueError(f"{path}: --real_error needs the labels {missing} in every frame")
            real = {"energy": s.labels["energy"].reshape(-1, 1) / s.natoms, "force": s.labels["force"],
                    "virial": s.labels["virial"].reshape(-1, 9) / s.natoms}
        results.append(calc_model_devi(s.coord, s.box, s.atype, dps, None, frequency, real_data=real,
                                       atomic=atomic, relative=relative, relative_v=relative_v, **s.params))
    with atomic_output(output) as tmp, open(tmp, "wb") as f:
        for path, rows in zip(paths, results):
            _write_rows(f, rows, system_label(path, system), atomic)
    return results
