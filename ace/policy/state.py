"""What the ramp policies see and remember: inputs, outputs and the explicit per-room state.

Inputs come in two shapes that carry the same fields:

* :class:`RoomAggregate` — one live room's interaction aggregates over the last tick, keyed by
  ``stream_id``. This is what the live pipeline hands the ramp actor (see ``workers/ramp.py``).
  :func:`interaction_counts` fills its audience part from raw :class:`~ace.types.Event` lists.
* :class:`Observation` — the same fields as numpy arrays over room *slots*, plus the pool's plan
  for the next tick and the moments delivered since the last tick. Policies work on these, so
  one tick over hundreds of rooms is a handful of vector operations. The simulator builds them
  directly; :class:`SlotMap` turns ``RoomAggregate`` lists into them.

Outputs are :class:`Allocation` (arrays, with a human-readable reason per room on demand) and,
through :meth:`ace.policy.base.Policy.decide`, :class:`~ace.types.RampDecision` objects.

The ramp policy's memory is :class:`RoomStates`: one array per field, one row per slot, every
field documented in :data:`STATE_FIELDS`. ``RampPolicy.room_state`` returns one room's state as
a frozen :class:`RoomState` for the back office.

Units: impressions are promoted impressions per tick; rates are per *effective* impression
(see :func:`effective_impressions`) or per entry, as named; times are float seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import IntEnum

import numpy as np

from ace.types import Event


class Tier(IntEnum):
    """A room's stage in the ramp. ``-1`` in tier arrays means "not live"."""

    PROBE = 0  #: new room: a fixed small probe while its deep signals are measured
    RAMP = 1  #: earning more: allocation may grow up to the ramp-up limit each tick
    SUSTAIN = 2  #: near its target: follows the target (highlights still ramp it)
    COOL = 3  #: weak, flagged or killed: allocation only goes down

    @property
    def label(self) -> str:
        return self.name.lower()


TIER_LABELS: tuple[str, ...] = tuple(t.label for t in Tier)


@dataclass(frozen=True, slots=True)
class CategoryPrior:
    """Prior beliefs for a category of rooms, from the platform's history of that category.

    Per-entry rates describe what viewers who entered from a promoted impression do. ``strength``
    is how many entries' worth of evidence the prior is worth (the entry-rate prior is worth
    ``strength / entry_rate`` impressions).
    """

    entry_rate: float = 0.045  #: entries per effective promoted impression
    order_rate: float = 0.05  #: orders per entry
    watch_s: float = 60.0  #: watch seconds per entry
    follow_rate: float = 0.02  #: follows per entry
    cart_rate: float = 0.12  #: add-to-cart per entry
    strength: float = 30.0  #: prior weight, in entries


#: Category priors. Index in this tuple is the category code used in :class:`Observation`.
CATEGORIES: tuple[str, ...] = ("beauty", "fashion", "food", "electronics", "games", "other")

DEFAULT_PRIORS: dict[str, CategoryPrior] = {
    "beauty": CategoryPrior(entry_rate=0.050, order_rate=0.060, watch_s=70.0, follow_rate=0.025, cart_rate=0.15),
    "fashion": CategoryPrior(entry_rate=0.045, order_rate=0.050, watch_s=60.0, follow_rate=0.020, cart_rate=0.13),
    "food": CategoryPrior(entry_rate=0.055, order_rate=0.070, watch_s=50.0, follow_rate=0.015, cart_rate=0.17),
    "electronics": CategoryPrior(entry_rate=0.035, order_rate=0.030, watch_s=90.0, follow_rate=0.020, cart_rate=0.08),
    "games": CategoryPrior(entry_rate=0.040, order_rate=0.020, watch_s=110.0, follow_rate=0.040, cart_rate=0.05),
    "other": CategoryPrior(),
}


def category_code(name: str) -> int:
    """Code of a category name; unknown names map to ``other``."""
    try:
        return CATEGORIES.index(name.lower())
    except ValueError:
        return CATEGORIES.index("other")


