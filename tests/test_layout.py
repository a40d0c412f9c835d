"""The package's shape, read from its source with ``ast``: imports point one way (function-level
imports counted), no import cycle, no file over 400 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "deepmd_paddle"
MAX_LINES = 400
# each stage may import only stages of a lower rank (and itself)
RANKS = {"_version": 0, "runtime": 0, "utils": 0, "kernels": 1, "data": 2, "model": 2, "config": 3, "io": 3, "train": 4,
         "infer": 4, "calculator": 5, "lammps": 5, "cli": 6, "__main__": 7, "": 7}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict) -> set:
    """The package's modules that ``name`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from X import m`` of a submodule m imports X.m; of a name, X itself
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t.startswith("deepmd_paddle.custom_ops"):  # the C++ sources, installed as data
                continue
            while t and t not in modules:  # deepmd_paddle.x.y.func -> deepmd_paddle.x.y
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycle():
    graph = _graph()
    assert len(graph) > 30
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_one_way():
    """kernels <- model <- io <- train, infer <- cli; data imports neither model nor config."""
    wrong = []
    for module, targets in _graph().items():
        src = _stage(module)
        for t in targets:
            dst = _stage(t)
            if dst != src and RANKS[dst] >= RANKS[src] and dst not in ("_version", "runtime", "utils"):
                wrong.append(f"{module} -> {t}")
    assert not wrong, "imports against the stage order:\n" + "\n".join(sorted(wrong))


def test_every_stage_is_ranked():
    assert {_stage(m) for m in _modules()} <= set(RANKS)


@pytest.mark.parametrize("folder", ["deepmd_paddle", "custom_ops"])
def test_no_file_over_400_lines(folder):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*")
            if p.suffix in (".py", ".cc", ".h", ".cpp") and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
