"""docs/production.md names only what exists: files of the repository and real settings."""

from __future__ import annotations

import re
from pathlib import Path

from stasis_app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "production.md"
FOREIGN = ("grafana/", "prometheus/")  # written by other parts of the project

# A repository path in backticks: `deploy/asterisk/pjsip.conf`, `sql/`, `Dockerfile`, ...
PATH = re.compile(
    r"`((?:systemd|deploy|docs|sql|grafana|prometheus)/[\w./-]*|Dockerfile|"
    r"compose\.yaml|\.dockerignore)`"
)


def named_paths() -> set[str]:
    return set(PATH.findall(GUIDE.read_text()))


def test_every_named_file_of_this_repo_exists() -> None:
    own = {p for p in named_paths() if not p.startswith(FOREIGN)}
    assert {"deploy/db/roles.sql", "systemd/twoway-callback.service", "Dockerfile"} <= own
    assert [p for p in sorted(own) if not (ROOT / p).exists()] == []


def test_named_grafana_and_alert_files_exist() -> None:
    missing = [
        p for p in sorted(named_paths()) if p.startswith(FOREIGN) and not (ROOT / p).exists()
    ]
    assert missing == []


def test_every_deployment_file_is_documented() -> None:
    named = named_paths()
    files = [p for d in ("systemd", "deploy") for p in (ROOT / d).rglob("*") if p.is_file()]
    undocumented = [
        str(p.relative_to(ROOT))
        for p in files
        if str(p.relative_to(ROOT)) not in named
        and f"{p.parent.relative_to(ROOT)}/*{p.suffix}" not in GUIDE.read_text()
    ]
    assert undocumented == []


def test_every_named_setting_exists() -> None:
    known = {f"TWOWAY_{name.upper()}" for name in Settings.model_fields}
    for name, wildcard in re.findall(r"(TWOWAY_[A-Z0-9_]*[A-Z0-9])(_\*)?", GUIDE.read_text()):
        if wildcard:  # e.g. TWOWAY_ARI_*: a family of settings
            assert any(k.startswith(name + "_") for k in known), name
        else:
            assert name in known, name
