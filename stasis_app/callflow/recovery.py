"""Taking over a live row of a lost instance: look its channels up by their deterministic ids.

Never dial again while one of its legs may live. Recovered legs may belong to the lost
instance's Stasis app, whose events nobody receives: they are looked up by id while we wait.
"""

from __future__ import annotations

from stasis_app.callflow import uncertain
from stasis_app.callflow.call import Call
from stasis_app.callflow.ids import BRIDGE
from stasis_app.callflow.legs import Leg
from stasis_app.domain.ari_errors import AriError, AriUnavailable
from stasis_app.domain.channels import Channel
from stasis_app.domain.request import LegName


async def take_stock(call: Call) -> None:
    """Look up the row's legs; remember the bridge the lost instance may have made."""
    req = call.req
    call.phase = req.status
    for name, channel_id in ((LegName.A, req.leg_a_channel_id), (LegName.B, req.leg_b_channel_id)):
        if channel_id is not None:
            leg = call.legs.add(
                Leg(name=name, channel_id=channel_id, timeout=0, originated_at=call.now())
            )
            await look_up(call, leg)
    # A bridge the lost instance created but had not recorded yet: its id is deterministic
    # (from the leg-A id, whatever the lost instance's prefix); destroying it is harmless.
    call.bridge_id = req.bridge_id or bridge_of(req.leg_a_channel_id)
    call.log.warning(
        "recovering a request of a lost instance",
        extra={"action": "recover", "status": req.status},
    )


async def look_up(call: Call, leg: Leg) -> Channel | None:
    """What Asterisk says about the leg (its channel, None when gone or unknown); without a
    definite answer the leg stays as it was (alive as far as we know: never finished or hung
    up on a guess)."""
    try:
        channel = await uncertain.look_up(
            call, leg.channel_id, lambda: call.ari.get_channel(leg.channel_id)
        )
    except AriUnavailable:
        return None
    if channel is None:
        leg.gone_for_good(call.now())
        return None
    leg.confirmed_at = call.now()
    leg.protocol_id = channel.protocol_id
    return channel


async def poll(call: Call, legs: list[Leg]) -> None:
    """Look up the legs not known gone; a failed look-up is logged and tried next time."""
    for leg in legs:
        if not leg.destroyed:
            try:
                await look_up(call, leg)
            except AriError as exc:
                call.log.warning(
                    "look-up failed: %s",
                    exc,
                    extra={"action": "ari_error", "channel_id": leg.channel_id},
                )


def bridge_of(leg_a_channel_id: str | None) -> str | None:
    """``<prefix>-<id>-<attempt>a`` -> ``<prefix>-<id>-<attempt>br`` (see callflow.ids)."""
    if leg_a_channel_id is None or not leg_a_channel_id.endswith(LegName.A):
        return None
    return leg_a_channel_id[: -len(LegName.A)] + BRIDGE
