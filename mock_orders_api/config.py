"""Mock configuration: policy, Change-delay distribution (see delays.py), settle time, auth, hooks."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from mock_orders_api.delays import MAX_DELAY_MS, DelayDistribution, Fixed, parse_delay
from mock_orders_api.errors import ConfigError
from mock_orders_api.faults import FaultRule, parse_faults
from mock_orders_api.ratelimit import parse_limits

Policy = Literal["vulnerable", "strict"]
# KI-1348894's two symptoms of the invoice-first window (see domain/invoices.settle).
INVOICE_FIRST_OUTCOMES: tuple[str, ...] = ("over-invoice", "stuck")
POLICIES: tuple[str, ...] = ("vulnerable", "strict")
# KI-1242813: real cancellation passes through `cancel` for seconds to minutes; the mock's default
# keeps `cancel` for one loop turn (the status, its hook and the policy below still happen).
DEFAULT_CANCEL_DELAY_MS = 0.0


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
    # Probability that an accepted Change ends `canceled` instead of `done` (seeded draw; the
    # X-Mock-Change-Outcome header pins it per request). VTEX cancels Changes that fail (HC-ADAPT).
    change_cancel_rate: float = 0.0
    # What the vulnerable invoice-first window ends in: "over-invoice" (`invoiced` above the final
    # value) or "stuck" (`payment-approved` with a valid invoice): KI-1348894's two symptoms.
    invoice_first: str = "over-invoice"
    # Asynchronous cancellation: an order stays `cancel` this long before `canceled` (the
    # X-Mock-Cancel-Delay-Ms header pins it per request). `cancel_policy` is what an invoice arriving
    # meanwhile meets: "vulnerable" accepts it and leaves the cancellation stuck in `cancel` with
    # `workflowIsInError` (KI-1400005); "strict" refuses it (409 OrderBeingCanceled).
    cancel_delay_ms: float = DEFAULT_CANCEL_DELAY_MS
    cancel_policy: Policy = "vulnerable"
    # List orders shows each order as it was this long ago (VTEX indexes in ~4 min: SPEC List orders;
    # KI-577103 the list's status differs from the order's); orders younger than this are not listed.
    list_lag_ms: float = 0.0
    # Per-route token buckets, requests per second by short route name (ratelimit.ROUTE_NAMES);
    # empty = off (the default: a reproduction measures a race, not throttling).
    rate_limits: dict[str, float] = field(default_factory=dict)
    # Seeded fault schedule per route name (faults.py): 500, 503, slow, response lost; empty = off.
    faults: dict[str, FaultRule] = field(default_factory=dict)
    # Memory bounds (see docs/mock.md "Limits"): every input is bounded so a long or hostile
    # session cannot grow the process without bound.
    journal_bytes: int = 64 << 20  # the request journal's estimated size; oldest entries dropped past it
    max_body_bytes: int = 1 << 20  # request bodies above this get 413 (from Content-Length, or while streaming)
    max_pending_changes: int = 100  # unfinished Changes per order; more get 409 TooManyPendingChanges
    max_orders: int | None = None  # keep at most this many orders (the oldest are evicted); None: no bound
    order_ttl_s: float | None = None  # evict orders created more than this many seconds ago; None: never
    # Hosts (names, IPs or CIDRs; "*" = any) a hook may target besides loopback: a mock reachable
    # from elsewhere must not become a request relay to arbitrary hosts.
    hook_allow: tuple[str, ...] = ()

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
            "change_cancel_rate": self.change_cancel_rate,
            "invoice_first": self.invoice_first,
            "cancel_delay_ms": self.cancel_delay_ms,
            "cancel_policy": self.cancel_policy,
            "list_lag_ms": self.list_lag_ms,
            "rate_limits": {route: f"{rate:g}/s" for route, rate in self.rate_limits.items()},
            "faults": {route: rule.spec() for route, rule in self.faults.items()},
            "journal_bytes": self.journal_bytes,
            "max_body_bytes": self.max_body_bytes,
            "max_pending_changes": self.max_pending_changes,
            "max_orders": self.max_orders,
            "order_ttl_s": self.order_ttl_s,
            "hook_allow": list(self.hook_allow),
        }

    def updated(self, patch: dict[str, Any], where: str = "config", startup: bool = False) -> MockConfig:
        """A validated copy with `patch` applied; raises ConfigError and leaves self untouched.

        `startup` also allows the settings only flags/env set (`STARTUP_SETTINGS`).
        """
        allowed = set(RUNTIME_SETTINGS) | (set(STARTUP_SETTINGS) if startup else set())
        unknown = set(patch) - allowed
        if unknown:
            hint = ("; these are set at startup (flags / env), the hook URL and statuses with "
                    "POST /api/orders/hook/config" if unknown & set(STARTUP_SETTINGS) else "")
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
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 63:
                raise ConfigError(f"{where}.seed: expected an integer 0..2**63-1; got {short_repr(seed)}")
            changes["seed"] = seed
        if "hook_url" in patch:
            changes["hook_url"] = None if patch["hook_url"] in (None, "") else check_hook_url(patch["hook_url"],
                                                                                             f"{where}.hook_url")
        if "hook_status" in patch:
            changes["hook_status"] = check_hook_statuses(patch["hook_status"], f"{where}.hook_status")
        if "hook_timeout_s" in patch:
            timeout = check_ms(patch["hook_timeout_s"], f"{where}.hook_timeout_s", what="seconds",
                               maximum=MAX_HOOK_TIMEOUT_S)
            if timeout <= 0:
                raise ConfigError(f"{where}.hook_timeout_s: expected seconds > 0; "
                                  f"got {short_repr(patch['hook_timeout_s'])}")
            changes["hook_timeout_s"] = timeout
        if "hook_retries" in patch:
            retries = patch["hook_retries"]
            if isinstance(retries, str) and retries.strip().isdigit():
                retries = int(retries)
            if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_HOOK_RETRIES:
                raise ConfigError(f"{where}.hook_retries: expected an integer 0..{MAX_HOOK_RETRIES}; "
                                  f"got {short_repr(retries)}")
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
        if "faults" in patch:
            changes["faults"] = parse_faults(patch["faults"], f"{where}.faults")
        if "rate_limits" in patch:
            changes["rate_limits"] = parse_limits(patch["rate_limits"], f"{where}.rate_limits")
        if "invoice_first" in patch:
            if patch["invoice_first"] not in INVOICE_FIRST_OUTCOMES:
                raise ConfigError(f"{where}.invoice_first: expected one of {list(INVOICE_FIRST_OUTCOMES)}; "
                                  f"got {patch['invoice_first']!r}")
            changes["invoice_first"] = patch["invoice_first"]
        if "cancel_policy" in patch:
            changes["cancel_policy"] = check_policy(patch["cancel_policy"], f"{where}.cancel_policy")
        for name in ("cancel_delay_ms", "list_lag_ms"):
            if name in patch:
                changes[name] = check_ms(patch[name], f"{where}.{name}")
        if "change_cancel_rate" in patch:
            changes["change_cancel_rate"] = check_probability(patch["change_cancel_rate"],
                                                              f"{where}.change_cancel_rate")
        for name, low, high in _COUNT_SETTINGS:
            if name in patch:
                changes[name] = check_count(patch[name], f"{where}.{name}", low, high,
                                            optional=name in _OPTIONAL_SETTINGS)
        if "order_ttl_s" in patch:
            ttl = patch["order_ttl_s"]
            changes["order_ttl_s"] = (None if ttl in (None, "") else
                                      check_ms(ttl, f"{where}.order_ttl_s", what="seconds", maximum=MAX_ORDER_TTL_S))
        if "hook_allow" in patch:
            changes["hook_allow"] = check_hook_allow(patch["hook_allow"], f"{where}.hook_allow")
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
                     "change_cancel_rate", "invoice_first", "rate_limits", "journal_bytes", "max_body_bytes",
                     "max_pending_changes", "max_orders", "order_ttl_s", "hook_allow", "hook_retry_horizon_s",
                     "hook_duplicate_rate", "hook_extra_delay_ms", "cancel_delay_ms", "cancel_policy", "list_lag_ms"):
            if f"MOCK_{name.upper()}" in env:
                patch[name] = env[f"MOCK_{name.upper()}"]
        cfg = cfg.updated(patch, where="env", startup=True)
        for attr, name in SECRET_ENV.items():
            setattr(cfg, attr, secret_from_env(env, name))
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
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 20:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise ConfigError(f"{where}: expected an integer 1..100000 or null (unbounded); got {short_repr(value)}")
    return value


def check_probability(value: Any, where: str) -> float:
    """A probability in [0, 1] (numbers or numeric strings)."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a probability 0..1; got {value!r}") from None
    if isinstance(value, bool) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{where}: expected a probability 0..1; got {value!r}")
    return p


