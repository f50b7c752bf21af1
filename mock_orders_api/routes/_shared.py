"""What every route module shares: the route type with its OpenAPI operation,
request helpers (state, acted stamp, JSON body), auth and the mock's header parsing.

Handlers are plain `async def handler(request) -> Response`: they call their
auth function first, read and validate the whole body, then act on the order in
one synchronous section (no `await`), stamping `acted_ns`: that section is
atomic on the event loop, which is what "under the order's lock" means here.
Errors are raised as `ApiError`s and rendered in one place (see app.py).

Hostile input never reaches a handler as a 500: bodies are bounded (limits.py), JSON is
parsed with bounded depth and integer size, credentials are compared as bytes, and every
state-changing route refuses non-JSON content types and cross-site browser requests
(`ApiRoute` does that before the handler runs; the simulated mode calls the bare handler).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mock_orders_api import wire
from mock_orders_api.config import check_ms, short_repr
from mock_orders_api.errors import ApiError, BadRequest, ConfigError, Forbidden, Unauthorized
from mock_orders_api.rendering import dumps
from mock_orders_api.request_headers import header
from mock_orders_api.state import MockState

Handler = Callable[[Request], Awaitable[Response]]
Auth = Literal["vtex", "admin"]

MAX_JSON_DEPTH = 64  # deeper bodies are refused: no VTEX body nests past ~5 levels
MAX_INT_DIGITS = 30  # JSON integers longer than this are refused (cents fit in 20 digits)
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a rate-limited, fault-injected route can answer besides its own errors (ratelimit.py, faults.py):
# VTEX lists 429 on most routes (SPEC, PII-SPEC); start-handling "can respond 500"; circuit breakers 503.
_LIMITED_STATUSES = (429, 500, 503)
_PATH_PARAM = re.compile(r"{(\w+)}")
VTEX_TAG = "Orders API (VTEX-shaped)"
ADMIN_TAG = "Mock admin"


class ApiRoute(Route):
    """One method on one path, with the OpenAPI operation that documents it.

    `status` is the success status; `errors` the error statuses the handler
    itself raises (auth and body errors are added from `auth` and `body`);
    `headers` / `query` are (name, schema, description) triples. `limited` is the route's short
    name (ratelimit.ROUTE_NAMES) when the handler goes through `faults.inject`: it can then answer
    429 (with Retry-After), 500 and 503, and the document says so.
    `deferrable`: an untimed route (a read or the admin API), which app.py lets timed requests
    overtake.
    """

    def __init__(self, method: str, path: str, handler: Handler, *, auth: Auth, summary: str, status: int = 200,
                 errors: Sequence[int] = (), body: dict[str, Any] | None = None,
                 headers: Sequence[tuple[str, dict[str, Any], str]] = (),
                 query: Sequence[tuple[str, dict[str, Any], str]] = (), description: str | None = None,
                 limited: str | None = None, response: dict[str, Any] | None = None,
                 body_required: bool = True, deprecated: bool = False) -> None:
        super().__init__(path, _guarded(handler) if method in _STATE_CHANGING else handler, methods=[method])
        self.method = method
        self.handler = handler  # the bare handler: what the simulated mode's in-process dispatch calls
        if limited is not None:
            errors = (*errors, *_LIMITED_STATUSES)
            description = ((description + " ") if description else "") + (
                f"Mock route name `{limited}` (rate limits and the fault schedule): 429 with Retry-After when its "
                "token bucket is empty, 500/503 from the seeded fault schedule (or the X-Mock-Fault header: not a "
                "documented parameter, so that contract tests do not inject faults).")
        self.deferrable = method == "GET" or auth == "admin"
        self.operation = _operation(path, method, auth=auth, summary=summary, status=status, errors=errors,
                                    body=body, headers=headers, query=query, description=description)
        if response is not None:
            self.operation["responses"][str(status)]["content"]["application/json"]["schema"] = response
        if body is not None and not body_required:
            self.operation["requestBody"]["required"] = False
        if deprecated:
            self.operation["deprecated"] = True


class UnsupportedMediaType(ApiError):
    status = 415
    code = "UnsupportedMediaType"


def _guarded(handler: Handler) -> Handler:
    """A state-changing handler behind the browser guard (see `check_browser_safe`)."""
    async def _handler(request: Request) -> Response:
        check_browser_safe(request)
        return await handler(request)
    return _handler


def check_browser_safe(request: Request) -> None:
    """Refuse what a web page could send cross-site without a CORS preflight.

    A body must be declared JSON (415 otherwise: text/plain and form posts are "simple"
    requests a browser sends from any page); a bodyless request a browser marks as
    cross-site (`Sec-Fetch-Site`, or an `Origin` that is not this host) gets 403. The mock
    sends no CORS headers, so a preflighted request from a page is refused by the browser."""
    content_type = header(request, "content-type")
    has_body = (header(request, "transfer-encoding") is not None
                or (header(request, "content-length") or "0").strip() != "0")
    if content_type is not None or has_body:
        media = (content_type or "").split(";")[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise UnsupportedMediaType(f"{request.method} {request.url.path}: expected Content-Type: "
                                       f"application/json; got {short_repr(content_type or 'none')}")
    site = header(request, "sec-fetch-site")
    origin = header(request, "origin")
    host = header(request, "host")
    if site == "cross-site" or (origin is not None and (host is None or origin.split("://", 1)[-1] != host)):
        raise Forbidden(f"{request.method} {request.url.path}: cross-origin browser requests are refused "
                        f"(Origin {short_repr(origin)}); call the mock from a client, not a web page",
                        code="CrossOriginRefused")


def _operation(path: str, method: str, *, auth: Auth, summary: str, status: int, errors: Sequence[int],
               body: dict[str, Any] | None, headers: Sequence[tuple[str, dict[str, Any], str]],
               query: Sequence[tuple[str, dict[str, Any], str]], description: str | None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                    for p in _PATH_PARAM.findall(path)]
    params += [{"name": n, "in": "query", "required": False, "schema": s, "description": d} for n, s, d in query]
    params += [{"name": n, "in": "header", "required": False, "schema": s, "description": d} for n, s, d in headers]
    # Every status the route can really answer (the contract test checks it): auth (401/403),
    # the guard of state-changing routes (403/415), body limits (400/413), unknown path ids (404).
    statuses = set(errors) | {401, 403}
    if body is not None or headers or query:
        statuses.add(400)
    if method in _STATE_CHANGING:
        statuses.update((400, 413, 415))
    if _PATH_PARAM.search(path):
        statuses.add(404)
    responses: dict[str, Any] = {str(status): {"description": "No Content"} if status == 204 else
                                 {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    for s in sorted(statuses):
        responses[str(s)] = {"$ref": f"#/components/responses/Error{s}"}
    op: dict[str, Any] = {"tags": [VTEX_TAG if auth == "vtex" else ADMIN_TAG], "summary": summary,
                          "parameters": params, "responses": responses,
                          "security": [{"vtexAppKey": [], "vtexAppToken": []}] if auth == "vtex"
                          else [{"mockAdminToken": []}, {"mockAdminBearer": []}]}
    if description is not None:
        op["description"] = description
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def mock(request: Request) -> MockState:
    return request.scope["app"].mock  # type: ignore[no-any-return]


def acted(request: Request, order_id: str | None = None) -> tuple[int, int]:
    """Stamp the moment the mock acts; return (arrival_ns, acted_ns)."""
    now = mock(request).clock()
    stamps = request.scope["state"]  # the dict behind request.state (no State object per request)
    stamps["acted_ns"] = now
    if order_id is not None:
        stamps["order_id"] = order_id
    return stamps["arrival_ns"], now


async def json_body(request: Request, where: str) -> Any:
    """The request's JSON body (its size is bounded before the handler runs: limits.py); 400 if it is
    not JSON, nests deeper than MAX_JSON_DEPTH or holds an integer over MAX_INT_DIGITS digits."""
    raw = await request.body()
    if not raw.strip():
        raise BadRequest(f"{where}: a JSON body is required")
    try:
        # The digit bound needs a call per integer; without a run of more than MAX_INT_DIGITS digits
        # anywhere in a UTF-8 body (strings included; UTF-16/32 JSON has a NUL in its first 4 bytes)
        # no integer can break it.
        bounded = b"\x00" in raw[:4] or _LONG_DIGITS.search(raw) is not None
        body = json.loads(raw, parse_int=_bounded_int) if bounded else json.loads(raw)
    except _IntTooLong as err:
        raise BadRequest(f"{where}: an integer has {err.digits} digits; at most {MAX_INT_DIGITS} are accepted",
                         code="MalformedJson") from None
    except RecursionError:
        raise BadRequest(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels", code="MalformedJson") from None
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise BadRequest(f"{where}: malformed JSON ({str(err)[:200]})", code="MalformedJson") from None
    # Each level opens a bracket: with no more brackets than the bound (counted in C, strings
    # included) the body cannot nest deeper, and the walk is skipped.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels", code="MalformedJson")
    return body


_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_INT_DIGITS + 1))


class _IntTooLong(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _IntTooLong(digits)
    return int(text)


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, iteratively (a recursive walk is what overflows)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


class _Json(JSONResponse):
    """A JSONResponse with its two headers built directly (Starlette's generic header
    assembly was ~2% of the mock's CPU per request) and its body rendered by the shared
    encoder (`rendering.dumps`: Starlette's output); same body, same headers."""

    def __init__(self, content: Any, status: int, headers: dict[str, str] | None) -> None:
        self.status_code = status
        self.background = None
        self.body = content if isinstance(content, bytes) else dumps(content)
        own = [(b"content-length", str(len(self.body)).encode()), _JSON_TYPE]
        # Starlette's order: the given headers (lowercased), then length and type.
        self.raw_headers = ([(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] + own
                            if headers else own)


_JSON_TYPE = (b"content-type", b"application/json")


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """`content` as JSON; bytes are JSON already rendered (`rendering.dumps`), sent as they are.
    `headers` must not set the length or type (those are the body's)."""
    return _Json(content, status, headers)


def pinned_ms(request: Request, name: str) -> float | None:
    """A mock header that pins a delay in ms (None: not sent); 400 if it is not a valid ms value."""
    pinned = header(request, name)
    if pinned is None:
        return None
    try:
        return check_ms(pinned, f"header {name.lower()}")
    except ConfigError as err:
        raise BadRequest(str(err)) from None


# --- auth (plain functions, called first by every handler) ---------------------------

def _matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison on bytes: `compare_digest` raises on non-ASCII str. Header values
    arrive latin-1 decoded (their raw bytes); configured secrets are UTF-8."""
    return (given is not None and expected is not None
            and hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8")))


def vtex_auth(request: Request) -> None:
    cfg = mock(request).config
    if cfg.app_key is None:
        return
    key = header(request, wire.APP_KEY_HEADER)
    token = header(request, wire.APP_TOKEN_HEADER)
    if key is None or token is None:
        raise Unauthorized(f"missing {wire.APP_KEY_HEADER} / {wire.APP_TOKEN_HEADER} headers")
    if _matches(key, cfg.app_key) and _matches(token, cfg.app_token):
        return
    if _matches(key, cfg.readonly_app_key) and _matches(token, cfg.readonly_app_token):
        if request.method in ("GET", "HEAD"):
            return
        raise Forbidden("this app key has no permission to change orders (read-only role)")
    raise Unauthorized("invalid app key or app token")


def admin_auth(request: Request) -> None:
    cfg = mock(request).config
    expected = cfg.admin_token
    if expected is None:
        if cfg.app_key is not None:  # the VTEX API is protected: an open admin API would bypass that
            raise Unauthorized("admin API: VTEX credentials are set, so /_mock needs an admin token; "
                               "start the mock with MOCK_ADMIN_TOKEN (or --admin-token-file)")
        return
    given = header(request, wire.ADMIN_TOKEN_HEADER)
    auth = header(request, "authorization") or ""
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:]
    if given is None:
        raise Unauthorized(f"admin API: missing {wire.ADMIN_TOKEN_HEADER.lower()} header (or Authorization: Bearer)")
    if not _matches(given, expected):
        raise Forbidden("admin API: wrong admin token")


# --- OpenAPI pieces shared by several resources ---------------------------------------

ITEM_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["id", "quantity"],
    "properties": {"id": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1},
                   "price": {"type": "integer", "minimum": 0}},
}
HOOK_DELAY_DOC = (wire.HOOK_DELAY_HEADER, {"type": "number", "minimum": 0},
                  "Mock only: send the order hook notification of this request's status change (and make its "
                  "Feed v3 event visible) this many ms after the change (overrides hook_delay_ms).")
