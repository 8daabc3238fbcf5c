"""The domain's enums are the SQL values, and the domain and call flow load no I/O library."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from stasis_app.api.schemas import Callback
from stasis_app.api.schemas import Status as ApiStatus
from stasis_app.domain.request import FINAL_STATUSES, LIVE_STATUSES, Result, Source, Status

SQL_DIR = Path(__file__).parent.parent / "stasis_app" / "sql"


def check_values(constraint: str) -> set[str]:
    """The quoted values of one CHECK constraint of callback_requests, as the last migration
    that defines it says."""
    pattern = re.compile(rf"CONSTRAINT {constraint} CHECK \((.*?)\)\)[,;]?\n", re.DOTALL)
    found = [
        m for path in sorted(SQL_DIR.glob("*.sql")) for m in pattern.finditer(path.read_text())
    ]
    assert found, constraint
    return set(re.findall(r"'([a-z_]+)'", found[-1].group(1)))


@pytest.mark.parametrize(
    ("enum", "constraint"),
    [
        (Status, "callback_requests_status_check"),
        (Result, "callback_requests_result_check"),
        (Source, "callback_requests_source_check"),
    ],
)
def test_enum_values_are_the_sql_values(enum: type, constraint: str) -> None:
    assert {member.value for member in enum} == check_values(constraint)


def test_api_statuses_and_sources_are_the_domain_ones() -> None:
    assert set(get_args(ApiStatus)) == {status.value for status in Status}
    assert set(get_args(Callback.model_fields["source"].annotation)) == {s.value for s in Source}


def test_every_status_is_pending_live_or_final() -> None:
    assert {Status.PENDING, *LIVE_STATUSES, *FINAL_STATUSES} == set(Status)
    assert not set(LIVE_STATUSES) & set(FINAL_STATUSES)


@pytest.mark.parametrize("module", ["stasis_app.domain.request", "stasis_app.callflow.session"])
def test_no_io_library_loaded(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('asyncpg', 'aiohttp', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
