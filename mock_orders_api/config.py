"""Mock configuration: policy, Change-delay distribution (see delays.py), settle time, auth, hooks."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from mock_orders_api.delays import DelayDistribution, Fixed, parse_delay
from mock_orders_api.errors import ConfigError

Policy = Literal["vulnerable", "strict"]
POLICIES: tuple[str, ...] = ("vulnerable", "strict")


@dataclass
class MockConfig:
    """Runtime-switchable mock settings (see `/_mock/config`)."""

    policy: Policy = "vulnerable"
    delay: DelayDistribution = field(default_factory=lambda: Fixed(300.0))
    settle_ms: float = 0.0
    seed: int = 0
    app_key: str | None = None
    app_token: str | None = None
    admin_token: str | None = None
    # A second credential pair without write roles: its writes get 403, as a
    # VTEX key lacking the needed role does.
    readonly_app_key: str | None = None
    readonly_app_token: str | None = None
    journal_size: int = 200_000
    # Order hook set at startup (no ping: the receiver may start later); the live hook
    # config is `POST /api/orders/hook/config`. hook_status None = every status.
    hook_url: str | None = None
    hook_status: tuple[str, ...] | None = None
    # VTEX: the receiver "must always respond with HTTP status 200 within 5000 ms" (Orders Feed guide).
    hook_timeout_s: float = 5.0  # per delivery attempt (and for the ping)
    hook_retries: int = 20  # at most this many attempts after the first one (on error / timeout / not 200)
    # VTEX: retry intervals follow "an internal geometric progression" (Orders Feed guide), no count documented:
    # retry n (1-based) goes HOOK_RETRY_BASE_MS * 2**(n-1) after the failed attempt, while within the horizon.
    hook_retry_horizon_s: float = 300.0
    hook_delay_ms: float = 0.0  # pinned delay between a status change and its delivery
    # The seeded delivery plan (VTEX: at-least-once, duplicates by design, no ordering guarantee; ERP
    # integration guide and FAQ): each notification is sent again with this probability, and each copy
    # waits a seeded extra delay in [0, hook_extra_delay_ms]; with either set, an order's notifications
    # are no longer chained, so they may arrive out of status order.
    hook_duplicate_rate: float = 0.0
    hook_extra_delay_ms: float = 0.0
    change_workers: int | None = None  # Changes processing at once across orders (None: unbounded)

    def public(self) -> dict[str, Any]:
        """The config as the admin API shows it (credentials masked)."""
        return {
            "policy": self.policy,
            "delay": self.delay.spec(),
            "settle_ms": self.settle_ms,
            "seed": self.seed,
            "auth": self.app_key is not None,
            "admin_auth": self.admin_token is not None,
            "journal_size": self.journal_size,
            "hook_timeout_s": self.hook_timeout_s,
            "hook_retries": self.hook_retries,
            "hook_retry_horizon_s": self.hook_retry_horizon_s,
            "hook_delay_ms": self.hook_delay_ms,
            "hook_duplicate_rate": self.hook_duplicate_rate,
            "hook_extra_delay_ms": self.hook_extra_delay_ms,
            "change_workers": self.change_workers,
        }

    def updated(self, patch: dict[str, Any], where: str = "config", startup: bool = False) -> MockConfig:
        """A validated copy with `patch` applied; raises ConfigError and leaves self untouched.

        `startup` also allows the settings only flags/env set (`hook_url`, `hook_status`).
        """
        allowed = set(RUNTIME_SETTINGS) | (set(STARTUP_SETTINGS) if startup else set())
        unknown = set(patch) - allowed
        if unknown:
            hint = ("; the hook URL and statuses are set with POST /api/orders/hook/config"
                    if unknown & set(STARTUP_SETTINGS) else "")
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; settable: {sorted(allowed)}{hint}")
        changes: dict[str, Any] = {}
        if "policy" in patch:
            changes["policy"] = check_policy(patch["policy"], f"{where}.policy")
        if "delay" in patch:
            changes["delay"] = parse_delay(patch["delay"], f"{where}.delay")
        if "settle_ms" in patch:
            changes["settle_ms"] = check_ms(patch["settle_ms"], f"{where}.settle_ms")
        if "seed" in patch:
            seed = patch["seed"]
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ConfigError(f"{where}.seed: expected an integer; got {seed!r}")
            changes["seed"] = seed
        if "hook_url" in patch:
            changes["hook_url"] = None if patch["hook_url"] in (None, "") else check_hook_url(patch["hook_url"],
                                                                                             f"{where}.hook_url")
        if "hook_status" in patch:
            changes["hook_status"] = check_hook_statuses(patch["hook_status"], f"{where}.hook_status")
        if "hook_timeout_s" in patch:
            timeout = check_ms(patch["hook_timeout_s"], f"{where}.hook_timeout_s", what="seconds")
            if timeout <= 0:
                raise ConfigError(f"{where}.hook_timeout_s: expected seconds > 0; got {patch['hook_timeout_s']!r}")
            changes["hook_timeout_s"] = timeout
        if "hook_retries" in patch:
            retries = patch["hook_retries"]
            if isinstance(retries, str) and retries.strip().isdigit():
                retries = int(retries)
            if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_HOOK_RETRIES:
                raise ConfigError(f"{where}.hook_retries: expected an integer 0..{MAX_HOOK_RETRIES}; got {retries!r}")
            changes["hook_retries"] = retries
        if "hook_delay_ms" in patch:
            changes["hook_delay_ms"] = check_ms(patch["hook_delay_ms"], f"{where}.hook_delay_ms")
        if "hook_retry_horizon_s" in patch:
            changes["hook_retry_horizon_s"] = check_ms(patch["hook_retry_horizon_s"], f"{where}.hook_retry_horizon_s",
                                                       what="seconds")
        if "hook_extra_delay_ms" in patch:
            changes["hook_extra_delay_ms"] = check_ms(patch["hook_extra_delay_ms"], f"{where}.hook_extra_delay_ms")
        if "hook_duplicate_rate" in patch:
            rate = check_ms(patch["hook_duplicate_rate"], f"{where}.hook_duplicate_rate", what="a probability")
            if rate > 1:
                raise ConfigError(f"{where}.hook_duplicate_rate: expected a probability 0..1; got {rate!r}")
            changes["hook_duplicate_rate"] = rate
        if "change_workers" in patch:
            changes["change_workers"] = check_workers(patch["change_workers"], f"{where}.change_workers")
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MockConfig:
        """Read `MOCK_*` / `VTEX_*` environment variables (flags override these)."""
        env = dict(os.environ if env is None else env)
        cfg = cls()
        patch: dict[str, Any] = {}
        if "MOCK_POLICY" in env:
            patch["policy"] = env["MOCK_POLICY"]
        if "MOCK_CHANGE_DELAY" in env:
            patch["delay"] = env["MOCK_CHANGE_DELAY"]
        if "MOCK_SETTLE_MS" in env:
            patch["settle_ms"] = env["MOCK_SETTLE_MS"]
        if "MOCK_SEED" in env:
            try:
                patch["seed"] = int(env["MOCK_SEED"])
            except ValueError:
                raise ConfigError(f"MOCK_SEED: expected an integer; got {env['MOCK_SEED']!r}") from None
        for name in ("hook_url", "hook_status", "hook_timeout_s", "hook_retries", "hook_delay_ms", "change_workers",
                     "hook_retry_horizon_s", "hook_duplicate_rate", "hook_extra_delay_ms"):
            if f"MOCK_{name.upper()}" in env:
                patch[name] = env[f"MOCK_{name.upper()}"]
        cfg = cfg.updated(patch, where="env", startup=True)
        cfg.app_key = env.get("VTEX_APP_KEY") or None
        cfg.app_token = env.get("VTEX_APP_TOKEN") or None
        cfg.admin_token = env.get("MOCK_ADMIN_TOKEN") or None
        cfg.readonly_app_key = env.get("VTEX_READONLY_APP_KEY") or None
        cfg.readonly_app_token = env.get("VTEX_READONLY_APP_TOKEN") or None
        cfg.check_auth()
        return cfg

    def check_auth(self) -> None:
        if (self.app_key is None) != (self.app_token is None):
            raise ConfigError("auth: set both the app key and the app token, or neither")
        if (self.readonly_app_key is None) != (self.readonly_app_token is None):
            raise ConfigError("auth: set both the read-only app key and token, or neither")
        if self.readonly_app_key is not None and self.app_key is None:
            raise ConfigError("auth: a read-only key needs the main app key/token to be set too")


def check_policy(value: Any, where: str) -> Policy:
    if value not in POLICIES:
        raise ConfigError(f"{where}: expected one of {list(POLICIES)}; got {value!r}")
    return value  # type: ignore[return-value]


def check_workers(value: Any, where: str) -> int | None:
    """A Change-worker count >= 1, or None / "" / "unbounded" for no bound."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "unbounded")):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected an integer >= 1 or null (unbounded); got {value!r}")
    return value


