"""Scenario files: one TOML document describes a whole reproduction or CI run.

A scenario is parsed into frozen dataclasses once, up front, so every later
stage (planner, runner, report, gate) works from validated values. Validation
is strict on purpose: a typo'd key or a float price in a CI gate must fail
loudly, naming the file, the field path and what was expected, instead of
silently running a different experiment than the one the file describes.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

from harness.builtin_scenarios import find_scenario
from harness.core.names import GUARD_NAMES
from harness.core.thresholds import FIELDS as THRESHOLD_FIELDS
from harness.core.thresholds import POLICY_FIELDS
from harness.core.thresholds import GatePolicy, Threshold, ThresholdError
from harness.core.timing import default_tolerance_ms
from harness.errors import ScenarioError
from mock_orders_api.config import MockConfig, check_ms, check_policy
from mock_orders_api.delays import DelayDistribution, parse_delay
from mock_orders_api.errors import ConfigError
from mock_orders_api.faults import FaultRule

TARGET_KINDS: tuple[str, ...] = ("embedded", "url")

_NAME_RE = re.compile(r"[a-z0-9._-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A mistyped step (e.g. 0.05 instead of 50) would otherwise plan millions of trials.
_MAX_OFFSETS = 10_000
_DEFAULT_DELAY = "fixed:300"
_DEFAULT_ITEMS: tuple[dict[str, Any], ...] = (
    {"id": "1", "name": "Shirt", "quantity": 2, "price": 5000},
    {"id": "2", "name": "Shoes", "quantity": 1, "price": 12000},
)
_DEFAULT_OFFSETS: dict[str, Any] = {"start": -1000, "stop": 1000, "step": 50}
# Simulated mode: one-way harness <-> mock latency in ms (loopback-like: median 0.3 ms).
DEFAULT_SIM_LATENCY = "lognormal:0.3,0.3"


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Service:
    """An integration under test: it receives order hooks (or reads the feed) and calls the Orders API itself."""

    name: str
    hook_url: str | None  # may hold {port}: a free loopback port the harness picks; None with delivery "feed"
    command: tuple[str, ...] = ()  # optional: the harness starts it ({python}, {port}, {api_url})


@dataclass(frozen=True)
class Integration:
    """Integration mode: the harness triggers `handling`, the service invoices on its own."""

    services: tuple[Service, ...]
    # the mock delivers the handling hook (feed: makes its event visible) this long after start-handling
    hook_delay_ms: float = 600.0
    invoice_wait_ms: float = 5000.0  # bound on waiting for the service's invoice after the hook
    headers: tuple[tuple[str, str], ...] = ()  # sent with every hook (e.g. a shared secret the service checks)
    # The mock's seeded delivery plan (VTEX: at-least-once, no ordering guarantee): the probability
    # that a notification is sent twice, and the largest extra delay of each copy.
    duplicate_rate: float = 0.0
    extra_delay_ms: float = 0.0
    # "hook": the mock POSTs the handling notification to each service's hook_url; "feed": the
    # harness configures Feed v3 and each service reads (and commits) the handling event itself.
    delivery: str = "hook"


DELIVERIES = ("hook", "feed")


@dataclass(frozen=True)
class Target:
    kind: str  # "embedded" | "url"
    url: str | None  # set iff kind == "url"
    app_key_env: str = "VTEX_APP_KEY"
    app_token_env: str = "VTEX_APP_TOKEN"
    admin_token_env: str = "MOCK_ADMIN_TOKEN"
    integration: Integration | None = None


@dataclass(frozen=True)
class MockSettings:
    policy: str
    change_delay: DelayDistribution
    settle_ms: float
    pin_delays: bool
    # Off by default (a reproduction measures the race): per-route token buckets (requests/s by
    # route name), the probability that a Change ends canceled, and what the invoice-first window
    # ends in ("over-invoice" | "stuck"); see the mock's config.
    rate_limits: dict[str, float] = field(default_factory=dict)
    change_cancel_rate: float = 0.0
    invoice_first: str = "over-invoice"
    faults: dict[str, FaultRule] = field(default_factory=dict)  # seeded fault schedule per route
    # Asynchronous cancellation and List orders' indexing lag (the mock's defaults: see its config).
    cancel_delay_ms: float = 0.0
    cancel_policy: str = "vulnerable"
    list_lag_ms: float = 0.0

    def extra_settings(self) -> dict[str, Any]:
        """The mock settings beyond policy/delay/settle that differ from the mock's defaults."""
        out: dict[str, Any] = {}
        if self.rate_limits:
            out["rate_limits"] = dict(self.rate_limits)
        if self.change_cancel_rate:
            out["change_cancel_rate"] = self.change_cancel_rate
        if self.invoice_first != "over-invoice":
            out["invoice_first"] = self.invoice_first
        if self.faults:
            out["faults"] = {route: rule.spec() for route, rule in self.faults.items()}
        for name, default in (("cancel_delay_ms", 0.0), ("cancel_policy", "vulnerable"), ("list_lag_ms", 0.0)):
            if getattr(self, name) != default:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    quantity: int
    price: int  # cents per unit


