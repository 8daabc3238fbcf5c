"""Who may call the API (TWOWAY_API_TOKENS), and how often (per token).

Tokens come as ``Authorization: Bearer <token>``; XML-RPC also takes HTTP Basic with any user
name and the token as the password. Comparison is constant time: SHA-256 of the given token
against SHA-256 of every configured one (fixed lengths, no early exit), so neither a token's
value nor its length can be timed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from stasis_app.api.errors import RateLimited, Unauthorized
from stasis_app.api.ratelimit import TokenBuckets

ANONYMOUS = "anonymous"  # the one client when no tokens are configured (loopback only)


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
    def __init__(self, tokens: Sequence[str]) -> None:
        self._digests = [_digest(t.encode()) for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def client(self, authorization: str | None, *, allow_basic: bool) -> str:
        """The caller's rate-limit key; Unauthorized without a valid token."""
        if not self._digests:
            return ANONYMOUS
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
        return f"token-{found}"


class Guard:
    """Authentication, then the caller's rate limit; raises the ApiError that applies."""

    def __init__(self, auth: TokenAuth, buckets: TokenBuckets) -> None:
        self.auth = auth
        self.buckets = buckets

    def admit(self, authorization: str | None, *, allow_basic: bool) -> None:
        client = self.auth.client(authorization, allow_basic=allow_basic)
        wait = self.buckets.take(client)
        if wait > 0:
            raise RateLimited(wait)
