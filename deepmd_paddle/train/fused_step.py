"""A training step whose loss gradient is assembled by hand around the fused C++ embedding.

Autograd through the embedding operator (``se_a_embed_train``) runs the embedding nets four
times per step: forward, the gradient for the forces (which also computes weight gradients
nobody asked for), the gradient of the energy term, and the double gradient of the force term.
Here each pass runs once, and the two weight-gradient sweeps are one. With T the per-atom
contraction (1/nnei) sum_j G_j^T R~_j (nat x ng x 4), E(T) the fitting part and
gT = dE/dT, a loss L(E, F, W) with F, W linear in dE/dR~:

1. ``T = se_a_embed_tape(R~)`` (or ``se_a_embed_cached``) without a graph: it keeps G and dG/ds
   for steps 2 and 3 and the nets' activations for step 5; T is made a leaf, D = D(T), and
   E with dE/dD by the fitting operator (``fitting_ener``: one C++ call per centre type, whose
   gradient is written by hand), gT = dE/dT from dE/dD through the descriptor with
   ``create_graph``. Where that operator does not apply (another activation, mixed precision,
   frame/atomic parameters, a type vector in the fitting input, atom_ener): E from the Paddle
   layers and gT by autograd with ``create_graph`` (the fitting net's double-backward graph).
2. ``dE/dR~ = se_a_embed_vjp(R~, gT)`` (C++), a leaf; g = dE/dr_ij through the
   environment-matrix operator's gradient, with a graph in dE/dR~ only; F and W by the product
   operator without a graph (they are linear in g).
3. ``a = dL/d(dE/dR~)``: dL/dg from dL/dF and dL/dW by hand (``force_virial_vjp``), then
   ``paddle.grad`` through the env-mat gradient; then ``dL/dgT = se_a_embed_ggt(R~, a)`` (C++).
4. ``L_e + <gT, dL/dgT>`` is a surrogate with the true gradient in the fitting weights and in T
   (``backward``): ``Tbar = dL/dT``.
5. ``se_a_embed_pgrad(R~, Tbar, gT, a)`` (C++) gives the embedding weights' gradient in one
   reverse sweep over the forward-mode pass of step 1 (its tape; evaluated again when the tape
   was too large to keep); it is added to the parameters' ``.grad`` (to tensors computed from
   parameters by the backward of ``sum_p <p, grad_p>``).

Frame and atomic parameters (``fparam``/``aparam`` in the batch) enter the fitting net only, next
to D(T): they change E(T) and gT, nothing of the C++ passes.

The C++ passes run once per block of atoms that share embedding nets: per centre type, or
all atoms at once when the nets do not depend on the centre type (``type_one_side``); only the
fitting nets then go type by type. A type-embedding descriptor (DescrptSeATebd) passes its net
as per-type nets whose first-layer bias carries the type vector (``fused_params``): those are
tensors computed from its parameters, so step 5's backward carries their gradient on to the
net's weights and to learned type vectors.

The result equals autograd through the Paddle layers to rounding (tests/test_model.py,
tests/test_type_embedding.py). Second derivatives in the positions never enter: the loss has
none.
"""
from __future__ import annotations

import math
import time

import paddle

from ..model.energy_model import EnergyModel

# wall seconds per phase of ``step``, summed over calls, while a profiler sets this to a dict
# (tools/profile_train_step.py --phases); None: not timed
PHASES: dict | None = None


def _phase(t0: float, name: str) -> float:
    if PHASES is None:
        return t0
    t = time.perf_counter()
    PHASES[name] = PHASES.get(name, 0.0) + t - t0
    return t


PASSES = ("embed_cached", "embed_vjp", "embed_ggt", "embed_pgrad")  # the C++ kernels this step runs (embed_tape too when built)


def supported(model) -> bool:
    """The model's embedding can run in the fused operators (tanh nets, operators built)."""
    if not isinstance(model, EnergyModel) or model.descriptor.tabulation is not None or model.srtab is not None:
        return False  # compressed models (tables) and use_srtab train by autograd through their layers
    desc = model.descriptor
    # (untrainable embedding nets: the passes run all the same, the weight sweep is skipped)
    # a type embedding passes its net to the operators as per-type nets (DescrptSeATebd.fused_params)
    return desc.fused_ready() and all(model.kernels.has(name) for name in PASSES)


