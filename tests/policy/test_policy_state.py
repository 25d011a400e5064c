"""Inputs, the string-keyed front door and the explicit per-room state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ace.policy import RampPolicy, RoomAggregate, get_policy, interaction_counts
from ace.policy.allocation import PacingController, proportional_fill, waterfill
from ace.policy.state import CATEGORIES, STATE_FIELDS, RoomStates, SlotMap, Tier, category_code, observation_from_aggregates
from ace.types import Event, Moment


def test_interaction_counts_caps_users_and_counts_trusted():
    events = [Event(1.0, "like", "bot", 40.0)] + [Event(2.0, "chat", f"u{i}", text="wow") for i in range(5)]
    events += [Event(3.0, "order", "u1"), Event(4.0, "viewers", value=321.0), Event(5.0, "follow", "u2")]
    c = interaction_counts(events, trusted=lambda u: u.startswith("u"), per_user_cap=10)
    assert c["likes"] == 40.0 and c["comments"] == 5.0
    assert c["shallow_capped"] == 10.0 + 5.0
    assert c["users"] == 6.0 and c["trusted_users"] == 5.0
    assert c["organic_orders"] == 1.0 and c["viewers"] == 321.0
    agg = RoomAggregate("room-1", **c)
    assert agg.likes == 40.0


def test_slot_map_reuses_released_slots():
    m = SlotMap()
    assert [m.slot(s) for s in "abc"] == [0, 1, 2]
    assert m.release("b") == 1
    assert m.slot("d") == 1 and m.stream(1) == "d" and "b" not in m


def test_observation_from_aggregates():
    slots = SlotMap()
    aggs = [RoomAggregate("x", category="Food", viewers=10.0, likes=3.0), RoomAggregate("y", budget=500.0)]
    moments = [Moment("y", 1.0, 5.0, 0.7, 2.0), Moment("gone", 1.0, 5.0, 0.7, 2.0)]
    obs = observation_from_aggregates(slots, aggs, moments, t=30.0, dt=30.0, plan=100.0, pool_cap=110.0)
    assert obs.live.tolist() == [True, True]
    assert obs.category[0] == category_code("food") and CATEGORIES[obs.category[1]] == "other"
    assert obs.likes[0] == 3.0 and obs.budget[1] == 500.0 and math.isnan(obs.history[0])
    assert obs.moment_slot.tolist() == [1]


def _aggs(t, allocs):
    return [
        RoomAggregate(
            f"room-{i}",
            category="beauty",
            viewers=400.0,
            impressions=a,
            entries=a * 0.05,
            watch_s=a * 3.0,
            orders=a * 0.004 + (t == 30.0),
            users=50.0,
            trusted_users=30.0,
        )
        for i, a in enumerate(allocs)
    ]


def test_decide_returns_decisions_with_reasons_and_levels():
    p = RampPolicy(seed=0)
    allocs = [0.0, 0.0, 0.0]
    for k in range(12):
        t = 30.0 * k
        ds = p.decide(t, _aggs(t, allocs), plan=10_000.0)
        assert [d.stream_id for d in ds] == ["room-0", "room-1", "room-2"]
        for d in ds:
            assert d.reason and d.level in {t.label for t in Tier} and 0 <= d.share <= p.options.max_share
        allocs = [d.share * 10_000.0 for d in ds]
    assert ds[0].level != "probe"
    st = p.room_state("room-0")
    assert st.stream_id == "room-0" and st.spent > 0 and st.entry_rate > 0 and st.tier == ds[0].level
    with pytest.raises(KeyError):
        p.room_state("never-seen")


def test_decide_forgets_rooms_gone_for_long():
    p = RampPolicy()
    p.forget_after_s = 60.0
    p.decide(0.0, [RoomAggregate("a"), RoomAggregate("b")], plan=1000.0)
    p.decide(30.0, [RoomAggregate("a")], plan=1000.0)
    p.decide(120.0, [RoomAggregate("a"), RoomAggregate("c")], plan=1000.0)
    assert "b" not in p.slots and p.slots.get("c") == 1
    assert p.room_state("c").tier == "probe" and p.room_state("c").spent <= 0.015 * 1000.0 + 1e-9


def test_baselines_decide_too():
    for name in ("uniform", "proportional", "pid", "thompson"):
        ds = get_policy(name).decide(0.0, [RoomAggregate("a", viewers=5.0), RoomAggregate("b", viewers=15.0)], plan=1000.0)
        assert len(ds) == 2 and all(d.level == "fixed" and d.reason for d in ds)
        assert sum(d.share for d in ds) <= 1.0 + 1e-9


def test_room_states_grow_and_reset():
    s = RoomStates(2, hold_ticks=3)
    s.boost[1] = 2.0
    s.grow(5)
    assert s.n == 5 and s.held.shape == (5, 3) and s.boost[1] == 2.0
    s.reset(np.array([1]))
    assert s.boost[1] == STATE_FIELDS["boost"][1]


def test_waterfill_equalises_marginal_value():
    v = np.array([4.0, 2.0, 1.0, 0.0])
    sat = np.array([100.0, 100.0, 100.0, 100.0])
    x, lam = waterfill(v, sat, np.zeros(4), np.full(4, 1e9), 150.0)
    assert x.sum() == pytest.approx(150.0)
    inner = x > 1e-9
    assert np.allclose(v[inner] * np.exp(-x[inner] / sat[inner]), lam)
    assert x[3] == 0.0
    x2, _ = waterfill(v, sat, np.array([0, 0, 50.0, 0]), np.array([10.0, 1e9, 1e9, 0]), 150.0)
    assert x2[0] == pytest.approx(10.0) and x2[2] >= 50.0 and x2.sum() == pytest.approx(150.0)


def test_proportional_fill_respects_caps():
    x = proportional_fill(np.array([1.0, 1.0, 2.0]), np.array([10.0, 100.0, 100.0]), 100.0)
    assert x[0] == pytest.approx(10.0) and x.sum() == pytest.approx(100.0) and x[2] == pytest.approx(2 * x[1])


def test_pacing_controller_catches_up():
    pc = PacingController(kp=0.5, ki=0.0)
    pc.record(100.0, 60.0)
    assert pc.target(100.0, 1000.0) == pytest.approx(120.0)
    assert pc.target(100.0, 110.0) == pytest.approx(110.0)


def test_policy_package_never_imports_ray():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "import sys, ace.policy, ace.policy.cli, ace.policy.plots, ace.policy.sink; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
