"""Energy fitting: one net per centre type, ``E_i = N_fit^{type_i}(D_i) + bias[type_i]``, or
(``mixed_types``: DeePMD-kit's type-embedding models) one net for all types, fed with the
descriptor followed by the centre atom's type vector (the descriptor's ``fitting_input``),
``E_i = N_fit([D_i, e(type_i)]) + bias[type_i]``. Frame and atomic parameters, when the net takes
them, follow: ``[D_i, (e(type_i),) fparam, aparam]`` normalised (``fit_inputs.py``), DeePMD-kit's order.

The per-type bias (``bias_atom_e``) is set from data by least squares of frame energies on the
per-type atom counts before training (DeePMD-kit's convention). A type with a fixed isolated-atom
energy (``atom_ener``) has ``E_i = N(D_i) - N(0) + bias[t]``, its bias that energy; ``trainable``
fixes layers (see ``options``).
"""
from __future__ import annotations

import numpy as np
import paddle

from . import init, options
from .fit_inputs import FitInputs, append_rows
from .network import FittingNet, check_class, resolve_precision


class EnergyFitting(paddle.nn.Layer):
    def __init__(self, ntypes, dim_descrpt, neuron, resnet_dt, precision, seed=None, activation_function="tanh",
                 numb_fparam=0, numb_aparam=0, atom_ener=(), rcond=None, trainable=True, type="ener",
                 mixed_types=False, default_fparam=None, use_aparam_as_mask=False):
        """Arguments as the ``model/fitting_net`` section (deepmd_paddle.config has the defaults)."""
        super().__init__()
        if type != "ener":
            raise NotImplementedError(f"fitting_net type {type!r} is not supported; allowed: 'ener'")
        self.ntypes, self.dim_descrpt = ntypes, dim_descrpt
        self.neuron, self.resnet_dt, self.precision = list(neuron), bool(resnet_dt), resolve_precision(precision)
        self.activation_function, self.rcond = activation_function, rcond
        self.mixed_types = bool(mixed_types)
        # frame/atomic parameters appended to the descriptor (fit_inputs.py); None without them
        self.inputs = FitInputs(numb_fparam, numb_aparam, default_fparam, use_aparam_as_mask) \
            if numb_fparam or numb_aparam else None
        n_in = dim_descrpt + (0 if self.inputs is None else self.inputs.width)
        seed, shift = init.check_seed(seed), init.net_seed_shift(neuron)  # DeePMD-kit's seeds per type
        self.nets = paddle.nn.LayerList(
            [FittingNet(n_in, neuron, activation_function, resnet_dt, self.precision,
                        init.shifted(seed, t * shift))
             for t in range(1 if self.mixed_types else ntypes)])
        self.register_buffer("bias_atom_e", paddle.zeros([ntypes], "float64"))
        self.trainable = options.check_layer_trainable(trainable, len(self.neuron) + 1, "fitting_net.trainable")
        self.set_trainable()
        self.atom_ener = options.vacuum_types(atom_ener, ntypes)  # per type: None or E of an isolated atom

    def set_trainable(self) -> None:
        """Apply ``self.trainable`` (one flag per layer) to every type's net."""
        for net in self.nets:
            for layer, flag in zip(net.layers, self.trainable):
                options.set_trainable(layer, flag)

    def set_bias(self, bias):
        self.bias_atom_e.set_value(np.asarray(bias, "float64").reshape(self.ntypes))

    def forward(self, d, ti: int, vacuum=None, extra=None):
        """Atomic energies (nat x 1, float64) of a block of atoms of centre type ``ti``;
        ``vacuum``: the input row of an isolated atom of that type (None: zeros; with a type
        vector in the input, DeePMD-kit keeps it: the model passes ``fitting_input(0, ti)``);
        ``extra``: the atoms' rows of ``param_rows`` (frame/atomic parameters), appended to the
        descriptor, and to the isolated atom's row as DeePMD-kit does."""
        net = self.nets[0 if self.mixed_types else ti]
        d = self.cast_input(d)
        e = net(d if extra is None else append_rows(d, extra, self.dim_descrpt, self.inputs.width))
        if self.minus_vacuum(ti):  # minus the net's value for an isolated atom (D = 0)
            v = paddle.zeros([1, self.dim_descrpt], d.dtype) if vacuum is None else self.cast_input(vacuum)
            e = e - net(v if extra is None else append_rows(v, extra, self.dim_descrpt, self.inputs.width))
        return e.astype("float64") + self.bias_atom_e[ti]

    def cast_input(self, d):
        """The descriptor rows in the nets' precision (DeePMD-kit casts the fitting input so: a
        descriptor and a fitting net of different ``precision`` work together)."""
        return d if d.dtype == self.net_dtype() else d.astype(self.precision)

    def net_dtype(self):
        """The nets' dtype (that of their first weight)."""
        return self.nets[0].layers[0].w.dtype

    def fused_params(self, ti: int):
        """Type ti's net as the ``fitting_ener`` kernel takes it (per hidden layer W, b, idt when it
        has one; then the output W, b) and the hidden layers' timestep flags, or None where the
        kernel does not apply: another activation, mixed precision, frame/atomic parameters, a
        type vector in the input, an isolated-atom energy, or a hidden layer without a bias."""
        if (self.activation_function != "tanh" or self.inputs is not None or self.mixed_types
                or self.minus_vacuum(ti)):
            return None
        layers = self.nets[ti].layers
        *hidden, out = layers
        if not hidden or any(l.rounding is not None or l.b is None or not l.resnet for l in layers[:-1]) \
                or out.rounding is not None or out.b is None or out.w.shape[1] != 1:
            return None
        params, flags = [], []
        for l in hidden:
            params += [l.w, l.b] + ([l.idt] if l.idt is not None else [])
            flags.append(int(l.idt is not None))
        return params + [out.w, out.b], flags

    def minus_vacuum(self, ti: int) -> bool:
        """Type ti's energy is taken relative to an isolated atom's: a type with ``atom_ener``, or
        every type of a ``mixed_types`` fitting when any type has one (DeePMD-kit subtracts the
        shared net's value at D = 0 from all atoms then)."""
        return self.atom_ener[ti] is not None or (self.mixed_types and any(a is not None for a in self.atom_ener))

    def serial_atom_ener(self) -> list:
        """``atom_ener`` as DeePMD-kit stores it: [] when no type has one."""
        return [] if all(e is None for e in self.atom_ener) else list(self.atom_ener)

    def param_rows(self, fparam, aparam, centre_types):
        """The normalised frame/atomic parameters of the centre atoms (``FitInputs.rows``), or None."""
        return None if self.inputs is None else self.inputs.rows(fparam, aparam, centre_types)

    def input_config(self) -> dict:
        """The ``fitting_net`` keys of the frame/atomic parameters."""
        return (self.inputs or FitInputs()).config()

    def serialize(self, arrays: dict, type_map) -> dict:
        arrays_key = f"/variable_{len(arrays):04d}"
        arrays[arrays_key] = self.bias_atom_e.numpy().reshape(self.ntypes, 1)
        params = (self.inputs or FitInputs()).serialize(arrays)
        return {
            "@class": "Fitting", "type": "ener", "@version": 4, "var_name": "energy",
            "ntypes": self.ntypes, "dim_descrpt": self.dim_descrpt, "mixed_types": self.mixed_types, "dim_out": 1,
            "neuron": self.neuron, "resnet_dt": self.resnet_dt, **self.input_config(),
            "dim_case_embd": 0, "rcond": self.rcond, "tot_ener_zero": False,
            "trainable": list(self.trainable), "atom_ener": self.serial_atom_ener(),
            "activation_function": self.activation_function, "precision": self.precision,
            "layer_name": None, "spin": None, "exclude_types": [],
            "nets": {
                "@class": "NetworkCollection", "@version": 1, "ndim": 0 if self.mixed_types else 1,
                "ntypes": self.ntypes,
                "network_type": "fitting_network", "networks": [n.serialize(arrays) for n in self.nets],
            },
            "@variables": {"bias_atom_e": arrays_key, **params, "case_embd": None},
            "type_map": list(type_map),
        }

    @classmethod
    def deserialize(cls, d: dict, arrays, ntypes: int) -> "EnergyFitting":
        check_class(d, "Fitting", max_version=4)
        if d.get("type") != "ener":
            raise NotImplementedError(f"fitting type {d.get('type')!r} is not supported; only 'ener' is")
        if d.get("dim_case_embd"):
            raise NotImplementedError(f"fitting dim_case_embd = {d['dim_case_embd']} is not supported (case embedding)")
        if d.get("exclude_types"):
            raise NotImplementedError("fitting exclude_types is not supported")
        if d.get("dim_out", 1) != 1:
            raise NotImplementedError(f"fitting dim_out {d['dim_out']} is not supported")
        obj = cls(ntypes, d["dim_descrpt"], d["neuron"], d.get("resnet_dt", True), d.get("precision", "float64"),
                  activation_function=d.get("activation_function", "tanh"), rcond=d.get("rcond"),
                  mixed_types=bool(d.get("mixed_types")),
                  trainable=d.get("trainable", True), atom_ener=d.get("atom_ener") or [],
                  numb_fparam=d.get("numb_fparam", 0), numb_aparam=d.get("numb_aparam", 0),
                  default_fparam=d.get("default_fparam"), use_aparam_as_mask=d.get("use_aparam_as_mask", False))
        nets = d["nets"]["networks"]
        if len(nets) != len(obj.nets):
            raise ValueError(f"fitting with {len(nets)} nets; {len(obj.nets)} expected "
                             f"({'one for all types' if obj.mixed_types else 'one per type'})")
        obj.nets = paddle.nn.LayerList([FittingNet.deserialize(n, arrays, obj.precision) for n in nets])
        obj.set_trainable()
        obj.set_bias(arrays(d["@variables"]["bias_atom_e"]))
        if obj.inputs is not None:
            obj.inputs.deserialize_stats(d["@variables"], arrays)
        return obj
