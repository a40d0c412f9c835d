"""A tabulated short-range pair potential blended with the model (``use_srtab``), as DeePMD-kit's
TensorFlow energy model does it (the way DP-ZBL models are trained).

Table file (``use_srtab``): text, one row per distance on a uniform grid r_0, r_0 + h, ...; then
one column of pair energies per type pair (0-0, 0-1, ..., 0-(n-1), 1-1, 1-2, ..., (n-1)-(n-1)),
n(n+1)/2 columns for n types. Where the grid ends before the model's rcut it is extended as
DeePMD-kit extends it: with zeros when the last row is zero, else by one cubic from the last row
(slope: the difference of the last two rows) to zero with zero slope at the last grid point
before rcut (or at r_max + h). Each column becomes a clamped cubic spline (zero slope at both
ends); on interval k, with u = (r - r_0)/h - k in [0, 1)::

    e(r) = a3 u^3 + a2 u^2 + a1 u + a0,   a0 = v_k, a1 = h d_k, a2 = 3(v_k+1 - v_k) - h(2 d_k + d_k+1),
                                          a3 = 2(v_k - v_k+1) + h(d_k + d_k+1)

with d the spline's slopes; e = 0 from the grid's last point on. A distance below r_0 is an
error (DeePMD-kit stops there too).

Blending, for centre atom i with neighbours j (the model's neighbour list: within rcut, at most
``sel`` of each type)::

    s_i   = sum_j r_ij exp(-r_ij / alpha) / sum_j exp(-r_ij / alpha)       (softmin, alpha = smin_alpha)
    l_i   = 1 for s_i < sw_rmin, 0 for s_i > sw_rmax, else u^3 (-6 u^2 + 15 u - 10) + 1,
            u = (s_i - sw_rmin) / (sw_rmax - sw_rmin)
    T_i   = sum_j e_{t_i t_j}(r_ij) / 2  (+ the fitting net's energy bias of t_i with srtab_add_bias)
    E_i   = l_i T_i + (1 - l_i) E_i^DP

``smin_alpha``, ``sw_rmin`` and ``sw_rmax`` enter as float32 numbers (0.3 as 0.30000001192...),
as they do in DeePMD-kit, whose operators take them as float attributes.

Forces and virials are derivatives of sum_i E_i (the model's one path: forward_lower), as
DeePMD-kit's pair_tab, soft_min_force and soft_min_virial operators compute them. An atom with
no neighbour has l_i = 0 (DeePMD-kit's softmin is 0/0 there). The per-atom virial puts each
pair's term on the neighbour (this package's convention), where DeePMD-kit splits the
tabulated pair's term half and half: the total virial is the same.
"""
from __future__ import annotations

import numpy as np
import paddle

KEYS = ("use_srtab", "smin_alpha", "sw_rmin", "sw_rmax", "srtab_add_bias")


def read_table(path: str) -> np.ndarray:
    """The table file's rows (nrow x (1 + n(n+1)/2)), checked."""
    try:
        vdata = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as e:
        raise ValueError(f"model/use_srtab: cannot read the pair table {path} ({e})") from None
    if vdata.shape[0] < 2 or not np.isfinite(vdata).all():
        raise ValueError(f"model/use_srtab: {path} needs at least 2 rows of finite numbers")
    return vdata


def table_types(vdata: np.ndarray) -> int:
    ncol = vdata.shape[1] - 1
    n = int((np.sqrt(1 + 8 * ncol) - 1) / 2 + 0.1)
    if n * (n + 1) // 2 != ncol:
        raise ValueError(f"model/use_srtab: {ncol} energy columns is no n(n+1)/2 (one per type pair)")
    return n


