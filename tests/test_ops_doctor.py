"""``twoway-callback doctor`` against the real Postgres and the simulator."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from ari_simulator import Script, Simulator, SimulatorConfig
from stasis_app.ari import AriClient
from stasis_app.config import Settings
from stasis_app.ops import checks_db, doctor
from stasis_app.ops.report import Finding, Level, Report
from tests.conftest import REALM, ha1, service_settings
from tests.ops_support import clean_env, runner
from tests.test_deploy_db import Roles, app_conn, roles  # noqa: F401 - fixtures

ARI_PASSWORD = "ari-secret-pw"
TOKEN = "tok-doctor-secret"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    doctor.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["doctor", *argv])


async def run_doctor(
    capsys: pytest.CaptureFixture[str], settings: Settings, *argv: str
) -> tuple[int, dict[str, dict[str, str]], str]:
    """Exit code, the findings by check name (from --json), and the plain text output."""
    capsys.readouterr()
    code = await doctor.run(settings, parse("--timeout", "3", *argv))
    text = await doctor.run(settings, parse("--timeout", "3", "--json", *argv))
    assert text == code
    out = capsys.readouterr().out
    plain, _, doc = out.partition("\n[")
    findings = {f["check"]: f for f in json.loads("[" + doc)}
    return code, findings, plain


def levels(findings: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: f["level"] for name, f in findings.items()}


def settings_for(db_url: str, sim: Simulator, **overrides: Any) -> Settings:
    return service_settings(db_url, sim.base_url, **{"api_tokens": TOKEN, **overrides})


async def test_healthy_site(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, plain = await run_doctor(capsys, settings_for(db_url, sim))
    assert code == 0, plain
    assert levels(findings) == {
        "postgres": "ok",
        "migrations": "ok",
        "privileges": "warning",  # the test server's role is a superuser
        "listen/notify": "ok",
        "clock": "ok",
        "ari": "ok",
        "asterisk": "ok",
        "stasis app": "ok",
        "trunk": "ok",
        "sip realm": "ok",
        "memory wizard": "ok",
        "api": "ok",
        "http listener": "ok",
        "metrics": "ok",
    }
    assert "superuser" in findings["privileges"]["found"]
    assert "Asterisk 22.10.1" in findings["asterisk"]["found"]
    assert "aors=softswitch" in findings["trunk"]["found"]
    assert plain.splitlines()[-1] == "13 ok, 1 warnings, 0 failed"
    assert sim.dynamic_objects == {}  # the probe pair is gone
    writes = [
        (r.method, r.path.split("/")[-2])
        for r in sim.requests
        if "/config/dynamic/" in r.path and r.method != "GET"
    ]
    one_run = [("PUT", "auth"), ("PUT", "endpoint"), ("DELETE", "endpoint"), ("DELETE", "auth")]
    assert writes == one_run * 2  # text and JSON
    for secret in (ARI_PASSWORD, TOKEN):
        assert secret not in plain


async def test_missing_memory_wizard_fails_with_the_fix(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = Simulator(SimulatorConfig(password=ARI_PASSWORD, realm=REALM, dynamic_config=False))
    await sim.start(host="127.0.0.1", port=0)
    try:
        code, findings, plain = await run_doctor(capsys, settings_for(db_url, sim))
    finally:
        await sim.stop()
    assert code == 1
    wizard = findings["memory wizard"]
    assert wizard["level"] == "fail"
    assert "403" in wizard["found"] and "Cannot create sorcery objects" in wizard["found"]
    assert "sorcery.conf" in wizard["fix"] and "memory" in wizard["fix"]
    assert [n for n, lvl in levels(findings).items() if lvl == "fail"] == ["memory wizard"]
    assert plain.splitlines()[-1].endswith("1 failed")


async def test_static_mode_skips_the_identity_checks(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(db_url, sim, identity_mode="static", sip_realm="")
    code, findings, _ = await run_doctor(capsys, settings)
    assert code == 0
    assert "memory wizard" not in findings and "sip realm" not in findings


async def test_dynamic_mode_without_a_realm_fails(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, _ = await run_doctor(capsys, settings_for(db_url, sim, sip_realm=""))
    assert code == 1
    assert findings["sip realm"]["level"] == "fail"
    assert "TWOWAY_SIP_REALM" in findings["sip realm"]["fix"]


async def test_wrong_ari_password_wrong_trunk_and_taken_app(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, plain = await run_doctor(
        capsys, settings_for(db_url, sim, ari_password="wrong-pw")
    )
    assert code == 1
    assert findings["ari"]["level"] == "fail" and "401" in findings["ari"]["found"]
    assert "asterisk" not in findings  # nothing more to learn from this Asterisk
    assert "wrong-pw" not in plain

    settings = settings_for(db_url, sim, trunk_endpoint="no-such-trunk")
    async with AriClient(settings) as ari:
        stream = ari.event_stream(
            on_event=lambda e: None, on_connect=_nothing, on_disconnect=lambda: None
        )
        reader = asyncio.create_task(stream.run())
        assert await stream.wait_connected(5)
        try:
            code, findings, _ = await run_doctor(capsys, settings)
        finally:
            await stream.close()
            await reader
    assert code == 1
    assert findings["stasis app"]["level"] == "fail"
    assert "already registered" in findings["stasis app"]["found"]
    assert findings["trunk"]["level"] == "fail"
    assert "no PJSIP endpoint 'no-such-trunk'" in findings["trunk"]["found"]


async def _nothing() -> None:
    return None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_dead_peers_are_fail_lines_within_the_timeout(
    silent_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = f"127.0.0.1:{silent_port}"
    settings = Settings(
        database_url=f"postgresql://twoway:db-secret-pw@{silent}/twoway",
        ari_url=f"http://{silent}",
        ari_password=ARI_PASSWORD,
        sip_realm=REALM,
        http_listen="127.0.0.1:0",
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    code, findings, plain = await run_doctor(capsys, settings)
    # Two runs (text and JSON), each one timeout per peer, plus slack for a busy machine.
    assert loop.time() - started < 2 * 2 * 3 + 10
    assert code == 1
    assert findings["postgres"]["level"] == "fail" and "3 s" in findings["postgres"]["found"]
    assert findings["ari"]["level"] == "fail"
    assert "db-secret-pw" not in plain and ARI_PASSWORD not in plain


async def test_api_and_listeners(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    open_api = settings_for(db_url, sim, api_tokens="", http_listen="0.0.0.0:0")
    _, findings, _ = await run_doctor(capsys, open_api)
    assert findings["api"]["level"] == "fail" and "refuses to start" in findings["api"]["found"]

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        settings = settings_for(db_url, sim, metrics_listen=f"127.0.0.1:{port}")
        code, findings, _ = await run_doctor(capsys, settings)
    assert code == 1
    assert findings["metrics"]["level"] == "fail"
    assert "in use by another program" in findings["metrics"]["found"]


async def test_clock_skew_over_a_second_fails(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one thing not reproducible here: a host clock that is off. Shift the doctor's view.
    real = checks_db.host_time
    monkeypatch.setattr(checks_db, "host_time", lambda: real() + 5)
    code, findings, _ = await run_doctor(capsys, settings_for(db_url, sim))
    assert code == 1
    clock = findings["clock"]
    assert clock["level"] == "fail" and "NTP" in clock["fix"]
    skew = float(clock["found"].split()[2])
    assert -5.5 < skew < -4.5


@pytest.mark.parametrize(
    ("script", "password", "level", "says"),
    [
        (Script(action="answer", answer_after_ms=50), "pw-801", "ok", "answered, hung up"),
        (Script(action="busy"), "pw-801", "warning", "cause 17 (User busy), SIP code 486"),
        (Script(action="answer"), "wrong-password", "fail", "cause 21"),
    ],
)
async def test_call_reports_the_sip_outcome_and_cleans_up(
    db_url: str,
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    script: Script,
    password: str,
    level: str,
    says: str,
) -> None:
    sim.script("4930555", script)
    argv = ("--call", "4930555", "--username", "801", "--password", password)
    code, findings, plain = await run_doctor(capsys, settings_for(db_url, sim), *argv)
    call = findings["test call"]
    assert (call["level"], code) == (level, 1 if level == "fail" else 0), plain
    assert says in call["found"]
    assert (
        call["found"].startswith("PJSIP/4930555@twoway-doctor-ep-") and " as 801:" in call["found"]
    )
    call_ids = [c.protocol_id for c in sim.ended_channels.values() if c.number == "4930555"]
    assert len(call_ids) == 2 and f"Call-ID {call_ids[-1]}" in call["found"]
    if level == "fail":
        assert "TWOWAY_SIP_REALM" in call["fix"]
    assert sim.channels == {} and sim.dynamic_objects == {}
    assert password not in plain and ha1("801", password) not in plain


async def test_bad_doctor_arguments_exit_2(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(db_url, sim)
    assert (
        await doctor.run(
            settings, parse("--call", "12 34", "--username", "801", "--md5secret", ha1("801"))
        )
        == 2
    )
    assert "--call" in capsys.readouterr().err
    assert await doctor.run(settings, parse("--username", "801")) == 2
    assert "go with --call" in capsys.readouterr().err
    assert await doctor.run(settings, parse("--call", "1", "--username", "801")) == 2
    assert "md5secret: required" in capsys.readouterr().err
    assert await doctor.run(settings, parse("--timeout", "0")) == 2
    assert sim.requests == []


def test_doctor_through_the_command_line(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same Settings as `run`: from the environment (here: no ARI URL is a fail line)."""
    clean_env(monkeypatch, database_url=db_url, sip_realm=REALM, api_tokens=TOKEN)
    ran = runner(capsys)("doctor", "--timeout", "3")
    assert ran.code == 1
    assert "fail    ari             TWOWAY_ARI_URL is empty" in ran.out
    assert ran.out.splitlines()[0].startswith("ok      postgres ")


