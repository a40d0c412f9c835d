"""DeePMD-kit's atomic dipole model (the "Deep Wannier" model of DPLR): se_e2_a descriptor and a
dipole fitting, for evaluation (the dipole_charge modifier, model/dplr.py).

For a centre atom i of a selected type t (``sel_type``, DeePMD-kit's ``dipole_type``), with
``T_i = (1/nnei) sum_j G_ij^T R~_ij`` (ng x 4, descriptor.py) and ``D_i`` its descriptor, the
fitting net of type t maps ``D_i`` to a row ``a_i`` of ng values (tanh layers, a linear output of
width ng) and the atomic dipole is ``p_i = a_i T_i[:, 1:4]`` (DeePMD-kit's "rotation matrix", the
last three columns of T). Atoms of other types have no dipole (zeros here).

The model runs through the stages the energy model runs through (stages.py: the same neighbour
list and environment matrix). ``forward`` gives the dipoles and, given a field ``ef``
(one 3-vector per atom: DPLR's forces on the Wannier centroids), the force and virial of the scalar
``-sum_i p_i . ef_i``: the chain-rule terms DeePMD-kit's modifier adds (``F_k = d(sum p . ef)/dr_k``).
"""
from __future__ import annotations

import paddle

from ..kernels import default_backend
from .descriptor import DescrptSeA
from .network import FittingNet, resolve_precision
from .stages import FrameStages

_DESC_KEYS = ("sel", "rcut", "rcut_smth", "neuron", "axis_neuron", "type_one_side", "resnet_dt", "precision",
              "activation_function")


class DipoleFitting(paddle.nn.Layer):
    """One net per selected type, D -> a (width ng); ``forward`` gives p = a T[:, 1:4]."""

    def __init__(self, ntypes: int, dim_descrpt: int, embedding_width: int, neuron, resnet_dt=True,
                 precision="float64", sel_type=None, activation_function="tanh", seed=None):
        super().__init__()
        self.ntypes, self.dim_descrpt, self.embedding_width = ntypes, int(dim_descrpt), int(embedding_width)
        self.neuron, self.resnet_dt = list(neuron), bool(resnet_dt)
        self.precision, self.activation_function = resolve_precision(precision), activation_function
        self.sel_type = sorted({int(t) for t in (range(ntypes) if sel_type is None else sel_type)})
        bad = [t for t in self.sel_type if not 0 <= t < ntypes]
        if bad:
            raise ValueError(f"dipole fitting sel_type {bad} outside the model's {ntypes} types")
        self.nets = paddle.nn.LayerList(
            [FittingNet(self.dim_descrpt, self.neuron, activation_function, self.resnet_dt, self.precision, seed,
                        out_dim=self.embedding_width) for _ in self.sel_type])

    def config(self) -> dict:
        return {"type": "dipole", "sel_type": self.sel_type, "neuron": self.neuron, "resnet_dt": self.resnet_dt,
                "precision": self.precision, "activation_function": self.activation_function}

    def forward(self, d, xyz, ti: int):
        """Dipoles (nat x 3) of a block of atoms of selected type ti: descriptor rows d, T = xyz."""
        a = self.nets[self.sel_type.index(ti)](d)  # nat x ng
        return paddle.matmul(a.unsqueeze(1), xyz[:, :, 1:4]).squeeze(1)


class DipoleModel(FrameStages, paddle.nn.Layer):
    """Atomic dipoles of whole frames (see the module docstring). Its weights never train here."""

    def __init__(self, type_map, descriptor: DescrptSeA, fitting: DipoleFitting, kernels=None):
        super().__init__()
        if type(descriptor) is not DescrptSeA:
            raise NotImplementedError("dipole models with a type embedding are not supported; only se_e2_a")
        self.type_map, self.ntypes = list(type_map), len(type_map)
        self.descriptor, self.fitting = descriptor, fitting
        for p in self.parameters():
            p.stop_gradient = True
        self.set_kernels(kernels or default_backend())

    @classmethod
    def from_config(cls, cfg: dict, kernels=None) -> "DipoleModel":
        """From ``get_config``'s dict (type_map, descriptor, fitting_net); weights to be set."""
        type_map, dcfg, fcfg = list(cfg["type_map"]), dict(cfg["descriptor"]), dict(cfg["fitting_net"])
        if dcfg.pop("type", "se_e2_a") not in ("se_e2_a", "se_a") or fcfg.pop("type", "dipole") != "dipole":
            raise NotImplementedError("a dipole model is an se_e2_a descriptor with a dipole fitting")
        desc = DescrptSeA(len(type_map), **{k: dcfg[k] for k in _DESC_KEYS if k in dcfg},
                          exclude_types=dcfg.get("exclude_types", ()))
        fit = DipoleFitting(len(type_map), desc.get_dim_out(), desc.neuron[-1], **fcfg)
        return cls(type_map, desc, fit, kernels)

    def get_config(self) -> dict:
        d = self.descriptor
        desc = {"type": "se_e2_a", **{k: getattr(d, k) for k in _DESC_KEYS},
                "exclude_types": [list(p) for p in d.exclude_types]}
        return {"type_map": self.type_map, "descriptor": desc, "fitting_net": self.fitting.config()}

    def get_sel_type(self) -> list[int]:
        return list(self.fitting.sel_type)

    def forward(self, coord, atype, box=None, ef=None, check: bool = True) -> dict:
        """coord nf x nloc x 3, atype nf x nloc, box nf x 9 or None (Paddle tensors): ``dipole``
        nf x nloc x 3 (zeros for atoms of other types); with ``ef`` (nf x nloc x 3) also
        ``force`` nf x nloc x 3 and ``virial`` nf x 9 of ``-sum_i p_i . ef_i``."""
        coord, atype, box, nlist, shift, keep = self.prepare(coord, atype, box, check)
        rij, tc, env = self.centre_env(coord, atype, nlist, shift)
        nf, nloc = tc.shape
        path = self.descriptor.embedding_path(False)
        flat, at = env.reshape([-1, env.shape[2], 4]), tc.reshape([-1])
        parts, index = [], []
        for ti, idx in self.centre_blocks(at):
            if ti in self.fitting.sel_type:
                xyz = self.descriptor.contraction(paddle.gather(flat, idx), ti, path, keep)
                parts.append(self.fitting(self.descriptor.from_contraction(xyz), xyz, ti).astype("float64"))
            else:
                parts.append(paddle.zeros([idx.shape[0], 3], "float64"))
            index.append(idx)
        dipole = self.in_atom_order(parts, index).reshape([nf, nloc, 3])
        out = {"dipole": dipole}
        if ef is not None:
            if callable(ef):  # a function of the dipoles (NumPy): DPLR's field depends on them
                ef = paddle.to_tensor(ef(dipole.numpy()), "float64")
            (g,) = paddle.grad(-(dipole * ef).sum(), rij, allow_unused=True)
            if g is None:  # no selected atom has a neighbour
                g = paddle.zeros_like(rij)
            prod_force_virial = self.kernels.get("prod_force_virial", 0)
            force, virial, _ = prod_force_virial(coord, g, rij, nlist, None, atomic=False)
            out.update(force=force, virial=virial)
        return out
