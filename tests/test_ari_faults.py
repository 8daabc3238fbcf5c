"""A slow or failing Asterisk (issue 8, item 7): ARI REST timeouts and 5xx count as a failed
attempt with a clear result, never a hung request; every state has a timeout.

Faults are injected in the simulator (``sim.fault``: a delayed or error answer to matching REST
requests; ``sim.lose_events``: events that never arrive). Every wait is bounded; nothing sleeps
to synchronise.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from ari_simulator import Script, Simulator
from stasis_app.callflow import timing as session_module
from tests.conftest import ServiceFactory
from tests.test_callflow import (
    final_row,
    insert,
    originates,
    row_of,
    sim_channel,
    statuses,
    until,
)

AUTH = {"Authorization": aiohttp.encode_basic_auth("twoway", "ari-secret-pw")}
USER = "87654321"  # leg A: the user (default number of tests.test_callflow.insert)
DEST = "12345"  # leg B: the destination


def leg_a_originates(sim: Simulator, rid: int) -> list[Any]:
    return [
        o
        for o in originates(sim)
        if o.query.get("channelId", "").startswith(f"twoway-{rid}-")
        and o.query["channelId"].endswith("a")
    ]


def requests_to(sim: Simulator, method: str, path: str) -> list[Any]:
    return [r for r in sim.requests if r.method == method and r.path == path]


async def pending_after(pool: asyncpg.Pool, rid: int, attempts: int) -> bool:
    row = await row_of(pool, rid)
    return bool(row["status"] == "pending" and row["attempts"] == attempts)


# --- the simulator's fault injection itself ------------------------------------------------


async def ari(
    sim: Simulator,
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    *,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.request(
            method,
            f"{sim.base_url}/ari{path}",
            params=params or {},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


ORIGINATE = {"endpoint": "PJSIP/555@softswitch", "app": "twoway-callback"}


async def test_fault_answers_the_status_without_creating_the_channel(sim: Simulator) -> None:
    sim.script("555", Script(action="noanswer"))
    fault = sim.fault("POST", "/channels", status=500, times=1, message="boom")
    status, body = await ari(sim, "POST", "/channels", {"channelId": "c-1", **ORIGINATE})
    assert (status, body) == (500, {"message": "boom"})
    assert "c-1" not in sim.channels and "c-1" not in sim.ended_channels
    assert (sim.requests[-1].path, sim.requests[-1].status) == ("/channels", 500)
    assert fault.hits == 1 and sim.faults == []  # used up
    status, body = await ari(sim, "POST", "/channels", {"channelId": "c-1", **ORIGINATE})
    assert status == 200 and "c-1" in sim.channels


async def test_fault_matching_method_prefix_and_query(sim: Simulator) -> None:
    sim.script("555", Script(action="noanswer"))
    sim.fault("POST", "/channels", status=503, query={"endpoint": "PJSIP/666@"})
    sim.fault("*", "/bridges", status=500)
    assert (await ari(sim, "POST", "/channels", {"channelId": "ok", **ORIGINATE}))[0] == 200
    assert (await ari(sim, "GET", "/channels/ok"))[0] == 200  # GET: no fault
    refused = {**ORIGINATE, "endpoint": "PJSIP/666@softswitch"}
    assert (await ari(sim, "POST", "/channels", {"channelId": "no", **refused}))[0] == 503
    assert (await ari(sim, "GET", "/bridges"))[0] == 500
    assert (await ari(sim, "DELETE", "/bridges/x"))[0] == 500
    sim.clear_faults()
    assert (await ari(sim, "POST", "/channels", {"channelId": "no", **refused}))[0] == 200
    assert [r.status for r in sim.requests] == [200, 200, 503, 500, 500, 200]


async def test_delay_before_and_after_handling(sim: Simulator) -> None:
    sim.script("555", Script(action="noanswer"))
    sim.fault("POST", "/channels", delay_ms=300, times=1)
    started = time.monotonic()
    status, _ = await ari(sim, "POST", "/channels", {"channelId": "slow", **ORIGINATE})
    assert status == 200 and time.monotonic() - started >= 0.3

    # Handled at once, answered late: the client gives up, the channel exists all the same.
    sim.fault("POST", "/channels", delay_after_ms=2000, times=1)
    with pytest.raises(TimeoutError):
        await ari(sim, "POST", "/channels", {"channelId": "late", **ORIGINATE}, timeout=0.3)
    assert "late" in sim.channels
    # Delayed before handling: the channel appears only after the delay.
    sim.fault("POST", "/channels", delay_ms=500, times=1)
    with pytest.raises(TimeoutError):
        await ari(sim, "POST", "/channels", {"channelId": "later", **ORIGINATE}, timeout=0.1)
    assert "later" not in sim.channels
    await sim.wait_for(lambda: "later" in sim.channels, timeout=5)


async def test_control_routes(sim: Simulator) -> None:
    faults = [
        {"method": "post", "path_prefix": "/channels", "status": 500, "times": 2},
        {"event_type": "ChannelDestroyed", "channel_prefix": "twoway-"},
    ]
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{sim.base_url}/_sim/faults", json=faults) as response:
            assert response.status == 204
        assert (await ari(sim, "POST", "/channels", ORIGINATE))[0] == 500
        async with http.get(f"{sim.base_url}/_sim/faults") as response:
            listed = await response.json()
        assert listed == [
            {
                "method": "POST",
                "path_prefix": "/channels",
                "status": 500,
                "delay_ms": 0,
                "delay_after_ms": 0,
                "times": 2,
                "message": "Internal Server Error",
                "query": {},
                "hits": 1,
            },
            {
                "event_type": "ChannelDestroyed",
                "channel_prefix": "twoway-",
                "times": None,
                "hits": 0,
            },
        ]
        for bad in (
            {"method": "GET"},
            {"method": "GET", "path_prefix": "/x"},
            {"method": "GET", "path_prefix": "/x", "status": 999},
            {"method": "GET", "path_prefix": "/x", "status": 500, "delay_after_ms": 5},
            {"method": "GET", "path_prefix": "x", "status": 500},
            {"method": "GET", "path_prefix": "/x", "status": 500, "times": 0},
            {"method": "GET", "path_prefix": "/x", "status": 500, "nope": 1},
            {"event_type": "", "channel_prefix": "x"},
            [1],
        ):
            async with http.put(f"{sim.base_url}/_sim/faults", json=bad) as response:
                assert response.status == 400, bad
        assert len(sim.faults) == 1 and len(sim.event_faults) == 1  # a bad PUT changes nothing
        async with http.delete(f"{sim.base_url}/_sim/faults") as response:
            assert response.status == 204
    assert sim.faults == [] and sim.event_faults == []
    assert (await ari(sim, "POST", "/channels", ORIGINATE))[0] == 200


# --- originate refused (5xx) ------------------------------------------------------------------


async def test_originate_5xx_that_created_nothing_spends_no_attempt(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """A 5xx is no definite answer: the channel is looked up by its id, Asterisk has none, so
    the row goes back to the queue at once without spending an attempt."""
    sim.fault("POST", "/channels", status=500, times=1)
    await start_service(retry_delay=30)
    rid = await insert(pool)
    await until(lambda: _reason_is(pool, rid, "originate: 500"), timeout=5)
    row = await row_of(pool, rid)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert (row["result"], row["result_reason"]) == (
        "error",
        "originate: 500 Internal Server Error; Asterisk created no channel",
    )
    assert [r.status for r in requests_to(sim, "GET", f"/channels/twoway-{rid}-1a")] == [404]


async def test_originate_500_then_retried_normally(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script(DEST, Script(action="answer", hangup_after_ms=50))
    sim.fault("POST", "/channels", status=500, message="Allocation failed")
    await start_service(retry_delay=0.3, max_attempts=3)
    rid = await insert(pool)

    await until(lambda: _reason_is(pool, rid, "originate: 500 Allocation failed"))
    assert sim_channel(sim, f"twoway-{rid}-1a") is None  # never created
    sim.clear_faults()  # Asterisk is back: the next attempt dials normally
    row = await final_row(pool, rid)
    # Only the attempt Asterisk really made counts; the channel id of a refused one is free.
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 1)
    statuses_seen = [o.status for o in leg_a_originates(sim, rid)]
    assert statuses_seen[-1] == 200 and set(statuses_seen[:-1]) == {500}
    assert {o.query["channelId"] for o in leg_a_originates(sim, rid)} == {f"twoway-{rid}-1a"}
    assert (await statuses(pool, rid))[-4:] == ["calling", "connecting", "bridged", "completed"]


async def _reason_is(pool: asyncpg.Pool, rid: int, start: str) -> bool:
    reason = (await row_of(pool, rid))["result_reason"]
    return reason is not None and reason.startswith(start)


async def test_originate_5xx_for_good_never_finishes_the_row(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """No row becomes final because of a transient fault: an Asterisk that keeps answering
    503 (and creates nothing) gets the row again and again, no attempt spent."""
    sim.fault("POST", "/channels", status=503, message="Service Unavailable")
    await start_service(retry_delay=0.1, max_attempts=2)
    rid = await insert(pool)
    await until(lambda: len(leg_a_originates(sim, rid)) >= 3)
    await until(lambda: pending_after(pool, rid, 0))  # between two tries: none spent
    assert set(await statuses(pool, rid)) == {"pending", "calling"}
    assert {o.status for o in leg_a_originates(sim, rid)} == {503}
    assert not sim.channels


async def test_one_refused_originate_times_1(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script(DEST, Script(action="answer", hangup_after_ms=50))
    fault = sim.fault("POST", "/channels", status=500, times=1)
    await start_service(retry_delay=0.1)
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 1)
    assert fault.hits == 1
    assert [o.status for o in leg_a_originates(sim, rid)] == [500, 200]


# --- originate slower than TWOWAY_ARI_TIMEOUT ----------------------------------------------------


async def test_originate_answered_too_late_goes_on(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """Asterisk created the channel at once but answered after our timeout: the channel is
    looked up by its id, found, and the call goes on (the user's phone is never cut on a
    guess); one attempt, one leg-A originate."""
    sim.script(USER, Script(action="answer", ring_ms=1000))
    sim.script(DEST, Script(action="answer", hangup_after_ms=50))
    sim.fault("POST", "/channels", delay_after_ms=2000, times=1)
    await start_service(ari_timeout=0.5, retry_delay=30, leg_a_timeout=30)
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 1)
    leg = f"twoway-{rid}-1a"
    assert [r.status for r in requests_to(sim, "GET", f"/channels/{leg}")][:1] == [200]
    assert sim.channel(leg).end == "app_hangup"  # after the destination hung up
    await until(lambda: len(leg_a_originates(sim, rid)) == 1, timeout=5)  # late 200 logged
    assert not sim.channels


async def test_originate_acted_on_too_late_is_hung_up(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """Asterisk was slow to act: the channel appears only after our timeout (and after the
    look-up of its id found nothing: no attempt spent). It must still be hung up, not left
    ringing the user.

    Static identity: the trunk endpoint outlives the attempt (a per-call endpoint is deleted
    when the attempt ends, and the late originate would fail on it; with another call of the
    same identity live it would not).
    """
    sim.script(USER, Script(action="answer", ring_ms=200))
    sim.fault("POST", "/channels", delay_ms=3000, times=1)  # beyond 3 x the ARI timeout
    await start_service(ari_timeout=0.5, retry_delay=30, identity_mode="static")
    rid = await insert(pool)
    await until(lambda: _reason_is(pool, rid, "originate: no response (timed out"), timeout=5)
    assert await pending_after(pool, rid, 0)
    leg = f"twoway-{rid}-1a"
    assert {r.status for r in requests_to(sim, "GET", f"/channels/{leg}")} == {404}
    await sim.wait_for(lambda: sim_channel(sim, leg), timeout=5)  # created after all
    await sim.wait_for(lambda: sim.channel(leg).ended, timeout=5)
    assert sim.channel(leg).end in ("cancelled", "app_hangup")  # by us, not the far end
    assert [r.status for r in requests_to(sim, "DELETE", f"/channels/{leg}")] == [204]


async def test_every_request_slow_never_fails_the_row(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """Asterisk answers nothing in time (every REST request outlives the timeout): the row
    goes back to the queue, no attempt spent, nothing dialled; never stuck, never final."""
    await start_service(ari_timeout=0.3, max_attempts=1)
    sim.fault("*", "/", delay_ms=1000)  # after start-up: the service is connected
    rid = await insert(pool)
    reason = "identity objects: no response (timed out after 0.3 s)"
    await until(lambda: _reason_is(pool, rid, reason))
    await until(lambda: pending_after(pool, rid, 0))  # between two tries: none spent
    assert set(await statuses(pool, rid)) == {"pending", "calling"}
    assert leg_a_originates(sim, rid) == []


# --- other ARI operations failing ------------------------------------------------------------


async def test_identity_objects_5xx_is_retried_without_an_attempt(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    fault = sim.fault(
        "PUT", "/asterisk/config/dynamic/res_pjsip/", status=500, message="sorcery down"
    )
    sim.script(DEST, Script(action="answer", hangup_after_ms=50))
    await start_service(max_attempts=2, retry_delay=0.1)
    rid = await insert(pool)
    await until(lambda: fault.hits >= 3)
    assert await _reason_is(pool, rid, "identity objects: 500 sorcery down")
    assert leg_a_originates(sim, rid) == []  # nothing dialled without its identity
    sim.clear_faults()
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 1)


@pytest.fixture
def short_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    """How long a request without a definite answer is resolved by looking up and sending it
    again (timing.RESOLVE, 30 s), shortened to 1 s."""
    monkeypatch.setattr(session_module, "RESOLVE", 1.0)


async def test_bridge_creation_5xx_fails_the_request_and_hangs_up_both_legs(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, short_resolve: None
) -> None:
    """Asterisk keeps answering 500: sent again (and looked up) for RESOLVE, then the attempt
    fails; with attempts left it would be tried again."""
    sim.fault("POST", "/bridges", status=500, message="bridge allocation failed")
    await start_service(max_attempts=1)
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("failed", "error", 1)
    assert row["result_reason"] == "bridge failed: POST /bridges: 500: bridge allocation failed"
    for leg in (row["leg_a_channel_id"], row["leg_b_channel_id"]):
        assert sim.channel(leg).ended and sim.channel(leg).end == "app_hangup"
        assert [r.status for r in requests_to(sim, "DELETE", f"/channels/{leg}")] == [204]
    assert not sim.channels and not sim.bridges


async def test_add_channel_5xx_destroys_the_bridge_too(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, short_resolve: None
) -> None:
    sim.fault("POST", "/bridges/", status=503, message="busy")  # addChannel, not the creation
    await start_service(max_attempts=1)
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("failed", "error")
    assert row["result_reason"].startswith(f"bridge failed: POST /bridges/twoway-{rid}-1br/")
    assert requests_to(sim, "DELETE", f"/bridges/twoway-{rid}-1br")[0].status == 204
    assert not sim.channels and not sim.bridges


async def test_leg_b_originate_500_is_placed_again(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """A 5xx on leg B: Asterisk has no such channel (looked up), so leg B is placed again
    while the user hears ringback; not the destination's fault, no attempt lost."""
    sim.script(DEST, Script(action="answer", hangup_after_ms=50))
    sim.fault("POST", "/channels", status=500, query={"endpoint": f"PJSIP/{DEST}@"}, times=1)
    await start_service()
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 1)
    leg_b = f"twoway-{rid}-1b"
    assert [r.status for r in requests_to(sim, "GET", f"/channels/{leg_b}")] == [404]
    assert [o.status for o in originates(sim)] == [200, 500, 200]
    assert not sim.channels


