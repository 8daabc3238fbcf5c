"""deploy/asterisk/: the sample configuration agrees with the settings and with DESIGN.md's
measured Asterisk facts (sorcery memory wizard, dialplan pattern, modules)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stasis_app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
ASTERISK = ROOT / "deploy" / "asterisk"
DESIGN = ROOT / "docs" / "design.md"  # the product design, vendored from shared/DESIGN.md
DEFAULTS = Settings.model_fields

# DESIGN.md, Asterisk fact 6: without these, PUT .../config/dynamic/res_pjsip/* answers 403.
SORCERY_LINES = [
    "[res_pjsip]",
    "endpoint = config,pjsip.conf,criteria=type=endpoint",
    "endpoint = memory",
    "auth = config,pjsip.conf,criteria=type=auth",
    "auth = memory",
    "aor = config,pjsip.conf,criteria=type=aor",
    "aor = memory",
]


def default(name: str) -> str:
    value = DEFAULTS[name].default
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def sections(name: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """An Asterisk .conf as (section, [(key, value)]) in file order; section names may repeat
    (pjsip.conf) and so may keys. ';' starts a comment; '=>' and '=' both assign."""
    result: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in (ASTERISK / name).read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            result.append((line[1 : line.index("]")], []))
            continue
        key, _, value = line.partition("=")
        result[-1][1].append((key.strip(), value.lstrip(">").strip()))
    return result


def section(name: str, title: str, type_: str | None = None) -> dict[str, str]:
    found = [
        dict(body)
        for head, body in sections(name)
        if head == title and (type_ is None or dict(body).get("type") == type_)
    ]
    assert len(found) == 1, f"{name}: [{title}] type={type_}"
    return found[0]


# --- a small model of Asterisk's extension patterns --------------------------------------------


def asterisk_match(pattern: str, exten: str) -> bool:
    """Whether ``exten`` matches a dialplan extension, by Asterisk's rules: a leading '_' makes
    a pattern; in it N, X, Z are [2-9], [0-9], [1-9] in either case; [...] is a set with
    ranges; '.' is one or more characters, '!' zero or more; everything else is literal."""
    if not pattern.startswith("_"):
        return pattern == exten
    regex, i = "", 1
    while i < len(pattern):
        char = pattern[i]
        if char == "[":
            end = pattern.index("]", i)
            regex += "[" + re.sub(r"([\\^\]])", r"\\\1", pattern[i + 1 : end]) + "]"
            i = end + 1
            continue
        regex += {"N": "[2-9]", "X": "[0-9]", "Z": "[1-9]", ".": ".+", "!": ".*"}.get(
            char.upper(), re.escape(char)
        )
        i += 1
    return re.fullmatch(regex, exten) is not None


@pytest.mark.parametrize(
    ("pattern", "exten", "matches"),
    [
        ("_NXX", "234", True),
        ("_NXX", "123", False),
        ("_nxx", "299", True),
        ("_ZX.", "10", False),
        ("_ZX.", "100", True),
        ("_X!", "5", True),
        ("_[a-c]1", "b1", True),
        ("_[a-c]1", "d1", False),
        ("_[n]", "n", True),
        ("100", "100", True),
        ("100", "1000", False),
    ],
)
def test_pattern_model(pattern: str, exten: str, matches: bool) -> None:
    assert asterisk_match(pattern, exten) is matches


def ani_extension() -> tuple[str, list[str]]:
    """The from-softswitch extension pattern and its priorities' applications."""
    body = dict(sections("extensions.conf"))["from-softswitch"]
    extens = [value for key, value in body if key == "exten"]
    assert len(extens) == 1
    pattern, _, first = extens[0].partition(",")
    apps = [first.split(",", 1)[1]] + [v.split(",", 1)[1] for k, v in body if k == "same"]
    return pattern, apps


def test_dialplan_pattern_matches_the_translated_cld() -> None:
    pattern, _apps = ani_extension()
    assert pattern == "_a[n]i_2way_."
    assert asterisk_match(pattern, "ani_2way_12345")
    assert asterisk_match(pattern, "ani_2way_+4930123456")
    assert not asterisk_match(pattern, "ani_2way_")
    # The naive spelling never matches: 'n' is a wildcard for 2-9.
    assert not asterisk_match("_ani_2way_.", "ani_2way_12345")
    assert asterisk_match("_ani_2way_.", "a5i_2way_12345")


