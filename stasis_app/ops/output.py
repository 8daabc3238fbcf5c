"""Operator commands' I/O: aligned tables for people, ``--json`` for scripts, secrets from stdin.

Values are already secret-free here: the stores select public columns only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from stasis_app.errors import TwowayError

EXIT_FAILED = 1  # not found, not allowed in this state, a check failed
EXIT_USAGE = 2  # bad input (as argparse)


class OpsError(TwowayError):
    """A command cannot do what was asked: the message is for the operator."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def record(row: Mapping[str, Any], out: TextIO) -> None:
    """One row as ``name  value`` lines, nulls left out."""
    shown = {k: v for k, v in row.items() if v is not None}
    width = max((len(k) for k in shown), default=0)
    for key, value in shown.items():
        out.write(f"{key.ljust(width)}  {cell(value)}\n")


def as_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, default=cell) + "\n")


class Output:
    """Where a command's result goes, and in which form."""

    def __init__(self, *, json_mode: bool, out: TextIO | None = None) -> None:
        self.json = json_mode
        self.out = out if out is not None else sys.stdout

    def rows(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
        if self.json:
            as_json(list(rows), self.out)
        elif rows:
            table(rows, columns, self.out)
        else:
            self.out.write("(none)\n")

    def message(self, text: str, data: Any) -> None:
        """A one-line confirmation, or ``data`` as JSON."""
        if self.json:
            as_json(data, self.out)
        else:
            self.out.write(text + "\n")


def secret_arg(value: str | None) -> str | None:
    """``-`` means: read it from standard input (keeps a password out of ps and history)."""
    return sys.stdin.readline().rstrip("\r\n") if value == "-" else value
