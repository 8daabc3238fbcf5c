"""``twoway-callback doctor``: check a site end to end with the settings ``run`` would use.

Database, Asterisk (ARI), the service's HTTP side, and optionally one real test call. One line
per check; exit 1 when any check failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any
from urllib.parse import urlsplit

from stasis_app.api.errors import InvalidInput
from stasis_app.config import Settings
from stasis_app.ops import checks_ari, checks_db, checks_service, testcall
from stasis_app.ops.output import EXIT_USAGE, secret_arg
from stasis_app.ops.report import Report

DEFAULT_TIMEOUT = 5.0
IDENTITY_ARGS = ("username", "authname", "md5secret", "password", "realm")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check this site: database, Asterisk, API (first step)")
    p.add_argument("--json", action="store_true", help="the findings as JSON")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per check (default 5)"
    )
    call = p.add_argument_group("test call (--call NUMBER places one real call, then hangs up)")
    call.add_argument("--call", metavar="NUMBER", help="the number to dial through the trunk")
    call.add_argument("--username", help="the identity's user (caller ID, digest user)")
    call.add_argument("--authname", help="the digest user when not the username")
    call.add_argument("--md5secret", help="its HA1")
    call.add_argument("--password", help="or its password (- reads stdin), with --realm")
    call.add_argument("--realm", help="default TWOWAY_SIP_REALM")
    call.add_argument("--caller-id", dest="original_set_cli", help="caller ID to present")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= 120:
        return _usage("--timeout: more than 0 and at most 120 seconds")
    who = None
    data: dict[str, str | None] = {}
    if args.call is not None:
        data = {k: getattr(args, k) for k in (*IDENTITY_ARGS, "original_set_cli")}
        data["password"] = secret_arg(data["password"])
        data["original_cli"] = args.call
        try:
            who = testcall.identity({k: v for k, v in data.items() if v is not None}, settings)
        except InvalidInput as exc:
            return _usage(exc.message.replace("original_cli", "--call"))
    elif any(getattr(args, k) is not None for k in (*IDENTITY_ARGS, "original_set_cli")):
        return _usage("the identity options go with --call NUMBER")
    # Progress logs of the parts it drives (identity objects) would only interleave.
    logging.getLogger("stasis_app").setLevel(logging.WARNING)
    given = [data.get("password"), data.get("md5secret")] if who is not None else []
    report = Report(
        sys.stdout,
        timeout=args.timeout,
        json_mode=args.json,
        secrets=[*secrets_of(settings), *(s for s in given if s)],
    )
    await checks_db.run(report, settings)
    await checks_ari.run(report, settings)
    await checks_service.run(report, settings)
    if who is not None:
        await testcall.run(report, settings, who)
    return report.close()


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold, for the report to mask."""
    urls = (settings.database_url, settings.listen_database_url)
    passwords = [urlsplit(url.get_secret_value()).password or "" for url in urls]
    return [
        settings.ari_password.get_secret_value(),
        settings.default_md5secret.get_secret_value(),
        *settings.api_token_list,
        *passwords,
    ]


def _usage(message: str) -> int:
    print(f"twoway-callback doctor: {message}", file=sys.stderr)
    return EXIT_USAGE
