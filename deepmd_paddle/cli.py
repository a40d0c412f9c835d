"""``dpp``: the command line. Each subcommand is one row of ``COMMANDS``: (help, add_args, run).

    dpp train input.json [--restart CKPT | --init-model CKPT] [-o OUTDIR] [--overwrite] [--nproc N]
    dpp freeze -c CKPT -o PREFIX            (deepmd_paddle.export)
    dpp test -m MODEL -s SYSTEM [-n N] [-d DETAIL_PREFIX]
    dpp neighbor-stat -s SYSTEM -r RCUT -t TYPE [TYPE ...]
    dpp plot lcurve.out -o lcurve.png
    dpp demo [-o DIR]
    dpp compress -i MODEL -o OUT [-s 0.01] [-e 5] [--order 5|3] [-t INPUT]   (deepmd_paddle.compress)
    dpp lammps-plugin --build [-o DIR]       (deepmd_paddle.lammps)

Errors in the user's input (config, data, model files: ValueError and OSError) print one line
and exit with code 1; ``-v DEBUG`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

log = logging.getLogger("deepmd_paddle")


# --------------------------------------------------------------------------- train
def _args_train(p):
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


def _run_train(args) -> int:
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


# --------------------------------------------------------------------------- freeze
def _args_freeze(p):
    from deepmd_paddle.export import add_freeze_args

    add_freeze_args(p)


def _run_freeze(args) -> int:
    from deepmd_paddle.export import freeze_main

    return freeze_main(args)


# --------------------------------------------------------------------------- test
def load_evaluator(path: str):
    """What ``dpp test`` evaluates: ``deepmd_paddle.infer.load_evaluator`` (a checkpoint, a frozen
    model or a DeePMD-kit .dp file behind DeePMD-kit's ``DeepPot`` interface)."""
    from deepmd_paddle.infer import load_evaluator as hook

    return hook(path)


def _args_test(p):
    p.add_argument("-m", "--model", required=True,
                   help="a checkpoint (file, prefix or folder), a frozen model or a DeePMD-kit .dp file")
    p.add_argument("-s", "--system", required=True, help="a system, a folder of systems, or a glob")
    p.add_argument("-n", "--numb-test", type=int, default=0, help="frames per system, 0 = all (default)")
    p.add_argument("-d", "--detail-file", metavar="PREFIX",
                   help="write PREFIX.e.out, .e_peratom.out, .f.out, .v.out, .v_peratom.out and PREFIX.parity.png")
    p.add_argument("--fmt", help="dpdata format of the systems (default: DeePMD npy folders)")


def test_model(evaluator, systems: list[str], numb_test: int = 0, detail: str | None = None, fmt=None) -> dict:
    """Errors of ``evaluator`` on ``systems`` (energy and virial per atom); prints a table per
    system and, for several systems, over all of them. Returns {label: {"rmse", "mae"}}."""
    import numpy as np

    from deepmd_paddle.data.system import load_system
    from deepmd_paddle.utils.reports import detail_tables, write_detail

    type_map = evaluator.get_type_map()
    pooled = {}  # label -> [(reference, prediction)], energy and virial divided by natoms
    tables = {}  # detail file suffix -> [(header, table)], written when every system has been evaluated
    for path in systems:
        s = load_system(path, type_map, fmt)
        n = s.nframes if numb_test <= 0 else min(numb_test, s.nframes)
        e, f, v = evaluator.eval(s.coord[:n], None if s.box is None else s.box[:n], s.atype)
        pred = {"energy": np.reshape(e, (n,)), "force": np.reshape(f, (n, -1, 3)), "virial": np.reshape(v, (n, 9))}
        pairs = {k: (s.labels[k][:n], p) for k, p in pred.items() if s.found[k][:n].all()}
        if detail:
            detail_tables(tables, path, s.natoms, pairs)
        scaled = {k: (r / (1 if k == "force" else s.natoms), p / (1 if k == "force" else s.natoms))
                  for k, (r, p) in pairs.items()}
        for k, pair in scaled.items():
            pooled.setdefault(k, []).append(pair)
        _print_table(f"{path} ({n} frames, {s.natoms} atoms)", {k: p - r for k, (r, p) in scaled.items()})
    diffs = {k: np.concatenate([np.ravel(p - r) for r, p in v]) for k, v in pooled.items()}
    if len(systems) > 1:
        _print_table(f"all {len(systems)} systems", diffs)
    if detail:
        write_detail(detail, tables)
        _parity_plot(detail + ".parity.png", pooled)
    return {k: {"rmse": float(np.sqrt(np.mean(d * d))), "mae": float(np.mean(np.abs(d)))} for k, d in diffs.items()}


_UNITS = {"energy": "energy/atom (eV)", "force": "force (eV/A)", "virial": "virial/atom (eV)"}


def _print_table(title: str, diffs: dict) -> None:
    import numpy as np

    print(f"# {title}")
    print(f"  {'quantity':<18s} {'RMSE':>10s} {'MAE':>10s}")
    for k, d in diffs.items():
        print(f"  {_UNITS[k]:<18s} {np.sqrt(np.mean(d * d)):10.3e} {np.mean(np.abs(d)):10.3e}")


def _parity_plot(path: str, pooled: dict) -> None:
    import matplotlib

    from deepmd_paddle.utils.reports import save_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(pooled), figsize=(4.2 * len(pooled), 4), squeeze=False)
    for ax, (k, pairs) in zip(axes[0], pooled.items()):
        ref = np.concatenate([np.ravel(r) for r, _ in pairs])
        pred = np.concatenate([np.ravel(p) for _, p in pairs])
        ax.plot(ref, pred, ".", ms=2, alpha=0.5)
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        rmse = np.sqrt(np.mean((ref - pred) ** 2))
        ax.set_title(f"RMSE {rmse:.3g}")
        ax.set_xlabel(f"reference {_UNITS[k]}")
        ax.set_ylabel(f"predicted {_UNITS[k]}")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def _run_test(args) -> int:
    from deepmd_paddle.data.system import expand_systems

    systems = expand_systems(args.system, os.getcwd(), args.fmt, "-s/--system")
    test_model(load_evaluator(args.model), systems, args.numb_test, args.detail_file, args.fmt)
    if args.detail_file:
        print(f"detail files: {args.detail_file}.*.out; parity plot: {args.detail_file}.parity.png")
    return 0


