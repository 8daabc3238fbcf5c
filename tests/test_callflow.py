"""The two-way callback end to end: real Postgres, the service, the simulator over loopback.

Each test asserts on the row, its history and the exact ARI requests the simulator received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from ari_simulator import Script, Simulator
from stasis_app.app import running_service
from stasis_app.errors import ConfigError
from tests.conftest import ServiceFactory, ha1, service_settings

FINAL = ("completed", "failed", "cancelled")


async def insert(pool: asyncpg.Pool, **columns: Any) -> int:
    values: dict[str, Any] = {
        "username": "801",
        "authname": "902",
        "md5secret": ha1("902"),
        "original_cli": "87654321",
        "original_cld": "2way_12345",
    }
    values.update(columns)
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    request_id: int = await pool.fetchval(
        f"INSERT INTO callback_requests ({names}) VALUES ({params}) RETURNING id", *values.values()
    )
    return request_id


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    """Wait for a condition with a bound (polling state, not sleeping as synchronisation)."""

    async def poll() -> None:
        while not await _value(predicate()):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def _value(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def row_of(pool: asyncpg.Pool, request_id: int) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM callback_requests WHERE id = $1", request_id)


async def final_row(pool: asyncpg.Pool, request_id: int, timeout: float = 20.0) -> asyncpg.Record:
    async def done() -> bool:
        return (await row_of(pool, request_id))["status"] in FINAL

    await until(done, timeout)
    return await row_of(pool, request_id)


async def statuses(pool: asyncpg.Pool, request_id: int) -> list[str]:
    rows = await pool.fetch(
        "SELECT new_status FROM callback_request_history WHERE request_id = $1 ORDER BY id",
        request_id,
    )
    return [r["new_status"] for r in rows]


def originates(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "POST" and r.path == "/channels"]


def config_puts(sim: Simulator, object_type: str) -> list[Any]:
    prefix = f"/asterisk/config/dynamic/res_pjsip/{object_type}/"
    return [r for r in sim.requests if r.method == "PUT" and r.path.startswith(prefix)]


def fields_of(record: Any) -> dict[str, str]:
    return {f["attribute"]: f["value"] for f in record.body["fields"]}


def sim_channel(sim: Simulator, channel_id: str) -> Any:
    return sim.channels.get(channel_id) or sim.ended_channels.get(channel_id)


async def test_seed_row_completes_with_identity_call_ids_and_bridge(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", ring_ms=50, hangup_after_ms=200))
    await start_service()
    rid = await insert(pool)
    row = await final_row(pool, rid)

    assert (row["status"], row["result"]) == ("completed", "answered")
    assert row["result_reason"] == "destination hung up"
    assert await statuses(pool, rid) == ["pending", "calling", "connecting", "bridged", "completed"]
    assert row["attempts"] == 1
    assert row["call_id"] and row["twoway_call_id"] == f"{row['call_id']}-2way"
    assert row["connected_at"] >= row["answered_at"] >= row["dialled_at"]
    assert row["leg_a_duration"] > 0 and row["leg_b_duration"] > 0

    # Identity objects: one auth + one endpoint (both legs share the identity), then deleted.
    (auth,) = config_puts(sim, "auth")
    assert fields_of(auth) == {
        "auth_type": "md5",
        "username": "902",
        "realm": "softswitch.lab",
        "md5_cred": ha1("902"),
    }
    (endpoint,) = config_puts(sim, "endpoint")
    endpoint_id = endpoint.path.rsplit("/", 1)[1]
    assert fields_of(endpoint)["outbound_auth"] == auth.path.rsplit("/", 1)[1]
    assert fields_of(endpoint)["aors"] == "softswitch"  # copied from the trunk endpoint
    deletes = [r.path for r in sim.requests if r.method == "DELETE" and "/config/" in r.path]
    assert deletes == [endpoint.path, auth.path]

    leg_a, leg_b = originates(sim)
    assert leg_a.query["endpoint"] == f"PJSIP/87654321@{endpoint_id}"
    assert leg_a.query["callerId"] == "<87654321>"
    assert leg_a.query["timeout"] == "5"
    assert leg_a.query["channelId"] == row["leg_a_channel_id"] == f"twoway-{rid}-1a"
    assert leg_a.query["app"] == "twoway-callback"
    assert leg_a.body["variables"] == {"PJSIP_HEADER(add,X-Callback-Call-ID)": row["call_id"]}
    assert leg_b.query["endpoint"] == f"PJSIP/12345@{endpoint_id}"
    assert leg_b.query["callerId"] == "<801>"
    assert leg_b.query["channelId"] == row["leg_b_channel_id"] == f"twoway-{rid}-1b"
    assert leg_b.body["variables"] == {
        "PJSIP_HEADER(add,X-Callback-Call-ID)": row["twoway_call_id"]
    }

    # The real SIP Call-IDs Asterisk used are recorded per leg.
    assert row["leg_a_sip_call_id"] == sim_channel(sim, row["leg_a_channel_id"]).protocol_id
    assert row["leg_b_sip_call_id"] == sim_channel(sim, row["leg_b_channel_id"]).protocol_id

    # Ringback on A while B was dialled, then the bridge, then cleanup of everything.
    paths = [(r.method, r.path) for r in sim.requests]
    assert ("POST", f"/channels/{row['leg_a_channel_id']}/ring") in paths
    assert ("POST", f"/bridges/{row['bridge_id']}/addChannel") in paths
    assert row["bridge_id"] == f"twoway-{rid}-1br"
    assert ("DELETE", f"/channels/{row['leg_a_channel_id']}") in paths  # A left alone: hung up
    assert ("DELETE", f"/bridges/{row['bridge_id']}") in paths
    assert not sim.channels and not sim.bridges
    # The destination's BYE in the bridge: 16 on every version (as on a real Asterisk).
    assert (row["leg_a_cause"], row["leg_b_cause"]) == (16, 16)


async def test_authname_omitted_uses_username(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service()
    rid = await insert(pool, authname=None, md5secret=ha1("801"))
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("completed", "answered")
    (auth,) = config_puts(sim, "auth")
    assert fields_of(auth)["username"] == "801"


async def test_twoway_overrides_and_preset_call_ids(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service()
    rid = await insert(
        pool,
        original_set_cli="4930111",
        twoway_cli="555777",
        twoway_authname="903",
        twoway_md5secret=ha1("903"),
        call_id="cid-A@portal",
        twoway_call_id="cid-B@portal",
    )
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("completed", "answered")
    assert (row["call_id"], row["twoway_call_id"]) == ("cid-A@portal", "cid-B@portal")
    auths = [fields_of(a)["username"] for a in config_puts(sim, "auth")]
    assert auths == ["902", "903"]
    leg_a, leg_b = originates(sim)
    assert leg_a.query["callerId"] == "<4930111>"
    assert leg_b.query["callerId"] == "<555777>"
    assert leg_a.body["variables"]["PJSIP_HEADER(add,X-Callback-Call-ID)"] == "cid-A@portal"
    assert leg_b.body["variables"]["PJSIP_HEADER(add,X-Callback-Call-ID)"] == "cid-B@portal"
    assert leg_a.query["endpoint"] != leg_b.query["endpoint"]


async def test_leg_a_busy_twice_then_answered(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("87654321", Script(action="busy"))
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service(retry_delay=0.3)
    rid = await insert(pool)

    async def pending_after(attempts: int) -> bool:
        row = await row_of(pool, rid)
        return bool(row["status"] == "pending" and row["attempts"] == attempts)

    await until(lambda: pending_after(1))
    row = await row_of(pool, rid)
    assert (row["result"], row["leg_a_cause"], row["leg_a_sip_code"]) == ("callback_busy", 17, 486)
    await until(lambda: pending_after(2))
    sim.script("87654321", Script(action="answer"))
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 3)
    assert [o.query["channelId"] for o in originates(sim) if "87654321" in o.query["endpoint"]] == [
        f"twoway-{rid}-1a",
        f"twoway-{rid}-2a",
        f"twoway-{rid}-3a",
    ]


async def test_no_answer_until_max_attempts(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("87654321", Script(action="noanswer"))
    await start_service(leg_a_timeout=1, max_attempts=2, retry_delay=0.1)
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("failed", "callback_no_answer", 2)
    assert row["leg_a_cause"] == 19
    assert await statuses(pool, rid) == ["pending", "calling", "pending", "calling", "failed"]


async def test_row_max_attempts_overrides_the_setting(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("87654321", Script(action="reject403"))
    await start_service(max_attempts=5)
    rid = await insert(pool, max_attempts=1)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("failed", "callback_rejected", 1)
    assert row["leg_a_cause"] == 21


async def test_wrong_secret_is_rejected_by_the_softswitch(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await start_service(max_attempts=1)
    rid = await insert(pool, md5secret=ha1("902", "not-the-password"))
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["leg_a_cause"]) == ("failed", "callback_rejected", 21)


async def test_destination_busy(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="busy"))
    await start_service()
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("failed", "destination_busy", 1)
    assert (row["leg_b_cause"], row["leg_b_sip_code"]) == (17, 486)
    leg_a = sim_channel(sim, row["leg_a_channel_id"])
    assert leg_a.ended and leg_a.end == "app_hangup"
    assert await statuses(pool, rid) == ["pending", "calling", "connecting", "failed"]


async def test_user_hangs_up_while_destination_rings(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="noanswer"))
    await start_service(leg_b_timeout=30)
    rid = await insert(pool)
    leg_b_id = f"twoway-{rid}-1b"
    await until(lambda: leg_b_id in sim.channels)
    await sim.far_end_hangup(f"twoway-{rid}-1a")
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("failed", "user_hangup")
    assert sim_channel(sim, leg_b_id).ended
    assert not sim.channels


async def test_max_call_duration(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    await start_service(max_call_duration=0.5)
    rid = await insert(pool)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("completed", "answered")
    assert row["result_reason"] == "max call duration reached"
    assert not sim.channels and not sim.bridges


async def test_cancel_while_pending_never_dials(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service()
    rid = await pool.fetchval(
        "INSERT INTO callback_requests (username, md5secret, original_cli, original_cld, "
        "next_call) VALUES ('801', $1, '87654321', '2way_12345', now() + interval '1 second')"
        " RETURNING id",
        ha1("801"),
    )
    await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid)
    # A later row is dialled and finishes: the cancelled one was passed by.
    later = await insert(
        pool, next_call=await pool.fetchval("SELECT now() + interval '1.5 second'")
    )
    await final_row(pool, later)
    row = await row_of(pool, rid)
    assert (row["status"], row["result"], row["attempts"]) == ("cancelled", "cancelled", 0)
    assert all(f"twoway-{rid}-" not in o.query["channelId"] for o in originates(sim))


@pytest.mark.parametrize("phase", ["ringing", "bridged"])
async def test_cancel_of_a_live_call(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory, phase: str
) -> None:
    if phase == "ringing":
        sim.script("87654321", Script(action="noanswer"))
    await start_service(leg_a_timeout=60)
    rid = await insert(pool)
    if phase == "ringing":
        await until(lambda: f"twoway-{rid}-1a" in sim.channels)
    else:
        await until(lambda: _status_is(pool, rid, "bridged"))
    await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid)
    # The SQL made the row final at once: wait for the legs to be hung up and recorded.
    await until(lambda: not sim.channels and not sim.bridges, timeout=5)
    await until(lambda: _ended(pool, rid), timeout=5)
    row = await row_of(pool, rid)
    assert (row["status"], row["result"]) == ("cancelled", "cancelled")
    # Ringing: our hangup is a SIP CANCEL; answered: a BYE.
    expected_end = "cancelled" if phase == "ringing" else "app_hangup"
    assert sim_channel(sim, f"twoway-{rid}-1a").end == expected_end


async def _status_is(pool: asyncpg.Pool, rid: int, status: str) -> bool:
    return bool((await row_of(pool, rid))["status"] == status)


async def _ended(pool: asyncpg.Pool, rid: int) -> bool:
    """The owning instance wrote its final record (causes) after the cancel."""
    row = await row_of(pool, rid)
    return row["leg_a_cause"] is not None


@pytest.mark.parametrize(
    ("columns", "reason"),
    [
        ({"original_cld": "12345"}, "original_cld must look like '2way_<CLD>'"),
        ({"original_cli": None}, "original_cli is missing"),
        ({"md5secret": None}, "md5secret is missing"),
        ({"original_cli": "12;34"}, "original_cli is not a dial string"),
    ],
)
async def test_invalid_rows_fail_without_dialling(
    pool: asyncpg.Pool,
    sim: Simulator,
    start_service: ServiceFactory,
    columns: dict[str, Any],
    reason: str,
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service()
    bad = await insert(pool, **columns)
    good = await insert(pool)
    row = await final_row(pool, bad)
    assert (row["status"], row["result"], row["result_reason"]) == (
        "failed",
        "invalid_request",
        reason,
    )
    assert row["attempts"] == 0
    assert (await final_row(pool, good))["result"] == "answered"
    assert all(f"twoway-{bad}-" not in o.query["channelId"] for o in originates(sim))


async def test_static_identity_dials_the_trunk(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service(identity_mode="static")
    rid = await insert(pool, md5secret=None)
    row = await final_row(pool, rid)
    assert (row["status"], row["result"]) == ("completed", "answered")
    assert [o.query["endpoint"] for o in originates(sim)] == [
        "PJSIP/87654321@softswitch",
        "PJSIP/12345@softswitch",
    ]
    assert not config_puts(sim, "auth")


async def test_concurrency_limit(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", answer_after_ms=20, hangup_after_ms=30))
    service = await start_service(max_concurrent=10)
    peak = 0
    admit = service.engine.admit

    def watching_admit(requests: list[Any]) -> None:
        nonlocal peak
        admit(requests)
        peak = max(peak, service.engine.live)

    service.watcher._on_claimed = watching_admit
    ids = [await insert(pool, original_cli=f"8765{i:04d}") for i in range(50)]
    for rid in ids:
        assert (await final_row(pool, rid, timeout=60))["result"] == "answered"
    assert 1 < peak <= 10
    assert len(originates(sim)) == 100


async def test_the_builtin_simulator_takes_calls_when_asked_for(
    db_url: str, pool: asyncpg.Pool
) -> None:
    settings = service_settings(db_url, "simulator", ari_user="twoway", leg_a_timeout=30)
    async with running_service(settings) as service:
        assert await service.wait_ready(10)
        rid = await insert(pool, md5secret=ha1("902", "any password works here"))
        row = await final_row(pool, rid, timeout=30)
    assert (row["status"], row["result"]) == ("completed", "answered")


async def test_an_empty_ari_url_is_refused_before_anything_starts(
    db_url: str, pool: asyncpg.Pool
) -> None:
    settings = service_settings(db_url, "")
    with pytest.raises(ConfigError, match=r"TWOWAY_ARI_URL is empty.*'simulator'"):
        async with running_service(settings):
            pass
    # Nothing was done: not even the instance lock was taken.
    locks = await pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert locks == 0
