"""One configuration through LAMMPS and the pair style (``run 0``): what LAMMPS computes at
step 0, read back through LAMMPS's Python module, for checks against ``DeepPot``.

``lammps_eval(model, coord, cell, atype, type_map)`` -> dict of numpy arrays in the input atom
order: ``energy`` (eV), ``force`` [na, 3], ``virial`` [6] and ``atom_energy`` [na],
``atom_virial`` [na, 6] (xx yy zz xy xz yz, eV, the model's and LAMMPS's sign). The virial comes
from ``compute pressure ... virial`` (times volume / nktv2p), the per-atom virial from ``compute
stress/atom`` (minus, / nktv2p). A cell that is not LAMMPS-shaped is rotated (``data.write_data``):
forces and virials are then in the rotated frame, returned as ``rotation``.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .build import lammps_instance
from .data import write_data


def lammps_eval(model, coord, cell, atype, type_map, elements=None) -> dict:
    """``elements``: the element of each LAMMPS type (default ``type_map``)."""
    coord = np.asarray(coord, dtype=np.float64).reshape(-1, 3)
    n = len(coord)
    with tempfile.TemporaryDirectory(prefix="dpp_lammps_") as tmp:
        data = os.path.join(tmp, "conf.data")
        rotation = write_data(data, coord, cell, atype, type_map)
        lmp = lammps_instance(["-log", "none", "-screen", "none", "-nocite"])
        try:
            for c in ["units metal", "atom_style atomic", "atom_modify map yes", f"read_data {data}",
                      f"pair_style deepmd/paddle {model}", f"pair_coeff * * {' '.join(elements or type_map)}",
                      "compute dpp_pe_atom all pe/atom", "compute dpp_s_atom all stress/atom NULL virial",
                      "compute dpp_w all pressure NULL virial", "thermo_style custom step pe c_dpp_w[1]", "run 0"]:
                lmp.command(c)
            order = np.argsort(lmp.numpy.extract_atom("id")[:n])
            nktv2p = lmp.extract_global("nktv2p")
            volume = lmp.get_thermo("vol")
            out = {
                "energy": lmp.get_thermo("pe"),
                "force": np.array(lmp.numpy.extract_atom("f")[:n][order]),
                "virial": np.array(lmp.numpy.extract_compute("dpp_w", 0, 1)) * volume / nktv2p,
                "atom_energy": np.array(lmp.numpy.extract_compute("dpp_pe_atom", 1, 1)[:n][order]),
                "atom_virial": -np.array(lmp.numpy.extract_compute("dpp_s_atom", 1, 2)[:n][order]) / nktv2p,
                "rotation": rotation,
            }
        finally:
            lmp.close()
    return out
