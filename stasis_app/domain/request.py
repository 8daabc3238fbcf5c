"""A callback request as the call flow sees it, and how one attempt of it ends.

The values of ``Status``, ``Result`` and ``Source`` are the SQL values (CHECK constraints of
``callback_requests``), written by SQL clients and read by dashboards: they never change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID


class Status(StrEnum):
    """``callback_requests.status``: the row's lifecycle."""

    PENDING = "pending"
    CALLING = "calling"  # claimed, leg A dialling
    CONNECTING = "connecting"  # leg A up, leg B dialling
    BRIDGED = "bridged"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A session drives the row (the live-requests gauge has one series per phase).
LIVE_STATUSES = (Status.CALLING, Status.CONNECTING, Status.BRIDGED)
FINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class Result(StrEnum):
    """``callback_requests.result``: why the row ended, or why its last attempt failed."""

    ANSWERED = "answered"
    CALLBACK_BUSY = "callback_busy"
    CALLBACK_NO_ANSWER = "callback_no_answer"
    CALLBACK_REJECTED = "callback_rejected"
    CALLBACK_FAILED = "callback_failed"
    DESTINATION_BUSY = "destination_busy"
    DESTINATION_NO_ANSWER = "destination_no_answer"
    DESTINATION_FAILED = "destination_failed"
    USER_HANGUP = "user_hangup"
    INVALID_REQUEST = "invalid_request"
    POLICY_REFUSED = "policy_refused"  # the destination policy or a limit (domain.policy)
    CANCELLED = "cancelled"
    ERROR = "error"


class Source(StrEnum):
    """``callback_requests.source``: who created the row."""

    SQL = "sql"
    API = "api"
    INBOUND = "inbound"


class LegName(StrEnum):
    """The two legs of a callback: A calls the user back, B calls the destination."""

    A = "a"
    B = "b"


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A claimed row of ``callback_requests``: the columns the call flow reads."""

    id: int
    lease_token: UUID
    attempts: int
    max_attempts: int | None
    retry_delay: timedelta | None
    next_call: datetime
    created_at: datetime
    status: Status
    source: Source
    username: str | None = None
    authname: str | None = None
    md5secret: str | None = field(default=None, repr=False)
    twoway_cli: str | None = None
    twoway_authname: str | None = None
    twoway_md5secret: str | None = field(default=None, repr=False)
    original_cli: str | None = None
    original_set_cli: str | None = None
    original_cld: str | None = None
    call_id: str | None = None
    twoway_call_id: str | None = None
    leg_a_channel_id: str | None = None
    leg_b_channel_id: str | None = None
    bridge_id: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CallbackRequest:
        """From a row (or any mapping) with a value for every field."""
        values = {name: record[name] for name in COLUMNS}
        values["status"] = Status(values["status"])
        values["source"] = Source(values["source"])
        return cls(**values)


# The columns of callback_requests a CallbackRequest carries.
COLUMNS = tuple(CallbackRequest.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended: what goes into the row's result and per-leg columns."""

    status: Status  # completed | failed | cancelled, or pending for a retry
    result: Result
    reason: str | None = None
    leg_a_cause: int | None = None
    leg_a_sip_code: int | None = None
    leg_b_cause: int | None = None
    leg_b_sip_code: int | None = None
    leg_a_duration: float | None = None
    leg_b_duration: float | None = None
    # Asterisk created no channel: a retry does not count the attempt (its channel id is free).
    void_attempt: bool = False

    def leg_values(
        self,
    ) -> tuple[int | None, int | None, int | None, int | None, float | None, float | None]:
        return (
            self.leg_a_cause,
            self.leg_a_sip_code,
            self.leg_b_cause,
            self.leg_b_sip_code,
            self.leg_a_duration,
            self.leg_b_duration,
        )