# --------------------------------------------------------------------------- neighbor-stat
def _args_neighbor_stat(p):
    p.add_argument("-s", "--system", required=True, help="a system, a folder of systems, or a glob")
    p.add_argument("-r", "--rcut", type=float, required=True, help="cut-off radius, Angstrom")
    p.add_argument("-t", "--type-map", nargs="+", required=True, help="element names, e.g. -t O H")
    p.add_argument("--fmt", help="dpdata format of the systems (default: DeePMD npy folders)")


def _run_neighbor_stat(args) -> int:
    from deepmd_paddle.data.stats import neighbor_stat, sel_from_counts
    from deepmd_paddle.data.system import expand_systems, load_system

    paths = expand_systems(args.system, os.getcwd(), args.fmt, "-s/--system")
    systems = [load_system(p, args.type_map, args.fmt) for p in paths]
    min_dist, max_nbor = neighbor_stat(systems, args.rcut, args.type_map)
    print(f"systems: {len(systems)}, frames: {sum(s.nframes for s in systems)}")
    print(f"min_nbor_dist: {min_dist:.6f}")
    print(f"max_nbor_size: {max_nbor.tolist()}  ({', '.join(f'{t}: {m}' for t, m in zip(args.type_map, max_nbor))})")
    print(f"sel for 'auto' (x1.1, multiple of 4): {sel_from_counts(max_nbor, 1.1)}")
    return 0


# --------------------------------------------------------------------------- plot
def _args_plot(p):
    p.add_argument("lcurve", nargs="?", default="lcurve.out", help="learning curve file (default lcurve.out)")
    p.add_argument("-o", "--output", default="lcurve.png", help="PNG to write (default lcurve.png)")


