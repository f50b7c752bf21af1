"""The catalogue of order-integration hazards (issue 15): one module per hazard, found here.

Contract: every module of this package other than `base` and `invariants` defines `HAZARD`, a
`harness.hazards.base.Hazard` whose `id` is the module name with `_` as `-`; adding a hazard is
adding such a module (and its scenario `scenarios/<id>.toml`, its page `docs/hazards/<id>.md`
and its tests): nothing here lists them. `hazards()` returns them in catalogue order (`ORDER`
first, then any other by id); `get_hazard(id)` raises ScenarioError naming the known ids.
Pure: importing a hazard does no I/O.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from harness.errors import ScenarioError
from harness.hazards.base import Hazard

_NOT_HAZARDS = frozenset({"base", "invariants"})
# The catalogue's reading order: the ticket first, then its family.
ORDER: tuple[str, ...] = (
    "invoice-during-change", "change-during-invoice-settle", "cancel-vs-invoice", "duplicate-hook",
    "reordered-hooks", "lost-invoice-response", "rate-limited", "failed-change", "second-change-refused",
    "start-handling-500",
)


@cache
def _registry() -> dict[str, Hazard]:
    found: dict[str, Hazard] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_HAZARDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        hazard = getattr(module, "HAZARD", None)
        if not isinstance(hazard, Hazard) or hazard.id != info.name.replace("_", "-"):
            raise ScenarioError(f"harness/hazards/{info.name}.py: expected HAZARD = Hazard(id="
                                f"{info.name.replace('_', '-')!r}, ...)")
        found[hazard.id] = hazard
    rank = {hid: n for n, hid in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def hazards() -> list[Hazard]:
    return list(_registry().values())


def hazard_ids() -> list[str]:
    return list(_registry())


def get_hazard(hazard_id: str) -> Hazard:
    try:
        return _registry()[hazard_id]
    except KeyError:
        raise ScenarioError(f"unknown hazard {hazard_id!r}; known: {', '.join(_registry())}") from None


__all__ = ["ORDER", "Hazard", "get_hazard", "hazard_ids", "hazards"]
