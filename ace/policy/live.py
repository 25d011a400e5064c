"""From a live stream's raw interaction events to the ramp policy's per-tick room aggregates.

A :class:`RoomTally` sits in each stream's worker. Events are counted as they arrive, into one
bucket per wall-clock second of arrival; :meth:`RoomTally.aggregate` sums the buckets of a tick's
window ``[since, until)`` (whole seconds) into a :class:`~ace.policy.state.RoomAggregate`.
Consecutive windows that share their edges count every event exactly once, and asking for the same
window twice gives the same answer, so a ramp tick that fails and is retried loses nothing and
counts nothing twice. Buckets older than ``horizon_s`` are dropped, so memory is bounded by the
horizon, not by the stream's length.

How events map onto the aggregate (see :class:`~ace.types.Event` for the fields):

===========================  ======================================================================
event                        counts as
===========================  ======================================================================
``impression`` (promoted)    ``impressions`` += value (the platform reports promoted impressions)
``entry``                    ``entries`` (promoted) or ``organic_entries``, += value
``watch``                    ``watch_s`` += value seconds, promoted viewers only
``follow``, ``cart``         ``follows`` / ``carts`` when promoted (audience users either way)
``order``                    promoted: ``orders``, and ``orders_held`` too unless ``trusted``;
                             else ``organic_orders``
``cancel`` (promoted)        ``orders_cancelled``
``like``, ``chat``           ``likes`` (+= value) / ``comments``; each user's likes + chat count at
                             most ``per_user_cap`` towards ``shallow_capped``
``viewers``                  ``viewers``: the last value seen
``clip_view`` / ``_click``   ``clip_views`` / ``clip_clicks``: a user's view (click) of one clip
                             (its id in ``text``) counts once per ``horizon_s``, and each user's
                             at most ``clip_view_cap`` views and ``clip_click_cap`` clicks per
                             window; events without a user count nothing; not room ``users``
any other event with a user  ``users``; ``trusted_users`` when ``trusted``
===========================  ======================================================================
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ace.policy.state import CLIP_KINDS, RoomAggregate
from ace.types import Event

__all__ = ["RoomTally"]

_SUMS = ("impressions", "entries", "watch_s", "follows", "carts", "orders", "orders_held", "orders_cancelled",
         "organic_entries", "organic_orders", "likes", "comments")


@dataclass
class _Bucket:
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_SUMS, 0.0))
    shallow: dict[str, float] = field(default_factory=dict)  # user -> likes + chat this second
    users: set[str] = field(default_factory=set)
    trusted: set[str] = field(default_factory=set)
    viewers: float | None = None
    anonymous_shallow: float = 0.0  # likes + chat without a user: never capped, never a user
    clip_views: dict[str, float] = field(default_factory=dict)  # user -> new clip views this second
    clip_clicks: dict[str, float] = field(default_factory=dict)  # user -> new clip clicks this second


class RoomTally:
    """Counts one room's events by arrival second (thread-safe).

    ``horizon_s`` bounds how far back a window may reach; ``per_user_cap`` is the anti-gaming cap
    on each user's shallow signals per window, ``clip_view_cap`` and ``clip_click_cap`` the caps on
    each user's clip views and clicks per window; ``clock`` gives arrival times (wall seconds)."""

    #: the most (kind, user, clip) triples remembered to count each clip view or click once
    MAX_CLIP_SEEN = 200_000

    def __init__(self, horizon_s: float = 900.0, per_user_cap: int = 10, clock: Callable[[], float] = time.time,
                 clip_view_cap: int = 3, clip_click_cap: int = 1):
        self.horizon_s = float(horizon_s)
        self.per_user_cap = int(per_user_cap)
        self.clip_view_cap, self.clip_click_cap = int(clip_view_cap), int(clip_click_cap)
        self.clock = clock
        self._buckets: OrderedDict[int, _Bucket] = OrderedDict()
        self._clip_seen: OrderedDict[tuple[str, str, str], int] = OrderedDict()  # -> second first counted
        self._lock = threading.Lock()
        self._viewers = 0.0
        self.counted = 0  #: events counted since the tally was made

    def add(self, events: Iterable[Event], now: float | None = None) -> int:
        """Count events that arrived at ``now`` (default: the clock); returns how many."""
        sec = int(math.floor(self.clock() if now is None else now))
        n = 0
        with self._lock:
            b = self._buckets.get(sec)
            if b is None:
                stepped_back = bool(self._buckets) and next(reversed(self._buckets)) > sec
                b = self._buckets[sec] = _Bucket()
                if stepped_back:  # the clock stepped backwards: keep the buckets in time order
                    self._buckets = OrderedDict(sorted(self._buckets.items()))
            for e in events:
                if e.kind in CLIP_KINDS:
                    self._count_clip(b, e, sec)
                else:
                    _count(b, e)
                n += 1
            if b.viewers is not None:
                self._viewers = b.viewers
            self.counted += n
            self._trim(sec)
        return n

    def _count_clip(self, b: _Bucket, e: Event, sec: int) -> None:
        """A clip view or click: counted when its user has not been counted for that clip (and
        kind) within the horizon; anonymous ones are not counted (they cannot be capped)."""
        if not e.user:
            return
        key = (e.kind, e.user, e.text.strip())
        at = self._clip_seen.get(key)
        if at is not None and sec - at < self.horizon_s:
            return
        self._clip_seen[key] = sec
        self._clip_seen.move_to_end(key)
        while len(self._clip_seen) > self.MAX_CLIP_SEEN:
            self._clip_seen.popitem(last=False)
        d = b.clip_views if e.kind == "clip_view" else b.clip_clicks
        d[e.user] = d.get(e.user, 0.0) + 1.0

    def _trim(self, now_sec: int) -> None:
        oldest = now_sec - int(self.horizon_s)
        while self._buckets:
            k = next(iter(self._buckets))
            if k >= oldest:
                break
            del self._buckets[k]
        while self._clip_seen:
            key, at = next(iter(self._clip_seen.items()))
            if at >= oldest:
                break
            del self._clip_seen[key]

    def aggregate(self, stream_id: str, since: float, until: float, **room) -> RoomAggregate:
        """The room over the window ``[floor(since), floor(until))`` of arrival seconds. ``room``
        sets the fields events do not carry (``category``, ``history``, ``budget``,
        ``planned_end``)."""
        lo, hi = int(math.floor(since)), int(math.floor(until))
        sums = dict.fromkeys(_SUMS, 0.0)
        shallow: dict[str, float] = {}
        anon = 0.0
        users: set[str] = set()
        trusted: set[str] = set()
        viewers = None
        views: dict[str, float] = {}
        clicks: dict[str, float] = {}
        with self._lock:
            for sec, b in self._buckets.items():
                if sec < lo:
                    continue
                if sec >= hi:
                    break
                for k, v in b.sums.items():
                    sums[k] += v
                for u, v in b.shallow.items():
                    shallow[u] = shallow.get(u, 0.0) + v
                anon += b.anonymous_shallow
                for u, v in b.clip_views.items():
                    views[u] = views.get(u, 0.0) + v
                for u, v in b.clip_clicks.items():
                    clicks[u] = clicks.get(u, 0.0) + v
                users |= b.users
                trusted |= b.trusted
                if b.viewers is not None:
                    viewers = b.viewers
            if viewers is None:
                viewers = self._viewers
        capped = sum(min(v, float(self.per_user_cap)) for v in shallow.values()) + anon
        clip_views = sum(min(v, float(self.clip_view_cap)) for v in views.values())
        clip_clicks = sum(min(v, float(self.clip_click_cap)) for v in clicks.values())
        return RoomAggregate(stream_id=stream_id, viewers=float(viewers), shallow_capped=float(capped),
                             users=float(len(users)), trusted_users=float(len(trusted)), clip_views=float(clip_views),
                             clip_clicks=float(clip_clicks), **sums, **room)


