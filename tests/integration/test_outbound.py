"""Callbacks through a real Asterisk to sipp playing the softswitch (outbound legs)."""

from __future__ import annotations

import asyncio
import datetime

import asyncpg
import pytest

from tests.asterisk_causes import causes, expected
from tests.integration.asterisk import Asterisk
from tests.integration.calls import (
    CALL_TIMEOUT,
    digest_matches,
    ended_dialogs,
    ha1,
    start_service,
)
from tests.integration.service import ServiceProcess
from tests.integration.softswitch import BUSY, RING, Line, Softswitch
from tests.test_callflow import final_row, insert, row_of, until
from tests.test_schema import SEED_INSERT

pytestmark = pytest.mark.asterisk

PASSWORD = "pw-902"
# The talk time before the destination hangs up: far longer than bridging takes.
TALK_MS = 3000


async def test_seed_insert_verbatim(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    secret = ha1("902", PASSWORD)
    softswitch.start(
        {
            "87654321": Line("answer", auth=("902", PASSWORD)),
            "12345": Line("answer", auth=("902", PASSWORD), hangup_after_ms=TALK_MS),
        }
    )
    await start_service(service)
    # The seed's example, as written there (only <md5secret> filled in).
    rid = await pool.fetchval(SEED_INSERT.replace("<md5secret>", secret) + " RETURNING id")
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000)
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    leg_a, leg_b = calls["87654321"], calls["12345"]

    assert (row["status"], row["result"]) == ("completed", "answered")
    assert row["result_reason"] == "destination hung up"
    assert row["attempts"] == 1
    assert causes(row) == expected("destination_hangs_up", asterisk.version)
    # What the softswitch received, leg by leg.
    assert (leg_a.from_user, leg_b.from_user) == ("87654321", "801")
    for dialog in (leg_a, leg_b):
        assert dialog.invites[0].digest() == {}
        assert dialog.invites[-1].digest()["username"] == "902"
        assert digest_matches(dialog.invites[-1], row["md5secret"])
    assert leg_a.call_id == row["leg_a_sip_call_id"]
    assert leg_b.call_id == row["leg_b_sip_call_id"]
    assert leg_a.header("X-Callback-Call-ID") == row["call_id"]
    assert leg_b.header("X-Callback-Call-ID") == row["twoway_call_id"] == f"{row['call_id']}-2way"
    # The destination hung up; Asterisk then hung up the user.
    assert (leg_a.ended_by, leg_b.ended_by) == ("asterisk", "softswitch")


def _identity(**columns: object) -> dict[str, object]:
    return {"username": "801", "authname": "902", "md5secret": ha1("902", PASSWORD), **columns}


AUTH = ("902", PASSWORD)


