"""DeePMD-kit's frozen TensorFlow models (``dp --tf freeze``, ``.pb``), read without TensorFlow.

The file is one ``GraphDef`` (``tf_proto``). Nothing in it is executed: the reader looks up
DeePMD-kit's named constants and rebuilds the model in DeePMD-kit's backend-neutral dict
(the layout of a ``.dp`` file), which ``EnergyModel.deserialize`` reads. The names, as DeePMD-kit's
TensorFlow backend writes them (1.x ``source/train``, 2.x-3.x ``deepmd/tf``):

- descriptor: the environment-matrix operator ``ProdEnvMatA`` (2.x-3.x) or ``DescrptSeA`` (1.x),
  whose attributes give ``sel_a``, ``rcut_r``, ``rcut_r_smth`` (float32 attributes: the graph
  computes with their float32 values, and so do we); ``descrpt_attr/t_avg``, ``t_std``
  (ntypes x nnei*4), ``descrpt_attr/ntypes``, ``descrpt_attr/original_sel`` (3.x);
- embedding nets ``filter_type_{i}/{matrix,bias,idt}_{layer}_{j}`` (one per centre type i and
  neighbour type j, ``type_one_side: false``) or ``filter_type_all/..._{layer}_{j}`` (one per
  neighbour type); layers count from 1; ``idt`` exists only where the layer has a skip;
- fitting nets ``layer_{k}_type_{t}/{matrix,bias,idt}`` (k from 0) and
  ``final_layer_type_{t}/{matrix,bias}``; a hidden layer has a skip only when k >= 1 and its
  width equals the previous one (TensorFlow's rule; the dict says so per layer with ``resnet``);
  ``fitting_attr/t_bias_atom_e`` (2.2+; before, the bias sits in the final layer's bias),
  ``fitting_attr/dfparam``, ``daparam``, ``t_fparam_avg``, ``t_fparam_istd``, ``t_aparam_avg``,
  ``t_aparam_istd``;
- model: ``model_attr/tmap`` (type names, space-separated), ``model_attr/model_type``,
  ``model_attr/model_version``, ``model_attr/t_out_bias``/``t_out_std`` (3.x, also under a doubled
  ``model_attr/model_attr/`` scope); ``train_attr/training_script`` (2.0+, the training input as
  JSON), ``train_attr/min_nbor_dist`` (2.0+).

DeePMD-kit's type-embedding model (``type_embed_net``, one ``filter_type_all`` net and one fitting
net ``layer_{k}``/``final_layer`` fed with the type vector) and se_a_ebd_v2 (its "strip" mode) are
read by ``tf_tebd``. The descriptor's ``exclude_types`` and the fitting's ``atom_ener`` come from
the training input (the graph has no pair net for an excluded pair when ``type_one_side`` is false,
and the fixed energies are in ``t_bias_atom_e``). Anything else (other descriptors, spin, compressed
graphs, pair tables, model-level excluded types, other model types) is refused with an error naming
what the graph holds.
"""
from __future__ import annotations

import json
import re

import numpy as np

from . import tf_tebd
from .tf_nets import SE_A_OPS, descriptor_dict, fitting_dict, fold_out_std
from .tf_proto import Graph, GraphFileError, UnsupportedGraphError, read_graph

# environment-matrix operators of descriptors this package cannot build -> DeePMD-kit's name
OTHER_DESCRIPTOR_OPS = {
    "ProdEnvMatR": "se_e2_r", "DescrptSeR": "se_e2_r", "ProdEnvMatAMix": "se_atten (DPA-1)",
    "DescrptSeAEf": "se_a_ef", "DescrptSeAEfPara": "se_a_ef", "DescrptSeAEfVert": "se_a_ef",
    "DescrptSeAMask": "se_a_mask", "Descrpt": "loc_frame", "DescrptNorot": "a test-only descriptor",
    "ProdEnvMatANvnmdQuantize": "se_a (NVNMD)", "ProdEnvMatAMixNvnmdQuantize": "se_atten (NVNMD)",
}
COMPRESSED_OPS = ("TabulateFusion", "TabulateFusionSeA", "TabulateFusionSeAtten", "TabulateFusionSeT",
                  "TabulateFusionSeR")
# graph nodes that mark a model this package does not evaluate -> what they mean
REFUSED_NODES = {
    "spin_attr/ntypes_spin": "a spin model",
    "model_attr/t_tab_info": "a model with a pair table (use_srtab)",
}


