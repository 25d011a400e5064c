"""Baselines the ramp policy is measured against, in the same harness and under the same hard
caps (pool, max share per room, room budget). None of them has ramp limits, tiers, probes or
anti-gaming; each spends the plan every tick when the caps allow.

* :class:`UniformPolicy` — the plan split evenly over live rooms.
* :class:`ProportionalPolicy` — in proportion to each room's current viewers.
* :class:`PIDPacingPolicy` — per-room PID pacing: every room tracks its own pacing plan
  (budget spread over its planned session, or an even share when it has no budget).
* :class:`ThompsonPolicy` — budgeted Thompson sampling: a Gamma posterior on orders per
  effective promoted impression with the same category/history priors as the ramp policy,
  sampled each tick and water-filled with the same saturation model; no highlight features, no
  ramp limits, no watch-time-informed prior.
* :class:`OraclePolicy` — hindsight upper bound: knows every room's true conversion (highlights
  included) and saturation each tick and water-fills on them; obeys the caps, not the ramp limits.
"""

from __future__ import annotations

import numpy as np

from ace.policy.allocation import proportional_fill, room_caps, waterfill
from ace.policy.base import Policy
from ace.policy.state import CATEGORIES, DEFAULT_PRIORS, Allocation, CategoryPrior, Observation, effective_impressions

#: default max share per room for the baselines (the same as the ramp policy's)
MAX_SHARE = 0.15


class _Simple(Policy):
    """Shared bookkeeping: per-slot spend, caps, and the allocation record."""

    def __init__(self, seed: int = 0, max_share: float = MAX_SHARE):
        super().__init__(seed)
        self.max_share = max_share
        self.spent = np.zeros(0)

    def _grow(self, n: int) -> None:
        if self.spent.shape[0] < n:
            self.spent = np.concatenate([self.spent, np.zeros(n - self.spent.shape[0])])

    def forget(self, slots: np.ndarray) -> None:
        self.spent[slots] = 0.0

    def _caps(self, obs: Observation) -> np.ndarray:
        self._grow(obs.n)
        return room_caps(obs.plan, self.max_share, obs.budget, self.spent[: obs.n], obs.live.astype(bool))

    def _finish(self, obs: Observation, x: np.ndarray, why: str, price: float = 0.0) -> Allocation:
        x = np.where(obs.live, np.maximum(x, 0.0), 0.0)
        tot = float(x.sum())
        if tot > obs.pool_cap > 0:
            x *= obs.pool_cap / tot
        self.spent[: obs.n] += x
        plan = obs.plan
        name = self.name

        def explain(i: int) -> str:
            if not obs.live[i]:
                return "not live"
            share = f" ({x[i] / plan:.1%} of the pool)" if plan > 0 else ""
            return f"{name}: {x[i]:,.0f} impressions{share}; {why}"

        tier = np.where(obs.live, -2, -1)  # -2: live, no tiers
        return Allocation(t=obs.t, plan=plan, impressions=x, tier=tier, kill=np.zeros(obs.n, dtype=bool), price=price, explain=explain)


class UniformPolicy(_Simple):
    name = "uniform"

    def step(self, obs: Observation) -> Allocation:
        caps = self._caps(obs)
        x = proportional_fill(np.ones(obs.n), caps, min(obs.plan, obs.pool_cap))
        return self._finish(obs, x, "even split over live rooms")


class ProportionalPolicy(_Simple):
    name = "proportional"

    def step(self, obs: Observation) -> Allocation:
        caps = self._caps(obs)
        x = proportional_fill(np.maximum(obs.viewers, 0.0), caps, min(obs.plan, obs.pool_cap))
        return self._finish(obs, x, "in proportion to current viewers")


