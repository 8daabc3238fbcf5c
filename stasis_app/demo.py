"""The README's run command: embedded Postgres + ARI simulator + the service, one callback.

Inserts the seed's example row and prints each state change until the row is final.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from ari_simulator import Script, Simulator, SimulatorConfig
from stasis_app.app import running_service
from stasis_app.config import Settings

REALM = "softswitch.lab"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - the simulator's made-up account

SEED_INSERT = """
INSERT INTO callback_requests (username, authname, md5secret, original_cli, original_cld)
VALUES ('801', '902', $1, '87654321', '2way_12345')
RETURNING id
"""


def ha1(user: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{user}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


async def run_demo(timeout: float = 60.0) -> int:
    with tempfile.TemporaryDirectory(prefix="twoway-demo-") as tmp:
        sim = Simulator(
            SimulatorConfig(
                user="twoway",
                password="twoway",  # noqa: S106
                realm=REALM,
                accounts={"902": DEMO_PASSWORD},
            )
        )
        sim.script("87654321", Script(action="answer", ring_ms=500, answer_after_ms=1000))
        sim.script(
            "12345",
            Script(action="answer", ring_ms=500, answer_after_ms=1000, hangup_after_ms=3000),
        )
        url = await sim.start(host="127.0.0.1", port=0)
        settings = Settings(
            database_url=SecretStr(""),
            data_dir=Path(tmp),
            ari_url=url,
            ari_user="twoway",
            ari_password=SecretStr("twoway"),
            sip_realm=REALM,
            http_listen="127.0.0.1:0",
        )
        try:
            async with running_service(settings, ari_url=url) as service:
                return await _follow(service.pool, timeout)
        finally:
            await sim.stop()


async def _follow(pool: asyncpg.Pool, timeout: float) -> int:
    request_id = await pool.fetchval(SEED_INSERT, ha1("902", REALM, DEMO_PASSWORD))
    print(f"inserted the seed's example row: callback_requests.id = {request_id}")
    seen = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        rows = await pool.fetch(
            "SELECT at, old_status, new_status, result FROM callback_request_history "
            "WHERE request_id = $1 ORDER BY id OFFSET $2",
            request_id,
            seen,
        )
        for row in rows:
            seen += 1
            change = f"{row['old_status'] or '-'} -> {row['new_status']}"
            result = f" ({row['result']})" if row["result"] else ""
            print(f"  {row['at']:%H:%M:%S.%f}  {change}{result}")
            if row["new_status"] in ("completed", "failed", "cancelled"):
                return await _summary(pool, request_id)
        await asyncio.sleep(0.1)
    print("the callback did not finish in time")
    return 1


async def _summary(pool: asyncpg.Pool, request_id: int) -> int:
    row = await pool.fetchrow(
        "SELECT status, result, result_reason, attempts, call_id, twoway_call_id, "
        "leg_a_sip_call_id, leg_b_sip_call_id, leg_a_cause, leg_b_cause, "
        "round(leg_a_duration::numeric, 1) AS a_s, round(leg_b_duration::numeric, 1) AS b_s "
        "FROM callback_requests WHERE id = $1",
        request_id,
    )
    for key, value in row.items():
        print(f"  {key:>18}: {value}")
    ok = (row["status"], row["result"]) == ("completed", "answered")
    print("demo: callback completed" if ok else "demo: callback did NOT complete")
    return 0 if ok else 1
