"""The simulator, the baselines and the metrics on small days."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ace.policy import POLICIES, RampPolicy, get_policy, policy_names
from ace.policy.metrics import METRICS, evaluate, summarize, trace_metrics
from ace.policy.simulator import SimOptions, World, run, run_many

SMALL = SimOptions(rooms=40, hours=1.5)


def test_catalogue_names_and_unknown_name():
    assert policy_names() == ["ramp", "uniform", "proportional", "pid", "thompson", "oracle"]
    assert isinstance(get_policy("ramp", seed=3), RampPolicy)
    p = RampPolicy()
    assert get_policy(p) is p
    with pytest.raises(ValueError) as e:
        get_policy("greedy")
    for name in POLICIES:
        assert name in str(e.value)


def test_world_is_reproducible_per_seed():
    a, b, c = World(replace(SMALL, seed=4)), World(replace(SMALL, seed=4)), World(replace(SMALL, seed=5))
    assert np.array_equal(a.live, b.live) and np.array_equal(a.lift_excess, b.lift_excess)
    assert np.array_equal(a.likes, b.likes) and np.allclose(a.budget, b.budget)
    assert not np.array_equal(a.live, c.live)
    # the day has what the simulator promises
    assert a.fake.any() or c.fake.any()
    assert a.highlights.shape[1] == 6 and len(a.highlights) > 0
    assert (a.arrive_tick > 0).any() and (a.arrive_tick == 0).any()
    assert np.all(a.pool_cap >= a.plan)


def test_run_is_deterministic_per_seed():
    o = replace(SMALL, seed=3)
    t1 = run(RampPolicy(seed=3), o)
    t2 = run(RampPolicy(seed=3), o)
    assert np.array_equal(t1.alloc, t2.alloc)
    assert np.array_equal(t1.orders, t2.orders)
    t3 = run(RampPolicy(seed=3), replace(o, seed=4))
    assert not np.array_equal(t1.alloc, t3.alloc[: t1.alloc.shape[0]]) or t1.alloc.shape != t3.alloc.shape


def test_oracle_needs_truth():
    from ace.policy.state import Observation

    with pytest.raises(ValueError):
        get_policy("oracle").step(Observation.empty(2, plan=100.0))


@pytest.fixture(scope="module")
def small_results():
    traces = run_many(policy_names(), [0, 1], SMALL)
    return traces, evaluate(traces)


def test_every_policy_keeps_the_hard_caps(small_results):
    _, res = small_results
    for name, runs in res.items():
        for m in runs:
            assert m["cap_violations"] == 0, name
            assert m["util_error"] <= 0.02, name


def test_ramp_policy_beats_proportional_and_keeps_its_promises(small_results):
    _, res = small_results
    for s in range(2):
        ramp, prop = res["ramp"][s], res["proportional"][s]
        assert ramp["orders_per_1k"] > 1.1 * prop["orders_per_1k"]
        assert ramp["ramp_violations"] == 0
        assert ramp["probed_5min"] == 1.0
        assert ramp["fake_max_over_probe"] <= 1.5
        assert ramp["regret"] < res["uniform"][s]["regret"]
        assert 0 < ramp["tier_switches_per_room_hour"] <= 6
    assert math.isnan(res["uniform"][0]["tier_switches_per_room_hour"])


def test_summary_and_targets(small_results):
    _, res = small_results
    summary = summarize(res)
    assert set(summary) == set(policy_names())
    for m in METRICS:
        s = summary["ramp"][m.name]
        assert len(s.values) == 2
        assert (s.passed is None) == (m.target is None)
    assert summary["oracle"]["regret"].mean == 0.0
    assert summary["uniform"]["cap_violations"].passed is None  # targets only for the ramp policy


def test_metrics_catch_violations(small_results):
    traces, _ = small_results
    tr = traces["ramp"][0]
    bad = replace(tr, alloc=tr.alloc.copy())
    k, i = np.argwhere(tr.alloc > 0)[5]
    bad.alloc[k, i] = tr.plan[k]  # one room takes the whole pool
    m = trace_metrics(bad)
    assert m["cap_violations"] >= 1 and m["ramp_violations"] >= 1


def test_reasons_are_recorded_for_sample_rooms():
    o = replace(SMALL, seed=0, hours=0.5)
    tr = run(RampPolicy(), o, sample_rooms=[0, 1])
    live = tr.live[:, 0]
    assert all(r for r, lv in zip(tr.reasons[0], live) if lv)


def test_rooms_are_a_density_so_a_long_day_has_rooms_all_day():
    d = SimOptions()
    assert d.total_rooms() == d.rooms == 120  # the default 4 h day is unchanged
    assert replace(d, hours=24).total_rooms() == 42 + round(78 * (24 * 3600 - 1800) / (4 * 3600 - 1800))
    assert replace(d, hours=2).total_rooms() < d.rooms
    short, long_ = World(replace(d, rooms=40, hours=4, seed=1)), World(replace(d, rooms=40, hours=12, seed=1))
    assert long_.N == replace(d, rooms=40, hours=12).total_rooms() and long_.N > 2.4 * short.N
    live_short, live_long = short.live.sum(axis=1), long_.live.sum(axis=1)
    # about as many rooms live late in the long day as in the short one: nobody is left alone with the plan
    late = live_long[long_.T // 2 :]
    assert 0.6 < late.mean() / live_short.mean() < 1.6
    assert late.min() >= 1 / d.max_share


def test_util_error_counts_the_spendable_plan_only_and_catches_under_and_over_spending():
    from ace.policy.metrics import spendable_plan

    o = SimOptions(rooms=10, hours=2.0, seed=2)  # a few rooms live: the caps cannot take the plan
    w = World(o)
    tr = run(get_policy("uniform"), o, w)
    sp = spendable_plan(tr)
    n = w.live.sum(axis=1)
    assert (n * o.max_share < 1).any()
    # budgets do not bind in this day: spendable = min(plan, live rooms x max share x plan)
    assert np.allclose(sp, np.minimum(tr.plan, n * o.max_share * tr.plan))
    m = trace_metrics(tr)
    assert m["plan_spendable"] < 0.95
    assert m["util_error"] <= 1e-3  # uniform spends every cap
    assert abs(tr.alloc.sum() - tr.plan.sum()) / tr.plan.sum() > 0.02  # what the plain plan would call an error
    under = replace(tr, alloc=tr.alloc * 0.9)
    assert trace_metrics(under)["util_error"] >= 0.09
    over = replace(tr, alloc=tr.alloc * 1.05)
    assert trace_metrics(over)["util_error"] >= 0.04


def test_util_error_is_the_plain_one_where_the_caps_never_bind(small_results):
    traces, res = small_results
    for name, trs in traces.items():
        for tr, m in zip(trs, res[name]):
            if m["plan_spendable"] == 1.0:
                plain = abs(tr.alloc.sum() - tr.plan.sum()) / tr.plan.sum()
                assert m["util_error"] == pytest.approx(plain, abs=1e-12), name
    assert any(m["plan_spendable"] == 1.0 for m in res["ramp"])
