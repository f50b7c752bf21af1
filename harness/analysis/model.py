"""The analytic race model (docs/model.md): the race probability a planned offset should show.

Compared with measured rates by `harness.analysis.summary` (model agreement)
and `harness.analysis.calibration` (coverage). Pure: no I/O.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from harness.analysis.stats import RaceModel
from harness.core.names import GUARD_NAMES
from mock_orders_api.delays import DelayDistribution, parse_delay
from mock_orders_api.errors import ConfigError


def model_race_probability(
    offset_ms: float, delay: DelayDistribution, settle_ms: float, policy: str, guard: str
) -> float:
    """Expected race probability at a planned offset (docs/model.md race model).

    offset = t_invoice - t_change. Under `vulnerable`: unguarded, an invoice
    after the Change races while the Change is unfinished (P(D > offset)); one
    within `settle_ms` before it races always (the Change is still accepted).
    offset == 0 is treated as "Change first". `finished-check` closes the
    Change-first side but not the invoice-first one; `serialized` closes both.
    `strict` closes everything. Unknown guard or policy: NaN.
    """
    if guard not in GUARD_NAMES or policy not in ("vulnerable", "strict"):
        return math.nan
    if policy == "strict" or guard == "serialized":
        return 0.0
    # Empty unless settle_ms > 0; 0 for every offset >= 0 (Change first).
    invoice_first_race = 1.0 if -settle_ms < offset_ms < 0 else 0.0
    if guard == "none":
        if offset_ms >= 0:
            return float(delay.sf(offset_ms))
        return invoice_first_race
    # finished-check
    return invoice_first_race


def model_from_run(run_meta: Mapping[str, Any]) -> RaceModel | None:
    """The race model for the mock settings recorded in run.json, or None when
    they are missing or unparsable (e.g. a run against a foreign target)."""
    mock = run_meta.get("mock")
    if not isinstance(mock, Mapping):
        return None
    try:
        delay = parse_delay(mock.get("delay"), "run.json mock.delay")  # type: ignore[arg-type]
        settle = float(mock.get("settle_ms") or 0.0)
    except (ConfigError, TypeError, ValueError):
        return None
    policy = str(mock.get("policy", ""))

    def model(offset_ms: float, guard: str) -> float:
        return model_race_probability(offset_ms, delay, settle, policy, guard)

    return model


__all__ = ["model_from_run", "model_race_probability"]
