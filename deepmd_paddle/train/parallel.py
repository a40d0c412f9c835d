"""Data-parallel training with ``paddle.distributed``: one process per core (CPU, gloo) or per
GPU (NCCL), on one machine or several. Paddle's launcher starts the processes::

    python -m paddle.distributed.launch --nproc_per_node N $(which dpp) train input.json
    dpp train --nproc N input.json                      # the same launcher, started for you
    python -m paddle.distributed.launch --ips host1,host2 --nproc_per_node N $(which dpp) train input.json

and sets each worker's rank, the world size and the backend (``PADDLE_DISTRI_BACKEND``: gloo
for CPU tensors). ``Trainer`` asks a ``Parallel`` for every collective step below; a process
that was not launched (world size 1) skips them all and trains exactly as before.

* Data: every rank reads the same systems and draws its own batches, its sampler seeded from
  (seed, rank); rank 0 draws what a single process with the same seed draws. The global batch
  is ``batch_size`` x the number of ranks.
* No rank works alone for long: Paddle's gloo process group fails a collective that waits more
  than 30 s (gloo's default, not settable from Python in Paddle 3.3). So every rank scans the
  data for ``sel: "auto"`` and the statistics (davg/dstd, energy bias) on the same frames and
  rank 0's results are broadcast; the ``numb_btch`` validation batches are shared among the
  ranks (batch i on rank i mod n, every rank drawing all of them so that their samplers agree)
  and the error sums all-reduced. Rank 0 alone reads a checkpoint given to ``--restart`` or
  ``--init-model`` (the other machines need not see the output folder) and broadcasts it, and
  writes checkpoints and lcurve.out, which take well under a second.
* Gradients: ``paddle.DataParallel`` wraps the model. It broadcasts the parameters and buffers
  of rank 0 when built, and during ``backward`` all-reduces the gradients (their average) in
  fused buckets of up to ``COMM_BUFFER_MB`` (one all-reduce a step for models below that size).
  Each rank's loss is the mean over its own frames, so the averaged gradient is the gradient of
  the loss of the global batch whenever the ranks' batches hold the same number of frames
  (DeePMD-kit's loss normalises energies and virials by the atom count: batches of different
  systems are weighted per rank, as in DeePMD-kit's own parallel training).
  ``find_unused_parameters`` is switched on only when some system lacks an element: then that
  element's fitting net gets no gradient on a rank drawing that system.
* Learning rate: ``learning_rate/scale_by_worker`` (DeePMD-kit's key): the optimizer takes the
  scheduled rate times n (``linear``, the default), sqrt(n) or 1 (``none``). The loss
  prefactors and lcurve.out's ``lr`` column follow the unscaled schedule.
* Output: rank 0 alone logs (the others log warnings and errors only; the launcher keeps each
  rank's output in ``<log_dir>/workerlog.<rank>``) and writes ``lcurve.out``, ``out.json`` and
  the checkpoints. lcurve.out's training columns are root mean squares over the ranks'
  batches; its validation columns are those of a single process. A checkpoint holds every
  rank's sampler state: ``--restart`` with the same number of ranks continues the same
  trajectory; with another number, ranks without a saved state start fresh streams (a warning
  says so).
* Stopping: every ``STOP_CHECK_STEPS`` steps the ranks agree whether any of them was asked to
  stop (SIGINT), with one all-reduce of one integer, so they save and stop at the same step
  (a check at every step would add a synchronisation point to every step). (Under the launcher,
  Ctrl-C reaches the launcher, which terminates the workers: continue from the last periodic
  checkpoint.) A rank that dies: the launcher stops the others and exits non-zero, naming the
  failed rank and showing its log tail; without the launcher the survivors' next collective
  fails at once when the peer's connections close (gloo "Connection reset by peer"), and
  within gloo's 30 s timeout when a machine vanishes without closing them.
* Threads: with N processes on a machine and neither ``DP_INTRA_OP_PARALLELISM_THREADS`` nor
  ``DEEPMD_PADDLE_NUM_THREADS`` set, each process uses cores // N threads.
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np
import paddle

from .. import runtime

log = logging.getLogger(__name__)

SCALE_BY_WORKER = ("linear", "sqrt", "none")
COMM_BUFFER_MB = 256  # gradient bucket size: float64 models up to 32 M parameters in one all-reduce
INPLACE_NUMEL = 1 << 16  # fused training step: gradients this large are all-reduced in place
STOP_CHECK_STEPS = 10  # steps between the ranks' agreements on a requested stop


def world_size_from_env() -> int:
    """Number of workers the Paddle launcher started (1 when not launched)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM") or 1)


def rank_seed(seed: int | None, rank: int) -> int | None:
    """The data sampler's seed on ``rank``: ``seed`` itself on rank 0, an independent stream
    derived from (seed, rank) on the others; None (fresh entropy) stays None."""
    if seed is None or rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0])


def lr_scale(mode: str, nworkers: int) -> float:
    """DeePMD-kit's ``scale_by_worker``: n (linear), sqrt(n) or 1 (none)."""
    if mode not in SCALE_BY_WORKER:
        raise ValueError(f"learning_rate/scale_by_worker: got {mode!r}; allowed: {', '.join(SCALE_BY_WORKER)}")
    return {"linear": float(nworkers), "sqrt": math.sqrt(nworkers), "none": 1.0}[mode]


