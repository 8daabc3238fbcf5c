"""The OpenAPI 3.1 document served at /v1/openapi.json.

Schemas come from the pydantic models the handlers validate and answer with (JSON Schema
2020-12, which OpenAPI 3.1 uses as is); only the paths are written here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from stasis_app import __version__
from stasis_app.api.schemas import (
    RESPONSE_MODELS,
    CallbackCancelled,
    CallbackCreate,
    CallbackCreated,
    CallbackDetail,
    CallbackPage,
    ErrorBody,
    ListQuery,
)

REF = "#/components/schemas/{model}"
FAULT_CODES = {
    1: "invalid params",
    2: "not found",
    3: "conflict (already final)",
    4: "unauthorized",
    5: "internal error",
    6: "malformed request",
    7: "no such method",
    8: "rate limited",
    9: "body too large",
    10: "refused by the destination policy",
    11: "forbidden: the token lacks the method's scope",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}  # pydantic names components so


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: int) -> dict[str, Any]:
    what = {
        400: "malformed JSON, or not an object",
        401: "missing or invalid token",
        403: "the token lacks the scope this call needs",
        404: "no such callback request",
        409: "the request is already final",
        413: "body over TWOWAY_API_MAX_BODY",
        422: "a field is invalid (named in fields), or the destination policy refuses the "
        "request (error policy_refused, rule)",
        429: "rate limit of the token, or of failed authentications from the client address, "
        "exceeded (see Retry-After)",
    }
    return {str(code): _json(ErrorBody, what[code]) for code in codes}


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` in a query parameter is just X (absent means null)."""
    variants = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    inner = dict(variants[0]) if len(variants) == 1 else dict(schema)
    for key in ("default", "description"):
        if schema.get(key) is not None:
            inner[key] = schema[key]
    inner.pop("title", None)
    return inner


def _query_parameters() -> list[dict[str, Any]]:
    params = []
    for name, prop in ListQuery.model_json_schema()["properties"].items():
        schema = _non_null(prop)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "description": schema.pop("description", ""),
            "schema": schema,
        }
        if schema.get("type") == "array":
            param.update(style="form", explode=False)  # status=pending,calling
        params.append(param)
    return params


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def _paths() -> dict[str, Any]:
    return {
        "/v1/callbacks": {
            "post": {
                "operationId": "createCallback",
                "summary": "Create a callback request",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(CallbackCreate)}},
                },
                "responses": {
                    "201": _json(CallbackCreated, "created (Location: its URL)"),
                    **_errors(400, 401, 413, 422, 429),
                },
            },
            "get": {
                "operationId": "listCallbacks",
                "summary": "List callback requests, newest first",
                "description": "Keyset pagination: pass the page's next_cursor as cursor.",
                "parameters": _query_parameters(),
                "responses": {
                    "200": _json(CallbackPage, "a page of requests"),
                    **_errors(401, 422, 429),
                },
            },
        },
        "/v1/callbacks/{id}": {
            "get": {
                "operationId": "getCallback",
                "summary": "A callback request and its history (never its secrets)",
                "parameters": [_ID],
                "responses": {
                    "200": _json(CallbackDetail, "the request"),
                    **_errors(401, 404, 429),
                },
            },
        },
        "/v1/callbacks/{id}/cancel": {
            "post": {
                "operationId": "cancelCallback",
                "summary": "Cancel a request that is not final (live legs are hung up)",
                "parameters": [_ID],
                "responses": {
                    "200": _json(CallbackCancelled, "cancelled"),
                    **_errors(401, 404, 409, 429),
                },
            },
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(401, 429),
                },
            },
        },
        "/xmlrpc": {
            "post": {
                "operationId": "xmlrpc",
                "summary": "XML-RPC: callback.create(struct), callback.get(id), "
                "callback.cancel(id), system.listMethods()",
                "description": "Same fields and rules as the JSON API. Always HTTP 200 with a "
                "methodResponse; fault codes: "
                + ", ".join(f"{c} {what}" for c, what in FAULT_CODES.items())
                + ".",
                "security": [{"bearer": []}, {"basic": []}],
                "requestBody": {
                    "required": True,
                    "content": {"text/xml": {"schema": {"type": "string"}}},
                },
                "responses": {
                    "200": {
                        "description": "a methodResponse (result or fault)",
                        "content": {"text/xml": {"schema": {"type": "string"}}},
                    }
                },
            },
        },
    }


def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(CallbackCreate, "validation"), *((m, "serialization") for m in RESPONSE_MODELS)],
        ref_template=REF,
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "twoway-callback API",
            "version": __version__,
            "description": "Create, inspect and cancel two-way callback requests.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token of TWOWAY_API_TOKENS",
                },
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "XML-RPC only: any user name, a token as password",
                },
            },
        },
    }
