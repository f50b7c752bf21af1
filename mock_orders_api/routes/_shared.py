"""What every route module shares: the route type with its OpenAPI operation,
request helpers (state, acted stamp, JSON body), auth and the mock's header parsing.

Handlers are plain `async def handler(request) -> Response`: they call their
auth function first, read and validate the whole body, then act on the order in
one synchronous section (no `await`), stamping `acted_ns`: that section is
atomic on the event loop, which is what "under the order's lock" means here.
Errors are raised as `ApiError`s and rendered in one place (see app.py).
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
from mock_orders_api.config import check_ms
from mock_orders_api.errors import BadRequest, ConfigError, Forbidden, Unauthorized
from mock_orders_api.state import MockState

Handler = Callable[[Request], Awaitable[Response]]
Auth = Literal["vtex", "admin"]

_MAX_BODY = 1 << 20
_PATH_PARAM = re.compile(r"{(\w+)}")
VTEX_TAG = "Orders API (VTEX-shaped)"
ADMIN_TAG = "Mock admin"


class ApiRoute(Route):
    """One method on one path, with the OpenAPI operation that documents it.

    `status` is the success status; `errors` the error statuses the handler
    itself raises (auth and body errors are added from `auth` and `body`);
    `headers` / `query` are (name, schema, description) triples.
    """

    def __init__(self, method: str, path: str, handler: Handler, *, auth: Auth, summary: str, status: int = 200,
                 errors: Sequence[int] = (), body: dict[str, Any] | None = None,
                 headers: Sequence[tuple[str, dict[str, Any], str]] = (),
                 query: Sequence[tuple[str, dict[str, Any], str]] = (), description: str | None = None) -> None:
        super().__init__(path, handler, methods=[method])
        self.method = method
        self.handler = handler  # the bare handler: what the simulated mode's in-process dispatch calls
        self.operation = _operation(path, auth=auth, summary=summary, status=status, errors=errors, body=body,
                                    headers=headers, query=query, description=description)


def _operation(path: str, *, auth: Auth, summary: str, status: int, errors: Sequence[int],
               body: dict[str, Any] | None, headers: Sequence[tuple[str, dict[str, Any], str]],
               query: Sequence[tuple[str, dict[str, Any], str]], description: str | None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                    for p in _PATH_PARAM.findall(path)]
    params += [{"name": n, "in": "query", "required": False, "schema": s, "description": d} for n, s, d in query]
    params += [{"name": n, "in": "header", "required": False, "schema": s, "description": d} for n, s, d in headers]
    statuses = set(errors) | {401, 403}
    if body is not None or headers or query:
        statuses.add(400)
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
    return request.app.state.mock  # type: ignore[no-any-return]


def acted(request: Request, order_id: str | None = None) -> tuple[int, int]:
    """Stamp the moment the mock acts; return (arrival_ns, acted_ns)."""
    now = mock(request).clock()
    request.state.acted_ns = now
    if order_id is not None:
        request.state.order_id = order_id
    return request.state.arrival_ns, now


async def json_body(request: Request, where: str) -> Any:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise BadRequest(f"{where}: body larger than {_MAX_BODY} bytes")
    if not raw.strip():
        raise BadRequest(f"{where}: a JSON body is required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"{where}: malformed JSON ({err})", code="MalformedJson") from None


def json_response(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status)


def pinned_ms(request: Request, header: str) -> float | None:
    """A mock header that pins a delay in ms (None: not sent); 400 if it is not a valid ms value."""
    pinned = request.headers.get(header)
    if pinned is None:
        return None
    try:
        return check_ms(pinned, f"header {header.lower()}")
    except ConfigError as err:
        raise BadRequest(str(err)) from None


# --- auth (plain functions, called first by every handler) ---------------------------

def _matches(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(given, expected)


def vtex_auth(request: Request) -> None:
    cfg = mock(request).config
    if cfg.app_key is None:
        return
    key = request.headers.get(wire.APP_KEY_HEADER)
    token = request.headers.get(wire.APP_TOKEN_HEADER)
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
    expected = mock(request).config.admin_token
    if expected is None:
        return
    given = request.headers.get(wire.ADMIN_TOKEN_HEADER)
    auth = request.headers.get("authorization", "")
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
                  "Mock only: send the order hook notification of this request's status change this many ms "
                  "after the change (overrides hook_delay_ms).")
