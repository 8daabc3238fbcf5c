"""Limits counted in Postgres (issue 14, item 2): they hold across two instances that share
one database and one simulated Asterisk, each refusal with its own reason and metric.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg

from ari_simulator import Script, Simulator
from stasis_app.app import Service
from tests.conftest import ServiceFactory
from tests.test_callflow import final_row, insert, originates, until
from tests.test_inbound import add_account, inbound_count, requests_of, trigger
from tests.test_policy_gate import add_policy, refusals

LEG_A = "87654321"
DEST = "12345"


async def two_instances(start_service: ServiceFactory, **settings: Any) -> list[Service]:
    """Two instances, each its own Stasis app and id prefix; one row per claim, so both
    take part in every burst."""
    return [
        await start_service(
            instance_id=f"test-{n}",
            ari_app=f"app-{n}",
            id_prefix=f"i{n}",
            claim_batch=1,
            **settings,
        )
        for n in (1, 2)
    ]


def leg_a_originates(sim: Simulator) -> list[Any]:
    return [r for r in originates(sim) if r.query.get("channelId", "").endswith("a")]


async def outcomes(pool: asyncpg.Pool, ids: list[int]) -> Counter[tuple[str, str | None]]:
    rows = [await final_row(pool, rid) for rid in ids]
    return Counter((r["result"], r["result_reason"]) for r in rows)


async def test_per_hour_limit_holds_across_two_instances(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """Instance 1 admits two; instance 2 then admits one more and refuses the rest."""
    sim.script(DEST, Script(action="answer", hangup_after_ms=50))
    first, second = await two_instances(start_service, user_max_per_hour=3)
    before = refusals("user_hourly")
    second.watcher.paused = True
    early = [await insert(pool) for _ in range(2)]
    assert await outcomes(pool, early) == {("answered", "destination hung up"): 2}
    first.watcher.paused, second.watcher.paused = True, False
    second.watcher.wake()
    late = [await insert(pool) for _ in range(6)]
    assert await outcomes(pool, late) == {
        ("answered", "destination hung up"): 1,
        ("policy_refused", "limit: username 801 reached 3 callbacks per hour"): 5,
    }
    assert len(leg_a_originates(sim)) == 3
    claimers = await pool.fetch("SELECT id, claimed_by FROM callback_requests ORDER BY id")
    assert {r["claimed_by"] for r in claimers if r["id"] in late} == {"test-2"}
    assert refusals("user_hourly") == before + 5
    # another username has its own count
    other = await insert(pool, username="802")
    assert (await final_row(pool, other))["result"] == "answered"


async def test_live_limit_across_instances_and_a_retry_is_no_new_callback(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """max_live 1: while one call of 801 talks, the others are refused; once it ended, the
    next one goes. The per-hour limit of 2 counts requests, not attempts."""
    sim.script(DEST, Script(action="answer"))  # talks until hung up
    sim.script("55555", Script(action="busy"))
    await add_policy(pool, {"max_live": 1, "max_per_hour": 2})
    await two_instances(start_service, max_attempts=2)
    talking = await insert(pool)
    await until(lambda: _status(pool, talking, "bridged"))
    refused = [await insert(pool) for _ in range(2)]
    assert await outcomes(pool, refused) == {
        ("policy_refused", "limit: username 801 has 1 live callbacks (max_live)"): 2
    }
    await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", talking)
    await final_row(pool, talking)
    # leg A busy twice: one request, two admissions, counted once per hour
    busy_twice = await insert(pool, original_cli="55555")
    row = await final_row(pool, busy_twice)
    assert (row["result"], row["attempts"]) == ("callback_busy", 2)  # both attempts admitted
    third = await insert(pool)
    assert (await final_row(pool, third))["result_reason"] == (
        "limit: username 801 reached 2 callbacks per hour"
    )


async def _status(pool: asyncpg.Pool, rid: int, status: str) -> bool:
    return await pool.fetchval("SELECT status FROM callback_requests WHERE id = $1", rid) == status


async def test_destination_prefix_and_daily_limits(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script(DEST, Script(action="answer", hangup_after_ms=20))
    sim.script("4930111", Script(action="answer", hangup_after_ms=20))
    await add_policy(pool, {"max_per_day": 1}, username="803")
    await two_instances(start_service, destination_hourly_limits="123=2,49=100")
    by_destination = [await insert(pool, username=user) for user in ("801", "802", "804")]
    assert await outcomes(pool, by_destination) == {
        ("answered", "destination hung up"): 2,
        ("policy_refused", "limit: leg B destination prefix 123 reached 2 callbacks per hour"): 1,
    }
    daily = [await insert(pool, username="803", original_cld="2way_4930111") for _ in "12"]
    assert await outcomes(pool, daily) == {
        ("answered", "destination hung up"): 1,
        ("policy_refused", "limit: username 803 reached 1 callbacks per day"): 1,
    }


async def test_inbound_caller_limit_and_spike_guard_across_instances(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    callers = [f"49301{n:05d}" for n in range(4)]
    for caller in callers:
        await add_account(pool, cli=caller)
    await two_instances(
        start_service,
        inbound_callback_delay=3600,
        inbound_max_per_caller_hour=1,
        inbound_max_per_minute=3,
    )
    limited, spikes = inbound_count("limited"), refusals("inbound_spike")
    # triggers alternate between the two instances' Stasis apps
    for n, caller in enumerate(callers):
        await trigger(sim, caller=caller, app=f"app-{1 + n % 2}")
    rows = await requests_of(pool)
    assert [r["original_cli"] for r in rows] == callers[:3]
    assert refusals("inbound_spike") == spikes + 1
    # the same caller again, once its first request is over: the per-caller limit
    await pool.execute("UPDATE callback_requests SET status = 'cancelled'")
    hourly = refusals("inbound_caller_hourly")
    await trigger(sim, caller=callers[0], app="app-2")
    assert len(await requests_of(pool)) == 3
    assert refusals("inbound_caller_hourly") == hourly + 1
    assert inbound_count("limited") == limited + 2
    assert originates(sim) == []
