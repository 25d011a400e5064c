"""Fusion: signals from every detector, and the chat → a scored per-second timeline → ranked moments.

1. **Timeline** — each source's evidence is binned per second (max score in the bin), spread
   over ``±spread_s`` seconds so evidence that arrives a little apart lines up; interaction
   evidence is moved earlier by the audience's delay, because an audience reacts after the
   moment it reacts to: measured on the show when it has chat (:func:`ace.lag.estimate_lag`),
   else ``interaction_lag``.
2. **Score** — a weighted noisy-OR, ``1 - Π(1 - w_s·x_s)``: one strong source can make a moment
   on its own only if its weight allows it (a keyword, a cheer, an engagement spike), while weak
   sources (a scene cut, an exclamation) need company. With enough chat, the highlight model's
   per-second probability (:mod:`models.scorer`, reading the chat that follows each second by the
   delay) joins as one more independent chance.
3. **Ranked peaks** (:mod:`ace.ranking`) — the highest peak first; each region extends while the
   score stays above half its peak and ``low``; nothing peaks again within ``min_gap`` of a region
   taken. Strong moments reach ``high``; the best ``top`` are kept whatever their strength. A
   region the chat found is narrowed to the media evidence inside it, where there is some.
4. **Boundaries** — a lead-in and a tail are added, the length is brought within
   [``clip_min``, ``clip_max``], then each edge is snapped to a sentence start/end or a scene cut
   nearby, and never left inside a spoken word. A moment overlapping a better-ranked one merges
   into it.
5. **Reasons** — every moment lists each contributing source with its strongest evidence; its
   ``confidence`` is the chat's calibrated confidence combined with the media score (the media
   score alone, ×100, without chat).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ace.lag import Lag, estimate_lag
from ace.ranking import Candidate, RankOptions, peaks, select
from ace.signals.chat import MIN_CHAT
from ace.types import Moment, Reason, Sentence, Signal, Word
from models.scorer import HighlightModel

#: Where no detector found anything, talk is the only evidence: this much at the busiest second.
TALK_SCORE = 0.05

DEFAULT_WEIGHTS = {
    "keyword": 0.6,
    "speech": 0.35,
    "audio": 0.5,
    "visual": 0.4,
    "interaction": 0.6,
}


@dataclass(frozen=True)
class FusionOptions:
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    spread_s: int = 2  #: a signal counts this many seconds either side
    interaction_lag: float = 3.0  #: seconds the audience lags behind what it reacts to
    high: float = 0.45  #: score a peak must reach
    low: float = 0.25  #: score a region extends over
    pre_roll: float = 3.0  #: lead-in before the region
    post_roll: float = 2.0  #: tail after the region
    clip_min: float = 8.0
    clip_max: float = 60.0
    snap_window: float = 4.0  #: how far an edge may move to reach a sentence edge or a cut
    word_pad: float = 0.12  #: silence kept between a clip edge and the nearest word
    edge_lead: float = 0.3  #: a clip starts this far before its first word (at most half the pause before it):
    #: Whisper's word starts run 0.1-0.5 s late
    edge_tail: float = 0.3  #: ... and ends this far after its last word (at most half the pause after it)
    min_pause: float = 0.15  #: a sentence edge with less silence than this is running speech; edges prefer real pauses


@dataclass
class Timeline:
    """Per-second evidence: ``sources[name][i]`` is source ``name``'s score in second ``i``."""

    duration: float
    sources: dict[str, np.ndarray]
    fused: np.ndarray
    lag: Lag | None = None  #: the audience's delay used for interaction and chat


def build_timeline(signals: Sequence[Signal], duration: float, o: FusionOptions, interaction_lag: float | None = None) -> Timeline:
    n = max(1, int(math.ceil(duration)))
    lag = o.interaction_lag if interaction_lag is None else interaction_lag
    sources: dict[str, np.ndarray] = {}
    for s in signals:
        t = s.t - (lag if s.source == "interaction" else 0.0)
        i = int(math.floor(t))
        if not 0 <= i < n:
            i = min(max(i, 0), n - 1)
        arr = sources.setdefault(s.source, np.zeros(n))
        arr[i] = max(arr[i], min(max(s.score, 0.0), 1.0))
    spread = {}
    for name, arr in sources.items():
        spread[name] = _max_filter(arr, o.spread_s)
    fused = np.zeros(n)
    miss = np.ones(n)
    for name, arr in spread.items():
        w = o.weights.get(name, 0.0)
        miss *= 1.0 - w * arr
    fused = 1.0 - miss
    return Timeline(duration, spread, fused)


