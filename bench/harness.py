"""What every benchmark needs: a fresh database, the simulator in this process, the service in
another process (so its CPU and memory are its own), and the machine's description."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from ari_simulator import Script, Simulator, SimulatorConfig
from ari_simulator.model import RequestRecord
from tests.pg import PgTestServer, with_database

ARI_PASSWORD = "bench-ari"  # the simulator's made-up account
HA1 = "0" * 32


@dataclass
class Bench:
    pool: asyncpg.Pool
    db_url: str
    sim: Simulator
    originated: dict[str, float] = field(default_factory=dict)  # channel id -> monotonic time
    process: asyncio.subprocess.Process | None = None
    http_url: str = ""

    def observe(self, record: RequestRecord) -> None:
        if record.method == "POST" and record.path == "/channels":
            channel_id = record.query.get("channelId")
            if channel_id:
                self.originated[channel_id] = time.monotonic()

    def rss_mb(self) -> float:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    async def insert_many(self, count: int, prefix: str = "7") -> list[int]:
        rows = await self.pool.fetch(
            "INSERT INTO callback_requests (username, md5secret, original_cli, original_cld) "
            "SELECT '801', $1, $2 || g::text, '2way_12345' FROM generate_series(1, $3) g "
            "RETURNING id",
            HA1,
            prefix,
            count,
        )
        return [r["id"] for r in rows]

    async def wait_rows(self, ids: list[int], statuses: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = await self.pool.fetchval(
                "SELECT count(*) FROM callback_requests WHERE id = ANY($1) "
                "AND status <> ALL($2::text[])",
                ids,
                list(statuses),
            )
            if left == 0:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"rows not {statuses} after {timeout} s")


@contextlib.asynccontextmanager
async def bench_setup(
    pg: PgTestServer, scripts: dict[str, Script], **env: str
) -> AsyncIterator[Bench]:
    name = await asyncio.to_thread(pg.create_database)
    db_url = with_database(pg.admin_url, name)
    sim = Simulator(
        SimulatorConfig(
            user="twoway",
            password=ARI_PASSWORD,
            default_script=Script(action="answer"),
            keep_ended=1000,
            keep_requests=10_000,
        )
    )
    for number, script in scripts.items():
        sim.script(number, script)
    await sim.start()
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    bench = Bench(pool=pool, db_url=db_url, sim=sim)
    sim.request_observer = bench.observe
    try:
        await _spawn_service(bench, env)
        yield bench
    finally:
        if bench.process is not None and bench.process.returncode is None:
            bench.process.terminate()
            try:
                await asyncio.wait_for(bench.process.wait(), 30)
            except TimeoutError:
                bench.process.kill()
                await bench.process.wait()
        await pool.close()
        await sim.stop()
        await asyncio.to_thread(pg.drop_database, name)


async def _spawn_service(bench: Bench, env: dict[str, str]) -> None:
    port = _free_port()
    environment = {
        **os.environ,
        "TWOWAY_DATABASE_URL": bench.db_url,
        "TWOWAY_ARI_URL": bench.sim.base_url,
        "TWOWAY_ARI_PASSWORD": ARI_PASSWORD,
        "TWOWAY_IDENTITY_MODE": "static",
        "TWOWAY_HTTP_LISTEN": f"127.0.0.1:{port}",
        "TWOWAY_LOG_LEVEL": "WARNING",
        "TWOWAY_MAX_CPS": "100000",
        "TWOWAY_MAX_CONCURRENT": "20000",
        "TWOWAY_CLAIM_BATCH": "500",
        **env,
    }
    command = [sys.executable, "-m", "stasis_app.cli", "run"]
    bench.process = await asyncio.create_subprocess_exec(
        *command, env=environment, stdout=asyncio.subprocess.DEVNULL
    )
    bench.http_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{bench.http_url}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError("the service did not become ready")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def machine(pool: asyncpg.Pool) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": await pool.fetchval("SHOW server_version"),
        "platform": platform.platform(),
    }
