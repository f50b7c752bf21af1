"""Request-body bounds, enforced below the routes (pure ASGI middleware).

A body whose `Content-Length` exceeds the limit is refused with 413 before a byte of it
is read; a body without one (chunked) is counted while it streams and refused the
moment it passes the limit, so memory never holds more than the limit. Both answers
carry `Connection: close`: the unread rest of the body makes the connection unusable.
A `Content-Length` that is not a number gets 400.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_orders_api.errors import ApiError, BadRequest


class PayloadTooLarge(ApiError):
    status = 413
    code = "PayloadTooLarge"


class BodyLimitMiddleware:
    """Bounds every request body to `limit()` bytes (read per request: the config may change)."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _content_length(scope)
        if declared == -1:
            await _refuse(send, BadRequest(f"{scope['method']} {scope['path']}: Content-Length is not a number"))
            return
        if declared is not None and declared > limit:
            await _refuse(send, _too_large(scope, limit, f"Content-Length {declared}"))
            return
        seen = 0

        async def _receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(scope, limit, "the streamed body")
            return message

        await self.app(scope, _receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None if absent, -1 if malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 20 else -1
    return None


def _too_large(scope: Scope, limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{scope['method']} {scope['path']}: {what} exceeds the mock's body limit of "
                           f"{limit} bytes (max_body_bytes)")


async def _refuse(send: Send, err: ApiError) -> None:
    body = json.dumps(err.body()).encode()
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
