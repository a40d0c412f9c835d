"""DeePMD-kit's TensorFlow type-embedding model (se_e2_a + the model-level ``type_embedding``
section), read from its frozen graph without TensorFlow (``tf_graph`` is the entry point).

The graph holds (DeePMD-kit 2.x-3.x, ``tebd_input_mode`` "concat"):

- ``type_embed_net/{matrix,bias,idt}_{k}`` (k from 1): the type-embedding net applied to the
  one-hot types, ``e(t) = N_type(onehot(t))``; biases only with ``use_tebd_bias``, ``idt`` with
  ``resnet_dt``; skip connections where a width stays or doubles (input width: ntypes);
- ``filter_type_all/{matrix,bias,idt}_{k}``: ONE embedding net whose input is
  ``[s_ij, e(t_j)]`` (``type_one_side``) or ``[s_ij, e(t_j), e(t_i)]``, hence its first
  weight has 1 + tdim or 1 + 2 tdim rows;
- ``layer_{k}/{matrix,bias,idt}`` and ``final_layer/{matrix,bias}``: ONE fitting net whose input
  is ``[D_i, e(t_i)]`` (and the frame/atom parameters after them).

``se_a_ebd_v2`` (``tebd_input_mode`` "strip") has instead ``filter_type_all/..._{k}`` taking s
alone and ``filter_type_all/..._{k}_one_side_ebd`` (input e(t_j)) or ``..._{k}_two_side_ebd``
(input [e(t_j), e(t_i)]), the net that scales it: G = N_s(s) (1 + N_t(...)).

They become deepmd_paddle's serialized descriptors (``model/descriptor_te.py`` with
``concat_output_tebd``, ``model/descriptor_strip.py``) and a ``mixed_types`` fitting.
"""
from __future__ import annotations

import re

import numpy as np

from .tf_proto import Graph, GraphFileError, UnsupportedGraphError

_TYPE_NET = re.compile(r"type_embed_net/(matrix|bias|idt)_(\d+)")  # kind, layer
_FILTER = re.compile(r"filter_type_all/(matrix|bias|idt)_(\d+)")  # kind, layer
_STRIP = {side: re.compile(rf"filter_type_all/(matrix|bias|idt)_(\d+)_{side}_side_ebd") for side in ("one", "two")}


def is_type_embedding(g: Graph) -> bool:
    return g.has("type_embed_net/matrix_1")


def _layers(g: Graph, pattern: re.Pattern, what: str) -> list:
    """[(w, b or None, idt or None)] of the layers named by ``pattern`` (kind, layer from 1)."""
    found: dict = {}
    for name in g.nodes:
        m = pattern.fullmatch(name)
        if m:
            found.setdefault(int(m[2]), {})[m[1]] = name
    numbers = sorted(found)
    if not numbers or numbers != list(range(1, len(numbers) + 1)):
        raise GraphFileError(f"{g.path}: {what} has layers {numbers}; 1..n expected")
    out = []
    for i in numbers:
        parts = found[i]
        if "matrix" not in parts:
            raise GraphFileError(f"{g.path}: {what} layer {i} lacks its matrix")
        w = g.const(parts["matrix"])
        if w.ndim != 2 or (out and out[-1][0].shape[1] != w.shape[0]):
            raise GraphFileError(f"{g.path}: {what} layer {i} has a weight of shape {list(w.shape)} that does not "
                                 "follow the previous layer")
        out.append((w, g.const(parts["bias"]) if "bias" in parts else None,
                    g.const(parts["idt"]) if "idt" in parts else None))
    if len({b is None for _, b, _ in out}) != 1:
        raise GraphFileError(f"{g.path}: {what} has biases in some layers only")
    return out