def check_ms(value: Any, where: str, what: str = "milliseconds") -> float:
    try:
        ms = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {what} as a number; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(ms) or ms < 0:
        raise ConfigError(f"{where}: expected a finite number >= 0; got {value!r}")
    return ms


# --- order hooks ---------------------------------------------------------------------

RUNTIME_SETTINGS: tuple[str, ...] = ("policy", "delay", "settle_ms", "seed", "hook_timeout_s", "hook_retries",
                                     "hook_delay_ms", "change_workers", "hook_retry_horizon_s",
                                     "hook_duplicate_rate", "hook_extra_delay_ms")
STARTUP_SETTINGS: tuple[str, ...] = ("hook_url", "hook_status")
MAX_HOOK_RETRIES = 100

# The statuses this mock moves orders through, i.e. the ones a hook can be notified of.
HOOK_STATUSES: tuple[str, ...] = ("ready-for-handling", "handling", "waiting-for-fulfillment", "invoice", "invoiced",
                                  "canceled")

def check_hook_url(value: Any, where: str) -> str:
    """An absolute http(s) URL with a host."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected an http:// or https:// URL; got {value!r}")
    url = value.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise ConfigError(f"{where}: not a valid URL ({err}); got {value!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: expected an http:// or https:// URL with a host; got {value!r}")
    return url


def check_hook_statuses(value: Any, where: str) -> tuple[str, ...] | None:
    """A status list (a list, or a comma-separated string); None / "" / "all" = every status."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("", "all", "*"):
            return None
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of order statuses (e.g. {list(HOOK_STATUSES)}); "
                          f"got {value!r}")
    out: list[str] = []
    for n, status in enumerate(value):
        # VTEX "does not validate the inserted values" (ERP integration guide): any status string is a
        # valid filter entry (e.g. `cancelation-request`); one the mock never enters simply never fires.
        if not isinstance(status, str) or not status.strip():
            raise ConfigError(f"{where}[{n}]: expected a non-empty status string (the mock emits "
                              f"{list(HOOK_STATUSES)}); got {status!r}")
        if status not in out:
            out.append(status)
    return tuple(out)
