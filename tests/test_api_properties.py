"""Property-based: random structs and JSON at both endpoints.

For every input: never a 500 (nor an XML-RPC answer that is not a methodResponse), a row is
written exactly when the answer says "created", every row written can be dialled as the call
flow reads it, and no secret that was sent comes back in any answer.

How it runs: ``@given`` on an async test. pytest-asyncio runs each example as a coroutine on
the test's event loop, the same loop the function-scoped fixtures were set up on, so one
service (one database, one simulator) serves all the examples of a test; the loop runs only
while an example runs, which is all the server needs. Sharing is deliberate (starting a service
per example would be slow), hence the suppressed ``function_scoped_fixture`` health check:
the invariants are checked per example as differences (row counts before and after), so they
do not need a fresh database.
"""

from __future__ import annotations

import json
import string
import xmlrpc.client
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stasis_app.app import Service
from stasis_app.callflow.plan import plan_call
from stasis_app.domain.request import CallbackRequest
from tests.conftest import ServiceFactory, ha1
from tests.test_api_support import TOKENS, call, proxy, row_count, xcall

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECRET_FIELDS = ("md5secret", "twoway_md5secret", "password")
XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)

# Values: near the rules (valid ones, and near misses) or anything at all.
secret = st.one_of(
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.text(string.ascii_letters + string.digits, min_size=12, max_size=40),
)
dial = st.one_of(st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True), XML_TEXT)
name = st.one_of(st.sampled_from(["801", "902", "user@example"]), XML_TEXT)
when = st.builds(
    lambda h, tz: (
        (datetime.now(UTC) + timedelta(hours=h)).isoformat()
        if tz
        else (datetime.now() + timedelta(hours=h)).isoformat()
    ),
    st.integers(-48, 24 * 40),
    st.booleans(),
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    XML_TEXT,
    st.lists(st.integers(0, 9), max_size=3),
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "username": name,
    "authname": name,
    "md5secret": secret,
    "password": secret,
    "realm": st.one_of(st.just("softswitch.lab"), XML_TEXT),
    "twoway_cli": dial,
    "twoway_authname": name,
    "twoway_md5secret": secret,
    "original_cli": dial,
    "original_set_cli": dial,
    "original_cld": st.one_of(dial, dial.map(lambda d: f"2way_{d}")),
    "next_call": when,
    "call_id": XML_TEXT,
    "twoway_call_id": XML_TEXT,
    "max_attempts": st.integers(-2, 200),
    "retry_delay": st.floats(-10, 1e6),
}
BASE = {
    "username": "801",
    "md5secret": ha1("801"),
    "original_cli": "87654321",
    "original_cld": "12345",
}
near_valid = st.fixed_dictionaries(
    {}, optional={field: st.one_of(strategy, junk) for field, strategy in FIELDS.items()}
).map(lambda changes: {**BASE, **changes})
structs = st.one_of(
    near_valid,
    st.builds(
        lambda base, extra: {**base, **extra},
        near_valid,
        st.dictionaries(XML_TEXT, junk, max_size=3),
    ),
    st.dictionaries(st.sampled_from(sorted(FIELDS)), junk, max_size=6),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
async def service(start_service: ServiceFactory) -> Service:
    # No delay on stop for the calls accepted rows start; no rate limit in the way.
    return await start_service(api_tokens=TOKENS, api_rate_limit=1e6, shutdown_grace=0)


def secrets_in(payload: object) -> list[str]:
    """Secret values sent that the answer must not contain (unless also sent elsewhere, e.g.
    as an unknown member's name, which an error rightly names)."""
    if not isinstance(payload, dict):
        return []
    rest = json.dumps(
        [(k, v) for k, v in payload.items() if k not in SECRET_FIELDS],
        ensure_ascii=False,
        default=str,
    )
    return [
        v
        for k, v in payload.items()
        if k in SECRET_FIELDS
        and isinstance(v, str)
        and len(v) >= 8
        and v not in rest
        and v.lower() not in rest.lower()
    ]


async def check_outcome(
    pool: asyncpg.Pool, before: int, created: int | None, answer: str, sent: object
) -> None:
    assert await row_count(pool) == before + (created is not None)
    for value in secrets_in(sent):
        assert value not in answer and value.lower() not in answer
    if created is not None:
        row = await pool.fetchrow("SELECT * FROM callback_requests WHERE id = $1", created)
        plan_call(CallbackRequest.from_record(row), needs_secret=True)  # dialable as stored
        assert row["source"] == "api"


@EXAMPLES
@given(payload=st.one_of(structs, json_values, st.binary(max_size=300)))
async def test_json_endpoint_never_fails_or_leaks(
    pool: asyncpg.Pool, service: Service, payload: object
) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    before = await row_count(pool)
    reply = await call(
        service.http_url,
        "POST",
        "/v1/callbacks",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status in (201, 400, 422), reply.text
    answer = reply.json
    assert set(answer) <= {"id", "status", "error", "message", "fields"}
    created = answer["id"] if reply.status == 201 else None
    await check_outcome(pool, before, created, reply.text, payload)


def xmlrpc_values(depth: int = 2) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        junk,
        XML_TEXT,
        st.binary(max_size=8).map(xmlrpc.client.Binary),
        st.datetimes().map(xmlrpc.client.DateTime),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(XML_TEXT, inner, max_size=3),
        max_leaves=8,
    )


@EXAMPLES
@given(
    method=st.sampled_from(
        ["callback.create"] * 4 + ["callback.get", "callback.cancel", "system.listMethods", "nope"]
    ),
    params=st.one_of(structs.map(lambda s: (s,)), st.lists(xmlrpc_values(), max_size=3).map(tuple)),
)
async def test_xmlrpc_endpoint_never_fails_or_leaks(
    pool: asyncpg.Pool, service: Service, method: str, params: tuple[Any, ...]
) -> None:
    xml = xmlrpc.client.dumps(params, method, allow_none=True)
    before = await row_count(pool)
    reply = await call(
        service.http_url, "POST", "/xmlrpc", data=xml.encode(), headers={"Content-Type": "text/xml"}
    )
    assert reply.status == 200, reply.text
    try:
        (result,), _ = xmlrpc.client.loads(reply.text)
    except xmlrpc.client.Fault as fault:
        assert fault.faultCode in (1, 2, 3, 6, 7), fault
        result = None
    created = result["id"] if method == "callback.create" and result is not None else None
    await check_outcome(pool, before, created, reply.text, params[0] if params else None)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(struct=near_valid)
async def test_stdlib_client_sees_results_or_faults(
    pool: asyncpg.Pool, service: Service, struct: dict[str, Any]
) -> None:
    """The docs' client: every create is a dict result or a Fault, never a transport error."""
    struct = {k: v for k, v in struct.items() if v is not None}  # the stdlib sends no None
    try:
        result = await xcall(proxy(service.http_url), "callback.create", struct)
    except xmlrpc.client.Fault as fault:
        assert fault.faultCode == 1
    else:
        assert set(result) == {"id", "status"}
