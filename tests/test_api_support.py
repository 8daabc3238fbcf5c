"""Helpers for the API tests (this module holds no tests).

Requests go over real loopback HTTP to the running service. XML-RPC calls use the stdlib
``xmlrpc.client`` (what the docs show) in a worker thread, since it blocks and the server runs
on this test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from multidict import CIMultiDictProxy

from tests.conftest import ha1

TOKEN = "test-token-one-0001"  # tokens have at least 16 characters
TOKEN_2 = "test-token-two-0002"
TOKENS = f"{TOKEN},{TOKEN_2}"
_DEFAULT = object()


def basic(user: str, password: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def body(**overrides: Any) -> dict[str, Any]:
    """The seed's example request, as an API client sends it (bare CLD)."""
    values: dict[str, Any] = {
        "username": "801",
        "authname": "902",
        "md5secret": ha1("902"),
        "original_cli": "87654321",
        "original_cld": "12345",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class Reply:
    status: int
    text: str
    headers: CIMultiDictProxy[str]

    @property
    def json(self) -> Any:
        return json.loads(self.text)


async def call(
    url: str,
    method: str,
    path: str,
    *,
    token: str | object | None = _DEFAULT,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Reply:
    """One request; ``token`` None sends no Authorization header."""
    sent = dict(headers or {})
    token = TOKEN if token is _DEFAULT else token
    if token is not None:
        sent.setdefault("Authorization", f"Bearer {token}")
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, headers=sent, **kwargs) as response,
    ):
        return Reply(response.status, await response.text(), response.headers)


def proxy(url: str, token: str = TOKEN, *, basic: bool = True) -> xmlrpc.client.ServerProxy:
    """A stdlib client: HTTP Basic from the URL (any user), or a bearer header."""
    if basic:
        host = url.removeprefix("http://")
        return xmlrpc.client.ServerProxy(f"http://portal:{token}@{host}/xmlrpc")
    return xmlrpc.client.ServerProxy(
        f"{url}/xmlrpc", headers=[("Authorization", f"Bearer {token}")]
    )


async def xcall(server: xmlrpc.client.ServerProxy, method: str, *params: Any) -> Any:
    return await asyncio.to_thread(getattr(server, method), *params)


async def fault_of(
    server: xmlrpc.client.ServerProxy, method: str, *params: Any
) -> xmlrpc.client.Fault:
    try:
        await xcall(server, method, *params)
    except xmlrpc.client.Fault as fault:
        return fault
    raise AssertionError(f"{method} did not fault")


async def row_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM callback_requests")
    return count
