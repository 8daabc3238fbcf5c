"""systemd/: the units verify, are hardened, and agree with the settings and the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stasis_app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
SERVICE = SYSTEMD / "twoway-callback.service"
MIGRATE = SYSTEMD / "twoway-callback-migrate.service"
BINARY = "/opt/twoway-callback/venv/bin/twoway-callback"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package: systemd)"
)


def directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; keys may repeat, so no configparser."""
    found: list[tuple[str, str, str]] = []
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in directives(path) if (s, k) == (section, key)]


def one(path: Path, section: str, key: str) -> str:
    [value] = values(path, section, key)
    return value


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "min": 60, "ms": 0.001}
    match = re.fullmatch(r"(\d+)(s|min|ms)?", value)
    assert match, value
    return int(match.group(1)) * units[match.group(2) or ""]


@pytest.fixture
def runnable_units(tmp_path: Path) -> list[Path]:
    """Copies whose ExecStart names a binary that exists here: verify checks that it does."""
    copies = []
    for unit in (SERVICE, MIGRATE):
        copy = tmp_path / unit.name
        text = unit.read_text()
        assert BINARY in text
        copy.write_text(text.replace(BINARY, sys.executable))
        copies.append(copy)
    return copies


@needs_analyze
def test_units_verify(runnable_units: list[Path]) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", *map(str, runnable_units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown keys and bad values, it only warns: any word about our units
    # is a failure.
    complaints = [
        line for line in (done.stdout + done.stderr).splitlines() if "twoway-callback" in line
    ]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


@needs_analyze
def test_service_exposure_is_low(runnable_units: list[Path]) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(runnable_units[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in done.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    match = re.search(r"Overall exposure level for twoway-callback\.service: ([\d.]+)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0, done.stdout  # "OK" on systemd's 0-10 scale


def test_service_is_notify_with_watchdog_and_restart_limits() -> None:
    assert one(SERVICE, "Service", "Type") == "notify"
    assert seconds(one(SERVICE, "Service", "WatchdogSec")) >= 10
    assert one(SERVICE, "Service", "Restart") == "on-failure"
    assert int(one(SERVICE, "Unit", "StartLimitBurst")) >= 3
    assert seconds(one(SERVICE, "Unit", "StartLimitIntervalSec")) >= 60
    # Bad settings exit 2 (cli.main): restarting cannot fix them.
    assert one(SERVICE, "Service", "RestartPreventExitStatus") == "2"
    grace = Settings.model_fields["shutdown_grace"].default
    assert seconds(one(SERVICE, "Service", "TimeoutStopSec")) > grace


def test_units_run_the_cli_as_the_service_user() -> None:
    assert one(SERVICE, "Service", "ExecStart") == f"{BINARY} run"
    assert one(MIGRATE, "Service", "ExecStart") == f"{BINARY} migrate"
    assert one(MIGRATE, "Service", "Type") == "oneshot"
    for unit in (SERVICE, MIGRATE):
        assert one(unit, "Service", "User") == "twoway"
        assert "/etc/twoway-callback/env" in values(unit, "Service", "EnvironmentFile")
    sysusers = (SYSTEMD / "twoway-callback.sysusers").read_text().split("\n")
    assert any(line.split()[:2] == ["u", "twoway"] for line in sysusers if line.strip())


def test_migrations_run_before_the_service() -> None:
    assert MIGRATE.name in values(SERVICE, "Unit", "Wants")
    assert MIGRATE.name in values(SERVICE, "Unit", "After")
    assert SERVICE.name in values(MIGRATE, "Unit", "Before")


@pytest.mark.parametrize("unit", [SERVICE, MIGRATE], ids=lambda p: p.name)
def test_units_are_hardened(unit: Path) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictNamespaces": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    assert "@system-service" in values(unit, "Service", "SystemCallFilter")
    # ProtectSystem=strict makes /var read-only: the (embedded) data dir is the state dir.
    assert one(unit, "Service", "StateDirectory") == "twoway-callback"
    environment = values(unit, "Service", "Environment")
    assert [v for v in environment if v.startswith("TWOWAY_DATA_DIR=")] == [
        "TWOWAY_DATA_DIR=/var/lib/twoway-callback"
    ]


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    text = (SYSTEMD / "env.example").read_text()
    listed = set(re.findall(r"^#?(TWOWAY_[A-Z0-9_]+)=", text, flags=re.MULTILINE))
    known = {f"TWOWAY_{name.upper()}" for name in Settings.model_fields}
    assert known - listed == set(), "settings missing from systemd/env.example"
    assert listed - known == set(), "systemd/env.example names settings that do not exist"


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None,
    reason="systemd-sysusers not installed (Debian package: systemd)",
)
def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()  # an empty root: the user is always "created", never touched
    sysusers = shutil.which("systemd-sysusers")
    assert sysusers is not None
    done = subprocess.run(
        [sysusers, f"--root={tmp_path}", "--dry-run", str(SYSTEMD / "twoway-callback.sysusers")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Creating user 'twoway'" in done.stdout + done.stderr


# Sets the kernel's memory-deny-write-execute flag (prctl PR_SET_MDWE = 65 with
# PR_MDWE_REFUSE_EXEC_GAIN = 1; Linux >= 6.3; inherited across fork and exec, like the unit's
# seccomp filter), then becomes the given command.
_MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_service_runs_with_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes is safe: the whole demo (embedded Postgres, ARI simulator,
    asyncpg, aiohttp, pydantic) completes a callback with W^X enforced by the kernel."""
    cli = Path(sys.executable).parent / "twoway-callback"
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            _MDWE_EXEC,
            sys.executable,
            "-c",
            "import mmap; mmap.mmap(-1, 4096, prot=7)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert "PermissionError" in probe.stderr  # the flag is on: W+X memory is refused
    done = subprocess.run(
        [sys.executable, "-c", _MDWE_EXEC, str(cli), "demo"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "demo: callback completed" in done.stdout + done.stderr
