"""The training loop: data -> statistics -> Adam on DeePMD-kit's ``ener`` loss, with checkpoints.

Step ``s`` means "after s updates". Iteration s: save a checkpoint when due (s a multiple of
``save_freq``, or the last step), draw batch s, evaluate the loss, write a line to ``disp_file``
when s is a multiple of ``disp_freq`` (training errors on batch s, validation errors on
``numb_btch`` validation batches, both with the parameters of step s), then update. The run ends
at ``numb_steps`` with a last line and checkpoint. A checkpoint holds everything that decides the
future (weights, Adam's slots, both samplers' states), so ``restart`` continues the same
trajectory: it truncates ``disp_file`` to the steps before its own and carries on.

Ctrl-C (SIGINT) asks the loop to stop at the next step boundary, save a checkpoint and return;
a second Ctrl-C stops at once without saving.

Started by ``paddle.distributed.launch`` (``dpp train --nproc N``), the same loop trains data
parallel: deepmd_paddle.train.parallel says what each rank does.
"""
from __future__ import annotations

import copy
import gc
import json
import logging
import os
import signal
import time

import numpy as np
import paddle

from deepmd_paddle.data import atom_data
from deepmd_paddle.data.batch import DataSet, run_length
from deepmd_paddle.data.stats import (check_system_frames, data_energy_bias, env_mat_sums, sel_and_min_dist,
                                      stat_frames, stat_from_sums)
from deepmd_paddle.data.system import load_system
from deepmd_paddle import runtime
from deepmd_paddle.io import checkpoint
from deepmd_paddle.model.options import trained_parameters
from deepmd_paddle.train import dplr, fit_params, fused_step, init_from, optim, parallel, records, run_folder, stat_file
from deepmd_paddle.train.loss import EnerLoss
from deepmd_paddle.train.lr import LearningRateExp

log = logging.getLogger(__name__)
FUSED_ENV = "DEEPMD_PADDLE_FUSED_TRAINING"  # "0": autograd through the Paddle layers instead


def to_paddle(batch: dict, dtype: str) -> dict:
    """Numpy batch -> Paddle tensors: coord and box in the model's precision, labels in float64
    (the model's outputs are float64 whatever its precision)."""
    out = dict(batch)
    for k, v in batch.items():
        if isinstance(v, np.ndarray) and v.dtype != np.int32:
            out[k] = paddle.to_tensor(v.astype(dtype if k in ("coord", "box") else np.float64))
        elif isinstance(v, np.ndarray):
            out[k] = paddle.to_tensor(v)
    return out


