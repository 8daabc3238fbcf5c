"""The simulator records what a real Asterisk records: the same causes per flow and version.

tests/asterisk_causes.py holds what tests/integration measured on real Asterisk 16 and 22;
here the same flows run against the simulator playing each version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from ari_simulator import Script, Simulator, SimulatorConfig
from stasis_app.app import running_service
from tests.asterisk_causes import causes, expected
from tests.conftest import PASSWORDS, REALM, ha1, service_settings
from tests.test_callflow import final_row, insert, row_of, until

# The simulator's version knob, and the real release it plays (the one measured).
RELEASES = {16: (16, 30, 1), 20: (20, 20, 1), 22: (22, 10, 1)}

FLOWS: dict[str, dict[str, Script]] = {
    "destination_hangs_up": {"87654321": Script(), "12345": Script(hangup_after_ms=100)},
    "leg_a_busy": {"87654321": Script(action="busy")},
    "leg_a_no_answer": {"87654321": Script(action="noanswer")},
    "destination_busy": {"87654321": Script(), "12345": Script(action="busy")},
    "destination_no_answer": {"87654321": Script(), "12345": Script(action="noanswer")},
    "leg_a_wrong_secret": {"87654321": Script()},
    "user_hangs_up": {
        "87654321": Script(hangup_after_ms=300),
        "12345": Script(action="noanswer"),
    },
    "cancel_bridged": {"87654321": Script(), "12345": Script()},
}


@pytest.fixture(params=sorted(RELEASES))
async def versioned_sim(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Simulator, int]]:
    config = SimulatorConfig(
        user="twoway",
        password="ari-secret-pw",
        realm=REALM,
        accounts=dict(PASSWORDS),
        version=request.param,
    )
    simulator = Simulator(config)
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator, request.param
    await simulator.stop()


@pytest.mark.parametrize("flow", sorted(FLOWS))
async def test_causes_as_on_a_real_asterisk(
    db_url: str, pool: asyncpg.Pool, versioned_sim: tuple[Simulator, int], flow: str
) -> None:
    sim, version = versioned_sim
    for number, script in FLOWS[flow].items():
        sim.script(number, script)
    # Ring timeouts: 1 s where the flow is about one, else long enough never to matter.
    leg_b_timeout = 1 if flow == "destination_no_answer" else 30
    settings = service_settings(db_url, sim.base_url, leg_a_timeout=1, leg_b_timeout=leg_b_timeout)
    secret = ha1("902", "not-the-password") if flow == "leg_a_wrong_secret" else ha1("902")
    async with running_service(settings) as service:
        assert await service.wait_ready(10)
        rid = await insert(pool, max_attempts=1, md5secret=secret)
        if flow == "cancel_bridged":
            await until(lambda: _status_is(pool, rid, "bridged"))
            await pool.execute(
                "UPDATE callback_requests SET status = 'cancelled' WHERE id = $1", rid
            )
            await until(lambda: _recorded(pool, rid))
            row = await row_of(pool, rid)
        else:
            row = await final_row(pool, rid)
    assert causes(row) == expected(flow, RELEASES[version])


async def _status_is(pool: asyncpg.Pool, rid: int, status: str) -> bool:
    return bool((await row_of(pool, rid))["status"] == status)


async def _recorded(pool: asyncpg.Pool, rid: int) -> bool:
    return (await row_of(pool, rid))["leg_b_cause"] is not None
