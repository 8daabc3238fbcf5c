"""The request queue: claim rows, write each step of a call back, fenced by the lease."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from uuid import UUID

import asyncpg

from stasis_app import metrics
from stasis_app.backoff import Backoff
from stasis_app.domain.request import CallbackRequest, Outcome
from stasis_app.store import queries
from stasis_app.store.batching import TRANSIENT as TRANSIENT  # also the leases' retry rule
from stasis_app.store.batching import WriteBatch

log = logging.getLogger(__name__)

T = TypeVar("T")


class Fetcher(Protocol):
    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]: ...


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What the table says about the rows of live sessions."""

    cancelled: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)  # lease taken over, or the row is gone


class RequestStore:
    """Claims and write-backs. Every write-back is idempotent and retried through a database
    outage for up to ``retry_window`` seconds: live calls go on, results land once it is back.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        instance_id: str,
        lease_seconds: float,
        retry_window: float = 300.0,
        leases: Fetcher | None = None,
    ) -> None:
        self.pool = pool
        self.leases: Fetcher = leases or pool
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        self.retry_window = retry_window
        # One statement per kind carries the write-backs of every call that has one ready.
        self._started = WriteBatch("start_attempt", queries.START_ATTEMPT, self._fetch_columns)
        self._answered = WriteBatch("leg_a_answered", queries.LEG_A_ANSWERED, self._fetch_columns)
        self._bridged = WriteBatch("bridged", queries.BRIDGED, self._fetch_columns)
        self._finished = WriteBatch("finish", queries.FINISH, self._fetch_columns)
        self._retried = WriteBatch("retry", queries.RETRY, self._fetch_columns)

    async def _retrying(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_window
        backoff = Backoff(initial=0.1, maximum=5.0)
        while True:
            try:
                return await write()
            except TRANSIENT as exc:
                if loop.time() >= deadline:
                    raise
                log.warning(
                    "database write failed, retrying: %s",
                    type(exc).__name__,
                    extra={"action": "db_retry", "write": what},
                )
                await asyncio.sleep(backoff.next_delay())

    async def _execute(self, what: str, query: str, *args: object) -> bool:
        return _applied(await self._retrying(what, lambda: self.pool.execute(query, *args)))

    async def _fetch_columns(
        self, what: str, query: str, columns: list[list[object]]
    ) -> list[asyncpg.Record]:
        return await self._retrying(what, lambda: self.pool.fetch(query, *columns))

    async def claim(self, limit: int) -> list[CallbackRequest]:
        rows = await self.pool.fetch(queries.CLAIM, limit, self.instance_id, self.lease_seconds)
        claimed = [CallbackRequest.from_record(row) for row in rows]
        claimed.sort(key=lambda r: (r.next_call, r.id))
        return claimed

    async def recover(self, limit: int, *, own: bool) -> list[CallbackRequest]:
        """Take over live rows whose lease ran out (``own``: also this instance id's rows)."""
        rows = await self.pool.fetch(
            queries.RECOVER, limit, self.instance_id, self.lease_seconds, own
        )
        return [CallbackRequest.from_record(row) for row in rows]

    async def next_due_in(self) -> float | None:
        value: float | None = await self.pool.fetchval(queries.NEXT_DUE_IN)
        return value

    async def renew_leases(self, leases: Mapping[int, UUID]) -> set[int]:
        """Renew the leases of live sessions (a row we stopped working on must expire); the
        ids renewed. Through ``leases``, a connection write-backs cannot starve."""
        if not leases:
            return set()
        rows = await self.leases.fetch(
            queries.RENEW_LEASES, self.lease_seconds, list(leases), list(leases.values())
        )
        return {row["id"] for row in rows}

    async def reconcile(self, leases: Mapping[int, UUID]) -> Reconciled:
        """Read the live sessions' rows back: cancelled ones, and ones no longer ours."""
        if not leases:
            return Reconciled()
        rows = await self.leases.fetch(queries.RECONCILE, list(leases), list(leases.values()))
        return Reconciled(
            cancelled={row["id"] for row in rows if row["cancelled"] and row["held"]},
            lost={row["id"] for row in rows if not row["held"]},
        )

    async def start_attempt(
        self, req: CallbackRequest, call_id: str, channel_id: str
    ) -> float | None:
        """Record a leg-A dial before it happens.

        Returns the pick-up latency (seconds since the row became due, by the database's clock),
        or None when the write was fenced off (cancelled, or the lease is lost).
        """
        row = await self._started.write(req.id, req.lease_token, call_id, channel_id)
        return None if row is None else float(row["pickup_seconds"])

    async def leg_a_answered(
        self,
        req: CallbackRequest,
        sip_call_id: str | None,
        twoway_call_id: str,
        leg_b_channel_id: str,
    ) -> bool:
        row = await self._answered.write(
            req.id, req.lease_token, sip_call_id, twoway_call_id, leg_b_channel_id
        )
        return row is not None

    async def bridged(
        self, req: CallbackRequest, bridge_id: str, leg_b_sip_call_id: str | None
    ) -> bool:
        row = await self._bridged.write(req.id, req.lease_token, bridge_id, leg_b_sip_call_id)
        return row is not None

    async def finish(self, req: CallbackRequest, outcome: Outcome) -> bool:
        row = await self._finished.write(
            req.id,
            req.lease_token,
            outcome.status,
            outcome.result,
            outcome.reason,
            *outcome.leg_values(),
        )
        return row is not None

    async def retry(self, req: CallbackRequest, outcome: Outcome, delay: float) -> bool:
        row = await self._retried.write(
            req.id,
            req.lease_token,
            outcome.result,
            outcome.reason,
            delay,
            *outcome.leg_values(),
            outcome.void_attempt,
        )
        return row is not None

    async def refresh_queue_gauges(self) -> None:
        row = await self.pool.fetchrow(queries.QUEUE_DEPTH)
        metrics.QUEUE_DUE.set(row["due"])
        metrics.QUEUE_PENDING.set(row["pending"])

    async def release(self, req: CallbackRequest) -> bool:
        return await self._execute(
            "release", queries.RELEASE, req.id, req.lease_token, req.attempts
        )

    async def status_of(self, request_id: int) -> str | None:
        status: str | None = await self.pool.fetchval(queries.STATUS_OF, request_id)
        return status


def _applied(command_tag: str) -> bool:
    """asyncpg returns e.g. 'UPDATE 1'."""
    return command_tag.rsplit(" ", 1)[-1] != "0"
