"""``POST /channels``: the parameters the simulator reads, parsed as Asterisk parses them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Originate:
    """The parameters of ``POST /channels`` that the simulator uses."""

    endpoint: str
    app: str | None = None
    app_args: str = ""
    extension: str | None = None
    caller_id: str = ""
    timeout: int = 30
    channel_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)


def parse_callerid(value: str) -> tuple[str, str]:
    """``"Name <number>"`` -> (name, number), like ast_callerid_parse."""
    value = value.strip()
    if value.endswith(">") and "<" in value:
        name, _, rest = value.partition("<")
        return name.strip().strip('"'), rest[:-1].strip()
    if value and all(c in "0123456789+*#-(). " for c in value):
        return "", value
    return value, ""


def ring_timeout_s(timeout: int) -> float | None:
    """Originate ``timeout``: seconds; -1 rings forever; 0 or nonsense means 30 (ast_dial)."""
    if timeout > 0:
        return float(timeout)
    return None if timeout == -1 else 30.0
