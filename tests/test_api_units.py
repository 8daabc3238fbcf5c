"""The API's small parts on their own: tokens, rate buckets, loopback, ids, XML-RPC values."""

from __future__ import annotations

import base64
import re
import xmlrpc.client
from datetime import UTC, datetime

import pytest

from stasis_app.api.auth import ANONYMOUS, Client, Guard, TokenAuth, parse_tokens
from stasis_app.api.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from stasis_app.api.ratelimit import TokenBuckets
from stasis_app.api.validation import IntakeRules, parse_create, parse_id
from stasis_app.api.xmlrpc_wire import from_wire, parse_call, to_wire
from stasis_app.config import is_loopback
from stasis_app.errors import ConfigError
from tests.conftest import ha1
from tests.test_api_support import basic

ALPHA = "alpha-0123456789ab"
BETA = "beta-0123456789abc"


def test_tokens_bearer_and_basic() -> None:
    auth = TokenAuth(parse_tokens([ALPHA, BETA]))
    assert auth.client(f"Bearer {ALPHA}", allow_basic=False).key == "token-0"
    assert auth.client(f"bearer   {BETA} ", allow_basic=False).key == "token-1"
    assert auth.client(basic("anyone", BETA), allow_basic=True).key == "token-1"
    assert auth.client(basic("", ALPHA), allow_basic=True).key == "token-0"
    for header, allow_basic in (
        (None, True),
        ("", True),
        ("Bearer", True),
        (f"Bearer {ALPHA[:-1]}", True),
        (f"Bearer {ALPHA}2", True),
        (ALPHA, True),
        (basic("x", ALPHA), False),
        (basic(ALPHA, ""), True),
        ("Basic !!!", True),
        ("Basic " + base64.b64encode(ALPHA.encode()).decode(), True),
        ("Bearer \udcff", True),
        ("Bearer ü", True),
    ):
        with pytest.raises(Unauthorized):
            auth.client(header, allow_basic=allow_basic)


def test_without_tokens_everyone_is_the_anonymous_client() -> None:
    auth = TokenAuth([])
    assert not auth.enabled
    assert auth.client(None, allow_basic=False).key == ANONYMOUS
    assert auth.client("Bearer whatever", allow_basic=False).key == ANONYMOUS


def test_token_buckets_burst_then_rate() -> None:
    now = [100.0]
    buckets = TokenBuckets(2.0, clock=lambda: now[0])
    assert buckets.burst == 5.0  # at least a few at once
    assert [buckets.take("a") for _ in range(5)] == [0.0] * 5
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # another key, another bucket
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert TokenBuckets(50.0).burst == 50.0  # one second's worth


def _guard(now: list[float], failures_per_minute: float = 10) -> Guard:
    return Guard(
        TokenAuth(parse_tokens([ALPHA, BETA])),
        TokenBuckets(1.0, clock=lambda: now[0]),
        TokenBuckets(failures_per_minute / 60, burst=failures_per_minute, clock=lambda: now[0]),
    )


