"""The package's layers read top to bottom: imports parsed from the sources, never executed.

docs/design.md draws the same order. A module may import from its own layer or any layer below;
an import that climbs, an import cycle, or an import hidden inside a function (other than of an
optional dependency) fails here with the module and line that does it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "fusedsnn"

#: Bottom to top. A module belongs to the first prefix it starts with (longest listed first).
LAYERS = [
    ("spec", ["fusedsnn.spec", "fusedsnn.surrogate"]),
    ("backends", ["fusedsnn.backends"]),
    ("ops", ["fusedsnn.ops"]),
    ("functional", ["fusedsnn.functional"]),
    ("layers", ["fusedsnn.layers", "fusedsnn.population"]),
    ("models, memory, interop", ["fusedsnn.models", "fusedsnn.memory", "fusedsnn.interop", "fusedsnn.data"]),
    ("train, bench", ["fusedsnn.train", "fusedsnn.graph_step", "fusedsnn.bench"]),
    ("cli", ["fusedsnn.cli"]),
]
#: The package root re-exports the public API and registers moved import paths: above all.
TOP = {"fusedsnn", "fusedsnn._moved"}
#: Dependencies that may be missing, imported where they are needed.
OPTIONAL = {"snntorch", "nir", "nirtorch", "poptorch", "triton", "pynvml", "matplotlib", "spikingjelly",
            "tonic", "h5py", "neurobench"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("fusedsnn", *path.relative_to(ROOT).with_suffix("").parts))
        mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[int, str, bool]]:
    """``(line, imported fusedsnn module or top-level package, inside a function)`` per import."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, id(node) in in_function) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((node.lineno, target if target in MODULES else base, id(node) in in_function))
    return found


def _edges() -> dict[str, set[str]]:
    edges = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for _, target, _ in _imports(name, path):
            # A submodule may name its own ancestors: Python has them initialised first.
            if target in MODULES and target != name and not name.startswith(target + "."):
                edges[name].add(target)
    return edges


def _layer(module: str) -> int | None:
    best = None
    for level, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (level, len(prefix))
    return None if best is None else best[0]


def test_every_module_has_a_layer():
    assert sorted(m for m in MODULES if m not in TOP and _layer(m) is None) == []


def test_no_import_climbs_a_layer():
    climbing = []
    for name, targets in _edges().items():
        if name in TOP:
            continue
        for target in targets:
            if target not in TOP and _layer(target) > _layer(name):
                climbing.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
            elif target in TOP:
                climbing.append(f"{name} imports the package root {target}")
    assert climbing == []


def test_no_import_cycles():
    edges = _edges()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert cycles == []


def test_function_level_imports_are_optional_dependencies_only():
    hidden = [f"{path.relative_to(ROOT.parent)}:{line} imports {target}"
              for name, path in MODULES.items() for line, target, inside in _imports(name, path)
              if inside and target.split(".")[0] not in OPTIONAL]
    assert hidden == []


def test_ops_reach_backends_only_through_the_registry():
    direct = [f"{name} imports {target}" for name, targets in _edges().items() if name.startswith("fusedsnn.ops")
              for target in targets if target.startswith("fusedsnn.backends") and target != "fusedsnn.backends.registry"]
    assert direct == []


@pytest.mark.parametrize("backend", ["reference", "triton", "host", "poplar"])
def test_each_backend_is_one_folder_that_registers_itself(backend):
    init = ROOT / "backends" / backend / "__init__.py"
    assert "register_backend(" in init.read_text()
    assert f"fusedsnn.backends.{backend}" in _edges()["fusedsnn.backends"]


def test_the_layer_list_in_the_design_doc_names_every_folder():
    design = (ROOT.parent / "docs" / "design.md").read_text()
    folders = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert [f for f in folders if f"fusedsnn/{f}/" not in design] == []
