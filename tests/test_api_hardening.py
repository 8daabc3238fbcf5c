"""API and ARI hardening (issue 14, items 3 and 4), against the running service: scopes per
token on both interfaces, failed authentications throttled per client address, short tokens
and a default ARI password toward a remote Asterisk refused at start-up."""

from __future__ import annotations

import asyncpg
import pytest

from ari_simulator import Simulator
from stasis_app import metrics
from stasis_app.app import running_service
from stasis_app.config import refuse_default_ari_password
from stasis_app.errors import ConfigError
from tests.conftest import ServiceFactory, service_settings
from tests.test_api_support import TOKEN, body, call, fault_of, proxy, row_count, xcall

READER = "reader-token-000001"
CREATOR = "creator-token-00001"
SCOPED = f"{TOKEN},{READER}:read,{CREATOR}:create+read"


def auth_failures(outcome: str) -> float:
    return metrics.API_AUTH_FAILURES.labels(outcome)._value.get()


async def test_scopes_per_token_on_json_and_xmlrpc(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=SCOPED)
    url = service.http_url
    created = await call(url, "POST", "/v1/callbacks", token=CREATOR, json=body())
    assert created.status == 201
    rid = created.json["id"]

    refused = await call(url, "POST", "/v1/callbacks", token=READER, json=body())
    assert (refused.status, refused.json) == (
        403,
        {"error": "forbidden", "message": "this token lacks the 'create' scope"},
    )
    for token, status in ((READER, 200), (CREATOR, 200)):
        assert (await call(url, "GET", "/v1/callbacks", token=token)).status == status
        assert (await call(url, "GET", f"/v1/callbacks/{rid}", token=token)).status == status
    for token in (READER, CREATOR):
        cancel = await call(url, "POST", f"/v1/callbacks/{rid}/cancel", token=token)
        assert (cancel.status, cancel.json["error"]) == (403, "forbidden")
    fault = await fault_of(proxy(url, READER), "callback.create", body())
    assert (fault.faultCode, fault.faultString) == (11, "this token lacks the 'create' scope")
    assert (await fault_of(proxy(url, CREATOR), "callback.cancel", rid)).faultCode == 11
    assert (await xcall(proxy(url, READER), "callback.get", rid))["id"] == rid
    assert "callback.get" in await xcall(proxy(url, READER), "system.listMethods")
    # The token without scopes, as configured before scopes existed, may do everything.
    assert (await call(url, "POST", f"/v1/callbacks/{rid}/cancel", token=TOKEN)).status == 200
    assert await row_count(pool) == 1


async def test_failed_authentications_are_throttled_per_address(
    start_service: ServiceFactory,
) -> None:
    service = await start_service(api_tokens=TOKEN, api_auth_failures_per_minute=3)
    url = service.http_url
    rejected, throttled = auth_failures("rejected"), auth_failures("throttled")
    for _ in range(3):
        assert (await call(url, "GET", "/v1/callbacks", token="guess-0123456789ab")).status == 401
    # Budget spent: this address is refused before authentication, even with the right token.
    for server in (None, proxy(url)):
        if server is None:
            reply = await call(url, "GET", "/v1/callbacks")
            assert (reply.status, reply.json["error"]) == (429, "rate_limited")
            assert int(reply.headers["Retry-After"]) >= 19  # a failure comes back every 20 s
        else:
            assert (await fault_of(server, "system.listMethods")).faultCode == 8
    assert auth_failures("rejected") == rejected + 3
    assert auth_failures("throttled") == throttled + 2
    # Health and metrics never authenticate, so they are never throttled.
    assert (await call(url, "GET", "/healthz", token=None)).status == 200


@pytest.mark.parametrize("tokens", ["tiny-tok", f"{TOKEN},also-tiny:read", f"{TOKEN}:delete"])
async def test_bad_tokens_stop_the_start(db_url: str, sim: Simulator, tokens: str) -> None:
    settings = service_settings(db_url, sim.base_url, api_tokens=tokens)
    with pytest.raises(ConfigError, match="TWOWAY_API_TOKENS entry") as refused:
        async with running_service(settings):
            pass
    assert "tiny" not in str(refused.value) and TOKEN not in str(refused.value)


@pytest.mark.parametrize(
    ("ari_url", "password", "refused"),
    [
        ("http://10.0.0.5:8088", "twoway", True),
        ("https://asterisk.example.net:8089", "twoway", True),
        ("http://[::1]:1", "twoway", False),  # loopback: the shipped ari.conf as is
        ("simulator", "twoway", False),  # the built-in simulator
        ("http://10.0.0.5:8088", "a-password-of-ours", False),
    ],
)
async def test_default_ari_password_toward_a_remote_asterisk(
    db_url: str, ari_url: str, password: str, refused: bool
) -> None:
    settings = service_settings(db_url, ari_url, ari_password=password)
    if refused:
        with pytest.raises(ConfigError, match="TWOWAY_ARI_PASSWORD is the default"):
            async with running_service(settings):
                pass
    else:
        refuse_default_ari_password(settings)  # passes: the start would go on
