"""The plain-Paddle twins of the C++ kernels: same signatures and outputs as ``cpp.py``,
differentiated by Paddle's autograd to any order. They run where no compiler is available,
inside a portable exported graph, wherever a derivative is needed that a C++ operator does not
give, and in the tests that hold each C++ kernel to its twin (the table in
``deepmd_paddle.kernels``).

Maths (Zhang et al., NeurIPS 2018, Eq. 2-3; DeePMD-kit's se_e2_a), for centre i and neighbour j:
``r_ij = r_j - r_i``, ``r = |r_ij|``,
``u = clip((r - rcut_smth) / (rcut - rcut_smth), 0, 1)``, ``w(r) = u^3 (-6u^2 + 15u - 10) + 1``,
``R_ij = w(r) [1/r, x/r^2, y/r^2, z/r^2]`` and ``R~ = (R - davg[type_i]) / dstd[type_i]``.
Neighbour slots: ``sel[t]`` per neighbour type, nearest first, unused slots ``-1`` with R = 0.

The neighbour search here is the brute-force O(N^2) one over periodic images; the operator's
cell list is O(N). Only ``*``, ``+``, ``sqrt`` and ``clip`` are used on differentiable paths:
Paddle 3.3 has no double gradient for ``p_norm`` and, in static graphs, for ``elementwise_pow``.
"""
from __future__ import annotations

import paddle

from . import rounding


def const(like: paddle.Tensor, value: float) -> paddle.Tensor:
    """A scalar constant in ``like``'s dtype. In static graphs ``x * 0.1`` becomes a ``scale``
    op whose factor is a float32 attribute: constants that are not exact in float32 must be
    tensors to keep float64 results equal to the dynamic graph's."""
    return paddle.full([1], value, dtype=like.dtype)


def switch(r: paddle.Tensor, rcut_smth: float, rcut: float) -> paddle.Tensor:
    """The C2 switch w(r): 1 below rcut_smth, 0 from rcut on."""
    u = paddle.clip((r - const(r, rcut_smth)) * const(r, 1.0 / (rcut - rcut_smth)), 0.0, 1.0)
    u2 = u * u
    return u2 * u * (-6.0 * u2 + 15.0 * u - 10.0) + 1.0


def build_rij(coord, nlist, shift, centre=None):
    """r_ij = coord[j] + shift - coord[i] for the centre atoms i (``centre``, nc indices; None:
    every atom, nc = nall), differentiable in ``coord``: nf x nc x nnei x 3.

    coord: nf x nall x 3; nlist: nf x nc x nnei (-1 padded); shift: nf x nc x nnei x 3.
    Padded slots hold meaningless vectors: every consumer masks them with ``nlist >= 0``.
    """
    if centre is not None:
        nf, nc, nnei = nlist.shape[0], nlist.shape[1], nlist.shape[2]
        xc = paddle.gather(coord, centre, axis=1)  # nf x nc x 3
        idx = paddle.clip(nlist, min=0).astype("int64").reshape([nf, -1, 1])
        idx = paddle.expand(idx, [nf, idx.shape[1], 3])
        cj = paddle.take_along_axis(coord, idx, axis=1).reshape([nf, nc, nnei, 3])
        return cj + shift - xc.unsqueeze(2)
    nf, nloc, nnei = nlist.shape[0], nlist.shape[1], nlist.shape[2]
    frame = (paddle.arange(nf, dtype="int64") * nloc).reshape([nf, 1, 1])
    idx = (paddle.clip(nlist, min=0).astype("int64") + frame).reshape([-1])  # rows of the flat coords
    # gather on flat rows: its backward is ~30% faster than take_along_axis's at 10^5 atoms
    cj = paddle.gather(coord.reshape([-1, 3]), idx).reshape([nf, nloc, nnei, 3])
    return cj + shift - coord.unsqueeze(2)  # nf x nloc x nnei x 3


