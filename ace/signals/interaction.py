"""Audience interaction spikes, against the room's own rolling baseline.

Each second, the detector measures *engagement* over the last ``window_s`` seconds as a weighted
count of **distinct users** per kind (a user who sends fifty messages counts once, so spam from
one or two accounts does not make a spike) and compares it with the median and spread of the
same measure over the previous ``baseline_s`` seconds. Deep actions weigh more than shallow ones:
an order counts more than a cart, a cart more than a chat message, a chat message more than a
like. Gifts add the log of their value. ``viewers`` events only feed the reason text.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ace.signals.base import Detector, RollingBaseline, ramp
from ace.types import Event, Signal

DEFAULT_WEIGHTS = {
    "chat": 1.0,
    "like": 0.3,
    "share": 1.0,
    "follow": 2.0,
    "gift": 2.0,
    "cart": 3.0,
    "order": 4.0,
}


@dataclass(frozen=True)
class InteractionOptions:
    window_s: int = 5  #: engagement is measured over this many seconds
    baseline_s: int = 120  #: seconds of history for the baseline
    min_history_s: int = 20
    z_lo: float = 3.0  #: robust z-score where the score starts
    z_hi: float = 8.0
    ratio_lo: float = 1.6  #: engagement / baseline where the score starts
    ratio_hi: float = 3.0
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


class InteractionDetector(Detector):
    """Feed events with :meth:`process_events` (any order within a call); scores whole seconds
    up to ``now``. Call :meth:`flush` with the end time at the end of the show."""

    name = "interaction"

    def __init__(self, options: InteractionOptions | None = None):
        self.o = options or InteractionOptions()
        self._buckets: dict[int, list[Event]] = defaultdict(list)
        self._next = 0  # next second to score
        self._baseline = RollingBaseline(self.o.baseline_s, self.o.min_history_s)
        self._viewers = 0.0
        self.engagement: list[tuple[float, float]] = []  # (second, engagement) for diagnostics
        self.late = 0  # events that arrived for seconds already scored

    def process_events(self, events: Iterable[Event], now: float | None = None) -> list[Signal]:
        for e in events:
            sec = int(math.floor(e.t))
            if sec < self._next:
                self.late += 1
                sec = self._next
            self._buckets[sec].append(e)
        if now is None:
            return []
        return self._score_until(int(math.floor(now)))

    def flush(self, end: float | None = None) -> list[Signal]:
        last = int(math.ceil(end)) if end is not None else (max(self._buckets) + 1 if self._buckets else self._next)
        return self._score_until(last)

    def _score_until(self, stop: int) -> list[Signal]:
        out: list[Signal] = []
        w = self.o.window_s
        while self._next < stop:
            s = self._next
            window = [e for k in range(s - w + 1, s + 1) for e in self._buckets.get(k, ())]
            value, detail = self._engagement(window)
            self.engagement.append((float(s), value))
            if self._baseline.ready():
                base = self._baseline.median()
                spread = self._baseline.spread(floor=math.sqrt(base + 1.0))
                z = (value - base) / spread
                ratio = value / (base + 1.0)
                score = ramp(z, self.o.z_lo, self.o.z_hi) * ramp(ratio, self.o.ratio_lo, self.o.ratio_hi)
                if score > 0.05:
                    # the evidence belongs to the middle of the window it was measured over
                    out.append(Signal(self.name, s + 1.0 - w / 2.0, round(score, 4), f"{detail} ({ratio:.1f}× the room's baseline)"))
            self._baseline.add(value)
            self._next += 1
            self._buckets.pop(s - w, None)  # no longer needed
        return out

    def _engagement(self, events: list[Event]) -> tuple[float, str]:
        users: dict[str, set[str]] = defaultdict(set)
        gift_value = 0.0
        for i, e in enumerate(events):
            if e.kind == "viewers":
                self._viewers = e.value
                continue
            if e.kind not in self.o.weights:  # traffic reports (impressions, entries, ...) are not interaction
                continue
            users[e.kind].add(e.user or f"anon{i}")
            if e.kind == "gift":
                gift_value += max(e.value, 0.0)
        value = sum(self.o.weights.get(k, 0.0) * len(u) for k, u in users.items())
        value += math.log1p(gift_value)
        ranked = sorted(users.items(), key=lambda kv: -self.o.weights.get(kv[0], 0.0) * len(kv[1]))
        detail = ", ".join(f"{k} from {len(u)} users" for k, u in ranked[:4]) or "no activity"
        return value, detail
