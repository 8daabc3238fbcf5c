"""The call flow alone: the real engine and sessions on in-memory fakes of both ports.

No database, no sockets: each test plays the far end by hand (``tests/callflow_fakes.py``).
Where today's behaviour is wrong (issue 13) the test asserts the right behaviour and is marked
``xfail(strict=True)``: it turns green, and must then lose its mark, when the fix lands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from stasis_app.callflow import timing
from stasis_app.domain.ari_errors import AriUnavailable
from stasis_app.domain.request import LegName, Result, Status
from tests.callflow_fakes import CallHarness
from tests.fake_ari import TIMED_OUT, TRUNK
from tests.fake_store import FakeRow
from tests.waiting import WAIT

A, B = LegName.A, LegName.B
GUARD = 0.2  # timing.GUARD for these tests: a lost verdict costs this long
LEG_TIMEOUT = 0.3  # the ring timeout of the tests that wait for it
SHORT_WAIT = WAIT + LEG_TIMEOUT + GUARD


Make = Callable[..., Awaitable[CallHarness]]


@pytest.fixture
async def make(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Make]:
    """Harnesses with these CallConfig overrides, closed after the test."""
    monkeypatch.setattr(timing, "GUARD", GUARD)
    monkeypatch.setattr(timing, "TEARDOWN", 1.0)
    monkeypatch.setattr(timing, "RECOVERED_POLL", 0.02)
    monkeypatch.setattr(timing, "SETTLE", 0.2)
    monkeypatch.setattr(timing, "RESOLVE", 0.5)
    made: list[CallHarness] = []

    async def make_harness(**config: Any) -> CallHarness:
        harness = CallHarness(**config)
        made.append(harness)
        await harness.open()
        return harness

    yield make_harness
    for harness in made:
        await harness.close()


@pytest.fixture
async def h(make: Make) -> CallHarness:
    return await make()


def endpoint_objects(h: CallHarness) -> set[str]:
    """The per-call identity endpoints that exist in Asterisk now."""
    return {key[2] for key in h.ari.config if key[1] == "endpoint" and key[2] != TRUNK}


def nothing_left(h: CallHarness) -> None:
    assert h.ari.channels == {}
    assert h.ari.bridges == {}
    assert endpoint_objects(h) == set()
    assert h.identities.live_objects == 0


# --- the ordinary paths -------------------------------------------------------------------------


async def test_answered_call_is_bridged_and_completed(h: CallHarness) -> None:
    row = h.start()
    await h.bridged(row)
    a, b = h.channel(row, A), h.channel(row, B)
    originate = h.ari.did("originate", a)[0].args
    assert originate["app_args"] == ["callback", str(row.id), "a"]
    assert originate["endpoint"].startswith("PJSIP/87654321@t-ep-")
    assert originate["variables"] == {"PJSIP_HEADER(add,X-Callback-Call-ID)": row.call_id}
    assert h.ari.did("originate", b)[0].args["endpoint"].startswith("PJSIP/12345@t-ep-")
    assert h.ari.did("add_channels", h.bridge(row))[0].args["channel_ids"] == [a, b]
    assert h.ari.hung_up == []

    h.ari.far_end_hangup(b)
    await h.done(row)
    assert (row.status, row.result, row.result_reason) == (
        Status.COMPLETED,
        Result.ANSWERED,
        "destination hung up",
    )
    assert row.history == [
        Status.PENDING,
        Status.CALLING,
        Status.CONNECTING,
        Status.BRIDGED,
        Status.COMPLETED,
    ]
    assert row.attempts == 1
    assert row.twoway_call_id == f"{row.call_id}-2way"
    assert row.outcome is not None and row.outcome.leg_b_cause == 16
    assert h.ari.hung_up == [a]  # the caller's leg, after the destination hung up
    nothing_left(h)


async def test_busy_user_is_retried_later(h: CallHarness) -> None:
    row = h.start()
    h.ari.refuse(await h.ringing(row, A), cause=17, sip_code=486)
    await h.done(row)
    assert (row.status, row.result, row.result_reason) == (
        Status.PENDING,
        Result.CALLBACK_BUSY,
        "cause 17, SIP 486",
    )
    assert (row.attempts, row.retry_in) == (1, 60.0)
    assert h.ari.originated() == [h.channel(row, A)]
    nothing_left(h)


async def test_no_verdict_from_asterisk_hangs_the_leg_up(make: Make) -> None:
    h = await make(leg_a_timeout=LEG_TIMEOUT)
    row = h.start()
    a = await h.ringing(row, A)
    await h.done(row, timeout=SHORT_WAIT)  # nothing more from Asterisk: our guard decides
    assert (row.status, row.result, row.result_reason) == (
        Status.PENDING,
        Result.CALLBACK_NO_ANSWER,
        "no verdict from Asterisk before the ring timeout",
    )
    assert h.ari.hung_up == [a]
    nothing_left(h)


async def test_user_hangs_up_while_the_destination_rings(h: CallHarness) -> None:
    row = h.start()
    a = await h.answered(row, A)
    b = await h.ringing(row, B)
    h.ari.far_end_hangup(a)
    await h.done(row)
    assert (row.status, row.result) == (Status.FAILED, Result.USER_HANGUP)
    assert h.ari.hung_up == [b]
    nothing_left(h)


# --- originate with no definite answer ----------------------------------------------------------


async def test_originate_reply_lost_is_resolved_by_looking_the_channel_up(h: CallHarness) -> None:
    h.ari.fail("originate", applied=True)  # Asterisk created leg A; the reply was lost
    row = h.start()
    a = h.channel(row, A)
    await h.until(
        lambda: bool(h.ari.did("get_channel", a) or h.ari.did("hangup", a)),
        "leg A looked up or hung up",
    )
    assert h.ari.hung_up == []  # the user's phone rings: never cut it on a guess
    assert h.ari.did("get_channel", a)
    h.ari.answer(a)
    await h.answered(row, B)
    await h.until(lambda: row.status == Status.BRIDGED, "bridged")
    h.ari.far_end_hangup(h.channel(row, B))
    await h.done(row)
    assert (row.status, row.result, row.attempts) == (Status.COMPLETED, Result.ANSWERED, 1)
    nothing_left(h)


async def test_originate_that_created_nothing_spends_no_attempt(h: CallHarness) -> None:
    h.ari.fail("originate")  # no channel was created
    row = h.start()
    await h.done(row)
    assert h.ari.did("get_channel", h.channel(row, A))  # resolved by id, not guessed
    assert row.status == Status.PENDING
    assert row.attempts == 0
    assert row.result_reason is not None and TIMED_OUT in row.result_reason
    nothing_left(h)


def fail_leg_b(h: CallHarness, row: FakeRow, times: int) -> None:
    """Leg B's originate answered 500 (nothing created) ``times`` times."""
    error = AriUnavailable("Internal Server Error", status=500, method="POST")
    h.ari.fail("originate", error, target=h.channel(row, B), times=times)


