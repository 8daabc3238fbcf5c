"""The process around the calls: instance identity and its lock, supervision of internal
tasks, leases checked against the table (issue 13, deliverables 2 to 6)."""

from __future__ import annotations

import asyncio
import socket
import sys

import aiohttp
import asyncpg
import pytest

from ari_simulator import Script, Simulator
from stasis_app import app as app_module
from stasis_app import metrics
from stasis_app.app import running_service
from stasis_app.config import Settings
from stasis_app.store.instance import InstanceIdInUse
from tests.conftest import ServiceFactory, service_settings
from tests.test_callflow import insert, row_of, until
from tests.test_crash import service_env


def test_default_instance_id_is_stable_per_host_and_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWOWAY_INSTANCE_ID", raising=False)
    settings = Settings(ari_app="callbacks-eu")
    assert settings.effective_instance_id == f"{socket.gethostname()}-callbacks-eu"
    assert Settings(ari_app="callbacks-eu").effective_instance_id == settings.effective_instance_id


async def test_a_second_live_process_with_the_same_id_is_refused(
    db_url: str,
    pool: asyncpg.Pool,
    sim: Simulator,
    start_service: ServiceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await start_service(instance_id="node-1")
    monkeypatch.setattr(app_module, "INSTANCE_LOCK_WAIT", 0.5)
    second = service_settings(db_url, sim.base_url, instance_id="node-1", ari_app="other")
    with pytest.raises(InstanceIdInUse, match="TWOWAY_INSTANCE_ID"):
        async with running_service(second):
            pass
    assert sim.app_connected("twoway-callback") and not sim.app_connected("other")
    # Another id starts beside it.
    other = service_settings(db_url, sim.base_url, instance_id="node-2", ari_app="other")
    async with running_service(other) as service:
        assert await service.wait_ready(10)


async def _readyz(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/readyz") as resp:
        return resp.status, await resp.json()


async def test_a_crashed_task_turns_readyz_503_naming_it(
    start_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    service = await start_service()
    assert (await _readyz(service.metrics_url))[0] == 200

    async def broken_round() -> float:
        raise RuntimeError("a bug in the claim loop")

    service.watcher._round = broken_round  # type: ignore[method-assign]
    service.watcher.wake()
    await asyncio.wait_for(service.supervisor.failed.wait(), 10)
    status, body = await _readyz(service.metrics_url)
    assert (status, body["down"]) == (503, ["watcher"])
    crash = [r for r in caplog.records if getattr(r, "action", "") == "task_crashed"]
    assert [getattr(r, "task", "") for r in crash] == ["watcher"]
    assert crash[0].exc_info is not None and "a bug in the claim loop" in caplog.text


# A `run` whose claim loop has a bug: it must exit non-zero on its own, without a signal.
CRASHING_RUN = """
import sys
from stasis_app.store.watcher import QueueWatcher
from stasis_app.cli import main

async def broken_round(self):
    raise RuntimeError("a bug in the claim loop")

QueueWatcher._round = broken_round
sys.exit(main(["run"]))
"""


async def test_run_exits_non_zero_after_a_task_crashed(db_url: str, sim: Simulator) -> None:
    env = service_env(db_url, sim, TWOWAY_LOG_FORMAT="json", TWOWAY_LOG_LEVEL="INFO")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_RUN, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        # Start-up, then the crash grace: bounded well above both.
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode()
    assert proc.returncode == 70, log
    assert '"task": "watcher"' in log and "Traceback" in log
    assert "ari-secret-pw" not in log


async def test_cancel_without_listen_is_read_from_the_table(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    poll = 1.0
    await start_service(listen_enabled=False, poll_max_sleep=poll)
    rid = await insert(pool)
    await until(lambda: _status_is(pool, rid, "bridged"))
    await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid)
    # One reconciliation round (TWOWAY_POLL_MAX_SLEEP), then the hang-ups (a busy machine may
    # take seconds); without the reconciliation the call would stay up for good.
    await until(lambda: not sim.channels and not sim.bridges, timeout=poll + 10)
    # Recorded by the session after the hang-up (its final write follows the teardown).
    await until(lambda: _cause_recorded(pool, rid))
    row = await row_of(pool, rid)
    assert (row["status"], row["result"]) == ("cancelled", "cancelled")


async def test_a_session_whose_lease_is_lost_stops_driving_its_call(
    pool: asyncpg.Pool,
    sim: Simulator,
    start_service: ServiceFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.script("12345", Script(action="answer"))  # a conversation that goes on
    poll = 1.0
    service = await start_service(poll_max_sleep=poll, lease_seconds=30)
    rid = await insert(pool)
    await until(lambda: _status_is(pool, rid, "bridged"))
    lost_before = metrics.LEASES_LOST._value.get()
    requests_before = len(sim.requests)
    # Another instance recovered the row (its own token): ours must let go.
    await pool.execute(
        "UPDATE callback_requests SET claimed_by = 'node-2', lease_token = gen_random_uuid()"
        " WHERE id = $1",
        rid,
    )
    await until(lambda: service.engine.live == 0, timeout=poll + 10)
    assert metrics.LEASES_LOST._value.get() == lost_before + 1
    assert any(getattr(r, "action", "") == "lease_lost" for r in caplog.records)
    # No hang-up, no bridge destroyed, no write: the call is the new owner's.
    assert not [r for r in sim.requests[requests_before:] if r.method == "DELETE"]
    assert {f"twoway-{rid}-1a", f"twoway-{rid}-1b"} <= set(sim.channels)
    row = await row_of(pool, rid)
    assert (row["status"], row["claimed_by"], row["ended_at"]) == ("bridged", "node-2", None)


async def _cause_recorded(pool: asyncpg.Pool, rid: int) -> bool:
    return (await row_of(pool, rid))["leg_a_cause"] is not None


async def _status_is(pool: asyncpg.Pool, rid: int, status: str) -> bool:
    return bool((await row_of(pool, rid))["status"] == status)
