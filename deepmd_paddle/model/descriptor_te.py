"""se_e2_a with a type embedding: ONE embedding net for every neighbour type (and centre type).

DescrptSeA runs one embedding net per neighbour type (``type_one_side: true``) or per (centre,
neighbour) pair: 5 or 25 nets for a five-element alloy. Here every slot j of centre atom i goes
through the same net, whose input carries the types (PWMLFF's variant with element properties;
DeePMD-kit's with a learned type vector)::

    G_ij = N_emb([R~_ij[0], e(t_j)])               type_one_side: true
    G_ij = N_emb([R~_ij[0], e(t_j), e(t_i)])       type_one_side: false

and, as in se_e2_a, ``T_i = (1/nnei) sum_j G_ij^T R~_ij``, ``D_i = T_i T_i<^T``. The type vector
``e(t)`` (``TypeEmbedding``) is either

- fixed element properties (``type_embedding: true`` for all of ``elements.PROPERTIES``, or a
  list of their names), normalised over the model's elements (``elements.normalise``), or
- learned (``type_embedding: {"neuron": [8], ...}``, DeePMD-kit's ``type_embedding`` section):
  ``e = N_type(onehot(t))``, a tanh net whose last width is the vector's length.

Neighbour slots keep se_e2_a's layout (``sel[t]`` slots per neighbour type, nearest first, -1
padded), so the neighbour search, the environment matrix, its statistics and the export are the
ones of DescrptSeA. A padded slot of block t is what it is in se_e2_a: R = 0, hence
``R~ = -davg/dstd``, with the type of its block (never the type of index -1); it adds exactly what
a type-t neighbour at rcut adds (``G(r0, e(t))^T r0``, zero when ``set_davg_zero``), so the
energy stays smooth when neighbours cross rcut. Padded slots are never run through the net one
by one: in dynamic mode the net sees each atom's real neighbours only, compacted to the front,
and the padded slots are added as ``npad x`` one evaluation per (centre type, block)
(``_compact``); static graphs run every slot (same numbers).

The fitting nets stay one per element (DeePMD-kit's type-embedding models also share one fitting
net fed with the type vector; that is not done here). Because the embedding net does not depend
on the centre type through its weights, ``forward`` takes the
centre types of a whole frame (``ti`` a tensor) and evaluates all atoms in one pass:
``EnergyModel.atomic_energy`` does that when the descriptor sets ``one_pass``.
"""
from __future__ import annotations

import numpy as np
import paddle

from .descriptor import LAYERS, DescrptSeA
from .elements import PROPERTIES, canonical_name, normalise, property_matrix
from ..kernels.twins import const
from .network import EmbeddingNet, _store, check_class

SERIAL_TYPE = "se_e2_a_tebd"  # our serialized descriptor type (DeePMD-kit has no such descriptor)
LEARNED_DEFAULTS = {"neuron": [8], "activation_function": "tanh", "resnet_dt": False, "precision": "default",
                    "trainable": True, "seed": None, "use_econf_tebd": False, "use_tebd_bias": False}


