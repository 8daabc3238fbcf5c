"""Toll-fraud policy (issue 14): which numbers each leg may dial, and how many callbacks a
username or a destination prefix may have. Pure: no I/O; the store feeds it counts.

Numbers are matched after normalisation to international digits: separators (``.``, ``-``,
``_``) dropped; a leading ``+`` or the international prefix (``00``) removed; a leading national
prefix (``0``) replaced by the country code when both are configured; anything else as written.
Rules are digit prefixes of that form. Deny wins; an empty allow list allows all. Rule sets
stack: a number must pass the global settings and its username's ``callback_policies`` row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from stasis_app.domain.rules import CLD_PREFIX

_SEPARATORS = re.compile(r"[._-]")
_DIGITS = re.compile(r"[0-9]+")


class Rule(StrEnum):
    """Why a request was refused: the label of ``twoway_policy_refusals_total{rule}``."""

    CALLBACK_DENY = "callback_deny"
    CALLBACK_ALLOW = "callback_allow"
    CALLBACK_FORMAT = "callback_format"
    DESTINATION_DENY = "destination_deny"
    DESTINATION_ALLOW = "destination_allow"
    DESTINATION_FORMAT = "destination_format"
    USER_LIVE = "user_live"
    USER_HOURLY = "user_hourly"
    USER_DAILY = "user_daily"
    DESTINATION_HOURLY = "destination_hourly"
    INBOUND_CALLER_HOURLY = "inbound_caller_hourly"
    INBOUND_SPIKE = "inbound_spike"


@dataclass(frozen=True, slots=True)
class Refusal:
    rule: Rule
    reason: str  # goes into result_reason and the API's 422: names the rule and the leg


def parse_prefixes(value: str) -> tuple[str, ...]:
    """A comma-separated setting into prefixes; ValueError naming what is wrong."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if any(not _DIGITS.fullmatch(item) for item in items):
        raise ValueError("must be a comma-separated list of digit prefixes")
    return items


def destination_of(original_cld: str | None) -> str | None:
    """The CLD of ``2way_<CLD>``; None when the column does not have that form."""
    if original_cld is None or not original_cld.startswith(CLD_PREFIX):
        return None
    return original_cld[len(CLD_PREFIX) :] or None


@dataclass(frozen=True, slots=True)
class Numbering:
    international_prefix: str = "00"
    national_prefix: str = ""
    country_code: str = ""

    def normalise(self, number: str) -> str | None:
        """International digits, or None when the number is not a plain number."""
        digits = _SEPARATORS.sub("", number)
        if digits.startswith("+"):
            digits = digits[1:]
        elif self.international_prefix and digits.startswith(self.international_prefix):
            digits = digits[len(self.international_prefix) :]
        elif self.national_prefix and self.country_code and digits.startswith(self.national_prefix):
            digits = self.country_code + digits[len(self.national_prefix) :]
        return digits if _DIGITS.fullmatch(digits) else None


