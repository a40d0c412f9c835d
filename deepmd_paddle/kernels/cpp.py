"""The C++ kernels behind checked Python signatures: the same signatures as their plain-Paddle
twins in ``twins.py`` (the table in ``deepmd_paddle.kernels`` pairs them).

The operators run in eager mode and inside ``paddle.jit.to_static`` programs; the shape checks
here hold while tracing (unknown sizes are -1), the value checks (``checks.check_frames``) run
in eager mode only.
"""
from __future__ import annotations

import paddle

from .build import load_library
from .checks import check_cutoffs, check_frames


@paddle.jit.not_to_static
def _lib():
    lib = load_library()
    if lib is None:
        raise RuntimeError("the deepmd_paddle C++ operators are not available in this process "
                           "(DEEPMD_PADDLE_NO_CUSTOM_OP is set, or no compiler / the build failed: see the "
                           "earlier warning); use the plain-Paddle kernels (deepmd_paddle.kernels.backend('paddle'))")
    return lib


# ----------------------------------------------------------------------------- shape checks (trace-safe)
def _shape(t) -> list:
    """Static shape, -1 where unknown while tracing."""
    return [d if isinstance(d, int) else -1 for d in t.shape]


@paddle.jit.not_to_static
def _check_shapes(coord, box, atype) -> None:
    """Shape and dtype checks that also hold while tracing (unknown sizes are -1)."""
    cs = _shape(coord)
    if len(cs) != 3 or cs[2] != 3:
        raise ValueError(f"coord must have shape [nf, nloc, 3], got {cs}")
    if coord.dtype not in (paddle.float32, paddle.float64):
        raise ValueError(f"coord must be float32 or float64, got {coord.dtype}")
    if len(_shape(atype)) != 2 or not _dims_match(_shape(atype), cs[:2]):
        raise ValueError(f"atype must have shape [nf, nloc] = {cs[:2]}, got {_shape(atype)}")
    if box is not None:
        if len(_shape(box)) != 2 or not _dims_match(_shape(box), [cs[0], 9]):
            raise ValueError(f"box must have shape [nf, 9] = {[cs[0], 9]}, got {_shape(box)}")
        if box.dtype != coord.dtype:
            raise ValueError(f"box must have the dtype of coord ({coord.dtype}), got {box.dtype}")


def _dims_match(got, want) -> bool:
    return len(got) == len(want) and all(g == w or g < 0 or w < 0 for g, w in zip(got, want))


_check_cutoffs = paddle.jit.not_to_static(check_cutoffs)


# ----------------------------------------------------------------------------- wrappers
def _attr(x: float) -> str:
    """A cutoff as the operator's attribute: repr round-trips the double exactly (Paddle 3.3's
    PIR backward has no double attributes, and float32 would round)."""
    return repr(float(x))


def neighbor_list(coord, box, atype, rcut: float, sel: list, check: bool = True):
    """Neighbour list of every atom: ``(nlist, shift, nmax, mindist)``.

    coord: nf x nloc x 3 (float32/float64); box: nf x 9 (rows a, b, c) or None for open
    boundaries; atype: nf x nloc integer in 0..len(sel)-1.
    nlist: int32 nf x nloc x nnei (nnei = sum(sel)), local index of the neighbour, sel[t] slots
    per type t, nearest first, -1 when unused; shift: nf x nloc x nnei x 3 (coord dtype) with
    ``r_ij = coord[j] + shift - coord[i]``; nmax: int32 nf x ntypes, the largest number of
    neighbours of each type within rcut (> sel[t] means truncation); mindist: nf, the smallest
    pair distance (0 for coinciding atoms, rcut when no pair). No gradient flows through it.
    ``check=False`` skips ``check_frames`` (the caller validated the inputs already).
    """
    sel = [int(s) for s in sel]
    _check_cutoffs(rcut, sel)
    _check_shapes(coord, box, atype)
    if atype.dtype != paddle.int32:
        atype = atype.astype("int32")
    if check and paddle.in_dynamic_mode():
        check_frames(coord, atype, box, len(sel), rcut=rcut)
    pbc = box is not None
    if box is None:
        box = paddle.zeros([1, 9], dtype=coord.dtype)
    outs = _lib().deepmd_neighbor_list(coord.detach(), box.detach(), atype, _attr(rcut), sel, pbc)
    for t in outs:
        t.stop_gradient = True
    return tuple(outs)