class Parallel:
    """This process's place in the run: ``rank``, ``size``; the collectives ``Trainer`` uses."""

    def __init__(self):
        self.size = world_size_from_env()
        self.rank = 0
        if self.size == 1:
            return
        import paddle.distributed as dist

        runtime.share_cores()  # before any operator reads its thread count
        if not dist.is_initialized():
            dist.init_parallel_env()
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        if self.rank != 0:  # only rank 0 reports progress
            logging.getLogger("deepmd_paddle").setLevel(max(logging.WARNING, logging.getLogger().level))
        log.info("data-parallel training: %d workers (%s backend)", self.size,
                 os.environ.get("PADDLE_DISTRI_BACKEND", "default"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------- collectives
    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if self.size == 1:
            return obj
        import paddle.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        import paddle.distributed as dist

        out: list = []
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on some rank."""
        if self.size == 1:
            return bool(flag)
        import paddle.distributed as dist

        t = paddle.to_tensor([int(bool(flag))], dtype="int64")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks of a float64 array."""
        if self.size == 1:
            return np.asarray(values, dtype=np.float64)
        import paddle.distributed as dist

        t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
        dist.all_reduce(t)
        return t.numpy()

    def rms(self, errors: dict) -> dict:
        """sqrt(mean over ranks of value^2) for each entry (NaN anywhere stays NaN)."""
        if self.size == 1:
            return errors
        keys = list(errors)
        total = self.sum([float(errors[k]) ** 2 for k in keys])
        return {k: math.sqrt(v / self.size) for k, v in zip(keys, total.tolist())}

    # ------------------------------------------------------------- model
    def sync_parameters(self, model: paddle.nn.Layer) -> None:
        """Rank 0's parameters and buffers on every rank (what ``paddle.DataParallel`` does when
        it wraps a model), for the hand-assembled training step, which is not wrapped."""
        if self.size == 1:
            return
        from paddle.distributed.parallel import sync_params_buffers

        sync_params_buffers(model)

    def average_gradients(self, params) -> None:
        """Every trainable parameter's ``.grad`` replaced by its mean over ranks: large
        gradients (``INPLACE_NUMEL`` values and more: the fitting nets' weights) are all-reduced
        where they lie, the small ones in one all-reduce of their concatenation (a missing
        gradient counts as zero)."""
        if self.size == 1:
            return
        import paddle.distributed as dist

        params = [p for p in params if not p.stop_gradient]
        large = [p for p in params if p.grad is not None and int(np.prod(p.shape)) >= INPLACE_NUMEL]
        small = [p for p in params if p.grad is None or int(np.prod(p.shape)) < INPLACE_NUMEL]
        for p in large:  # no copies of the 8 MB of a water model's fitting weights
            g = p.grad.detach()  # the same memory, as a tensor that may be written in place
            dist.all_reduce(g)
            g.scale_(1.0 / self.size)
        if not small:
            return
        flat = paddle.concat([(p.grad if p.grad is not None else paddle.zeros_like(p)).reshape([-1])
                              for p in small])
        dist.all_reduce(flat)
        flat.scale_(1.0 / self.size)
        parts = paddle.split(flat, [int(np.prod(p.shape)) for p in small])
        missing = []
        for p, g in zip(small, parts):
            if p.grad is None:
                missing.append((p, g))
            else:
                p.grad.set_value(g.reshape(p.shape))
        if missing:  # no gradient tensor to write into: let a backward create it
            sum((p * g.reshape(p.shape)).sum() for p, g in missing).backward()

    def wrap(self, model: paddle.nn.Layer, find_unused: bool) -> paddle.nn.Layer:
        """``paddle.DataParallel(model)`` (parameters and buffers synchronised from rank 0), or
        the model itself for a single process."""
        if self.size == 1:
            return model
        ddp = paddle.DataParallel(model, comm_buffer_size=COMM_BUFFER_MB, last_comm_buffer_size=COMM_BUFFER_MB,
                                  find_unused_parameters=find_unused)
        nparam = sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
        log.info("gradients: %d parameters averaged over %d workers in %d all-reduce bucket(s) per step%s",
                 nparam, self.size, len(ddp.group_indices), " (find_unused_parameters)" if find_unused else "")
        return ddp


# ----------------------------------------------------------------- dpp train --nproc N
def dpp_script() -> str:
    """The ``dpp`` console script, which Paddle's launcher runs as ``python -u dpp ...``."""
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).with_name("dpp")
    found = str(beside) if beside.is_file() else shutil.which("dpp")
    if not found:
        raise OSError("dpp train --nproc: the `dpp` script is not installed next to this Python nor on PATH; "
                      "install the package (pip install -e .) or start the launcher yourself: "
                      "python -m paddle.distributed.launch --nproc_per_node N /path/to/dpp train input.json")
    return found


def launch_command(nproc: int, train_args: list[str], log_dir: str) -> list[str]:
    """``python -m paddle.distributed.launch`` running ``dpp train <train_args>`` on ``nproc``
    processes of this machine, each rank's output in ``log_dir/workerlog.<rank>``."""
    import sys

    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
            "--log_dir", log_dir, dpp_script(), *train_args]


def launch(nproc: int, train_args: list[str], log_dir: str) -> int:
    """Run the launcher and wait; its exit code (non-zero when a worker failed)."""
    import subprocess

    if world_size_from_env() > 1:
        raise ValueError("dpp train --nproc: already inside a distributed launch; drop --nproc")
    cmd = launch_command(nproc, train_args, log_dir)  # the launcher picks gloo on CPU, NCCL on GPUs
    log.info("%s", " ".join(cmd))
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the launcher got the Ctrl-C too: it stops the workers
        return proc.wait()