def plot_lcurve(lcurve: str, output: str) -> str:
    """Energy, force (and virial) RMSE against step, training and validation, log scale."""
    import matplotlib

    from deepmd_paddle.utils.reports import save_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    with open(lcurve) as f:
        names = f.readline().lstrip("#").split()
    try:
        data = np.loadtxt(lcurve, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{lcurve}: not a learning curve of numbers under a '# step ...' header ({e})") from None
    col = {n: data[:, i] for i, n in enumerate(names)}
    panels = [k for k in ("e", "f", "v") if f"rmse_{k}_trn" in col]
    units = {"e": "energy RMSE (eV/atom)", "f": "force RMSE (eV/A)", "v": "virial RMSE (eV/atom)"}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, k in zip(axes[0], panels):
        for part in ("trn", "val"):
            if f"rmse_{k}_{part}" in col:
                ax.semilogy(col["step"], col[f"rmse_{k}_{part}"], label=part)
        ax.set_xlabel("step")
        ax.set_ylabel(units[k])
        ax.legend()
    fig.tight_layout()
    save_png(fig, output)
    plt.close(fig)
    return output


def _run_plot(args) -> int:
    print(f"wrote {plot_lcurve(args.lcurve, args.output)}")
    return 0


# --------------------------------------------------------------------------- demo
def _args_demo(p):
    p.add_argument("-o", "--output", default="dpp_demo", help="folder for data, model and plots (default dpp_demo)")
    p.add_argument("--steps", type=int, help="training steps (default: the demo config's)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo in the folder")


def _run_demo(args) -> int:
    from deepmd_paddle import config
    from deepmd_paddle.data.demo import demo_config, make_demo
    from deepmd_paddle.export import freeze
    from deepmd_paddle.train.trainer import train

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


def _args_convert(p):
    from .interop.convert import add_convert_args
    add_convert_args(p)


def _run_convert(args):
    from .interop.convert import convert_main
    return convert_main(args)


def _args_model_devi(p):
    from .model_devi import add_model_devi_args
    add_model_devi_args(p)


def _run_model_devi(args):
    from .model_devi import model_devi_main
    return model_devi_main(args)


def _args_compress(p):
    from .compress import add_compress_args

    add_compress_args(p)


def _run_compress(args):
    from .compress import compress_main

    return compress_main(args)


def _args_lammps_plugin(p):
    from .lammps.build import add_args

    add_args(p)


def _run_lammps_plugin(args):
    from .lammps.build import main

    return main(args)


COMMANDS = {
    "train": ("train a model from an input file", _args_train, _run_train),
    "freeze": ("export a checkpoint to a static model", _args_freeze, _run_freeze),
    "test": ("errors of a model on labelled systems", _args_test, _run_test),
    "neighbor-stat": ("largest neighbour counts and smallest distance in the data", _args_neighbor_stat,
                      _run_neighbor_stat),
    "plot": ("plot lcurve.out to a PNG", _args_plot, _run_plot),
    "demo": ("make EMT copper data, train, freeze, test and plot, end to end", _args_demo, _run_demo),
    "convert": ("convert between DeePMD-kit .dp/.yaml, checkpoints and frozen models", _args_convert,
                _run_convert),
    "model-devi": ("model deviation of several models on a system (DeePMD-kit's model_devi.out)",
                   _args_model_devi, _run_model_devi),
    "compress": ("tabulate the embedding nets (DP Compress): a faster model for inference", _args_compress,
                 _run_compress),
    "lammps-plugin": ("build the LAMMPS pair style deepmd/paddle (plugin load) and print its path",
                      _args_lammps_plugin, _run_lammps_plugin),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpp", description="DeepPot-SE (se_e2_a) on PaddlePaddle")
    parser.add_argument("-v", "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # force: importing Paddle put its own handler on the root logger (its lines would show instead)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s", force=True)
    try:
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
