"""Training with frame and atomic parameters: the trainer's three contacts with them.

- ``attach``: the data sets read ``fparam.npy``/``aparam.npy`` as the model's fitting net asks
  (``deepmd_paddle.data.params``);
- ``set_stats``: their statistics (computed with the descriptor's, from the same frames) go into
  the model, which normalises the inputs with them (``deepmd_paddle.model.fit_inputs``);
- ``inputs``: a batch's parameters as the model's ``fparam``/``aparam`` arguments.
"""
from __future__ import annotations

import logging

import numpy as np

from deepmd_paddle.data import params as data_params

log = logging.getLogger(__name__)


def attach(datasets, fitting) -> None:
    """Read the parameters the fitting net takes into every system of ``datasets`` (None skipped)."""
    cfg = fitting.input_config()
    if not (cfg["numb_fparam"] or cfg["numb_aparam"]):
        return
    for ds in datasets:
        if ds is not None:
            data_params.attach(ds.systems, cfg["numb_fparam"], cfg["numb_aparam"], cfg["default_fparam"])


def stats(systems, frames, protection: float) -> dict:
    """Their statistics over the statistics frames (``data.params.param_stats``)."""
    return data_params.param_stats(systems, frames, protection)


def set_stats(model, values: dict | None) -> None:
    if model.fitting.inputs is None or not values:
        return
    model.fitting.inputs.set_stats(values)
    for kind, (avg, inv_std) in values.items():
        log.info("%s statistics: avg %s, std %s", kind, np.round(avg, 6).tolist(), np.round(1 / inv_std, 6).tolist())


def inputs(batch: dict) -> dict:
    """{"fparam": nf x nfp, "aparam": nf x natoms x nap} of a batch of tensors (the keys it has)."""
    return {k: batch[k] for k in ("fparam", "aparam") if k in batch}
