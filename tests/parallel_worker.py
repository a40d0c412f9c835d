"""A training worker for tests/test_parallel.py, started by ``paddle.distributed.launch``:

    python -m paddle.distributed.launch --nproc_per_node 2 parallel_worker.py CONFIG OUTDIR [--die-at STEP]

It runs ``Trainer.run`` unchanged except that after every update it all-gathers the flattened
parameters of every rank and records the largest difference to rank 0's, and the first frame's
coordinates of each rank's batch (to check that the ranks draw different batches). Rank 0
writes OUTDIR/worker.npz. ``--die-at S``: rank 1 kills itself (SIGKILL) at its S-th update;
``--sigint-at S``: rank 1 sends itself SIGINT (Ctrl-C) there. ``--inplace-numel N``: gradients of
N values and more are all-reduced in place (parallel.INPLACE_NUMEL), the others concatenated.
"""
import json
import os
import signal
import sys

import numpy as np
import paddle
import paddle.distributed as dist

from deepmd_paddle import config
from deepmd_paddle.train import parallel
from deepmd_paddle.train.trainer import Trainer

paddle.set_default_dtype("float64")


class CheckedTrainer(Trainer):
    die_at = sigint_at = None

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rank_diff, self.first_coord, self.updates = [], [], 0

    def forward_step(self, step):
        lr, batch, loss, l2 = super().forward_step(step)
        self.first_coord.append(batch["coord"][0, 0].copy())
        return lr, batch, loss, l2

    def update(self, loss, lr):
        self.updates += 1
        if self.die_at is not None and self.par.rank == 1 and self.updates == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)  # rank 0 is then in the gradient all-reduce of backward
        if self.sigint_at is not None and self.par.rank == 1 and self.updates == self.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)  # only this rank is asked to stop
        super().update(loss, lr)
        flat = paddle.concat([p.reshape([-1]) for p in self.model.parameters()])
        everyone = []
        dist.all_gather(everyone, flat)
        self.rank_diff.append(max(float(paddle.abs(t - everyone[0]).max()) for t in everyone))


def main():
    cfg_path, outdir = sys.argv[1], sys.argv[2]
    for flag in ("--die-at", "--sigint-at"):
        if flag in sys.argv:
            setattr(CheckedTrainer, flag[2:].replace("-", "_"), int(sys.argv[sys.argv.index(flag) + 1]))
    if "--inplace-numel" in sys.argv:
        parallel.INPLACE_NUMEL = int(sys.argv[sys.argv.index("--inplace-numel") + 1])
    with open(cfg_path) as f:
        cfg = config.normalize(json.load(f))
    tr = CheckedTrainer(cfg, outdir)
    result = tr.run()
    coords = tr.par.gather(np.array(tr.first_coord))
    if tr.par.is_main:
        np.savez(os.path.join(outdir, "worker.npz"), rank_diff=np.array(tr.rank_diff), coords=np.array(coords),
                 world=tr.par.size, **{f"param.{k}": v.numpy() for k, v in tr.model.state_dict().items()})
        print("worker done", result["step"], "interrupted" if result["interrupted"] else "", flush=True)


if __name__ == "__main__":
    main()
