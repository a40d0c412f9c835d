"""DPLR in training (``model/modifier`` of type ``dipole_charge``, model/dplr.py).

As DeePMD-kit does, the long-range correction of every frame is subtracted from its labels (energy,
forces, virial; only the labels a frame has) when the data are loaded, before the statistics: the
energy bias and the loss then fit the short-range part, and ``DeepPot`` adds the correction back.
The dipole model is read once from ``model_name`` (a DeePMD-kit frozen dipole ``.pb``) when a run
starts from an input; its architecture goes into the model section (the ``dipole_model`` record)
and its weights into the model's, so a restart, a frozen model or ``dpp test`` need not the file.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)


def read_dipole_model(model_cfg: dict):
    """The dipole model of the input's ``model/modifier`` (None without one or when the section
    already carries the record); the record is written into the section."""
    from deepmd_paddle.model.dplr import RECORD, TYPE

    mod = model_cfg.get("modifier")
    if not mod or mod.get(RECORD) is not None:
        return None
    if mod.get("type") != TYPE:
        raise ValueError(f"model/modifier type {mod.get('type')!r}; only {TYPE!r} is supported")
    path = mod["model_name"]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model/modifier/model_name: the dipole model {path!r} does not exist (a DeePMD-kit "
                                "frozen dipole model, `dp freeze` of a training with fitting_net type 'dipole')")
    from deepmd_paddle.io.tf_dipole import load_dipole_pb
    from deepmd_paddle.io.tf_proto import GraphFileError, UnsupportedGraphError

    try:
        dipole = load_dipole_pb(path)
    except (GraphFileError, UnsupportedGraphError) as e:
        raise ValueError(f"model/modifier/model_name: {e}") from None
    mod[RECORD] = dipole.get_config()
    log.info("DPLR: dipole model %s (selected types %s), Ewald h %g A, beta %g 1/A", path,
             [dipole.type_map[t] for t in dipole.get_sel_type()], mod.get("ewald_h", 1.0), mod.get("ewald_beta", 0.4))
    return dipole


def set_dipole_weights(model, dipole) -> None:
    """Copy the weights of the dipole model read from its file into the model's modifier."""
    if dipole is not None:
        model.modifier.dipole.set_state_dict(dipole.state_dict())


def modify_systems(modifier, systems: list, what: str) -> None:
    """Subtract the correction from the labels of every frame of ``systems`` (in place)."""
    if modifier is None or not systems:
        return
    t0, nframes = time.perf_counter(), 0
    for s in systems:
        if s.box is None:
            raise ValueError(f"{s.path}: an open system (no box), but model/modifier (DPLR's dipole_charge) needs "
                             "periodic frames (as in DeePMD-kit)")
        has = {k: np.asarray(s.found.get(k, np.zeros(s.nframes, bool)), bool) for k in ("energy", "force", "virial")}
        frames = np.flatnonzero(has["energy"] | has["force"] | has["virial"])
        if frames.size == 0:
            continue
        e, f, v = modifier.correction(s.coord[frames], s.box[frames], s.atype)
        for key, corr in (("energy", e), ("force", f), ("virial", v)):
            take = has[key][frames]
            if take.any():
                label = s.labels[key]
                label[frames[take]] = label[frames[take]] - corr[take].reshape(label[frames[take]].shape)
        nframes += frames.size
    log.info("DPLR: long-range correction subtracted from the labels of %d %s frame(s) in %.1f s", nframes, what,
             time.perf_counter() - t0)
