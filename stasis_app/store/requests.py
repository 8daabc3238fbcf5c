"""The request queue: claim rows, write each step of a call back, fenced by the lease."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from stasis_app import metrics
from stasis_app.store import queries
from stasis_app.store.model import CallbackRequest


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended: what goes into the row's result and per-leg columns."""

    status: str  # 'completed' | 'failed' | 'cancelled' (or 'pending' for a retry)
    result: str
    reason: str | None = None
    leg_a_cause: int | None = None
    leg_a_sip_code: int | None = None
    leg_b_cause: int | None = None
    leg_b_sip_code: int | None = None
    leg_a_duration: float | None = None
    leg_b_duration: float | None = None

    def leg_values(self) -> tuple[int | None, int | None, int | None, int | None,
                                  float | None, float | None]:
        return (self.leg_a_cause, self.leg_a_sip_code, self.leg_b_cause, self.leg_b_sip_code,
                self.leg_a_duration, self.leg_b_duration)


class RequestStore:
    def __init__(self, pool: asyncpg.Pool, instance_id: str, lease_seconds: float) -> None:
        self.pool = pool
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds

    async def claim(self, limit: int) -> list[CallbackRequest]:
        rows = await self.pool.fetch(queries.CLAIM, limit, self.instance_id, self.lease_seconds)
        claimed = [CallbackRequest.from_record(row) for row in rows]
        claimed.sort(key=lambda r: (r.next_call, r.id))
        return claimed

    async def next_due_in(self) -> float | None:
        value: float | None = await self.pool.fetchval(queries.NEXT_DUE_IN)
        return value

    async def renew_leases(self) -> None:
        await self.pool.execute(queries.RENEW_LEASES, self.instance_id, self.lease_seconds)

    async def start_attempt(self, req: CallbackRequest, call_id: str,
                            channel_id: str) -> float | None:
        """Record a leg-A dial before it happens.

        Returns the pick-up latency (seconds since the row became due, by the database's clock),
        or None when the write was fenced off (cancelled, or the lease is lost).
        """
        row = await self.pool.fetchrow(
            queries.START_ATTEMPT, req.id, req.lease_token, call_id, channel_id)
        return None if row is None else float(row["pickup_seconds"])

    async def leg_a_answered(self, req: CallbackRequest, sip_call_id: str | None,
                             twoway_call_id: str, leg_b_channel_id: str) -> bool:
        return _applied(await self.pool.execute(
            queries.LEG_A_ANSWERED, req.id, req.lease_token, sip_call_id, twoway_call_id,
            leg_b_channel_id))

    async def bridged(self, req: CallbackRequest, bridge_id: str,
                      leg_b_sip_call_id: str | None) -> bool:
        return _applied(await self.pool.execute(
            queries.BRIDGED, req.id, req.lease_token, bridge_id, leg_b_sip_call_id))

    async def finish(self, req: CallbackRequest, outcome: Outcome) -> bool:
        return _applied(await self.pool.execute(
            queries.FINISH, req.id, req.lease_token, outcome.status, outcome.result,
            outcome.reason, *outcome.leg_values()))

    async def retry(self, req: CallbackRequest, outcome: Outcome, delay: float) -> bool:
        return _applied(await self.pool.execute(
            queries.RETRY, req.id, req.lease_token, outcome.result, outcome.reason, delay,
            *outcome.leg_values()))

    async def refresh_queue_gauges(self) -> None:
        row = await self.pool.fetchrow(queries.QUEUE_DEPTH)
        metrics.QUEUE_DUE.set(row["due"])
        metrics.QUEUE_PENDING.set(row["pending"])

    async def release(self, req: CallbackRequest) -> bool:
        return _applied(await self.pool.execute(queries.RELEASE, req.id, req.lease_token))

    async def status_of(self, request_id: int) -> str | None:
        status: str | None = await self.pool.fetchval(queries.STATUS_OF, request_id)
        return status


def _applied(command_tag: str) -> bool:
    """asyncpg returns e.g. 'UPDATE 1'."""
    return command_tag.rsplit(" ", 1)[-1] != "0"
