"""The traffic-ramp policy: Bayesian room values, corroborated highlight boosts, priced
water-filling, and the safety layer (caps, ramp limits, tiers, probes, anti-gaming).

One tick of :meth:`RampPolicy.step`, in order:

1. **New rooms** get a state row: priors from their category and streamer history, tier PROBE.
2. **Audience checks** compare the tick just ended with the room's own baselines (running means,
   then EWMAs): a *deep-lift* z-score (entries, trusted orders, watch time per entry — promoted
   and organic) and a *shallow* z-score (likes + comments). A *shallow burst* — likes and chat
   spike, deep signals do not, and per-user caps remove most of it or few of the users are
   trusted — *freezes* the ramp for ``freeze_s`` and *flags* the room; ``kill_after_flags``
   flags without deep evidence trip the kill switch.
3. **Evidence** from *promoted* traffic only updates discounted counts (half-life
   ``half_life_s``): effective impressions, entries, watch seconds, follows, carts and credited
   orders. Orders by new or untrusted buyers are *held* for ``order_hold_s`` and credited only
   if not cancelled and the room is not flagged meanwhile. Ticks inside a highlight count
   ``highlight_evidence`` as much (they say little about the room's base rates).
4. **Highlights**: an ACE moment opens a corroboration window (``moment_window_s`` or until the
   moment's end). It is *corroborated* when the deep-lift z-score reaches ``corroborate_z``
   (likes and comments do not count) with at least ``min_trusted_users`` distinct trusted
   users. The boost ``B`` is then the measured conversion lift minus one (trusted orders seen
   over orders expected since the moment started, shrunk towards the typical lift learned across
   rooms), clipped to ``[boost_min, boost_max]``; a boosted room's value and capacity scale by
   ``1 + B``, and for ``floor_s`` after each corroboration its allocation is held at
   ``(1 + B) x`` its pre-highlight allocation (within the ramp-up limit). ``B`` decays with
   half-life ``boost_half_life_s``, or ``boost_fade_s`` once the deep signals are back at baseline.
5. **Value**: orders per effective impression = entries/impression x orders/entry, each a Gamma
   posterior; the orders/entry prior scales with the room's watch time relative to its category
   (viewers who leave in seconds do not buy). PROBE, RAMP and COOL rooms use a (tempered)
   Thompson sample, SUSTAIN rooms the posterior mean. Interest in the room from its published
   clips (``clip_click_weight`` 1 per click-through, a strong signal: a click brings a viewer to
   the room; ``clip_view_weight`` 0.05 per view, a weak one; both already capped per user by the
   tally) is smoothed with half-life ``clip_half_life_s`` into ``I`` and multiplies the value by
   ``1 + clip_lift_max * I / (I + clip_interest_k)`` (at most x1.25), never for a flagged, frozen
   or killed room. It changes no estimate, gate, tier rule or limit.
6. **Prices**: each room's budget price ``mu`` rises by dual descent when the room spends ahead
   of its own pacing plan; the pool price is the water level found in step 9.
7. **Tiers** move PROBE -> RAMP -> SUSTAIN -> COOL (and COOL -> RAMP) on the ratio of the room's
   desired allocation (posterior mean at last tick's pool price) to its current one, with
   hysteresis (separate enter and exit ratios), ``confirm_ticks`` consecutive ticks and a
   minimum dwell ``min_dwell_s``; tiers hold while a highlight boost plays out.
8. **Bounds** per room: hard caps (max share of the plan, budget left), ramp-up ``x2`` and
   ramp-down ``-30%`` against last tick, fixed probe size for PROBE rooms, no increase for frozen
   or COOL rooms (COOL: unless a corroborated highlight), no increase beyond probe size without
   deep evidence (the *ramp gate*: watch time and at least one credited order), 0 when killed.
   Only the kill switch, an exhausted budget or a shrinking hard cap may cut faster than the
   ramp-down limit (``Allocation.kill`` marks those rooms); an allocation whose ramp-down floor
   is under ``min_share`` of the plan may be switched off.
9. **Pacing and water-filling**: a PI controller on cumulative spend sets the tick's spend
   target (within the hard pool cap); probes due are admitted first (oldest first), then the
   rest is water-filled over the rooms by value against ``pool price x (1 + mu)``.

Every decision carries a reason (:meth:`Allocation.reason`) built from the same arrays.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np

from ace.policy.allocation import EPS, PacingController, room_caps, waterfill
from ace.policy.base import Policy
from ace.policy.state import (
    CATEGORIES,
    DEFAULT_PRIORS,
    Allocation,
    CategoryPrior,
    Observation,
    RoomState,
    RoomStates,
    Tier,
    effective_impressions,
)

log = logging.getLogger("ace.policy")

KILL_REASONS = {0: "", 1: "kill switch (manual)", 2: "kill switch (gaming: repeated shallow bursts without deep signals)"}

# why a room got what it got (index into _LIMIT_TEXT)
_L_VALUE, _L_UP, _L_SHARE, _L_BUDGET, _L_PROBE, _L_FROZEN, _L_GATE, _L_COOL, _L_DOWN, _L_KILL, _L_QUEUE, _L_DROP, _L_FLOOR = range(13)
_LIMIT_TEXT = (
    "set by value against price",
    "held by the ramp-up limit (x{up:g} per tick)",
    "held by the max share per room ({share:.0%})",
    "held by the room budget",
    "probe allocation",
    "frozen: shallow-signal burst without deep signals",
    "no ramp beyond probe until deep signals (watch time, a credited order)",
    "cooling: allocation may only fall",
    "held up by the ramp-down limit (-{down:.0%} per tick)",
    "{kill}",
    "waiting for a probe slot",
    "below the minimum allocation: switched off",
    "held up by the highlight floor ((1 + boost) x the pre-highlight allocation)",
)


@dataclass(frozen=True)
class RampOptions:
    """Settings of :class:`RampPolicy`. Shares are fractions of the tick's pacing plan."""

    # caps and limits
    max_share: float = 0.15  #: hard cap: one room's share of the tick's plan
    ramp_up: float = 2.0  #: allocation may at most multiply by this per tick
    ramp_down: float = 0.30  #: allocation may at most fall by this fraction per tick (kill switch excepted)
    min_share: float = 0.001  #: an allocation whose ramp-down floor is below this share may be switched off
    # probes
    probe_share: float = 0.015  #: probe size, share of the plan, at most ...
    probe_fair: float = 0.5  #: ... and at most this fraction of an even split over the live rooms
    probe_ticks: int = 3  #: ticks at probe size before a tier decision
    probe_max_ticks: int = 12  #: longest probe while waiting for deep signals; then COOL
    probe_deadline_s: float = 300.0  #: every new room starts its probe within this time
    # estimates
    half_life_s: float = 3600.0  #: forgetting of promoted evidence
    history_weight: float = 2.0  #: a known streamer history makes the conversion prior (1 + this) times stronger
    watch_beta: float = 1.0  #: conversion prior scales with (watch time / category watch time) ** watch_beta
    saturation_k: float = 40.0  #: saturation scale S = saturation_k * sqrt(viewers + 1) impressions per tick
    min_saturation: float = 100.0  #: lower bound on S
    value_orders: float = 1.0  #: value of an order
    value_carts: float = 0.0  #: value of an add-to-cart
    value_follows: float = 0.0  #: value of a follow
    thompson: bool = True  #: sample values (False: posterior means everywhere)
    thompson_scale: float = 0.3  #: temper samples: value = mean * (sample / mean) ** thompson_scale
    # highlights
    boost_min: float = 1.0  #: boost B of a corroborated highlight at least (value and capacity x (1 + B))
    boost_max: float = 3.0  #: and at most
    lift_prior: float = 2.0  #: pseudo-orders shrinking a highlight's measured lift towards the typical lift
    lift_start: float = 2.0  #: typical lift before any highlight has been measured (then learned across rooms)
    lift_learning: float = 0.02  #: weight of one corroborated room-tick in the typical lift
    highlight_evidence: float = 0.25  #: weight of boosted ticks in the room's base estimates
    boost_capacity: float = 0.5  #: a boosted room can absorb more traffic, but less than its value grows: capacity x (1 + B) ** this
    boost_half_life_s: float = 120.0  #: the boost decays with this half-life ...
    boost_fade_s: float = 15.0  #: ... or this one once the deep signals are back at baseline
    fade_z: float = 1.0  #: deep-lift z-score under which the deep signals count as back at baseline
    moment_window_s: float = 180.0  #: a moment may be corroborated until max(end, start + this)
    min_trusted_users: float = 5.0  #: distinct trusted users needed to corroborate
    corroborate_z: float = 1.25  #: deep-lift z-score that corroborates a moment
    floor_s: float = 60.0  #: a corroborated highlight keeps the room at >= (1 + B) x its pre-highlight allocation this long
    # published clips: interest from outside the room (clip_views, clip_clicks after the per-user caps)
    clip_click_weight: float = 1.0  #: interest of one click-through from a clip (a viewer brought to the room)
    clip_view_weight: float = 0.05  #: interest of one clip view (a weak signal: 20 views weigh as one click)
    clip_half_life_s: float = 300.0  #: memory of clip interest (EWMA of interest per tick)
    clip_interest_k: float = 10.0  #: interest per tick (click-equivalents) at which the clip lift is half its most
    clip_lift_max: float = 0.25  #: clip interest multiplies a room's value by at most 1 + this
    # anti-gaming
    baseline_half_life_s: float = 900.0  #: audience baselines (EWMA)
    burst_z: float = 4.0  #: shallow-signal z-score of a burst
    burst_ratio: float = 2.5  #: and its ratio to the baseline
    burst_deep_z: float = 0.5  #: a burst counts only when the deep-lift z-score stays below this
    burst_capped: float = 0.5  #: ... and per-user caps remove more than this share of it
    burst_trusted: float = 0.2  #: ... or trusted users are fewer than this share of the users
    freeze_s: float = 300.0  #: a burst freezes the ramp this long
    kill_after_flags: int = 2  #: flags (within flag_memory_s) without deep evidence trip the kill switch
    flag_memory_s: float = 1800.0  #: a flag is forgiven after this long
    order_hold_s: float = 600.0  #: held order credit is released after this long
    gate_watch_ratio: float = 0.4  #: ramp gate: watch time per entry at least this share of the category's
    gate_min_orders: float = 1.0  #: ramp gate: credited promoted orders at least this many
    # pacing and prices
    pacing_kp: float = 0.5
    pacing_ki: float = 0.05
    budget_eta: float = 0.05  #: dual-descent step of the room budget price, per tick of pacing error
    budget_price_max: float = 20.0
    # tiers
    min_dwell_s: float = 180.0  #: minimum time in a tier (kill switch excepted)
    confirm_ticks: int = 2  #: a move must be called for on this many consecutive ticks
    ramp_enter: float = 1.6  #: desired / current above this: SUSTAIN or COOL -> RAMP
    ramp_exit: float = 1.15  #: desired / current below this: RAMP -> SUSTAIN
    cool_enter: float = 0.5  #: desired / current below this: -> COOL
    boost_unlocks: float = 0.3  #: while the boost is above this, tiers hold and COOL rooms may ramp
    priors: dict[str, CategoryPrior] = field(default_factory=lambda: dict(DEFAULT_PRIORS))


