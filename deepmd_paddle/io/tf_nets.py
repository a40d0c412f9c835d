"""The se_e2_a descriptor and the energy fitting of a DeePMD-kit TensorFlow graph, as the
serialized dicts of DeePMD-kit's backend-neutral format (``tf_graph`` lists the node names).

Everything comes from the graph: widths from the weight shapes, ``resnet_dt`` from the ``idt``
constants, ``type_one_side`` from the net names, ``sel``/``rcut``/``rcut_smth`` from the
environment-matrix operator, ``axis_neuron`` from the fitting input width. The stored training
input (when the graph has one) gives only the activation function and ``set_davg_zero``; a graph
without it (DeePMD-kit 1.x) has its activation read from the operators inside the nets.
"""
from __future__ import annotations

import re

import numpy as np

from .tf_proto import Graph, GraphFileError, UnsupportedGraphError

SE_A_OPS = ("ProdEnvMatA", "DescrptSeA")  # 2.x-3.x, 1.x
_EMB_PAIR = re.compile(r"filter_type_(\d+)/(matrix|bias|idt)_(\d+)_(\d+)")  # centre, kind, layer, neighbour
_EMB_ONE = re.compile(r"filter_type_all/(matrix|bias|idt)_(\d+)_(\d+)")  # kind, layer, neighbour
_FIT_HIDDEN = re.compile(r"layer_(\d+)_type_(\d+)/(matrix|bias|idt)")  # layer, type, kind
_FIT_FINAL = re.compile(r"final_layer_type_(\d+)/(matrix|bias)")  # type, kind
_FIT_SHARED = re.compile(r"(layer_\d+|final_layer)/(matrix|bias|idt)|share_.+/(matrix|bias|idt)")
_ACTIVATION_OPS = {"Tanh": "tanh", "Relu": "relu", "Relu6": "relu6", "Softplus": "softplus", "Sigmoid": "sigmoid"}


