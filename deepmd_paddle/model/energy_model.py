"""The DeepPot-SE energy model: neighbour list -> r_ij -> R~ -> se_e2_a descriptor -> fitting -> E.

One path computes energies and their derivatives, ``forward_lower``: given coordinates of all
atoms (local and ghost), their types, the neighbour list of the centre atoms with its image
shifts, and the centre atoms, it goes r_ij -> R~ -> E_i -> g_ij = dE/dr_ij -> F, W. Everything
else is a caller of it: ``forward`` (whole frames: neighbour search + lower), the frozen
programs (``deepmd_paddle.io.frozen``), ``DeepPot``'s blocks of centre atoms and the LAMMPS
pair style (``deepmd_paddle.infer.blocks``). The fused training step
(``deepmd_paddle.train.fused_step``) uses the same stages through the public methods below.

With ``g_ij = dE/dr_ij`` (``r_ij = r_j - r_i``): ``F_i = sum_j g_ij - sum_{k: i in N(k)} g_ki``
(so ``F = -dE/dr``), the virial ``W = -sum_ij g_ij (x) r_ij`` (DeePMD-kit's sign), and the atomic
virial puts each pair's term on the neighbour atom j, as DeePMD-kit's operators do (the
``prod_force_virial`` kernel). With ``create_graph=True`` the force stays differentiable in the
weights: that double gradient is what training on forces needs.

Outputs travel as a dict with DeePMD-kit's names (``OUTPUTS``).
"""
from __future__ import annotations

import numpy as np
import paddle

from ..kernels import default_backend
from .descriptor import DescrptSeA
from .descriptors import descriptor_class, make_descriptor, mixed_types
from .fitting import EnergyFitting
from . import mixed_precision
from .network import check_class
from .stages import FrameStages

# the keys from_config needs (the schema fills them: config.normalize_model)
_DESCRIPTOR_KEYS = ("sel", "rcut", "rcut_smth", "neuron", "axis_neuron", "type_one_side", "resnet_dt", "precision")
_FITTING_KEYS = ("neuron", "resnet_dt")  # (precision: the descriptor's when not given)
# output name -> shape (nf frames, nc centre atoms, nall atoms)
OUTPUTS = {"energy": "nf x 1", "atom_energy": "nf x nc x 1", "force": "nf x nall x 3", "virial": "nf x 9",
           "atom_virial": "nf x nall x 9"}


