"""The translation-rule trigger: an inbound ``ani_2way_<CLD>`` call becomes a callback request.

The dialplan sends it here as ``Stasis(<app>,ani_2way,<CLD>)``. The call is never answered (the
caller is not billed): optional ringback, then a rejection with the configured reason. The row
is created first, with a short delay so the caller's line is free when we call back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from stasis_app import metrics
from stasis_app.config import Settings
from stasis_app.domain.ari_errors import AriError
from stasis_app.domain.channels import StasisStart
from stasis_app.domain.policy import Refusal
from stasis_app.domain.rules import DIAL_STRING, HA1, TOKEN
from stasis_app.errors import ConfigError
from stasis_app.store.admission import count_refusal
from stasis_app.store.inbound import Identity, InboundStore

log = logging.getLogger(__name__)

TRIGGER_ARG = "ani_2way"
ANONYMOUS = frozenset({"", "anonymous", "unknown", "restricted", "private", "unavailable"})


class InboundAri(Protocol):
    async def ring(self, channel_id: str) -> None: ...

    async def hangup(self, channel_id: str, *, reason: str | None = None) -> bool: ...


class Refused(Exception):
    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def normalise_caller(number: str, *, strip_prefix: str, add_prefix: str) -> str:
    """The caller's number as we will dial it back; raises Refused if we cannot."""
    number = number.strip()
    if number.lower() in ANONYMOUS:
        raise Refused("anonymous", "anonymous or empty caller number")
    if strip_prefix and number.startswith(strip_prefix):
        number = number[len(strip_prefix) :]
    number = add_prefix + number
    if not DIAL_STRING.fullmatch(number):
        raise Refused("bad_cli", "caller number is not a dial string")
    return number


def default_identity(settings: Settings) -> Identity | None:
    """TWOWAY_DEFAULT_*: None when no default username is set; a bad value is a ConfigError."""
    if not settings.default_username:
        return None
    secret = settings.default_md5secret.get_secret_value()
    if not TOKEN.fullmatch(settings.default_username):
        raise ConfigError("TWOWAY_DEFAULT_USERNAME is not a SIP user name")
    if settings.default_authname and not TOKEN.fullmatch(settings.default_authname):
        raise ConfigError("TWOWAY_DEFAULT_AUTHNAME is not a SIP user name")
    if not HA1.fullmatch(secret):
        raise ConfigError("TWOWAY_DEFAULT_MD5SECRET must be 32 hex digits (HA1)")
    return Identity(settings.default_username, settings.default_authname or None, secret.lower())


class InboundTrigger:
    def __init__(self, ari: InboundAri, store: InboundStore, settings: Settings) -> None:
        self._ari = ari
        self._store = store
        self._settings = settings
        self._default = default_identity(settings)
        self._tasks: set[asyncio.Task[None]] = set()

    def on_start(self, event: StasisStart) -> None:
        """StasisStart of a channel that is not ours by id (engine.on_foreign_start)."""
        if not event.args or event.args[0] != TRIGGER_ARG:
            log.warning(
                "unexpected channel entered the app",
                extra={"action": "foreign_channel", "channel_id": event.channel.id},
            )
            return
        task = asyncio.create_task(self.handle(event), name=f"inbound-{event.channel.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, event: StasisStart) -> None:
        channel_id = event.channel.id
        fields = {"channel_id": channel_id, "leg": "inbound"}
        ringback = asyncio.create_task(self._ringback(channel_id))
        try:
            request_id = await self._create(event)
        except Refused as exc:
            metrics.INBOUND.labels(exc.outcome).inc()
            log.warning(
                "inbound trigger refused: %s",
                exc,
                extra={**fields, "action": "inbound_refused", "outcome": exc.outcome},
            )
        except Exception:
            metrics.INBOUND.labels("error").inc()
            log.exception("inbound trigger failed", extra={**fields, "action": "error"})
        else:
            outcome = "created" if request_id is not None else "debounced"
            metrics.INBOUND.labels(outcome).inc()
            log.info(
                "inbound trigger %s",
                outcome,
                extra={**fields, "action": f"inbound_{outcome}", "request_id": request_id},
            )
        await ringback
        await self._reject(channel_id)

    async def _create(self, event: StasisStart) -> int | None:
        settings = self._settings
        cli = normalise_caller(
            event.channel.caller_number,
            strip_prefix=settings.inbound_strip_prefix,
            add_prefix=settings.inbound_add_prefix,
        )
        cld = event.args[1] if len(event.args) > 1 else ""
        if not DIAL_STRING.fullmatch(cld):
            raise Refused("bad_cld", "dialled CLD after 'ani_2way_' is not a dial string")
        identity = await self._store.account(cli) or self._default
        if identity is None:
            raise Refused(
                "no_identity", "caller has no callback_accounts row and no default identity is set"
            )
        created = await self._store.create_request(
            identity, cli, cld, settings.inbound_callback_delay
        )
        if isinstance(created, Refusal):
            count_refusal(created)
            raise Refused("limited", created.reason)
        return created

    async def _ringback(self, channel_id: str) -> None:
        delay = self._settings.inbound_ringback_ms / 1000
        if delay <= 0:
            return
        try:
            await self._ari.ring(channel_id)
        except AriError as exc:
            log.info(
                "ringback failed: %s",
                exc,
                extra={"action": "inbound_ring_failed", "channel_id": channel_id},
            )
            return
        await asyncio.sleep(delay)  # the caller hears ringing this long: a product delay

    async def _reject(self, channel_id: str) -> None:
        try:  # False (404) when the caller hung up first: nothing left to do
            await self._ari.hangup(channel_id, reason=self._settings.inbound_reject_reason.value)
        except AriError as exc:
            log.warning(
                "inbound reject failed: %s",
                exc,
                extra={"action": "inbound_reject_failed", "channel_id": channel_id},
            )

    async def wait_idle(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))