def descriptor_dict(g: Graph, script: dict, dim_descrpt: int, tebd: dict | None = None) -> dict:
    """DeePMD-kit's serialized se_e2_a descriptor; ``dim_descrpt``: the fitting's input width
    from the descriptor (ng * axis_neuron). ``tebd``: the serialized type embedding of a
    type-embedding graph (``tf_tebd``), whose one embedding net takes [s, e(t_j) (, e(t_i))]."""
    cfg = script.get("descriptor", {})
    op = next(n for n in g.nodes.values() if n.op in SE_A_OPS)
    sel = [int(i) for i in op.attr["sel_a"].list.i]
    if any(op.attr["sel_r"].list.i):
        raise UnsupportedGraphError(f"{g.path}: {op.op} with radial-only neighbours (sel_r "
                                    f"{list(op.attr['sel_r'].list.i)}); only se_e2_a is supported")
    # float32 attributes: the operator computes with these values (6.0 and 0.5 are exact; 5.8 is not)
    rcut, rcut_smth = float(op.attr["rcut_r"].f), float(op.attr["rcut_r_smth"].f)
    ntypes, nnei = len(sel), sum(sel)
    if int(g.scalar("descrpt_attr/ntypes", default=ntypes)) != ntypes:
        raise GraphFileError(f"{g.path}: descrpt_attr/ntypes is {g.scalar('descrpt_attr/ntypes')} but {op.op} "
                             f"selects neighbours of {ntypes} types ({sel})")
    original = g.get("descrpt_attr/original_sel")
    if original is not None and [int(s) for s in original.reshape(-1)] != sel:
        raise UnsupportedGraphError(f"{g.path}: sel was changed after training (original_sel "
                                    f"{original.reshape(-1).tolist()}, sel {sel}); not supported")
    davg, dstd = g.const("descrpt_attr/t_avg"), g.const("descrpt_attr/t_std")
    for name, a in (("t_avg", davg), ("t_std", dstd)):
        if a.size != ntypes * nnei * 4:
            raise GraphFileError(f"{g.path}: descrpt_attr/{name} has {a.size} values; {ntypes} types x {nnei} "
                                 "neighbours x 4 expected")
    strip = None
    exclude = [list(p) for p in cfg.get("exclude_types") or []]
    if tebd is None:
        nets, type_one_side = _embedding_weights(g, ntypes, {(a, b) for a, b in exclude} | {(b, a) for a, b in exclude})
    else:  # (one net for all pairs; with a type embedding DeePMD-kit masks the excluded rows either way)
        from .tf_tebd import embedding_weights
        nets, type_one_side, strip = embedding_weights(g, tebd)
    activation = _activation(g, r"filter_type_", cfg)
    precision = _precision(nets[0][0][0], "embedding", g.path)
    neuron = [int(w.shape[1]) for w, _, _ in nets[0]]
    in_dim = int(nets[0][0][0].shape[0])
    resnet_dt = any(idt is not None for net in nets for _, _, idt in net)
    if dim_descrpt % neuron[-1]:
        raise GraphFileError(f"{g.path}: the fitting input width {dim_descrpt} is not a multiple of the last "
                             f"embedding width {neuron[-1]}")
    networks = [{"@class": "EmbeddingNetwork", "@version": 2, "in_dim": in_dim, "neuron": neuron,
                 "activation_function": activation, "resnet_dt": resnet_dt, "bias": True, "precision": precision,
                 "layers": [_layer(w, b, idt, activation, True, precision) for w, b, idt in net]} for net in nets]
    out = {
        "@class": "Descriptor", "type": "se_e2_a", "@version": 2, "rcut": rcut, "rcut_smth": rcut_smth,
        "sel": sel, "neuron": neuron, "axis_neuron": dim_descrpt // neuron[-1], "resnet_dt": resnet_dt,
        "trainable": True, "type_one_side": type_one_side, "exclude_types": exclude, "env_protection": 0.0,
        "set_davg_zero": bool(cfg.get("set_davg_zero", False)), "activation_function": activation,
        "precision": precision,
        "embeddings": {"@class": "NetworkCollection", "@version": 1, "ndim": 1 if type_one_side else 2,
                       "ntypes": ntypes, "network_type": "embedding_network", "networks": networks},
        "env_mat": {"rcut": rcut, "rcut_smth": rcut_smth, "protection": 0.0, "use_exp_switch": False},
        "@variables": {"davg": davg.reshape(ntypes, nnei, 4).astype("float64"),
                       "dstd": dstd.reshape(ntypes, nnei, 4).astype("float64")},
    }
    if tebd is not None:  # deepmd_paddle's serialized type-embedding descriptors (model/descriptor_te.py, _strip.py)
        from .tf_tebd import descriptor_fields
        out.update(descriptor_fields(tebd, strip, activation, precision))
        out["embeddings"]["ndim"] = 0
    return out


