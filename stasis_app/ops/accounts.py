"""``accounts list | add | enable | disable``: identities of inbound callers.

``add`` validates through the API's rules (the same field patterns, md5secret or password with
realm turned into HA1 as for a callback); ``md5secret`` is never printed.
"""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg

from stasis_app.api.routes import intake_rules
from stasis_app.api.validation import parse_account
from stasis_app.config import Settings
from stasis_app.ops.output import OpsError, Output, secret_arg
from stasis_app.store.accounts import PUBLIC_COLUMNS, AccountStore

LIST_MAX = 10_000


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    accounts = sub.add_parser("accounts", help="callback_accounts (inbound callers' identities)")
    actions = accounts.add_subparsers(dest="action", required=True)
    p = actions.add_parser("list", parents=[common], help="every account, by number")
    p.add_argument("--limit", type=int, default=1000, help=f"at most {LIST_MAX}")
    p = actions.add_parser(
        "add", parents=[common], help="a new account (fails if the number has one)"
    )
    p.add_argument("--cli", required=True, help="the caller's number after normalisation")
    p.add_argument("--username", required=True)
    p.add_argument("--authname")
    p.add_argument("--md5secret", help="HA1 (32 hex digits)")
    p.add_argument("--password", help="with --realm (default TWOWAY_SIP_REALM); - reads stdin")
    p.add_argument("--realm")
    for action in ("enable", "disable"):
        p = actions.add_parser(action, parents=[common], help=f"{action} the account of a number")
        p.add_argument("cli")


async def run(pool: asyncpg.Pool, settings: Settings, args: argparse.Namespace) -> int:
    out = Output(json_mode=args.json)
    store = AccountStore(pool)
    if args.action == "list":
        if not 1 <= args.limit <= LIST_MAX:
            raise OpsError(f"--limit: 1 to {LIST_MAX}", 2)
        out.rows(await store.list(args.limit), PUBLIC_COLUMNS)
        return 0
    if args.action == "add":
        return await _add(store, settings, args, out)
    row = await store.set_enabled(args.cli, args.action == "enable")
    if row is None:
        raise OpsError(f"no account for {args.cli}")
    out.message(f"account {row['cli']} {args.action}d", row)
    return 0


async def _add(
    store: AccountStore, settings: Settings, args: argparse.Namespace, out: Output
) -> int:
    fields = ("cli", "username", "authname", "md5secret", "password", "realm")
    data = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    if "password" in data:
        data["password"] = secret_arg(data["password"])
    new = parse_account(data, intake_rules(settings))
    row = await store.add(new)
    if row is None:
        raise OpsError(f"{new.cli} already has an account (disable it, or use another number)")
    out.message(f"account {row['cli']} added", row)
    return 0
