"""Turn a row into what each leg dials with, or refuse it with a reason a human can read.

The identity table of DESIGN.md lives here and only here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stasis_app.domain.request import CallbackRequest
from stasis_app.domain.rules import CALL_ID, CLD_PREFIX, DIAL_STRING, HA1, TOKEN
from stasis_app.errors import TwowayError


class InvalidRequest(TwowayError):
    """The row cannot be dialled as written; the message goes into ``result_reason``."""


@dataclass(frozen=True, slots=True)
class LegPlan:
    number: str
    caller_id: str
    auth_user: str
    ha1: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class CallPlan:
    leg_a: LegPlan
    leg_b: LegPlan


def plan_call(req: CallbackRequest, *, needs_secret: bool) -> CallPlan:
    """Validate the row; raise InvalidRequest naming the first bad column."""
    original_cli = _required(req.original_cli, "original_cli", DIAL_STRING, "a dial string")
    cld = _cld(req.original_cld)
    username = _required(req.username, "username", TOKEN, "a SIP user name")
    authname = _optional(req.authname, "authname", TOKEN, "a SIP user name") or username
    secret = _optional(req.md5secret, "md5secret", HA1, "32 hex digits (HA1)")
    if needs_secret and secret is None:
        raise InvalidRequest("md5secret is missing")
    set_cli = _optional(req.original_set_cli, "original_set_cli", DIAL_STRING, "a dial string")
    twoway_cli = _optional(req.twoway_cli, "twoway_cli", DIAL_STRING, "a dial string")
    twoway_auth = _optional(req.twoway_authname, "twoway_authname", TOKEN, "a SIP user name")
    twoway_secret = _optional(req.twoway_md5secret, "twoway_md5secret", HA1, "32 hex digits (HA1)")
    _optional(req.call_id, "call_id", CALL_ID, "printable text without blanks")
    _optional(req.twoway_call_id, "twoway_call_id", CALL_ID, "printable text without blanks")
    return CallPlan(
        leg_a=LegPlan(
            number=original_cli,
            caller_id=set_cli or original_cli,
            auth_user=authname,
            ha1=_lower(secret),
        ),
        leg_b=LegPlan(
            number=cld,
            caller_id=twoway_cli or username,
            auth_user=twoway_auth or authname,
            ha1=_lower(twoway_secret or secret),
        ),
    )


def _cld(value: str | None) -> str:
    if value is None or not value.strip():
        raise InvalidRequest("original_cld is missing")
    if not value.startswith(CLD_PREFIX):
        raise InvalidRequest(f"original_cld must look like '{CLD_PREFIX}<CLD>'")
    cld = value[len(CLD_PREFIX) :]
    if not DIAL_STRING.fullmatch(cld):
        raise InvalidRequest("original_cld: the CLD after '2way_' is not a dial string")
    return cld


def _required(value: str | None, column: str, pattern: re.Pattern[str], what: str) -> str:
    checked = _optional(value, column, pattern, what)
    if checked is None:
        raise InvalidRequest(f"{column} is missing")
    return checked


def _optional(value: str | None, column: str, pattern: re.Pattern[str], what: str) -> str | None:
    if value is None or value == "":
        return None
    if not pattern.fullmatch(value):
        # Never echo the value: it may be a secret, or hostile.
        raise InvalidRequest(f"{column} is not {what}")
    return value


def _lower(secret: str | None) -> str | None:
    return secret.lower() if secret is not None else None