@dataclass(frozen=True)
class Order:
    items: tuple[Item, ...]
    shipping: int  # cents
    tax: int  # cents

    @property
    def value(self) -> int:
        """Order total in cents before any Change."""
        return sum(i.price * i.quantity for i in self.items) + self.shipping + self.tax


@dataclass(frozen=True)
class RemovedItem:
    id: str
    quantity: int


@dataclass(frozen=True)
class Change:
    reason: str
    items_removed: tuple[RemovedItem, ...]
    discount_value: int  # cents

    def reduction(self, order: Order) -> int:
        """Cents this Change takes off `order`'s value once it finishes."""
        prices = {i.id: i.price for i in order.items}
        return sum(prices[r.id] * r.quantity for r in self.items_removed) + self.discount_value


@dataclass(frozen=True)
class Sweep:
    offsets_ms: tuple[float, ...]  # sorted, signed t_invoice - t_change
    trials_per_offset: int


@dataclass(frozen=True)
class Guards:
    names: tuple[str, ...]
    poll_interval_ms: float
    timeout_ms: float


@dataclass(frozen=True)
class RunSettings:
    concurrency: int
    rate_limit_rps: float  # 0 = unlimited
    request_timeout_s: float
    max_retries: int
    start_spread_ms: float
    lead_ms: float
    # A trial whose timing error exceeds this is `late` (not judged); None: harness.core.timing's default.
    timing_tolerance_ms: float | None = None


