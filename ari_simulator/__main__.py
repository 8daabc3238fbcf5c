"""``python -m ari_simulator``: serve the simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from ari_simulator.config import SimulatorConfig
from ari_simulator.server import run_simulator


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ari_simulator", description="ARI simulator (a fake Asterisk)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--version", type=int, default=22, choices=(16, 20, 22))
    parser.add_argument("--user", default="twoway")
    parser.add_argument("--password", default="twoway")
    parser.add_argument("--realm", default="softswitch.lab")
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="a digest account of the simulated softswitch (repeatable)",
    )
    parser.add_argument("--trunk-requires-auth", action="store_true")
    args = parser.parse_args()
    accounts = dict(a.split(":", 1) for a in args.account if ":" in a)
    cfg = SimulatorConfig(
        user=args.user,
        password=args.password,
        version=args.version,
        realm=args.realm,
        accounts=accounts,
        trunk_requires_auth=args.trunk_requires_auth,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulator(cfg, args.host, args.port, on_ready=print))


if __name__ == "__main__":
    main()
