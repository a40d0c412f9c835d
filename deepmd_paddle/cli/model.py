"""``dpp freeze``, ``dpp compress`` and ``dpp convert``: model files in, model files out."""
from __future__ import annotations

import argparse
import os


# --------------------------------------------------------------------------- freeze
FROZEN_HELP = ("one file at exactly this path (a deepmd_paddle frozen model, recognised by its content "
               "whatever its name; the .pb of DeePMD-kit's default name does not make it a TensorFlow graph)")


def args_freeze(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``dpp freeze`` (DeePMD-kit's ``dp freeze -c ... -o ...``)."""
    from ..io.frozen import DEFAULT_OUTPUT

    parser.add_argument("-c", "--checkpoint-folder", "--checkpoint", dest="checkpoint", default=".",
                        help="checkpoint folder (with a `checkpoint` pointer file), checkpoint file, or a "
                             "DeePMD-kit .dp/.yaml/.pb model (default: .)")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                        help=f"the frozen model: {FROZEN_HELP} (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--portable", action="store_true",
                        help="export the plain-Paddle graph: loads without the C++ operator, slower")
    parser.add_argument("--precision", choices=("float64", "float32"),
                        help="evaluate the nets in this precision whatever they were trained in (default: the "
                             "model's own): the weights are cast once, and the difference from the model as trained "
                             "on one frame is logged and recorded in the file (`dpp show MODEL descriptor`)")
    return parser


def run_freeze(args: argparse.Namespace) -> int:
    from ..io.frozen import freeze

    meta = freeze(args.checkpoint, args.output, portable=args.portable, precision=args.precision)
    kind = "portable plain-Paddle" if args.portable else "C++-operator"
    prec = meta["precision"]
    nets = prec["descriptor"] if prec.get("fitting", prec["descriptor"]) == prec["descriptor"] else \
        f"{prec['descriptor']} (descriptor), {prec['fitting']} (fitting)"
    print(f"froze {args.checkpoint} -> {args.output} ({kind} graph; type_map {meta['type_map']}, "
          f"rcut {meta['rcut']}, sel {meta['sel']}; nets in {nets})")
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
COMPRESS_INPUT, COMPRESS_OUTPUT = "frozen_model.pb", "frozen_model_compressed.pb"  # DeePMD-kit's names


def args_compress(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """DeePMD-kit's ``dp compress`` flags (-i -o -s -e -f -c -t) and ours (--order, --min-nbor-dist)."""
    p.add_argument("-i", "--input", default=COMPRESS_INPUT,
                   help="the model: a frozen model (`dpp freeze`), a checkpoint (file, prefix or folder) or a "
                        f"DeePMD-kit .dp/.yaml/.pb file (default: {COMPRESS_INPUT})")
    p.add_argument("-o", "--output", default=COMPRESS_OUTPUT,
                   help=f"the compressed frozen model, {FROZEN_HELP} (default: {COMPRESS_OUTPUT}); or OUT.ckpt "
                        "for a checkpoint to fine-tune with `dpp train --init-model OUT.ckpt`")
    p.add_argument("-s", "--step", "--stride", dest="stride", type=float, default=0.01,
                   help="table stride in s = R~[0] (default 0.01); 10x beyond the data's range")
    p.add_argument("-e", "--extrapolate", type=float, default=5.0,
                   help="the coarse table reaches this factor times the largest s of the data (default 5)")
    p.add_argument("-f", "--frequency", type=int, default=-1,
                   help="DeePMD-kit's table-overflow check frequency; accepted for its command lines, no effect "
                        "here: deepmd_paddle checks on every evaluation (a warning names pairs closer than the "
                        "tables reach)")
    p.add_argument("-c", "--checkpoint-folder", default="model-compression",
                   help="accepted for DeePMD-kit's command lines, unused: compressing here writes no checkpoint")
    p.add_argument("--order", type=int, default=5, help="5: DP Compress (default); 3: Hermite")
    p.add_argument("-t", "--training-script", help="training input: scan its systems for the smallest pair "
                                                    "distance when the model stores none")
    p.add_argument("--min-nbor-dist", type=float, help="the smallest pair distance to tabulate from, A (overrides "
                                                       "the one the model stores)")
    return p


def run_compress(args: argparse.Namespace) -> int:
    import logging

    from ..io.load import load_model
    from ..model.tabulate import check_args, compress_model
    from ..utils.files import check_writable

    check_args(args.stride, args.extrapolate, args.order)
    out = args.output
    ext = os.path.splitext(out)[1].lower()
    if ext in (".dp", ".yaml", ".yml"):  # refused before any work
        raise ValueError(f"compress: {out}: a compressed model is not written as DeePMD-kit .dp/.yaml here (DeePMD-kit "
                         "3.2 stores its own table layout there, which deepmd_paddle does not write); give a frozen "
                         f"model name (default {COMPRESS_OUTPUT}) or OUT.ckpt")
    check_writable(out, "compress")
    model = load_model(args.input)
    mnd = args.min_nbor_dist
    if mnd is None and getattr(model, "min_nbor_dist", None) is None and args.training_script:
        mnd = min_nbor_dist_from_input(args.training_script, model.descriptor.rcut, model.type_map)
    elif mnd is None and args.training_script:
        logging.getLogger(__name__).info("compress: %s stores min_nbor_dist %.6f A; -t not scanned", args.input,
                                         model.min_nbor_dist)
    compress_model(model, args.stride, args.extrapolate, args.order, mnd)
    if ext == ".ckpt":
        from ..io import checkpoint

        written = checkpoint.save(out, 0, model, None, {"model": model.get_config()}, state={}) + ".safetensors"
    else:
        from ..io.frozen import freeze

        freeze(model, out)
        written = out
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
        if getattr(model.descriptor, "tabulation", None) is not None:
            raise ValueError(f"convert: {source} is a compressed model; DeePMD-kit .dp/.yaml files of compressed "
                             "models (DeePMD-kit 3.2's own table layout) are not written by deepmd_paddle: convert "
                             "the model it was compressed from")
        save_dp(model, output)
        return output
    if ext == ".ckpt":
        from ..io import checkpoint

        config = {"model": model.get_config()}
        return checkpoint.save(output, 0, model, None, config, state={}) + ".safetensors"
    freeze(model, output)
    return output


def args_convert(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("input", help="a DeePMD-kit .dp/.yaml/.pb model, one of our checkpoints or frozen models")
    parser.add_argument("output", help="OUT.dp / OUT.yaml (DeePMD-kit), OUT.ckpt (our checkpoint) "
                                       "or any other name: a frozen model, one file at exactly that path")
    return parser


def run_convert(args: argparse.Namespace) -> int:
    print(f"wrote {convert(args.input, args.output)}")
    return 0
