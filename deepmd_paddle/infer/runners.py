"""The three ways ``DeepPot`` runs a model, behind one interface. Each runner has

- ``full(coord, atype, box, atomic, fparam=None, aparam=None)``: whole frames -> {energy, force,
  virial, atom_energy, atom_virial (when ``atomic``), nmax, mindist (None where the model checked
  itself)};
- ``lower(coord, atype, nlist, shift, centre, fparam=None, aparam=None)``: a block of centre atoms
  with a given neighbour list -> {atom_energy, force, virial, atom_virial}
  (``EnergyModel.forward_lower``; aparam: the centre atoms');
- ``desc(coord, atype, nlist, shift, centre)``: their descriptor (``descriptor_lower``).

Arrays in, NumPy out, named as the frozen programs name them (``io.frozen.PROGRAMS``). The frame
and atomic parameters are passed when the model takes them (DeepPot checks that), and None
otherwise: the programs of a model take exactly the ones it has, as their last inputs.
"""
from __future__ import annotations

import paddle

from ..io import frozen
from ..io.frozen_file import ModelFileError  # noqa: F401  (the package's API)


def _named(program: str, outs) -> dict:
    return dict(zip(frozen.PROGRAMS[program][2], outs))


def _with_params(names: list, arrays: list, fparam, aparam) -> tuple:
    """The input names and arrays of a program, the parameters given appended."""
    extra = [(k, a) for k, a in (("fparam", fparam), ("aparam", aparam)) if a is not None]
    return list(names) + [k for k, _ in extra], list(arrays) + [a for _, a in extra]


class DynamicRunner:
    """The ``EnergyModel`` itself, in dynamic mode (its own input checks run). A model read
    from a file gets constant weights: the backward pass for forces then computes no weight
    gradients, and the model takes its evaluation-only fused embedding (a model object passed
    in is left trainable)."""

    def __init__(self, model, owned: bool):
        self.model = model.eval()
        if owned:
            for p in self.model.parameters():
                p.stop_gradient = True

    def full(self, coord, atype, box, atomic, fparam=None, aparam=None):
        t = paddle.to_tensor
        out = self.model(t(coord), t(atype), None if box is None else t(box), do_atomic_virial=atomic,
                         fparam=None if fparam is None else t(fparam), aparam=None if aparam is None else t(aparam))
        return {**{k: v.numpy() for k, v in out.items()}, "nmax": None, "mindist": None}

    def lower(self, coord, atype, nlist, shift, centre, fparam=None, aparam=None):
        t = paddle.to_tensor
        out = self.model.forward_lower(t(coord), t(atype), t(nlist), t(shift), t(centre), do_atomic_virial=True,
                                       fparam=None if fparam is None else t(fparam),
                                       aparam=None if aparam is None else t(aparam))
        return {k: out[k].numpy() for k in frozen.PROGRAMS["lower"][2]}

    def desc(self, coord, atype, nlist, shift, centre):
        t = paddle.to_tensor
        with paddle.no_grad():
            return self.model.descriptor_lower(t(coord), t(atype), t(nlist), t(shift), t(centre)).numpy()


class PredictorRunner:
    """``paddle.inference`` predictors, one per program, created on first use
    (``disable_onednn``: oneDNN gives wrong numbers for these nets on CPU). ``source``: a frozen
    model (``io.frozen_file``); a predictor reads its program files when it is created."""

    def __init__(self, source, threads: int):
        self.source, self.threads = source, threads
        self.predictors: dict = {}

    def _run(self, name, arrays, names=None):
        pred = self.predictors.get(name)
        if pred is None:
            suffix = frozen.PROGRAMS[name][0]
            with self.source.programs([suffix]) as prefix:
                cfg = paddle.inference.Config(prefix + suffix + ".json", prefix + suffix + ".pdiparams")
                cfg.disable_onednn()  # wrong numbers on CPU otherwise
                cfg.disable_glog_info()
                cfg.set_cpu_math_library_num_threads(self.threads)
                pred = self.predictors[name] = paddle.inference.create_predictor(cfg)
        for key, a in zip(names or frozen.PROGRAMS[name][1], arrays):
            pred.get_input_handle(key).copy_from_cpu(a)
        pred.run()
        return _named(name, [pred.get_output_handle(n).copy_to_cpu() for n in pred.get_output_names()])

    def full(self, coord, atype, box, atomic, fparam=None, aparam=None):
        name = "nopbc" if box is None else "pbc"
        base = [coord, atype] if box is None else [coord, atype, box]
        names, arrays = _with_params(frozen.PROGRAMS[name][1], base, fparam, aparam)
        return self._run(name, arrays, names)

    def lower(self, coord, atype, nlist, shift, centre, fparam=None, aparam=None):
        names, arrays = _with_params(frozen.PROGRAMS["lower"][1], [coord, atype, nlist, shift, centre], fparam, aparam)
        return self._run("lower", arrays, names)

    def desc(self, *arrays):
        return self._run("desc", arrays)["descriptor"]


class JitRunner:
    """``paddle.jit.load``: one layer whose methods are the programs (Paddle's naming rule),
    loaded from the private folder of ``source.programs()`` (jit.load reads every
    ``<prefix>*.<name>.json`` next to the model as a method)."""

    def __init__(self, source):
        with source.programs() as prefix:
            self.layer = paddle.jit.load(prefix)
        self.layer.eval()

    def _run(self, name, method, arrays):
        with paddle.no_grad():
            out = method(*[paddle.to_tensor(a) for a in arrays])
        return _named(name, [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])])

    def full(self, coord, atype, box, atomic, fparam=None, aparam=None):
        _, params = _with_params([], [], fparam, aparam)
        if box is None:
            return self._run("nopbc", self.layer.nopbc, [coord, atype] + params)
        return self._run("pbc", self.layer.forward, [coord, atype, box] + params)

    def lower(self, coord, atype, nlist, shift, centre, fparam=None, aparam=None):
        _, params = _with_params([], [], fparam, aparam)
        return self._run("lower", self.layer.lower, [coord, atype, nlist, shift, centre] + params)

    def desc(self, *arrays):
        return self._run("desc", self.layer.desc, arrays)["descriptor"]


# ----------------------------------------------------------------------------- frozen models
def register_operators(prefix: str, meta: dict) -> None:
    """Register the C++ operators a frozen model was traced with, and refuse a model frozen with
    other operator signatures (Paddle would abort the process running it)."""
    from ..kernels.build import load_library

    if load_library() is None:
        raise RuntimeError(f"{prefix}: this model was frozen with the C++ operator, which is not available in "
                           "this process (see the warning above). Freeze it again with `dpp freeze --portable` "
                           "for a plain-Paddle graph, or make a C++ compiler available.")
    current = frozen.custom_op_signatures()
    changed = sorted(op for op, sig in meta.get("custom_ops", {}).items() if current.get(op) != sig)
    if changed:
        raise ModelFileError(f"{prefix}: frozen with another version of the C++ operator(s) {changed} (inputs or "
                             "attributes differ, and Paddle would abort running it); freeze the model again "
                             "with this version of deepmd_paddle")
