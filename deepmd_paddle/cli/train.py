"""``dpp train`` and ``dpp demo``."""
from __future__ import annotations

import json
import logging
import os
import sys
import time

log = logging.getLogger("deepmd_paddle")


# --------------------------------------------------------------------------- train
def args_train(p):
    p.add_argument("input", help="input file, JSON or YAML (DeePMD-kit's keys)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-i", "--init-model", metavar="MODEL",
                   help="start from a model's weights and statistics at step 0: a checkpoint (file, prefix or "
                        "folder), a DeePMD-kit .dp/.yaml or .pb file")
    g.add_argument("-r", "--restart", metavar="CKPT", help="continue from a checkpoint (file, prefix or folder)")
    g.add_argument("-f", "--init-frz-model", metavar="MODEL", help="start from a frozen model (as --init-model)")
    g.add_argument("-t", "--finetune", metavar="MODEL",
                   help="fine-tune a pretrained model: its network and weights, its energy bias changed to the "
                        "training data (DeePMD-kit's change-by-statistic), step 0")
    p.add_argument("--use-pretrain-script", action="store_true",
                   help="use the model section of the pretrained model (always the case here: accepted for "
                        "DeePMD-kit's command lines)")
    p.add_argument("-o", "--output", default=None, metavar="OUT_JSON",
                   help="where the normalised input is written (DeePMD-kit's out.json; default OUTDIR/out.json). "
                        "A folder name here is read as --outdir (what -o meant in earlier versions), with a warning")
    p.add_argument("--outdir", default=None, metavar="OUTDIR",
                   help="folder for lcurve.out, checkpoints and out.json (default: the working folder, as DeePMD-kit)")
    p.add_argument("--skip-neighbor-stat", action="store_true",
                   help="do not scan the data for neighbour counts (sel must then be numbers, not 'auto')")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoints and lcurve.out of another run found in OUTDIR (refused otherwise)")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train data-parallel on N processes of this machine (paddle.distributed.launch; "
                        "logs of each rank in OUTDIR/log)")


_JSON_EXT = (".json", ".yaml", ".yml")


def train_paths(args) -> tuple[str, str | None]:
    """(OUTDIR, out.json path or None for OUTDIR/out.json) from -o and --outdir: ``-o`` naming a
    folder (an existing one, or a name without a .json/.yaml extension) is the old output-folder option."""
    out, outdir = args.output, args.outdir
    if out is not None and (os.path.isdir(out) or not out.lower().endswith(_JSON_EXT)):
        if outdir is not None:
            raise ValueError(f"-o/--output {out!r} is not a .json/.yaml file name; with --outdir, -o names the "
                             "normalised input file (e.g. -o out.json)")
        log.warning("-o %s: read as the output folder (--outdir %s); -o now names the normalised input file, "
                    "DeePMD-kit's out.json", out, out)
        return out, None
    return outdir or ".", out


def init_source(args):
    """The ``InitFrom`` of --init-model, --init-frz-model or --finetune (None without them)."""
    from deepmd_paddle.train.init_from import InitFrom

    for mode in ("init_model", "init_frz_model", "finetune"):
        if getattr(args, mode):
            return InitFrom(getattr(args, mode), mode.replace("_", "-"))
    return None


def check_skip_neighbor_stat(args, cfg: dict) -> None:
    if args.skip_neighbor_stat and isinstance(cfg["model"]["descriptor"].get("sel"), str) and not init_source(args):
        raise ValueError(f"--skip-neighbor-stat: model.descriptor.sel is {cfg['model']['descriptor']['sel']!r}, which "
                         "the neighbour statistics resolve; give sel as numbers, one per type, or drop the flag")


