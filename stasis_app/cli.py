"""``twoway-callback run | migrate | simulate | demo``, and the operator commands (``ops``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable

from stasis_app import __version__
from stasis_app.config import LogFormat, Settings, parse_listen
from stasis_app.errors import TwowayError
from stasis_app.logs import setup_logging
from stasis_app.ops import commands

log = logging.getLogger("stasis_app")

# After an internal task crashed: how long /readyz reports it before the process exits, and
# the exit status (EX_SOFTWARE).
CRASH_GRACE = 3.0
EXIT_CRASHED = 70


async def _wait_for_signal(then: Callable[[], None] | None = None) -> None:
    """Until SIGTERM or SIGINT; a second one calls ``then`` (hurry the shutdown)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first() -> None:
        stop.set()
        if then is not None:  # re-armed in the handler itself: no window for a lost signal
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _second_signal, then)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, first)
    await stop.wait()
    log.info("signal received, shutting down", extra={"action": "shutdown"})


def _second_signal(then: Callable[[], None]) -> None:
    log.warning("second signal: hanging up every call now", extra={"action": "shutdown_now"})
    then()


async def cmd_run(settings: Settings) -> int:
    from stasis_app import sdnotify
    from stasis_app.app import running_service

    # The watchdog spans the shutdown grace too; READY=1 waits for DB, LISTEN and ARI.
    async with (
        sdnotify.watchdog(),
        running_service(settings) as service,
        sdnotify.lifecycle(service.readiness),
    ):
        signalled = asyncio.create_task(_wait_for_signal(then=service.engine.hurry))
        crashed = asyncio.create_task(service.supervisor.failed.wait())
        await asyncio.wait((signalled, crashed), return_when=asyncio.FIRST_COMPLETED)
        if crashed.done():
            await _exit_crashed(service.supervisor.crashed)
        crashed.cancel()
    return 0


async def _exit_crashed(tasks: list[str]) -> None:
    """An internal task died: /readyz says so for a moment, then the process exits non-zero
    for systemd/Docker to restart it. Without a shutdown: live calls are left to the restarted
    process, which takes them over at once (same instance id), as after a kill -9; a graceful
    stop would hang them up."""
    log.error(
        "internal task %s crashed: exiting in %g s",
        ", ".join(tasks),
        CRASH_GRACE,
        extra={"action": "crash_exit"},
    )
    await asyncio.sleep(CRASH_GRACE)
    logging.shutdown()
    os._exit(EXIT_CRASHED)


async def cmd_migrate(settings: Settings) -> int:
    import asyncpg

    from stasis_app.store.database import database_url
    from stasis_app.store.migrations import migrate

    async with database_url(settings) as url:
        conn = await asyncpg.connect(url)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
    names = ", ".join(m.path.name for m in applied) or "nothing to do"
    print(f"migrations applied: {names}")
    return 0


async def cmd_simulate(settings: Settings, listen: str) -> int:
    from ari_simulator import Simulator, SimulatorConfig

    host, port = parse_listen(listen)
    sim = Simulator(
        SimulatorConfig(
            user=settings.ari_user,
            password=settings.ari_password.get_secret_value(),
            realm=settings.sip_realm or "softswitch.lab",
        )
    )
    url = await sim.start(host=host, port=port)
    print(f"ARI simulator listening on {url}/ari (control routes under {url}/_sim/)")
    try:
        await _wait_for_signal()
    finally:
        await sim.stop()
    return 0


async def cmd_demo() -> int:
    from stasis_app.demo import run_demo

    return await run_demo()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twoway-callback", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="run the service (TWOWAY_* settings from the environment;"
        " TWOWAY_ARI_URL=simulator for the built-in ARI simulator)",
    )
    sub.add_parser("migrate", help="apply the SQL migrations in sql/ (idempotent)")
    simulate = sub.add_parser("simulate", help="serve the built-in ARI simulator")
    simulate.add_argument("--listen", default="127.0.0.1:8088", help="host:port")
    sub.add_parser("demo", help="embedded Postgres + simulator + service: one seed callback")
    commands.add_parsers(sub)
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except ValueError as exc:
        print(f"twoway-callback: bad settings: {exc}", file=sys.stderr)
        return 2
    fmt = LogFormat.TEXT if args.command == "demo" else settings.log_format
    setup_logging(settings.log_level, fmt)
    try:
        if args.command == "run":
            return asyncio.run(cmd_run(settings))
        if args.command == "migrate":
            return asyncio.run(cmd_migrate(settings))
        if args.command == "simulate":
            return asyncio.run(cmd_simulate(settings, args.listen))
        if args.command == "doctor":
            return asyncio.run(commands.run_doctor(settings, args))
        if args.command in commands.QUEUE_COMMANDS:
            return asyncio.run(commands.run_queue_command(settings, args))
        return asyncio.run(cmd_demo())
    except TwowayError as exc:
        log.error("%s", exc, extra={"action": "fatal"})
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