def env_mat(rij, nlist, atype, davg, dstd, rcut: float, rcut_smth: float):
    """Normalised environment matrix ``(R - davg[t_i]) / dstd[t_i]``: nf x nloc x nnei x 4.

    rij: nf x nloc x nnei x 3 (float32/float64, differentiable; padded slots ignored);
    nlist: int32 nf x nloc x nnei (-1 = padded); atype: nf x nloc; davg, dstd: ntypes x nnei x 4
    (constants, cast to rij's dtype). The result has rij's dtype. Gradient and double gradient
    wrt rij are exact.
    """
    rij, nlist, atype, davg, dstd = _env_args(rij, nlist, atype, davg, dstd, rcut, rcut_smth)
    return _lib().deepmd_env_mat(rij, nlist, atype, davg, dstd, _attr(rcut), _attr(rcut_smth))


def env_mat_excl(rij, nlist, atype, davg, dstd, emask, rcut: float, rcut_smth: float):
    """``env_mat`` times ``emask[t_i, slot]`` (ntypes x nnei, 0 or 1): the rows of excluded type
    pairs are zero, and so are their gradient and double gradient."""
    rij, nlist, atype, davg, dstd = _env_args(rij, nlist, atype, davg, dstd, rcut, rcut_smth)
    if not _dims_match(_shape(emask), _shape(dstd)[:2]):
        raise ValueError(f"emask must have shape [ntypes, nnei] = {_shape(dstd)[:2]}, got {_shape(emask)}")
    if emask.dtype != rij.dtype:
        emask = emask.astype(rij.dtype)
    return _lib().deepmd_env_mat_excl(rij, nlist, atype, davg, dstd, emask.detach(), _attr(rcut), _attr(rcut_smth))


def _env_args(rij, nlist, atype, davg, dstd, rcut: float, rcut_smth: float):
    """The checked and converted inputs of the environment-matrix operators."""
    _check_cutoffs(rcut, None, rcut_smth)
    rs = _shape(rij)
    if len(rs) != 4 or rs[3] != 3:
        raise ValueError(f"rij must have shape [nf, nloc, nnei, 3], got {rs}")
    if not _dims_match(_shape(nlist), rs[:3]):
        raise ValueError(f"nlist must have shape [nf, nloc, nnei] = {rs[:3]}, got {_shape(nlist)}")
    if not _dims_match(_shape(atype), rs[:2]):
        raise ValueError(f"atype must have shape [nf, nloc] = {rs[:2]}, got {_shape(atype)}")
    if rij.dtype not in (paddle.float32, paddle.float64):
        raise ValueError(f"rij must be float32 or float64, got {rij.dtype}")
    for name, t in (("davg", davg), ("dstd", dstd)):
        if len(_shape(t)) != 3 or not _dims_match(_shape(t)[1:], [rs[2], 4]):
            raise ValueError(f"{name} must have shape [ntypes, nnei = {rs[2]}, 4], got {_shape(t)}")
    if davg.dtype != rij.dtype:  # statistics are often kept in float64: env follows rij
        davg = davg.astype(rij.dtype)
    if dstd.dtype != rij.dtype:
        dstd = dstd.astype(rij.dtype)
    if nlist.dtype != paddle.int32:
        nlist = nlist.astype("int32")
    if atype.dtype != paddle.int32:
        atype = atype.astype("int32")
    return rij, nlist, atype, davg.detach(), dstd.detach()


def _centre(nlist, centre):
    return paddle.arange(paddle.shape(nlist)[1], dtype="int64") if centre is None else centre


def build_rij(coord, nlist, shift, centre=None):
    """r_ij = coord[j] + shift - coord[centre_i] (nf x nc x nnei x 3) in one pass; its gradient
    op exists for static graphs only (use the twin where coordinates need a gradient)."""
    return _lib().deepmd_build_rij(coord, nlist, shift, _centre(nlist, centre))


