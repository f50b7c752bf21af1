"""The order filter shared by the hook and the feed: `FromWorkflow` (a status list) or `FromOrders`
(a JSONata expression over the order JSON), and the single-fire memory of one consumer.

* `FromWorkflow`: notify the listed statuses; any status string is accepted, VTEX "does not
  validate the inserted values" (ERP integration guide); no list = every status.
* `FromOrders`: the JSONata `expression` is compiled at config time (a parse error is a 400
  with the parser's message) and evaluated over the order as Get order returns it at each
  status change (the mock's only kind of order change); a truthy result notifies. With
  `disableSingleFire: false` an order is notified only the first time the expression holds
  for it; with `true`, at every change where it holds (SPEC `HookFilter.disableSingleFire`;
  Orders Feed guide: "even hundreds of times"). JSONata is VTEX's language (SPEC
  `POST /api/orders/hook/config`); `jsonata-python` evaluates it, a runtime error counts as false.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jsonata

from mock_orders_api.config import check_hook_statuses
from mock_orders_api.domain.model import Order
from mock_orders_api.errors import BadRequest, ConfigError

log = logging.getLogger(__name__)

FILTER_TYPES = ("FromWorkflow", "FromOrders")
MAX_EXPRESSION_CHARS = 4096
_FIRED_CAP = 100_000  # orders remembered as already notified (single fire); the oldest are forgotten


@dataclass(frozen=True)
class OrderFilter:
    kind: str = "FromWorkflow"
    statuses: tuple[str, ...] | None = None  # FromWorkflow; None = every status
    expression: str | None = None  # FromOrders
    disable_single_fire: bool = False
    _compiled: Any = field(default=None, compare=False, repr=False)

    def view(self, every_status: tuple[str, ...]) -> dict[str, Any]:
        """The filter in the shape the config routes take (`every_status` stands for "no list")."""
        if self.kind == "FromOrders":
            return {"type": "FromOrders", "expression": self.expression, "disableSingleFire": self.disable_single_fire}
        return {"type": "FromWorkflow", "status": list(self.statuses or every_status)}

    def holds(self, order: Order) -> bool:
        """Whether the order passes the filter now (single fire is the consumer's `FilterGate`)."""
        if self.kind == "FromWorkflow":
            return self.statuses is None or order.status in self.statuses
        try:
            return bool(self._compiled.evaluate(order.view()))
        except Exception as err:  # noqa: BLE001 - a runtime JSONata error (e.g. a type error) is "no match"
            log.debug("FromOrders expression failed on order %s: %s", order.order_id, err)
            return False


class FilterGate:
    """One consumer's (the hook's, the feed's) single-fire memory: which orders it already notified."""

    def __init__(self) -> None:
        self._fired: OrderedDict[str, None] = OrderedDict()

    def admits(self, flt: OrderFilter, order: Order) -> bool:
        if not flt.holds(order):
            return False
        if flt.kind != "FromOrders" or flt.disable_single_fire:
            return True
        if order.order_id in self._fired:
            return False
        self._fired[order.order_id] = None
        if len(self._fired) > _FIRED_CAP:
            self._fired.popitem(last=False)
        return True

    def clear(self) -> None:
        self._fired.clear()


def config_object(body: Any, where: str, fields: tuple[str, str]) -> dict[str, Any]:
    """A hook or feed config body: a JSON object with no field but `fields`; BadRequest otherwise."""
    expected = f"'{fields[0]}' and '{fields[1]}'"
    if not isinstance(body, dict):
        raise BadRequest(f"{where}: expected a JSON object with {expected}; got {type(body).__name__}")
    unknown = set(body) - set(fields)
    if unknown:
        raise BadRequest(f"{where}: unknown field(s) {sorted(unknown)}; expected {expected}")
    return body


def parse_filter(flt: Any, where: str = "filter") -> OrderFilter:
    """Validate a config's `filter` object; BadRequest names the field."""
    if not isinstance(flt, dict):
        raise BadRequest(f"{where}: required, an object {{type, status | expression}}; got {flt!r:.200}")
    kind = flt.get("type")
    if kind not in FILTER_TYPES:
        raise BadRequest(f"{where}.type: expected one of {list(FILTER_TYPES)}; got {kind!r:.100}")
    if kind == "FromWorkflow":
        extra = set(flt) - {"type", "status"}
        if extra:
            raise BadRequest(f"{where}: field(s) {sorted(extra)} are not allowed with type FromWorkflow "
                             "(use FromOrders for an expression)")
        if not isinstance(flt.get("status"), list):
            raise BadRequest(f"{where}.status: required with FromWorkflow, a non-empty list of order statuses; "
                             f"got {flt.get('status')!r:.200}")
        try:
            return OrderFilter(statuses=check_hook_statuses(flt["status"], f"{where}.status"))
        except ConfigError as err:
            raise BadRequest(str(err)) from None
    extra = set(flt) - {"type", "expression", "disableSingleFire"}
    if extra:
        raise BadRequest(f"{where}: field(s) {sorted(extra)} are not allowed with type FromOrders")
    expression = flt.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise BadRequest(f"{where}.expression: required with FromOrders, a non-empty JSONata string; "
                         f"got {expression!r:.200}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise BadRequest(f"{where}.expression: at most {MAX_EXPRESSION_CHARS} characters; got {len(expression)}")
    single = flt.get("disableSingleFire", False)
    if not isinstance(single, bool):
        raise BadRequest(f"{where}.disableSingleFire: expected true or false; got {single!r:.100}")
    try:
        compiled = jsonata.Jsonata(expression)
    except Exception as err:  # noqa: BLE001 - jsonata raises JException (a RuntimeError) and, on odd input, others
        raise BadRequest(f"{where}.expression: not a valid JSONata expression: {err}",
                         code="InvalidExpression") from None
    return OrderFilter(kind="FromOrders", expression=expression, disable_single_fire=single, _compiled=compiled)


__all__ = ["FILTER_TYPES", "FilterGate", "OrderFilter", "parse_filter"]
