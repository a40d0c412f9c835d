"""``dpp change-bias`` and ``dpp show``: DeePMD-kit's ``dp change-bias`` (the per-type energy
constant of a model from data or given values) and ``dp show`` (a model's attributes)."""
from __future__ import annotations

import os

SHOW_ATTRIBUTES = ("model-branch", "type-map", "descriptor", "fitting-net", "size", "observed-type",
                   "serialization-tree")


def read_model(path: str, flag: str):
    """The ``EnergyModel`` of any model file ``load_model`` reads, errors named by ``flag``."""
    from deepmd_paddle.train.init_from import InitFrom, load_source

    try:
        return load_source(InitFrom(path, "init-model"))
    except (ValueError, NotImplementedError, OSError) as e:
        raise type(e)(str(e).replace("--init-model", flag, 1)) from None


# --------------------------------------------------------------------------- change-bias
def args_change_bias(p):
    p.add_argument("INPUT", help="the model: a checkpoint (file, prefix or folder), a DeePMD-kit .dp/.yaml or .pb file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-s", "--system", default=".", help="a system, or a folder searched for systems (default: .)")
    g.add_argument("-f", "--datafile", help="a file naming one system per line")
    g.add_argument("-b", "--bias-value", type=float, nargs="+", metavar="E",
                   help="the energy bias of each type of the model's type_map, e.g. -b -93.57 -187.1")
    p.add_argument("-n", "--numb-batch", type=int, default=0,
                   help="frames of each system used for the bias, 0 = all (default)")
    p.add_argument("-m", "--mode", default="change", choices=["change", "set"],
                   help="change (default): least squares of the label-minus-prediction energies, added to the "
                        "bias; set: least squares of the label energies becomes the bias")
    p.add_argument("-o", "--output", help="the changed model (default: INPUT_updated with INPUT's extension; "
                                          ".dp for a TensorFlow .pb; a checkpoint OUT.ckpt, a .dp/.yaml or a frozen model)")
    p.add_argument("--fmt", help="dpdata format of the systems (default: DeePMD npy folders)")


def default_output(path: str) -> str:
    """DeePMD-kit's ``<input>_updated<ext>``: a frozen model (one file, whatever its extension) gives
    a frozen model; a TensorFlow .pb gives .dp (this package writes no TensorFlow graph); a
    checkpoint a checkpoint named ``<base>_updated.ckpt``."""
    from deepmd_paddle.io.frozen import frozen_prefix
    from deepmd_paddle.io.frozen_file import is_frozen_file

    stem, ext = os.path.splitext(os.path.normpath(path))
    if is_frozen_file(path):
        return stem + "_updated" + ext
    prefix = frozen_prefix(path)
    if prefix:
        return prefix + "_updated"
    if ext.lower() in (".dp", ".yaml", ".yml"):
        return stem + "_updated" + ext
    if ext.lower() == ".pb":
        return stem + "_updated.dp"
    from deepmd_paddle.io import checkpoint

    prefix = checkpoint.resolve(path).rsplit("-", 1)[0]  # <prefix>-<step>
    return (prefix[: -len(".ckpt")] if prefix.endswith(".ckpt") else prefix) + "_updated.ckpt"


