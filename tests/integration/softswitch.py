"""sipp as the softswitch: one UAS whose behaviour is chosen per dialled number.

The scenario is generated per test from a map number -> `Line`; sipp writes every SIP message
it sends or receives to a message log, which `SipLog` parses for the assertions (numbers
dialled, From user, digest user and response, custom headers, Call-ID, who sent BYE).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from tests.integration.processes import free_udp_port, spawn, stop, wait_for

SIPP_REALM = "softswitch.lab"


@dataclass(frozen=True)
class Line:
    """What the softswitch does with an INVITE to one number.

    action: "answer" (200; hangs up after `hangup_after_ms`, or waits for Asterisk's BYE when
    None), "ring" (180 and never answers: waits for CANCEL), or "reject" with `code`
    (486 busy, 403, 404...). `auth` = (user, password): challenge with 401 first and answer 403
    unless the digest is valid for that user and password.
    """

    action: str = "answer"
    code: int = 486
    hangup_after_ms: int | None = None
    auth: tuple[str, str] | None = None


BUSY = Line("reject", 486)
RING = Line("ring")

_RESPONSE_HEAD = """SIP/2.0 {status}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>"""

_SDP = """Content-Type: application/sdp
Content-Length: [len]

v=0
o=softswitch 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 0 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16"""


def _send(text: str) -> str:
    return f"  <send><![CDATA[\n\n{text}\n\n  ]]></send>\n"


def _reply(status: str, extra: str = "", sdp: bool = False) -> str:
    head = _RESPONSE_HEAD.format(status=status) + (("\n" + extra) if extra else "")
    return _send(head + "\n" + (_SDP if sdp else "Content-Length: 0"))


def _answer(line: Line) -> str:
    out = _reply("180 Ringing") + _reply("200 OK", sdp=True)
    if line.hangup_after_ms is None:
        return (
            out
            + '  <recv request="ACK" crlf="true"/>\n  <recv request="BYE"/>\n'
            + _reply("200 OK")
        )
    # Keep the dialog's From/To (with both tags) for a BYE of our own.
    out += (
        '  <recv request="ACK" crlf="true">\n    <action>\n'
        '      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="ours"/>\n'
        '      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="theirs"/>\n'
        "    </action>\n  </recv>\n"
    )
    bye = """BYE [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From:[$ours]
To:[$theirs]
[last_Call-ID:]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0"""
    out += f'  <pause milliseconds="{line.hangup_after_ms}"/>\n'
    return out + _send(bye) + '  <recv response="200"/>\n'


def scenario(lines: dict[str, Line]) -> str:
    """The sipp XML: branch on the dialled number, then play that number's `Line`."""
    body = ['<?xml version="1.0" encoding="ISO-8859-1" ?>', '<scenario name="softswitch">']
    body.append('  <recv request="INVITE">\n    <action>')
    if any(line.hangup_after_ms is not None for line in lines.values()):
        # sipp refuses a variable that is set but never used: only when a BYE needs it.
        body.append(
            '      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:"'
            ' assign_to="contact"/>'
        )
    for index, number in enumerate(lines):
        body.append(
            f'      <ereg regexp="^INVITE sip:{re.escape(number)}@" search_in="msg" '
            f'check_it="false" assign_to="is{index}"/>'
        )
    body.append("    </action>\n  </recv>")
    for index in range(len(lines)):
        body.append(f'  <nop hide="true" test="is{index}" next="n{index}"/>')
    body.append(_reply("404 Not Found") + '  <recv request="ACK" next="end"/>')
    for index, line in enumerate(lines.values()):
        body.append(f'  <label id="n{index}"/>')
        body.append(_reply("100 Trying"))
        if line.auth is not None:
            user, password = line.auth
            challenge = (
                f'WWW-Authenticate: Digest realm="{SIPP_REALM}", '
                'nonce="n[call_number]x", algorithm=MD5'
            )
            body.append(_reply("401 Unauthorized", challenge))
            body.append('  <recv request="ACK"/>')
            body.append(
                '  <recv request="INVITE">\n    <action>\n'
                f'      <verifyauth assign_to="ok{index}" username="{escape(user)}" '
                f'password="{escape(password)}"/>\n    </action>\n  </recv>'
            )
            body.append(f'  <nop hide="true" test="ok{index}" next="a{index}"/>')
            body.append(_reply("403 Forbidden") + '  <recv request="ACK" next="end"/>')
            body.append(f'  <label id="a{index}"/>')
        if line.action == "answer":
            body.append(_answer(line))
        elif line.action == "ring":
            body.append(_reply("180 Ringing"))
            body.append('  <recv request="CANCEL"/>')
            body.append(_reply("200 OK"))
            # The 487 answers the INVITE, not the CANCEL.
            body.append(
                _send(
                    _RESPONSE_HEAD.format(status="487 Request Terminated").replace(
                        "[last_CSeq:]", "CSeq: [last_cseq_number] INVITE"
                    )
                    + "\nContent-Length: 0"
                )
            )
            body.append('  <recv request="ACK"/>')
        else:
            body.append(_reply(f"{line.code} Rejected"))
            body.append('  <recv request="ACK"/>')
        body.append('  <nop hide="true" next="end"/>')
    body.append('  <label id="end"/>\n</scenario>\n')
    return "\n".join(body)


# --- the sipp process and its message log ---------------------------------------------------

SIPP_HOW_TO_GET = "install your distribution's sipp package (Debian/Ubuntu: sip-tester)"


def find_sipp() -> str | None:
    return shutil.which("sipp")


@dataclass(frozen=True)
class SipMessage:
    direction: str  # "in" (received by sipp) or "out" (sent by sipp)
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """The request method, None for a response."""
        word = self.first_line.split(" ", 1)[0]
        return None if word.startswith("SIP/") else word

    @property
    def status(self) -> int | None:
        parts = self.first_line.split(" ")
        return int(parts[1]) if parts[0].startswith("SIP/") else None

    def header(self, name: str) -> str | None:
        for line in self.text.split("\n"):
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    @property
    def request_user(self) -> str:
        """The user part of the Request-URI: the number dialled."""
        match = re.match(r"\S+ sip:([^@;> ]+)@", self.first_line)
        return match.group(1) if match else ""

    @property
    def from_user(self) -> str:
        match = re.search(r"sip:([^@;> ]+)@", self.header("From") or "")
        return match.group(1) if match else ""

    def digest(self) -> dict[str, str]:
        """The fields of the Authorization header ({} when there is none)."""
        value = self.header("Authorization") or ""
        return dict(re.findall(r'(\w+)="?([^",]*)"?', value.removeprefix("Digest ")))


_ENTRY = re.compile(
    r"^-{20,} [^\n]*\n(?:UDP|TCP) message (received|sent)[^\n]*\n\n(.*?)(?=^-{20,} |\Z)",
    re.M | re.S,
)


def parse_log(text: str) -> list[SipMessage]:
    return [
        SipMessage("in" if kind == "received" else "out", body.replace("\r", "").strip() + "\n")
        for kind, body in _ENTRY.findall(text)
    ]


@dataclass(frozen=True)
class Dialog:
    """What the softswitch saw of one SIP call (one Call-ID)."""

    call_id: str
    messages: list[SipMessage]

    @property
    def invites(self) -> list[SipMessage]:
        return [m for m in self.messages if m.direction == "in" and m.method == "INVITE"]

    @property
    def number(self) -> str:
        return self.invites[0].request_user

    @property
    def from_user(self) -> str:
        return self.invites[0].from_user

    def header(self, name: str) -> str | None:
        return self.invites[-1].header(name)

    @property
    def final_status(self) -> int | None:
        """The final response sipp sent to the (last) INVITE."""
        finals = [
            m
            for m in self.messages
            if m.direction == "out"
            and m.status is not None
            and m.status >= 200
            and (m.header("CSeq") or "").endswith("INVITE")
        ]
        return finals[-1].status if finals else None

    @property
    def ended_by(self) -> str | None:
        """ "asterisk" or "softswitch" (who sent BYE or CANCEL), None while it lasts."""
        for message in self.messages:
            if message.method in ("BYE", "CANCEL"):
                return "asterisk" if message.direction == "in" else "softswitch"
        return None

    @property
    def ended(self) -> bool:
        """sipp is done with this call: BYE answered, or a failure response acknowledged."""
        if any(
            m.status == 200 and (m.header("CSeq") or "").endswith(" BYE") for m in self.messages
        ):
            return True
        final = self.final_status
        return (
            final is not None
            and final >= 300
            and final != 401
            and (self.messages[-1].method == "ACK")
        )


def _sipp_argv(script: Path, port: int, log: Path, *extra: str) -> list[str]:
    """sipp on 127.0.0.1 only (SIP, media and control sockets), logging every message."""
    return [
        find_sipp() or "sipp",
        *extra,
        "-sf",
        str(script),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-bind_local",
        "-mi",
        "127.0.0.1",
        "-mp",
        str(free_udp_port()),
        "-ci",
        "127.0.0.1",
        "-cp",
        str(free_udp_port()),
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(log),
    ]


@dataclass
class Softswitch:
    """sipp answering as the softswitch on `port`, playing `lines` per dialled number."""

    root: Path
    port: int
    lines: dict[str, Line] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, lines: dict[str, Line]) -> Softswitch:
        self.lines = lines
        script = self.root / "softswitch.xml"
        script.write_text(scenario(lines))
        self.log = self.root / "softswitch-messages.log"
        self.log.write_text("")
        argv = _sipp_argv(script, self.port, self.log, "-default_behaviors", "none")
        argv += ["-trace_err", "-error_file", str(self.root / "softswitch-errors.log")]
        self.proc = spawn(argv, self.root / "softswitch-screen.log")
        wait_for(self._listening, 20, "sipp to listen")
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"sipp exited with {self.proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                return True
        return False

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, grace=2)
            self.proc = None

    def messages(self) -> list[SipMessage]:
        return parse_log(self.log.read_text(errors="replace"))

    def dialogs(self) -> list[Dialog]:
        by_id: dict[str, list[SipMessage]] = {}
        for message in self.messages():
            by_id.setdefault(message.call_id, []).append(message)
        return [Dialog(call_id, messages) for call_id, messages in by_id.items()]

    def dialogs_to(self, number: str) -> list[Dialog]:
        return [d for d in self.dialogs() if d.invites and d.number == number]

    def dialog(self, call_id: str) -> Dialog:
        for candidate in self.dialogs():
            if candidate.call_id == call_id:
                return candidate
        raise AssertionError(f"the softswitch never saw Call-ID {call_id}")


CALLER_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="caller">
  <send retrans="500"><![CDATA[

INVITE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:{number}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
{sdp}

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="{expect}"/>
  <send><![CDATA[

ACK sip:{number}@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

  ]]></send>
</scenario>
"""


@dataclass
class CallResult:
    returncode: int
    messages: list[SipMessage]


def inbound_call(
    root: Path, asterisk_port: int, caller: str, number: str, expect: int, timeout: float
) -> CallResult:
    """One call from `caller` to `number` at Asterisk, as the softswitch sends it; sipp fails
    (non-zero) unless the final answer is `expect` (anything else, a 200 included, is an error).
    """
    script = root / "caller.xml"
    script.write_text(CALLER_SCENARIO.format(number=number, caller=caller, expect=expect, sdp=_SDP))
    log = root / "caller-messages.log"
    argv = _sipp_argv(script, free_udp_port(), log, f"127.0.0.1:{asterisk_port}", "-m", "1")
    argv += ["-timeout", f"{int(timeout)}s", "-timeout_error"]
    proc = spawn(argv, root / "caller-screen.log")
    try:
        returncode = proc.wait(timeout=timeout + 10)
    finally:
        stop(proc, grace=1)
    return CallResult(returncode, parse_log(log.read_text(errors="replace")))
