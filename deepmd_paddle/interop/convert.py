"""``dpp convert IN OUT``: move a model between our formats and DeePMD-kit's.

IN: a DeePMD-kit ``.dp``/``.yaml`` file, a DeePMD-kit frozen TensorFlow ``.pb`` (read without
TensorFlow) or one of our training checkpoints.
OUT, by its name: ``*.dp``/``*.yaml`` -> DeePMD-kit's backend-neutral file (DeePMD-kit loads it;
``tools/check_dp_export.py`` checks the numbers); ``*.ckpt`` -> our checkpoint
``<OUT>-0.safetensors`` + ``.json`` (weights only, step 0); anything else -> a frozen model
with prefix OUT (``OUT.json`` + ``OUT.pdiparams`` + meta, as ``dpp freeze`` writes).
"""
from __future__ import annotations

import argparse
import os


def convert(source: str, output: str) -> str:
    """Convert ``source`` to ``output``; returns what was written."""
    from ..export import freeze, load_model
    from .dp_format import save_dp

    model = load_model(source)
    ext = os.path.splitext(output)[1].lower()
    if ext in (".dp", ".yaml", ".yml"):
        save_dp(model, output)
        return output
    if ext == ".ckpt":
        from ..train import checkpoint

        config = {"model": model.get_config()}
        return checkpoint.save(output, 0, model, None, config, state={}) + ".safetensors"
    freeze(model, output)
    return output + ".json"


def add_convert_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("input", help="a DeePMD-kit .dp/.yaml/.pb model or one of our checkpoints")
    parser.add_argument("output", help="OUT.dp / OUT.yaml (DeePMD-kit), OUT.ckpt (our checkpoint) "
                                       "or a prefix for a frozen model")
    return parser


def convert_main(args: argparse.Namespace) -> int:
    print(f"wrote {convert(args.input, args.output)}")
    return 0
