"""``dpp model-devi``: DeePMD-kit's ``dp model-devi`` flags and defaults
(deepmd_paddle.infer.model_devi computes and writes)."""
from __future__ import annotations


def args_model_devi(p):
    p.add_argument("-m", "--models", nargs="+", default=["graph.000", "graph.001", "graph.002", "graph.003"],
                   help="two or more models: frozen, checkpoint, .dp or .pb (default: graph.000 ... graph.003)")
    p.add_argument("-s", "--system", default=".", help="a system, or a folder searched for systems (default: .)")
    p.add_argument("-o", "--output", default="model_devi.out", help="output file (default: model_devi.out)")
    p.add_argument("-f", "--frequency", type=int, default=1,
                   help="steps between the frames of the trajectory: step = frame index x frequency (default 1)")
    p.add_argument("--real_error", action="store_true",
                   help="RMS error of the models against the labels of the systems instead of the deviation")
    p.add_argument("--atomic", action="store_true", help="also print the force deviation of each atom")
    p.add_argument("--relative", type=float, metavar="LEVEL",
                   help="relative force deviation: divided by |mean force| + LEVEL")
    p.add_argument("--relative_v", type=float, metavar="LEVEL",
                   help="relative virial deviation: divided by |mean virial| + LEVEL")
    p.add_argument("--fmt", help="dpdata format of the system (default: DeePMD npy folders)")


def run_model_devi(args) -> int:
    from deepmd_paddle.infer.model_devi import make_model_devi

    if args.frequency < 1:
        raise ValueError(f"-f/--frequency must be a positive number of steps, got {args.frequency}")
    for flag, level in (("--relative", args.relative), ("--relative_v", args.relative_v)):
        if level is not None and not level > 0:
            raise ValueError(f"{flag}: the level must be a positive number (eV/A), got {level}")
    from .test import model_path

    rows = make_model_devi(models=[model_path(m) for m in args.models], system=args.system, output=args.output,
                           frequency=args.frequency, real_error=args.real_error, atomic=args.atomic,
                           relative=args.relative, relative_v=args.relative_v, fmt=args.fmt)
    nframes = sum(len(r) for r in rows)
    print(f"model deviation of {len(args.models)} models on {nframes} frames ({len(rows)} systems) -> {args.output}")
    return 0
