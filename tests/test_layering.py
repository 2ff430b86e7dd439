"""The package's layering rules, checked: a framework-free core found from the tree, no import
cycles (lazy imports included), empty backend package inits, and the shape limits the linter holds.

ruff (lint, format, function length, parameters, complexity) and mypy are run by the test command
of the README and by .ci/run, not from here (docs/contributing.md#lint-format-and-types)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("dopt.backends.torch", "dopt.backends.tf")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of the package, templates (the user's code, not dopt's) aside."""
    return {_module_name(p): p for p in (ROOT / "dopt").rglob("*.py") if "templates" not in p.parts}


def core_modules() -> list[str]:
    """The framework-free modules: all but the two backends' packages and ``__main__``."""
    return sorted(m for m in _modules() if not m.startswith(BACKENDS) and m != "dopt.__main__")


def test_the_core_is_found_from_the_tree():
    core = core_modules()
    assert {"dopt.cli", "dopt.pipeline.prepare", "dopt.backends.base", "dopt.store.workdir"} <= set(core)
    assert not [m for m in core if m.startswith(BACKENDS)]


def test_the_core_never_imports_a_framework():
    code = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _statements(nodes: list[ast.stmt]) -> list[ast.stmt]:
    """Every statement that can run, nested ones included; not those under ``if TYPE_CHECKING:``."""
    found: list[ast.stmt] = []
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found += _statements(node.orelse)
            continue
        found.append(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            for child in getattr(node, field, []):
                found += _statements(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return found


def runtime_imports(path: Path, modules: set[str], me: str | None = None) -> set[str]:
    """dopt modules ``path`` imports when it runs: at module level and inside functions (lazy
    imports run too, later), not under ``if TYPE_CHECKING:`` (never run). Importing ``a.b.c``
    runs the package ``a.b`` first, except for a module inside ``a.b`` (its package is being
    imported already); ``from pkg import name`` may import the submodule ``name``."""
    me = me or _module_name(path)
    own = {".".join(me.split(".")[:i]) for i in range(1, me.count(".") + 1)}
    found: set[str] = set()
    for node in _statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dopt") and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dopt"))
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return (found - own) & modules


def import_cycles() -> list[list[str]]:
    files = _modules()
    graph = {name: runtime_imports(path, set(files)) - {name} for name, path in files.items()}
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str], done: set[str]) -> None:
        if name in stack:
            cycles.append(stack[stack.index(name) :] + [name])
            return
        if name in done:
            return
        for nxt in sorted(graph[name]):
            visit(nxt, stack + [name], done)
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    return cycles


def test_no_import_cycles_lazy_imports_included():
    cycles = import_cycles()
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_sees_a_lazy_import(tmp_path):
    a = tmp_path / "probe.py"
    a.write_text(
        "def f():\n    from dopt.x import y\n\nif TYPE_CHECKING:\n    from dopt.z import w\nimport dopt.pipeline.run\n"
    )
    modules = {"dopt.x", "dopt.x.y", "dopt.z", "dopt.pipeline", "dopt.pipeline.run"}
    assert runtime_imports(a, modules, "dopt.pipeline.probe") == {"dopt.x", "dopt.x.y", "dopt.pipeline.run"}
    assert runtime_imports(a, modules, "dopt.other") == {"dopt.x", "dopt.x.y", "dopt.pipeline", "dopt.pipeline.run"}


def test_backend_packages_define_no_backend_in_their_init():
    for framework in ("torch", "tf"):
        init = ROOT / "dopt" / "backends" / framework / "__init__.py"
        tree = ast.parse(init.read_text())
        assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.ClassDef))], init


def test_the_top_level_holds_at_most_twelve_modules():
    top = sorted(p.name for p in (ROOT / "dopt").glob("*.py"))
    assert len(top) <= 12, top