def env_mat(rij, nlist, atype, davg, dstd, rcut: float, rcut_smth: float):
    """Normalised environment matrix R~ (nf x nloc x nnei x 4) from r_ij."""
    mask = (nlist >= 0).unsqueeze(-1)  # nf x nloc x nnei x 1
    # padded slots get a vector beyond rcut: w = 0 there, and so do all its derivatives
    far = paddle.full_like(rij, 0.0) + paddle.to_tensor([rcut + 1.0, 0.0, 0.0], dtype=rij.dtype)
    rs = paddle.where(mask, rij, far)
    r2 = (rs * rs).sum(-1, keepdim=True)
    r = paddle.sqrt(r2)
    w = switch(r, rcut_smth, rcut)
    env = paddle.concat([w / r, w * rs / r2], axis=-1)  # nf x nloc x nnei x 4
    nf, nloc = atype.shape[0], atype.shape[1]
    t = atype.reshape([-1]).astype("int64")
    avg = paddle.gather(davg, t).reshape([nf, nloc, davg.shape[1], 4])
    std = paddle.gather(dstd, t).reshape([nf, nloc, dstd.shape[1], 4])
    return (env - avg) / std


def env_mat_excl(rij, nlist, atype, davg, dstd, emask, rcut: float, rcut_smth: float):
    """``env_mat`` times ``emask[type_i]`` (ntypes x nnei, 0 or 1): rows of excluded type pairs
    (every slot of the neighbour-type block, padding included) are zero."""
    env = env_mat(rij, nlist, atype, davg, dstd, rcut, rcut_smth)
    m = paddle.gather(emask.astype(env.dtype), atype.reshape([-1]).astype("int64"))
    return env * m.reshape([atype.shape[0], atype.shape[1], emask.shape[1], 1])


def _box_images(box: paddle.Tensor, rcut: float) -> paddle.Tensor:
    """Integer image offsets (nimg x 3) that cover rcut for every frame's box."""
    b = box.reshape([-1, 3, 3])
    vol = paddle.abs(paddle.linalg.det(b))  # nf
    ca = paddle.cross(b[:, 1], b[:, 2], axis=-1)
    cb = paddle.cross(b[:, 2], b[:, 0], axis=-1)
    cc = paddle.cross(b[:, 0], b[:, 1], axis=-1)
    spacing = paddle.stack(
        [vol / paddle.sqrt((c * c).sum(-1)) for c in (ca, cb, cc)], axis=-1
    )  # nf x 3: distances between lattice planes
    nimg = paddle.ceil(rcut / spacing).max(axis=0).astype("int64")  # 3
    rng = [paddle.arange(-nimg[d], nimg[d] + 1, dtype="int64") for d in range(3)]
    ga, gb, gc = paddle.meshgrid(*rng)
    return paddle.stack([ga.reshape([-1]), gb.reshape([-1]), gc.reshape([-1])], axis=-1)