def prod_force_virial(coord, g, rij, nlist, centre=None, atomic: bool = True):
    """(force nf x nall x 3, virial nf x 9, atom_virial nf x nall x 9) from g = dE/dr_ij of the
    centre atoms ``centre``; no gradient. The operator computes the atomic virial whatever
    ``atomic`` says."""
    return tuple(_lib().deepmd_prod_force_virial(coord, g, rij, nlist, _centre(nlist, centre)))


def bias_tanh(z, b):
    """tanh(z + b) in one pass, with gradient and double gradient."""
    return _lib().bias_tanh(z, b)


def descriptor(xyz, axis_neuron: int):
    """D = T T<^T (nat x ng x axis_neuron) from T (nat x ng x 4), float64."""
    return _lib().se_a_descriptor(xyz, axis_neuron)


def tabulate(env, coef, info, sel, ti: int, type_one_side: bool, ng: int):
    """(T nat x ng x 4, out-of-range count) from the embedding tables (compressed models)."""
    return tuple(_lib().se_a_tabulate(env, coef, info, sel, ti, type_one_side, ng))


def embed(env, params, sel, nlayer: int, timestep: bool):
    """T = (1/nnei) sum_j G_j^T R~_j through the tanh embedding nets given as a flat list of
    weights (per neighbour type, per layer W, b (, idt)); no gradient reaches the weights."""
    return _lib().se_a_embed(env, params, sel, nlayer, timestep)


def embed_cached(env, params, sel, nlayer: int, timestep: bool):
    """(T, cache of G and dG/ds for the later passes; empty when too large)."""
    return tuple(_lib().se_a_embed_cached(env, params, sel, nlayer, timestep))


def embed_train(env, params, sel, nlayer: int, timestep: bool):
    """``embed`` whose gradient (and force-loss double gradient) reaches the weights."""
    return _lib().se_a_embed_train(env, params, sel, nlayer, timestep)


# the passes of the hand-assembled training step (deepmd_paddle.train.fused_step), no gradient
def embed_vjp(env, params, gt, cache, sel, nlayer: int, timestep: bool):
    """dE/dR~ (nat x nnei x 4) from gT = dE/dT."""
    return _lib().se_a_embed_vjp(env, params, gt, cache, sel, nlayer, timestep)


def embed_ggt(env, params, a, cache, sel, nlayer: int, timestep: bool):
    """d<gT, dT/dR~ . a>/dgT: T's directional derivative along ``a`` (nat x ng x 4)."""
    return _lib().se_a_embed_ggt(env, params, a, cache, sel, nlayer, timestep)


def embed_pgrad(env, params, tbar, gt, a, sel, nlayer: int, timestep: bool, tape=None):
    """The weights' gradient (flat, in ``params`` order) of <T, tbar> + <gT, dT/dR~ . a>;
    ``tape``: ``embed_tape``'s (the nets are not evaluated again), or None."""
    if tape is None:
        tape = paddle.zeros([0], env.dtype)
    return _lib().se_a_embed_pgrad(env, params, tbar, gt, a, tape, sel, nlayer, timestep)


def fitting_ener(x, params, timestep: list):
    """(E, dE/dx) of an energy fitting net (tanh hidden layers with their ``timestep`` flags, one
    linear output); the gradient of both reaches x and the weights (first order)."""
    e, gx, _ = _lib().deepmd_fitting_ener(x, params, [int(t) for t in timestep])
    return e, gx


def embed_tape(env, params, sel, nlayer: int, timestep: bool):
    """``embed_cached``'s (T, cache) and the nets' activations for ``embed_pgrad`` (empty when
    too large: DEEPMD_PADDLE_EMBED_CACHE_MB)."""
    return tuple(_lib().se_a_embed_tape(env, params, sel, nlayer, timestep))


_ROUND_MODES = {"bfloat16": 1, "float16": 2}  # deepmd_round_delta's mode (custom_ops/round_prec.h)


def round_delta(x, fmt: str):
    """round(x) - x to bfloat16 or float16 (kernels/rounding.py: its twin); no gradient."""
    if fmt not in _ROUND_MODES:
        raise ValueError(f"deepmd_round_delta rounds to {sorted(_ROUND_MODES)}, not {fmt!r}")
    return _lib().deepmd_round_delta(x, _ROUND_MODES[fmt])
