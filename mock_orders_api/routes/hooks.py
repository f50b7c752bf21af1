"""VTEX order hook configuration routes (one hook per mock)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import wire
from mock_orders_api.domain import hooks
from mock_orders_api.config import hook_target_allowed
from mock_orders_api.errors import BadRequest, NotFound
from mock_orders_api.routes._shared import ApiRoute, json_body, json_response, mock, vtex_auth

HOOK_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["filter", "hook"],
    "properties": {
        "filter": {"oneOf": [
            {"type": "object", "required": ["type", "status"], "title": "FromWorkflow",
             "properties": {"type": {"type": "string", "enum": ["FromWorkflow"]},
                            "status": {"type": "array", "minItems": 1, "items": {"type": "string"},
                                       "description": "statuses to notify; the mock emits "
                                                      + ", ".join(hooks.HOOK_STATUSES)}}},
            {"type": "object", "required": ["type", "expression"], "title": "FromOrders",
             "description": "JSONata over the order JSON (Get order), evaluated at each status change; "
                            "notified once per order unless disableSingleFire",
             "properties": {"type": {"type": "string", "enum": ["FromOrders"]}, "expression": {"type": "string"},
                            "disableSingleFire": {"type": "boolean", "default": False}}},
        ]},
        "hook": {"type": "object", "required": ["url"],
                 "properties": {"url": {"type": "string", "format": "uri", "description": "http(s); must answer "
                                        "the ping {\"hookConfig\": \"ping\"} with 200"},
                                "headers": {"type": "object", "additionalProperties": {"type": "string"}}}},
    },
    "example": {"filter": {"type": "FromWorkflow", "status": ["handling", "invoiced"]},
                "hook": {"url": "http://127.0.0.1:9000/hook", "headers": {"X-Secret": "s3cret"}}},
}


async def hook_config_set(request: Request) -> Response:
    vtex_auth(request)
    body = await json_body(request, "hook config")
    hook = hooks.parse_hook_config(body)
    state = mock(request)
    if not hook_target_allowed(hook.url, state.config.hook_allow):
        # Otherwise any caller could make the mock send requests anywhere (a relay).
        raise BadRequest(f"hook.url: {hook.url!r:.200} is not loopback; allow its host with --hook-allow "
                         f"(env MOCK_HOOK_ALLOW)", code="HookTargetNotAllowed")
    await state.hooks.ping(hook)
    state.hooks.config = hook
    return json_response(hook.view())


async def hook_config_get(request: Request) -> Response:
    vtex_auth(request)
    view = mock(request).hooks.view()
    if view is None:
        raise NotFound(f"no hook is configured; POST {wire.HOOK_CONFIG}", code="HookNotConfigured")
    return json_response(view)


async def hook_config_delete(request: Request) -> Response:
    vtex_auth(request)
    mock(request).hooks.config = None
    return Response(status_code=204)


ROUTES = (
    ApiRoute("POST", wire.HOOK_CONFIG, hook_config_set, auth="vtex", summary="Create or update hook configuration",
             description="One hook per mock. The URL is pinged with {\"hookConfig\": \"ping\"} and must answer 200 "
                         "within hook_timeout_s, else 400 and the config is unchanged. Each notification is "
                         "{Domain, OrderId, State, LastState, LastChange, CurrentChange, Origin}.",
             body=HOOK_CONFIG_SCHEMA),
    ApiRoute("GET", wire.HOOK_CONFIG, hook_config_get, auth="vtex", summary="Get hook configuration", errors=(404,)),
    ApiRoute("DELETE", wire.HOOK_CONFIG, hook_config_delete, auth="vtex", summary="Delete hook configuration",
             status=204, description="Stops new notifications; deliveries already scheduled still go out."),
)
