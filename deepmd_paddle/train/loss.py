"""DeePMD-kit's ``ener`` loss (its TensorFlow backend's ``EnerStdLoss``).

With learning rate lr, each prefactor moves linearly in lr from its start to its limit value::

    p_x(lr) = limit_pref_x + (start_pref_x - limit_pref_x) * lr / start_lr

and, for a batch of nf frames of N atoms (k = 1, DeePMD-kit's legacy default; k = 2 with
``intensive_ener_virial: true``)::

    E       = sum_i E_i, or sum_i c_i E_i with ``enable_atom_ener_coeff`` (c: atom_ener_coeff.npy, 1 if absent)
    dF      = F0 - F per atom, divided by (|F0 of the atom| + relative_f) when ``relative_f`` is set
    l2_e  = mean_frames (E - E0)^2
    l2_ae = mean_{frames, atoms} (E_i - E0_i)^2                  (atom_ener.npy)
    l2_f  = mean_{frames, atoms, xyz} dF^2
    l2_v  = mean_{frames, 9 components} (V - V0)^2
    l2_pf = mean_{frames, atoms, xyz} w_i dF^2                   (w: atom_pref.npy, one per atom)
    L = p_e / N^k * l2_e + p_ae * l2_ae + p_f * l2_f + p_v / N^k * l2_v + p_pf * l2_pf

A term enters only when its prefactors are not both zero and the batch carries its labels
(``find_energy``, ``find_atom_ener``, ``find_force``, ``find_virial``; the ``pf`` term needs
``find_atom_pref`` and ``find_force``). Reported errors (lcurve.out, in DeePMD-kit's column
order): ``rmse`` = sqrt(L), ``rmse_e`` = sqrt(l2_e) / N (eV/atom), ``rmse_ae`` = sqrt(l2_ae),
``rmse_f`` = sqrt(l2_f), ``rmse_v`` = sqrt(l2_v) / N, ``rmse_pf`` = sqrt(l2_pf); NaN when the
batch lacks the label.
"""
from __future__ import annotations

import math

import paddle

# (key, label, divided by N^k in the loss and by N in the display) in lcurve.out's order
TERMS = (("e", "energy", True), ("ae", "atom_ener", False), ("f", "force", False), ("v", "virial", True),
         ("pf", "atom_pref", False))


class EnerLoss:
    def __init__(self, start_lr: float, start_pref_e=0.02, limit_pref_e=1.0, start_pref_f=1000,
                 limit_pref_f=1.0, start_pref_v=0.0, limit_pref_v=0.0, start_pref_ae=0.0, limit_pref_ae=0.0,
                 start_pref_pf=0.0, limit_pref_pf=0.0, relative_f=None, enable_atom_ener_coeff=False,
                 intensive_ener_virial=False, type="ener"):
        self.start_lr = float(start_lr)
        self.start = {"e": start_pref_e, "ae": start_pref_ae, "f": start_pref_f, "v": start_pref_v,
                      "pf": start_pref_pf}
        self.limit = {"e": limit_pref_e, "ae": limit_pref_ae, "f": limit_pref_f, "v": limit_pref_v,
                      "pf": limit_pref_pf}
        self.relative_f = relative_f
        self.atom_ener_coeff = bool(enable_atom_ener_coeff)
        self.norm_exp = 2 if intensive_ener_virial else 1
        # the terms this loss trains on, which are also the lcurve.out columns
        self.keys = [k for k, _, _ in TERMS if self.start[k] != 0 or self.limit[k] != 0]

    @property
    def atom_data(self) -> list[str]:
        """The per-atom data this loss reads (``deepmd_paddle.data.atom_data.ATOM_DATA``)."""
        need = {"ae": "atom_ener", "pf": "atom_pref"}
        return [need[k] for k in self.keys if k in need] + (["atom_ener_coeff"] if self.atom_ener_coeff else [])

    @property
    def needs_atom_energy(self) -> bool:
        """The loss reads the atomic energies (not only their sum)."""
        return "ae" in self.keys or (self.atom_ener_coeff and "e" in self.keys)

    def prefactors(self, lr: float) -> dict:
        return {k: self.limit[k] + (self.start[k] - self.limit[k]) * lr / self.start_lr for k, _, _ in TERMS}

    def _found(self, batch: dict, k: str) -> bool:
        if k == "pf":
            return bool(batch.get("find_atom_pref", 0.0)) and bool(batch["find_force"])
        name = dict((key, label) for key, label, _ in TERMS)[k]
        return bool(batch.get(f"find_{name}", 0.0))

    def __call__(self, out: dict, batch: dict, lr: float):
        """(loss tensor, {"e"/"ae"/"f"/"v"/"pf": l2 value as a float, NaN when a label is absent}).
        ``out``: energy nf x 1, force, virial, and atom_energy nf x N x 1 when ``needs_atom_energy``."""
        natoms = batch["natoms"]
        pref = self.prefactors(lr)
        loss, l2, diff_f = 0.0, {}, None
        for k, name, per_n in TERMS:
            if k not in self.keys:
                continue
            if not self._found(batch, k):
                l2[k] = math.nan
                continue
            if k in ("f", "pf"):
                diff_f = self._force_diff(out, batch) if diff_f is None else diff_f
                sq = diff_f * diff_f
                term = paddle.mean(sq if k == "f" else sq * batch["atom_pref"].reshape([*sq.shape[:2], 1]))
            else:
                diff = self._value(out, batch, name) - batch[name].reshape(self._value(out, batch, name).shape)
                term = paddle.mean(diff * diff)
            l2[k] = float(term)
            loss = loss + (pref[k] / natoms ** self.norm_exp if per_n else pref[k]) * term
        return loss, l2

    def _value(self, out: dict, batch: dict, name: str):
        if name == "atom_ener":
            return out["atom_energy"].reshape(batch["atom_ener"].shape)
        if name == "energy" and self.atom_ener_coeff:  # E = sum_i c_i E_i
            atom_e = out["atom_energy"].reshape(batch["atom_ener_coeff"].shape)  # nf x N
            return (atom_e * batch["atom_ener_coeff"]).sum(axis=1, keepdim=True)
        return out[name]

    def _force_diff(self, out: dict, batch: dict):
        """F0 - F (nf x N x 3), relative to |F0| + relative_f per atom when that is set."""
        label = batch["force"]
        diff = label - out["force"].reshape(label.shape)
        if self.relative_f is not None:
            diff = diff / (paddle.linalg.norm(label, axis=-1, keepdim=True) + self.relative_f)
        return diff

    def rmse(self, loss: float, l2: dict, natoms: int) -> dict:
        """Display errors in lcurve.out's order: rmse, rmse_e, rmse_ae, rmse_f, rmse_v, rmse_pf."""
        out = {"rmse": math.sqrt(loss)}
        per_n = {k: p for k, _, p in TERMS}
        for k in self.keys:
            out[f"rmse_{k}"] = math.sqrt(l2[k]) / (natoms if per_n[k] else 1)
        return out
