"""Timed requests by last-byte sync (docs/performance.md "Timing").

Building and writing an httpx request takes far longer than the precision we
want, and a loaded event loop wakes timers late. So a timed request is
prepared ahead: a fresh TCP connection (TCP_NODELAY) is opened and the whole
request except its final byte is written. The server cannot act on it before
that byte arrives. At the deadline a dedicated thread (`Firer`) writes just the
last byte, independently of how busy the event loop is; the response is then
read on the loop and parsed by harness.live.loopback's parser (h11 cost more CPU per timed
request than the rest of its handling; errors are httpx's classes, as for untimed requests).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json as _json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from harness.core.steps import decode_body
from harness.errors import TargetError
from harness.live.loopback import LoopbackResponse, parse_response, request_bytes
from mock_orders_api import child_env
from mock_orders_api.lifeline import spawn

_PREPARE_AHEAD_NS = 1_000_000_000  # connect and write the prefix up to this long before the deadline
_SPIN_NS = 300_000  # the firing process busy-waits only the last 0.3 ms
_READY_TIMEOUT_S = 15.0


@dataclass
class TimedResponse:
    sent_ns: int  # when the last byte was written
    response_ns: int | None
    status: int
    body: Any
    error: str = ""
    retry_after: str | None = None  # the response's Retry-After header (a 429 is retried after it)


class Firer:
    """Writes each prepared request's last byte at its deadline, from a helper process.

    A thread cannot do it: behind an event loop busy with hundreds of trials a
    Python thread was measured waiting up to tens of ms for the GIL. The helper
    process (`python -m harness.live.sender`) has no GIL to share: the socket's file
    descriptor is passed to it (SCM_RIGHTS), it sleeps in `select` (microsecond
    timeouts), spins the last stretch, writes the byte and replies with the
    send time.
    """

    def __init__(self) -> None:
        self._requests, child_requests = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._replies, child_replies = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Own session, killed with this process (mock_orders_api.lifeline): Ctrl-C is the harness's.
        self._proc = spawn(
            [sys.executable, "-m", "harness.live.sender", str(child_requests.fileno()), str(child_replies.fileno())],
            pass_fds=(child_requests.fileno(), child_replies.fileno()),
            env=child_env(),
        )
        child_requests.close()
        child_replies.close()
        # Wait for the helper's "ready": timed requests sent while it is still
        # importing would all be written late, at once.
        self._replies.settimeout(_READY_TIMEOUT_S)
        try:
            ready = self._replies.recv(_REPLY.size)
        except OSError:
            ready = b""
        if not ready:
            self._proc.kill()
            self._proc.wait(timeout=5)
            raise TargetError(f"last-byte firer process did not start within {_READY_TIMEOUT_S:.0f} s")
        self._replies.setblocking(False)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def fire_at(self, deadline_ns: int, sock: socket.socket, data: bytes) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self._replies.fileno(), self._on_replies)
        if self._proc.poll() is not None:
            raise TargetError(f"last-byte firer process exited with code {self._proc.returncode}")
        fut: asyncio.Future[int] = loop.create_future()
        ident = next(self._ids)
        self._pending[ident] = fut
        socket.send_fds(self._requests, [_REQUEST.pack(ident, deadline_ns, data)], [sock.fileno()])
        return fut

    def _on_replies(self) -> None:
        while True:
            try:
                msg = self._replies.recv(_REPLY.size)
            except BlockingIOError:
                return
            if not msg:  # the helper died: fail everything waiting on it
                assert self._loop is not None
                self._loop.remove_reader(self._replies.fileno())
                for fut in self._pending.values():
                    _fail(fut, TargetError("last-byte firer process exited"))
                self._pending.clear()
                return
            ident, sent_ns, errno_ = _REPLY.unpack(msg)
            fut = self._pending.pop(ident, None)
            if fut is not None:
                if errno_:
                    _fail(fut, OSError(errno_, os.strerror(errno_)))
                else:
                    _succeed(fut, sent_ns)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._replies.fileno())
        self._requests.close()  # EOF tells the helper to exit
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._replies.close()
        for fut in self._pending.values():
            _fail(fut, TargetError("sender closed"))


_REQUEST = struct.Struct("<IQc")  # id, deadline (monotonic ns), the last byte
_REPLY = struct.Struct("<IQi")  # id, sent (monotonic ns), errno (0 = sent)


def _raise_priority() -> None:
    """Best effort, where permitted (root or CAP_SYS_NICE): real-time FIFO priority, else nice -10.

    The firer sleeps almost always; at a deadline it must get a CPU within microseconds,
    but the harness process next to it keeps a core busy. Measured at 200 trials in flight
    on 2 cores: last-byte lateness p99 1.1 ms at normal priority, 0.05 ms with FIFO. Its
    busy-wait is bounded (`_SPIN_NS` per deadline) and the kernel's real-time throttling
    still leaves other processes CPU time.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except (AttributeError, OSError):
        pass


