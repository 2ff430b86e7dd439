"""The shape the code keeps (docs/contributing.md#the-shape-of-the-code): no function in dopt/
over 60 lines or 7 parameters. ruff holds complexity and statements (pyproject.toml); it has no
rule for a function's length in lines, so this test does, on the same tree."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES, MAX_PARAMS = 60, 7
# Declarative tables that read best whole: the command line's parsers, one argument a few lines.
TABLES = {("dopt/cli.py", "_parsers")}


def functions() -> list[tuple[str, str, int, int]]:
    """(file, name, lines, parameters) of every function of dopt/, templates (user code) aside."""
    found = []
    for path in sorted((ROOT / "dopt").rglob("*.py")):
        if "templates" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((str(path.relative_to(ROOT)), node.name, lines, len(params)))
    return found


def test_no_function_is_over_sixty_lines():
    long = [f"{f}: {name} {n} lines" for f, name, n, _ in functions() if n > MAX_LINES and (f, name) not in TABLES]
    assert not long, "\n".join(long)


def test_no_function_takes_over_seven_parameters():
    wide = [f"{f}: {name} {p} parameters" for f, name, _, p in functions() if p > MAX_PARAMS]
    assert not wide, "\n".join(wide)


def test_the_checker_counts_what_it_should():
    names = {(f, name) for f, name, _, _ in functions()}
    assert ("dopt/cli.py", "main") in names and ("dopt/pipeline/prepare.py", "prepare") in names


def _dataclass_call(node: ast.ClassDef) -> ast.expr | None:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
            isinstance(target, ast.Attribute) and target.attr == "dataclass"
        ):
            return deco
    return None


def wide_positional_dataclasses() -> list[str]:
    """Dataclasses of dopt/ with more than three fields that can still be built by position."""
    found = []
    for path in sorted((ROOT / "dopt").rglob("*.py")):
        if "templates" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or (deco := _dataclass_call(node)) is None:
                continue
            fields = [s for s in node.body if isinstance(s, ast.AnnAssign) and "ClassVar" not in ast.unparse(s)]
            keywords = {k.arg: ast.unparse(k.value) for k in getattr(deco, "keywords", [])}
            if len(fields) > 3 and keywords.get("kw_only") != "True":
                found.append(f"{path.relative_to(ROOT)}: {node.name} ({len(fields)} fields)")
    return found


def test_wide_dataclasses_are_built_by_keyword():
    wide = wide_positional_dataclasses()
    assert not wide, "\n".join(wide)
