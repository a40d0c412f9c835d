"""DeePMD-kit's ``ener`` loss.

With learning rate lr, each prefactor moves linearly in lr from its start to its limit value::

    p_x(lr) = limit_pref_x + (start_pref_x - limit_pref_x) * lr / start_lr

and, for a batch of nf frames of N atoms (k = 1, DeePMD-kit's legacy default; k = 2 with
``intensive_ener_virial: true``)::

    l2_e = mean_frames (E - E0)^2
    l2_f = mean_{frames, atoms, xyz} (F - F0)^2
    l2_v = mean_{frames, 9 components} (V - V0)^2
    L = p_e / N^k * l2_e + p_f * l2_f + p_v / N^k * l2_v

A term enters only when its prefactors are not both zero and the batch carries the label
(``find_energy``/``find_force``/``find_virial``). Reported errors (lcurve.out): ``rmse`` =
sqrt(L), ``rmse_e`` = sqrt(l2_e) / N (eV/atom), ``rmse_f`` = sqrt(l2_f), ``rmse_v`` =
sqrt(l2_v) / N; NaN when the batch has no such label.
"""
from __future__ import annotations

import math

import paddle

TERMS = (("e", "energy"), ("f", "force"), ("v", "virial"))


class EnerLoss:
    def __init__(self, start_lr: float, start_pref_e=0.02, limit_pref_e=1.0, start_pref_f=1000,
                 limit_pref_f=1.0, start_pref_v=0.0, limit_pref_v=0.0, intensive_ener_virial=False,
                 type="ener"):
        self.start_lr = float(start_lr)
        self.start = {"e": start_pref_e, "f": start_pref_f, "v": start_pref_v}
        self.limit = {"e": limit_pref_e, "f": limit_pref_f, "v": limit_pref_v}
        self.norm_exp = 2 if intensive_ener_virial else 1
        # the terms this loss trains on, which are also the lcurve.out columns
        self.keys = [k for k, _ in TERMS if self.start[k] != 0 or self.limit[k] != 0]

    def prefactors(self, lr: float) -> dict:
        return {k: self.limit[k] + (self.start[k] - self.limit[k]) * lr / self.start_lr for k, _ in TERMS}

    def __call__(self, out: dict, batch: dict, lr: float):
        """(loss tensor, {"e"/"f"/"v": l2 value as a float, NaN when the label is absent})."""
        natoms = batch["natoms"]
        pref = self.prefactors(lr)
        loss, l2 = 0.0, {}
        for k, name in TERMS:
            if k not in self.keys:
                continue
            if not batch[f"find_{name}"]:
                l2[k] = math.nan
                continue
            diff = out[name].reshape(batch[name].shape) - batch[name]
            term = paddle.mean(diff * diff)
            l2[k] = float(term)
            scale = pref[k] if k == "f" else pref[k] / natoms ** self.norm_exp
            loss = loss + scale * term
        return loss, l2

    def rmse(self, loss: float, l2: dict, natoms: int) -> dict:
        """Display errors in lcurve.out's order: rmse, rmse_e, rmse_f, rmse_v."""
        out = {"rmse": math.sqrt(loss)}
        for k in self.keys:
            out[f"rmse_{k}"] = math.sqrt(l2[k]) / (1 if k == "f" else natoms)
        return out