async def test_leg_b_originate_5xx_is_not_the_destinations_fault(h: CallHarness) -> None:
    row = h.start()
    fail_leg_b(h, row, times=1)
    await h.answered(row, A)
    b = h.channel(row, B)
    # Looked up (Asterisk has no such channel), then placed again: the user hears ringback.
    await h.until(lambda: len(h.ari.did("originate", b)) == 2, "leg B placed again")
    assert h.ari.did("get_channel", b)
    h.ari.answer(b)
    await h.until(lambda: row.status == Status.BRIDGED, "bridged")
    h.ari.far_end_hangup(b)
    await h.done(row)
    assert (row.status, row.result, row.attempts) == (Status.COMPLETED, Result.ANSWERED, 1)
    nothing_left(h)


async def test_leg_b_never_placed_is_not_the_destinations_fault(h: CallHarness) -> None:
    row = h.start()
    fail_leg_b(h, row, times=1000)
    await h.answered(row, A)
    await h.done(row, timeout=WAIT + timing.RESOLVE)
    assert row.result != Result.DESTINATION_FAILED
    assert row.status == Status.PENDING  # our side failed: try the callback again
    assert row.result_reason is not None and "500" in row.result_reason
    nothing_left(h)


# --- bridge created, its reply lost -------------------------------------------------------------


async def test_bridge_created_but_reply_lost(h: CallHarness) -> None:
    h.ari.fail("create_bridge", applied=True)
    row = h.start()
    await h.answered(row, A)
    await h.answered(row, B)
    await h.until(
        lambda: row.status == Status.BRIDGED or row.id not in h.engine.live_leases(),
        "bridged or ended",
        timeout=WAIT + timing.SETTLE,
    )
    assert row.status == Status.BRIDGED
    assert h.ari.hung_up == []
    h.ari.far_end_hangup(h.channel(row, B))
    await h.done(row)
    assert (row.status, row.result) == (Status.COMPLETED, Result.ANSWERED)
    nothing_left(h)


