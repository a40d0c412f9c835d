"""ASE calculator: ``DP(model)`` gives energy, free energy, forces, virial and stress.

Frame and atomic parameters, for a model that takes them, come from ``atoms.info["fparam"]`` and
``atoms.info["aparam"]`` (DeePMD-kit's calculator reads them there).

ASE's conventions: eV, Angstrom; ``stress`` is ``-virial / volume`` (DeePMD-kit's virial sign,
``W = -sum_ij r_ij (x) dE/dr_ij``, so that ``stress = (1/V) dE/d(strain)``) in Voigt order
xx, yy, zz, yz, xz, xy, in eV/A^3. Open systems (``pbc`` all False) have no stress.
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .infer import DeepPot, types_from_symbols


class DP(Calculator):
    """``model``: a path ``DeepPot`` reads, or a ``DeepPot``. ``type_dict``: element -> type index
    (default: the model's type map, by name)."""

    name = "DP"
    implemented_properties = ["energy", "free_energy", "forces", "virial", "stress"]

    def __init__(self, model, label: str = "DP", type_dict: dict | None = None, **kwargs):
        backend = kwargs.pop("backend", None)
        Calculator.__init__(self, label=label, **kwargs)
        self.dp = model if isinstance(model, DeepPot) else DeepPot(model, backend=backend)
        self.type_map = self.dp.get_type_map()
        self.type_dict = dict(type_dict) if type_dict else None  # None: by name in the type map
        bad = {k: v for k, v in (self.type_dict or {}).items() if not 0 <= int(v) < len(self.type_map)}
        if bad:
            raise ValueError(f"type_dict {bad}: type indices must be in 0..{len(self.type_map) - 1} "
                             f"(the model's type map is {self.type_map})")

    def calculate(self, atoms=None, properties=("energy", "forces"), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        if pbc.any() and not pbc.all():
            raise ValueError(f"DP needs a fully periodic or a fully open system, got pbc={pbc.tolist()}; "
                             "for a slab, make it periodic with enough vacuum (more than rcut) along z")
        atype = types_from_symbols(atoms.get_chemical_symbols(), self.type_map, self.type_dict)
        cell = atoms.cell.array.reshape(1, 9) if pbc.all() else None
        params = {k: atoms.info[k] for k in ("fparam", "aparam") if atoms.info.get(k) is not None}
        e, f, v = self.dp.eval(atoms.get_positions().reshape(1, -1), cell, atype, **params)
        self.results["energy"] = self.results["free_energy"] = float(e[0, 0])
        self.results["forces"] = f[0]
        self.results["virial"] = v[0].reshape(3, 3)
        if cell is not None:
            self.results["stress"] = full_3x3_to_voigt_6_stress(-v[0].reshape(3, 3) / atoms.get_volume())
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress is not defined for a non-periodic system (pbc all False)")
