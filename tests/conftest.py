from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from ari_simulator import Simulator, SimulatorConfig
from stasis_app.app import Service, running_service
from stasis_app.config import Settings
from tests.pg import PgTestServer, with_database


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgTestServer]:
    server = PgTestServer()
    yield server
    server.close()


@pytest.fixture
def db_url(pg_server: PgTestServer) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    name = pg_server.create_database()
    yield with_database(pg_server.admin_url, name)
    pg_server.drop_database(name)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


# --- the service against the simulator -----------------------------------------------------

REALM = "softswitch.lab"
PASSWORDS = {"801": "pw-801", "902": "pw-902", "903": "pw-903"}


def ha1(user: str, password: str | None = None, realm: str = REALM) -> str:
    secret = password if password is not None else PASSWORDS[user]
    return hashlib.md5(f"{user}:{realm}:{secret}".encode(), usedforsecurity=False).hexdigest()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(
        SimulatorConfig(
            user="twoway", password="ari-secret-pw", realm=REALM, accounts=dict(PASSWORDS)
        )
    )
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator
    await simulator.stop()


def service_settings(db_url: str, sim_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=db_url,
        ari_url=sim_url,
        ari_user="twoway",
        ari_password="ari-secret-pw",
        sip_realm=REALM,
        instance_id="test-1",
        leg_a_timeout=5,
        leg_b_timeout=5,
        retry_delay=0.2,
        retry_delay_max=1,
        max_cps=1000,
        poll_max_sleep=60,
        shutdown_grace=5,
        http_listen="127.0.0.1:0",
    )
    values.update(overrides)
    return Settings(**values)


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_service(db_url: str, sim: Simulator) -> AsyncIterator[ServiceFactory]:
    """Start the service against this test's database and simulator; stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Service:
            settings = service_settings(db_url, sim.base_url, **overrides)
            service = await stack.enter_async_context(running_service(settings))
            assert await service.wait_ready(10)
            return service

        yield start
