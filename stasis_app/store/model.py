"""A claimed row of ``callback_requests`` as the call flow sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    id: int
    lease_token: UUID
    attempts: int
    max_attempts: int | None
    retry_delay: timedelta | None
    next_call: datetime
    created_at: datetime
    status: str
    source: str
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
    def from_record(cls, record: Any) -> CallbackRequest:
        return cls(**{name: record[name] for name in _COLUMNS})


_COLUMNS = tuple(CallbackRequest.__dataclass_fields__)
SELECT_COLUMNS = ", ".join(f"r.{name}" for name in _COLUMNS)