async def test_bridge_refused_while_a_party_hangs_up(h: CallHarness) -> None:
    """A refusal explained by a hang-up that raced it: an answered call that ended."""
    row = h.start()
    await h.answered(row, A)
    adding = h.ari.gate("add_channels")
    b = await h.answered(row, B)
    await h.until(lambda: bool(h.ari.did("add_channels")), "bridging asked for")
    h.ari.far_end_hangup(b)  # before Asterisk handles the add: it refuses (422)
    adding.set()
    await h.done(row)
    assert (row.status, row.result, row.result_reason) == (
        Status.COMPLETED,
        Result.ANSWERED,
        "destination hung up",
    )
    nothing_left(h)


# --- a recovered row ----------------------------------------------------------------------------


def lost_call(h: CallHarness, status: Status, *, legs: tuple[LegName, ...]) -> FakeRow:
    """A row a lost instance was driving, with the channels it left alive in Asterisk."""
    row = h.store.insert(status=status, attempts=1)
    row.lease_token = None
    row.leg_a_channel_id = h.channel(row, A)
    if status != Status.CALLING:
        row.leg_b_channel_id = h.channel(row, B)
    if status == Status.BRIDGED:
        row.bridge_id = h.bridge(row)
        h.ari.bridges[row.bridge_id] = [h.channel(row, leg) for leg in legs]
    for leg in legs:
        h.ari.survivor(h.channel(row, leg), answered=status != Status.CALLING or leg is not A)
    return row


async def test_recovered_bridged_call_is_adopted(h: CallHarness) -> None:
    row = lost_call(h, Status.BRIDGED, legs=(A, B))
    h.recover(row)
    await h.until(lambda: len(h.ari.did("get_channel")) >= 4, "legs looked up, then polled")
    assert h.ari.hung_up == []  # the conversation goes on
    h.ari.far_end_hangup(h.channel(row, B))  # its events go to the dead app: found by polling
    await h.done(row)
    assert (row.status, row.result, row.result_reason) == (
        Status.COMPLETED,
        Result.ANSWERED,
        "destination hung up",
    )
    assert row.attempts == 1
    assert h.ari.hung_up == [h.channel(row, A)]
    nothing_left(h)


@pytest.mark.parametrize(
    ("status", "legs"),
    [(Status.CALLING, (A,)), (Status.CONNECTING, (A, B)), (Status.CONNECTING, (A,))],
)
async def test_recovered_unbridged_call_is_hung_up_and_retried(
    h: CallHarness, status: Status, legs: tuple[LegName, ...]
) -> None:
    row = lost_call(h, status, legs=legs)
    h.recover(row)
    await h.done(row)
    assert (row.status, row.result, row.result_reason) == (
        Status.PENDING,
        Result.ERROR,
        "service instance lost during the call; its live legs were hung up",
    )
    assert row.attempts == 1  # nothing dialled again
    assert sorted(h.ari.hung_up) == sorted(h.channel(row, leg) for leg in legs)
    assert h.ari.originated() == []
    nothing_left(h)


async def test_recovered_undialled_row_is_released(h: CallHarness) -> None:
    row = h.store.insert(status=Status.CALLING)
    h.recover(row)
    await h.done(row)
    assert (row.status, row.attempts, row.result) == (Status.PENDING, 0, None)
    assert h.ari.requests == []  # no look-up without a channel id, nothing dialled


async def test_recovered_bridged_call_survives_failing_lookups(h: CallHarness) -> None:
    row = lost_call(h, Status.BRIDGED, legs=(A, B))
    h.ari.fail("get_channel", times=2)
    h.recover(row)
    await h.until(
        lambda: len(h.ari.did("get_channel")) >= 4 or row.id not in h.engine.live_leases(),
        "looked up past the failures",
    )
    assert h.ari.hung_up == []  # never cut a conversation on a transient fault
    assert row.status == Status.BRIDGED
    h.ari.far_end_hangup(h.channel(row, B))
    await h.done(row)
    assert (row.status, row.result) == (Status.COMPLETED, Result.ANSWERED)
    nothing_left(h)


