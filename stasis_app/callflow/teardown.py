"""The end of every call: hang up what lives, destroy the bridge, collect the final causes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stasis_app.callflow import recovery, timing, uncertain
from stasis_app.callflow.call import Call
from stasis_app.callflow.inbox import SHUTDOWN
from stasis_app.callflow.legs import Leg
from stasis_app.domain.ari_errors import AriError, AriUnavailable


async def hang_up(call: Call, leg: Leg) -> None:
    """Once per leg; a 404 means the channel is gone (its last events may be queued)."""
    if leg.destroyed or leg.hung_up_by_us:
        return
    leg.hung_up_by_us = True
    await _delete(call, leg)


async def _delete(call: Call, leg: Leg) -> None:
    """``DELETE /channels/{id}``; without a definite answer the leg is marked to try again."""
    leg.hangup_unsure = False
    try:
        if not await call.ari.hangup(leg.channel_id):  # 404: no such channel (any more)
            call.inbox.observe_queued()  # its last events may be here already: keep the causes
            leg.gone_for_good(call.now())
    except AriUnavailable as exc:
        leg.hangup_unsure = True
        call.log.warning(
            "hangup without a definite answer, sending it again: %s",
            exc,
            extra={"action": "hangup_failed", "channel_id": leg.channel_id},
        )
    except AriError as exc:
        call.log.warning(
            "hangup refused: %s",
            exc,
            extra={"action": "hangup_failed", "channel_id": leg.channel_id},
        )


async def tear_down(call: Call, release_identities: Callable[[], Awaitable[None]]) -> bool:
    """Hang up what is live, destroy the bridge, wait (bounded) for the final causes, then
    free the identity objects.

    A hang-up without a definite answer is sent again until Asterisk says the channel is gone
    or its end event arrives: never given up, except at a shutdown after ``TEARDOWN`` (False:
    a channel may live on, the row is left for the restart to recover).
    """
    live = call.legs.live()
    for leg in live:
        if not leg.ending:  # one Asterisk is hanging up already needs no request of ours
            await hang_up(call, leg)
    if call.bridge_id is not None:
        await _destroy_bridge(call, call.bridge_id)
    deadline = call.now() + timing.TEARDOWN
    retry = timing.RESOLVE_FIRST
    while any(not leg.destroyed and (leg.hung_up_by_us or leg.ending) for leg in live):
        unsure = [leg for leg in live if leg.hangup_unsure and not leg.destroyed]
        if unsure and call.now() >= deadline and call.inbox.stopping == SHUTDOWN:
            return False
        wake = call.now() + retry if unsure else call.wake(deadline)
        if await call.inbox.next(wake, stoppable=False) is None:
            if unsure:
                for leg in unsure:
                    await _delete(call, leg)
                retry = min(retry * 2, timing.HANGUP_RETRY_MAX)
                continue
            if call.now() >= deadline:
                break
            await recovery.poll(call, [leg for leg in live if leg.hung_up_by_us or leg.ending])
    for leg in live:
        if not leg.destroyed:  # its end never came: make sure after all
            await hang_up(call, leg)
    now = call.now()
    for leg in live:
        leg.end(now)
    await release_identities()
    return True


async def _destroy_bridge(call: Call, bridge_id: str) -> None:
    """Best effort, but a destroy without a definite answer is resolved by a look-up."""
    try:
        await call.ari.destroy_bridge(bridge_id)
    except AriUnavailable:
        try:
            if await uncertain.look_up(call, bridge_id, lambda: call.ari.get_bridge(bridge_id)):
                await call.quietly(call.ari.destroy_bridge(bridge_id))
        except AriError as exc:
            call.log.warning("bridge left: %s", exc, extra={"action": "ari_error"})
    except AriError as exc:
        call.log.warning("bridge destroy refused: %s", exc, extra={"action": "ari_error"})
