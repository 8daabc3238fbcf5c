"""kill -9 of a real `twoway-callback run` process mid-call, then recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from ari_simulator import Script, Simulator
from stasis_app.app import running_service
from stasis_app.config import Settings
from tests.conftest import REALM, service_settings
from tests.test_callflow import final_row, insert, originates, row_of, until


def service_env(db_url: str, sim: Simulator, **env: str) -> dict[str, str]:
    """The environment of a `twoway-callback run` against this test's database and simulator."""
    return {
        **os.environ,
        "TWOWAY_DATABASE_URL": db_url,
        "TWOWAY_ARI_URL": sim.base_url,
        "TWOWAY_ARI_USER": "twoway",
        "TWOWAY_ARI_PASSWORD": "ari-secret-pw",
        "TWOWAY_SIP_REALM": REALM,
        "TWOWAY_HTTP_LISTEN": "127.0.0.1:0",
        "TWOWAY_LOG_LEVEL": "WARNING",
        **env,
    }


async def spawn(
    db_url: str, sim: Simulator, stderr: int = asyncio.subprocess.DEVNULL, **env: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stasis_app.cli",
        "run",
        env=service_env(db_url, sim, **env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def request_index(sim: Simulator, method: str, predicate: Any) -> int:
    for index, record in enumerate(sim.requests):
        if record.method == method and predicate(record):
            return index
    raise AssertionError("request not found")


@pytest.mark.parametrize("same_instance_id", [True, False])
async def test_kill_9_mid_call_then_recovery(
    db_url: str,
    pool: asyncpg.Pool,
    sim: Simulator,
    processes: list[asyncio.subprocess.Process],
    same_instance_id: bool,
) -> None:
    # Long enough to outlive the 5 s lease that another instance waits for.
    sim.script("12345", Script(action="answer", hangup_after_ms=8000))
    sim.script("99999", Script(action="noanswer"))
    proc = await spawn(
        db_url,
        sim,
        TWOWAY_INSTANCE_ID="node-1",
        TWOWAY_LEASE_SECONDS="5",
        TWOWAY_LEG_A_TIMEOUT="60",
        TWOWAY_RETRY_DELAY="0.2",
    )
    processes.append(proc)
    await sim.wait_for(lambda: sim.app_connected("twoway-callback"), timeout=20)
    bridged = await insert(pool)
    ringing = await insert(pool, original_cli="99999")
    await until(lambda: _status(pool, bridged, "bridged"), timeout=20)
    await until(lambda: f"twoway-{ringing}-1a" in sim.channels, timeout=20)

    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    pending = await insert(pool, original_cli="55555")  # due while nobody runs
    sim.script("99999", Script(action="answer"))

    # A restart keeps its instance id (and recovers its rows at once); another instance
    # takes them over when their lease has run out.
    instance = "node-1" if same_instance_id else "node-2"
    settings = service_settings(
        db_url,
        sim.base_url,
        instance_id=instance,
        lease_seconds=5,
        poll_max_sleep=1,
        retry_delay=0.2,
    )
    async with running_service(settings) as service:
        assert await service.wait_ready(10)
        rows = {rid: await final_row(pool, rid, timeout=30) for rid in (bridged, ringing, pending)}

    # The bridged call survived the crash: adopted, finished when the destination hung up.
    assert (rows[bridged]["status"], rows[bridged]["result"]) == ("completed", "answered")
    assert rows[bridged]["result_reason"] == "destination hung up"
    assert sim.channel(f"twoway-{bridged}-1b").end == "far_end_hangup"
    # The ringing leg was hung up before the row was dialled again.
    assert (rows[ringing]["status"], rows[ringing]["attempts"]) == ("completed", 2)
    hung_up = request_index(sim, "DELETE", lambda r: r.path == f"/channels/twoway-{ringing}-1a")
    redial = request_index(
        sim,
        "POST",
        lambda r: r.path == "/channels" and r.query.get("channelId") == f"twoway-{ringing}-2a",
    )
    assert hung_up < redial
    # Every request dialled leg A exactly once per attempt.
    leg_a = [o.query["channelId"] for o in originates(sim) if o.query["channelId"].endswith("a")]
    assert sorted(leg_a) == sorted(
        [
            f"twoway-{bridged}-1a",
            f"twoway-{ringing}-1a",
            f"twoway-{ringing}-2a",
            f"twoway-{pending}-1a",
        ]
    )
    assert rows[pending]["attempts"] == 1


async def _status(pool: asyncpg.Pool, rid: int, status: str) -> bool:
    return bool((await row_of(pool, rid))["status"] == status)


async def test_second_signal_hangs_up_at_once_and_records(
    db_url: str, pool: asyncpg.Pool, sim: Simulator, processes: list[asyncio.subprocess.Process]
) -> None:
    proc = await spawn(
        db_url,
        sim,
        stderr=asyncio.subprocess.PIPE,
        TWOWAY_SHUTDOWN_GRACE="3600",
        TWOWAY_LOG_LEVEL="INFO",
    )
    processes.append(proc)
    await sim.wait_for(lambda: sim.app_connected("twoway-callback"), timeout=20)
    rid = await insert(pool)  # answered on both legs, never hung up by the far end
    await until(lambda: _status(pool, rid, "bridged"), timeout=20)
    proc.send_signal(signal.SIGTERM)  # the grace would let the call go on for an hour...
    await asyncio.wait_for(_log_line(proc, '"action": "shutdown"'), 20)
    proc.send_signal(signal.SIGTERM)  # ...the second signal ends it now
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    row = await row_of(pool, rid)
    assert (row["status"], row["result"], row["result_reason"]) == (
        "completed",
        "answered",
        "hung up at service shutdown",
    )
    assert not sim.channels


async def _log_line(proc: asyncio.subprocess.Process, needle: str) -> None:
    assert proc.stderr is not None
    while needle not in (await proc.stderr.readline()).decode():
        pass


async def test_kill_9_and_immediate_restart_with_default_settings(
    db_url: str, pool: asyncpg.Pool, sim: Simulator, processes: list[asyncio.subprocess.Process]
) -> None:
    """As an operator would (issue 13, item 7): no TWOWAY_INSTANCE_ID, the default 120 s lease,
    three calls bridged and three with leg B ringing, kill -9, start again at once. The restart
    has the same default id (host + ARI app), so it takes its rows back without waiting out
    the lease: bridged calls adopted, ringing legs hung up before any redial."""
    lease = Settings().lease_seconds
    sim.script("12345", Script(action="answer"))  # the conversations go on
    sim.script("99999", Script(action="noanswer"))  # leg B rings
    env = {"TWOWAY_LEG_B_TIMEOUT": "600"}
    proc = await spawn(db_url, sim, **env)
    processes.append(proc)
    await sim.wait_for(lambda: sim.app_connected("twoway-callback"), timeout=20)
    bridged = [await insert(pool, original_cli=f"8000000{i}") for i in range(3)]
    ringing = [
        await insert(pool, original_cli=f"8100000{i}", original_cld="2way_99999") for i in range(3)
    ]
    for rid in bridged:
        await until(lambda rid=rid: _status(pool, rid, "bridged"), timeout=20)
    for rid in ringing:
        await until(lambda rid=rid: f"twoway-{rid}-1b" in sim.channels, timeout=20)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    restarted_at = await pool.fetchval("SELECT clock_timestamp()")
    loop = asyncio.get_running_loop()
    started = loop.time()
    processes.append(await spawn(db_url, sim, **env))

    await until(
        lambda: resolved(pool, bridged, ringing, restarted_at), timeout=lease / 4
    )  # far below the lease: not waited out
    print(f"\nkill -9 + restart: every live row resolved {loop.time() - started:.1f} s after")
    for rid in ringing:  # hung up, back to the queue for a later attempt
        row = await row_of(pool, rid)
        assert (row["status"], row["attempts"]) == ("pending", 1)
        assert f"twoway-{rid}-1a" not in sim.channels and f"twoway-{rid}-1b" not in sim.channels
    for rid in bridged:  # adopted: still talking
        assert {f"twoway-{rid}-1a", f"twoway-{rid}-1b"} <= set(sim.channels)
    leg_a = [o.query["channelId"] for o in originates(sim) if o.query["channelId"].endswith("a")]
    assert sorted(leg_a) == sorted(f"twoway-{rid}-1a" for rid in bridged + ringing)


async def resolved(
    pool: asyncpg.Pool, bridged: list[int], ringing: list[int], restarted_at: datetime
) -> bool:
    """The calls a restart found live are resolved: the bridged ones adopted (claimed again
    since the restart), the ringing ones hung up and back in the queue."""
    rows = await pool.fetch(
        "SELECT id, status, claimed_at FROM callback_requests WHERE id = ANY($1::bigint[])",
        bridged + ringing,
    )
    return all(
        (r["status"] == "bridged" and r["claimed_at"] > restarted_at)
        if r["id"] in bridged
        else r["status"] == "pending"
        for r in rows
    )
