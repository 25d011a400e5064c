"""Metrics of a simulated day, their summary over seeds, and the targets the ramp policy must meet.

Per trace (:func:`trace_metrics`):

* ``orders_per_1k`` — genuine promoted orders per 1,000 promoted impressions.
* ``lift_vs_proportional`` / ``lift_vs_thompson`` — relative gain of ``orders_per_1k`` over
  that baseline on the same seed; ``regret`` — ``1 - orders / oracle orders`` on the same seed
  (both set by :func:`relative_metrics`).
* ``cap_violations`` — room-ticks over the max share, ticks over the pool cap, rooms over budget.
* ``ramp_violations`` — room-ticks that rose more than 2x (beyond the probe size from zero) or fell
  more than 30% without a kill flag (unless 70% of the previous allocation is under 0.1% of
  the plan: switching off a negligible allocation is allowed).
* ``util_error`` — ``|sum allocated - sum spendable| / sum spendable``, where a tick's
  *spendable* plan is ``min(plan, capacity)`` and its capacity is what the hard caps let any
  policy spend: the sum over live rooms of ``min(max_share x plan, budget left)`` (budget left
  after the policy's own spending so far). The plan is fixed in advance and does not follow the
  live rooms: a tick with fewer than ``1 / max_share`` rooms live cannot spend it, by any policy,
  and a pacing plan can only ask for what can be spent. The same definition holds for every
  policy; the policy's own limits (ramp limits, probes, gates) are not excused. Where the caps
  never bind this is the plain ``|sum allocated - sum planned| / sum planned`` (the default 4 h
  and 24 h days: about 35 rooms live at a time, see :class:`~ace.policy.simulator.SimOptions`).
  On a sparse day (``--rooms 20 --hours 24``: about 6 rooms live, a sixth of the plan beyond the
  caps) the ramp policy leaves about 10% of the spendable plan unspent where the baselines spend
  it all: the capacity of killed gaming rooms, of rooms at probe size and of rooms without deep
  evidence, which its safety layer keeps out of the pool on purpose.
* ``plan_spendable`` — ``sum spendable / sum planned`` (no target: how much of the plan the hard
  caps let through, shown so that the utilisation error is read against it).
* ``t2x_median_s`` / ``t2x_p90_s`` — seconds from a detected highlight's onset to the start of the
  first tick with at least twice the allocation of the onset tick (or the max share, if lower);
  highlights in rooms with no allocation at onset are left out; a highlight never reaching it
  within its duration plus 5 minutes counts as infinitely slow.
* ``fake_max_over_probe`` — over adversarial rooms, the largest ``max share / first share``.
* ``fake_pool_share`` — adversarial rooms' share of all promoted impressions.
* ``probed_5min`` — share of rooms given at least half a default probe (the smaller of
  ``probe_share`` of the plan and half an even split over the live rooms) within 5 minutes of
  arriving.
* ``tier_switches_per_room_hour`` — tier changes per live room-hour (NaN without tiers).

The clip loop (:func:`clip_loop_metrics`, over :func:`~ace.policy.simulator.run_clip_loop`'s
runs): promoted ``entries_per_1k``, ``orders_per_1k`` and ``gmv_per_1k`` (genuine orders times
the room's order value) per 1,000 promoted impressions; ``good_clip_share``, the share of promoted
impressions given to rooms whose clips draw the best click-through (the top quarter of rooms with
clips); the ``clip_views`` and ``clip_clicks`` reported, the ``clip_entries`` (viewers the clips
brought into their rooms) and their ``clip_orders`` and ``clip_gmv`` (0 without the loop); and
``fake_pool_share`` as above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ace.policy.simulator import Trace


@dataclass(frozen=True)
class Metric:
    """One metric: how to show it and, for the ramp policy, its target."""

    name: str
    label: str
    fmt: str = "{:.3f}"
    #: target as (operator, value), operator one of ">=", "<=", "=="; None for no target
    target: tuple[str, float] | None = None
    #: "mean" checks the mean over seeds, "worst" the worst seed
    check: str = "mean"

    def passes(self, values: Sequence[float]) -> bool | None:
        if self.target is None:
            return None
        op, bound = self.target
        vals = np.asarray(values, dtype=float)
        if self.check == "worst":
            v = vals.max() if op in ("<=", "==") else vals.min()
        else:
            v = float(np.mean(vals))
        if op == ">=":
            return bool(v >= bound - 1e-12)
        if op == "<=":
            return bool(v <= bound + 1e-12)
        return bool(abs(v - bound) <= 1e-12)

    def target_text(self) -> str:
        if self.target is None:
            return ""
        op, bound = self.target
        text = self.fmt.format(bound)
        return f"{'≥' if op == '>=' else '≤' if op == '<=' else '='} {text}" + (" (all seeds)" if self.check == "worst" else "")


METRICS: tuple[Metric, ...] = (
    Metric("orders_per_1k", "orders / 1k promoted imps", "{:.3f}"),
    Metric("lift_vs_proportional", "lift vs proportional", "{:+.1%}", (">=", 0.20)),
    Metric("lift_vs_thompson", "lift vs thompson", "{:+.1%}", (">=", 0.08)),
    Metric("regret", "regret vs oracle", "{:.1%}", ("<=", 0.12)),
    Metric("cap_violations", "cap violations", "{:.0f}", ("==", 0.0), "worst"),
    Metric("ramp_violations", "ramp-limit violations", "{:.0f}", ("==", 0.0), "worst"),
    Metric("util_error", "util. error vs spendable", "{:.2%}", ("<=", 0.02)),
    Metric("plan_spendable", "plan spendable under caps", "{:.1%}"),
    Metric("t2x_median_s", "highlight → 2× median (s)", "{:.0f}", ("<=", 60.0)),
    Metric("t2x_p90_s", "highlight → 2× p90 (s)", "{:.0f}", ("<=", 180.0)),
    Metric("fake_max_over_probe", "fake rooms: max / probe", "{:.2f}", ("<=", 1.5), "worst"),
    Metric("fake_pool_share", "fake rooms: pool share", "{:.2%}", ("<=", 0.01), "worst"),
    Metric("probed_5min", "new rooms probed ≤ 5 min", "{:.1%}", (">=", 1.0), "worst"),
    Metric("tier_switches_per_room_hour", "tier switches / room-hour", "{:.2f}", ("<=", 6.0)),
    Metric("highlights", "highlights measured", "{:.0f}"),
    Metric("orders", "genuine promoted orders", "{:.0f}"),
    Metric("seconds", "decision time / day (s)", "{:.2f}"),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}


def trace_metrics(tr: Trace) -> dict[str, float]:
    """Metrics of one trace that need no other policy (see the module docstring)."""
    w = tr.world
    o = tr.options
    a, live, plan = tr.alloc, tr.live, tr.plan
    imps = float(a.sum())
    orders = float(tr.orders.sum())
    out: dict[str, float] = {
        "orders": orders,
        "expected_orders": float(tr.expected_orders.sum()),
        "impressions": imps,
        "orders_per_1k": 1000.0 * orders / imps if imps > 0 else 0.0,
        "seconds": tr.seconds,
    }
    # caps
    eps = 1e-6
    over_share = int((a > o.max_share * plan[:, None] * (1 + 1e-9) + eps).sum())
    over_pool = int((a.sum(axis=1) > tr.pool_cap + eps).sum())
    over_budget = int((a.sum(axis=0) > w.budget + eps).sum())
    out["cap_violations"] = float(over_share + over_pool + over_budget)
    # ramp limits
    prev, cur = a[:-1], a[1:]
    both = live[:-1] & live[1:]
    probe = o.probe_share * plan[1:, None]
    up_bad = both & (cur > np.maximum(2.0 * prev, np.where(prev > eps, 0.0, probe)) + 1e-6)
    down_bad = both & (cur < 0.7 * prev - 1e-6) & ~tr.kill[1:] & (0.7 * prev >= 0.001 * plan[1:, None])
    out["ramp_violations"] = float(up_bad.sum() + down_bad.sum())
    spendable = spendable_plan(tr)
    total = float(spendable.sum())
    out["util_error"] = abs(imps - total) / total if total > 0 else (0.0 if imps <= eps else math.inf)
    out["plan_spendable"] = total / float(plan.sum()) if float(plan.sum()) > 0 else 1.0
    # highlight ramp
    t2x = highlight_latencies(tr)
    out["highlights"] = float(t2x.size)
    out["t2x_median_s"] = _pct(t2x, 50)
    out["t2x_p90_s"] = _pct(t2x, 90)
    # fake rooms
    share = a / plan[:, None]
    fr = np.flatnonzero(w.fake)
    ratios = []
    for i in fr:
        s = share[:, i][live[:, i]]
        nz = s[s > 0]
        ratios.append(float(nz.max() / nz[0]) if nz.size else 0.0)
    out["fake_max_over_probe"] = max(ratios) if ratios else 0.0
    out["fake_pool_share"] = float(a[:, fr].sum()) / imps if imps > 0 else 0.0
    # probes
    dt = w.dt
    probed = []
    for i in range(w.N):
        k0 = w.arrive_tick[i]
        if w.leave_tick[i] * dt - w.arrive[i] < 300.0:
            continue
        ks = np.arange(k0, min(w.leave_tick[i], w.T))
        ks = ks[w.t[ks] <= w.arrive[i] + 300.0 + 1e-9]
        default_probe = plan[ks] * np.minimum(o.probe_share, 0.5 / np.maximum(live[ks].sum(axis=1), 1))
        probed.append(bool((a[ks, i] >= 0.5 * default_probe - eps).any()))
    out["probed_5min"] = float(np.mean(probed)) if probed else 1.0
    # tiers
    tr_ = tr.tier
    if (tr_ >= 0).any():
        sw = ((tr_[1:] != tr_[:-1]) & (tr_[1:] >= 0) & (tr_[:-1] >= 0)).sum()
        room_hours = float(live.sum()) * dt / 3600.0
        out["tier_switches_per_room_hour"] = float(sw) / room_hours if room_hours > 0 else 0.0
    else:
        out["tier_switches_per_room_hour"] = math.nan
    return out


def spendable_plan(tr: Trace) -> np.ndarray:
    """Per tick, the part of the plan the hard caps let a policy spend: ``min(plan, sum over live
    rooms of min(max_share x plan, budget left))``, the budget left being what the room's budget
    minus what this policy gave it before the tick (see ``util_error`` in the module docstring)."""
    w, o = tr.world, tr.options
    a = tr.alloc
    spent_before = np.cumsum(a, axis=0) - a
    left = np.maximum(w.budget[None, :] - spent_before, 0.0)
    cap = np.where(tr.live, np.minimum(o.max_share * tr.plan[:, None], left), 0.0).sum(axis=1)
    return np.minimum(tr.plan, cap)


def highlight_latencies(tr: Trace) -> np.ndarray:
    """Seconds from each detected highlight's onset to the first tick with 2x the onset tick's
    allocation (capped at the max share); ``inf`` when not reached in time."""
    w, o = tr.world, tr.options
    dt = w.dt
    out = []
    for room, onset, end, _lift, det, _dtime in w.highlights:
        if not det:
            continue
        i = int(room)
        k0 = int(onset // dt)
        if k0 >= w.T or not tr.live[k0, i]:
            continue
        base = tr.alloc[k0, i]
        if base <= 0:
            continue
        horizon = min(int(math.ceil((end + 300.0) / dt)), w.leave_tick[i], w.T)
        if horizon <= k0 + 1:
            continue
        ks = np.arange(k0 + 1, horizon)
        target = np.minimum(2.0 * base, o.max_share * tr.plan[ks])
        hit = np.flatnonzero(tr.alloc[ks, i] >= target * (1 - 1e-6))
        out.append(ks[hit[0]] * dt - onset if hit.size else math.inf)
    return np.asarray(out, dtype=float)


def _pct(x: np.ndarray, q: float) -> float:
    if x.size == 0:
        return math.nan
    xs = np.sort(x)
    idx = int(math.ceil(q / 100.0 * xs.size)) - 1
    return float(xs[max(idx, 0)])


def relative_metrics(results: dict[str, list[dict[str, float]]]) -> None:
    """Add per-seed ``lift_vs_proportional``, ``lift_vs_thompson`` and ``regret`` to every
    policy's metrics in place (NaN where the reference policy was not run)."""

    def ref(name: str, seed: int, key: str) -> float:
        runs = results.get(name)
        return runs[seed][key] if runs is not None and seed < len(runs) else math.nan

    for runs in results.values():
        for s, m in enumerate(runs):
            for key, name in (("lift_vs_proportional", "proportional"), ("lift_vs_thompson", "thompson")):
                base = ref(name, s, "orders_per_1k")
                m[key] = m["orders_per_1k"] / base - 1.0 if base > 0 else math.nan
            best = ref("oracle", s, "orders")
            m["regret"] = 1.0 - m["orders"] / best if best > 0 else math.nan


