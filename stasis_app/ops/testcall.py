"""``doctor --call NUMBER``: one real call through the trunk with a given identity.

It goes out the way leg A of a callback does (identity objects in ``dynamic`` mode, our own
Stasis app, the ring timeout TWOWAY_LEG_A_TIMEOUT), is hung up as soon as it answers, and the
SIP outcome is reported: the Q.850 cause, the SIP code (Asterisk 20.17+ / 22.7+) and the SIP
Call-ID. The identity is validated by the API's rules; its secret is never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass

from stasis_app.api.routes import intake_rules
from stasis_app.api.validation import parse_create
from stasis_app.ari import (
    AriClient,
    AriError,
    ChannelDestroyed,
    ChannelHangupRequest,
    Dial,
    Event,
    StasisStart,
)
from stasis_app.ari.rest import AriRest
from stasis_app.callflow.identity import IdentityObjects
from stasis_app.config import IdentityMode, Settings
from stasis_app.ops.checks_ari import ari_settings
from stasis_app.ops.report import Check, Report
from stasis_app.store.callbacks import NewCallback

CALL_ID_VARIABLE = "CHANNEL(pjsip,call-id)"  # protocol_id is missing before 16.27
AUTH_FIX = "the softswitch refused the identity: check TWOWAY_SIP_REALM and the HA1 (md5secret)"
_REFUSED = frozenset({21, 401, 403, 407})


@dataclass(slots=True)
class CallResult:
    answered: bool = False
    dialstatus: str = ""
    cause: int | None = None
    cause_txt: str = ""
    sip_code: int | None = None
    call_id: str | None = None

    def describe(self) -> str:
        cause = f"cause {self.cause} ({self.cause_txt})" if self.cause is not None else "no cause"
        return (
            f"{'answered, hung up' if self.answered else 'not answered'}"
            f" ({self.dialstatus or 'no dial status'}); {cause}, SIP code "
            f"{self.sip_code or '-'}, Call-ID {self.call_id or '-'}"
        )


def identity(data: dict[str, str], settings: Settings) -> NewCallback:
    """The test call's identity through the API's validation (InvalidInput when it is bad)."""
    return parse_create({**data, "original_cld": "0"}, intake_rules(settings))


async def run(report: Report, settings: Settings, who: NewCallback) -> None:
    budget = settings.leg_a_timeout + 3 * report.timeout
    async with (
        report.check("test call", timeout=budget, timeout_fix="see the lines above") as check,
        AriClient(ari_settings(settings, report.timeout)) as ari,
    ):
        events: asyncio.Queue[Event] = asyncio.Queue()

        async def nothing() -> None:
            return None

        stream = ari.event_stream(
            on_event=events.put_nowait, on_connect=nothing, on_disconnect=lambda: None
        )
        reader = asyncio.create_task(stream.run())
        try:
            if not await stream.wait_connected(report.timeout):
                check.fail("the ARI event WebSocket did not open", "see the ari check")
                return
            await _call(check, ari.rest, settings, who, events)
        finally:
            await stream.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _call(
    check: Check,
    rest: AriRest,
    settings: Settings,
    who: NewCallback,
    events: asyncio.Queue[Event],
) -> None:
    objects = IdentityObjects(
        rest,
        trunk=settings.trunk_endpoint,
        realm=settings.sip_realm,
        prefix=f"{settings.id_prefix}-doctor",
    )
    user = who.authname or who.username
    hold = None
    endpoint = settings.trunk_endpoint
    if settings.identity_mode is IdentityMode.DYNAMIC and who.md5secret is not None:
        hold = await objects.acquire(user, who.md5secret)
        endpoint = objects.endpoint_id(hold.key)
    channel_id = f"{settings.id_prefix}-doctor-call-{secrets.token_hex(4)}"
    dial = f"PJSIP/{who.original_cli}@{endpoint}"
    result = CallResult()
    try:
        await rest.originate(
            endpoint=dial,
            channel_id=channel_id,
            app=settings.ari_app,
            app_args=["doctor"],
            caller_id=who.original_set_cli,
            timeout=max(1, round(settings.leg_a_timeout)),
            variables={},
        )
        await _follow(rest, channel_id, events, result)
    except AriError as exc:
        check.fail(f"{dial}: originate refused: {exc}", "see the trunk and memory wizard checks")
        return
    finally:
        with contextlib.suppress(AriError):
            await rest.hangup(channel_id)
        if hold is not None:
            await objects.release(hold)
    found = f"{dial} as {user}: {result.describe()}"
    if result.answered:
        check.ok(found)
    elif result.cause in _REFUSED or result.sip_code in _REFUSED:
        check.fail(found, AUTH_FIX)
    elif result.cause in (0, 17, 19) or result.dialstatus in ("BUSY", "NOANSWER"):
        check.warn(found, "the trunk and identity work; call a number that answers to see more")
    else:
        check.fail(found, "the call failed at the softswitch or beyond: see the cause")


async def _follow(
    rest: AriRest, channel_id: str, events: asyncio.Queue[Event], result: CallResult
) -> None:
    """Until the channel is destroyed; hang it up as soon as it answers."""
    while True:
        event = await events.get()
        if isinstance(event, Dial):
            if event.channel_id == channel_id and event.dialstatus:
                result.dialstatus = event.dialstatus
            continue
        channel = getattr(event, "channel", None)
        if channel is None or channel.id != channel_id:
            continue
        result.call_id = channel.protocol_id or result.call_id
        if isinstance(event, StasisStart):
            result.answered = True
            if result.call_id is None:
                result.call_id = await rest.get_variable(channel_id, CALL_ID_VARIABLE) or None
            await rest.hangup(channel_id)
        elif isinstance(event, ChannelHangupRequest) and event.tech_cause:
            result.sip_code = result.sip_code or event.tech_cause
        elif isinstance(event, ChannelDestroyed):
            result.cause, result.cause_txt = event.cause, event.cause_txt
            result.sip_code = result.sip_code or event.tech_cause
            return
