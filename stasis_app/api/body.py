"""Read a request body under the size cap (TWOWAY_API_MAX_BODY), or raise TooLarge."""

from __future__ import annotations

from aiohttp import web

from stasis_app.api.errors import TooLarge


async def read_body(request: web.Request, limit: int) -> bytes:
    # A declared length over the cap is refused before a byte is read; a chunked body is
    # stopped by aiohttp's own client_max_size while it streams in.
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(limit)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(limit) from None
    if len(body) > limit:
        raise TooLarge(limit)
    return body
