#!/usr/bin/env bash
# Data-parallel training with paddle.distributed (deepmd_paddle/train/parallel.py explains what
# each rank does). Runs the single-machine CPU case on the EMT copper demo data:
#
#     bash examples/parallel_train.sh [OUTDIR] [NPROC] [STEPS]      # defaults: parallel_demo 2 600
#
# Each of the NPROC processes draws its own batch of `batch_size` frames, so a step sees
# NPROC x batch_size frames; `learning_rate/scale_by_worker` (linear | sqrt | none, DeePMD-kit's
# key, default linear) scales the optimizer's rate with NPROC. Rank 0 writes lcurve.out and the
# checkpoints; every rank's output is in OUTDIR/run/log/workerlog.<rank>.
#
# The same training, started in the other ways (not run by this script):
#
#   # the launcher by hand (it takes a script path: the `dpp` console script)
#   python -m paddle.distributed.launch --nproc_per_node 2 --log_dir run/log $(which dpp) train input.json --outdir run
#
#   # one process per core and nothing else on the machine: 1 math-library thread each
#   DP_INTRA_OP_PARALLELISM_THREADS=1 DEEPMD_PADDLE_NUM_THREADS=1 dpp train --nproc "$(nproc)" input.json --outdir run
#
#   # continue from the last checkpoint (same number of processes: the same batch sequence)
#   dpp train --nproc 2 input.json --outdir run --restart run
#
#   # several GPUs of one machine (a GPU build of Paddle picks NCCL; one process per device).
#   # Not tested here: this project's machine and Paddle build are CPU-only, and the C++
#   # operators are CPU kernels (DEEPMD_PADDLE_NO_CUSTOM_OP=1 selects the plain-Paddle path).
#   python -m paddle.distributed.launch --devices 0,1,2,3 $(which dpp) train input.json --outdir run
#
#   # several machines: the same command on every machine, the same --ips list everywhere
#   # (data at the same paths on each; output and checkpoints are written by rank 0's machine)
#   python -m paddle.distributed.launch --ips 10.0.0.1,10.0.0.2 --nproc_per_node 8 $(which dpp) train input.json --outdir run
#   # or with a rendezvous address instead of a host list (tested on one host with two launchers):
#   python -m paddle.distributed.launch --master 10.0.0.1:36789 --nnodes 2 --nproc_per_node 8 $(which dpp) train input.json --outdir run
set -euo pipefail
OUT=${1:-parallel_demo}
NPROC=${2:-2}
STEPS=${3:-600}
mkdir -p "$OUT"
python - "$OUT" "$STEPS" <<'EOF'
import json, os, sys
from deepmd_paddle.data.demo import demo_config, make_demo

out, steps = sys.argv[1], int(sys.argv[2])
data = make_demo(os.path.join(out, "data"))
cfg = demo_config(train=os.path.abspath(data["train"]), valid=os.path.abspath(data["valid"]))
cfg["training"]["numb_steps"] = steps
cfg["learning_rate"]["scale_by_worker"] = "sqrt"  # a milder scaling than DeePMD-kit's default, linear
with open(os.path.join(out, "input.json"), "w") as f:
    json.dump(cfg, f, indent=1)
print(f"{data['n_train']} training frames in {out}/data; input {out}/input.json")
EOF
dpp train --nproc "$NPROC" "$OUT/input.json" --outdir "$OUT/run"
dpp plot "$OUT/run/lcurve.out" -o "$OUT/run/lcurve.png"
tail -n 3 "$OUT/run/lcurve.out"
