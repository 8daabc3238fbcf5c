"""Callbacks through a real Asterisk to sipp playing the softswitch (outbound legs)."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.calls import CALL_TIMEOUT, digest_matches, ended_dialogs, ha1, start_service
from tests.integration.service import ServiceProcess
from tests.integration.softswitch import Line, Softswitch
from tests.test_callflow import final_row

pytestmark = pytest.mark.asterisk

PASSWORD = "pw-902"
# The talk time before the destination hangs up: far longer than bridging takes.
TALK_MS = 3000


async def test_seed_insert_verbatim(
    pool: asyncpg.Pool, softswitch: Softswitch, service: ServiceProcess
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
    rid = await pool.fetchval(
        f"""
  INSERT INTO callback_requests (
     username,
     authname,
     md5secret,
     original_cli,
     original_cld
  )
  VALUES (
    '801',
    '902',
    '{secret}',
    '87654321',
    '2way_12345'
  )
  RETURNING id"""
    )
    row = await final_row(pool, rid, timeout=CALL_TIMEOUT + TALK_MS / 1000)
    calls = await ended_dialogs(softswitch, "87654321", "12345")
    leg_a, leg_b = calls["87654321"], calls["12345"]

    assert (row["status"], row["result"]) == ("completed", "answered")
    assert row["result_reason"] == "destination hung up"
    assert row["attempts"] == 1
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
    print(dict(row))