class TypeEmbedding(paddle.nn.Layer):
    """``forward()`` -> ntypes x dim type vectors (see the module docstring).

    ``spec``: True (every property of ``elements.PROPERTIES``), a list of property names, or a
    dict with DeePMD-kit's ``type_embedding`` keys (learned).
    """

    def __init__(self, type_map, spec=True, precision="float64", seed=None):
        super().__init__()
        self.type_map = list(type_map)
        ntypes = len(self.type_map)
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - set(LEARNED_DEFAULTS))
            if unknown:
                raise ValueError(f"type_embedding: unknown key(s) {unknown}; allowed: {sorted(LEARNED_DEFAULTS)}")
            # a stored section without use_tebd_bias predates it: its net has biases (DeePMD-kit's rule too)
            cfg = {**LEARNED_DEFAULTS, "use_tebd_bias": "neuron" in spec and "use_tebd_bias" not in spec, **spec}
            if cfg["use_econf_tebd"]:
                raise NotImplementedError("type_embedding.use_econf_tebd is not supported; for physical inputs "
                                          "use type_embedding: true (element properties) or a list of properties")
            if not cfg["neuron"]:
                raise ValueError("type_embedding.neuron must list at least one width")
            if cfg["precision"] == "default":
                cfg["precision"] = precision
            self.kind, self.config, self.names = "learned", cfg, []
            self.net = EmbeddingNet(cfg["neuron"], cfg["activation_function"], cfg["resnet_dt"], cfg["precision"],
                                    cfg["seed"] if cfg["seed"] is not None else seed, in_dim=ntypes,
                                    bias=cfg["use_tebd_bias"])
            for p in self.net.parameters():
                p.stop_gradient = not cfg["trainable"]
            self.register_buffer("onehot", paddle.eye(ntypes, dtype=cfg["precision"]))
            self.dim = int(cfg["neuron"][-1])
        else:
            if spec is True:
                names = list(PROPERTIES)
            elif isinstance(spec, (list, tuple)) and all(isinstance(n, str) for n in spec):
                names = [canonical_name(n) for n in spec]
            else:
                raise ValueError(f"type_embedding: got {spec!r}; allowed: true (all of {', '.join(PROPERTIES)}), "
                                 "a list of those names, or a learned embedding {\"neuron\": [8]}")
            values = normalise(property_matrix(self.type_map, names))  # ntypes x nprop
            self.kind, self.names, self.net = "properties", names, None
            self.config = True if spec is True else list(spec)
            self.register_buffer("values", paddle.to_tensor(values.astype(precision)))
            self.dim = len(names)

    def forward(self):
        if self.net is None:
            return self.values
        return self.net(self.onehot)

    def serialize(self, arrays: dict) -> dict:
        d = {"@class": "TypeEmbedding", "@version": 1, "kind": self.kind, "config": self.config,
             "properties": self.names, "type_map": self.type_map}
        if self.net is None:
            d["@variables"] = {"values": _store(arrays, self.values)}
        else:
            d["net"] = self.net.serialize(arrays)
        return d

    def load(self, d: dict, arrays) -> None:
        """Take the values or weights of a serialized TypeEmbedding of the same kind."""
        check_class(d, "TypeEmbedding", max_version=1)
        if d["kind"] != self.kind:
            raise ValueError(f"serialized type embedding is {d['kind']!r}, the model's is {self.kind!r}")
        if self.net is None:
            self.values.set_value(np.asarray(arrays(d["@variables"]["values"])).astype(self.values.dtype))
        else:
            net = EmbeddingNet.deserialize(d["net"], arrays, self.config["precision"], in_dim=len(self.type_map))
            for p in net.parameters():
                p.stop_gradient = not self.config["trainable"]
            self.net = net


