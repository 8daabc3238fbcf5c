"""Outcome and retry policy (``callflow.outcomes``), rule by rule: pure functions, tables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stasis_app.callflow import outcomes
from stasis_app.callflow.causes import LegFailure
from stasis_app.callflow.legs import Leg
from stasis_app.callflow.outcomes import Recovery
from stasis_app.domain.request import LegName, Outcome, Result, Status

A, B = LegName.A, LegName.B
PENDING, FAILED, COMPLETED = Status.PENDING, Status.FAILED, Status.COMPLETED


def leg(name: LegName = A, **state: object) -> Leg:
    values: dict[str, object] = {"channel_id": f"t-1-1{name}", "timeout": 30.0, "originated_at": 0}
    values.update(state)
    return Leg(name=name, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("retry", "attempts", "max_attempts", "status"),
    [
        (True, 1, 3, PENDING),
        (True, 2, 3, PENDING),
        (True, 3, 3, FAILED),  # the last attempt was spent
        (True, 4, 3, FAILED),  # a lowered max_attempts never retries more
        (True, 0, 1, PENDING),  # not dialled (attempts unchanged): still one to go
        (False, 1, 3, FAILED),
    ],
)
def test_retry_or_fail(retry: bool, attempts: int, max_attempts: int, status: Status) -> None:
    outcome = outcomes.retry_or_fail(
        Result.ERROR, "why", retry=retry, attempts=attempts, max_attempts=max_attempts
    )
    assert outcome == Outcome(status=status, result=Result.ERROR, reason="why")


@pytest.mark.parametrize(
    ("name", "failure", "attempts", "retry_b", "status", "result"),
    [
        (A, LegFailure.BUSY, 1, False, PENDING, Result.CALLBACK_BUSY),
        (A, LegFailure.NO_ANSWER, 1, False, PENDING, Result.CALLBACK_NO_ANSWER),
        (A, LegFailure.REJECTED, 1, False, PENDING, Result.CALLBACK_REJECTED),
        (A, LegFailure.FAILED, 1, False, PENDING, Result.CALLBACK_FAILED),
        (A, LegFailure.BUSY, 3, False, FAILED, Result.CALLBACK_BUSY),
        (B, LegFailure.BUSY, 1, False, FAILED, Result.DESTINATION_BUSY),
        (B, LegFailure.NO_ANSWER, 1, False, FAILED, Result.DESTINATION_NO_ANSWER),
        # the table has no destination_rejected: a refusal is a failure with its cause
        (B, LegFailure.REJECTED, 1, False, FAILED, Result.DESTINATION_FAILED),
        (B, LegFailure.FAILED, 1, False, FAILED, Result.DESTINATION_FAILED),
        (B, LegFailure.BUSY, 1, True, PENDING, Result.DESTINATION_BUSY),
        (B, LegFailure.BUSY, 3, True, FAILED, Result.DESTINATION_BUSY),
    ],
)
def test_leg_failed(
    name: LegName,
    failure: LegFailure,
    attempts: int,
    retry_b: bool,
    status: Status,
    result: Result,
) -> None:
    outcome = outcomes.leg_failed(
        name,
        failure,
        "cause 17",
        attempts=attempts,
        max_attempts=3,
        retry_on_destination_failure=retry_b,
    )
    assert outcome == Outcome(status=status, result=result, reason="cause 17")


@pytest.mark.parametrize(
    ("state", "failure", "reason"),
    [
        ({"cause": 17, "sip_code": 486}, LegFailure.BUSY, "cause 17, SIP 486"),
        ({"cause": 19}, LegFailure.NO_ANSWER, "cause 19"),
        ({"cause": 21, "sip_code": 403}, LegFailure.REJECTED, "cause 21, SIP 403"),
        ({"cause": 34}, LegFailure.FAILED, "cause 34"),
        # Asterisk 16 reports cause 0 at our ring timeout: the ring time decides
        ({"cause": 0, "rang": True, "ended_at": 29.5}, LegFailure.NO_ANSWER, "cause 0"),
        ({"cause": 0, "rang": True, "ended_at": 5.0}, LegFailure.FAILED, "cause 0"),
        ({"cause": 0, "rang": False, "ended_at": 30.0}, LegFailure.FAILED, "cause 0"),
        ({"vanished": True, "rang": True, "ended_at": 3.0}, LegFailure.FAILED, "channel vanished"),
    ],
)
def test_unanswered(state: dict[str, object], failure: LegFailure, reason: str) -> None:
    got_failure, got_reason = outcomes.unanswered(leg(destroyed=True, **state))
    assert got_failure is failure
    assert got_reason.startswith(reason)


@pytest.mark.parametrize(
    ("rang", "failure"), [(True, LegFailure.NO_ANSWER), (False, LegFailure.FAILED)]
)
def test_no_verdict(rang: bool, failure: LegFailure) -> None:
    assert outcomes.no_verdict(leg(rang=rang)) == (
        failure,
        "no verdict from Asterisk before the ring timeout",
    )


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ({"ended_at": 10.0}, {"ended_at": 11.0}, "caller hung up"),
        ({"ended_at": 12.0}, {"ended_at": 11.0}, "destination hung up"),
        ({"ended_at": 10.0}, {}, "caller hung up"),
        ({}, {"ended_at": 10.0}, "destination hung up"),
        ({"ended_at": 10.0}, {"ended_at": 10.0}, "caller hung up"),  # a tie: the caller
        ({"vanished": True}, {}, "call lost while ARI was disconnected (Asterisk restart?)"),
        ({}, {"vanished": True}, "call lost while ARI was disconnected (Asterisk restart?)"),
    ],
)
def test_ended_by(a: dict[str, object], b: dict[str, object], reason: str) -> None:
    outcome = outcomes.ended_by(leg(A, **a), leg(B, **b))
    assert outcome == Outcome(status=COMPLETED, result=Result.ANSWERED, reason=reason)


@pytest.mark.parametrize(
    ("phase", "attempts", "status", "result"),
    [
        (Status.BRIDGED, 1, COMPLETED, Result.ANSWERED),
        (Status.CONNECTING, 1, PENDING, Result.ERROR),
        (Status.CALLING, 1, PENDING, Result.ERROR),
        (Status.CALLING, 3, FAILED, Result.ERROR),
    ],
)
def test_shutdown(phase: Status, attempts: int, status: Status, result: Result) -> None:
    outcome = outcomes.shutdown(phase, attempts=attempts, max_attempts=3)
    assert outcome == Outcome(status=status, result=result, reason="hung up at service shutdown")


@pytest.mark.parametrize(
    ("status", "leg_a_known", "live_legs", "step"),
    [
        (Status.CALLING, False, 0, Recovery.RELEASE),  # claimed, never dialled
        (Status.CALLING, True, 0, Recovery.HANG_UP),
        (Status.CALLING, True, 1, Recovery.HANG_UP),  # leg A may still ring: hang it up
        (Status.CONNECTING, True, 2, Recovery.HANG_UP),
        (Status.CONNECTING, True, 0, Recovery.HANG_UP),
        (Status.BRIDGED, True, 2, Recovery.ADOPT),  # the conversation goes on
        (Status.BRIDGED, True, 1, Recovery.ENDED),
        (Status.BRIDGED, True, 0, Recovery.ENDED),
    ],
)
def test_recovery(status: Status, leg_a_known: bool, live_legs: int, step: Recovery) -> None:
    assert outcomes.recovery(status, leg_a_known=leg_a_known, live_legs=live_legs) is step


@pytest.mark.parametrize(
    ("step", "attempts", "status", "result"),
    [
        (Recovery.ENDED, 1, COMPLETED, Result.ANSWERED),
        (Recovery.HANG_UP, 1, PENDING, Result.ERROR),
        (Recovery.HANG_UP, 3, FAILED, Result.ERROR),
    ],
)
def test_recovered(step: Recovery, attempts: int, status: Status, result: Result) -> None:
    outcome = outcomes.recovered(step, attempts=attempts, max_attempts=3)
    assert (outcome.status, outcome.result) == (status, result)


@pytest.mark.parametrize(
    ("row_delay", "attempts", "delay"),
    [
        (None, 0, 60.0),  # first retry: the setting
        (None, 1, 120.0),  # doubling
        (None, 2, 240.0),
        (None, 10, 3600.0),  # capped
        (timedelta(seconds=5), 0, 5.0),  # the row's own delay
        (timedelta(seconds=5), 3, 40.0),
        (timedelta(hours=2), 0, 7200.0),  # the cap never cuts below the base
        (timedelta(hours=2), 3, 7200.0),
        (timedelta(0), 4, 0.0),
    ],
)
def test_retry_delay(row_delay: timedelta | None, attempts: int, delay: float) -> None:
    assert outcomes.retry_delay(row_delay, default=60.0, cap=3600.0, attempts=attempts) == delay


def test_with_leg_values() -> None:
    a = leg(A, cause=16, sip_code=None, answered_at=1.0, ended_at=11.5)
    b = leg(B, cause=17, sip_code=486)
    outcome = outcomes.with_leg_values(Outcome(status=COMPLETED, result=Result.ANSWERED), a, b)
    assert outcome.leg_values() == (16, None, 17, 486, 10.5, None)
    bare = outcomes.with_leg_values(Outcome(status=FAILED, result=Result.ERROR), None, None)
    assert bare.leg_values() == (None,) * 6


@pytest.mark.parametrize(
    ("status", "after"), [(PENDING, FAILED), (FAILED, FAILED), (COMPLETED, COMPLETED)]
)
def test_unretried(status: Status, after: Status) -> None:
    outcome = Outcome(status=status, result=Result.CALLBACK_BUSY, reason="x")
    assert outcomes.unretried(outcome) == Outcome(
        status=after, result=Result.CALLBACK_BUSY, reason="x"
    )


def test_internal_error_names_only_the_type() -> None:
    outcome = outcomes.internal_error(ValueError("secret detail"))
    assert outcome == Outcome(
        status=FAILED, result=Result.ERROR, reason="internal error: ValueError"
    )
