"""What can go wrong in an API call, with its HTTP status (JSON) and fault code (XML-RPC).

Both front ends raise these and translate them at one place each, so the two interfaces can
never disagree on what an error means.

| error          | HTTP | fault |
|----------------|------|-------|
| InvalidInput   | 422  | 1     |
| NotFound       | 404  | 2     |
| Conflict       | 409  | 3     |
| Unauthorized   | 401  | 4     |
| (internal)     | 500  | 5     |
| BadRequest     | 400  | 6     |
| NoSuchMethod   | 404  | 7     |
| RateLimited    | 429  | 8     |
| TooLarge       | 413  | 9     |
| PolicyRefused  | 422  | 10    |
| Forbidden      | 403  | 11    |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from stasis_app.errors import TwowayError

INTERNAL_STATUS = 500
INTERNAL_FAULT = 5


@dataclass(frozen=True, slots=True)
class Problem:
    """One rejected field: its name and why. Never the value (it may be a secret)."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class ApiError(TwowayError):
    http_status: ClassVar[int]
    fault_code: ClassVar[int]
    kind: ClassVar[str]  # the JSON body's "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.kind, "message": self.message}

    def fault_string(self) -> str:
        return self.message


class InvalidInput(ApiError):
    http_status, fault_code, kind = 422, 1, "invalid"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("invalid input: " + "; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = problems

    def body(self) -> dict[str, Any]:
        return {**super().body(), "fields": [p.as_dict() for p in self.problems]}


class NotFound(ApiError):
    http_status, fault_code, kind = 404, 2, "not_found"


class Conflict(ApiError):
    http_status, fault_code, kind = 409, 3, "conflict"

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status

    def body(self) -> dict[str, Any]:
        return {**super().body(), "status": self.status}


class Unauthorized(ApiError):
    http_status, fault_code, kind = 401, 4, "unauthorized"


class BadRequest(ApiError):
    http_status, fault_code, kind = 400, 6, "bad_request"


class NoSuchMethod(ApiError):
    http_status, fault_code, kind = 404, 7, "no_such_method"


class RateLimited(ApiError):
    http_status, fault_code, kind = 429, 8, "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded, retry in {retry_after:.2f} s")
        self.retry_after = retry_after


class TooLarge(ApiError):
    http_status, fault_code, kind = 413, 9, "too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


class PolicyRefused(ApiError):
    """The destination policy refuses the request: nothing is written."""

    http_status, fault_code, kind = 422, 10, "policy_refused"

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule

    def body(self) -> dict[str, Any]:
        return {**super().body(), "rule": self.rule}


class Forbidden(ApiError):
    """A valid token without the scope the call needs."""

    http_status, fault_code, kind = 403, 11, "forbidden"
