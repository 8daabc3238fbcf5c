"""Q.850 hangup causes and how Asterisk maps them (texts, dial status, SIP codes)."""

from __future__ import annotations

from typing import NamedTuple

# ast_cause2str() texts, as ChannelDestroyed.cause_txt carries them.
_TEXTS: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    26: "Answered elsewhere",
    28: "Invalid number format (incomplete number)",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    58: "Bearer capability not available",
    127: "Interworking, unspecified",
}

# DELETE /channels/{id}?reason=... (convert_reason_to_hangup_code in resource_channels.c).
HANGUP_REASONS: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}

# chan_pjsip hangup_cause2sip(): the final response an unanswered inbound caller gets.
_SIP_FOR_CAUSE: dict[int, int] = {
    1: 404,
    3: 404,
    17: 486,
    18: 408,
    19: 480,
    20: 480,
    21: 403,
    22: 410,
    28: 484,
    31: 480,
    34: 503,
    38: 500,
    58: 488,
    127: 500,
}

NORMAL_CLEARING = 16
EXPLICIT_HANGUP = 32  # AST_SOFTHANGUP_EXPLICIT: ChannelHangupRequest.cause of an ARI DELETE


def cause_text(cause: int) -> str:
    return _TEXTS.get(cause, "Unknown")


def dial_status(cause: int) -> str:
    """ast_hangup_cause_to_dial_status(): 404 and 403 both end as NOANSWER (see traces)."""
    if cause == 17:
        return "BUSY"
    if cause == 34:
        return "CONGESTION"
    if cause in (3, 20):
        return "CHANUNAVAIL"
    return "NOANSWER"


def sip_for_cause(cause: int) -> int:
    """0 in chan_pjsip means "no match": the caller gets 603 Decline."""
    return _SIP_FOR_CAUSE.get(cause, 603)


class Failure(NamedTuple):
    """How an outbound leg fails: Q.850 cause and the SIP code (``tech_cause``)."""

    cause: int
    sip: int


# Script actions that end the call with a SIP error response.
FAILURES: dict[str, Failure] = {
    "busy": Failure(17, 486),
    "reject403": Failure(21, 403),
    "reject404": Failure(1, 404),
    "congestion": Failure(34, 503),
    "unreachable": Failure(18, 408),  # no answer to the INVITE: pjsip's own 408
}
AUTH_REJECTED = Failure(21, 403)  # the softswitch refused our digest (wrong HA1 / user / realm)
AUTH_MISSING = Failure(21, 401)  # challenged, and the endpoint has no credentials to answer