class RampPolicy(Policy):
    """The ACE ramp policy. ``step`` is vectorised over room slots; per-room memory lives in
    :attr:`state` (:class:`~ace.policy.state.RoomStates`)."""

    name = "ramp"

    def __init__(self, options: RampOptions | None = None, seed: int = 0, **overrides):
        super().__init__(seed)
        o = options or RampOptions()
        self.options = replace(o, **overrides) if overrides else o
        self.rng = np.random.default_rng(self.seed)
        self.state = RoomStates(0, hold_ticks=1)
        self.pacer = PacingController(kp=self.options.pacing_kp, ki=self.options.pacing_ki)
        self.price = 0.0  #: last pool price (value per effective impression)
        pri = [self.options.priors.get(c, CategoryPrior()) for c in CATEGORIES]
        self._pri = {
            k: np.array([getattr(p, k) for p in pri], dtype=float) for k in ("entry_rate", "order_rate", "watch_s", "follow_rate", "cart_rate", "strength")
        }
        self.typical_lift = self.options.lift_start  #: typical conversion lift of a corroborated highlight

    # ------------------------------------------------------------------ memory across restarts

    def snapshot(self) -> dict:
        return super().snapshot() | {"state": self.state.snapshot(), "price": self.price, "typical_lift": self.typical_lift,
                                     "pacer": {"error": self.pacer.error, "integral": self.pacer.integral}}

    def restore(self, snap: dict) -> None:
        super().restore(snap)
        self.state = RoomStates.from_snapshot(snap.get("state") or {})
        self.price = float(snap.get("price", 0.0))
        self.typical_lift = float(snap.get("typical_lift", self.options.lift_start))
        pacer = snap.get("pacer") or {}
        self.pacer.error, self.pacer.integral = float(pacer.get("error", 0.0)), float(pacer.get("integral", 0.0))

    # ------------------------------------------------------------------ public helpers

    def kill(self, stream_or_slot: str | int, on: bool = True) -> None:
        """Manual kill switch: the room gets nothing from the next tick on (``on=False`` lifts it)."""
        slot = self.slots.slot(stream_or_slot) if isinstance(stream_or_slot, str) else int(stream_or_slot)
        self.state.grow(slot + 1)
        self.state.killed[slot] = on
        self.state.kill_reason_code[slot] = 1 if on else 0
        log.info("kill switch %s for slot %d", "on" if on else "off", slot)

    def probe_size(self, plan: float, live_rooms: int) -> float:
        """Impressions of a probe this tick: ``min(probe_share, probe_fair / live rooms) x plan``."""
        o = self.options
        return plan * min(o.probe_share, o.probe_fair / max(live_rooms, 1))

    def forget(self, slots: np.ndarray) -> None:
        self.state.reset(slots)

    def room_state(self, stream_or_slot: str | int) -> RoomState:
        """The explicit state of one room (posterior means), for the back office."""
        slot = self.slots.get(stream_or_slot) if isinstance(stream_or_slot, str) else int(stream_or_slot)
        if slot is None or slot >= self.state.n:
            raise KeyError(stream_or_slot)
        est = self._posterior()
        s = self.state
        return RoomState(
            stream_id=self.slots.stream(slot) or "",
            slot=slot,
            category=CATEGORIES[int(s.category[slot])],
            tier=Tier(int(s.tier[slot])).label,
            first_seen=float(s.first_seen[slot]),
            entry_rate=float(est["entry_rate"][slot]),
            order_rate=float(est["order_rate"][slot]),
            orders_per_1k=1000.0 * float(est["entry_rate"][slot] * est["order_rate"][slot]),
            watch_s=float(est["watch_s"][slot]),
            follow_rate=float(est["follow_rate"][slot]),
            cart_rate=float(est["cart_rate"][slot]),
            boost=float(s.boost[slot]),
            alloc=float(s.alloc[slot]),
            spent=float(s.spent[slot]),
            budget_left=float(s.budget[slot] - s.spent[slot]),
            budget_price=float(s.mu[slot]),
            orders_held=float(s.held[slot].sum()),
            flags=int(s.flags[slot]),
            frozen_until=float(s.freeze_until[slot]),
            killed=bool(s.killed[slot]),
            tier_switches=int(s.tier_switches[slot]),
            clip_interest=float(s.clip_interest[slot]),
            clip_lift=float(self._clip_lift(s.clip_interest[slot : slot + 1])[0]),
        )

    # ------------------------------------------------------------------ estimates

    def _posterior(self) -> dict[str, np.ndarray]:
        """Gamma posterior parameters and means for every slot."""
        s = self.state
        o = self.options
        cat = s.category
        pe, po, pw = self._pri["entry_rate"][cat], self._pri["order_rate"][cat], self._pri["watch_s"][cat]
        pf, pc, strength = self._pri["follow_rate"][cat], self._pri["cart_rate"][cat], self._pri["strength"][cat]
        known = np.isfinite(s.history)
        hist = np.where(known, np.clip(np.nan_to_num(s.history, nan=1.0), 0.05, 20.0), 1.0)
        s_o = strength * np.where(known, 1.0 + o.history_weight, 1.0)
        watch = (pw * strength + s.ev_watch) / (strength + s.ev_entries)
        watch_ratio = watch / pw
        m_o = po * hist * np.clip(watch_ratio**o.watch_beta, 0.1, 3.0)
        a_e, b_e = strength + s.ev_entries, strength / pe + s.ev_imps
        a_o, b_o = m_o * s_o + s.ev_orders, s_o + s.ev_entries
        return {
            "a_e": a_e,
            "b_e": b_e,
            "a_o": a_o,
            "b_o": b_o,
            "entry_rate": a_e / b_e,
            "order_rate": a_o / b_o,
            "watch_s": watch,
            "watch_ratio": watch_ratio,
            "follow_rate": (pf * strength + s.ev_follows) / (strength + s.ev_entries),
            "cart_rate": (pc * strength + s.ev_carts) / (strength + s.ev_entries),
        }

    def _clip_lift(self, interest: np.ndarray) -> np.ndarray:
        """What clip interest (click-equivalents per tick) multiplies a room's value by:
        ``1 + clip_lift_max * I / (I + clip_interest_k)``, from 1 up to ``1 + clip_lift_max``."""
        o = self.options
        i = np.maximum(interest, 0.0)
        return 1.0 + o.clip_lift_max * i / (i + max(o.clip_interest_k, 1e-9))

    def _value(self, est: dict[str, np.ndarray], entry: np.ndarray, order: np.ndarray) -> np.ndarray:
        o = self.options
        v = o.value_orders * entry * order
        if o.value_carts:
            v = v + o.value_carts * entry * est["cart_rate"]
        if o.value_follows:
            v = v + o.value_follows * entry * est["follow_rate"]
        return v

    def _values(self, est: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and Thompson sample of each room's value per effective impression."""
        mean_v = self._value(est, est["entry_rate"], est["order_rate"])
        if not self.options.thompson:
            return mean_v, mean_v
        e_s = self.rng.gamma(est["a_e"]) / est["b_e"]
        o_s = self.rng.gamma(np.maximum(est["a_o"], 1e-6)) / est["b_o"]
        samp = self._value(est, e_s, o_s)
        k = self.options.thompson_scale
        if k != 1.0:
            samp = mean_v * (np.maximum(samp, 1e-300) / np.maximum(mean_v, 1e-300)) ** k
        return mean_v, samp

    # ------------------------------------------------------------------ the tick

    def _resize_hold(self, dt: float) -> None:
        hold_ticks = max(1, int(round(self.options.order_hold_s / dt)))
        s = self.state
        if hold_ticks == s.hold_ticks:
            return
        old = s.held
        new = np.zeros((s.n, hold_ticks))
        k = min(hold_ticks, old.shape[1])
        new[:, :k] = old[:, :k]
        new[:, k - 1] += old[:, k:].sum(axis=1)
        s.held, s.hold_ticks = new, hold_ticks

    def step(self, obs: Observation) -> Allocation:
        o = self.options
        t, dt, plan = float(obs.t), float(obs.dt), float(obs.plan)
        self._resize_hold(dt)
        s = self.state
        s.grow(obs.n)
        if s.n > obs.n:  # the observation covers fewer slots than we know: the rest are not live
            obs = _pad(obs, s.n - obs.n)
        n = s.n
        live = obs.live.astype(bool)
        prev = np.where(live, s.alloc, 0.0)

        # 1. new rooms --------------------------------------------------------------------
        new = live & ~s.active
        if new.any():
            s.active[new] = True
            s.first_seen[new] = t
            s.tier[new] = Tier.PROBE
            s.tier_since[new] = t
        s.category[live] = obs.category[live]
        s.history[live] = obs.history[live]
        s.budget[live] = obs.budget[live]
        s.planned_end[live] = obs.planned_end[live]
        s.last_seen[live] = t
        s.ticks_seen[live] += 1
        # the first observation of a room may cover only part of a tick: baselines start after it
        warm = s.ticks_seen >= 3

        # 2. audience checks, against estimates from before this tick's evidence ----------
        est = self._posterior()
        sat = np.maximum(o.saturation_k * np.sqrt(np.maximum(obs.viewers, 0.0) + 1.0), o.min_saturation)
        eff = effective_impressions(obs.impressions, sat)
        trusted_orders = np.maximum(obs.orders - obs.orders_held, 0.0)
        z_e, z_o, z_w, got_o, exp_o = _deep_z(obs, s, est, eff, trusted_orders)
        deep_z = np.where(live & warm, (z_e + z_o + z_w) / math.sqrt(3.0), 0.0)
        shallow = obs.likes + obs.comments
        base_sh = np.where(np.isfinite(s.base_shallow), s.base_shallow, shallow)
        z_sh = (shallow - base_sh) / np.sqrt(base_sh + 1.0)
        ratio_sh = (shallow + 1.0) / (base_sh + 1.0)
        gamed = (obs.shallow_capped < o.burst_capped * shallow) | (obs.trusted_users < o.burst_trusted * np.maximum(obs.users, 1.0))
        # a shallow burst: likes and chat spike, deep signals do not, and few or untrusted accounts
        # make the noise. It freezes the ramp and flags the room.
        burst = live & warm & (z_sh >= o.burst_z) & (ratio_sh >= o.burst_ratio) & (deep_z < o.burst_deep_z) & gamed
        if burst.any():
            recent = (t - s.last_flag) <= o.flag_memory_s
            s.flags[burst] = np.where(recent[burst], s.flags[burst] + 1, 1)
            s.last_flag[burst] = t
            s.freeze_until[burst] = np.maximum(s.freeze_until[burst], t + o.freeze_s)
            log.debug("shallow burst: froze and flagged %d rooms", int(burst.sum()))
        flagged = (t - s.last_flag) <= o.flag_memory_s
        s.flags[~flagged] = 0
        # baselines: a running mean over the first ticks, then an EWMA
        a = np.maximum(1.0 - 0.5 ** (dt / o.baseline_half_life_s), 1.0 / np.maximum(s.ticks_seen - 1, 1))
        upd_ok = live & (s.ticks_seen >= 2)
        for name, x in (("base_shallow", shallow), ("base_org_entries", obs.organic_entries), ("base_org_orders", obs.organic_orders)):
            b = getattr(s, name)
            upd = np.where(np.isfinite(b), b + a * (x - b), x)
            b[upd_ok] = upd[upd_ok]
        s.deep_z_prev[:] = s.deep_z
        s.deep_z[:] = deep_z
        # interest from the room's published clips: clicks strong, views weak (both capped per user)
        interest = o.clip_click_weight * np.maximum(obs.clip_clicks, 0.0) + o.clip_view_weight * np.maximum(obs.clip_views, 0.0)
        gc = 0.5 ** (dt / o.clip_half_life_s)
        s.clip_interest = np.where(live, gc * s.clip_interest + (1.0 - gc) * interest, s.clip_interest)

        # 3. promoted evidence, with held order credit ------------------------------------
        g = 0.5 ** (dt / o.half_life_s)
        held = s.held
        cancel = np.where(live, obs.orders_cancelled, 0.0)
        for col in range(held.shape[1] - 1, -1, -1):  # cancellations eat the oldest credit first
            take = np.minimum(held[:, col], cancel)
            held[:, col] -= take
            cancel = cancel - take
        released = held[:, -1].copy()
        held[:, 1:] = held[:, :-1]
        held[:, 0] = np.where(live, obs.orders_held, 0.0)
        released = np.where(flagged, 0.0, released)  # flagged rooms forfeit held credit
        credited = np.where(live, trusted_orders, 0.0) + released
        # ticks inside a highlight say little about the room's base rates: they count less
        lv = live * np.where(s.boost > 0.05, o.highlight_evidence, 1.0)
        credited = credited * np.where(s.boost > 0.05, o.highlight_evidence, 1.0)
        s.ev_imps = g * s.ev_imps + lv * eff
        s.ev_entries = g * s.ev_entries + lv * obs.entries
        s.ev_watch = g * s.ev_watch + lv * obs.watch_s
        s.ev_follows = g * s.ev_follows + lv * obs.follows
        s.ev_carts = g * s.ev_carts + lv * obs.carts
        s.ev_orders = g * s.ev_orders + credited
        s.orders_total += credited
        est = self._posterior()

        # 4. moments and the highlight boost ----------------------------------------------
        if obs.moment_slot.size:
            ms = obs.moment_slot
            ok = live[ms] & (obs.moment_start >= 0)
            ms, m_start = ms[ok], obs.moment_start[ok]
            fresh = ~(s.moment_open_until[ms] >= m_start)  # not a continuation of the open moment
            s.hl_got[ms[fresh]] = 0.0
            s.hl_exp[ms[fresh]] = 0.0
            s.moment_start[ms] = np.where(fresh, m_start, np.fmin(s.moment_start[ms], m_start))
            s.moment_open_until[ms] = np.fmax(s.moment_open_until[ms], np.maximum(obs.moment_end[ok], m_start + o.moment_window_s))
            s.moment_score[ms] = obs.moment_score[ok]
        is_open = live & (s.moment_start < t) & (t - dt <= s.moment_open_until)
        faded = deep_z < o.fade_z  # the highlight's deep lift is gone
        s.boost *= np.where(faded, 0.5 ** (dt / o.boost_fade_s), 0.5 ** (dt / o.boost_half_life_s))
        s.hl_got = np.where(is_open, s.hl_got + got_o, s.hl_got)
        s.hl_exp = np.where(is_open, s.hl_exp + exp_o, s.hl_exp)
        # a new boost may lean on the tick before (the moment may arrive a tick after its onset);
        # an existing boost is refreshed only by the tick just ended
        fresh_hl = s.boost < o.boost_unlocks
        dz = np.where(fresh_hl & (s.moment_start < t - dt), np.maximum(deep_z, s.deep_z_prev), deep_z)
        corroborated = is_open & (dz >= o.corroborate_z) & (obs.trusted_users >= o.min_trusted_users) & ~s.killed
        frozen = s.freeze_until > t
        # a corroborated highlight lifts a freeze unless this very tick looks gamed
        thaw = frozen & corroborated & ~gamed
        s.freeze_until[thaw] = t
        frozen = s.freeze_until > t
        corroborated &= ~frozen
        learn = corroborated & (s.hl_exp >= 2.0)
        if learn.any():  # the typical highlight lift, learned across rooms
            raw = np.clip(s.hl_got[learn] / s.hl_exp[learn], 1.0, 10.0)
            self.typical_lift += o.lift_learning * float((raw - self.typical_lift).sum())
            self.typical_lift = float(np.clip(self.typical_lift, 1.0, 1.0 + o.boost_max))
        k = o.lift_prior
        s.lift = np.where(is_open, (s.hl_got + k * self.typical_lift) / (s.hl_exp + k), s.lift)
        grant = np.where(corroborated, np.clip(s.lift - 1.0, o.boost_min, o.boost_max), 0.0)
        starting = corroborated & ((t - s.hl_last) > o.floor_s + dt)
        s.boost_base[starting] = prev[starting]
        s.boost_since[starting] = t
        s.hl_last[corroborated] = t
        s.boost = np.maximum(s.boost, grant)
        s.boost[~live | s.killed] = 0.0

        # 5. the ramp gate and the automatic kill switch ----------------------------------
        deep_ok = (est["watch_ratio"] >= o.gate_watch_ratio) & (s.orders_total >= o.gate_min_orders)
        gate = deep_ok & ~flagged
        auto_kill = live & ~s.killed & (s.flags >= o.kill_after_flags) & ~deep_ok
        if auto_kill.any():
            s.killed[auto_kill] = True
            s.kill_reason_code[auto_kill] = 2
            log.info("kill switch tripped for %d rooms (repeated shallow bursts)", int(auto_kill.sum()))

        # 6. values and prices ------------------------------------------------------------
        mean_v, samp_v = self._values(est)
        v = np.where(s.tier == Tier.SUSTAIN, mean_v, samp_v)
        # clip interest raises the value a little; never for a flagged, frozen or killed room
        clip_mult = np.where(flagged | frozen | s.killed, 1.0, self._clip_lift(s.clip_interest))
        boost_mult = 1.0 + s.boost
        v_b, sat_b = v * boost_mult * clip_mult, sat * boost_mult**o.boost_capacity
        span = s.planned_end - s.first_seen
        paced = live & np.isfinite(s.budget) & np.isfinite(span) & (span > dt)
        if paced.any():  # room budget price: dual descent on the room's own pacing plan
            safe = np.where(paced, span, 1.0)
            budget = np.where(paced, s.budget, 0.0)
            ideal = budget * np.clip(np.nan_to_num((t - s.first_seen) / safe), 0.0, 1.0)
            per_tick = np.where(paced, budget * dt / safe, 1.0)
            err = (s.spent - ideal) / np.maximum(per_tick, 1e-9)
            s.mu = np.where(paced, np.clip(s.mu + o.budget_eta * err, 0.0, o.budget_price_max), s.mu)
        mult = 1.0 + s.mu

        # 7. tiers --------------------------------------------------------------------------
        caps = room_caps(plan, o.max_share, s.budget, s.spent, live & ~s.killed)
        probe = self.probe_size(plan, int(live.sum()))
        if self.price > 0 and math.isfinite(self.price):
            desired = sat_b * np.log(np.maximum(mean_v * boost_mult * clip_mult, 1e-300) / (self.price * mult))
            desired = np.clip(desired, 0.0, caps)
        else:
            desired = caps
        ratio = desired / np.maximum(prev, max(o.min_share * plan, EPS))
        tier = s.tier.copy()
        to = np.full(n, -1, dtype=np.int64)
        probing = live & (tier == Tier.PROBE)
        done_probe = probing & (s.probe_ticks >= o.probe_ticks)
        to[done_probe & gate & (ratio >= o.ramp_exit)] = Tier.RAMP
        to[done_probe & gate & (ratio < o.ramp_exit) & (ratio > o.cool_enter)] = Tier.SUSTAIN
        to[done_probe & gate & (ratio <= o.cool_enter)] = Tier.COOL
        to[probing & ~gate & (s.probe_ticks >= o.probe_max_ticks)] = Tier.COOL
        to[probing & flagged] = Tier.COOL  # a probe that games its audience ends at once
        steady = live & (s.boost < o.boost_unlocks)  # tiers hold while a highlight plays out
        r_ = steady & (tier == Tier.RAMP)
        to[r_ & (ratio <= o.cool_enter)] = Tier.COOL
        to[r_ & (ratio > o.cool_enter) & (ratio <= o.ramp_exit)] = Tier.SUSTAIN
        su = steady & (tier == Tier.SUSTAIN)
        to[su & (ratio >= o.ramp_enter)] = Tier.RAMP
        to[su & (ratio <= o.cool_enter)] = Tier.COOL
        co = steady & (tier == Tier.COOL) & gate & ~frozen & ~s.killed
        to[co & (ratio >= o.ramp_enter)] = Tier.RAMP
        # hysteresis: a move must be called for on consecutive ticks and after the minimum dwell
        same = (to >= 0) & (to == s.pending_tier)
        s.pending_ticks = np.where(same, s.pending_ticks + 1, np.where(to >= 0, 1, 0))
        s.pending_tier = to
        dwell = (t - s.tier_since) >= o.min_dwell_s - 1e-9
        move = (to >= 0) & (to != tier) & ((dwell & (s.pending_ticks >= o.confirm_ticks)) | probing)
        forced = live & s.killed & (tier != Tier.COOL)
        to[forced] = Tier.COOL
        move |= forced
        if move.any():
            s.tier[move] = to[move]
            s.tier_since[move] = t
            s.tier_switches[move] += 1
            s.pending_tier[move] = -1
            s.pending_ticks[move] = 0
        tier = s.tier

        # 8. bounds -------------------------------------------------------------------------
        full = o.max_share * plan
        hi_code = np.where(caps < full - EPS, _L_BUDGET, _L_SHARE)
        up = np.where(prev > EPS, o.ramp_up * prev, probe)
        hi_code[up < caps] = _L_UP
        hi = np.minimum(caps, up)
        no_gate = live & ~gate & (tier != Tier.PROBE)
        gate_cap = np.maximum(probe, prev)
        hi_code[no_gate & (gate_cap < hi)] = _L_GATE
        hi = np.where(no_gate, np.minimum(hi, gate_cap), hi)
        hold = live & (((tier == Tier.COOL) & (s.boost < o.boost_unlocks)) | frozen) & (prev > EPS)
        held_back = hold & (prev < hi)
        hi_code[held_back] = np.where(frozen[held_back], _L_FROZEN, _L_COOL)
        hi = np.where(hold, np.minimum(hi, prev), hi)
        lo = (1.0 - o.ramp_down) * prev
        lo = np.where(lo < o.min_share * plan, 0.0, lo)
        lo_code = np.full(n, _L_DOWN, dtype=np.int64)
        floor_on = live & ((t - s.hl_last) <= o.floor_s) & (s.boost > 0)
        hl_floor = np.where(floor_on, (1.0 + s.boost) * s.boost_base, 0.0)
        lo_code[hl_floor > lo] = _L_FLOOR
        lo = np.maximum(lo, np.minimum(hl_floor, hi))
        kill = np.zeros(n, dtype=bool)
        over = lo > caps + EPS  # budget ran out or the plan shrank: the hard cap wins
        kill |= over & (prev > EPS)
        lo = np.minimum(lo, caps)
        killed = live & s.killed
        kill |= killed & (prev > EPS)
        lo[killed] = 0.0
        hi[killed] = 0.0
        hi[~live] = 0.0
        lo[~live] = 0.0
        fixed = np.full(n, -1, dtype=np.int64)  # decisions not set by the water-fill
        fixed[killed] = _L_KILL
        # probes: fixed size; those not yet started are admitted oldest first
        probing = live & (tier == Tier.PROBE) & ~killed
        pval = np.minimum(probe, caps)
        started = probing & (s.probe_ticks > 0)
        lo[started] = hi[started] = pval[started]
        fixed[started] = _L_PROBE
        pending = np.flatnonzero(probing & (s.probe_ticks == 0))
        if pending.size:
            room = obs.pool_cap - float(lo.sum())
            order = pending[np.argsort(s.first_seen[pending], kind="stable")]
            fits = np.cumsum(pval[order]) <= room + EPS
            admit, wait = order[fits], order[~fits]
            lo[admit] = hi[admit] = pval[admit]
            fixed[admit] = _L_PROBE
            lo[wait] = hi[wait] = 0.0
            fixed[wait] = _L_QUEUE
            late = wait[(t - s.first_seen[wait]) > o.probe_deadline_s - dt]
            if late.size:
                log.warning("%d new rooms still wait for a probe slot", late.size)
        floor_sum = float(lo.sum())
        if floor_sum > obs.pool_cap + EPS:  # the hard pool cap shrank below the floors
            kill |= (lo > 0) & (prev > EPS) & ~probing
            lo *= obs.pool_cap / floor_sum
        hi = np.maximum(np.minimum(hi, np.where(floor_sum > obs.pool_cap + EPS, lo, hi)), lo)

        # 9. pacing target and water-filling -----------------------------------------------
        target = self.pacer.target(plan, obs.pool_cap)
        target = min(max(target, float(lo.sum())), obs.pool_cap)
        x, lam = waterfill(v_b, sat_b, lo, hi, target, price_mult=mult)
        drop = (lo <= 0.0) & (x < o.min_share * plan) & (x > 0) & (fixed < 0)
        fixed[drop] = _L_DROP
        x[drop] = 0.0
        x = np.clip(x, 0.0, np.maximum(caps, 0.0))
        x[~live] = 0.0
        tot = float(x.sum())
        if tot > obs.pool_cap + EPS:  # cannot happen with the floors above; belt and braces
            x *= obs.pool_cap / tot
        limit = np.full(n, _L_VALUE, dtype=np.int64)
        at_hi = (x >= hi - 1e-6) & (hi > lo + EPS)
        limit[at_hi] = hi_code[at_hi]
        at_lo = (x <= lo + 1e-6) & (lo > EPS) & (hi > lo + EPS)
        limit[at_lo] = lo_code[at_lo]
        pinned = (hi <= lo + EPS) & (lo > EPS)
        limit[pinned] = np.where(lo_code[pinned] == _L_FLOOR, _L_FLOOR, hi_code[pinned])
        limit[fixed >= 0] = fixed[fixed >= 0]

        if math.isfinite(lam) and lam > 0:
            self.price = lam
        self.pacer.record(plan, float(x.sum()))
        first_probe = live & (tier == Tier.PROBE) & (x > 0) & (s.probe_alloc <= 0)
        s.probe_alloc[first_probe] = x[first_probe]
        s.probe_ticks[live & (tier == Tier.PROBE) & (x > 0)] += 1
        s.alloc = np.where(live, x, 0.0)
        s.spent += s.alloc
        tiers_out = np.where(live, tier, -1)

        snap = {
            "x": x.copy(),
            "mean": mean_v.copy(),
            "sample": v.copy(),
            "boost": s.boost.copy(),
            "lift": s.lift.copy(),
            "dz": dz.copy(),
            "trusted": obs.trusted_users.copy(),
            "mu": s.mu.copy(),
            "limit": limit,
            "tier": tiers_out.copy(),
            "kill_code": s.kill_reason_code.copy(),
            "flags": s.flags.copy(),
            "boost_since": s.boost_since.copy(),
            "clip_mult": clip_mult.copy(),
            "clip_interest": s.clip_interest.copy(),
        }
        price, opts = self.price, o

        def explain(i: int) -> str:
            return _explain(i, snap, price, plan, t, opts)

        return Allocation(t=t, plan=plan, impressions=x, tier=tiers_out, kill=kill & live, price=price, explain=explain)


def _deep_z(obs: Observation, s: RoomStates, est: dict, eff: np.ndarray, trusted_orders: np.ndarray):
    """z-scores of this tick's deep signals against what the room's estimates and baselines
    predict: entries (promoted + organic), trusted orders (promoted + organic), watch per entry."""
    org_e = np.where(np.isfinite(s.base_org_entries), s.base_org_entries, obs.organic_entries)
    org_o = np.where(np.isfinite(s.base_org_orders), s.base_org_orders, obs.organic_orders)
    exp_e = est["entry_rate"] * eff + org_e
    got_e = obs.entries + obs.organic_entries
    z_e = (got_e - exp_e) / np.sqrt(exp_e + 1.0)
    exp_o = est["entry_rate"] * est["order_rate"] * eff + org_o
    got_o = trusted_orders + obs.organic_orders
    z_o = (got_o - exp_o) / np.sqrt(exp_o + 1.0)
    w_obs = obs.watch_s / np.maximum(obs.entries, 1.0)
    z_w = np.where(obs.entries >= 3, (w_obs / np.maximum(est["watch_s"], 1e-9) - 1.0) * np.sqrt(np.maximum(obs.entries, 0.0)), 0.0)
    return z_e, z_o, np.clip(z_w, -5.0, 5.0), got_o, exp_o


def _pad(obs: Observation, pad: int) -> Observation:
    """Observation extended by ``pad`` slots that are not live."""
    from ace.policy.state import ROOM_FIELDS

    ext = Observation.empty(pad, t=obs.t, dt=obs.dt, plan=obs.plan, pool_cap=obs.pool_cap)
    kw = {name: np.concatenate([getattr(obs, name), getattr(ext, name)]) for name in ROOM_FIELDS}
    return Observation(
        t=obs.t,
        dt=obs.dt,
        plan=obs.plan,
        pool_cap=obs.pool_cap,
        live=np.concatenate([obs.live, ext.live]),
        category=np.concatenate([obs.category, ext.category]),
        moment_slot=obs.moment_slot,
        moment_start=obs.moment_start,
        moment_end=obs.moment_end,
        moment_score=obs.moment_score,
        **kw,
    )


def _explain(i: int, snap: dict, price: float, plan: float, t: float, o: RampOptions) -> str:
    tier = int(snap["tier"][i])
    if tier < 0:
        return "not live"
    x = float(snap["x"][i])
    parts = [f"{Tier(tier).label}: {x:,.0f} impressions ({x / plan:.1%} of the pool)" if plan > 0 else f"{Tier(tier).label}: {x:,.0f} impressions"]
    parts.append(f"est. {1000 * snap['mean'][i]:.2f} orders/1k promoted (used {1000 * snap['sample'][i]:.2f})")
    b = float(snap["boost"][i])
    if b > 0.01:
        since = snap["boost_since"][i]
        ago = f", {t - since:.0f} s ago" if np.isfinite(since) else ""
        parts.append(
            f"highlight boost x{1 + b:.2f} (moment corroborated{ago}: deep signals z={snap['dz'][i]:.1f}, "
            f"{snap['trusted'][i]:.0f} trusted users, measured lift x{snap['lift'][i]:.1f})"
        )
    if snap["clip_mult"][i] > 1.005:
        parts.append(f"clip interest x{snap['clip_mult'][i]:.2f} ({snap['clip_interest'][i]:.1f} click-equivalents a tick)")
    if price > 0:
        p = f"pool price {1000 * price:.2f}/1k"
        if snap["mu"][i] > 0.01:
            p += f" x{1 + snap['mu'][i]:.2f} room budget price"
        parts.append(p)
    limit = int(snap["limit"][i])
    kill = KILL_REASONS.get(int(snap["kill_code"][i]), "kill switch") or "kill switch"
    parts.append(_LIMIT_TEXT[limit].format(up=o.ramp_up, share=o.max_share, down=o.ramp_down, kill=kill))
    if snap["flags"][i] > 0:
        parts.append(f"flagged {int(snap['flags'][i])}x for shallow bursts")
    return "; ".join(parts)