def _max_filter(arr: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return arr.copy()
    padded = np.pad(arr, radius)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    return windows.max(axis=1)


def find_moments(
    show_id: str,
    signals: Sequence[Signal],
    duration: float,
    sentences: Sequence[Sentence] = (),
    cuts: Sequence[float] = (),
    options: FusionOptions | None = None,
    chat: np.ndarray | None = None,
    model: HighlightModel | None = None,
    top: int | None = None,
    lag: Lag | None = None,
    causal: bool = False,
) -> tuple[list[Moment], Timeline]:
    """A show's moments (batch), best first (``rank`` 1, 2, ...), with the timeline behind them.

    ``chat`` is the show's chat series (:func:`ace.signals.chat.chat_series`) and ``model`` the
    highlight model that reads it; with both, the chat's probability joins the other evidence and
    the audience's delay is measured on this show (:func:`ace.lag.estimate_lag`). ``top`` is the
    fewest moments to return (default: one per five minutes, at least one; 0: only strong ones).
    ``lag`` fixes the delay instead of measuring it (a live room measures it over its history);
    ``causal`` compares the chat with the room's past only (live)."""
    o = options or FusionOptions()
    n = max(1, int(math.ceil(duration)))
    given = lag
    lag = Lag(o.interaction_lag, "fixed")
    p_chat = None
    if chat is not None and model is not None and float(np.asarray(chat)[:, 0].sum()) >= MIN_CHAT:
        if given is not None:
            lag = given
        else:
            media = build_timeline([s for s in signals if s.source != "interaction"], duration, o).fused
            lag = estimate_lag(np.asarray(chat)[:n, 0], media, model.lag)
        p_chat = np.zeros(n)
        pc = model.probability(chat, lag.seconds, causal=causal)
        p_chat[: min(n, len(pc))] = pc[:n]
    tl = build_timeline(signals, duration, o, interaction_lag=lag.seconds)
    tl.lag = lag
    media_fused = tl.fused.copy()
    if p_chat is not None:
        tl.sources["chat"] = p_chat
        tl.fused = 1.0 - (1.0 - tl.fused) * (1.0 - p_chat)
    # a strong moment reaches the absolute threshold; the rest only fill up the top few
    ro = RankOptions(extent=0.5, level=o.low, top=top, min_confidence=100.0 * o.high, min_len=0.0)
    kept = select(peaks(tl.fused, ro), duration, _uncalibrated, ro)
    if p_chat is not None:  # chat says when, blurred by its delay; what is seen and heard says exactly when
        kept = [_with_chat(_tighten(c, media_fused, o.low), media_fused, p_chat, model) for c in kept]

    words = sorted((w for s in sentences for w in s.words), key=lambda w: w.start)
    if not kept and words and (top is None or top > 0):
        # no detector said anything: the show's best few are where people talk most
        talk = np.zeros(n)
        for w in words:
            talk[min(n - 1, max(0, int(w.start)))] += 1.0
        talk = TALK_SCORE * talk / talk.max()
        tl.sources["talk"] = talk
        kept = select(peaks(talk, RankOptions(extent=0.5, floor=0.0, top=top, min_len=0.0)), duration, _uncalibrated,
                      RankOptions(top=top, min_confidence=100.0))
    spans: list[list] = []
    for c in kept:  # best first
        a, b = int(c.start), max(int(c.start), int(math.ceil(c.end)) - 1)
        start, end = _bounds(a, b, tl.fused, duration, o)
        end = snap_end(end, sentences, cuts, words, o, duration, limit=float(b + 1))
        # the start may not move so late that the clip falls short of clip_min
        start = snap_start(start, sentences, cuts, words, o, limit=float(a), latest=end - o.clip_min + 0.5)
        if end - start > o.clip_max + o.snap_window:
            end = _free_point(start + o.clip_max, words, o.word_pad, backwards=True)
        if end <= start:
            continue
        clash = next((sp for sp in spans if start < sp[1] and sp[0] < end), None)
        if clash is not None:  # overlaps a better moment: the two become one, ranked as the better
            clash[0], clash[1] = min(clash[0], start), max(clash[1], end)
            continue
        spans.append([start, end, c])
    moments = [_moment(show_id, s, e, tl, signals, words, o, rank=k + 1, cand=c)
               for k, (s, e, c) in enumerate(spans)]
    return moments, tl


def _tighten(c: Candidate, media: np.ndarray, low: float) -> Candidate:
    """A candidate's region narrowed to the media evidence inside it, when there is some: the
    stretch around its strongest second that stays above half of it (and ``low``)."""
    a, b = int(c.start), min(len(media), max(int(c.start) + 1, int(math.ceil(c.end))))
    seg = media[a:b]
    if seg.size == 0 or seg.max() < low:
        return c
    i = a + int(np.argmax(seg))
    cut = max(low, 0.5 * media[i])
    lo, hi = i, i
    while lo > a and media[lo - 1] >= cut:
        lo -= 1
    while hi + 1 < b and media[hi + 1] >= cut:
        hi += 1
    return replace(c, start=float(lo), end=float(hi + 1), peak=i + 0.5)


def _with_chat(c: Candidate, media: np.ndarray, p_chat: np.ndarray, model: HighlightModel) -> Candidate:
    """Confidence where chat and media both speak: the chat's calibrated confidence and the media
    evidence combined as independent chances, ``1 - (1 - chat)(1 - media)``."""
    a, b = int(c.start), max(int(c.start) + 1, int(math.ceil(c.end)))
    chat = float(model.confidence(float(p_chat[a:b].max()))) / 100.0
    media_peak = float(media[a:b].max())
    conf = 100.0 * (1.0 - (1.0 - chat) * (1.0 - media_peak))
    return replace(c, confidence=round(conf, 1))


def _uncalibrated(raw: float) -> float:
    """Without chat there are no labelled shows to calibrate on: the fused score itself, in 0-100."""
    return round(100.0 * min(max(raw, 0.0), 1.0), 1)


def _bounds(a: int, b: int, fused: np.ndarray, duration: float, o: FusionOptions) -> tuple[float, float]:
    start = a - o.pre_roll
    end = b + 1 + o.post_roll
    if end - start < o.clip_min:
        grow = (o.clip_min - (end - start)) / 2
        start, end = start - grow, end + grow
    if end - start > o.clip_max:
        # keep the clip_max window with the most evidence
        width = int(o.clip_max)
        lo, hi = max(0, int(start)), min(len(fused), int(math.ceil(end)))
        seg = fused[lo:hi]
        if len(seg) > width:
            sums = np.convolve(seg, np.ones(width), mode="valid")
            k = int(np.argmax(sums))
            start, end = float(lo + k), float(lo + k + width)
        else:
            end = start + o.clip_max
    if start < 0:
        end, start = min(duration, end - start), 0.0
    if end > duration:
        start, end = max(0.0, start - (end - duration)), duration
    return max(0.0, start), min(duration, end)


def _inside_word(t: float, words: Sequence[Word], pad: float) -> Word | None:
    for w in words:
        if w.start - pad < t < w.end + pad:
            return w
        if w.start > t + pad:
            break
    return None


def _free_point(t: float, words: Sequence[Word], pad: float, backwards: bool) -> float:
    """The nearest time at or around ``t`` that is not inside (or within ``pad`` of) a word."""
    for _ in range(50):
        w = _inside_word(t, words, pad)
        if w is None:
            return max(0.0, t)
        t = (w.start - pad) if backwards else (w.end + pad)
    return max(0.0, t)


def _pause_before(t: float, words: Sequence[Word], starts: list[float]) -> float:
    """Silence between ``t`` (a word's start) and the end of the word before it (inf if none)."""
    i = bisect.bisect_left(starts, t - 1e-6)
    prev = max((w.end for w in words[max(0, i - 3) : i]), default=None)
    return math.inf if prev is None else max(0.0, t - prev)


def _pause_after(t: float, words: Sequence[Word], starts: list[float]) -> float:
    """Silence between ``t`` (a word's end) and the start of the next word (inf if none)."""
    i = bisect.bisect_left(starts, t - 1e-6)
    nxt = next((w.start for w in words[i : i + 4] if w.start >= t - 1e-6), None)
    return math.inf if nxt is None else max(0.0, nxt - t)


def _starts(words: Sequence[Word]) -> list[float]:
    return [w.start for w in words]


def _word_gaps(lo: float, hi: float, words: Sequence[Word]) -> list[tuple[float, float, float]]:
    """``(gap start, gap end, pause)`` for the silences between consecutive words within [lo, hi]."""
    out = []
    for a, b in zip(words, words[1:]):
        if a.end >= lo and b.start <= hi and b.start > a.end:
            out.append((a.end, b.start, b.start - a.end))
    return out


def snap_start(start: float, sentences: Sequence[Sentence], cuts: Sequence[float], words: Sequence[Word], o: FusionOptions,
               limit: float | None = None, latest: float = math.inf) -> float:
    """Where a clip should start near ``start``.

    A start inside a sentence moves to the latest sentence start from that sentence's own up to
    ``limit`` (where the evidence begins), so the lead-in carries as little unrelated talk as
    possible — preferring sentences with a real pause (``min_pause``) before them, since
    Whisper's sentence edges can fall inside running speech (failing that, the latest earlier
    sentence start within ``2 × snap_window`` that has one); the clip then starts ``edge_lead`` before the first
    word, at most half-way into the pause. With no such sentence edge in reach, the start moves to
    the longest pause between words within ``snap_window``. No sentence edge or pause after
    ``latest`` is taken (it keeps the clip long enough). A start in a pause
    moves to a scene cut within ``snap_window / 2`` if there is one, else stays. Either way it never
    lands inside a spoken word."""
    limit = start + o.snap_window if limit is None else limit
    inside = next((s for s in sentences if s.start < start < s.end), None)
    if inside is not None:
        starts = _starts(words)
        cands = []
        for s in sentences:
            if abs(s.start - start) <= o.snap_window and (s is inside or start < s.start <= limit):
                pause = _pause_before(s.start, words, starts) if s.words else math.inf
                cands.append((s.start - min(o.edge_lead, pause / 2), pause))
        cands = [c for c in cands if c[0] <= latest]
        good = [c for c in cands if c[1] >= o.min_pause]
        if not good:  # no pause there: an earlier sentence start (up to twice as far) that has one
            for s in sentences:
                if start - 2 * o.snap_window <= s.start < inside.start and s.words:
                    pause = _pause_before(s.start, words, starts)
                    if pause >= o.min_pause:
                        good.append((s.start - min(o.edge_lead, pause / 2), pause))
        if good:
            return _free_point(max(0.0, max(c[0] for c in good)), words, 0.0, backwards=True)
        # the region's first second is spread_s before the evidence itself: a pause up to there will do
        gaps = [g for g in _word_gaps(start - o.snap_window, limit + o.spread_s, words)
                if g[2] >= o.min_pause and g[1] - min(o.edge_lead, g[2] / 2) <= min(limit + o.spread_s, latest)]
        if gaps:
            a, b, pause = max(gaps, key=lambda g: (g[2], g[1]))
            return max(0.0, b - min(o.edge_lead, pause / 2))
        if cands:
            return _free_point(max(0.0, max(c[0] for c in cands)), words, 0.0, backwards=True)
        return _free_point(max(0.0, start), words, o.word_pad, backwards=True)
    cands = [c for c in cuts if abs(c - start) <= o.snap_window / 2 and c <= limit and _inside_word(c, words, o.word_pad) is None]
    best = min(cands, key=lambda c: abs(c - start)) if cands else start
    return _free_point(max(0.0, best), words, o.word_pad if not cands else 0.0, backwards=True)


def snap_end(end: float, sentences: Sequence[Sentence], cuts: Sequence[float], words: Sequence[Word], o: FusionOptions, duration: float, limit: float | None = None) -> float:
    """The mirror of :func:`snap_start`: an end inside a sentence moves to the earliest sentence
    end from ``limit`` (where the evidence ends) up to that sentence's own, preferring ends with a
    real pause after them, ``edge_tail`` after the last word (at most half-way into the pause);
    else to the longest pause between words in reach; an end in a pause moves to a nearby scene
    cut if there is one."""
    limit = end - o.snap_window if limit is None else limit
    inside = next((s for s in sentences if s.start < end < s.end), None)
    if inside is not None:
        starts = _starts(words)
        cands = []
        for s in sentences:
            if abs(s.end - end) <= o.snap_window and (s is inside or limit <= s.end < end):
                pause = _pause_after(s.end, words, starts) if s.words else math.inf
                cands.append((s.end + min(o.edge_tail, pause / 2), pause))
        good = [c for c in cands if c[1] >= o.min_pause]
        if not good:  # no pause there: a later sentence end (up to twice as far) that has one
            for s in sentences:
                if inside.end < s.end <= end + 2 * o.snap_window and s.words:
                    pause = _pause_after(s.end, words, starts)
                    if pause >= o.min_pause:
                        good.append((s.end + min(o.edge_tail, pause / 2), pause))
        if good:
            return min(duration, _free_point(min(c[0] for c in good), words, 0.0, backwards=False))
        gaps = [g for g in _word_gaps(limit - o.spread_s, end + o.snap_window, words)
                if g[2] >= o.min_pause and g[0] + min(o.edge_tail, g[2] / 2) >= limit - o.spread_s]
        if gaps:
            a, b, pause = max(gaps, key=lambda g: (g[2], -g[0]))
            return min(duration, a + min(o.edge_tail, pause / 2))
        if cands:
            return min(duration, _free_point(min(c[0] for c in cands), words, 0.0, backwards=False))
        return min(duration, _free_point(end, words, o.word_pad, backwards=False))
    cands = [c for c in cuts if abs(c - end) <= o.snap_window / 2 and c >= limit and _inside_word(c, words, o.word_pad) is None]
    best = min(cands, key=lambda c: abs(c - end)) if cands else end
    return min(duration, _free_point(best, words, o.word_pad if not cands else 0.0, backwards=False))


def _moment(show_id: str, start: float, end: float, tl: Timeline, signals: Sequence[Signal], words: Sequence[Word], o: FusionOptions,
            rank: int = 0, cand: Candidate | None = None) -> Moment:
    lo, hi = max(0, int(math.floor(start))), min(len(tl.fused), int(math.ceil(end)))
    seg = tl.fused[lo:hi] if hi > lo else tl.fused[lo : lo + 1]
    score = float(seg.max()) if seg.size else 0.0
    peak = float(lo + int(np.argmax(seg)) + 0.5) if seg.size else start
    reasons = []
    for name, arr in tl.sources.items():
        part = arr[lo:hi]
        if part.size == 0 or part.max() < 0.1:
            continue
        if name == "chat":
            reasons.append(Reason("chat", round(float(part.max()), 3), f"the audience's chat {tl.lag.seconds:.0f} s later"
                                  if tl.lag else "the audience's chat"))
            continue
        shift = (tl.lag.seconds if tl.lag else o.interaction_lag) if name == "interaction" else 0.0
        best = max(
            (s for s in signals if s.source == name and start - o.spread_s <= s.t - shift <= end + o.spread_s),
            key=lambda s: s.score,
            default=None,
        )
        reasons.append(Reason(name, round(float(part.max()), 3), best.reason if best else ""))
    if not reasons and "talk" in tl.sources:
        reasons.append(Reason("talk", round(float(tl.sources["talk"][lo:hi].max(initial=0.0)), 3),
                              "people talking; nothing else stood out in the show"))
    reasons.sort(key=lambda r: -o.weights.get(r.source, 1.0 if r.source == "chat" else 0.0) * r.score)
    text = join_words([w for w in words if w.start >= start - 0.01 and w.end <= end + 0.01])
    conf, strong = (cand.confidence, cand.strong) if cand is not None else (_uncalibrated(score), score >= o.high)
    return Moment(show_id, round(start, 3), round(end, 3), round(score, 4), round(peak, 2), tuple(reasons), text,
                  rank, round(conf, 1), strong)


def join_words(words: Sequence[Word]) -> str:
    out = ""
    for w in words:
        t = w.text.strip()
        if not t:
            continue
        cjk = "\u4e00" <= t[0] <= "\u9fff"
        out += t if (cjk or not out) else " " + t
    return out
