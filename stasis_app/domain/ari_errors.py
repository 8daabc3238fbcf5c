"""How a request to Asterisk (ARI) can fail: the errors the call flow's ARI port raises.

Each carries the HTTP method and the request *path* only: never the query string (a variable
value or reason could be sensitive), never a request or response body (dynamic config carries
``md5_cred``), never credentials. ``message`` is ARI's own ``{"message": ...}`` text.
"""

from __future__ import annotations

from stasis_app.errors import TwowayError

_MAX_MESSAGE = 200  # an error page from a proxy can be large; keep log lines bounded


class AriError(TwowayError):
    """ARI answered with an error status (or the call could not be made: see subclasses)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.message = message[:_MAX_MESSAGE]
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.method} {self.path}".strip() or "ARI"
        status = "no response" if self.status is None else str(self.status)
        return f"{where}: {status}: {self.message}" if self.message else f"{where}: {status}"

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only constructor: make pickling (e.g. across process pools) round-trip
        return (_rebuild, (type(self), self.message, self.status, self.method, self.path))


def _rebuild(
    cls: type[AriError], message: str, status: int | None, method: str, path: str
) -> AriError:
    return cls(message, status=status, method=method, path=path)


class AriNotFound(AriError):
    """404: the channel, bridge or config object does not exist (any more)."""


class AriConflict(AriError):
    """409: e.g. a bridge or channel id already in use, or a channel not in Stasis."""


class AriUnavailable(AriError):
    """No definite answer from Asterisk: connection refused or reset, timeout, 5xx, garbage.

    The outcome of the call is unknown: an originate may or may not have created the channel.
    """
