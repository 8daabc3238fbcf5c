"""The operator commands' place in ``twoway-callback``: their parsers and how they run.

Each gets the service's own ``Settings`` (the same environment ``run`` reads) and a small pool
on the same database; a database that is not migrated is refused as ``run`` refuses it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from stasis_app.api.errors import ApiError, InvalidInput
from stasis_app.config import Settings
from stasis_app.errors import TwowayError
from stasis_app.ops import accounts, doctor, queue
from stasis_app.ops.output import EXIT_FAILED, EXIT_USAGE, OpsError
from stasis_app.store.database import create_pool, database_url
from stasis_app.store.migrations import check_schema

QUEUE_COMMANDS = frozenset({"list", "show", "create", "cancel", "retry", "accounts"})
_POOL_SIZE = 2


def add_parsers(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="JSON for scripts")
    doctor.add_parser(sub)
    queue.add_parsers(sub, common)
    accounts.add_parsers(sub, common)


@contextlib.asynccontextmanager
async def service_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    async with database_url(settings) as url:
        pool = await create_pool(url, _POOL_SIZE)
        try:
            async with pool.acquire() as conn:
                await check_schema(conn)
            yield pool
        finally:
            await pool.close()


async def run_queue_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one queue command; errors are a line on stderr and an exit code."""
    try:
        async with service_pool(settings) as pool:
            if args.command == "accounts":
                return await accounts.run(pool, settings, args)
            return await queue.run(pool, settings, args)
    except InvalidInput as exc:
        return _fail(exc.message, EXIT_USAGE)
    except ApiError as exc:
        return _fail(exc.message, EXIT_FAILED)
    except OpsError as exc:
        return _fail(str(exc), exc.exit_code)
    except TwowayError as exc:  # not migrated, no embedded Postgres
        return _fail(str(exc), EXIT_FAILED)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _fail(f"database: {describe_db_error(exc)}", EXIT_FAILED)


def describe_db_error(exc: BaseException) -> str:
    """Secret-free: asyncpg's messages name the server and the role, never the password."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def run_doctor(settings: Settings, args: argparse.Namespace) -> int:
    return await doctor.run(settings, args)


def _fail(message: str, code: int) -> int:
    print(f"twoway-callback: {message}", file=sys.stderr)
    return code
