"""The contract every ramp policy follows, and the string-keyed front door the live actor uses.

A policy decides, once per tick, how many promoted impressions each live room gets next tick.
Subclasses implement :meth:`Policy.step` on an :class:`~ace.policy.state.Observation` (arrays
over room slots) and return an :class:`~ace.policy.state.Allocation`. :meth:`Policy.decide`
wraps that for live use: it takes :class:`~ace.policy.state.RoomAggregate` objects keyed by
stream id and returns :class:`~ace.types.RampDecision` objects with their reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ace.policy.state import TIER_LABELS, Allocation, Observation, RoomAggregate, SlotMap, observation_from_aggregates
from ace.types import Moment, RampDecision

log = logging.getLogger("ace.policy")


class Policy:
    """Base class: subclasses set ``name`` and implement :meth:`step` (and :meth:`forget` when
    they keep per-room state)."""

    name: str = "policy"
    #: True for policies that read the simulator's ground truth (the oracle only)
    needs_truth: bool = False
    #: a room unseen for this long (seconds) is forgotten by :meth:`decide` and its slot reused
    forget_after_s: float = 1800.0

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.slots = SlotMap()
        self._last_seen: dict[str, float] = {}

    def snapshot(self) -> dict:
        """The policy's memory as plain JSON data (no NaN or infinities: they are written as
        strings), to survive a restart with :meth:`restore`."""
        return {"policy": self.name, "slots": self.slots.snapshot(), "last_seen": dict(self._last_seen)}

    def restore(self, snap: dict) -> None:
        """Take back the memory of :meth:`snapshot` (of a policy of the same kind)."""
        if snap.get("policy") != self.name:
            raise ValueError(f"a {snap.get('policy')!r} policy's state cannot be given to {self.name!r}")
        self.slots = SlotMap.from_snapshot(snap.get("slots") or {})
        self._last_seen = {str(k): float(v) for k, v in (snap.get("last_seen") or {}).items()}

    def step(self, obs: Observation) -> Allocation:  # pragma: no cover - abstract
        raise NotImplementedError

    def forget(self, slots: np.ndarray) -> None:
        """Drop per-room state of ``slots`` (they will be reused for new rooms)."""

    def decide(
        self,
        t: float,
        aggregates: Sequence[RoomAggregate],
        moments: Sequence[Moment] = (),
        *,
        plan: float,
        pool_cap: float | None = None,
        dt: float = 30.0,
    ) -> list[RampDecision]:
        """Decide the coming tick for the rooms in ``aggregates`` (the rooms live now).

        ``plan`` is the number of promoted impressions the pacing plan wants spent in the coming
        tick, ``pool_cap`` the hard cap (``plan`` when omitted). Returns one decision per live
        room, in the order of ``aggregates``; ``share`` is the room's impressions over ``plan``.
        """
        for a in aggregates:
            self._last_seen[a.stream_id] = t
        stale = [s for s, seen in self._last_seen.items() if t - seen > self.forget_after_s]
        if stale:
            freed = [self.slots.release(s) for s in stale]
            for s in stale:
                del self._last_seen[s]
            self.forget(np.array([f for f in freed if f is not None], dtype=np.int64))
            log.debug("forgot %d rooms unseen for %.0f s", len(stale), self.forget_after_s)
        obs = observation_from_aggregates(self.slots, aggregates, moments, t=t, dt=dt, plan=plan, pool_cap=plan if pool_cap is None else pool_cap)
        alloc = self.step(obs)
        out = []
        for a in aggregates:
            i = self.slots.slot(a.stream_id)
            tier = int(alloc.tier[i])
            out.append(
                RampDecision(
                    stream_id=a.stream_id,
                    t=t,
                    level=_level(tier),
                    share=float(alloc.share[i]),
                    reason=alloc.reason(i),
                )
            )
        return out


def _level(tier: int) -> str:
    return TIER_LABELS[tier] if 0 <= tier < len(TIER_LABELS) else "fixed"
