"""Mixed precision as DeePMD-kit's TensorFlow backend defines it (``training/mixed_precision``:
``output_prec``, ``compute_prec``; deepmd/tf/utils/network.py ``one_layer`` and ``embedding_net``).

- The descriptor's and the fitting net's weights, and every tensor outside the nets (environment
  matrix, the sum over neighbours, descriptor, energies, forces, virial, loss), are in
  ``output_prec`` (DeePMD-kit sets the descriptor's and fitting net's precision to it).
- Embedding nets (se_e2_a's, and se_a_ebd_v2's type net; not a type-embedding net, which
  DeePMD-kit keeps in the output precision): the input, W, b and idt are cast to
  ``compute_prec`` at every layer, each operation (matrix product, bias, activation, timestep,
  skip connection) runs there, and the net's output is cast back to ``output_prec``.
- Fitting nets: each hidden layer casts its input, W, b, idt to ``compute_prec``, computes
  ``act(x W + b) (* idt)`` there and casts the result back; the skip connection adds in
  ``output_prec``. The output layer runs in ``output_prec``.

Here the tensors stay in ``output_prec`` and are rounded to ``compute_prec``
(``kernels/rounding.py``) where DeePMD-kit casts and where each compute-precision operation
rounds its result; a matrix product of rounded operands is accumulated in ``output_prec`` and
then rounded (a bfloat16 product with float32 accumulation, as CPU bfloat16 instructions do it).

Gradients: the rounding is straight-through. Every derivative (forces, virial, the weight
gradient, the force term's second derivative) is that of the same chain with the roundings
taken as the identity, evaluated at the rounded values and computed in ``output_prec``; the
trained weights are the output-precision master copies. DeePMD-kit's TensorFlow graph instead
differentiates its casts as casts (gradients in compute_prec, with loss scaling for float16).
The straight-through choice needs no loss scaling and cannot underflow a float16 gradient; its
forces are the derivative of the smooth model at the rounded points, within compute_prec's
relative error (2^-8 for bfloat16, 2^-11 for float16) of the un-rounded model's.

Allowed here: ``output_prec`` float32 or float64, ``compute_prec`` float16, bfloat16 or float32
(DeePMD-kit 3.2's TensorFlow backend takes output float32 with float16/bfloat16 only; its own
example, examples/water/se_e2_a_mixed_prec, asks for output float64 with float16). A float16
value beyond 65504 is refused in eager mode (``rounding.check_finite``), never left as inf/NaN.
"""
from __future__ import annotations

import paddle

from ..kernels import rounding

OUTPUT_PRECS = ("float32", "float64")
COMPUTE_PRECS = ("float16", "bfloat16", "float32")
KEY = "training/mixed_precision"


