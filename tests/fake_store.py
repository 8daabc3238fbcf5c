"""The call flow's store port over rows in memory, fenced like ``stasis_app/store/queries.py``:
the lease token, the status guards, a cancel that wins over the end."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from stasis_app.domain.request import (
    COLUMNS,
    LIVE_STATUSES,
    CallbackRequest,
    Outcome,
    Result,
    Source,
    Status,
)
from tests.waiting import Changes

HA1 = "0123456789abcdef0123456789abcdef"


@dataclass
class FakeRow:
    """The columns of ``callback_requests`` the call flow reads or writes."""

    id: int
    status: Status = Status.PENDING
    result: Result | None = None
    result_reason: str | None = None
    source: Source = Source.SQL
    attempts: int = 0
    max_attempts: int | None = None
    retry_delay: timedelta | None = None
    retry_in: float | None = None  # the delay of the last retry
    lease_token: uuid.UUID | None = None
    username: str | None = "801"
    authname: str | None = "902"
    md5secret: str | None = HA1
    twoway_cli: str | None = None
    twoway_authname: str | None = None
    twoway_md5secret: str | None = None
    original_cli: str | None = "87654321"
    original_set_cli: str | None = None
    original_cld: str | None = "2way_12345"
    call_id: str | None = None
    twoway_call_id: str | None = None
    leg_a_channel_id: str | None = None
    leg_b_channel_id: str | None = None
    bridge_id: str | None = None
    leg_a_sip_call_id: str | None = None
    leg_b_sip_call_id: str | None = None
    outcome: Outcome | None = None  # the last retry or finish, with its per-leg values
    history: list[Status] = field(default_factory=list)

    def request(self) -> CallbackRequest:
        """The row as a claim or a recovery returns it."""
        assert self.lease_token is not None, "not claimed"
        now = datetime.now(UTC)
        values = {name: getattr(self, name) for name in COLUMNS if hasattr(self, name)}
        return CallbackRequest(**{**values, "next_call": now, "created_at": now})

    def set_status(self, status: Status) -> None:
        if status != self.status:
            self.history.append(status)
        self.status = status


class FakeStore:
    """The store port over rows in memory, fenced like ``store/queries.py``."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.rows: dict[int, FakeRow] = {}
        self.writes: list[tuple[str, int]] = []  # (write, request id), accepted or not
        self._ids = itertools.count(1)
        self._faults: dict[str, list[BaseException]] = {}

    def insert(self, **columns: Any) -> FakeRow:
        row = FakeRow(id=next(self._ids), **columns)
        row.history.append(row.status)
        self.rows[row.id] = row
        return row

    def claim(self, row: FakeRow) -> CallbackRequest:
        """CLAIM: pending → calling with a new lease; the channel ids cleared."""
        assert row.status == Status.PENDING
        row.set_status(Status.CALLING)
        row.lease_token = uuid.uuid4()
        row.leg_a_channel_id = row.leg_b_channel_id = row.bridge_id = None
        return row.request()

    def recover(self, row: FakeRow) -> CallbackRequest:
        """RECOVER: a live row of a lost instance, with a new lease."""
        assert row.status in LIVE_STATUSES
        row.lease_token = uuid.uuid4()
        return row.request()

    def cancel(self, row: FakeRow) -> None:
        """``UPDATE … SET status = 'cancelled'`` (the trigger completes the result)."""
        row.set_status(Status.CANCELLED)
        row.result = row.result or Result.CANCELLED
        self.changes.notify()

    def fail(self, write: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``write`` raise ``error`` (a database fault)."""
        self._faults.setdefault(write, []).extend([error] * times)

    def _write(self, write: str, req: CallbackRequest) -> FakeRow | None:
        """The row if the lease still holds (else the write changes nothing)."""
        self.writes.append((write, req.id))
        self.changes.notify()
        faults = self._faults.get(write)
        if faults:
            raise faults.pop(0)
        row = self.rows[req.id]
        return row if row.lease_token == req.lease_token else None

    async def start_attempt(
        self, req: CallbackRequest, call_id: str, channel_id: str
    ) -> float | None:
        row = self._write("start_attempt", req)
        if row is None or row.status != Status.CALLING:
            return None
        if row.leg_a_channel_id != channel_id:
            row.attempts += 1
        row.call_id, row.leg_a_channel_id = call_id, channel_id
        row.leg_b_channel_id = row.bridge_id = None
        return 0.0

    async def leg_a_answered(
        self,
        req: CallbackRequest,
        sip_call_id: str | None,
        twoway_call_id: str,
        leg_b_channel_id: str,
    ) -> bool:
        row = self._write("leg_a_answered", req)
        if row is None or not (
            row.status == Status.CALLING
            or (row.status == Status.CONNECTING and row.leg_b_channel_id == leg_b_channel_id)
        ):
            return False
        row.set_status(Status.CONNECTING)
        row.leg_a_sip_call_id, row.twoway_call_id = sip_call_id, twoway_call_id
        row.leg_b_channel_id = leg_b_channel_id
        return True

    async def bridged(
        self, req: CallbackRequest, bridge_id: str, leg_b_sip_call_id: str | None
    ) -> bool:
        row = self._write("bridged", req)
        if row is None or not (
            row.status == Status.CONNECTING
            or (row.status == Status.BRIDGED and row.bridge_id == bridge_id)
        ):
            return False
        row.set_status(Status.BRIDGED)
        row.bridge_id, row.leg_b_sip_call_id = bridge_id, leg_b_sip_call_id
        return True

    async def finish(self, req: CallbackRequest, outcome: Outcome) -> bool:
        row = self._write("finish", req)
        if row is None or row.status in (Status.COMPLETED, Status.FAILED):
            return False
        if row.status == Status.CANCELLED:  # a cancel that raced the end keeps its result
            outcome = replace(outcome, status=Status.CANCELLED, result=Result.CANCELLED)
        row.set_status(outcome.status)
        row.result, row.result_reason, row.outcome = outcome.result, outcome.reason, outcome
        return True

    async def retry(self, req: CallbackRequest, outcome: Outcome, delay: float) -> bool:
        row = self._write("retry", req)
        if row is None or row.status not in LIVE_STATUSES:
            return False
        row.set_status(Status.PENDING)
        row.result, row.result_reason, row.outcome = outcome.result, outcome.reason, outcome
        row.retry_in, row.lease_token = delay, None
        if outcome.void_attempt:  # Asterisk created nothing: the attempt does not count
            row.attempts -= 1
            row.leg_a_channel_id = None
        return True

    async def release(self, req: CallbackRequest) -> bool:
        row = self._write("release", req)
        if row is None or row.status != Status.CALLING or row.attempts != req.attempts:
            return False
        row.set_status(Status.PENDING)
        row.lease_token = None
        return True
