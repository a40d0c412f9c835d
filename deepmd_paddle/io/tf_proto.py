"""TensorFlow's GraphDef messages, read with the protobuf library alone (no TensorFlow).

A frozen TensorFlow model (``.pb``) is one serialized ``GraphDef``. Only the messages needed to
read its nodes and constant tensors are declared here, in a private descriptor pool (so that
they never clash with TensorFlow's own classes if both are imported). Field numbers and enum
values are those of TensorFlow's ``graph.proto``, ``node_def.proto``, ``attr_value.proto``,
``tensor.proto``, ``tensor_shape.proto``, ``versions.proto`` and ``types.proto`` (proto3);
fields not declared (function libraries, debug info, complex and resource values) are kept as
unknown fields by the parser and never read.
"""
from __future__ import annotations

import os

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "deepmd_paddle.tfgraph"

# DataType (types.proto): the values a frozen DeePMD-kit graph can hold, with their NumPy dtype
DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
          9: "int64", 10: "bool", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}
_DTYPE_NAMES = {0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16",
                6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 14: "DT_BFLOAT16",
                17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT",
                22: "DT_UINT32", 23: "DT_UINT64"}
# the repeated value field of TensorProto that holds each dtype when tensor_content is empty
_VALUE_FIELD = {"float32": "float_val", "float64": "double_val", "int32": "int_val", "uint8": "int_val",
                "int16": "int_val", "int8": "int_val", "uint16": "int_val", "float16": "half_val",
                "int64": "int64_val", "bool": "bool_val", "uint32": "uint32_val", "uint64": "uint64_val",
                "string": "string_val"}