@paddle.no_grad()
def neighbor_list(coord, box, atype, rcut: float, sel: list[int], check: bool = True):
    """Brute-force neighbour list: (nlist int32, shift, nmax int32, mindist).

    coord: nf x nloc x 3; box: nf x 9 or None (open boundaries); atype: nf x nloc.
    nlist: nf x nloc x nnei, local index of the neighbour, grouped by type, nearest first;
    shift: nf x nloc x nnei x 3 so that r_ij = coord[j] + shift - coord[i];
    nmax: nf x ntypes, the largest neighbour count of each type over the centre atoms;
    mindist: nf, the smallest distance between two distinct atoms (or images), capped at rcut.
    ``check``: validate the inputs first (``checks.check_frames``, eager mode only).
    """
    if check and paddle.in_dynamic_mode():
        from .checks import check_frames

        check_frames(coord, atype, box, len(sel), rcut=rcut)
    nf, nloc = coord.shape[0], coord.shape[1]
    dtype = coord.dtype
    if box is None:
        wrapped = coord
        cart = paddle.zeros([1, 1, 3], dtype=dtype)  # 1 image
        nimg = 1
        zero_img = paddle.to_tensor([True])
    else:
        b = box.reshape([nf, 3, 3])
        frac = paddle.matmul(coord, paddle.linalg.inv(b))
        wrapped = paddle.matmul(frac - paddle.floor(frac), b)
        img = _box_images(box, rcut)  # nimg x 3
        nimg = img.shape[0]
        cart = paddle.matmul(img.astype(dtype).unsqueeze(0).expand([nf, nimg, 3]), b)  # nf x nimg x 3
        zero_img = (img == 0).all(-1)
    # candidates: every image of every atom, index c = img * nloc + j
    ext = (wrapped.unsqueeze(1) + cart.unsqueeze(2)).reshape([nf, -1, 3])  # nf x (nimg*nloc) x 3
    d = ext.unsqueeze(1) - wrapped.unsqueeze(2)  # nf x nloc x ncand x 3
    dist2 = (d * d).sum(-1)
    ncand = dist2.shape[-1]
    jidx = paddle.arange(ncand, dtype="int64") % nloc
    is_self = zero_img.unsqueeze(1).expand([nimg, nloc]).reshape([-1]).unsqueeze(0) & (
        jidx.unsqueeze(0) == paddle.arange(nloc, dtype="int64").unsqueeze(1)
    )  # nloc x ncand
    is_self = is_self.unsqueeze(0).expand([nf, nloc, ncand])
    big = paddle.full_like(dist2, float("inf"))
    dist2 = paddle.where(is_self, big, dist2)
    mindist = paddle.sqrt(paddle.minimum(dist2.min(axis=[1, 2]), paddle.full([nf], rcut * rcut, dtype)))
    within = dist2 < const(dist2, rcut * rcut)
    jt = paddle.take_along_axis(atype.astype("int64"), jidx.unsqueeze(0).expand([nf, ncand]), axis=1)
    blocks, shifts, counts = [], [], []
    for t, s in enumerate(sel):
        ok = within & (jt.unsqueeze(1) == t)
        counts.append(ok.astype("int32").sum(-1).max(axis=1))  # nf
        key = paddle.where(ok, dist2, big)
        if ncand < s:  # pad so that there are at least sel[t] candidates
            key = paddle.concat([key, paddle.full([nf, nloc, s - ncand], float("inf"), dtype)], -1)
        order = paddle.argsort(key, axis=-1, stable=True)[:, :, :s]  # nf x nloc x s
        valid = paddle.take_along_axis(key, order, axis=-1) < float("inf")
        cand = paddle.clip(order, max=ncand - 1)
        j = paddle.where(valid, cand % nloc, paddle.full_like(cand, -1))
        blocks.append(j.astype("int32"))
        dvec = paddle.take_along_axis(d, cand.unsqueeze(-1).expand([nf, nloc, s, 3]), axis=2)
        cj = paddle.take_along_axis(
            coord, paddle.clip(j, min=0).reshape([nf, -1, 1]).expand([nf, nloc * s, 3]), axis=1
        ).reshape([nf, nloc, s, 3])
        sh = dvec - (cj - coord.unsqueeze(2))  # shift relative to the input coordinates
        shifts.append(paddle.where(valid.unsqueeze(-1), sh, paddle.zeros_like(sh)))
    nlist = paddle.concat(blocks, axis=-1)
    shift = paddle.concat(shifts, axis=2)
    nmax = paddle.stack(counts, axis=-1).astype("int32")
    return nlist, shift, nmax, mindist


def _scatter(val, index, nall):
    """out[f, index[f, a]] += val[f, a] for val nf x n x k, index nf x n in [0, nall)."""
    nf, k = val.shape[0], val.shape[-1]
    frame = (paddle.arange(nf, dtype="int64") * nall).reshape([nf, 1])
    out = paddle.zeros([nf * nall, k], dtype=val.dtype)
    out = paddle.index_add(out, (index + frame).reshape([-1]), 0, val.reshape([-1, k]))
    return out.reshape([nf, nall, k])


