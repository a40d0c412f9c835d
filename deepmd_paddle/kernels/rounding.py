"""Rounding to a narrower floating-point format, for mixed precision (``training/mixed_precision``).

DeePMD-kit's mixed precision casts a net layer's inputs, weights and biases to ``compute_prec``
(float16 or bfloat16), runs the layer there and casts its output back to ``output_prec``. Paddle
3.3's CPU ``matmul`` has no float16/bfloat16 kernel, so here the tensors stay in the output
precision and are ROUNDED to the compute format at the points where DeePMD-kit casts and where
each of its compute-precision operations rounds its result (``model/mixed_precision.py``). A
product of two rounded operands accumulated in float32/float64 and then rounded equals a
bfloat16 matrix product with float32 accumulation, which is what CPU bfloat16 dot-product
instructions compute.

``round_to(x, fmt)`` is IEEE round-to-nearest-even to ``fmt``, with its exponent range:

======== ================= ============== =====================================
format   significant bits  smallest normal largest finite (beyond it: +-inf)
======== ================= ============== =====================================
bfloat16 8                 2^-126          (2 - 2^-7) 2^127
float16  11                2^-14           65504
float32  24                2^-126          (2 - 2^-23) 2^127
======== ================= ============== =====================================

below the smallest normal the grid is the format's subnormal one (spacing 2^-133 for bfloat16,
2^-24 for float16), as IEEE 754 has it; NaN stays NaN. It is written with Paddle operators that static
programs take (in float64: the binade of |x| from log2, corrected with exact powers of two, then
one exact division, the round-to-nearest-even of float64 addition, and one exact product), so it runs in eager mode
and in frozen static programs alike, on any device. tests/test_mixed_precision.py holds it equal
to NumPy's float16 cast and to a bit-level bfloat16 reference.

Nothing here differentiates: ``straight_through`` rounds in the forward pass and passes the
gradient unchanged (see ``model/mixed_precision.py`` for why). Its work is ``round_delta``, a C++
operator (``deepmd_round_delta``: one pass of custom_ops/round_prec.h, the fused kernels' rounding) with this module's
functions as its plain-Paddle twin (about fifteen element-wise operators).

The fused C++ embedding kernels round the same way (custom_ops/round_prec.h): ``FUSED_KERNELS_ROUND``
is the one switch that says so (the descriptor's ``fused_ready`` reads it: off, the fused evaluation
and training passes step aside for a mixed-precision model and its nets run in the Paddle layers).
"""
from __future__ import annotations

import paddle

# the C++ embedding kernels (se_a_embed*, the fused training passes) round to compute_prec
# (custom_ops/round_prec.h; the mode rides in their nlayer attribute: DescrptSeA.fused_attrs)
FUSED_KERNELS_ROUND = True

# format -> (significant bits p, exponent of the smallest normal, largest finite value)
FORMATS = {
    "bfloat16": (8, -126, 3.3895313892515355e38),
    "float16": (11, -14, 65504.0),
    "float32": (24, -126, 3.4028234663852886e38),
}
_BITS = {"float32": 24, "float64": 53}  # significant bits of the storage formats
_TWO52 = 4503599627370496.0  # 2^52: adding it rounds a float64 in [0, 2^52) to an integer, ties to even


def _dtype_name(x) -> str:
    return {paddle.float32: "float32", paddle.float64: "float64"}.get(x.dtype, str(x.dtype))


def is_exact(fmt: str, storage: str) -> bool:
    """Rounding to ``fmt`` changes nothing in ``storage`` (float32 in float32)."""
    return FORMATS[fmt][0] >= _BITS[storage]


def round_to(x, fmt: str):
    """x (float32 or float64) rounded to the nearest ``fmt`` value, ties to even, in x's dtype;
    no gradient (``straight_through`` adds one)."""
    if fmt not in FORMATS:
        raise ValueError(f"cannot round to {fmt!r}; allowed: {sorted(FORMATS)}")
    storage = _dtype_name(x)
    if storage not in _BITS:
        raise ValueError(f"round_to takes float32 or float64 tensors, got {x.dtype}")
    x = x.detach()
    if is_exact(fmt, storage):
        return x
    if fmt == "float32":  # float64 -> float32 -> float64: Paddle's cast is IEEE round-to-nearest-even
        return x.astype("float32").astype("float64")
    p, emin, top = FORMATS[fmt]
    a = paddle.abs(x).astype("float64")  # exact
    two = paddle.full([], 2.0, "float64")
    # e = floor(log2 |x|) exactly: log2 can be off by one next to a power of two; 2^k is exact
    e = paddle.floor(paddle.log2(a))
    e = paddle.where(paddle.pow(two, e) > a, e - 1.0, e)
    e = paddle.where(paddle.pow(two, e + 1.0) <= a, e + 1.0, e)
    # the grid spacing at |x|: 2^(e - p + 1), never below the format's subnormal spacing 2^(emin - p + 1)
    # (0 -> emin; inf -> 1023, so that inf stays inf)
    ulp = paddle.pow(two, paddle.clip(e, float(emin), 1023.0) - float(p - 1))
    two52 = paddle.full([], _TWO52, "float64")
    t = a / ulp  # exact (a power of two), below 2^p
    r = ((t + two52) - two52) * ulp  # round-to-nearest-even to an integer, back to scale (exact)
    r = paddle.where(r > paddle.full([], top, "float64"), paddle.full([], float("inf"), "float64"), r)
    r = paddle.where(x < 0, -r, r)  # (NaN: every step keeps it)
    return r if storage == "float64" else r.astype("float32")


def round_delta(x, fmt: str):
    """``round_to(x, fmt) - x`` (exact), 0 where x is NaN or +-inf; no gradient. The plain-Paddle
    twin of the C++ operator ``deepmd_round_delta`` (custom_ops/round_prec.h)."""
    x = x.detach()
    d = round_to(x, fmt) - x
    return paddle.where(paddle.isfinite(x), d, paddle.zeros_like(d))


def straight_through(x, fmt: str, kernels=None):
    """``round_to(x, fmt)`` in the forward pass, the identity in every derivative (any order):
    ``x + delta`` with ``delta = round(x) - x`` a constant (``round_delta``: the C++ operator
    when ``kernels``, a ``deepmd_paddle.kernels.Backend``, has it; float32 and the twin otherwise).
    The difference is exact (Sterbenz: both are within a factor 2, or the rounded value is 0 or
    inf), so the sum is the rounded value."""
    storage = _dtype_name(x)
    if is_exact(fmt, storage):
        return x
    if fmt == "float32":
        return x + round_delta(x, fmt)
    op = round_delta if kernels is None else kernels.get("round_delta")
    return x + op(x.detach(), fmt)


@paddle.jit.not_to_static
def check_finite(rounded, source, fmt: str, where: str) -> None:
    """Eager mode: refuse a value that overflowed ``fmt`` (finite before rounding, +-inf after),
    naming the format, its largest value and ``where``. (A frozen program cannot raise: there
    the infinity propagates to the outputs, which DeepPot reports as not finite.)"""
    if not paddle.in_dynamic_mode():
        return
    bad = paddle.isinf(rounded) & paddle.isfinite(source)
    if bool(bad.any()):
        worst = float(paddle.abs(paddle.where(bad, source, paddle.zeros_like(source))).max())
        raise FloatingPointError(
            f"mixed precision: {where} reached |x| = {worst:.6g}, beyond {fmt}'s largest value {FORMATS[fmt][2]:.6g}: "
            f"it would become infinite (training/mixed_precision/compute_prec = {fmt!r}; bfloat16 has float32's "
            f"range)")