def check_ms(value: Any, where: str, what: str = "milliseconds", maximum: float | None = None) -> float:
    """A number >= 0 and <= `maximum` (default: MAX_DELAY_MS for milliseconds): a delay of 1e300
    would leave work pending forever, so every delay and timeout has a sane ceiling."""
    if maximum is None:
        maximum = MAX_DELAY_MS if what == "milliseconds" else math.inf
    try:
        ms = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        raise ConfigError(f"{where}: expected {what} as a finite number; got {short_repr(value)}") from None
    if isinstance(value, bool) or not math.isfinite(ms) or ms < 0:
        raise ConfigError(f"{where}: expected a finite number >= 0; got {short_repr(value)}")
    if ms > maximum:
        raise ConfigError(f"{where}: at most {maximum:g} {what} (the mock's bound); got {short_repr(value)}")
    return ms


def check_count(value: Any, where: str, low: int, high: int, optional: bool = False) -> int | None:
    """An integer in low..high (digit strings accepted: env vars); None / "" if `optional`."""
    if optional and value in (None, ""):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) < 20:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        none = " or null" if optional else ""
        raise ConfigError(f"{where}: expected an integer {low}..{high}{none}; got {short_repr(value)}")
    return value


def short_repr(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: error messages echo input, never all of it
    (and repr of a huge int raises past 4300 digits)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


# --- bounds ------------------------------------------------------------------------

MAX_HOOK_TIMEOUT_S = 60.0
MAX_ORDER_TTL_S = 30 * 86_400.0
_COUNT_SETTINGS: tuple[tuple[str, int, int], ...] = (
    ("journal_bytes", 1 << 16, 1 << 34), ("max_body_bytes", 1 << 10, 1 << 28),
    ("max_pending_changes", 1, 100_000), ("max_orders", 1, 100_000_000),
)
_OPTIONAL_SETTINGS = frozenset({"max_orders"})

# --- secrets -------------------------------------------------------------------------

# Each secret comes from its env var, or from the file its `<NAME>_FILE` env var names (never
# only from a flag: flags are visible in `ps`).
SECRET_ENV: dict[str, str] = {"app_key": "VTEX_APP_KEY", "app_token": "VTEX_APP_TOKEN",
                              "admin_token": "MOCK_ADMIN_TOKEN", "readonly_app_key": "VTEX_READONLY_APP_KEY",
                              "readonly_app_token": "VTEX_READONLY_APP_TOKEN"}


def secret_from_env(env: dict[str, str], name: str) -> str | None:
    """`env[name]`, else the content of the file `env[name + "_FILE"]` names, else None."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    return read_secret_file(path, f"{name}_FILE") if path else None


def read_secret_file(path: str, where: str) -> str:
    """The secret in a file (surrounding whitespace stripped); ConfigError if unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read(1 << 16).strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read secret file {path!r}: {err}") from None
    if not secret:
        raise ConfigError(f"{where}: secret file {path!r} is empty")
    return secret


# --- order hooks ---------------------------------------------------------------------

RUNTIME_SETTINGS: tuple[str, ...] = ("policy", "delay", "settle_ms", "seed", "hook_timeout_s", "hook_retries",
                                     "hook_delay_ms", "change_workers", "change_cancel_rate", "invoice_first", "rate_limits",
                                     "faults", "max_pending_changes", "max_orders", "order_ttl_s", "hook_retry_horizon_s",
                                     "hook_duplicate_rate", "hook_extra_delay_ms", "cancel_delay_ms", "cancel_policy",
                                     "list_lag_ms")
STARTUP_SETTINGS: tuple[str, ...] = ("hook_url", "hook_status", "journal_bytes", "max_body_bytes", "hook_allow")
MAX_HOOK_RETRIES = 100

# The statuses this mock moves orders through, i.e. the ones a hook can be notified of.
HOOK_STATUSES: tuple[str, ...] = ("ready-for-handling", "handling", "waiting-for-fulfillment", "invoice", "invoiced",
                                  "cancel", "canceled", "payment-approved")

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


def check_hook_allow(value: Any, where: str) -> tuple[str, ...]:
    """Hosts a hook may target besides loopback: a list or comma-separated string of host names,
    IP addresses or CIDR networks; "*" allows any host."""
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of host names, IPs or CIDRs (or \"*\"); got {short_repr(value)}")
    for entry in value:
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(f"{where}: {entry!r} is not a valid CIDR network") from None
    return tuple(v.lower() for v in value)


def hook_target_allowed(url: str, allow: tuple[str, ...]) -> bool:
    """Whether a hook may POST to `url`: loopback always, other hosts only if `allow` lists them.

    Judged on the URL's host as written (no DNS lookup: the mock must not resolve names an
    anonymous caller picks); "localhost" counts as loopback."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if "*" in allow or host in allow:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")
    if ip.is_loopback:
        return True
    return any("/" in a and ip in ipaddress.ip_network(a, strict=False) for a in allow)


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