def prod_force_virial(coord, g, rij, nlist, centre=None, atomic: bool = True):
    """(force nf x nall x 3, virial nf x 9, atom_virial nf x nall x 9 or None) from
    ``g = dE/dr_ij`` of the centre atoms (``centre``; None: all, nc = nall).

    ``F = -dE/dr``: the centre gets ``+sum_j g_ij``, the neighbour ``-g_ij``; the virial is
    ``W = -sum_ij g_ij (x) r_ij`` (DeePMD-kit's sign) and the atomic virial puts each pair's
    term on the neighbour j, as DeePMD-kit's operators do. Padded slots carry g = 0."""
    nf, nall = coord.shape[0], coord.shape[1]
    nc, nnei = nlist.shape[1], nlist.shape[2]
    j = paddle.clip(nlist.astype("int64"), min=0).reshape([nf, -1])  # nf x nc*nnei
    if centre is None:
        ci = paddle.expand(paddle.arange(nc, dtype="int64").reshape([1, nc]), [nf, nc])
    else:
        ci = paddle.expand(centre.reshape([1, nc]), [nf, nc])
    force = _scatter(g.sum(axis=2), ci, nall) - _scatter(g.reshape([nf, -1, 3]), j, nall)
    virial = -paddle.matmul(g.reshape([nf, -1, 3]), rij.reshape([nf, -1, 3]), transpose_x=True).reshape([nf, 9])
    atom_virial = None
    if atomic:
        pair = -(g.unsqueeze(-1) * rij.unsqueeze(-2)).reshape([nf, nc * nnei, 9])  # nf x nc*nnei x 9
        atom_virial = _scatter(pair, j, nall)
    return force, virial, atom_virial


def bias_tanh(z, b):
    """tanh(z + b)."""
    return paddle.tanh(z + b)


def descriptor(xyz, axis_neuron: int):
    """D = T T<^T: nat x ng x axis_neuron from T (nat x ng x 4)."""
    return paddle.matmul(xyz, xyz[:, :axis_neuron, :], transpose_y=True)


ROUND_MODES = {None: 0, "bfloat16": 1, "float16": 2, "float32": 3}  # the nets' compute precision (custom_ops/round_prec.h)


def nlayer_code(nlayer: int, compute_prec: str | None) -> int:
    """The embedding operators' ``nlayer`` attribute: the layer count, plus 256 x the rounding
    mode of a mixed-precision net (custom_ops/embedding_op.h)."""
    return nlayer + 256 * ROUND_MODES[compute_prec]


def round_to(x, mode: int):
    """x rounded to bfloat16 (mode 1), float16 (mode 2) or float32 (3), round to nearest even, kept in x's
    dtype; the derivative passes straight through (that of the identity)."""
    if mode == 0:
        return x
    # (rounding.py, not Paddle's cast: that turns inf into NaN here, rounds float64 twice through
    # float32, and takes float32 values far below float16's subnormals to 2^-24)
    return rounding.straight_through(x, {1: "bfloat16", 2: "float16", 3: "float32"}[mode])


def embed(env, params, sel, nlayer: int, timestep: bool):
    """T = (1/nnei) sum_j G_j^T R~_j (nat x ng x 4) with the embedding nets given as the fused
    operators take them: per neighbour type, per layer W, b and, with ``timestep`` on a layer
    with a skip connection (width kept or doubled), idt. Layers are DeePMD-kit's:
    ``y = idt * tanh(x W + b) + (x or [x, x])``. With a rounding mode in ``nlayer``
    (``nlayer_code``), every operand and result inside the nets is rounded where DeePMD-kit's
    mixed precision casts and computes (as the C++ kernels do; their derivatives use the rounded
    tanh where these use tanh's own output: equal to the rounding's precision)."""
    xyz, k, off = None, 0, 0
    m, nlayer = nlayer // 256, nlayer % 256
    for n in sel:
        e = env[:, off:off + n, :]  # nat x n x 4
        x = round_to(e[:, :, :1], m)
        for _ in range(nlayer):
            w, b = round_to(params[k], m), round_to(params[k + 1], m)
            k += 2
            n_in, n_out = w.shape[0], w.shape[1]
            y = round_to(paddle.tanh(round_to(round_to(
                x * w.reshape([-1]) if n_in == 1 else paddle.matmul(x, w), m) + b, m)), m)
            if n_out in (n_in, 2 * n_in):
                if timestep:
                    y = round_to(y * round_to(params[k], m), m)
                    k += 1
                y = round_to(y + (x if n_out == n_in else paddle.concat([x, x], axis=-1)), m)
            x = y
        part = paddle.matmul(x, e, transpose_x=True)  # nat x ng x 4
        xyz = part if xyz is None else xyz + part
        off += n
    return xyz * const(xyz, 1.0 / sum(sel))


