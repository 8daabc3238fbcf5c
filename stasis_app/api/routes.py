"""The JSON API (/v1) and XML-RPC (/xmlrpc) routes, wired to one store and one guard."""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web

from stasis_app.api.auth import ApiToken, Guard, TokenAuth, parse_tokens
from stasis_app.api.callbacks import CallbackHandlers
from stasis_app.api.middleware import json_api_middleware
from stasis_app.api.openapi import openapi_document
from stasis_app.api.operations import Callbacks
from stasis_app.api.ratelimit import TokenBuckets
from stasis_app.api.validation import IntakeRules
from stasis_app.api.xmlrpc import XmlRpcEndpoint
from stasis_app.config import IdentityMode, Settings, is_loopback, parse_listen
from stasis_app.errors import ConfigError
from stasis_app.store.callbacks import CallbackStore

log = logging.getLogger(__name__)

ID = r"{id:[0-9]+}"


def refuse_open_api(settings: Settings) -> None:
    """ConfigError (checked at start) when a token is malformed or too short, or the API would
    serve the network without tokens."""
    if parse_tokens(settings.api_token_list):
        return
    host, _ = parse_listen(settings.http_listen)
    if not is_loopback(host):
        raise ConfigError(
            f"TWOWAY_API_TOKENS is empty and TWOWAY_HTTP_LISTEN={settings.http_listen} is not "
            "a loopback address: set API tokens, or bind the API to 127.0.0.1 / [::1]"
        )


def _tokens(settings: Settings) -> list[ApiToken]:
    refuse_open_api(settings)
    tokens = parse_tokens(settings.api_token_list)
    if tokens:
        return tokens
    log.warning(
        "TWOWAY_API_TOKENS is empty: the API on loopback accepts calls without a token",
        extra={"action": "api_no_auth"},
    )
    return []


def intake_rules(settings: Settings) -> IntakeRules:
    return IntakeRules(
        default_realm=settings.sip_realm,
        require_secret=settings.identity_mode is IdentityMode.DYNAMIC,
    )


def add_api_routes(app: web.Application, pool: asyncpg.Pool, settings: Settings) -> None:
    """Mount the API on ``app``; ConfigError when it would be open to the network."""
    failures = settings.api_auth_failures_per_minute
    guard = Guard(
        TokenAuth(_tokens(settings)),
        TokenBuckets(settings.api_rate_limit),
        TokenBuckets(failures / 60, burst=failures),
    )
    callbacks = Callbacks(CallbackStore(pool), intake_rules(settings), settings.destination_policy)
    handlers = CallbackHandlers(callbacks, settings.api_max_body)
    document = openapi_document()

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document)

    scopes: dict[web.AbstractRoute, str] = {}
    app.middlewares.append(json_api_middleware(guard, scopes))
    scopes[app.router.add_post("/v1/callbacks", handlers.create)] = "create"
    scopes[app.router.add_get("/v1/callbacks", handlers.list)] = "read"
    scopes[app.router.add_get(f"/v1/callbacks/{ID}", handlers.get)] = "read"
    scopes[app.router.add_post(f"/v1/callbacks/{ID}/cancel", handlers.cancel)] = "cancel"
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_post("/xmlrpc", XmlRpcEndpoint(callbacks, guard, settings.api_max_body).handle)
