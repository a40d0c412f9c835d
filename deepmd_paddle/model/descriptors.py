"""Which descriptor class a ``model`` section, or a serialized descriptor, asks for."""
from __future__ import annotations

from .descriptor import DescrptSeA
from .descriptor_strip import DEFAULT_TYPE_EMBEDDING, DescrptSeAStrip
from .descriptor_strip import SERIAL_TYPE as STRIP_TYPE
from .descriptor_strip import TYPES as STRIP_TYPES
from .descriptor_te import SERIAL_TYPE as TEBD_TYPE
from .descriptor_te import DescrptSeATebd


def make_descriptor(type_map, dcfg: dict, model_tebd: dict | None = None) -> DescrptSeA:
    """The descriptor of a ``model.descriptor`` section:

    - ``se_a_ebd_v2`` (``se_a_tpe_v2``): DescrptSeAStrip, with the model-level ``type_embedding``
      section ``model_tebd`` (DeePMD-kit's default one when it is None);
    - ``se_e2_a`` with ``model_tebd``: DeePMD-kit's type-embedding model ("concat" mode,
      DescrptSeATebd feeding the type vector to one shared fitting net too);
    - ``se_e2_a`` with the descriptor's own ``type_embedding`` (true, a list of properties, or a
      learned-embedding dict): DescrptSeATebd, one fitting net per type;
    - plain ``se_e2_a``: DescrptSeA.
    """
    kw = dict(dcfg)
    spec = kw.pop("type_embedding", False)
    n, tm = len(type_map), list(type_map)
    if kw.get("type") in STRIP_TYPES:
        kw.pop("type")
        tebd = model_tebd if model_tebd is not None else dict(DEFAULT_TYPE_EMBEDDING, precision=kw["precision"])
        return DescrptSeAStrip(n, type_map=tm, type_embedding=tebd, **kw)
    if model_tebd is not None:
        return DescrptSeATebd(n, type_map=tm, type_embedding=model_tebd, concat_output_tebd=True, **kw)
    if spec is None or spec is False:
        return DescrptSeA(n, **kw)
    return DescrptSeATebd(n, type_map=tm, type_embedding=spec, **kw)


def descriptor_class(d: dict):
    """The class that reads a serialized descriptor dict."""
    return {TEBD_TYPE: DescrptSeATebd, STRIP_TYPE: DescrptSeAStrip}.get(d.get("type"), DescrptSeA)


def mixed_types(dcfg: dict, model_tebd: dict | None) -> bool:
    """Whether the fitting is one net for all types fed with the type vector (DeePMD-kit's
    type-embedding models)."""
    return model_tebd is not None or dcfg.get("type") in STRIP_TYPES
