"""What ``dpp test -d`` and the plots write: DeePMD-kit's detail files and PNGs, each replaced
only when every system has been evaluated (written to a temporary name, then renamed)."""
from __future__ import annotations

import numpy as np

from deepmd_paddle.utils.files import atomic_output


def detail_tables(tables: dict, system: str, natoms: int, pairs: dict) -> None:
    """DeePMD-kit's ``dp test -d`` tables of one system: reference columns, then prediction columns."""
    comps = ["xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz"]
    specs = {"energy": (".e.out", ["e"], 1), "force": (".f.out", ["fx", "fy", "fz"], 3),
             "virial": (".v.out", [f"v{c}" for c in comps], 9)}
    for name, (ref, pred) in pairs.items():
        ext, cols, width = specs[name]
        table = np.concatenate([ref.reshape(-1, width), pred.reshape(-1, width)], axis=1)
        header = f"{system}: " + " ".join([f"data_{c}" for c in cols] + [f"pred_{c}" for c in cols])
        outs = [(ext, table)] + ([(ext.replace(".out", "_peratom.out"), table / natoms)] if name != "force" else [])
        for suffix, arr in outs:
            tables.setdefault(suffix, []).append((header, arr))


def write_detail(prefix: str, tables: dict) -> None:
    for suffix, parts in tables.items():
        with atomic_output(prefix + suffix) as tmp, open(tmp, "w") as f:
            for header, arr in parts:
                np.savetxt(f, arr, header=header)


def save_png(fig, path: str) -> None:
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
