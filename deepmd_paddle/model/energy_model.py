"""The DeepPot-SE energy model: neighbour list -> R~ -> se_e2_a descriptor -> fitting -> E.

``E = sum_i E_i``; with ``g_ij = dE/dr_ij`` from ``paddle.grad`` (``r_ij = r_j - r_i``):
``F_i = sum_j g_ij - sum_{k: i in N(k)} g_ki`` (so ``F = -dE/dr``), the virial
``W = -sum_ij g_ij (x) r_ij`` (DeePMD-kit's sign), and the atomic virial puts each pair's term on
the neighbour atom j, as DeePMD-kit's operators do. With ``create_graph=True`` the force stays
differentiable in the weights: that double gradient is what training on forces needs.
"""
from __future__ import annotations

import numpy as np
import paddle

from .checks import check_inputs, check_neighbors
from .descriptor import DescrptSeA
from .descriptor_te import descriptor_class, make_descriptor
from .env_mat import build_rij
from .fitting import EnergyFitting
from .network import check_class


class EnergyModel(paddle.nn.Layer):
    def __init__(self, type_map, descriptor: DescrptSeA, fitting: EnergyFitting):
        super().__init__()
        self.type_map = list(type_map)
        self.ntypes = len(self.type_map)
        self.descriptor = descriptor
        self.fitting = fitting
        # DeePMD-kit's model-level output statistics: E_i += out_bias[type_i]
        self.register_buffer("out_bias", paddle.zeros([self.ntypes], "float64"))
        self.register_buffer("out_std", paddle.ones([self.ntypes], "float64"))
        self._config = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, cfg: dict) -> "EnergyModel":
        """Build from DeePMD-kit's ``model`` section (``type_map``, ``descriptor``, ``fitting_net``)."""
        type_map = list(cfg["type_map"])
        dcfg = dict(cfg["descriptor"])
        fcfg = dict(cfg.get("fitting_net", {}))
        ntypes = len(type_map)
        desc = make_descriptor(type_map, dcfg)  # DescrptSeA, or DescrptSeATebd with a type_embedding
        fcfg.setdefault("precision", desc.precision)
        fit = EnergyFitting(ntypes, desc.get_dim_out(), **fcfg)
        model = cls(type_map, desc, fit)
        model._config = {"type_map": type_map, "descriptor": dcfg, "fitting_net": fcfg}
        if cfg.get("compress"):  # a compressed model's checkpoint: empty tables, filled on loading
            from ..compress import attach
            attach(model, cfg["compress"])
        return model

    def get_config(self) -> dict:
        if self._config is None:  # imported models: rebuild the section from the layers
            d, f = self.descriptor, self.fitting
            self._config = {
                "type_map": self.type_map,
                "descriptor": {"type": "se_e2_a", "sel": d.sel, "rcut": d.rcut, "rcut_smth": d.rcut_smth,
                               "neuron": d.neuron, "axis_neuron": d.axis_neuron,
                               "type_one_side": d.type_one_side, "resnet_dt": d.resnet_dt,
                               "precision": d.precision, "activation_function": d.activation_function},
                "fitting_net": {"neuron": f.neuron, "resnet_dt": f.resnet_dt, "precision": f.precision,
                                "activation_function": f.activation_function},
            }
            if hasattr(d, "type_embedding"):
                self._config["descriptor"]["type_embedding"] = d.type_embedding.config
        return self._config

    def get_rcut(self):
        return self.descriptor.rcut

    def get_sel(self):
        return list(self.descriptor.sel)

    def set_use_op(self, flag):
        """True: the C++ operator; False: the plain-Paddle path; None: the operator if it builds."""
        from .network import Dense
        self.descriptor.use_op = flag
        for layer in self.sublayers():
            if isinstance(layer, Dense):
                layer.use_op = flag

    # ---------------------------------------------------------------- evaluation
    def forward(self, coord, atype, box=None, do_atomic_virial: bool = False, create_graph: bool = False,
                check: bool = True):
        """coord nf x nloc x 3, atype nf x nloc (int), box nf x 9 or None (open boundaries).

        Returns energy [nf,1], atom_energy [nf,nloc,1], force [nf,nloc,3], virial [nf,9] and,
        when asked, atom_virial [nf,nloc,9]; all float64.
        """
        coord, atype, box, nlist, shift, keep = self.prepare(coord, atype, box, check)
        nf, nloc = coord.shape[0], coord.shape[1]
        rij = self.rij_no_graph(coord, nlist, shift, None, create_graph)  # nf x nloc x nnei x 3
        if rij is None:
            rij = build_rij(coord, nlist, shift)
        if rij.stop_gradient:
            rij.stop_gradient = False
        env = self.descriptor.env_mat(rij, nlist, atype)  # nf x nloc x nnei x 4
        atom_e = self.atomic_energy(env, atype, self._embedding_mode(coord, create_graph), keep)  # nf x nloc x 1
        energy = atom_e.sum(axis=1)  # nf x 1
        (g,) = paddle.grad(energy.sum(), rij, create_graph=create_graph)  # nf x nloc x nnei x 3
        out = {"energy": energy, "atom_energy": atom_e}
        fused = None if create_graph else self.prod_force_virial(coord, g, rij, nlist)
        if fused is not None:  # one C++ pass instead of index_add scatters (inference)
            out["force"], out["virial"] = fused[0], fused[1]
            if do_atomic_virial:
                out["atom_virial"] = fused[2]
            return out
        out["force"] = self._force(g, nlist)
        out["virial"] = -paddle.matmul(
            g.reshape([nf, -1, 3]), rij.reshape([nf, -1, 3]), transpose_x=True
        ).reshape([nf, 9])
        if do_atomic_virial:
            pair = -(g.unsqueeze(-1) * rij.unsqueeze(-2)).reshape([nf, nloc, -1, 9])  # nf x nloc x nnei x 9
            out["atom_virial"] = self._scatter_to_neighbors(pair, nlist)
        return out

    def prepare(self, coord, atype, box, check: bool = True):
        """Checked float64 coordinates and box, int32 types, the neighbour list with its image
        shifts, and ``keep`` (per neighbour type, the largest real neighbour count: padded slots
        past it need no net; None in static graphs)."""
        if check and paddle.in_dynamic_mode():
            check_inputs(coord, atype, box, self.ntypes, self.type_map, self.descriptor.rcut)
        coord = coord.astype("float64")
        box = None if box is None else box.astype("float64")
        atype = atype.astype("int32")
        with paddle.no_grad():
            # validated above (or the caller asked for no checks): the search need not re-check
            nlist, shift, nmax, mindist = self.descriptor.neighbor_list(coord, atype, box, check=False)
        if check and paddle.in_dynamic_mode():
            check_neighbors(nmax, mindist, self.descriptor.sel, coord, box, self.type_map)
        keep = None
        if paddle.in_dynamic_mode():  # the largest real neighbour counts: padded slots need no net
            keep = np.minimum(nmax.numpy().max(axis=0), self.descriptor.sel).tolist()
        return coord, atype, box, nlist, shift, keep

    # Which embedding path serves a call. With frozen weights (DeepPot, exported graphs) the
    # fused C++ evaluation operator serves: in cache per atom, memory O(threads), and faster
    # than Paddle's layers. The trainer does not come here: train/fused_step.py assembles the
    # loss gradient around the fused operators itself, which runs each embedding pass once.
    # Autograd through the fused training operator (se_a_embed_train, exact, tested) is kept
    # for other callers that want weight gradients; it runs the nets once more per backward
    # than the hand-assembled step, so it is used only when this flag asks for it.
    prefer_fused_embedding = False

    def _embedding_mode(self, coord, create_graph):
        """How the embedding nets run: a fused C++ operator when it gives every derivative this
        call needs and is the faster choice, the Paddle layers otherwise (DescrptSeA.forward).
        A compressed model: its tables' operator, or ``"exact"`` (their plain-Paddle twin) when
        the call needs second derivatives in the positions."""
        if self.descriptor.tabulation is not None:
            return "exact" if create_graph and coord is not None and not coord.stop_gradient else "table"
        if self.descriptor.fused_op() is None:
            return None
        if not any(not p.stop_gradient for p in self.descriptor.parameters()):
            return "infer"  # frozen weights: values and forces only
        if not self.prefer_fused_embedding or (create_graph and not coord.stop_gradient):
            return None  # second derivatives in the positions: only the Paddle layers give them
        return "train"

    def atomic_energy(self, env, atype, fused: str | None = None, keep: list | None = None):
        """E_i (nf x nloc x 1) from R~: atoms are grouped by centre type for the per-type nets."""
        nf, nloc, nnei = env.shape[0], env.shape[1], env.shape[2]
        flat = env.reshape([-1, nnei, 4])
        at = atype.reshape([-1])
        parts, index = [], []
        # a descriptor with one_pass (one embedding net for all types) takes every atom at once
        d_all = self.descriptor(flat, at, fused, keep) if getattr(self.descriptor, "one_pass", False) else None
        for ti in range(self.ntypes):
            idx = paddle.nonzero(at == ti).reshape([-1])  # atoms of centre type ti
            if paddle.in_dynamic_mode() and idx.shape[0] == 0:
                continue
            d = self.descriptor(paddle.gather(flat, idx), ti, fused, keep) if d_all is None else paddle.gather(d_all, idx)
            e = self.fitting(d, ti) + self.out_bias[ti]
            parts.append(e)
            index.append(idx)
        return self.in_atom_order(parts, index).reshape([nf, nloc, 1])

    @staticmethod
    def in_atom_order(parts: list, index: list):
        """The rows of ``parts`` (block k holds the atoms ``index[k]``) back in atom order."""
        return paddle.gather(paddle.concat(parts), paddle.argsort(paddle.concat(index)))

    def descriptor_of(self, coord, atype, box=None):
        """The se_e2_a descriptor D (nf x nloc x ng*axis_neuron), as DeePMD-kit's eval_descriptor."""
        coord, atype = coord.astype("float64"), atype.astype("int32")
        box = None if box is None else box.astype("float64")
        nf, nloc = coord.shape[0], coord.shape[1]
        with paddle.no_grad():
            nlist, shift, _, _ = self.descriptor.neighbor_list(coord, atype, box)
            env = self.descriptor.env_mat(build_rij(coord, nlist, shift), nlist, atype)
            flat, at = env.reshape([nf * nloc, -1, 4]), atype.reshape([-1]).numpy()
            out = np.zeros([nf * nloc, self.descriptor.get_dim_out()])
            for ti in range(self.ntypes):
                idx = np.flatnonzero(at == ti)
                if idx.size:
                    out[idx] = self.descriptor(paddle.gather(flat, paddle.to_tensor(idx)), ti).numpy()
        return out.reshape(nf, nloc, -1)

    def rij_no_graph(self, coord, nlist, shift, centre=None, create_graph=False):
        """r_ij of the centre atoms ``centre`` (default all) in one C++ pass
        (``deepmd_build_rij``), for evaluations that differentiate in r_ij only: not when
        ``create_graph`` or when eager coordinates ask for a gradient (frozen programs never do).
        None without the operator."""
        op = self.descriptor._op()
        if create_graph or (paddle.in_dynamic_mode() and not coord.stop_gradient) or not hasattr(op, "deepmd_build_rij"):
            return None
        if centre is None:
            centre = paddle.arange(paddle.shape(nlist)[1], dtype="int64")
        return op.deepmd_build_rij(coord, nlist, shift, centre)

    def prod_force_virial(self, coord, g, rij, nlist, centre=None):
        """(force, virial, atom_virial) from g = dE/dr_ij of the centre atoms ``centre`` (default
        all) in one C++ pass (``deepmd_prod_force_virial``, no gradient), or None without it."""
        op = self.descriptor._op()
        if op is None or not hasattr(op, "deepmd_prod_force_virial"):
            return None
        if centre is None:
            centre = paddle.arange(paddle.shape(nlist)[1], dtype="int64")
        return op.deepmd_prod_force_virial(coord, g, rij, nlist, centre)

    @staticmethod
    def _force(g, nlist):
        nf, nloc, nnei = g.shape[0], g.shape[1], g.shape[2]
        f_center = g.sum(axis=2)  # nf x nloc x 3: + sum_j g_ij
        return f_center - EnergyModel._scatter_to_neighbors(g, nlist)

    @staticmethod
    def _scatter_to_neighbors(val, nlist):
        """out[f, j] = sum over (i, slot) with nlist[f, i, slot] = j of val[f, i, slot]."""
        nf, nloc, nnei, k = val.shape[0], val.shape[1], val.shape[2], val.shape[3]
        frame = (paddle.arange(nf, dtype="int64") * nloc).reshape([nf, 1, 1])
        j = paddle.clip(nlist.astype("int64"), min=0) + frame  # padded slots carry zero values
        out = paddle.zeros([nf * nloc, k], dtype=val.dtype)
        out = paddle.index_add(out, j.reshape([-1]), 0, val.reshape([-1, k]))
        return out.reshape([nf, nloc, k])

    # ---------------------------------------------------------------- serialization
    def serialize(self) -> tuple[dict, dict]:
        """(DeePMD-kit's model dict, arrays by '/variable_NNNN' key)."""
        arrays: dict = {}
        d = {
            "@class": "Model", "type": "standard", "@version": 2, "type_map": self.type_map,
            "descriptor": self.descriptor.serialize(arrays),
            "fitting": self.fitting.serialize(arrays, self.type_map),
            "atom_exclude_types": [], "pair_exclude_types": [], "rcond": None, "preset_out_bias": None,
        }
        d["descriptor"]["type_map"] = self.type_map
        kb, ks = f"/variable_{len(arrays):04d}", f"/variable_{len(arrays) + 1:04d}"
        arrays[kb] = self.out_bias.numpy().reshape(1, self.ntypes, 1)
        arrays[ks] = self.out_std.numpy().reshape(1, self.ntypes, 1)
        d["@variables"] = {"out_bias": kb, "out_std": ks}
        return d, arrays

    @classmethod
    def deserialize(cls, d: dict, arrays) -> "EnergyModel":
        """``arrays(ref)`` returns the ndarray a ``@variables`` entry refers to."""
        check_class(d, "Model", max_version=2)
        if d.get("type", "standard") != "standard":
            raise NotImplementedError(f"model type {d.get('type')!r} is not supported; only 'standard' energy models are")
        for key in ("atom_exclude_types", "pair_exclude_types"):
            if d.get(key):
                raise NotImplementedError(f"model {key} is not supported (must be empty)")
        if d.get("preset_out_bias"):
            raise NotImplementedError("model preset_out_bias is not supported")
        type_map = list(d["type_map"])
        n = len(type_map)
        desc = descriptor_class(d["descriptor"]).deserialize(d["descriptor"], arrays, n)
        fit = EnergyFitting.deserialize(d["fitting"], arrays, n)
        model = cls(type_map, desc, fit)
        v = d.get("@variables", {})
        if v.get("out_bias") is not None:
            ob = np.asarray(arrays(v["out_bias"]))
            if ob.size != n:
                raise NotImplementedError(f"out_bias of shape {ob.shape} (only one energy output per type is supported)")
            model.out_bias.set_value(ob.reshape(n).astype("float64"))
        if v.get("out_std") is not None:
            model.out_std.set_value(np.asarray(arrays(v["out_std"])).reshape(n).astype("float64"))
        return model
