"""The service: wires the store, the watcher, ARI and the call engine, and runs them.

One direction of flow: row → watcher → engine → ARI; ARI events → engine → store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from stasis_app import metrics
from stasis_app.api.routes import refuse_open_api
from stasis_app.api.server import build_apps, serving
from stasis_app.ari import AriClient, EventStream
from stasis_app.callflow.call import CallConfig
from stasis_app.callflow.engine import CallEngine
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.limits import RateLimiter
from stasis_app.callflow.resync import Resync
from stasis_app.config import IdentityMode, Settings
from stasis_app.domain.request import LIVE_STATUSES
from stasis_app.inbound import InboundTrigger
from stasis_app.store.admission import AdmissionGate
from stasis_app.store.database import create_pool, database_url
from stasis_app.store.inbound import InboundStore
from stasis_app.store.listener import NotifyListener
from stasis_app.store.migrations import check_schema, migrate
from stasis_app.store.requests import RequestStore
from stasis_app.store.watcher import QueueWatcher

log = logging.getLogger(__name__)

DB_PROBE_INTERVAL = 5.0

READY_POLL = 0.05


def call_config(settings: Settings) -> CallConfig:
    return CallConfig(
        app=settings.ari_app,
        leg_a_timeout=settings.leg_a_timeout,
        leg_b_timeout=settings.leg_b_timeout,
        max_call_duration=settings.max_call_duration,
        max_attempts=settings.max_attempts,
        retry_delay=settings.retry_delay,
        retry_delay_max=settings.retry_delay_max,
        retry_on_destination_failure=settings.retry_on_destination_failure,
        call_id_header=settings.call_id_header,
        dynamic_identity=settings.identity_mode is IdentityMode.DYNAMIC,
        trunk_endpoint=settings.trunk_endpoint,
    )


@dataclass
class Service:
    """Everything a running instance holds; health checks and tests look inside."""

    settings: Settings
    pool: asyncpg.Pool
    store: RequestStore
    engine: CallEngine
    watcher: QueueWatcher
    listener: NotifyListener
    stream: EventStream
    identities: IdentityObjects
    http_url: str = ""  # the API (and health, unless TWOWAY_METRICS_LISTEN is set)
    metrics_url: str = ""  # /metrics, /healthz, /readyz

    db_up: bool = True  # the last periodic query through the pool worked

    def readiness(self) -> dict[str, bool]:
        return {
            "database": self.db_up,
            "listen": self.listener.connected or not self.settings.listen_enabled,
            "ari": self.stream.connected,
        }

    async def wait_ready(self, timeout: float) -> bool:
        """Until DB, LISTEN and ARI are all up (start-up only: READY=1 for systemd, tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(self.readiness().values()):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(READY_POLL)
        return True


@contextlib.asynccontextmanager
async def ari_endpoint(settings: Settings) -> AsyncIterator[str]:
    """The ARI base URL: the configured Asterisk, or a built-in simulator when none is given."""
    if settings.ari_url:
        yield settings.ari_url
        return
    from ari_simulator import Script, Simulator, SimulatorConfig

    # Every number rings, answers, talks a few seconds and hangs up.
    phones = Script(action="answer", ring_ms=500, answer_after_ms=1000, hangup_after_ms=5000)

    log.warning(
        "TWOWAY_ARI_URL is empty: using the built-in ARI simulator, no real calls",
        extra={"action": "simulator"},
    )
    sim = Simulator(
        SimulatorConfig(
            user=settings.ari_user,
            password=settings.ari_password.get_secret_value(),
            realm=settings.sip_realm or "softswitch.lab",
            accept_any_digest=True,
            default_script=phones,
        )
    )
    url = await sim.start(host="127.0.0.1", port=0)
    try:
        yield url
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, *, auto_migrate: bool = False, ari_url: str | None = None
) -> AsyncIterator[Service]:
    """Start every part; yield the running service; stop it on exit."""
    refuse_open_api(settings)  # before anything starts: a clear error, nothing half-up
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(database_url(settings))
        pool = await create_pool(url, settings.db_pool_size)
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            if auto_migrate or not settings.database_url.get_secret_value():
                await migrate(conn)
            await check_schema(conn)
        if ari_url is None:
            ari_url = await stack.enter_async_context(ari_endpoint(settings))
        ari = await stack.enter_async_context(
            AriClient(settings, base_url=ari_url, observer=metrics.observe_ari)
        )

        instance = settings.effective_instance_id
        store = RequestStore(
            pool, instance, settings.lease_seconds, retry_window=settings.db_retry_window
        )
        ids = Ids(settings.id_prefix)
        identities = IdentityObjects(
            ari.rest,
            trunk=settings.trunk_endpoint,
            realm=settings.sip_realm,
            prefix=settings.id_prefix,
        )
        engine = CallEngine(
            ari=ari.rest,
            store=store,
            identities=identities,
            limiter=RateLimiter(settings.max_cps),
            ids=ids,
            config=call_config(settings),
            max_concurrent=settings.max_concurrent,
        )
        watcher = QueueWatcher(
            store,
            batch=settings.claim_batch,
            max_sleep=settings.poll_max_sleep,
            free_slots=engine.free_slots,
            on_claimed=engine.admit,
            on_recovered=engine.adopt,
            admit=AdmissionGate(pool, settings.destination_policy, settings.limits),
        )
        engine.on_slot_freed = watcher.wake
        inbound = InboundTrigger(ari.rest, InboundStore(pool, settings.inbound_limits), settings)
        engine.on_foreign_start = inbound.on_start
        watcher.paused = True  # until the ARI WebSocket is up: no Stasis app, no originate

        def on_notify(payload: str) -> None:
            engine.on_notify(payload)
            watcher.wake()

        def on_listen_up() -> None:
            if listener.reconnects:
                metrics.LISTEN_RECONNECTS.inc()
            watcher.wake()

        listen_url = settings.listen_database_url.get_secret_value() or url
        listener = NotifyListener(
            listen_url,
            on_notify=on_notify,
            on_up=on_listen_up,
            probe_interval=settings.listen_probe_interval,
        )

        resync = Resync(ari.rest, engine, identities)

        async def on_connect() -> None:
            if stream.reconnects:
                metrics.ARI_RECONNECTS.inc()
            try:
                await resync()
            finally:
                watcher.paused = False
                watcher.wake()

        def on_disconnect() -> None:
            watcher.paused = True  # requests wait for ARI instead of burning attempts

        stream = ari.event_stream(
            on_event=engine.on_event, on_connect=on_connect, on_disconnect=on_disconnect
        )
        service = Service(
            settings=settings,
            pool=pool,
            store=store,
            engine=engine,
            watcher=watcher,
            listener=listener,
            stream=stream,
            identities=identities,
        )
        _bind_gauges(service)
        urls = [
            await stack.enter_async_context(serving(app, listen))
            for app, listen in build_apps(service.readiness, pool, settings)
        ]
        service.http_url = urls[0]
        service.metrics_url = urls[-1]
        tasks = [
            asyncio.create_task(stream.run(), name="ari-events"),
            asyncio.create_task(watcher.run(), name="watcher"),
            *(
                [asyncio.create_task(listener.run(), name="listen")]
                if settings.listen_enabled
                else []
            ),
            asyncio.create_task(
                _every(settings.lease_seconds / 3, lambda: store.renew_leases(engine.live_ids())),
                name="lease-heartbeat",
            ),
            asyncio.create_task(_probe_database(service), name="db-probe"),
        ]
        log.info(
            "service started",
            extra={"action": "start", "instance": instance, "ari_app": settings.ari_app},
        )
        try:
            yield service
        finally:
            watcher.paused = True
            await inbound.wait_idle()
            await engine.shutdown(settings.shutdown_grace)
            await stream.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("service stopped", extra={"action": "stop"})


def _bind_gauges(service: Service) -> None:
    """Gauges read live state at scrape time, so they can never drift."""
    for status in LIVE_STATUSES:
        metrics.LIVE.labels(status).set_function(
            functools.partial(service.engine.count_in_phase, status)
        )
    metrics.ARI_CONNECTED.set_function(lambda: float(service.stream.connected))
    metrics.LISTEN_CONNECTED.set_function(lambda: float(service.listener.connected))


async def _probe_database(service: Service) -> None:
    """Every few seconds: the queue gauges, and whether the pool reaches the database."""
    while True:
        try:
            async with asyncio.timeout(DB_PROBE_INTERVAL):
                await service.store.refresh_queue_gauges()
            service.db_up = True
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if service.db_up:
                log.warning(
                    "database unreachable: %s", type(exc).__name__, extra={"action": "db_down"}
                )
            service.db_up = False
        await asyncio.sleep(DB_PROBE_INTERVAL if service.db_up else DB_PROBE_INTERVAL / 5)


async def _every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning(
                "periodic job failed: %s", type(exc).__name__, extra={"action": "periodic_error"}
            )
