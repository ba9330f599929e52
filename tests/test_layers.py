"""The import drawing of aver_fast, read from the source: every ``import`` of an aver_fast module (also inside
functions), except those under ``if TYPE_CHECKING:`` (type hints only) and ``if __name__ == "__main__":``
(``python -m aver_fast.cli`` hands over to the command line). Rules: no cycles, at most 8 floors, commands side by
side, and no module imports the layer above it."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FLOORS = 8
NATIVE = ("aver_fast._C",)  # the C++ extension: a module without Python imports
ENTRY_POINTS = ("aver_fast.__main__",)  # the other door to the command line: drawn as aver_fast.cli
# the floors, bottom-up; a unit (a top-level module or package of aver_fast, or one command) imports only from floors
# below its own
FLOORS = [("aver_fast._C", "aver_fast._version", "aver_fast.kernels", "aver_fast.sizes", "aver_fast.cpu"),
          ("aver_fast.ops",),
          ("aver_fast.nn", "aver_fast.metrics", "aver_fast.checkpoint"),
          ("aver_fast.models", "aver_fast.data", "aver_fast.int8"),
          ("aver_fast.training", "aver_fast.inference", "aver_fast.plots",
           "aver_fast.bench", "aver_fast.summary", "aver_fast.gpu_build",
           "aver_fast.export", "aver_fast.streaming"),
          ("aver_fast.evaluation", "aver_fast.predict_videos", "aver_fast.demo",  # what each command does
           "aver_fast.quantization"),
          ("aver_fast.commands", "aver_fast"),  # the package's __init__: the public API, re-exported
          ("aver_fast.cli",)]


def _modules() -> dict[str, str]:
    """Module name -> file, for aver_fast/ and kernels/ (installed as aver_fast.kernels)."""
    out = {}
    for top, package in (("aver_fast", "aver_fast"), ("kernels", "aver_fast.kernels")):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            rel = os.path.relpath(folder, os.path.join(ROOT, top))
            parts = [package] + ([] if rel == "." else rel.split(os.sep))
            for f in files:
                if f.endswith(".py"):
                    name = ".".join(parts if f == "__init__.py" else parts + [f[:-3]])
                    out[name] = os.path.join(folder, f)
    return out | dict.fromkeys(NATIVE, "")


def _skipped(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = ast.unparse(node.test)
    return test in ("TYPE_CHECKING", "typing.TYPE_CHECKING") or test.replace("'", '"') == '__name__ == "__main__"'


def _imports(name: str, path: str, modules: dict[str, str]) -> set[str]:
    if not path:
        return set()
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _skipped(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                   else []))
            for a in node.names:  # `from pkg import submodule` imports the submodule, else the package
                found.update(m for m in (f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base,)
                             if m in modules)
        for child in ast.iter_child_nodes(node):
            visit(child)
    with open(path) as f:
        visit(ast.parse(f.read()))
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path, m) for m in [_modules()] for name, path in m.items()}


def _unit(name: str) -> str:
    if name in ENTRY_POINTS:
        return "aver_fast.cli"
    return ".".join(name.split(".")[:3 if name.startswith("aver_fast.commands.") else 2])


UNITS: dict[str, set[str]] = {}
for _name, _deps in GRAPH.items():
    UNITS.setdefault(_unit(_name), set()).update(_unit(d) for d in _deps if _unit(d) != _unit(_name))


def _floor(unit: str) -> int:
    (floor,) = [i for i, units in enumerate(FLOORS) for u in units
                if unit == u or (u != "aver_fast" and unit.startswith(u + "."))] or [None]
    assert floor is not None, f"{unit} is on no floor of this test's FLOORS"
    return floor


def test_the_drawing_sees_the_known_imports():
    assert "aver_fast.training" in GRAPH["aver_fast.commands.train"]
    assert "aver_fast.kernels.tlab_attention" in GRAPH["aver_fast.ops.tlab_attention"]  # inside a function
    assert "aver_fast.commands.train" in GRAPH["aver_fast.cli"]
    assert "aver_fast.cli" in GRAPH["aver_fast.__main__"] and "aver_fast.cli" not in GRAPH["aver_fast"]
    assert "aver_fast.checkpoint" in GRAPH["aver_fast.inference"] and "aver_fast.training" not in UNITS["aver_fast"]


def test_no_import_cycles():
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep):] + [node, dep]) if dep in path
                            else f"import cycle through {node} -> {dep}")
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2
    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [])


def test_every_unit_imports_only_from_the_floors_below():
    for unit, deps in sorted(UNITS.items()):
        bad = sorted(d for d in deps if _floor(d) >= _floor(unit))
        assert not bad, f"{unit} (floor {_floor(unit) + 1}) imports {bad}, not below it"


def test_at_most_eight_floors():
    floors: dict[str, int] = {}

    def height(unit: str) -> int:
        if unit not in floors:
            floors[unit] = 0  # in progress: meeting it again is a cycle
            floors[unit] = 1 + max((height(d) for d in UNITS[unit]), default=0)
        assert floors[unit], f"the units import each other in a cycle through {unit}"
        return floors[unit]
    top = max(UNITS, key=height)
    chain = [top]
    while UNITS[chain[-1]]:
        chain.append(max(UNITS[chain[-1]], key=height))
    assert len(FLOORS) <= MAX_FLOORS and height(top) <= MAX_FLOORS, f"{height(top)} floors: " + " -> ".join(chain)


def test_commands_are_side_by_side():
    commands = [u for u in UNITS if u.startswith("aver_fast.commands.")]
    assert len(commands) >= 10
    for unit in commands:
        assert not [d for d in UNITS[unit] if d.startswith("aver_fast.commands") or d == "aver_fast.cli"], unit
