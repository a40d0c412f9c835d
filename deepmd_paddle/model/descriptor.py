"""The se_e2_a descriptor (DeepPot-SE; Zhang et al., NeurIPS 2018, Eq. 4-5).

For centre atom i with normalised environment rows R~_ij (nnei x 4):
``G_ij = N_emb(R~_ij[0])`` (ng values, one net per neighbour type, or per (centre, neighbour)
type pair when ``type_one_side`` is false), ``T_i = (1/nnei) sum_j G_ij^T R~_ij`` (ng x 4) and
``D_i = T_i T_i<^T`` with ``T_i<`` the first ``axis_neuron`` rows: ng x axis_neuron features,
flattened row-major (index ``g * axis_neuron + a``) as in DeePMD-kit.

The neighbour list, the environment matrix and the fused embedding are kernels of
``self.kernels`` (``deepmd_paddle.kernels``: C++ operators or their plain-Paddle twins, fixed
when the model is built or loaded). How the embedding nets run in a call is decided in one
place, ``embedding_path``: the Paddle layers, the fused C++ operators, or the tables of a
compressed model (``deepmd_paddle.model.tabulate``).
"""
from __future__ import annotations

import numpy as np
import paddle

from ..kernels import default_backend, rounding
from ..kernels.checks import check_cutoffs
from ..kernels.twins import const, nlayer_code
from . import init, options
from .network import EmbeddingNet, check_class, resolve_precision

# how the embedding nets run in one call (embedding_path)
LAYERS = "layers"            # the Paddle layers: every derivative
FUSED = "fused"              # se_a_embed(_cached): values and forces, no gradient to the weights
FUSED_TRAIN = "fused_train"  # se_a_embed_train: weight gradients, no second derivative in R~
TABLES = "tables"            # a compressed model's tables (C++ when the kernels have it)
TABLES_EXACT = "tables_exact"  # the tables' plain-Paddle twin: second derivatives in R~