@dataclass(frozen=True)
class Simulate:
    """Simulated mode (`--simulate`): the modelled one-way network latency between harness and mock,
    drawn per request (ms), before the request reaches the mock and again before its response returns."""

    latency: DelayDistribution


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    target: Target
    mock: MockSettings
    order: Order
    change: Change
    sweep: Sweep
    guards: Guards
    run: RunSettings
    thresholds: tuple[Threshold, ...]
    simulate: Simulate = field(default_factory=lambda: Simulate(parse_delay(DEFAULT_SIM_LATENCY)))
    gate: GatePolicy = field(default_factory=GatePolicy)
    # The hazard (harness.hazards) this scenario provokes: its recipe and oracle drive the
    # integration runner; "" = the ticket's trial (a Change at the offset, the default oracle).
    hazard: str = ""
    # Where it came from, for messages only: two scenarios with equal content are equal.
    source: str = field(default="<scenario>", compare=False)

    @property
    def n_trials(self) -> int:
        return len(self.sweep.offsets_ms) * self.sweep.trials_per_offset * len(self.guards.names)

    @property
    def timing_tolerance_ms(self) -> float:
        """The run's timing tolerance (ms): `[run] timing_tolerance_ms`, else the smaller of 5 ms
        and a tenth of the smallest gap between swept offsets."""
        if self.run.timing_tolerance_ms is not None:
            return self.run.timing_tolerance_ms
        return default_tolerance_ms(self.sweep.offsets_ms)

    @property
    def final_value(self) -> int:
        """Order value in cents once the Change has finished."""
        return self.order.value - self.change.reduction(self.order)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form in the file's own schema: `parse_scenario(s.to_dict(), src) == s`."""
        target: dict[str, Any] = {"kind": self.target.kind}
        if self.target.url is not None:
            target["url"] = self.target.url
        target.update(
            app_key_env=self.target.app_key_env,
            app_token_env=self.target.app_token_env,
            admin_token_env=self.target.admin_token_env,
        )
        integ = self.target.integration
        if integ is not None:
            target["integration"] = {
                **({"delivery": integ.delivery} if integ.delivery != "hook" else {}),
                "hook_delay_ms": integ.hook_delay_ms,
                "invoice_wait_ms": integ.invoice_wait_ms,
                **({"headers": dict(integ.headers)} if integ.delivery == "hook" else {}),
                "duplicate_rate": integ.duplicate_rate,
                "extra_delay_ms": integ.extra_delay_ms,
                "services": [
                    {"name": sv.name, **({"hook_url": sv.hook_url} if sv.hook_url is not None else {}),
                     **({"command": list(sv.command)} if sv.command else {})}
                    for sv in integ.services
                ],
            }
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            **({"hazard": self.hazard} if self.hazard else {}),
            "target": target,
            "mock": {
                "policy": self.mock.policy,
                "change_delay": dict(self.mock.change_delay.spec()),
                "settle_ms": self.mock.settle_ms,
                "pin_delays": self.mock.pin_delays,
                **self.mock.extra_settings(),
            },
            "order": {
                "items": [
                    {"id": i.id, "name": i.name, "quantity": i.quantity, "price": i.price}
                    for i in self.order.items
                ],
                "shipping": self.order.shipping,
                "tax": self.order.tax,
            },
            "change": {
                "reason": self.change.reason,
                "items_removed": [{"id": r.id, "quantity": r.quantity} for r in self.change.items_removed],
                "discount_value": self.change.discount_value,
            },
            "sweep": {
                "offsets_ms": list(self.sweep.offsets_ms),
                "trials_per_offset": self.sweep.trials_per_offset,
            },
            "guards": {
                "names": list(self.guards.names),
                "poll_interval_ms": self.guards.poll_interval_ms,
                "timeout_ms": self.guards.timeout_ms,
            },
            "run": {
                "concurrency": self.run.concurrency,
                "rate_limit_rps": self.run.rate_limit_rps,
                "request_timeout_s": self.run.request_timeout_s,
                "max_retries": self.run.max_retries,
                "start_spread_ms": self.run.start_spread_ms,
                "lead_ms": self.run.lead_ms,
                # Only when set: the default follows the sweep (and old run.json files stay as they were).
                **({"timing_tolerance_ms": self.run.timing_tolerance_ms}
                   if self.run.timing_tolerance_ms is not None else {}),
            },
            "thresholds": [_threshold_dict(t) for t in self.thresholds],
            "simulate": {"latency": dict(self.simulate.latency.spec())},
            "gate": {k: v for k, v in self.gate.as_dict().items() if v is not None},
        }

    def with_overrides(
        self,
        trials_per_offset: int | None = None,
        seed: int | None = None,
        target_url: str | None = None,
        hook_url: str | None = None,
        offsets_ms: Iterable[float] | None = None,
        feed: bool = False,
    ) -> Scenario:
        """A copy with command-line overrides applied (None = keep); values are validated.

        `hook_url` (or `feed`: the service reads Feed v3 instead) turns the scenario into
        integration mode against one running service named "integration". Its thresholds are
        `integration_thresholds` (the scenario's race bounds re-aimed at it): an unknown service
        is never judged by nothing.
        """
        src = self.source
        out = self
        if offsets_ms is not None:
            offsets = tuple(sorted({_number(o, src, "sweep.offsets_ms (override)") for o in offsets_ms}))
            if not offsets:
                raise _error(src, "sweep.offsets_ms (override)", "a non-empty list of offsets in ms", [])
            out = replace(out, sweep=replace(out.sweep, offsets_ms=offsets))
            if out.target.integration is not None:
                _check_hook_delay(out.target.integration, out.sweep, src)
        if hook_url is not None and feed:
            raise ScenarioError(f"{src}: a hook URL and the feed are exclusive: a service gets the handling "
                                "event one way")
        if hook_url is not None or feed:
            url = None if feed else _url(hook_url, src, "target.integration.hook_url (override)")
            old = out.target.integration or Integration(services=())
            integ = replace(old, services=(Service("integration", url),), delivery="feed" if feed else "hook",
                            headers=() if feed else old.headers)
            _check_hook_delay(integ, out.sweep, src)
            where = "reading the feed" if feed else f"at {url}"
            out = replace(out, target=replace(out.target, integration=integ),
                          description=f"Your integration {where} (scenario {out.name})",
                          guards=replace(out.guards, names=("integration",)),
                          thresholds=integration_thresholds(out.thresholds))
        if trials_per_offset is not None:
            tpo = _int(trials_per_offset, src, "sweep.trials_per_offset (override)", minimum=1)
            out = replace(out, sweep=replace(out.sweep, trials_per_offset=tpo))
        if seed is not None:
            out = replace(out, seed=_int(seed, src, "seed (override)"))
        if target_url is not None:
            url = _url(target_url, src, "target.url (override)")
            out = replace(out, target=replace(out.target, kind="url", url=url))
        return out

    def with_services(self, names: Iterable[str]) -> Scenario:
        """Integration mode: a copy running only these services (and only their thresholds)."""
        wanted = tuple(names)
        integ = self.target.integration
        if integ is None:
            raise ScenarioError(f"{self.source}: services={list(wanted)}: not an integration scenario")
        have = [sv.name for sv in integ.services]
        unknown = [n for n in wanted if n not in have]
        if unknown or not wanted:
            raise ScenarioError(f"{self.source}: target.integration.services: expected names among {have}; "
                                f"got {list(wanted)}")
        kept = tuple(sv for sv in integ.services if sv.name in wanted)
        return replace(self, target=replace(self.target, integration=replace(integ, services=kept)),
                       guards=replace(self.guards, names=tuple(sv.name for sv in kept)),
                       thresholds=tuple(t for t in self.thresholds if t.guard in wanted))