def _field(msg, name, number, ftype, repeated=False, type_name=None, oneof=None):
    f = msg.field.add(name=name, number=number, type=ftype,
                      label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        f.type_name = f".{_PACKAGE}.{type_name}"
    if oneof is not None:
        f.oneof_index = oneof
    return f


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="deepmd_paddle/tfgraph.proto", package=_PACKAGE, syntax="proto3")
    enum = fd.enum_type.add(name="DataType")
    for number, name in _DTYPE_NAMES.items():
        enum.value.add(name=name, number=number)

    shape = fd.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    _field(dim, "size", 1, _F.TYPE_INT64)
    _field(dim, "name", 2, _F.TYPE_STRING)
    _field(shape, "dim", 2, _F.TYPE_MESSAGE, True, "TensorShapeProto.Dim")
    _field(shape, "unknown_rank", 3, _F.TYPE_BOOL)

    tensor = fd.message_type.add(name="TensorProto")
    _field(tensor, "dtype", 1, _F.TYPE_ENUM, type_name="DataType")
    _field(tensor, "tensor_shape", 2, _F.TYPE_MESSAGE, type_name="TensorShapeProto")
    _field(tensor, "version_number", 3, _F.TYPE_INT32)
    _field(tensor, "tensor_content", 4, _F.TYPE_BYTES)
    for name, number, ftype in (("float_val", 5, _F.TYPE_FLOAT), ("double_val", 6, _F.TYPE_DOUBLE),
                                ("int_val", 7, _F.TYPE_INT32), ("string_val", 8, _F.TYPE_BYTES),
                                ("int64_val", 10, _F.TYPE_INT64), ("bool_val", 11, _F.TYPE_BOOL),
                                ("half_val", 13, _F.TYPE_INT32), ("uint32_val", 16, _F.TYPE_UINT32),
                                ("uint64_val", 17, _F.TYPE_UINT64)):
        _field(tensor, name, number, ftype, True)

    attr = fd.message_type.add(name="AttrValue")
    lst = attr.nested_type.add(name="ListValue")
    for name, number, ftype, tname in (("s", 2, _F.TYPE_BYTES, None), ("i", 3, _F.TYPE_INT64, None),
                                       ("f", 4, _F.TYPE_FLOAT, None), ("b", 5, _F.TYPE_BOOL, None),
                                       ("type", 6, _F.TYPE_ENUM, "DataType"),
                                       ("shape", 7, _F.TYPE_MESSAGE, "TensorShapeProto"),
                                       ("tensor", 8, _F.TYPE_MESSAGE, "TensorProto")):
        _field(lst, name, number, ftype, True, tname)
    attr.oneof_decl.add(name="value")
    for name, number, ftype, tname in (("list", 1, _F.TYPE_MESSAGE, "AttrValue.ListValue"),
                                       ("s", 2, _F.TYPE_BYTES, None), ("i", 3, _F.TYPE_INT64, None),
                                       ("f", 4, _F.TYPE_FLOAT, None), ("b", 5, _F.TYPE_BOOL, None),
                                       ("type", 6, _F.TYPE_ENUM, "DataType"),
                                       ("shape", 7, _F.TYPE_MESSAGE, "TensorShapeProto"),
                                       ("tensor", 8, _F.TYPE_MESSAGE, "TensorProto"),
                                       ("placeholder", 9, _F.TYPE_STRING, None)):
        _field(attr, name, number, ftype, False, tname, oneof=0)

    node = fd.message_type.add(name="NodeDef")
    entry = node.nested_type.add(name="AttrEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name="AttrValue")
    _field(node, "name", 1, _F.TYPE_STRING)
    _field(node, "op", 2, _F.TYPE_STRING)
    _field(node, "input", 3, _F.TYPE_STRING, True)
    _field(node, "device", 4, _F.TYPE_STRING)
    _field(node, "attr", 5, _F.TYPE_MESSAGE, True, "NodeDef.AttrEntry")

    versions = fd.message_type.add(name="VersionDef")
    _field(versions, "producer", 1, _F.TYPE_INT32)
    _field(versions, "min_consumer", 2, _F.TYPE_INT32)
    _field(versions, "bad_consumers", 3, _F.TYPE_INT32, True)

    graph = fd.message_type.add(name="GraphDef")
    _field(graph, "node", 1, _F.TYPE_MESSAGE, True, "NodeDef")
    _field(graph, "version", 3, _F.TYPE_INT32)
    _field(graph, "versions", 4, _F.TYPE_MESSAGE, type_name="VersionDef")
    return fd


def _classes() -> dict:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    get = getattr(message_factory, "GetMessageClass", None)
    if get is None:  # protobuf < 4.22
        get = message_factory.MessageFactory(pool).GetPrototype
    return {name: get(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in ("GraphDef", "NodeDef", "AttrValue", "TensorProto", "TensorShapeProto", "VersionDef")}


MESSAGES = _classes()
GraphDef = MESSAGES["GraphDef"]
NodeDef = MESSAGES["NodeDef"]
AttrValue = MESSAGES["AttrValue"]
TensorProto = MESSAGES["TensorProto"]


def dtype_name(code: int) -> str:
    return _DTYPE_NAMES.get(code, f"DataType {code}")


def tensor_to_numpy(t) -> np.ndarray:
    """A TensorProto's value: raw little-endian ``tensor_content``, or the typed value field (a
    field shorter than the tensor repeats its last value, as TensorFlow does; empty: zeros).
    Strings come back as an object array of ``bytes``."""
    kind = DTYPES.get(t.dtype)
    if kind is None:
        raise ValueError(f"tensor of type {dtype_name(t.dtype)} cannot be read")
    if t.tensor_shape.unknown_rank:
        raise ValueError("tensor of unknown rank")
    shape = tuple(int(d.size) for d in t.tensor_shape.dim)
    if any(s < 0 for s in shape):
        raise ValueError(f"tensor of shape {list(shape)}")
    n = int(np.prod(shape, dtype=np.int64))
    if kind == "string":
        values = list(t.string_val)
        return _fill(np.array(values + [b""] * (not values), dtype=object), n, shape)
    if t.tensor_content:
        dt = np.dtype(kind).newbyteorder("<")
        if len(t.tensor_content) != n * dt.itemsize:
            raise ValueError(f"tensor content of {len(t.tensor_content)} bytes for shape {list(shape)} of {kind}")
        return np.frombuffer(t.tensor_content, dtype=dt).astype(kind).reshape(shape)
    values = getattr(t, _VALUE_FIELD[kind])
    if kind == "float16":
        arr = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(values, dtype=kind)
    if arr.size == 0:
        return np.zeros(shape, dtype=kind)
    return _fill(arr, n, shape)


def _fill(arr: np.ndarray, n: int, shape: tuple) -> np.ndarray:
    if arr.size > n:
        raise ValueError(f"{arr.size} values for a tensor of shape {list(shape)}")
    if arr.size < n:
        arr = np.concatenate([arr, np.repeat(arr[-1:], n - arr.size)])
    return arr.reshape(shape)


# ----------------------------------------------------------------------------- reading a file
class GraphFileError(ValueError):
    """Not a (complete) TensorFlow GraphDef, or not a DeePMD-kit model."""


class UnsupportedGraphError(NotImplementedError):
    """A DeePMD-kit model of a kind this package does not build."""


class Graph:
    """The nodes of a GraphDef by name, with typed access to constants."""

    def __init__(self, path: str, graph_def):
        self.path = path
        self.nodes = {n.name: n for n in graph_def.node}
        self.prefix = ""

    def scope(self, prefix: str) -> "Graph":
        """The nodes under ``prefix/`` named without it (a model frozen inside another one, as
        DeePMD-kit's DPLR energy graph holds its dipole model under ``dipole_charge/``)."""
        out = Graph.__new__(Graph)
        out.path, out.prefix = f"{self.path} ({prefix}/)", prefix + "/"
        out.nodes = {name[len(out.prefix):]: n for name, n in self.nodes.items() if name.startswith(out.prefix)}
        return out

    def without(self, prefix: str) -> "Graph":
        """The graph minus the nodes under ``prefix/`` (the energy model of a DPLR graph)."""
        out = Graph.__new__(Graph)
        out.path, out.prefix = self.path, self.prefix
        out.nodes = {name: n for name, n in self.nodes.items() if not name.startswith(prefix + "/")}
        return out

    def op_types(self) -> set:
        return {n.op for n in self.nodes.values()}

    def has(self, name: str) -> bool:
        return name in self.nodes

    def const(self, name: str) -> np.ndarray:
        node = self.nodes.get(name)
        for _ in range(8):  # a frozen variable: Const, sometimes behind an Identity
            if node is None or node.op != "Identity" or not node.input:
                break
            source = node.input[0].lstrip("^").split(":")[0]
            node = self.nodes.get(source[len(self.prefix):] if self.prefix and source.startswith(self.prefix) else source)
        if node is None:
            raise GraphFileError(f"{self.path}: node {name!r} is missing (a truncated file, or not a DeePMD-kit "
                                 "frozen model?)")
        if node.op != "Const" or "value" not in node.attr:
            raise GraphFileError(f"{self.path}: node {name!r} is a {node.op!r}, not a constant")
        try:
            return tensor_to_numpy(node.attr["value"].tensor)
        except ValueError as e:
            raise GraphFileError(f"{self.path}: constant {name!r}: {e}") from None

    def get(self, *names: str, default=None):
        """The first of ``names`` that exists, else ``default``."""
        for name in names:
            if name in self.nodes:
                return self.const(name)
        return default

    def string(self, *names: str, default=None):
        value = self.get(*names)
        return default if value is None else value.reshape(-1)[0].decode("utf-8")

    def scalar(self, *names: str, default=None):
        value = self.get(*names)
        return default if value is None else value.reshape(-1)[0].item()


def read_graph(path: str) -> Graph:
    """Parse ``path`` as a GraphDef; a named error when it is not one or is cut short."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    with open(path, "rb") as fh:
        raw = fh.read()
    graph_def = GraphDef()
    try:
        graph_def.ParseFromString(raw)
    except Exception as e:  # protobuf's DecodeError (its module differs between implementations)
        raise GraphFileError(f"{path}: not a TensorFlow GraphDef, or a truncated one ({type(e).__name__}: {e}); "
                             "expected a frozen DeePMD-kit model from `dp freeze`") from None
    if not graph_def.node:
        raise GraphFileError(f"{path}: holds no graph nodes; not a frozen TensorFlow model")
    if not graph_def.HasField("versions"):  # written after the nodes: missing when the file is cut short
        raise GraphFileError(f"{path}: the GraphDef ends without its 'versions' record: a truncated file?")
    return Graph(path, graph_def)
