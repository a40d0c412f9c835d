"""The ``model`` section of the input: DeePMD-kit 3.2's keys for an energy model with a descriptor
of the se_e2_a family (``se_e2_a``/``se_a``, ``se_a_ebd_v2``/``se_a_tpe_v2``) and an ``ener``
fitting net, with DeePMD-kit's defaults.

Every key DeePMD-kit accepts there is declared here; which of them deepmd_paddle builds is decided
by ``unsupported.py`` (a key not built yet is accepted at its default only). Other descriptor,
fitting and model types are refused by name before the schema is applied (``DEEPMD_TYPES``).
"""
from __future__ import annotations

from dargs import Argument, Variant

# DeePMD-kit 3.2's precision and activation names (values are checked in unsupported.py)
PRECISIONS = ("default", "float16", "bfloat16", "float32", "float64")
ACTIVATIONS = ("relu", "relu6", "softplus", "sigmoid", "tanh", "gelu", "gelu_tf", "silu", "silut", "none",
               "linear")

# the type names DeePMD-kit 3.2 knows in each section, besides the ones the schema below declares:
# a known name outside our schema is refused as "not supported", an unknown one as a typo
DEEPMD_TYPES = {
    "model": ("dpa4", "DPA4", "SeZM", "sezm", "frozen", "pairtab", "linear_ener", "pairwise_dprc"),
    "model/descriptor": ("loc_frame", "dpa4c", "DPA4C", "dpa4", "DPA4", "SeZM", "sezm", "se_e3", "se_at", "se_a_3be",
                         "se_t", "se_a_tpe", "se_a_ebd", "se_e2_r", "se_r", "hybrid", "se_atten", "dpa1", "se_e3_tebd",
                         "se_atten_v2", "dpa2", "dpa3", "se_a_mask"),
    "model/fitting_net": ("dpa4_ener", "sezm_ener", "dos", "property", "polar", "dipole", "population"),
    "loss": ("dens", "ener_spin", "dos", "population", "property", "tensor"),
    "optimizer": ("AdamW", "LKF", "AdaMuon", "HybridMuon"),
}


def opt(name: str, dtype, default=None, doc: str = "", **kw) -> Argument:
    """An optional key with a default (``default=...`` only; use ``Argument`` for keys without)."""
    return Argument(name, dtype, optional=True, default=default, doc=doc, **kw)


def nodefault(name: str, dtype, doc: str = "", **kw) -> Argument:
    """An optional key that is absent unless given."""
    return Argument(name, dtype, optional=True, doc=doc, **kw)


def _precision(doc_net: str) -> Argument:
    return opt("precision", str, "default", f"Floating-point type of the {doc_net} weights: "
               f"{', '.join(PRECISIONS)}. 'default' is float64.")


def _activation(doc_net: str) -> Argument:
    return opt("activation_function", str, "tanh", f"Activation of the {doc_net} hidden layers: "
               f"{', '.join(ACTIVATIONS)} ('gelu' and 'gelu_tf' are both the tanh approximation, as in DeePMD-kit 3.2; "
               "'none'/'linear' is the identity).")


def type_embedding_fields() -> list[Argument]:
    """DeePMD-kit's learned type embedding: a net from the one-hot type to a type vector."""
    return [
        opt("neuron", list[int], [8], "Widths of the type embedding net; the last is the vector's length."),
        _activation("type embedding net"),
        opt("resnet_dt", bool, False, "Scale the skip connections by a trained vector."),
        _precision("type embedding net"),
        opt("trainable", bool, True, "Whether the type embedding net is trained."),
        opt("seed", [int, None], None, "Seed of the weight initialisation."),
        opt("use_econf_tebd", bool, False, "Start from the electronic configuration of each element."),
        opt("use_tebd_bias", bool, False, "A bias in the type embedding layer."),
    ]


def type_embedding_arg(optional_default) -> Argument:
    """``type_embedding``: element properties (true or a list of names, deepmd_paddle's own) or
    DeePMD-kit's learned section (a dict); see deepmd_paddle.model.descriptor_te."""
    return Argument("type_embedding", [bool, list[str], dict, None], type_embedding_fields(), optional=True,
                    default=optional_default,
                    doc="One embedding net for all types, fed with [R~[0], type vector of the neighbour (and of the "
                        "centre when type_one_side is false)]. true: element properties (atomic_number, mass, "
                        "covalent_radius, electronegativity, valence_electrons); a list: those properties; a dict: "
                        "a learned type vector (DeePMD-kit's type_embedding section).")


