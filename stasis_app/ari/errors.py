"""The ARI client's errors (defined in ``domain.ari_errors``) and which HTTP status maps to each."""

from __future__ import annotations

from stasis_app.domain.ari_errors import AriConflict, AriError, AriNotFound, AriUnavailable

__all__ = ["AriConflict", "AriError", "AriNotFound", "AriUnavailable", "error_for_status"]


def error_for_status(status: int, message: str, *, method: str, path: str) -> AriError:
    """The exception class a non-2xx status maps to."""
    cls: type[AriError]
    if status == 404:
        cls = AriNotFound
    elif status == 409:
        cls = AriConflict
    elif status >= 500:
        cls = AriUnavailable
    else:
        cls = AriError
    return cls(message, status=status, method=method, path=path)
