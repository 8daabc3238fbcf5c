"""Why a leg that never answered failed, from what Asterisk reported and what we know.

Q.850 causes as recorded in ari-traces: 17 busy, 19 no answer, 21 rejected (403), 1 unallocated
(404). Asterisk 16 (and 20 < 20.18, 22 < 22.8) report cause 0 when our originate timeout expires,
so "no answer" is also concluded from our own ring timer, not from the cause alone.
"""

from __future__ import annotations

from enum import StrEnum

from stasis_app.domain.request import Result

BUSY = frozenset({17})
NO_ANSWER = frozenset({18, 19})
REJECTED = frozenset({1, 3, 21, 22, 28})
# How close to our ring timeout a cause-0 end must come to count as "no answer".
TIMEOUT_SLACK = 1.0


class LegFailure(StrEnum):
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    FAILED = "failed"


def classify(cause: int | None, *, rang: bool, elapsed: float, timeout: float) -> LegFailure:
    """Classify the end of an unanswered leg.

    ``rang``: a Dial RINGING (or Ringing state) was seen; ``elapsed``: seconds since originate.
    """
    if cause in BUSY:
        return LegFailure.BUSY
    if cause in NO_ANSWER:
        return LegFailure.NO_ANSWER
    if cause in REJECTED:
        return LegFailure.REJECTED
    if cause in (None, 0, 16) and rang and elapsed >= timeout - TIMEOUT_SLACK:
        return LegFailure.NO_ANSWER
    return LegFailure.FAILED


def callback_result(failure: LegFailure) -> Result:
    return Result(f"callback_{failure.value}")


def destination_result(failure: LegFailure) -> Result:
    # The table has no destination_rejected: a refusal is a failure with its cause recorded.
    if failure in (LegFailure.BUSY, LegFailure.NO_ANSWER):
        return Result(f"destination_{failure.value}")
    return Result.DESTINATION_FAILED