@dataclass(frozen=True)
class Summary:
    """One metric of one policy over seeds."""

    mean: float
    std: float
    values: tuple[float, ...]
    passed: bool | None = None


def summarize(results: dict[str, list[dict[str, float]]], target_policy: str = "ramp") -> dict[str, dict[str, Summary]]:
    """Mean and spread over seeds of every metric of every policy; targets are checked for
    ``target_policy`` only."""
    out: dict[str, dict[str, Summary]] = {}
    for name, runs in results.items():
        per: dict[str, Summary] = {}
        for m in METRICS:
            vals = tuple(float(r.get(m.name, math.nan)) for r in runs)
            arr = np.asarray(vals, dtype=float)
            finite = arr[np.isfinite(arr)]
            if finite.size == arr.size and arr.size:
                mean, std = float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
            elif np.isinf(arr).any():
                mean, std = math.inf, math.nan
            else:
                mean, std = math.nan, math.nan
            checkable = name == target_policy and not np.isnan(arr).all()
            passed = m.passes(vals) if checkable else None
            per[m.name] = Summary(mean, std, vals, passed)
        out[name] = per
    return out


def evaluate(traces: dict[str, list[Trace]]) -> dict[str, list[dict[str, float]]]:
    """Per-seed metrics of every policy, relative metrics included."""
    res = {name: [trace_metrics(t) for t in trs] for name, trs in traces.items()}
    relative_metrics(res)
    return res


