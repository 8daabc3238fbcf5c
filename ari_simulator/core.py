"""The simulated Asterisk core: channels, originates, hangups (the far end's script: ``farend``).

Each step of a call is a ``loop.call_later`` timer held by its channel (no task per channel),
so thousands of live channels cost a few timer handles each. Event sequences, fields and causes
follow ``ari-traces`` (22) and ``ari-traces/versions`` (16, 20).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from ari_simulator import events
from ari_simulator.apps import AppRegistry
from ari_simulator.bridges import Bridges
from ari_simulator.causes import (
    EXPLICIT_HANGUP,
    HANGUP_REASONS,
    NORMAL_CLEARING,
    dial_status,
    sip_for_cause,
)
from ari_simulator.config import Script, SimulatorConfig
from ari_simulator.dynconfig import DynamicConfig
from ari_simulator.errors import AriHttpError, SimulatorError, allocation_failed
from ari_simulator.farend import FarEnd
from ari_simulator.model import DIAL_APP, DIAL_APP_DATA, SimChannel
from ari_simulator.originate import Originate, parse_callerid, ring_timeout_s

log = logging.getLogger(__name__)

MAX_UNIQUEID = 149  # AST_MAX_PUBLIC_UNIQUEID
INBOUND_PREFIX = "ani_2way_"  # Stasis(app,ani_2way,${EXTEN:9}) in the lab dialplan


class Pbx:
    def __init__(self, cfg: SimulatorConfig, apps: AppRegistry, notify: Callable[[], None]):
        self.cfg = cfg
        self.apps = apps
        self.notify = notify
        self.config = DynamicConfig(cfg)
        self.bridges = Bridges(self)
        self.far_end = FarEnd(self)
        self.channels: dict[str, SimChannel] = {}
        self.ended: OrderedDict[str, SimChannel] = OrderedDict()
        self.scripts: dict[str, Script] = {}
        self.startup_time = events.timestamp()
        self._uniqueid = itertools.count(1)
        self._name_seq = itertools.count(0)

    @property
    def v16(self) -> bool:
        return self.cfg.version == 16

    # --- plumbing ------------------------------------------------------------------------

    def emit(self, ch: SimChannel, event: events.Event) -> None:
        if ch.subscribed and ch.app is not None:
            self.apps.deliver(ch.app, event)

    def after(self, ch: SimChannel, ms: int, step: Callable[..., None], *args: object) -> None:
        loop = asyncio.get_running_loop()
        if ms <= 0:  # call_soon keeps FIFO order; equal call_later deadlines need not
            ch.timers.append(loop.call_soon(step, ch, *args))
        else:
            ch.timers.append(loop.call_later(ms / 1000, step, ch, *args))

    def _ids(self, endpoint: str, channel_id: str | None) -> tuple[str, str]:
        """Asterisk's uniqueid (epoch.counter) unless given, and the channel name."""
        uid = channel_id or f"{int(time.time())}.{next(self._uniqueid)}"
        return uid, f"PJSIP/{endpoint}-{next(self._name_seq):08x}"

    def _remember(self, ch: SimChannel) -> None:
        self.ended[ch.id] = ch
        while len(self.ended) > self.cfg.keep_ended:
            self.ended.popitem(last=False)

    def channel(self, channel_id: str) -> SimChannel:
        ch = self.channels.get(channel_id)
        if ch is None:
            raise AriHttpError(404, "Channel not found")
        return ch

    def control(self, channel_id: str) -> SimChannel:
        """find_control(): the channel must be in a Stasis application."""
        ch = self.channel(channel_id)
        if not ch.in_stasis:
            raise AriHttpError(409, "Channel not in Stasis application")
        return ch

    @staticmethod
    def _state_valid(ch: SimChannel) -> None:
        """channel_state_invalid(): no ring/answer on unanswered outbound channels."""
        if ch.state in ("Down", "Ringing"):
            raise AriHttpError(412, "Channel in invalid state")

    # --- originate -----------------------------------------------------------------------

    def originate(self, req: Originate) -> SimChannel:
        if req.channel_id and len(req.channel_id) > MAX_UNIQUEID:
            raise AriHttpError(400, f"Uniqueid length exceeds maximum of {MAX_UNIQUEID}")
        if not req.endpoint:
            raise AriHttpError(400, "Endpoint must be specified")
        tech, _, resource = req.endpoint.partition("/")
        if not tech or not resource:
            raise AriHttpError(400, "Invalid endpoint specified")
        if not req.app and not req.extension:
            raise AriHttpError(400, "Application or extension must be specified")
        number, _, ep_name = resource.rpartition("@")
        endpoint = self.config.endpoint(ep_name) if tech.upper() == "PJSIP" else None
        if endpoint is None or not endpoint.get("aors"):
            raise allocation_failed()  # no such channel driver / endpoint, or no contact
        if req.channel_id and req.channel_id in self.channels:
            raise AriHttpError(409, "Channel with given unique ID already exists")

        script = self.scripts.get(number, self.cfg.default_script)
        name, num = parse_callerid(req.caller_id)
        uid, chan_name = self._ids(ep_name, req.channel_id)
        ch = SimChannel(
            id=uid,
            name=chan_name,
            endpoint=ep_name,
            creationtime=events.timestamp(),
            number=number,
            outbound=True,
            state="Down",
            protocol_id=script.protocol_id or str(uuid.uuid4()),
            caller_name=name,
            caller_number=num,
            connected_name=name,
            connected_number=num,
            context=endpoint.get("context", "default"),
            caller_id=req.caller_id,
            dialstring=resource,
            app=req.app,
            args=req.app_args.split(",") if req.app_args else [],
            variables=dict(req.variables),
            script=script,
            timeout_s=ring_timeout_s(req.timeout),
        )
        self.channels[uid] = ch
        # stasis_app_subscribe_channel() only works for an app Asterisk knows
        ch.subscribed = req.app is not None and self.apps.registered(req.app)
        self.emit(ch, events.dial(ch, ""))
        self.far_end.plan(ch, script, endpoint)
        self.notify()
        return ch

    def enter_stasis(self, ch: SimChannel) -> None:
        assert ch.app is not None
        ch.subscribed = True
        ch.in_stasis = True
        ch.app_name = "Stasis"
        ch.app_data = ",".join([ch.app, *ch.args])
        if ch.outbound:
            self.emit(ch, events.varset(ch, "STASISSTATUS", ""))
        self.emit(ch, events.stasis_start(ch))

    # --- hangups -------------------------------------------------------------------------

    def far_end_hangup(self, channel_id: str) -> None:
        """The remote party sends BYE (or an inbound caller gives up)."""
        ch = self.channels.get(channel_id)
        if ch is None:
            raise SimulatorError(f"no live channel {channel_id!r}")
        if ch.outbound and not ch.answered:
            raise SimulatorError(f"channel {channel_id!r} is not answered: use a script to fail")
        # 16: cause 16 on both events. 20/22: no cause on the request; ChannelDestroyed says
        # 0 outside a bridge, but 16 for a bridged channel: the bridge core kicks a channel
        # that hangs up with AST_CAUSE_NORMAL_CLEARING, which becomes its hangup cause
        # (measured on 22.10.1 with sipp).
        if self.v16:
            self._hangup_in_call(ch, NORMAL_CLEARING, NORMAL_CLEARING, "far_end_hangup")
        else:
            cause = NORMAL_CLEARING if ch.bridge_id is not None else 0
            self._hangup_in_call(ch, None, cause, "far_end_hangup")

    def app_hangup(self, channel_id: str, reason: str | None, reason_code: str | None) -> None:
        """``DELETE /channels/{id}``."""
        ch = self.channel(channel_id)
        cause = self._hangup_cause(reason, reason_code)
        ch.hangup_reason = reason
        ch.hangup_cause = cause
        if ch.outbound and not ch.answered:  # still dialling: Asterisk cancels the INVITE
            self.emit(ch, events.hangup_request(ch, EXPLICIT_HANGUP, soft=True))
            self.emit(ch, events.dial(ch, dial_status(cause)))
            self.finish(ch, cause, end="cancelled")
            return
        if not ch.answered:
            ch.sip_final = sip_for_cause(cause)  # an inbound call rejected without answer
        self._hangup_in_call(ch, EXPLICIT_HANGUP, cause, "app_hangup")

    def _hangup_cause(self, reason: str | None, reason_code: str | None) -> int:
        if self.v16:
            reason_code = None  # unknown parameter on 16: silently ignored
        if reason and reason_code:
            raise AriHttpError(400, "The reason and reason_code can't both be specified")
        if reason_code:
            try:
                return int(reason_code)
            except ValueError:
                raise AriHttpError(400, "Invalid reason for hangup reason code provided") from None
        if reason:
            if reason not in HANGUP_REASONS:
                raise AriHttpError(400, "Invalid reason for hangup provided")
            return HANGUP_REASONS[reason]
        return NORMAL_CLEARING

    def _hangup_in_call(
        self, ch: SimChannel, request_cause: int | None, cause: int, end: str
    ) -> None:
        """Hang up a channel that is answered or in Stasis (the f_bridge order).

        ``request_cause``: ChannelHangupRequest.cause (32 = ARI's explicit soft hangup; None
        for a BYE on 20/22); ``cause`` ends up in ChannelDestroyed.
        """
        if ch.answered and not self.v16:
            self._emit_rtp_stats(ch)
        soft = request_cause == EXPLICIT_HANGUP
        self.emit(ch, events.hangup_request(ch, request_cause, soft=soft))
        if ch.bridge_id is not None:
            self.bridges.leave(ch)
        if ch.in_stasis:
            ch.in_stasis = False
            self.emit(ch, events.stasis_end(ch))
            if not ch.outbound:
                ch.subscribed = False  # back in the dialplan: the app hears no more of it
            self.emit(ch, events.varset(ch, "STASISSTATUS", "SUCCESS"))
        self.finish(ch, cause, end=end)

    def _emit_rtp_stats(self, ch: SimChannel) -> None:
        peers = self.bridges.peers(ch)
        for variable, value in events.rtp_qos_values():
            self.emit(ch, events.varset(ch, variable, value))
            for peer in peers:
                self.emit(peer, events.varset(peer, f"{variable}BRIDGED", value))

    def finish(
        self, ch: SimChannel, cause: int, *, tech_cause: int | None = None, end: str
    ) -> None:
        """The channel is destroyed: last event, then it moves to ``ended``."""
        ch.cancel_timers()
        ch.ended = True
        ch.end = end
        if ch.hangup_cause is None:
            ch.hangup_cause = cause
        if ch.outbound:
            ch.app_name, ch.app_data = DIAL_APP, DIAL_APP_DATA
        self.emit(ch, events.destroyed(ch, cause, tech_cause=tech_cause))
        self.channels.pop(ch.id, None)
        self._remember(ch)
        self.notify()

    # --- requests on live channels -------------------------------------------------------

    def answer(self, channel_id: str) -> None:
        ch = self.control(channel_id)
        self._state_valid(ch)
        if ch.state != "Up":
            ch.state = "Up"
            ch.answered = True
            self.emit(ch, events.state_change(ch))
            self.notify()

    def ring(self, channel_id: str, on: bool) -> None:
        ch = self.control(channel_id)
        self._state_valid(ch)
        if on:
            ch.rang = True  # 180 Ringing to the caller; Asterisk sends no event for it
            self.notify()

    def get_var(self, channel_id: str, variable: str) -> str:
        if not variable:
            raise AriHttpError(400, "Variable name is required")
        ch = self.channels.get(channel_id)
        if ch is None:
            raise AriHttpError(404, "Provided channel was not found")
        if variable.endswith(")"):
            functions = {
                "CHANNEL(pjsip,call-id)": ch.protocol_id,
                "CHANNEL(name)": ch.name,
                "CHANNEL(uniqueid)": ch.id,
                "CALLERID(num)": ch.caller_number,
                "CALLERID(name)": ch.caller_name,
            }
            if variable not in functions:
                raise AriHttpError(500, "Unable to read provided function")
            return functions[variable]
        if variable not in ch.chanvars:
            raise AriHttpError(404, "Provided variable was not found")
        return ch.chanvars[variable]

    def set_var(self, channel_id: str, variable: str, value: str) -> None:
        if not variable:
            raise AriHttpError(400, "Variable name is required")
        ch = self.control(channel_id)
        if variable.endswith(")"):
            ch.variables[variable] = value  # a function write, e.g. PJSIP_HEADER(add,...)
        else:
            ch.chanvars[variable] = value
            self.emit(ch, events.varset(ch, variable, value))
        self.notify()

    # --- inbound -------------------------------------------------------------------------

    def inbound_call(
        self,
        caller: str,
        exten: str,
        *,
        caller_name: str = "",
        app: str | None = None,
        args: list[str] | None = None,
    ) -> SimChannel:
        """An INVITE from the softswitch reaches ``Stasis(app, ...)`` in state Ring."""
        app = app or self.cfg.inbound_app
        if args is None:
            args = (
                ["ani_2way", exten[len(INBOUND_PREFIX) :]]
                if exten.startswith(INBOUND_PREFIX)
                else []
            )
        uid, chan_name = self._ids(self.cfg.trunk_endpoint, None)
        ch = SimChannel(
            id=uid,
            name=chan_name,
            endpoint=self.cfg.trunk_endpoint,
            creationtime=events.timestamp(),
            number=exten,
            outbound=False,
            state="Ring",
            protocol_id=f"{uuid.uuid4().hex[:12]}@127.0.0.1",  # the caller's Call-ID
            caller_name=caller_name,
            caller_number=caller,
            connected_name="",
            connected_number="",
            context=self.cfg.context,
            exten=exten,
            priority=2,
            caller_id=caller,
            app=app,
            args=args,
        )
        self.channels[uid] = ch
        if not self.apps.active(app):
            log.warning("inbound call %s: app %s is not connected, Stasis() fails", ch.id, app)
            self.finish(ch, NORMAL_CLEARING, end="stasis_failed")
            return ch
        self.enter_stasis(ch)
        self.notify()
        return ch

    # --- lifecycle -----------------------------------------------------------------------

    def restart(self) -> None:
        """Asterisk restarts: every channel, bridge and memory object is gone, silently."""
        for ch in list(self.channels.values()):
            ch.cancel_timers()
            ch.ended = True
            ch.end = "restart"
            self._remember(ch)
        self.channels.clear()
        self.bridges.items.clear()
        self.config.clear_memory()
        self.apps.forget_all()
        self.startup_time = events.timestamp()
        self._name_seq = itertools.count(0)
        self.notify()

    def shutdown(self) -> None:
        for ch in self.channels.values():
            ch.cancel_timers()
