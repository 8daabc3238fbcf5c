"""``make bench-asterisk``: pick-up on a real Asterisk, with sipp as the softswitch.

Two figures from one run, interleaved so they share the machine's state:

- the service: INSERT commit → leg A's INVITE arriving at sipp (matched by the row's
  ``call_id`` in the ``X-Callback-Call-ID`` header);
- Asterisk's floor: ``POST /ari/channels`` sent by this benchmark → that channel's INVITE at
  sipp (matched by an ``X-Bench-Floor`` header), for a Stasis app of its own.

The difference of the two is what the service adds. Uses the Asterisk and sipp of
``tests/integration`` (``TWOWAY_TEST_ASTERISK`` or /opt/asterisk-22; ``sipp`` on the PATH).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.harness import HA1, load, percentile
from stasis_app.ari.http import basic_auth_header
from tests.integration.asterisk import HOW_TO_GET, Asterisk, find_binary
from tests.integration.service import ServiceProcess
from tests.integration.softswitch import SIPP_HOW_TO_GET, Line, Softswitch, find_sipp
from tests.pg import PgTestServer, with_database

RESULTS = Path(__file__).resolve().parent / "results"
CALLBACK, FLOOR, DESTINATION = "5551000", "5552000", "12345"
FLOOR_APP = "bench-floor"
TALK = Line("answer", hangup_after_ms=300)
# sipp's message log: a dashed line with the local time, then what was received.
_INVITE = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\nUDP message received[^\n]*\n\n"
    r"INVITE [^\n]*\n(.*?)(?=^-{20,} |\Z)",
    re.M | re.S,
)


def invites(log: Path) -> dict[str, float]:
    """First INVITE arrival (epoch seconds) by the value of our match headers."""
    arrived: dict[str, float] = {}
    for stamp, headers in _INVITE.findall(log.read_text(errors="replace")):
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        for name in ("X-Callback-Call-ID", "X-Bench-Floor"):
            found = re.search(rf"^{name}:\s*(\S+)", headers, re.M | re.I)
            if found:
                arrived.setdefault(found.group(1), at)
    return arrived


def _figures(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values, default=float("nan")),
    }


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        await asyncio.sleep(0.1)


async def run(rows: int, gap: float, identity: str) -> dict[str, Any]:
    binary, sipp = find_binary(), find_sipp()
    if binary is None or sipp is None:
        raise SystemExit(f"needs asterisk ({HOW_TO_GET}) and sipp ({SIPP_HOW_TO_GET})")
    pg = await asyncio.to_thread(PgTestServer)
    name = await asyncio.to_thread(pg.create_database)
    db_url = with_database(pg.admin_url, name)
    root = Path(tempfile.mkdtemp(prefix="twoway-bench-asterisk-"))
    asterisk = Asterisk(binary, root / "asterisk")
    softswitch = Softswitch(root, asterisk.softswitch_port)
    service = ServiceProcess(db_url, asterisk, root / "service.log")
    committed: dict[int, float] = {}
    sent: dict[str, float] = {}
    try:
        await asyncio.to_thread(asterisk.start)
        await asyncio.to_thread(softswitch.start, {CALLBACK: TALK, FLOOR: TALK, DESTINATION: TALK})
        service.start(
            TWOWAY_IDENTITY_MODE=identity, TWOWAY_MAX_CPS="1000", TWOWAY_LOG_LEVEL="WARNING"
        )
        auth = {"Authorization": basic_auth_header("twoway", asterisk.addresses.ari_password)}
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            asyncpg.create_pool(db_url, min_size=1, max_size=2) as pool,
        ):

            async def ready() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{service.http_url}/readyz") as resp:
                        return resp.status == 200
                return False

            await _until(ready, 60, "the service ready")
            events = f"{asterisk.ari_url}/ari/events"
            async with http.ws_connect(events, params={"app": FLOOR_APP}, headers=auth) as ws:
                drain = asyncio.create_task(_drain(ws))
                for n in range(rows):
                    rid = await pool.fetchval(
                        "INSERT INTO callback_requests (username, md5secret, original_cli, "
                        "original_cld) VALUES ('801', $1, $2, $3) RETURNING id",
                        HA1,
                        CALLBACK,
                        f"2way_{DESTINATION}",
                    )
                    committed[rid] = time.time()  # autocommit: the INSERT has committed
                    await asyncio.sleep(gap / 2)
                    sent[str(n)] = time.time()
                    async with http.post(
                        f"{asterisk.ari_url}/ari/channels",
                        params={
                            "endpoint": f"PJSIP/{FLOOR}@softswitch",
                            "app": FLOOR_APP,
                            "channelId": f"{FLOOR_APP}-{n}",
                        },
                        json={"variables": {"PJSIP_HEADER(add,X-Bench-Floor)": str(n)}},
                        headers=auth,
                    ) as resp:
                        resp.raise_for_status()
                    await asyncio.sleep(gap / 2)

                async def all_final() -> bool:
                    left: int = await pool.fetchval(
                        "SELECT count(*) FROM callback_requests "
                        "WHERE status NOT IN ('completed', 'failed', 'cancelled')"
                    )
                    return left == 0

                await _until(all_final, 60, "every row final")
                drain.cancel()
            call_ids = dict(await pool.fetch("SELECT id, call_id FROM callback_requests"))
            results = dict(
                await pool.fetch("SELECT result, count(*) FROM callback_requests GROUP BY 1")
            )
    finally:
        service.stop()
        softswitch.stop()
        await asyncio.to_thread(asterisk.stop)
        await asyncio.to_thread(pg.drop_database, name)
        await asyncio.to_thread(pg.close)
    arrived = invites(softswitch.log)
    service_ms = [
        (arrived[call_ids[rid]] - at) * 1000
        for rid, at in committed.items()
        if call_ids.get(rid) in arrived
    ]
    floor_ms = [(arrived[n] - at) * 1000 for n, at in sent.items() if n in arrived]
    mine, floor = _figures(service_ms), _figures(floor_ms)
    return {
        "asterisk": ".".join(map(str, asterisk.version)),
        "identity_mode": identity,
        "rows": rows,
        "results": results,
        "insert_to_invite": mine,
        "asterisk_floor": floor,
        "p99_difference_ms": mine["p99_ms"] - floor["p99_ms"],
        "p50_difference_ms": mine["p50_ms"] - floor["p50_ms"],
        "load": load(),
        "logs": str(root),
    }


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The floor app's events: read and dropped (Asterisk must not see a slow reader)."""
    async for _message in ws:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench-asterisk")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two rows")
    parser.add_argument("--identity", choices=("dynamic", "static"), default="dynamic")
    args = parser.parse_args()
    figures = asyncio.run(run(args.rows, args.gap, args.identity))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-asterisk-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