def se_e2_a_fields() -> list[Argument]:
    return [
        opt("sel", [list[int], str], "auto", "Neighbour slots per type, or 'auto' / 'auto:factor' (largest count "
            "in the training data times factor (1.1 by default), rounded up to a multiple of 4)."),
        opt("rcut", float, 6.0, "Cut-off radius, Angstrom."),
        opt("rcut_smth", float, 0.5, "Where the switching function starts, Angstrom."),
        opt("neuron", list[int], [10, 20, 40], "Embedding net widths; a skip connection joins two layers when the "
            "width stays or doubles."),
        opt("axis_neuron", int, 4, "Columns of G kept in the descriptor's second factor.", alias=["n_axis_neuron"]),
        _activation("embedding net"),
        opt("resnet_dt", bool, False, "Scale the skip connections by a trained vector."),
        opt("type_one_side", bool, False, "One embedding net per neighbour type (true) or per (centre, neighbour) "
            "type pair (false)."),
        _precision("embedding net"),
        opt("trainable", bool, True, "Whether the embedding nets are trained."),
        opt("seed", [int, None], None, "Seed of the weight initialisation (default: from training/seed)."),
        opt("exclude_types", list[list[int]], [], "Type pairs [i, j] (either order) that do not see each other: "
            "every neighbour slot of type j of a type-i centre, padding included, has R~ = 0 (DeePMD-kit's "
            "TensorFlow definition)."),
        opt("env_protection", float, 0.0, "Guard against division by zero in the environment matrix."),
        opt("set_davg_zero", bool, False, "Keep the environment matrix average at zero (use with atom_ener)."),
        type_embedding_arg(False),
    ]


def descriptor_args() -> Argument:
    choices = [
        Argument("se_e2_a", dict, se_e2_a_fields(), alias=["se_a"],
                 doc="DeepPot-SE: the embedding of the full relative coordinates."),
        Argument("se_a_ebd_v2", dict, se_e2_a_fields(), alias=["se_a_tpe_v2"],
                 doc="se_e2_a with DeePMD-kit's model-level type embedding (TensorFlow backend)."),
    ]
    return Argument("descriptor", dict, [], [Variant("type", choices, doc="The descriptor type.")],
                    doc="The descriptor of the atomic environment.")


def fitting_args() -> Argument:
    ener = Argument("ener", dict, [
        opt("numb_fparam", int, 0, "Length of the frame parameter (fparam.npy) fed to the fitting net."),
        opt("numb_aparam", int, 0, "Length of the atomic parameter (aparam.npy) fed to the fitting net."),
        opt("default_fparam", [list[float], None], None, "Frame parameter used where a system has no fparam.npy."),
        opt("dim_case_embd", int, 0, "Length of the case embedding (multi-task models)."),
        opt("neuron", list[int], [120, 120, 120], "Fitting net widths.", alias=["n_neuron"]),
        _activation("fitting net"),
        _precision("fitting net"),
        opt("resnet_dt", bool, True, "Scale the skip connections by a trained vector."),
        opt("trainable", [list[bool], bool], True, "Whether the fitting net is trained: one flag, or one per layer "
            "(len(neuron) + 1)."),
        opt("rcond", [float, None], None, "rcond of the least-squares solve for the per-type energy bias."),
        opt("seed", [int, None], None, "Seed of the weight initialisation (default: from training/seed)."),
        opt("atom_ener", list[float | None], [], "Energy of an isolated atom of each type (null: not fixed): "
            "E_i = N(D_i) - N(0) + that energy."),
        nodefault("layer_name", list[str], "Names of the layers; layers of equal names share weights."),
        opt("use_aparam_as_mask", bool, False, "Use aparam as a real/virtual atom mask, not as a fitting input."),
    ], doc="Fit the potential energy as a sum of atomic energies.")
    return Argument("fitting_net", dict, [], [Variant("type", [ener], optional=True, default_tag="ener",
                                                       doc="The fitting type.")],
                    doc="The fitting net.")


