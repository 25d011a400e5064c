"""``ace eval --parts chat``: chat-only triage on real chat with human highlight labels.

The folder ``DATA/chat`` holds ``<stem>.events.jsonl`` (chat) and ``<stem>.highlights.json`` (labelled
``[start, end]`` intervals) pairs. Everything ACE fits is measured on shows it did not see: for
each show, the highlight model is fitted on all the others (:func:`ace.training.fit_model`, which
itself chooses its calibration and thresholds by leaving one of *those* out), then triages the show
left out. Next to it, scored the same way:

* the simple rules a user could write, ``rate > 2x`` and ``rate > 4x``: a 10 s window is flagged when
  its chat rate (every message counted) is above 2 (4) times the mean rate of the 5 minutes before
  it (windows with less than a minute before them are not judged);
* chance: ACE's own predictions for each show, shifted in time (circularly, by each tenth of the show),
  so the same number and length of moments fall where the chat does not say anything.

Figures are means over shows (each show counts the same): per-second precision, recall and F1, the share of
the timeline flagged, moment precision, recall and F1 (overlap counts as a match) and the median start
error of found labels. ``calibration`` compares ACE's confidence with how often its moments were right.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ace.errors import InputError
from ace.evaluation.intervals import mean_scores, overlaps, score_intervals
from ace.training import LabelledShow, fit_model, load_labelled, stem_of, triage_candidates

log = logging.getLogger("ace.evaluation.chat")

Interval = tuple[float, float]


def find_pairs(data: Path) -> list[tuple[Path, Path]]:
    folder = data / "chat"
    if not folder.is_dir():
        raise InputError(f"no chat/ folder in {data} (it holds <stem>.events.jsonl with <stem>.highlights.json)")
    pairs = []
    for ev in sorted(folder.glob("*.events.jsonl")):
        lab = ev.with_name(stem_of(ev) + ".highlights.json")
        if lab.is_file():
            pairs.append((ev, lab))
    if len(pairs) < 3:
        raise InputError(f"{folder}: {len(pairs)} labelled chat logs; leave-one-out needs at least 3")
    return pairs


def rate_rule(show: LabelledShow, factor: float, window: int = 10, history: int = 300) -> list[Interval]:
    """10 s windows whose chat rate is above ``factor`` × the mean rate of the ``history`` s before."""
    n = len(show.series)
    counts = show.counts if show.counts is not None else show.series[:, 0].astype(np.float64)
    csum = np.concatenate([[0.0], np.cumsum(counts)])
    out: list[Interval] = []
    for a in range(0, n, window):
        b = min(n, a + window)
        lo = max(0, a - history)
        if a - lo < 60:  # no history to compare with yet
            continue
        base = (csum[a] - csum[lo]) / (a - lo)
        rate = (csum[b] - csum[a]) / (b - a)
        if base > 0 and rate > factor * base:
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], float(b))
            else:
                out.append((float(a), float(b)))
    return out


def shifted(pred: list[Interval], n: int, shift: float) -> list[Interval]:
    """The same intervals moved by ``shift`` seconds, wrapping around the end of the show."""
    out = []
    for a, b in pred:
        a2, b2 = (a + shift) % n, (b + shift) % n
        if b2 <= a2:  # wrapped: split in two
            out += [(a2, float(n)), (0.0, b2)] if b2 > 0 else [(a2, float(n))]
        else:
            out.append((a2, b2))
    return out


def evaluate_chat(data: Path, progress: Callable[[str], None] | None = None) -> dict:
    t0 = time.perf_counter()
    shows = [load_labelled(ev, lab) for ev, lab in find_pairs(Path(data))]
    per_show = []
    methods: dict[str, list[dict]] = {"ace": [], "rate>2x": [], "rate>4x": [], "chance": []}
    conf: list[float] = []
    hits: list[bool] = []
    lags = []
    for k, show in enumerate(shows):
        if progress is not None:
            progress(f"chat: {show.name} ({k + 1}/{len(shows)}), fitted on the other {len(shows) - 1}")
        model = fit_model([s for j, s in enumerate(shows) if j != k])
        kept = triage_candidates(model, show)
        pred = [(c.start, c.end) for c in kept]
        n = len(show.series)
        row = score_intervals(pred, show.highlights, n)
        methods["ace"].append(row)
        methods["rate>2x"].append(score_intervals(rate_rule(show, 2.0), show.highlights, n))
        methods["rate>4x"].append(score_intervals(rate_rule(show, 4.0), show.highlights, n))
        chance = [score_intervals(shifted(pred, n, n * f / 10), show.highlights, n) for f in range(1, 10)]
        methods["chance"].append(mean_scores(chance))
        for c in kept:
            conf.append(c.confidence)
            hits.append(any(overlaps((c.start, c.end), h) for h in show.highlights))
        lags.append(model.lag)
        per_show.append({"show": show.name, "seconds": n, "labels": len(show.highlights), "lag_s": model.lag,
                         "extent": model.extent, "level": model.level, "min_confidence": model.min_confidence,
                         **{k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in row.items()}})
    summary = {name: mean_scores(rows) for name, rows in methods.items()}
    best_rule = max(summary["rate>2x"]["second_f1"] or 0.0, summary["rate>4x"]["second_f1"] or 0.0)
    ace = summary["ace"]
    flat = {
        "ace_second_f1": ace["second_f1"], "ace_flagged_share": ace["flagged_share"], "ace_moment_f1": ace["moment_f1"],
        "ace_start_error_s": ace["start_error_s"], "best_rule_second_f1": best_rule,
        "ace_second_f1_minus_best_rule": round((ace["second_f1"] or 0.0) - best_rule, 4),
        "ace_moment_f1_minus_chance": round((ace["moment_f1"] or 0.0) - (summary["chance"]["moment_f1"] or 0.0), 4),
        "ace_second_f1_minus_chance": round((ace["second_f1"] or 0.0) - (summary["chance"]["second_f1"] or 0.0), 4),
        "lag_s": {"min": min(lags), "median": float(np.median(lags)), "max": max(lags)},
    }
    return {"shows": len(shows), "methods": summary, "summary": flat, "per_show": per_show,
            "calibration": calibration_table(conf, hits), "seconds": round(time.perf_counter() - t0, 1)}


def calibration_table(conf: list[float], hits: list[bool], edges=(0, 40, 55, 70, 85, 101)) -> dict:
    """How often moments were right, by confidence band, and the mean gap between the two
    (expected calibration error, in points, weighted by moments)."""
    c = np.asarray(conf, dtype=np.float64)
    h = np.asarray(hits, dtype=np.float64)
    bands = []
    ece = 0.0
    for lo, hi in zip(edges, edges[1:]):
        sel = (c >= lo) & (c < hi)
        if not sel.any():
            continue
        said, right = float(c[sel].mean()), float(100 * h[sel].mean())
        bands.append({"confidence": f"{lo}-{min(hi, 100)}", "moments": int(sel.sum()), "mean_confidence": round(said, 1),
                      "right_pct": round(right, 1)})
        ece += sel.sum() * abs(said - right)
    return {"bands": bands, "ece_points": round(ece / max(len(c), 1), 1), "moments": int(len(c))}
