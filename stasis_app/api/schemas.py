"""The API's pydantic models: what a client may send, and what it gets back.

Both interfaces (JSON and XML-RPC) validate through these models, and the OpenAPI document is
generated from them. Field rules are the domain's (``domain.rules``), which the call flow checks
a row with, so the API accepts exactly what the call flow can dial. Validators never put a value
into their message: an error names the field and the rule, never what was sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
)

from stasis_app.domain.rules import CALL_ID, CLD_PREFIX, DIAL_STRING, HA1, TOKEN

MAX_SCHEDULE_AHEAD = timedelta(days=30)
MAX_RETRY_DELAY = 86_400.0  # one day
MAX_ATTEMPTS = 100  # as TWOWAY_MAX_ATTEMPTS
LIST_LIMIT_MAX = 500
# A digest realm is a quoted string in SIP: printable ASCII without the quote or backslash.
REALM = re.compile(r"[ !#-\[\]-~]{1,128}")
PASSWORD_MAX = 256

# domain.request.Status as a Literal: the OpenAPI document stays a plain enum of strings
# (tests check both list the same values).
Status = Literal["pending", "calling", "connecting", "bridged", "completed", "failed", "cancelled"]


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return check


def _documented(pattern: re.Pattern[str], what: str, **extra: Any) -> WithJsonSchema:
    """The JSON schema of a pattern-checked string: the same pattern, anchored."""
    return WithJsonSchema(
        {"type": "string", "pattern": f"^(?:{pattern.pattern})$", "description": what, **extra}
    )


_DIAL = "a dial string: digits, letters, + * # . _ - (1 to 64 characters)"
_SIP_NAME = "a SIP user name: printable ASCII without blanks or quotes (1 to 128 characters)"
_CALL_ID = "a Call-ID: printable ASCII without blanks or quotes (1 to 200 characters)"
_HA1 = "32 hex digits: HA1 = MD5(user:realm:password)"
_REALM = "a digest realm: printable ASCII without '\"' or '\\' (1 to 128 characters)"

DialString = Annotated[
    str, AfterValidator(_matching(DIAL_STRING, _DIAL)), _documented(DIAL_STRING, _DIAL)
]
SipName = Annotated[str, AfterValidator(_matching(TOKEN, _SIP_NAME)), _documented(TOKEN, _SIP_NAME)]
CallId = Annotated[
    str, AfterValidator(_matching(CALL_ID, _CALL_ID)), _documented(CALL_ID, _CALL_ID)
]
Ha1 = Annotated[str, AfterValidator(_matching(HA1, _HA1)), _documented(HA1, _HA1, writeOnly=True)]
Realm = Annotated[str, AfterValidator(_matching(REALM, _REALM)), _documented(REALM, _REALM)]


def _original_cld(value: str) -> str:
    """``2way_<CLD>`` or a bare CLD; stored as ``2way_<CLD>``."""
    cld = value.removeprefix(CLD_PREFIX)
    if not DIAL_STRING.fullmatch(cld):
        raise ValueError(f"must be '{CLD_PREFIX}<CLD>' or a CLD, the CLD a dial string")
    return CLD_PREFIX + cld


OriginalCld = Annotated[
    str,
    AfterValidator(_original_cld),
    WithJsonSchema(
        {
            "type": "string",
            # Exactly the validator's rule: with the prefix, the rest is the CLD; else all of it.
            "pattern": (
                f"^(?:{CLD_PREFIX}{DIAL_STRING.pattern}|(?!{CLD_PREFIX}){DIAL_STRING.pattern})$"
            ),
            "description": f"the destination: '{CLD_PREFIX}<CLD>' or a bare CLD (stored with the "
            "prefix)",
        }
    ),
]


def _iso_datetime(value: object) -> object:
    # ISO 8601 only: pydantic alone would also take Unix timestamps.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("must be an ISO 8601 date-time with a timezone")


IsoDateTime = Annotated[AwareDatetime, Strict(False), BeforeValidator(_iso_datetime)]


def _not_too_far(value: datetime) -> datetime:
    if value > datetime.now(UTC) + MAX_SCHEDULE_AHEAD:
        raise ValueError(f"must be at most {MAX_SCHEDULE_AHEAD.days} days ahead")
    return value


class CallbackCreate(BaseModel):
    """``POST /v1/callbacks`` and ``callback.create``: the table's input columns.

    The identity's secret is ``md5secret`` (HA1) or ``password`` with ``realm`` (the API turns
    them into HA1 for the digest user of leg A and stores only that).
    """

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    username: SipName
    authname: SipName | None = None
    md5secret: Ha1 | None = Field(default=None, repr=False)
    password: (
        Annotated[
            str, Field(min_length=1, max_length=PASSWORD_MAX, json_schema_extra={"writeOnly": True})
        ]
        | None
    ) = Field(
        default=None,
        repr=False,
        description="plain SIP password; with realm, replaces md5secret (never stored)",
    )
    realm: Realm | None = Field(
        default=None, description="the realm of password (default TWOWAY_SIP_REALM)"
    )
    twoway_cli: DialString | None = None
    twoway_authname: SipName | None = None
    twoway_md5secret: Ha1 | None = Field(default=None, repr=False)
    original_cli: DialString
    original_set_cli: DialString | None = None
    original_cld: OriginalCld
    next_call: Annotated[IsoDateTime, AfterValidator(_not_too_far)] | None = Field(
        default=None,
        description="when to call (ISO 8601 with a timezone, at most 30 days ahead); default now",
    )
    call_id: CallId | None = None
    twoway_call_id: CallId | None = None
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] | None = Field(
        default=None, description="leg-A attempts (default TWOWAY_MAX_ATTEMPTS)"
    )
    retry_delay: Annotated[float, Field(ge=0, le=MAX_RETRY_DELAY, allow_inf_nan=False)] | None = (
        Field(
            default=None, description="seconds before the first retry (default TWOWAY_RETRY_DELAY)"
        )
    )


class AccountCreate(BaseModel):
    """A ``callback_accounts`` row (operator CLI): an inbound caller's identity.

    ``cli`` is the caller's number as the inbound trigger sees it after normalisation
    (TWOWAY_INBOUND_STRIP_PREFIX / _ADD_PREFIX). The secret is ``md5secret`` (HA1) or
    ``password`` with ``realm``, as for a callback.
    """

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)

    cli: DialString
    username: SipName
    authname: SipName | None = None
    md5secret: Ha1 | None = Field(default=None, repr=False)
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX)] | None = Field(
        default=None, repr=False
    )
    realm: Realm | None = None


class ListQuery(BaseModel):
    """``GET /v1/callbacks`` query parameters (all optional)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    status: list[Status] | None = Field(
        default=None, description="only these statuses (comma-separated)"
    )
    cli: DialString | None = Field(default=None, description="only this original_cli")
    created_from: IsoDateTime | None = Field(
        default=None, description="created at or after (ISO 8601 with a timezone)"
    )
    created_to: IsoDateTime | None = Field(
        default=None, description="created before (ISO 8601 with a timezone)"
    )
    limit: int = Field(default=100, ge=1, le=LIST_LIMIT_MAX, description="page size")
    cursor: Annotated[str, Field(pattern=r"^[0-9]{1,19}$")] | None = Field(
        default=None, description="next_cursor of the previous page"
    )


