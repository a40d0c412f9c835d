"""What a training run records besides checkpoints (rank 0 only), as DeePMD-kit's TensorFlow
trainer does:

- ``disp_file`` (lcurve.out): a row every ``disp_freq`` steps, with DeePMD-kit's columns;
- ``time_training``: the time per step and the time left in each display log line, and at the
  end the average time per step (without the first ``disp_freq`` steps when the run is longer
  than twice that);
- ``tensorboard``: TensorBoard event files in ``tensorboard_log_dir``/train (the training
  errors every ``tensorboard_freq`` steps, under DeePMD-kit's names ``l2_loss``,
  ``l2_ener_loss``, ``l2_force_loss``, ... and ``learning_rate``) and ``/test`` (the validation
  errors at each display), written with tensorboardX (config.checks refuses the key by name without it);
- ``profiling``: the framework profiler's trace of the last training step, as Chrome tracing
  JSON in ``profiling_file``.

Relative paths are in the output folder.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import time

from deepmd_paddle.io import checkpoint
from deepmd_paddle.train import run_folder

log = logging.getLogger(__name__)
# lcurve.out's column -> DeePMD-kit's TensorBoard tag
TB_TAGS = {"rmse": "l2_loss", "rmse_e": "l2_ener_loss", "rmse_ae": "l2_atom_ener_loss", "rmse_f": "l2_force_loss",
           "rmse_v": "l2_virial_loss", "rmse_pf": "l2_pref_force_loss"}


def tensorboard_writer_class():
    """tensorboardX's SummaryWriter (the schema refuses ``tensorboard: true`` without it)."""
    from tensorboardX import SummaryWriter

    return SummaryWriter


class Records:
    def __init__(self, trainer, training: dict):
        self.trainer, self.tr = trainer, training
        out = trainer.outdir
        self.fp = self._open_lcurve(os.path.join(out, training["disp_file"])) if training["disp_training"] else None
        self.timing = training["time_training"]
        self.t_last, self.c_last, self.step_last = time.perf_counter(), time.process_time(), trainer.start_step
        self.train_time, self.timed_steps = 0.0, 0
        self.tb = None
        if training["tensorboard"]:
            writer = tensorboard_writer_class()
            root = os.path.join(out, training["tensorboard_log_dir"])
            for sub in ("train", "test"):  # an earlier run's events (DeePMD-kit removes the whole folder)
                for old in glob.glob(os.path.join(root, sub, "events.out.tfevents.*")):
                    os.remove(old)
            self.tb = {sub: writer(os.path.join(root, sub)) for sub in ("train", "test")}
            log.info("TensorBoard event files in %s (tensorboard --logdir %s)", root, root)
        self.profiler = None

    # ----------------------------------------------------------------- lcurve.out
    def _open_lcurve(self, path: str):
        """A new run starts ``disp_file`` afresh (run_folder has made sure that it replaces no other
        run's); a restart keeps its rows before ``start_step`` (rewritten atomically) and appends."""
        t = self.trainer
        restarted = t.start_step > 0 and os.path.isfile(path)
        kept = run_folder.lcurve_rows_before(path, t.start_step) if restarted else []
        if kept:
            checkpoint.write_text(path, "".join(kept))
        fp = open(path, "a" if kept else "w")
        if not kept:
            cols = ["rmse"] + [f"rmse_{k}" for k in t.loss.keys]
            head = "# {:5s}".format("step")
            for c in cols:
                head += (f"   {c + '_val':>11s} {c + '_trn':>11s}" if t.valid_data else f"   {c + '_trn':>11s}")
            fp.write(head + "   {:8s}\n".format("lr"))
            fp.write("# If there is no available reference data, rmse_*_{val,trn} will print nan\n")
        fp.flush()
        return fp

    # ----------------------------------------------------------------- per step
    def train_step(self, step: int, lr: float, loss, l2: dict, natoms: int) -> None:
        """After the loss of batch ``step``: TensorBoard's training scalars when due (steps that
        train: not the last display at ``numb_steps``)."""
        if self.tb is not None and step % self.tr["tensorboard_freq"] == 0 and step < self.trainer.numb_steps:
            errors = self.trainer._errors(loss, l2, natoms)
            for k, v in errors.items():
                self.tb["train"].add_scalar(TB_TAGS.get(k, k), v, step)
            self.tb["train"].add_scalar("learning_rate", lr, step)

    def display(self, step: int, lr: float, trn: dict, val: dict | None) -> None:
        """A row of lcurve.out and a log line (with the time per step when ``time_training``: wall and
        CPU seconds per step since the last display, CPU of all threads of this process; CPU < wall x
        threads means the process waited, e.g. for the cores or its peers)."""
        now = time.perf_counter()
        steps = step - self.step_last
        speed = (now - self.t_last) / steps if steps > 0 else None
        cpu = (time.process_time() - self.c_last) / steps if steps > 0 else None
        if speed is not None and (step - self.trainer.start_step > self.tr["disp_freq"] or
                                  self.trainer.numb_steps - self.trainer.start_step < 2 * self.tr["disp_freq"]):
            self.train_time, self.timed_steps = self.train_time + now - self.t_last, self.timed_steps + steps
        if self.fp is not None:
            line = f"{step:7d}"
            for k in trn:
                line += f"   {val[k]:11.2e} {trn[k]:11.2e}" if val else f"   {trn[k]:11.2e}"
            self.fp.write(line + f"   {lr:8.1e}\n")
            self.fp.flush()
        msg = f"step {step:>7d}  trn " + " ".join(f"{k}={v:.3e}" for k, v in trn.items())
        if val:
            msg += "  val " + " ".join(f"{k}={v:.3e}" for k, v in val.items())
        msg += f"  lr={lr:.2e}"
        if self.timing and speed is not None:
            eta = (self.trainer.numb_steps - step) * speed
            msg += f"  {speed:.3f} s/step (CPU {cpu:.3f} s)  ETA {_hms(eta)}"
        log.info(msg)
        if self.tb is not None and val:
            for k, v in val.items():
                self.tb["test"].add_scalar(TB_TAGS.get(k, k), v, step)
        self.t_last, self.c_last, self.step_last = time.perf_counter(), time.process_time(), step

    def profile_start(self, step: int) -> None:
        """Start the profiler before the last training step (``profiling``)."""
        if self.tr["profiling"] and step == self.trainer.numb_steps - 1 and self.profiler is None:
            import paddle.profiler as profiler

            self.profiler = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
            self.profiler.start()

    def profile_stop(self) -> None:
        if self.profiler is not None:
            self.profiler.stop()
            path = os.path.join(self.trainer.outdir, self.tr["profiling_file"])
            tmp = path + ".tmp"
            self.profiler.export(tmp, format="json")
            os.replace(tmp, path)
            log.info("profile of the last training step in %s (Chrome tracing)", path)
            self.profiler = None

    def close(self) -> None:
        if self.fp is not None:
            self.fp.close()
        if self.tb is not None:
            for w in self.tb.values():
                w.close()
        if self.profiler is not None:
            self.profiler.stop()
        if self.timing and self.timed_steps:
            log.info("average training time: %.4f s/step over %d steps%s", self.train_time / self.timed_steps,
                     self.timed_steps, f" (the first {self.tr['disp_freq']} excluded)"
                     if self.timed_steps < self.trainer.numb_steps - self.trainer.start_step else "")


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
