"""When a live moment is final: the finality horizon, the room's audience feed, and the gate that
lets each moment out once (provisionally first, where the room has an audience to wait for).

See the module docstring of :mod:`ace.live.analyzer` for how these fit together. In short: a moment
whose end ``E`` lies :func:`finality_horizon` behind the analysed time ``T`` (and
:func:`speech_reach` before the transcript's commit frontier) is final. The audience's part of the
horizon counts only while the room has an audience feed (:class:`AudienceFeed`), and its event delay
is the room's own. A moment final with respect to every source but the audience is let out
*provisional* (:meth:`MomentGate.admit` with ``provisional_until``) and settled once final
(:meth:`MomentGate.settle`): as it was, or as the final candidate that is the same moment, under the
same id.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ace.fusion import FusionOptions, join_words
from ace.signals.interaction import InteractionOptions
from ace.types import Event, Moment, Word

__all__ = ["AudienceFeed", "MomentGate", "finality_horizon", "same_edges", "same_moment", "speech_reach"]


def finality_horizon(fusion: FusionOptions, interaction: InteractionOptions | None = None,
                     visual_look_ahead: float = 1.0, event_delay_s: float = 1.0, audience: bool = True) -> float:
    """How far behind the analysed time a moment's end must lie before the moment is final (seconds).

    ``2 * spread_s`` (the end may sit ``spread_s`` before its region's end; the second after the
    region is final once evidence ``spread_s`` beyond it is) plus the slowest source's settling time:
    audio 1 s, visual ``look_ahead + 1`` s and, for a room with an audience feed (``audience``),
    interaction ``interaction_lag + window_s / 2 + event_delay_s`` (the audience's reaction is moved
    back by the lag, and a spike is placed in the middle of the window it was counted over). Speech
    is checked separately against what the transcriber has committed (see :func:`speech_reach`).
    Defaults: ``4 + max(1, 2, 3 + 2.5 + 1)`` = 10.5 s; without an audience ``4 + max(1, 2)`` = 6 s."""
    settle = max(1.0, visual_look_ahead + 1.0)
    if audience:
        inter = interaction or InteractionOptions()
        settle = max(settle, fusion.interaction_lag + inter.window_s / 2.0 + event_delay_s)
    return 2.0 * fusion.spread_s + settle


def speech_reach(fusion: FusionOptions) -> float:
    """How far past a moment's end the committed transcript must reach before the moment is final:
    far enough to snap its end to a sentence edge and to know the speech evidence there."""
    return max(fusion.snap_window, 2.0 * fusion.spread_s)


# ---------------------------------------------------------------------------------------- audience


class AudienceFeed:
    """Whether a room has an audience feed, and how late its events arrive.

    A room *has an audience feed* while it has an event (of any kind) whose stream time lies within
    ``recent_s`` of the analysed time (an event more than ``recent_s`` ahead of it is taken for a
    bad clock and ignored). For each event pushed while the analysis runs, how far the analysed time
    had already passed the event's stream time (0 when it had not) joins a window of the last
    ``keep`` such delays; the room's event delay (:attr:`delay_s`) is their 90th percentile, at
    least ``base_s`` and at most ``cap_s`` (``base_s`` when that is more)."""

    def __init__(self, base_s: float = 1.0, cap_s: float = 10.0, recent_s: float = 180.0, keep: int = 200):
        self.base_s = float(base_s)
        self.cap_s = float(cap_s)
        self.recent_s = float(recent_s)
        self.last_t = -math.inf  #: the latest stream time of an event
        self.delays: deque[float] = deque(maxlen=keep)  #: the latest events' delays (seconds)

    def push(self, events: Iterable[Event], analysed: float, measure: bool = True) -> None:
        """Events pushed while the analysed time is ``analysed``; ``measure=False`` for events
        pushed again after a restart (their delay says nothing about the room)."""
        known = math.isfinite(analysed)
        for e in events:
            if known and e.t > analysed + self.recent_s:
                continue
            self.last_t = max(self.last_t, float(e.t))
            if measure:
                self.delays.append(max(0.0, analysed - e.t) if known else 0.0)

    def active(self, analysed: float) -> bool:
        """Whether the room has an audience feed at analysed time ``analysed``."""
        if not math.isfinite(self.last_t):
            return False
        return not math.isfinite(analysed) or self.last_t >= analysed - self.recent_s

    @property
    def delay_s(self) -> float:
        """The room's event delay: the 90th percentile of the recent delays, within ``[base_s, cap_s]``."""
        if not self.delays:
            return self.base_s
        return max(self.base_s, min(float(np.percentile(np.fromiter(self.delays, float), 90)), self.cap_s))

    def state(self) -> dict[str, Any]:
        return {"last_event_t": self.last_t if math.isfinite(self.last_t) else None,
                "event_delays": [round(d, 2) for d in self.delays]}

    def restore(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        t = state.get("last_event_t")
        self.last_t = float(t) if t is not None else -math.inf
        self.delays.clear()
        self.delays.extend(float(d) for d in state.get("event_delays") or ())


# -------------------------------------------------------------------------------------------- gate


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _closest(candidates: Sequence[Moment], p: Moment) -> Moment:
    """The candidate overlapping ``p`` most."""
    return max(candidates, key=lambda c: _overlap(c.start, c.end, p.start, p.end))


def same_moment(m: Moment, start: float, end: float) -> bool:
    """Whether ``m`` is the same moment as the one at ``start``-``end``: its peak inside it, or an
    overlap of half the shorter (which that one inside ``m`` always has)."""
    return _same(m.start, m.end, m.peak, start, end)


def _same(a0: float, a1: float, peak: float, b0: float, b1: float) -> bool:
    ov = _overlap(a0, a1, b0, b1)
    return ov > 0 and (b0 <= peak <= b1 or ov >= 0.5 * min(a1 - a0, b1 - b0))


def same_edges(a: Moment, b: Moment) -> bool:
    """Whether two versions of a moment would give the same clip: same start, end and peak (thumbnail)."""
    return (a.start, a.end, a.peak) == (b.start, b.end, b.peak)


class MomentGate:
    """Lets each moment out once, however often fusion finds it again: when it is final, or
    provisionally before (then settled once it is final).

    :meth:`admit` takes the moments fusion finds now and the latest end that is final now; it
    returns the new moments to emit and remembers their spans. A candidate is *the same moment* as
    an emitted one when its peak lies inside it or they overlap by half the shorter
    (:func:`same_moment`); one that only overlaps an emitted moment's edge is trimmed to start (or
    end) where that one ends (starts) — an emitted moment's edges lie in pauses, so the trimmed edge
    does too — and dropped if that leaves less than ``min_length`` seconds. Candidates ending at or
    before ``floor`` (what a run before a restart had already decided) are never emitted. Spans are
    forgotten ``keep_s`` seconds after their end, so the gate stays small. The chat tier
    (``tier="chat"``) has its own finality line (``chat_decided_until``, ``chat_floor``), further
    behind; the emitted spans are shared.

    With ``provisional_until`` (a line at or after the final one) :meth:`admit` also lets out, as
    *provisional*, the candidates ending between the two lines; they are kept in
    :attr:`provisional` (their spans count as emitted) until :meth:`settle` finds them final.
    """

    def __init__(self, stream_id: str, min_length: float = 4.0, keep_s: float = 300.0):
        self.stream_id = stream_id
        self.min_length = min_length
        self.keep_s = keep_s
        self.emitted: list[tuple[str, float, float]] = []  # (id, start, end), by start
        self.provisional: dict[str, Moment] = {}  #: let out before they were final, not settled yet, by id
        self.decided_until = -math.inf  #: latest end that was final at some step
        self.emitted_until = -math.inf  #: latest end let out at some step (provisionally or final)
        self.floor = -math.inf  #: decided by a run before a restart
        self.total = 0  #: moments emitted over the gate's life (restarts included)
        self.suppressed = 0  #: candidates recognised as an emitted moment again
        self.trimmed = 0  #: candidates trimmed against an emitted neighbour
        self.late = 0  #: moments emitted although their end had already passed the line that lets them out
        self.confirmed = 0  #: provisional moments that became final with the same edges (or as they were)
        self.replaced = 0  #: provisional moments that became final with other edges
        self.chat_decided_until = -math.inf  #: the same for the chat tier
        self.chat_floor = -math.inf
        self.chat_total = 0  #: moments the chat tier emitted

    def admit(self, candidates: Iterable[Moment], final_until: float, words: Sequence[Word] = (),
              tier: str = "media", provisional_until: float | None = None) -> list[Moment]:
        """The candidates to emit now, in time order: final (end <= ``final_until``) or, for the
        media tier with ``provisional_until``, provisional (end <= ``provisional_until``), new,
        trimmed clear of emitted moments. ``words`` recomputes a trimmed moment's transcript.
        ``tier``: whose finality line ``final_until`` is ("media" or "chat")."""
        out: list[Moment] = []
        chat = tier == "chat"
        line = final_until if chat or provisional_until is None else max(final_until, provisional_until)
        previous, floor = (self.chat_decided_until, self.chat_floor) if chat else (self.emitted_until, self.floor)
        for m in sorted(candidates, key=lambda m: (m.start, m.end)):
            if m.end > line + 1e-9 or m.end <= floor + 1e-9:
                continue
            m2 = self._clear(m, words)
            if m2 is None:
                continue
            if m2.end <= previous:
                self.late += 1
            out.append(m2)
            self._remember(m2)
            if m2.end > final_until + 1e-9:
                self.provisional[m2.id] = m2
            self.total += 1
            self.chat_total += chat
        if chat:
            self.chat_decided_until = max(self.chat_decided_until, final_until)
            return out
        self.decided_until = max(self.decided_until, final_until)
        self.emitted_until = max(self.emitted_until, line)
        horizon = self.decided_until - self.keep_s
        if math.isfinite(horizon):
            self.emitted = [e for e in self.emitted if e[2] >= horizon or e[0] in self.provisional]
        return out

    def settle(self, candidates: Sequence[Moment], final_until: float, words: Sequence[Word] = ()) -> list[tuple[Moment, Moment]]:
        """The provisional moments that are final now, in time order, each as ``(provisional,
        final)``. ``final`` is the final candidate (end <= ``final_until``) that is the same moment
        (the one overlapping it most), trimmed clear of the other emitted moments, under the
        provisional moment's id; or, when no candidate is the same moment any more (or too little
        of it is left clear), the provisional moment as it was, once its own end is final. While
        only candidates that are not final yet are the same moment, it waits for them."""
        out: list[tuple[Moment, Moment]] = []
        for p in sorted(self.provisional.values(), key=lambda m: (m.start, m.end)):
            same = [c for c in candidates if same_moment(c, p.start, p.end)]
            ready = [c for c in same if c.end <= final_until + 1e-9]
            final = self._final_version(p, _closest(ready, p), words) if ready else None
            if final is None:  # no final candidate to take (or too little of it clear of its neighbours)
                if p.end > final_until + 1e-9 or (same and not ready):
                    continue  # not final itself yet, or a candidate that will be final is on its way
                final = p
            del self.provisional[p.id]
            self.emitted = [e for e in self.emitted if e[0] != p.id]
            self._remember(final)
            if same_edges(final, p):
                self.confirmed += 1
            else:
                self.replaced += 1
            out.append((p, final))
        return out

    def preview(self, candidates: Iterable[Moment], final_until: float, ahead_until: float,
                words: Sequence[Word] = (), tier: str = "media") -> list[Moment]:
        """The candidates that would be emitted if the line were ``ahead_until`` but are not
        let out yet (``final_until < end <= ahead_until``), as :meth:`admit` would emit them; changes
        nothing."""
        out = []
        counts = self.suppressed, self.trimmed
        floor = self.chat_floor if tier == "chat" else self.floor
        try:
            for m in sorted(candidates, key=lambda m: (m.start, m.end)):
                if final_until + 1e-9 < m.end <= ahead_until + 1e-9 and m.end > floor + 1e-9:
                    m2 = self._clear(m, words)
                    if m2 is not None:
                        out.append(m2)
        finally:
            self.suppressed, self.trimmed = counts
        return out

    def preview_settle(self, candidates: Sequence[Moment], ahead_until: float, words: Sequence[Word] = ()) -> list[Moment]:
        """The final versions :meth:`settle` would give the provisional moments if the final line
        were ``ahead_until``, for those whose edges would change (their clips are cut again);
        changes nothing."""
        out = []
        for p in self.provisional.values():
            ready = [c for c in candidates if c.end <= ahead_until + 1e-9 and same_moment(c, p.start, p.end)]
            final = self._final_version(p, _closest(ready, p), words) if ready else None
            if final is not None and not same_edges(final, p):
                out.append(final)
        return out

    def _final_version(self, p: Moment, c: Moment, words: Sequence[Word]) -> Moment | None:
        """Candidate ``c``, the same moment as provisional ``p``, trimmed clear of the other emitted
        moments and named as ``p``; None when too little of it is left clear."""
        counts = self.suppressed, self.trimmed
        try:
            c2 = self._clear(c, words, skip=p.id)
        finally:
            self.suppressed, self.trimmed = counts
        if c2 is None:
            return None
        return c2 if c2.id == p.id else dataclasses.replace(c2, fixed_id=p.id)

    def _remember(self, m: Moment) -> None:
        self.emitted.append((m.id, m.start, m.end))
        self.emitted.sort(key=lambda e: e[1])

    def _clear(self, m: Moment, words: Sequence[Word], skip: str | None = None) -> Moment | None:
        start, end = m.start, m.end
        for eid, es, ee in self.emitted:
            if eid == skip or _overlap(start, end, es, ee) <= 0:
                continue
            if _same(start, end, m.peak, es, ee):
                self.suppressed += 1
                return None
            if es <= start < ee:
                start = ee
            elif es < end <= ee:
                end = es
        if (start, end) == (m.start, m.end):
            return m
        if end - start < self.min_length - 1e-9:  # little of it is left clear of its neighbours
            self.suppressed += 1
            return None
        self.trimmed += 1
        text = join_words([w for w in words if w.start >= start - 0.01 and w.end <= end + 0.01]) if words else m.transcript
        return dataclasses.replace(m, start=round(start, 3), end=round(end, 3), transcript=text)

    def state(self) -> dict[str, Any]:
        return {
            "decided_until": self.decided_until if math.isfinite(self.decided_until) else None,
            "emitted": [[i, s, e] for i, s, e in self.emitted],
            "emitted_total": self.total,
            "chat_decided_until": self.chat_decided_until if math.isfinite(self.chat_decided_until) else None,
            "provisional": sorted(self.provisional),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state`. Moments that were provisional then are final as they were:
        their spans are emitted ones, and they are never settled (nor emitted) again."""
        d = state.get("decided_until")
        self.decided_until = float(d) if d is not None else -math.inf
        self.emitted_until = self.decided_until
        self.floor = self.decided_until
        self.emitted = sorted(((str(i), float(s), float(e)) for i, s, e in state.get("emitted", [])), key=lambda x: x[1])
        self.provisional = {}
        self.total = int(state.get("emitted_total", len(self.emitted)))
        c = state.get("chat_decided_until")  # none: the chat tier had decided nothing the media tier had not
        self.chat_decided_until = float(c) if c is not None else self.decided_until
        self.chat_floor = self.chat_decided_until
