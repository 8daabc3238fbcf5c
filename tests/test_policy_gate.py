"""The destination policy through each source: SQL row, API, inbound trigger (end to end,
real Postgres and the simulator). A refused request ends failed / policy_refused and nothing
is dialled; the API refuses at once (422) and writes no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from ari_simulator import Script, Simulator
from stasis_app import metrics
from tests.conftest import ServiceFactory
from tests.test_api_support import TOKENS, body, call, fault_of, proxy, row_count
from tests.test_callflow import final_row, insert, originates
from tests.test_inbound import add_account, requests_of, trigger


@dataclass(frozen=True)
class Case:
    settings: dict[str, Any]
    account: dict[str, Any] | None  # the callback_policies row of username 801
    cli: str
    cld: str
    rule: str
    reason: str


CASES: list[Any] = [
    pytest.param(
        Case(
            {"destination_deny_prefixes": "900,1900"},
            None,
            "87654321",
            "900123",
            "destination_deny",
            "leg B: destination matches deny prefix 900 of TWOWAY_DESTINATION_DENY_PREFIXES",
        ),
        id="global-destination-deny",
    ),
    pytest.param(
        Case(
            {"destination_allow_prefixes": "49"},
            None,
            "87654321",
            "+44123",
            "destination_allow",
            "leg B: destination matches no prefix of TWOWAY_DESTINATION_ALLOW_PREFIXES",
        ),
        id="global-destination-allow",
    ),
    pytest.param(
        Case(
            {"callback_deny_prefixes": "8765"},
            None,
            "87654321",
            "12345",
            "callback_deny",
            "leg A: callback number matches deny prefix 8765 of TWOWAY_CALLBACK_DENY_PREFIXES",
        ),
        id="global-callback-deny",
    ),
    pytest.param(
        Case(
            {"callback_allow_prefixes": "49"},
            None,
            "87654321",
            "12345",
            "callback_allow",
            "leg A: callback number matches no prefix of TWOWAY_CALLBACK_ALLOW_PREFIXES",
        ),
        id="global-callback-allow",
    ),
    pytest.param(
        Case(
            {},
            {"destination_deny_prefixes": ["123"]},
            "87654321",
            "12345",
            "destination_deny",
            "leg B: destination matches deny prefix 123 of "
            + "callback_policies.destination_deny_prefixes",
        ),
        id="account-destination-deny",
    ),
    pytest.param(
        Case(
            {},
            {"destination_allow_prefixes": ["44"]},
            "87654321",
            "12345",
            "destination_allow",
            "leg B: destination matches no prefix of callback_policies.destination_allow_prefixes",
        ),
        id="account-destination-allow",
    ),
    pytest.param(
        Case(
            {},
            {"callback_deny_prefixes": ["87"]},
            "87654321",
            "12345",
            "callback_deny",
            "leg A: callback number matches deny prefix 87 of "
            + "callback_policies.callback_deny_prefixes",
        ),
        id="account-callback-deny",
    ),
    pytest.param(
        Case(
            {},
            {"callback_allow_prefixes": ["1"]},
            "87654321",
            "12345",
            "callback_allow",
            "leg A: callback number matches no prefix of callback_policies.callback_allow_prefixes",
        ),
        id="account-callback-allow",
    ),
    pytest.param(
        Case(
            {"destination_deny_prefixes": "4990", "number_national_prefix": "0"}
            | {"number_country_code": "49"},
            None,
            "87654321",
            "0900-55",
            "destination_deny",
            "leg B: destination matches deny prefix 4990 of TWOWAY_DESTINATION_DENY_PREFIXES",
        ),
        id="national-prefix-normalised",
    ),
]


async def add_policy(pool: asyncpg.Pool, columns: dict[str, Any], username: str = "801") -> None:
    names = ["username", *columns]
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    await pool.execute(
        f"INSERT INTO callback_policies ({', '.join(names)}) VALUES ({params})",
        username,
        *columns.values(),
    )


def refusals(rule: str) -> float:
    return metrics.POLICY_REFUSALS.labels(rule)._value.get()


def assert_refused(row: asyncpg.Record, reason: str) -> None:
    assert (row["status"], row["result"], row["result_reason"]) == (
        "failed",
        "policy_refused",
        reason,
    )
    assert row["attempts"] == 0 and row["leg_a_channel_id"] is None


@pytest.mark.parametrize("case", CASES)
async def test_sql_row(
    pool: asyncpg.Pool,
    sim: Simulator,
    start_service: ServiceFactory,
    case: Case,
) -> None:
    if case.account is not None:
        await add_policy(pool, case.account)
    before = refusals(case.rule)
    await start_service(**case.settings)
    refused = await insert(pool, original_cli=case.cli, original_cld=f"2way_{case.cld}")
    assert_refused(await final_row(pool, refused), case.reason)
    assert refusals(case.rule) == before + 1
    assert originates(sim) == []


@pytest.mark.parametrize("case", CASES)
async def test_api_create(
    pool: asyncpg.Pool,
    start_service: ServiceFactory,
    case: Case,
) -> None:
    if case.account is not None:
        await add_policy(pool, case.account)
    service = await start_service(api_tokens=TOKENS, **case.settings)
    reply = await call(
        service.http_url,
        "POST",
        "/v1/callbacks",
        json=body(original_cli=case.cli, original_cld=case.cld),
    )
    assert reply.status == 422
    assert reply.json == {"error": "policy_refused", "message": case.reason, "rule": case.rule}
    fault = await fault_of(
        proxy(service.http_url),
        "callback.create",
        body(original_cli=case.cli, original_cld=f"2way_{case.cld}"),
    )
    assert (fault.faultCode, fault.faultString) == (10, case.reason)
    assert await row_count(pool) == 0


@pytest.mark.parametrize("case", CASES)
async def test_inbound_trigger(
    pool: asyncpg.Pool,
    sim: Simulator,
    start_service: ServiceFactory,
    case: Case,
) -> None:
    """The caller's number is leg A's; the CLD after ani_2way_ is leg B's."""
    await add_account(pool, cli=case.cli)
    if case.account is not None:
        await add_policy(pool, case.account)
    await start_service(inbound_callback_delay=0, **case.settings)
    await trigger(sim, caller=case.cli, cld=case.cld)
    (row,) = await requests_of(pool)
    assert row["source"] == "inbound"
    assert_refused(await final_row(pool, row["id"]), case.reason)
    assert originates(sim) == []


