"""Factories for ramp-policy tests: observations over room slots, built from plain numbers."""

from __future__ import annotations

import numpy as np

from ace.policy.state import Observation, category_code


def make_obs(n: int, t: float, *, plan: float = 20_000.0, pool_cap: float | None = None, dt: float = 30.0, **arrays) -> Observation:
    """An observation for ``n`` slots; keyword arrays (or scalars) fill the named fields."""
    obs = Observation.empty(n, t=t, dt=dt, plan=plan, pool_cap=plan * 1.1 if pool_cap is None else pool_cap)
    for name, value in arrays.items():
        if name.startswith("moment_"):
            setattr(obs, name, np.asarray(value))
            continue
        arr = getattr(obs, name)
        setattr(obs, name, np.broadcast_to(np.asarray(value, dtype=arr.dtype), arr.shape).copy())
    return obs


def honest_counts(rng: np.random.Generator, alloc: np.ndarray, viewers: np.ndarray, quality: np.ndarray, live: np.ndarray) -> dict:
    """What honest rooms' audiences might do with last tick's allocation."""
    n = alloc.shape[0]
    entries = rng.poisson(alloc * 0.045).astype(float)
    orders = rng.binomial(entries.astype(np.int64), np.clip(0.05 * quality, 0, 1)).astype(float)
    users = np.maximum(viewers * 0.12, 0.0)
    return {
        "live": live,
        "viewers": viewers,
        "impressions": alloc,
        "entries": entries,
        "watch_s": entries * 60.0,
        "orders": orders,
        "carts": orders * 2,
        "follows": np.zeros(n),
        "organic_entries": rng.poisson(viewers * 0.06).astype(float),
        "organic_orders": rng.poisson(viewers * 0.003).astype(float),
        "likes": rng.poisson(viewers * 0.4).astype(float),
        "comments": rng.poisson(viewers * 0.06).astype(float),
        "users": users,
        "trusted_users": users * 0.55,
        "category": np.full(n, category_code("fashion")),
    }