def _embedding_weights(g: Graph, ntypes: int, excluded: set = frozenset()):
    """[net][layer] = (w, b, idt or None), nets in DeePMD-kit's collection order (neighbour type
    t; or centre ti, neighbour tj at ti + tj * ntypes), and type_one_side. A pair net of an
    excluded (centre, neighbour) pair is not in the graph: it gets zero weights (its rows of R~
    are zero, so it is never used), as DeePMD-kit's own conversion does."""
    found: dict = {}
    for name in g.nodes:
        m = _EMB_PAIR.fullmatch(name)
        if m:
            found.setdefault(("pair", int(m[1]), int(m[4])), {}).setdefault(int(m[3]), {})[m[2]] = name
            continue
        m = _EMB_ONE.fullmatch(name)
        if m:
            found.setdefault(("one", 0, int(m[3])), {}).setdefault(int(m[2]), {})[m[1]] = name
    kinds = {k[0] for k in found}
    if not kinds:
        raise GraphFileError(f"{g.path}: no embedding-net weights (filter_type_*/matrix_*); not an se_e2_a graph")
    if len(kinds) > 1:
        raise UnsupportedGraphError(f"{g.path}: both per-pair (filter_type_<i>) and per-type (filter_type_all) "
                                    "embedding nets; not supported")
    one_side = kinds == {"one"}
    keys = ([("one", 0, t) for t in range(ntypes)] if one_side
            else [("pair", ti, tj) for tj in range(ntypes) for ti in range(ntypes)])
    missing = [k[1:] if not one_side else k[2] for k in keys
               if k not in found and (one_side or (k[1], k[2]) not in excluded)]
    extra = sorted(set(found) - set(keys))
    if missing or extra:
        what = "neighbour types" if one_side else "(centre, neighbour) type pairs"
        raise UnsupportedGraphError(f"{g.path}: embedding nets missing for {what} {missing}"
                                    f"{f' and present for {[k[1:] for k in extra]}' if extra else ''} "
                                    "(descriptor.exclude_types, or a graph of another descriptor)")
    nets = [_net(g, found[k], f"filter_type_{'all' if one_side else k[1]} net {k[2]}", first=1) if k in found
            else None for k in keys]
    if all(net is None for net in nets):
        raise UnsupportedGraphError(f"{g.path}: every type pair is excluded (no embedding net); not supported")
    model_net = next(net for net in nets if net is not None)
    nets = [net if net is not None else [tuple(None if a is None else np.zeros_like(a) for a in layer)
                                         for layer in model_net] for net in nets]
    shapes = {tuple(w.shape for w, _, _ in net) for net in nets}
    if len(shapes) != 1 or nets[0][0][0].shape[0] != 1:
        raise GraphFileError(f"{g.path}: embedding nets of different or unexpected shapes {sorted(shapes)}")
    return nets, one_side


def _net(g: Graph, layers: dict, what: str, first: int) -> list:
    """[(w, b, idt or None)] of layers numbered first, first + 1, ... (each needs matrix and bias)."""
    numbers = sorted(layers)
    if numbers != list(range(first, first + len(numbers))):
        raise GraphFileError(f"{g.path}: {what} has layers {numbers}; {first}..{first + len(numbers) - 1} expected")
    out = []
    for i in numbers:
        parts = layers[i]
        if "matrix" not in parts or "bias" not in parts:
            raise GraphFileError(f"{g.path}: {what} layer {i} lacks its {'matrix' if 'matrix' not in parts else 'bias'}")
        w = g.const(parts["matrix"])
        if w.ndim != 2 or (out and out[-1][0].shape[1] != w.shape[0]):
            raise GraphFileError(f"{g.path}: {what} layer {i} has a weight of shape {list(w.shape)} that does not "
                                 "follow the previous layer")
        idt = g.const(parts["idt"]) if "idt" in parts else None
        out.append((w, g.const(parts["bias"]), idt))
    return out