class EnergyModel(FrameStages, paddle.nn.Layer):
    def __init__(self, type_map, descriptor: DescrptSeA, fitting: EnergyFitting, kernels=None):
        super().__init__()
        self.type_map = list(type_map)
        self.ntypes = len(self.type_map)
        self.descriptor = descriptor
        self.fitting = fitting
        # DeePMD-kit's model-level output statistics: E_i += out_bias[type_i]
        self.register_buffer("out_bias", paddle.zeros([self.ntypes], "float64"))
        self.register_buffer("out_std", paddle.ones([self.ntypes], "float64"))
        self._config = None
        self.srtab = None  # a tabulated short-range pair potential blended in (model/srtab.py: use_srtab)
        self.min_nbor_dist = None  # the training data's smallest pair distance (compression)
        self.mixed_precision = None  # {"output_prec", "compute_prec"} when the nets round (model/mixed_precision.py)
        self.modifier = None  # DPLR's dipole_charge correction (model/dplr.py): added by DeepPot, not here
        self.set_kernels(kernels or default_backend())

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, cfg: dict, kernels=None) -> "EnergyModel":
        """Build from DeePMD-kit's ``model`` section (``type_map``, ``descriptor``, ``fitting_net``) as
        the schema normalises it (``deepmd_paddle.config.normalize_model`` fills the defaults).
        ``mixed_precision`` (deepmd_paddle's record of ``training/mixed_precision``): the nets round
        to its compute_prec, the descriptor and fitting net are in its output_prec."""
        mixed = cfg.get("mixed_precision")
        cfg = mixed_precision.apply_to_section(cfg, mixed)  # (also checks it)
        type_map = list(cfg["type_map"])
        dcfg = dict(cfg["descriptor"])
        fcfg = dict(cfg.get("fitting_net", {}))
        missing = [f"{part}/{k}" for part, sec, keys in (("descriptor", dcfg, _DESCRIPTOR_KEYS),
                                                          ("fitting_net", fcfg, _FITTING_KEYS))
                   for k in keys if k not in sec]
        if missing:
            raise ValueError(f"model section without {missing}: build models from a normalised section "
                             "(deepmd_paddle.config.normalize_model fills DeePMD-kit's defaults)")
        ntypes = len(type_map)
        tebd = cfg.get("type_embedding")  # DeePMD-kit's model-level section: one fitting net for all types
        desc = make_descriptor(type_map, dcfg, tebd)  # DescrptSeA, or one with a type embedding (descriptors.py)
        fcfg.setdefault("precision", desc.precision)
        fit = EnergyFitting(ntypes, desc.get_dim_fitting_input(), **fcfg, mixed_types=mixed_types(dcfg, tebd))
        model = cls(type_map, desc, fit, kernels)
        model._config = {"type_map": type_map, "descriptor": dcfg, "fitting_net": fcfg}
        if tebd is not None:
            model._config["type_embedding"] = tebd
        if mixed is not None:
            mixed_precision.enable(model, mixed)
            model._config["mixed_precision"] = model.mixed_precision
        if cfg.get("use_srtab") is not None or cfg.get("srtab_table") is not None:
            from .srtab import attach
            attach(model, cfg)
        if cfg.get("modifier"):  # DPLR: the dipole model as a sublayer, built from its record (weights to be set)
            from .dplr import DipoleChargeModifier
            model.modifier = DipoleChargeModifier.from_config(cfg["modifier"], type_map)
            model._config["modifier"] = model.modifier.config()
        if cfg.get("compress"):  # a compressed model's checkpoint: empty tables, filled on loading
            from .tabulate import attach
            attach(model, cfg["compress"])
        return model

    def get_config(self) -> dict:
        if self._config is None:  # imported models: rebuild the section from the layers
            d, f = self.descriptor, self.fitting
            self._config = {
                "type_map": self.type_map,
                "descriptor": {"type": "se_a_ebd_v2" if hasattr(d, "type_net") else "se_e2_a", "sel": d.sel, "rcut": d.rcut, "rcut_smth": d.rcut_smth,
                               "neuron": d.neuron, "axis_neuron": d.axis_neuron,
                               "type_one_side": d.type_one_side, "resnet_dt": d.resnet_dt,
                               "precision": d.precision, "activation_function": d.activation_function,
                               "trainable": d.trainable, "exclude_types": d.exclude_types},
                "fitting_net": {"neuron": f.neuron, "resnet_dt": f.resnet_dt, "precision": f.precision,
                                "activation_function": f.activation_function, "trainable": f.trainable,
                                "atom_ener": f.serial_atom_ener(), **f.input_config()},
            }
            if getattr(d, "concat_output_tebd", False):
                self._config["type_embedding"] = d.type_embedding.config
            elif hasattr(d, "type_embedding"):
                self._config["descriptor"]["type_embedding"] = d.type_embedding.config
            if self.mixed_precision is not None:
                self._config["mixed_precision"] = dict(self.mixed_precision)
            if self.modifier is not None:
                self._config["modifier"] = self.modifier.config()
        return self._config

    def with_mixed_precision(self, spec) -> "EnergyModel":
        """A copy that rounds as ``spec`` says (``training/mixed_precision``; None: a plain copy),
        its weights cast to ``output_prec`` (as DeePMD-kit's ``enable_mixed_precision`` sets the nets'
        precision): for a file that does not record the setting, e.g. DeePMD-kit's .dp of a model
        it trained with mixed precision."""
        out = EnergyModel.from_config(mixed_precision.apply_to_section(self.get_config(), spec))
        own = out.state_dict()
        out.set_state_dict({k: np.asarray(v.numpy()).astype(own[k].numpy().dtype) for k, v in self.state_dict().items()})
        out.set_kernels(self.kernels)
        out.min_nbor_dist = self.min_nbor_dist
        return out

    def get_rcut(self):
        return self.descriptor.rcut

    def get_sel(self):
        return list(self.descriptor.sel)

    # ---------------------------------------------------------------- evaluation
    def forward(self, coord, atype, box=None, do_atomic_virial: bool = False, create_graph: bool = False,
                check: bool = True, fparam=None, aparam=None):
        """Whole frames: coord nf x nloc x 3, atype nf x nloc (int), box nf x 9 or None (open
        boundaries). The neighbour search, then ``forward_lower`` with every atom a centre:
        energy [nf,1], atom_energy [nf,nloc,1], force [nf,nloc,3], virial [nf,9] and, when
        asked, atom_virial [nf,nloc,9]; all float64. fparam nf x numb_fparam, aparam nf x nloc x
        numb_aparam: the frame and atomic parameters, when the fitting takes them."""
        coord, atype, box, nlist, shift, keep = self.prepare(coord, atype, box, check)
        return self.forward_lower(coord, atype, nlist, shift, None, do_atomic_virial, create_graph, keep,
                                  fparam, aparam)

    def forward_lower(self, coord, atype, nlist, shift, centre=None, do_atomic_virial: bool = True,
                      create_graph: bool = False, keep: list | None = None, fparam=None, aparam=None) -> dict:
        """The energy of the centre atoms and its derivatives (see the module docstring).

        coord nf x nall x 3 (float64), atype nf x nall (int32), nlist nf x nc x nnei (int32,
        indices into nall, -1 padded), shift nf x nc x nnei x 3 (``r_ij = coord[j] + shift -
        coord[i]``), centre [nc] int64 (None: every atom, nc = nall). Forces and virials are the
        centre atoms' share on all atoms: the shares of blocks of centres add up to the whole.
        ``keep``: see ``prepare``. fparam nf x numb_fparam, aparam nf x nc x numb_aparam (the centre atoms')."""
        coord_grad = paddle.in_dynamic_mode() and not coord.stop_gradient  # the caller differentiates in coord
        second = create_graph and coord_grad
        rij, tc, env = self.centre_env(coord, atype, nlist, shift, centre, 1 if create_graph or coord_grad else 0)
        extra = self.fitting.param_rows(fparam, aparam, tc)  # (nf*nc) x numb_fparam(+numb_aparam), or None
        path = self.descriptor.embedding_path(second, create_graph)
        atom_e = self.atomic_energy(env, tc, path, keep, extra)  # nf x nc x 1
        if self.srtab is not None:  # E_i = l_i T_i + (1 - l_i) E_i (model/srtab.py)
            atom_e = self.srtab(atom_e, rij, nlist, tc, atype, self.fitting.bias_atom_e)
        (g,) = paddle.grad(atom_e.sum(), rij, create_graph=create_graph, allow_unused=True)  # nf x nc x nnei x 3
        if g is None:  # no atom has a neighbour (a net that skips padded slots never saw r_ij)
            g = paddle.zeros_like(rij)
        # (a kernel is named before it is called: to_static converts calls of names only)
        prod_force_virial = self.kernels.get("prod_force_virial", int(create_graph))
        force, virial, atom_virial = prod_force_virial(coord, g, rij, nlist, centre, atomic=do_atomic_virial)
        out = {"energy": atom_e.sum(axis=1), "atom_energy": atom_e, "force": force, "virial": virial}
        if do_atomic_virial:
            out["atom_virial"] = atom_virial
        return out

    def atom_energy_of(self, d, ti: int, extra=None):
        """E_i of a block of atoms of centre type ti from their descriptor rows (nat x 1, float64);
        ``extra``: their rows of ``fitting.param_rows`` (frame/atomic parameters)."""
        vacuum = None  # an isolated atom's input (atom_ener): D = 0, a type vector kept (DeePMD-kit)
        ndesc = self.descriptor.get_dim_out()  # (ints from the layers: shapes are not ints in static graphs)
        if self.fitting.minus_vacuum(ti) and self.descriptor.get_dim_fitting_input() != ndesc:
            vacuum = self.descriptor.fitting_input(paddle.zeros([1, ndesc], d.dtype), ti)
        return self.fitting(self.descriptor.fitting_input(d, ti), ti, vacuum, extra) + self.out_bias[ti]

    def fitting_kernel_params(self, ti: int):
        """Type ti's fitting net as the ``fitting_ener`` kernel takes it ((weights, timestep
        flags): ``EnergyFitting.fused_params``), or None where type ti's energies cannot come
        from that kernel."""
        if not self.kernels.has("fitting_ener") or \
                self.descriptor.get_dim_fitting_input() != self.descriptor.get_dim_out():
            return None
        return self.fitting.fused_params(ti)

    def atom_energy_and_grad(self, d, ti: int, fused):
        """(E_i, dE_i/dD_i) of a block of atoms of centre type ti by the ``fitting_ener`` kernel,
        both with their gradient (a training step's loss on energies and forces); ``fused``: what
        ``fitting_kernel_params(ti)`` returned (not None)."""
        e, gd = self.kernels.fitting_ener(d, *fused)
        # (dE/dD passes through a single-output operation: Paddle 3.3 sent the gradient of a
        # grad_outputs tensor that is a later output of a multi-output operator to its first output)
        return e.astype("float64") + self.fitting.bias_atom_e[ti] + self.out_bias[ti], gd.scale(1.0)

    def descriptor_blocks(self, env, atype, path: str, keep: list | None = None) -> list:
        """[(ti, indices, D of those atoms)] per centre type, from R~ (nf x nc x nnei x 4) and the
        centre types (nf x nc); ``path``: see ``DescrptSeA.embedding_path``."""
        flat = env.reshape([-1, env.shape[2], 4])
        at = atype.reshape([-1])
        # a descriptor with one_pass (one embedding net for all types) takes every atom at once
        d_all = self.descriptor(flat, at, path, keep) if getattr(self.descriptor, "one_pass", False) else None
        blocks = []
        for ti, idx in self.centre_blocks(at):
            d = self.descriptor(paddle.gather(flat, idx), ti, path, keep) if d_all is None else paddle.gather(d_all, idx)
            blocks.append((ti, idx, d))
        return blocks

    def atomic_energy(self, env, atype, path: str, keep: list | None = None, extra=None):
        """E_i (nf x nc x 1) from R~ (nf x nc x nnei x 4) and the centre types (nf x nc)."""
        parts, index = [], []
        for ti, idx, d in self.descriptor_blocks(env, atype, path, keep):
            parts.append(self.atom_energy_of(d, ti, None if extra is None else paddle.gather(extra, idx)))
            index.append(idx)
        return self.in_atom_order(parts, index).reshape([env.shape[0], env.shape[1], 1])

    def descriptor_lower(self, coord, atype, nlist, shift, centre=None):
        """The se_e2_a descriptor D of the centre atoms (nf x nc x ng*axis_neuron, float64), as
        DeePMD-kit's ``eval_descriptor``; inputs as ``forward_lower``."""
        _, tc, env = self.centre_env(coord, atype, nlist, shift, centre)
        parts, index = [], []
        for _, idx, d in self.descriptor_blocks(env, tc, self.descriptor.embedding_path(False)):
            parts.append(d.astype("float64"))
            index.append(idx)
        return self.in_atom_order(parts, index).reshape([env.shape[0], env.shape[1], -1])

    def descriptor_of(self, coord, atype, box=None):
        """``descriptor_lower`` of whole frames (NumPy, nf x nloc x ndesc)."""
        coord, atype = coord.astype("float64"), atype.astype("int32")
        box = None if box is None else box.astype("float64")
        with paddle.no_grad():
            nlist, shift, _, _ = self.descriptor.neighbor_list(coord, atype, box)
            return self.descriptor_lower(coord, atype, nlist, shift).numpy()

    # ---------------------------------------------------------------- serialization
    def serialize(self) -> tuple[dict, dict]:
        """(DeePMD-kit's model dict, arrays by '/variable_NNNN' key)."""
        if self.modifier is not None:
            raise NotImplementedError("a model with a modifier (DPLR's dipole_charge) has no DeePMD-kit .dp form here: "
                                      "the modifier and its dipole model would be lost; keep the frozen model")
        if self.srtab is not None:
            raise NotImplementedError("a model with use_srtab (a tabulated pair potential) has no DeePMD-kit .dp form "
                                      "(DeePMD-kit's TensorFlow backend does not serialize it either)")
        arrays: dict = {}
        d = {
            "@class": "Model", "type": "standard", "@version": 2, "type_map": self.type_map,
            "descriptor": self.descriptor.serialize(arrays),
            "fitting": self.fitting.serialize(arrays, self.type_map),
            "atom_exclude_types": [], "pair_exclude_types": [], "rcond": None, "preset_out_bias": None,
        }
        d["descriptor"]["type_map"] = self.type_map
        kb, ks = f"/variable_{len(arrays):04d}", f"/variable_{len(arrays) + 1:04d}"
        arrays[kb] = self.out_bias.numpy().reshape(1, self.ntypes, 1)
        arrays[ks] = self.out_std.numpy().reshape(1, self.ntypes, 1)
        d["@variables"] = {"out_bias": kb, "out_std": ks}
        return d, arrays

    @classmethod
    def deserialize(cls, d: dict, arrays) -> "EnergyModel":
        """``arrays(ref)`` returns the ndarray a ``@variables`` entry refers to."""
        check_class(d, "Model", max_version=2)
        if d.get("type", "standard") != "standard":
            raise NotImplementedError(f"model type {d.get('type')!r} is not supported; only 'standard' energy models are")
        for key in ("atom_exclude_types", "pair_exclude_types"):
            if d.get(key):
                raise NotImplementedError(f"model {key} is not supported (must be empty)")
        if d.get("preset_out_bias"):
            raise NotImplementedError("model preset_out_bias is not supported")
        type_map = list(d["type_map"])
        n = len(type_map)
        desc = descriptor_class(d["descriptor"]).deserialize(d["descriptor"], arrays, n)
        fit = EnergyFitting.deserialize(d["fitting"], arrays, n)
        model = cls(type_map, desc, fit)
        v = d.get("@variables", {})
        if v.get("out_bias") is not None:
            ob = np.asarray(arrays(v["out_bias"]))
            if ob.size != n:
                raise NotImplementedError(f"out_bias of shape {ob.shape} (only one energy output per type is supported)")
            model.out_bias.set_value(ob.reshape(n).astype("float64"))
        if v.get("out_std") is not None:
            model.out_std.set_value(np.asarray(arrays(v["out_std"])).reshape(n).astype("float64"))
        return model
