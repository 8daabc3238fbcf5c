"""Property: no refused request ever reaches an originate.

Random batches of requests (numbers written with ``+``, ``00``, a national ``0``, separators,
letters; three usernames, one with its own rules and an hourly limit) go in through SQL and the
API of one running service. Afterwards the simulator's request log must show an originate for
no refused row, every number it was asked to dial must pass the rules as an independent oracle
reads them, the API must have refused (422) exactly what the oracle refuses, and the hourly
limit must hold. One service serves every example (see test_api_properties for why).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ari_simulator import Script, Simulator, SimulatorConfig
from stasis_app.app import Service
from tests.conftest import PASSWORDS, REALM, ServiceFactory, ha1
from tests.test_api_support import TOKENS, body, call
from tests.test_callflow import FINAL, originates, until
from tests.test_policy_gate import add_policy

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The service's rules, and the oracle's copy of them.
GLOBAL_DEST_ALLOW = ("1", "2", "4", "9")
GLOBAL_DEST_DENY = ("90", "1900", "4990")
GLOBAL_CALLBACK_DENY = ("66",)
ACCOUNT = "802"  # its own rules and limit
ACCOUNT_DEST_ALLOW = ("49", "12")
ACCOUNT_CALLBACK_DENY = ("1",)
ACCOUNT_PER_HOUR = 4
ENDPOINT = re.compile(r"PJSIP/(?P<number>[^@]+)@")
CHANNEL = re.compile(r"twoway-(?P<request>\d+)-\d+[ab]")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Every number answers and hangs up at once: calls end by themselves."""
    simulator = Simulator(
        SimulatorConfig(
            user="twoway",
            password="ari-secret-pw",
            realm=REALM,
            accounts=dict(PASSWORDS),
            accept_any_digest=True,
            default_script=Script(action="answer", hangup_after_ms=10),
        )
    )
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def service(pool: asyncpg.Pool, start_service: ServiceFactory) -> Service:
    await add_policy(
        pool,
        {
            "destination_allow_prefixes": list(ACCOUNT_DEST_ALLOW),
            "callback_deny_prefixes": list(ACCOUNT_CALLBACK_DENY),
            "max_per_hour": ACCOUNT_PER_HOUR,
        },
        username=ACCOUNT,
    )
    return await start_service(
        api_tokens=TOKENS,
        api_rate_limit=1e6,
        shutdown_grace=0,
        destination_allow_prefixes=",".join(GLOBAL_DEST_ALLOW),
        destination_deny_prefixes=",".join(GLOBAL_DEST_DENY),
        callback_deny_prefixes=",".join(GLOBAL_CALLBACK_DENY),
        number_national_prefix="0",
        number_country_code="49",
    )


def oracle_digits(number: str) -> str | None:
    plain = "".join(c for c in number if c not in ".-_")
    for prefix, replacement in (("+", ""), ("00", ""), ("0", "49")):
        if plain.startswith(prefix):
            plain = replacement + plain[len(prefix) :]
            break
    return plain if plain.isascii() and plain.isdigit() else None


def passes(number: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    digits = oracle_digits(number)
    if digits is None:
        return not (allow or deny)
    if any(digits.startswith(p) for p in deny):
        return False
    return not allow or any(digits.startswith(p) for p in allow)


def oracle_allows(username: str, cli: str, cld: str) -> bool:
    callback_ok = passes(cli, (), GLOBAL_CALLBACK_DENY)
    dest_ok = passes(cld, GLOBAL_DEST_ALLOW, GLOBAL_DEST_DENY)
    if username == ACCOUNT:
        callback_ok = callback_ok and passes(cli, (), ACCOUNT_CALLBACK_DENY)
        dest_ok = dest_ok and passes(cld, ACCOUNT_DEST_ALLOW, ())
    return callback_ok and dest_ok


numbers = st.builds(
    lambda lead, prefix, rest, sep: lead + prefix + sep.join(rest),
    st.sampled_from(["", "+", "00", "0"]),
    st.sampled_from(["1", "12", "1900", "2", "4", "44", "49", "4990", "66", "9", "90", "3"]),
    st.lists(st.from_regex(r"[0-9]{1,3}|A", fullmatch=True), max_size=3),
    st.sampled_from(["", "", "-", "."]),
)
requests = st.lists(
    st.tuples(st.sampled_from(["801", ACCOUNT, "803"]), numbers, numbers, st.booleans()),
    min_size=1,
    max_size=6,
)


async def insert_row(pool: asyncpg.Pool, username: str, cli: str, cld: str) -> int:
    rid: int = await pool.fetchval(
        "INSERT INTO callback_requests (username, authname, md5secret, original_cli,"
        " original_cld) VALUES ($1, '902', $2, $3, $4) RETURNING id",
        username,
        ha1("902"),
        cli,
        f"2way_{cld}",
    )
    return rid


async def all_final(pool: asyncpg.Pool, ids: list[int]) -> bool:
    statuses = await pool.fetch(
        "SELECT status FROM callback_requests WHERE id = ANY($1::bigint[])", ids
    )
    return all(r["status"] in FINAL for r in statuses)


@EXAMPLES
@given(batch=requests)
async def test_no_refused_request_reaches_an_originate(
    pool: asyncpg.Pool, sim: Simulator, service: Service, batch: list[Any]
) -> None:
    ids = []
    for username, cli, cld, through_api in batch:
        if not through_api:
            ids.append(await insert_row(pool, username, cli, cld))
            continue
        reply = await call(
            service.http_url,
            "POST",
            "/v1/callbacks",
            json=body(username=username, original_cli=cli, original_cld=cld),
        )
        allowed = oracle_allows(username, cli, cld)
        assert reply.status == (201 if allowed else 422), (username, cli, cld, reply.text)
        if allowed:
            ids.append(reply.json["id"])
        else:
            assert reply.json["error"] == "policy_refused"
    await until(lambda: all_final(pool, ids), timeout=30)

    rows = await pool.fetch(
        "SELECT id, username, original_cli, original_cld, result, result_reason"
        " FROM callback_requests"
    )
    refused = {r["id"] for r in rows if r["result"] == "policy_refused"}
    dialled: set[int] = set()
    for request in originates(sim):
        channel = CHANNEL.fullmatch(request.query["channelId"])
        number = ENDPOINT.search(request.query["endpoint"])
        assert channel is not None and number is not None
        dialled.add(int(channel["request"]))
        assert int(channel["request"]) not in refused
        assert oracle_digits(number["number"]) is not None  # rules are set: digits only
    for row in rows:
        cld = row["original_cld"].removeprefix("2way_")
        by_prefix = not oracle_allows(row["username"], row["original_cli"], cld)
        limited = (row["result_reason"] or "").startswith("limit:")
        assert (row["id"] in refused) == (by_prefix or limited), dict(row)
        assert (row["id"] in dialled) == (row["id"] not in refused), dict(row)
        assert not limited or row["username"] == ACCOUNT
    admitted = [r for r in rows if r["username"] == ACCOUNT and r["id"] not in refused]
    assert len(admitted) <= ACCOUNT_PER_HOUR
