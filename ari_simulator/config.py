"""Configuration of the simulator and the per-number call scripts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, cast, get_args

from ari_simulator.errors import SimulatorError

Action = Literal[
    "answer", "busy", "noanswer", "reject403", "reject404", "congestion", "unreachable"
]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
VERSIONS = (16, 20, 22)


@dataclass(frozen=True, slots=True)
class Script:
    """What the far end does when a number is dialled.

    - ``answer``: 200 OK after ``ring_ms + answer_after_ms``; it rings (180) meanwhile, and
      answers without ringing when that sum is 0 (like e_digest_dynamic).
    - ``busy`` / ``reject403`` / ``reject404`` / ``congestion`` / ``unreachable``: 486 / 403 /
      404 / 503 / 408 after ``ring_ms`` (0: straight after the INVITE, no ringing, as traced).
    - ``noanswer``: rings until the originate ``timeout`` expires.

    ``setup_ms`` delays everything by the time the far end takes to send its first response
    (180 or the final answer); 0 keeps the traces' ~1 ms. The originate timeout ends any call
    still unanswered by then. ``hangup_after_ms``: the far
    end sends BYE that long after answering. ``protocol_id`` overrides the generated SIP
    Call-ID. ``dial_ringing_first``: whether ``Dial(RINGING)`` comes before
    ``ChannelStateChange(Ringing)``; the order varies on a real Asterisk (None: 16 sends the Dial
    first, 20/22 the state change), so apps can be tested against both.
    """

    action: Action = "answer"
    ring_ms: int = 0
    answer_after_ms: int = 0
    hangup_after_ms: int | None = None
    protocol_id: str | None = None
    dial_ringing_first: bool | None = None
    setup_ms: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise SimulatorError(f"unknown script action {self.action!r}")
        for name in ("ring_ms", "answer_after_ms", "setup_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise SimulatorError(f"{name} must be an int >= 0, not {value!r}")
        if self.hangup_after_ms is not None and (
            not isinstance(self.hangup_after_ms, int) or self.hangup_after_ms < 0
        ):
            raise SimulatorError("hangup_after_ms must be None or an int >= 0")

    @classmethod
    def from_json(cls, data: object) -> Script:
        """Build from a JSON object (control route); unknown keys are an error."""
        if not isinstance(data, dict):
            raise SimulatorError("a script is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SimulatorError(f"unknown script fields: {sorted(unknown)}")
        try:
            return cls(**cast(dict[str, Any], data))
        except TypeError as exc:
            raise SimulatorError(str(exc)) from exc

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SimulatorConfig:
    """How the simulated Asterisk is set up.

    ``accounts`` (digest user -> plain password) and ``realm`` are what the simulated softswitch
    checks a per-call auth object against. ``trunk_requires_auth``: the softswitch challenges
    calls over the static trunk, which has no ``outbound_auth`` (they fail like
    e_digest_static_noauth). ``dynamic_config=False`` plays an Asterisk without the memory
    sorcery wizard in sorcery.conf (creating objects answers 403).
    """

    user: str = "twoway"
    password: str = "twoway"  # noqa: S105 - the lab default, like the app's
    version: int = 22
    realm: str = "softswitch.lab"
    accounts: dict[str, str] = field(default_factory=dict)
    # The built-in simulator of `run` without TWOWAY_ARI_URL: any well-formed identity passes.
    accept_any_digest: bool = False
    trunk_requires_auth: bool = False
    default_script: Script = field(default_factory=Script)
    trunk_endpoint: str = "softswitch"
    context: str = "from-softswitch"
    inbound_app: str = "twoway-callback"
    asterisk_id: str = "02:fc:00:00:00:01"
    dynamic_config: bool = True
    keep_ended: int = 10_000  # hung-up channels kept for assertions (oldest dropped first)
    keep_requests: int = 100_000  # request log bound, so long benchmarks stay flat

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise SimulatorError(f"version must be one of {VERSIONS}, not {self.version!r}")