# --- a cancel racing an answer ------------------------------------------------------------------


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-first", "answer-first"])
@pytest.mark.parametrize("leg", [A, B])
async def test_cancel_racing_an_answer(h: CallHarness, leg: LegName, cancel_first: bool) -> None:
    """Both arrive before the session looks: whatever the order, the row stays cancelled,
    nothing more is dialled or bridged, and every leg is hung up."""
    row = h.start()
    if leg is B:
        await h.answered(row, A)
    channel = await h.ringing(row, leg)
    if cancel_first:
        h.cancel(row)
        h.ari.answer(channel)
    else:
        h.ari.answer(channel)
        h.cancel(row)
    await h.done(row)
    assert (row.status, row.result) == (Status.CANCELLED, Result.CANCELLED)
    assert h.ari.originated() == [h.channel(row, x) for x in ([A] if leg is A else [A, B])]
    assert Status.BRIDGED not in row.history
    nothing_left(h)


async def test_hangup_without_an_answer_is_tried_again(h: CallHarness) -> None:
    row = h.start()
    await h.bridged(row)
    a = h.channel(row, A)
    h.ari.fail("hangup", target=a)
    h.cancel(row)
    await h.done(row, timeout=WAIT + timing.TEARDOWN)
    assert (row.status, row.result) == (Status.CANCELLED, Result.CANCELLED)
    nothing_left(h)


# --- an Asterisk restart while legs ring --------------------------------------------------------


async def test_asterisk_restart_while_the_user_rings(h: CallHarness) -> None:
    row = h.start()
    await h.ringing(row, A)
    h.ari.restart()
    await h.reconnect()
    await h.done(row)
    assert (row.status, row.result, row.result_reason) == (
        Status.PENDING,
        Result.CALLBACK_FAILED,
        "channel vanished while ARI was disconnected",
    )
    assert row.attempts == 1  # Asterisk had the channel: the attempt counts
    assert h.ari.hung_up == []
    # The identity objects died with Asterisk: the next call creates them again.
    puts = len(h.ari.did("put_config"))
    again = h.start()
    await h.originated(again, A)
    assert len(h.ari.did("put_config")) == puts + 2  # auth and endpoint
    assert endpoint_objects(h) != set()


async def test_asterisk_restart_while_the_destination_rings(h: CallHarness) -> None:
    row = h.start()
    await h.answered(row, A)
    await h.ringing(row, B)
    h.ari.restart()
    await h.reconnect()
    await h.done(row)
    assert row.result != Result.USER_HANGUP  # nobody hung up: Asterisk went away
    assert row.status == Status.PENDING
    assert row.result_reason is not None and "while ARI was disconnected" in row.result_reason
    nothing_left(h)


async def test_asterisk_restart_old_release_keeps_new_identity(h: CallHarness) -> None:
    old = h.start()
    await h.ringing(old, A)
    h.ari.restart()
    listing = h.ari.gate("list_channels")  # the resync stops after forgetting the identities
    reconnect = h.background(h.reconnect())
    await h.until(lambda: bool(h.ari.did("list_channels")), "resync listing channels")
    new = h.start()  # the same identity, made again in the restarted Asterisk
    await h.ringing(new, A)
    endpoints = endpoint_objects(h)
    assert len(endpoints) == 1
    listing.set()
    await reconnect
    await h.done(old)
    assert endpoint_objects(h) == endpoints  # the new call still dials through it
    h.ari.answer(h.channel(new, A))
    await h.answered(new, B)
    await h.until(lambda: new.status == Status.BRIDGED, "new call bridged")


async def test_mass_cancel_tears_every_call_down_through_lost_hangups(h: CallHarness) -> None:
    """Every call of the instance cancelled at once (one UPDATE), a third of the hang-ups
    unanswered: each is sent again until Asterisk has ended the channel."""
    rows = [h.start(original_cli=f"8765{i:04d}") for i in range(100)]
    for row in rows:
        await h.bridged(row)
    h.ari.fail("hangup", times=len(rows) // 3)
    for row in rows:
        h.cancel(row)
    for row in rows:
        await h.done(row, timeout=WAIT + timing.TEARDOWN)
    assert {(row.status, row.result) for row in rows} == {(Status.CANCELLED, Result.CANCELLED)}
    assert len(h.ari.did("hangup")) >= 2 * len(rows) + len(rows) // 3
    nothing_left(h)
