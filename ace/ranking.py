"""Ranked moments from a per-second highlight probability.

:func:`peaks` walks the (lightly smoothed) probability from its highest point down: each peak
becomes a region that extends while the probability stays above ``extent`` × the peak's and above
``level`` (a per-second probability) and the level that ``share`` of the show's seconds reach
(a show's own scale; both only when the peak reaches them), at most
``max_len`` seconds, and nothing within ``min_gap`` seconds of a region taken can peak again. Every
candidate keeps its peak probability (``raw``), which ranks it.

:func:`select` keeps what a person should see: every candidate whose confidence reaches
``min_confidence`` (the strong ones), and at least the best ``top`` whatever their confidence, so a
quiet show or a short action clip still returns its best few. ``top`` defaults to one per
``per_s`` seconds of show (five minutes), at least one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankOptions:
    smooth_s: int = 5  #: moving-average width before peaks are picked
    extent: float = 0.6  #: a region extends while the probability is above this share of its peak ...
    level: float = 0.0  #: ... and above this probability (when its peak is)
    share: float = 0.0  #: ... and above the probability that this share of the show's seconds reach (0: off)
    min_len: float = 6.0  #: shortest region, seconds (grown evenly around the peak)
    max_len: float = 45.0  #: longest region, seconds
    min_gap: float = 10.0  #: no two peaks closer than this to each other's region
    floor: float = 0.02  #: probabilities below this are no evidence at all
    min_confidence: float = 50.0  #: moments at or above this confidence are kept whatever ``top`` is
    top: int | None = None  #: keep at least this many (None: one per ``per_s`` seconds, at least 1)
    per_s: float = 300.0


@dataclass(frozen=True)
class Candidate:
    start: float
    end: float
    peak: float
    raw: float
    confidence: float = 0.0
    strong: bool = False


def smooth(p: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(p) < 2:
        return np.asarray(p, dtype=np.float64).copy()
    k = np.ones(width) / width
    padded = np.pad(np.asarray(p, dtype=np.float64), (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, k, mode="valid")


def peaks(p: np.ndarray, o: RankOptions = RankOptions(), limit: int | None = None) -> list[Candidate]:
    """Candidates, best first, from per-second probability ``p``."""
    ps = smooth(np.asarray(p, dtype=np.float64), o.smooth_s)
    n = len(ps)
    free = np.ones(n, dtype=bool)
    out: list[Candidate] = []
    limit = limit if limit is not None else n // 10 + 1  # peaks are at least min_gap apart: this is no cap
    level = o.level
    if o.share > 0 and n:
        level = max(level, float(np.quantile(ps, 1.0 - o.share)))
    while len(out) < limit:
        masked = np.where(free, ps, -1.0)
        i = int(np.argmax(masked))
        top = masked[i]
        if top < o.floor:
            break
        cut = max(o.floor, o.extent * top, min(level, 0.999 * top))
        a = i
        while a > 0 and free[a - 1] and ps[a - 1] >= cut and (i - a + 1) < o.max_len:
            a -= 1
        b = i
        while b + 1 < n and free[b + 1] and ps[b + 1] >= cut and (b - a + 1) < o.max_len:
            b += 1
        start, end = float(a), float(b + 1)
        if end - start < o.min_len:
            grow = (o.min_len - (end - start)) / 2
            start, end = max(0.0, start - grow), min(float(n), end + grow)
        out.append(Candidate(start, end, i + 0.5, float(p[i]) if ps[i] <= 0 else float(top)))
        lo = max(0, int(math.floor(start - o.min_gap)))
        hi = min(n, int(math.ceil(end + o.min_gap)))
        free[lo:hi] = False
    return out


def select(cands: Sequence[Candidate], duration: float, confidence: Callable[[float], float],
           o: RankOptions = RankOptions()) -> list[Candidate]:
    """The candidates to keep, best first, with their confidence and whether they are strong."""
    top = o.top if o.top is not None else default_top(duration, o.per_s)
    ranked = sorted(cands, key=lambda c: -c.raw)
    out = []
    for k, c in enumerate(ranked):
        conf = float(confidence(c.raw))
        strong = conf >= o.min_confidence
        if strong or k < top:
            out.append(Candidate(c.start, c.end, c.peak, c.raw, conf, strong))
    return out


def default_top(duration: float, per_s: float = 300.0) -> int:
    """About one moment per ``per_s`` seconds of show, at least one."""
    return max(1, int(round(duration / per_s)))
