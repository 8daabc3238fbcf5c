"""``make bench``: pick-up latency, throughput, concurrency and memory; a table and JSON.

The service runs as its own process (`twoway-callback run`); the ARI simulator and the load
run in this one. Figures are for the machine they ran on: see the README's Performance section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from ari_simulator import Script
from bench.harness import HA1, Bench, bench_setup, machine, percentile
from tests.pg import PgTestServer

RESULTS = Path(__file__).resolve().parent / "results"
# Every number answers at once; the destination (12345) hangs up after a 1 s talk.
ANSWER = Script(action="answer")
SHORT_TALK = {"12345": Script(action="answer", hangup_after_ms=1000)}
HELD = {"12345": ANSWER}  # nobody hangs up


async def pickup_latency(
    pg: PgTestServer, count: int, rate: float, *, listen: bool
) -> dict[str, Any]:
    env = {} if listen else {"TWOWAY_LISTEN_ENABLED": "false"}
    async with bench_setup(pg, SHORT_TALK, **env) as bench:
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
        await bench.wait_rows(list(committed), ("completed", "failed"), 120)
        latencies = [
            (bench.originated[f"twoway-{rid}-1a"] - at) * 1000 for rid, at in committed.items()
        ]
    return {
        "requests": count,
        "rate_per_s": rate,
        "listen": listen,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
    }


async def throughput(pg: PgTestServer, count: int) -> dict[str, Any]:
    async with bench_setup(pg, SHORT_TALK) as bench:
        start = time.monotonic()
        ids = await bench.insert_many(count)
        await bench.wait_rows(ids, ("completed", "failed"), 600)
        elapsed = time.monotonic() - start
        results = {
            r["result"]: r["n"]
            for r in await bench.pool.fetch(
                "SELECT result, count(*) AS n FROM callback_requests GROUP BY result"
            )
        }
        completed = results.get("answered", 0)
        ari_requests = await _ari_request_count(bench)
        rss = bench.rss_mb()
    return {
        "requests": count,
        "completed": completed,
        "results": results,
        "seconds": elapsed,
        "callbacks_per_s": completed / elapsed,
        "ari_requests_per_callback": ari_requests / count,
        "rss_mb": rss,
    }


async def concurrency(pg: PgTestServer, held: int) -> dict[str, Any]:
    async with bench_setup(pg, HELD) as bench:
        ids = await bench.insert_many(held)
        start = time.monotonic()
        await bench.wait_rows(ids, ("bridged",), 600)
        ramp = time.monotonic() - start
        lag = await _probe_lag(bench, seconds=5)
        rss = bench.rss_mb()
        start = time.monotonic()
        await bench.pool.execute("UPDATE callback_requests SET status = 'cancelled'")
        await _until_all_hung_up(bench, held)
        teardown = time.monotonic() - start
    return {
        "bridged_calls": held,
        "ramp_s": ramp,
        "rss_mb": rss,
        "loop_lag_p99_ms": percentile(lag, 99),
        "loop_lag_max_ms": max(lag),
        "teardown_s": teardown,
    }


async def _probe_lag(bench: Bench, seconds: float) -> list[float]:
    """The service's responsiveness while it holds the calls: /healthz round trips, ms.

    The handler does no I/O, so its latency is the event loop's lag plus loopback HTTP.
    """
    samples: list[float] = []
    async with aiohttp.ClientSession() as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent = time.monotonic()
            async with http.get(f"{bench.http_url}/healthz") as resp:
                await resp.read()
            samples.append((time.monotonic() - sent) * 1000)
            await asyncio.sleep(0.02)
    return samples


async def _until_all_hung_up(bench: Bench, held: int) -> None:
    deadline = time.monotonic() + 600
    while (
        bench.sim.channels
        or await bench.pool.fetchval(
            "SELECT count(*) FROM callback_requests WHERE leg_a_cause IS NULL"
        )
        > 0
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{held} calls not torn down")
        await asyncio.sleep(0.05)


async def _ari_request_count(bench: Bench) -> int:
    # The simulator trims its request log; the service's own counter is exact.
    async with aiohttp.ClientSession() as http, http.get(f"{bench.http_url}/metrics") as resp:
        text = await resp.text()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("twoway_ari_request_seconds_count")
        )
    )


async def _until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


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
    return f"{value:.1f}" if isinstance(value, float) else str(value)


async def main(quick: bool) -> None:
    pg = await asyncio.to_thread(PgTestServer)
    try:
        results: dict[str, Any] = {}
        async with bench_setup(pg, HELD) as bench:
            results["machine"] = await machine(bench.pool)
        count = 200 if quick else 1000
        results["pickup_latency"] = [
            await pickup_latency(pg, count, rate=100, listen=True),
            await pickup_latency(pg, count // 2, rate=100, listen=False),
        ]
        results["throughput"] = await throughput(pg, 1000 if quick else 5000)
        results["concurrency"] = [
            await concurrency(pg, n) for n in ((1000,) if quick else (1000, 5000, 10000))
        ]
    finally:
        await asyncio.to_thread(pg.close)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results["machine"]))
    print(table(results))
    print(f"written: {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    asyncio.run(main(parser.parse_args().quick))
