"""``dpp freeze``, ``dpp compress`` and ``dpp convert``: model files in, model files out."""
from __future__ import annotations

import argparse
import os


# --------------------------------------------------------------------------- freeze
def args_freeze(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``dpp freeze`` (DeePMD-kit's ``dp freeze -c ... -o ...``)."""
    parser.add_argument("-c", "--checkpoint-folder", "--checkpoint", dest="checkpoint", default=".",
                        help="checkpoint folder (with a `checkpoint` pointer file), checkpoint file, or a "
                             "DeePMD-kit .dp/.yaml model (default: .)")
    parser.add_argument("-o", "--output", default="frozen_model",
                        help="output prefix: writes PREFIX.json, PREFIX.pdiparams, PREFIX.meta, ... "
                             "(default: frozen_model)")
    parser.add_argument("--portable", action="store_true",
                        help="export the plain-Paddle graph: loads without the C++ operator, slower")
    return parser


def run_freeze(args: argparse.Namespace) -> int:
    from ..io.frozen import freeze

    meta = freeze(args.checkpoint, args.output, portable=args.portable)
    prefix = args.output[: -len(".json")] if args.output.endswith(".json") else args.output
    kind = "portable plain-Paddle" if args.portable else "C++-operator"
    print(f"froze {args.checkpoint} -> {prefix}.json ({kind} graph; type_map {meta['type_map']}, "
          f"rcut {meta['rcut']}, sel {meta['sel']})")
    return 0


# --------------------------------------------------------------------------- compress
def min_nbor_dist_from_input(path: str, rcut: float, type_map: list) -> float:
    """The smallest pair distance over the training systems of a training input file."""
    from .. import config
    from ..data.stats import neighbor_stat
    from ..data.system import load_system

    cfg = config.load(path)
    data = cfg["training"]["training_data"]
    systems = [load_system(p, type_map, data.get("fmt")) for p in data["systems"]]
    return neighbor_stat(systems, rcut, type_map)[0]


# ----------------------------------------------------------------------------- CLI
def args_compress(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("-i", "--input", required=True,
                   help="the model: a checkpoint (file, prefix or folder) or a DeePMD-kit .dp/.yaml/.pb file")
    p.add_argument("-o", "--output", default="frozen_model_compressed",
                   help="a frozen-model prefix (default: frozen_model_compressed), or OUT.ckpt for a checkpoint "
                        "to fine-tune with `dpp train --init-model OUT.ckpt`, or OUT.dp")
    p.add_argument("-s", "--step", "--stride", dest="stride", type=float, default=0.01,
                   help="table stride in s = R~[0] (default 0.01); 10x beyond the data's range")
    p.add_argument("-e", "--extrapolate", type=float, default=5.0,
                   help="the coarse table reaches this factor times the largest s of the data (default 5)")
    p.add_argument("--order", type=int, default=5, help="5: DP Compress (default); 3: Hermite")
    p.add_argument("-t", "--training-script", help="training input: scan its systems for the smallest pair "
                                                    "distance when the model stores none")
    p.add_argument("--min-nbor-dist", type=float, help="the smallest pair distance to tabulate from, A")
    return p


def run_compress(args: argparse.Namespace) -> int:
    from ..io.frozen import freeze, frozen_prefix
    from ..io.load import load_model
    from ..model.tabulate import check_args, compress_model

    check_args(args.stride, args.extrapolate, args.order)
    if frozen_prefix(args.input):
        raise ValueError(f"compress: {args.input} is a frozen model; compression needs the trainable model it came "
                         "from (a checkpoint or a DeePMD-kit .dp/.yaml file)")
    model = load_model(args.input)
    mnd = args.min_nbor_dist
    if mnd is None and args.training_script:
        mnd = min_nbor_dist_from_input(args.training_script, model.descriptor.rcut, model.type_map)
    compress_model(model, args.stride, args.extrapolate, args.order, mnd)
    out = args.output
    ext = os.path.splitext(out)[1].lower()
    if ext == ".ckpt":
        from ..io import checkpoint

        written = checkpoint.save(out, 0, model, None, {"model": model.get_config()}, state={}) + ".safetensors"
    elif ext in (".dp", ".yaml", ".yml"):
        raise ValueError("compress: DeePMD-kit's .dp format has no tables; write a frozen model or OUT.ckpt")
    else:
        freeze(model, out)
        written = out + ".json"
    spec = model.descriptor.tabulation.spec
    print(f"compressed {args.input} -> {written} (order {spec['order']}, stride {spec['stride']}, "
          f"extrapolate {spec['extrapolate']}, {spec['nint']} intervals per net; tables valid for pair distances "
          f">= {spec['r_table']:.4f} A, data minimum {spec['min_nbor_dist']:.4f} A)")
    return 0


# --------------------------------------------------------------------------- convert
def convert(source: str, output: str) -> str:
    """Convert ``source`` to ``output``; returns what was written."""
    from ..io.dp_format import save_dp
    from ..io.frozen import freeze
    from ..io.load import load_model

    model = load_model(source)
    ext = os.path.splitext(output)[1].lower()
    if ext in (".dp", ".yaml", ".yml"):
        save_dp(model, output)
        return output
    if ext == ".ckpt":
        from ..io import checkpoint

        config = {"model": model.get_config()}
        return checkpoint.save(output, 0, model, None, config, state={}) + ".safetensors"
    freeze(model, output)
    return output + ".json"


def args_convert(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("input", help="a DeePMD-kit .dp/.yaml/.pb model or one of our checkpoints")
    parser.add_argument("output", help="OUT.dp / OUT.yaml (DeePMD-kit), OUT.ckpt (our checkpoint) "
                                       "or a prefix for a frozen model")
    return parser


def run_convert(args: argparse.Namespace) -> int:
    print(f"wrote {convert(args.input, args.output)}")
    return 0
