"""XML-RPC on the wire: parse a methodCall without DTDs, marshal results and faults.

The stdlib unmarshaller does the typing; the expat parser under it is ours so a DOCTYPE or an
ENTITY declaration is refused outright (no entity expansion bombs, no external entities), on
top of the body size cap.
"""

from __future__ import annotations

import re
import xmlrpc.client
from datetime import UTC, datetime
from typing import Any
from xml.parsers import expat

from stasis_app.api.errors import BadRequest

INT_MAX = 2**31 - 1  # XML-RPC <int> is 32 bits; larger ids travel as decimal strings
# Characters XML 1.0 cannot carry (a row written by SQL may hold anything).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _DtdRefused(Exception):
    pass


def _refuse(*_args: object) -> None:
    raise _DtdRefused


def parse_call(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """The method name and parameters of a methodCall; BadRequest for anything else."""
    unmarshaller = xmlrpc.client.Unmarshaller()
    unmarshaller.xml("", None)  # no encoding: expat hands over str (as in ExpatParser)
    parser = expat.ParserCreate(None, None)
    parser.StartElementHandler = unmarshaller.start
    parser.EndElementHandler = unmarshaller.end
    parser.CharacterDataHandler = unmarshaller.data
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    try:
        parser.Parse(body, True)
        params = unmarshaller.close()
        method = unmarshaller.getmethodname()
    except _DtdRefused:
        raise BadRequest("a DOCTYPE is not allowed in an XML-RPC request") from None
    except Exception:  # the stdlib unmarshaller's errors are undocumented: any of them
        raise BadRequest("not a well-formed XML-RPC methodCall") from None
    if not isinstance(method, str) or not method:
        raise BadRequest("the methodCall has no methodName")
    return method, params


def from_wire(value: object) -> object:
    """dateTime.iso8601 carries no zone: read it as UTC (a string may carry its own)."""
    if isinstance(value, xmlrpc.client.DateTime):
        text = str(value.value)
        for parse in (lambda t: datetime.strptime(t, "%Y%m%dT%H:%M:%S"), datetime.fromisoformat):
            try:
                parsed = parse(text)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def to_wire(value: Any) -> Any:
    """A JSON-ready view as XML-RPC can carry it: no None (members left out), 32-bit ints."""
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [to_wire(v) for v in value if v is not None]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
        return str(value)
    if isinstance(value, str):
        return _NOT_XML.sub("?", value)
    return value


def dump_result(result: Any) -> bytes:
    return xmlrpc.client.dumps((to_wire(result),), methodresponse=True).encode()


def dump_fault(code: int, message: str) -> bytes:
    fault = xmlrpc.client.Fault(code, _NOT_XML.sub("?", message))
    return xmlrpc.client.dumps(fault, methodresponse=True).encode()
