"""VTEX Orders Feed v3 routes (one feed per mock): read, commit, configure. The queue is domain/feed.py."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mock_orders_api import wire
from mock_orders_api.domain import feed
from mock_orders_api.errors import BadRequest, NotFound
from mock_orders_api.routes._shared import ApiRoute, acted, json_body, json_response, mock, vtex_auth

_FILTER_SCHEMA: dict[str, Any] = {"oneOf": [
    {"type": "object", "required": ["type", "status"], "title": "FromWorkflow",
     "properties": {"type": {"type": "string", "enum": ["FromWorkflow"]},
                    "status": {"type": "array", "minItems": 1, "items": {"type": "string"}}}},
    {"type": "object", "required": ["type", "expression"], "title": "FromOrders",
     "description": "JSONata over the order JSON (Get order), evaluated at each status change",
     "properties": {"type": {"type": "string", "enum": ["FromOrders"]}, "expression": {"type": "string"},
                    "disableSingleFire": {"type": "boolean", "default": False}}},
]}
FEED_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["filter", "queue"],
    "properties": {
        "filter": _FILTER_SCHEMA,
        "queue": {"type": "object", "required": ["visibilityTimeoutInSeconds", "MessageRetentionPeriodInSeconds"],
                  "properties": {"visibilityTimeoutInSeconds": {"type": "integer", "minimum": feed.VISIBILITY_RANGE_S[0],
                                                                "maximum": feed.VISIBILITY_RANGE_S[1]},
                                 "MessageRetentionPeriodInSeconds": {"type": "integer",
                                                                     "minimum": feed.RETENTION_RANGE_S[0],
                                                                     "maximum": feed.RETENTION_RANGE_S[1]}}},
    },
    "example": {"filter": {"type": "FromWorkflow", "status": ["handling", "invoiced"]},
                "queue": {"visibilityTimeoutInSeconds": 250, "MessageRetentionPeriodInSeconds": 345600}},
}
_COMMIT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["handles"],
    "properties": {"handles": {"type": "array", "maxItems": feed.MAX_COMMIT_HANDLES, "items": {"type": "string"}}},
}
_MAXLOT_QUERY = (("maxlot", {"type": "integer", "minimum": 1, "maximum": feed.MAXLOT},
                  f"required: how many items to read, 1..{feed.MAXLOT}"),)


def _configured(request: Request) -> feed.FeedQueue:
    queue = mock(request).feed
    if queue.config is None:
        # SPEC Getfeedorderstatus1: "404 Not Found if there is no Feed Configuration available".
        raise NotFound(f"no feed is configured; POST {wire.FEED_CONFIG}", code="FeedNotConfigured")
    return queue


async def feed_read(request: Request) -> Response:
    vtex_auth(request)
    raw = request.query_params.get("maxlot")
    try:
        maxlot = int(raw) if raw is not None else None
    except ValueError:
        maxlot = None
    if maxlot is None or not 1 <= maxlot <= feed.MAXLOT:
        raise BadRequest(f"query.maxlot: required, an integer 1..{feed.MAXLOT}; got {raw!r:.50}")
    queue = _configured(request)
    _, now = acted(request)
    return json_response(queue.receive(maxlot, now))


async def feed_commit(request: Request) -> Response:
    vtex_auth(request)
    body = await json_body(request, "feed commit")
    handles = body.get("handles") if isinstance(body, dict) else None
    if (not isinstance(handles, list) or len(handles) > feed.MAX_COMMIT_HANDLES
            or not all(isinstance(h, str) for h in handles)):
        raise BadRequest(f"handles: required, a list of at most {feed.MAX_COMMIT_HANDLES} handle strings "
                         f"(from GET {wire.FEED})")
    queue = _configured(request)
    _, now = acted(request)
    queue.commit(handles, now)
    return json_response({})


async def feed_config_set(request: Request) -> Response:
    vtex_auth(request)
    config = feed.parse_feed_config(await json_body(request, "feed config"))
    mock(request).feed.configure(config)
    return json_response(config.view())


async def feed_config_get(request: Request) -> Response:
    vtex_auth(request)
    state = mock(request)
    return json_response(_configured(request).view(state.clock()))


async def feed_config_delete(request: Request) -> Response:
    vtex_auth(request)
    _configured(request).configure(None)
    return json_response({})


ROUTES = (
    ApiRoute("GET", wire.FEED, feed_read, auth="vtex", summary="Retrieve feed items", errors=(404,),
             query=_MAXLOT_QUERY,
             description="Up to maxlot visible items {eventId, handle, domain, state, lastState, orderId, lastChange, "
                         "currentChange}; each is hidden for the visibility timeout and reappears under a new handle "
                         "unless committed. No ordering guarantee; duplicates by the seeded delivery plan."),
    ApiRoute("POST", wire.FEED, feed_commit, auth="vtex", summary="Commit feed items", errors=(404,),
             body=_COMMIT_SCHEMA, description="Deletes the items whose latest handle is listed; other handles "
                                              "are ignored."),
    ApiRoute("POST", wire.FEED_CONFIG, feed_config_set, auth="vtex", summary="Create or update feed configuration",
             body=FEED_CONFIG_SCHEMA, description="One feed per mock; the filter is the hook's. The queue is kept."),
    ApiRoute("GET", wire.FEED_CONFIG, feed_config_get, auth="vtex", summary="Get feed configuration", errors=(404,),
             description="The config plus quantity (items held, visible or not) and "
                         "approximateAgeOfOldestMessageInSeconds."),
    ApiRoute("DELETE", wire.FEED_CONFIG, feed_config_delete, auth="vtex", summary="Delete feed configuration",
             errors=(404,), description="Removes the feed and every item in it."),
)