async def test_allowed_requests_go_through_from_every_source(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """With rules that allow them, the seed's example still completes from all three."""
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await add_policy(pool, {"destination_allow_prefixes": ["12"]})
    await add_account(pool, cli="87654321")
    service = await start_service(
        api_tokens=TOKENS,
        inbound_callback_delay=0,
        destination_allow_prefixes="1,49",
        destination_deny_prefixes="900",
        callback_allow_prefixes="8",
    )
    sql_id = await insert(pool)
    assert (await final_row(pool, sql_id))["result"] == "answered"
    reply = await call(service.http_url, "POST", "/v1/callbacks", json=body())
    assert reply.status == 201
    assert (await final_row(pool, reply.json["id"]))["result"] == "answered"
    await trigger(sim, caller="87654321", cld="12345")
    inbound = [r for r in await requests_of(pool) if r["source"] == "inbound"]
    assert (await final_row(pool, inbound[0]["id"]))["result"] == "answered"


async def test_a_bad_policy_row_is_refused_by_the_database(pool: asyncpg.Pool) -> None:
    for bad in (["+49"], ["4 9"], [""], ["49", None]):
        with pytest.raises(asyncpg.CheckViolationError):
            await add_policy(pool, {"destination_deny_prefixes": bad})
    with pytest.raises(asyncpg.CheckViolationError):
        await add_policy(pool, {"max_live": -1})
    assert await pool.fetchval("SELECT count(*) FROM callback_policies") == 0
