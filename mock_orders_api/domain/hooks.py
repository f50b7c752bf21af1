"""Order hook configuration (VTEX Feed v3 "Hook"): the config data, its validation and
the notification constants. Delivery (scheduling, retries, journal) is in delivery.py.

* One hook config per mock (VTEX: one per account), set with
  `POST /api/orders/hook/config` (pinged first: the URL must answer
  `{"hookConfig": "ping"}` with 200) or at startup (`--hook-url`,
  `MOCK_HOOK_URL`; not pinged, the receiver may start later).
* Filters (domain/filters.py, shared with the feed): `FromWorkflow` delivers the listed
  statuses (any status string is accepted); `FromOrders` evaluates its JSONata `expression`
  over the order JSON at each status change, once per order unless `disableSingleFire`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mock_orders_api.config import HOOK_STATUSES, MockConfig, check_hook_url
from mock_orders_api.domain.filters import OrderFilter, config_object, parse_filter
from mock_orders_api.domain.model import Order
from mock_orders_api.errors import BadRequest, ConfigError

__all__ = ["HOOK_STATUSES", "HookConfig", "domain_of", "parse_hook_config", "previous_notification", "startup_hook"]

ACCOUNT = "mockstore"
ORIGIN_KEY = "vtexappkey-mockstore"
# `Domain` per flow: VTEX's own hook example sends "Fulfillment" for `ready-for-handling` (Orders API
# reference, hook notification example); the statuses before the seller's fulfilment flow are the
# marketplace's.
MARKETPLACE_STATES = frozenset({"order-created", "payment-pending", "payment-approved", "window-to-cancel",
                                "waiting-for-seller-decision", "approve-payment", "request-cancel"})


def domain_of(state: str) -> str:
    return "Marketplace" if state in MARKETPLACE_STATES else "Fulfillment"

# `LastState` of the notification sent when an order is created (the mock has no earlier
# states; in VTEX's workflow ready-for-handling follows window-to-cancel).
CREATED_LAST_STATE = {"ready-for-handling": "window-to-cancel", "waiting-for-fulfillment": "window-to-cancel",
                      "handling": "ready-for-handling"}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def previous_notification(order: Order, previous: str | None) -> tuple[str, str]:
    """`LastState` and `LastChange` of the notification for `order`'s current status (hook and feed
    alike): the status it left and when it entered that one."""
    if previous is None:
        return CREATED_LAST_STATE.get(order.status, "window-to-cancel"), order.created_at
    history = order.status_history
    return previous, history[-2]["date"] if len(history) > 1 else order.created_at


@dataclass(frozen=True)
class HookConfig:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    filter: OrderFilter = field(default_factory=OrderFilter)

    @property
    def statuses(self) -> tuple[str, ...] | None:
        return self.filter.statuses

    def view(self) -> dict[str, Any]:
        """The config in the shape `POST /api/orders/hook/config` takes."""
        return {"filter": self.filter.view(HOOK_STATUSES), "hook": {"url": self.url, "headers": dict(self.headers)}}


def parse_hook_config(body: Any) -> HookConfig:
    """Validate a `POST /api/orders/hook/config` body; BadRequest names the field."""
    body = config_object(body, "hook config", ("filter", "hook"))
    flt, hook = parse_filter(body.get("filter")), body.get("hook")
    if not isinstance(hook, dict):
        raise BadRequest(f"hook: required, an object {{url, headers}}; got {hook!r}")
    extra = set(hook) - {"url", "headers"}
    if extra:
        raise BadRequest(f"hook: unknown field(s) {sorted(extra)}; expected 'url' and 'headers'")
    try:
        url = check_hook_url(hook.get("url"), "hook.url")
    except ConfigError as err:
        raise BadRequest(str(err)) from None
    raw_headers = hook.get("headers")
    if raw_headers is None:
        raw_headers = {}
    if not isinstance(raw_headers, dict):
        raise BadRequest(f"hook.headers: expected an object of header name -> string value; got {raw_headers!r}")
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        if not _HEADER_NAME.match(name):
            raise BadRequest(f"hook.headers: invalid header name {name!r}")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise BadRequest(f"hook.headers.{name}: expected a single-line string; got {value!r}")
        headers[name] = value
    return HookConfig(url=url, headers=headers, filter=flt)


def startup_hook(config: MockConfig) -> HookConfig | None:
    if config.hook_url is None:
        return None
    return HookConfig(url=config.hook_url, filter=OrderFilter(statuses=config.hook_status))
