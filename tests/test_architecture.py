"""The house rule, written once: alrun's packages are floors, and every import points down (or stays on its floor).

    cli > launch > track > report > loop > acquire > train > model > data > config > core

Entry points (`alrun/cli.py`, `alrun/__main__.py`, any `__main__.py`, the root `alrun/__init__.py`) may import
anything and nothing imports them. Every import counts: at the top of a module, inside a function, under
TYPE_CHECKING. No circle between modules either, on one floor or across.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "alrun"
FLOORS = ("core", "config", "data", "model", "train", "acquire", "loop", "report", "track", "launch", "cli")
# the root's private helpers: the alias finder of the 0.1 paths (imports nothing of alrun)
ROOT_LEAVES = {"alrun._aliases"}
MAX_LINES = 400  # "about 400": every module is under it; split one that grows past it


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The alrun modules `name` imports (a package's submodule when `from pkg import submodule`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import alrun.model.builders as b` -> the deepest known
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def floor(name: str) -> int | None:
    """The floor of a module; None for an entry point."""
    parts = name.split(".")
    if name in ("alrun", "alrun.cli", "alrun.__main__") or parts[-1] == "__main__":
        return None
    if name in ROOT_LEAVES:
        return -1
    return FLOORS.index(parts[1])


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_every_module_is_on_a_floor():
    for name in modules():
        parts = name.split(".")
        assert floor(name) is None or name in ROOT_LEAVES or parts[1] in FLOORS, f"{name} is on no floor"


def test_imports_point_down():
    upward = []
    for name, targets in graph().items():
        here = floor(name)
        for target in targets:
            there = floor(target)
            if here is None:
                continue  # an entry point may import anything, another entry point too
            if there is None:
                upward.append(f"{name} imports the entry point {target}")
            elif there > here:
                upward.append(f"{name} ({FLOORS[here]}) imports {target} ({FLOORS[there]})")
    assert not upward, "imports that point up:\n" + "\n".join(sorted(upward))


def test_no_import_circle():
    edges = graph()
    # Tarjan's strongly connected components: any component of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_rule_catches_an_upward_arrow_and_a_circle(tmp_path, monkeypatch):
    """The checks above can fail: a model module importing the report, and two modules importing each other."""
    fake = tmp_path / "alrun"
    for sub in ("model", "report"):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "model" / "a.py").write_text("from alrun.report import b\n")
    (fake / "report" / "b.py").write_text("def f():\n    from alrun.model import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    edges = graph()
    assert edges["alrun.model.a"] == {"alrun.report.b"} and edges["alrun.report.b"] == {"alrun.model.a"}
    try:
        test_imports_point_down()
    except AssertionError as exc:
        assert "alrun.model.a (model) imports alrun.report.b (report)" in str(exc)
    else:
        raise AssertionError("an upward import went unnoticed")
    try:
        test_no_import_circle()
    except AssertionError as exc:
        assert "alrun.model.a" in str(exc)
    else:
        raise AssertionError("a circle went unnoticed")


def test_no_module_is_a_house_of_its_own():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_old_flat_paths_are_the_same_modules():
    """Users' `_target_`s and imports of alrun 0.1 (alrun.heuristics.bald, alrun.models, ...) still resolve."""
    import importlib

    from alrun import _aliases

    for old, new in _aliases.MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from hydra.utils import get_method

    assert get_method("alrun.heuristics.bald") is importlib.import_module("alrun.acquire.heuristics").bald
    from alrun.config import RunSpec
    from alrun.loop import ActiveLearningJob
    from alrun.report import long_table

    assert RunSpec.__module__ == "alrun.config.schema"
    assert ActiveLearningJob.__module__ == "alrun.loop.job"
    assert long_table.__module__ == "alrun.report.frames"