def type_embedding_dict(g: Graph, script: dict, type_map: list) -> dict:
    """The serialized ``TypeEmbedding`` (learned) of the graph's ``type_embed_net``."""
    ntypes = len(type_map)
    cfg = script.get("type_embedding") or {}
    if cfg.get("use_econf_tebd"):
        raise UnsupportedGraphError(f"{g.path}: type_embedding.use_econf_tebd (electronic configurations as the "
                                    "type net's input); not supported")
    layers = _layers(g, _TYPE_NET, "type_embed_net")
    if layers[0][0].shape[0] != ntypes:
        raise GraphFileError(f"{g.path}: type_embed_net takes {layers[0][0].shape[0]} inputs; the model has "
                             f"{ntypes} types (one-hot input expected)")
    precision = layers[0][0].dtype.name
    # without a section, se_a_ebd_v2 builds its type net with no activation (DeePMD-kit's default net)
    default = "linear" if not cfg and (script.get("descriptor") or {}).get("type") in ("se_a_ebd_v2", "se_a_tpe_v2") \
        else "tanh"
    activation = cfg.get("activation_function") or default
    bias = layers[0][1] is not None
    resnet_dt = any(idt is not None for _, _, idt in layers)
    neuron = [int(w.shape[1]) for w, _, _ in layers]
    net = {"@class": "EmbeddingNetwork", "@version": 2, "in_dim": ntypes, "neuron": neuron,
           "activation_function": activation, "resnet_dt": resnet_dt, "bias": bias, "precision": precision,
           "layers": [layer(w, b, idt, activation, precision) for w, b, idt in layers]}
    config = {"neuron": neuron, "activation_function": activation, "resnet_dt": resnet_dt, "precision": precision,
              "trainable": bool(cfg.get("trainable", True)), "seed": cfg.get("seed"), "use_econf_tebd": False,
              "use_tebd_bias": bias}
    return {"@class": "TypeEmbedding", "@version": 1, "kind": "learned", "config": config, "properties": [],
            "type_map": list(type_map), "net": net}


def tebd_dim(tebd: dict) -> int:
    return int(tebd["config"]["neuron"][-1])


def embedding_weights(g: Graph, tebd: dict):
    """([the one embedding net's layers], type_one_side, the strip mode's type net's layers or None)."""
    layers = _layers(g, _FILTER, "filter_type_all (the embedding net)")
    if layers[0][1] is None:
        raise GraphFileError(f"{g.path}: the embedding net filter_type_all has no biases")
    rows, tdim = int(layers[0][0].shape[0]), tebd_dim(tebd)
    sides = [side for side, pattern in _STRIP.items() if any(pattern.fullmatch(n) for n in g.nodes)]
    if sides:
        if len(sides) > 1 or rows != 1:
            raise GraphFileError(f"{g.path}: se_a_ebd_v2 graph with {sides} side type nets and an embedding net "
                                 f"of {rows} inputs; one of them and 1 input expected")
        strip = _layers(g, _STRIP[sides[0]], f"filter_type_all ({sides[0]}-side type net)")
        want = tdim * (1 if sides[0] == "one" else 2)
        if strip[0][0].shape[0] != want:
            raise GraphFileError(f"{g.path}: the {sides[0]}-side type net takes {strip[0][0].shape[0]} inputs; "
                                 f"{want} expected with a type vector of {tdim}")
        return [layers], sides[0] == "one", strip
    if rows not in (1 + tdim, 1 + 2 * tdim):
        raise UnsupportedGraphError(f"{g.path}: the embedding net takes {rows} inputs; 1 + {tdim} (type_one_side) or "
                                    f"1 + 2 x {tdim} expected with a type vector of {tdim}")
    return [layers], rows == 1 + tdim, None


def descriptor_fields(tebd: dict, strip, activation: str, precision: str) -> dict:
    """What a type-embedding graph adds to the serialized se_e2_a descriptor."""
    from ..model.descriptor_strip import SERIAL_TYPE as STRIP
    from ..model.descriptor_te import SERIAL_TYPE as CONCAT

    out = {"type": CONCAT if strip is None else STRIP, "type_embedding": tebd, "concat_output_tebd": True}
    if strip is not None:
        neuron = [int(w.shape[1]) for w, _, _ in strip]
        out["type_net"] = {"@class": "EmbeddingNetwork", "@version": 2, "in_dim": int(strip[0][0].shape[0]),
                           "neuron": neuron, "activation_function": activation,
                           "resnet_dt": any(idt is not None for _, _, idt in strip), "bias": True,
                           "precision": precision,
                           "layers": [layer(w, b, idt, activation, precision) for w, b, idt in strip]}
    return out


def layer(w, b, idt, activation, precision) -> dict:
    """A serialized layer of an embedding-type net (skip connections where widths allow)."""
    return {"@class": "Layer", "@version": 2, "bias": b is not None, "use_timestep": idt is not None,
            "activation_function": activation, "resnet": True, "precision": precision, "trainable": True,
            "@variables": {"w": w, "b": None if b is None else np.asarray(b).reshape(-1),
                           "idt": None if idt is None else np.asarray(idt).reshape(-1)}}
