"""What ``dpp test`` reports and writes, as DeePMD-kit 3.2's ``dp test`` does: the error report of
each system and their weighted average, and the detail files (``.e.out``, ``.e_peratom.out``,
``.f.out``, ``.v.out``, ``.v_peratom.out``, ``.s.out``). A detail file has one header line, that of
the first system written to it, then the rows of every system; the files are replaced only when
every system has been evaluated (written to a temporary name, then renamed)."""
from __future__ import annotations

import os

import numpy as np

from deepmd_paddle.utils.files import atomic_output

# (key, line) in DeePMD-kit's order; a key absent from the errors is not printed
REPORT = (
    ("mae_e", "Energy MAE         : {} eV"), ("rmse_e", "Energy RMSE        : {} eV"),
    ("mae_ea", "Energy MAE/Natoms  : {} eV"), ("rmse_ea", "Energy RMSE/Natoms : {} eV"),
    ("mae_f", "Force  MAE         : {} eV/Å"), ("rmse_f", "Force  RMSE        : {} eV/Å"),
    ("mae_v", "Virial MAE         : {} eV"), ("rmse_v", "Virial RMSE        : {} eV"),
    ("mae_va", "Virial MAE/Natoms  : {} eV"), ("rmse_va", "Virial RMSE/Natoms : {} eV"),
    ("mae_s", "Stress MAE         : {} eV/Å³"), ("rmse_s", "Stress RMSE        : {} eV/Å³"),
    ("mae_ae", "Atomic ener MAE    : {} eV"), ("rmse_ae", "Atomic ener RMSE   : {} eV"),
)
_COMPS = ["xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz"]
_V = " ".join([f"data_v{c}" for c in _COMPS] + [f"pred_v{c}" for c in _COMPS])
_S = " ".join([f"data_s{c}" for c in _COMPS] + [f"pred_s{c}" for c in _COMPS])


def _stat(name: str, pred, ref, scale: float = 1.0) -> dict:
    """{mae_<name>: (value, weight), rmse_<name>: ...}, weight = number of values."""
    d = np.ravel(pred) - np.ravel(ref)
    return {f"mae_{name}": (float(np.mean(np.abs(d))) * scale, float(d.size)),
            f"rmse_{name}": (float(np.sqrt(np.mean(d * d))) * scale, float(d.size))}


def weighted_average(errors: list[dict]) -> dict:
    """DeePMD-kit's merge of (error, weight) pairs: MAE weighted mean, RMSE root of the weighted
    mean square."""
    total, weight = {}, {}
    for err in errors:
        for k, (e, w) in err.items():
            total[k] = total.get(k, 0.0) + (e if k.startswith("mae") else e * e) * w
            weight[k] = weight.get(k, 0.0) + w
    return {k: (total[k] / weight[k] if k.startswith("mae") else float(np.sqrt(total[k] / weight[k])), weight[k])
            for k in total}


def print_report(errors: dict) -> None:
    for key, line in REPORT:
        if key in errors:
            print(line.format(f"{errors[key][0]:e}"))


def _atom_energy(system, path: str, idx) -> np.ndarray:
    """The ``atom_ener.npy`` labels of a DeePMD npy system, [nframes, natoms]."""
    from deepmd_paddle.data.system import DataError, _read

    if not system.sources:
        raise DataError(f"{path}: -a/--atomic needs atom_ener.npy labels in a DeePMD npy system")
    parts = []
    for folder, n in system.sources:
        arr = _read(os.path.join(folder, "atom_ener.npy"), system.natoms, nframes=n)
        if arr is None:
            raise DataError(f"{os.path.join(folder, 'atom_ener.npy')} is missing: -a/--atomic tests atomic energies")
        parts.append(arr)
    return np.concatenate(parts)[idx]


