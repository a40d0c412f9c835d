"""Check that a model trained here, exported to DeePMD-kit's ``.dp``, gives DeePMD-kit the same
numbers as it gives us (the export half of the interoperability issue).

Runs in our environment and calls DeePMD-kit through another Python that has it installed
(``--dpkit-python``, e.g. a venv with ``deepmd-kit==3.2.0 tensorflow-cpu``):

    python tools/check_dp_export.py --model runs/water/model.ckpt --data ../shared/data/water \\
        --dpkit-python /path/to/dpkit/bin/python --out /tmp/export_check

It writes ``<out>/model.dp``, evaluates it with DeePMD-kit (``tools/make_reference.py
--eval-only``: 3 frames of data_3, atomic outputs, descriptor, an open cluster) and with our
``EnergyModel`` on the same inputs, and prints the largest relative difference per array.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import paddle


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="our checkpoint, frozen-model source, or a .dp file")
    ap.add_argument("--data", required=True, help="folder with data_3 (DeePMD npy water system)")
    ap.add_argument("--dpkit-python", required=True, help="a Python with deepmd-kit installed")
    ap.add_argument("--out", default="export_check")
    args = ap.parse_args()
    from deepmd_paddle.io.load import load_model
    from deepmd_paddle.io import save_dp

    os.makedirs(args.out, exist_ok=True)
    model = load_model(args.model)
    dp_path = os.path.join(args.out, "model.dp")
    save_dp(model, dp_path)
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([args.dpkit_python, os.path.join(here, "make_reference.py"), "--data", args.data,
                    "--out", args.out, "--eval-only", dp_path], check=True)
    ref = np.load(os.path.join(args.out, "model_dpkit_eval.npz"))
    nf = len(ref["coord"])
    out = model(paddle.to_tensor(ref["coord"].astype("float64")), paddle.to_tensor(np.tile(ref["atype"], (nf, 1))),
                paddle.to_tensor(ref["cell"].astype("float64")), do_atomic_virial=True)
    ours = {k: v.numpy() for k, v in out.items()}
    ours["descriptor"] = model.descriptor_of(paddle.to_tensor(ref["coord"][:1].astype("float64")),
                                             paddle.to_tensor(ref["atype"][None]),
                                             paddle.to_tensor(ref["cell"][:1].astype("float64")))
    cl = model(paddle.to_tensor(ref["nopbc_coord"].astype("float64")), paddle.to_tensor(ref["nopbc_atype"][None]), None)
    for k in ("energy", "force", "virial"):
        ours["nopbc_" + k] = cl[k].numpy()
    worst = 0.0
    for key in ["energy", "force", "virial", "atom_energy", "atom_virial", "descriptor",
                "nopbc_energy", "nopbc_force", "nopbc_virial"]:
        rel = np.abs(ours[key] - ref[key]).max() / np.abs(ref[key]).max()
        worst = max(worst, rel)
        print(f"{key:14s} max |ours - DeePMD-kit| / max |DeePMD-kit| = {rel:.2e}")
    print(f"worst {worst:.2e}: {'OK' if worst < 1e-10 else 'MISMATCH'} at 1e-10")
    return 0 if worst < 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main())