class DescrptSeA(paddle.nn.Layer):
    def __init__(self, ntypes, sel, rcut, rcut_smth, neuron, axis_neuron, type_one_side, resnet_dt,
                 precision, seed=None, activation_function="tanh", exclude_types=(), env_protection=0.0,
                 set_davg_zero=False, trainable=True, type="se_e2_a"):
        """Arguments as the ``model/descriptor`` section (deepmd_paddle.config has the defaults)."""
        super().__init__()
        if type not in ("se_e2_a", "se_a"):
            raise NotImplementedError(f"descriptor type {type!r} is not supported; allowed: 'se_e2_a'")
        if len(sel) != ntypes:
            raise ValueError(f"descriptor.sel has {len(sel)} entries but type_map has {ntypes} types")
        if env_protection:
            raise NotImplementedError("descriptor.env_protection other than 0 is not supported")
        check_cutoffs(rcut, sel, rcut_smth)
        if axis_neuron > neuron[-1]:
            raise ValueError(f"axis_neuron ({axis_neuron}) cannot exceed the last embedding width ({neuron[-1]})")
        self.ntypes, self.sel = ntypes, [int(s) for s in sel]
        self.rcut, self.rcut_smth = float(rcut), float(rcut_smth)
        self.neuron, self.axis_neuron = list(neuron), int(axis_neuron)
        self.type_one_side, self.resnet_dt = bool(type_one_side), bool(resnet_dt)
        self.precision, self.activation_function = resolve_precision(precision), activation_function
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
            [EmbeddingNet(neuron, activation_function, resnet_dt, self.precision, s) for s in seeds])
        self.trainable = options.check_trainable(trainable, "descriptor.trainable")
        self.set_trainable()
        # excluded type pairs: their rows of R~ are zero (options.py); emask ntypes x nnei, or None
        self.exclude_types = options.check_pairs(exclude_types, ntypes)
        mask = options.slot_mask(self.exclude_types, self.sel)
        if mask is None:
            self.emask = None
        else:  # a buffer: frozen programs and checkpoints carry it
            self.register_buffer("emask", paddle.to_tensor(mask))
        self._excluded = options.pair_set(self.exclude_types)
        # statistics live in float64: the environment matrix is always computed in float64
        self.register_buffer("davg", paddle.zeros([ntypes, self.nnei, 4], "float64"))
        self.register_buffer("dstd", paddle.ones([ntypes, self.nnei, 4], "float64"))
        self.kernels = default_backend()  # the model's set_kernels fixes it for every layer
        self.prefer_fused_training = False  # autograd through se_a_embed_train (see embedding_path)
        self.uniform_stats = True
        self.tabulation = None  # compressed model: model.tabulate.Tabulation replaces the nets

    # ---------------------------------------------------------------- environment
    def get_nnei(self):
        return self.nnei

    def get_dim_out(self):
        return self.neuron[-1] * self.axis_neuron

    def fitting_input(self, d, ti: int):
        """The fitting net's input for descriptor rows ``d`` of centre type ``ti``: D itself here
        (a type-embedding descriptor may append the type vector: DescrptSeATebd)."""
        return d

    def get_dim_fitting_input(self) -> int:
        return self.get_dim_out()

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

    def set_trainable(self) -> None:
        """Apply ``self.trainable`` to the embedding nets (again after they are replaced)."""
        options.set_trainable(self.embeddings, self.trainable)

    def excluded(self, ti, t: int) -> bool:
        """The pair (centre type ti, neighbour type t) is excluded: its rows of R~ are zero."""
        return self.emask is not None and isinstance(ti, (int, np.integer)) and (int(ti), t) in self._excluded

    def neighbor_list(self, coord, atype, box, check: bool = True):
        """(nlist, shift, nmax, mindist); see ``kernels.twins.neighbor_list``. ``check=False``:
        the caller has run ``kernels.check_frames`` already."""
        return self.kernels.neighbor_list(coord, box, atype, self.rcut, self.sel, check=check)

    def env_mat(self, rij, nlist, atype, davg=None, dstd=None):
        davg = self.davg if davg is None else davg
        dstd = self.dstd if dstd is None else dstd
        if self.emask is None:
            return self.kernels.env_mat(rij, nlist, atype, davg, dstd, self.rcut, self.rcut_smth)
        return self.kernels.env_mat_excl(rij, nlist, atype, davg, dstd, self.emask, self.rcut, self.rcut_smth)

    @paddle.no_grad()
    def env_mat_raw(self, coord, atype, box):
        """Unnormalised R (padded slots 0), nlist, nmax, mindist: what statistics need."""
        coord = coord.astype("float64")  # like the model: geometry is always float64
        box = None if box is None else box.astype("float64")
        nlist, shift, nmax, mindist = self.neighbor_list(coord, atype.astype("int32"), box)
        rij = self.kernels.build_rij(coord, nlist, shift, None)
        zero = paddle.zeros_like(self.davg)
        env = self.env_mat(rij, nlist, atype, zero, paddle.ones_like(self.dstd))
        return env, nlist, nmax, mindist

    # ---------------------------------------------------------------- descriptor
    def fused_ready(self) -> bool:
        """The nets can run in the fused C++ operators: tanh nets and kernels that have them, and
        no mixed precision unless those kernels round (kernels/rounding.FUSED_KERNELS_ROUND)."""
        if self.embeddings[0].layers[0].rounding is not None and not rounding.FUSED_KERNELS_ROUND:
            return False
        return self.activation_function == "tanh" and self.kernels.has("embed") and self.kernels.has("embed_train")

    def embedding_path(self, second_order: bool, graph: bool = False) -> str:
        """How the embedding nets run in a call; the one place that decides. ``second_order``:
        the call differentiates twice in the positions (forces with ``create_graph`` and
        coordinates that want a gradient); ``graph``: the forces are differentiated again
        (``create_graph``: training on forces, even with untrainable embedding nets).

        A compressed model runs its tables (their plain-Paddle twin for second derivatives).
        Frozen weights (DeepPot, exported programs) take the fused evaluation operator: in cache
        per atom, memory O(threads), faster than Paddle's layers. Trainable weights take the
        Paddle layers (the trainer's fused step, train/fused_step.py, calls the operators
        itself), or, with ``prefer_fused_training``, autograd through se_a_embed_train."""
        if self.tabulation is not None:
            return TABLES_EXACT if second_order else TABLES
        if not self.fused_ready():
            return LAYERS
        if not graph and not any(not p.stop_gradient for p in self.parameters()):
            return FUSED
        return FUSED_TRAIN if self.prefer_fused_training and not second_order else LAYERS

    def forward(self, env, ti: int | None = None, path: str = "layers", keep: list | None = None):
        """D (nat x ng*axis_neuron) for a block of atoms whose normalised environment is ``env``
        (nat x nnei x 4); ``ti`` is the block's centre type (needed when ``type_one_side`` is
        false), ``path`` how the nets run (``embedding_path``). ``keep[t]``: the largest number
        of real type-t neighbours of any atom in the block (the Paddle layers then embed only
        those slots; see ``_contract``)."""
        d = self.from_contraction(self.contraction(env, ti, path, keep))
        return d if path not in (TABLES, TABLES_EXACT) or self.precision == "float64" else d.astype(self.precision)

    def contraction(self, env, ti: int | None = None, path: str = "layers", keep: list | None = None):
        """T = (1/nnei) sum_j G_j^T R~_j (nat x ng x 4) of a block, arguments as ``forward``:
        what D is made of, and (its columns 1..3) the rotation matrix of DeePMD-kit's tensor
        fittings (model/dipole.py)."""
        if path in (TABLES, TABLES_EXACT):
            return self.tabulation(env, ti, self.kernels if path == TABLES else None)
        if self.precision != "float64":
            env = env.astype(self.precision)
        if path == FUSED_TRAIN:
            return self.kernels.embed_train(env, self.fused_params(ti), *self.fused_attrs())
        if path == FUSED:  # se_a_embed_cached keeps G, dG/ds for the force pass (small systems)
            return self.kernels.embed_cached(env, self.fused_params(ti), *self.fused_attrs())[0]
        return self._contract(env, ti, keep if self.uniform_stats else None)

    def from_contraction(self, xyz):
        """D = T T<^T flattened (nat x ng*axis_neuron) from T = (1/nnei) sum_j G_j^T R~_j."""
        descriptor = self.kernels.get("descriptor", dtype=xyz.dtype)  # (named: see forward_lower)
        d = descriptor(xyz, self.axis_neuron)  # nat x ng x axis
        return d.reshape([d.shape[0], -1])

    def fused_params(self, ti: int | None) -> list:
        """The weights the fused operators take for centre type ti: per neighbour type, per
        layer W, b (and idt when the layer has one)."""
        nets = [self.embeddings[t if self.type_one_side else ti + t * self.ntypes] for t in range(self.ntypes)]
        return [p for net in nets for layer in net.layers
                for p in ((layer.w, layer.b) if layer.idt is None else (layer.w, layer.b, layer.idt))]

    def fused_attrs(self) -> tuple:
        """(sel, nlayer, timestep) of the fused operators; nlayer carries the nets' rounding mode
        (mixed precision: ``kernels.twins.nlayer_code``)."""
        first = self.embeddings[0].layers[0].rounding
        return self.sel, nlayer_code(len(self.neuron), None if first is None else first.fmt), self.resnet_dt

    def _contract(self, env, ti, keep=None):
        """T = (1/nnei) sum_j G_j^T R~_j with the Paddle layers: nat x ng x 4.

        Neighbours are nearest first and padded slots come last in each type block, all with
        the same row r = -davg/dstd. With ``keep[t]`` real slots at most, the slots past it
        add (sel_t - keep_t) G(r_0)^T r exactly: one net evaluation instead of one per slot.
        """
        xyz = None
        for t in range(self.ntypes):
            if self.excluded(ti, t):  # zero rows: no contribution
                continue
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
        if xyz is None:  # every neighbour type excluded for this centre type: T = 0
            return paddle.zeros([env.shape[0], self.neuron[-1], 4], env.dtype)
        return xyz * const(xyz, 1.0 / self.nnei)

    # ---------------------------------------------------------------- serialization
    def serialize(self, arrays: dict) -> dict:
        from .network import _store
        n = self.ntypes
        nets = [self.embeddings[i].serialize(arrays) for i in range(len(self.embeddings))]
        return {
            "@class": "Descriptor", "type": "se_e2_a", "@version": 2, "rcut": self.rcut,
            "rcut_smth": self.rcut_smth, "sel": self.sel, "neuron": self.neuron,
            "axis_neuron": self.axis_neuron, "resnet_dt": self.resnet_dt, "trainable": self.trainable,
            "type_one_side": self.type_one_side, "exclude_types": [list(p) for p in self.exclude_types],
            "env_protection": 0.0,
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
                                "env_protection", "set_davg_zero", "trainable") if k in d}
        obj = cls(ntypes, **kw)
        coll = d["embeddings"]
        nets = coll["networks"]
        if len(nets) != len(obj.embeddings):
            raise ValueError(f"expected {len(obj.embeddings)} embedding nets, the file has {len(nets)}")
        obj.embeddings = paddle.nn.LayerList(
            [EmbeddingNet.deserialize(n, arrays, obj.precision) for n in nets]
        )
        obj.set_trainable()
        obj.set_stat(arrays(d["@variables"]["davg"]), arrays(d["@variables"]["dstd"]))
        return obj
