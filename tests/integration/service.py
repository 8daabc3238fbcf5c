"""`twoway-callback run` as a real process against a real Asterisk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.asterisk import Asterisk
from tests.integration.processes import free_port, kill_group, spawn, stop
from tests.integration.softswitch import SIPP_REALM


@dataclass
class ServiceProcess:
    db_url: str
    asterisk: Asterisk
    log: Path
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """The service's own HTTP server (API, /metrics, /healthz, /readyz)."""
        return f"http://127.0.0.1:{self.http_port}"

    def environment(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            "TWOWAY_DATABASE_URL": self.db_url,
            "TWOWAY_ARI_URL": self.asterisk.ari_url,
            "TWOWAY_ARI_USER": "twoway",
            "TWOWAY_ARI_PASSWORD": self.asterisk.addresses.ari_password,
            "TWOWAY_SIP_REALM": SIPP_REALM,
            "TWOWAY_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "TWOWAY_INSTANCE_ID": "asterisk-test",
            "TWOWAY_LOG_FORMAT": "json",
            "TWOWAY_LOG_LEVEL": "INFO",
            "TWOWAY_RETRY_DELAY": "0.5",
            "TWOWAY_POLL_MAX_SLEEP": "1",
            "TWOWAY_DB_POOL_SIZE": "3",  # frugal: the machine's Postgres is shared
            **overrides,
        }

    def start(self, **overrides: str) -> ServiceProcess:
        argv = [sys.executable, "-m", "stasis_app.cli", "run"]
        self.proc = spawn(argv, self.log, env=self.environment(**overrides))
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        kill_group(self.proc, signal.SIGKILL)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace=15)
            self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