def effective_impressions(impressions: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """Saturating exposure: ``S * (1 - exp(-x / S))``. The first impressions of a tick are worth
    one each; beyond the room's saturation scale ``S`` (impressions per tick it can absorb) extra
    impressions are worth less and less."""
    s = np.maximum(saturation, 1e-9)
    return s * -np.expm1(-np.maximum(impressions, 0.0) / s)


# --------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True, slots=True)
class RoomAggregate:
    """One live room over the last tick, as the live pipeline reports it.

    Promoted counts (``impressions`` .. ``orders_cancelled``) are attributed by the platform to
    promoted traffic; the policy learns from those only. Audience counts (``likes`` ..
    ``trusted_users``, ``organic_*``) cover everyone in the room; they corroborate highlights and
    reveal gaming but never feed the estimates. Clip counts (``clip_views``, ``clip_clicks``) are
    the audience of the room's published clips outside it: interest in the room, which raises its
    value a little (``RampOptions.clip_*``) but never its estimates.
    """

    stream_id: str
    category: str = "other"
    #: streamer's past conversion relative to the category (1.0 = category average); NaN if unknown
    history: float = math.nan
    #: promoted impressions the room may receive in total (hard cap); inf for no budget
    budget: float = math.inf
    #: when the room plans to end (seconds, same clock as ``t``), for budget pacing; NaN if unknown
    planned_end: float = math.nan
    viewers: float = 0.0  #: concurrent viewers now
    impressions: float = 0.0  #: promoted impressions delivered in the last tick
    entries: float = 0.0  #: entries from promoted impressions
    watch_s: float = 0.0  #: total watch seconds of those entries
    follows: float = 0.0  #: follows by viewers who entered from promotion
    carts: float = 0.0  #: add-to-cart by viewers who entered from promotion
    orders: float = 0.0  #: orders by viewers who entered from promotion (includes ``orders_held``)
    orders_held: float = 0.0  #: part of ``orders`` by new or untrusted buyers: credited only after a hold
    orders_cancelled: float = 0.0  #: earlier promoted orders cancelled in the last tick
    organic_entries: float = 0.0  #: entries from everywhere else
    organic_orders: float = 0.0  #: orders from everyone else
    likes: float = 0.0  #: raw likes
    comments: float = 0.0  #: raw chat messages
    shallow_capped: float = 0.0  #: likes + comments after the per-user cap (sum over users of min(n, cap))
    users: float = 0.0  #: distinct users who interacted
    trusted_users: float = 0.0  #: distinct users with a trusted account (history, verified, not flagged)
    #: views of the room's published clips, after the per-user cap (``clip_view`` events)
    clip_views: float = 0.0
    #: click-throughs from the room's published clips to the room, after the per-user cap (``clip_click``)
    clip_clicks: float = 0.0


#: The event kinds of a published clip's audience (see :class:`RoomAggregate` ``clip_views``, ``clip_clicks``).
CLIP_KINDS: frozenset[str] = frozenset({"clip_view", "clip_click"})

#: Observation fields that hold one float per slot, in RoomAggregate order.
ROOM_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RoomAggregate) if f.name not in ("stream_id", "category"))


