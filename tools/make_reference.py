"""Train small se_e2_a water models with DeePMD-kit (TensorFlow backend) and record its outputs.

Run with the Python of a venv that has ``deepmd-kit`` and ``tensorflow-cpu`` (not a test
dependency), from anywhere:

    /path/to/dpkit/bin/python tools/make_reference.py --data ../shared/data/water --out tests/fixtures/deepmd-kit

For each variant it writes ``<name>.dp`` (DeePMD-kit's backend-neutral model file, converted
from the frozen TensorFlow graph by ``dp convert-backend``), ``<name>.input.json`` and
``<name>_ref.npz`` with the frozen TF model's energy, force, virial, atom energy, atom virial
on the first 3 frames of ``data_3``, its descriptor on frame 0, and an open cluster (the atoms
within 5 A of atom 0). ``--eval-only MODEL.dp`` evaluates a ``.dp`` file written by us instead, converted to a
TensorFlow graph with ``dp convert-backend`` (the export check of the interop issue, see
``tools/check_dp_export.py``).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

VARIANTS = {
    # name: (type_one_side, precision)
    "water_se_e2_a_one_side": (True, "float64"),
    "water_se_e2_a_float32": (False, "float32"),
}


def config(data, one_side, precision, steps=200):
    return {
        "model": {
            "type_map": ["O", "H"],
            "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut_smth": 0.5, "rcut": 6.0,
                           "neuron": [10, 20, 40], "resnet_dt": False, "axis_neuron": 8,
                           "type_one_side": one_side, "precision": precision, "seed": 11},
            "fitting_net": {"neuron": [60, 60, 60], "resnet_dt": True, "precision": precision, "seed": 11},
        },
        "learning_rate": {"type": "exp", "decay_steps": 50, "start_lr": 1e-3, "stop_lr": 3.51e-8},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
                 "limit_pref_f": 1, "start_pref_v": 0, "limit_pref_v": 0},
        "training": {
            "training_data": {"systems": [os.path.join(data, f"data_{i}") for i in range(3)], "batch_size": "auto"},
            "validation_data": {"systems": [os.path.join(data, "data_3")], "batch_size": 1, "numb_btch": 1},
            "numb_steps": steps, "seed": 5, "disp_file": "lcurve.out", "disp_freq": 100, "save_freq": steps,
        },
    }


def evaluate(model_path, data, out):
    """Outputs of ``model_path`` (any file DeePMD-kit's DeepPot loads) on data_3, saved to ``out``."""
    import dpdata
    from deepmd.infer import DeepPot

    dp = DeepPot(model_path)
    ms = dpdata.LabeledSystem(os.path.join(data, "data_3"), fmt="deepmd/npy")
    n = 3
    coord = ms["coords"][:n]
    cell = ms["cells"][:n].reshape(n, 9)
    atype = ms["atom_types"]
    e, f, v, ae, av = dp.eval(coord.reshape(n, -1), cell, atype, atomic=True)
    d = dp.eval_descriptor(coord[:1].reshape(1, -1), cell[:1], atype)
    sel = np.where(np.linalg.norm(coord[0] - coord[0][0], axis=1) < 5.0)[0]
    c2, t2 = coord[0][sel][None], atype[sel]
    e2, f2, v2 = dp.eval(c2.reshape(1, -1), None, t2)
    np.savez_compressed(out, coord=coord, cell=cell, atype=atype, energy=e, force=f, virial=v,
                        atom_energy=ae, atom_virial=av, descriptor=d, nopbc_coord=c2, nopbc_atype=t2,
                        nopbc_energy=e2, nopbc_force=f2, nopbc_virial=v2)
    print(out, e.ravel())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with data_0..data_3 (DeePMD npy water systems)")
    ap.add_argument("--out", default="tests/fixtures/deepmd-kit")
    ap.add_argument("--eval-only", help="evaluate this model file with DeePMD-kit and exit")
    args = ap.parse_args()
    data, out = os.path.abspath(args.data), os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    dp = os.path.join(os.path.dirname(sys.executable), "dp")
    if args.eval_only:
        # through the TensorFlow backend (the original implementation, which also has
        # eval_descriptor): convert the .dp file to a frozen graph first
        stem = os.path.splitext(os.path.basename(args.eval_only))[0]
        work = tempfile.mkdtemp(prefix="eval")
        subprocess.run([dp, "convert-backend", os.path.abspath(args.eval_only), os.path.join(work, "model.pb")],
                       check=True)
        evaluate(os.path.join(work, "model.pb"), data, os.path.join(out, f"{stem}_dpkit_eval.npz"))
        return
    for name, (one_side, precision) in VARIANTS.items():
        cfg = config(data, one_side, precision)
        with open(os.path.join(out, f"{name}.input.json"), "w") as fh:
            json.dump(cfg, fh, indent=1)
        work = tempfile.mkdtemp(prefix=name)
        with open(os.path.join(work, "input.json"), "w") as fh:
            json.dump(cfg, fh)
        subprocess.run([dp, "--tf", "train", "input.json"], cwd=work, check=True)
        subprocess.run([dp, "--tf", "freeze", "-o", "model.pb"], cwd=work, check=True)
        subprocess.run([dp, "convert-backend", "model.pb", os.path.join(out, f"{name}.dp")], cwd=work, check=True)
        evaluate(os.path.join(work, "model.pb"), data, os.path.join(out, f"{name}_ref.npz"))


if __name__ == "__main__":
    main()
