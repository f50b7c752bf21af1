"""Change-delay distributions: small strategy classes behind one protocol, so the
harness can both *draw* from them (the mock, the planner) and *evaluate* them
(the analytic race model needs P(D > x)); `parse_delay` builds one from a
setting such as `"uniform:50,1000"`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from mock_orders_api.errors import ConfigError


@runtime_checkable
class DelayDistribution(Protocol):
    """A distribution of Change-processing delays, in milliseconds."""

    def sample(self, rng: random.Random) -> float: ...

    def sf(self, ms: float) -> float:
        """Survival function P(D > ms)."""
        ...

    def spec(self) -> dict[str, Any]:
        """JSON-able description that `parse_delay` turns back into this object."""
        ...


@dataclass(frozen=True)
class Fixed:
    ms: float

    def sample(self, rng: random.Random) -> float:
        return self.ms

    def sf(self, ms: float) -> float:
        return 1.0 if ms < self.ms else 0.0

    def spec(self) -> dict[str, Any]:
        return {"kind": "fixed", "ms": self.ms}


@dataclass(frozen=True)
class Uniform:
    min_ms: float
    max_ms: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.min_ms, self.max_ms)

    def sf(self, ms: float) -> float:
        if ms < self.min_ms:
            return 1.0
        if ms >= self.max_ms:
            return 0.0
        return (self.max_ms - ms) / (self.max_ms - self.min_ms)

    def spec(self) -> dict[str, Any]:
        return {"kind": "uniform", "min_ms": self.min_ms, "max_ms": self.max_ms}


@dataclass(frozen=True)
class Normal:
    """Normal(mean, sd) clamped at 0: the clamped mass sits at exactly 0 ms."""

    mean_ms: float
    sd_ms: float

    def sample(self, rng: random.Random) -> float:
        return max(0.0, rng.gauss(self.mean_ms, self.sd_ms))

    def sf(self, ms: float) -> float:
        if ms < 0:
            return 1.0
        if self.sd_ms == 0:
            return 1.0 if ms < self.mean_ms else 0.0
        return 0.5 * math.erfc((ms - self.mean_ms) / (self.sd_ms * math.sqrt(2)))

    def spec(self) -> dict[str, Any]:
        return {"kind": "normal", "mean_ms": self.mean_ms, "sd_ms": self.sd_ms}


@dataclass(frozen=True)
class LogNormal:
    median_ms: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median_ms), self.sigma)

    def sf(self, ms: float) -> float:
        if ms <= 0:
            return 1.0
        if self.sigma == 0:
            return 1.0 if ms < self.median_ms else 0.0
        z = (math.log(ms) - math.log(self.median_ms)) / self.sigma
        return 0.5 * math.erfc(z / math.sqrt(2))

    def spec(self) -> dict[str, Any]:
        return {"kind": "lognormal", "median_ms": self.median_ms, "sigma": self.sigma}


_KINDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "fixed": (Fixed, ("ms",)),
    "uniform": (Uniform, ("min_ms", "max_ms")),
    "normal": (Normal, ("mean_ms", "sd_ms")),
    "lognormal": (LogNormal, ("median_ms", "sigma")),
}
MAX_DELAY_MS = 3_600_000.0  # one hour: the bound of every delay the mock takes (a Change pending for ever is a leak)
_MAX_SIGMA = 10.0
DELAY_SYNTAX = "fixed:MS | uniform:MIN,MAX | normal:MEAN,SD | lognormal:MEDIAN,SIGMA"


def parse_delay(value: str | dict[str, Any] | DelayDistribution, where: str = "delay") -> DelayDistribution:
    """Build a distribution from `"uniform:50,1000"` or `{"kind": "uniform", ...}`.

    `where` names the setting in error messages (a flag, an env var, a file field).
    """
    if isinstance(value, (Fixed, Uniform, Normal, LogNormal)):
        return value
    if isinstance(value, str):
        kind, _, args = value.strip().partition(":")
        kind = kind.strip().lower()
        if kind not in _KINDS:
            raise ConfigError(f"{where}: unknown delay distribution {kind!r}; expected {DELAY_SYNTAX}")
        cls, names = _KINDS[kind]
        parts = [p for p in args.split(",") if p.strip()]
        if len(parts) != len(names):
            raise ConfigError(f"{where}: {kind} takes {len(names)} number(s) ({', '.join(names)}); got {value!r}")
        raw = dict(zip(names, parts))
    elif isinstance(value, dict):
        kind = str(value.get("kind", "")).lower()
        if kind not in _KINDS:
            raise ConfigError(f"{where}.kind: expected one of {sorted(_KINDS)}; got {value.get('kind')!r}")
        cls, names = _KINDS[kind]
        unknown = set(value) - set(names) - {"kind"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)} for {kind}; expected {list(names)}")
        missing = [n for n in names if n not in value]
        if missing:
            raise ConfigError(f"{where}: {kind} needs {missing}")
        raw = {n: value[n] for n in names}
    else:
        raise ConfigError(f"{where}: expected a string like {DELAY_SYNTAX!r} or a table; got {type(value).__name__}")
    nums: dict[str, float] = {}
    for name, v in raw.items():
        try:
            num = float(v)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}.{name}: expected a finite number; got {v!r:.80}") from None
        if isinstance(v, bool) or not math.isfinite(num) or num < 0:
            raise ConfigError(f"{where}.{name}: expected a finite number >= 0; got {v!r:.80}")
        bound = _MAX_SIGMA if name == "sigma" else MAX_DELAY_MS
        if num > bound:
            raise ConfigError(f"{where}.{name}: at most {bound:g} (the mock's bound); got {v!r:.80}")
        nums[name] = num
    if kind == "uniform" and nums["min_ms"] > nums["max_ms"]:
        raise ConfigError(f"{where}: uniform needs min_ms <= max_ms; got {nums['min_ms']} > {nums['max_ms']}")
    if kind == "lognormal" and nums["median_ms"] <= 0:
        raise ConfigError(f"{where}.median_ms: expected > 0; got {nums['median_ms']}")
    return cls(**nums)
