"""Imports go one way (../shared/ARCHITECTURE.md): a module imports only modules on its own floor or below, no
import cycle exists, and only the UI imports textual or prompt_toolkit. Read from the source with `ast`, so the
test sees function-local imports too."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rnnchat"

# floor of each part of the package (a module's part: its first directory under rnnchat/, or its own name)
FLOORS = {
    "__init__": 0, "paths": 1, "runtime": 1, "atomic": 1, "text": 1, "checkpoint": 1, "sampling": 1, "nn": 1,
    "progress": 1, "control_chars": 1,
    "data": 2, "models": 2,
    "train": 3,
    "engine": 4,
    "session": 5,
    "ui": 6,
    "cli": 7, "__main__": 7,
}
UI_ONLY = ("textual", "prompt_toolkit", "rich")  # rich: what Textual draws with; progress bars may use it
RICH_ALLOWED = ("progress",)


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"] if rel.name == "__init__" else list(rel.parts)
        out[".".join(["rnnchat", *parts])] = path
    return out


def imports(path: Path, name: str) -> set[str]:
    """Every module `path` imports (absolute names), at any depth of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from rnnchat.data import corpora`
    return found


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


MODULES = modules()
GRAPH = {m: {i for i in imports(p, m) if i in MODULES and i != m} for m, p in MODULES.items()}


def test_every_part_has_a_floor():
    assert {part(m) for m in MODULES} <= set(FLOORS), "a new part of the package needs a floor in this test"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_only(module):
    mine = FLOORS[part(module)]
    up = sorted(i for i in GRAPH[module] if FLOORS[part(i)] > mine)
    assert not up, f"{module} (floor {mine}) imports a higher floor: {up}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_ui_imports_ui_toolkits(module):
    if part(module) in ("ui", "cli"):
        return
    allowed = RICH_ALLOWED if part(module) in RICH_ALLOWED else ()
    bad = sorted(i for i in imports(MODULES[module], module)
                 if i.split(".")[0] in UI_ONLY and not (i.split(".")[0] == "rich" and allowed))
    assert not bad, f"{module} imports a UI toolkit: {bad}"


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in GRAPH[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [m, n]))
            if n not in state:
                visit(n, stack + [m])
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m, [])


def test_the_checker_sees_a_violation(tmp_path):
    """The test can fail: a models module importing the engine is seen as going up."""
    fake = tmp_path / "bad.py"
    fake.write_text("def f():\n    from rnnchat.engine.engine import Engine\n")
    assert "rnnchat.engine.engine" in imports(fake, "rnnchat.models.bad")
    assert FLOORS[part("rnnchat.engine.engine")] > FLOORS[part("rnnchat.models.bad")]


RAY_ONLY = "rnnchat.engine.batch_ray"  # the one module that imports Ray (issue 19): only `--ray` imports it


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_ray_module_imports_ray(module):
    found = imports(MODULES[module], module)
    assert module == RAY_ONLY or not any(i.split(".")[0] == "ray" for i in found), f"{module} imports Ray"
    importers = {m for m, deps in GRAPH.items() if RAY_ONLY in deps}
    assert importers <= {"rnnchat.cli.batch"}, f"{sorted(importers)} import {RAY_ONLY}"
