"""The simulated network between the harness and an in-process mock.

Latency model: every request waits one seeded draw from the scenario's
`[simulate] latency` distribution (ms) before the mock sees it, and another
before its response reaches the client, in virtual time. The draws of a trial
come from a random stream of its own, derived from (scenario seed, trial id)
and consumed in the trial's own request order, so a trial's timing does not
depend on the other trials and a trial replayed alone sees the same draws.

Two transports carry a request to the mock, with the same latency and results:

* `SimTransport`: an httpx transport around `httpx.ASGITransport` (the full
  httpx + Starlette stack; faithful, slower);
* `DirectClient`: an in-process dispatcher that stands in for the httpx client
  (the two methods `OrdersClient` uses: `build_request`, `send`) and calls the
  handlers of the mock's `ROUTES` directly: same handlers (auth included),
  errors and journal entries (`journal.request_entry`), without HTTP framing or
  middleware. A request no route serves (unknown path or method) goes through
  ASGI, for the app's own 404 / 405.
"""

from __future__ import annotations

import contextvars
import json
import random
import re
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request

from harness.core.plan import derive_seed
from harness.sim.clock import VirtualClock
from mock_orders_api.delays import DelayDistribution
from mock_orders_api.errors import ApiError
from mock_orders_api.faults import ResponseLost
from mock_orders_api.journal import request_entry
from mock_orders_api.routes import ROUTES, ApiRoute

SIM_URL = "http://mock"
_NOT_PARSED = object()
_JSON_HEADERS = {"content-type": "application/json"}
_JSON_TYPE = (b"content-type", b"application/json")
# The mock renders JSON as UTF-8 (Starlette's JSONResponse): decoding it as such and parsing the text is
# what `json.loads(bytes)` does after sniffing the encoding.
_DECODER = json.JSONDecoder()


def _parse_json(text: str) -> Any:
    """`json.loads(text)`: the decoder's scanner straight on a body that starts with its value and
    ends with it (how the mock renders), `decode` (whitespace, errors) otherwise."""
    try:
        value, end = _DECODER.scan_once(text, 0)
    except StopIteration:  # no value at position 0 (leading whitespace, or not JSON)
        return _DECODER.decode(text)
    return value if end == len(text) else _DECODER.decode(text)

# The random stream of the trial the current task works for (None: outside any trial).
_TRIAL_RNG: contextvars.ContextVar[random.Random | None] = contextvars.ContextVar("sim_trial_rng", default=None)


class Latency:
    """One-way latency draws (ms distribution -> integer ns), per trial or per run."""

    def __init__(self, dist: DelayDistribution, seed: int) -> None:
        self.dist = dist
        self._run_rng = random.Random(derive_seed(seed, "latency", "run"))

    @staticmethod
    def enter_trial(trial_seed: int) -> None:
        """From now on, this task (and the tasks it starts) draws from the trial's own stream."""
        _TRIAL_RNG.set(random.Random(derive_seed(trial_seed, "latency")))

    def draw_ns(self) -> int:
        rng = _TRIAL_RNG.get()
        return round(self.dist.sample(rng if rng is not None else self._run_rng) * 1e6)


class SimTransport(httpx.AsyncBaseTransport):
    """httpx transport: latency, then the inner (ASGI) transport, then latency again."""

    def __init__(self, inner: httpx.AsyncBaseTransport, latency: Latency, clock: VirtualClock) -> None:
        self.inner = inner
        self.latency = latency
        self.clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.clock.sleep_ns(self.latency.draw_ns())
        response = await self.inner.handle_async_request(request)
        await response.aread()
        await self.clock.sleep_ns(self.latency.draw_ns())
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


# --------------------------------------------------------------------------- direct dispatch


@dataclass(slots=True)
class DirectRequest:
    method: str
    path: str
    content: bytes
    raw_headers: list[tuple[bytes, bytes]]  # as an ASGI scope carries them: lower-case names, latin-1