def test_dialplan_hands_the_call_to_the_app_unanswered() -> None:
    _pattern, apps = ani_extension()
    stasis = [a for a in apps if a.startswith("Stasis(")]
    assert stasis == [f"Stasis({default('ari_app')},ani_2way,${{EXTEN:9}})"]
    assert "ani_2way_12345"[len("ani_2way_") :] == "12345" and len("ani_2way_") == 9
    assert not [a for a in apps if a.startswith("Answer")]  # rejected without answering


def test_ari_user_matches_the_settings_defaults() -> None:
    assert section("ari.conf", "general")["enabled"] == "yes"
    user = section("ari.conf", default("ari_user"))
    assert user == {
        "type": "user",
        "read_only": "no",
        "password": default("ari_password"),
        "password_format": "plain",
    }


def test_http_serves_ari_where_the_env_example_points() -> None:
    http = section("http.conf", "general")
    assert http["enabled"] == "yes" and http.get("prefix", "") == ""
    env = (ROOT / "systemd" / "env.example").read_text()
    url = re.search(r"^TWOWAY_ARI_URL=(\S+)$", env, flags=re.MULTILINE)
    assert url and url.group(1) == f"http://{http['bindaddr']}:{http['bindport']}"
    assert http["bindport"] == "8088"
    assert int(http["sessionlimit"]) >= 100


def test_pjsip_trunk_is_the_settings_default_and_reaches_the_dialplan() -> None:
    trunk = default("trunk_endpoint")
    endpoint = section("pjsip.conf", trunk, "endpoint")
    aor = section("pjsip.conf", trunk, "aor")
    identify = section("pjsip.conf", trunk, "identify")
    transport = section("pjsip.conf", endpoint["transport"], "transport")
    assert transport["protocol"] == "udp"
    assert endpoint["aors"] == trunk and identify["endpoint"] == trunk
    assert "outbound_auth" not in endpoint  # per-call identities bring their own
    assert endpoint["disallow"] == "all" and endpoint["allow"]
    host = re.fullmatch(r"sip:([^:;]+)(:\d+)?", aor["contact"])
    assert host and identify["match"] == host.group(1)
    assert endpoint["context"] in dict(sections("extensions.conf"))


def test_sorcery_has_the_memory_wizard_verbatim() -> None:
    lines = [
        line.strip()
        for line in (ASTERISK / "sorcery.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(";")
    ]
    assert lines == SORCERY_LINES


def test_sorcery_lines_are_the_ones_design_md_measured() -> None:
    design = DESIGN.read_text()
    block = re.search(r"```\n(\s*\[res_pjsip\]\n.*?)```", design, flags=re.DOTALL)
    assert block
    assert [line.strip() for line in block.group(1).splitlines() if line.strip()] == SORCERY_LINES


def required_modules() -> list[str]:
    return [value for key, value in dict(sections("modules.conf"))["modules"] if key == "require"]


def test_modules_the_app_needs_are_required() -> None:
    modules = set(required_modules())
    assert dict(dict(sections("modules.conf"))["modules"])["autoload"] == "yes"
    assert {
        "res_ari.so",
        "res_stasis.so",
        "res_ari_channels.so",
        "res_ari_bridges.so",
        "res_ari_asterisk.so",
        "res_ari_events.so",
        "res_pjsip.so",
        "res_http_websocket.so",
        "res_sorcery_memory.so",
        "app_stasis.so",
        "res_pjsip_outbound_authenticator_digest.so",
    } <= modules
    # Absent on 16: named for 20/22 as a comment only, or `require` would stop Asterisk 16.
    assert "res_websocket_client.so" not in modules
    assert "res_websocket_client.so" in (ASTERISK / "modules.conf").read_text()


VERSIONS = ROOT / "ari-traces" / "versions"


@pytest.mark.parametrize("version", ["16", "20", "22"])
def test_required_modules_exist_on_every_measured_asterisk(version: str) -> None:
    """A `require` of a module that is not there stops Asterisk: every one must exist on the
    measured 16.30, 20.20 and 22.10 (their GET /asterisk/modules)."""
    loaded: set[str] = set()
    for line in (VERSIONS / f"asterisk-{version}" / "rest.jsonl").read_text().splitlines():
        call = json.loads(line)
        if call.get("path") == "/asterisk/modules" and call.get("status") == 200:
            loaded |= {m["name"] for m in call["response"]}
    assert loaded
    assert set(required_modules()) - loaded == set()