def fitting_dict(g: Graph, script: dict, ntypes: int, mixed_types: bool = False) -> dict:
    """DeePMD-kit's serialized energy fitting: one net per type, or (``mixed_types``, a
    type-embedding graph) one net for all types, ``layer_{k}/...`` and ``final_layer/...``."""
    cfg = script.get("fitting_net", {})
    shared = sorted(n for n in g.nodes if _FIT_SHARED.fullmatch(n))
    if shared and not mixed_types:
        raise UnsupportedGraphError(f"{g.path}: a fitting net shared by all types ({shared[0]}, ...: a shared-layer "
                                    "model); not supported")
    hidden, final = fitting_nodes(g, mixed_types)
    nnets = 1 if mixed_types else ntypes
    if mixed_types and any(_FIT_HIDDEN.fullmatch(n) or _FIT_FINAL.fullmatch(n) for n in g.nodes):
        raise UnsupportedGraphError(f"{g.path}: a type-embedding graph with per-type fitting nets; not supported")
    if sorted(final) != list(range(nnets)):
        if mixed_types:
            raise GraphFileError(f"{g.path}: a type-embedding graph without its shared fitting net (final_layer)")
        raise UnsupportedGraphError(f"{g.path}: energy fitting nets (final_layer_type_<t>) found for types "
                                    f"{sorted(final)}; one per type 0..{ntypes - 1} expected")
    nfp = int(g.scalar("fitting_attr/dfparam", default=0))
    nap = int(g.scalar("fitting_attr/daparam", default=0))
    nap_in = 0 if cfg.get("use_aparam_as_mask") else nap
    activation = _activation(g, r"layer_\d+(_type_\d+)?/", cfg)
    nets = []
    for t in range(nnets):
        layers = _net(g, hidden.get(t, {}), f"fitting net of type {t}", first=0) if t in hidden else []
        (wf, bf, _), = _net(g, {0: final[t]}, f"final layer of type {t}", first=0)
        nets.append((layers, wf, bf))
    in_dim = int((nets[0][0][0][0] if nets[0][0] else nets[0][1]).shape[0])
    neuron = [int(w.shape[1]) for w, _, _ in nets[0][0]]
    precision = _precision(nets[0][1], "fitting", g.path)
    networks = []
    for t, (layers, wf, bf) in enumerate(nets):
        if [int(w.shape[1]) for w, _, _ in layers] != neuron or int((layers[0][0] if layers else wf).shape[0]) != in_dim:
            raise GraphFileError(f"{g.path}: the fitting nets of the types have different shapes")
        if wf.shape != (neuron[-1] if neuron else in_dim, 1):
            raise UnsupportedGraphError(f"{g.path}: final layer of type {t} has shape {list(wf.shape)}; one energy "
                                        "per atom expected")
        networks.append(fitting_network(layers, wf, bf, activation, precision))
    bias = g.get("fitting_attr/t_bias_atom_e", default=np.zeros(ntypes))  # before 2.2: inside the final bias
    if bias.size != ntypes:
        raise UnsupportedGraphError(f"{g.path}: fitting_attr/t_bias_atom_e of shape {list(bias.shape)}")
    variables = {"bias_atom_e": bias.reshape(ntypes, 1).astype("float64"), "case_embd": None}
    for kind, n in (("fparam", nfp), ("aparam", nap_in)):
        variables[f"{kind}_avg"] = g.const(f"fitting_attr/t_{kind}_avg").reshape(-1) if n else None
        variables[f"{kind}_inv_std"] = g.const(f"fitting_attr/t_{kind}_istd").reshape(-1) if n else None
    return {
        "@class": "Fitting", "type": "ener", "@version": 4, "var_name": "energy", "ntypes": ntypes,
        "dim_descrpt": in_dim - nfp - nap_in, "mixed_types": mixed_types, "dim_out": 1, "neuron": neuron,
        "resnet_dt": any(n["resnet_dt"] for n in networks), "numb_fparam": nfp, "numb_aparam": nap,
        "dim_case_embd": 0, "default_fparam": None, "rcond": None, "tot_ener_zero": False,
        "trainable": [True] * (len(neuron) + 1), "atom_ener": list(cfg.get("atom_ener") or []),
        "activation_function": activation,
        "precision": precision, "layer_name": None, "use_aparam_as_mask": bool(cfg.get("use_aparam_as_mask")),
        "spin": None, "exclude_types": [],
        "nets": {"@class": "NetworkCollection", "@version": 1, "ndim": 0 if mixed_types else 1, "ntypes": ntypes,
                 "network_type": "fitting_network", "networks": networks},
        "@variables": variables,
    }