def interaction_counts(
    events: Iterable[Event],
    *,
    trusted: Callable[[str], bool] | None = None,
    per_user_cap: int = 10,
    clip_view_cap: int = 3,
    clip_click_cap: int = 1,
) -> dict[str, float]:
    """Audience part of a :class:`RoomAggregate` from one tick's raw events.

    Counts likes and chat, follows, carts and orders (as organic orders), distinct users and
    distinct trusted users, and the per-user-capped shallow count (each user's likes + chat count
    at most ``per_user_cap``). ``viewers`` events set ``viewers`` to the last value seen. Clip
    events count once per user, clip and kind, and each user's at most ``clip_view_cap`` views
    and ``clip_click_cap`` clicks (events without a user do not count); they are not room users.
    Returns keyword arguments for ``RoomAggregate`` (or ``dataclasses.replace``).
    """
    likes = comments = orders = 0.0
    per_user: dict[str, float] = {}
    users: set[str] = set()
    viewers: float | None = None
    clip_seen: set[tuple[str, str, str]] = set()
    for e in events:
        if e.kind == "viewers":
            viewers = float(e.value)
            continue
        if e.kind in CLIP_KINDS:
            if e.user:
                clip_seen.add((e.kind, e.user, e.text.strip()))
            continue
        if e.user:
            users.add(e.user)
        if e.kind == "like":
            likes += e.value
        elif e.kind == "chat":
            comments += 1.0
        elif e.kind == "order":
            orders += 1.0
        if e.kind in ("like", "chat"):
            per_user[e.user] = per_user.get(e.user, 0.0) + (e.value if e.kind == "like" else 1.0)
    capped = sum(min(n, float(per_user_cap)) if u else n for u, n in per_user.items())
    views: dict[str, float] = {}
    clicks: dict[str, float] = {}
    for kind, user, _clip in clip_seen:
        d = views if kind == "clip_view" else clicks
        d[user] = d.get(user, 0.0) + 1.0
    out = {
        "likes": likes,
        "comments": comments,
        "organic_orders": orders,
        "shallow_capped": float(capped),
        "users": float(len(users)),
        "trusted_users": float(sum(1 for u in users if trusted(u))) if trusted else 0.0,
        "clip_views": float(sum(min(n, float(clip_view_cap)) for n in views.values())),
        "clip_clicks": float(sum(min(n, float(clip_click_cap)) for n in clicks.values())),
    }
    if viewers is not None:
        out["viewers"] = viewers
    return out


@dataclass(slots=True)
class Observation:
    """Everything a policy sees at one decision time, as arrays over slots.

    ``t`` is the decision time: the start of the tick being decided. Per-slot arrays describe the
    tick that just ended. Moments are the highlights delivered since the last decision, as four
    parallel arrays. ``truth_*`` are filled by the simulator only and used only by the oracle.
    """

    t: float
    dt: float
    plan: float  #: impressions the pacing plan wants spent in the coming tick
    pool_cap: float  #: hard cap on impressions in the coming tick
    live: np.ndarray  #: bool: room is live for the coming tick
    category: np.ndarray  #: int category code (index in :data:`CATEGORIES`)
    history: np.ndarray
    budget: np.ndarray
    planned_end: np.ndarray
    viewers: np.ndarray
    impressions: np.ndarray
    entries: np.ndarray
    watch_s: np.ndarray
    follows: np.ndarray
    carts: np.ndarray
    orders: np.ndarray
    orders_held: np.ndarray
    orders_cancelled: np.ndarray
    organic_entries: np.ndarray
    organic_orders: np.ndarray
    likes: np.ndarray
    comments: np.ndarray
    shallow_capped: np.ndarray
    users: np.ndarray
    trusted_users: np.ndarray
    clip_views: np.ndarray
    clip_clicks: np.ndarray
    moment_slot: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    moment_start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    moment_end: np.ndarray = field(default_factory=lambda: np.zeros(0))
    moment_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    truth_rate: np.ndarray | None = None  #: simulator only: true orders per effective impression
    truth_saturation: np.ndarray | None = None  #: simulator only: true saturation scale

    @property
    def n(self) -> int:
        return int(self.live.shape[0])

    @classmethod
    def empty(cls, n: int, *, t: float = 0.0, dt: float = 30.0, plan: float = 0.0, pool_cap: float | None = None) -> Observation:
        """All-zero observation for ``n`` slots (nothing live, unknown history, no budget limit)."""
        z = lambda: np.zeros(n)  # noqa: E731
        kw = {name: z() for name in ROOM_FIELDS}
        kw["history"] = np.full(n, np.nan)
        kw["budget"] = np.full(n, np.inf)
        kw["planned_end"] = np.full(n, np.nan)
        return cls(
            t=t,
            dt=dt,
            plan=plan,
            pool_cap=plan if pool_cap is None else pool_cap,
            live=np.zeros(n, dtype=bool),
            category=np.full(n, category_code("other"), dtype=np.int64),
            **kw,
        )


