"""The JSON API against the running service: real Postgres, simulator, loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from ari_simulator import Script, Simulator
from stasis_app.api.routes import add_api_routes
from stasis_app.api.schemas import Callback
from stasis_app.errors import ConfigError
from stasis_app.store.callbacks import PUBLIC_COLUMNS, CallbackStore
from tests.conftest import REALM, ServiceFactory, ha1, service_settings
from tests.test_api_support import TOKEN, TOKEN_2, TOKENS, basic, body, call, row_count
from tests.test_callflow import final_row, row_of, until

SECRET_KEYS = {"md5secret", "twoway_md5secret", "lease_token", "password"}


def later(hours: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def create(url: str, **overrides: Any) -> int:
    reply = await call(url, "POST", "/v1/callbacks", json=body(**overrides))
    assert reply.status == 201, reply.text
    request_id: int = reply.json["id"]
    return request_id


# --- end to end ------------------------------------------------------------------------------


async def test_created_callback_runs_end_to_end(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", ring_ms=20, hangup_after_ms=100))
    service = await start_service(api_tokens=TOKENS)
    reply = await call(service.http_url, "POST", "/v1/callbacks", json=body())
    assert reply.status == 201
    assert reply.json == {"id": reply.json["id"], "status": "pending"}
    rid = reply.json["id"]
    assert reply.headers["Location"] == f"/v1/callbacks/{rid}"

    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["source"]) == ("completed", "answered", "api")
    assert row["original_cld"] == "2way_12345"  # the bare CLD got its prefix
    assert row["md5secret"] == ha1("902")

    got = await call(service.http_url, "GET", f"/v1/callbacks/{rid}")
    assert got.status == 200
    view = got.json
    assert (view["status"], view["result"], view["attempts"]) == ("completed", "answered", 1)
    assert [h["new_status"] for h in view["history"]] == [
        "pending",
        "calling",
        "connecting",
        "bridged",
        "completed",
    ]
    assert view["call_id"] == row["call_id"] and view["leg_b_duration"] > 0
    assert not SECRET_KEYS & set(view)
    assert ha1("902") not in got.text


async def test_password_and_realm_become_ha1(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """The simulated softswitch checks the digest: the computed HA1 must be right."""
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    service = await start_service(api_tokens=TOKENS)
    with_realm = await create(service.http_url, md5secret=None, password="pw-902", realm=REALM)
    default_realm = await create(
        service.http_url, md5secret=None, authname=None, password="pw-801"
    )  # TWOWAY_SIP_REALM, user = username
    for rid, user in ((with_realm, "902"), (default_realm, "801")):
        row = await final_row(pool, rid)
        assert (row["status"], row["result"]) == ("completed", "answered")
        assert row["md5secret"] == ha1(user)
        assert "pw-" not in repr(dict(row))  # the password itself is stored nowhere


async def test_cancel_of_a_live_call(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("87654321", Script(action="noanswer"))
    service = await start_service(api_tokens=TOKENS, leg_a_timeout=60)
    rid = await create(service.http_url)
    await until(lambda: f"twoway-{rid}-1a" in sim.channels)
    reply = await call(service.http_url, "POST", f"/v1/callbacks/{rid}/cancel")
    assert reply.status == 200
    assert reply.json == {"id": rid, "status": "cancelled", "result": "cancelled"}
    await until(lambda: not sim.channels, timeout=5)  # the owning instance hung up leg A
    assert (await row_of(pool, rid))["status"] == "cancelled"


# --- get, list, cancel -------------------------------------------------------------------------


async def test_every_column_is_public_or_deliberately_private(pool: asyncpg.Pool) -> None:
    """A column added later shows up here, so exposing it (or not) is a decision."""
    columns = {
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'callback_requests'"
        )
    }
    private = {"md5secret", "twoway_md5secret", "lease_token"}
    assert set(PUBLIC_COLUMNS) == set(Callback.model_fields)
    assert not private & set(PUBLIC_COLUMNS)
    assert columns - private == set(PUBLIC_COLUMNS), (
        "new column: add it to store.callbacks.PUBLIC_COLUMNS and schemas.Callback, "
        "or to the private set here"
    )


async def test_get_omits_secrets_and_lease(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    rid = await create(
        service.http_url,
        twoway_md5secret=ha1("903"),
        twoway_authname="903",
        next_call=later(),
        call_id="cid-1@portal",
        max_attempts=2,
        retry_delay=1.5,
        original_cld="2way_555",
    )
    reply = await call(service.http_url, "GET", f"/v1/callbacks/{rid}")
    view = reply.json
    assert not SECRET_KEYS & set(view)
    assert ha1("902") not in reply.text and ha1("903") not in reply.text
    assert (view["original_cld"], view["call_id"], view["max_attempts"], view["retry_delay"]) == (
        "2way_555",
        "cid-1@portal",
        2,
        1.5,
    )
    assert view["history"] == [
        {
            "at": view["history"][0]["at"],
            "old_status": None,
            "new_status": "pending",
            "result": None,
            "reason": None,
            "attempts": 0,
            "instance": None,
        }
    ]
    assert datetime.fromisoformat(view["next_call"]) > datetime.now(UTC)
    assert (await call(service.http_url, "GET", "/v1/callbacks/999999")).status == 404


async def test_list_filters_and_pages(pool: asyncpg.Pool, start_service: ServiceFactory) -> None:
    service = await start_service(api_tokens=TOKENS)
    url = service.http_url
    ids = [await create(url, original_cli=f"49300{i}", next_call=later()) for i in range(5)]
    await call(url, "POST", f"/v1/callbacks/{ids[1]}/cancel")

    async def page(**params: Any) -> dict[str, Any]:
        reply = await call(url, "GET", "/v1/callbacks", params=params)
        assert reply.status == 200, reply.text
        result: dict[str, Any] = reply.json
        return result

    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:  # newest first, two at a time, until next_cursor is null
        got = await page(**params)
        seen += [item["id"] for item in got["items"]]
        if got["next_cursor"] is None:
            break
        params["cursor"] = got["next_cursor"]
    assert seen == ids[::-1]

    assert [i["id"] for i in (await page(cli="493003"))["items"]] == [ids[3]]
    assert [i["id"] for i in (await page(status="cancelled"))["items"]] == [ids[1]]
    assert len((await page(status="pending,cancelled"))["items"]) == 5
    created = datetime.fromisoformat((await page(cli="493002"))["items"][0]["created_at"])
    window = await page(
        created_from=created.isoformat(),
        created_to=(created + timedelta(microseconds=1)).isoformat(),
    )
    assert [i["id"] for i in window["items"]] == [ids[2]]
    assert (await page(created_from=later()))["items"] == []
    item = (await page(limit=1))["items"][0]
    assert not SECRET_KEYS & set(item) and "history" not in item

    for bad, field in (
        ({"limit": "501"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"status": "ringing"}, "status.0"),
        ({"sort": "id"}, "sort"),
        ({"created_from": "2024-01-01T00:00:00"}, "created_from"),
        ({"cursor": "abc"}, "cursor"),
        ({"cli": "1 2"}, "cli"),
    ):
        reply = await call(url, "GET", "/v1/callbacks", params=bad)
        assert reply.status == 422, bad
        assert [f["field"] for f in reply.json["fields"]] == [field]
    repeated = await call(url, "GET", "/v1/callbacks?cli=1&cli=2")
    assert (repeated.status, repeated.json["fields"][0]["field"]) == (422, "cli")


async def test_cancel_pending_then_conflict(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    url = service.http_url
    rid = await create(url, next_call=later())
    first = await call(url, "POST", f"/v1/callbacks/{rid}/cancel")
    assert (first.status, first.json) == (
        200,
        {"id": rid, "status": "cancelled", "result": "cancelled"},
    )
    again = await call(url, "POST", f"/v1/callbacks/{rid}/cancel")
    assert again.status == 409
    assert (again.json["error"], again.json["status"]) == ("conflict", "cancelled")
    view = (await call(url, "GET", f"/v1/callbacks/{rid}")).json
    assert [(h["old_status"], h["new_status"]) for h in view["history"]] == [
        (None, "pending"),
        ("pending", "cancelled"),
    ]
    assert view["ended_at"] is not None  # the trigger completed the bare cancel
    await pool.execute(
        "UPDATE callback_requests SET status = 'completed', result = 'answered' WHERE id = $1", rid
    )
    done = await call(url, "POST", f"/v1/callbacks/{rid}/cancel")
    assert (done.status, done.json["status"]) == (409, "completed")
    missing = await call(url, "POST", "/v1/callbacks/424242/cancel")
    assert (missing.status, missing.json["error"]) == (404, "not_found")
    huge = await call(url, "POST", f"/v1/callbacks/{2**70}/cancel")
    assert huge.status == 404


# --- auth ---------------------------------------------------------------------------------------


async def test_every_api_route_needs_a_token(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    # Thirty failures from one address: past the default budget of failed authentications.
    service = await start_service(api_tokens=TOKENS, api_auth_failures_per_minute=1000)
    url = service.http_url
    routes = [
        ("POST", "/v1/callbacks"),
        ("GET", "/v1/callbacks"),
        ("GET", "/v1/callbacks/1"),
        ("POST", "/v1/callbacks/1/cancel"),
        ("GET", "/v1/openapi.json"),
        ("GET", "/v1/no-such-route"),
    ]
    for method, path in routes:
        for headers in (
            {},
            {"Authorization": "Bearer test-token-three-03"},
            {"Authorization": "Bearer "},
            {"Authorization": basic("portal", TOKEN)},  # not on /v1
            {"Authorization": TOKEN},
        ):
            reply = await call(url, method, path, token=None, headers=headers)
            assert reply.status == 401, (method, path, headers)
            assert reply.json["error"] == "unauthorized"
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await call(url, "GET", "/v1/callbacks", token=TOKEN_2)).status == 200
    assert await row_count(pool) == 0
    # Health and metrics stay open.
    for path in ("/healthz", "/metrics"):
        assert (await call(url, "GET", path, token=None)).status == 200


async def test_no_tokens_on_loopback_serves_without_auth(
    pool: asyncpg.Pool, start_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stasis_app.api.routes"):
        service = await start_service(api_tokens="")
    assert "TWOWAY_API_TOKENS is empty" in caplog.text
    reply = await call(
        service.http_url, "POST", "/v1/callbacks", token=None, json=body(next_call=later())
    )
    assert reply.status == 201


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8480", "192.0.2.10:8480", ":8480", "api.example.net:8480", "[::]:8480"]
)
async def test_no_tokens_off_loopback_refuses_to_start(
    pool: asyncpg.Pool, db_url: str, listen: str
) -> None:
    settings = service_settings(db_url, "http://127.0.0.1:1", http_listen=listen, api_tokens="")
    with pytest.raises(ConfigError, match="TWOWAY_API_TOKENS is empty"):
        add_api_routes(web.Application(), pool, settings)
    settings = service_settings(db_url, "http://127.0.0.1:1", http_listen=listen, api_tokens=" , ")
    with pytest.raises(ConfigError):
        add_api_routes(web.Application(), pool, settings)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.3.2.1:0", "[::1]:0", "localhost:0"])
async def test_no_tokens_on_loopback_starts(pool: asyncpg.Pool, db_url: str, listen: str) -> None:
    settings = service_settings(db_url, "http://127.0.0.1:1", http_listen=listen, api_tokens="")
    add_api_routes(web.Application(), pool, settings)


# --- errors -------------------------------------------------------------------------------------


async def test_malformed_bodies_are_400(pool: asyncpg.Pool, start_service: ServiceFactory) -> None:
    service = await start_service(api_tokens=TOKENS)
    for raw in (
        b"{",
        b"[1, 2]",
        b'"text"',
        b"null",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe{}",
        b"",
        b"[" * 5000 + b"]" * 5000,
    ):
        reply = await call(
            service.http_url,
            "POST",
            "/v1/callbacks",
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 400, raw[:20]
        assert reply.json["error"] == "bad_request"
    assert await row_count(pool) == 0


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"md5secret": "0123456789abcdef0123456789abcdeg"}, "md5secret", "must be 32 hex digits"),
        ({"twoway_md5secret": "abc"}, "twoway_md5secret", "must be 32 hex digits"),
        ({"original_cli": "123@evil"}, "original_cli", "must be a dial string"),
        ({"original_cli": "1" * 65}, "original_cli", "must be a dial string"),
        ({"original_cli": 87654321}, "original_cli", "must be a string"),
        ({"original_cli": None}, "original_cli", "required"),
        ({"original_cld": "2way_1,2"}, "original_cld", "must be '2way_<CLD>' or a CLD"),
        ({"username": "80 1"}, "username", "must be a SIP user name"),
        ({"call_id": "a b"}, "call_id", "must be a Call-ID"),
        ({"shoe_size": 42}, "shoe_size", "unknown field"),
        ({"status": "completed"}, "status", "unknown field"),
        ({"source": "sql"}, "source", "unknown field"),
        ({"next_call": "2030-01-01T10:00:00"}, "next_call", "timezone"),
        ({"next_call": 1700000000}, "next_call", "ISO 8601"),
        ({"next_call": "tomorrow"}, "next_call", "ISO 8601"),
        ({"next_call": "later"}, "next_call", "ISO 8601"),
        ({"max_attempts": 0}, "max_attempts", "greater than or equal to 1"),
        ({"max_attempts": 101}, "max_attempts", "less than or equal to 100"),
        ({"max_attempts": True}, "max_attempts", "must be an integer"),
        ({"max_attempts": "3"}, "max_attempts", "must be an integer"),
        ({"retry_delay": -1}, "retry_delay", "greater than or equal to 0"),
        ({"md5secret": None}, "md5secret", "required (or password)"),
        ({"password": "pw"}, "password", "md5secret or password, not both"),
        ({"realm": REALM}, "realm", "only goes with password"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    pool: asyncpg.Pool,
    start_service: ServiceFactory,
    overrides: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    service = await start_service(api_tokens=TOKENS)
    if overrides.get("next_call") == "later":
        overrides["next_call"] = later(hours=24 * 31)
        reason = "at most 30 days ahead"
    sent = body(**overrides)
    if overrides.get("original_cli", "") is None:
        sent.pop("original_cli", None)
    reply = await call(service.http_url, "POST", "/v1/callbacks", json=sent)
    assert reply.status == 422, reply.text
    assert reply.json["error"] == "invalid"
    (problem,) = reply.json["fields"]
    assert problem["field"] == field
    assert reason in problem["reason"]
    for secret in (sent.get("md5secret"), sent.get("twoway_md5secret"), sent.get("password")):
        assert not secret or secret not in reply.text
    assert await row_count(pool) == 0


async def test_password_without_any_realm_is_422(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS, sip_realm="")
    reply = await call(
        service.http_url, "POST", "/v1/callbacks", json=body(md5secret=None, password="pw-902")
    )
    assert (reply.status, reply.json["fields"][0]["field"]) == (422, "realm")
    assert "pw-902" not in reply.text


async def test_static_identity_needs_no_secret(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS, identity_mode="static")
    assert await create(service.http_url, md5secret=None, next_call=later())


async def test_unknown_routes_and_methods_answer_json(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    url = service.http_url
    for method, path, status in (
        ("GET", "/v1/nothing", 404),
        ("GET", "/v1/callbacks/abc", 404),
        ("GET", "/v1/callbacks/-1", 404),
        ("DELETE", "/v1/callbacks/1", 405),
        ("GET", "/v1/callbacks/1/cancel", 405),
    ):
        reply = await call(url, method, path)
        assert reply.status == status, (method, path)
        assert reply.json["error"] in ("not_found", "method_not_allowed")


async def test_body_over_the_cap_is_413(pool: asyncpg.Pool, start_service: ServiceFactory) -> None:
    service = await start_service(api_tokens=TOKENS, api_max_body=1024)
    big = body(
        next_call=later(),
        call_id="x" * 200,
        twoway_call_id="y" * 200,
        username="u" * 128,
        authname="a" * 128,
        twoway_authname="b" * 128,
        original_set_cli="1" * 64,
        twoway_cli="2" * 64,
    )
    reply = await call(service.http_url, "POST", "/v1/callbacks", json=big)
    assert (reply.status, reply.json["error"]) == (413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        yield b'{"username": "'
        for _ in range(40):
            yield b"8" * 100
        yield b'"}'

    reply = await call(service.http_url, "POST", "/v1/callbacks", data=chunks())
    assert (reply.status, reply.json["error"]) == (413, "too_large")
    assert await row_count(pool) == 0
    assert await create(service.http_url, next_call=later())  # a normal body still fits


async def test_rate_limit_per_token(pool: asyncpg.Pool, start_service: ServiceFactory) -> None:
    service = await start_service(api_tokens=TOKENS, api_rate_limit=1)
    url = service.http_url
    statuses = [(await call(url, "GET", "/v1/callbacks")).status for _ in range(8)]
    assert statuses[:5] == [200] * 5  # the burst
    assert 429 in statuses[5:]
    limited = await call(url, "GET", "/v1/callbacks")
    assert (limited.status, limited.json["error"]) == (429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await call(url, "GET", "/v1/callbacks", token=TOKEN_2)).status == 200  # its own bucket
    await asyncio.sleep(1.1)
    assert (await call(url, "GET", "/v1/callbacks")).status == 200  # refilled


async def test_unexpected_error_is_a_bare_500(
    pool: asyncpg.Pool,
    start_service: ServiceFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = await start_service(api_tokens=TOKENS)

    async def broken(*_args: Any) -> None:
        raise RuntimeError("detail that must not reach the client")

    monkeypatch.setattr(CallbackStore, "get", broken)
    with caplog.at_level(logging.ERROR, logger="stasis_app.api"):
        reply = await call(service.http_url, "GET", "/v1/callbacks/1")
    assert (reply.status, reply.json) == (500, {"error": "internal"})
    assert "api request failed: RuntimeError" in caplog.text
