"""XML-RPC at /xmlrpc, called with the stdlib client the docs show (and raw bodies)."""

from __future__ import annotations

import xmlrpc.client
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ari_simulator import Script, Simulator
from stasis_app.store.callbacks import CallbackStore
from tests.conftest import ServiceFactory, ha1
from tests.test_api_support import TOKEN_2, TOKENS, body, call, fault_of, proxy, row_count, xcall
from tests.test_callflow import final_row

INVALID, NOT_FOUND, CONFLICT, UNAUTHORIZED, MALFORMED, NO_METHOD, RATE, TOO_LARGE = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)


def later() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


async def post_xml(url: str, xml: bytes | str, **kwargs: Any) -> tuple[int, Any]:
    """A raw request; the answer parsed by the stdlib (a Fault comes back as a value)."""
    reply = await call(
        url, "POST", "/xmlrpc", data=xml, headers={"Content-Type": "text/xml"}, **kwargs
    )
    try:
        return reply.status, xmlrpc.client.loads(reply.text)[0][0]
    except xmlrpc.client.Fault as fault:
        return reply.status, fault


async def test_created_callback_runs_end_to_end(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", ring_ms=20, hangup_after_ms=100))
    service = await start_service(api_tokens=TOKENS)
    server = proxy(service.http_url)
    created = await xcall(server, "callback.create", body())
    assert created == {"id": created["id"], "status": "pending"}

    row = await final_row(pool, created["id"])
    assert (row["status"], row["result"], row["source"]) == ("completed", "answered", "api")
    assert row["original_cld"] == "2way_12345"

    got = await xcall(server, "callback.get", created["id"])
    assert (got["status"], got["result"], got["original_cld"]) == (
        "completed",
        "answered",
        "2way_12345",
    )
    assert [h["new_status"] for h in got["history"]] == [
        "pending",
        "calling",
        "connecting",
        "bridged",
        "completed",
    ]
    assert "md5secret" not in got and "lease_token" not in got
    assert "result_reason" in got and "max_attempts" not in got  # None members are left out
    assert datetime.fromisoformat(got["ended_at"]).tzinfo is not None


async def test_bearer_basic_and_list_methods(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    for server in (proxy(service.http_url, TOKEN_2), proxy(service.http_url, basic=False)):
        assert await xcall(server, "system.listMethods") == [
            "callback.cancel",
            "callback.create",
            "callback.get",
            "system.listMethods",
        ]
    for server in (
        proxy(service.http_url, "nope"),
        proxy(service.http_url, "nope", basic=False),
        xmlrpc.client.ServerProxy(f"{service.http_url}/xmlrpc"),
    ):
        fault = await fault_of(server, "callback.create", body())
        assert fault.faultCode == UNAUTHORIZED
        assert "token" in fault.faultString
    assert await row_count(pool) == 0


async def test_get_cancel_and_their_faults(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    server = proxy(service.http_url)
    rid = (await xcall(server, "callback.create", body(next_call=later())))["id"]
    assert (await xcall(server, "callback.get", str(rid)))["id"] == rid  # ids as strings too
    assert await xcall(server, "callback.cancel", rid) == {
        "id": rid,
        "status": "cancelled",
        "result": "cancelled",
    }

    again = await fault_of(server, "callback.cancel", rid)
    assert (again.faultCode, again.faultString) == (
        CONFLICT,
        f"callback request {rid} is already cancelled",
    )
    for missing in (999999, 0, -5, "123456789012345678901234"):
        fault = await fault_of(server, "callback.get", missing)
        assert fault.faultCode == NOT_FOUND
    for wrong in ("abc", 1.5, True, [1], {"id": 1}):
        fault = await fault_of(server, "callback.get", wrong)
        assert (fault.faultCode, fault.faultString) == (
            INVALID,
            "invalid input: id: must be an integer",
        )
    arity = await fault_of(server, "callback.get")
    assert arity.faultCode == INVALID and "callback.get takes (id)" in arity.faultString
    unknown = await fault_of(server, "callback.delete", rid)
    assert unknown.faultCode == NO_METHOD and "system.listMethods" in unknown.faultString


@pytest.mark.parametrize(
    ("struct", "field"),
    [
        ({"shoe_size": 42}, "shoe_size"),
        ({"original_cli": 87654321}, "original_cli"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"md5secret": xmlrpc.client.Binary(b"0" * 32)}, "md5secret"),
        ({"original_cld": ["12345"]}, "original_cld"),
        ({"call_id": {"nested": "struct"}}, "call_id"),
        ({"retry_delay": float("nan")}, "retry_delay"),
        ({"next_call": xmlrpc.client.DateTime("20200101T10:00:00x")}, "next_call"),
        ({"md5secret": "not-hex"}, "md5secret"),
    ],
)
async def test_bad_members_are_faults(
    pool: asyncpg.Pool, start_service: ServiceFactory, struct: dict[str, Any], field: str
) -> None:
    service = await start_service(api_tokens=TOKENS)
    server = proxy(service.http_url)
    fault = await fault_of(server, "callback.create", body(**struct))
    assert fault.faultCode == INVALID
    assert fault.faultString.startswith(f"invalid input: {field}: ")
    assert ha1("902") not in fault.faultString
    for bad_params in ((), ("just a string",), (body(), body()), ([body()],)):
        fault = await fault_of(server, "callback.create", *bad_params)
        assert fault.faultCode == INVALID
    assert await row_count(pool) == 0


async def test_datetime_member_is_read_as_utc(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    server = proxy(service.http_url)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    rid = (
        await xcall(
            server,
            "callback.create",
            body(next_call=xmlrpc.client.DateTime(when.replace(tzinfo=None))),
        )
    )["id"]
    stored = await pool.fetchval("SELECT next_call FROM callback_requests WHERE id = $1", rid)
    assert stored == when


async def test_malformed_requests_are_faults(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    url = service.http_url
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<methodCall><methodName>callback.get</methodName><params><param><value>"
        "<string>&lol2;</string></value></param></params></methodCall>"
    )
    external = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<methodCall><methodName>system.listMethods</methodName></methodCall>"
    )
    for xml, expected in (
        (bomb, "DOCTYPE"),
        (external, "DOCTYPE"),
        ("not xml at all", "well-formed"),
        ("<methodCall>", "well-formed"),
        ("<methodCall><params></params></methodCall>", "methodName"),
        (
            "<methodCall><methodName>callback.get</methodName><params><param><value><int>x"
            "</int></value></param></params></methodCall>",
            "well-formed",
        ),
        (
            "<methodResponse><fault><value><struct></struct></value></fault></methodResponse>",
            "well-formed",
        ),
        (
            "<methodCall><methodName>callback.create</methodName><params><param><value>"
            "<struct><member><value><int>1</int></value></member></struct></value></param>"
            "</params></methodCall>",
            "well-formed",
        ),
        (
            "<methodCall><methodName>callback.get</methodName><params><param><value>"
            "<boolean>7</boolean></value></param></params></methodCall>",
            "well-formed",
        ),
        (b"\xff\xfe<\x00", "well-formed"),
    ):
        status, fault = await post_xml(url, xml)
        assert status == 200
        assert isinstance(fault, xmlrpc.client.Fault), xml
        assert (fault.faultCode, expected in fault.faultString) == (MALFORMED, True), xml


async def test_struct_with_non_string_member_names_is_a_fault(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    xml = (
        "<methodCall><methodName>callback.create</methodName><params><param><value><struct>"
        "<value><int>1</int></value><value><string>x</string></value>"
        "</struct></value></param></params></methodCall>"
    )
    status, fault = await post_xml(service.http_url, xml)
    assert (status, fault.faultCode) == (200, INVALID)


async def test_too_large_and_rate_limited_are_faults(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS, api_max_body=1024, api_rate_limit=1)
    server = proxy(service.http_url, TOKEN_2)
    fault = await fault_of(
        server,
        "callback.create",
        body(
            call_id="c" * 200,
            username="u" * 128,
            authname="a" * 128,
            twoway_authname="b" * 128,
            twoway_call_id="d" * 200,
        ),
    )
    assert fault.faultCode == TOO_LARGE
    codes = []
    for _ in range(8):
        try:
            await xcall(server, "system.listMethods")
            codes.append(0)
        except xmlrpc.client.Fault as exc:
            codes.append(exc.faultCode)
    assert RATE in codes
    assert await row_count(pool) == 0


async def test_internal_error_is_fault_5(
    pool: asyncpg.Pool, start_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any) -> None:
        raise RuntimeError("detail that must not reach the client")

    service = await start_service(api_tokens=TOKENS)
    monkeypatch.setattr(CallbackStore, "cancel", broken)
    fault = await fault_of(proxy(service.http_url), "callback.cancel", 1)
    assert (fault.faultCode, fault.faultString) == (5, "internal error")


async def test_row_written_by_sql_with_odd_text_still_marshals(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    """A row inserted by SQL may hold what XML cannot carry, or ids past 2^31."""
    service = await start_service(api_tokens=TOKENS)
    rid = await pool.fetchval(
        "INSERT INTO callback_requests (id, username, original_cli, original_cld, next_call) "
        "VALUES (3000000000, $1, '1', '2way_1', now() + interval '1 hour') RETURNING id",
        "bad\x01name",
    )
    got = await xcall(proxy(service.http_url), "callback.get", str(rid))
    assert (got["id"], got["username"]) == ("3000000000", "bad?name")