def evaluate_system(evaluator, path: str, label: str, numb_test: int, fmt, atomic: bool, rng, tables: dict,
                    pooled: dict) -> dict:
    """Test one system: print its report, add its rows to ``tables`` (suffix -> [(header, rows)])
    and its per-atom pairs to ``pooled`` (for the parity plot); returns its errors."""
    from deepmd_paddle.data.params import attach
    from deepmd_paddle.data.system import load_system

    s = load_system(path, evaluator.get_type_map(), fmt)
    # fparam.npy / aparam.npy when the model takes them (a missing fparam: the model's default_fparam)
    attach([s], evaluator.get_dim_fparam(), evaluator.get_dim_aparam(), evaluator.get_default_fparam())
    idx = np.arange(s.nframes) if rng is None else rng.permutation(s.nframes)
    idx = idx[: s.nframes if numb_test <= 0 else min(numb_test, s.nframes)]
    n, na = len(idx), s.natoms
    box = None if s.box is None else s.box[idx]
    ret = evaluator.eval(s.coord[idx], box, s.atype, atomic=atomic, **{k: v[idx] for k, v in s.params.items()})
    energy, force, virial = (np.reshape(ret[0], (n, 1)), np.reshape(ret[1], (n, na * 3)), np.reshape(ret[2], (n, 9)))
    ref = {k: s.labels[k][idx].reshape(shape) for k, shape in (("energy", (n, 1)), ("force", (n, na * 3)),
                                                               ("virial", (n, 9)))}
    found = {k: bool(s.found[k][idx].all()) for k in ref}
    err = {}
    if found["energy"]:
        err.update(_stat("e", energy, ref["energy"]))
        err.update(_stat("ea", energy, ref["energy"], 1.0 / na))
        pooled.setdefault("energy", []).append((ref["energy"] / na, energy / na))
    if found["force"]:
        err.update(_stat("f", force, ref["force"]))
        pooled.setdefault("force", []).append((ref["force"], force))
    stress = None
    if found["virial"] and box is not None:
        err.update(_stat("v", virial, ref["virial"]))
        err.update(_stat("va", virial, ref["virial"], 1.0 / na))
        volume = np.abs(np.linalg.det(box.reshape(n, 3, 3))).reshape(n, 1)
        stress = (-ref["virial"] / volume, -virial / volume)  # eV/A^3, tensile positive
        err.update(_stat("s", stress[1], stress[0]))
        pooled.setdefault("virial", []).append((ref["virial"] / na, virial / na))
    if atomic:
        err.update(_stat("ae", np.reshape(ret[3], (n, na)), _atom_energy(s, path, idx)))
    print("# ---------------output of dp test--------------- ")
    print(f"# testing system : {label}")
    print(f"# number of test data : {n:d} ")
    print_report(err)
    print("# ----------------------------------------------- ")
    pe = np.concatenate([ref["energy"], energy], axis=1)
    pv = np.concatenate([ref["virial"], virial], axis=1)
    rows = {".e.out": (f"{label}: data_e pred_e", pe), ".e_peratom.out": (f"{label}: data_e pred_e", pe / na),
            ".f.out": (f"{label}: data_fx data_fy data_fz pred_fx pred_fy pred_fz",
                       np.concatenate([ref["force"].reshape(-1, 3), force.reshape(-1, 3)], axis=1)),
            ".v.out": (f"{label}: {_V}", pv), ".v_peratom.out": (f"{label}: {_V}", pv / na)}
    if stress is not None:
        rows[".s.out"] = (f"{label} (eV/Å³): {_S}", np.concatenate(stress, axis=1))
    for suffix, part in rows.items():
        tables.setdefault(suffix, []).append(part)
    return err


def write_details(files: dict) -> None:
    """``files``: path -> [(header, rows)] per system; the first system's header heads the file."""
    for path, parts in files.items():
        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for i, (header, arr) in enumerate(parts):
                np.savetxt(f, arr, header=header if i == 0 else "")


def save_png(fig, path: str) -> None:
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
