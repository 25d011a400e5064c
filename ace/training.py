"""Fitting the highlight model from labelled shows, with honest (held-out) figures.

A labelled show is a chat log plus its highlight intervals (:mod:`ace.labels`). :func:`fit_model`
fits the model on all the shows it is given, then chooses what it cannot learn from the seconds
alone on shows it did not train on: leave one show out, fit on the rest, and score the one left out
(:func:`held_out`). From those held-out probabilities :func:`tune` learns the confidence calibration
(each candidate moment's peak probability against whether it overlapped a labelled highlight), how
wide a moment's region is, and the confidence a moment needs on its own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ace.errors import InputError
from ace.events import load_events
from ace.labels import label_mask, load_highlights
from ace.evaluation.intervals import mean_scores, overlaps, score_intervals
from ace.ranking import Candidate, RankOptions, peaks, select
from ace.signals.chat import chat_series
from models.scorer import HighlightModel, isotonic_knots

log = logging.getLogger("ace.training")

#: The fewest shows leave-one-out calibration needs; with fewer the probability is its own confidence.
MIN_SHOWS_FOR_CV = 3


@dataclass
class LabelledShow:
    name: str
    series: np.ndarray  #: (T, 9) chat series
    highlights: list[tuple[float, float]]
    duration: float
    counts: np.ndarray | None = None  #: every chat message per second, nothing left out (for simple rules)

    @property
    def labels(self) -> np.ndarray:
        return label_mask(self.highlights, len(self.series))


def load_labelled(events_path: str | Path, labels_path: str | Path) -> LabelledShow:
    """One labelled show from its events file and labels file."""
    load = load_events(events_path)
    chats = [e for e in load.events if e.kind == "chat"]
    if not chats:
        raise InputError(f"{events_path}: no chat messages to learn from")
    hl = load_highlights(labels_path)
    duration = math.ceil(max([e.t for e in chats] + [b for _, b in hl])) + 1.0
    series = chat_series(load.events, duration)
    counts = np.bincount(np.clip([int(e.t) for e in chats], 0, len(series) - 1), minlength=len(series)).astype(np.float64)
    return LabelledShow(stem_of(events_path), series, hl, duration, counts)


def stem_of(path: str | Path) -> str:
    """A file's name without ``.events.jsonl`` / ``.jsonl`` / ``.json`` / ``.xml`` (and ``.gz``)."""
    name = Path(path).name
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in (".events.jsonl", ".events.json", ".jsonl", ".json", ".xml"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def fit_model(shows: Sequence[LabelledShow], trained_on: str = "",
              progress: Callable[[str], None] | None = None) -> HighlightModel:
    """The model fitted on every show; its confidence calibration, region extent and confidence
    threshold chosen on held-out shows (leave one out) when there are enough of them."""
    if not shows:
        raise InputError("no labelled shows to train on")
    model = HighlightModel().fit([(s.series, s.labels) for s in shows])
    model.trained_on = trained_on
    if len(shows) >= MIN_SHOWS_FOR_CV:
        held = held_out(shows, progress)
        choice = tune(held)
        model.extent, model.level, model.share = choice.extent, choice.level, choice.share
        model.min_confidence, model.calibration = choice.min_confidence, choice.calibration
        model.metrics["tuned_on_held_out"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in choice.figures.items()}
    else:
        log.warning("%d labelled show(s): confidence is not calibrated (needs %d)", len(shows), MIN_SHOWS_FOR_CV)
    model.metrics["shows"] = len(shows)
    model.metrics["seconds"] = int(sum(len(s.series) for s in shows))
    return model


@dataclass
class HeldOut:
    show: LabelledShow
    p: np.ndarray  #: its per-second probability from a model that did not see it


def held_out(shows: Sequence[LabelledShow], progress: Callable[[str], None] | None = None) -> list[HeldOut]:
    """Leave one show out at a time: each show's probability from a model fitted on the others."""
    out = []
    for k, show in enumerate(shows):
        if progress is not None:
            progress(f"held out {k + 1}/{len(shows)}: {show.name}")
        model = HighlightModel().fit([(s.series, s.labels) for j, s in enumerate(shows) if j != k])
        out.append(HeldOut(show, model.probability(show.series)))
    return out


@dataclass
class Choice:
    extent: float
    level: float
    share: float
    min_confidence: float
    calibration: list[tuple[float, float]]
    figures: dict


#: What tuning may choose from (few values on purpose: the held-out shows are few):
#: (extent, level) pairs for the regions, then confidence thresholds.
EXTENTS = ((0.35, 0.0, 0.0), (0.5, 0.0, 0.0), (0.3, 0.15, 0.0), (0.3, 0.2, 0.0), (0.3, 0.25, 0.0), (0.3, 0.3, 0.0),
           (0.3, 0.0, 0.15), (0.3, 0.0, 0.2), (0.3, 0.0, 0.25))
CONFIDENCES = tuple(range(20, 75, 5))
#: Tuning keeps the share of the timeline flagged at or below this.
MAX_FLAGGED = 0.18


def tune(held: Sequence[HeldOut], extents: Sequence[float] = EXTENTS, confidences: Sequence[float] = CONFIDENCES,
         max_flagged: float = MAX_FLAGGED) -> Choice:
    """The region extent and confidence threshold that do best on held-out shows (mean of
    per-second F1 and moment F1, with no more than ``max_flagged`` of the timeline flagged), and the
    calibration measured with that extent."""
    best: Choice | None = None
    best_key = None
    for extent, level, share in extents:
        ro = RankOptions(extent=extent, level=level, share=share)
        cands = [peaks(h.p, ro) for h in held]
        raw = [c.raw for cs in cands for c in cs]
        hits = [any(overlaps((c.start, c.end), x) for x in h.show.highlights) for h, cs in zip(held, cands) for c in cs]
        calibration = isotonic_knots(raw, hits)
        probe = HighlightModel(calibration=calibration)
        for conf in confidences:
            ro_c = RankOptions(extent=extent, level=level, share=share, min_confidence=conf)
            rows = []
            for h, cs in zip(held, cands, strict=True):
                kept = select(cs, h.show.duration, probe.confidence, ro_c)
                rows.append(score_intervals([(c.start, c.end) for c in kept], h.show.highlights, len(h.show.series)))
            figures = mean_scores(rows)
            ok = figures["flagged_share"] <= max_flagged
            key = (ok, figures["second_f1"] + figures["moment_f1"])
            if best_key is None or key > best_key:
                best_key, best = key, Choice(extent, level, share, float(conf), calibration, figures)
    assert best is not None
    return best


def triage_candidates(model: HighlightModel, show: LabelledShow, top: int | None = None) -> list[Candidate]:
    """What triage keeps for a labelled show, best first."""
    return keep(model, model.probability(show.series), show.duration, top)


def keep(model: HighlightModel, p: np.ndarray, duration: float, top: int | None = None,
         min_confidence: float | None = None) -> list[Candidate]:
    """The moments triage keeps from a per-second probability ``p``, best first, with the region
    and threshold settings the model learned (and the user's overrides)."""
    ro = rank_options(model, top, min_confidence)
    return select(peaks(p, ro), duration, model.confidence, ro)


def rank_options(model: HighlightModel, top: int | None = None, min_confidence: float | None = None) -> RankOptions:
    """Ranking settings from what the model learned, with the user's overrides."""
    return RankOptions(extent=model.extent, level=model.level, share=model.share, top=top,
                       min_confidence=model.min_confidence if min_confidence is None else min_confidence)


# ------------------------------------------------------------------ a tenant's own reviews


@dataclass
class ReviewedShow:
    name: str
    series: np.ndarray
    labels: np.ndarray  #: 1 approved, 0 rejected, NaN not reviewed
    approved: int
    rejected: int


#: The fewest reviewed moments (of each verdict) before reviews may move the model's weights;
#: with fewer, only its confidence is recalibrated.
MIN_REVIEWS_TO_TUNE = 10


def reviewed_shows(reviews: Sequence[dict], events_for: Callable[[str], Path | None]) -> tuple[list[ReviewedShow], list[str]]:
    """Chat series and partial labels of every reviewed show whose chat can be found.

    ``reviews`` are ``{"show_id", "start", "end", "verdict"}`` rows; ``events_for(show_id)`` gives the
    show's events file (or None). Returns the shows and why others were left out."""
    by_show: dict[str, list[dict]] = {}
    for r in reviews:
        by_show.setdefault(str(r["show_id"]), []).append(r)
    out, skipped = [], []
    for sid, rows in sorted(by_show.items()):
        path = events_for(sid)
        if path is None or not Path(path).is_file():
            skipped.append(f"{sid}: {len(rows)} review(s), but no chat log of the show was kept")
            continue
        try:
            events = [e for e in load_events(path).events if e.kind == "chat"]
        except InputError as e:
            skipped.append(f"{sid}: {e}")
            continue
        if not events:
            skipped.append(f"{sid}: {len(rows)} review(s), but the show had no chat")
            continue
        duration = math.ceil(max([e.t for e in events] + [float(r["end"]) for r in rows])) + 1.0
        series = chat_series(events, duration)
        labels = np.full(len(series), np.nan)
        for r in sorted(rows, key=lambda r: r["verdict"] == "approve"):  # an approval wins where two overlap
            a, b = max(0, int(math.floor(float(r["start"])))), min(len(series), int(math.ceil(float(r["end"]))))
            labels[a:b] = 1.0 if r["verdict"] == "approve" else 0.0
        ok = sum(r["verdict"] == "approve" for r in rows)
        out.append(ReviewedShow(sid, series, labels, ok, len(rows) - ok))
    return out, skipped


def tune_on_reviews(base: HighlightModel, shows: Sequence[ReviewedShow], who: str) -> HighlightModel:
    """``base`` fitted to a tenant's taste: its weights nudged toward the approved and away from the
    rejected moments when there are enough of both (:data:`MIN_REVIEWS_TO_TUNE`), and its confidence
    recalibrated on how often the reviewed moments were approved."""
    approved = sum(s.approved for s in shows)
    rejected = sum(s.rejected for s in shows)
    if approved + rejected == 0:
        raise InputError(f"no reviews with a chat log to learn from for {who}")
    model = base
    tuned = approved >= MIN_REVIEWS_TO_TUNE and rejected >= MIN_REVIEWS_TO_TUNE
    if tuned:
        model = base.tune([(s.series, s.labels) for s in shows])
    raw, hits = [], []
    for s in shows:
        p = model.probability(s.series)
        for a, b, verdict in _spans(s.labels):
            raw.append(float(p[a:b].max()))
            hits.append(verdict)
    model = dataclasses.replace(model)
    model.calibrate(raw, hits)
    model.trained_on = (f"{base.trained_on or 'a highlight model'}; "
                        f"{'tuned and ' if tuned else ''}recalibrated on {approved} approved and {rejected} rejected "
                        f"moments of {who}")
    model.metrics = dict(base.metrics) | {"reviews": {"approved": approved, "rejected": rejected, "shows": len(shows),
                                                       "weights_tuned": tuned}}
    return model


def _spans(labels: np.ndarray) -> list[tuple[int, int, bool]]:
    """Runs of equal known labels: ``(start, end, approved)``."""
    out = []
    i, n = 0, len(labels)
    while i < n:
        if not np.isfinite(labels[i]):
            i += 1
            continue
        j = i
        while j + 1 < n and labels[j + 1] == labels[i]:
            j += 1
        out.append((i, j + 1, bool(labels[i] > 0.5)))
        i = j + 1
    return out