def embed_cached(env, params, sel, nlayer: int, timestep: bool):
    """(T, an empty cache): ``embed`` with the C++ operator's outputs."""
    return embed(env, params, sel, nlayer, timestep), paddle.zeros([0], env.dtype)


def fitting_ener(x, params, timestep: list):
    """(E, dE/dx) of an energy fitting net, by autograd (x must require a gradient)."""
    h, k = x, 0
    for ts in timestep:
        w, b = params[k], params[k + 1]
        k += 2
        t = bias_tanh(paddle.matmul(h, w), b)
        if ts:
            t = t * params[k]
            k += 1
        ni, no = w.shape
        h = t + h if no == ni else t + paddle.concat([h, h], axis=-1) if no == 2 * ni else t
    e = paddle.matmul(h, params[k]) + params[k + 1]
    (gx,) = paddle.grad(e.sum(), x, create_graph=True)
    return e, gx


def tabulate(env, coef, info, sel, ti, type_one_side, ng):
    """(T nat x ng x 4, out-of-range count [1] int64): the tables of a compressed model (``cpp.tabulate``) in Paddle operations,
    differentiable to any order in ``env`` (the interval index is piecewise constant)."""
    ntypes, nnei = len(sel), sum(sel)
    k = coef.shape[2]
    xyz, nout, off = None, None, 0
    for t, n in enumerate(sel):
        if n == 0:
            continue
        net = t if type_one_side else ti + t * ntypes
        row = info[net]
        lower, upper, ext, h1, h2, n1, n2 = (row[i] for i in range(7))
        e = env[:, off:off + n, :]  # nat x n x 4
        s = e[:, :, 0]
        sd = s.detach()  # the interval and its start: piecewise constant (floor has no double grad)
        in1 = paddle.logical_and(sd >= lower, sd < upper)
        in2 = paddle.logical_and(sd >= upper, sd < ext)
        inside = paddle.logical_or(in1, in2)
        k1 = paddle.minimum(paddle.floor((sd - lower) / h1), n1 - 1)
        k2 = paddle.minimum(paddle.floor((sd - upper) / h2), n2 - 1)
        zero = paddle.zeros_like(sd)
        below = sd < lower
        idx = paddle.where(in1, k1, paddle.where(in2, n1 + k2, paddle.where(below, zero, zero + n1 + n2 - 1)))
        x0 = paddle.where(in1, lower + k1 * h1, upper + k2 * h2)
        end = paddle.where(below, zero, zero + paddle.where(n2 > 0, h2, h1))  # clamped: a table end
        tt = paddle.where(inside, s - paddle.where(inside, x0, zero), end)
        c = paddle.gather(coef[net], idx.reshape([-1]).astype("int64"))[:, :, :ng]  # nat*n x K x ng
        c = c.reshape([s.shape[0], n, k, ng])
        tt = tt.unsqueeze(-1)
        g = c[:, :, k - 1]
        for p in range(k - 2, -1, -1):
            g = g * tt + c[:, :, p]  # nat x n x ng
        part = paddle.matmul(g, e, transpose_x=True)  # nat x ng x 4
        xyz = part if xyz is None else xyz + part
        cnt = paddle.logical_not(inside).astype("int64").sum().reshape([1])
        nout = cnt if nout is None else nout + cnt
        off += n
    return xyz / paddle.full([1], float(nnei), "float64"), nout