# A correct integration waits for the Change (or invoices before it arrives): the model puts
# its residual race window within the timing tolerance of offset 0, so it is judged at
# |offset| >= 50 ms, with the limit the reference scenario uses for its guarded connector.
DEFAULT_INTEGRATION_THRESHOLD = Threshold("integration", max_upper=0.1, min_abs_offset_ms=50.0)


def integration_thresholds(thresholds: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
    """The thresholds judging a service given by `--hook-url`/`--feed` (named "integration").

    The scenario's upper bounds on races (the limits it sets a correct integration, at the
    offsets where that integration is safe) apply to it; lower bounds (which prove a naive
    service races) do not. A scenario without any: DEFAULT_INTEGRATION_THRESHOLD. Failed trials
    (no_invoice, hook_failed, extra_invoice, wrong_value) fail the gate via `[gate] max_failed`."""
    own = tuple(t for t in thresholds if t.guard == "integration")
    if own:
        return own
    bounds = {replace(t, guard="integration", min_lower=None) for t in thresholds if t.max_upper is not None}
    return tuple(sorted(bounds, key=lambda t: (t.max_upper or 0.0, t.min_abs_offset_ms))) or (
        DEFAULT_INTEGRATION_THRESHOLD,)


def _threshold_dict(t: Threshold) -> dict[str, Any]:
    d: dict[str, Any] = {"guard": t.guard}
    if t.max_upper is not None:
        d["max_upper"] = t.max_upper
    if t.min_lower is not None:
        d["min_lower"] = t.min_lower
    d["min_abs_offset_ms"] = t.min_abs_offset_ms
    if t.offset_range_ms is not None:
        d["offset_range_ms"] = list(t.offset_range_ms)
    return d


# --------------------------------------------------------------------------- loading


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a TOML scenario: a file path or a built-in scenario's name."""
    p = find_scenario(path)
    source = str(p)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ScenarioError(f"{source}: no such scenario file") from None
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read scenario file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return parse_scenario(data, source)


def parse_scenario(data: dict[str, Any], source: str) -> Scenario:
    """Validate an already-decoded scenario (TOML or `Scenario.to_dict()` output).

    `source` names the origin (usually the file path) in every error message.
    """
    if not isinstance(data, dict):
        raise _error(source, "<top level>", "a table", data)
    top = _Table(data, source, "")

    name = _string(top.take("name"), source, "name")
    if not _NAME_RE.fullmatch(name):
        raise _error(source, "name", "a name made of [a-z0-9._-]+", name)
    description = _string(top.take("description", ""), source, "description")
    seed = _int(top.take("seed", 0), source, "seed")
    hazard = _string(top.take("hazard", ""), source, "hazard")
    if hazard and not _NAME_RE.fullmatch(hazard):
        raise _error(source, "hazard", "a hazard id made of [a-z0-9._-]+ (race-harness hazards lists them)", hazard)

    target = _parse_target(top.sub("target"))
    mock = _parse_mock(top.sub("mock"))
    order = _parse_order(top.sub("order"))
    change = _parse_change(top.sub("change"), order)
    sweep = _parse_sweep(top.sub("sweep"))
    guards = _parse_guards(top.sub("guards"), target.integration)
    if target.integration is not None:
        _check_hook_delay(target.integration, sweep, source)
    run = _parse_run(top.sub("run"))
    thresholds = _parse_thresholds(top.take("thresholds", []), source, guards)
    simulate = _parse_simulate(top.sub("simulate"))
    gate = _parse_gate(top.sub("gate"))
    top.finish()

    return Scenario(
        name=name,
        description=description,
        seed=seed,
        target=target,
        mock=mock,
        order=order,
        change=change,
        sweep=sweep,
        guards=guards,
        run=run,
        thresholds=thresholds,
        simulate=simulate,
        gate=gate,
        hazard=hazard,
        source=source,
    )


def _parse_target(t: _Table) -> Target:
    kind = t.take("kind", "embedded")
    if kind not in TARGET_KINDS:
        raise _error(t.source, t.path("kind"), f"one of {list(TARGET_KINDS)}", kind)
    raw_url = t.take("url", None)
    url: str | None = None
    if kind == "url":
        if raw_url is None:
            raise _error(t.source, t.path("url"), 'an http(s):// URL (required when kind = "url")', _MISSING)
        url = _url(raw_url, t.source, t.path("url"))
    elif raw_url is not None:
        # An ignored URL would make the run hit the embedded mock while the reader expects theirs.
        raise _error(t.source, t.path("url"), 'no url when kind = "embedded" (set kind = "url")', raw_url)
    envs = {
        key: _env_name(t.take(key, default), t.source, t.path(key))
        for key, default in (
            ("app_key_env", "VTEX_APP_KEY"),
            ("app_token_env", "VTEX_APP_TOKEN"),
            ("admin_token_env", "MOCK_ADMIN_TOKEN"),
        )
    }
    integration = _parse_integration(t.sub("integration")) if "integration" in t.data else None
    t.finish()
    return Target(kind=kind, url=url, integration=integration, **envs)


def _parse_integration(t: _Table) -> Integration:
    delivery = t.take("delivery", "hook")
    if delivery not in DELIVERIES:
        raise _error(t.source, t.path("delivery"), f"one of {list(DELIVERIES)} (how services get the handling "
                     "event: the mock's hook, or Feed v3 they read)", delivery)
    feed = delivery == "feed"
    raw = t.take("services")
    path = t.path("services")
    if not isinstance(raw, list) or not raw:
        shape = "{name[, command]}" if feed else "{name, hook_url[, command]}"
        raise _error(t.source, path, f"a non-empty list of {shape} tables", raw)
    services: list[Service] = []
    for n, item in enumerate(raw):
        st = _Table.of(item, t.source, f"{path}[{n}]")
        name = _string(st.take("name"), t.source, st.path("name"), nonempty=True)
        if not _NAME_RE.fullmatch(name):
            raise _error(t.source, st.path("name"), "a name made of [a-z0-9._-]+", name)
        if any(sv.name == name for sv in services):
            raise _error(t.source, st.path("name"), "unique service names", name)
        hook_url: str | None = None
        if feed:
            if "hook_url" in st.data:
                raise _error(t.source, st.path("hook_url"), 'no hook_url with delivery = "feed" (the service '
                             "reads the feed; drop hook_url or set delivery = \"hook\")", st.data["hook_url"])
        else:
            hook_url = _string(st.take("hook_url"), t.source, st.path("hook_url"), nonempty=True)
            _url(hook_url.replace("{port}", "1"), t.source, st.path("hook_url"))
        command = st.take("command", [])
        if not isinstance(command, list) or not all(isinstance(c, str) and c for c in command):
            raise _error(t.source, st.path("command"), "a list of non-empty strings (argv)", command)
        if hook_url is not None and "{port}" in hook_url and not command:
            raise _error(t.source, st.path("hook_url"), "no {port} placeholder unless the harness starts the "
                         "service (command)", hook_url)
        st.finish()
        services.append(Service(name, hook_url, tuple(command)))
    hook_delay = _number(t.take("hook_delay_ms", 600), t.source, t.path("hook_delay_ms"), minimum=0)
    wait = _number(t.take("invoice_wait_ms", 5000), t.source, t.path("invoice_wait_ms"), minimum=0, exclusive=True)
    if feed and "headers" in t.data:
        raise _error(t.source, t.path("headers"), 'no hook headers with delivery = "feed" (nothing is sent '
                     "to the service)", t.data["headers"])
    headers = t.take("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                                for k, v in headers.items()):
        raise _error(t.source, t.path("headers"), "a table of header name = string value", headers)
    duplicate_rate = _number(t.take("duplicate_rate", 0.0), t.source, t.path("duplicate_rate"), minimum=0)
    if duplicate_rate > 1:
        raise _error(t.source, t.path("duplicate_rate"), "a probability in [0, 1]", duplicate_rate)
    extra_delay = _number(t.take("extra_delay_ms", 0.0), t.source, t.path("extra_delay_ms"), minimum=0)
    t.finish()
    return Integration(tuple(services), hook_delay, wait, tuple(sorted(headers.items())), duplicate_rate,
                       extra_delay, delivery)


def _check_hook_delay(integ: Integration, sweep: Sweep, source: str) -> None:
    # A negative offset puts the Change before the hook; it must still come after start-handling.
    earliest = -min(sweep.offsets_ms)
    if earliest > 0 and integ.hook_delay_ms < earliest + 50:
        raise _error(source, "target.integration.hook_delay_ms",
                     f"at least {earliest + 50:g} ms (the most negative offset {-earliest:g} ms, plus 50 ms)",
                     integ.hook_delay_ms)


def _parse_mock(t: _Table) -> MockSettings:
    try:
        policy = check_policy(t.take("policy", "vulnerable"), f"{t.source}: {t.path('policy')}")
        delay = parse_delay(t.take("change_delay", _DEFAULT_DELAY), where=f"{t.source}: {t.path('change_delay')}")
        settle_raw = t.take("settle_ms", 0)
        # check_ms also accepts numeric strings (it serves env vars); a file has real numbers.
        if isinstance(settle_raw, bool) or not isinstance(settle_raw, (int, float)):
            raise _error(t.source, t.path("settle_ms"), "milliseconds as a number >= 0", settle_raw)
        settle = check_ms(settle_raw, f"{t.source}: {t.path('settle_ms')}")
        _extra = ("rate_limits", "change_cancel_rate", "invoice_first", "faults", "cancel_delay_ms", "cancel_policy",
                  "list_lag_ms")
        extra = MockConfig().updated({k: v for k in _extra if (v := t.take(k, None)) is not None},
                                     where=f"{t.source}: {t.path('')}")
    except ScenarioError:
        raise
    except ConfigError as exc:
        # Same message, but one exception type for every scenario problem.
        raise ScenarioError(str(exc)) from exc
    pin = _bool(t.take("pin_delays", True), t.source, t.path("pin_delays"))
    t.finish()
    return MockSettings(policy=policy, change_delay=delay, settle_ms=settle, pin_delays=pin,
                        rate_limits=extra.rate_limits, change_cancel_rate=extra.change_cancel_rate,
                        invoice_first=extra.invoice_first, faults=extra.faults,
                        cancel_delay_ms=extra.cancel_delay_ms, cancel_policy=extra.cancel_policy,
                        list_lag_ms=extra.list_lag_ms)


def _parse_simulate(t: _Table) -> Simulate:
    try:
        latency = parse_delay(t.take("latency", DEFAULT_SIM_LATENCY), where=f"{t.source}: {t.path('latency')}")
    except ConfigError as exc:
        raise ScenarioError(str(exc)) from exc
    t.finish()
    return Simulate(latency=latency)


def _parse_order(t: _Table) -> Order:
    raw_items = t.take("items", [dict(i) for i in _DEFAULT_ITEMS])
    path = t.path("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise _error(t.source, path, "a non-empty list of items", raw_items)
    items: list[Item] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_items):
        it = _Table.of(raw, t.source, f"{path}[{n}]")
        item_id = _string(it.take("id"), t.source, it.path("id"), nonempty=True)
        if item_id in seen:
            raise _error(t.source, it.path("id"), "item ids to be unique", item_id)
        seen.add(item_id)
        items.append(
            Item(
                id=item_id,
                name=_string(it.take("name", ""), t.source, it.path("name")),
                quantity=_int(it.take("quantity"), t.source, it.path("quantity"), minimum=1),
                price=_int(it.take("price"), t.source, it.path("price"), minimum=1, unit="cents"),
            )
        )
        it.finish()
    shipping = _int(t.take("shipping", 0), t.source, t.path("shipping"), minimum=0, unit="cents")
    tax = _int(t.take("tax", 0), t.source, t.path("tax"), minimum=0, unit="cents")
    t.finish()
    return Order(items=tuple(items), shipping=shipping, tax=tax)


def _parse_change(t: _Table, order: Order) -> Change:
    reason = _string(t.take("reason", "partial cancellation"), t.source, t.path("reason"))
    # Default: cancel one unit of the first item, so a scenario that only customises
    # [order] still gets a value-reducing Change that refers to its own items.
    default_removed = [{"id": order.items[0].id, "quantity": 1}]
    raw_removed = t.take("items_removed", default_removed)
    path = t.path("items_removed")
    if not isinstance(raw_removed, list):
        raise _error(t.source, path, "a list of {id, quantity} tables", raw_removed)
    ordered = {i.id: i.quantity for i in order.items}
    removed: list[RemovedItem] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_removed):
        it = _Table.of(raw, t.source, f"{path}[{n}]")
        item_id = _string(it.take("id"), t.source, it.path("id"), nonempty=True)
        if item_id not in ordered:
            raise _error(t.source, it.path("id"), f"an id from order.items {sorted(ordered)}", item_id)
        if item_id in seen:
            raise _error(t.source, it.path("id"), "each item removed at most once (sum the quantities)", item_id)
        seen.add(item_id)
        qty = _int(it.take("quantity"), t.source, it.path("quantity"), minimum=1)
        if qty > ordered[item_id]:
            raise _error(
                t.source, it.path("quantity"), f"at most the ordered quantity ({ordered[item_id]})", qty
            )
        it.finish()
        removed.append(RemovedItem(id=item_id, quantity=qty))
    discount = _int(t.take("discount_value", 0), t.source, t.path("discount_value"), minimum=0, unit="cents")
    t.finish()
    change = Change(reason=reason, items_removed=tuple(removed), discount_value=discount)
    cut = change.reduction(order)
    if cut <= 0:
        # The race only exists for value-reducing Changes; a no-op Change measures nothing.
        raise _error(
            t.source, t.path(""), "a Change that reduces the order value (items removed or discount > 0)",
            "a reduction of 0 cents", raw=True,
        )
    if cut > order.value:
        raise _error(
            t.source, t.path("discount_value"),
            f"a total reduction of at most the order value ({order.value} cents)",
            f"a reduction of {cut} cents", raw=True,
        )
    return change


def _parse_sweep(t: _Table) -> Sweep:
    raw = t.take("offsets_ms", dict(_DEFAULT_OFFSETS))
    offsets = _offsets(raw, t.source, t.path("offsets_ms"))
    tpo = _int(t.take("trials_per_offset", 10), t.source, t.path("trials_per_offset"), minimum=1)
    t.finish()
    return Sweep(offsets_ms=offsets, trials_per_offset=tpo)


def _offsets(raw: Any, source: str, path: str) -> tuple[float, ...]:
    if isinstance(raw, dict):
        r = _Table(raw, source, path)
        start = _number(r.take("start"), source, r.path("start"))
        stop = _number(r.take("stop"), source, r.path("stop"))
        step = _number(r.take("step"), source, r.path("step"))
        r.finish()
        if step <= 0:
            raise _error(source, r.path("step"), "a step > 0", raw["step"])
        if start > stop:
            raise _error(source, r.path("start"), f"start <= stop ({stop:g})", raw["start"])
        # Count first, then multiply: repeated addition drifts and can drop `stop`.
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > _MAX_OFFSETS:
            raise _error(source, path, f"at most {_MAX_OFFSETS} offsets", f"{count} offsets", raw=True)
        return tuple(round(start + k * step, 9) for k in range(count))
    if isinstance(raw, list):
        if not raw:
            raise _error(source, path, "a non-empty list of offsets or a {start, stop, step} table", raw)
        if len(raw) > _MAX_OFFSETS:
            raise _error(source, path, f"at most {_MAX_OFFSETS} offsets", f"{len(raw)} offsets", raw=True)
        values = [_number(v, source, f"{path}[{n}]") for n, v in enumerate(raw)]
        if len(set(values)) != len(values):
            dupes = sorted({v for v in values if values.count(v) > 1})
            # A repeated offset would silently double its sample size.
            raise _error(source, path, "distinct offsets", f"duplicates {dupes}", raw=True)
        return tuple(sorted(values))
    raise _error(source, path, "a list of numbers or a {start, stop, step} table", raw)


def _parse_guards(t: _Table, integration: Integration | None = None) -> Guards:
    # In integration mode the services under test take the place of the guards.
    known = tuple(sv.name for sv in integration.services) if integration else GUARD_NAMES
    what = "service names of target.integration" if integration else "guard names"
    raw = t.take("names", list(known))
    path = t.path("names")
    if not isinstance(raw, list) or not raw:
        raise _error(t.source, path, f"a non-empty list of {what} from {list(known)}", raw)
    names: list[str] = []
    for n, v in enumerate(raw):
        if v not in known:
            raise _error(t.source, f"{path}[{n}]", f"one of {list(known)}", v)
        if v in names:
            raise _error(t.source, f"{path}[{n}]", "unique guard names", v)
        names.append(v)
    poll = _number(t.take("poll_interval_ms", 20), t.source, t.path("poll_interval_ms"), minimum=0, exclusive=True)
    timeout = _number(t.take("timeout_ms", 5000), t.source, t.path("timeout_ms"), minimum=0, exclusive=True)
    t.finish()
    return Guards(names=tuple(names), poll_interval_ms=poll, timeout_ms=timeout)


def _parse_run(t: _Table) -> RunSettings:
    s = t.source
    run = RunSettings(
        concurrency=_int(t.take("concurrency", 200), s, t.path("concurrency"), minimum=1),
        rate_limit_rps=_number(t.take("rate_limit_rps", 0), s, t.path("rate_limit_rps"), minimum=0),
        request_timeout_s=_number(
            t.take("request_timeout_s", 5.0), s, t.path("request_timeout_s"), minimum=0, exclusive=True
        ),
        max_retries=_int(t.take("max_retries", 2), s, t.path("max_retries"), minimum=0),
        start_spread_ms=_number(t.take("start_spread_ms", 1000), s, t.path("start_spread_ms"), minimum=0),
        lead_ms=_number(t.take("lead_ms", 200), s, t.path("lead_ms"), minimum=0),
        timing_tolerance_ms=_optional_number(t.take("timing_tolerance_ms", None), s, t.path("timing_tolerance_ms"),
                                             minimum=0, exclusive=True),
    )
    t.finish()
    return run


def _parse_thresholds(raw: Any, source: str, guards: Guards) -> tuple[Threshold, ...]:
    if not isinstance(raw, list):
        raise _error(source, "thresholds", "a list of [[thresholds]] tables", raw)
    out: list[Threshold] = []
    for n, item in enumerate(raw):
        t = _Table.of(item, source, f"thresholds[{n}]")
        fields = {name: t.take(name, None) for name in THRESHOLD_FIELDS}
        t.finish()  # a typo'd key fails here, with a difflib hint
        try:
            out.append(Threshold.from_dict(fields, guards=guards.names, one_bound=True))
        except ThresholdError as exc:
            raise _error(source, t.path(exc.field), exc.expected, exc.got, raw=exc.raw) from None
    return tuple(out)


def _parse_gate(t: _Table) -> GatePolicy:
    taken = {name: t.take(name, None) for name in POLICY_FIELDS}
    fields = {name: value for name, value in taken.items() if value is not None}
    t.finish()  # a typo'd key fails here, with a difflib hint
    try:
        return GatePolicy.from_dict(fields)
    except ThresholdError as exc:
        raise _error(t.source, t.path(exc.field), exc.expected, exc.got, raw=exc.raw) from None


# --------------------------------------------------------------------------- helpers


class _Missing:
    def __repr__(self) -> str:
        return "nothing (the field is missing)"


_MISSING: Any = _Missing()


def _error(source: str, path: str, expected: str, got: Any, raw: bool = False) -> ScenarioError:
    """The one error format: `<file>: <field.path>: expected X; got Y`."""
    if raw or isinstance(got, _Missing):
        shown = str(got) if raw else repr(got)
    elif isinstance(got, (dict, list)):
        shown = f"{got!r}"
    else:
        shown = f"{got!r} ({type(got).__name__})"
    return ScenarioError(f"{source}: {path or '<top level>'}: expected {expected}; got {shown}")


class _Table:
    """A TOML table being read: remembers which keys were used so leftovers (typos) are errors."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str) -> None:
        self.data = data
        self.source = source
        self.prefix = prefix
        self._used: set[str] = set()

    @classmethod
    def of(cls, value: Any, source: str, prefix: str) -> _Table:
        if not isinstance(value, dict):
            raise _error(source, prefix, "a table", value)
        return cls(value, source, prefix)

    def path(self, key: str) -> str:
        if not key:
            return self.prefix
        return f"{self.prefix}.{key}" if self.prefix else key

    def take(self, key: str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise _error(self.source, self.path(key), "a value (required field)", _MISSING)
        return default

    def sub(self, key: str) -> _Table:
        return _Table.of(self.take(key, {}), self.source, self.path(key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if not unknown:
            return
        known = sorted(self._used)
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        where = self.prefix or "<top level>"
        raise ScenarioError(
            f"{self.source}: {where}: unknown key(s) {', '.join(hints)}; expected only {known}"
        )


def _int(value: Any, source: str, path: str, minimum: int | None = None, unit: str = "") -> int:
    what = f"an integer{' number of ' + unit if unit else ''}"
    if minimum is not None:
        what += f" >= {minimum}"
    # bool is an int subclass in Python; `quantity = true` must not mean 1.
    if isinstance(value, bool) or not isinstance(value, int):
        if unit == "cents" and isinstance(value, float):
            what += " (money is integer cents, e.g. 5000 for 50.00)"
        raise _error(source, path, what, value)
    if minimum is not None and value < minimum:
        raise _error(source, path, what, value)
    return value


def _number(
    value: Any, source: str, path: str, minimum: float | None = None, exclusive: bool = False
) -> float:
    what = "a finite number"
    if minimum is not None:
        what += f" {'>' if exclusive else '>='} {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(source, path, what, value)
    if minimum is not None and (value < minimum or (exclusive and value == minimum)):
        raise _error(source, path, what, value)
    return float(value)


def _optional_number(value: Any, source: str, path: str, minimum: float | None = None,
                     exclusive: bool = False) -> float | None:
    return None if value is None else _number(value, source, path, minimum, exclusive)


def _string(value: Any, source: str, path: str, nonempty: bool = False) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        raise _error(source, path, "a non-empty string" if nonempty else "a string", value)
    return value


def _bool(value: Any, source: str, path: str) -> bool:
    if not isinstance(value, bool):
        raise _error(source, path, "true or false", value)
    return value


def _url(value: Any, source: str, path: str) -> str:
    expected = "an http:// or https:// URL with a host"
    if not isinstance(value, str):
        raise _error(source, path, expected, value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _error(source, path, expected, value)
    return value


def _env_name(value: Any, source: str, path: str) -> str:
    # These hold the NAME of a variable; a value that isn't a name is probably a pasted secret.
    if not isinstance(value, str) or not _ENV_NAME_RE.fullmatch(value):
        shown = value if not isinstance(value, str) else "a value that is not an environment variable name"
        raise _error(
            source, path, "the NAME of an environment variable (secrets never go in scenario files)",
            shown, raw=isinstance(value, str),
        )
    return value


__all__ = [
    "TARGET_KINDS",
    "Change",
    "Guards",
    "Integration",
    "Item",
    "MockSettings",
    "Order",
    "RemovedItem",
    "RunSettings",
    "Scenario",
    "Service",
    "DEFAULT_INTEGRATION_THRESHOLD",
    "integration_thresholds",
    "Simulate",
    "Sweep",
    "Target",
    "load_scenario",
    "parse_scenario",
]