#: what :func:`clip_loop_metrics` measures, in the order the report shows it
CLIP_LOOP_METRICS: tuple[Metric, ...] = (
    Metric("entries_per_1k", "promoted entries / 1k imps", "{:.2f}"),
    Metric("orders_per_1k", "orders / 1k promoted imps", "{:.3f}"),
    Metric("gmv_per_1k", "GMV / 1k promoted imps", "{:.1f}"),
    Metric("good_clip_share", "share to rooms with good clips", "{:.1%}"),
    Metric("clip_views", "clip views reported", "{:,.0f}"),
    Metric("clip_clicks", "clip click-throughs reported", "{:,.0f}"),
    Metric("clip_entries", "viewers brought by clips", "{:,.0f}"),
    Metric("clip_orders", "their orders", "{:,.0f}"),
    Metric("clip_gmv", "their GMV", "{:,.0f}"),
    Metric("fake_pool_share", "fake rooms: pool share", "{:.2%}"),
)


def clip_loop_metrics(tr: Trace) -> dict[str, float]:
    """The clip loop's metrics of one trace (see the module docstring)."""
    w = tr.world
    a = tr.alloc
    imps = float(a.sum())
    per_1k = 1000.0 / imps if imps > 0 else 0.0
    entries = tr.entries if tr.entries is not None else np.zeros_like(a)
    has = np.isfinite(w.clip_ctr)
    good = np.zeros(w.N, dtype=bool)
    if has.any():
        good = has & (np.nan_to_num(w.clip_ctr, nan=-1.0) >= np.quantile(w.clip_ctr[has], 0.75))
    on = bool(tr.options.clip_loop)
    live = w.live
    return {
        "entries_per_1k": float(entries.sum()) * per_1k,
        "orders_per_1k": float(tr.orders.sum()) * per_1k,
        "gmv_per_1k": float((tr.orders * w.basket[None, :]).sum()) * per_1k,
        "good_clip_share": float(a[:, good].sum()) / imps if imps > 0 else 0.0,
        "clip_views": float((w.clip_views * live).sum()) if on else 0.0,
        "clip_clicks": float((w.clip_clicks * live).sum()) if on else 0.0,
        "clip_entries": float(w.clip_entries.sum()) if on else 0.0,
        "clip_orders": float(w.clip_orders.sum()) if on else 0.0,
        "clip_gmv": float((w.clip_orders * w.basket[None, :]).sum()) if on else 0.0,
        "fake_pool_share": float(a[:, w.fake].sum()) / imps if imps > 0 else 0.0,
    }


def clip_loop_summary(traces: dict[str, list[Trace]]) -> dict[str, dict[str, Summary]]:
    """Mean and spread over seeds of :data:`CLIP_LOOP_METRICS` for each run of the clip loop."""
    out: dict[str, dict[str, Summary]] = {}
    for variant, trs in traces.items():
        per = [clip_loop_metrics(t) for t in trs]
        out[variant] = {}
        for m in CLIP_LOOP_METRICS:
            vals = tuple(float(r[m.name]) for r in per)
            arr = np.asarray(vals, dtype=float)
            std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
            out[variant][m.name] = Summary(float(arr.mean()) if arr.size else math.nan, std, vals)
    return out
