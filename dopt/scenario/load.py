"""Reading scen.yaml: ruamel with line numbers, ``--set`` overrides, one UserError per mistake.

The key table lives in ``schema.py`` and the rules that tie keys together in ``rules.py``; this
module walks the YAML tree against the table and remembers where every key was written (docs/scenario.md#keys).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import stat
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any, NoReturn

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, TaggedScalar
from ruamel.yaml.error import YAMLError

from dopt.errors import UserError
from dopt.scenario.model import Scenario
from dopt.scenario.rules import build
from dopt.scenario.schema import SCHEMA, Invalid, Key, Section, defaults, unknown_key
from dopt.text import shortened

__all__ = ["load", "merge_overrides", "override_key"]

log = logging.getLogger(__name__)

_SECTION = object()  # marks a section that was written, so that "resource twice" can be seen
_FULLWIDTH = "\uff1a"
_KEY_LINE = re.compile(r"^(\s*)(?:-\s+)?([^\s#][^:\uff1a#]*?)\s*[:\uff1a]")


def load(
    path: str | PathLike[str], *, workdir: str | PathLike[str] | None = None, overrides: Iterable[str] = ()
) -> Scenario:
    """Read, check and complete a scenario file.

    Args:
        path: the scen.yaml.
        workdir: where user_module.py lives and relative dataset paths start (default: cwd).
        overrides: ``"dotted.key=VALUE"`` strings from ``--set``; VALUE is a YAML flow value.

    Returns:
        The frozen Scenario, every default filled in, paths absolute.

    Raises:
        UserError: naming the file (or the ``--set``), key path, line:column, value and a fix.
    """
    shown = str(path)
    text = _read(Path(path), shown)
    _reject_fullwidth_colon(text, shown)
    root = _parse(text, shown)
    if root is None:
        raise UserError("the file is empty", file=shown, fix="start from scen.yaml.example (or run dopt init)")
    if not isinstance(root, dict):
        raise UserError(
            f"expected a mapping with a 'scenario' key at the top level, got {_describe(root)}",
            file=shown,
            line=1,
            column=1,
            fix="e.g. scenario: {strategy: ...} (see scen.yaml.example)",
        )
    overrides = tuple(overrides)
    reader = _Reader(shown, _apply_overrides(root, overrides))
    reader.walk(root, SCHEMA, "")
    home = Path(workdir).resolve() if workdir is not None else Path.cwd()
    return dataclasses.replace(build(reader, Path(path).resolve(), home), overrides=overrides)


def override_key(text: str) -> str:
    """The dotted key an ``--set KEY=VALUE`` option sets, spaces removed."""
    return ".".join(p.strip() for p in text.partition("=")[0].split("."))


def merge_overrides(first: Iterable[str], then: Iterable[str]) -> tuple[str, ...]:
    """``first`` followed by ``then``, where an option of ``then`` replaces one of ``first`` that
    sets the same key (docs/resume.md#overrides)."""
    merged = {override_key(t): t for t in first}
    merged.update({override_key(t): t for t in then})
    return tuple(merged.values())


# --- text and YAML -------------------------------------------------------------------------------


# A scenario is kilobytes; a file far larger is a mistake (or /dev/zero) and is not read whole.
MAX_SCENARIO_BYTES = 1 << 20


def _read(file: Path, shown: str) -> str:
    """The scenario's text, read only from a regular file of at most MAX_SCENARIO_BYTES (a FIFO
    would block, a device never end)."""
    fix = "pass the path of your scen.yaml, e.g. dopt -c scen.yaml (dopt init writes one)"
    try:
        mode = file.stat().st_mode
        if stat.S_ISDIR(mode):
            raise UserError("is a directory, not a file", file=shown, fix=fix)
        if not stat.S_ISREG(mode):
            raise UserError("is not a regular file (a pipe, a device or a socket)", file=shown, fix=fix)
        with file.open("rb") as f:
            data = f.read(MAX_SCENARIO_BYTES + 1)
        if len(data) > MAX_SCENARIO_BYTES:
            raise UserError(
                f"is over {MAX_SCENARIO_BYTES // 1024} KiB; a scenario is a few kilobytes", file=shown, fix=fix
            )
        return data.decode("utf-8-sig")
    except FileNotFoundError:
        raise UserError("no such file", file=shown, fix=fix) from None
    except UnicodeDecodeError as err:
        raise UserError(f"not UTF-8 text (byte {err.start})", file=shown, fix="save it as UTF-8") from None
    except OSError as err:
        raise UserError(f"cannot read it: {err.strerror}", file=shown, fix=fix) from None


# A scenario has a few hundred values a few levels deep. More is a mistake or a YAML alias bomb
# (an anchor repeated nine times per level expands to billions of values), refused before any
# value is expanded or checked.
MAX_VALUES, MAX_DEPTH = 100_000, 20


def _parse(text: str, shown: str, *, positions: bool = True) -> Any:
    _check_nesting(text, shown)
    try:
        doc = YAML(typ="rt").load(text)  # round-trip: CommentedMap keeps .lc line/column
    except YAMLError as err:
        what = shortened(str(getattr(err, "problem", None) or str(err).strip().splitlines()[0]), 200)
        context = getattr(err, "context", None)
        if context:
            what += f" ({shortened(str(context), 200)})"
        mark = getattr(err, "problem_mark", None) if positions else None
        raise UserError(
            f"invalid YAML: {what}",
            file=shown,
            fix=_yaml_fix(what),
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except ValueError as err:  # e.g. an integer of over 4,300 digits, which Python will not convert
        raise UserError(
            f"invalid value: {shortened(str(err), 200)}", file=shown, fix="write numbers a real run can have"
        ) from None
    except RecursionError:
        raise UserError(
            f"nested over {MAX_DEPTH} levels deep", file=shown, fix="a scenario is a few levels deep"
        ) from None
    _check_bounds(doc, shown)
    return doc


def _check_nesting(text: str, shown: str) -> None:
    """Refuse text nested far deeper than MAX_DEPTH before parsing it: the YAML parser recurses per
    level and takes seconds to fail at a thousand (``[[[[...]]]]``, or lines indented that deep)."""
    depth = deepest = 0
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
        elif ch == "\n":
            depth = max(depth, 0)
    indent = max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0)
    if deepest > 4 * MAX_DEPTH or indent > 8 * MAX_DEPTH:
        raise UserError(f"nested over {MAX_DEPTH} levels deep", file=shown, fix="a scenario is a few levels deep")


def _check_bounds(doc: Any, shown: str) -> None:
    """Refuse a document of over MAX_VALUES values (aliases counted each time they are used) or
    nested over MAX_DEPTH levels, without expanding it."""
    stack, seen = [(doc, 0)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise UserError(
                f"expands to over {MAX_VALUES:,} values (YAML anchors and aliases repeated?)",
                file=shown,
                fix="write the scenario's values out; a scenario holds a few hundred",
            )
        if depth > MAX_DEPTH:
            raise UserError(f"nested over {MAX_DEPTH} levels deep", file=shown, fix="a scenario is a few levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


def _yaml_fix(problem: str) -> str:
    if "'\\t'" in problem:
        return "indent with spaces, not tabs"
    if "duplicate key" in problem:
        return "keep only one of the two keys"
    if "another document" in problem:
        return "a scenario is one YAML document: remove the second '---' and what follows"
    if "mapping values are not allowed" in problem:
        return "put each key on its own line and quote values that contain ': '"
    return "check the indentation, colons and quotes on this line and the one before"


def _reject_fullwidth_colon(text: str, shown: str) -> None:
    """Some input methods type '：' (U+FF1A); YAML reads it as text and fails a line later."""
    lines = text.splitlines()
    hits = [(row, col) for row, line in enumerate(lines) for col in _fullwidth_columns(line)]
    if not hits:
        return
    row, col = hits[0]
    more = f" ({len(hits) - 1} more after it)" if len(hits) > 1 else ""
    raise UserError(
        f"full-width colon '{_FULLWIDTH}' where YAML needs ':'{more}",
        file=shown,
        key=_key_path_at(lines, row),
        line=row + 1,
        column=col + 1,
        fix=f"replace '{_FULLWIDTH}' with ':' (or quote the value if it is meant)",
    )


def _fullwidth_columns(line: str) -> Iterator[int]:
    quote = ""
    for i, ch in enumerate(line):
        before = line[i - 1] if i else " "
        if quote:
            if ch == quote and not (quote == '"' and before == "\\"):
                quote = ""
        elif ch in "'\"" and before in " \t[{,:":
            quote = ch
        elif ch == "#" and before in " \t":
            return  # a comment
        elif ch == _FULLWIDTH:
            yield i


def _key_path_at(lines: list[str], row: int) -> str | None:
    """The dotted key path of a line, read from indentation: cheap, good enough for a message."""
    match = _KEY_LINE.match(lines[row])
    if not match:
        return None
    parts, indent = [match.group(2)], len(match.group(1))
    for line in reversed(lines[:row]):
        match = _KEY_LINE.match(line)
        if match and len(match.group(1)) < indent:
            parts.append(match.group(2))
            indent = len(match.group(1))
    return ".".join(p.strip("'\"") for p in reversed(parts))


# --- overrides -----------------------------------------------------------------------------------


def _apply_overrides(root: dict[str, Any], overrides: Iterable[str]) -> dict[str, str]:
    """Set each ``KEY=VALUE`` in the raw tree; return the paths set (and created) by each."""
    set_by: dict[str, str] = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(parts):
            raise UserError(
                f"expected KEY=VALUE, got {text!r}", file="--set", fix="e.g. --set scenario.strategy.epochs=1"
            )
        place = f"--set {text}"
        value = _parse(raw, place, positions=False) if raw.strip() else ""
        node = root
        for i, part in enumerate(parts[:-1]):
            here = ".".join(parts[: i + 1])
            if node.get(part) is None:
                node[part] = CommentedMap()
                set_by[here] = text
            elif not isinstance(node[part], dict):
                raise UserError(
                    f"cannot set {'.'.join(parts)}: {here} is {_describe(node[part])}, not a mapping",
                    file=place,
                    key=here,
                    fix="check the key path against scen.yaml.example",
                )
            node = node[part]
        node[parts[-1]] = value
        set_by[".".join(parts)] = text
    return set_by


# --- walking the tree against the schema ---------------------------------------------------------


class _Reader:
    """Checks each written key, keeping its position so that later rules can point at it."""

    def __init__(self, file: str, set_by: dict[str, str]) -> None:
        self.file, self.set_by = file, set_by
        self.locs: dict[str, tuple[int, int]] = {}
        self.values: dict[str, Any] = {}
        self._defaults = defaults()

    def get(self, path: str) -> Any:
        return self.values[path] if path in self.values else self._defaults.get(path)

    def fail(self, path: str, what: str, fix: str, index: int | None = None) -> NoReturn:
        raise UserError(what, key=path, fix=fix, **self._where(path, index))

    def warn(self, path: str, what: str, fix: str) -> None:
        log.warning("%s", UserError(what, key=path, fix=fix, **self._where(path)))

    def _where(self, path: str, index: int | None = None) -> dict[str, Any]:
        for prefix in _prefixes(path):
            if prefix in self.set_by:  # an override has no line: name the --set instead
                return {"file": f"--set {self.set_by[prefix]}"}
        item = [f"{path}[{index}]"] if index is not None else []
        for prefix in [*item, *_prefixes(path)]:
            if prefix in self.locs:
                line, column = self.locs[prefix]
                return {"file": self.file, "line": line, "column": column}
        return {"file": self.file}

    def walk(self, node: Any, section: Section, path: str) -> None:
        if node is None:
            node = {}  # "training:" with nothing under it
        if not isinstance(node, dict):
            self.fail(
                path,
                f"expected a mapping of keys, got {_describe(node)}",
                f"indent its keys under it, e.g. {section.example}",
            )
        for name, value in node.items():
            sub = f"{path}.{name}" if path else str(name)
            spec = section.get(name) if isinstance(name, str) else None
            self._locate(node, name, value, sub, by_key=not isinstance(spec, Key) or value is None)
            if spec is None:
                self.fail(sub, *unknown_key(name, section, path))
            elif isinstance(spec, Section):
                self.values[sub] = _SECTION
                self.walk(value, spec, sub)
            elif value is not None:  # "seed:" or "seed: ~" means: the default
                self.values[sub] = self._check(spec, value, sub)
        for spec in section.keys:
            if spec.required and node.get(spec.name) is None:
                what = "has no value" if spec.name in node else "required key is missing"
                self.fail(
                    f"{path}.{spec.name}" if path else spec.name,
                    what,
                    f"add it under {path or 'the top level'}, e.g. {spec.example}",
                )

    def _check(self, key: Key, value: Any, path: str) -> Any:
        value = _plain(value)
        try:
            return key.check(value)
        except Invalid as bad:
            detail = f" ({bad.detail})" if bad.detail else ""
            self.fail(
                path,
                f"expected {key.check.expected}, got {shortened(repr(value))}{detail}",
                bad.fix or f"e.g. {key.example}",
                bad.index,
            )

    def _locate(self, node: Any, name: Any, value: Any, path: str, *, by_key: bool) -> None:
        pos = _pos(node, "key" if by_key else "value", name)
        if pos:
            self.locs[path] = pos
        if isinstance(value, list):
            for i in range(len(value)):
                pos = _pos(value, "item", i)
                if pos:
                    self.locs[f"{path}[{i}]"] = pos


def _pos(node: Any, kind: str, arg: Any) -> tuple[int, int] | None:
    try:
        line, column = getattr(node.lc, kind)(arg)  # 0-based; nodes made by --set have none
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None
    return line + 1, column + 1


def _prefixes(path: str) -> Iterator[str]:
    while path:
        yield path
        path = path.rpartition(".")[0]


def _plain(value: Any) -> Any:
    """ruamel's ScalarFloat, ScalarInt, CommentedSeq... as plain Python, for checks and reprs."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, TaggedScalar):  # "epochs: !foo 2": show it as written
        return f"{value.tag} {value.value}"
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
