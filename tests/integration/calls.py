"""Waits and checks shared by the real-Asterisk scenarios."""

from __future__ import annotations

import hashlib

import aiohttp

from tests.integration.asterisk import Asterisk
from tests.integration.service import ServiceProcess
from tests.integration.softswitch import SIPP_REALM, Dialog, SipMessage, Softswitch
from tests.test_callflow import until

APP = "twoway-callback"
# Bounds: far above what a loaded 2-core machine needs (the calls take milliseconds).
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0


def ha1(user: str, password: str) -> str:
    return _md5(f"{user}:{SIPP_REALM}:{password}")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_matches(invite: SipMessage, ha1_hex: str) -> bool:
    """The INVITE's digest response was computed from this HA1 (no qop: RFC 2617 3.2.2.1)."""
    fields = invite.digest()
    expected = _md5(f"{ha1_hex}:{fields['nonce']}:{_md5('INVITE:' + fields['uri'])}")
    return fields.get("response") == expected


async def app_registered(asterisk: Asterisk, app: str = APP) -> bool:
    return app in asterisk.cli("ari show apps")


async def start_service(service: ServiceProcess, **env: str) -> None:
    """Start the process and wait until Asterisk lists its Stasis app (its WebSocket is up)."""
    service.start(**env)

    async def up() -> bool:
        if not service.alive:
            raise AssertionError(f"the service exited: {service.log.read_text()[-3000:]}")
        return await app_registered(service.asterisk)

    await until(up, START_TIMEOUT)


async def ended_dialogs(softswitch: Softswitch, *numbers: str) -> dict[str, Dialog]:
    """Wait until the softswitch has finished one call to each number; those calls."""

    def done() -> bool:
        return all(any(d.ended for d in softswitch.dialogs_to(number)) for number in numbers)

    await until(done, CALL_TIMEOUT)
    return {number: softswitch.dialogs_to(number)[-1] for number in numbers}


async def readiness(service: ServiceProcess) -> tuple[int, list[str]]:
    """/readyz of the service: (status, the parts it reports down)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{service.http_url}/readyz") as response,
    ):
        body = await response.json(content_type=None)
        return response.status, list(body.get("down", [])) if isinstance(body, dict) else []


def channel_name(asterisk: Asterisk, channel_id: str) -> str | None:
    """The channel name of an ARI channel id (its uniqueid), None when it is gone."""
    for line in asterisk.cli("core show channels concise").splitlines():
        fields = line.split("!")
        if fields[-1] == channel_id:
            return fields[0]
    return None
