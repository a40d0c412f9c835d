"""A dpdata driver: ``dpdata.System(...).predict(model, driver="dpp")`` (and ``minimize``) label
frames with a deepmd_paddle model, as DeePMD-kit's ``driver="dp"`` does with its own models.

dpdata loads this module through the ``dpdata.plugins`` entry point (setup.py). The driver is
registered as "dpp" and "deepmd-paddle"; also as "dp" when DeePMD-kit is not installed (there,
"dp" is dpdata's own driver, which needs DeePMD-kit; with DeePMD-kit installed "dp" stays its).
"""
from __future__ import annotations

import importlib.util

import numpy as np
from dpdata.driver import Driver

NAMES = ("dpp", "deepmd-paddle") + (() if importlib.util.find_spec("deepmd") else ("dp",))


class DPPDriver(Driver):
    """Label with ``deepmd_paddle.infer.DeepPot``; ``dp``: a model path or a ``DeepPot``.

    The data's atoms are matched to the model's types by element name (the data's
    ``atom_names``), so the two type orders need not agree."""

    def __init__(self, dp, **kwargs) -> None:
        from .deeppot import DeepPot

        self.dp = dp if isinstance(dp, DeepPot) else DeepPot(dp, **kwargs)

    def label(self, data: dict) -> dict:
        nframes, natoms = data["coords"].shape[:2]
        names = np.asarray(data["atom_names"])[np.asarray(data["atom_types"])]
        missing = sorted(set(names) - set(self.dp.get_type_map()))
        if missing:
            raise ValueError(f"the system has elements {missing} that the model's type_map "
                             f"{self.dp.get_type_map()} lacks")
        cells = None if data.get("nopbc", False) else np.reshape(data["cells"], (nframes, 9))
        e, f, v = self.dp.eval(np.reshape(data["coords"], (nframes, natoms * 3)), cells, list(names))[:3]
        data = data.copy()
        data["energies"] = np.reshape(e, (nframes,))
        data["forces"] = np.reshape(f, (nframes, natoms, 3))
        data["virials"] = np.reshape(v, (nframes, 3, 3))
        return data


for _name in NAMES:
    DPPDriver = Driver.register(_name)(DPPDriver)