# --- responses ---------------------------------------------------------------------------


class CallbackCreated(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    status: Status


class CallbackCancelled(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    status: Status
    result: str | None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    old_status: Status | None
    new_status: Status
    result: str | None
    reason: str | None = Field(description="result_reason at the change")
    attempts: int
    instance: str | None


class Callback(BaseModel):
    """A row without its secrets (``md5secret``, ``twoway_md5secret``) or ``lease_token``."""

    model_config = ConfigDict(extra="forbid")

    id: int
    status: Status
    result: str | None
    result_reason: str | None
    source: Literal["sql", "api", "inbound"]
    username: str | None
    authname: str | None
    twoway_cli: str | None
    twoway_authname: str | None
    original_cli: str | None
    original_set_cli: str | None
    original_cld: str | None
    next_call: datetime
    call_id: str | None
    twoway_call_id: str | None
    attempts: int
    max_attempts: int | None
    retry_delay: float | None = Field(description="seconds")
    claimed_by: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime | None
    dialled_at: datetime | None
    answered_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    leg_a_channel_id: str | None
    leg_b_channel_id: str | None
    bridge_id: str | None
    leg_a_sip_call_id: str | None
    leg_b_sip_call_id: str | None
    leg_a_cause: int | None
    leg_a_sip_code: int | None
    leg_b_cause: int | None
    leg_b_sip_code: int | None
    leg_a_duration: float | None
    leg_b_duration: float | None


class CallbackDetail(Callback):
    model_config = ConfigDict(extra="forbid")

    history: list[HistoryEntry]


class CallbackPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Callback]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


class FieldProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    reason: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: str = Field(
        description="invalid, not_found, conflict, unauthorized, bad_request, "
        "rate_limited, too_large, method_not_allowed, internal"
    )
    message: str | None = None
    fields: list[FieldProblem] | None = Field(default=None, description="with invalid")
    status: Status | None = Field(default=None, description="with conflict: the final status")


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    CallbackCreated,
    CallbackCancelled,
    CallbackDetail,
    CallbackPage,
    ErrorBody,
)