# --- every state has a timeout ----------------------------------------------------------------


@pytest.fixture
def short_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's own bounds beyond Asterisk's verdict, 10 s each, shortened to 1 s: GUARD
    (no verdict after the ring timeout) and TEARDOWN (no ChannelDestroyed after our hangup)."""
    monkeypatch.setattr(session_module, "GUARD", 1.0)
    monkeypatch.setattr(session_module, "TEARDOWN", 1.0)


async def test_leg_a_without_a_verdict_is_ended_by_the_guard(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, short_guards: None
) -> None:
    """Asterisk's ring timeout ends the channel, but its ChannelDestroyed is lost: the session
    does not wait for it forever."""
    sim.script(USER, Script(action="noanswer"))
    lost = sim.lose_events("ChannelDestroyed", channel_prefix="twoway-")
    await start_service(leg_a_timeout=1, max_attempts=1)
    rid = await insert(pool)
    row = await final_row(pool, rid, timeout=10)
    assert (row["status"], row["result"]) == ("failed", "callback_no_answer")
    assert row["result_reason"] == "no verdict from Asterisk before the ring timeout"
    assert lost.hits == 1
    assert sim.channel(f"twoway-{rid}-1a").end == "noanswer"  # Asterisk did end it


async def test_no_channel_event_ever_arrives(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, short_guards: None
) -> None:
    """Not a single event of our channels arrives (answered or not, hung up or not): every
    state still ends, and nothing is left live in Asterisk. The guard asks Asterisk about a
    leg before judging it: both answered (their StasisStart lost), so the call is bridged and
    ends at the maximum duration."""
    sim.script(USER, Script(action="answer", ring_ms=100))
    sim.lose_events("*", channel_prefix="twoway-")
    await start_service(leg_a_timeout=1, leg_b_timeout=1, max_attempts=1, max_call_duration=2)
    rid = await insert(pool)
    row = await final_row(pool, rid, timeout=20)
    assert (row["status"], row["result"], row["result_reason"]) == (
        "completed",
        "answered",
        "max call duration reached",
    )
    for leg in (f"twoway-{rid}-1a", f"twoway-{rid}-1b"):
        assert [r.status for r in requests_to(sim, "GET", f"/channels/{leg}")] == [200]
        assert [r.status for r in requests_to(sim, "DELETE", f"/channels/{leg}")] == [204]
    assert not sim.channels


async def test_destination_without_a_verdict_is_ended_by_the_guard(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, short_guards: None
) -> None:
    sim.script(DEST, Script(action="noanswer"))
    sim.lose_events("ChannelDestroyed", channel_prefix="twoway-")
    await start_service(leg_b_timeout=1)
    rid = await insert(pool)
    row = await final_row(pool, rid, timeout=10)
    assert (row["status"], row["result"]) == ("failed", "destination_no_answer")
    assert row["result_reason"] == "no verdict from Asterisk before the ring timeout"
    assert sim.channel(f"twoway-{rid}-1a").end == "app_hangup"
    assert not sim.channels


async def test_a_hung_originate_never_hangs_the_request(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    """An originate Asterisk never answers at all (far beyond any timeout)."""
    sim.fault("POST", "/channels", delay_ms=600_000)
    await start_service(ari_timeout=0.5, max_attempts=1, retry_delay=30)
    rid = await insert(pool)
    reason = "originate: no response (timed out after 0.5 s)"
    await until(lambda: _reason_is(pool, rid, reason), timeout=10)
    assert await pending_after(pool, rid, 0)
    assert not sim.channels


async def test_waiting_for_a_free_connection_is_not_an_ari_timeout(sim: Simulator) -> None:
    """Issue 13: requests queued behind a full connection pool start their timeout only once
    they are sent; each answer here takes 60 % of the timeout, six requests share two
    connections, so the last ones wait longer than the timeout before they are sent."""
    from stasis_app.ari.rest import AriRest

    timeout, slow = 1.0, 0.6
    sim.fault("DELETE", "/channels/", delay_ms=int(slow * 1000))
    connector = aiohttp.TCPConnector(limit=2)
    async with aiohttp.ClientSession(connector=connector) as http:
        rest = AriRest(
            http,
            sim.base_url,
            user="twoway",
            password="ari-secret-pw",
            timeout=timeout,
            max_connections=2,
        )
        started = time.monotonic()
        answers = await asyncio.gather(
            *(rest.hangup(f"nobody-{i}") for i in range(6)), return_exceptions=True
        )
    assert answers == [False] * 6  # every one answered 404 (no such channel), none timed out
    assert time.monotonic() - started >= 3 * slow  # they did queue
