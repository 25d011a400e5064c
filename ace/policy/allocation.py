"""Allocation primitives shared by every policy: hard caps, water-filling and pacing.

* :func:`room_caps` — the hard per-room caps of a tick (max share of the plan, budget left).
* :func:`waterfill` — split a total over rooms with saturating value ``v * S * (1 - exp(-x / S))``
  so that every room with room to move has the same marginal value (the pool price), inside
  per-room bounds ``lo <= x <= hi``.
* :func:`proportional_fill` — split a total in proportion to weights inside per-room caps,
  handing what capped rooms cannot take to the others.
* :class:`PacingController` — a PI controller on cumulative spend against the pacing plan: how
  many impressions to aim for this tick so that spend tracks the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: numerical slack when checking caps (impressions)
EPS = 1e-6
#: up to this many rooms the water level is found exactly (sorted breakpoints), beyond by bisection
_EXACT_MAX = 1500


def room_caps(plan: float, max_share: float, budget: np.ndarray, spent: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Per-room hard cap for the coming tick: ``min(max_share * plan, budget - spent)``, 0 when
    not live."""
    left = np.maximum(np.where(np.isfinite(budget), budget - spent, np.inf), 0.0)
    return np.where(live, np.minimum(max_share * plan, left), 0.0)


def waterfill(
    value: np.ndarray,
    saturation: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    total: float,
    price_mult: np.ndarray | None = None,
    iters: int = 48,
) -> tuple[np.ndarray, float]:
    """Maximise ``sum v_i S_i (1 - exp(-x_i / S_i)) - lambda * m_i * x_i`` over ``lo <= x <= hi``
    with ``sum x = total`` (or as close as the bounds allow).

    The optimum is ``x_i = clip(S_i * log(v_i / (lambda * m_i)), lo_i, hi_i)``; ``lambda`` (the
    pool price, in value per impression) is found exactly from the sorted breakpoints of the
    piecewise-linear total (by bisection on its logarithm beyond ``_EXACT_MAX`` rooms). Returns
    ``(x, lambda)``; ``sum(x) <= max(total, sum(lo))`` always holds. ``lambda`` is 0 when every
    room is at its upper bound and ``inf`` when every room is held at its lower bound.
    """
    lo = np.minimum(lo, hi)
    x = lo.copy()
    free = hi > lo + EPS
    s_lo = float(lo.sum())
    remaining = total - s_lo
    if remaining <= EPS or not free.any():
        return x, float("inf")
    s_hi = float(hi.sum())
    if s_hi <= total + EPS:
        return hi.copy(), 0.0
    m = np.ones_like(value) if price_mult is None else price_mult
    idx = np.flatnonzero(free & (value > 0))
    if idx.size == 0:
        return x, float("inf")
    lv = np.log(value[idx]) - np.log(m[idx])
    sat = np.maximum(saturation[idx], 1e-9)
    l_i, h_i = lo[idx], hi[idx]
    base = s_lo - float(l_i.sum())  # everything but the free rooms' share above their lo
    # x_i(l) = clip(S_i (lv_i - l), lo_i, hi_i) is at hi_i for l <= lv_i - hi_i/S_i and at lo_i
    # for l >= lv_i - lo_i/S_i; the total is piecewise linear and decreasing in l
    b_hi = lv - h_i / sat
    b_lo = lv - l_i / sat
    if idx.size <= _EXACT_MAX:
        pts = np.sort(np.concatenate([b_hi, b_lo]))
        tot = base + np.clip(sat[None, :] * (lv[None, :] - pts[:, None]), l_i[None, :], h_i[None, :]).sum(axis=1)
        # tot is non-increasing along pts; find the last breakpoint with tot >= total
        j = int(np.searchsorted(-tot, -total, side="right")) - 1
        if j < 0:
            ell = float(pts[0])
        elif j >= pts.size - 1:
            ell = float(pts[-1])
        else:
            f0, f1 = float(tot[j]), float(tot[j + 1])
            ell = float(pts[j]) if f0 == f1 else float(pts[j] + (pts[j + 1] - pts[j]) * (f0 - total) / (f0 - f1))
        xi = np.clip(sat * (lv - ell), l_i, h_i)
        over = base + float(xi.sum()) - total
        if over > 0:  # rounding: trim the excess from rooms above their lo
            room = xi - l_i
            xi -= room * min(1.0, over / max(float(room.sum()), 1e-300))
        x[idx] = xi
        return x, float(np.exp(ell))
    top, bottom = float(lv.max()), float(b_hi.min())
    for _ in range(iters):
        mid = 0.5 * (top + bottom)
        got = base + float(np.clip(sat * (lv - mid), l_i, h_i).sum())
        if got > total:
            bottom = mid
        else:
            top = mid
    x[idx] = np.clip(sat * (lv - top), l_i, h_i)
    return x, float(np.exp(top))


def proportional_fill(weights: np.ndarray, hi: np.ndarray, total: float, iters: int = 30) -> np.ndarray:
    """Split ``total`` in proportion to ``weights`` (>= 0) with ``x <= hi``; what a capped room
    cannot take goes to the others in the same proportion. ``sum(x) <= total``."""
    w = np.where(hi > 0, np.maximum(weights, 0.0), 0.0)
    x = np.zeros_like(hi, dtype=float)
    left = float(total)
    active = w > 0
    for _ in range(iters):
        if left <= EPS or not active.any():
            break
        share = left * w * active / float((w * active).sum())
        room = hi - x
        take = np.minimum(share, room)
        x += take
        left -= float(take.sum())
        active &= (hi - x) > EPS
    return x


@dataclass
class PacingController:
    """PI control of spend against the pacing plan.

    ``error`` is cumulative plan minus cumulative spend (impressions behind plan). The tick's
    spend target is ``plan + kp * error + ki * integral``, where ``integral`` sums the error over
    ticks (clamped to ``windup`` ticks of plan). Call :meth:`target` before deciding and
    :meth:`record` after.
    """

    kp: float = 0.5  #: share of the backlog to catch up each tick
    ki: float = 0.05  #: weight of the accumulated backlog
    windup: float = 2.0  #: integral clamp, in ticks of plan
    error: float = 0.0
    integral: float = 0.0

    def target(self, plan: float, pool_cap: float) -> float:
        u = self.kp * self.error + self.ki * self.integral
        return float(np.clip(plan + u, 0.0, pool_cap))

    def record(self, plan: float, spent: float) -> None:
        self.error += plan - spent
        lim = self.windup * max(plan, 1.0)
        self.integral = float(np.clip(self.integral + self.error, -lim, lim))

    def reset(self) -> None:
        self.error = 0.0
        self.integral = 0.0