def check_spec(spec) -> dict | None:
    """``{"output_prec", "compute_prec"}`` checked (None: off); errors name the key and the values allowed."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"{KEY} must be a mapping with output_prec and compute_prec, got {spec!r}")
    out = {"output_prec": spec.get("output_prec", "float32"), "compute_prec": spec.get("compute_prec", "float16")}
    for key, allowed in (("output_prec", OUTPUT_PRECS), ("compute_prec", COMPUTE_PRECS)):
        if out[key] not in allowed:
            raise ValueError(f"{KEY}/{key}: got {out[key]!r}; allowed: {', '.join(allowed)}")
    extra = sorted(set(spec) - set(out))
    if extra:
        raise ValueError(f"{KEY}: unknown key(s) {extra}; allowed: output_prec, compute_prec")
    return out


def apply_to_section(model_cfg: dict, spec) -> dict:
    """The model section the model is built from: with mixed precision on, the descriptor and the
    fitting net in ``output_prec`` (as DeePMD-kit sets them) and ``mixed_precision`` recorded
    (it travels with the model: checkpoints, frozen files, .dp); off, no such key."""
    out = {k: v for k, v in model_cfg.items() if k != "mixed_precision"}
    spec = check_spec(spec)
    if spec is not None:
        out["mixed_precision"] = spec
        out["descriptor"] = dict(out["descriptor"], precision=spec["output_prec"])
        out["fitting_net"] = dict(out["fitting_net"], precision=spec["output_prec"])
    return out


class Rounding:
    """The rounding of one net's layers: ``fmt`` (compute_prec); ``embedding``: the skip
    connection adds in the compute precision (embedding nets) or in the output precision
    (fitting nets); ``name``: for error messages."""

    def __init__(self, fmt: str, embedding: bool, name: str):
        self.fmt, self.embedding, self.name = fmt, embedding, name
        self.check = fmt == "float16"  # bfloat16 and float32 have float32's range

    def __call__(self, x, what: str = "a value", kernels=None):
        y = rounding.straight_through(x, self.fmt, kernels)
        if self.check and paddle.in_dynamic_mode():
            rounding.check_finite(y, x, self.fmt, f"{self.name}: {what}")
        return y


def layer_forward(layer, x, rounder: Rounding):
    """One Dense layer (``model/network.py``) with the roundings of DeePMD-kit's casts.
    x is in the output precision (and on the compute grid already inside an embedding net)."""
    def rnd(v, what):
        return rounder(v, what, layer.kernels)

    w = rnd(layer.w, "W")
    xc = rnd(x, "layer input")
    if layer.w.shape[0] == 1:  # first embedding layer: an outer product (one exact product, then rounded)
        z = xc * w.reshape([-1])
    else:
        z = paddle.matmul(xc, w)
    z = rnd(z, "x W")
    if layer.b is not None:
        z = rnd(z + rnd(layer.b, "b"), "x W + b")
    y = rnd(layer.act(z), "activation")
    if layer.idt is not None:
        y = rnd(y * rnd(layer.idt, "idt"), "timestep product")
    if layer.resnet:
        n_in, n_out = layer.w.shape
        skip = xc if rounder.embedding else x  # embedding: in compute_prec; fitting: in output_prec
        if n_out == n_in:
            y = y + skip
        elif n_out == 2 * n_in:
            y = y + paddle.concat([skip, skip], axis=-1)
        if rounder.embedding and n_out in (n_in, 2 * n_in):
            y = rnd(y, "skip connection")
    return y


def nets_of(model) -> list:
    """(net, embedding?) for every net DeePMD-kit runs in compute_prec: the descriptor's embedding
    nets (and se_a_ebd_v2's type net), the fitting nets."""
    desc = model.descriptor
    nets = [(n, True) for n in desc.embeddings]
    if getattr(desc, "type_net", None) is not None:
        nets.append((desc.type_net, True))
    return nets + [(n, False) for n in model.fitting.nets]


def enable(model, spec) -> None:
    """Set the roundings of ``spec`` (checked; None: off) on the model's nets; the model records
    it (``model.mixed_precision``). The nets' weights must be in ``output_prec`` already."""
    spec = check_spec(spec)
    model.mixed_precision = spec
    # compute_prec holding output_prec (float32 in float32): nothing rounds, the model is the plain one
    exact = spec is None or rounding.is_exact(spec["compute_prec"], spec["output_prec"])
    for net, embedding in nets_of(model):
        if spec is not None and net.precision != spec["output_prec"]:
            raise ValueError(f"{KEY}: the nets are {net.precision}, output_prec is {spec['output_prec']}: build the "
                             "model from a section with mixed_precision (apply_to_section)")
        layers = list(net.layers) if embedding else list(net.layers)[:-1]  # fitting: the output layer is exact
        for i, layer in enumerate(layers):
            name = f"{'embedding' if embedding else 'fitting'} net layer {i + 1}"
            layer.rounding = None if exact else Rounding(spec["compute_prec"], embedding, name)


def model_section(config: dict) -> dict:
    """The model section to build from a config: a full input or checkpoint config (with a
    ``training`` section: its ``mixed_precision`` decides, as in DeePMD-kit), or ``{"model": ...}``
    alone (the model section's own record decides)."""
    tr = config.get("training")
    spec = tr.get("mixed_precision") if isinstance(tr, dict) else config["model"].get("mixed_precision")
    return apply_to_section(config["model"], spec)