def run_train(args) -> int:
    from deepmd_paddle import config
    from deepmd_paddle.train.trainer import train

    if args.nproc is not None:
        return _launch_train(args)
    outdir, out_json = train_paths(args)
    cfg = config.load(args.input)
    check_skip_neighbor_stat(args, cfg)
    result = train(cfg, outdir, args.restart, init_source(args), args.overwrite, out_json, args.skip_neighbor_stat)
    if os.environ.get("PADDLE_TRAINER_ID", "0") == "0":  # rank 0 of a data-parallel run reports
        print(f"{'stopped' if result['interrupted'] else 'finished'} at step {result['step']}; "
              f"checkpoint {result['checkpoint']}")
    return 0


def _launch_train(args) -> int:
    from deepmd_paddle import config
    from deepmd_paddle.train.parallel import launch

    from deepmd_paddle.train import run_folder

    outdir, out_json = train_paths(args)
    tr = config.load(args.input)["training"]  # a bad input or a busy folder fails here, once, not in every worker
    run_folder.check_free(outdir, tr["save_ckpt"], tr["disp_file"] if tr["disp_training"] else None,
                          args.restart, args.overwrite)
    train_args = ["-v", args.log_level, "train", os.path.abspath(args.input), "--outdir", os.path.abspath(outdir)]
    train_args += ["--overwrite"] if args.overwrite else []
    train_args += ["--skip-neighbor-stat"] if args.skip_neighbor_stat else []
    for flag, value in (("--restart", args.restart), ("--init-model", args.init_model), ("--output", out_json),
                        ("--init-frz-model", args.init_frz_model), ("--finetune", args.finetune)):
        if value:
            train_args += [flag, os.path.abspath(value)]
    log_dir = os.path.abspath(os.path.join(outdir, "log"))
    code = launch(args.nproc, train_args, log_dir)
    if code != 0:
        print(f"dpp train: the distributed launch failed (exit code {code}); each rank's output is in "
              f"{log_dir}/workerlog.<rank>", file=sys.stderr)
    return 0 if code == 0 else 1


# --------------------------------------------------------------------------- demo
def args_demo(p):
    p.add_argument("-o", "--output", default="dpp_demo", help="folder for data, model and plots (default dpp_demo)")
    p.add_argument("--steps", type=int, help="training steps (default: the demo config's)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo in the folder")


def run_demo(args) -> int:
    from deepmd_paddle import config
    from deepmd_paddle.data.demo import demo_config, make_demo
    from deepmd_paddle.io.frozen import freeze
    from deepmd_paddle.train.trainer import train

    from .test import load_evaluator, plot_lcurve, test_model

    from deepmd_paddle.train import run_folder

    out = args.output
    run_folder.check_free(out, demo_config()["training"]["save_ckpt"], "lcurve.out", None, args.overwrite)
    t0 = time.perf_counter()
    data = make_demo(os.path.join(out, "data"))
    print(f"[1/5] data: {data['n_train']} training and {data['n_valid']} validation frames of EMT copper "
          f"in {out}/data ({time.perf_counter() - t0:.0f} s)")
    raw = demo_config()
    if args.steps is not None:
        raw["training"]["numb_steps"] = args.steps
    with open(os.path.join(out, "input.json"), "w") as f:
        json.dump(raw, f, indent=2)
    t1 = time.perf_counter()
    result = train(config.load(os.path.join(out, "input.json")), out, overwrite=args.overwrite)
    print(f"[2/5] trained {result['step']} steps in {time.perf_counter() - t1:.0f} s: {result['checkpoint']}")
    frozen = os.path.join(out, "frozen_model.pb")
    freeze(result["checkpoint"], frozen)
    print(f"[3/5] frozen: {frozen}")
    print("[4/5] test of the frozen model on the validation frames:")
    errors = test_model(load_evaluator(frozen), [data["valid"]], detail=os.path.join(out, "test", "demo"))
    plot = plot_lcurve(os.path.join(out, "lcurve.out"), os.path.join(out, "lcurve.png"))
    print(f"[5/5] learning curve: {plot}; parity plot: {out}/test/demo.parity.png; "
          f"detail files: {out}/test/demo.*.out")
    print(f"force RMSE {errors['force']['rmse']:.4f} eV/A (target < 0.05); total {time.perf_counter() - t0:.0f} s")
    return 0
