"""Faults against a real Asterisk: Asterisk restarted with rows queued, kill -9 of the service."""

from __future__ import annotations

import time

import asyncpg
import pytest

from stasis_app.config import Settings
from tests.integration.asterisk import Asterisk
from tests.integration.calls import (
    CALL_TIMEOUT,
    channel_name,
    digest_matches,
    ended_dialogs,
    ha1,
    readiness,
    start_service,
)
from tests.integration.service import ServiceProcess
from tests.integration.softswitch import Line, Softswitch
from tests.test_callflow import final_row, insert, row_of, until
from tests.test_crash import resolved

pytestmark = pytest.mark.asterisk

AUTH = ("902", "pw-902")
TALK_MS = 2000


async def test_asterisk_restarted_with_rows_queued(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start(
        {
            "87654321": Line("answer", auth=AUTH),
            "12345": Line("answer", auth=AUTH, hangup_after_ms=TALK_MS),
        }
    )
    await start_service(service, TWOWAY_ARI_RECONNECT_MAX="1")
    before = await insert(pool, md5secret=ha1(*AUTH))
    assert (await final_row(pool, before, timeout=CALL_TIMEOUT))["result"] == "answered"

    asterisk.stop()

    async def ari_down() -> bool:
        return "ari" in (await readiness(service))[1]

    await until(ari_down, CALL_TIMEOUT)
    queued = [await insert(pool, md5secret=ha1(*AUTH)) for _ in range(2)]
    asterisk.start()  # same config and ports; the per-call identity objects are gone
    rows = [await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000) for rid in queued]
    for row in rows:
        assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 1)
    await until(lambda: len(softswitch.dialogs_to("12345")) == 3, CALL_TIMEOUT)
    await ended_dialogs(softswitch, "87654321", "12345")
    by_call_id = {d.call_id: d for d in softswitch.dialogs()}
    for row in rows:
        leg_a = by_call_id[row["leg_a_sip_call_id"]]
        leg_b = by_call_id[row["leg_b_sip_call_id"]]
        assert digest_matches(leg_a.invites[-1], row["md5secret"])
        assert digest_matches(leg_b.invites[-1], row["md5secret"])
    # Nothing was dialled twice: one call per leg and row.
    assert len(softswitch.dialogs_to("87654321")) == 3


async def test_service_killed_mid_call_then_restarted(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": Line("answer", auth=AUTH), "12345": Line("answer", auth=AUTH)})
    await start_service(service)
    rid = await insert(pool, md5secret=ha1(*AUTH))

    async def bridged() -> bool:
        return (await row_of(pool, rid))["status"] == "bridged"

    await until(bridged, CALL_TIMEOUT)
    lost_lease = (await row_of(pool, rid))["lease_token"]
    service.kill9()
    # A restart with the same TWOWAY_INSTANCE_ID recovers its rows at once.
    await start_service(service)

    async def recovered() -> bool:
        row = await row_of(pool, rid)
        return row["lease_token"] != lost_lease or row["status"] != "bridged"

    await until(recovered, CALL_TIMEOUT)
    row = await row_of(pool, rid)
    assert row["status"] == "bridged", dict(row)  # adopted: the people talking are not cut off
    leg_b = channel_name(asterisk, row["leg_b_channel_id"])
    assert leg_b is not None
    asterisk.cli(f"channel request hangup {leg_b}")
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT)
    assert (row["status"], row["result"]) == ("completed", "answered")
    assert row["result_reason"] == "destination hung up"
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    assert (calls["87654321"].ended_by, calls["12345"].ended_by) == ("asterisk", "asterisk")
    # Neither phone rang twice.
    assert len(softswitch.dialogs_to("87654321")) == len(softswitch.dialogs_to("12345")) == 1


async def test_kill_9_and_immediate_restart_with_default_settings(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    """Issue 13, item 7, as an operator would: no TWOWAY_INSTANCE_ID, the default lease, three
    calls bridged and three with leg B ringing; kill -9, start again at once. The default id
    (host + ARI app) is the same, so the restart takes its rows back at once: bridged calls
    adopted, ringing legs hung up before any redial. Prints the time it took."""
    softswitch.start(
        {
            "87654321": Line("answer", auth=AUTH),
            "12345": Line("answer", auth=AUTH),
            "99999": Line("ring", auth=AUTH),
        }
    )
    default_id = {"TWOWAY_INSTANCE_ID": "", "TWOWAY_RETRY_DELAY": "60"}
    await start_service(service, **default_id)
    bridged = [await insert(pool, md5secret=ha1(*AUTH)) for _ in range(3)]
    ringing = [
        await insert(pool, md5secret=ha1(*AUTH), original_cld="2way_99999") for _ in range(3)
    ]

    async def status_is(rid: int, status: str) -> bool:
        return bool((await row_of(pool, rid))["status"] == status)

    for rid in bridged:
        await until(lambda rid=rid: status_is(rid, "bridged"), CALL_TIMEOUT)
    for rid in ringing:
        await until(lambda rid=rid: status_is(rid, "connecting"), CALL_TIMEOUT)
    await until(lambda: len(softswitch.dialogs_to("99999")) == 3, CALL_TIMEOUT)
    service.kill9()
    restarted_at = await pool.fetchval("SELECT clock_timestamp()")
    started = time.monotonic()
    await start_service(service, **default_id)

    lease = Settings().lease_seconds
    await until(
        lambda: resolved(pool, bridged, ringing, restarted_at), lease / 4
    )  # far below the 120 s lease: it was not waited out
    print(
        f"\nreal Asterisk: kill -9 + restart resolved every live row in"
        f" {time.monotonic() - started:.1f} s (process start included)"
    )
    for rid in ringing:  # hung up, not dialled again (the retry is a minute away)
        assert (await row_of(pool, rid))["attempts"] == 1
    assert len(softswitch.dialogs_to("87654321")) == 6  # nobody's phone rang twice
