"""``list``, ``show``, ``create``, ``cancel``, ``retry``: the queue, as the API sees it.

Each is a thin layer over ``CallbackStore`` and the API's own use cases and validation
(``api.operations``), so the CLI accepts and shows exactly what the API does.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from stasis_app.api.operations import Callbacks
from stasis_app.api.routes import intake_rules
from stasis_app.api.schemas import LIST_LIMIT_MAX, Callback
from stasis_app.api.validation import parse_id, parse_list_query
from stasis_app.config import Settings
from stasis_app.domain.request import Result, Source, Status
from stasis_app.ops.output import (
    EXIT_USAGE,
    OpsError,
    Output,
    as_json,
    record,
    secret_arg,
    table,
)
from stasis_app.store.callbacks import CallbackStore

LIST_COLUMNS = (
    "id",
    "status",
    "result",
    "source",
    "username",
    "original_cli",
    "original_cld",
    "attempts",
    "next_call",
    "created_at",
)
HISTORY_COLUMNS = ("at", "old_status", "new_status", "result", "reason", "attempts", "instance")
REASON_MAX = 200
_AGO = re.compile(r"(\d+)([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# What `create` takes: (option, table column, type). The API's model validates the values.
CREATE_FIELDS: tuple[tuple[str, str, type], ...] = (
    ("--username", "username", str),
    ("--authname", "authname", str),
    ("--md5secret", "md5secret", str),
    ("--password", "password", str),
    ("--realm", "realm", str),
    ("--twoway-cli", "twoway_cli", str),
    ("--twoway-authname", "twoway_authname", str),
    ("--twoway-md5secret", "twoway_md5secret", str),
    ("--cli", "original_cli", str),
    ("--set-cli", "original_set_cli", str),
    ("--cld", "original_cld", str),
    ("--next-call", "next_call", str),
    ("--call-id", "call_id", str),
    ("--twoway-call-id", "twoway_call_id", str),
    ("--max-attempts", "max_attempts", int),
    ("--retry-delay", "retry_delay", float),
)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("list", parents=[common], help="callback requests, newest first")
    p.add_argument("--status", action="append", help=f"{', '.join(Status)} (repeat, or a,b)")
    p.add_argument("--result", choices=list(Result))
    p.add_argument("--source", choices=list(Source))
    p.add_argument("--username")
    p.add_argument("--number", help="the user's number (original_cli) or the destination CLD")
    p.add_argument("--since", help="ISO 8601 with a timezone, or 30m / 12h / 7d ago")
    p.add_argument("--limit", type=int, default=50, help=f"at most {LIST_LIMIT_MAX}")
    p = sub.add_parser("show", parents=[common], help="one request, its history and outcome")
    p.add_argument("id")
    p = sub.add_parser("create", parents=[common], help="queue a callback (the API's fields)")
    for option, column, kind in CREATE_FIELDS:
        p.add_argument(option, dest=column, type=kind)
    p.epilog = "--password - reads the password from standard input (keeps it out of ps)"
    p = sub.add_parser("cancel", parents=[common], help="cancel a request that is not final")
    p.add_argument("id")
    p = sub.add_parser("retry", parents=[common], help="a failed request back to pending")
    p.add_argument("id")
    p.add_argument("--reason", required=True, help="why (kept in the request's history)")


def since(value: str, now: datetime | None = None) -> str:
    """``--since`` as the ISO 8601 the API's list query takes."""
    ago = _AGO.fullmatch(value.strip())
    if ago is None:
        return value
    delta = timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    return ((now or datetime.now(UTC)) - delta).isoformat()


async def cmd_list(pool: asyncpg.Pool, args: argparse.Namespace, out: Output) -> int:
    query: dict[str, list[str]] = {"limit": [str(args.limit)]}
    if args.status:
        query["status"] = [",".join(args.status)]
    if args.since:
        query["created_from"] = [since(args.since)]
    where = dataclasses.replace(
        parse_list_query(query),
        result=args.result,
        source=args.source,
        username=args.username,
        number=args.number,
    )
    page = await CallbackStore(pool).list(where)
    if out.json:  # the API's shape
        as_json([Callback.model_validate(r).model_dump(mode="json") for r in page.rows], out.out)
    else:
        out.rows(page.rows, LIST_COLUMNS)
    if page.more and not out.json:
        out.out.write(f"(more rows: raise --limit, at most {LIST_LIMIT_MAX}, or narrow it)\n")
    return 0


async def cmd_show(callbacks: Callbacks, args: argparse.Namespace, out: Output) -> int:
    detail = await callbacks.get(args.id)
    if out.json:
        as_json(detail, out.out)
        return 0
    history = detail.pop("history")
    out.out.write(f"callback request {detail['id']}\n")
    record(detail, out.out)
    out.out.write("\nhistory:\n")
    table(history, HISTORY_COLUMNS, out.out)
    return 0


async def cmd_create(callbacks: Callbacks, args: argparse.Namespace, out: Output) -> int:
    data = {column: getattr(args, column) for _o, column, _t in CREATE_FIELDS}
    data["password"] = secret_arg(data["password"])
    created = await callbacks.create({k: v for k, v in data.items() if v is not None})
    out.message(f"created callback request {created['id']} ({created['status']})", created)
    return 0


async def cmd_cancel(callbacks: Callbacks, args: argparse.Namespace, out: Output) -> int:
    done = await callbacks.cancel(args.id)
    out.message(f"callback request {done['id']} cancelled", done)
    return 0


async def cmd_retry(pool: asyncpg.Pool, args: argparse.Namespace, out: Output) -> int:
    reason = args.reason.strip()
    if not reason or len(reason) > REASON_MAX or not reason.isprintable():
        raise OpsError(f"--reason: 1 to {REASON_MAX} printable characters", EXIT_USAGE)
    request_id = parse_id(args.id)
    change = await CallbackStore(pool).retry(request_id, f"retried by operator: {reason}")
    if change is None:
        raise OpsError(f"no callback request {request_id}")
    if not change.changed:  # only a failed row: a cancelled one was meant to end
        raise OpsError(
            f"callback request {request_id} is {change.status}: only a failed one can be retried"
        )
    out.message(
        f"callback request {request_id} is pending again (attempts reset)",
        {"id": change.id, "status": change.status},
    )
    return 0


async def run(pool: asyncpg.Pool, settings: Settings, args: argparse.Namespace) -> int:
    out = Output(json_mode=args.json)
    callbacks = Callbacks(CallbackStore(pool), intake_rules(settings), settings.destination_policy)
    if args.command == "list":
        return await cmd_list(pool, args, out)
    if args.command == "show":
        return await cmd_show(callbacks, args, out)
    if args.command == "create":
        return await cmd_create(callbacks, args, out)
    if args.command == "cancel":
        return await cmd_cancel(callbacks, args, out)
    return await cmd_retry(pool, args, out)
