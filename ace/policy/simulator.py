"""A seeded simulator of a day of live rooms, to measure ramp policies side by side.

The world (:class:`World`) is drawn once per seed and is the same for every policy; only the
responses to promoted traffic depend on the policy, and those draw from their own seeded stream
(so policies meet the same luck as far as possible).

What it models, per room:

* **Arrivals and lifetimes**: ``rooms`` is a density, the rooms of every ``ROOMS_PER_H``
  (4) hours of the day, so a longer day has proportionally more rooms and about as many live at a
  time (a platform has arrivals all day: the defaults keep about 35 rooms live whether the day
  is 4 or 24 hours long). ``initial_live x rooms`` rooms are live when the day starts; the others
  arrive uniformly until half an hour before its end, at the rate that brings a 4 h day to
  ``rooms`` in all (:meth:`SimOptions.total_rooms`); lifetimes are log-normal. Rooms start and
  end on tick boundaries (a room arriving mid-tick is first seen at the next decision).
* **Latent quality**: entries per impression, orders per entry (log-normal around the category
  prior), watch time per entry (higher for better rooms), carts and follows; a streamer history
  that is a noisy view of quality (unknown for new streamers).
* **Saturating returns**: a room absorbs about ``S = saturation_k * sqrt(viewers)`` promoted
  impressions per tick; impression ``x`` is worth ``S * (1 - exp(-x / S))`` effective ones.
* **Organic viewers** with a daily curve and a slow random walk; organic entries and orders;
  likes and chat from a share of viewers, of whom a share have trusted accounts.
* **Highlights**: episodes (mean gap ``highlight_gap_s``, 2-5 minutes) that multiply conversion
  by 2-4x, lift entries, watch time and the room's capacity, and excite the chat. ACE detects an
  episode with probability ``detect_prob``, 5-20 s after onset (a provisional :class:`Moment`,
  delivered at the next decision); honest rooms also produce false moments.
* **Budgets and the plan**: the pacing plan is ``pool`` impressions per tick per room live on
  average, on a smooth daily curve, with a hard cap ``pool_headroom`` above it; each room has a
  budget of ``budget_multiple`` even shares over its planned session (which differs from the
  real one by about 20%). The plan is fixed in advance and does not follow the live rooms, so
  when few rooms are live the hard caps (max share per room, budgets) may not let anyone spend
  it: the utilisation metric counts only what was spendable (see :mod:`ace.policy.metrics`).
* **Adversarial rooms**: bots with many likes and chat from few accounts, inflated viewer
  counts, click-bait entries that leave within seconds, no real conversions, and like bursts that
  ACE reports as moments; half of them also "brush" fake orders from untrusted accounts that
  are cancelled minutes later.
* **Published clips** (``clip_loop``, on by default): every moment ACE delivers is cut and
  published at once. A clip's appeal follows what it shows (a real highlight with conversion lift
  ``L``: ``0.3 + 0.3 (L - 1)``; a false moment 0.3; a fake room's like burst 0.15); it gets about
  ``clip_reach x appeal`` views a tick, halving every ``clip_half_life_s``, while its room is live,
  and click-throughs at ``clip_ctr x appeal x sqrt(room quality)`` of its views. ``clip_return`` of
  the click-throughs enter the room: organic entries, viewers for about ``clip_stay_s``, and
  organic orders at ``clip_intent`` times the room's rate. The platform reports the views and
  clicks as ``clip_views`` / ``clip_clicks`` (a user counts once per clip); a fake room's bots
  view and click its clips too, once per clip every 15 minutes each (what the live tally's
  per-user caps let through). Without the loop the same clips are drawn but not published.

:func:`run` plays one policy through one world and returns a :class:`Trace`; :func:`run_many`
plays several policies over several seeds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ace.policy.state import CATEGORIES, DEFAULT_PRIORS, Observation, effective_impressions
from ace.types import Moment

log = logging.getLogger("ace.policy")


@dataclass(frozen=True)
class SimOptions:
    """A simulated day. Defaults give about 35 rooms live at a time (a plan of about 21,000
    promoted impressions per 30 s tick) and run in about a second per policy (4 h)."""

    seed: int = 0
    rooms: int = 120  #: rooms per ROOMS_PER_H hours of the day (a density: arrivals scale with ``hours``)
    hours: float = 4.0  #: length of the day
    tick_s: float = 30.0  #: decision interval
    pool: float = 600.0  #: promoted impressions per tick in the pacing plan, per room live on average
    pool_headroom: float = 0.10  #: hard pool cap = plan * (1 + headroom)
    diurnal: float = 0.25  #: amplitude of the plan's and the audience's daily curve
    max_share: float = 0.15  #: max share per room the harness checks (and the baselines obey)
    probe_share: float = 0.015  #: largest probe (share of the plan) the harness allows from zero
    initial_live: float = 0.35  #: share of rooms already live at the start
    lifetime_median_h: float = 1.5
    lifetime_sigma: float = 0.5
    fake_frac: float = 0.08  #: adversarial rooms
    brushing_frac: float = 0.5  #: of those, rooms that also brush fake orders
    quality_sigma: float = 0.55  #: spread of conversion quality (log-normal sigma)
    history_known: float = 0.7  #: share of streamers with a history
    history_noise: float = 0.35  #: log-normal noise of the history around true quality
    viewers_median: float = 300.0
    viewers_sigma: float = 0.8
    saturation_k: float = 40.0
    saturation_noise: float = 0.25
    highlight_gap_s: float = 1200.0  #: mean time between highlight episodes of a room
    highlight_s: tuple[float, float] = (120.0, 300.0)
    highlight_lift: tuple[float, float] = (2.0, 4.0)  #: conversion multiplier during an episode
    capacity_exponent: float = 0.7  #: a highlight with conversion lift L lifts the room's saturation scale by L ** this
    detect_prob: float = 0.85
    detect_delay_s: tuple[float, float] = (5.0, 20.0)  #: onset to ACE's (provisional) moment
    false_moment_gap_s: float = 2400.0
    fake_burst_gap_s: float = 360.0
    budget_multiple: float = 4.0  #: room budget = this x an even share x planned session ticks
    clip_loop: bool = True  #: moments are published as clips whose views and clicks bring viewers back
    clip_reach: float = 150.0  #: views a tick of a fresh clip of appeal 1
    clip_half_life_s: float = 1200.0  #: a clip's views halve every this long
    clip_ctr: float = 0.05  #: click-through rate of a clip of appeal 1 from a room of quality 1
    clip_return: float = 0.7  #: share of click-throughs that reach the room
    clip_stay_s: float = 240.0  #: mean time a viewer brought by a clip stays
    clip_intent: float = 1.5  #: viewers brought by a clip order this many times as often as organic ones

    def initial_rooms(self) -> int:
        """Rooms live when the day starts."""
        return int(round(self.rooms * self.initial_live))

    def total_rooms(self) -> int:
        """Rooms over the whole day: the initial ones plus arrivals at the rate of ``rooms`` per
        ``ROOMS_PER_H`` hours (which arrive over the first ``ROOMS_PER_H`` hours less half an hour)."""
        n0 = self.initial_rooms()
        window = _arrival_window(self.hours * 3600.0, self.tick_s)
        ref = _arrival_window(ROOMS_PER_H * 3600.0, self.tick_s)
        return n0 + int(round(max(self.rooms - n0, 0) * window / ref))


#: ``SimOptions.rooms`` counts the rooms of this many hours of the day
ROOMS_PER_H = 4.0


def _arrival_window(day_s: float, tick_s: float) -> float:
    """Seconds from the start of the day during which rooms arrive (until half an hour before its end)."""
    return max(day_s - 1800.0, float(tick_s))


@dataclass
class Trace:
    """One policy through one simulated day. Arrays are ``[tick, room]`` unless noted."""

    policy: str
    options: SimOptions
    t: np.ndarray  #: [tick] decision times
    plan: np.ndarray  #: [tick]
    pool_cap: np.ndarray  #: [tick]
    price: np.ndarray  #: [tick] the policy's pool price
    live: np.ndarray
    alloc: np.ndarray  #: impressions
    tier: np.ndarray  #: tier code, -1 not live, -2 live without tiers
    kill: np.ndarray
    orders: np.ndarray  #: genuine promoted orders
    expected_orders: np.ndarray  #: their expectation given the allocation
    fake_orders: np.ndarray  #: brushed orders (reported, not genuine)
    world: World
    seconds: float = 0.0  #: wall time of the policy's decisions
    reasons: dict[int, list[str]] = field(default_factory=dict)  #: room -> reason per tick (sample rooms only)
    entries: np.ndarray | None = None  #: promoted entries


class World:
    """Everything about one simulated day that does not depend on the policy."""

    def __init__(self, opts: SimOptions):
        self.opts = o = opts
        rng = np.random.default_rng([o.seed, 7])
        self.dt = dt = float(o.tick_s)
        self.T = T = max(2, int(round(o.hours * 3600.0 / dt)))
        self.N = N = o.total_rooms()
        self.t = np.arange(T) * dt
        day = o.hours * 3600.0
        # pacing plan with a smooth daily curve
        curve = 1.0 + o.diurnal * np.sin(2 * np.pi * (self.t / max(day, 1.0)) - np.pi / 2) * 0.5 + o.diurnal * 0.5
        curve = curve / curve.mean()
        # arrivals and lifetimes (tick aligned)
        n0 = min(o.initial_rooms(), N)
        arrive = np.concatenate([np.zeros(n0), rng.uniform(0.0, _arrival_window(day, dt), N - n0)])
        life = np.exp(rng.normal(math.log(o.lifetime_median_h * 3600.0), o.lifetime_sigma, N))
        life = np.clip(life, 1200.0, 8 * 3600.0)
        life[:n0] *= rng.uniform(0.2, 1.0, n0)
        life = np.maximum(life, 1200.0)
        self.arrive = arrive
        self.arrive_tick = np.ceil(arrive / dt - 1e-9).astype(np.int64)
        self.leave_tick = np.minimum(np.floor((arrive + life) / dt).astype(np.int64), T)
        self.leave_tick = np.maximum(self.leave_tick, self.arrive_tick + 1)
        ticks = np.arange(T)[:, None]
        self.live = (ticks >= self.arrive_tick[None, :]) & (ticks < self.leave_tick[None, :])
        # categories, fakes, quality
        self.category = rng.integers(0, len(CATEGORIES), N)
        pri = [DEFAULT_PRIORS.get(c) for c in CATEGORIES]
        cat_e = np.array([p.entry_rate for p in pri])[self.category]
        cat_o = np.array([p.order_rate for p in pri])[self.category]
        cat_w = np.array([p.watch_s for p in pri])[self.category]
        cat_c = np.array([p.cart_rate for p in pri])[self.category]
        cat_f = np.array([p.follow_rate for p in pri])[self.category]
        self.fake = rng.random(N) < o.fake_frac
        self.brushing = self.fake & (rng.random(N) < o.brushing_frac)
        q = np.exp(rng.normal(0.0, o.quality_sigma, N))
        self.quality = np.where(self.fake, 0.0, q)
        self.entry_rate = cat_e * np.exp(rng.normal(0.0, 0.25, N)) * np.where(self.fake, 1.6, 1.0)
        self.order_rate = np.clip(cat_o * self.quality, 0.0, 0.5)
        self.watch_s = np.where(self.fake, 6.0, cat_w * np.sqrt(q) * np.exp(rng.normal(0.0, 0.15, N)))
        self.cart_rate = np.where(self.fake, 0.0, np.clip(cat_c * q**0.7, 0.0, 0.8))
        self.follow_rate = cat_f * np.exp(rng.normal(0.0, 0.3, N)) * np.where(self.fake, 0.1, 1.0)
        known = rng.random(N) < np.where(self.fake, 0.2, o.history_known)
        hist = np.where(self.fake, 0.15, q) * np.exp(rng.normal(0.0, o.history_noise, N))
        self.history = np.where(known, hist, np.nan)
        # audience
        self.viewers0 = np.clip(np.exp(rng.normal(math.log(o.viewers_median), o.viewers_sigma, N)), 20.0, 20_000.0)
        self.bots = np.where(self.fake, rng.integers(20, 45, N), 0).astype(float)
        self.saturation = o.saturation_k * np.sqrt(self.viewers0 + 1.0) * np.exp(rng.normal(0.0, o.saturation_noise, N))
        walk = np.cumsum(rng.normal(0.0, 0.02, (T, N)), axis=0)
        aud_curve = (curve / curve.mean())[:, None]
        self.viewers = self.viewers0[None, :] * np.exp(walk - walk.mean(axis=0)) * aud_curve
        # budgets and plans
        mean_live = max(float(self.live.sum(axis=1).mean()), 1.0)
        self.plan = o.pool * mean_live * curve
        self.pool_cap = self.plan * (1.0 + o.pool_headroom)
        self.even_share = o.pool
        life_ticks = (self.leave_tick - self.arrive_tick).astype(float)
        planned_ticks = np.maximum(life_ticks * np.exp(rng.normal(0.0, 0.2, N)), 2.0)
        self.budget = o.budget_multiple * self.even_share * planned_ticks
        self.planned_end = self.arrive_tick * dt + planned_ticks * dt
        # highlights (honest rooms) and like bursts (fake rooms)
        self.lift_excess = np.zeros((T, N))  #: sum over episodes of overlap fraction x (lift - 1)
        self.hl_frac = np.zeros((T, N))  #: share of the tick inside an episode
        self.burst_frac = np.zeros((T, N))
        hl = []  # (room, onset, end, lift, detected, detect_time)
        moments = []  # (room, deliver_tick, Moment)
        for i in range(N):
            start, end = self.arrive_tick[i] * dt, self.leave_tick[i] * dt
            gap = o.fake_burst_gap_s if self.fake[i] else o.highlight_gap_s
            tt = start + rng.exponential(gap)
            while tt < end:
                if self.fake[i]:
                    dur, lift = rng.uniform(40.0, 100.0), 1.0
                else:
                    dur, lift = rng.uniform(*o.highlight_s), rng.uniform(*o.highlight_lift)
                e = min(tt + dur, end)
                k0, k1 = int(tt // dt), min(int(math.ceil(e / dt)), T)
                kk = np.arange(k0, k1)
                ov = (np.minimum((kk + 1) * dt, e) - np.maximum(kk * dt, tt)) / dt
                if self.fake[i]:
                    self.burst_frac[kk, i] += ov
                else:
                    self.lift_excess[kk, i] += ov * (lift - 1.0)
                    self.hl_frac[kk, i] += ov
                det = rng.random() < (0.9 if self.fake[i] else o.detect_prob)
                dtime = tt + rng.uniform(*o.detect_delay_s)
                if not self.fake[i]:
                    hl.append((i, tt, e, lift, det, dtime))
                if det:
                    score = float(np.clip(0.45 + 0.1 * lift + rng.normal(0.0, 0.05), 0.3, 1.0))
                    mstart = max(start, tt + rng.normal(0.0, 4.0))
                    moments.append((i, dtime, Moment(show_id=_room_id(i), start=mstart, end=max(mstart + 5.0, e), score=score, peak=mstart + 0.5 * dur)))
                tt = e + rng.exponential(gap)
            if not self.fake[i]:  # false moments: ACE fires, nothing happens
                tt = start + rng.exponential(o.false_moment_gap_s)
                while tt < end:
                    dtime = tt + rng.uniform(*o.detect_delay_s)
                    moments.append((i, dtime, Moment(show_id=_room_id(i), start=tt, end=tt + 30.0, score=float(rng.uniform(0.45, 0.6)), peak=tt + 10.0)))
                    tt += rng.exponential(o.false_moment_gap_s)
        self.hl_frac = np.minimum(self.hl_frac, 1.0)
        self.burst_frac = np.minimum(self.burst_frac, 1.0)
        self.highlights = np.array(hl, dtype=float).reshape(-1, 6)
        # moments are delivered at the first decision time at or after detection, while live
        self.moments_by_tick: dict[int, list[tuple[int, Moment]]] = {}
        for i, dtime, m in moments:
            k = int(math.ceil(dtime / dt - 1e-9))
            if k < self.leave_tick[i] and k < T:
                self.moments_by_tick.setdefault(k, []).append((i, m))
        # truth per tick (what the oracle knows)
        lift = 1.0 + self.lift_excess
        self.entry_lift = 1.0 + 0.3 * (lift - 1.0)
        self.conv_lift = lift / self.entry_lift
        self.cap_lift = lift**o.capacity_exponent
        self.watch_lift = 1.0 + 0.2 * (lift - 1.0)
        self.true_rate = self.entry_rate[None, :] * self.order_rate[None, :] * lift
        self.true_saturation = self.saturation[None, :] * self.cap_lift
        self._audience(np.random.default_rng([o.seed, 13]))
        #: each room's mean order value (for GMV), from its own seeded stream
        self.basket = np.exp(np.random.default_rng([o.seed, 19]).normal(math.log(40.0), 0.5, N))
        self._clips(np.random.default_rng([o.seed, 17]))

    def _audience(self, rng: np.random.Generator) -> None:
        """What happens in every room regardless of promotion: organic entries and orders, likes
        and chat, distinct and trusted users, bots, and brushed orders with their cancellations
        (all ``[tick, room]``; what tick ``k`` holds is reported at decision ``k + 1``)."""
        T, N = self.T, self.N
        live = self.live.astype(float)
        v = self.viewers * (1.0 + 0.3 * self.hl_frac)
        org_e = v * 0.06 * self.entry_lift * live + self.bots[None, :] * 0.05 * live
        self.organic_entries = rng.poisson(org_e).astype(float)
        self.organic_orders = rng.poisson(v * 0.06 * self.order_rate[None, :] * self.conv_lift * live).astype(float)
        hype = 1.0 + 2.0 * self.hl_frac
        likes = rng.poisson(v * 0.4 * hype * live).astype(float)
        comments = rng.poisson(v * 0.06 * hype * live).astype(float)
        users = rng.binomial(v.astype(np.int64), np.clip(0.12 * (1.0 + self.hl_frac), 0.0, 1.0)).astype(float) * live
        trusted = rng.binomial(users.astype(np.int64), 0.55).astype(float)
        capped = np.round((likes + comments) * 0.97)
        b = self.bots[None, :] * live
        bmult = 1.0 + 4.0 * self.burst_frac
        b_likes = rng.poisson(b * 30.0 * bmult).astype(float)
        b_comments = rng.poisson(b * 3.0 * bmult).astype(float)
        self.likes = likes + b_likes
        self.comments = comments + b_comments
        self.shallow_capped = capped + np.minimum(b_likes + b_comments, b * 10.0)
        self.users = users + b
        self.trusted_users = trusted + rng.binomial(b.astype(np.int64), 0.02)
        self.reported_viewers = self.viewers * (1.0 + 3.0 * self.fake[None, :])
        self.fake_orders = rng.poisson(0.6 * live * self.brushing[None, :]).astype(float)
        self.fake_cancel = np.zeros((T + 64, N))
        self.fake_cancel[12 : 12 + T] = rng.binomial(self.fake_orders.astype(np.int64), 0.9)

    def _clips(self, rng: np.random.Generator) -> None:
        """Published clips and what they bring back (see the module docstring), all ``[tick, room]``:
        ``clip_views`` and ``clip_clicks`` as the platform reports them (bots included),
        ``clip_entries`` (viewers a clip brought into the room) and ``clip_orders`` (their orders).
        Drawn whether or not the loop is on; only with it are they published and counted."""
        o, T, N, dt = self.opts, self.T, self.N, self.dt
        live = self.live.astype(float)
        quality = np.where(self.fake, 0.0, self.quality)
        horizon = int(math.ceil(5.0 * o.clip_half_life_s / dt))
        decay = 0.5 ** (np.arange(horizon) * dt / o.clip_half_life_s)
        views_lam, clicks_lam, active = np.zeros((T, N)), np.zeros((T, N)), np.zeros((T, N))
        ctr_sum, n_clips = np.zeros(N), np.zeros(N)
        for k, items in sorted(self.moments_by_tick.items()):
            for i, m in items:
                ks = min(max(int(m.start // dt), 0), T - 1)
                appeal = 0.15 if self.fake[i] else float(min(0.3 + 0.3 * self.lift_excess[ks, i], 1.3))
                ctr = float(min(o.clip_ctr * appeal * math.sqrt(quality[i]), 0.5))
                span = decay[: T - k]
                views_lam[k : k + span.size, i] += o.clip_reach * appeal * span
                clicks_lam[k : k + span.size, i] += o.clip_reach * appeal * ctr * span
                active[k : k + span.size, i] += 1.0
                ctr_sum[i] += ctr
                n_clips[i] += 1
        #: each room's mean click-through rate of its clips (NaN: no clip)
        self.clip_ctr = np.where(n_clips > 0, ctr_sum / np.maximum(n_clips, 1), np.nan)
        views = rng.poisson(views_lam * live).astype(float)
        p = np.divide(clicks_lam, views_lam, out=np.zeros_like(views_lam), where=views_lam > 0)
        clicks = rng.binomial(views.astype(np.int64), np.clip(p, 0.0, 1.0)).astype(float)
        bots = self.bots[None, :] * active * live * dt / 900.0  # each bot once per clip per 15 min
        self.clip_views = views + np.round(bots)
        self.clip_clicks = clicks + np.round(bots)
        back = rng.binomial(clicks.astype(np.int64), o.clip_return).astype(float)
        self.clip_entries = back
        p_order = np.minimum(self.order_rate[None, :] * self.conv_lift * o.clip_intent, 1.0)
        self.clip_orders = rng.binomial(back.astype(np.int64), p_order).astype(float)
        if not o.clip_loop:
            return
        self.organic_entries = self.organic_entries + back
        self.organic_orders = self.organic_orders + self.clip_orders
        stay = 0.5 ** (dt / max(o.clip_stay_s * math.log(2.0), 1e-9))  # a mean stay of clip_stay_s
        here = np.zeros((T, N))
        for k in range(T):
            here[k] = back[k] + (stay * here[k - 1] if k else 0.0)
        self.viewers = self.viewers + here * live
        self.reported_viewers = self.viewers * (1.0 + 3.0 * self.fake[None, :])

    def room_ids(self) -> list[str]:
        return [_room_id(i) for i in range(self.N)]


def _room_id(i: int) -> str:
    return f"room-{i:04d}"


class _Responses:
    """Draws what viewers who came from promotion did in one tick (the part of the world that
    depends on the policy)."""

    def __init__(self, world: World):
        self.w = world
        self.rng = np.random.default_rng([world.opts.seed, 11])
        self.cancel = world.fake_cancel.copy()

    def tick(self, k: int, x: np.ndarray) -> dict[str, np.ndarray]:
        w, rng = self.w, self.rng
        live = w.live[k]
        x = np.where(live, x, 0.0)
        eff = effective_impressions(x, w.true_saturation[k])
        lam_e = eff * w.entry_rate * w.entry_lift[k]
        entries = rng.poisson(lam_e)
        p = np.minimum(w.order_rate * w.conv_lift[k], 1.0)
        orders = rng.binomial(entries, p).astype(float)
        carts = rng.binomial(entries, np.minimum(w.cart_rate * w.conv_lift[k], 1.0)).astype(float)
        follows = rng.binomial(entries, np.minimum(w.follow_rate, 1.0)).astype(float)
        entries_f = entries.astype(float)
        watch = rng.gamma(np.maximum(4.0 * entries_f, 1e-9), 0.25) * w.watch_s * w.watch_lift[k] * (entries > 0)
        held = rng.binomial(orders.astype(np.int64), 0.1).astype(float)
        self.cancel[k + 6] += rng.binomial(held.astype(np.int64), 0.05)
        fake = w.fake_orders[k]
        return {
            "impressions": x,
            "entries": entries_f,
            "watch_s": watch,
            "follows": follows,
            "carts": carts,
            "orders": orders + fake,
            "orders_held": held + fake,
            "orders_cancelled": self.cancel[k].copy(),
            "organic_entries": w.organic_entries[k],
            "organic_orders": w.organic_orders[k],
            "likes": w.likes[k],
            "comments": w.comments[k],
            "shallow_capped": w.shallow_capped[k],
            "users": w.users[k],
            "trusted_users": w.trusted_users[k],
            **({"clip_views": w.clip_views[k], "clip_clicks": w.clip_clicks[k]} if w.opts.clip_loop else {}),
            "_entries": entries_f,
            "_genuine": orders,
            "_expected": lam_e * p,
            "_fake": fake,
        }


def run(policy, options: SimOptions | None = None, world: World | None = None, sample_rooms: Sequence[int] = ()) -> Trace:
    """Play ``policy`` (a :class:`~ace.policy.base.Policy`) through one simulated day.

    ``world`` may be passed to reuse one draw for several policies (it must come from the same
    options). ``sample_rooms`` get their decision reasons recorded.
    """
    o = options or SimOptions()
    w = world or World(o)
    resp = _Responses(w)
    T, N, dt = w.T, w.N, w.dt
    alloc = np.zeros((T, N))
    tier = np.full((T, N), -1, dtype=np.int8)
    kill = np.zeros((T, N), dtype=bool)
    orders = np.zeros((T, N))
    entries = np.zeros((T, N))
    expected = np.zeros((T, N))
    fake_orders = np.zeros((T, N))
    price = np.zeros(T)
    reasons: dict[int, list[str]] = {int(i): [] for i in sample_rooms}
    last: dict[str, np.ndarray] | None = None
    elapsed = 0.0
    empty_moments = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    for k in range(T):
        obs = Observation.empty(N, t=float(w.t[k]), dt=dt, plan=float(w.plan[k]), pool_cap=float(w.pool_cap[k]))
        obs.live = w.live[k].copy()
        obs.category = w.category
        obs.history = w.history
        obs.budget = w.budget
        obs.planned_end = w.planned_end
        obs.viewers = w.reported_viewers[k]
        if last is not None:
            for name, arr in last.items():
                if not name.startswith("_") and name != "viewers":
                    setattr(obs, name, np.where(w.live[k - 1], arr, 0.0))
        ms = w.moments_by_tick.get(k)
        if ms:
            obs.moment_slot = np.array([i for i, _ in ms], dtype=np.int64)
            obs.moment_start = np.array([m.start for _, m in ms])
            obs.moment_end = np.array([m.end for _, m in ms])
            obs.moment_score = np.array([m.score for _, m in ms])
        else:
            obs.moment_slot, obs.moment_start, obs.moment_end, obs.moment_score = empty_moments
        if getattr(policy, "needs_truth", False):
            obs.truth_rate = w.true_rate[k]
            obs.truth_saturation = w.true_saturation[k]
        t0 = time.perf_counter()
        a = policy.step(obs)
        elapsed += time.perf_counter() - t0
        x = np.where(w.live[k], a.impressions[:N], 0.0)
        alloc[k] = x
        tier[k] = np.where(w.live[k], a.tier[:N], -1)
        kill[k] = a.kill[:N]
        price[k] = a.price
        for i in reasons:
            reasons[i].append(a.reason(i) if w.live[k, i] else "")
        last = resp.tick(k, x)
        orders[k] = last["_genuine"]
        entries[k] = last["_entries"]
        expected[k] = last["_expected"]
        fake_orders[k] = last["_fake"]
    return Trace(
        policy=getattr(policy, "name", type(policy).__name__),
        options=o,
        t=w.t.copy(),
        plan=w.plan.copy(),
        pool_cap=w.pool_cap.copy(),
        price=price,
        live=w.live,
        alloc=alloc,
        tier=tier,
        kill=kill,
        orders=orders,
        expected_orders=expected,
        fake_orders=fake_orders,
        world=w,
        seconds=elapsed,
        reasons=reasons,
        entries=entries,
    )


def run_many(
    policies: Sequence[str],
    seeds: Sequence[int],
    options: SimOptions | None = None,
    factory: Callable[[str, int], object] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, list[Trace]]:
    """Every policy (by catalogue name) over every seed; the same world per seed for all."""
    from dataclasses import replace

    from ace.policy import get_policy

    make = factory or (lambda name, seed: get_policy(name, seed=seed))
    o = options or SimOptions()
    out: dict[str, list[Trace]] = {p: [] for p in policies}
    for seed in seeds:
        so = replace(o, seed=int(seed))
        world = World(so)
        for name in policies:
            if progress:
                progress(name, int(seed))
            out[name].append(run(make(name, int(seed)), so, world))
    return out


#: the runs :func:`run_clip_loop` compares, in order
CLIP_LOOP_VARIANTS: tuple[str, ...] = ("without loop", "loop, clips ignored", "with loop")


def run_clip_loop(
    seeds: Sequence[int],
    options: SimOptions | None = None,
    with_loop: Sequence[Trace] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, list[Trace]]:
    """The ramp policy over ``seeds`` three ways (:data:`CLIP_LOOP_VARIANTS`): on days without
    the clip loop; on days with it, the policy ignoring clip interest (``clip_lift_max=0``); and
    with it, the policy counting it. ``with_loop`` reuses traces of the ramp policy already run on
    the loop's days (one per seed, in order)."""
    from dataclasses import replace

    from ace.policy.ramp import RampPolicy

    o = options or SimOptions()
    out: dict[str, list[Trace]] = {v: [] for v in CLIP_LOOP_VARIANTS}
    for n, seed in enumerate(seeds):
        on, off = replace(o, seed=int(seed), clip_loop=True), replace(o, seed=int(seed), clip_loop=False)
        world = World(on)
        for variant in CLIP_LOOP_VARIANTS:
            if progress:
                progress(variant, int(seed))
            if variant == "with loop" and with_loop is not None and n < len(with_loop):
                out[variant].append(with_loop[n])
            elif variant == "without loop":
                out[variant].append(run(RampPolicy(seed=int(seed)), off, World(off)))
            elif variant == "loop, clips ignored":
                out[variant].append(run(RampPolicy(seed=int(seed), clip_lift_max=0.0), on, world))
            else:
                out[variant].append(run(RampPolicy(seed=int(seed)), on, world))
    return out
