"""What ``doctor`` prints: one line per check (ok / warning / fail, what was found, the fix).

A check runs inside ``Report.check``: it gets its own timeout, and a timeout or an error
becomes that check's fail line, so a dead peer never hangs the doctor nor hides later checks.
Messages are built by the checks from what they found; nothing here prints a response body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import TextIO


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    check: str
    found: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  -> {self.fix}" if self.fix else ""
        return f"{self.level.value:<8}{self.check:<16}{self.found}{fix}"


class Check:
    """The outcome of one check, set by its body."""

    def __init__(self, name: str, timeout_fix: str) -> None:
        self.name = name
        self.timeout_fix = timeout_fix
        self.finding: Finding | None = None

    def ok(self, found: str) -> None:
        self.finding = Finding(Level.OK, self.name, found)

    def warn(self, found: str, fix: str) -> None:
        self.finding = Finding(Level.WARNING, self.name, found, fix)

    def fail(self, found: str, fix: str) -> None:
        self.finding = Finding(Level.FAIL, self.name, found, fix)

    @property
    def passed(self) -> bool:
        return self.finding is not None and self.finding.level is not Level.FAIL


SECRET_MIN = 8  # shorter values (the lab default ARI password "twoway") are also plain words


class Report:
    def __init__(
        self,
        out: TextIO,
        *,
        timeout: float,
        json_mode: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        self.out = out
        self.timeout = timeout
        self.json = json_mode
        # Last line of defence: a secret a peer echoed in an error message is masked.
        self._secrets = sorted({s for s in secrets if len(s) >= SECRET_MIN}, key=len, reverse=True)
        self.findings: list[Finding] = []

    @contextlib.asynccontextmanager
    async def check(
        self, name: str, *, timeout: float | None = None, timeout_fix: str = ""
    ) -> AsyncIterator[Check]:
        limit = timeout if timeout is not None else self.timeout
        check = Check(name, timeout_fix)
        try:
            async with asyncio.timeout(limit):
                yield check
        except TimeoutError:
            check.fail(f"no answer within {limit:g} s", timeout_fix or "is the peer up?")
        except Exception as exc:  # any surprise is this check's fail line, not a traceback
            check.fail(f"{type(exc).__name__}: {exc}", "see the message")
        self.add(check.finding or Finding(Level.FAIL, name, "no outcome", "report this as a bug"))

    def add_fail(self, check: str, found: str, fix: str) -> None:
        self.add(Finding(Level.FAIL, check, found, fix))

    def add(self, finding: Finding) -> None:
        finding = replace(finding, found=self._mask(finding.found), fix=self._mask(finding.fix))
        self.findings.append(finding)
        if not self.json:
            self.out.write(finding.line() + "\n")
            self.out.flush()

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> int:
        """Print the summary (or the JSON); the exit code: 1 when any check failed."""
        counts = {level: sum(f.level is level for f in self.findings) for level in Level}
        if self.json:
            self.out.write(json.dumps([asdict(f) for f in self.findings], indent=2) + "\n")
        else:
            self.out.write(
                f"{counts[Level.OK]} ok, {counts[Level.WARNING]} warnings, "
                f"{counts[Level.FAIL]} failed\n"
            )
        return 1 if counts[Level.FAIL] else 0
