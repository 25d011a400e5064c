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
