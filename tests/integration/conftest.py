"""Fixtures for the tests against a real Asterisk: importable by any test that needs one.

`asterisk` starts a private Asterisk (function scope: it boots in about a second), the
`softswitch` fixture is sipp on the trunk's address (started by the test with its per-number
behaviour), `service` runs `twoway-callback run` against both and this test's database.
Every process runs in its own process group and is killed at teardown, pass or fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.asterisk import HOW_TO_GET, Asterisk, find_binary
from tests.integration.service import ServiceProcess
from tests.integration.softswitch import SIPP_HOW_TO_GET, Softswitch, find_sipp

# CI sets this where it installed both: a missing tool then fails instead of skipping.
REQUIRED = os.environ.get("TWOWAY_TEST_REQUIRE_ASTERISK", "") not in ("", "0", "false")


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (TWOWAY_TEST_REQUIRE_ASTERISK is set)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def asterisk_binary() -> str:
    binary = find_binary()
    if binary is None:
        given = os.environ.get("TWOWAY_TEST_ASTERISK")
        where = f" (TWOWAY_TEST_ASTERISK={given} is not executable)" if given else ""
        _missing(f"asterisk not installed{where}: {HOW_TO_GET}")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def sipp_binary() -> str:
    binary = find_sipp()
    if binary is None:
        _missing(f"sipp not installed: {SIPP_HOW_TO_GET}")
    assert binary is not None
    return binary


@pytest.fixture
def asterisk(asterisk_binary: str, sipp_binary: str, tmp_path: Path) -> Iterator[Asterisk]:
    server = Asterisk(asterisk_binary, tmp_path / "asterisk")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def softswitch(asterisk: Asterisk, tmp_path: Path) -> Iterator[Softswitch]:
    """sipp at the trunk's contact address; the test calls `.start({number: Line})`."""
    sipp = Softswitch(tmp_path, asterisk.softswitch_port)
    try:
        yield sipp
    finally:
        sipp.stop()


@pytest.fixture
def service(db_url: str, asterisk: Asterisk, tmp_path: Path) -> Iterator[ServiceProcess]:
    """`twoway-callback run` for this test's database and Asterisk; the test calls `.start()`."""
    process = ServiceProcess(db_url, asterisk, tmp_path / "service.log")
    try:
        yield process
    finally:
        process.stop()
