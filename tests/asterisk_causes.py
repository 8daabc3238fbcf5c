"""What a real Asterisk reports per call flow, by version: the row's causes and SIP codes.

Measured with tests/integration (sipp as the softswitch) on 16.30.1 and 22.10.1; the version
limits for 20 come from docs/design.md ("Asterisk 16, 20 and 22 differ"). The integration tests
check a real Asterisk against this table and tests/test_simulator_parity.py the simulator, so
the two cannot drift apart unnoticed.
"""

from __future__ import annotations

Version = tuple[int, ...]
# (leg_a_cause, leg_a_sip_code, leg_b_cause, leg_b_sip_code) of the row
Causes = tuple[int | None, int | None, int | None, int | None]


def has_tech_cause(version: Version) -> bool:
    """ChannelHangupRequest.tech_cause (the SIP code) exists from 20.17 / 22.7."""
    return version >= (22, 7) or (20, 17) <= version < (21,)


def no_answer_cause(version: Version) -> int:
    """The cause when our originate timeout expires: 19 from 20.18 / 22.8, 0 before."""
    return 19 if version >= (22, 8) or (20, 18) <= version < (21,) else 0


def far_end_bye_cause(version: Version) -> int:
    """The far end's BYE on an answered channel outside a bridge: 16 on 16, 0 on 20/22.

    In a bridge it is 16 everywhere: the bridge core kicks the channel with NORMAL_CLEARING.
    """
    return 16 if version < (20,) else 0


def expected(flow: str, version: Version) -> Causes:
    sip = has_tech_cause(version)
    no_answer = no_answer_cause(version)
    table: dict[str, Causes] = {
        # the destination hangs up the bridged call; we hang up leg A (DELETE: 16)
        "destination_hangs_up": (16, None, 16, None),
        "leg_a_busy": (17, 486 if sip else None, None, None),
        "leg_a_no_answer": (no_answer, 480 if sip and no_answer == 19 else None, None, None),
        # the softswitch refuses the digest of a wrong HA1 with 403
        "leg_a_wrong_secret": (21, 403 if sip else None, None, None),
        "destination_busy": (16, None, 17, 486 if sip else None),
        "destination_no_answer": (16, None, no_answer, 480 if sip and no_answer == 19 else None),
        # the user's BYE while leg B rings; we cancel leg B (16)
        "user_hangs_up": (far_end_bye_cause(version), None, 16, None),
        # cancel while bridged: we hang up both legs
        "cancel_bridged": (16, None, 16, None),
    }
    return table[flow]


def causes(row: object) -> Causes:
    get = row.__getitem__  # type: ignore[attr-defined]
    return (get("leg_a_cause"), get("leg_a_sip_code"), get("leg_b_cause"), get("leg_b_sip_code"))
