"""Run ``twoway-callback`` in-process with a clean TWOWAY_ environment, capture its output."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import pytest

from stasis_app.cli import main

T = TypeVar("T")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def clean_env(monkeypatch: pytest.MonkeyPatch, **settings: str) -> None:
    for name in list(os.environ):
        if name.startswith("TWOWAY_"):
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(f"TWOWAY_{name.upper()}", value)
    monkeypatch.setenv("TWOWAY_LOG_FORMAT", "text")


def runner(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    def run(*argv: str) -> Ran:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def query(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """One statement on its own connection (the CLI runs its own event loop: tests are sync)."""

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return sync(go())


def sync(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
