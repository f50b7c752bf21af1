"""Trial planning: counts, determinism, interleaving, pinned delays, stable ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.core.plan import Plan, build_plan
from harness.core.scenario import Scenario, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _scenario(**sections: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "plan-test",
        "seed": 42,
        "mock": {"change_delay": "lognormal:300,0.5"},
        "sweep": {"offsets_ms": [-100, 0, 50, 200], "trials_per_offset": 5},
        "guards": {"names": ["none", "finished-check", "serialized"]},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_scenario(data, "mem")


def test_count_is_offsets_times_trials_times_guards() -> None:
    s = _scenario()
    plan = build_plan(s)
    assert len(plan.trials) == 4 * 5 * 3 == s.n_trials
    cells = Counter((t.guard, t.offset_ms) for t in plan.trials)
    assert set(cells.values()) == {5}
    assert len(cells) == 4 * 3


def test_plan_header_and_seq_and_ids() -> None:
    s = _scenario()
    plan = build_plan(s)
    assert plan.scenario_name == "plan-test" and plan.seed == 42
    assert [t.seq for t in plan.trials] == list(range(len(plan.trials)))
    assert sorted(t.trial_id for t in plan.trials) == list(range(len(plan.trials)))
    for t in plan.trials:
        assert plan.by_id(t.trial_id) is t
    with pytest.raises(KeyError):
        plan.by_id(10_000)


def test_same_seed_gives_identical_plan() -> None:
    assert build_plan(_scenario()) == build_plan(_scenario())


def test_different_seed_gives_different_order_and_draws() -> None:
    a = build_plan(_scenario())
    b = build_plan(_scenario(seed=43))
    assert [t.trial_id for t in a.trials] != [t.trial_id for t in b.trials]
    assert [a.by_id(i).change_delay_ms for i in range(10)] != [b.by_id(i).change_delay_ms for i in range(10)]


def test_trial_id_identifies_the_same_cell_whatever_the_seed() -> None:
    a = build_plan(_scenario())
    b = build_plan(_scenario(seed=43))
    for t in a.trials:
        other = b.by_id(t.trial_id)
        assert (other.guard, other.offset_ms) == (t.guard, t.offset_ms)


def test_guards_are_interleaved_not_blocked() -> None:
    s = load_scenario(SCENARIOS / "ticket-1348894.toml")
    plan = build_plan(s)
    k = len(s.guards.names)
    # every aligned block of k trials holds each guard once, so drift over the run
    # hits all guards alike
    for start in range(0, len(plan.trials), k):
        block = plan.trials[start : start + k]
        assert sorted(t.guard for t in block) == sorted(s.guards.names)
    # and the longest run of one guard is short (at most 2 across a block boundary)
    longest = run = 1
    for prev, cur in zip(plan.trials, plan.trials[1:]):
        run = run + 1 if cur.guard == prev.guard else 1
        longest = max(longest, run)
    assert longest <= 2


def test_offsets_are_shuffled_within_each_guard() -> None:
    plan = build_plan(_scenario())
    for guard in ("none", "finished-check", "serialized"):
        seen = [t.offset_ms for t in plan.trials if t.guard == guard]
        assert seen != sorted(seen)
        assert seen != sorted(seen, reverse=True)


def test_delays_drawn_when_pinned() -> None:
    plan = build_plan(_scenario())
    delays = [t.change_delay_ms for t in plan.trials]
    assert all(isinstance(d, float) and d > 0 for d in delays)
    assert len(set(delays)) == len(delays)  # a continuous distribution: a fresh draw per trial


def test_no_delays_when_not_pinned() -> None:
    plan = build_plan(_scenario(mock={"pin_delays": False}))
    assert all(t.change_delay_ms is None for t in plan.trials)
    # and the rest of the plan does not depend on pinning
    pinned = build_plan(_scenario())
    assert [(t.trial_id, t.trial_seed) for t in plan.trials] == [(t.trial_id, t.trial_seed) for t in pinned.trials]


def test_fixed_delay_is_pinned_exactly() -> None:
    plan = build_plan(_scenario(mock={"change_delay": "fixed:250"}))
    assert {t.change_delay_ms for t in plan.trials} == {250.0}


def test_uniform_draws_stay_in_range() -> None:
    plan = build_plan(load_scenario(SCENARIOS / "guard-regression.toml"))
    assert all(100.0 <= t.change_delay_ms <= 400.0 for t in plan.trials)  # type: ignore[operator]


def test_trial_seeds_are_distinct_and_seed_dependent() -> None:
    a = build_plan(_scenario())
    b = build_plan(_scenario(seed=43))
    seeds = [t.trial_seed for t in a.trials]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert a.by_id(0).trial_seed != b.by_id(0).trial_seed


@pytest.mark.parametrize(("small", "large"), [(2, 5), (1, 8)])
def test_changing_trials_per_offset_keeps_remaining_trials(small: int, large: int) -> None:
    base = load_scenario(SCENARIOS / "ticket-1348894.toml")
    few = build_plan(base.with_overrides(trials_per_offset=small))
    many = build_plan(base.with_overrides(trials_per_offset=large))
    assert len(many.trials) == len(few.trials) * large // small
    for t in few.trials:
        same = many.by_id(t.trial_id)
        assert (same.guard, same.offset_ms, same.change_delay_ms, same.trial_seed) == (
            t.guard,
            t.offset_ms,
            t.change_delay_ms,
            t.trial_seed,
        )


def test_single_guard_plan() -> None:
    plan = build_plan(_scenario(guards={"names": ["none"]}))
    assert len(plan.trials) == 4 * 5
    assert {t.guard for t in plan.trials} == {"none"}


def test_plan_is_frozen() -> None:
    plan = build_plan(_scenario())
    assert isinstance(plan, Plan)
    with pytest.raises(AttributeError):
        plan.seed = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        plan.trials[0].offset_ms = 0.0  # type: ignore[misc]
