"""A live room's chat: its per-second series, the audience's delay measured on the room, and fusion
with the highlight model for the analyzer's second finality tier.

:class:`RoomChat` keeps what :class:`~ace.live.analyzer.LiveAnalyzer` needs to read a room's chat
the way batch fusion reads a show's (:func:`ace.fusion.find_moments` with ``chat`` and ``model``):

* **The chat series**, bounded to ``history_s`` seconds: chat events become per-second counts by
  kind (:func:`ace.signals.chat.chat_series`). A second is *sealed* once events for it can no
  longer arrive (``event_delay_s``) and its copy-paste counts are final too (a message is part of
  a wave when others send the same text up to :data:`~ace.signals.chat.COPY_WINDOW_S` later); the
  seconds after that are counted again at every step from the events kept for them. The per-user
  cooldown runs on across the room's history, so the series is the one ``chat_series`` gives over
  all of the room's chat at once. An event for a sealed second counts in the first open one; one
  from before the room's start is dropped (the room was not watched then).
* **The other interaction** (likes, gifts, carts, ...) gets its own
  :class:`~ace.signals.InteractionDetector`, as in batch, where chat goes to the model and the
  rest to the detector (the analyzer's own detector counts chat as well, for the media tier).
* **The audience's delay**: the room's chat rate cross-correlated with its per-second media
  evidence (the fused speech, audio and visual evidence, :func:`ace.fusion.build_timeline`,
  recorded as each second becomes final) by :func:`ace.lag.estimate_lag`, every ``reestimate_s``
  seconds of analysed time once ``min_history_s`` seconds of both are there. The room's delay is
  the median of its last :data:`KEEP_ESTIMATES` clear estimates (one estimate can lock onto the
  wrong burst when highlights come at a steady pace); until there is one, and while the room's chat
  does not line up with anything (a room with only chat), it is the model's prior
  (:attr:`~models.scorer.HighlightModel.lag`).
* **Chat finality** (:func:`chat_horizon`): the chat's probability for second ``t`` reads the chat
  up to ``t + lag + max(offsets) + window``, so a moment that the chat makes strong is final
  ``2 * spread_s + lag + max(offsets) + window + event_delay_s`` behind the analysed time (62 s with
  the shipped model's 27 s prior, 39 s for a room measured at 4 s), never less than the media
  horizon. The copy-paste counts of the last
  :data:`~ace.signals.chat.COPY_WINDOW_S` seconds read may still grow after that (a wave's first
  messages count once its later ones arrive); waiting for them too would add that much again.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ace.fusion import FusionOptions, build_timeline, find_moments
from ace.lag import Lag, estimate_lag
from ace.signals.chat import MIN_CHAT, COLUMNS, COPY_WINDOW_S, USER_COOLDOWN_S, chat_series
from ace.signals.interaction import InteractionDetector, InteractionOptions
from ace.types import Event, Moment, Sentence, Signal, Word
from models.scorer import HighlightModel

__all__ = ["FIRST_MINUTE_S", "KEEP_ESTIMATES", "MIN_HISTORY_S", "REESTIMATE_S", "RoomChat", "chat_horizon",
           "chat_settle", "echoes"]

#: Seconds of analysed time between two estimates of a room's delay.
REESTIMATE_S = 30.0
#: Seconds of the room's own chat and media evidence needed before its delay is measured.
MIN_HISTORY_S = 120.0
#: The model's causal baseline takes a series' first minute as a whole (it has no past yet), so the
#: chat tier waits until the room has that much chat.
FIRST_MINUTE_S = 60.0
#: A room's delay is the median of this many of its latest clear estimates.
KEEP_ESTIMATES = 5
#: Whole seconds a copy-paste wave may reach back (its counts there are final this much later).
_COPY_S = int(math.ceil(COPY_WINDOW_S))


def chat_settle(lag: float, model: HighlightModel, event_delay_s: float) -> float:
    """Seconds from second ``t`` to when all the chat its probability reads has arrived."""
    return max(0.0, float(lag)) + max(model.offsets) + model.window + event_delay_s


def chat_horizon(fusion: FusionOptions, lag: float, model: HighlightModel, event_delay_s: float,
                 media_horizon: float) -> float:
    """How far behind the analysed time a moment the chat makes strong must end before it is final:
    ``2 * spread_s + chat_settle`` (as the media horizon: the end may sit ``spread_s`` before its
    region's end, whose next second needs the evidence ``spread_s`` beyond it), at least the media
    horizon."""
    return max(float(media_horizon), 2.0 * fusion.spread_s + chat_settle(lag, model, event_delay_s))


class RoomChat:
    """A live room's chat, its delay and its chat-tier moments (see the module docstring).

    Call :meth:`start` with the stream time of the first segment, :meth:`push` with events as they
    arrive, :meth:`advance` after each segment (``final=True`` once the stream ended) and
    :meth:`candidates` for the moments that fusion with the chat finds in the look-behind window."""

    def __init__(self, model: HighlightModel, fusion: FusionOptions, *, event_delay_s: float = 1.0,
                 history_s: float = 780.0, interaction: InteractionOptions | None = None,
                 reestimate_s: float = REESTIMATE_S, min_history_s: float = MIN_HISTORY_S):
        self.model = model
        self.fusion = fusion
        self.event_delay_s = float(event_delay_s)
        self.history_s = max(float(history_s), min_history_s + 60.0)
        self.reestimate_s = float(reestimate_s)
        self.min_history_s = float(min_history_s)
        self.lag = Lag(float(model.lag), "prior")  #: the room's delay in use
        self.estimates = 0  #: times the delay was estimated
        self._measured: deque[Lag] = deque(maxlen=KEEP_ESTIMATES)  # the latest clear estimates
        self.messages = 0  #: chat messages pushed (after the start)
        self.late = 0  #: chat messages that arrived for a sealed second
        self._inter = InteractionDetector(interaction)
        self._signals: list[Signal] = []  # its evidence (likes, gifts, ...), by time
        self._origin: int | None = None  # stream second of row 0 (None: not started)
        self._start = math.nan
        self._sealed = 0  # seconds before this are sealed in _rows
        self._rows = np.zeros((0, len(COLUMNS)), np.float32)
        self._media = np.zeros(0)  # per-second media evidence from _origin on, final seconds only
        self._events: list[Event] = []  # chat events from _sealed - copy window on (those before _sealed: counted ones)
        self._last: dict[str, float] = {}  # user -> their last counted message before _sealed (the cooldown)
        self._pushes = 0  # calls to push (the cached tail below is stale after one)
        self._tail: tuple[tuple[int, int, int], np.ndarray] | None = None  # ((sealed, end, pushes), rows)
        self._next_estimate = -math.inf

    # -- input ----------------------------------------------------------------------------------

    def start(self, t: float) -> None:
        """The room's first analysed second (a second call changes nothing)."""
        if self._origin is not None:
            return
        first = int(math.floor(t))
        self._origin = self._sealed = first
        self._start = float(t)
        self._events = [e for e in self._events if e.t >= first]
        self.messages = len(self._events)
        # the detector counts seconds from 0: start it at the room's first second (as the analyzer does)
        self._inter._next = max(self._inter._next, first)
        for sec in [k for k in self._inter._buckets if k < first]:
            self._inter._buckets[first].extend(self._inter._buckets.pop(sec))

    def push(self, events: Iterable[Event]) -> None:
        """Audience events in stream time, any order: chat to the series, the rest to the detector."""
        rest = []
        for e in events:
            if e.kind != "chat":
                rest.append(e)
                continue
            if self._origin is not None:
                if e.t < self._origin:
                    continue
                if e.t < self._sealed:
                    self.late += 1
                    e = dataclasses.replace(e, t=float(self._sealed))
                self.messages += 1
            self._events.append(e)
        self._pushes += 1
        if rest:
            self._inter.process_events(rest)

    def advance(self, T: float, signals: Iterable[Signal], media_until: float, final: bool = False) -> None:
        """The stream is analysed up to ``T``: score the other interaction, seal the chat seconds that
        are complete, record the media evidence of ``signals`` up to ``media_until`` (where it is
        final) and re-estimate the delay when it is time. ``final``: the stream ended at ``T``."""
        if self._origin is None or not math.isfinite(T):
            return
        now = T - self.event_delay_s
        self._signals.extend(self._inter.flush(T) if final else self._inter.process_events((), now=now))
        self._seal(int(math.ceil(T)) if final else int(math.floor(now)) - _COPY_S, int(math.ceil(T)))
        self._record_media(signals, T if final else media_until)
        if T >= self._next_estimate and self._history_s(now) >= self.min_history_s:
            self._estimate(now)
            self._next_estimate = T + self.reestimate_s
        self._prune(T)

    # -- the series -----------------------------------------------------------------------------

    @staticmethod
    def _counted(events: Iterable[Event], last: dict[str, float]) -> list[Event]:
        """The messages :func:`~ace.signals.chat.chat_series` counts (a user once per
        :data:`~ace.signals.chat.USER_COOLDOWN_S`), given each user's last counted one in ``last``
        (updated), so the cooldown runs on across the room's whole history as it does over a show."""
        out = []
        for e in sorted(events, key=lambda e: e.t):
            if e.user:
                if e.t - last.get(e.user, -math.inf) < USER_COOLDOWN_S:
                    continue
                last[e.user] = e.t
            out.append(e)
        return out

    def _counts(self, a: int, b: int) -> np.ndarray:
        """Rows for seconds ``[a, b)`` from the events kept, with the copy window either side."""
        lo, hi = a - _COPY_S, b + _COPY_S
        old = [e for e in self._events if lo <= e.t < self._sealed]
        new = self._counted((e for e in self._events if self._sealed <= e.t < hi), dict(self._last))
        local = [dataclasses.replace(e, t=e.t - lo) for e in old + new]
        if not local:
            return np.zeros((max(0, b - a), len(COLUMNS)), np.float32)
        return chat_series(local, hi - lo)[_COPY_S: _COPY_S + (b - a)]

    def _seal(self, until: int, end: int) -> None:
        """Seal the seconds before ``until``; count those up to ``end`` after them in the same pass
        (kept for :meth:`series` until the next push)."""
        a = self._sealed
        if until > a:
            counted = self._counted((e for e in self._events if a <= e.t < until), self._last)
            self._events = [e for e in self._events if e.t < a] + counted + [e for e in self._events if e.t >= until]
            self._sealed = until  # (the rows' copy counts need the messages after ``until`` as well)
        rows = self._counts(a, max(end, self._sealed))
        self._rows = np.vstack([self._rows, rows[: self._sealed - a]])
        self._tail = ((self._sealed, end, self._pushes), rows[self._sealed - a:])
        if until > a:
            keep = until - _COPY_S
            self._events = [e for e in self._events if e.t >= keep]
            self._last = {u: t for u, t in self._last.items() if t > until - USER_COOLDOWN_S}

    def series(self, until: float) -> tuple[int, np.ndarray]:
        """``(first second, rows)``: the room's chat series up to stream time ``until`` (the seconds
        after the sealed ones counted from what has arrived so far)."""
        if self._origin is None:
            return 0, np.zeros((0, len(COLUMNS)), np.float32)
        end = int(math.ceil(until))
        if end <= self._sealed:
            return self._origin, self._rows[: max(0, end - self._origin)]
        if self._tail is not None and self._tail[0] == (self._sealed, end, self._pushes):
            tail = self._tail[1]
        else:
            tail = self._counts(self._sealed, end)
        return self._origin, np.vstack([self._rows, tail])

    def _history_s(self, now: float) -> float:
        if self._origin is None:
            return 0.0
        return float(min(len(self._media), int(math.floor(now)) - self._origin))

    def _record_media(self, signals: Iterable[Signal], until: float) -> None:
        """Append the fused media evidence (everything but interaction) of the seconds that became final."""
        assert self._origin is not None
        end = int(math.floor(until))
        have = self._origin + len(self._media)
        if end <= have:
            return
        spread = int(self.fusion.spread_s)
        lo, hi = have - spread - 1, end + spread + 1
        local = [dataclasses.replace(s, t=s.t - lo) for s in signals
                 if s.source != "interaction" and lo <= s.t < hi]
        fused = build_timeline(local, hi - lo, self.fusion).fused if local else np.zeros(hi - lo)
        self._media = np.concatenate([self._media, fused[have - lo: end - lo]])

    def _estimate(self, now: float) -> None:
        assert self._origin is not None
        _o, rows = self.series(now)
        rate = rows[: int(math.floor(now)) - self._origin, 0].astype(np.float64)
        n = min(len(rate), len(self._media))
        if n <= 0 or rate[:n].sum() <= 0:
            return  # no chat: nothing to measure
        self.estimates += 1
        est = estimate_lag(rate[:n], self._media[:n], float(self.model.lag))
        if est.method == "xcorr":
            self._measured.append(est)
            ranked = sorted(self._measured, key=lambda x: x.seconds)
            self.lag = ranked[(len(ranked) - 1) // 2]  # the lower median: one of the estimates
        elif self.lag.method != "xcorr":
            self.lag = Lag(float(self.model.lag), "prior", est.corr)

    def _prune(self, T: float) -> None:
        assert self._origin is not None
        drop = int(math.floor(T - self.history_s)) - self._origin
        if drop > 0:
            drop = min(drop, len(self._rows))
            self._rows = self._rows[drop:]
            self._media = self._media[drop:]
            self._origin += drop
        keep = T - self.history_s - 2.0 * self.fusion.clip_max
        if self._signals and self._signals[0].t < keep:
            self._signals = [s for s in self._signals if s.t >= keep]

    # -- finality and fusion --------------------------------------------------------------------

    def horizon(self, media_horizon: float) -> float:
        """The chat tier's finality horizon with the room's delay (:func:`chat_horizon`)."""
        return chat_horizon(self.fusion, self.lag.seconds, self.model, self.event_delay_s, media_horizon)

    def candidates(self, stream_id: str, signals: Iterable[Signal], sentences: Sequence[Sentence],
                   cuts: Sequence[float], t0: float, t1: float) -> list[Moment]:
        """The strong moments of the window ``[t0, t1]`` with the chat: the media evidence in
        ``signals`` (their interaction left out: this room's chat goes to the model, the rest of
        its interaction comes from this object's own detector), the chat's probability at the
        room's delay, causal baselines. Empty until the room's delay has been estimated once (the
        model's prior may be far off for this room: a moment placed by it would land where the chat
        peaked, not where the event happened), and while the window holds fewer than
        :data:`~ace.signals.chat.MIN_CHAT` messages.

        The chat series starts up to twice the model's baseline before the window, so the chat's
        probability of a second does not change as the window slides on; moments starting before
        ``t0`` are left out."""
        if self._origin is None or not self.estimates or t1 - self._start < FIRST_MINUTE_S + self.event_delay_s:
            return []
        origin, rows = self.series(t1)
        w0 = int(math.floor(t0))
        if float(rows[max(0, w0 - origin):, 0].sum()) < MIN_CHAT:
            return []
        lo = max(origin, w0 - 2 * int(self.model.baseline_s))
        lag = self.lag.seconds
        local = [dataclasses.replace(s, t=s.t - lo) for s in signals
                 if s.source != "interaction" and w0 <= s.t < t1]
        local += [dataclasses.replace(s, t=s.t - lo) for s in self._signals if w0 <= s.t - lag < t1]
        sents = [_shift_sentence(s, -lo) for s in sentences if s.end >= w0 and s.start <= t1]
        local_cuts = [c - lo for c in cuts if w0 <= c <= t1]
        options = dataclasses.replace(self.fusion, interaction_lag=lag)
        moments, _tl = find_moments(stream_id, local, t1 - lo, sents, local_cuts, options, chat=rows[lo - origin:],
                                    model=self.model, top=0, lag=self.lag, causal=True)
        out = [dataclasses.replace(m, start=round(m.start + lo, 3), end=round(m.end + lo, 3),
                                   peak=round(m.peak + lo, 2)) for m in moments]
        return [m for m in out if m.start >= w0]

    # -- restart and figures --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {**self.lag.to_dict(), "estimates": self.estimates}

    def restore(self, state: dict[str, Any] | None) -> None:
        """The delay an earlier run had measured (the prior is the model's, whatever it was then)."""
        if not state:
            return
        if state.get("method") == "xcorr":
            self.lag = Lag(float(state["seconds"]), "xcorr", float(state.get("corr", 0.0)))
            self._measured.append(self.lag)
        self.estimates = int(state.get("estimates", 0))

    def stats(self) -> dict[str, Any]:
        return {
            "audience_lag_s": round(self.lag.seconds, 1),
            "audience_lag_method": self.lag.method,
            "audience_lag_corr": round(self.lag.corr, 3),
            "audience_lag_estimates": self.estimates,
            "chat_messages": self.messages,
            "chat_late": self.late,
            "chat_seconds_kept": int(len(self._rows)),
        }


#: Evidence that only says how the audience reacted, not when the event was.
_AUDIENCE = frozenset({"chat", "interaction"})


def echoes(m: Moment, emitted: Iterable[tuple[str, float, float]], shift: float) -> bool:
    """Whether ``m``, a moment of the chat tier with no media evidence (its place comes from the
    audience's delay alone), is the audience's reaction to an emitted moment ``(id, start, end)``:
    moved ``shift`` seconds later (the room's delay minus the media tier's fixed interaction lag,
    the difference in where the two tiers put the same reaction), it is the same moment as that
    one (its peak inside, or an overlap of half the shorter), as :class:`~ace.live.analyzer.MomentGate`
    judges. Without that, a burst the media tier's interaction detector placed at its fixed lag
    would come out again from the chat tier at the room's (or the prior's) delay."""
    if not m.reasons or any(r.source not in _AUDIENCE for r in m.reasons):
        return False
    a, b, peak = m.start + shift, m.end + shift, m.peak + shift
    for _id, s, e in emitted:
        ov = max(0.0, min(b, e) - max(a, s))
        if ov > 0 and (s <= peak <= e or ov >= 0.5 * min(b - a, e - s)):
            return True
    return False


def _shift_sentence(s: Sentence, dt: float) -> Sentence:
    return Sentence(s.start + dt, s.end + dt, s.text,
                    tuple(Word(w.start + dt, w.end + dt, w.text, w.probability) for w in s.words))
