"""The model side of the LAMMPS pair style ``deepmd``: what ``src/bridge.cpp`` calls.

``LammpsModel(spec)`` loads the models of a ``pair_style deepmd`` line with ``DeepPot`` (``spec``:
the JSON the pair style writes: models, keywords, unit factors, MPI rank) and checks that they
fit together; ``coeff`` maps LAMMPS types to model types; ``compute`` receives the addresses of
LAMMPS's arrays, views them with numpy and runs the ``lower`` program
(``EnergyModel.forward_lower``, through ``infer.blocks``) with the local atoms as centres::

    coord [1, nall, 3] (local + ghost atoms), atype [1, nall], nlist [1, nc, nnei],
    shift = 0 (the ghosts are the periodic images), centre = the block's local atoms
    -> atom_energy [1, nc, 1], force [1, nall, 3], virial [1, 9], atom_virial [1, nall, 9]

E = sum of the local atoms' energies; the forces on ghost atoms go back to LAMMPS, which adds
them to their owners (reverse communication), so every pair term counts once over all ranks.
The model's virial is ``W[a][b] = -sum_ij g_a r_b`` (``g = dE/dr_ij``): with ``F = -g`` the force
on neighbour j, ``W[a][b] = sum F_a r_b``, DeePMD-kit's sign, which is LAMMPS's. LAMMPS's
``xy = sum r_x F_y`` is ``W[1][0]``: its xx yy zz xy xz yz (global and per atom; a per-atom
virial is not symmetric) are indices 0 4 8 3 6 7 of the row-major 3 x 3.

Units: LAMMPS's coordinates are divided by ``dist`` (``force->angstrom``); energies and virials
are multiplied by ``ener`` (``force->boltz / 8.617343e-5``), forces by ``ener / dist``: DeePMD-kit's
conversion (1 and 1 in ``units metal``). Several models: only the first drives LAMMPS; on a
deviation step all evaluate and their forces and virials (model units) go to the pair style,
which completes and gathers them for ``write_devi`` on rank 0 (``devi.py``). Types given as NULL
in ``pair_coeff`` are neither centres nor neighbours (the pair style leaves them out of the list).
"""
from __future__ import annotations

import ctypes
import json
import os
import warnings

import numpy as np

from .. import runtime
from ..infer import DeepPot
from ..infer.blocks import lower_in_blocks
from ..io.frozen import frozen_prefix
from .devi import DeviWriter, devi_row

LAMMPS_VIRIAL = [0, 4, 8, 3, 6, 7]  # LAMMPS's xx yy zz xy xz yz in the model's row-major 3 x 3


def _view(addr: int, n: int, ctype, shape):
    """numpy view of the n values at address addr (no copy)."""
    if n == 0 or not addr:
        return np.zeros(shape, dtype=np.dtype(ctype))
    return np.ctypeslib.as_array((ctype * n).from_address(addr)).reshape(shape)


def _load(path: str, backend: str | None) -> DeepPot:
    if frozen_prefix(path) is None and not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist (a frozen model from `dpp freeze`, "
                                "a checkpoint, or a DeePMD-kit .dp/.yaml/.pb file)")
    dp = DeepPot(path, backend=backend, skip_modifier=True)  # (the pair style evaluates the model itself)
    if dp.get_model_def_script().get("modifier"):
        warnings.warn(f"{path}: a DPLR model (model/modifier dipole_charge). pair_style deepmd evaluates its "
                      "short-range part, as DeePMD-kit's pair style does; the long-range part needs DeePMD-kit's "
                      "fix dplr and kspace_style pppm/dplr, which deepmd_paddle does not provide", stacklevel=2)
    return dp


