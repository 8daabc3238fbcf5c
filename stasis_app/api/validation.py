"""Turn what a client sent into store arguments, or InvalidInput naming each bad field.

One path for both interfaces: JSON and XML-RPC hand over plain Python values (a dict, a
mapping of query values, an id) and get back the store's types.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from stasis_app.api.errors import InvalidInput, NotFound, Problem
from stasis_app.api.schemas import AccountCreate, CallbackCreate, ListQuery
from stasis_app.store.accounts import NewAccount
from stasis_app.store.callbacks import MAX_ID, ListFilter, NewCallback

M = TypeVar("M", bound=BaseModel)

_FIELD_NAME_MAX = 64  # an unknown field's name is echoed; keep it short
_REASONS = {  # pydantic's wording for the common cases, said the way an API user thinks
    "extra_forbidden": "unknown field",
    "missing": "required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "list_type": "must be a list",
}


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """What validation needs from the settings."""

    default_realm: str  # TWOWAY_SIP_REALM: the realm of a password given without one
    require_secret: bool  # dynamic identity mode: a row without a secret cannot be dialled


def problems_of(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "body"
        if len(name) > _FIELD_NAME_MAX:
            name = name[:_FIELD_NAME_MAX] + "..."
        reason = _REASONS.get(error["type"]) or error["msg"].removeprefix("Value error, ")
        problems.append(Problem(name, reason))
    return problems


def _validated(model: type[M], data: object) -> M:
    if not isinstance(data, dict):
        raise InvalidInput([Problem("body", "must be an object (struct)")])
    if not all(isinstance(name, str) for name in data):
        raise InvalidInput([Problem("body", "member names must be strings")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(problems_of(exc)) from None


def parse_create(data: object, rules: IntakeRules) -> NewCallback:
    req = _validated(CallbackCreate, data)
    md5secret = _secret(req, rules, required=rules.require_secret)
    return NewCallback(
        username=req.username,
        authname=req.authname,
        md5secret=md5secret,
        twoway_cli=req.twoway_cli,
        twoway_authname=req.twoway_authname,
        twoway_md5secret=req.twoway_md5secret.lower() if req.twoway_md5secret else None,
        original_cli=req.original_cli,
        original_set_cli=req.original_set_cli,
        original_cld=req.original_cld,
        next_call=req.next_call,
        call_id=req.call_id,
        twoway_call_id=req.twoway_call_id,
        max_attempts=req.max_attempts,
        retry_delay=req.retry_delay,
    )


def parse_account(data: object, rules: IntakeRules) -> NewAccount:
    """A ``callback_accounts`` row: the same identity rules as a callback's leg A."""
    acct = _validated(AccountCreate, data)
    md5secret = _secret(acct, rules, required=True)
    assert md5secret is not None  # required
    return NewAccount(
        cli=acct.cli, username=acct.username, authname=acct.authname, md5secret=md5secret
    )


def _secret(
    req: CallbackCreate | AccountCreate, rules: IntakeRules, *, required: bool
) -> str | None:
    """The identity's HA1 (lower-case hex) from md5secret, or from password and realm."""
    md5secret = req.md5secret.lower() if req.md5secret else None
    if req.password is not None:
        md5secret = _ha1_of_password(req, rules)
    elif req.realm is not None:
        raise InvalidInput([Problem("realm", "only goes with password")])
    if required and md5secret is None:
        raise InvalidInput([Problem("md5secret", "required (or password)")])
    return md5secret


def _ha1_of_password(req: CallbackCreate | AccountCreate, rules: IntakeRules) -> str:
    """HA1 for the digest user; the password goes no further than this function."""
    if req.md5secret is not None:
        raise InvalidInput([Problem("password", "give md5secret or password, not both")])
    realm = req.realm or rules.default_realm
    if not realm:
        raise InvalidInput([Problem("realm", "required with password (no TWOWAY_SIP_REALM)")])
    user = req.authname or req.username
    return hashlib.md5(f"{user}:{realm}:{req.password}".encode(), usedforsecurity=False).hexdigest()


def parse_list_query(query: Mapping[str, Sequence[str]]) -> ListFilter:
    """Query parameters (each name with all its values) into a filter."""
    repeated = [
        Problem(name[:_FIELD_NAME_MAX], "given more than once")
        for name, values in query.items()
        if len(values) > 1
    ]
    if repeated:
        raise InvalidInput(repeated)
    data: dict[str, object] = {name: values[0] for name, values in query.items() if values}
    if isinstance(data.get("status"), str):
        data["status"] = [s.strip() for s in str(data["status"]).split(",")]
    try:
        q = ListQuery.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(problems_of(exc)) from None
    before_id = int(q.cursor) if q.cursor is not None else None
    return ListFilter(
        statuses=q.status,
        cli=q.cli,
        created_from=q.created_from,
        created_to=q.created_to,
        before_id=min(before_id, MAX_ID) if before_id is not None else None,
        limit=q.limit,
    )


def parse_id(value: object) -> int:
    """A request id: an integer, or its decimal digits (XML-RPC ints stop at 2^31-1).

    An id that cannot exist (0, negative, past bigint) is simply not found.
    """
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value) if len(value) <= 20 else MAX_ID + 1
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput([Problem("id", "must be an integer")])
    if not 1 <= value <= MAX_ID:
        raise NotFound("no such callback request")
    return value