@dataclass(frozen=True, slots=True)
class PrefixRules:
    """One allow and one deny list, and where they come from (for the reason)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_name: str = ""
    deny_name: str = ""

    def __bool__(self) -> bool:
        return bool(self.allow or self.deny)


@dataclass(frozen=True, slots=True)
class _Leg:
    label: str  # "leg A" | "leg B"
    what: str  # "callback number" | "destination"
    deny: Rule
    allow: Rule
    format: Rule


LEG_A = _Leg(
    "leg A", "callback number", Rule.CALLBACK_DENY, Rule.CALLBACK_ALLOW, Rule.CALLBACK_FORMAT
)
LEG_B = _Leg(
    "leg B", "destination", Rule.DESTINATION_DENY, Rule.DESTINATION_ALLOW, Rule.DESTINATION_FORMAT
)


def _longest(number: str, prefixes: Iterable[str]) -> str | None:
    matching = [p for p in prefixes if number.startswith(p)]
    return max(matching, key=len) if matching else None


def check_leg(
    leg: _Leg, number: str | None, rule_sets: Sequence[PrefixRules], numbering: Numbering
) -> Refusal | None:
    """Deny lists of every set first (deny wins), then every non-empty allow list."""
    active = [rules for rules in rule_sets if rules]
    if number is None or not active:
        return None  # a missing number is the call plan's invalid_request, not ours
    digits = numbering.normalise(number)
    if digits is None:
        return Refusal(
            leg.format, f"{leg.label}: {leg.what} is not a plain number (prefix rules apply)"
        )
    for rules in active:
        denied = _longest(digits, rules.deny)
        if denied is not None:
            return Refusal(
                leg.deny,
                f"{leg.label}: {leg.what} matches deny prefix {denied} of {rules.deny_name}",
            )
    for rules in active:
        if rules.allow and _longest(digits, rules.allow) is None:
            return Refusal(
                leg.allow, f"{leg.label}: {leg.what} matches no prefix of {rules.allow_name}"
            )
    return None


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """A ``callback_policies`` row: per-username rules and limits (None: the global limit)."""

    username: str
    destination: PrefixRules = field(default_factory=PrefixRules)
    callback: PrefixRules = field(default_factory=PrefixRules)
    max_live: int | None = None
    max_per_hour: int | None = None
    max_per_day: int | None = None


ACCOUNT_TABLE = "callback_policies"


def account_rules(
    username: str,
    *,
    destination_allow: Sequence[str] = (),
    destination_deny: Sequence[str] = (),
    callback_allow: Sequence[str] = (),
    callback_deny: Sequence[str] = (),
    max_live: int | None = None,
    max_per_hour: int | None = None,
    max_per_day: int | None = None,
) -> AccountPolicy:
    def rules(kind: str, allow: Sequence[str], deny: Sequence[str]) -> PrefixRules:
        return PrefixRules(
            tuple(allow),
            tuple(deny),
            f"{ACCOUNT_TABLE}.{kind}_allow_prefixes",
            f"{ACCOUNT_TABLE}.{kind}_deny_prefixes",
        )

    return AccountPolicy(
        username,
        destination=rules("destination", destination_allow, destination_deny),
        callback=rules("callback", callback_allow, callback_deny),
        max_live=max_live,
        max_per_hour=max_per_hour,
        max_per_day=max_per_day,
    )


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """The global rules (settings) and the numbering they are matched in."""

    numbering: Numbering = field(default_factory=Numbering)
    destination: PrefixRules = field(default_factory=PrefixRules)
    callback: PrefixRules = field(default_factory=PrefixRules)

    def check(
        self, original_cli: str | None, original_cld: str | None, account: AccountPolicy | None
    ) -> Refusal | None:
        """The first refusal for this request (leg A, then leg B), or None: may be dialled."""
        callback_sets = [self.callback, *([account.callback] if account else [])]
        destination_sets = [self.destination, *([account.destination] if account else [])]
        return check_leg(LEG_A, original_cli, callback_sets, self.numbering) or check_leg(
            LEG_B, destination_of(original_cld), destination_sets, self.numbering
        )


# --- limits --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Global limits (0: none); a ``callback_policies`` row overrides the per-username ones."""

    user_max_live: int = 0
    user_max_per_hour: int = 0
    user_max_per_day: int = 0
    destination_hourly: Mapping[str, int] = field(default_factory=dict)  # prefix -> per hour

    def for_user(self, account: AccountPolicy | None) -> tuple[int, int, int]:
        """(live, per hour, per day) for this username; 0 means no limit."""

        def pick(own: int | None, default: int) -> int:
            return default if own is None else own

        if account is None:
            return self.user_max_live, self.user_max_per_hour, self.user_max_per_day
        return (
            pick(account.max_live, self.user_max_live),
            pick(account.max_per_hour, self.user_max_per_hour),
            pick(account.max_per_day, self.user_max_per_day),
        )

    def destination_prefix(self, destination: str | None) -> str | None:
        """The longest configured prefix that counts this destination, if any."""
        if destination is None:
            return None
        return _longest(destination, self.destination_hourly)


