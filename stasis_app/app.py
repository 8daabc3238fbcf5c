"""The service: wires the store, the watcher, ARI and the call engine, and runs them.

One direction of flow: row → watcher → engine → ARI; ARI events → engine → store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from stasis_app import metrics
from stasis_app.api.routes import refuse_open_api
from stasis_app.api.server import build_apps, serving
from stasis_app.ari import CALL_EVENTS, AriClient, EventStream
from stasis_app.callflow.call import CallConfig
from stasis_app.callflow.engine import CallEngine
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.callflow.ids import Ids
from stasis_app.callflow.limits import RateLimiter
from stasis_app.callflow.resync import Resync
from stasis_app.config import ARI_SIMULATOR, IdentityMode, Settings, refuse_default_ari_password
from stasis_app.domain.request import LIVE_STATUSES
from stasis_app.errors import ConfigError
from stasis_app.inbound import InboundTrigger
from stasis_app.leases import LeaseKeeper, every
from stasis_app.store.admission import AdmissionGate
from stasis_app.store.database import create_pool, database_url
from stasis_app.store.inbound import InboundStore
from stasis_app.store.listener import NotifyListener
from stasis_app.store.migrations import check_schema, migrate
from stasis_app.store.requests import RequestStore
from stasis_app.store.watcher import QueueWatcher
from stasis_app.supervise import Supervisor

log = logging.getLogger(__name__)

DB_PROBE_INTERVAL = 5.0
# How long a start-up waits for the instance lock: a predecessor killed a moment ago may still
# hold it until its backend notices the closed socket (milliseconds on a live network).
INSTANCE_LOCK_WAIT = 5.0

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
        late_act=2 * settings.ari_timeout,
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
    supervisor: Supervisor
    http_url: str = ""  # the API (and health, unless TWOWAY_METRICS_LISTEN is set)
    metrics_url: str = ""  # /metrics, /healthz, /readyz

    db_up: bool = True  # the last periodic query through the pool worked

    def readiness(self) -> dict[str, bool]:
        return {
            "database": self.db_up,
            "listen": self.listener.connected or not self.settings.listen_enabled,
            "ari": self.stream.connected,
            **self.supervisor.readiness(),
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


def refuse_missing_ari(settings: Settings) -> None:
    """Never a silent fallback to the simulator: a production install that forgot the variable
    would complete rows 'answered' with no call placed."""
    if not settings.ari_url:
        raise ConfigError(
            "TWOWAY_ARI_URL is empty: set it to your Asterisk's ARI, e.g. http://127.0.0.1:8088,"
            f" or to '{ARI_SIMULATOR}' for the built-in ARI simulator (no real calls)"
        )


@contextlib.asynccontextmanager
async def ari_endpoint(settings: Settings) -> AsyncIterator[str]:
    """The ARI base URL: the configured Asterisk, or the built-in simulator when asked for."""
    refuse_missing_ari(settings)
    if settings.ari_url != ARI_SIMULATOR:
        yield settings.ari_url
        return
    from ari_simulator import Script, Simulator, SimulatorConfig

    # Every number rings, answers, talks a few seconds and hangs up.
    phones = Script(action="answer", ring_ms=500, answer_after_ms=1000, hangup_after_ms=5000)

    log.warning(
        "TWOWAY_ARI_URL=simulator: using the built-in ARI simulator, no real calls",
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
    # Before anything starts: a clear error, nothing half-up.
    refuse_open_api(settings)
    if ari_url is None:
        refuse_missing_ari(settings)
        refuse_default_ari_password(settings)
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(database_url(settings))
        pool = await create_pool(url, settings.db_pool_size)
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            if auto_migrate or not settings.database_url.get_secret_value():
                await migrate(conn)
            await check_schema(conn)
        instance = settings.effective_instance_id
        supervisor = Supervisor()

        def on_notify(payload: str) -> None:
            engine.on_notify(payload)
            watcher.wake()

        def on_listen_up() -> None:
            if listener.reconnects:
                metrics.LISTEN_RECONNECTS.inc()
            watcher.wake()

        # First: the instance lock (a second live process with this id stops here).
        listener = NotifyListener(
            settings.listen_database_url.get_secret_value() or url,
            on_notify=on_notify,
            on_up=on_listen_up,
            probe_interval=settings.listen_probe_interval,
            instance_id=instance,
            listen=settings.listen_enabled,
        )
        await listener.open(INSTANCE_LOCK_WAIT)
        stack.callback(listener.discard)
        stack.push_async_callback(supervisor.stop)

        if ari_url is None:
            ari_url = await stack.enter_async_context(ari_endpoint(settings))
        ari = await stack.enter_async_context(
            AriClient(settings, base_url=ari_url, observer=metrics.observe_ari)
        )
        # Lease renewal and reconciliation on the lock's connection: never behind write-backs.
        store = RequestStore(
            pool,
            instance,
            settings.lease_seconds,
            retry_window=settings.db_retry_window,
            leases=listener,
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
            on_event=engine.on_event,
            on_connect=on_connect,
            on_disconnect=on_disconnect,
            wanted=CALL_EVENTS,  # bridge events are dropped unread: the call flow needs none
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
            supervisor=supervisor,
        )
        _bind_gauges(service)
        urls = [
            await stack.enter_async_context(serving(app, listen))
            for app, listen in build_apps(service.readiness, pool, settings)
        ]
        service.http_url = urls[0]
        service.metrics_url = urls[-1]
        leases = LeaseKeeper(store, engine)
        supervisor.start("listen", listener.run())
        supervisor.start("ari-events", stream.run())
        supervisor.start("watcher", watcher.run())
        supervisor.start("lease-renewal", every(settings.lease_seconds / 3, leases.renew))
        # A cancel takes effect within TWOWAY_POLL_MAX_SLEEP even without NOTIFY.
        supervisor.start("reconcile", every(settings.poll_max_sleep, leases.reconcile))
        supervisor.start("db-probe", _probe_database(service))
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
            await supervisor.stop()
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