class PIDPacingPolicy(_Simple):
    """Each room tracks its own pacing plan with a PID controller on cumulative spend; the
    controllers' outputs are then scaled to the tick's plan inside the caps."""

    name = "pid"

    def __init__(self, seed: int = 0, max_share: float = MAX_SHARE, kp: float = 0.4, ki: float = 0.05, kd: float = 0.1):
        super().__init__(seed, max_share)
        self.kp, self.ki, self.kd = kp, ki, kd
        self.ideal = np.zeros(0)
        self.integral = np.zeros(0)
        self.last_err = np.zeros(0)
        self.first_seen = np.zeros(0)

    def _grow(self, n: int) -> None:
        m = self.spent.shape[0]
        super()._grow(n)
        if m < n:
            pad = lambda a, v=0.0: np.concatenate([a, np.full(n - m, v)])  # noqa: E731
            self.ideal, self.integral, self.last_err = pad(self.ideal), pad(self.integral), pad(self.last_err)
            self.first_seen = pad(self.first_seen, np.nan)

    def forget(self, slots: np.ndarray) -> None:
        super().forget(slots)
        self.ideal[slots] = self.integral[slots] = self.last_err[slots] = 0.0
        self.first_seen[slots] = np.nan

    def step(self, obs: Observation) -> Allocation:
        caps = self._caps(obs)
        n = obs.n
        live = obs.live.astype(bool)
        fs = self.first_seen[:n]
        fs[live & ~np.isfinite(fs)] = obs.t
        span = obs.planned_end - fs
        paced = live & np.isfinite(obs.budget) & np.isfinite(span) & (span > obs.dt)
        rate = np.where(paced, obs.budget * obs.dt / np.where(paced, span, 1.0), 0.0)
        n_live = max(int(live.sum()), 1)
        rate = np.where(live & ~paced, obs.plan / n_live, rate)
        tot = float(rate.sum())
        want = rate * (obs.plan / tot) if tot > 0 else rate
        self.ideal[:n] += np.where(live, want, 0.0)
        err = self.ideal[:n] - self.spent[:n]
        self.integral[:n] = np.clip(self.integral[:n] + err, -20 * want - 1, 20 * want + 1)
        u = want + self.kp * err + self.ki * self.integral[:n] + self.kd * (err - self.last_err[:n])
        self.last_err[:n] = err
        x = proportional_fill(np.where(live, np.maximum(u, 0.0), 0.0), caps, min(obs.plan, obs.pool_cap))
        return self._finish(obs, x, "PID pacing of the room's own spend plan")


class ThompsonPolicy(_Simple):
    """Budgeted Thompson sampling on orders per effective promoted impression."""

    name = "thompson"

    def __init__(
        self,
        seed: int = 0,
        max_share: float = MAX_SHARE,
        priors: dict[str, CategoryPrior] | None = None,
        history_weight: float = 2.0,
        half_life_s: float = 1800.0,
        saturation_k: float = 40.0,
        min_saturation: float = 100.0,
    ):
        super().__init__(seed, max_share)
        self.rng = np.random.default_rng(self.seed)
        pri = [(priors or DEFAULT_PRIORS).get(c, CategoryPrior()) for c in CATEGORIES]
        self._rate = np.array([p.entry_rate * p.order_rate for p in pri])
        self._strength = np.array([p.strength / p.entry_rate for p in pri])  # impressions
        self.history_weight = history_weight
        self.half_life_s = half_life_s
        self.saturation_k = saturation_k
        self.min_saturation = min_saturation
        self.imps = np.zeros(0)
        self.orders = np.zeros(0)

    def _grow(self, n: int) -> None:
        m = self.spent.shape[0]
        super()._grow(n)
        if m < n:
            self.imps = np.concatenate([self.imps, np.zeros(n - m)])
            self.orders = np.concatenate([self.orders, np.zeros(n - m)])

    def forget(self, slots: np.ndarray) -> None:
        super().forget(slots)
        self.imps[slots] = self.orders[slots] = 0.0

    def step(self, obs: Observation) -> Allocation:
        caps = self._caps(obs)
        n = obs.n
        live = obs.live.astype(bool)
        sat = np.maximum(self.saturation_k * np.sqrt(np.maximum(obs.viewers, 0.0) + 1.0), self.min_saturation)
        g = 0.5 ** (obs.dt / self.half_life_s)
        eff = effective_impressions(obs.impressions, sat)
        self.imps[:n] = g * self.imps[:n] + np.where(live, eff, 0.0)
        self.orders[:n] = g * self.orders[:n] + np.where(live, obs.orders, 0.0)
        known = np.isfinite(obs.history)
        hist = np.where(known, np.clip(np.nan_to_num(obs.history, nan=1.0), 0.05, 20.0), 1.0)
        strength = self._strength[obs.category] * np.where(known, 1.0 + self.history_weight, 1.0)
        a = self._rate[obs.category] * hist * strength + self.orders[:n]
        b = strength + self.imps[:n]
        theta = self.rng.gamma(np.maximum(a, 1e-6)) / b
        x, lam = waterfill(np.where(live, theta, 0.0), sat, np.zeros(n), caps, min(obs.plan, obs.pool_cap))
        return self._finish(obs, x, "Thompson sample of orders per impression, water-filled", price=lam if np.isfinite(lam) else 0.0)


class OraclePolicy(_Simple):
    """Hindsight upper bound (simulator only: needs ``obs.truth_rate`` and ``obs.truth_saturation``)."""

    name = "oracle"
    needs_truth = True

    def step(self, obs: Observation) -> Allocation:
        if obs.truth_rate is None or obs.truth_saturation is None:
            raise ValueError("the oracle needs the simulator's ground truth (truth_rate, truth_saturation)")
        caps = self._caps(obs)
        live = obs.live.astype(bool)
        x, lam = waterfill(np.where(live, obs.truth_rate, 0.0), obs.truth_saturation, np.zeros(obs.n), caps, min(obs.plan, obs.pool_cap))
        return self._finish(obs, x, "hindsight: true conversion and saturation", price=lam if np.isfinite(lam) else 0.0)
