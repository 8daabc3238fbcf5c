"""The pure policy module: normalisation, prefix rules, limit decisions (no I/O)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stasis_app.config import Settings
from stasis_app.domain.policy import (
    Candidate,
    DestinationPolicy,
    Limits,
    Numbering,
    PrefixRules,
    Rule,
    UserCounts,
    account_rules,
    decide_limits,
    parse_hourly_limits,
    parse_prefixes,
)

GERMANY = Numbering(international_prefix="00", national_prefix="0", country_code="49")


@pytest.mark.parametrize(
    ("numbering", "number", "expected"),
    [
        (Numbering(), "12345", "12345"),
        (Numbering(), "+4930123", "4930123"),
        (Numbering(), "004930123", "4930123"),
        (Numbering(), "030123", "030123"),  # no national prefix configured: as written
        (GERMANY, "030123", "4930123"),
        (GERMANY, "004930123", "4930123"),  # international wins over national
        (GERMANY, "+49-30.12_3", "4930123"),  # separators are not digits a switch dials
        (Numbering(international_prefix="011"), "01144123", "44123"),
        (Numbering(international_prefix=""), "0044123", "0044123"),
        (Numbering(), "12*3", None),
        (Numbering(), "abc", None),
        (Numbering(), "+", None),
    ],
)
def test_normalise(numbering: Numbering, number: str, expected: str | None) -> None:
    assert numbering.normalise(number) == expected


DEST = PrefixRules(("49", "44"), ("4990", "900"), "DEST_ALLOW", "DEST_DENY")
CALLBACK = PrefixRules((), ("1900",), "CB_ALLOW", "CB_DENY")
POLICY = DestinationPolicy(GERMANY, DEST, CALLBACK)


@pytest.mark.parametrize(
    ("cli", "cld", "rule", "reason"),
    [
        ("4930111", "2way_4930222", None, None),
        ("4930111", "2way_+4930222", None, None),
        (
            "4930111",
            "2way_09001234",
            Rule.DESTINATION_DENY,
            "leg B: destination matches deny prefix 4990 of DEST_DENY",
        ),
        (
            "4930111",
            "2way_900123",
            Rule.DESTINATION_DENY,
            "leg B: destination matches deny prefix 900 of DEST_DENY",
        ),
        (
            "4930111",
            "2way_0033123",
            Rule.DESTINATION_ALLOW,
            "leg B: destination matches no prefix of DEST_ALLOW",
        ),
        (
            "4930111",
            "2way_12#3",
            Rule.DESTINATION_FORMAT,
            "leg B: destination is not a plain number (prefix rules apply)",
        ),
        (
            "+1900555",
            "2way_4930222",
            Rule.CALLBACK_DENY,
            "leg A: callback number matches deny prefix 1900 of CB_DENY",
        ),
        (
            "*99",
            "2way_4930222",
            Rule.CALLBACK_FORMAT,
            "leg A: callback number is not a plain number (prefix rules apply)",
        ),
        # leg A is checked first (it is dialled first)
        ("1900555", "2way_900", Rule.CALLBACK_DENY, None),
        # a malformed column is the call plan's invalid_request, not a policy refusal
        ("4930111", "12345", None, None),
        (None, "2way_4930222", None, None),
    ],
)
def test_global_rules(cli: str | None, cld: str, rule: Rule | None, reason: str | None) -> None:
    refusal = POLICY.check(cli, cld, None)
    assert (refusal.rule if refusal else None) == rule
    if reason is not None:
        assert refusal is not None and refusal.reason == reason


def test_no_rules_allow_anything() -> None:
    assert DestinationPolicy().check("*#abc", "2way_anything-at-all", None) is None


@pytest.mark.parametrize(
    ("cld", "rule"),
    [
        ("2way_4930222", None),
        ("2way_4940222", Rule.DESTINATION_ALLOW),  # the account allows only 4930
        ("2way_4930999", Rule.DESTINATION_DENY),  # the account denies 4930999
        ("2way_4990123", Rule.DESTINATION_DENY),  # the global deny still holds
    ],
)
def test_account_rules_stack_on_the_global_ones(cld: str, rule: Rule | None) -> None:
    account = account_rules("801", destination_allow=["4930"], destination_deny=["4930999"])
    refusal = POLICY.check("4930111", cld, account)
    assert (refusal.rule if refusal else None) == rule
    if refusal is not None and "4930" in refusal.reason and rule is Rule.DESTINATION_DENY:
        assert "callback_policies.destination_deny_prefixes" in refusal.reason


def test_deny_wins_over_allow_of_any_set() -> None:
    account = account_rules("801", destination_allow=["4990"])
    refusal = POLICY.check("4930111", "2way_4990123", account)
    assert refusal is not None and refusal.rule is Rule.DESTINATION_DENY


@pytest.mark.parametrize("bad", ["1a", "12,,x", "+49", "4 9"])
def test_prefix_lists_are_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="digit prefixes"):
        parse_prefixes(bad)
    with pytest.raises(ValidationError):
        Settings(destination_deny_prefixes=bad)


def test_settings_build_the_policy_and_limits() -> None:
    settings = Settings(
        destination_deny_prefixes=" 900 ,1900",
        callback_allow_prefixes="49",
        number_national_prefix="0",
        number_country_code="49",
        destination_hourly_limits="44=10, 4490=2",
        user_max_live=2,
    )
    policy = settings.destination_policy
    assert policy.destination.deny == ("900", "1900")
    assert policy.callback.allow == ("49",)
    assert policy.numbering == GERMANY
    assert settings.limits.destination_hourly == {"44": 10, "4490": 2}
    assert settings.limits.user_max_live == 2
    with pytest.raises(ValidationError, match="go together"):
        Settings(number_national_prefix="0")
    with pytest.raises(ValueError, match="prefix>=<count"):
        parse_hourly_limits("44")


def test_the_defaults_are_the_seed_behaviour() -> None:
    settings = Settings()
    assert settings.destination_policy.check("1", "2way_900", None) is None
    assert not any(settings.limits.for_user(None))
    assert not settings.limits.destination_hourly


def _cand(
    user: str = "801", dest: str | None = "4930", *, counted: bool = False, **kw: int
) -> Candidate:
    account = account_rules(user, **kw) if kw else None  # type: ignore[arg-type]
    return Candidate(user, dest, account, counted)


@pytest.mark.parametrize(
    ("limits", "counts", "batch", "expected"),
    [
        # live at once: the database's live rows plus this batch's admissions
        (
            Limits(user_max_live=2),
            {"801": UserCounts(live=1)},
            [_cand(), _cand()],
            [None, Rule.USER_LIVE],
        ),
        (
            Limits(user_max_per_hour=1),
            {},
            [_cand(), _cand(), _cand("802")],
            [None, Rule.USER_HOURLY, None],
        ),
        (Limits(user_max_per_day=5), {"801": UserCounts(day=5)}, [_cand()], [Rule.USER_DAILY]),
        # a retry was counted when first admitted: only the live limit applies to it
        (Limits(user_max_per_hour=1), {"801": UserCounts(hour=1)}, [_cand(counted=True)], [None]),
        (
            Limits(user_max_live=1),
            {"801": UserCounts(live=1)},
            [_cand(counted=True)],
            [Rule.USER_LIVE],
        ),
        # the account's own limit replaces the global one; 0 there means none
        (Limits(user_max_per_hour=1), {"801": UserCounts(hour=3)}, [_cand(max_per_hour=0)], [None]),
        (Limits(), {"801": UserCounts(hour=3)}, [_cand(max_per_hour=3)], [Rule.USER_HOURLY]),
        # destination prefixes: the longest configured prefix counts
        (
            Limits(destination_hourly={"49": 100, "4930": 1}),
            {},
            [_cand(dest="4930111"), _cand(dest="4930222", user="802"), _cand(dest="4940")],
            [None, Rule.DESTINATION_HOURLY, None],
        ),
        (
            Limits(destination_hourly={"44": 1}),
            {},
            [_cand(dest=None), _cand(dest="441")],
            [None, None],
        ),
    ],
)
def test_limit_decisions(
    limits: Limits,
    counts: dict[str, UserCounts],
    batch: list[Candidate],
    expected: list[Rule | None],
) -> None:
    prefixes = {"4930": 0, "49": 0, "44": 0}
    verdicts = decide_limits(batch, limits, counts, prefixes)
    assert [v.rule if v else None for v in verdicts] == expected
