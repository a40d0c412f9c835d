"""``dpp doc-train-input``: the input schema as dargs renders it (DeePMD-kit's ``dp
doc-train-input``: reStructuredText, dargs' JSON, or a JSON schema), with deepmd_paddle's support
of each key written into its documentation from unsupported.py."""
from __future__ import annotations

import json

from dargs import Argument, ArgumentEncoder

from . import unsupported

OUT_TYPES = ("rst", "json", "json_schema")


def annotated_sections() -> list[Argument]:
    """The top-level sections of the schema, each key not built yet marked in its doc."""
    from . import input_schema

    sections = list(input_schema().sub_fields.values())
    for arg in sections:
        _annotate(arg, arg.name)
    return sections


def _annotate(arg: Argument, path: str) -> None:
    if path in unsupported.UNSUPPORTED:
        default = unsupported.UNSUPPORTED[path]
        was = "left out" if default is unsupported.ABSENT else f"at its default ({json.dumps(default)})"
        arg.doc = f"{arg.doc} [deepmd_paddle: not supported yet; accepted only {was}.]".strip()
    elif path in unsupported.VALUES:
        arg.doc = f"{arg.doc} [deepmd_paddle supports: {unsupported.VALUES[path][2]}.]".strip()
    for name, sub in arg.sub_fields.items():
        _annotate(sub, f"{path}/{name}")
    for variant in arg.sub_variants.values():
        for choice in variant.choice_dict.values():
            for name, sub in choice.sub_fields.items():
                _annotate(sub, f"{path}/{name}")


def render(out_type: str = "rst") -> str:
    """The documentation of every key of the input, as ``out_type``."""
    sections = annotated_sections()
    if out_type == "rst":
        return "\n\n".join(arg.gen_doc(make_anchor=True, make_link=True) for arg in sections)
    if out_type == "json":
        return json.dumps(tuple(sections), cls=ArgumentEncoder)
    if out_type == "json_schema":
        from dargs.json_schema import generate_json_schema

        from .._version import __version__

        root = Argument("deepmd_paddle", dict, sections, doc=f"deepmd_paddle {__version__} training input")
        return json.dumps(generate_json_schema(root))
    raise ValueError(f"doc-train-input: out type {out_type!r}; allowed: {', '.join(OUT_TYPES)}")