def read_pb(path: str):
    """(DeePMD-kit's file dict, ``arrays``) for a frozen model, as ``dp_format.read_dict`` gives
    for a ``.dp`` file: ``{"model": ..., "model_def_script": ..., "@variables": {...}}``."""
    g = read_graph(path)
    script = _training_script(g)
    modifier = _modifier(g)  # DPLR: the dipole model inside, under dipole_charge/
    if modifier is not None:
        g = g.without(DPLR_SCOPE)
    elif script.get("modifier"):
        raise UnsupportedGraphError(f"{path}: the stored training input has a modifier but the graph has no "
                                    "modifier_attr/ nodes; freeze it again with DeePMD-kit")
    _refuse_kinds(g, script)
    ntypes = len(next(n for n in g.nodes.values() if n.op in SE_A_OPS).attr["sel_a"].list.i)
    tmap = g.string("model_attr/tmap", default="").split()
    type_map = tmap or list(script.get("type_map") or []) or [f"type_{i}" for i in range(ntypes)]
    if len(type_map) != ntypes:
        raise GraphFileError(f"{path}: model_attr/tmap names {len(type_map)} types, the descriptor has {ntypes}")
    # DeePMD-kit's type-embedding model: the type vector goes to the embedding net and to ONE fitting net
    tebd = tf_tebd.type_embedding_dict(g, script, type_map) if tf_tebd.is_type_embedding(g) else None
    fitting = fitting_dict(g, script, ntypes, mixed_types=tebd is not None)
    ndesc = fitting["dim_descrpt"] - (tf_tebd.tebd_dim(tebd) if tebd else 0)
    descriptor = descriptor_dict(g, script, ndesc, tebd)
    descriptor["type_map"] = fitting["type_map"] = type_map
    out_bias = g.get("model_attr/t_out_bias", "model_attr/model_attr/t_out_bias",
                     default=np.zeros([1, ntypes, 1]))
    out_std = g.get("model_attr/t_out_std", "model_attr/model_attr/t_out_std", default=np.ones([1, ntypes, 1]))
    if out_bias.size != ntypes or out_std.size != ntypes:
        raise UnsupportedGraphError(f"{path}: model out_bias/out_std of shapes {out_bias.shape}/{out_std.shape}; "
                                    "only one energy per type is supported")
    fold_out_std(fitting, out_std.reshape(ntypes))
    model = {
        "@class": "Model", "type": "standard", "@version": 2, "type_map": type_map,
        "descriptor": descriptor, "fitting": fitting, "atom_exclude_types": [], "pair_exclude_types": [],
        "rcond": None, "preset_out_bias": None,
        "@variables": {"out_bias": out_bias.reshape(1, ntypes, 1).astype("float64"),
                       "out_std": np.ones([1, ntypes, 1])},
    }
    data = {"software": "deepmd-kit (TensorFlow frozen graph)", "backend": "TensorFlow",
            "version": g.string("model_attr/model_version", default="unknown"),
            "model": model, "model_def_script": script, "@variables": {}}
    mnd = g.get("train_attr/min_nbor_dist")
    if mnd is not None:
        data["@variables"]["min_nbor_dist"] = mnd.astype("float64")
    mixed = _stored_mixed_precision(g)
    if mixed is not None:  # (as deepmd_paddle's .dp files record it)
        data["mixed_precision"] = mixed
    if modifier is not None:  # (a DipoleChargeModifier: load_pb attaches it)
        data["modifier"] = modifier
    return data, np.asarray


def load_pb(path: str):
    """A DeePMD-kit frozen TensorFlow model as an :class:`EnergyModel`."""
    from ..model import EnergyModel

    data, arrays = read_pb(path)
    try:
        model = EnergyModel.deserialize(data["model"], arrays)
    except NotImplementedError as e:
        raise UnsupportedGraphError(f"{path}: {e}") from None
    except ValueError as e:  # e.g. an activation function this package does not have
        raise GraphFileError(f"{path}: {e}") from None
    mnd = data["@variables"].get("min_nbor_dist")
    if mnd is not None:
        model.min_nbor_dist = float(np.reshape(mnd, -1)[0])
    mixed = data.get("mixed_precision")
    if mixed is not None:  # trained with training/mixed_precision: the graph's nets cast to compute_prec
        model = model.with_mixed_precision(mixed)
    if data.get("modifier") is not None:
        model.modifier = data["modifier"]
        model.set_kernels(model.kernels)
    return model


DPLR_SCOPE = "dipole_charge"


def _modifier(g: Graph):
    """DeePMD-kit's DPLR modifier of an energy graph (``modifier_attr/*``; the dipole model frozen
    under ``dipole_charge/``) as a ``DipoleChargeModifier``, or None."""
    kind = g.string("modifier_attr/type")
    if kind is None:
        return None
    if kind != DPLR_SCOPE:
        raise UnsupportedGraphError(f"{g.path}: a model with a modifier of type {kind!r}; only {DPLR_SCOPE!r} (DPLR) "
                                    "is supported")
    from ..model.dplr import DipoleChargeModifier
    from .tf_dipole import read_dipole_graph

    if not any(name.startswith(DPLR_SCOPE + "/") for name in g.nodes):
        raise GraphFileError(f"{g.path}: modifier_attr/type is {DPLR_SCOPE!r} but the graph holds no dipole model "
                             f"under {DPLR_SCOPE}/")
    charges = {k: [float(q) for q in g.string(f"modifier_attr/{k}", default="").split()]
               for k in ("mdl_charge_map", "sys_charge_map")}
    return DipoleChargeModifier(read_dipole_graph(g.scope(DPLR_SCOPE)), g.string("modifier_attr/mdl_name", default=""),
                                charges["mdl_charge_map"], charges["sys_charge_map"],
                                float(g.scalar("modifier_attr/ewald_h")), float(g.scalar("modifier_attr/ewald_beta")))