def extend_to(vdata: np.ndarray, rcut: float) -> np.ndarray:
    """The grid extended to cover rcut (module docstring)."""
    r0, hh, rmax = vdata[0, 0], vdata[1, 0] - vdata[0, 0], vdata[-1, 0]
    if rcut <= rmax:
        return vdata
    last = vdata.shape[0] - 1
    nextra = int(np.ceil(rcut / hh - r0 / hh)) - last
    pad = np.zeros((nextra, vdata.shape[1]))
    pad[:, 0] = np.linspace(rmax + hh, rmax + hh * nextra, nextra)
    upper = vdata[-1, 1:]
    if np.all(upper == 0):
        return np.concatenate([vdata, pad])
    slope = vdata[-1, 1:] - vdata[-2, 1:]  # (per row, as DeePMD-kit takes it)
    end = -2 if pad[-1, 0] / hh - rmax / hh >= 2 else -1
    x0, x1 = rmax, pad[end, 0]
    t = (pad[:, 0] - x0) / (x1 - x0)  # a cubic from (x0, upper, slope) to (x1, 0, 0)
    span = x1 - x0
    h00, h10 = 2 * t ** 3 - 3 * t ** 2 + 1, t ** 3 - 2 * t ** 2 + t
    pad[:, 1:] = h00[:, None] * upper + (h10 * span)[:, None] * slope
    return np.concatenate([vdata, pad if end == -1 else pad[:-1]])


def clamped_slopes(v: np.ndarray, h: float) -> np.ndarray:
    """Slopes of the cubic spline through v (uniform step h) with zero slope at both ends:
    d_{k-1} + 4 d_k + d_{k+1} = 3 (v_{k+1} - v_{k-1}) / h inside (Thomas algorithm)."""
    n = len(v)
    d = np.zeros(n)
    if n < 3:
        return d
    rhs = 3.0 * (v[2:] - v[:-2]) / h
    m = n - 2
    c, r = np.zeros(m), np.zeros(m)
    for k in range(m):
        den = 4.0 - (c[k - 1] if k else 0.0)
        c[k] = 1.0 / den
        r[k] = (rhs[k] - (r[k - 1] if k else 0.0)) / den
    for k in range(m - 1, -1, -1):
        d[k + 1] = r[k] - (c[k] * d[k + 2] if k < m - 1 else 0.0)
    return d


def spline_table(vdata: np.ndarray, ntypes: int) -> np.ndarray:
    """Coefficients [a3, a2, a1, a0] per type pair (both orders) and interval: ntypes^2 x nspline x 4."""
    hh = vdata[1, 0] - vdata[0, 0]
    nspline = vdata.shape[0] - 1
    out = np.zeros((ntypes * ntypes, nspline, 4))
    col = 0
    for t0 in range(ntypes):
        for t1 in range(t0, ntypes):
            v = vdata[:, 1 + col]
            d = clamped_slopes(v, hh) * hh
            a = np.stack([2 * v[:-1] - 2 * v[1:] + d[:-1] + d[1:], -3 * v[:-1] + 3 * v[1:] - 2 * d[:-1] - d[1:],
                          d[:-1], v[:-1]], axis=1)
            out[t0 * ntypes + t1] = out[t1 * ntypes + t0] = a
            col += 1
    return out


