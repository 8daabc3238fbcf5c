"""Supervision of the service's own long-running tasks (claim loop, lease renewal, listener...).

Each must run as long as the service does: one that ends (an exception it did not catch, or a
return) is a crash. It is logged with its traceback, ``/readyz`` names it, and ``failed`` is
set so the process exits non-zero and its service manager restarts it (a restart with the same
instance id recovers the live calls at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.crashed: list[str] = []
        self.failed = asyncio.Event()

    def start(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._done)
        self._tasks.append(task)

    def _done(self, task: asyncio.Task[None]) -> None:
        if self._stopping:
            return
        name = task.get_name()
        exc = None if task.cancelled() else task.exception()
        log.error(
            "internal task %s %s",
            name,
            "crashed" if exc is not None else "ended",
            exc_info=exc,
            extra={"action": "task_crashed", "task": name},
        )
        self.crashed.append(name)
        self.failed.set()

    def readiness(self) -> dict[str, bool]:
        """``{task name: False}`` for every crashed task (merged into ``/readyz``)."""
        return dict.fromkeys(self.crashed, False)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
