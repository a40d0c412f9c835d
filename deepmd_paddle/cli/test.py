"""``dpp test`` (DeePMD-kit's ``dp test``: flags, defaults, report and detail files), ``dpp
neighbor-stat`` and ``dpp plot``."""
from __future__ import annotations

import os


# --------------------------------------------------------------------------- test
def load_evaluator(path: str):
    """What ``dpp test`` evaluates: ``deepmd_paddle.infer.load_evaluator`` (a checkpoint, a frozen
    model or a DeePMD-kit .dp file behind DeePMD-kit's ``DeepPot`` interface)."""
    from deepmd_paddle.infer import load_evaluator as hook

    return hook(path)


def args_test(p):
    p.add_argument("-m", "--model", default="frozen_model",
                   help="a frozen model, a checkpoint (file, prefix or folder) or a DeePMD-kit .dp/.pb file "
                        "(default: frozen_model)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-s", "--system", default=".",
                   help="a system, a folder searched for systems, or a glob (default: .)")
    g.add_argument("-f", "--datafile", help="a file naming one system per line")
    g.add_argument("--train-data", dest="train_json", metavar="INPUT", help="test on the training systems of INPUT")
    g.add_argument("--valid-data", dest="valid_json", metavar="INPUT", help="test on the validation systems of INPUT")
    p.add_argument("-n", "--numb-test", type=int, default=0, help="frames per system, 0 = all (default)")
    p.add_argument("-r", "--rand-seed", "--seed", dest="rand_seed", type=int, help="seed of --shuffle-test")
    p.add_argument("--shuffle-test", action="store_true", help="test a random choice of frames")
    p.add_argument("-d", "--detail-file", metavar="PREFIX",
                   help="write PREFIX.e.out, .e_peratom.out, .f.out, .v.out, .v_peratom.out (and .s.out with virial "
                        "labels) as DeePMD-kit does, and PREFIX.parity.png")
    p.add_argument("-a", "--atomic", action="store_true", help="also test atomic energies (atom_ener.npy labels)")
    p.add_argument("--fmt", help="dpdata format of the systems (default: DeePMD npy folders)")


def test_model(evaluator, systems: list[str], numb_test: int = 0, detail: str | None = None, fmt=None,
               atomic: bool = False, shuffle: bool = False, seed: int | None = None, labels=None) -> dict:
    """DeePMD-kit's ``dp test`` of ``evaluator`` on ``systems`` (``labels``: their names in the
    report and detail files, default the paths): prints its report per system and the weighted
    average over all of them, writes its detail files when every system has been evaluated.
    Returns {"energy"|"force"|"virial": {"rmse", "mae"}} of the average (energy and virial per atom)."""
    import numpy as np

    from .reports import evaluate_system, print_report, weighted_average, write_details

    labels = list(systems) if labels is None else list(labels)
    rng = np.random.default_rng(seed) if shuffle else None
    errors, tables, pooled = [], {}, {}
    for path, label in zip(systems, labels):
        err = evaluate_system(evaluator, path, label, numb_test, fmt, atomic, rng, tables, pooled)
        errors.append({k: v for k, v in err.items() if k not in ("mae_ae", "rmse_ae")})
    avg = weighted_average(errors)
    print("# ----------weighted average of errors----------- ")
    print(f"# number of systems : {len(systems)}")
    print_report(avg)
    print("# ----------------------------------------------- ")
    if detail:
        write_details({_detail_path(detail, suffix): parts for suffix, parts in tables.items()})
        _parity_plot(_detail_path(detail, ".parity.png"), pooled)
    names = {"energy": "ea", "force": "f", "virial": "va"}
    return {k: {"rmse": avg[f"rmse_{n}"][0], "mae": avg[f"mae_{n}"][0]} for k, n in names.items() if f"rmse_{n}" in avg}


def _detail_path(prefix: str, suffix: str) -> str:
    """DeePMD-kit's name of a detail file: ``Path(prefix).with_suffix(suffix)``."""
    import pathlib

    try:
        return str(pathlib.Path(prefix).with_suffix(suffix))
    except ValueError:
        raise ValueError(f"-d/--detail-file: {prefix!r} cannot be a file prefix") from None


def test_systems(args) -> tuple[list[str], list[str]]:
    """The systems of ``dpp test`` (-s, -f, --train-data or --valid-data) and their labels."""
    from deepmd_paddle.data.system import expand_systems
    from deepmd_paddle.infer.model_devi import system_label

    if args.datafile:
        try:
            with open(args.datafile) as f:
                names = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"-f/--datafile: cannot read {args.datafile}: {e}") from None
        if not names:
            raise ValueError(f"-f/--datafile: {args.datafile} names no system")
        found = [(p, system_label(p, n)) for n in names
                 for p in expand_systems(n, os.getcwd(), args.fmt, f"-f/--datafile {args.datafile}")]
        return [p for p, _ in found], [label for _, label in found]
    for flag, path, part in (("--train-data", args.train_json, "training_data"),
                             ("--valid-data", args.valid_json, "validation_data")):
        if path:
            from deepmd_paddle import config

            data = config.load(path)["training"][part]
            if not data:
                raise ValueError(f"{flag}: {path} has no training.{part}")
            return list(data["systems"]), list(data["systems"])
    paths = expand_systems(args.system, os.getcwd(), args.fmt, "-s/--system")
    return paths, [system_label(p, args.system) for p in paths]


