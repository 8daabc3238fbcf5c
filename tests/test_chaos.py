"""Chaos (issue 13, item 8): four real `twoway-callback run` processes, 2,000 requests, and a
simulated Asterisk that misbehaves at random while they work: latency up to twice the ARI
timeout, 5xx replies, lost replies (handled, answered after the client gave up), WebSocket
drops; one instance killed with SIGKILL and started again at once; one wave of terminated
Postgres backends. At the end every invariant of the README's Guarantees is checked and the
counts are printed.

`make test` runs it once at 2,000 requests; `make chaos` sets TWOWAY_CHAOS_SCALE (requests
x 2,000, and as many kill/restart and backend waves). Every wait is bounded by a figure derived
from the settings below; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ari_simulator import Chaos, RequestRecord, Simulator
from stasis_app.callflow import timing
from tests import test_many_instances as many_instances
from tests.conftest import ha1
from tests.test_many_instances import (
    DEST,
    FINAL,
    LEG_A,
    LIVE,
    Instances,
    app,
    bounded,
    simulated_asterisk,
)

SCALE = int(os.environ.get("TWOWAY_CHAOS_SCALE", "1"))
INSTANCES = 4
REQUESTS = 2000 * SCALE
ARI_TIMEOUT = 2.0  # TWOWAY_ARI_TIMEOUT
LEG_TIMEOUT = 10  # TWOWAY_LEG_A_TIMEOUT, TWOWAY_LEG_B_TIMEOUT: the far ends answer at once
LEASE = 10  # TWOWAY_LEASE_SECONDS
RETRY_DELAY = 0.5  # TWOWAY_RETRY_DELAY
MAX_ATTEMPTS = 3
TALK_MS = 15000  # the destination hangs up after this much talk; the user never does
SETTINGS = {
    "TWOWAY_ARI_TIMEOUT": str(ARI_TIMEOUT),
    "TWOWAY_LEASE_SECONDS": str(LEASE),
    "TWOWAY_RETRY_DELAY": str(RETRY_DELAY),
    "TWOWAY_RETRY_DELAY_MAX": "2",
    "TWOWAY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "TWOWAY_MAX_CALL_DURATION": "120",
    "TWOWAY_LEG_A_TIMEOUT": str(LEG_TIMEOUT),
    "TWOWAY_LEG_B_TIMEOUT": str(LEG_TIMEOUT),
    "TWOWAY_SHUTDOWN_GRACE": "1",
}
# Each call: two legs answering at once, TALK_MS of talk. Each attempt may meet a fault whose
# resolution takes up to timing.RESOLVE; a lost instance's rows come back at once (restart with
# its id); the rest is the machine (2,000 calls per scale through 4 instances and one simulator).
ROUND = timing.RESOLVE + 2 * (LEG_TIMEOUT + timing.GUARD) + TALK_MS / 1000
BOUND = MAX_ATTEMPTS * (ROUND + RETRY_DELAY * 4) + LEASE + 60 * SCALE

pytestmark = pytest.mark.timeout(int(BOUND) + 120)


@pytest.fixture
async def asterisk() -> AsyncIterator[Simulator]:
    async with simulated_asterisk(TALK_MS, SCALE) as sim:
        yield sim


instances = many_instances.instances  # the same processes fixture


async def counts(pool: asyncpg.Pool) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = ANY($1::text[])) AS final,"
        "       count(*) FILTER (WHERE status = ANY($2::text[])) AS live"
        " FROM callback_requests",
        list(FINAL),
        list(LIVE),
    )


async def test_chaos(pool: asyncpg.Pool, asterisk: Simulator, instances: Instances) -> None:
    sim = asterisk
    for index in range(1, INSTANCES + 1):
        await instances.start(index, **SETTINGS)
    await bounded(
        lambda: all(sim.app_connected(app(i)) for i in range(1, INSTANCES + 1)),
        60,
        "every instance connected to ARI",
    )
    chaos = Chaos(
        max_delay_ms=int(2 * ARI_TIMEOUT * 1000),
        slow_rate=0.03,
        error_rate=0.02,
        lost_rate=0.02,
        lost_ms=int(2.5 * ARI_TIMEOUT * 1000),
        seed=13,
    )
    sim.chaos(chaos)
    ids = [
        r["id"]
        for r in await pool.fetch(
            "INSERT INTO callback_requests (username, authname, md5secret, original_cli,"
            " original_cld, next_call) SELECT '801', '902', $1, '9' || lpad(g::text, 7, '0'),"
            " $2, now() + interval '1 second' FROM generate_series(1, $3::int) g RETURNING id",
            ha1("902"),
            f"2way_{DEST}",
            REQUESTS,
        )
    ]
    started = time.monotonic()
    disruptions: Counter[str] = Counter()

    async def final_at_least(share: float) -> bool:
        return bool((await counts(pool))["final"] >= share * REQUESTS)

    for wave in range(SCALE):
        base = wave / SCALE
        await bounded(lambda b=base: final_at_least(b + 0.1 / SCALE), BOUND, "10 % final")
        await sim.drop_websockets()
        disruptions["websocket drops"] += 1
        victim = await _busiest(pool)
        await instances.kill(victim)
        await instances.start(victim, **SETTINGS)  # at once, same instance id
        disruptions["kill -9 + restart"] += 1
        await bounded(lambda b=base: final_at_least(b + 0.4 / SCALE), BOUND, "40 % final")
        terminated = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        disruptions["postgres backends terminated"] += terminated
        await bounded(lambda b=base: final_at_least(b + 0.6 / SCALE), BOUND, "60 % final")
        await sim.drop_websockets()
        disruptions["websocket drops"] += 1

    await bounded(lambda: final_at_least(1.0), BOUND, f"all {REQUESTS} requests final")
    elapsed = time.monotonic() - started
    sim.chaos(None)
    # The last hang-ups (sent again until Asterisk confirms) leave nothing behind.
    try:
        await bounded(lambda: not sim.channels, timing.RESOLVE + 10, "every channel ended")
    except AssertionError:
        left = list(sim.channels.values())
        raise AssertionError(
            f"{len(left)} channels left: "
            + ", ".join(f"{c.id} {c.state} in {c.app} bridge {c.bridge_id}" for c in left[:8])
        ) from None

    rows = await pool.fetch(
        "SELECT id, status, result, result_reason, attempts FROM callback_requests"
    )
    outcomes = Counter((r["status"], r["result"]) for r in rows)
    reasons = Counter(r["result_reason"] for r in rows if r["status"] != "completed")
    requests = list(sim.requests)
    originates = _leg_a_created(requests)
    bridged = _bridged_pairs(requests)
    print(
        f"\nchaos: {INSTANCES} instances, {REQUESTS} requests, all final in {elapsed:.0f} s;"
        f" {len(requests)} ARI requests; injected {dict(chaos.counts)};"
        f" {dict(disruptions)}"
        f"\noutcomes {dict(outcomes)}; attempts {dict(Counter(r['attempts'] for r in rows))};"
        f" {len(bridged)} calls bridged; not completed: {dict(reasons)}"
    )

    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert all(r["status"] in FINAL for r in rows)
    # No leg A created twice for one attempt, and never more attempts than allowed.
    twice = {key: n for key, n in originates.items() if n > 1}
    assert twice == {}, f"leg A created twice for one attempt: {twice}"
    assert max(r["attempts"] for r in rows) <= MAX_ATTEMPTS
    # Every fault was transient: no row ended failed because of one.
    assert outcomes == {("completed", "answered"): REQUESTS}, reasons
    # No bridged call hung up by us before a party hung up (no cancel, and the maximum
    # duration and the shutdown grace are never reached here).
    cut = [pair for pair in bridged if not _a_party_hung_up(sim, pair)]
    assert cut == [], f"{len(cut)} bridged calls hung up by us first, e.g. {cut[:3]}"
    assert not sim.channels
    assert all(not bridge.channels for bridge in sim.bridges.values())


async def _busiest(pool: asyncpg.Pool) -> int:
    """The instance with the most live rows now (the one whose loss hurts most)."""
    busiest: str = await pool.fetchval(
        "SELECT claimed_by FROM callback_requests WHERE status = ANY($1::text[])"
        " GROUP BY claimed_by ORDER BY count(*) DESC LIMIT 1",
        list(LIVE),
    )
    return int(busiest.removeprefix("node-"))


def _leg_a_created(requests: list[RequestRecord]) -> Counter[tuple[int, int]]:
    """(request id, attempt) -> how many leg-A originates Asterisk acted on (answered 200)."""
    created: Counter[tuple[int, int]] = Counter()
    for record in requests:
        if record.method == "POST" and record.path == "/channels" and record.status == 200:
            match = LEG_A.fullmatch(record.query.get("channelId", ""))
            if match:
                created[(int(match["request"]), int(match["attempt"]))] += 1
    return created


def _bridged_pairs(requests: list[RequestRecord]) -> set[tuple[str, ...]]:
    """The channel pairs Asterisk put into a bridge (addChannel acted on)."""
    return {
        tuple(record.query.get("channel", "").split(","))
        for record in requests
        if record.path.endswith("/addChannel") and record.status == 204
    }


def _a_party_hung_up(sim: Simulator, pair: tuple[str, ...]) -> bool:
    ends = [(sim.channels.get(c) or sim.ended_channels.get(c)) for c in pair]
    return any(ch is not None and ch.end == "far_end_hangup" for ch in ends)
