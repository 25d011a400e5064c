"""Scoring predicted highlight intervals against labelled ones.

Per second: precision, recall and F1 of the seconds flagged (any predicted interval covers them)
against the seconds labelled, and the share of the timeline flagged. Per moment: a prediction is
right when it overlaps a labelled highlight, a label is found when a prediction overlaps it;
precision, recall and F1 from those counts. The start error is, for each label found, the
distance from its start to the start of the overlapping prediction that begins nearest to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ace.labels import label_mask

Interval = tuple[float, float]


def overlaps(a: Interval, b: Interval) -> bool:
    """Intervals overlap (a zero-length one counts when it touches the other)."""
    if a[1] > a[0] and b[1] > b[0]:
        return a[0] < b[1] and b[0] < a[1]
    return a[0] <= b[1] and b[0] <= a[1]


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def score_intervals(pred: Sequence[Interval], labels: Sequence[Interval], n: int) -> dict:
    """Every figure for one show of ``n`` seconds."""
    flags = label_mask(list(pred), n) > 0
    truth = label_mask(list(labels), n) > 0
    tp = int((flags & truth).sum())
    p = tp / flags.sum() if flags.sum() else 0.0
    r = tp / truth.sum() if truth.sum() else 0.0
    right = sum(any(overlaps(x, h) for h in labels) for x in pred)
    found = [h for h in labels if any(overlaps(x, h) for x in pred)]
    errors = [min(abs(x[0] - h[0]) for x in pred if overlaps(x, h)) for h in found]
    mp = right / len(pred) if pred else 0.0
    mr = len(found) / len(labels) if labels else 0.0
    return {
        "second_precision": p, "second_recall": r, "second_f1": _f1(p, r), "flagged_share": float(flags.mean()) if n else 0.0,
        "moment_precision": mp, "moment_recall": mr, "moment_f1": _f1(mp, mr),
        "moments": len(pred), "labels": len(labels), "start_error_s": float(np.median(errors)) if errors else math.nan,
    }


def mean_scores(rows: Sequence[dict]) -> dict:
    """The mean of each figure over shows (each show counts the same); NaNs are left out."""
    keys = rows[0].keys() if rows else ()
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and not math.isnan(r[k])]
        out[k] = round(float(np.mean(vals)), 4) if vals else None
    return out
