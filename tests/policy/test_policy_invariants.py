"""Safety invariants of the ramp policy on randomised inputs (hypothesis).

Each example is a random stretch of live rooms: arrivals and departures, budgets (some tiny),
audience counts with bursts, moments, order holds and cancellations, a drifting plan, a hard pool
cap, manual kill switches. Every tick must keep the hard caps, the ramp limits and the probe
promise, and say why.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ace.policy import RampPolicy
from ace.policy.state import Observation, category_code
from tests.policy.factories import make_obs

EPS = 1e-6
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 14))
    ticks = draw(st.integers(3, 40))
    return {
        "n": n,
        "ticks": ticks,
        "seed": draw(st.integers(0, 2**31 - 1)),
        "plan": draw(st.floats(500.0, 200_000.0)),
        "drift": draw(st.floats(0.0, 0.2)),
        "headroom": draw(st.floats(0.0, 0.3)),
        "tight_budgets": draw(st.booleans()),
        "kills": draw(st.booleans()),
        "policy_seed": draw(st.integers(0, 1000)),
    }


def play(sc: dict, policy: RampPolicy | None = None):
    """Run a scenario; returns (observations, allocations, policy)."""
    rng = np.random.default_rng(sc["seed"])
    n, ticks = sc["n"], sc["ticks"]
    policy = policy or RampPolicy(seed=sc["policy_seed"])
    arrive = rng.integers(0, ticks, n)
    arrive[rng.random(n) < 0.5] = 0
    leave = np.minimum(arrive + rng.integers(1, ticks + 1, n), ticks + 1)
    if sc["tight_budgets"]:
        budget = np.where(rng.random(n) < 0.5, rng.uniform(0, 0.2, n) * sc["plan"], np.inf)
    else:
        budget = np.full(n, np.inf)
    quality = rng.lognormal(0.0, 0.7, n)
    fake = rng.random(n) < 0.2
    viewers0 = rng.lognormal(5.5, 1.0, n)
    plan = sc["plan"]
    alloc = np.zeros(n)
    out = []
    for k in range(ticks):
        t = k * 30.0
        plan = plan * (1.0 + rng.uniform(-sc["drift"], sc["drift"]))
        live = (arrive <= k) & (k < leave)
        viewers = viewers0 * rng.uniform(0.8, 1.2, n)
        burst = rng.random(n) < 0.15
        entries = rng.poisson(alloc * np.where(fake, 0.07, 0.045)).astype(float)
        orders = np.where(fake, 0.0, rng.binomial(entries.astype(np.int64), np.clip(0.05 * quality, 0, 1))).astype(float)
        likes = rng.poisson(viewers * 0.4 * np.where(burst, 6.0, 1.0) * np.where(fake, 5.0, 1.0)).astype(float)
        users = viewers * 0.12
        m = rng.random(n) < 0.1
        ms = np.flatnonzero(m & live)
        obs = make_obs(
            n,
            t,
            plan=plan,
            pool_cap=plan * (1.0 + sc["headroom"]),
            live=live,
            category=rng.integers(0, 6, n),
            history=np.where(rng.random(n) < 0.5, quality, np.nan),
            budget=budget,
            planned_end=np.where(rng.random(n) < 0.5, (leave + 2) * 30.0, np.nan),
            viewers=viewers,
            impressions=alloc,
            entries=entries,
            watch_s=entries * np.where(fake, 5.0, 60.0),
            orders=orders + fake * rng.poisson(0.5, n),
            orders_held=fake * rng.poisson(0.5, n),
            orders_cancelled=rng.poisson(0.1, n),
            organic_entries=rng.poisson(viewers * 0.06 * np.where(burst & ~fake, 2.0, 1.0)).astype(float),
            organic_orders=rng.poisson(viewers * 0.003).astype(float),
            likes=likes,
            comments=rng.poisson(viewers * 0.06).astype(float),
            shallow_capped=np.where(fake, likes * 0.2, likes * 0.97),
            users=users,
            trusted_users=np.where(fake, users * 0.02, users * 0.55),
            moment_slot=ms,
            moment_start=np.full(ms.size, t - 10.0),
            moment_end=np.full(ms.size, t + 90.0),
            moment_score=np.full(ms.size, 0.7),
        )
        if sc["kills"] and rng.random() < 0.1:
            policy.kill(int(rng.integers(0, n)))
        a = policy.step(obs)
        out.append((obs, a))
        alloc = np.where(live, a.impressions, 0.0)
    return out, policy


def check_invariants(run, policy):
    o = policy.options
    spent = {}
    prev = None
    prev_live = None
    for obs, a in run:
        x = a.impressions[: obs.n]
        live = obs.live
        assert np.all(np.isfinite(x)) and np.all(x >= 0)
        assert np.all(x[~live] == 0)
        # hard caps
        assert np.all(x <= o.max_share * obs.plan + EPS), "max share per room"
        assert x.sum() <= obs.pool_cap + EPS, "pool cap"
        for i in np.flatnonzero(live):
            spent[i] = spent.get(i, 0.0) + x[i]
            assert spent[i] <= obs.budget[i] + EPS, "room budget"
        # ramp limits
        if prev is not None:
            both = live & prev_live
            p = np.where(both, prev, 0.0)
            probe = policy.probe_size(obs.plan, int(live.sum()))
            up_ok = np.where(p > EPS, x <= o.ramp_up * p + EPS, x <= probe + EPS)
            assert np.all(up_ok[live]), "ramp-up limit"
            down_ok = (x >= (1 - o.ramp_down) * p - EPS) | a.kill | ((1 - o.ramp_down) * p < o.min_share * obs.plan)
            assert np.all(down_ok[both]), "ramp-down limit"
        else:
            assert np.all(x <= policy.probe_size(obs.plan, int(live.sum())) + EPS)
        # every live room says why
        for i in np.flatnonzero(live):
            assert a.reason(i).strip()
            assert a.tier[i] >= 0
        prev, prev_live = x, live


@SETTINGS
@given(scenarios())
def test_caps_and_ramp_limits_hold(sc):
    run, policy = play(sc)
    check_invariants(run, policy)


@SETTINGS
@given(scenarios())
def test_every_new_room_is_probed_within_five_minutes(sc):
    sc = dict(sc, ticks=max(sc["ticks"], 12), kills=False)
    run, policy = play(sc)
    n = sc["n"]
    first = {}
    for k, (obs, _a) in enumerate(run):
        for i in np.flatnonzero(obs.live):
            if i not in first:
                first[i] = k
    for i, k0 in first.items():
        window = [(obs, a) for obs, a in run[k0 : k0 + 10] if obs.live[i]]
        if len(window) < 10:
            continue  # left (or the run ended) before five minutes had passed
        budget = window[0][0].budget[i]
        want = [min(policy.probe_size(obs.plan, int(obs.live.sum())), budget) for obs, _ in window]
        got = [a.impressions[i] for _, a in window]
        assert any(g >= w * (1 - 1e-9) - EPS for g, w in zip(got, want)), f"room {i} not probed within 5 minutes"
    assert n >= 1


@SETTINGS
@given(scenarios())
def test_same_seed_same_decisions(sc):
    run1, _ = play(sc)
    run2, _ = play(sc)
    for (_, a1), (_, a2) in zip(run1, run2):
        assert np.array_equal(a1.impressions, a2.impressions)
        assert np.array_equal(a1.tier, a2.tier)
        assert [a1.reason(i) for i in range(a1.impressions.size)] == [a2.reason(i) for i in range(a2.impressions.size)]


def _fake_room_run(seed: int, honest: int, ticks: int = 60):
    """Slot 0 fakes engagement (bots: likes from a few accounts, click-bait entries that leave in
    seconds, no orders, like bursts that ACE reports as moments); the rest are honest rooms."""
    rng = np.random.default_rng(seed)
    n = honest + 1
    policy = RampPolicy(seed=seed)
    alloc = np.zeros(n)
    viewers = rng.lognormal(5.5, 0.6, n)
    viewers[0] = 900.0  # bots inflate the viewer count
    quality = rng.lognormal(0.3, 0.4, n)
    shares = []
    for k in range(ticks):
        t = 30.0 * k
        entries = rng.poisson(alloc * 0.045).astype(float)
        entries[0] = rng.poisson(alloc[0] * 0.08)
        orders = rng.binomial(entries.astype(np.int64), np.clip(0.05 * quality, 0, 1)).astype(float)
        orders[0] = 0.0
        watch = entries * 60.0
        watch[0] = entries[0] * 5.0
        likes = rng.poisson(viewers * 0.4).astype(float)
        burst = k % 8 in (3, 4)
        likes[0] = rng.poisson(30 * 30 * (5.0 if burst else 1.0))
        capped = likes * 0.97
        capped[0] = 30 * 10.0
        users = viewers * 0.12
        users[0] = 35.0
        trusted = users * 0.55
        trusted[0] = 1.0
        ms = np.array([0]) if burst else np.zeros(0, dtype=np.int64)
        obs = make_obs(
            n,
            t,
            live=True,
            category=category_code("beauty"),
            viewers=viewers,
            impressions=alloc,
            entries=entries,
            watch_s=watch,
            orders=orders,
            organic_entries=rng.poisson(viewers * 0.06).astype(float),
            organic_orders=rng.poisson(viewers * 0.003).astype(float),
            likes=likes,
            comments=rng.poisson(viewers * 0.06).astype(float),
            shallow_capped=capped,
            users=users,
            trusted_users=trusted,
            moment_slot=ms,
            moment_start=np.full(ms.size, t - 15.0),
            moment_end=np.full(ms.size, t + 45.0),
            moment_score=np.full(ms.size, 0.8),
        )
        a = policy.step(obs)
        alloc = a.impressions.copy()
        shares.append(a.share.copy())
    return np.array(shares), policy


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 12))
def test_fake_engagement_room_does_not_ramp(seed, honest):
    shares, policy = _fake_room_run(seed, honest)
    fake = shares[:, 0]
    probe = fake[fake > 0][0]
    assert fake.max() <= 1.5 * probe + 1e-12
    assert fake[-10:].max() < probe  # cooled (or killed) by the end
    assert policy.room_state(0).boost == 0.0


def test_honest_rooms_do_ramp_past_the_probe():
    shares, _ = _fake_room_run(7, 6)
    assert shares[:, 1:].max() > 2 * shares[:, 1:][shares[:, 1:] > 0].min()


def test_kill_switch_cuts_at_once_and_is_flagged():
    p = RampPolicy(seed=1)
    n = 3
    alloc = np.zeros(n)
    rng = np.random.default_rng(0)
    for k in range(12):
        c = {
            "live": np.ones(n, bool),
            "viewers": np.full(n, 500.0),
            "impressions": alloc,
            "entries": alloc * 0.05,
            "watch_s": alloc * 0.05 * 60,
            "orders": rng.poisson(alloc * 0.004).astype(float) + (k == 1),
            "users": np.full(n, 60.0),
            "trusted_users": np.full(n, 40.0),
        }
        a = p.step(make_obs(n, 30.0 * k, **c))
        alloc = a.impressions.copy()
    assert alloc[1] > 0
    p.kill(1)
    a = p.step(make_obs(n, 360.0, live=True, viewers=500.0, impressions=alloc, users=60.0, trusted_users=40.0))
    assert a.impressions[1] == 0.0 and a.kill[1]
    assert "kill switch" in a.reason(1)
    p.kill(1, on=False)
    a = p.step(make_obs(n, 390.0, live=True, viewers=500.0, impressions=a.impressions, users=60.0, trusted_users=40.0))
    assert 0 < a.impressions[1] <= p.options.probe_share * a.plan + EPS


def test_observation_shorter_than_state_is_padded():
    p = RampPolicy()
    p.step(make_obs(5, 0.0, live=True, viewers=100.0))
    a = p.step(make_obs(3, 30.0, live=True, viewers=100.0))
    assert a.impressions.shape[0] == 5 and a.impressions[3:].sum() == 0


def test_budget_exhaustion_is_a_hard_cap():
    p = RampPolicy()
    budget = np.array([500.0, np.inf])
    spent = np.zeros(2)
    alloc = np.zeros(2)
    for k in range(20):
        a = p.step(
            make_obs(
                2,
                30.0 * k,
                live=True,
                viewers=400.0,
                budget=budget,
                impressions=alloc,
                entries=alloc * 0.05,
                watch_s=alloc * 3.0,
                orders=alloc * 0.004 + (k == 1),
            )
        )
        alloc = a.impressions.copy()
        spent += alloc
    assert spent[0] <= 500.0 + EPS
    assert isinstance(Observation.empty(1), Observation)
