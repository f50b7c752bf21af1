"""A lean HTTP/1.1 client for the harness's untimed requests to a plain-http target.

Contract: the part of httpx.AsyncClient's interface OrdersClient uses (`build_request`, `send`,
`aclose`, async context manager); a response has `status_code`, `content` and `headers.get(name)`
(lower-case names). Transport errors raise httpx's own exception classes (ConnectError,
ReadTimeout, RemoteProtocolError, ...), so callers handle them exactly as with httpx. Every
request has a timeout; a connection is reused only after a complete response that did not ask
to close it, and dropped on any error.

Why not httpx here: profiled at ~10 ms of harness CPU per live trial, 59% of it was the httpx ->
httpcore -> h11 -> anyio path (per request: a pool scan, a readable-socket check on reuse, an
`asyncio.current_task` lookup, h11's event machinery). The harness talks to one server over
loopback keep-alive connections with requests it builds itself, so an asyncio Protocol that
writes one buffer and parses Content-Length or chunked replies does the same job. Request bodies
are encoded exactly as httpx encodes them (compact JSON, UTF-8), so the server sees the same bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

_MAX_HEAD = 64 * 1024  # a response head larger than this is a protocol error, not a reason to buffer on


@dataclass(frozen=True, slots=True)
class LoopbackRequest:
    method: str
    path: str
    wire: bytes  # the whole request as written to the socket


@dataclass(frozen=True, slots=True)
class LoopbackResponse:
    status_code: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    content: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (HTTP/1.1 without pipelining)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.closed = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[LoopbackResponse] | None = None

    # asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # uvloop's transports are not asyncio.Transport subclasses
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            try:
                response = parse_response(self._buf, eof=True)
            except httpx.RemoteProtocolError as err:
                waiter.set_exception(err)
            else:
                assert response is not None  # at EOF a message is complete or malformed
                waiter.set_result(response)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._fail(httpx.RemoteProtocolError("unexpected data from the server with no request in flight"))
            return
        self._buf += data
        try:
            response = parse_response(self._buf, eof=False)
        except httpx.RemoteProtocolError as err:
            self._fail(err)
            return
        if response is not None:
            self._buf.clear()
            if response.headers.get("connection", "").lower() == "close":
                self.close()
            waiter.set_result(response)

    # ----------------------------------------------------------------------------------------
    def request(self, wire: bytes) -> asyncio.Future[LoopbackResponse]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._buf.clear()
        self.transport.write(wire)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, err: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)
        self.close()


def parse_response(buf: bytes | bytearray, *, eof: bool) -> LoopbackResponse | None:
    """The HTTP/1.1 response in `buf` once complete, else None (`eof`: no more bytes will come, so
    a body without Content-Length or chunking ends here, and an incomplete message is an error).
    Raises httpx.RemoteProtocolError for a malformed or cut-short message."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > _MAX_HEAD:
            raise httpx.RemoteProtocolError(f"response head larger than {_MAX_HEAD} bytes")
        if eof:
            raise httpx.RemoteProtocolError("server disconnected without sending a complete response")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise httpx.RemoteProtocolError(f"bad Content-Length {length[:40]!r}")
        stop = start + int(length)
        if len(buf) < stop:
            if eof:
                raise httpx.RemoteProtocolError("server disconnected before the whole body (Content-Length)")
            return None
        if len(buf) > stop:
            raise httpx.RemoteProtocolError("more bytes than Content-Length (pipelining is not used)")
        return LoopbackResponse(status, headers, bytes(buf[start:stop]))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(buf, start)
        if body is None and eof:
            raise httpx.RemoteProtocolError("server disconnected inside a chunked body")
        return None if body is None else LoopbackResponse(status, headers, body)
    if status in (204, 304) or 100 <= status < 200:
        return LoopbackResponse(status, headers, b"")
    # Delimited by the end of the connection.
    return LoopbackResponse(status, headers, bytes(buf[start:])) if eof else None


def _dechunk(buf: bytes | bytearray, start: int) -> bytes | None:
    """The body of a complete chunked message from `start`, or None while it is incomplete."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:  # then trailers (usually none), ended by an empty line
            return None if buf.find(b"\r\n\r\n", eol) < 0 else bytes(out)
        chunk_start = eol + 2
        if len(buf) < chunk_start + size + 2:
            return None
        out += buf[chunk_start:chunk_start + size]
        pos = chunk_start + size + 2


class LoopbackClient:
    """Keep-alive connections to one plain-http origin (`base_url`), `timeout_s` per request."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"LoopbackClient: expected an http:// URL with a host; got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc
        self._timeout_s = timeout_s
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()

    def build_request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None) -> LoopbackRequest:
        body = None if json is None else _dumps(json)
        all_headers = dict(headers or {})
        if json is not None:
            all_headers["Content-Type"] = "application/json"
        return LoopbackRequest(method, path, request_bytes(method, self._prefix + path, self._host_header,
                                                           all_headers, body))

    async def send(self, request: LoopbackRequest) -> LoopbackResponse:
        conn = await self._acquire()
        loop = asyncio.get_running_loop()
        fut = conn.request(request.wire)
        timer = loop.call_later(self._timeout_s, _expire, fut, self._timeout_s)
        try:
            response = await fut
        except BaseException:
            conn.close()  # a connection with a request cut short is never reused
            self._all.discard(conn)
            raise
        finally:
            timer.cancel()
        if conn.closed:
            self._all.discard(conn)
        else:
            self._idle.append(conn)
        return response

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the likeliest to be alive
            if not conn.closed:
                return conn
            self._all.discard(conn)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_s):
                _, conn = await loop.create_connection(_Connection, self._host, self._port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {self._host}:{self._port} timed out") from None
        except OSError as err:
            raise httpx.ConnectError(f"connect to {self._host}:{self._port}: {err.strerror or err}") from None
        self._all.add(conn)
        return conn

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()

    async def __aenter__(self) -> LoopbackClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def request_bytes(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None, *,
                  close: bool = False) -> bytes:
    """An HTTP/1.1 request as written to the socket; Content-Length whenever there is a body or the
    method usually has one; `close`: ask the server to close the connection after its response."""
    head = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    if close:
        head.append("Connection: close\r\n")
    head.extend(f"{k}: {v}\r\n" for k, v in headers.items())
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body or b'')}\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1") + (body or b"")


def _expire(fut: asyncio.Future[LoopbackResponse], timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(httpx.ReadTimeout(f"no complete response within {timeout_s:g} s"))


def _dumps(obj: Any) -> bytes:
    # httpx's own encoding of `json=` (0.28): the server sees the same bytes either way.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


__all__ = ["LoopbackClient", "LoopbackRequest", "LoopbackResponse", "parse_response", "request_bytes"]
