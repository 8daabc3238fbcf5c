"""The identity table and row validation (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from stasis_app.callflow.causes import LegFailure, classify, destination_result
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.plan import InvalidRequest, plan_call
from stasis_app.domain.request import CallbackRequest

HA1 = "0123456789abcdef0123456789abcdef"
HA1_B = "fedcba9876543210fedcba9876543210"


def row(**overrides: Any) -> CallbackRequest:
    now = datetime.now(UTC)
    fields: dict[str, Any] = dict(
        id=1,
        lease_token=uuid4(),
        attempts=0,
        max_attempts=None,
        retry_delay=None,
        next_call=now,
        created_at=now,
        status="calling",
        source="sql",
        username="801",
        md5secret=HA1,
        original_cli="87654321",
        original_cld="2way_12345",
    )
    fields.update(overrides)
    return CallbackRequest(**fields)


def test_seed_row_identity_per_leg() -> None:
    plan = plan_call(row(authname="902"), needs_secret=True)
    assert (plan.leg_a.number, plan.leg_a.caller_id, plan.leg_a.auth_user, plan.leg_a.ha1) == (
        "87654321",
        "87654321",
        "902",
        HA1,
    )
    assert (plan.leg_b.number, plan.leg_b.caller_id, plan.leg_b.auth_user, plan.leg_b.ha1) == (
        "12345",
        "801",
        "902",
        HA1,
    )


def test_authname_omitted_uses_username() -> None:
    plan = plan_call(row(), needs_secret=True)
    assert plan.leg_a.auth_user == plan.leg_b.auth_user == "801"


def test_every_override() -> None:
    plan = plan_call(
        row(
            authname="902",
            original_set_cli="4930",
            twoway_cli="555",
            twoway_authname="903",
            twoway_md5secret=HA1_B.upper(),
        ),
        needs_secret=True,
    )
    assert plan.leg_a.caller_id == "4930"
    assert (plan.leg_b.caller_id, plan.leg_b.auth_user, plan.leg_b.ha1) == ("555", "903", HA1_B)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"original_cld": "12345"}, "original_cld must look like '2way_<CLD>'"),
        ({"original_cld": "2way_"}, "not a dial string"),
        ({"original_cld": "2way_123&PJSIP/999"}, "not a dial string"),
        ({"original_cld": None}, "original_cld is missing"),
        ({"original_cli": ""}, "original_cli is missing"),
        ({"original_cli": "123@evil"}, "original_cli is not a dial string"),
        ({"md5secret": None}, "md5secret is missing"),
        ({"md5secret": "secret"}, "md5secret is not 32 hex digits"),
        ({"username": None}, "username is missing"),
        ({"call_id": "a b"}, "call_id is not printable text"),
        ({"original_cli": "1" * 65}, "original_cli is not a dial string"),
        ({"original_cli": "12\x0034"}, "original_cli is not a dial string"),
    ],
)
def test_invalid_rows_are_refused_with_a_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason.replace("(", r"\(")):
        plan_call(row(**overrides), needs_secret=True)


def test_reason_never_echoes_a_secret() -> None:
    with pytest.raises(InvalidRequest) as info:
        plan_call(row(md5secret="my-plain-password"), needs_secret=True)
    assert "my-plain-password" not in str(info.value)


def test_static_identity_needs_no_secret() -> None:
    assert plan_call(row(md5secret=None), needs_secret=False).leg_a.ha1 is None


@pytest.mark.parametrize(
    ("cause", "rang", "elapsed", "expected"),
    [
        (17, False, 0.1, LegFailure.BUSY),
        (19, True, 10.0, LegFailure.NO_ANSWER),
        (0, True, 10.0, LegFailure.NO_ANSWER),  # Asterisk 16: cause 0 at our timeout
        (0, True, 2.0, LegFailure.FAILED),  # cause 0 long before it: not "no answer"
        (0, False, 10.0, LegFailure.FAILED),  # never rang
        (21, False, 0.1, LegFailure.REJECTED),
        (1, False, 0.1, LegFailure.REJECTED),
        (34, False, 0.1, LegFailure.FAILED),
    ],
)
def test_classify(cause: int, rang: bool, elapsed: float, expected: LegFailure) -> None:
    assert classify(cause, rang=rang, elapsed=elapsed, timeout=10.0) is expected


def test_destination_results_stay_in_the_table_contract() -> None:
    assert [destination_result(f) for f in LegFailure] == [
        "destination_busy",
        "destination_no_answer",
        "destination_failed",
        "destination_failed",
    ]


def test_ids_round_trip() -> None:
    ids = Ids("twoway")
    assert ids.channel(42, 3, "a") == "twoway-42-3a"
    parsed = ids.parse(ids.bridge(42, 3))
    assert parsed is not None and (parsed.request_id, parsed.attempt, parsed.kind) == (42, 3, "br")
    assert ids.parse("1795672917.21") is None
    assert ids.parse("other-42-3a") is None
