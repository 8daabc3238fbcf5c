"""The API's small parts on their own: tokens, rate buckets, loopback, ids, XML-RPC values."""

from __future__ import annotations

import base64
import xmlrpc.client
from datetime import UTC, datetime

import pytest

from stasis_app.api.auth import ANONYMOUS, Guard, TokenAuth
from stasis_app.api.errors import InvalidInput, NotFound, RateLimited, Unauthorized
from stasis_app.api.ratelimit import TokenBuckets
from stasis_app.api.routes import is_loopback
from stasis_app.api.validation import IntakeRules, parse_create, parse_id
from stasis_app.api.xmlrpc_wire import from_wire, parse_call, to_wire
from tests.conftest import ha1


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_tokens_bearer_and_basic() -> None:
    auth = TokenAuth(["alpha", "beta"])
    assert auth.client("Bearer alpha", allow_basic=False) == "token-0"
    assert auth.client("bearer   beta ", allow_basic=False) == "token-1"
    assert auth.client(basic("anyone", "beta"), allow_basic=True) == "token-1"
    assert auth.client(basic("", "alpha"), allow_basic=True) == "token-0"
    for header, allow_basic in (
        (None, True),
        ("", True),
        ("Bearer", True),
        ("Bearer alph", True),
        ("Bearer alpha2", True),
        ("alpha", True),
        (basic("x", "alpha"), False),
        (basic("alpha", ""), True),
        ("Basic !!!", True),
        ("Basic " + "YWxwaGE=", True),
        ("Bearer \udcff", True),
        ("Bearer ü", True),
    ):
        with pytest.raises(Unauthorized):
            auth.client(header, allow_basic=allow_basic)


def test_without_tokens_everyone_is_the_anonymous_client() -> None:
    auth = TokenAuth([])
    assert not auth.enabled
    assert auth.client(None, allow_basic=False) == ANONYMOUS
    assert auth.client("Bearer whatever", allow_basic=False) == ANONYMOUS


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


def test_guard_limits_each_client() -> None:
    now = [0.0]
    guard = Guard(TokenAuth(["t1", "t2"]), TokenBuckets(1.0, clock=lambda: now[0]))
    for _ in range(5):
        guard.admit("Bearer t1", allow_basic=False)
    with pytest.raises(RateLimited) as limited:
        guard.admit("Bearer t1", allow_basic=False)
    assert limited.value.retry_after == pytest.approx(1.0)
    guard.admit("Bearer t2", allow_basic=False)


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