def test_the_report_masks_any_secret_a_peer_echoed() -> None:
    out = io.StringIO()
    report = Report(out, timeout=1, secrets=["db-secret-pw", "twoway", ""])
    report.add(
        Finding(Level.FAIL, "ari", "401: bad password db-secret-pw for twoway", "fix db-secret-pw")
    )
    assert report.close() == 1
    assert out.getvalue().splitlines()[0] == (
        "fail    ari             401: bad password *** for twoway  -> fix ***"
    )


def test_doctor_masks_the_settings_secrets() -> None:
    settings = Settings(
        database_url="postgresql://twoway:db-secret-pw@db/twoway",
        ari_password=ARI_PASSWORD,
        api_tokens=f"{TOKEN},other-token-1",
        default_md5secret=ha1("801"),
    )
    assert set(doctor.secrets_of(settings)) >= {
        "db-secret-pw",
        ARI_PASSWORD,
        TOKEN,
        "other-token-1",
        ha1("801"),
    }


async def test_listen_disabled_is_a_warning(
    db_url: str, sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, _ = await run_doctor(capsys, settings_for(db_url, sim, listen_enabled=False))
    assert code == 0
    assert findings["listen/notify"]["level"] == "warning"
    assert "TWOWAY_LISTEN_ENABLED=false" in findings["listen/notify"]["found"]


async def test_the_least_privilege_role_passes_and_a_missing_grant_fails(
    app_conn: asyncpg.Connection,  # noqa: F811 - the fixture of test_deploy_db
    db_url: str,
    roles: Roles,  # noqa: F811
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """deploy/db/roles.sql gives the app role what the service needs: doctor agrees."""
    parts = urlsplit(db_url)
    netloc = f"{roles.app}:{roles.password}@{parts.hostname}:{parts.port}"
    settings = settings_for(urlunsplit(parts._replace(netloc=netloc)), sim)
    code, findings, plain = await run_doctor(capsys, settings)
    assert code == 0, plain
    assert findings["privileges"]["level"] == "ok"
    assert f"role {roles.app} has what the service needs" in findings["privileges"]["found"]
    assert roles.password not in plain

    admin = await asyncpg.connect(db_url)
    try:
        await admin.execute(f"REVOKE DELETE ON callback_admissions FROM {roles.app}")
    finally:
        await admin.close()
    code, findings, _ = await run_doctor(capsys, settings)
    assert code == 1
    assert findings["privileges"]["level"] == "fail"
    assert "lacks callback_admissions: DELETE" in findings["privileges"]["found"]
    assert "roles.sql" in findings["privileges"]["fix"]
