"""The user-mistake error (exit 2), and the error of a checkpoint that cannot be loaded (which the
stages fall back from). Failures during a run are ordinary exceptions (exit 1), see cli.py."""

from __future__ import annotations

from pathlib import Path

__all__ = ["UserError", "CorruptCheckpoint", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_EMPTY_FRONT"]

# The exit codes of every command (docs/cli.md#exit-codes): 0 success, 1 a failure during the run,
# 2 a mistake the user can fix, 3 a search that ended with an empty front.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EMPTY_FRONT = 0, 1, 2, 3


class UserError(Exception):
    """A mistake the user can fix. cli.py prints it on one line and exits 2.

    Rendered as ``file:line:column: key: what. Fix: fix`` with the parts that are known.
    """

    def __init__(
        self,
        what: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(what)
        self.what = what
        self.file = file
        self.key = key
        self.line = line
        self.column = column
        self.fix = fix

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        fix = f" Fix: {_bounded(self.fix)}" if self.fix else ""
        what = _bounded(self.what.rstrip())
        if fix and not what.endswith((".", "?", "!")):
            what += "."
        return f"{where}{key}{what}{fix}"


def _bounded(text: str, limit: int = 1000) -> str:
    """A message part of at most ``limit`` characters: one line, whatever value it quotes."""
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text) - limit + 1:,} more characters)"


class CorruptCheckpoint(Exception):
    """A checkpoint file that cannot be loaded (torn, truncated, altered since it was written, or of
    another supernet)."""

    @classmethod
    def of(cls, path: Path, exc: BaseException) -> CorruptCheckpoint:
        """The error for ``path``, which failed to load with ``exc``: its name, the error's type and
        the first line of its message (``supernet_epoch_3.pt: EOFError: Ran out of input``)."""
        first = str(exc).splitlines()[0] if str(exc) else ""
        return cls(f"{path.name}: {type(exc).__name__}: {first}")
