"""``make bench``: pick-up latency, throughput, concurrency, cost growth; a table and JSON.

The service runs as its own process (`twoway-callback run`); the ARI simulator and the load
run in this one. Figures are for the machine they ran on: see the README's Performance section.
CPU time of the service and its ARI requests and SQL statements per callback are counts, robust
on a busy machine; latencies and rates are not (each entry records the load average it ran at).
Every benchmark is bounded in time: one that cannot finish reports an error and the rest run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from ari_simulator import Script
from bench.harness import HA1, Bench, bench_setup, load, machine, percentile
from tests.pg import PgTestServer

RESULTS = Path(__file__).resolve().parent / "results"
# Every number answers at once; the destination (12345) hangs up after a 1 s talk.
ANSWER = Script(action="answer")
SHORT_TALK = {"12345": Script(action="answer", hangup_after_ms=1000)}
HELD = {"12345": ANSWER}  # nobody hangs up
TEARDOWN_BOUND = 120.0  # a teardown slower than this is reported as unfinished
# Seconds one run of each benchmark may take before it is reported as unfinished.
BOUND = {"pickup_latency": 120, "throughput": 300, "concurrency": 600, "cost_growth": 300}


async def _pickup(bench: Bench, count: int, rate: float) -> dict[str, Any]:
    """Insert ``count`` rows one by one at ``rate``; INSERT commit → leg-A originate at ARI."""
    committed: dict[int, float] = {}
    interval = 1 / rate
    start = time.monotonic()
    for n in range(count):
        await _until(start + n * interval)
        rid = await bench.pool.fetchval(
            "INSERT INTO callback_requests (username, md5secret, original_cli, "
            "original_cld) VALUES ('801', $1, $2, '2way_12345') RETURNING id",
            HA1,
            f"6{n:06d}",
        )
        committed[rid] = time.monotonic()  # autocommit: the INSERT has committed
    await bench.wait_rows(list(committed), ("completed", "failed"), 60 + count / rate)
    latencies = [
        (bench.originated[f"twoway-{rid}-1a"] - at) * 1000
        for rid, at in committed.items()
        if f"twoway-{rid}-1a" in bench.originated
    ]
    return {
        "requests": count,
        "rate_per_s": rate,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
    }


async def pickup_latency(
    pg: PgTestServer, count: int, rate: float, *, listen: bool
) -> dict[str, Any]:
    env = {} if listen else {"TWOWAY_LISTEN_ENABLED": "false"}
    async with bench_setup(pg, SHORT_TALK, env=env) as bench:
        figures = {"listen": listen, **await _pickup(bench, count, rate), "load": load()}
    return figures


async def _completed(bench: Bench, count: int, prefix: str) -> dict[str, Any]:
    """Insert ``count`` rows at once and wait for them all: rate and the service's cost."""
    cpu, ari = bench.cpu_seconds(), await bench.ari_requests()
    start = time.monotonic()
    ids = await bench.insert_many(count, prefix)
    await bench.wait_rows(ids, ("completed", "failed"), 60 + count / 50)
    elapsed = time.monotonic() - start
    cpu, ari = bench.cpu_seconds() - cpu, await bench.ari_requests() - ari
    completed: int = await bench.pool.fetchval(
        "SELECT count(*) FROM callback_requests WHERE id = ANY($1) AND result = 'answered'", ids
    )
    per = max(completed, 1)
    return {
        "requests": count,
        "completed": completed,
        "seconds": elapsed,
        "callbacks_per_s": completed / elapsed,
        "service_cpu_share": cpu / elapsed,  # 1.0 = one core
        "cpu_ms_per_callback": cpu * 1000 / per,
        "ari_requests_per_callback": ari / per,
    }


async def throughput(pg: PgTestServer, count: int, profile: Path | None) -> dict[str, Any]:
    async with bench_setup(pg, SHORT_TALK) as bench:
        async with _py_spy(bench, profile):
            figures = await _completed(bench, count, "7")
        figures["rss_mb"] = bench.rss_mb()
        figures["load"] = load()
    figures["sql_statements_per_callback"] = _per(bench.service_statements, count)
    return figures


async def concurrency(pg: PgTestServer, held: int) -> dict[str, Any]:
    async with bench_setup(pg, HELD) as bench:
        ids = await bench.insert_many(held)
        start = time.monotonic()
        await bench.wait_rows(ids, ("bridged",), 60 + held / 50)
        ramp = time.monotonic() - start
        lag = await _probe_lag(bench, seconds=5)
        rss = bench.rss_mb()
        start = time.monotonic()
        await bench.pool.execute("UPDATE callback_requests SET status = 'cancelled'")
        left = await _until_all_hung_up(bench, TEARDOWN_BOUND)
        teardown = time.monotonic() - start
    figures: dict[str, Any] = {
        "bridged_calls": held,
        "ramp_s": ramp,
        "rss_mb": rss,
        "loop_lag_p99_ms": percentile(lag, 99),
        "loop_lag_max_ms": max(lag),
        "teardown_s": teardown if not any(left.values()) else None,
        "load": load(),
    }
    if any(left.values()):
        figures["not_torn_down"] = left
    return figures


