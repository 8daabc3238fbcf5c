"""Metrics, health and readiness, and the logs of a full run (no secrets)."""

from __future__ import annotations

import json
import logging

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ari_simulator import Script, Simulator, SimulatorConfig
from stasis_app.logs import JsonFormatter
from tests.conftest import REALM, ServiceFactory, ha1
from tests.test_callflow import final_row, insert, until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after[key] - before.get(key, 0.0)


async def test_counters_move_after_a_scripted_run(
    pool: asyncpg.Pool, sim: Simulator, start_service: ServiceFactory
) -> None:
    sim.script("12345", Script(action="answer", answer_after_ms=50, hangup_after_ms=100))
    sim.script("11111111", Script(action="busy"))
    service = await start_service(max_attempts=1)
    before = await scrape(service.metrics_url)
    ok = await insert(pool)
    busy = await insert(pool, original_cli="11111111")
    await final_row(pool, ok)
    await final_row(pool, busy)
    after = await scrape(service.metrics_url)

    assert delta(before, after, "twoway_requests_claimed_total") == 2
    assert delta(before, after, "twoway_legs_originated_total", leg="a") == 2
    assert delta(before, after, "twoway_legs_originated_total", leg="b") == 1
    assert delta(before, after, "twoway_leg_outcomes_total", leg="a", result="busy") == 1
    assert delta(before, after, "twoway_leg_outcomes_total", leg="b", result="answered") == 1
    assert (
        delta(
            before, after, "twoway_callbacks_finished_total", status="completed", result="answered"
        )
        == 1
    )
    assert (
        delta(
            before,
            after,
            "twoway_callbacks_finished_total",
            status="failed",
            result="callback_busy",
        )
        == 1
    )
    assert delta(before, after, "twoway_pickup_latency_seconds_count") == 2
    assert delta(before, after, "twoway_talk_time_seconds_count") == 1
    assert delta(before, after, "twoway_ari_request_seconds_count", op="originate") == 3
    assert after[("twoway_ari_connected", ())] == 1
    assert after[("twoway_db_listen_connected", ())] == 1
    assert after[("twoway_live_requests", (("status", "bridged"),))] == 0
    # Label sets exist before anything happened to them.
    assert (
        "twoway_callbacks_finished_total",
        (("result", "user_hangup"), ("status", "failed")),
    ) in after


async def test_health_and_readiness(start_service: ServiceFactory) -> None:
    service = await start_service()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{service.metrics_url}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{service.metrics_url}/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200
            assert body["checks"] == {"database": True, "listen": True, "ari": True}


async def test_readyz_flips_when_ari_goes_away_and_comes_back(
    db_url: str, start_service: ServiceFactory, sim: Simulator
) -> None:
    service = await start_service(ari_reconnect_max=0.5)
    port = int(sim.base_url.rsplit(":", 1)[1])
    await sim.stop()

    async def readyz() -> tuple[int, dict[str, object]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{service.metrics_url}/readyz") as resp,
        ):
            return resp.status, await resp.json()

    async def down() -> bool:
        status, body = await readyz()
        return status == 503 and body["down"] == ["ari"]

    await until(down, timeout=10)

    again = Simulator(SimulatorConfig(user="twoway", password="ari-secret-pw", realm=REALM))
    await again.start(host="127.0.0.1", port=port)
    try:

        async def up() -> bool:
            return (await readyz())[0] == 200

        await until(up, timeout=15)
    finally:
        await again.stop()


async def test_metrics_can_be_served_on_their_own_port(start_service: ServiceFactory) -> None:
    service = await start_service(metrics_listen="127.0.0.1:0")
    assert service.metrics_url != service.http_url
    assert await scrape(service.metrics_url)
    async with aiohttp.ClientSession() as http, http.get(f"{service.http_url}/metrics") as resp:
        assert resp.status == 404


async def test_logs_carry_fields_and_never_secrets(
    pool: asyncpg.Pool,
    sim: Simulator,
    start_service: ServiceFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.script("12345", Script(action="answer", hangup_after_ms=50))
    await start_service(max_attempts=1)
    good = await insert(pool, twoway_md5secret=ha1("903"), twoway_authname="903")
    wrong = await insert(pool, original_cli="2222", md5secret=ha1("902", "wrong"))
    malformed = await insert(pool, original_cli="3333", md5secret="my-plain-password")
    for rid in (good, wrong, malformed):
        await final_row(pool, rid)

    lines = [JsonFormatter().format(record) for record in caplog.records]
    text = "\n".join(lines)
    for secret in (
        ha1("902"),
        ha1("903"),
        ha1("902", "wrong"),
        "my-plain-password",
        "ari-secret-pw",
    ):
        assert secret not in text
    parsed = [json.loads(line) for line in lines]
    originated = [p for p in parsed if p.get("action") == "originate"]
    assert originated and all({"request_id", "leg", "channel_id"} <= set(p) for p in originated)
    outcomes = {p["request_id"]: p["result"] for p in parsed if p.get("action") == "outcome"}
    assert outcomes == {good: "answered", wrong: "callback_rejected", malformed: "invalid_request"}
