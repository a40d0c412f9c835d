"""``dpp``: the command line. Each subcommand is one row of ``COMMANDS``: (help, add_args, run);
the commands live beside this file (train, test, devi, bias, model) or in their stage (the LAMMPS
plugin). DeePMD-kit's flags and defaults (``dp``'s, deepmd/main.py of DeePMD-kit 3.2):

    dpp train input.json [-r CKPT | -i MODEL | -f FROZEN | -t PRETRAINED] [-o out.json] [--outdir DIR]
              [--skip-neighbor-stat] [--overwrite] [--nproc N]
    dpp freeze [-c CKPT] [-o frozen_model.pb]
    dpp test [-m frozen_model] [-s . | -f DATAFILE] [-n N] [-d DETAIL] [-a] [--shuffle-test] [-r SEED]
    dpp model-devi -m M1 M2 ... [-s .] [-o model_devi.out] [-f FREQ] [--relative L] [--relative_v L]
                   [--atomic] [--real_error]
    dpp neighbor-stat [-s .] -r RCUT [-t TYPE ...] [--mixed-type]
    dpp change-bias MODEL [-s . | -f DATAFILE | -b E ...] [-n N] [-m change|set] [-o OUT]
    dpp show MODEL type-map descriptor fitting-net size observed-type
    dpp plot lcurve.out -o lcurve.png
    dpp demo [-o DIR]
    dpp compress [-i frozen_model.pb] [-o frozen_model_compressed.pb] [-s 0.01] [-e 5] [--order 5|3] [-t INPUT]
    dpp convert IN OUT
    dpp lammps-plugin --build [-o DIR] [--env]
    dpp doc-train-input [--out-type rst|json|json_schema]

``-v LEVEL`` and ``-l LOGFILE`` go before or after the command.

Errors in the user's input (config, data, model files: ValueError and OSError) print one line
and exit with code 1; ``-v DEBUG`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import bias, devi, model, test, train
from .test import load_evaluator, test_model  # noqa: F401  (the Python API of dpp test)


def _args_doc_train_input(p):
    from ..config.doc import OUT_TYPES

    p.add_argument("--out-type", default="rst", choices=OUT_TYPES, help="the output type (default: rst)")


def _run_doc_train_input(args) -> int:
    from ..config.doc import render

    print(render(args.out_type))
    return 0


def _args_lammps_plugin(p):
    from ..lammps.build import add_args

    add_args(p)


def _run_lammps_plugin(args):
    from ..lammps.build import main

    return main(args)


COMMANDS = {
    "train": ("train a model from an input file", train.args_train, train.run_train),
    "freeze": ("export a checkpoint to a static model", model.args_freeze, model.run_freeze),
    "test": ("errors of a model on labelled systems", test.args_test, test.run_test),
    "neighbor-stat": ("largest neighbour counts and smallest distance in the data", test.args_neighbor_stat,
                      test.run_neighbor_stat),
    "plot": ("plot lcurve.out to a PNG", test.args_plot, test.run_plot),
    "demo": ("make EMT copper data, train, freeze, test and plot, end to end", train.args_demo, train.run_demo),
    "convert": ("convert between DeePMD-kit .dp/.yaml (and from .pb), checkpoints and frozen models", model.args_convert,
                model.run_convert),
    "model-devi": ("model deviation of several models on a system (DeePMD-kit's model_devi.out)",
                   devi.args_model_devi, devi.run_model_devi),
    "compress": ("tabulate the embedding nets (DP Compress): a faster model for inference", model.args_compress,
                 model.run_compress),
    "lammps-plugin": ("build the LAMMPS pair style deepmd, print its path (--env: the LAMMPS_PLUGIN_PATH line)",
                      _args_lammps_plugin, _run_lammps_plugin),
    "change-bias": ("change a model's per-type energy bias from data or given values (DeePMD-kit's change-bias)",
                    bias.args_change_bias, bias.run_change_bias),
    "show": ("show a model's type map, descriptor, fitting net, size or observed types", bias.args_show,
             bias.run_show),
    "doc-train-input": ("print the documentation of the training input's keys (dargs: rst, json, json_schema)",
                        _args_doc_train_input, _run_doc_train_input),
}


LOG_LEVELS = {"DEBUG": "DEBUG", "3": "DEBUG", "INFO": "INFO", "2": "INFO", "WARNING": "WARNING", "1": "WARNING",
              "ERROR": "ERROR", "0": "ERROR"}  # DeePMD-kit's names and numbers


def _log_args(p, default):
    """-v/--log-level and -l/--log-path: before the command, or after it as DeePMD-kit writes them."""
    p.add_argument("-v", "--log-level", default=default, choices=list(LOG_LEVELS),
                   help="DEBUG (3), INFO (2), WARNING (1) or ERROR (0)")
    p.add_argument("-l", "--log-path", default=default, help="also write the log to this file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpp", description="DeepPot-SE (se_e2_a) on PaddlePaddle")
    _log_args(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        _log_args(p, argparse.SUPPRESS)  # given after the command, it wins over the one before
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.log_level = LOG_LEVELS[args.log_level or "INFO"]
    # force: importing Paddle put its own handler on the root logger (its lines would show instead)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s", force=True)
    try:
        if args.log_path:
            handler = logging.FileHandler(args.log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logging.getLogger().addHandler(handler)
        return args.run(args)
    except (ValueError, NotImplementedError, OSError) as e:  # bad input: config, data, model files
        if args.log_level == "DEBUG":
            raise
        print(f"dpp {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dpp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