@dataclass(slots=True)
class Allocation:
    """A policy's decision for the coming tick, per slot.

    ``kill`` marks the rooms whose allocation may fall by more than the ramp-down limit this tick
    (kill switch, exhausted budget, hard-cap contraction); every other live room obeys the ramp
    limits. ``tier`` is ``-1`` for rooms that are not live.
    """

    t: float
    plan: float
    impressions: np.ndarray
    tier: np.ndarray
    kill: np.ndarray
    price: float = 0.0  #: pool price (value per impression at the margin), 0 if not priced
    explain: Callable[[int], str] | None = None

    @property
    def share(self) -> np.ndarray:
        """Impressions as a fraction of the tick's plan."""
        return self.impressions / self.plan if self.plan > 0 else np.zeros_like(self.impressions)

    def reason(self, slot: int) -> str:
        """Human-readable reason for one slot's decision."""
        if self.explain is not None:
            return self.explain(slot)
        return f"{self.impressions[slot]:.0f} impressions"


# --------------------------------------------------------------------------------------------
# explicit per-room state of the ramp policy


#: name -> (dtype, initial value, documentation). One array per entry in :class:`RoomStates`.
STATE_FIELDS: dict[str, tuple[type, float, str]] = {
    # identity and priors
    "active": (bool, False, "slot holds a room the policy has seen"),
    "category": (np.int64, 5, "category code"),
    "history": (float, np.nan, "streamer history multiplier (NaN unknown)"),
    "first_seen": (float, np.nan, "time the room was first seen live"),
    "last_seen": (float, np.nan, "last time the room was seen live"),
    "ticks_seen": (np.int64, 0, "observations of the room so far"),
    # discounted promoted evidence (forgetting half-life RampOptions.half_life_s)
    "ev_imps": (float, 0.0, "effective promoted impressions"),
    "ev_entries": (float, 0.0, "promoted entries"),
    "ev_watch": (float, 0.0, "watch seconds of promoted entries"),
    "ev_follows": (float, 0.0, "follows from promoted entries"),
    "ev_carts": (float, 0.0, "carts from promoted entries"),
    "ev_orders": (float, 0.0, "credited promoted orders"),
    "orders_total": (float, 0.0, "credited promoted orders, never discounted (ramp gate)"),
    # audience baselines (EWMA per tick) for corroboration and gaming checks
    "base_shallow": (float, np.nan, "likes + comments per tick"),
    "base_org_entries": (float, np.nan, "organic entries per tick"),
    "base_org_orders": (float, np.nan, "organic orders per tick"),
    "deep_z": (float, 0.0, "deep-signal lift z-score of the last tick"),
    "deep_z_prev": (float, 0.0, "deep-signal lift z-score of the tick before"),
    # allocation, spend and prices
    "alloc": (float, 0.0, "impressions allocated for the current tick"),
    "probe_alloc": (float, 0.0, "impressions of the room's first probe"),
    "spent": (float, 0.0, "impressions allocated so far (counts against the budget)"),
    "budget": (float, np.inf, "room budget in impressions"),
    "planned_end": (float, np.nan, "planned end, for budget pacing"),
    "mu": (float, 0.0, "room budget price, relative to the pool price (dual variable)"),
    # tiers
    "tier": (np.int64, 0, "current Tier"),
    "tier_since": (float, np.nan, "time the room entered its tier"),
    "tier_switches": (np.int64, 0, "tier changes so far"),
    "probe_ticks": (np.int64, 0, "ticks spent at probe allocation"),
    "pending_tier": (np.int64, -1, "tier the room is confirming a move to (-1 none)"),
    "pending_ticks": (np.int64, 0, "consecutive ticks the move has been called for"),
    # highlights
    "boost": (float, 0.0, "highlight boost B (value and capacity scale by 1 + B)"),
    "moment_start": (float, np.nan, "start of the latest ACE moment"),
    "moment_open_until": (float, -np.inf, "the latest moment may be corroborated until then"),
    "moment_score": (float, 0.0, "score of the latest moment"),
    "boost_since": (float, np.nan, "time the latest highlight was corroborated first"),
    "boost_base": (float, 0.0, "allocation before the current highlight (base of the highlight floor)"),
    "hl_last": (float, -np.inf, "last time a highlight was corroborated"),
    "hl_got": (float, 0.0, "trusted orders seen since the latest moment started"),
    "hl_exp": (float, 0.0, "orders expected over the same ticks without a highlight"),
    "lift": (float, 1.0, "estimated conversion lift of the current highlight"),
    # published clips
    "clip_interest": (float, 0.0, "clip clicks + weighted views per tick (EWMA, half-life RampOptions.clip_half_life_s)"),
    # anti-gaming
    "freeze_until": (float, -np.inf, "no ramp-up and no boost before this time"),
    "flags": (np.int64, 0, "gaming flags raised"),
    "last_flag": (float, -np.inf, "time of the latest flag"),
    "killed": (bool, False, "kill switch on: allocation 0 until reset"),
    "kill_reason_code": (np.int64, 0, "why the kill switch is on (see ramp.KILL_REASONS)"),
}


