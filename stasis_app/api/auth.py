"""Who may call the API (TWOWAY_API_TOKENS), what they may do, and how often.

Tokens come as ``Authorization: Bearer <token>``; XML-RPC also takes HTTP Basic with any user
name and the token as the password. Comparison is constant time: SHA-256 of the given token
against SHA-256 of every configured one (fixed lengths, no early exit), so neither a token's
value nor its length can be timed.

Each entry of TWOWAY_API_TOKENS is ``<token>`` (every scope, as before scopes existed) or
``<token>:<scope>+<scope>`` with the scopes ``read``, ``create``, ``cancel``. A client address
that fails authentication too often is refused (429) before any authentication work is done.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from stasis_app import metrics
from stasis_app.api.errors import Forbidden, RateLimited, Unauthorized
from stasis_app.api.ratelimit import TokenBuckets
from stasis_app.errors import ConfigError

ANONYMOUS = "anonymous"  # the one client when no tokens are configured (loopback only)
SCOPES = ("read", "create", "cancel")
MIN_TOKEN_LENGTH = 16  # a shorter token can be guessed


@dataclass(frozen=True, slots=True)
class ApiToken:
    secret: str = field(repr=False)
    scopes: frozenset[str] = frozenset(SCOPES)


def parse_tokens(entries: Sequence[str]) -> list[ApiToken]:
    """TWOWAY_API_TOKENS entries; ConfigError naming the entry by number, never its value."""
    tokens = []
    for number, entry in enumerate(entries, 1):
        secret, sep, scopes = entry.rpartition(":")
        names = tuple(name.strip() for name in scopes.split("+")) if sep else SCOPES
        if not sep:
            secret = entry
        elif not all(name in SCOPES for name in names):
            raise ConfigError(
                f"TWOWAY_API_TOKENS entry {number}: after ':' come scopes joined by '+' "
                f"({', '.join(SCOPES)})"
            )
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"TWOWAY_API_TOKENS entry {number} is shorter than {MIN_TOKEN_LENGTH} characters"
            )
        tokens.append(ApiToken(secret, frozenset(names)))
    return tokens


@dataclass(frozen=True, slots=True)
class Client:
    """An authenticated caller: its rate-limit key (never the token) and its scopes."""

    key: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this token lacks the '{scope}' scope")


ANONYMOUS_CLIENT = Client(ANONYMOUS, frozenset(SCOPES))


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def _credential(authorization: str, allow_basic: bool) -> bytes | None:
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value.encode("utf-8", "surrogatepass")
    if scheme.lower() == "basic" and allow_basic:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        _user, sep, password = decoded.partition(b":")
        return password if sep and password else None
    return None


class TokenAuth:
    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._digests = [_digest(t.secret.encode()) for t in tokens]
        self._scopes = [t.scopes for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def client(self, authorization: str | None, *, allow_basic: bool) -> Client:
        """The caller; Unauthorized without a valid token."""
        if not self._digests:
            return ANONYMOUS_CLIENT
        how = "'Authorization: Bearer <token>'" + (" or HTTP Basic" if allow_basic else "")
        secret = _credential(authorization, allow_basic) if authorization else None
        if secret is None:
            raise Unauthorized(f"a token is required: send {how}")
        given = _digest(secret)
        found = -1
        for index, known in enumerate(self._digests):
            if hmac.compare_digest(given, known) and found < 0:
                found = index
        if found < 0:
            raise Unauthorized("the token is not valid")
        return Client(f"token-{found}", self._scopes[found])


class Guard:
    """The client address's failure budget, authentication, then the caller's rate limit;
    raises the ApiError that applies."""

    def __init__(self, auth: TokenAuth, buckets: TokenBuckets, failures: TokenBuckets) -> None:
        self.auth = auth
        self.buckets = buckets
        self.failures = failures  # failed authentications, keyed by client address

    def admit(self, authorization: str | None, *, address: str | None, allow_basic: bool) -> Client:
        where = address or "unknown"
        # Before any hashing: a client guessing tokens costs us one lookup per try.
        wait = self.failures.wait(where) if self.auth.enabled else 0.0
        if wait > 0:
            metrics.API_AUTH_FAILURES.labels("throttled").inc()
            raise RateLimited(wait)
        try:
            client = self.auth.client(authorization, allow_basic=allow_basic)
        except Unauthorized:
            self.failures.take(where)
            metrics.API_AUTH_FAILURES.labels("rejected").inc()
            raise
        wait = self.buckets.take(client.key)
        if wait > 0:
            raise RateLimited(wait)
        return client
