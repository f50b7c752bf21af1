"""The simulated network between the harness and an in-process mock.

Latency model: every request waits one seeded draw from the scenario's
`[simulate] latency` distribution (ms) before the mock sees it, and another
before its response reaches the client, in virtual time. The draws of a trial
come from a random stream of its own, derived from (scenario seed, trial id)
and consumed in the trial's own request order, so a trial's timing does not
depend on the other trials and a trial replayed alone sees the same draws.

Two transports carry a request to the mock, with the same latency and results:

* `SimTransport`: an httpx transport around `httpx.ASGITransport` (the full
  httpx + FastAPI stack; faithful, slower);
* `DirectClient`: an in-process dispatcher that stands in for the httpx client
  (the two methods `OrdersClient` uses: `build_request`, `send`) and calls the
  mock's route handlers directly: same handlers, dependencies (auth), errors and
  journal entries, without HTTP framing, routing middleware or pydantic. A route
  it cannot call directly (query parameters, unknown paths) goes through ASGI.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx

from harness.core.plan import derive_seed
from harness.sim.clock import VirtualClock
from mock_orders_api.config import DelayDistribution
from mock_orders_api.errors import ApiError
from mock_orders_api.store import iso_now

SIM_URL = "http://mock"
_NOT_PARSED = object()
_JSON_HEADERS = {"content-type": "application/json"}

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
    headers: dict[str, str]  # lower-case names


class DirectResponse:
    """The part of `httpx.Response` that `OrdersClient` reads.

    `parsed_json` (set for JSON answers of directly called handlers) is the body
    as an object, which `OrdersClient` takes as is instead of decoding `content`:
    the handlers build a fresh object per response from JSON types only, so it
    equals what a JSON round trip would give (a test compares with the ASGI path).
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


@dataclass(frozen=True)
class _Route:
    regex: re.Pattern[str]
    endpoint: Callable[..., Any]
    params: tuple[str, ...]  # endpoint argument names, in order ("request" or a path parameter)
    dependencies: tuple[Callable[..., Any], ...]
    status_code: int


def _json_bytes(content: Any) -> bytes:
    # As FastAPI's JSONResponse renders it.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class DirectClient:
    """Calls the mock app's handlers in-process (see the module docstring)."""

    def __init__(self, app: Any, latency: Latency, clock: VirtualClock) -> None:
        self.app = app
        self.mock = app.state.mock
        self._handler_app = SimpleNamespace(state=SimpleNamespace(mock=self.mock))  # request.app.state.mock
        self.latency = latency
        self.clock = clock
        self._asgi = httpx.ASGITransport(app=app)
        from mock_orders_api.app import API_ROUTERS

        # Per method, in the app's routing order; an _AsgiOnly entry still shadows later routes.
        self._routes: dict[str, list[_Route | _AsgiOnly]] = {}
        for route in (r for router in API_ROUTERS for r in router.routes):
            regex = getattr(route, "path_regex", None)
            if regex is None:
                continue
            entry = _compile(route) or _AsgiOnly(regex)
            for method in getattr(route, "methods", None) or ():
                self._routes.setdefault(method, []).append(entry)
        self.direct_calls = 0
        self.asgi_calls = 0

    # httpx.AsyncClient's interface, as far as OrdersClient uses it ---------------------
    def build_request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None) -> DirectRequest:
        content = b"" if json is None else json_dumps_like_httpx(json)
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        if json is not None:
            hdrs["content-type"] = "application/json"
        return DirectRequest(method, path, content, hdrs)

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
        path = request.path
        if "?" not in path:
            for route in self._routes.get(request.method, ()):
                m = route.regex.match(path)
                if m is None:
                    continue
                if isinstance(route, _Route):
                    self.direct_calls += 1
                    return await self._call(route, m.groupdict(), request)
                break
        self.asgi_calls += 1
        return await self._via_asgi(request)

    async def _call(self, route: _Route, path_params: dict[str, str], request: DirectRequest) -> DirectResponse:
        mock = self.mock
        arrival = mock.clock()
        state = _State(arrival)
        req = _FakeRequest(self._handler_app, request, state)
        status = 0
        try:
            try:
                for dep in route.dependencies:
                    await dep(req)
                args = [req if name == "request" else path_params[name] for name in route.params]
                result = await route.endpoint(*args)
            except ApiError as err:
                status = err.status
                return DirectResponse(status, None, _JSON_HEADERS, parsed=err.body())
            if isinstance(result, (dict, list)):
                status = route.status_code
                return DirectResponse(status, None, _JSON_HEADERS, parsed=result)
            status = result.status_code  # a starlette Response (JSONResponse: parse its rendered body)
            body = bytes(result.body)
            if body and result.media_type == "application/json":
                return DirectResponse(status, body, _JSON_HEADERS, parsed=json.loads(body))
            return DirectResponse(status, body, dict(result.headers))
        except Exception as err:  # what the server's error middleware answers (the journal sees status 0)
            return DirectResponse(500, f"Internal Server Error: {type(err).__name__}: {err}".encode(),
                                  {"content-type": "text/plain"})
        finally:
            mock.journal.add({
                "method": request.method, "path": request.path, "query": "", "status": status,
                "arrivalNs": arrival, "actedNs": state.acted_ns, "doneNs": mock.clock(),
                "date": iso_now(), "orderId": state.order_id, "outcome": state.outcome,
            })

    async def _via_asgi(self, request: DirectRequest) -> DirectResponse:
        hreq = httpx.Request(request.method, SIM_URL + request.path, content=request.content,
                             headers=request.headers)
        response = await self._asgi.handle_async_request(hreq)
        content = await response.aread()
        return DirectResponse(response.status_code, content, dict(response.headers))


def json_dumps_like_httpx(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class _AsgiOnly:
    regex: re.Pattern[str]


class _State:
    """`request.state`: what the journal middleware sets and the handlers add."""

    __slots__ = ("arrival_ns", "acted_ns", "order_id", "outcome")

    def __init__(self, arrival_ns: int) -> None:
        self.arrival_ns = arrival_ns
        self.acted_ns: int | None = None
        self.order_id: str | None = None
        self.outcome: str | None = None


class _FakeRequest:
    """What the mock's handlers read from a starlette Request."""

    __slots__ = ("app", "state", "headers", "method", "query_params", "_body")

    def __init__(self, app: Any, request: DirectRequest, state: _State) -> None:
        self.app = app
        self.state = state
        self.headers = request.headers
        self.method = request.method
        self.query_params: dict[str, str] = {}
        self._body = request.content

    async def body(self) -> bytes:
        return self._body


def _compile(route: Any) -> _Route | None:
    """A directly callable route: async endpoint whose arguments are `request` and path parameters,
    async dependencies that take only `request`, no response model other than plain JSON."""
    endpoint = getattr(route, "endpoint", None)
    regex = getattr(route, "path_regex", None)
    if endpoint is None or regex is None or not inspect.iscoroutinefunction(endpoint):
        return None
    path_params = set(regex.groupindex)
    params = tuple(inspect.signature(endpoint).parameters)
    if not all(p == "request" or p in path_params for p in params):
        return None
    deps: list[Callable[..., Any]] = []
    for d in getattr(route, "dependencies", ()):
        fn = getattr(d, "dependency", None)
        if fn is None or not inspect.iscoroutinefunction(fn) or tuple(inspect.signature(fn).parameters) != ("request",):
            return None
        deps.append(fn)
    return _Route(regex, endpoint, params, tuple(deps), getattr(route, "status_code", None) or 200)


__all__ = ["DirectClient", "DirectResponse", "Latency", "SIM_URL", "SimTransport"]
