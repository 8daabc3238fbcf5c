"""The JSON API (/v1) and XML-RPC (/xmlrpc) routes."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from stasis_app.config import Settings


def add_api_routes(app: web.Application, pool: asyncpg.Pool, settings: Settings) -> None:
    """Mount the API on ``app``. (Filled in by the API issue.)"""
