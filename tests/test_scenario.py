"""Scenario loading: shipped files, validation messages, round trip, overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.names import GUARD_NAMES
from harness.core.scenario import Scenario, load_scenario, parse_scenario
from harness.core.thresholds import GatePolicy, Threshold
from harness.errors import ScenarioError
from mock_orders_api.delays import LogNormal, Uniform
from mock_orders_api.errors import ConfigError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.toml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_all_expected_scenarios_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    assert {"ticket-1348894.toml", "guard-regression.toml", "strict-policy.toml"} <= names


def _load_shipped(path: Path) -> Scenario:
    """A shipped scenario; skipped when it needs a mock setting this tree's mock lacks (the
    asynchronous cancel of cancel-vs-invoice is merged from another branch)."""
    try:
        return load_scenario(path)
    except ScenarioError as err:
        if "cancel_policy" not in str(err):
            raise
        pytest.skip(f"this tree's mock has no cancel_policy: {path.name}")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenario_loads(path: Path) -> None:
    s = _load_shipped(path)
    assert s.name == path.stem
    assert s.source == str(path)
    assert s.n_trials == len(s.sweep.offsets_ms) * s.sweep.trials_per_offset * len(s.guards.names)
    assert s.final_value < s.order.value
    for t in s.thresholds:
        assert t.guard in s.guards.names


def test_ticket_scenario_values() -> None:
    s = load_scenario(SCENARIOS / "ticket-1348894.toml")
    assert s.seed == 1348894
    assert s.mock.policy == "vulnerable"
    assert s.mock.change_delay == LogNormal(median_ms=300.0, sigma=0.5)
    assert s.mock.settle_ms == 150.0
    assert s.sweep.offsets_ms[0] == -1000.0 and s.sweep.offsets_ms[-1] == 1000.0
    assert len(s.sweep.offsets_ms) == 41
    assert s.sweep.trials_per_offset == 8
    assert s.guards.names == ("none", "finished-check", "serialized")
    assert s.run.concurrency == 400
    assert s.thresholds == (
        Threshold(guard="finished-check", max_upper=0.05, min_abs_offset_ms=200.0),
        Threshold(guard="serialized", max_upper=0.05, min_abs_offset_ms=50.0),
        Threshold(guard="none", min_lower=0.3, offset_range_ms=(50.0, 200.0)),
    )


def test_guard_regression_and_strict_values() -> None:
    g = load_scenario(SCENARIOS / "guard-regression.toml")
    assert g.mock.change_delay == Uniform(min_ms=100.0, max_ms=400.0)
    assert g.mock.settle_ms == 0.0
    assert g.sweep.offsets_ms == (-300.0, -100.0, -50.0, 50.0, 100.0, 200.0, 300.0)
    assert g.sweep.trials_per_offset == 60  # enough per bin for the sequential gate to PASS at 10%
    s = load_scenario(SCENARIOS / "strict-policy.toml")
    assert s.mock.policy == "strict"
    assert s.guards.names == ("none", "finished-check")
    assert s.thresholds == (Threshold(guard="none", max_upper=0.05),)


def test_minimal_scenario_uses_valid_defaults() -> None:
    s = parse_scenario({"name": "minimal"}, "mem")
    assert s.description == "" and s.seed == 0
    assert s.target.kind == "embedded" and s.target.url is None
    assert s.target.app_key_env == "VTEX_APP_KEY"
    assert s.guards.names == GUARD_NAMES
    assert s.guards.poll_interval_ms == 20.0 and s.guards.timeout_ms == 5000.0
    assert s.run.start_spread_ms == 1000.0 and s.run.lead_ms == 200.0
    assert s.mock.pin_delays is True
    assert s.thresholds == ()
    assert s.order.value == 2 * 5000 + 12000
    assert s.final_value == s.order.value - 5000


def test_default_change_follows_a_custom_order() -> None:
    s = parse_scenario({"name": "x", "order": {"items": [{"id": "sku-9", "quantity": 3, "price": 700}]}}, "mem")
    assert [(r.id, r.quantity) for r in s.change.items_removed] == [("sku-9", 1)]
    assert s.final_value == 1400


def test_offset_range_is_inclusive_and_free_of_float_drift() -> None:
    s = parse_scenario({"name": "x", "sweep": {"offsets_ms": {"start": 0, "stop": 0.3, "step": 0.1}}}, "mem")
    assert s.sweep.offsets_ms == (0.0, 0.1, 0.2, 0.3)
    s = parse_scenario({"name": "x", "sweep": {"offsets_ms": {"start": -100, "stop": 90, "step": 50}}}, "mem")
    assert s.sweep.offsets_ms == (-100.0, -50.0, 0.0, 50.0)


def test_offset_list_is_sorted_floats() -> None:
    s = parse_scenario({"name": "x", "sweep": {"offsets_ms": [100, -50, 0.5]}}, "mem")
    assert s.sweep.offsets_ms == (-50.0, 0.5, 100.0)
    assert all(isinstance(o, float) for o in s.sweep.offsets_ms)


def test_delay_as_inline_table(tmp_path: Path) -> None:
    text = 'name = "x"\n[mock]\nchange_delay = { kind = "uniform", min_ms = 10, max_ms = 20 }\n'
    s = load_scenario(_write(tmp_path, text))
    assert s.mock.change_delay == Uniform(10.0, 20.0)


BAD_CASES = [
    # (id, toml text, substrings the message must contain besides the file name)
    ("missing-name", "seed = 1\n", ["name", "missing"]),
    ("bad-name", 'name = "Has Spaces"\n', ["name", "[a-z0-9._-]+"]),
    ("unknown-top-key", 'name = "x"\nsed = 1\n', ["<top level>", "'sed'", "did you mean 'seed'"]),
    (
        "unknown-section-key",
        'name = "x"\n[sweep]\ntrails_per_offset = 3\n',
        ["sweep", "'trails_per_offset'", "did you mean 'trials_per_offset'"],
    ),
    (
        "float-price",
        'name = "x"\n[order]\nitems = [{ id = "1", quantity = 1, price = 50.0 }]\n',
        ["order.items[0].price", "integer", "50.0 (float)"],
    ),
    ("negative-cents", 'name = "x"\n[order]\nshipping = -1\n', ["order.shipping", ">= 0", "-1"]),
    (
        "duplicate-item-id",
        'name = "x"\n[order]\nitems = [{ id = "1", quantity = 1, price = 1 }, { id = "1", quantity = 1, price = 2 }]\n',
        ["order.items[1].id", "unique"],
    ),
    (
        "unknown-guard",
        'name = "x"\n[guards]\nnames = ["none", "magic"]\n',
        ["guards.names[1]", "'magic'", "finished-check"],
    ),
    ("empty-guards", 'name = "x"\n[guards]\nnames = []\n', ["guards.names", "non-empty"]),
    (
        "removed-item-not-in-order",
        'name = "x"\n[change]\nitems_removed = [{ id = "9", quantity = 1 }]\n',
        ["change.items_removed[0].id", "'9'", "order.items"],
    ),
    (
        "removed-more-than-ordered",
        'name = "x"\n[change]\nitems_removed = [{ id = "2", quantity = 2 }]\n',
        ["change.items_removed[0].quantity", "at most the ordered quantity (1)"],
    ),
    (
        "change-does-not-reduce",
        'name = "x"\n[change]\nitems_removed = []\ndiscount_value = 0\n',
        ["change", "reduces the order value", "0 cents"],
    ),
    ("bad-delay", 'name = "x"\n[mock]\nchange_delay = "gauss:1,2"\n', ["mock.change_delay", "gauss"]),
    ("bad-policy", 'name = "x"\n[mock]\npolicy = "lenient"\n', ["mock.policy", "lenient"]),
    ("string-settle", 'name = "x"\n[mock]\nsettle_ms = "150"\n', ["mock.settle_ms", "'150'"]),
    ("url-kind-without-url", 'name = "x"\n[target]\nkind = "url"\n', ["target.url", "missing"]),
    (
        "url-with-embedded",
        'name = "x"\n[target]\nurl = "http://127.0.0.1:1"\n',
        ["target.url", 'kind = "url"'],
    ),
    ("ftp-url", 'name = "x"\n[target]\nkind = "url"\nurl = "ftp://h"\n', ["target.url", "http"]),
    (
        "secret-in-env-field",
        'name = "x"\n[target]\napp_token_env = "eyJhbGciOi.secret-value"\n',
        ["target.app_token_env", "NAME of an environment variable"],
    ),
    (
        "threshold-both-bounds",
        'name = "x"\n[[thresholds]]\nguard = "none"\nmax_upper = 0.1\nmin_lower = 0.2\n',
        ["thresholds[0]", "exactly one of max_upper / min_lower", "both"],
    ),
    (
        "threshold-neither-bound",
        'name = "x"\n[[thresholds]]\nguard = "none"\n',
        ["thresholds[0]", "exactly one of max_upper / min_lower", "neither"],
    ),
    (
        "threshold-guard-not-in-guards",
        'name = "x"\n[guards]\nnames = ["none"]\n[[thresholds]]\nguard = "serialized"\nmax_upper = 0.1\n',
        ["thresholds[0].guard", "'serialized'", "guards.names"],
    ),
    (
        "threshold-rate-out-of-range",
        'name = "x"\n[[thresholds]]\nguard = "none"\nmin_lower = 1.5\n',
        ["thresholds[0].min_lower", "between 0 and 1"],
    ),
    (
        "threshold-bad-range",
        'name = "x"\n[[thresholds]]\nguard = "none"\nmin_lower = 0.5\noffset_range_ms = [200, 50]\n',
        ["thresholds[0].offset_range_ms", "low <= high"],
    ),
    (
        "step-zero",
        'name = "x"\n[sweep]\noffsets_ms = { start = -100, stop = 100, step = 0 }\n',
        ["sweep.offsets_ms.step", "> 0"],
    ),
    (
        "start-after-stop",
        'name = "x"\n[sweep]\noffsets_ms = { start = 100, stop = -100, step = 10 }\n',
        ["sweep.offsets_ms.start", "start <= stop"],
    ),
    ("empty-offset-list", 'name = "x"\n[sweep]\noffsets_ms = []\n', ["sweep.offsets_ms", "non-empty"]),
    ("duplicate-offsets", 'name = "x"\n[sweep]\noffsets_ms = [50, 50]\n', ["sweep.offsets_ms", "distinct"]),
    (
        "trials-per-offset-zero",
        'name = "x"\n[sweep]\ntrials_per_offset = 0\n',
        ["sweep.trials_per_offset", ">= 1", "0 (int)"],
    ),
    ("bool-as-int", 'name = "x"\n[run]\nconcurrency = true\n', ["run.concurrency", "integer", "True (bool)"]),
    ("zero-timeout", 'name = "x"\n[run]\nrequest_timeout_s = 0\n', ["run.request_timeout_s", "> 0"]),
    ("section-not-table", 'name = "x"\nrun = 3\n', ["run", "a table"]),
    ("toml-syntax", 'name = "x\n', ["not valid TOML"]),
]


@pytest.mark.parametrize(("text", "needles"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_invalid_scenario_error_names_file_and_field(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_scenario_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_scenario(_write(tmp_path, "seed = 1\n"))


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError, match="nope.toml"):
        load_scenario(missing)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_to_dict_round_trips_through_json(path: Path) -> None:
    s = _load_shipped(path)
    data = json.loads(json.dumps(s.to_dict()))
    again = parse_scenario(data, "from-json")
    assert again == s
    assert again.source == "from-json"
    assert again.to_dict() == s.to_dict()


def test_to_dict_round_trips_url_target_and_unpinned() -> None:
    s = parse_scenario(
        {
            "name": "u",
            "target": {"kind": "url", "url": "https://mock.example:8443/base"},
            "mock": {"pin_delays": False, "change_delay": "normal:200,30"},
            "change": {"items_removed": [], "discount_value": 100},
        },
        "mem",
    )
    assert parse_scenario(json.loads(json.dumps(s.to_dict())), "mem") == s


def test_with_overrides_applies_and_validates() -> None:
    s = load_scenario(SCENARIOS / "ticket-1348894.toml")
    o = s.with_overrides(trials_per_offset=2, seed=7, target_url="http://127.0.0.1:9000")
    assert o.sweep.trials_per_offset == 2 and o.seed == 7
    assert o.target.kind == "url" and o.target.url == "http://127.0.0.1:9000"
    assert o.target.app_key_env == s.target.app_key_env
    assert o.sweep.offsets_ms == s.sweep.offsets_ms
    # the original is untouched, and no override means no change
    assert s.sweep.trials_per_offset == 8 and s.target.kind == "embedded"
    assert s.with_overrides() == s
    # overridden scenarios still round-trip
    assert parse_scenario(o.to_dict(), "x") == o


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"trials_per_offset": 0}, "sweep.trials_per_offset (override)"),
        ({"trials_per_offset": 2.5}, "sweep.trials_per_offset (override)"),
        ({"seed": "abc"}, "seed (override)"),
        ({"target_url": "localhost:8080"}, "target.url (override)"),
    ],
)
def test_with_overrides_rejects_bad_values(kwargs: dict, needle: str) -> None:
    s = load_scenario(SCENARIOS / "guard-regression.toml")
    with pytest.raises(ScenarioError) as info:
        s.with_overrides(**kwargs)
    assert needle in str(info.value)
    assert str(info.value).startswith(s.source)


def test_scenario_is_frozen() -> None:
    s = parse_scenario({"name": "x"}, "mem")
    with pytest.raises(AttributeError):
        s.seed = 3  # type: ignore[misc]
    assert isinstance(s, Scenario)


def test_gate_table_is_optional_validated_and_round_trips() -> None:
    base = {"name": "g"}
    assert parse_scenario(base, "mem").gate == GatePolicy()  # existing scenario files stay valid
    s = parse_scenario({**base, "gate": {"alpha": 0.01, "max_failed": 2, "max_not_judged_fraction": 0.1,
                                         "max_trials": 5000}}, "mem")
    assert s.gate == GatePolicy(alpha=0.01, max_failed=2, max_not_judged_fraction=0.1, max_trials=5000)
    assert parse_scenario(json.loads(json.dumps(s.to_dict())), "mem") == s
    for table, message in (({"alpha": 1.5}, "mem: gate.alpha: expected a number in (0, 1); got 1.5"),
                           ({"max_trials": 0}, "mem: gate.max_trials: expected an integer >= 1 (or none); got 0"),
                           ({"max_not_judged_fraction": "5%"}, "mem: gate.max_not_judged_fraction: expected a "
                                                               "fraction between 0 and 1; got '5%'")):
        with pytest.raises(ScenarioError) as err:
            parse_scenario({**base, "gate": table}, "mem")
        assert str(err.value).startswith(message), str(err.value)


def test_mock_table_takes_rate_limits_cancel_rate_and_invoice_first_off_by_default() -> None:
    from harness.core.wire import mock_settings
    plain = parse_scenario({"name": "x"}, "mem")
    assert plain.mock.rate_limits == {} and plain.mock.change_cancel_rate == 0.0
    assert set(mock_settings(plain)) == {"policy", "delay", "settle_ms", "seed"}  # nothing new unless asked
    s = parse_scenario({"name": "x", "mock": {"rate_limits": ["get-order=6000/min"], "change_cancel_rate": 0.2,
                                              "invoice_first": "stuck"}}, "mem")
    assert s.mock.rate_limits == {"get-order": 100.0}
    assert mock_settings(s)["change_cancel_rate"] == 0.2 and mock_settings(s)["invoice_first"] == "stuck"
    with pytest.raises(ScenarioError, match="rate_limits"):
        parse_scenario({"name": "x", "mock": {"rate_limits": {"get-orders": "1/s"}}}, "mem")
    f = parse_scenario({"name": "x", "mock": {"faults": {"invoice": {"drop": 0.1}}}}, "mem")
    assert mock_settings(f)["faults"]["invoice"]["drop"] == 0.1
    assert parse_scenario(f.to_dict(), "mem").mock.faults == f.mock.faults  # round-trips


def test_mock_table_takes_the_cancellation_and_list_settings() -> None:
    from harness.core.wire import mock_settings
    s = parse_scenario({"name": "x", "mock": {"cancel_delay_ms": 1500, "cancel_policy": "strict",
                                              "list_lag_ms": 240000}}, "mem")
    assert (s.mock.cancel_delay_ms, s.mock.cancel_policy, s.mock.list_lag_ms) == (1500.0, "strict", 240000.0)
    assert {k: mock_settings(s)[k] for k in ("cancel_delay_ms", "cancel_policy", "list_lag_ms")} == {
        "cancel_delay_ms": 1500.0, "cancel_policy": "strict", "list_lag_ms": 240000.0}
    assert parse_scenario(s.to_dict(), "mem").mock == s.mock  # round-trips
    with pytest.raises(ScenarioError, match="cancel_policy"):
        parse_scenario({"name": "x", "mock": {"cancel_policy": "lenient"}}, "mem")
