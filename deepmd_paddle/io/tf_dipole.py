"""DeePMD-kit's frozen dipole models (``model_attr/model_type`` "dipole", the Deep Wannier model
of DPLR), read without TensorFlow into a :class:`~deepmd_paddle.model.dipole.DipoleModel`.

The graph has the se_e2_a descriptor under the names ``tf_nets`` reads, the fitting nets of the
selected types ``layer_{k}_type_{t}/{matrix,bias,idt}`` and ``final_layer_type_{t}/{matrix,bias}``
(the output width is the last embedding width), ``model_attr/sel_type`` (DeePMD-kit's
``dipole_type``), ``model_attr/output_dim`` (3) and ``model_attr/tmap``. A DPLR energy graph
holds its dipole model under the scope ``dipole_charge/`` (``read_dipole_graph(g.scope(...))``).
"""
from __future__ import annotations

import numpy as np

from .tf_nets import SE_A_OPS, _activation, _net, _precision, descriptor_dict, fitting_network, fitting_nodes
from .tf_proto import Graph, GraphFileError, UnsupportedGraphError, read_graph


def read_dipole_graph(g: Graph, script: dict | None = None):
    """A ``DipoleModel`` (eval mode) from a parsed graph (or a scope of one); ``script``: the
    stored training input's ``model`` section when there is one."""
    from ..model.descriptor import DescrptSeA
    from ..model.dipole import DipoleFitting, DipoleModel
    from ..model.network import FittingNet

    script = script or {}
    model_type = g.string("model_attr/model_type")
    if model_type != "dipole":
        raise UnsupportedGraphError(f"{g.path}: a DeePMD-kit {model_type!r} model; the dipole_charge modifier needs "
                                    "a dipole model (model_attr/model_type 'dipole')")
    env = [n.op for n in g.nodes.values() if n.op.startswith(("ProdEnvMat", "Descrpt"))]
    if env != [op for op in env if op in SE_A_OPS] or len(env) != 1:
        raise UnsupportedGraphError(f"{g.path}: dipole model with descriptor operator(s) {env}; only one se_e2_a "
                                    f"({' / '.join(SE_A_OPS)}) is supported")
    if any(name.startswith("type_embed_net") for name in g.nodes):
        raise UnsupportedGraphError(f"{g.path}: a dipole model with a type embedding; not supported")
    tmap = g.string("model_attr/tmap", default="").split()
    ntypes = len(next(n for n in g.nodes.values() if n.op in SE_A_OPS).attr["sel_a"].list.i)
    type_map = tmap or list(script.get("type_map") or []) or [f"type_{i}" for i in range(ntypes)]
    sel_type = [int(t) for t in g.get("model_attr/sel_type", default=np.arange(ntypes)).reshape(-1)]
    if int(g.scalar("model_attr/output_dim", default=3)) != 3:
        raise GraphFileError(f"{g.path}: model_attr/output_dim is {g.scalar('model_attr/output_dim')}; 3 expected")
    hidden, final = fitting_nodes(g)
    if sorted(final) != sorted(sel_type):
        raise GraphFileError(f"{g.path}: dipole fitting nets (final_layer_type_<t>) for types {sorted(final)}, "
                             f"but model_attr/sel_type is {sel_type}")
    activation = _activation(g, r"layer_\d+_type_\d+/", script.get("fitting_net", {}))
    nets = []
    for t in sel_type:
        layers = _net(g, hidden.get(t, {}), f"dipole fitting net of type {t}", first=0) if t in hidden else []
        (wf, bf, _), = _net(g, {0: final[t]}, f"final layer of type {t}", first=0)
        nets.append((layers, wf, bf))
    first = nets[0][0][0][0] if nets[0][0] else nets[0][1]
    ndesc, width = int(first.shape[0]), int(nets[0][1].shape[1])
    precision = _precision(nets[0][1], "dipole fitting", g.path)
    desc = DescrptSeA.deserialize(descriptor_dict(g, script, ndesc), np.asarray, ntypes)
    if desc.neuron[-1] != width:
        raise GraphFileError(f"{g.path}: the dipole fitting's output width {width} differs from the last embedding "
                             f"width {desc.neuron[-1]}")
    neuron = [int(w.shape[1]) for w, _, _ in nets[0][0]]
    fitted = [FittingNet.deserialize(fitting_network(layers, wf, bf, activation, precision), np.asarray, precision,
                                     out_dim=width) for layers, wf, bf in nets]
    fit = DipoleFitting(ntypes, ndesc, width, neuron, any(n.resnet_dt for n in fitted), precision, sel_type,
                        activation)
    for mine, read in zip(fit.nets, fitted):  # the record (get_config) must rebuild the same nets
        if [_skips(l) for l in mine.layers] != [_skips(l) for l in read.layers]:
            raise UnsupportedGraphError(f"{g.path}: dipole fitting widths {neuron} with skip connections that "
                                        "deepmd_paddle's fitting nets do not make; not supported")
        mine.set_state_dict(read.state_dict())
    return DipoleModel(type_map, desc, fit).eval()


def _skips(layer) -> bool:
    n_in, n_out = layer.w.shape
    return bool(layer.resnet) and n_out in (n_in, 2 * n_in)


def load_dipole_pb(path: str):
    """A DeePMD-kit frozen dipole model (``dp freeze`` of a ``fitting_net`` of type dipole)."""
    import json

    g = read_graph(path)
    text = g.string("train_attr/training_script")
    try:
        script = (json.loads(text) or {}).get("model", {}) if text else {}
    except ValueError:
        script = {}
    return read_dipole_graph(g, script)