def _compress_args() -> Argument:
    tables = Argument("se_e2_a", dict, [
        Argument("model_file", str, doc="The model to compress."),
        Argument("table_config", list[float], doc="extrapolate, stride, second stride, check frequency."),
        Argument("min_nbor_dist", float, doc="Smallest neighbour distance of the data."),
    ], alias=["se_a"])
    return nodefault("compress", dict, "DeePMD-kit's record of a compressed TensorFlow model (use `dpp compress`).",
                     sub_variants=[Variant("type", [tables], optional=True, default_tag="se_e2_a")])


def _modifier_args() -> Argument:
    dipole_charge = Argument("dipole_charge", dict, [
        Argument("model_name", str, doc="The frozen dipole (Wannier centroid) model."),
        Argument("model_charge_map", list[float], doc="Charge of each Wannier centroid type."),
        Argument("sys_charge_map", list[float], doc="Charge of each atom type."),
        opt("ewald_beta", float, 0.4, "Ewald splitting parameter, 1/Angstrom."),
        opt("ewald_h", float, 1.0, "Ewald grid spacing, Angstrom."),
        nodefault("dipole_model", dict, "deepmd_paddle's record of the dipole model's architecture (its weights go "
                  "with the model's): written by `dpp train` when it reads model_name; leave it out."),
    ])
    return nodefault("modifier", dict, "A correction to the model's output (DPLR).",
                     sub_variants=[Variant("type", [dipole_charge])])


def _spin_args() -> Argument:
    return nodefault("spin", dict, "Magnetic (spin) models.", sub_fields=[
        Argument("use_spin", [list[bool], list[int], list[str]], doc="The types that carry a spin."),
        nodefault("spin_norm", list[float], "Magnitude of the spin of each spin type."),
        nodefault("virtual_len", list[float], "Distance of the virtual spin atom of each spin type."),
        nodefault("virtual_scale", [list[float], float], "Virtual distance per unit spin."),
        opt("scheme", str, "deepspin", "Spin scheme: deepspin or native."),
        opt("allow_missing_label", bool, False, "Systems without spin data get zero spins."),
    ])


def model_args() -> Argument:
    standard = Argument("standard", dict, [
        descriptor_args(),
        fitting_args(),
        opt("model_branch_alias", list[str], [], "Other names of this branch (multi-task models)."),
        opt("info", dict, {}, "Free metadata stored with the model."),
        opt("bridging_method", str, "None", "Short-range bridging to a ZBL potential ('None': off)."),
        opt("bridging_r_inner", float, 0.5, "Inner radius of the bridging, Angstrom."),
        opt("bridging_r_outer", float, 0.8, "Outer radius of the bridging, Angstrom."),
    ], doc="A descriptor and a fitting net.")
    return Argument("model", dict, [
        nodefault("type_map", list[str], "Element names; type i of the model is type_map[i]. Left out, the types are "
                  "the indices of type.raw, and the names come from the systems' type_map.raw files."),
        opt("data_stat_nbatch", int, 10, "Batches per system used for the descriptor statistics and energy bias."),
        opt("data_stat_protect", float, 1e-2, "Lower bound of the descriptor standard deviations."),
        opt("data_bias_nsample", int, 10, "Samples per system used to change the energy bias (fine-tuning)."),
        nodefault("use_srtab", str, "A table of short-range pair energies added to the model."),
        nodefault("smin_alpha", float, "Softmin decay of the nearest-neighbour distance (with use_srtab)."),
        nodefault("sw_rmin", float, "Where the switch from the table to the model starts (with use_srtab)."),
        nodefault("sw_rmax", float, "Where the switch from the table to the model ends (with use_srtab)."),
        opt("pair_exclude_types", list, [], "Type pairs that are not neighbours of each other."),
        opt("atom_exclude_types", list, [], "Types whose atomic energies are left out."),
        opt("preset_out_bias", [dict[str, list[float | list[float] | None]], None], None,
            "Preset output bias of each type (null: from the data)."),
        opt("srtab_add_bias", bool, True, "Add the energy bias to the tabulated short-range energies."),
        type_embedding_arg(None),  # DeePMD-kit's model-level section; moved into the descriptor
        _modifier_args(),
        _compress_args(),
        _spin_args(),
        nodefault("finetune_head", str, "The branch of a multi-task model to fine-tune from."),
    ], [Variant("type", [standard], optional=True, default_tag="standard", doc="The model type.")],
        doc="The model: type map, descriptor, fitting net and statistics.")
