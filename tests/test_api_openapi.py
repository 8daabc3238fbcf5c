"""/v1/openapi.json: valid OpenAPI 3, every route present, schemas that match the handlers.

The structural checks always run. The full checks use ``openapi-spec-validator`` (and the
``jsonschema`` it brings) and are skipped where that dev dependency is not installed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from stasis_app.api.openapi import openapi_document
from stasis_app.api.routes import add_api_routes
from stasis_app.api.schemas import CallbackCreate, ListQuery
from tests.conftest import ServiceFactory, ha1
from tests.test_api_support import TOKENS, body, call

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def later() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every API route the application serves."""
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = str(info.get("path") or info.get("formatter") or "")
        if route.method != "HEAD" and (path.startswith("/v1/") or path == "/xmlrpc"):
            routes.add((route.method, path))
    return routes


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def schema_of(doc: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """A standalone JSON Schema for a documented schema (its refs resolve in the wrapper)."""
    return {**ref, "components": doc["components"]}


async def test_served_document_lists_every_route(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    reply = await call(service.http_url, "GET", "/v1/openapi.json")
    assert reply.status == 200
    doc = reply.json
    assert doc == openapi_document()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] and doc["info"]["version"]

    app = web.Application()
    add_api_routes(app, pool, service.settings)
    documented = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    assert documented == app_routes(app)

    operation_ids = [
        op["operationId"]
        for item in doc["paths"].values()
        for method, op in item.items()
        if method in METHODS
    ]
    assert len(operation_ids) == len(set(operation_ids))
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas


def test_request_schemas_are_the_models() -> None:
    doc = openapi_document()
    create = doc["components"]["schemas"]["CallbackCreate"]
    assert set(create["properties"]) == set(CallbackCreate.model_fields)
    assert set(create["required"]) == {"username", "original_cli", "original_cld"}
    assert create["additionalProperties"] is False
    params = doc["paths"]["/v1/callbacks"]["get"]["parameters"]
    assert {p["name"] for p in params} == set(ListQuery.model_fields)
    for secret in ("md5secret", "twoway_md5secret", "password"):
        assert secret in create["properties"]
        for schema in doc["components"]["schemas"].values():
            if schema is not create:
                assert secret not in schema.get("properties", {})


def test_document_passes_the_openapi_validator() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_document())


def _samples() -> list[dict[str, Any]]:
    """Bodies on both sides of the documented rules (not the cross-field ones)."""
    base = body(next_call=later())
    changes: list[dict[str, Any]] = [
        {},
        {"original_cld": "2way_12345"},
        {"md5secret": ha1("902").upper()},
        {"original_cli": "+4930 1"},
        {"original_cli": 123},
        {"original_cli": "1" * 64},
        {"original_cli": "1" * 65},
        {"extra": 1},
        {"username": None},
        {"username": "é"},
        {"authname": None},
        {"twoway_cli": ""},
        {"twoway_cli": "*21#"},
        {"max_attempts": 0},
        {"max_attempts": 1},
        {"max_attempts": 100},
        {"max_attempts": 101},
        {"max_attempts": 1.5},
        {"retry_delay": 0},
        {"retry_delay": 86400},
        {"retry_delay": 86400.5},
        {"retry_delay": -0.1},
        {"retry_delay": "5"},
        {"call_id": "a b"},
        {"call_id": 'a"b'},
        {"call_id": "a@b.c"},
        {"call_id": "c" * 200},
        {"call_id": "c" * 201},
        {"next_call": "2030-01-01T10:00:00"},
        {"next_call": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        {"original_cld": "2way_"},
        {"original_cld": "a/b"},
        {"md5secret": "0" * 31},
    ]
    return [{**base, **change} for change in changes]


async def test_request_schema_accepts_what_the_handler_accepts(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = openapi_document()
    request = doc["paths"]["/v1/callbacks"]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator(
        schema_of(doc, request["schema"]),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    service = await start_service(api_tokens=TOKENS)
    for sample in _samples():
        reply = await call(service.http_url, "POST", "/v1/callbacks", json=sample)
        assert reply.status in (201, 422), reply.text
        assert (reply.status == 201) == validator.is_valid(sample), (sample, reply.text)


async def test_responses_match_their_documented_schemas(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = openapi_document()
    service = await start_service(api_tokens=TOKENS)
    url = service.http_url

    async def check(method: str, path: str, template: str, **kwargs: Any) -> Any:
        reply = await call(url, method, path, **kwargs)
        documented = doc["paths"][template][method.lower()]["responses"][str(reply.status)]
        schema = documented["content"]["application/json"]["schema"]
        jsonschema.validate(
            reply.json,
            schema_of(doc, schema),
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        return reply.json

    created = await check(
        "POST", "/v1/callbacks", "/v1/callbacks", json=body(next_call=later(), call_id="c1@portal")
    )
    await check("POST", "/v1/callbacks", "/v1/callbacks", json={"username": 1})  # 422
    await check("POST", "/v1/callbacks", "/v1/callbacks", data=b"[")  # 400
    await check("POST", "/v1/callbacks", "/v1/callbacks", token="bad")  # 401
    one = f"/v1/callbacks/{created['id']}"
    await check("GET", one, "/v1/callbacks/{id}")
    await check("GET", "/v1/callbacks/999", "/v1/callbacks/{id}")  # 404
    await check("POST", one + "/cancel", "/v1/callbacks/{id}/cancel")
    await check("POST", one + "/cancel", "/v1/callbacks/{id}/cancel")  # 409
    page = await check("GET", "/v1/callbacks", "/v1/callbacks", params={"limit": "1"})
    assert page["items"]
    await check("GET", "/v1/callbacks", "/v1/callbacks", params={"limit": "x"})  # 422


async def test_documented_query_parameters_are_accepted(
    pool: asyncpg.Pool, start_service: ServiceFactory
) -> None:
    service = await start_service(api_tokens=TOKENS)
    examples = {
        "status": "pending,failed",
        "cli": "87654321",
        "created_from": "2020-01-01T00:00:00Z",
        "created_to": later(),
        "limit": "500",
        "cursor": "9223372036854775807",
    }
    params = openapi_document()["paths"]["/v1/callbacks"]["get"]["parameters"]
    assert {p["name"] for p in params} == set(examples)
    reply = await call(service.http_url, "GET", "/v1/callbacks", params=examples)
    assert reply.status == 200, reply.text
    reply = await call(service.http_url, "GET", "/v1/callbacks", params={"order": "asc"})
    assert reply.status == 422