class Trainer:
    def __init__(self, config: dict, outdir: str = ".", restart: str | None = None, init_model=None,
                 overwrite: bool = False, out_json: str | None = None, skip_neighbor_stat: bool = False):
        """``overwrite``: replace another run's checkpoints and learning curve found in the output folder
        (otherwise refused: train.run_folder). ``init_model``: a model path or an ``init_from.InitFrom``.
        ``out_json``: the normalised input (default OUTDIR/out.json). ``skip_neighbor_stat``: no neighbour search."""
        self.out_json = out_json or os.path.join(outdir, "out.json")
        if restart and init_model:
            raise ValueError("give either restart or init_model, not both")
        self.outdir, self.skip_neighbor_stat = outdir, skip_neighbor_stat
        self.par = parallel.Parallel()  # rank and world size; a single process when not launched
        self.prefix = os.path.join(outdir, config["training"]["save_ckpt"])
        self._locks, self._replaced, self.run_id = [], [], None
        if self.par.is_main:
            self._claim_folder(config["training"], restart, overwrite)
        try:
            self._setup(config, restart, init_model)
        except BaseException:
            self.release()
            raise

    def _claim_folder(self, tr: dict, restart, overwrite: bool) -> None:
        """Lock the output and checkpoint folders, refuse another run's files (run_folder)."""
        from deepmd_paddle.config import check_output_paths

        if not os.path.isfile(self.outdir):  # (-o naming a file: claim says so)
            check_output_paths(tr, self.outdir)  # the checkpoint and lcurve folders, before any data is read
        lcurve = os.path.join(self.outdir, tr["disp_file"]) if tr["disp_training"] else None
        self.run_id, self._locks, self._replaced = run_folder.claim(self.outdir, self.prefix, lcurve, restart,
                                                                    overwrite)

    def release(self) -> None:
        """Drop the folder locks (the end of ``run`` does; so does the end of the process)."""
        while self._locks:
            self._locks.pop().release()

    def _setup(self, config: dict, restart, init_model) -> None:
        init_model = init_from.as_init(init_model)  # a path (--init-model) or an InitFrom (train/init_from.py)
        self.config = cfg = init_from.prepare_config(copy.deepcopy(config), None if restart else init_model)
        par, outdir = self.par, self.outdir
        tr = cfg["training"]
        seed = tr["seed"]
        if seed is not None:
            paddle.seed(seed)
        type_map, rcut = cfg["model"]["type_map"], cfg["model"]["descriptor"]["rcut"]
        self.train_data = self._dataset(tr["training_data"], type_map, parallel.rank_seed(seed, par.rank), rcut)
        valid = tr["validation_data"]
        self.valid_data = None if valid is None else self._dataset(valid, type_map, None if seed is None else seed + 1,
                                                                   rcut)
        self.numb_btch = 0 if valid is None else valid["numb_btch"]
        self.numb_steps = tr["numb_steps"] = run_length(tr, self.train_data)  # (numb_epoch: from the data)
        log.info("%d CPU threads (set %s to change)", runtime.set_paddle_threads(),  # after the data: errors first
                 runtime.THREADS_ENV)

        # a checkpoint is read by rank 0 only; the data scans below run on every rank (the same
        # frames, so no rank idles in a collective past gloo's timeout), then rank 0's results win
        ckpt = par.broadcast((checkpoint.load(restart) if restart else init_from.source_tensors(init_model))
                             if par.is_main and (restart or init_model) else None)
        if ckpt is not None:
            cfg["model"] = ckpt[1]["config"]["model"]
            if cfg["model"]["type_map"] != type_map:
                raise ValueError(f"checkpoint type_map {cfg['model']['type_map']} differs from the input's {type_map}")
        else:
            self._fill_model_config(cfg["model"], seed)
            cfg["model"] = par.broadcast(cfg["model"])
        from deepmd_paddle.model import EnergyModel
        from deepmd_paddle.model.mixed_precision import model_section

        dipole = dplr.read_dipole_model(cfg["model"])  # DPLR: model/modifier's dipole model, read once (train/dplr.py)
        self.model = EnergyModel.from_config(model_section(cfg))  # (training/mixed_precision: model/mixed_precision.py)
        dplr.set_dipole_weights(self.model, dipole)
        fit_params.attach([self.train_data, self.valid_data], self.model.fitting)  # fparam.npy, aparam.npy
        self.dtype = self.model.descriptor.precision
        self.model.min_nbor_dist = ckpt[1].get("min_nbor_dist") if ckpt is not None else self._min_nbor_dist
        if ckpt is not None:
            checkpoint.load_model_tensors(self.model, ckpt[0], ckpt[1]["base"] + ("" if init_model else ".safetensors"))
            self._modify_labels()
            init_from.after_load(self.model, None if restart else init_model, self.train_data.systems)
        else:
            self._modify_labels()
            stat_seed = seed if seed is not None or par.size == 1 else par.broadcast(
                int(np.random.default_rng().integers(2 ** 62)))  # the same frames on every rank
            self._set_statistics(*par.broadcast(self._statistics(stat_seed)))
        ntypes = len(type_map)
        # the loss gradient assembled around the fused C++ embedding (train/fused_step.py), or
        # autograd through the Paddle layers (DEEPMD_PADDLE_FUSED_TRAINING=0, or no operators)
        self.fused = os.environ.get(FUSED_ENV, "1") != "0" and fused_step.supported(self.model)
        log.info("training step: %s%s", "fused C++ embedding" if self.fused else "autograd through Paddle layers",
                 "" if self.model.mixed_precision is None else f" (mixed precision {self.model.mixed_precision})")
        self._grads_ready = False
        if self.fused:  # data parallel: rank 0's weights everywhere, gradients averaged by hand
            self.ddp = self.model
            par.sync_parameters(self.model)
            if par.size > 1:
                nparam = sum(int(np.prod(p.shape)) for p in self.model.parameters() if not p.stop_gradient)
                log.info("gradients: %d parameters averaged over %d workers in 1 all-reduce per step "
                         "(fused training step)", nparam, par.size)
        else:
            self.ddp = par.wrap(self.model, find_unused=any((s.type_counts(ntypes) == 0).any()
                                                             for s in self.train_data.systems))
        self.lr = LearningRateExp.from_config(cfg["learning_rate"], self.numb_steps)
        self.lr_scale = parallel.lr_scale(cfg["learning_rate"].get("scale_by_worker", "linear"), par.size)
        if self.lr_scale != 1.0:
            log.info("learning rate x %.4g (%d workers, scale_by_worker %s)", self.lr_scale, par.size,
                     cfg["learning_rate"]["scale_by_worker"])
        self.loss = EnerLoss(cfg["learning_rate"]["start_lr"], **cfg["loss"])
        # Adam over the trainable parameters (train/optim.py: merged kernel for float32, one Adam per dtype)
        self.opt = optim.adam(self.lr.value(0) * self.lr_scale, trained_parameters(self.model))
        self.start_step = 0
        if restart:
            tensors, meta = ckpt
            checkpoint.load_optimizer_tensors(self.model, self.opt, tensors, meta["base"] + ".safetensors")
            self.start_step = meta["step"]
            self._load_sampler_states(meta["state"])
        self._stop = False
        if par.is_main:  # every input has been read and checked: now an earlier run's files may go
            run_folder.remove_replaced(self._replaced, keep=None if ckpt is None else ckpt[1]["base"])
            checkpoint.write_text(self.out_json, json.dumps(cfg, indent=1))  # DeePMD-kit's record

    # ----------------------------------------------------------------- set-up
    def _modify_labels(self) -> None:
        """DPLR: the long-range correction out of the labels, before anything reads them (train/dplr.py)."""
        for name, data in (("training", self.train_data), ("validation", self.valid_data)):
            dplr.modify_systems(self.model.modifier, [] if data is None else data.systems, name)

    def _dataset(self, data: dict, type_map, seed, rcut: float) -> DataSet:
        need = EnerLoss(1.0, **self.config["loss"]).atom_data  # per-atom data of the loss terms (data.atom_data)
        systems = [atom_data.attach(load_system(p, type_map, data["fmt"]), need) for p in data["systems"]]
        for s in systems:  # every frame once, here: not when a bad one is drawn at step 10,000
            check_system_frames(s, rcut, len(type_map))
        ds = DataSet(systems, data["batch_size"], data["auto_prob"], data["sys_probs"], seed)
        systems = ds.systems  # (batch_size "filter:N" drops the larger systems)
        log.info("%d system(s):\n%s", len(systems), "\n".join(
            f"  {s.path}  natoms {s.natoms}  frames {s.nframes}  batch {b}  batches {n}  prob {p:.3f}  "
            f"pbc {s.box is not None}  labels {[k for k, f in s.found.items() if f.any()]}"
            for s, b, n, p in zip(systems, ds.batch_size, ds.nbatches, ds.probs)))
        return ds

    def _fill_model_config(self, model_cfg: dict, seed) -> None:
        """Resolve ``sel: auto``, keep the data's smallest pair distance (sel_and_min_dist); seed the nets."""
        desc = model_cfg["descriptor"]
        desc["sel"], self._min_nbor_dist = sel_and_min_dist(desc["sel"], self.train_data.systems, desc["rcut"],
                                                            model_cfg["type_map"], self.skip_neighbor_stat)
        for i, part in enumerate((desc, model_cfg["fitting_net"])):
            if part["seed"] is None and seed is not None:
                part["seed"] = seed + i

    def _statistics(self, seed) -> tuple:
        """(davg, dstd, energy bias) from ``data_stat_nbatch`` batches of every system, or read from
        ``stat_file`` (train/stat_file.py; rank 0 writes it); then the fparam/aparam statistics (always
        computed from those frames)."""
        mc, desc, systems = self.config["model"], self.model.descriptor, self.train_data.systems
        frames = stat_frames(systems, self.train_data.batch_size, mc["data_stat_nbatch"], seed)
        t0 = time.perf_counter()
        atom_ener = self.model.fitting.atom_ener  # types with one: that energy is their bias
        sums, bias = stat_file.statistics(
            self.config["training"].get("stat_file"), mc["type_map"], desc,
            lambda: env_mat_sums(desc, systems, frames, self.dtype),
            lambda: data_energy_bias(systems, frames, len(mc["type_map"]), mc["fitting_net"]["rcond"], atom_ener),
            lambda: [mc["type_map"][t] for t in sorted({int(t) for s in systems for t in s.atype})], self.par.is_main)
        davg, dstd = stat_from_sums(sums, desc.get_nnei(), desc.rcut, mc["data_stat_protect"],
                                    mc["descriptor"]["set_davg_zero"])
        bias = np.array([b if a is None else a for b, a in zip(bias, atom_ener)])  # (a stat file's bias too)
        log.info("statistics from %d frames in %.1f s; energy bias per type %s",
                 sum(len(f) for f in frames), time.perf_counter() - t0, np.round(bias, 6).tolist())
        return davg, dstd, bias, fit_params.stats(self.train_data.systems, frames, mc["data_stat_protect"])

    def _set_statistics(self, davg, dstd, bias, param_stats=None) -> None:
        fit_params.set_stats(self.model, param_stats)
        self.model.descriptor.set_stat(davg, dstd)
        self.model.fitting.set_bias(bias)

    def _load_sampler_states(self, state: dict) -> None:
        """This rank's sampler state from a checkpoint (``train_ranks`` when written by several)."""
        saved = state.get("train_ranks") or [state["train"]]
        if self.par.rank < len(saved):
            self.train_data.load_state_dict(saved[self.par.rank])
        if len(saved) != self.par.size:
            log.warning("checkpoint written by %d worker(s), restarted with %d: ranks %s draw fresh batch "
                        "sequences, so the run differs from an uninterrupted one", len(saved), self.par.size,
                        list(range(len(saved), self.par.size)) or "beyond the first")
        if self.valid_data is not None and state.get("valid"):
            self.valid_data.load_state_dict(state["valid"])

    # ----------------------------------------------------------------- evaluation
    def _forward(self, batch: dict, lr: float, train: bool):
        b = to_paddle(batch, self.dtype)
        out = (self.ddp if train else self.model)(b["coord"], b["atype"], box=b["box"], create_graph=train,
                                                  **fit_params.inputs(b))
        loss, l2 = self.loss(out, b, lr)
        if train and self.par.size > 1 and not isinstance(loss, paddle.Tensor):
            loss = (out["energy"] * 0.0).sum()  # no label here: a zero gradient still joins the all-reduce
        return loss, l2

    def _errors(self, loss, l2: dict, natoms: int) -> dict:
        return self.loss.rmse(float(loss), l2, natoms)

    def validate(self, lr: float) -> dict | None:
        """Errors over ``numb_btch`` validation batches, averaged with natoms weights (DeePMD-kit).
        Data parallel: every rank draws every batch and evaluates its share (batch i on rank
        i mod n); the sums are all-reduced."""
        if self.valid_data is None:
            return None
        keys = ["rmse"] + [f"rmse_{k}" for k in self.loss.keys]
        sums = np.zeros(len(keys) + 1)  # natoms-weighted errors, then the weight
        trainable = [p for p in self.model.parameters() if not p.stop_gradient]
        for p in trainable:  # values only: the model then takes its fused evaluation path
            p.stop_gradient = True
        try:
            for i in range(self.numb_btch):
                batch = self.valid_data.next_batch()
                if i % self.par.size != self.par.rank:
                    continue
                loss, l2 = self._forward(batch, lr, train=False)
                errors = self._errors(loss, l2, batch["natoms"])
                sums += [errors[k] * batch["natoms"] for k in keys] + [batch["natoms"]]
        finally:
            for p in trainable:
                p.stop_gradient = False
        sums = self.par.sum(sums)
        return {k: v / sums[-1] for k, v in zip(keys, sums[:-1])}

    # ----------------------------------------------------------------- output
    def save(self, step: int) -> str:
        """Write checkpoint ``step`` (rank 0; every rank must call this: it gathers the samplers)."""
        samplers = self.par.gather(self.train_data.state_dict())
        if not self.par.is_main:
            return f"{self.prefix}-{step}.safetensors"
        state = {"train": samplers[0], "valid": None if self.valid_data is None else self.valid_data.state_dict()}
        if self.par.size > 1:
            state["train_ranks"] = samplers
        base = checkpoint.save(self.prefix, step, self.model, self.opt, self.config, state,
                               self.config["training"]["max_ckpt_keep"], run=self.run_id)
        log.info("saved checkpoint %s.safetensors (+ .json)", base)
        return base + ".safetensors"

    # ----------------------------------------------------------------- loop
    def forward_step(self, step: int):
        """Draw batch ``step`` and evaluate the loss: (lr, batch, loss, l2)."""
        lr = self.lr.value(step)
        batch = self.train_data.next_batch()
        if self.fused:  # the gradients are in .grad already
            loss, l2 = fused_step.step(self.model, self.loss, to_paddle(batch, self.dtype), lr)
            self._grads_ready = True
            if self.par.size > 1:  # every rank joins the all-reduce and steps, labels or not
                self.par.average_gradients(self.model.parameters())
                if not isinstance(loss, paddle.Tensor):
                    loss = paddle.zeros([], dtype="float64")
        else:
            loss, l2 = self._forward(batch, lr, train=True)
        return lr, batch, loss, l2

    def update(self, loss, lr: float) -> None:
        """One Adam step at learning rate ``lr`` (nothing when no label entered the loss)."""
        if isinstance(loss, paddle.Tensor):
            self.opt.set_lr(lr * self.lr_scale)
            if not self._grads_ready:
                loss.backward()
            self.opt.step()
            self.opt.clear_grad()
        self._grads_ready = False

    def _on_sigint(self, signum, frame):
        if self._stop:
            raise KeyboardInterrupt
        log.warning("interrupt: saving a checkpoint at the end of this step (Ctrl-C again to quit now)")
        self._stop = True

    def run(self) -> dict:
        """Train to ``numb_steps`` (or until Ctrl-C); returns {"step", "checkpoint", "interrupted"}."""
        tr = self.config["training"]
        disp_freq, save_freq = tr["disp_freq"], tr["save_freq"]
        old_handler = None
        try:
            old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: no Ctrl-C handling
            pass
        rec = records.Records(self, tr) if self.par.is_main else None  # lcurve.out, timing, TensorBoard, profile
        self.model.train()
        gc.collect()
        gc.freeze()  # the objects alive now live to the end: the collector need not walk them each step
        last_ckpt, step = None, self.start_step
        try:
            for step in range(self.start_step, self.numb_steps + 1):
                # data parallel: the ranks agree every STOP_CHECK_STEPS steps (one tiny all-reduce)
                stop = self._stop if self.par.size == 1 else (
                    step % parallel.STOP_CHECK_STEPS == 0 and self.par.any(self._stop))
                if stop:
                    last_ckpt = self.save(step)
                    log.warning("stopped at step %d; continue with --restart %s", step, last_ckpt)
                    return {"step": step, "checkpoint": last_ckpt, "interrupted": True}
                if step > self.start_step and (step % save_freq == 0 or step == self.numb_steps):
                    last_ckpt = self.save(step)
                display = tr["disp_training"] and step % disp_freq == 0
                if step == self.numb_steps and not display:
                    break
                if rec is not None:
                    rec.profile_start(step)
                lr, batch, loss, l2 = self.forward_step(step)
                if rec is not None:
                    rec.train_step(step, lr, loss, l2, batch["natoms"])
                if display:
                    trn = self.par.rms(self._errors(loss, l2, batch["natoms"]))  # over all ranks' batches
                    val = self.validate(lr)
                    if rec is not None:
                        rec.display(step, lr, trn, val)
                if step == self.numb_steps:
                    break
                self.update(loss, lr)
                if rec is not None:
                    rec.profile_stop()
            if last_ckpt is None:  # nothing saved by this run (it started at its last step): save now
                last_ckpt = self.save(step)
        finally:
            if rec is not None:
                rec.close()
            gc.unfreeze()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            self.release()
        return {"step": step, "checkpoint": last_ckpt, "interrupted": False}


def train(config: dict, outdir: str = ".", restart: str | None = None, init_model=None, overwrite: bool = False,
          out_json: str | None = None, skip_neighbor_stat: bool = False) -> dict:
    """Build a ``Trainer`` from a normalized config and run it (arguments: see ``Trainer``)."""
    return Trainer(config, outdir, restart, init_model, overwrite, out_json, skip_neighbor_stat).run()
