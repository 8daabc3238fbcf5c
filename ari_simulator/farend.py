"""The far end of an outbound channel: the softswitch's digest check, then what the phone
behind it does (ring, answer, refuse, ring out, hang up) as timer steps of the channel."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ari_simulator import events
from ari_simulator.causes import (
    AUTH_MISSING,
    AUTH_REJECTED,
    FAILURES,
    NORMAL_CLEARING,
    Failure,
    dial_status,
)
from ari_simulator.config import Script
from ari_simulator.dynconfig import auth_ha1, md5_hex
from ari_simulator.model import SimChannel

if TYPE_CHECKING:
    from ari_simulator.core import Pbx

log = logging.getLogger(__name__)


class FarEnd:
    def __init__(self, pbx: Pbx) -> None:
        self._pbx = pbx

    def plan(self, ch: SimChannel, script: Script, endpoint: dict[str, str]) -> None:
        """Schedule what the far end does."""
        if ch.timeout_s is not None:
            self._pbx.after(ch, int(ch.timeout_s * 1000), self._ring_timeout)
        start = script.setup_ms
        auth = self._auth_failure(endpoint)
        if auth is not None:
            self._pbx.after(ch, start, self._fail, auth[0], auth[1])
        elif script.action == "noanswer":
            self._pbx.after(ch, start, self._ringing)
        elif script.action == "answer":
            delay = script.ring_ms + script.answer_after_ms
            if delay:
                self._pbx.after(ch, start, self._ringing)
            self._pbx.after(ch, start + delay, self._answer)
        else:
            if script.ring_ms:
                self._pbx.after(ch, start, self._ringing)
            failure = FAILURES[script.action]
            self._pbx.after(ch, start + script.ring_ms, self._fail, failure, script.action)

    def _auth_failure(self, endpoint: dict[str, str]) -> tuple[Failure, str] | None:
        """The softswitch's digest check of the endpoint's outbound_auth."""
        cfg = self._pbx.cfg
        auth_id = endpoint.get("outbound_auth", "").split(",")[0]
        if not auth_id:
            return (AUTH_MISSING, "auth_missing") if cfg.trunk_requires_auth else None
        auth = self._pbx.config.auth(auth_id)
        if auth is None:  # named credentials that do not exist: the 401 cannot be answered
            return AUTH_MISSING, "auth_missing"
        if cfg.accept_any_digest:
            return None
        user, realm = auth.get("username", ""), auth.get("realm", "")
        password = cfg.accounts.get(user)
        if password is None or realm not in ("", cfg.realm):
            return AUTH_REJECTED, "auth_rejected"
        if auth_ha1(auth, cfg.realm) != md5_hex(f"{user}:{cfg.realm}:{password}"):
            return AUTH_REJECTED, "auth_rejected"
        return None

    def _ringing(self, ch: SimChannel) -> None:
        if ch.ended or ch.state != "Down":
            return
        first = ch.script.dial_ringing_first if ch.script else None
        dial_first = self._pbx.v16 if first is None else first
        if dial_first:
            self._pbx.emit(ch, events.dial(ch, "RINGING"))
            ch.state = "Ringing"
            self._pbx.emit(ch, events.state_change(ch))
        else:
            ch.state = "Ringing"
            self._pbx.emit(ch, events.state_change(ch))
            self._pbx.emit(ch, events.dial(ch, "RINGING"))
        self._pbx.notify()

    def _answer(self, ch: SimChannel) -> None:
        if ch.ended:
            return
        ch.state = "Up"
        ch.answered = True
        self._pbx.emit(ch, events.state_change(ch))
        self._pbx.emit(ch, events.dial(ch, "ANSWER"))
        if ch.app is not None:
            if not self._pbx.apps.active(ch.app):
                # Stasis(): "app not registered/active" -> the dial thread hangs up
                log.warning("channel %s answered but app %s is not connected", ch.id, ch.app)
                self._pbx.finish(ch, NORMAL_CLEARING, end="stasis_failed")
                return
            self._pbx.enter_stasis(ch)
        script = ch.script
        if script is not None and script.hangup_after_ms is not None:
            self._pbx.after(ch, script.hangup_after_ms, self._far_end_bye)
        self._pbx.notify()

    def _fail(self, ch: SimChannel, failure: Failure, end: str) -> None:
        if ch.ended or ch.answered:
            return
        tech = None if self._pbx.v16 else failure.sip
        self._pbx.emit(ch, events.hangup_request(ch, failure.cause, tech_cause=tech))
        self._pbx.emit(ch, events.dial(ch, dial_status(failure.cause)))
        self._pbx.finish(ch, failure.cause, tech_cause=tech, end=end)

    def _ring_timeout(self, ch: SimChannel) -> None:
        if ch.ended or ch.answered:
            return
        # 16 (and 20 < 20.18, 22 < 22.8) report cause 0; newer ones 19 with the 480
        if self._pbx.v16:
            self._pbx.finish(ch, 0, end="noanswer")
        else:
            self._pbx.finish(ch, 19, tech_cause=480, end="noanswer")

    def _far_end_bye(self, ch: SimChannel) -> None:
        if not ch.ended:
            self._pbx.far_end_hangup(ch.id)