def _stored_mixed_precision(g: Graph):
    """``training/mixed_precision`` of the stored training input, or None."""
    try:
        script = json.loads(g.string("train_attr/training_script") or "{}")
    except ValueError:
        return None
    tr = script.get("training") if isinstance(script, dict) else None
    return tr.get("mixed_precision") if isinstance(tr, dict) else None


# ----------------------------------------------------------------------------- what the graph is
def _training_script(g: Graph) -> dict:
    """The ``model`` section of the stored training input ({} when the graph has none)."""
    text = g.string("train_attr/training_script")
    if not text:
        return {}
    try:
        script = json.loads(text)
    except ValueError as e:
        raise GraphFileError(f"{g.path}: train_attr/training_script is not JSON ({e})") from None
    return script.get("model", {}) if isinstance(script, dict) else {}


def _refuse_kinds(g: Graph, script: dict):
    path = g.path
    model_type = g.string("model_attr/model_type")
    if model_type is None and not g.has("o_energy"):
        raise GraphFileError(f"{path}: a TensorFlow graph without model_attr/model_type or o_energy; "
                             "not a DeePMD-kit frozen model")
    if model_type not in (None, "ener"):
        raise UnsupportedGraphError(f"{path}: a DeePMD-kit {model_type!r} model; only energy models ('ener') "
                                    "are supported")
    ops = g.op_types()
    compressed = sorted(ops & set(COMPRESSED_OPS))
    if compressed:
        raise UnsupportedGraphError(f"{path}: a compressed model (operators {compressed}); its embedding nets are "
                                    "tables: read the model before `dp compress` (and compress it here)")
    env = [n.op for n in g.nodes.values() if n.op in SE_A_OPS or n.op in OTHER_DESCRIPTOR_OPS
           or n.op.startswith(("ProdEnvMat", "Descrpt"))]
    others = sorted({op for op in env if op not in SE_A_OPS})
    if others:
        names = [f"{op} ({OTHER_DESCRIPTOR_OPS.get(op, 'unknown descriptor')})" for op in others]
        raise UnsupportedGraphError(f"{path}: descriptor operator(s) {', '.join(names)}; only se_e2_a "
                                    f"({' / '.join(SE_A_OPS)}) is supported")
    if len(env) != 1:
        what = "no descriptor operator" if not env else f"{len(env)} descriptor operators (a hybrid descriptor?)"
        raise UnsupportedGraphError(f"{path}: {what}; only one se_e2_a descriptor ({' / '.join(SE_A_OPS)}) "
                                    "is supported")
    for name, what in REFUSED_NODES.items():
        if g.has(name):
            raise UnsupportedGraphError(f"{path}: {what} (node {name!r}); not supported")
    if not tf_tebd.is_type_embedding(g) and any(re.fullmatch(r"filter_type_all/(matrix|bias|idt)_\d+", name)
                                                 for name in g.nodes):
        raise UnsupportedGraphError(f"{path}: one embedding net for all neighbour types (filter_type_all without a "
                                    "neighbour type) but no type_embed_net; not supported")
    desc, fit = script.get("descriptor", {}), script.get("fitting_net", {})
    checks = [
        (script.get("type", "standard") not in ("standard",), f"model type {script.get('type')!r}"),
        (desc.get("type", "se_e2_a") not in ("se_e2_a", "se_a", "se_a_ebd_v2", "se_a_tpe_v2"),
         f"descriptor type {desc.get('type')!r}"),
        (bool(script.get("spin")), "a spin model"), (bool(script.get("use_srtab")), "a pair table (use_srtab)"),
        (bool(script.get("pair_exclude_types")), "model.pair_exclude_types"),
        (bool(script.get("atom_exclude_types")), "model.atom_exclude_types"),
        (fit.get("type", "ener") != "ener", f"fitting_net type {fit.get('type')!r}"),
        (bool(fit.get("layer_name")), "fitting_net.layer_name"),
        (bool(fit.get("tot_ener_zero")), "fitting_net.tot_ener_zero"),
    ]
    found = [what for bad, what in checks if bad]
    if found:
        raise UnsupportedGraphError(f"{path}: the stored training input has {'; '.join(found)}; not supported")
