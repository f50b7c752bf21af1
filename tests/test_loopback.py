"""harness.live.loopback against a raw asyncio server that answers scripted bytes: framing, keep-alive
reuse, request bytes equal to httpx's, errors as httpx's exception classes. (Live runs against the
mock go through it too: tests/test_runner.py.)"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import httpx
import pytest

from harness.live.loopback import LoopbackClient

Reply = Callable[[bytes], Awaitable[bytes | None]]  # request head+body -> raw response (None: close)


async def _serve(reply: Reply, test: Callable[[str, list[int]], Awaitable[None]]) -> list[int]:
    """Run `test(base_url, connections)` against a server that answers each request with `reply`."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                raw = await reply(head + body)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await test(f"http://127.0.0.1:{port}", connections)
    return connections


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def test_content_length_and_chunked_bodies_and_keep_alive_reuse() -> None:
    sent: list[bytes] = []

    async def reply(request: bytes) -> bytes:
        sent.append(request)
        if b"/chunked" in request:
            return b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"
        return _ok(b'{"x": 1}')

    async def test(url: str, connections: list[int]) -> None:
        async with LoopbackClient(url, timeout_s=5) as client:
            r1 = await client.send(client.build_request("POST", "/one", json={"é": 1.5}, headers={"X-A": "b"}))
            r2 = await client.send(client.build_request("GET", "/chunked"))
            assert (r1.status_code, r1.content) == (200, b'{"x": 1}')
            assert (r2.status_code, r2.content, r2.headers.get("retry-after")) == (201, b'{"a":1}', "3")
        assert len(connections) == 1  # the second request reused the connection

    asyncio.run(_serve(reply, test))
    head, _, body = sent[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /one HTTP/1.1\r\n") and b"\r\nX-A: b" in head
    assert body == httpx.Request("POST", "http://x", json={"é": 1.5}).content  # the bytes httpx would send


def test_server_closing_after_a_response_gets_a_new_connection() -> None:
    async def reply(request: bytes) -> bytes:
        return _ok(b"{}", b"Connection: close\r\n")

    async def test(url: str, connections: list[int]) -> None:
        async with LoopbackClient(url, timeout_s=5) as client:
            for _ in range(3):
                assert (await client.send(client.build_request("GET", "/"))).status_code == 200
        assert len(connections) == 3

    asyncio.run(_serve(reply, test))


def test_errors_are_httpx_exceptions() -> None:
    async def reply(request: bytes) -> bytes | None:
        if b"/silent" in request:
            await asyncio.sleep(5)
            return None
        if b"/garbage" in request:
            return b"NOT HTTP\r\n\r\n"
        return None  # /drop: close without an answer

    async def test(url: str, connections: list[int]) -> None:
        async with LoopbackClient(url, timeout_s=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.send(client.build_request("GET", "/silent"))
            with pytest.raises(httpx.RemoteProtocolError):
                await client.send(client.build_request("GET", "/garbage"))
            with pytest.raises(httpx.RemoteProtocolError):
                await client.send(client.build_request("GET", "/drop"))

    asyncio.run(_serve(reply, test))

    async def refused() -> None:
        async with LoopbackClient("http://127.0.0.1:9", timeout_s=1) as client:  # discard port: nobody listens
            with pytest.raises(httpx.ConnectError):
                await client.send(client.build_request("GET", "/"))

    asyncio.run(refused())


def test_rejects_what_it_cannot_speak() -> None:
    with pytest.raises(ValueError, match="http://"):
        LoopbackClient("https://127.0.0.1:1", timeout_s=1)
