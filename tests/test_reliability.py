"""Faults injected into a running service: ARI drops, Asterisk restarts, shutdown."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ari_simulator import Script, Simulator
from stasis_app.app import running_service
from tests.conftest import ServiceFactory, service_settings
from tests.faults import CuttableProxy
from tests.test_callflow import config_puts, final_row, insert, originates, row_of, until


async def status_is(pool: asyncpg.Pool, rid: int, status: str) -> bool:
    return bool((await row_of(pool, rid))["status"] == status)


async def test_websocket_drop_during_a_bridged_call(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=1500))
    service = await start_service()
    rid = await insert(pool)
    await until(lambda: status_is(pool, rid, "bridged"))
    await sim.drop_websockets()
    await until(lambda: service.stream.reconnects >= 1 and service.stream.connected)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["result_reason"]) == (
        "completed",
        "answered",
        "destination hung up",
    )


async def test_asterisk_restart_while_leg_a_rings(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("87654321", Script(action="noanswer"))
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service(leg_a_timeout=60, retry_delay=0.3)
    rid = await insert(pool)
    await until(lambda: f"twoway-{rid}-1a" in sim.channels)
    await sim.restart()  # every channel and memory object gone, no events
    sim.script("87654321", Script(action="answer"))
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 2)
    history = await pool.fetch(
        "SELECT new_status, result FROM callback_request_history WHERE request_id = $1 ORDER BY id",
        rid,
    )
    assert ("pending", "callback_failed") in [(h["new_status"], h["result"]) for h in history]
    # The identity objects died with Asterisk: created again for the second attempt.
    assert len(config_puts(sim, "auth")) == 2


async def test_asterisk_restart_while_bridged(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await start_service()
    rid = await insert(pool)
    await until(lambda: status_is(pool, rid, "bridged"))
    await sim.restart()
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("completed", "answered")
    assert row["result_reason"] == "call lost while ARI was disconnected (Asterisk restart?)"


async def test_requests_wait_while_ari_is_down(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    service = await start_service(ari_reconnect_max=0.5)
    port = int(sim.base_url.rsplit(":", 1)[1])
    await sim.stop()
    await until(lambda: not service.stream.connected)
    assert service.watcher.paused  # no claims, so no attempt is burnt on the outage
    rid = await insert(pool)
    await sim.start(host="127.0.0.1", port=port)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 1)


async def test_shutdown_releases_undialled_rows_and_finishes_live_calls(
    db_url: str, pool: asyncpg.Pool, sim: Simulator
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=300))
    # One originate every 20 s: the first row dials, the others wait for a token.
    settings = service_settings(db_url, sim.base_url, max_cps=0.05, shutdown_grace=10)
    async with running_service(settings) as service:
        assert await service.wait_ready(10)
        ids = [await insert(pool, original_cli=f"5550{i}") for i in range(3)]
        await until(lambda: service.engine.live == 3)
        await until(lambda: status_is(pool, ids[0], "bridged"))
    # Leaving the block is the shutdown: the live call finished inside the grace...
    first = await row_of(pool, ids[0])
    assert (first["status"], first["result"]) == ("completed", "answered")
    # ...and the undialled rows went back to the queue without an attempt spent.
    for rid in ids[1:]:
        row = await row_of(pool, rid)
        assert (row["status"], row["attempts"], row["claimed_by"]) == ("pending", 0, None)
    assert len(originates(sim)) == 2  # legs A and B of the first row only


async def test_shutdown_grace_then_hang_up_and_record(
    db_url: str, pool: asyncpg.Pool, sim: Simulator
) -> None:
    settings = service_settings(db_url, sim.base_url, shutdown_grace=0.2)
    async with running_service(settings) as service:
        assert await service.wait_ready(10)
        bridged = await insert(pool)
        sim.script("99999", Script(action="noanswer"))
        ringing = await insert(pool, original_cli="99999", max_attempts=1)
        await until(lambda: status_is(pool, bridged, "bridged"))
        await until(lambda: f"twoway-{ringing}-1a" in sim.channels)
    row = await row_of(pool, bridged)
    assert (row["status"], row["result"], row["result_reason"]) == (
        "completed",
        "answered",
        "hung up at service shutdown",
    )
    row = await row_of(pool, ringing)
    assert (row["status"], row["result"], row["result_reason"]) == (
        "failed",
        "error",
        "hung up at service shutdown",
    )
    assert not sim.channels and not sim.bridges


async def test_database_outage_during_a_call(
    db_url: str, pool: asyncpg.Pool, sim: Simulator
) -> None:
    """The service reaches Postgres through a proxy we cut: the call goes on, its outcome is
    written once the database is back, and readiness says what was down."""
    url = urlsplit(db_url)
    proxy = CuttableProxy(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    sim.script("12345", Script(action="answer", hangup_after_ms=1500))
    settings = service_settings(proxied, sim.base_url, listen_probe_interval=0.2)
    async with running_service(settings) as service:
        assert await service.wait_ready(10)
        rid = await insert(pool)
        await until(lambda: status_is(pool, rid, "bridged"))
        await proxy.cut()
        await until(lambda: not service.listener.connected, timeout=10)
        assert service.readiness()["listen"] is False
        # The destination hangs up while the database is away; the write waits.
        await until(lambda: f"twoway-{rid}-1b" not in sim.channels, timeout=10)
        assert (await row_of(pool, rid))["status"] == "bridged"
        await proxy.restore()
        row = await final_row(pool, rid)
        assert (row["status"], row["result"], row["result_reason"]) == (
            "completed",
            "answered",
            "destination hung up",
        )
        await until(lambda: all(service.readiness().values()), timeout=15)
    await proxy.cut()


async def test_backends_terminated_mid_call(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=500))
    service = await start_service(listen_probe_interval=0.2)
    rid = await insert(pool)
    await until(lambda: status_is(pool, rid, "bridged"))
    await pool.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("completed", "answered")
    await until(lambda: service.listener.reconnects >= 1 and service.listener.connected)
