"""What the REST client and the event WebSocket share: the base URL, the Authorization header,
and how a transport failure reads (secret-free)."""

from __future__ import annotations

import base64
import logging

import aiohttp
from pydantic import SecretStr
from yarl import URL

log = logging.getLogger(__name__)


def normalise_base_url(base_url: str) -> str:
    """``http://host:8088`` → itself; strips credentials, a trailing ``/`` and ``/ari``.

    Credentials in the URL would end up in logs and fight the Authorization header.
    """
    url = URL(base_url.strip())
    if not url.is_absolute() or url.scheme not in ("http", "https", "ws", "wss"):
        raise ValueError("ARI base URL must be absolute http(s), like http://127.0.0.1:8088")
    if url.user is not None or url.password is not None:
        log.warning(
            "credentials in the ARI URL are ignored; use the ari_user/ari_password settings",
            extra={"action": "ari_url_credentials_ignored"},
        )
        url = url.with_user(None)
    url = url.with_query(None).with_fragment(None)
    path = url.path.rstrip("/")
    if path.endswith("/ari"):
        path = path[: -len("/ari")]
    return str(url.with_path(path or "/")).rstrip("/")


def basic_auth_header(user: str, password: str | SecretStr) -> str:
    """The ``Authorization`` value (RFC 7617, UTF-8). Built by hand: aiohttp's BasicAuth is
    deprecated in 3.14 and ``encode_basic_auth`` does not exist before it."""
    if ":" in user:
        raise ValueError("an ARI user name cannot contain ':'")
    secret = password.get_secret_value() if isinstance(password, SecretStr) else password
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


def describe_transport_error(exc: BaseException, timeout: float) -> str:
    """A short, secret-free description of a transport failure."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return type(exc).__name__