class RoomStates:
    """Struct-of-arrays state for every slot. Attribute ``name`` is the array for field ``name``
    of :data:`STATE_FIELDS`; ``held`` is the ``(slots, hold_ticks)`` queue of order credit held
    back (column 0 newest)."""

    def __init__(self, n: int = 0, hold_ticks: int = 1):
        self.n = 0
        self.hold_ticks = max(1, int(hold_ticks))
        self.held = np.zeros((0, self.hold_ticks))
        for name, (dtype, init, _doc) in STATE_FIELDS.items():
            setattr(self, name, np.full(0, init, dtype=dtype))
        self.grow(n)

    def grow(self, n: int) -> None:
        """Make room for at least ``n`` slots (new slots get the initial values)."""
        if n <= self.n:
            return
        extra = n - self.n
        for name, (dtype, init, _doc) in STATE_FIELDS.items():
            setattr(self, name, np.concatenate([getattr(self, name), np.full(extra, init, dtype=dtype)]))
        self.held = np.concatenate([self.held, np.zeros((extra, self.hold_ticks))])
        self.n = n

    def snapshot(self) -> dict:
        """Every field as a JSON list (non-finite floats as strings)."""
        out = {name: _json_list(getattr(self, name)) for name in STATE_FIELDS}
        return out | {"n": self.n, "hold_ticks": self.hold_ticks, "held": [_json_list(r) for r in self.held]}

    @classmethod
    def from_snapshot(cls, snap: dict) -> RoomStates:
        s = cls(0, hold_ticks=int(snap.get("hold_ticks", 1)))
        n = int(snap.get("n", 0))
        s.grow(n)
        for name, (dtype, _init, _doc) in STATE_FIELDS.items():
            if name in snap:
                setattr(s, name, np.array([float(x) if isinstance(x, str) else x for x in snap[name]], dtype=dtype))
        if snap.get("held"):
            s.held = np.array([[float(x) for x in row] for row in snap["held"]], dtype=float).reshape(n, s.hold_ticks)
        return s

    def reset(self, slots: np.ndarray) -> None:
        """Forget the rooms in ``slots`` (their slots may be reused by new rooms)."""
        for name, (_dtype, init, _doc) in STATE_FIELDS.items():
            getattr(self, name)[slots] = init
        self.held[slots] = 0.0


def _json_list(a: np.ndarray) -> list:
    """An array as JSON-safe values: NaN and infinities as the strings float() reads back."""
    if a.dtype.kind == "f":
        return [x if np.isfinite(x) else repr(float(x)) for x in a.tolist()]
    return a.tolist()