def parse_hourly_limits(value: str) -> dict[str, int]:
    """``prefix=count,...`` into a mapping; ValueError naming what is wrong."""
    limits: dict[str, int] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        prefix, sep, count = item.partition("=")
        if not sep or not _DIGITS.fullmatch(prefix.strip()) or not count.strip().isdigit():
            raise ValueError("must be a comma-separated list of <digit prefix>=<count per hour>")
        limits[prefix.strip()] = int(count)
    return limits


@dataclass(slots=True)
class UserCounts:
    """What the database counted for one username (other requests than the batch's)."""

    live: int = 0
    hour: int = 0
    day: int = 0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A claimed request that passed the prefix rules and waits for the limits."""

    username: str
    destination: str | None  # normalised digits, None when not a plain number
    account: AccountPolicy | None
    counted: bool  # admitted before (a retry): per-hour and per-day counts already hold it


def decide_limits(
    candidates: Sequence[Candidate],
    limits: Limits,
    users: Mapping[str, UserCounts],
    destinations: Mapping[str, int],
) -> list[Refusal | None]:
    """One verdict per candidate, in order; each admission counts for those after it."""
    users = {name: UserCounts(c.live, c.hour, c.day) for name, c in users.items()}
    destinations = dict(destinations)
    verdicts: list[Refusal | None] = []
    for cand in candidates:
        counts = users.setdefault(cand.username, UserCounts())
        prefix = None if cand.counted else limits.destination_prefix(cand.destination)
        refusal = _limit_refusal(cand, limits, counts, prefix, destinations.get(prefix or "", 0))
        verdicts.append(refusal)
        if refusal is None:
            counts.live += 1
            if not cand.counted:
                counts.hour += 1
                counts.day += 1
                if prefix is not None:
                    destinations[prefix] = destinations.get(prefix, 0) + 1
    return verdicts


def _limit_refusal(
    cand: Candidate, limits: Limits, counts: UserCounts, prefix: str | None, prefix_count: int
) -> Refusal | None:
    max_live, per_hour, per_day = limits.for_user(cand.account)
    who = f"username {cand.username}"
    if max_live and counts.live >= max_live:
        return Refusal(Rule.USER_LIVE, f"limit: {who} has {max_live} live callbacks (max_live)")
    if cand.counted:
        return None
    if per_hour and counts.hour >= per_hour:
        return Refusal(Rule.USER_HOURLY, f"limit: {who} reached {per_hour} callbacks per hour")
    if per_day and counts.day >= per_day:
        return Refusal(Rule.USER_DAILY, f"limit: {who} reached {per_day} callbacks per day")
    if prefix is not None and prefix_count >= limits.destination_hourly[prefix]:
        return Refusal(
            Rule.DESTINATION_HOURLY,
            f"limit: leg B destination prefix {prefix} reached "
            f"{limits.destination_hourly[prefix]} callbacks per hour",
        )
    return None


def needs_limits(limits: Limits, account: AccountPolicy | None) -> bool:
    """Whether admissions must be counted at all (no limit configured: the seed's path)."""
    return bool(limits.destination_hourly) or any(limits.for_user(account))


@dataclass(frozen=True, slots=True)
class InboundLimits:
    """Triggers per caller per hour, and of all callers per minute (spike guard); 0: none."""

    per_caller_hour: int = 0
    per_minute: int = 0

    def refusal(self, caller_hour: int, minute: int) -> Refusal | None:
        """Given the triggers already counted, whether one more is refused."""
        if self.per_caller_hour and caller_hour >= self.per_caller_hour:
            return Refusal(
                Rule.INBOUND_CALLER_HOURLY,
                f"limit: the caller reached {self.per_caller_hour} inbound triggers per hour",
            )
        if self.per_minute and minute >= self.per_minute:
            return Refusal(
                Rule.INBOUND_SPIKE,
                f"limit: {self.per_minute} inbound triggers per minute reached (spike guard)",
            )
        return None
