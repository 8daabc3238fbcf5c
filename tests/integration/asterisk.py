"""A real Asterisk run from a private config folder made from `deploy/asterisk/*.conf` as shipped.

Only addresses, ports and the ARI secret are substituted in the samples (the rest is read
verbatim), so every run proves them. asterisk.conf (directories) and logger.conf are ours: they
are not part of the samples. Module and data folders stay the binary's compiled-in defaults, so
the same code runs /opt/asterisk-NN builds and a distribution's package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.processes import free_port, free_udp_port, spawn, stop, wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "asterisk"
SAMPLE_ARI_PASSWORD = "twoway"
SAMPLE_SOFTSWITCH = "192.0.2.10"
BOOT_TIMEOUT = 60.0

# Where to look when TWOWAY_TEST_ASTERISK is not set: the prebuilt 22, then a package's binary.
CANDIDATES = ("/opt/asterisk-22/sbin/asterisk", "/usr/sbin/asterisk", "/usr/local/sbin/asterisk")
HOW_TO_GET = (
    "install your distribution's asterisk package or build Asterisk 16+ from source "
    "(see README, 'Tests against a real Asterisk'), or point TWOWAY_TEST_ASTERISK at the binary"
)


def find_binary() -> str | None:
    given = os.environ.get("TWOWAY_TEST_ASTERISK")
    if given:
        return given if os.access(given, os.X_OK) else None
    for candidate in CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("asterisk")


def version_of(binary: str) -> tuple[int, ...]:
    """(22, 10, 1) from `asterisk -V` ("Asterisk 22.10.1")."""
    out = subprocess.run(
        [binary, "-V"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {out!r}")
    return tuple(int(part) for part in match.groups(default="0"))


@dataclass
class AsteriskAddresses:
    sip_port: int
    http_port: int
    softswitch_port: int
    ari_password: str


def render_samples(target: Path, addresses: AsteriskAddresses) -> None:
    """Copy every shipped sample into `target`, substituting addresses, ports and secrets only."""
    substitutions: dict[str, list[tuple[str, str]]] = {
        "pjsip.conf": [
            ("bind = 0.0.0.0:5060", f"bind = 127.0.0.1:{addresses.sip_port}"),
            (f"{SAMPLE_SOFTSWITCH}:5060", f"127.0.0.1:{addresses.softswitch_port}"),
            (f"match = {SAMPLE_SOFTSWITCH}", "match = 127.0.0.1"),
        ],
        "http.conf": [("bindport = 8088", f"bindport = {addresses.http_port}")],
        "ari.conf": [
            (
                f"password = {SAMPLE_ARI_PASSWORD} ",
                f"password = {addresses.ari_password} ",
            )
        ],
    }
    for sample in sorted(DEPLOY.glob("*.conf")):
        text = sample.read_text()
        for old, new in substitutions.get(sample.name, []):
            if old not in text:
                raise AssertionError(f"{sample.name} no longer contains {old!r}: update the tests")
            text = text.replace(old, new)
        (target / sample.name).write_text(text)


@dataclass
class Asterisk:
    """One Asterisk process with its own config, sockets and logs under `root`."""

    binary: str
    root: Path
    addresses: AsteriskAddresses = field(
        default_factory=lambda: AsteriskAddresses(
            sip_port=free_udp_port(),
            http_port=free_port(),
            softswitch_port=free_udp_port(),
            ari_password=os.urandom(8).hex(),
        )
    )
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.version = version_of(self.binary)
        self.etc = self.root / "etc"
        for name in ("etc", "lib", "spool", "run", "log"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        directories = "\n".join(
            f"{key} => {self.root / sub}"
            for key, sub in (
                ("astetcdir", "etc"),
                ("astvarlibdir", "lib"),
                ("astdbdir", "lib"),
                ("astkeydir", "lib"),
                ("astspooldir", "spool"),
                ("astrundir", "run"),
                ("astlogdir", "log"),
                ("astcachedir", "lib"),
            )
        )
        (self.etc / "asterisk.conf").write_text(f"[directories]\n{directories}\n")
        (self.etc / "logger.conf").write_text(
            "[logfiles]\nmessages.log => notice,warning,error,verbose\n"
        )
        render_samples(self.etc, self.addresses)

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.addresses.http_port}"

    @property
    def sip_port(self) -> int:
        return self.addresses.sip_port

    @property
    def softswitch_port(self) -> int:
        return self.addresses.softswitch_port

    @property
    def messages_log(self) -> Path:
        return self.root / "log" / "messages.log"

    def start(self) -> None:
        argv = [self.binary, "-C", str(self.etc / "asterisk.conf"), "-f", "-n"]
        self.proc = spawn(argv, self.root / "console.log")
        wait_for(self._booted, BOOT_TIMEOUT, f"{self.binary} to boot (see {self.root}/log)")

    def _booted(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"asterisk exited with {self.proc.returncode}: "
                f"{(self.root / 'console.log').read_text()[-2000:]}"
            )
        return self.cli_ok("core waitfullybooted")

    def cli(self, command: str) -> str:
        """A CLI command through this instance's control socket (`asterisk -rx`)."""
        result = subprocess.run(
            [self.binary, "-C", str(self.etc / "asterisk.conf"), "-rx", command],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"asterisk -rx {command!r}: {result.stderr or result.stdout}")
        return result.stdout

    def cli_ok(self, command: str) -> bool:
        try:
            self.cli(command)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def channels(self) -> list[str]:
        """Names of the live channels (`core show channels concise`)."""
        return [line.split("!")[0] for line in self.cli("core show channels concise").splitlines()]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.cli_ok("core stop now")
        stop(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
