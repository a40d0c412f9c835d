"""Model compression: the embedding nets as tables (DP Compress, Lu et al., JCTC 18 (2022) 5559).

Each se_e2_a embedding net maps one scalar, ``s = R~[0]`` (the first column of the normalised
environment matrix), to ng values, so it can be tabulated. For every net (neighbour type t,
or the pair (centre type, neighbour type) when ``type_one_side`` is false):

- range: ``s`` at ``r >= rcut`` is ``lower = -davg/dstd`` (the padded-slot value, the smallest
  s); at the smallest pair distance of the data ``r_min`` it is
  ``upper = (w(r_min)/r_min - davg)/dstd``; over the net's centre types and slots. ``lower`` is
  floored to the stride ``h``; grid 1 covers ``[lower, upper)`` with stride ``h``, grid 2
  covers ``[upper, ext)`` with stride ``10 h``, ``ext >= extrapolate * upper``.
- on each interval ``[x_k, x_k + dx)`` and per output channel a polynomial in ``t = s - x_k``:
  order 5: value, first and second derivative of the net match at both ends (the DP
  Compress coefficients); order 3 (Hermite, PWMLFF's variant): value and first derivative.
  The derivatives of the net in s are exact (forward mode through the layers, with
  DeePMD-kit's residual and timestep rules).
- ``s`` outside ``[lower, ext)`` is clamped to the table's ends and counted
  (``Tabulation.n_out_of_range``; a warning at the first one, then whenever the count gains a
  digit). A frozen model cannot count: ``DeepPot`` warns when a pair is closer than the
  tables reach. D = T T<^T runs in a second C++ operator (``se_a_descriptor``).

The tabulated G is contracted with R~ in one C++ operator (the ``tabulate`` kernel,
``custom_ops/tabulate.h``) with its gradient (forces, virials) and the double gradient in the
upstream cotangent (a force loss reaching the fitting net when fine-tuning); its plain-Paddle
twin (``kernels.twins.tabulate``) serves parity tests, no compiler, and second derivatives in
positions. The tables are buffers of the descriptor (``descriptor.tabulation``), so checkpoints
carry them and ``EnergyModel.from_config`` rebuilds the layout from ``config["compress"]``.

The compressed model keeps its embedding nets (serialization) but does not use them; their
weights are frozen, so fine-tuning trains the fitting net only. ``model.get_config()["compress"]``
records the table set-up, so checkpoints of a compressed model rebuild it.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import paddle

from ..kernels import twins

log = logging.getLogger("deepmd_paddle")

ORDERS = {5: 6, 3: 4}  # order -> coefficients per interval
LANES = 8  # float64 values per 64-byte vector: the channel dimension is padded to it


# ----------------------------------------------------------------------------- the net, exactly
def net_derivatives(net, x: np.ndarray):
    """(G, dG/ds, d2G/ds2), each len(x) x ng, of an ``EmbeddingNet`` at the points ``x``
    (float64 forward mode: a layer ``y = idt * tanh(z) (+ x or [x, x])``, ``z = x W + b``)."""
    y = np.asarray(x, "float64").reshape(-1, 1)
    dy = np.ones_like(y)
    d2y = np.zeros_like(y)
    for layer in net.layers:
        if layer.activation_function.lower() != "tanh":
            raise NotImplementedError(f"compression needs tanh embedding nets, got {layer.activation_function!r}")
        w = layer.w.numpy().astype("float64")
        b = layer.b.numpy().astype("float64")
        z, dz, d2z = y @ w + b, dy @ w, d2y @ w
        t = np.tanh(z)
        q = 1.0 - t * t  # tanh'
        o, do, d2o = t, q * dz, q * d2z - 2.0 * t * q * dz * dz
        if layer.idt is not None:
            idt = layer.idt.numpy().astype("float64")
            o, do, d2o = o * idt, do * idt, d2o * idt
        n_in, n_out = w.shape
        if layer.resnet and n_out in (n_in, 2 * n_in):
            rep = n_out // n_in
            o, do, d2o = o + np.tile(y, rep), do + np.tile(dy, rep), d2o + np.tile(d2y, rep)
        y, dy, d2y = o, do, d2o
    return y, dy, d2y


def coefficients(x: np.ndarray, y, dy, d2y, order: int) -> np.ndarray:
    """Polynomial coefficients (len(x) - 1) x K x ng on the intervals of the nodes ``x``, in
    powers of ``t = s - x_k``; y, dy, d2y are the values and derivatives at the nodes."""
    dx = np.diff(x)[:, None]
    y0, y1, d0, d1 = y[:-1], y[1:], dy[:-1], dy[1:]
    delta = y1 - y0
    if order == 5:
        e0, e1 = d2y[:-1], d2y[1:]
        c3 = (20 * delta - (8 * d1 + 12 * d0) * dx - (3 * e0 - e1) * dx ** 2) / (2 * dx ** 3)
        c4 = (-30 * delta + (14 * d1 + 16 * d0) * dx + (3 * e0 - 2 * e1) * dx ** 2) / (2 * dx ** 4)
        c5 = (12 * delta - 6 * (d1 + d0) * dx + (e1 - e0) * dx ** 2) / (2 * dx ** 5)
        return np.stack([y0, d0, e0 / 2, c3, c4, c5], axis=1)
    c2 = (3 * delta - (2 * d0 + d1) * dx) / dx ** 2
    c3 = (-2 * delta + (d0 + d1) * dx) / dx ** 3
    return np.stack([y0, d0, c2, c3], axis=1)


# ----------------------------------------------------------------------------- ranges
def _switch(r: float, rcut_smth: float, rcut: float) -> float:
    u = min(max((r - rcut_smth) / (rcut - rcut_smth), 0.0), 1.0)
    return u ** 3 * (-6 * u * u + 15 * u - 10) + 1


def net_ranges(desc, min_nbor_dist: float) -> list[tuple[float, float]]:
    """(lowest, highest) s of each embedding net, in the descriptor's net order."""
    davg, dstd = desc.davg.numpy()[..., 0], desc.dstd.numpy()[..., 0]  # ntypes x nnei
    r0 = _switch(min_nbor_dist, desc.rcut_smth, desc.rcut) / min_nbor_dist
    n = desc.ntypes
    out = []
    for k in range(len(desc.embeddings)):
        t, centres = (k, range(n)) if desc.type_one_side else (k // n, [k % n])  # net ti + t * ntypes
        lo, hi = desc.sec[t], desc.sec[t + 1]
        a, s = davg[list(centres), lo:hi], dstd[list(centres), lo:hi]
        out.append((float(((0.0 - a) / s).min()), float(((r0 - a) / s).max())))
    return out


def check_args(stride: float, extrapolate: float, order: int) -> None:
    if not (isinstance(stride, (int, float)) and math.isfinite(stride) and stride > 0):
        raise ValueError(f"compress: the table stride (-s) must be a positive number, got {stride!r}")
    if order not in ORDERS:
        raise ValueError(f"compress: --order must be 5 (DP Compress) or 3 (Hermite), got {order!r}")
    if not (math.isfinite(extrapolate) and extrapolate >= 1):
        raise ValueError(f"compress: the extrapolation factor (-e) must be >= 1, got {extrapolate!r}")


# ----------------------------------------------------------------------------- the tables
class Tabulation(paddle.nn.Layer):
    """The tables of a descriptor's nets: ``coef`` nnets x nint x K x ldg, ``info`` nnets x 8
    (lower, upper, ext, h1, h2, n1, n2, 0); ``spec`` (JSON) records how they were built."""

    def __init__(self, spec: dict, ntypes: int, sel: list, type_one_side: bool, ng: int):
        super().__init__()
        self.spec = dict(spec)
        self.ntypes, self.sel, self.type_one_side, self.ng = ntypes, list(sel), bool(type_one_side), int(ng)
        self.nnei = sum(self.sel)
        self.sec = np.cumsum([0] + self.sel).tolist()
        nnets = ntypes if type_one_side else ntypes * ntypes
        k, ldg = ORDERS[spec["order"]], -(-ng // LANES) * LANES
        self.register_buffer("coef", paddle.zeros([nnets, int(spec["nint"]), k, ldg], "float64"))
        self.register_buffer("info", paddle.zeros([nnets, 8], "float64"))
        self.n_out_of_range = 0  # inputs outside the tables, counted in dynamic mode

    def net_index(self, ti: int, t: int) -> int:
        return t if self.type_one_side else ti + t * self.ntypes

    def forward(self, env, ti: int, kernels=None):
        """T = (1/nnei) sum_j G(s_j)^T R~_j (nat x ng x 4, float64) for atoms of centre type ti:
        the ``tabulate`` kernel of ``kernels`` (None: the plain-Paddle twin, which gives second
        derivatives in ``env``)."""
        env = env.astype("float64")
        tabulate = twins.tabulate if kernels is None else kernels.tabulate
        xyz, nout = tabulate(env, self.coef, self.info, self.sel, ti, self.type_one_side, self.ng)
        if paddle.in_dynamic_mode():
            n = int(nout.numpy().reshape(-1)[0])
            before = self.n_out_of_range
            self.n_out_of_range += n
            if n and (before == 0 or len(str(self.n_out_of_range)) > len(str(before))):  # first, then x10 (no flood)
                log.warning("compressed model: %d embedding inputs outside the tables (clamped; %d so far): "
                            "atoms closer than the data's smallest distance %.4g A (table %.4g A) or a "
                            "wrong -e", n, self.n_out_of_range, self.spec["min_nbor_dist"], self.spec["r_table"])
        return xyz


def build_tables(desc, min_nbor_dist: float, stride: float = 0.01, extrapolate: float = 5.0,
                 order: int = 5) -> Tabulation:
    """Tabulate every embedding net of ``desc`` (see the module docstring)."""
    check_args(stride, extrapolate, order)
    if not (min_nbor_dist > 0 and min_nbor_dist < desc.rcut):
        raise ValueError(f"compress: min_nbor_dist must be in (0, rcut={desc.rcut}), got {min_nbor_dist}")
    h1, h2 = float(stride), 10.0 * float(stride)
    grids, infos = [], []
    for lo_raw, hi_raw in net_ranges(desc, min_nbor_dist):
        lower = math.floor(lo_raw / h1) * h1
        n1 = max(1, math.ceil((hi_raw - lower) / h1 - 1e-9))
        upper = lower + n1 * h1
        n2 = max(0, math.ceil((extrapolate * hi_raw - upper) / h2 - 1e-9))
        ext = upper + n2 * h2
        x = np.concatenate([lower + h1 * np.arange(n1 + 1), upper + h2 * np.arange(1, n2 + 1)])
        grids.append(x)
        infos.append([lower, upper, ext, h1, h2, n1, n2, 0.0])
    nint = max(len(x) - 1 for x in grids)
    if nint > 2_000_000:
        raise ValueError(f"compress: {nint} intervals per net; use a larger stride (-s {stride}) or a smaller -e")
    r_table = _distance_at(desc, max(i[2] for i in infos))
    spec = {"stride": h1, "extrapolate": float(extrapolate), "order": int(order),
            "min_nbor_dist": float(min_nbor_dist), "nint": int(nint), "r_table": r_table}
    tab = Tabulation(spec, desc.ntypes, desc.sel, desc.type_one_side, desc.neuron[-1])
    coef = np.zeros(tab.coef.shape, "float64")
    for k, x in enumerate(grids):
        y, dy, d2y = net_derivatives(desc.embeddings[k], x)
        c = coefficients(x, y, dy, d2y, order)  # nint_k x K x ng
        coef[k, : len(c), :, : y.shape[1]] = c
    tab.coef.set_value(coef)
    tab.info.set_value(np.asarray(infos, "float64"))
    return tab


def _distance_at(desc, s_max: float) -> float:
    """The pair distance below which some net's input exceeds its table (for the messages)."""
    davg, dstd = desc.davg.numpy()[..., 0], desc.dstd.numpy()[..., 0]
    target = float((s_max * dstd + davg).min())  # smallest w/r value beyond a table
    lo, hi = 1e-6, desc.rcut
    for _ in range(100):  # w(r)/r decreases in r
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _switch(mid, desc.rcut_smth, desc.rcut) / mid > target else (lo, mid)
    return hi


# ----------------------------------------------------------------------------- the model
def attach(model, spec: dict, tables: Tabulation | None = None) -> None:
    """Switch ``model``'s descriptor to the tables (empty ones of ``spec``'s shape when
    ``tables`` is None: a checkpoint fills them) and freeze the embedding nets."""
    desc = model.descriptor
    desc.tabulation = tables if tables is not None else Tabulation(spec, desc.ntypes, desc.sel,
                                                                   desc.type_one_side, desc.neuron[-1])
    for p in desc.embeddings.parameters():
        p.stop_gradient = True  # the tables stand for them: fine-tuning trains the fitting net
    if getattr(model, "min_nbor_dist", None) is None:
        model.min_nbor_dist = spec["min_nbor_dist"]
    model._config = dict(model.get_config(), compress=dict(desc.tabulation.spec))


def compress_model(model, stride: float = 0.01, extrapolate: float = 5.0, order: int = 5,
                   min_nbor_dist: float | None = None):
    """Tabulate ``model``'s embedding nets in place; returns the model. ``min_nbor_dist``:
    the smallest pair distance of the training data (default: the one the model stores)."""
    check_args(stride, extrapolate, order)
    if getattr(model.descriptor, "tabulation", None) is not None:
        raise ValueError("compress: the model is compressed already")
    if hasattr(model.descriptor, "type_embedding"):
        raise ValueError("compress: models with a type embedding are not compressed here (their embedding net "
                         "takes the type vector as well as s); only se_e2_a with one net per type (pair) is")
    mixed = getattr(model, "mixed_precision", None)
    if mixed is not None:
        raise ValueError(f"compress: the model was trained with training/mixed_precision {mixed}: its embedding nets "
                         f"round to {mixed['compute_prec']} at every layer, which polynomial tables cannot reproduce "
                         "(a compressed model would evaluate other nets); mixed-precision models are not compressed")
    mnd = min_nbor_dist if min_nbor_dist is not None else getattr(model, "min_nbor_dist", None)
    if mnd is None:
        raise ValueError("compress: the model stores no neighbour statistics (min_nbor_dist); give the training "
                         "input with -t (its systems are scanned) or --min-nbor-dist")
    tab = build_tables(model.descriptor, float(mnd), stride, extrapolate, order)
    model.min_nbor_dist = float(mnd)
    attach(model, tab.spec, tab)
    spec = tab.spec
    mb = tab.coef.numel().item() * 8 / 2 ** 20
    log.info("compressed %d embedding nets: order %d, stride %g (x10 beyond s=%s), %d intervals per net, "
             "%.1f MB of tables; inputs beyond the tables: pairs closer than %.4f A (data: %.4f A)",
             tab.coef.shape[0], order, stride, [round(float(v), 3) for v in tab.info.numpy()[:, 1]],
             spec["nint"], mb, spec["r_table"], spec["min_nbor_dist"])
    return model
