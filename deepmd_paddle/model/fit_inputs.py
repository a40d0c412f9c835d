"""Frame and atomic parameters: inputs of the fitting net besides the descriptor.

DeePMD-kit's ``numb_fparam`` values per frame (``fparam.npy``) and ``numb_aparam`` values per
atom (``aparam.npy``) enter the fitting net of every atom after normalisation by statistics of
the training data (``deepmd/dpmodel/fitting/general_fitting.py``, ``deepmd/tf/fit/ener.py``)::

    x_i = [D_i, (fparam - fparam_avg) * fparam_inv_std, (aparam_i - aparam_avg) * aparam_inv_std]

in that order. ``use_aparam_as_mask``: the atomic parameter is not appended (DeePMD-kit uses it
as a mask elsewhere; its statistics are still kept). ``default_fparam``: the frame parameter used
when none is given (DeePMD-kit's PyTorch/JAX backends; its TensorFlow backend refuses the key).
The statistics (``data.params.param_stats``) are float64 buffers; the normalised rows are
float64, cast to the fitting precision where they meet the descriptor.
"""
from __future__ import annotations

import numpy as np
import paddle


class FitInputs(paddle.nn.Layer):
    """The normalisation of the frame and atomic parameters of one fitting net."""

    def __init__(self, numb_fparam: int = 0, numb_aparam: int = 0, default_fparam=None,
                 use_aparam_as_mask: bool = False):
        super().__init__()
        check_fit_inputs(numb_fparam, numb_aparam, default_fparam)
        self.numb_fparam, self.numb_aparam = int(numb_fparam), int(numb_aparam)
        self.use_aparam_as_mask = bool(use_aparam_as_mask)
        self.default_fparam = None if default_fparam is None else [float(v) for v in default_fparam]
        for kind, n in (("fparam", self.numb_fparam), ("aparam", self.numb_aparam)):
            if n:
                self.register_buffer(f"{kind}_avg", paddle.zeros([n], "float64"))
                self.register_buffer(f"{kind}_inv_std", paddle.ones([n], "float64"))

    @property
    def width(self) -> int:
        """Columns appended to the descriptor."""
        return self.numb_fparam + (0 if self.use_aparam_as_mask else self.numb_aparam)

    def config(self) -> dict:
        return {"numb_fparam": self.numb_fparam, "numb_aparam": self.numb_aparam,
                "default_fparam": self.default_fparam, "use_aparam_as_mask": self.use_aparam_as_mask}

    def set_stats(self, stats: dict) -> None:
        """``stats``: {"fparam": (avg, inv_std), "aparam": (avg, inv_std)}, each of the kind's width."""
        for kind, (avg, inv_std) in stats.items():
            n = getattr(self, f"numb_{kind}")
            getattr(self, f"{kind}_avg").set_value(np.asarray(avg, "float64").reshape(n))
            getattr(self, f"{kind}_inv_std").set_value(np.asarray(inv_std, "float64").reshape(n))

    def rows(self, fparam, aparam, centre_types):
        """The normalised parameters of the centre atoms, (nf*nc) x width float64, in the order of
        ``centre_types`` (nf x nc) flattened; None when nothing is appended.
        fparam nf x numb_fparam (None: ``default_fparam``); aparam nf x nc x numb_aparam."""
        if self.width == 0:
            return None
        ones = paddle.ones_like(centre_types.unsqueeze(-1), dtype="float64")  # nf x nc x 1
        parts = []
        if self.numb_fparam:
            if fparam is None:
                if self.default_fparam is None:
                    raise ValueError(f"this model takes a frame parameter (numb_fparam = {self.numb_fparam}) and has "
                                     "no default_fparam: give fparam")
                fparam = paddle.to_tensor(np.asarray([self.default_fparam], "float64"))  # 1 x nfp
            fp = (fparam.astype("float64").reshape([-1, self.numb_fparam]) - self.fparam_avg) * self.fparam_inv_std
            parts.append(fp.unsqueeze(1) * ones)  # nf x nc x nfp
        if self.numb_aparam and not self.use_aparam_as_mask:
            if aparam is None:
                raise ValueError(f"this model takes an atomic parameter (numb_aparam = {self.numb_aparam}): "
                                 "give aparam")
            ap = aparam.astype("float64")  # nf x nc x nap
            parts.append((ap - self.aparam_avg) * self.aparam_inv_std)
        x = parts[0] if len(parts) == 1 else paddle.concat(parts, axis=-1)
        return x.reshape([-1, self.width])

    def serialize(self, arrays: dict) -> dict:
        """DeePMD-kit's ``@variables`` entries (array references, or None)."""
        out = {}
        for kind in ("fparam", "aparam"):
            for stat in ("avg", "inv_std"):
                name = f"{kind}_{stat}"
                if getattr(self, f"numb_{kind}"):
                    key = f"/variable_{len(arrays):04d}"
                    arrays[key] = getattr(self, name).numpy()
                    out[name] = key
                else:
                    out[name] = None
        return out

    def deserialize_stats(self, variables: dict, arrays) -> None:
        """Set the statistics from DeePMD-kit's ``@variables`` (entries left None keep avg 0, inv_std 1:
        DeePMD-kit's TensorFlow graph stores no aparam statistics with ``use_aparam_as_mask``)."""
        stats = {}
        for kind in ("fparam", "aparam"):
            n = getattr(self, f"numb_{kind}")
            refs = variables.get(f"{kind}_avg"), variables.get(f"{kind}_inv_std")
            if n == 0 or refs[0] is None or refs[1] is None:
                continue
            avg, inv = (np.asarray(arrays(r), "float64").reshape(-1) for r in refs)
            if avg.size != n or inv.size != n:
                raise ValueError(f"fitting {kind}_avg/{kind}_inv_std of sizes {avg.size}/{inv.size}; "
                                 f"numb_{kind} is {n}")
            stats[kind] = (avg, inv)
        self.set_stats(stats)


def append_rows(d, extra, width: int, extra_width: int):
    """[d, extra] along the features (nat x (width + extra_width)), in d's precision; the widths
    are d's and extra's columns (ints, also in static graphs).

    Written [d, 0] + [0, extra], not as a concat: Paddle 3.3's concat double gradient (training on
    forces) fails ("Unable to fill empty grad inputs due to empty GradSlotMeta") when one part takes
    no gradient, as these constant parameter rows do (descriptor_te.fitting_input does the same)."""
    pad = paddle.nn.functional.pad
    return pad(d, [0, 0, 0, extra_width]) + pad(extra.astype(d.dtype), [0, 0, width, 0])


def check_fit_inputs(numb_fparam, numb_aparam, default_fparam) -> None:
    """ValueError naming the ``fitting_net`` key at fault."""
    for key, n in (("numb_fparam", numb_fparam), ("numb_aparam", numb_aparam)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"fitting_net/{key}: got {n!r}; need an integer >= 0")
    if default_fparam is not None:
        values = list(default_fparam) if isinstance(default_fparam, (list, tuple, np.ndarray)) else None
        if values is None or len(values) != numb_fparam or not all(
                isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
            raise ValueError(f"fitting_net/default_fparam: got {default_fparam!r}; need numb_fparam = {numb_fparam} "
                             "values (finite numbers, or null)")
