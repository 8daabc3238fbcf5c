"""What every benchmark needs: a fresh database, the simulator in this process, the service in
another process (so its CPU and memory are its own), the counters that make a figure robust on a
busy machine (the service's CPU time, its ARI requests and SQL statements), and the machine's
description. Every wait is bounded: a benchmark that cannot finish reports instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from ari_simulator import Script, Simulator, SimulatorConfig
from ari_simulator.model import RequestRecord
from tests.pg import PgTestServer, with_database

ARI_PASSWORD = "bench-ari"  # the simulator's made-up account
HA1 = "0" * 32
_TICKS = os.sysconf("SC_CLK_TCK")
LOGS = Path(__file__).resolve().parent / "results"  # the service's log lines go to service.log


class StatementCount:
    """asyncpg query logger: the bench's own statements, subtracted from the database's count."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, _query: Any) -> None:
        self.total += 1


@dataclass
class Bench:
    pool: asyncpg.Pool
    db_url: str
    sim: Simulator
    originated: dict[str, float] = field(default_factory=dict)  # channel id -> monotonic time
    process: asyncio.subprocess.Process | None = None
    http_url: str = ""
    own: StatementCount = field(default_factory=lambda: StatementCount())
    service_statements: int | None = None  # known once the service and the pool have closed

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

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service process so far."""
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/stat") as stat:
            # fields after the parenthesised command name; utime and stime are 14 and 15
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    async def ari_requests(self) -> int:
        """ARI requests the service has sent (its own counter: the simulator trims its log)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.http_url}/metrics") as resp:
            text = await resp.text()
        return int(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("twoway_ari_request_seconds_count")
            )
        )

    async def insert_many(self, count: int, prefix: str = "7", *, delay: float = 0.0) -> list[int]:
        rows = await self.pool.fetch(
            "INSERT INTO callback_requests (username, md5secret, original_cli, original_cld, "
            "next_call) SELECT '801', $1, $2 || g::text, '2way_12345', "
            "now() + make_interval(secs => $4) FROM generate_series(1, $3) g RETURNING id",
            HA1,
            prefix,
            count,
            delay,
        )
        return [r["id"] for r in rows]

    async def rows_left(self, ids: list[int], statuses: tuple[str, ...]) -> int:
        left: int = await self.pool.fetchval(
            "SELECT count(*) FROM callback_requests WHERE id = ANY($1) "
            "AND status <> ALL($2::text[])",
            ids,
            list(statuses),
        )
        return left

    async def wait_rows(self, ids: list[int], statuses: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (left := await self.rows_left(ids, statuses)) > 0:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{left} of {len(ids)} rows not {statuses} after {timeout} s")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def bench_setup(
    pg: PgTestServer,
    scripts: dict[str, Script],
    *,
    background: int = 0,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Bench]:
    """A fresh database (with ``background`` rows pending a day from now), the simulator, the
    service. On exit the service's SQL statement count is known (``service_statements``)."""
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
    own = StatementCount()

    async def count_own(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(own)

    async def no_reset(_conn: asyncpg.Connection) -> None:
        """No reset statement per release: it would count as a transaction."""

    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=count_own, reset=no_reset)
    bench = Bench(pool=pool, db_url=db_url, sim=sim, own=own)
    sim.request_observer = bench.observe
    try:
        if background:
            await bench.insert_many(background, prefix="5", delay=86400.0)
            await pool.execute("ANALYZE callback_requests")
        await _spawn_service(bench, env or {})
        yield bench
    finally:
        await _stop_service(bench)
        await pool.close()
        await sim.stop()
        total = await _transactions(pg, name)
        if total is not None:
            bench.service_statements = total - own.total
        await asyncio.to_thread(pg.drop_database, name)


async def _stop_service(bench: Bench) -> None:
    process = bench.process
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _transactions(pg: PgTestServer, name: str) -> int | None:
    """Transactions the database ran: one per statement for autocommit clients.

    Read once every backend of the database has exited (they flush their counts on exit).
    """
    admin = await asyncpg.connect(pg.admin_url)
    try:
        deadline = time.monotonic() + 10
        while await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
        ):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        total: int | None = await admin.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", name
        )
        return total
    finally:
        await admin.close()


async def _spawn_service(bench: Bench, env: dict[str, str]) -> None:
    port = _free_port()
    environment = {
        **os.environ,
        "TWOWAY_DATABASE_URL": bench.db_url,
        "TWOWAY_ARI_URL": bench.sim.base_url,
        "TWOWAY_ARI_PASSWORD": ARI_PASSWORD,
        "TWOWAY_IDENTITY_MODE": "static",
        "TWOWAY_HTTP_LISTEN": f"127.0.0.1:{port}",
        "TWOWAY_LOG_LEVEL": "INFO",  # the default: what its log lines cost is part of the cost
        "TWOWAY_MAX_CPS": "100000",
        "TWOWAY_MAX_CONCURRENT": "20000",
        "TWOWAY_CLAIM_BATCH": "500",
        **env,
    }
    command = [sys.executable, "-m", "stasis_app.cli", "run"]
    LOGS.mkdir(parents=True, exist_ok=True)
    log = os.open(LOGS / "service.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:  # the child keeps its own copy of the descriptor
        bench.process = await asyncio.create_subprocess_exec(
            *command, env=environment, stdout=log, stderr=log
        )
    finally:
        os.close(log)
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


def load() -> float:
    """The machine's 1-minute load average: how busy it was while a figure was taken."""
    return os.getloadavg()[0]


async def machine(pool: asyncpg.Pool) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": await pool.fetchval("SHOW server_version"),
        "platform": platform.platform(),
        "load_at_start": load(),
    }