def _count(b: _Bucket, e: Event) -> None:
    """One event that is not a clip event into its second's bucket (see the module docstring)."""
    k, v, s = e.kind, float(e.value), b.sums
    if k == "viewers":
        b.viewers = v
        return
    if e.user:
        b.users.add(e.user)
        if e.trusted:
            b.trusted.add(e.user)
    if k == "impression":
        if e.promoted:
            s["impressions"] += v
    elif k == "entry":
        s["entries" if e.promoted else "organic_entries"] += v
    elif k == "watch":
        if e.promoted:
            s["watch_s"] += max(v, 0.0)
    elif k in ("follow", "cart"):
        if e.promoted:
            s["follows" if k == "follow" else "carts"] += 1.0
    elif k == "order":
        if e.promoted:
            s["orders"] += 1.0
            if not e.trusted:
                s["orders_held"] += 1.0
        else:
            s["organic_orders"] += 1.0
    elif k == "cancel":
        if e.promoted:
            s["orders_cancelled"] += 1.0
    elif k in ("like", "chat"):
        n = v if k == "like" else 1.0
        s["likes" if k == "like" else "comments"] += n
        if e.user:
            b.shallow[e.user] = b.shallow.get(e.user, 0.0) + n
        else:
            b.anonymous_shallow += n
