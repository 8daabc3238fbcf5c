"""The legs of one call: the events of their channels folded into what each leg has done."""

from __future__ import annotations

from dataclasses import dataclass

from stasis_app.domain.channels import (
    ChannelDestroyed,
    ChannelHangupRequest,
    ChannelStateChange,
    Dial,
    Event,
    StasisEnd,
    StasisStart,
)
from stasis_app.domain.request import LegName


@dataclass(frozen=True, slots=True)
class Vanished:
    """A leg is gone without events (found missing when resyncing after a reconnect)."""

    channel_id: str


@dataclass
class Leg:
    name: LegName
    channel_id: str
    timeout: float
    originated_at: float
    rang: bool = False
    answered_at: float | None = None
    ended_at: float | None = None
    destroyed: bool = False
    hung_up_by_us: bool = False
    hangup_unsure: bool = False  # our DELETE got no definite answer: it is sent again
    cause: int | None = None
    sip_code: int | None = None
    protocol_id: str | None = None
    confirmed_at: float | None = None  # originate answered 200: Asterisk has the channel
    vanished: bool = False
    ending: bool = False  # a hangup request was seen: Asterisk is hanging the channel up

    @property
    def gone(self) -> bool:
        return self.ended_at is not None

    @property
    def duration(self) -> float | None:
        if self.answered_at is None:
            return None
        return max(0.0, (self.ended_at or self.answered_at) - self.answered_at)

    def end(self, now: float) -> None:
        """The leg ended at ``now`` unless an earlier end is known."""
        self.ended_at = self.ended_at or now

    def gone_for_good(self, now: float) -> None:
        """Asterisk has no such channel (any more)."""
        self.destroyed = True
        self.end(now)

    def fold(self, event: Event | Vanished, now: float) -> None:
        """What ``event`` (about this leg's channel) says about the leg."""
        if isinstance(event, Vanished):
            self.vanished = True
            self.gone_for_good(now)
        elif isinstance(event, Dial):
            self.rang = self.rang or event.dialstatus == "RINGING"
        elif isinstance(event, ChannelStateChange):
            self.rang = self.rang or event.channel.state == "Ringing"
        elif isinstance(event, StasisStart):
            self.answered_at = now
            self.protocol_id = event.channel.protocol_id
        elif isinstance(event, ChannelHangupRequest):
            self.ending = True
            if not event.soft and event.cause:  # soft 32 is our own hangup, not a cause
                self.cause = event.cause
            self.sip_code = event.tech_cause or self.sip_code
            self.end(now)
        elif isinstance(event, StasisEnd):
            self.end(now)
        elif isinstance(event, ChannelDestroyed):
            self.cause = event.cause
            self.sip_code = event.tech_cause or self.sip_code
            self.gone_for_good(now)


class Legs:
    """The call's legs by name, found again by channel id."""

    def __init__(self) -> None:
        self._by_name: dict[LegName, Leg] = {}

    def add(self, leg: Leg) -> Leg:
        self._by_name[leg.name] = leg
        return leg

    def get(self, name: LegName) -> Leg | None:
        return self._by_name.get(name)

    def __getitem__(self, name: LegName) -> Leg:
        return self._by_name[name]

    def __contains__(self, name: LegName) -> bool:
        return name in self._by_name

    def all(self) -> list[Leg]:
        return list(self._by_name.values())

    def live(self) -> list[Leg]:
        """The legs whose channel Asterisk may still have."""
        return [leg for leg in self._by_name.values() if not leg.destroyed]

    def of(self, channel_id: str | None) -> Leg | None:
        for leg in self._by_name.values():
            if leg.channel_id == channel_id:
                return leg
        return None

    def observe(self, event: Event | Vanished, now: float) -> None:
        leg = self.of(event.channel_id)
        if leg is not None:
            leg.fold(event, now)

    def vanished(self, channel_ids: set[str], listed_at: float) -> list[Vanished]:
        """Resync after a reconnect: the legs missing from ``channel_ids`` ended unseen.

        Only legs Asterisk had confirmed before the list was asked for: one still being
        originated may simply not be in it yet.
        """
        return [
            Vanished(leg.channel_id)
            for leg in self._by_name.values()
            if not leg.destroyed
            and leg.confirmed_at is not None
            and leg.confirmed_at < listed_at
            and leg.channel_id not in channel_ids
        ]


def cause_text(leg: Leg) -> str:
    """How an unanswered leg ended, for ``result_reason``."""
    if leg.vanished:
        return "channel vanished while ARI was disconnected"
    text = f"cause {leg.cause}" if leg.cause is not None else "no cause"
    if leg.sip_code:
        text += f", SIP {leg.sip_code}"
    return text