async def cost_growth(pg: PgTestServer, pending: int) -> dict[str, Any]:
    """How the hot path's cost changes with rows waiting in the table (due a day later)."""
    async with bench_setup(pg, SHORT_TALK, background=pending) as bench:
        pickup = await _pickup(bench, 200, 100)
        done = await _completed(bench, 1000, "8")
        rss = bench.rss_mb()
    return {
        "pending_rows": pending,
        "pickup_p99_ms": pickup["p99_ms"],
        "cpu_ms_per_callback": done["cpu_ms_per_callback"],
        "sql_statements_per_callback": _per(bench.service_statements, 1200),
        "rss_mb": rss,
        "load": load(),
    }


@contextlib.asynccontextmanager
async def _py_spy(bench: Bench, out: Path | None) -> AsyncIterator[None]:
    """Sample the service with py-spy (``pip install py-spy``) while the block runs."""
    if out is None:
        yield
        return
    assert bench.process is not None
    command = ["py-spy", "record", "--format", "raw", "--rate", "200", "--nonblocking"]
    command += ["-o", str(out), "-p", str(bench.process.pid)]
    spy = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await asyncio.wait_for(spy.wait(), 30)


async def _machine(pg: PgTestServer) -> dict[str, Any]:
    async with bench_setup(pg, HELD) as bench:
        return await machine(bench.pool)


def _per(total: int | None, count: int) -> float | None:
    return None if total is None else total / count


async def _probe_lag(bench: Bench, seconds: float) -> list[float]:
    """The service's responsiveness while it holds the calls: /healthz round trips, ms.

    The handler does no I/O, so its latency is the event loop's lag plus loopback HTTP.
    """
    samples: list[float] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent = time.monotonic()
            async with http.get(f"{bench.http_url}/healthz") as resp:
                await resp.read()
            samples.append((time.monotonic() - sent) * 1000)
            await asyncio.sleep(0.02)
    return samples


async def _until_all_hung_up(bench: Bench, bound: float) -> dict[str, int]:
    """Wait until every channel is gone and every row recorded; what is left after ``bound``."""
    deadline = time.monotonic() + bound
    while True:
        left = {
            "channels": len(bench.sim.channels),
            "rows_unrecorded": await bench.pool.fetchval(
                "SELECT count(*) FROM callback_requests WHERE leg_a_cause IS NULL"
            ),
        }
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)


async def _until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _bounded(seconds: float, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """One benchmark, at most ``seconds``: a failure or overrun is reported, not raised."""
    try:
        async with asyncio.timeout(seconds):
            return await run()
    except Exception as exc:  # reported in the table; the other benchmarks still run
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def table(results: dict[str, Any]) -> str:
    lines = ["| benchmark | figures |", "|---|---|"]
    for name, figures in results.items():
        if name == "machine":
            continue
        for entry in figures if isinstance(figures, list) else [figures]:
            cells = ", ".join(f"{k} {_fmt(v)}" for k, v in entry.items())
            lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


async def main(quick: bool, only: set[str], profile: Path | None) -> None:
    pg = await asyncio.to_thread(PgTestServer)
    started = time.monotonic()
    count = 200 if quick else 1000
    held = (1000,) if quick else (1000, 5000, 10_000)
    pending = (1000,) if quick else (1000, 10_000, 100_000)
    benchmarks: dict[str, list[Callable[[], Awaitable[dict[str, Any]]]]] = {
        "pickup_latency": [
            functools.partial(pickup_latency, pg, count, 100, listen=True),
            functools.partial(pickup_latency, pg, count // 2, 100, listen=False),
        ],
        "throughput": [functools.partial(throughput, pg, 1000 if quick else 5000, profile)],
        "concurrency": [functools.partial(concurrency, pg, n) for n in held],
        "cost_growth": [functools.partial(cost_growth, pg, n) for n in pending],
    }
    try:
        results: dict[str, Any] = {}
        results["machine"] = await _bounded(60, functools.partial(_machine, pg))
        for name, runs in benchmarks.items():
            if not only or name in only:
                results[name] = [await _bounded(BOUND[name], run) for run in runs]
    finally:
        await asyncio.to_thread(pg.close)
    results["machine"]["bench_seconds"] = round(time.monotonic() - started)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results["machine"]))
    print(table(results))
    print(f"written: {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the service during the throughput run into this file"
    )
    args = parser.parse_args()
    asyncio.run(main(args.quick, set(args.only), args.profile))
