"""Outcome and retry policy: how an attempt ends and whether the row is tried again.

Pure functions of what the call reached: no I/O, no clock (the table-driven tests in
``tests/test_outcomes.py`` pin every rule).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from enum import StrEnum

from stasis_app.callflow.causes import LegFailure, callback_result, classify, destination_result
from stasis_app.callflow.legs import Leg, cause_text
from stasis_app.domain.request import LegName, Outcome, Result, Status

CANCELLED = Outcome(status=Status.CANCELLED, result=Result.CANCELLED, reason="cancelled")
USER_HANGUP = Outcome(
    status=Status.FAILED,
    result=Result.USER_HANGUP,
    reason="caller hung up before the destination answered",
)
SHUTDOWN_REASON = "hung up at service shutdown"
LOST_REASON = "call lost while ARI was disconnected (Asterisk restart?)"


def retry_or_fail(
    result: Result, reason: str, *, retry: bool, attempts: int, max_attempts: int
) -> Outcome:
    """Back to pending when ``retry`` and attempts are left, else failed."""
    status = Status.PENDING if retry and attempts < max_attempts else Status.FAILED
    return Outcome(status=status, result=result, reason=reason)


def our_side(reason: str, *, attempts: int, max_attempts: int) -> Outcome:
    """Failed on our side (Asterisk, ARI), not the user's or the destination's: tried again
    while attempts are left."""
    return retry_or_fail(
        Result.ERROR, reason, retry=True, attempts=attempts, max_attempts=max_attempts
    )


def leg_failed(
    leg: LegName,
    failure: LegFailure,
    reason: str,
    *,
    attempts: int,
    max_attempts: int,
    retry_on_destination_failure: bool,
) -> Outcome:
    """A leg that never answered: leg A is retried; leg B only when the setting says so."""
    if leg is LegName.A:
        result, retry = callback_result(failure), True
    else:
        result, retry = destination_result(failure), retry_on_destination_failure
    return retry_or_fail(result, reason, retry=retry, attempts=attempts, max_attempts=max_attempts)


def unanswered(leg: Leg) -> tuple[LegFailure, str]:
    """Why a leg whose channel is gone never answered, from its cause and ring time."""
    failure = classify(
        leg.cause,
        rang=leg.rang,
        timeout=leg.timeout,
        elapsed=(leg.ended_at or 0) - leg.originated_at,
    )
    return failure, cause_text(leg)


def no_verdict(leg: Leg) -> tuple[LegFailure, str]:
    """Asterisk said nothing final before our guard ran out (we hang the leg up)."""
    failure = LegFailure.NO_ANSWER if leg.rang else LegFailure.FAILED
    return failure, "no verdict from Asterisk before the ring timeout"


def ended_by(leg_a: Leg, leg_b: Leg) -> Outcome:
    """A bridged call ended: who hung up first, or that ARI lost sight of it."""
    if leg_a.vanished or leg_b.vanished:
        reason = LOST_REASON
    else:
        first = leg_a if (leg_a.ended_at or 1e18) <= (leg_b.ended_at or 1e18) else leg_b
        reason = f"{'caller' if first is leg_a else 'destination'} hung up"
    return Outcome(status=Status.COMPLETED, result=Result.ANSWERED, reason=reason)


def max_duration() -> Outcome:
    return Outcome(
        status=Status.COMPLETED, result=Result.ANSWERED, reason="max call duration reached"
    )


def shutdown(phase: Status, *, attempts: int, max_attempts: int) -> Outcome:
    """Hung up at shutdown: a bridged call was answered; anything earlier is tried again."""
    if phase == Status.BRIDGED:
        return Outcome(status=Status.COMPLETED, result=Result.ANSWERED, reason=SHUTDOWN_REASON)
    return retry_or_fail(
        Result.ERROR, SHUTDOWN_REASON, retry=True, attempts=attempts, max_attempts=max_attempts
    )


def not_placed(reason: str) -> Outcome:
    """Leg A was never created (Asterisk said so when asked): tried again, not counted."""
    return Outcome(status=Status.PENDING, result=Result.ERROR, reason=reason, void_attempt=True)


def internal_error(exc: BaseException) -> Outcome:
    return Outcome(
        status=Status.FAILED, result=Result.ERROR, reason=f"internal error: {type(exc).__name__}"
    )


class Recovery(StrEnum):
    """What to do with a live row of a lost instance, once its legs were looked up."""

    RELEASE = "release"  # claimed but never dialled: back to the queue as it was
    ADOPT = "adopt"  # bridged and both legs alive: watch the call to its end
    ENDED = "ended"  # bridged, but a party is gone: the call was answered and is over
    HANG_UP = "hang_up"  # anything else: hang up what lives, count the attempt as failed


def recovery(status: Status, *, leg_a_known: bool, live_legs: int) -> Recovery:
    """A step (ringing, connecting) cannot be resumed reliably without its events."""
    if status == Status.CALLING and not leg_a_known:
        return Recovery.RELEASE
    if status == Status.BRIDGED:
        return Recovery.ADOPT if live_legs == 2 else Recovery.ENDED
    return Recovery.HANG_UP


def recovered(step: Recovery, *, attempts: int, max_attempts: int) -> Outcome:
    """The outcome of a recovered row that was neither released nor adopted."""
    if step is Recovery.ENDED:
        return Outcome(
            status=Status.COMPLETED,
            result=Result.ANSWERED,
            reason="ended while the service instance was lost",
        )
    return retry_or_fail(
        Result.ERROR,
        "service instance lost during the call; its live legs were hung up",
        retry=True,
        attempts=attempts,
        max_attempts=max_attempts,
    )


def with_leg_values(outcome: Outcome, leg_a: Leg | None, leg_b: Leg | None) -> Outcome:
    """The per-leg columns: causes, SIP codes, answered seconds."""
    return replace(
        outcome,
        leg_a_cause=leg_a.cause if leg_a else None,
        leg_a_sip_code=leg_a.sip_code if leg_a else None,
        leg_b_cause=leg_b.cause if leg_b else None,
        leg_b_sip_code=leg_b.sip_code if leg_b else None,
        leg_a_duration=leg_a.duration if leg_a else None,
        leg_b_duration=leg_b.duration if leg_b else None,
    )


def retry_delay(row_delay: timedelta | None, *, default: float, cap: float, attempts: int) -> float:
    """TWOWAY_RETRY_DELAY (or the row's) before the first retry, doubling, capped.

    ``attempts``: the row's attempts before this one. The cap never cuts below the base.
    """
    base = row_delay.total_seconds() if row_delay is not None else default
    attempts = max(1, attempts + 1)
    delay: float = base * 2.0 ** (attempts - 1)
    return min(delay, max(cap, base))


def unretried(outcome: Outcome) -> Outcome:
    """A retry the store refused (cancelled meanwhile): finish it failed; the store keeps a
    cancelled row cancelled."""
    if outcome.status == Status.PENDING:
        return replace(outcome, status=Status.FAILED)
    return outcome