def _firer_main(requests_fd: int, replies_fd: int) -> None:
    """The helper process: a heap of deadlines, `select` to sleep, spin, write, reply."""
    _raise_priority()
    requests = socket.socket(fileno=requests_fd)
    replies = socket.socket(fileno=replies_fd)
    replies.send(_REPLY.pack(0, time.monotonic_ns(), 0))  # ready
    heap: list[tuple[int, int, int, bytes]] = []
    while True:
        timeout = None
        if heap:
            timeout = max(0.0, (heap[0][0] - time.monotonic_ns() - _SPIN_NS) / 1e9)
        readable, _, _ = select.select([requests], [], [], timeout)
        if readable:
            try:
                msg, fds, _, _ = socket.recv_fds(requests, _REQUEST.size, 1)
            except OSError:
                return
            if not msg:
                return
            ident, deadline, last = _REQUEST.unpack(msg)
            heapq.heappush(heap, (deadline, ident, fds[0], last))
            continue
        while heap and heap[0][0] - time.monotonic_ns() <= _SPIN_NS:
            deadline, ident, fd, last = heapq.heappop(heap)
            while time.monotonic_ns() < deadline:
                pass
            err = 0
            try:
                os.write(fd, last)
            except OSError as e:
                err = e.errno or 1
            sent = time.monotonic_ns()
            os.close(fd)
            replies.send(_REPLY.pack(ident, sent, err))


def _succeed(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[int], err: BaseException) -> None:
    if not fut.done():
        fut.set_exception(err)


class LastByteSender:
    """Sends timed requests to an `http://` base URL with last-byte sync."""

    def __init__(self, base_url: str, firer: Firer, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise TargetError(f"last-byte sync needs a plain http:// URL; got {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._host_header = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._firer = firer
        self._timeout_s = timeout_s

    async def request(self, method: str, path: str, headers: dict[str, str], body: Any,
                      deadline_ns: int, clock_now_ns: Any = time.monotonic_ns) -> TimedResponse:
        wait_ns = deadline_ns - _PREPARE_AHEAD_NS - clock_now_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        loop = asyncio.get_running_loop()
        payload = None if body is None else _json.dumps(body, separators=(",", ":")).encode()
        hdrs = dict(headers)
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        raw = request_bytes(method, self._prefix + path, self._host_header, hdrs, payload or b"", close=True)
        sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else Nagle holds the last byte
        sock.setblocking(False)
        sent = clock_now_ns()
        try:
            async with asyncio.timeout(self._timeout_s + max(0, deadline_ns - clock_now_ns()) / 1e9):
                await loop.sock_connect(sock, (self._host, self._port))
                await loop.sock_sendall(sock, raw[:-1])
                sent = await self._firer.fire_at(deadline_ns, sock, raw[-1:])
                response = await _read_response(loop, sock)
            return TimedResponse(sent, clock_now_ns(), response.status_code, decode_body(response.content),
                                 retry_after=response.headers.get("retry-after"))
        except (OSError, TimeoutError, httpx.HTTPError, TargetError) as err:
            return TimedResponse(sent, None, 0, None, f"{type(err).__name__}: {err}".rstrip(": "))
        finally:
            sock.close()


async def _read_response(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> LoopbackResponse:
    """The response (the server closes the connection after it: the request asked for that)."""
    buf = bytearray()
    while True:  # bounded by the caller's timeout
        data = await loop.sock_recv(sock, 65536)
        buf += data
        response = parse_response(buf, eof=not data)
        if response is not None:
            return response


if __name__ == "__main__":
    _firer_main(int(sys.argv[1]), int(sys.argv[2]))