def run_change_bias(args) -> int:
    import numpy as np

    from deepmd_paddle.data.system import load_system
    from deepmd_paddle.train.init_from import change_energy_bias, set_energy_constant

    from .model import convert
    from .test import test_systems

    if args.numb_batch < 0:
        raise ValueError(f"-n/--numb-batch must be 0 (all frames) or a positive number of frames, "
                         f"got {args.numb_batch}")
    model = read_model(args.INPUT, "change-bias INPUT")
    output = args.output or default_output(args.INPUT)
    old = model.out_bias.numpy() + model.fitting.bias_atom_e.numpy()
    if args.bias_value is not None:
        if len(args.bias_value) != model.ntypes:
            raise ValueError(f"-b/--bias-value: {len(args.bias_value)} values for the {model.ntypes} types of the "
                             f"model's type_map {list(model.type_map)}")
        set_energy_constant(model, args.bias_value)
    else:
        args.train_json = args.valid_json = None
        paths, _ = test_systems(args)
        systems = [load_system(p, list(model.type_map), args.fmt) for p in paths]
        change_energy_bias(model, systems, args.numb_batch, args.mode)
    new = model.out_bias.numpy() + model.fitting.bias_atom_e.numpy()
    written = convert(model, output)
    print(f"Change energy bias of {list(model.type_map)} from {np.array2string(old)} to {np.array2string(new)}.")
    print(f"Saved model to {written}")
    return 0


# --------------------------------------------------------------------------- show
def args_show(p):
    p.add_argument("INPUT", help="the model: a frozen model, a checkpoint, a DeePMD-kit .dp/.yaml or .pb file")
    p.add_argument("ATTRIBUTES", nargs="+", choices=SHOW_ATTRIBUTES, help="what to show")


def model_size(model) -> dict:
    """DeePMD-kit's parameter counts: trainable parameters of the descriptor, of the fitting net, total."""
    import numpy as np

    count = {"descriptor": 0, "fitting-net": 0}
    for name, p in model.named_parameters():
        part = "descriptor" if "descriptor" in name else "fitting-net" if "fitting" in name else None
        if part:
            count[part] += int(np.prod(p.shape))
    return {**count, "total": count["descriptor"] + count["fitting-net"]}


def run_show(args) -> int:
    model = read_model(args.INPUT, "show INPUT")
    script = model.get_config()
    if "model-branch" in args.ATTRIBUTES or "serialization-tree" in args.ATTRIBUTES:
        raise ValueError("model-branch and serialization-tree describe DeePMD-kit's multi-task models and "
                         "serialization tree; this model is a single-task se_e2_a model")
    print("This is a singletask model")
    _show_cast(args.INPUT)
    if "type-map" in args.ATTRIBUTES:
        print(f"The type_map is {list(model.type_map)}")
    if "descriptor" in args.ATTRIBUTES:
        print(f"The descriptor parameter is {script['descriptor']}")
    if "fitting-net" in args.ATTRIBUTES:
        print(f"The fitting_net parameter is {script['fitting_net']}")
    if "size" in args.ATTRIBUTES:
        size = model_size(model)
        print("Parameter counts:")
        for k in sorted(size):
            print(f"Parameters in {k}: {size[k]:,}")
    if "observed-type" in args.ATTRIBUTES:
        import numpy as np

        observed = script.get("info", {}).get("observed_type")
        if observed is None:  # DeePMD-kit's fallback: the types whose energy constant is not zero
            total = model.out_bias.numpy() + model.fitting.bias_atom_e.numpy()
            observed = sorted((t for t, b in zip(model.type_map, total) if np.abs(b) > 1e-6), key=_atomic_number)
        print("The observed types for this model: ")
        print(f"Number of observed types: {len(observed)} ")
        print(f"Observed types: {observed} ")
    return 0


def _show_cast(path: str) -> None:
    """A frozen model evaluated in another precision than it was trained in says so (and what it costs)."""
    from deepmd_paddle.io.frozen_file import open_frozen
    from deepmd_paddle.io.precision import describe

    frozen = open_frozen(path) if os.path.exists(path) else None
    prec = getattr(frozen, "meta", {}).get("precision", {})
    if "cast" in prec:
        print(f"The model was frozen with --precision {prec['descriptor']}: "
              f"{describe(prec['cast']['check'], prec['cast']['trained'], prec['descriptor'])}")


def _atomic_number(symbol: str) -> float:
    from deepmd_paddle.model.elements import element_property

    try:
        return element_property(symbol, "atomic_number")
    except (KeyError, ValueError):
        return float("inf")
