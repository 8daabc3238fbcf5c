"""The translation-rule trigger: inbound ani_2way_<CLD> calls, against the simulator."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from ari_simulator import Script, Simulator
from stasis_app import metrics
from stasis_app.config import Settings
from stasis_app.errors import ConfigError
from stasis_app.inbound import Refused, default_identity, normalise_caller
from tests.conftest import ServiceFactory, ha1
from tests.test_callflow import final_row, until

CALLER = "4930123456"


async def add_account(pool: asyncpg.Pool, cli: str = CALLER, enabled: bool = True) -> None:
    await pool.execute(
        "INSERT INTO callback_accounts (cli, username, authname, md5secret, enabled)"
        " VALUES ($1, '801', '902', $2, $3)",
        cli,
        ha1("902"),
        enabled,
    )


async def trigger(sim: Simulator, caller: str = CALLER, cld: str = "12345", **kwargs: Any) -> Any:
    """Place an inbound trigger call and wait until the app has rejected it."""
    channel_id = await sim.inbound_call(caller=caller, exten=f"ani_2way_{cld}", **kwargs)
    await sim.wait_for(lambda: sim.channel(channel_id).ended, timeout=10)
    return sim.channel(channel_id)


async def requests_of(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM callback_requests ORDER BY id")


def inbound_count(outcome: str) -> float:
    return metrics.INBOUND.labels(outcome)._value.get()


async def test_mapped_caller_gets_a_delayed_callback_and_is_never_answered(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await add_account(pool)
    await start_service(inbound_callback_delay=3600)
    channel = await trigger(sim)
    assert not channel.answered
    assert (channel.hangup_reason, channel.sip_final) == ("busy", 486)
    (row,) = await requests_of(pool)
    assert (row["username"], row["authname"], row["md5secret"]) == ("801", "902", ha1("902"))
    assert (row["original_cli"], row["original_cld"], row["source"]) == (
        CALLER,
        "2way_12345",
        "inbound",
    )
    assert row["status"] == "pending"
    assert await pool.fetchval(
        "SELECT next_call > now() + interval '3500 seconds' FROM callback_requests"
    )


async def test_disabled_account_falls_back_to_the_default_identity(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await add_account(pool, enabled=False)
    await start_service(
        default_username="700",
        default_authname="701",
        default_md5secret=ha1("801").upper(),
        inbound_callback_delay=3600,
    )
    await trigger(sim)
    (row,) = await requests_of(pool)
    assert (row["username"], row["authname"], row["md5secret"]) == ("700", "701", ha1("801"))


async def test_no_identity_creates_nothing(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    before = inbound_count("no_identity")
    await start_service()
    channel = await trigger(sim)
    assert not channel.answered and channel.sip_final == 486
    assert await requests_of(pool) == []
    assert inbound_count("no_identity") == before + 1


@pytest.mark.parametrize("caller", ["anonymous", "", "Restricted", "12 34"])
async def test_anonymous_or_malformed_caller_is_refused(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, caller: str
) -> None:
    await start_service(default_username="700", default_md5secret=ha1("801"))
    channel = await trigger(sim, caller=caller)
    assert not channel.answered
    assert await requests_of(pool) == []


async def test_cld_that_is_not_a_dial_string_is_refused(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await add_account(pool)
    await start_service()
    channel_id = await sim.inbound_call(
        caller=CALLER, exten="ani_2way_x", args=["ani_2way", "123&PJSIP/666"]
    )
    await sim.wait_for(lambda: sim.channel(channel_id).ended, timeout=10)
    assert await requests_of(pool) == []


async def test_second_trigger_while_one_is_pending_is_debounced(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await add_account(pool)
    await start_service(inbound_callback_delay=3600)
    first = await trigger(sim)
    second = await trigger(sim)
    assert len(await requests_of(pool)) == 1
    assert first.sip_final == second.sip_final == 486
    # Once the first is over, a new trigger is a new request.
    await pool.execute("UPDATE callback_requests SET status = 'cancelled'")
    await trigger(sim)
    assert len(await requests_of(pool)) == 2


@pytest.mark.parametrize(("reason", "sip"), [("busy", 486), ("rejected", 403), ("congestion", 503)])
async def test_reject_reason(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, reason: str, sip: int
) -> None:
    await add_account(pool)
    await start_service(inbound_reject_reason=reason, inbound_callback_delay=3600)
    channel = await trigger(sim)
    assert (channel.hangup_reason, channel.sip_final, channel.answered) == (reason, sip, False)


async def test_ringback_before_the_rejection(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await add_account(pool)
    await start_service(inbound_ringback_ms=100, inbound_callback_delay=3600)
    channel = await trigger(sim)
    assert channel.rang and not channel.answered
    ring = [r for r in sim.requests if r.path == f"/channels/{channel.id}/ring"]
    assert [r.method for r in ring] == ["POST"]


async def test_caller_number_prefix_rules(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await add_account(pool, cli="0049301234")
    await start_service(
        inbound_strip_prefix="+", inbound_add_prefix="00", inbound_callback_delay=3600
    )
    await trigger(sim, caller="+49301234")
    (row,) = await requests_of(pool)
    assert row["original_cli"] == "0049301234"


async def test_whole_loop_inbound_to_completed_callback(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await add_account(pool)
    sim.script("12345", Script(action="answer", hangup_after_ms=100))
    await start_service(inbound_callback_delay=0.2)
    channel = await trigger(sim)
    assert not channel.answered
    await until(lambda: requests_of(pool))
    (row,) = await requests_of(pool)
    row = await final_row(pool, row["id"])
    assert (row["status"], row["result"], row["source"]) == ("completed", "answered", "inbound")
    callback = sim.channel(row["leg_a_channel_id"])
    assert callback.number == CALLER and callback.answered


def test_normalise_caller() -> None:
    assert normalise_caller(" 4930 ".strip(), strip_prefix="", add_prefix="") == "4930"
    assert normalise_caller("+4930", strip_prefix="+", add_prefix="00") == "004930"
    with pytest.raises(Refused, match="anonymous"):
        normalise_caller("Anonymous", strip_prefix="", add_prefix="")


def test_default_identity_is_checked_at_start() -> None:
    assert default_identity(Settings()) is None
    with pytest.raises(ConfigError, match="32 hex digits"):
        default_identity(Settings(default_username="700", default_md5secret="plain-password"))
