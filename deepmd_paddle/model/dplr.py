"""DPLR's long-range correction: DeePMD-kit's ``dipole_charge`` modifier (Zhang et al., J. Chem.
Phys. 156, 124107 (2022)).

The system is extended by one Wannier centroid per atom of the dipole model's selected types, at
``w_i = r_i + p_i`` (``p_i`` the atomic dipole, model/dipole.py), charged ``model_charge_map`` (one
value per selected type, in ``sel_type`` order); the atoms carry ``sys_charge_map`` (one value per
type). The correction is the reciprocal-space Ewald energy of these charges (model/ewald.py,
``ewald_h``, ``ewald_beta``) with, as DeePMD-kit computes them:

- force on atom k: its own Ewald force, plus the Ewald force f_i on its centroid when it has one,
  plus ``d(sum_i p_i . f_i)/dr_k`` (the centroids move with the dipoles);
- virial: the Ewald virial, plus the virial of ``-sum_i p_i . f_i`` through the dipole model's
  environment (``prod_force_virial``), plus ``-sum_i f_i (x) p_i``.

In training the correction is subtracted from the labels before anything else sees them (the
energy bias and the loss then fit the short-range part: ``train/dplr.py``); ``DeepPot`` adds it
back to the model's outputs. The modifier is a sublayer of the energy model, so checkpoints and
frozen models carry the dipole model's weights (its file is only read when training starts).
"""
from __future__ import annotations

import numpy as np
import paddle

from .dipole import DipoleModel
from .ewald import ewald_recp

TYPE = "dipole_charge"
RECORD = "dipole_model"  # deepmd_paddle's record of the dipole model's architecture in the modifier section
KEYS = ("model_name", "model_charge_map", "sys_charge_map", "ewald_h", "ewald_beta")


class DipoleChargeModifier(paddle.nn.Layer):
    def __init__(self, dipole: DipoleModel, model_name: str, model_charge_map, sys_charge_map, ewald_h: float = 1.0,
                 ewald_beta: float = 0.4, type_map=None):
        super().__init__()
        self.dipole = dipole
        self.model_name = str(model_name)
        self.model_charge_map = [float(q) for q in model_charge_map]
        self.sys_charge_map = [float(q) for q in sys_charge_map]
        self.ewald_h, self.ewald_beta = float(ewald_h), float(ewald_beta)
        where = f"model/modifier (dipole model {self.model_name})"
        sel = dipole.get_sel_type()
        if len(self.model_charge_map) != len(sel):
            raise ValueError(f"{where}: model_charge_map has {len(self.model_charge_map)} charges; the dipole model "
                             f"has {len(sel)} selected type(s) {[dipole.type_map[t] for t in sel]}: one charge each")
        if len(self.sys_charge_map) != dipole.ntypes:
            raise ValueError(f"{where}: sys_charge_map has {len(self.sys_charge_map)} charges; one per type of the "
                             f"model {dipole.type_map} expected")
        if not (self.ewald_h > 0 and self.ewald_beta > 0):
            raise ValueError(f"{where}: ewald_h ({ewald_h}) and ewald_beta ({ewald_beta}) must be positive")
        if type_map is not None and list(type_map) != dipole.type_map:
            raise ValueError(f"{where}: the dipole model's type_map {dipole.type_map} differs from the energy model's "
                             f"{list(type_map)}; DPLR uses the same type indices in both")

    @classmethod
    def from_config(cls, cfg: dict, type_map=None) -> "DipoleChargeModifier":
        """From ``config()`` (the dipole model's weights to be set, e.g. from a checkpoint)."""
        if cfg.get("type", TYPE) != TYPE:
            raise NotImplementedError(f"model/modifier type {cfg.get('type')!r}; only {TYPE!r} is supported")
        if not isinstance(cfg.get(RECORD), dict):
            raise ValueError(f"model/modifier without its {RECORD!r} record: a model section with a modifier is "
                             "built by `dpp train` (which reads model_name) or read from a checkpoint/frozen model")
        return cls(DipoleModel.from_config(cfg[RECORD]), **{k: cfg[k] for k in KEYS if k in cfg}, type_map=type_map)

    def config(self) -> dict:
        return {"type": TYPE, "model_name": self.model_name, "model_charge_map": self.model_charge_map,
                "sys_charge_map": self.sys_charge_map, "ewald_h": self.ewald_h, "ewald_beta": self.ewald_beta,
                RECORD: self.dipole.get_config()}

    def ewald_params(self) -> tuple[float, float]:
        """(h, beta) as the sums use them: rounded to float32, as DeePMD-kit's TensorFlow operator
        takes them (float attributes); beta 0.4 is then 0.4000000059604645, which moves the
        energies by ~1e-7 relative."""
        return float(np.float32(self.ewald_h)), float(np.float32(self.ewald_beta))

    def correction(self, coord, box, atype):
        """(energy nf, force nf x n x 3, virial nf x 9) of the correction, NumPy float64, for frames
        coord nf x n x 3 (or nf x 3n), box nf x 9 (periodic only), atype n or nf x n (type indices)."""
        coord = np.asarray(coord, "float64")
        nf = coord.shape[0]
        coord = coord.reshape(nf, -1, 3)
        n = coord.shape[1]
        if box is None:
            raise ValueError("the dipole_charge modifier (DPLR) needs periodic frames: open systems (nopbc) are not "
                             "supported (as in DeePMD-kit)")
        box = np.asarray(box, "float64").reshape(nf, 9)
        atype = np.broadcast_to(np.asarray(atype).reshape(-1 if np.ndim(atype) == 1 else nf, n), (nf, n))
        energy, force, virial = np.empty(nf), np.empty([nf, n, 3]), np.empty([nf, 9])
        sel_type = self.dipole.get_sel_type()
        for f in range(nf):
            energy[f], force[f], virial[f] = self._frame(coord[f], box[f], atype[f].astype("int32"), sel_type)
        return energy, force, virial

    def _frame(self, coord, box, atype, sel_type):
        n = coord.shape[0]
        sel = np.flatnonzero(np.isin(atype, sel_type))
        charge = np.concatenate([np.asarray(self.sys_charge_map)[atype],
                                 np.asarray(self.model_charge_map)[[sel_type.index(t) for t in atype[sel]]]])
        ewald = {}

        def field(dipole):  # the Ewald sum of atoms and centroids; its forces on the centroids
            sites = np.concatenate([coord, coord[sel] + dipole[sel]])
            ewald["e"], ewald["f"], ewald["v"] = ewald_recp(sites, charge, box.reshape(3, 3), *self.ewald_params())
            ef = np.zeros([n, 3])
            ef[sel] = ewald["f"][n:]
            ewald["ef"], ewald["p"] = ef, dipole
            return ef

        with paddle.set_grad_enabled(True):  # (callers may run under no_grad: the chain rule needs a gradient)
            out = self.dipole(paddle.to_tensor(coord[None]), paddle.to_tensor(atype[None]),
                              paddle.to_tensor(box[None]), ef=lambda p: field(p[0])[None])
        ef, p = ewald["ef"], ewald["p"]
        force = ewald["f"][:n] + ef + out["force"].numpy()[0]
        virial = ewald["v"] + out["virial"].numpy()[0] - (ef.T @ p).reshape(9)
        return ewald["e"], force, virial
