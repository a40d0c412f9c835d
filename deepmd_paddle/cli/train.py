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
    g.add_argument("-r", "--restart", metavar="CKPT", help="continue from a checkpoint (file, base or folder)")
    g.add_argument("-i", "--init-model", metavar="CKPT", help="start from a checkpoint's weights, step 0")
    p.add_argument("-o", "--output", default=".", metavar="OUTDIR", help="folder for lcurve.out and checkpoints")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoints and lcurve.out of another run found in OUTDIR (refused otherwise)")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train data-parallel on N processes of this machine (paddle.distributed.launch; "
                        "logs of each rank in OUTDIR/log)")


def run_train(args) -> int:
    from deepmd_paddle import config
    from deepmd_paddle.train.trainer import train

    if args.nproc is not None:
        return _launch_train(args)
    result = train(config.load(args.input), args.output, args.restart, args.init_model, args.overwrite)
    if os.environ.get("PADDLE_TRAINER_ID", "0") == "0":  # rank 0 of a data-parallel run reports
        print(f"{'stopped' if result['interrupted'] else 'finished'} at step {result['step']}; "
              f"checkpoint {result['checkpoint']}")
    return 0


def _launch_train(args) -> int:
    from deepmd_paddle import config
    from deepmd_paddle.train.parallel import launch

    from deepmd_paddle.train import run_folder

    tr = config.load(args.input)["training"]  # a bad input or a busy folder fails here, once, not in every worker
    run_folder.check_free(args.output, tr["save_ckpt"], tr["disp_file"] if tr["disp_training"] else None,
                          args.restart, args.overwrite)
    train_args = ["-v", args.log_level, "train", os.path.abspath(args.input), "-o", os.path.abspath(args.output)]
    train_args += ["--overwrite"] if args.overwrite else []
    for flag, value in (("--restart", args.restart), ("--init-model", args.init_model)):
        if value:
            train_args += [flag, os.path.abspath(value)]
    log_dir = os.path.abspath(os.path.join(args.output, "log"))
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
    frozen = os.path.join(out, "frozen_model")
    freeze(result["checkpoint"], frozen)
    print(f"[3/5] frozen: {frozen}.json")
    print("[4/5] test of the frozen model on the validation frames:")
    errors = test_model(load_evaluator(frozen), [data["valid"]], detail=os.path.join(out, "test", "demo"))
    plot = plot_lcurve(os.path.join(out, "lcurve.out"), os.path.join(out, "lcurve.png"))
    print(f"[5/5] learning curve: {plot}; parity plot: {out}/test/demo.parity.png; "
          f"detail files: {out}/test/demo.*.out")
    print(f"force RMSE {errors['force']['rmse']:.4f} eV/A (target < 0.05); total {time.perf_counter() - t0:.0f} s")
    return 0
