"""The package's layering rules, checked: a framework-free core, no import cycles, types that hold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.frameworks import require

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_never_imports_a_framework():
    code = (
        "import sys\n"
        "import dopt.cli, dopt.run, dopt.search, dopt.space, dopt.costs, dopt.archive, dopt.results.plot, "
        "dopt.scenario, dopt.user_module, dopt.backends, dopt.backends.base, dopt.training, dopt.evaluation, "
        "dopt.context, dopt.convergence, dopt.plan, dopt.checkpoints, dopt.latency.build, dopt.latency.source, "
        "dopt.latency.table, dopt.latency.timing, dopt.analysis, dopt.analyze, dopt.train_result\n"
        "bad = sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules)\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_mypy_is_clean():
    require("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy", "dopt"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """dopt modules ``path`` imports when it is imported: module-level statements only, not those
    under ``if TYPE_CHECKING:`` nor inside functions (lazy imports run later, once all is loaded)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dopt") and node.level == 0:
            # ``from pkg import sub`` runs pkg (its __init__) and then the submodule sub.
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dopt"))
    return found & modules


def test_no_import_cycles():
    files = {_module_name(p): p for p in (ROOT / "dopt").rglob("*.py")}
    graph = {name: _top_level_imports(path, set(files)) - {name} for name, path in files.items()}
    cycles = []

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
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_backend_packages_define_no_backend_in_their_init():
    for framework in ("torch", "tf"):
        init = ROOT / "dopt" / "backends" / framework / "__init__.py"
        tree = ast.parse(init.read_text())
        assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.ClassDef))], init


def test_ruff_lint_and_format_are_clean():
    require("ruff")
    for args in (["check", "--output-format", "concise", "."], ["format", "--check", "."]):
        proc = subprocess.run([sys.executable, "-m", "ruff", *args], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, f"ruff {' '.join(args)}:\n" + proc.stdout + proc.stderr