def fitting_nodes(g: Graph, mixed_types: bool = False) -> tuple[dict, dict]:
    """The fitting nets' node names: ({type: {layer: {kind: name}}}, {type: {kind: name}}) of
    ``layer_{k}_type_{t}/...`` and ``final_layer_type_{t}/...`` (with ``mixed_types`` also the shared
    ``layer_{k}/...``, ``final_layer/...`` as type 0)."""
    hidden: dict = {}
    final: dict = {}
    for name in g.nodes:
        m = _FIT_HIDDEN.fullmatch(name) or (mixed_types and re.fullmatch(r"layer_(\d+)()/(matrix|bias|idt)", name))
        if m:
            hidden.setdefault(int(m[2] or 0), {}).setdefault(int(m[1]), {})[m[3]] = name
        m = _FIT_FINAL.fullmatch(name) or (mixed_types and re.fullmatch(r"final_layer()/(matrix|bias)", name))
        if m:
            final.setdefault(int(m[1] or 0), {})[m[2]] = name
    return hidden, final


def fitting_network(layers: list, wf, bf, activation: str, precision: str) -> dict:
    """DeePMD-kit's serialized fitting net from the graph's hidden layers [(w, b, idt)] and final
    layer (its width: one energy, or a tensor fitting's rotation width), TensorFlow's skip rule."""
    dicts = []
    for k, (w, b, idt) in enumerate(layers):
        skip = k >= 1 and w.shape[0] == w.shape[1]  # TensorFlow's rule (no skip on doubled widths)
        dicts.append(_layer(w, b, idt if skip else None, activation, skip, precision))
    dicts.append(_layer(wf, bf, None, "none", False, precision))
    return {"@class": "FittingNetwork", "@version": 1, "in_dim": int((layers[0][0] if layers else wf).shape[0]),
            "out_dim": int(wf.shape[1]), "neuron": [int(w.shape[1]) for w, _, _ in layers],
            "activation_function": activation, "precision": precision,
            "resnet_dt": any(l["@variables"]["idt"] is not None for l in dicts), "bias_out": True, "layers": dicts}


def fold_out_std(fitting: dict, std: np.ndarray):
    """DeePMD-kit 3.x TensorFlow scales E_i = (fit + bias_atom_e) * out_std[type] + out_bias[type];
    the backend-neutral model adds out_bias only, so a scale other than 1 goes into the final
    layer and the bias (exact up to rounding)."""
    if np.all(std == 1.0):
        return
    if fitting["mixed_types"] and np.ptp(std) != 0:
        raise UnsupportedGraphError(f"model_attr/t_out_std differs between types ({std.tolist()}) in a model with one "
                                    "fitting net for all types; not supported")
    variables = fitting["@variables"]
    variables["bias_atom_e"] = variables["bias_atom_e"] * std.reshape(-1, 1)
    for t, net in enumerate(fitting["nets"]["networks"]):
        last = net["layers"][-1]["@variables"]
        last["w"], last["b"] = last["w"] * std[t], last["b"] * std[t]


def _activation(g: Graph, scope: str, section: dict) -> str:
    """The section's activation_function, or (graphs without a training input) the activation
    operator the graph runs inside ``scope``."""
    if section.get("activation_function"):
        return section["activation_function"]
    found = {_ACTIVATION_OPS[n.op] for name, n in g.nodes.items()
             if n.op in _ACTIVATION_OPS and re.match(scope, name)}
    if len(found) != 1:
        raise UnsupportedGraphError(f"{g.path}: cannot tell the activation function of {scope!r} from the graph "
                                    f"(operators found: {sorted(found) or 'none of ' + str(sorted(_ACTIVATION_OPS))})")
    return found.pop()


def _precision(w: np.ndarray, what: str, path: str) -> str:
    if w.dtype.name not in ("float64", "float32"):
        raise UnsupportedGraphError(f"{path}: {what} weights of type {w.dtype.name}; float64 or float32 expected")
    return w.dtype.name


def _layer(w, b, idt, activation, resnet, precision) -> dict:
    return {"@class": "Layer", "@version": 2, "bias": True, "use_timestep": idt is not None,
            "activation_function": activation, "resnet": resnet, "precision": precision, "trainable": True,
            "@variables": {"w": w, "b": b.reshape(-1), "idt": None if idt is None else idt.reshape(-1)}}
