"""``se_a_ebd_v2`` (alias ``se_a_tpe_v2``): se_e2_a with DeePMD-kit's type embedding in its
"strip" mode (DeePMD-kit's TensorFlow backend, ``tebd_input_mode = "strip"``).

One embedding net of s alone for every pair, scaled by a second net of the type vectors::

    G_ij = N_s(s_ij) * (1 + N_t(e(t_j)))              type_one_side: true
    G_ij = N_s(s_ij) * (1 + N_t([e(t_j), e(t_i)]))    type_one_side: false

and, as in se_e2_a, ``T_i = (1/nnei) sum_j G_ij^T R~_ij``, ``D_i = T_i T_i<^T``; the fitting net
takes ``[D_i, e(t_i)]`` (one net for all types, as in the "concat" mode of ``descriptor_te``).
The type vectors have one more row than there are types, a zero vector, which is the "type" of an
empty neighbour slot (DeePMD-kit's ``padding``): an empty slot (R = 0, hence the row
``R~ = -davg/dstd`` of its block) adds ``N_s(r0) (1 + N_t(0))^T r0``, not what a neighbour of the
block's type at rcut would add. A slot is empty when its row equals that row exactly (a real
neighbour has s > 0).

Seeds as DeePMD-kit draws them: N_t from the descriptor's seed, N_s from the seed one net further.
"""
from __future__ import annotations

import numpy as np
import paddle

from ..kernels.twins import const
from . import init, options
from .descriptor_te import LAYERS, DescrptSeATebd, TypeEmbedding
from .network import EmbeddingNet

SERIAL_TYPE = "se_a_ebd_v2"
TYPES = ("se_a_ebd_v2", "se_a_tpe_v2")  # DeePMD-kit's names of this descriptor
# DeePMD-kit's type embedding when se_a_ebd_v2 comes without a type_embedding section
DEFAULT_TYPE_EMBEDDING = {"neuron": [8], "activation_function": "linear", "resnet_dt": False, "precision": "default",
                          "trainable": True, "seed": None, "use_econf_tebd": False, "use_tebd_bias": False}


class DescrptSeAStrip(DescrptSeATebd):
    """se_a_ebd_v2 (module docstring)."""

    serial_type = SERIAL_TYPE

    def __init__(self, ntypes, sel, rcut, rcut_smth, neuron, axis_neuron, type_one_side, resnet_dt, precision,
                 seed=None, activation_function="tanh", exclude_types=(), env_protection=0.0, set_davg_zero=False,
                 trainable=True, type=SERIAL_TYPE, type_embedding=None, type_map=None, concat_output_tebd=True):
        super().__init__(ntypes, sel, rcut, rcut_smth, neuron, axis_neuron, type_one_side, resnet_dt, precision,
                         seed, activation_function, exclude_types, env_protection, set_davg_zero, trainable,
                         "se_e2_a", type_embedding, type_map, True)
        seed = init.check_seed(seed)
        tdim = self.type_embedding.dim
        self.type_net = EmbeddingNet(neuron, activation_function, resnet_dt, self.precision, seed,
                                     in_dim=tdim * (1 if self.type_one_side else 2))
        self.embeddings = paddle.nn.LayerList(
            [EmbeddingNet(neuron, activation_function, resnet_dt, self.precision,
                          init.shifted(seed, init.net_seed_shift(neuron)))])
        self.skip = None
        self.in_dim = 1
        self.set_trainable()

    def set_trainable(self) -> None:
        """``trainable`` covers both nets of the descriptor (the type net N_t too)."""
        super().set_trainable()
        if hasattr(self, "type_net"):
            options.set_trainable(self.type_net, self.trainable)

    def fused_ready(self) -> bool:
        return False  # trained by autograd through the layers

    def embedding_path(self, second_order: bool, graph: bool = False) -> str:
        return LAYERS

    def forward(self, env, ti, path: str = "layers", keep: list | None = None):
        """D (nat x ng*axis_neuron) of atoms with normalised environment ``env`` (nat x nnei x 4);
        ``ti``: the centre type of all of them (int) or of each (int tensor, nat)."""
        if self.precision != "float64":
            env = env.astype(self.precision)
        xyz = self._contract_strip(env, ti)
        d = paddle.matmul(xyz, xyz[:, : self.axis_neuron, :], transpose_y=True)  # nat x ng x axis
        return d.reshape([-1, self.neuron[-1] * self.axis_neuron])

    def type_table(self, dtype):
        """N_t of every (neighbour) or every (centre, neighbour) type, the padding type last:
        (ntypes+1) x ng, or (ntypes+1)^2 x ng with row ``t_i (ntypes+1) + t_j``."""
        pad = paddle.nn.functional.pad
        tebd = pad(self.type_embedding().astype(dtype), [0, 1, 0, 0])  # the padding type: a zero row last
        if self.type_one_side:
            return self.type_net(tebd)
        p, tdim = self.ntypes + 1, self.type_embedding.dim
        nb = paddle.to_tensor(np.tile(np.arange(p), p), dtype="int64")  # row a p + b: [e_b, e_a]
        ce = paddle.to_tensor(np.repeat(np.arange(p), p), dtype="int64")
        pair = pad(paddle.gather(tebd, nb), [0, 0, 0, tdim]) + pad(paddle.gather(tebd, ce), [0, 0, tdim, 0])
        return self.type_net(pair)

    def _contract_strip(self, env, ti):
        ng, nnei, p = self.neuron[-1], self.nnei, self.ntypes + 1
        per_atom = not isinstance(ti, (int, np.integer))
        r0 = (-self.davg / self.dstd).astype(env.dtype)  # ntypes(centre) x nnei x 4: an empty slot's row
        rows = paddle.gather(r0, ti) if per_atom else r0[ti:ti + 1]
        real = (env != rows).any(axis=-1)  # nat x nnei
        slot_t = paddle.to_tensor(np.repeat(np.arange(self.ntypes), self.sel), dtype="int64").reshape([1, nnei])
        nb = paddle.where(real, slot_t + paddle.zeros_like(real, dtype="int64"),
                          paddle.full_like(real, self.ntypes, dtype="int64"))  # nat x nnei: padding type ntypes
        if not self.type_one_side:
            centre = ti.astype("int64").reshape([-1, 1]) if per_atom else int(ti)
            nb = nb + centre * p
        scale = paddle.gather(self.type_table(env.dtype), nb.reshape([-1])).reshape([-1, nnei, ng])
        g = self.embeddings[0](env[:, :, :1])  # nat x nnei x ng
        g = g + g * scale
        xyz = paddle.matmul(g, env, transpose_x=True)  # nat x ng x 4
        return xyz * const(xyz, 1.0 / nnei)  # (a tensor: a Python float is a float32 attribute in static graphs)

    # ---------------------------------------------------------------- serialization
    def serialize(self, arrays: dict) -> dict:
        d = super().serialize(arrays)  # (type: serial_type)
        d["type_net"] = self.type_net.serialize(arrays)
        return d

    @classmethod
    def deserialize(cls, d: dict, arrays, ntypes: int) -> "DescrptSeAStrip":
        """DescrptSeATebd's reading (the embedding net of s, the type embedding, the statistics,
        exclude_types, trainable), then the type net N_t."""
        obj = super().deserialize(d, arrays, ntypes)
        obj.type_net = EmbeddingNet.deserialize(d["type_net"], arrays, obj.precision, obj.type_net.in_dim)
        obj.set_trainable()
        return obj


__all__ = ["DescrptSeAStrip", "SERIAL_TYPE", "TYPES", "DEFAULT_TYPE_EMBEDDING", "TypeEmbedding"]