@dataclass(frozen=True, slots=True)
class RoomState:
    """One room's ramp state, for people: estimates are posterior means on promoted traffic."""

    stream_id: str
    slot: int
    category: str
    tier: str
    first_seen: float
    entry_rate: float  #: entries per effective impression
    order_rate: float  #: orders per entry
    orders_per_1k: float  #: orders per 1,000 effective impressions
    watch_s: float  #: watch seconds per entry
    follow_rate: float  #: follows per entry
    cart_rate: float  #: carts per entry
    boost: float  #: highlight boost B
    alloc: float  #: impressions this tick
    spent: float  #: impressions so far
    budget_left: float
    budget_price: float
    orders_held: float  #: order credit held back
    flags: int
    frozen_until: float
    killed: bool
    tier_switches: int
    clip_interest: float = 0.0  #: clip clicks + weighted views per tick (smoothed)
    clip_lift: float = 1.0  #: what clip interest multiplies the room's value by


class SlotMap:
    """Stable slots for stream ids: a new id takes a free slot (or a new one); :meth:`release`
    frees a slot for reuse."""

    def __init__(self) -> None:
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._slot

    def get(self, stream_id: str) -> int | None:
        return self._slot.get(stream_id)

    def slot(self, stream_id: str) -> int:
        """The slot of ``stream_id``, assigning one if needed."""
        s = self._slot.get(stream_id)
        if s is None:
            if self._free:
                s = self._free.pop()
                self._ids[s] = stream_id
            else:
                s = len(self._ids)
                self._ids.append(stream_id)
            self._slot[stream_id] = s
        return s

    def stream(self, slot: int) -> str | None:
        return self._ids[slot] if 0 <= slot < len(self._ids) else None

    def items(self) -> list[tuple[str, int]]:
        return list(self._slot.items())

    def release(self, stream_id: str) -> int | None:
        s = self._slot.pop(stream_id, None)
        if s is not None:
            self._ids[s] = None
            self._free.append(s)
        return s

    def snapshot(self) -> dict:
        return {"ids": list(self._ids), "free": list(self._free)}

    @classmethod
    def from_snapshot(cls, snap: dict) -> SlotMap:
        m = cls()
        m._ids = [None if i is None else str(i) for i in snap.get("ids", [])]
        m._free = [int(i) for i in snap.get("free", [])]
        m._slot = {sid: n for n, sid in enumerate(m._ids) if sid is not None}
        return m


def observation_from_aggregates(
    slots: SlotMap,
    aggregates: Sequence[RoomAggregate],
    moments: Sequence,
    *,
    t: float,
    dt: float,
    plan: float,
    pool_cap: float,
) -> Observation:
    """Build an :class:`Observation` over ``slots`` (assigning slots to new stream ids).

    ``moments`` are :class:`~ace.types.Moment` objects whose ``show_id`` is the live room's
    stream id; moments of rooms not in ``aggregates`` are ignored.
    """
    for a in aggregates:
        slots.slot(a.stream_id)
    obs = Observation.empty(len(slots), t=t, dt=dt, plan=plan, pool_cap=pool_cap)
    for a in aggregates:
        i = slots.slot(a.stream_id)
        obs.live[i] = True
        obs.category[i] = category_code(a.category)
        for name in ROOM_FIELDS:
            getattr(obs, name)[i] = float(getattr(a, name))
    live_ids = {a.stream_id for a in aggregates}
    ms = [(slots.slot(m.show_id), m) for m in moments if m.show_id in live_ids]
    if ms:
        obs.moment_slot = np.array([s for s, _ in ms], dtype=np.int64)
        obs.moment_start = np.array([m.start for _, m in ms], dtype=float)
        obs.moment_end = np.array([m.end for _, m in ms], dtype=float)
        obs.moment_score = np.array([m.score for _, m in ms], dtype=float)
    return obs
