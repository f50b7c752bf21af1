"""Request-body bounds, enforced by the app (app.py) before any route runs.

A body whose `Content-Length` exceeds the limit is refused with 413 before a byte of it
is read; a body without one (chunked) is counted while it streams and refused the
moment it passes the limit, so memory never holds more than the limit. Both answers
carry `Connection: close`: the unread rest of the body makes the connection unusable.
A `Content-Length` that is not a number gets 400.
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope

from mock_orders_api.errors import ApiError, BadRequest


class PayloadTooLarge(ApiError):
    status = 413
    code = "PayloadTooLarge"


def check_declared(scope: Scope, declared: int | None, limit: int) -> ApiError | None:
    """The error for a declared body the mock refuses before reading it (None: go on)."""
    if declared is None or 0 <= declared <= limit:
        return None
    if declared == -1:
        err = BadRequest(f"{scope['method']} {scope['path']}: Content-Length is not a number")
        err.headers = {"connection": "close"}  # where the body ends is unknown
        return err
    return _too_large(scope, limit, f"Content-Length {declared}")


def bounded_receive(scope: Scope, receive: Receive, limit: int) -> Receive:
    """`receive` for a body without a declared length: counted as it streams, `PayloadTooLarge`
    the moment it passes `limit` (a declared length is enforced by the server's parser)."""
    seen = 0

    async def _receive() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(scope, limit, "the streamed body")
        return message

    return _receive


def content_length(scope: Scope) -> int | None:
    """The declared length; None if absent, -1 if malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 20 else -1
    return None


def _too_large(scope: Scope, limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{scope['method']} {scope['path']}: {what} exceeds the mock's body limit of "
                           f"{limit} bytes (max_body_bytes)")
