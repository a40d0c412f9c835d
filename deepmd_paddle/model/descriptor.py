"""The se_e2_a descriptor (DeepPot-SE; Zhang et al., NeurIPS 2018, Eq. 4-5).

For centre atom i with normalised environment rows R~_ij (nnei x 4):
``G_ij = N_emb(R~_ij[0])`` (ng values, one net per neighbour type, or per (centre, neighbour)
type pair when ``type_one_side`` is false), ``T_i = (1/nnei) sum_j G_ij^T R~_ij`` (ng x 4) and
``D_i = T_i T_i<^T`` with ``T_i<`` the first ``axis_neuron`` rows: ng x axis_neuron features,
flattened row-major (index ``g * axis_neuron + a``) as in DeePMD-kit.

The neighbour list and the environment matrix come from the C++ operator when it is available
and from the plain-Paddle twins in ``env_mat.py`` otherwise (``use_op=False`` forces them).
"""
from __future__ import annotations

import numpy as np
import paddle

from .. import ops
from . import init
from .env_mat import build_rij, const, env_mat_paddle, neighbor_list_paddle
from .network import EmbeddingNet, check_class


class DescrptSeA(paddle.nn.Layer):
    def __init__(self, ntypes, sel, rcut, rcut_smth, neuron=(25, 50, 100), axis_neuron=16,
                 type_one_side=False, resnet_dt=False, precision="float64", seed=None,
                 activation_function="tanh", exclude_types=(), env_protection=0.0, set_davg_zero=False,
                 trainable=True, type="se_e2_a"):
        super().__init__()
        if type not in ("se_e2_a", "se_a"):
            raise NotImplementedError(f"descriptor type {type!r} is not supported; allowed: 'se_e2_a'")
        if len(sel) != ntypes:
            raise ValueError(f"descriptor.sel has {len(sel)} entries but type_map has {ntypes} types")
        if exclude_types:
            raise NotImplementedError("descriptor.exclude_types is not supported (must be empty)")
        if env_protection:
            raise NotImplementedError("descriptor.env_protection other than 0 is not supported")
        if not 0 <= rcut_smth < rcut:
            raise ValueError(f"need 0 <= rcut_smth < rcut, got rcut_smth={rcut_smth}, rcut={rcut}")
        if axis_neuron > neuron[-1]:
            raise ValueError(f"axis_neuron ({axis_neuron}) cannot exceed the last embedding width ({neuron[-1]})")
        self.ntypes, self.sel = ntypes, [int(s) for s in sel]
        self.rcut, self.rcut_smth = float(rcut), float(rcut_smth)
        self.neuron, self.axis_neuron = list(neuron), int(axis_neuron)
        self.type_one_side, self.resnet_dt = bool(type_one_side), bool(resnet_dt)
        self.precision, self.activation_function = precision, activation_function
        self.set_davg_zero = set_davg_zero
        self.nnei = sum(self.sel)
        self.sec = np.cumsum([0] + self.sel).tolist()  # slot offsets of each neighbour type
        # network index: neighbour type t, or (centre ti, neighbour t) -> ti + t * ntypes (DeePMD-kit's
        # serialization); seeds in DeePMD-kit's build order: centre type outer, neighbour type inner
        seed, shift = init.check_seed(seed), init.net_seed_shift(neuron)
        if self.type_one_side:
            seeds = [init.shifted(seed, t * shift) for t in range(ntypes)]
        else:
            seeds = [init.shifted(seed, (ti * ntypes + t) * shift) for t in range(ntypes) for ti in range(ntypes)]
        self.embeddings = paddle.nn.LayerList(
            [EmbeddingNet(neuron, activation_function, resnet_dt, precision, s) for s in seeds])
        # statistics live in float64: the environment matrix is always computed in float64
        self.register_buffer("davg", paddle.zeros([ntypes, self.nnei, 4], "float64"))
        self.register_buffer("dstd", paddle.ones([ntypes, self.nnei, 4], "float64"))
        self.use_op = None  # None: the operator when available
        self.uniform_stats = True
        self.tabulation = None  # compressed model: deepmd_paddle.compress.Tabulation replaces the nets

    # ---------------------------------------------------------------- environment
    def get_nnei(self):
        return self.nnei

    def get_dim_out(self):
        return self.neuron[-1] * self.axis_neuron

    def set_stat(self, davg, dstd):
        davg = np.asarray(davg, "float64").reshape(self.ntypes, self.nnei, 4)
        dstd = np.asarray(dstd, "float64").reshape(self.ntypes, self.nnei, 4)
        self.davg.set_value(davg)
        self.dstd.set_value(dstd)
        # padded slots of a block all hold the same R~ row when the statistics do not vary
        # over the block's slots (DeePMD-kit's statistics never do): see _contract
        self.uniform_stats = all(
            (a[:, lo:hi] == a[:, lo:lo + 1]).all() for a in (davg, dstd) for lo, hi in zip(self.sec, self.sec[1:])
        )

    def _op(self):
        """The compiled operator module, or None for the plain-Paddle path."""
        if self.use_op is False:
            return None
        op = ops.load_op()
        if op is None and self.use_op:
            raise RuntimeError("use_op=True but the C++ operator is not available (see the warning above)")
        return op

    def neighbor_list(self, coord, atype, box, check: bool = True):
        """(nlist, shift, nmax, mindist); see ``env_mat.neighbor_list_paddle``. ``check=False``:
        the caller has run ``checks.check_inputs`` (the operator then skips its own)."""
        if self._op() is not None:
            return ops.neighbor_list(coord, box, atype, self.rcut, self.sel, check=check)
        return neighbor_list_paddle(coord, box, atype, self.rcut, self.sel)

    def env_mat(self, rij, nlist, atype, davg=None, dstd=None):
        davg = self.davg if davg is None else davg
        dstd = self.dstd if dstd is None else dstd
        if self._op() is not None:
            return ops.env_mat(rij, nlist, atype, davg, dstd, self.rcut, self.rcut_smth)
        return env_mat_paddle(rij, nlist, atype, davg, dstd, self.rcut, self.rcut_smth)

    @paddle.no_grad()
    def env_mat_raw(self, coord, atype, box):
        """Unnormalised R (padded slots 0), nlist, nmax, mindist: what statistics need."""
        coord = coord.astype("float64")  # like the model: geometry is always float64
        box = None if box is None else box.astype("float64")
        nlist, shift, nmax, mindist = self.neighbor_list(coord, atype.astype("int32"), box)
        rij = build_rij(coord, nlist, shift)
        zero = paddle.zeros_like(self.davg)
        env = self.env_mat(rij, nlist, atype, zero, paddle.ones_like(self.dstd))
        return env, nlist, nmax, mindist

    # ---------------------------------------------------------------- descriptor
    def fused_op(self):
        """The fused C++ embedding (inference only: no gradient reaches the weights), or None."""
        if self.activation_function != "tanh":
            return None
        op = self._op()
        return op if op is not None and hasattr(op, "se_a_embed") and hasattr(op, "se_a_embed_train") else None

    def forward(self, env, ti: int | None = None, fused: str | None = None, keep: list | None = None):
        """D for a block of atoms whose normalised environment is ``env`` (nat x nnei x 4).

        ``ti`` is the centre type of the block (needed when ``type_one_side`` is false).
        ``fused`` runs the embedding nets and ``G^T R~`` in one C++ operator: ``"infer"``
        (``se_a_embed``: no gradient reaches the weights) or ``"train"`` (``se_a_embed_train``:
        gradients and the force-loss double gradient reach the weights, but second derivatives
        do not flow back into R~). None: the Paddle layers (every derivative).
        ``keep[t]``: the largest number of real type-t neighbours of any atom in the block (the
        Paddle layers then embed only those slots; see ``_contract``).
        A compressed model (``self.tabulation``) evaluates its tables instead: the C++ operator
        ``se_a_tabulate``, or its plain-Paddle twin when ``fused == "exact"`` (second derivatives
        in R~) or without the operator.
        Returns nat x (ng * axis_neuron).
        """
        if self.tabulation is not None:
            op = self._op() if fused != "exact" else None
            xyz = self.tabulation(env, ti, op if hasattr(op, "se_a_tabulate") else None)
            d = self.from_contraction(xyz)
            return d if self.precision == "float64" else d.astype(self.precision)
        if self.precision != "float64":
            env = env.astype(self.precision)
        if fused:
            op = self.fused_op()
            if fused == "train":
                xyz = op.se_a_embed_train(env, self.fused_params(ti), *self.fused_attrs())
            elif hasattr(op, "se_a_embed_cached"):  # keeps G, dG/ds for the force pass (small systems)
                xyz, _ = op.se_a_embed_cached(env, self.fused_params(ti), *self.fused_attrs())
            else:
                xyz = op.se_a_embed(env, self.fused_params(ti), *self.fused_attrs())
        else:
            xyz = self._contract(env, ti, keep if self.uniform_stats else None)
        return self.from_contraction(xyz)

    def from_contraction(self, xyz):
        """D = T T<^T flattened (nat x ng*axis_neuron) from T = (1/nnei) sum_j G_j^T R~_j."""
        op = self._op()
        if xyz.dtype == paddle.float64 and hasattr(op, "se_a_descriptor"):
            d = op.se_a_descriptor(xyz, self.axis_neuron)  # C++: Paddle's batched matmul is slow here
        else:
            d = paddle.matmul(xyz, xyz[:, : self.axis_neuron, :], transpose_y=True)  # nat x ng x axis
        return d.reshape([d.shape[0], -1])

    def fused_params(self, ti: int | None) -> list:
        """The weights the fused operators take for centre type ti: per neighbour type, per
        layer W, b (and idt when the layer has one)."""
        nets = [self.embeddings[t if self.type_one_side else ti + t * self.ntypes] for t in range(self.ntypes)]
        return [p for net in nets for layer in net.layers
                for p in ((layer.w, layer.b) if layer.idt is None else (layer.w, layer.b, layer.idt))]

    def fused_attrs(self) -> tuple:
        return self.sel, len(self.neuron), self.resnet_dt

    def _contract(self, env, ti, keep=None):
        """T = (1/nnei) sum_j G_j^T R~_j with the Paddle layers: nat x ng x 4.

        Neighbours are nearest first and padded slots come last in each type block, all with
        the same row r = -davg/dstd. With ``keep[t]`` real slots at most, the slots past it
        add (sel_t - keep_t) G(r_0)^T r exactly: one net evaluation instead of one per slot.
        """
        xyz = None
        for t in range(self.ntypes):
            lo, hi = self.sec[t], self.sec[t + 1]
            net = self.embeddings[t if self.type_one_side else ti + t * self.ntypes]
            k = hi - lo if keep is None else min(int(keep[t]), hi - lo)
            part = None
            if k > 0:
                e_t = env[:, lo:lo + k, :]  # nat x k x 4
                part = paddle.matmul(net(e_t[:, :, :1]), e_t, transpose_x=True)  # nat x ng x 4
            if k < hi - lo:
                pad = (-self.davg[ti, lo] / self.dstd[ti, lo]).astype(env.dtype).reshape([1, 1, 4])
                tail = paddle.matmul(net(pad[:, :, :1]), pad, transpose_x=True) * float(hi - lo - k)
                part = tail if part is None else part + tail  # broadcast over the block's atoms
            xyz = part if xyz is None else xyz + part
        return xyz * const(xyz, 1.0 / self.nnei)

    # ---------------------------------------------------------------- serialization
    def serialize(self, arrays: dict) -> dict:
        from .network import _store
        n = self.ntypes
        nets = [self.embeddings[i].serialize(arrays) for i in range(len(self.embeddings))]
        return {
            "@class": "Descriptor", "type": "se_e2_a", "@version": 2, "rcut": self.rcut,
            "rcut_smth": self.rcut_smth, "sel": self.sel, "neuron": self.neuron,
            "axis_neuron": self.axis_neuron, "resnet_dt": self.resnet_dt, "trainable": True,
            "type_one_side": self.type_one_side, "exclude_types": [], "env_protection": 0.0,
            "set_davg_zero": self.set_davg_zero, "activation_function": self.activation_function,
            "precision": self.precision,
            "embeddings": {
                "@class": "NetworkCollection", "@version": 1, "ndim": 1 if self.type_one_side else 2,
                "ntypes": n, "network_type": "embedding_network", "networks": nets,
            },
            "env_mat": {"rcut": self.rcut, "rcut_smth": self.rcut_smth, "protection": 0.0,
                        "use_exp_switch": False},
            "@variables": {"davg": _store(arrays, self.davg), "dstd": _store(arrays, self.dstd)},
        }

    @classmethod
    def deserialize(cls, d: dict, arrays, ntypes: int) -> "DescrptSeA":
        check_class(d, "Descriptor", max_version=2)
        if d.get("type") not in ("se_e2_a", "se_a"):
            raise NotImplementedError(f"descriptor type {d.get('type')!r} is not supported; only se_e2_a is")
        if d.get("spin"):
            raise NotImplementedError("spin models are not supported")
        if (d.get("env_mat") or {}).get("use_exp_switch"):
            raise NotImplementedError("descriptor env_mat.use_exp_switch is not supported")
        kw = {k: d[k] for k in ("sel", "rcut", "rcut_smth", "neuron", "axis_neuron", "type_one_side",
                                "resnet_dt", "precision", "activation_function", "exclude_types",
                                "env_protection", "set_davg_zero") if k in d}
        obj = cls(ntypes, **kw)
        coll = d["embeddings"]
        nets = coll["networks"]
        if len(nets) != len(obj.embeddings):
            raise ValueError(f"expected {len(obj.embeddings)} embedding nets, the file has {len(nets)}")
        obj.embeddings = paddle.nn.LayerList(
            [EmbeddingNet.deserialize(n, arrays, obj.precision) for n in nets]
        )
        obj.set_stat(arrays(d["@variables"]["davg"]), arrays(d["@variables"]["dstd"]))
        return obj
