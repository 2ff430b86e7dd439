"""The user-mistake error (exit 2). Failures during a run are ordinary exceptions (exit 1), see cli.py."""

from __future__ import annotations

__all__ = ["UserError", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_EMPTY_FRONT"]

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
        fix = f" Fix: {self.fix}" if self.fix else ""
        what = self.what.rstrip()
        if fix and not what.endswith((".", "?", "!")):
            what += "."
        return f"{where}{key}{what}{fix}"
