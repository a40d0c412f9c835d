"""Dense layers and networks with DeePMD-kit's residual conventions.

A layer is ``y = act(x W + b)``; with ``resnet`` it adds the input back when the width stays the
same (``y = x + y``) or doubles (``y = [x, x] + y``); ``use_timestep`` multiplies the residual
branch by a trainable vector ``idt`` (``resnet_dt``; only on layers with a skip connection). An embedding net maps 1 -> neuron[-1];
a fitting net maps the descriptor to one atomic energy through tanh layers and a linear output.

Each class serializes to DeePMD-kit's backend-neutral dict (``@class``/``@version``/
``@variables``), so that models move between the two codes.
"""
from __future__ import annotations

import numpy as np
import paddle

from ..kernels import default_backend
from . import init
from .mixed_precision import layer_forward

def _gelu(x):
    """DeePMD-kit's gelu and gelu_tf alike: the tanh approximation
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (its TensorFlow backend calls
    tf.nn.gelu(approximate=True) for gelu_tf). Written with tanh: differentiable twice, which
    Paddle's own gelu (the erf form) is not, and force training needs."""
    return 0.5 * x * (1.0 + paddle.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def _softplus(x):
    """log(1 + e^x) without overflow: max(x, 0) + log(1 + e^-|x|) (DeePMD-kit's form; log1p has no
    double gradient in Paddle)."""
    return paddle.maximum(x, paddle.zeros_like(x)) + paddle.log(1.0 + paddle.exp(-paddle.abs(x)))


# DeePMD-kit's activations (deepmd/dpmodel/utils/network.py get_activation_fn); each twice differentiable
ACTIVATIONS = {
    "tanh": paddle.tanh,
    "relu": paddle.nn.functional.relu,
    "relu6": lambda x: paddle.clip(x, 0.0, 6.0),
    "gelu": _gelu,
    "gelu_tf": _gelu,
    "softplus": _softplus,
    "sigmoid": paddle.nn.functional.sigmoid,
    "silu": lambda x: x * paddle.nn.functional.sigmoid(x),
    "linear": lambda x: x,
    "none": lambda x: x,
}


def resolve_precision(name: str) -> str:
    """DeePMD-kit's precision names: "default" is float64."""
    return "float64" if name == "default" else name


def get_activation(name: str):
    try:
        return ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown activation_function {name!r}; allowed: {sorted(ACTIVATIONS)}") from None


class Dense(paddle.nn.Layer):
    """One DeePMD layer. ``seed``: the layer's first op seed (weights; bias ``seed + 1``, timestep
    ``seed + 2``), drawn as DeePMD-kit's TensorFlow backend draws them (``init.py``); None: random.
    Timesteps start near ``idt_mean``: DeePMD-kit's 1.0 in embedding nets, 0.1 in fitting nets."""

    def __init__(self, n_in, n_out, activation="tanh", resnet=False, use_timestep=False,
                 precision="float64", seed=None, bias_mean=0.0, bias_std=1.0, idt_mean=0.1, bias=True):
        super().__init__()
        self.activation_function = activation
        self.act = get_activation(activation)
        self.resnet = resnet
        # DeePMD-kit puts the timestep only where a skip connection exists
        self.use_timestep = use_timestep and (n_out == n_in or n_out == 2 * n_in)
        self.precision = precision
        self.trainable = True  # serialized; model.options.set_trainable sets it with stop_gradient
        self.w = self._param(init.normal((n_in, n_out), seed, 0.0, 1.0 / np.sqrt(n_in + n_out)))
        # (DeePMD-kit's type-embedding net has no biases by default: use_tebd_bias)
        self.b = self._param(init.normal((n_out,), init.shifted(seed, 1), bias_mean, bias_std)) if bias else None
        self.idt = (self._param(init.normal((n_out,), init.shifted(seed, 2), idt_mean, 0.001))
                    if self.use_timestep else None)
        self.kernels = default_backend()  # the model's set_kernels fixes it for every layer
        self.rounding = None  # mixed precision: the roundings to compute_prec (mixed_precision.enable)

    def _param(self, value):
        p = self.create_parameter(list(value.shape), dtype=self.precision)
        p.set_value(np.asarray(value, dtype=self.precision))
        return p

    def forward(self, x):
        if self.rounding is not None:
            return layer_forward(self, x, self.rounding)
        if self.w.shape[0] == 1:  # first embedding layer: an outer product, not a K=1 GEMM
            z = x * self.w.reshape([-1])
        else:
            z = paddle.matmul(x, self.w)
        y = self._bias_act(z)
        if self.idt is not None:
            y = y * self.idt
        if self.resnet:
            n_in, n_out = self.w.shape
            if n_out == n_in:
                y = y + x
            elif n_out == 2 * n_in:
                y = y + paddle.concat([x, x], axis=-1)
        return y

    def _bias_act(self, z):
        """act(z + b); tanh is the ``bias_tanh`` kernel (one fused C++ pass, or its twin)."""
        if self.b is None:
            return self.act(z)
        if self.activation_function == "tanh":
            return self.kernels.bias_tanh(z, self.b)
        return self.act(z + self.b)

    def serialize(self, arrays: dict) -> dict:
        """The layer as DeePMD-kit's dict; weights go into ``arrays`` (name -> ndarray)."""
        return {
            "@class": "Layer", "@version": 2, "bias": self.b is not None, "use_timestep": self.use_timestep,
            "activation_function": self.activation_function, "resnet": self.resnet,
            "precision": self.precision, "trainable": self.trainable,
            "@variables": {
                "w": _store(arrays, self.w), "b": _store(arrays, self.b) if self.b is not None else None,
                "idt": _store(arrays, self.idt) if self.idt is not None else None,
            },
        }

    @classmethod
    def deserialize(cls, d: dict, arrays, precision=None) -> "Dense":
        check_class(d, "Layer", max_version=2)
        v = d["@variables"]
        w = np.asarray(arrays(v["w"]))
        layer = cls(w.shape[0], w.shape[1], d.get("activation_function", "tanh"), d.get("resnet", False),
                    d.get("use_timestep", False), precision or d.get("precision", "float64"),
                    bias=bool(d.get("bias", True)))
        layer.w.set_value(w.astype(layer.precision))
        if layer.b is not None:
            layer.b.set_value(np.asarray(arrays(v["b"])).reshape(-1).astype(layer.precision))
        if layer.idt is not None:
            layer.idt.set_value(np.asarray(arrays(v["idt"])).reshape(-1).astype(layer.precision))
        return layer


class _Stack(paddle.nn.Layer):
    """Dense layers applied in order (``self.layers``)."""

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class EmbeddingNet(_Stack):
    """s -> G(s): in_dim -> neuron[0] -> ... -> neuron[-1], tanh, residual where widths allow.
    (in_dim is 1 for se_e2_a's nets; more with a type embedding, see descriptor_te.py)"""

    def __init__(self, neuron, activation="tanh", resnet_dt=False, precision="float64", seed=None, in_dim=1,
                 bias=True):
        """``seed``: the net's seed; layer i (0-based) starts at op seed ``seed + 3 (i + 1)``;
        ``bias``: False for DeePMD-kit's type-embedding net (``use_tebd_bias`` false)."""
        super().__init__()
        seed = init.check_seed(seed)
        dims = [int(in_dim)] + list(neuron)
        self.in_dim = int(in_dim)
        self.neuron = list(neuron)
        self.activation_function, self.resnet_dt, self.precision = activation, resnet_dt, precision
        self.bias = bool(bias)
        self.layers = paddle.nn.LayerList(
            [Dense(dims[i], dims[i + 1], activation, True, resnet_dt, precision, init.shifted(seed, 3 * (i + 1)),
                   idt_mean=1.0, bias=self.bias) for i in range(len(neuron))]
        )

    def serialize(self, arrays):
        return {
            "@class": "EmbeddingNetwork", "@version": 2, "in_dim": self.in_dim, "neuron": self.neuron,
            "activation_function": self.activation_function, "resnet_dt": self.resnet_dt, "bias": self.bias,
            "precision": self.precision, "layers": [l.serialize(arrays) for l in self.layers],
        }

    @classmethod
    def deserialize(cls, d, arrays, precision=None, in_dim=1):
        """``in_dim``: the input width the caller expects (1 for se_e2_a)."""
        check_class(d, "EmbeddingNetwork", max_version=2)
        if d.get("in_dim", 1) != in_dim:
            raise NotImplementedError(f"embedding net with in_dim {d['in_dim']} where {in_dim} is expected "
                                      "(a type-embedding net in a plain se_e2_a descriptor, or the reverse)")
        net = cls(d["neuron"], d.get("activation_function", "tanh"), d.get("resnet_dt", False),
                  precision or d.get("precision", "float64"), in_dim=in_dim, bias=d.get("bias", True))
        net.layers = paddle.nn.LayerList([Dense.deserialize(l, arrays, net.precision) for l in d["layers"]])
        return net


class FittingNet(_Stack):
    """D_i -> E_i: hidden tanh layers (residual on equal widths) and a linear output layer."""

    def __init__(self, n_in, neuron, activation="tanh", resnet_dt=False, precision="float64", seed=None,
                 out_dim: int = 1):
        """``seed``: the net's seed; layer i (0-based, output layer last) starts at op seed ``seed + 3 i``.
        ``out_dim``: width of the linear output (1 for energies; a dipole fitting's is the embedding width)."""
        super().__init__()
        seed = init.check_seed(seed)
        dims = [n_in] + list(neuron)
        self.n_in, self.neuron, self.out_dim = n_in, list(neuron), int(out_dim)
        self.activation_function, self.resnet_dt, self.precision = activation, resnet_dt, precision
        hidden = [Dense(dims[i], dims[i + 1], activation, True, resnet_dt, precision, init.shifted(seed, 3 * i))
                  for i in range(len(neuron))]
        out = Dense(dims[-1], self.out_dim, "none", False, False, precision, init.shifted(seed, 3 * len(neuron)))
        self.layers = paddle.nn.LayerList(hidden + [out])

    def serialize(self, arrays):
        return {
            "@class": "FittingNetwork", "@version": 1, "in_dim": self.n_in, "out_dim": self.out_dim,
            "neuron": self.neuron, "activation_function": self.activation_function,
            "resnet_dt": self.resnet_dt, "precision": self.precision, "bias_out": True,
            "layers": [l.serialize(arrays) for l in self.layers],
        }

    @classmethod
    def deserialize(cls, d, arrays, precision=None, out_dim: int = 1):
        """``out_dim``: the width the caller expects (1: an energy)."""
        check_class(d, "FittingNetwork", max_version=1)
        if d.get("out_dim", 1) != out_dim:
            raise NotImplementedError(f"fitting nets with out_dim {d['out_dim']} are not supported here "
                                      f"({out_dim} expected)")
        net = cls(d["in_dim"], d["neuron"], d.get("activation_function", "tanh"), d.get("resnet_dt", False),
                  precision or d.get("precision", "float64"), out_dim=out_dim)
        net.layers = paddle.nn.LayerList([Dense.deserialize(l, arrays, net.precision) for l in d["layers"]])
        return net


def check_class(d: dict, name: str, max_version: int):
    """Refuse a serialized dict of another class or of a newer version than we read."""
    if d.get("@class") != name:
        raise NotImplementedError(f"expected a serialized {name!r}, got {d.get('@class')!r}")
    if int(d.get("@version", 1)) > max_version:
        raise NotImplementedError(f"{name} version {d['@version']} is newer than supported ({max_version})")


def _store(arrays: dict, p: paddle.Tensor) -> str:
    key = f"/variable_{len(arrays):04d}"
    arrays[key] = p.numpy()
    return key