class DirectResponse:
    """The part of `httpx.Response` that `OrdersClient` reads.

    `parsed_json` (set for JSON answers of directly called handlers and their
    errors) is the body as an object, which `OrdersClient` takes as is instead of
    decoding `content`; it is what a JSON round trip gives (a test compares with
    the ASGI path).
    """

    __slots__ = ("status_code", "headers", "_content", "parsed_json")

    def __init__(self, status_code: int, content: bytes | None, headers: dict[str, str] | None = None,
                 parsed: Any = _NOT_PARSED) -> None:
        self.status_code = status_code
        self.headers = headers or {}
        self._content = content
        if parsed is not _NOT_PARSED:
            self.parsed_json = parsed

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = _json_bytes(self.parsed_json)
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def _json_bytes(content: Any) -> bytes:
    # As the mock's JSONResponse renders it.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class DirectClient:
    """Calls the mock app's handlers in-process (see the module docstring)."""

    def __init__(self, app: Any, latency: Latency, clock: VirtualClock) -> None:
        self.app = app
        self.mock = app.state.mock
        self.latency = latency
        self.clock = clock
        self._asgi = httpx.ASGITransport(app=app)
        self._routers = _routers(ROUTES)
        self.direct_calls = 0
        self.asgi_calls = 0

    # httpx.AsyncClient's interface, as far as OrdersClient uses it ---------------------
    def build_request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None) -> DirectRequest:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] if headers else []
        if json is None:
            return DirectRequest(method, path, b"", raw)
        raw.append(_JSON_TYPE)
        return DirectRequest(method, path, json_dumps_like_httpx(json), raw)

    async def send(self, request: DirectRequest) -> DirectResponse:
        await self.clock.sleep_ns(self.latency.draw_ns())
        response = await self._dispatch(request)
        await self.clock.sleep_ns(self.latency.draw_ns())
        return response

    async def aclose(self) -> None:
        await self._asgi.aclose()

    async def __aenter__(self) -> DirectClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # dispatch ---------------------------------------------------------------------------
    async def _dispatch(self, request: DirectRequest) -> DirectResponse:
        path, _, query = request.path.partition("?")
        router = self._routers.get(request.method)
        m = router.pattern.match(path) if router is not None else None
        if m is not None:
            route, params = router.routes[m.lastgroup]  # type: ignore[index]
            self.direct_calls += 1
            return await self._call(route, {name: m.group(group) for group, name in params}, path, query, request)
        # Unknown path or method: the app's own 404 / 405.
        self.asgi_calls += 1
        return await self._via_asgi(request)

    async def _call(self, route: ApiRoute, path_params: dict[str, str], path: str, query: str,
                    request: DirectRequest) -> DirectResponse:
        mock = self.mock
        arrival = mock.clock()
        scope: dict[str, Any] = {
            "type": "http", "method": request.method, "path": path, "query_string": query.encode("latin-1"),
            "headers": request.raw_headers, "app": self.app, "state": {"arrival_ns": arrival},
            "path_params": path_params,
        }
        body = request.content

        async def _receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        handler_request = Request(scope, _receive)
        # Starlette's own cache of the read body: `body()` returns it without running the receive
        # stream (an async generator per request); `_receive` serves it should that ever change.
        handler_request._body = body
        status = 0
        try:
            try:
                result = await route.handler(handler_request)
            except ApiError as err:
                status = err.status
                return DirectResponse(status, None, {**_JSON_HEADERS, **(err.headers or {})}, parsed=err.body())
            except ResponseLost:  # the mock applied the request and cut the connection (fault schedule)
                raise httpx.RemoteProtocolError("server disconnected without sending a response") from None
            status = result.status_code
            content = result.body
            if content and result.media_type == "application/json":
                return DirectResponse(status, content, _JSON_HEADERS, parsed=_parse_json(content.decode("utf-8")))
            return DirectResponse(status, bytes(content), dict(result.headers))
        except httpx.RemoteProtocolError:
            raise  # a lost response reaches the client as a broken connection
        except Exception as err:  # what the server's error middleware answers (the journal sees status 0)
            return DirectResponse(500, f"Internal Server Error: {type(err).__name__}: {err}".encode(),
                                  {"content-type": "text/plain"})
        finally:
            mock.journal.add(request_entry(scope, status, arrival, mock.clock()))

    async def _via_asgi(self, request: DirectRequest) -> DirectResponse:
        hreq = httpx.Request(request.method, SIM_URL + request.path, content=request.content,
                             headers=request.raw_headers)
        response = await self._asgi.handle_async_request(hreq)
        content = await response.aread()
        return DirectResponse(response.status_code, content, dict(response.headers))


@dataclass(frozen=True, slots=True)
class _Router:
    """One method's routes as one regex: `(?P<r0>route 0)|(?P<r1>route 1)|...`, tried in the app's
    routing order, so the route that matches is the one the app would run (the first whose path
    matches), found in one `match` instead of one per route. Each route's path parameters are
    renamed `r<i>_<name>` (names repeat across routes); `routes` maps the route's group to the
    route and its (group, parameter name) pairs."""

    pattern: re.Pattern[str]
    routes: dict[str, tuple[ApiRoute, tuple[tuple[str, str], ...]]]


def _routers(routes: tuple[ApiRoute, ...]) -> dict[str, _Router]:
    by_method: dict[str, list[ApiRoute]] = {}
    for route in routes:
        by_method.setdefault(route.method, []).append(route)
    routers = {}
    for method, rs in by_method.items():
        parts, table = [], {}
        for i, route in enumerate(rs):
            inner = route.path_regex.pattern.removeprefix("^").removesuffix("$")
            params = tuple((f"r{i}_{name}", name) for name in route.path_regex.groupindex)
            inner = _PARAM_GROUP.sub(lambda m, i=i: f"(?P<r{i}_{m.group(1)}>", inner)
            parts.append(f"(?P<r{i}>{inner})")
            table[f"r{i}"] = (route, params)
        routers[method] = _Router(re.compile(f"^(?:{'|'.join(parts)})$"), table)
    return routers


_PARAM_GROUP = re.compile(r"\(\?P<(\w+)>")


def json_dumps_like_httpx(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


__all__ = ["DirectClient", "DirectResponse", "Latency", "SIM_URL", "SimTransport"]
