"""Model deviation (``dpp model-devi``): how much an ensemble of models disagrees, per frame.

DeePMD-kit's definitions (the docs' "Calculate Model Deviation"), with ``<.>`` the mean over the
models and N the number of atoms:

- force, per atom: ``eps_F,i = sqrt(< |F_i - <F_i>|^2 >)``; ``max/min/avg_devi_f`` over atoms;
- virial, per component: ``eps_V,ab = sqrt(< (V_ab - <V_ab>)^2 >) / N``; ``max/min_devi_v`` over
  the 9 components, ``avg_devi_v = sqrt(sum_ab eps_V,ab^2 / 9)`` (the RMS, not the mean);
- energy: ``devi_e = sqrt(< (E/N - <E/N>)^2 >)``.

The output file is DeePMD-kit 3's: a ``# <system>`` line, a ``# step max_devi_v ... devi_e``
header, then one row per frame (step = frame index x frequency), appended per system.
"""
from __future__ import annotations

import argparse

import numpy as np

COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")


def calc_model_devi_f(fs: np.ndarray):
    """fs: nmodels x nframes x natoms x 3 -> (max, min, avg) over atoms, each [nframes]."""
    fs = np.asarray(fs)
    devi = np.sqrt(np.mean(np.sum((fs - fs.mean(axis=0)) ** 2, axis=-1), axis=0))  # nframes x natoms
    return devi.max(axis=-1), devi.min(axis=-1), devi.mean(axis=-1)


def calc_model_devi_v(vs: np.ndarray, natoms: int):
    """vs: nmodels x nframes x 9 -> (max, min, RMS) over the 9 components, divided by natoms."""
    vs = np.asarray(vs)
    devi = np.sqrt(np.mean((vs - vs.mean(axis=0)) ** 2, axis=0)) / natoms  # nframes x 9
    return devi.max(axis=-1), devi.min(axis=-1), np.sqrt(np.mean(devi**2, axis=-1))


def calc_model_devi_e(es: np.ndarray, natoms: int) -> np.ndarray:
    """es: nmodels x nframes (x 1) -> the spread of the energy per atom, [nframes]."""
    es = np.asarray(es).reshape(len(es), -1) / natoms
    return np.sqrt(np.mean((es - es.mean(axis=0)) ** 2, axis=0))


def calc_model_devi(coord, box, atype, models, fname: str | None = None, frequency: int = 1,
                    header: str = "") -> np.ndarray:
    """Rows ``[step, *COLUMNS]`` (nframes x 8) for frames ``coord`` [nf, na(*3)], ``box`` [nf, 9]
    or None, ``atype`` [na]; ``models``: ``DeepPot`` objects. Appends to ``fname`` when given."""
    if len(models) < 2:
        raise ValueError(f"model deviation needs at least 2 models, got {len(models)}")
    check_type_maps(models)
    es, fs, vs = zip(*(m.eval(coord, box, atype) for m in models))
    natoms = np.asarray(fs[0]).shape[1]
    nframes = np.asarray(es[0]).shape[0]
    devi = np.column_stack([
        np.arange(nframes) * frequency,
        *calc_model_devi_v(np.stack(vs), natoms),
        *calc_model_devi_f(np.stack(fs)),
        calc_model_devi_e(np.stack(es), natoms),
    ])
    if fname:
        write_model_devi_out(devi, fname, header)
    return devi


def write_model_devi_out(devi: np.ndarray, fname: str, header: str = "") -> None:
    """Append rows to ``fname`` in DeePMD-kit's layout (step %12d, values %19.6e)."""
    with open(fname, "ab") as f:
        _write_rows(f, devi, header)


def _write_rows(f, devi: np.ndarray, header: str) -> None:
    title = f"{'step':10s}" + "".join(f"{c:19s}" for c in COLUMNS)
    np.savetxt(f, devi, fmt=["%12d"] + ["%19.6e"] * len(COLUMNS), delimiter="", header=f"{header}\n{title}")


def check_type_maps(models) -> None:
    maps = [m.get_type_map() for m in models]
    if any(tm != maps[0] for tm in maps[1:]):
        raise ValueError(f"the models have different type maps: {maps}; model deviation needs identical ones")


def make_model_devi(models: list[str], system: str, output: str, frequency: int = 1, fmt=None) -> list[np.ndarray]:
    """``dpp model-devi``: every system found under ``system``; returns the rows per system.
    ``output`` is replaced only when every model and system has been read and evaluated."""
    import os

    from ..data.system import expand_systems, load_system
    from ..utils.files import atomic_output, check_writable
    from .deeppot import DeepPot

    check_writable(output, "-o/--output")
    dps = [DeepPot(m) for m in models]
    check_type_maps(dps)
    paths = expand_systems(system, os.getcwd(), fmt, "--system")
    systems = [load_system(path, dps[0].get_type_map(), fmt) for path in paths]
    results = [calc_model_devi(s.coord, s.box, s.atype, dps, None, frequency) for s in systems]
    with atomic_output(output) as tmp, open(tmp, "wb") as f:
        for path, rows in zip(paths, results):
            _write_rows(f, rows, os.path.relpath(path))
    return results


# ----------------------------------------------------------------------------- CLI hooks
def add_model_devi_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``dpp model-devi`` (DeePMD-kit's ``dp model-devi``)."""
    parser.add_argument("-m", "--models", nargs="+", required=True,
                        help="two or more models (frozen, checkpoint or .dp)")
    parser.add_argument("-s", "--system", default=".", help="a system, or a folder searched for systems (default: .)")
    parser.add_argument("-o", "--output", default="model_devi.out", help="output file (default: model_devi.out)")
    parser.add_argument("-f", "--frequency", type=int, default=1,
                        help="steps between the frames of the trajectory: step = frame index x frequency")
    parser.add_argument("--fmt", help="dpdata format of the system (default: DeePMD npy folders)")
    return parser


def model_devi_main(args: argparse.Namespace) -> int:
    rows = make_model_devi(args.models, args.system, args.output, args.frequency, args.fmt)
    nframes = sum(len(r) for r in rows)
    print(f"model deviation of {len(args.models)} models on {nframes} frames ({len(rows)} systems) -> {args.output}")
    return 0