def test_guard_limits_each_client() -> None:
    now = [0.0]
    guard = _guard(now)
    for _ in range(5):
        guard.admit(f"Bearer {ALPHA}", address="10.0.0.1", allow_basic=False)
    with pytest.raises(RateLimited) as limited:
        guard.admit(f"Bearer {ALPHA}", address="10.0.0.1", allow_basic=False)
    assert limited.value.retry_after == pytest.approx(1.0)
    guard.admit(f"Bearer {BETA}", address="10.0.0.1", allow_basic=False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.net", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_parse_id() -> None:
    assert parse_id(7) == parse_id("7") == 7
    for missing in (0, -1, 2**63, "0", "9" * 30):
        with pytest.raises(NotFound):
            parse_id(missing)
    for wrong in ("", "1.5", "x", "٣", True, 1.0, None, [1]):
        with pytest.raises(InvalidInput):
            parse_id(wrong)


def test_password_becomes_ha1_of_the_auth_user() -> None:
    rules = IntakeRules(default_realm="softswitch.lab", require_secret=True)
    base = {"username": "801", "original_cli": "1", "original_cld": "2way_2"}
    new = parse_create({**base, "authname": "902", "password": "pw-902"}, rules)
    assert new.md5secret == ha1("902") and "pw-902" not in repr(new)
    upper = parse_create({**base, "md5secret": ha1("801").upper()}, rules)
    assert upper.md5secret == ha1("801")
    with pytest.raises(InvalidInput) as not_struct:
        parse_create(["username"], rules)
    assert not_struct.value.problems[0].field == "body"


def test_xmlrpc_values_both_ways() -> None:
    assert from_wire(xmlrpc.client.DateTime("20300102T03:04:05")) == datetime(
        2030, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    odd = xmlrpc.client.DateTime("garbage")
    assert from_wire(odd) is odd  # left for validation to refuse
    assert to_wire({"a": None, "b": [1, None], "c": 2**40, "d": "x\x00y", "e": True}) == {
        "b": [1],
        "c": str(2**40),
        "d": "x?y",
        "e": True,
    }
    name, params = parse_call(xmlrpc.client.dumps((1, "a"), "callback.get").encode())
    assert (name, params) == ("callback.get", (1, "a"))


class CountingAuth(TokenAuth):
    """The real TokenAuth, counting how often it is asked to authenticate."""

    calls = 0

    def client(self, authorization: str | None, *, allow_basic: bool) -> Client:
        self.calls += 1
        return super().client(authorization, allow_basic=allow_basic)


def test_failed_authentications_are_throttled_per_address_before_authenticating() -> None:
    now = [0.0]
    auth = CountingAuth(parse_tokens([ALPHA]))
    guard = Guard(auth, TokenBuckets(100.0), TokenBuckets(3 / 60, burst=3, clock=lambda: now[0]))
    for _ in range(3):
        with pytest.raises(Unauthorized):
            guard.admit("Bearer wrong-guess-0123456", address="10.0.0.9", allow_basic=False)
    assert auth.calls == 3
    # The budget is spent: refused before any authentication, even with the right token.
    with pytest.raises(RateLimited) as limited:
        guard.admit(f"Bearer {ALPHA}", address="10.0.0.9", allow_basic=False)
    assert auth.calls == 3
    assert limited.value.retry_after == pytest.approx(20.0)  # one failure back per 20 s
    # Another address has its own budget; a success spends nothing of it.
    for _ in range(5):
        assert guard.admit(f"Bearer {ALPHA}", address="10.0.0.10", allow_basic=False)
    now[0] += 20
    assert guard.admit(f"Bearer {ALPHA}", address="10.0.0.9", allow_basic=False).key == "token-0"


@pytest.mark.parametrize(
    ("entries", "scopes"),
    [
        ([ALPHA], [{"read", "create", "cancel"}]),  # as before scopes existed: everything
        ([f"{ALPHA}:read"], [{"read"}]),
        ([f"{ALPHA}:read+create", BETA], [{"read", "create"}, {"read", "create", "cancel"}]),
        ([f"{ALPHA}: cancel + read"], [{"read", "cancel"}]),
    ],
)
def test_token_scopes(entries: list[str], scopes: list[set[str]]) -> None:
    assert [set(t.scopes) for t in parse_tokens(entries)] == scopes


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["short-token"], "entry 1 is shorter than 16 characters"),
        ([ALPHA, "short-token:read"], "entry 2 is shorter than 16 characters"),
        ([f"{ALPHA}:write"], "entry 1: after ':' come scopes joined by '+'"),
        ([f"{ALPHA}:read,create"], "entry 1: after ':' come scopes"),
        ([f"{ALPHA}:"], "entry 1: after ':' come scopes"),
    ],
)
def test_bad_tokens_are_refused_without_echoing_them(entries: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        parse_tokens(entries)
    assert not any(entry.partition(":")[0] in str(refused.value) for entry in entries)


def test_a_client_without_the_scope_is_forbidden() -> None:
    (token,) = parse_tokens([f"{ALPHA}:read"])
    client = TokenAuth([token]).client(f"Bearer {ALPHA}", allow_basic=False)
    client.require("read")
    with pytest.raises(Forbidden, match="lacks the 'create' scope"):
        client.require("create")