class ShortRangeTable(paddle.nn.Layer):
    """The tabulated pair energy and its blend with the model's atomic energies (module docstring)."""

    def __init__(self, vdata, ntypes: int, rcut: float, smin_alpha: float, sw_rmin: float, sw_rmax: float,
                 add_bias: bool = True):
        super().__init__()
        vdata = np.asarray(vdata, np.float64)
        if table_types(vdata) != ntypes:
            raise ValueError(f"model/use_srtab: the table has columns for {table_types(vdata)} types, the model has "
                             f"{ntypes} (type_map)")
        if not (smin_alpha > 0 and sw_rmax > sw_rmin):
            raise ValueError(f"model: need smin_alpha > 0 and sw_rmax > sw_rmin, got smin_alpha {smin_alpha}, "
                             f"sw_rmin {sw_rmin}, sw_rmax {sw_rmax}")
        self.vdata = vdata  # the file's rows: what get_config stores
        grid = extend_to(vdata, rcut)
        self.r0, self.hh, self.nspline = float(grid[0, 0]), float(grid[1, 0] - grid[0, 0]), grid.shape[0] - 1
        self.config_values = (float(smin_alpha), float(sw_rmin), float(sw_rmax))
        # in the blend they are float32 numbers, as in DeePMD-kit (its operator's float attributes)
        self.ntypes = ntypes
        self.alpha, self.rmin, self.rmax = (float(np.float32(x)) for x in self.config_values)
        self.add_bias = bool(add_bias)
        self.register_buffer("coef", paddle.to_tensor(spline_table(grid, ntypes).reshape(-1, 4)))
        # float64 tensors, not Python numbers: a static program would keep those as float32 attributes
        self.register_buffer("consts", paddle.to_tensor(np.array([self.r0, 1.0 / self.hh, 1.0 / self.alpha, self.rmin,
                                                                  1.0 / (self.rmax - self.rmin), 2.0 * self.rmax])))

    def config(self) -> dict:
        alpha, rmin, rmax = self.config_values
        return {"srtab_table": self.vdata.tolist(), "smin_alpha": alpha, "sw_rmin": rmin, "sw_rmax": rmax,
                "srtab_add_bias": self.add_bias}

    def forward(self, atom_e, rij, nlist, tc, atype, bias):
        """Blended E_i (nf x nc x 1) from the model's E_i, r_ij (nf x nc x nnei x 3), the neighbour
        list (nf x nc x nnei, -1 padded), the centre types (nf x nc), all types (nf x nall) and the
        fitting net's per-type bias."""
        nf, nc, nnei = nlist.shape[0], nlist.shape[1], nlist.shape[2]
        mask = nlist >= 0  # nf x nc x nnei
        maskf = mask.astype(rij.dtype)
        r0, inv_h, inv_alpha, rmin, inv_width, far = (self.consts[i] for i in range(6))
        r = paddle.sqrt((rij * rij).sum(axis=-1) + (1.0 - maskf))  # padded slots: r = 1, masked below
        if paddle.in_dynamic_mode() and bool(((r < self.r0) & mask).any()):
            closest = float(paddle.where(mask, r, paddle.full_like(r, 1e9)).min())
            raise ValueError(f"use_srtab: a pair is closer ({closest:.4g} A) than the pair table's first distance "
                             f"{self.r0} A")
        ee = paddle.exp(-r * inv_alpha) * maskf
        aa, bb = ee.sum(axis=-1), (r * ee).sum(axis=-1)  # nf x nc
        none = aa <= 0
        smin = bb / paddle.where(none, paddle.ones_like(aa), aa) + none.astype(aa.dtype) * far
        u = paddle.clip((smin - rmin) * inv_width, 0.0, 1.0)
        lam = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0  # nf x nc
        # pair energies from the spline
        x = (r - r0) * inv_h
        k = paddle.clip(paddle.floor(x.detach()), 0, self.nspline).astype("int64")
        inside = mask & (k < self.nspline)
        k = paddle.clip(k, 0, self.nspline - 1)
        tj = paddle.take_along_axis(atype.astype("int64"), paddle.where(mask, nlist, paddle.zeros_like(nlist))
                                    .reshape([nf, nc * nnei]).astype("int64"), axis=1).reshape([nf, nc, nnei])
        pair = (tc.astype("int64").unsqueeze(-1) * self.ntypes + tj) * self.nspline + k
        c = paddle.gather(self.coef, pair.reshape([-1])).reshape([nf, nc, nnei, 4])
        uu = x - k.astype(x.dtype)
        e = ((c[..., 0] * uu + c[..., 1]) * uu + c[..., 2]) * uu + c[..., 3]
        tab = 0.5 * (e * inside.astype(e.dtype)).sum(axis=-1)  # nf x nc
        if self.add_bias:
            tab = tab + paddle.gather(bias, tc.reshape([-1]).astype("int64")).reshape([nf, nc])
        lam = lam.unsqueeze(-1)
        return lam * tab.unsqueeze(-1) + (1.0 - lam) * atom_e


def attach(model, cfg: dict) -> None:
    """Give ``model`` the table of its ``model`` section: ``srtab_table`` (the rows, as get_config
    stores them) or the file ``use_srtab``; ``smin_alpha``, ``sw_rmin``, ``sw_rmax`` required."""
    missing = [k for k in ("smin_alpha", "sw_rmin", "sw_rmax") if cfg.get(k) is None]
    if missing:
        raise ValueError(f"model/use_srtab needs {missing} (the softmin decay and the switching interval)")
    vdata = cfg.get("srtab_table")
    vdata = read_table(cfg["use_srtab"]) if vdata is None else np.asarray(vdata, np.float64)
    model.srtab = ShortRangeTable(vdata, model.ntypes, model.descriptor.rcut, cfg["smin_alpha"], cfg["sw_rmin"],
                                  cfg["sw_rmax"], cfg.get("srtab_add_bias", True))
    model._config.update(model.srtab.config())  # the rows themselves: a checkpoint needs no table file