def step(model: EnergyModel, loss_fn, b: dict, lr: float):
    """Loss and l2 of batch ``b`` (as ``loss_fn`` returns them); every trainable parameter's
    ``.grad`` receives the loss gradient (accumulated, like ``loss.backward()``)."""
    t_ph = time.perf_counter() if PHASES is not None else 0.0
    desc, kern = model.descriptor, model.kernels
    attrs = desc.fused_attrs()
    prec = desc.precision
    coord, atype, box, nlist, shift, _ = model.prepare(b["coord"], b["atype"], b["box"])
    nf, nloc, nnei = coord.shape[0], coord.shape[1], desc.nnei
    rij, _, env = model.centre_env(coord, atype, nlist, shift, None)  # rij a leaf, graph rij -> R~ (for the forces)
    flat = env.detach().reshape([-1, nnei, 4])
    at = atype.reshape([-1])
    extra = model.fitting.param_rows(b.get("fparam"), b.get("aparam"), atype)  # fparam/aparam rows, or None

    # blocks of atoms that share embedding nets: one per centre type, or all atoms at once when
    # the nets do not depend on the centre type (type_one_side)
    t_ph = _phase(t_ph, "neighbour list, r_ij, env mat")
    by_type = model.centre_blocks(at)
    groups = [(0, None)] if desc.type_one_side else by_type
    blocks = []
    for ti, idx in groups:
        env_i = flat if idx is None else paddle.gather(flat, idx)
        if prec != "float64":
            env_i = env_i.astype(prec)
        live = desc.fused_params(ti)
        params = [p.detach() for p in live]
        if kern.has("embed_tape"):  # cache: G, dG/ds; tape: the nets' activations for step 5 (empty if too big)
            t, cache, tape = kern.embed_tape(env_i, params, *attrs)
        else:
            (t, cache), tape = kern.embed_cached(env_i, params, *attrs), None
        t.stop_gradient = False
        blocks.append({"idx": idx, "env": env_i, "live": live, "params": params, "T": t, "cache": cache,
                       "tape": tape})
    t_ph = _phase(t_ph, "embedding forward (tape)")
    energies, index, ds, gds = [], [], [], []
    # the fitting operator for every centre type, or for none (its gradient is first order only)
    fits = [model.fitting_kernel_params(ti) for ti, _ in by_type] if extra is None else [None]
    fit_fused = bool(fits) and all(f is not None for f in fits)
    for k, (ti, idx) in enumerate(by_type):
        if not desc.type_one_side:
            t = blocks[k]["T"]
        else:
            t = blocks[0]["T"] if len(by_type) == 1 else paddle.gather(blocks[0]["T"], idx)
        d = model.fitting.cast_input(desc.from_contraction(t))  # (in the fitting nets' precision)
        if fit_fused:  # E_i and dE_i/dD in one operator
            e, gd = model.atom_energy_and_grad(d, ti, fits[k])
            energies.append(e)
            ds.append(d)
            gds.append(gd)
        else:
            energies.append(model.atom_energy_of(d, ti, None if extra is None else paddle.gather(extra, idx)))
        index.append(idx)
    atom_e = EnergyModel.in_atom_order(energies, index).reshape([nf, nloc, 1])  # (loss terms of E_i: train/loss.py)
    energy = atom_e.sum(axis=1)  # nf x 1
    t_ph = _phase(t_ph, "descriptor, fitting E and dE/dD")
    ts = [bl["T"] for bl in blocks]
    if fit_fused:  # gT = dE/dT from dE/dD through the descriptor (a graph in both)
        gts = paddle.grad(ds, ts, grad_outputs=gds, create_graph=True)
    else:
        gts = paddle.grad(energy.sum(), ts, create_graph=True)

    # dE/dR~ by the fused operator, then forces and virial through the env-mat gradient
    parts = []
    for bl, gt in zip(blocks, gts):
        parts.append(kern.embed_vjp(bl["env"], bl["params"], gt.detach(), bl["cache"], *attrs).astype("float64"))
    genv = (parts[0] if desc.type_one_side else EnergyModel.in_atom_order(parts, index)).reshape(env.shape)
    genv.stop_gradient = False
    (g,) = paddle.grad(env, rij, grad_outputs=genv, create_graph=True)  # nf x nloc x nnei x 3
    # F and W are linear in g: the product without a graph (the C++ operator when built), then
    # dL/dg from dL/dF and dL/dW by hand (force_virial_vjp)
    t_ph = _phase(t_ph, "gT, embedding vjp, env-mat gradient")
    force, virial, _ = kern.get("prod_force_virial")(coord, g.detach(), rij.detach(), nlist, None, atomic=False)
    force.stop_gradient = virial.stop_gradient = False

    loss_fv, l2 = loss_fn({"energy": energy.detach(), "atom_energy": atom_e.detach(), "force": force,
                           "virial": virial}, b, lr)
    a = None
    if isinstance(loss_fv, paddle.Tensor) and not loss_fv.stop_gradient:
        fbar, vbar = paddle.grad(loss_fv, [force, virial], allow_unused=True)
        gbar = force_virial_vjp(fbar, vbar, rij.detach(), nlist)
        if gbar is not None:
            (a,) = paddle.grad(g, genv, grad_outputs=gbar, allow_unused=True)
    loss_e, _ = loss_fn({"energy": energy, "atom_energy": atom_e, "force": force.detach(), "virial": virial.detach()},
                        b, lr)

    t_ph = _phase(t_ph, "forces, loss, force cotangent")
    surrogate = loss_e
    if a is not None:
        a = a.reshape([-1, nnei, 4])
        for bl, gt in zip(blocks, gts):
            bl["a"] = (a if bl["idx"] is None else paddle.gather(a, bl["idx"])).astype(prec)
            ggt = kern.embed_ggt(bl["env"], bl["params"], bl["a"], bl.pop("cache"), *attrs)
            surrogate = surrogate + (gt * ggt).sum()
    t_ph = _phase(t_ph, "embedding ggt")
    if isinstance(surrogate, paddle.Tensor) and not surrogate.stop_gradient:
        surrogate.backward()  # fitting weights, out_bias if trainable, and Tbar on each T

    t_ph = _phase(t_ph, "backward: fitting, descriptor, loss")
    empty = paddle.zeros([0], prec)
    grads = {}
    for bl, gt in zip(blocks, gts):
        tbar = bl["T"].grad
        if tbar is None and "a" not in bl or all(p.stop_gradient for p in bl["live"]):
            continue  # (untrainable embedding nets: no weight gradient to sweep)
        flat_g = kern.embed_pgrad(bl["env"], bl["params"], empty if tbar is None else tbar,
                                  gt.detach() if "a" in bl else empty, bl.get("a", empty), *attrs, tape=bl["tape"])
        parts = paddle.split(flat_g, [math.prod(p.shape) for p in bl["live"]])  # (numel() is an operator)
        for p, part in zip(bl["live"], parts):
            if not p.stop_gradient:
                key, g = id(p), part.reshape(p.shape)
                grads[key] = (p, g + grads[key][1] if key in grads else g)
    t_ph = _phase(t_ph, "embedding weight gradients (pgrad)")
    transfer = None
    for p, gp in grads.values():
        if p.is_leaf:  # a parameter: added to .grad as backward() would
            p.grad = gp if p.grad is None else p.grad + gp
        else:  # a tensor computed from parameters (a type embedding's nets): backward carries it on
            term = (p * gp).sum()
            transfer = term if transfer is None else transfer + term
    if transfer is not None:
        transfer.backward()
    _phase(t_ph, "gradients to the parameters")
    return loss_fv, l2


