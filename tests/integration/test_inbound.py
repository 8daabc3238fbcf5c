"""The inbound `ani_2way_<CLD>` trigger through the shipped dialplan, on a real Asterisk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.integration.asterisk import Asterisk
from tests.integration.calls import CALL_TIMEOUT, digest_matches, ended_dialogs, ha1, start_service
from tests.integration.service import ServiceProcess
from tests.integration.softswitch import Line, Softswitch, inbound_call
from tests.test_callflow import final_row

pytestmark = pytest.mark.asterisk

CALLER = "4930123456"
TALK_MS = 3000


async def test_inbound_trigger_rejected_unanswered_then_called_back(
    asterisk: Asterisk,
    pool: asyncpg.Pool,
    softswitch: Softswitch,
    service: ServiceProcess,
    tmp_path: Path,
) -> None:
    auth = ("902", "pw-902")
    softswitch.start(
        {
            CALLER: Line("answer", auth=auth),
            "12345": Line("answer", auth=auth, hangup_after_ms=TALK_MS),
        }
    )
    await pool.execute(
        "INSERT INTO callback_accounts (cli, username, authname, md5secret)"
        " VALUES ($1, $2, $3, $4)",
        CALLER,
        "801",
        "902",
        ha1(*auth),
    )
    await start_service(service, TWOWAY_INBOUND_CALLBACK_DELAY="0")

    # The softswitch's translation rule made the CLD ani_2way_12345; 486 is the default reason.
    call = await asyncio.to_thread(
        inbound_call, tmp_path, asterisk.sip_port, CALLER, "ani_2way_12345", 486, CALL_TIMEOUT
    )
    assert call.returncode == 0, [m.first_line for m in call.messages]
    statuses = [m.status for m in call.messages if m.direction == "in" and m.status]
    assert 200 not in statuses  # rejected without answering: the caller is not billed
    assert statuses[-1] == 486

    rid = await pool.fetchval("SELECT id FROM callback_requests WHERE original_cli = $1", CALLER)
    assert rid is not None
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000)
    assert (row["source"], row["original_cld"]) == ("inbound", "2way_12345")
    assert (row["status"], row["result"]) == ("completed", "answered")
    calls = await ended_dialogs(softswitch, CALLER, "12345")
    assert (calls[CALLER].from_user, calls["12345"].from_user) == (CALLER, "801")
    for dialog in calls.values():
        assert dialog.invites[-1].digest()["username"] == "902"
        assert digest_matches(dialog.invites[-1], row["md5secret"])
    assert calls[CALLER].call_id == row["leg_a_sip_call_id"]


async def test_number_outside_the_pattern_is_not_found(
    asterisk: Asterisk, softswitch: Softswitch, service: ServiceProcess, tmp_path: Path
) -> None:
    softswitch.start({})
    await start_service(service)
    # Only _a[n]i_2way_. goes to the app; anything else from the softswitch does not exist.
    call = await asyncio.to_thread(
        inbound_call, tmp_path, asterisk.sip_port, CALLER, "12345", 404, CALL_TIMEOUT
    )
    assert call.returncode == 0, [m.first_line for m in call.messages]


async def test_inbound_rejected_with_ringback_and_403(
    asterisk: Asterisk,
    pool: asyncpg.Pool,
    softswitch: Softswitch,
    service: ServiceProcess,
    tmp_path: Path,
) -> None:
    softswitch.start({})
    await pool.execute(
        "INSERT INTO callback_accounts (cli, username, authname, md5secret)"
        " VALUES ($1, $2, $3, $4)",
        CALLER,
        "801",
        "902",
        ha1("902", "pw-902"),
    )
    await start_service(
        service,
        TWOWAY_INBOUND_REJECT_REASON="rejected",
        TWOWAY_INBOUND_RINGBACK_MS="200",
        TWOWAY_INBOUND_CALLBACK_DELAY="3600",
    )
    call = await asyncio.to_thread(
        inbound_call, tmp_path, asterisk.sip_port, CALLER, "ani_2way_12345", 403, CALL_TIMEOUT
    )
    assert call.returncode == 0, [m.first_line for m in call.messages]
    statuses = [m.status for m in call.messages if m.direction == "in" and m.status]
    assert 180 in statuses and 200 not in statuses
    assert statuses[-1] == 403
    row = await pool.fetchrow("SELECT * FROM callback_requests WHERE original_cli = $1", CALLER)
    assert (row["status"], row["source"], row["original_cld"]) == (
        "pending",
        "inbound",
        "2way_12345",
    )