async def test_leg_a_busy_then_retried(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": Line("reject", 486, auth=AUTH)})
    await start_service(service)
    # A long retry delay holds the retry until the softswitch has changed its mind.
    rid = await insert(pool, **_identity(retry_delay=datetime.timedelta(hours=1), max_attempts=2))

    async def back_in_queue() -> bool:
        row = await row_of(pool, rid)
        return row["status"] == "pending" and row["attempts"] == 1

    await until(back_in_queue, CALL_TIMEOUT)
    first = await row_of(pool, rid)
    assert first["result"] == "callback_busy"
    assert causes(first) == expected("leg_a_busy", asterisk.version)
    busy = softswitch.dialogs_to("87654321")
    assert [d.final_status for d in busy] == [486]
    softswitch.stop()
    softswitch.start(
        {
            "87654321": Line("answer", auth=AUTH),
            "12345": Line("answer", auth=AUTH, hangup_after_ms=TALK_MS),
        }
    )
    await pool.execute("UPDATE callback_requests SET next_call = now() WHERE id = $1", rid)
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered", 2)
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    # The retry is a new SIP call with the row's own Call-ID header again.
    assert calls["87654321"].call_id not in {d.call_id for d in busy}
    assert calls["87654321"].call_id == row["leg_a_sip_call_id"]
    assert calls["87654321"].header("X-Callback-Call-ID") == row["call_id"]
    assert row["leg_a_channel_id"].endswith("-2a")


async def test_leg_a_no_answer(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": RING})
    ring_timeout = 3
    await start_service(service, TWOWAY_LEG_A_TIMEOUT=str(ring_timeout))
    rid = await insert(pool, **_identity(max_attempts=1))
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + ring_timeout)
    assert (row["status"], row["result"]) == ("failed", "callback_no_answer")
    assert causes(row) == expected("leg_a_no_answer", asterisk.version)
    calls = await ended_dialogs(softswitch, "87654321")
    assert calls["87654321"].ended_by == "asterisk"  # CANCEL
    assert calls["87654321"].final_status == 487
    assert softswitch.dialogs_to("12345") == []


async def test_destination_busy(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": Line("answer", auth=AUTH), "12345": BUSY})
    await start_service(service)
    rid = await insert(pool, **_identity())
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT)
    assert (row["status"], row["result"]) == ("failed", "destination_busy")
    assert causes(row) == expected("destination_busy", asterisk.version)
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    assert calls["12345"].final_status == 486
    assert calls["87654321"].ended_by == "asterisk"
    assert calls["12345"].header("X-Callback-Call-ID") == row["twoway_call_id"]


async def test_user_hangs_up_while_destination_rings(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start(
        {"87654321": Line("answer", auth=AUTH, hangup_after_ms=TALK_MS), "12345": RING}
    )
    await start_service(service, TWOWAY_LEG_B_TIMEOUT="60")
    rid = await insert(pool, **_identity())
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000)
    assert (row["status"], row["result"]) == ("failed", "user_hangup")
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    assert calls["87654321"].ended_by == "softswitch"
    assert calls["12345"].ended_by == "asterisk"  # CANCEL of the ringing destination
    assert calls["12345"].final_status == 487
    assert causes(row) == expected("user_hangs_up", asterisk.version)


async def test_cancel_while_bridged(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": Line("answer", auth=AUTH), "12345": Line("answer", auth=AUTH)})
    await start_service(service)
    rid = await insert(pool, **_identity())

    async def bridged() -> bool:
        return (await row_of(pool, rid))["status"] == "bridged"

    await until(bridged, CALL_TIMEOUT)
    await pool.execute("UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid)

    async def recorded() -> bool:
        # The SQL made the row final at once; the owner then writes what the legs reported.
        return (await row_of(pool, rid))["leg_b_cause"] is not None

    await until(recorded, CALL_TIMEOUT)
    row = await row_of(pool, rid)
    assert (row["status"], row["result"]) == ("cancelled", "cancelled")
    assert causes(row) == expected("cancel_bridged", asterisk.version)
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    assert (calls["87654321"].ended_by, calls["12345"].ended_by) == ("asterisk", "asterisk")


async def test_identity_overrides(
    pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start(
        {
            "87654321": Line("answer", auth=AUTH),
            "12345": Line("answer", auth=("903", "pw-903"), hangup_after_ms=TALK_MS),
        }
    )
    await start_service(service)
    rid = await insert(
        pool,
        **_identity(
            original_set_cli="4930111",
            twoway_cli="4930999",
            twoway_authname="903",
            twoway_md5secret=ha1("903", "pw-903"),
            call_id="preset-call-id-a",
            twoway_call_id="preset-call-id-b",
        ),
    )
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000)
    assert (row["status"], row["result"]) == ("completed", "answered")
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    leg_a, leg_b = calls["87654321"], calls["12345"]
    assert (leg_a.from_user, leg_b.from_user) == ("4930111", "4930999")
    assert leg_a.invites[-1].digest()["username"] == "902"
    assert leg_b.invites[-1].digest()["username"] == "903"
    assert digest_matches(leg_a.invites[-1], row["md5secret"])
    assert digest_matches(leg_b.invites[-1], row["twoway_md5secret"])
    assert leg_a.header("X-Callback-Call-ID") == "preset-call-id-a"
    assert leg_b.header("X-Callback-Call-ID") == "preset-call-id-b"
    assert (row["call_id"], row["twoway_call_id"]) == ("preset-call-id-a", "preset-call-id-b")


async def test_wrong_secret_is_refused(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": Line("answer", auth=AUTH)})
    await start_service(service)
    rid = await insert(pool, **_identity(md5secret=ha1("902", "not-the-password"), max_attempts=1))
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT)
    assert (row["status"], row["result"]) == ("failed", "callback_rejected")
    assert causes(row) == expected("leg_a_wrong_secret", asterisk.version)
    (call,) = (await ended_dialogs(softswitch, "87654321")).values()
    assert call.final_status == 403
    assert call.invites[-1].digest()["username"] == "902"
    assert digest_matches(call.invites[-1], row["md5secret"])  # the row's HA1, a wrong one


async def test_destination_no_answer(
    asterisk: Asterisk, pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": Line("answer", auth=AUTH), "12345": RING})
    ring_timeout = 3
    await start_service(service, TWOWAY_LEG_B_TIMEOUT=str(ring_timeout))
    rid = await insert(pool, **_identity())
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + ring_timeout)
    assert (row["status"], row["result"]) == ("failed", "destination_no_answer")
    assert causes(row) == expected("destination_no_answer", asterisk.version)
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    assert (calls["87654321"].ended_by, calls["12345"].ended_by) == ("asterisk", "asterisk")
    assert calls["12345"].final_status == 487


async def test_static_identity_dials_the_trunk_as_configured(
    pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    # Sites that trust Asterisk by IP: no challenge, no per-call objects.
    softswitch.start({"87654321": Line("answer"), "12345": Line("answer", hangup_after_ms=TALK_MS)})
    await start_service(service, TWOWAY_IDENTITY_MODE="static")
    rid = await insert(pool, **_identity())
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000)
    assert (row["status"], row["result"]) == ("completed", "answered")
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    assert (calls["87654321"].from_user, calls["12345"].from_user) == ("87654321", "801")
    assert all(len(d.invites) == 1 and d.invites[0].digest() == {} for d in calls.values())


async def test_shutdown_hangs_up_live_calls_after_the_grace(
    pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
) -> None:
    softswitch.start({"87654321": Line("answer", auth=AUTH), "12345": Line("answer", auth=AUTH)})
    await start_service(service, TWOWAY_SHUTDOWN_GRACE="1")
    rid = await insert(pool, **_identity())

    async def bridged() -> bool:
        return (await row_of(pool, rid))["status"] == "bridged"

    await until(bridged, CALL_TIMEOUT)
    assert service.proc is not None
    service.proc.terminate()
    assert await asyncio.to_thread(service.proc.wait, CALL_TIMEOUT) == 0
    row = await row_of(pool, rid)
    assert (row["status"], row["result"]) == ("completed", "answered")
    assert row["result_reason"] == "hung up at service shutdown"
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    assert (calls["87654321"].ended_by, calls["12345"].ended_by) == ("asterisk", "asterisk")
