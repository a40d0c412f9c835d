"""``dpp test``, ``dpp neighbor-stat`` and ``dpp plot``."""
from __future__ import annotations

import os


# --------------------------------------------------------------------------- test
def load_evaluator(path: str):
    """What ``dpp test`` evaluates: ``deepmd_paddle.infer.load_evaluator`` (a checkpoint, a frozen
    model or a DeePMD-kit .dp file behind DeePMD-kit's ``DeepPot`` interface)."""
    from deepmd_paddle.infer import load_evaluator as hook

    return hook(path)


def args_test(p):
    p.add_argument("-m", "--model", required=True,
                   help="a checkpoint (file, prefix or folder), a frozen model or a DeePMD-kit .dp/.pb file")
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

    from .reports import detail_tables, write_detail

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


def run_test(args) -> int:
    from deepmd_paddle.data.system import expand_systems

    systems = expand_systems(args.system, os.getcwd(), args.fmt, "-s/--system")
    test_model(load_evaluator(args.model), systems, args.numb_test, args.detail_file, args.fmt)
    if args.detail_file:
        print(f"detail files: {args.detail_file}.*.out; parity plot: {args.detail_file}.parity.png")
    return 0


# --------------------------------------------------------------------------- neighbor-stat
def args_neighbor_stat(p):
    p.add_argument("-s", "--system", required=True, help="a system, a folder of systems, or a glob")
    p.add_argument("-r", "--rcut", type=float, required=True, help="cut-off radius, Angstrom")
    p.add_argument("-t", "--type-map", nargs="+", required=True, help="element names, e.g. -t O H")
    p.add_argument("--fmt", help="dpdata format of the systems (default: DeePMD npy folders)")


def run_neighbor_stat(args) -> int:
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