class LammpsModel:
    """The models of ``pair_style deepmd MODEL [MODEL ...] [keyword value ...]``."""

    def __init__(self, spec: str, backend: str | None = None):
        s = json.loads(spec)
        runtime.share_cores()  # several ranks on one machine split its cores
        self.paths = list(s["models"])
        self.dps = [_load(p, backend) for p in self.paths]
        self.type_map = list(self.dps[0].get_type_map())
        self.rcut = float(self.dps[0].get_rcut())
        for p, dp in zip(self.paths[1:], self.dps[1:]):
            if list(dp.get_type_map()) != self.type_map:
                raise ValueError(f"the models of one pair_style need the same type map: {self.paths[0]} has "
                                 f"{self.type_map}, {p} has {list(dp.get_type_map())}")
            if float(dp.get_rcut()) != self.rcut:
                raise ValueError(f"the models of one pair_style need the same cutoff: {self.paths[0]} has rcut "
                                 f"{self.rcut}, {p} has {float(dp.get_rcut())}")
        sels = np.array([list(dp.get_sel()) for dp in self.dps])
        self.sel = [int(v) for v in sels.max(axis=0)]  # the pair style's list; each model takes its slots
        offset = np.concatenate([[0], np.cumsum(self.sel)])
        self.cols = [None if list(sel) == self.sel else
                     np.concatenate([np.arange(offset[t], offset[t] + n) for t, n in enumerate(sel)])
                     for sel in sels]
        self.dist, self.ener = float(s["dist"]), float(s["ener"])
        self.units = s["units"]
        self.fparam, self.aparam = self._params(s)
        self.fparam_from_compute = bool(s["fparam_from_compute"])
        self.relative = None if s["relative"] is None else float(s["relative"]) / self.ener
        self.relative_v = None if s["relative_v"] is None else float(s["relative_v"]) / self.ener
        self.atomic = bool(s["atomic"])
        self.writer = None
        if s["rank"] == 0 and len(self.dps) > 1 and int(s["out_freq"]) > 0:
            self.writer = DeviWriter(s["out_file"], self.atomic, append=bool(s["restart"]))

    def _params(self, s: dict):
        """The fparam/aparam of the keywords, checked against every model's dimensions."""
        out = []
        for key, dims in (("fparam", [dp.get_dim_fparam() for dp in self.dps]),
                          ("aparam", [dp.get_dim_aparam() for dp in self.dps])):
            given = s[key]
            from_compute = key == "fparam" and s["fparam_from_compute"]
            for p, dp, dim in zip(self.paths, self.dps, dims):
                if (given is not None or from_compute) and dim == 0:
                    raise ValueError(f"{p} has no {'frame' if key == 'fparam' else 'atomic'} parameters "
                                     f"(dim_{key} = 0): remove the keyword "
                                     f"{'fparam_from_compute' if from_compute else key}")
                if given is not None and len(given) != dim:
                    raise ValueError(f"{key} takes {dim} value(s) for {p}, got {len(given)}: {given}")
                if given is None and not from_compute and dim > 0 and not _has_default(dp, key):
                    raise ValueError(f"{p} needs {dim} {key} value(s): add `{key} V ...`"
                                     + (" or `fparam_from_compute ID`" if key == "fparam" else ""))
            out.append(None if given is None else np.asarray(given, dtype=np.float64))
        return out

    def info(self):
        """(rcut in model units, sel, dim_fparam, the type map as one string) for the pair style."""
        return self.rcut, list(self.sel), int(self.dps[0].get_dim_fparam()), " ".join(self.type_map)

    def coeff(self, names: str, ntypes: int):
        """``pair_coeff * * [names]`` -> (model type of each LAMMPS type, -1 for NULL; a warning or "")."""
        names, tm = names.split(), self.type_map
        if not names:
            if ntypes > len(tm):
                raise ValueError(f"`pair_coeff * *` without names maps LAMMPS types 1..{ntypes} to the model's types "
                                 f"in order, but its type map has {len(tm)}: {tm}; name the element of each type")
            warn = "" if ntypes == len(tm) else (
                f"pair_coeff * * maps the {ntypes} atom types onto the first {ntypes} of the model's {len(tm)} "
                f"types {tm}; name the elements (pair_coeff * * {' '.join(tm[:ntypes])}) to be sure")
            return list(range(ntypes)), warn
        if len(names) != ntypes:
            raise ValueError(f"{len(names)} names for {ntypes} atom types: give the element (or NULL) of each of the "
                             f"{ntypes} atom types; the model's type map: {tm}")
        unknown = [n for n in names if n not in tm and n != "NULL"]
        if unknown:
            raise ValueError(f"element(s) {unknown} are not in the model's type map; allowed: {tm} or NULL "
                             "(a type left to other pair styles)")
        return [-1 if n == "NULL" else tm.index(n) for n in names], ""

    def compute(self, nloc, nall, x, atype, nlist, nnei, f, eatom, vatom, out, fparam, nfparam, devi, fdevi, vdevi):
        """Add forces (and per-atom energy/virial when their addresses are not 0) to LAMMPS's
        arrays; out[0] = energy, out[1:7] = virial (xx yy zz xy xz yz). Addresses are ints (see the
        module docstring and src/bridge.h)."""
        out_e = _view(out, 7, ctypes.c_double, [7])
        out_e[:] = 0.0
        if nloc == 0:
            return
        if nnei != sum(self.sel):
            raise ValueError(f"the pair style passed {nnei} neighbour slots, the models have {sum(self.sel)}")
        coord = _view(x, nall * 3, ctypes.c_double, [1, nall, 3])
        if self.dist != 1.0:
            coord = coord / self.dist
        types = _view(atype, nall, ctypes.c_int32, [1, nall])
        nl = _view(nlist, nloc * nnei, ctypes.c_int32, [1, nloc, nnei])
        perm = None
        local = types[0, :nloc] >= 0
        if not local.all():  # NULL types among the local atoms: the model's atoms first
            coord, types, nl, perm = _compact(coord, types, nl, local)
        nc = nl.shape[1]
        e_scale, f_scale = self.ener, self.ener / self.dist
        for k, dp in enumerate(self.dps if devi else self.dps[:1]):
            nl_k = nl if self.cols[k] is None else np.ascontiguousarray(nl[:, :, self.cols[k]])
            extra = self._extra(dp, fparam, nfparam, nc)
            res = lower_in_blocks(dp.runner_for(nc).lower, coord, types, nl_k, None, dp.atom_budget, **extra)
            force = res["force"].reshape(nall, 3)
            if perm is not None:
                force = _restore(force, perm)
            if devi:
                _view(fdevi, len(self.dps) * nall * 3, ctypes.c_double, [len(self.dps), nall, 3])[k] = force
                _view(vdevi, len(self.dps) * 9, ctypes.c_double, [len(self.dps), 9])[k] = res["virial"].reshape(9)
            if k > 0:
                continue
            out_e[0] = res["energy"].sum() * e_scale
            out_e[1:] = res["virial"].reshape(9)[LAMMPS_VIRIAL] * e_scale
            _view(f, nall * 3, ctypes.c_double, [nall, 3])[:] += force * f_scale
            if eatom:
                ae = res["atom_energy"].reshape(-1) * e_scale
                e_atom = _view(eatom, nall, ctypes.c_double, [nall])
                if perm is None:
                    e_atom[:nloc] += ae
                else:
                    e_atom[perm[:nc]] += ae
            if vatom:
                av = res["atom_virial"].reshape(nall, 9)[:, LAMMPS_VIRIAL] * e_scale
                _view(vatom, nall * 6, ctypes.c_double, [nall, 6])[:] += av if perm is None else _restore(av, perm)

    def _extra(self, dp, fparam, nfparam, nc) -> dict:
        """fparam [1, dim] and aparam [1, nc, dim] of the ``nc`` centres for ``dp``'s lower call,
        from the keywords (or fparam_from_compute's values); {} for models without them (the
        keywords are refused at load for those)."""
        extra = {}
        fp = _view(fparam, nfparam, ctypes.c_double, [nfparam]).copy() if nfparam else self.fparam
        if fp is None and _has_default(dp, "fparam"):  # a frozen program takes the default as an input
            fp = np.asarray(dp.get_default_fparam(), dtype=np.float64)
        if fp is not None:
            extra["fparam"] = fp.reshape(1, -1)
        if self.aparam is not None:
            extra["aparam"] = np.tile(self.aparam, (1, nc, 1))
        return extra

    def write_devi(self, step, n, tags, forces, virials):
        """Rank 0 of a deviation step: one row of out_file (see devi.py and src/bridge.h)."""
        if self.writer is None:
            return
        m = len(self.dps)
        order = np.argsort(_view(tags, n, ctypes.c_int64, [n]), kind="stable")
        fs = np.transpose(_view(forces, n * m * 3, ctypes.c_double, [n, m, 3])[order], (1, 0, 2))
        row = devi_row(fs, _view(virials, m * 9, ctypes.c_double, [m, 9]), self.relative, self.relative_v,
                       self.atomic)
        row[:3] *= self.ener
        row[3:] *= self.ener / self.dist
        self.writer.write(step, row)


def _has_default(dp, key: str) -> bool:
    """Whether ``dp`` fills ``key`` itself (DeePMD-kit's default_fparam; DeepPot.has_default_fparam
    comes with the frame-parameter work, False before)."""
    return key == "fparam" and bool(getattr(dp, "has_default_fparam", lambda: False)())


def _compact(coord, types, nl, local):
    """The model's local atoms first (they are the centres), then the others: (coord, types,
    nlist with the new indices, perm) with ``new[i] = old[perm[i]]``."""
    nloc, nall = len(local), coord.shape[1]
    perm = np.concatenate([np.flatnonzero(local), np.flatnonzero(~local), np.arange(nloc, nall)])
    inv = np.empty(nall + 1, dtype=np.int32)
    inv[perm] = np.arange(nall, dtype=np.int32)
    inv[nall] = -1  # nlist's -1 indexes this slot
    rows = nl[:, perm[:int(local.sum())]]
    return coord[:, perm], types[:, perm], inv[rows], perm


def _restore(a, perm):
    """Rows of ``a`` (in the compacted order) back in LAMMPS's order."""
    out = np.empty_like(a)
    out[perm] = a
    return out