_UNITS = {"energy": "energy/atom (eV)", "force": "force (eV/A)", "virial": "virial/atom (eV)"}


def _parity_plot(path: str, pooled: dict) -> None:
    import matplotlib

    from .reports import save_png

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


def model_path(path: str) -> str:
    """DeePMD-kit's model argument: a name without its suffix (``frozen_model``, ``graph.000``)
    means that file with the suffix of a model format found there (``.pb``, ``.dp``)."""
    from deepmd_paddle.io.frozen import frozen_prefix

    if os.path.exists(path) or frozen_prefix(path):
        return path
    for ext in (".pb", ".dp", ".yaml"):
        if os.path.isfile(path + ext):
            return path + ext
    return path


def run_test(args) -> int:
    paths, labels = test_systems(args)
    evaluator = load_evaluator(model_path(args.model))
    test_model(evaluator, paths, args.numb_test, args.detail_file, args.fmt, args.atomic, args.shuffle_test,
               args.rand_seed, labels)
    if args.detail_file:
        print(f"detail files: {_detail_path(args.detail_file, '.*.out')}; "
              f"parity plot: {_detail_path(args.detail_file, '.parity.png')}")
    return 0


# --------------------------------------------------------------------------- neighbor-stat
def args_neighbor_stat(p):
    p.add_argument("-s", "--system", default=".", help="a system, a folder of systems, or a glob (default: .)")
    p.add_argument("-r", "--rcut", type=float, required=True, help="cut-off radius, Angstrom")
    p.add_argument("-t", "--type-map", nargs="+",
                   help="element names, e.g. -t O H (default: the type_map.raw of the data)")
    p.add_argument("--mixed-type", "--one-type", action="store_true",
                   help="count neighbours of all types together (one number)")
    p.add_argument("--fmt", help="dpdata format of the systems (default: DeePMD npy folders)")


def data_type_map(paths: list[str]) -> list[str]:
    """DeePMD-kit's type map of the data: the longest type_map.raw, the others its prefixes."""
    out, src = [], None
    for path in paths:
        fname = os.path.join(path, "type_map.raw")
        if not os.path.isfile(fname):
            raise ValueError(f"-t/--type-map: {path} has no type_map.raw; name the types with -t, e.g. -t O H")
        with open(fname) as f:
            names = f.read().split()
        n = min(len(names), len(out))
        if names[:n] != out[:n]:
            raise ValueError(f"-t/--type-map: inconsistent type maps {out} ({src}) and {names} ({fname}); "
                             "name the types with -t")
        if len(names) > len(out):
            out, src = names, fname
    return out


def run_neighbor_stat(args) -> int:
    import numpy as np

    from deepmd_paddle.data.stats import neighbor_stat, sel_from_counts
    from deepmd_paddle.data.system import expand_systems, load_system

    paths = expand_systems(args.system, os.getcwd(), args.fmt, "-s/--system")
    type_map = args.type_map
    if type_map is None:
        if args.fmt is not None:
            raise ValueError("-t/--type-map: give the element names with --fmt (type_map.raw is a DeePMD npy file)")
        type_map = data_type_map(paths)
        print(f"type_map: {type_map}")
    systems = [load_system(p, type_map, args.fmt) for p in paths]
    if args.mixed_type:  # every atom one type
        for s in systems:
            s.atype = np.zeros_like(s.atype)
    min_dist, max_nbor = neighbor_stat(systems, args.rcut, ["X"] if args.mixed_type else type_map)
    print(f"Neighbor statistics: training data with minimal neighbor distance: {min_dist:f}")
    print(f"Neighbor statistics: training data with maximum neighbor size: {np.asarray(max_nbor)!s} "
          f"(cutoff radius: {args.rcut:f})")
    print(f"min_nbor_dist: {min_dist:f}")
    print(f"max_nbor_size: {np.asarray(max_nbor)!s}")
    print(f"systems: {len(systems)}, frames: {sum(s.nframes for s in systems)}")
    print(f"sel for 'auto' (x1.1, multiple of 4): {sel_from_counts(max_nbor, 1.1)}")
    return 0


# --------------------------------------------------------------------------- plot
def args_plot(p):
    p.add_argument("lcurve", nargs="?", default="lcurve.out", help="learning curve file (default lcurve.out)")
    p.add_argument("-o", "--output", default="lcurve.png", help="PNG to write (default lcurve.png)")


def plot_lcurve(lcurve: str, output: str) -> str:
    """Energy, force (and virial) RMSE against step, training and validation, log scale."""
    import matplotlib

    from .reports import save_png

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


def run_plot(args) -> int:
    print(f"wrote {plot_lcurve(args.lcurve, args.output)}")
    return 0
