"""Exceptions of the simulator."""

from __future__ import annotations

from typing import Any


class SimulatorError(Exception):
    """Root of the simulator's exceptions: its Python API was used wrongly (unknown channel,
    bad script, ...) or an ARI request fails."""


class AriHttpError(SimulatorError):
    """An ARI request fails: becomes a JSON error response with Asterisk's status and text.

    ``body`` is the whole JSON body: almost always ``{"message": ...}``, but Asterisk's
    "allocation failed" answer is ``{"error": "Allocation failed"}`` and is reproduced as is.
    """

    def __init__(self, status: int, message: str, *, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body: dict[str, Any] = body if body is not None else {"message": message}


def allocation_failed() -> AriHttpError:
    """What Asterisk answers when it cannot create a channel (unknown endpoint, no contact)."""
    return AriHttpError(500, "Allocation failed", body={"error": "Allocation failed"})