class DescrptSeATebd(DescrptSeA):
    """se_e2_a with one embedding net fed by the type embedding (module docstring)."""

    one_pass = True  # forward takes a frame's centre types at once (EnergyModel.atomic_energy)
    serial_type = SERIAL_TYPE  # the "type" of its serialized dict (subclasses: their own)

    def __init__(self, ntypes, sel, rcut, rcut_smth, neuron, axis_neuron, type_one_side, resnet_dt, precision,
                 seed=None, activation_function="tanh", exclude_types=(), env_protection=0.0, set_davg_zero=False,
                 trainable=True, type="se_e2_a", type_embedding=True, type_map=None, concat_output_tebd=False):
        # the parent's per-type nets are replaced below (type_one_side=True: build ntypes, not ntypes^2)
        super().__init__(ntypes, sel, rcut, rcut_smth, neuron, axis_neuron, True, resnet_dt, precision, seed,
                         activation_function, exclude_types, env_protection, set_davg_zero, trainable, type)
        if type_map is None or len(type_map) != ntypes:
            raise ValueError(f"a type embedding needs the model's type_map ({ntypes} element names), got {type_map}")
        self.type_one_side = bool(type_one_side)
        self.type_embedding = TypeEmbedding(type_map, type_embedding, self.precision, seed)
        # DeePMD-kit's type-embedding model also feeds e(t_i) to its one fitting net (fitting_input)
        self.concat_output_tebd = bool(concat_output_tebd)
        self.in_dim = 1 + self.type_embedding.dim * (1 if self.type_one_side else 2)
        self.embeddings = paddle.nn.LayerList(
            [EmbeddingNet(neuron, activation_function, resnet_dt, self.precision, seed, in_dim=self.in_dim)])
        self.set_trainable()
        # the first layer's skip connection when its width equals (x) or doubles ([x, x]) in_dim
        n0, eye = int(neuron[0]), np.eye(self.in_dim)
        self.skip = eye if n0 == self.in_dim else np.hstack([eye, eye]) if n0 == 2 * self.in_dim else None

    def fitting_input(self, d, ti: int):
        """[D, e(ti)] with ``concat_output_tebd`` (DeePMD-kit's type-embedding model), else D."""
        if not self.concat_output_tebd:
            return d
        e = self.type_embedding().astype(d.dtype)[ti:ti + 1]  # 1 x tdim
        # [D, 0] + [0, e] rather than a concat: Paddle 3.3's concat double gradient fails when a part
        # is a constant (an untrained type embedding); the broadcast works in static graphs too
        pad = paddle.nn.functional.pad  # (widths from the layer: shapes are not ints in static graphs)
        return pad(d, [0, 0, 0, self.type_embedding.dim]) + pad(e, [0, 0, self.get_dim_out(), 0])

    def get_dim_fitting_input(self) -> int:
        return self.get_dim_out() + (self.type_embedding.dim if self.concat_output_tebd else 0)

    def fused_ready(self) -> bool:
        """The fused C++ operators take this net as per-type one-input nets (``fused_params``)
        only when the first layer is a plain tanh layer (no skip connection, no timestep). The
        fused training step (train/fused_step.py) uses them; ``forward`` runs the Paddle layers
        whatever path it is given."""
        first = self.embeddings[0].layers[0]
        if self.skip is not None or first.idt is not None or first.w.shape[1] <= 2:
            return False
        if first.rounding is not None:  # mixed precision rounds x = [s, e] and W, not s W_s + (b + e W_e)
            return False
        return super().fused_ready()

    def embedding_path(self, second_order: bool, graph: bool = False) -> str:
        return LAYERS

    def fused_params(self, ti: int | None) -> list:
        """The net as the fused operators take it for centre type ti: per neighbour type t, a
        one-input net whose first layer has the weight ``w_s`` (row 0 of W) and the bias
        ``b + e_t W_nb (+ e_ti W_c)``, the other layers shared. These are tensors computed from
        the parameters, so a gradient given to them reaches W, b and a learned type embedding."""
        first, rest = self.embeddings[0].layers[0], self.embeddings[0].layers[1:]
        t_nb, t_c = self._type_tables(first.w)
        bias = first.b + t_nb  # ntypes x n0
        if t_c is not None:
            bias = bias + t_c[ti]
        w_s = first.w[0:1]
        shared = [p for layer in rest for p in ((layer.w, layer.b) if layer.idt is None else (layer.w, layer.b, layer.idt))]
        return [p for t in range(self.ntypes) for p in [w_s, bias[t], *shared]]

    # ---------------------------------------------------------------- descriptor
    def forward(self, env, ti, path: str = "layers", keep: list | None = None):
        """D (nat x ng*axis_neuron) of atoms with normalised environment ``env`` (nat x nnei x 4).

        ``ti``: the centre type of all of them (int) or of each (int tensor, nat). ``path`` is
        always the Paddle layers here (the fused operators serve the training step through
        ``fused_params``); ``keep`` is not needed (see ``_contract``).
        """
        if self.precision != "float64":
            env = env.astype(self.precision)
        xyz = self._contract(env, ti)
        d = paddle.matmul(xyz, xyz[:, : self.axis_neuron, :], transpose_y=True)  # nat x ng x axis
        return d.reshape([d.shape[0], -1])

    def _embed(self, s, nb, centre):
        """G = N_emb([s, e_nb, e_c]) without building the concatenated input: the type columns of
        the first layer's weight act as a per-type bias, ``z = s w_s + e_nb W_nb (+ e_c W_c)``.
        ``s`` ... x 1; ``nb``, ``centre``: those products, broadcasting to ... x neuron[0].
        (Also the way round Paddle 3.3's concat double gradient, which fails when a part of the
        concatenation is a constant.)"""
        first, rest = self.embeddings[0].layers[0], self.embeddings[0].layers[1:]
        n0 = first.w.shape[1]
        if self.skip is not None:  # the tables carry [type part of z | type part of the skip]
            nb, nb_skip = nb[..., :n0], nb[..., n0:]
            if centre is not None:
                centre, c_skip = centre[..., :n0], centre[..., n0:]
        z = s * first.w[0] + nb  # ... x n0
        if centre is not None:
            z = z + centre
        y = first._bias_act(z)
        if first.idt is not None:
            y = y * first.idt
        if self.skip is not None:  # + x (or [x, x]) = s skip[0] + e_nb skip_nb (+ e_c skip_c)
            y = y + s * paddle.to_tensor(self.skip[0], dtype=y.dtype) + nb_skip
            if centre is not None:
                y = y + c_skip
        for layer in rest:
            y = layer(y)
        return y

    def _type_tables(self, env):
        """(e W_nb, e W_c or None): the type part of the first layer, ntypes x neuron[0] each
        (ntypes x 2 neuron[0] with a skip connection: [e W | e skip], see ``_embed``)."""
        tebd = self.type_embedding().astype(env.dtype)  # ntypes x tdim
        w = self.embeddings[0].layers[0].w  # in_dim x n0: rows [s | neighbour type | centre type]
        tdim = self.type_embedding.dim

        def table(lo, hi):
            if self.skip is None:
                return paddle.matmul(tebd, w[lo:hi])
            n0 = w.shape[1]  # [W | skip] without a concat (see _embed): W [I 0] + skip [0 I]
            left = paddle.to_tensor(np.eye(n0, 2 * n0), dtype=w.dtype)
            right = paddle.to_tensor(self.skip[lo:hi] @ np.eye(n0, 2 * n0, n0), dtype=w.dtype)
            return paddle.matmul(tebd, paddle.matmul(w[lo:hi], left) + right)

        return table(1, 1 + tdim), None if self.type_one_side else table(1 + tdim, self.in_dim)

    @staticmethod
    def _centre(t_c, ti, per_atom):
        """The centre-type bias: nat x 1 x n0 (per-atom types) or 1 x n0 (one type), or None."""
        if t_c is None:
            return None
        return paddle.gather(t_c, ti).unsqueeze(1) if per_atom else t_c[ti:ti + 1]

    def _contract(self, env, ti):
        """T = (1/nnei) sum_j G_j^T R~_j: nat x ng x 4 (padded slots: see the module docstring).

        Static graphs evaluate the net on every slot. In dynamic mode (and with statistics that
        are uniform over each block, as always from our statistics) the net runs on the real
        neighbours only, compacted to the front (``_compact``): with five types, the largest
        total count of an atom is well below the sum over types of the largest per-type counts
        that a per-type layout must evaluate."""
        t_nb, t_c = self._type_tables(env)
        per_atom = not isinstance(ti, (int, np.integer))  # a tensor (or a static-graph value) of types
        if paddle.in_dynamic_mode() and self.uniform_stats:
            return self._compact(env, ti, per_atom, t_nb, t_c)
        slot_t = paddle.to_tensor(np.repeat(np.arange(self.ntypes), self.sel), dtype="int64")
        g = self._embed(env[:, :, :1], paddle.gather(t_nb, slot_t), self._centre(t_c, ti, per_atom))
        xyz = paddle.matmul(g, env, transpose_x=True)  # nat x ng x 4
        return xyz * const(xyz, 1.0 / self.nnei)

    def _compact(self, env, ti, per_atom, t_nb, t_c):
        """T from the real neighbours, moved to the front of each atom's row, plus the padded
        slots' share ``sum_t npad_it G(r0_ti,t, e_t)^T r0_ti,t`` (one net evaluation per
        (centre type, block)). A slot is taken as padded when its row equals the padded row
        ``r0 = -davg/dstd`` exactly; a neighbour whose row equals it adds exactly what a padded
        slot adds, so the split is exact."""
        nat, nnei = env.shape[0], env.shape[1]
        r0_all = (-self.davg / self.dstd).astype(env.dtype)  # ntypes(centre) x nnei x 4
        with paddle.no_grad():
            rows = paddle.gather(r0_all, ti) if per_atom else r0_all[ti:ti + 1]
            real = (env != rows).any(axis=-1).numpy()  # nat x nnei
        n_real = real.sum(axis=1)
        k = int(n_real.max()) if nat else 0
        xyz = None
        if k > 0:
            # the net runs once per real pair (atom-major order), G is laid out nat x k for the
            # contraction; slots past an atom's count point at pair 0 and meet a zero row of R~
            pair = np.flatnonzero(real)  # indices into nat*nnei
            slot_t = paddle.to_tensor(np.tile(np.repeat(np.arange(self.ntypes), self.sel), nat)[pair])
            env2 = env.reshape([-1, 4])
            s = paddle.gather(env2[:, :1], paddle.to_tensor(pair))  # npair x 1
            centre = None
            if t_c is not None:
                c_of = paddle.to_tensor(pair // nnei)
                centre = paddle.gather(paddle.gather(t_c, ti), c_of) if per_atom else t_c[ti:ti + 1]
            g = self._embed(s, paddle.gather(t_nb, slot_t), centre)  # npair x ng
            order = np.argsort(~real, axis=1, kind="stable")[:, :k]  # real slots first
            fill = np.arange(k)[None, :] < n_real[:, None]  # nat x k
            start = np.concatenate([[0], np.cumsum(n_real)[:-1]])
            gidx = np.where(fill, start[:, None] + np.arange(k)[None, :], 0).reshape(-1)
            flat = paddle.to_tensor((order + np.arange(nat)[:, None] * nnei).reshape(-1))
            e = paddle.gather(env2, flat).reshape([nat, k, 4])
            e = e * paddle.to_tensor(fill[..., None]).astype(env.dtype)  # rows past n_real: 0
            gk = paddle.gather(g, paddle.to_tensor(gidx)).reshape([nat, k, -1])  # nat x k x ng
            xyz = paddle.matmul(gk, e, transpose_x=True)  # nat x ng x 4
        # the padded slots: npad[i, t] copies of P[type_i, t] = G(r0, e_t)^T r0
        npad = np.asarray(self.sel)[None, :] - np.add.reduceat(real, self.sec[:-1], axis=1)  # nat x ntypes
        ctypes = paddle.arange(self.ntypes, dtype="int64") if per_atom else paddle.to_tensor([int(ti)], dtype="int64")
        r0 = paddle.gather(paddle.gather(r0_all, ctypes), paddle.to_tensor(self.sec[:-1], dtype="int64"), axis=1)
        g0 = self._embed(r0[:, :, :1], t_nb, self._centre(t_c, ctypes, True))  # nc x ntypes x ng
        p = (g0.unsqueeze(-1) * r0.unsqueeze(-2)).reshape([r0.shape[0], self.ntypes, -1])  # nc x ntypes x ng*4
        w = paddle.to_tensor(npad).astype(env.dtype).unsqueeze(1)  # nat x 1 x ntypes
        if per_atom:
            tail = paddle.matmul(w, paddle.gather(p, ti))  # nat x 1 x ng*4
        else:
            tail = paddle.matmul(w.squeeze(1), p[0])  # nat x ng*4
        tail = tail.reshape([nat, -1, 4])
        xyz = tail if xyz is None else xyz + tail
        return xyz * const(xyz, 1.0 / self.nnei)

    # ---------------------------------------------------------------- serialization
    def serialize(self, arrays: dict) -> dict:
        d = super().serialize(arrays)
        d["type"] = self.serial_type
        d["type_one_side"] = self.type_one_side
        d["embeddings"]["ndim"] = 0  # one network for all types (DeePMD-kit's NetworkCollection ndim 0)
        d["type_embedding"] = self.type_embedding.serialize(arrays)
        d["concat_output_tebd"] = self.concat_output_tebd
        return d

    @classmethod
    def deserialize(cls, d: dict, arrays, ntypes: int) -> "DescrptSeATebd":
        check_class(d, "Descriptor", max_version=2)
        if d.get("type") != cls.serial_type:
            raise NotImplementedError(f"expected a serialized {cls.serial_type!r} descriptor, got {d.get('type')!r}")
        te = d["type_embedding"]
        kw = {k: d[k] for k in ("sel", "rcut", "rcut_smth", "neuron", "axis_neuron", "type_one_side", "resnet_dt",
                                "precision", "activation_function", "set_davg_zero", "concat_output_tebd",
                                "exclude_types", "trainable") if k in d}
        obj = cls(ntypes, type_map=te["type_map"], type_embedding=te["config"], **kw)
        nets = d["embeddings"]["networks"]
        if len(nets) != 1:
            raise ValueError(f"a type-embedding descriptor has one embedding net, the file has {len(nets)}")
        obj.embeddings = paddle.nn.LayerList([EmbeddingNet.deserialize(nets[0], arrays, obj.precision, obj.in_dim)])
        obj.set_trainable()
        obj.type_embedding.load(te, arrays)
        obj.set_stat(arrays(d["@variables"]["davg"]), arrays(d["@variables"]["dstd"]))
        return obj