def force_virial_vjp(fbar, vbar, rij, nlist):
    """dL/dg (nf x nc x nnei x 3) of ``prod_force_virial`` (all nc = nloc atoms centres, no atomic
    virial) from dL/dF (nf x nall x 3) and dL/dW (nf x 9), either None when the loss has no such
    term: the centre's row of dL/dF minus the neighbour's, minus dL/dW r_ij. Padded slots (index
    -1) read atom 0, as the product's twin adds their (zero) g there."""
    nf, nc, nnei = nlist.shape[0], nlist.shape[1], nlist.shape[2]
    gbar = None
    if fbar is not None:  # (row gathers and a same-shape difference: Paddle's CPU broadcasts are slow)
        nall = fbar.shape[1]
        frame = (paddle.arange(nf, dtype="int64") * nall).reshape([nf, 1, 1])
        centre = paddle.arange(nc, dtype="int64").reshape([1, nc, 1]).expand([nf, nc, nnei]) + frame
        neigh = paddle.clip(nlist.astype("int64"), min=0) + frame
        rows = fbar.reshape([-1, 3])
        gbar = (paddle.gather(rows, centre.reshape([-1])) - paddle.gather(rows, neigh.reshape([-1])))
        gbar = gbar.reshape([nf, nc, nnei, 3])
    if vbar is not None:
        term = paddle.matmul(rij.reshape([nf, nc * nnei, 3]), vbar.reshape([nf, 3, 3]), transpose_y=True)
        term = term.reshape([nf, nc, nnei, 3])
        gbar = -term if gbar is None else gbar - term
    return gbar
