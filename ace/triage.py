"""Chat-only triage: a show's best moments from its chat alone, no media needed.

A 10-hour VOD's chat triages in seconds; the moments it gives are where to fetch and cut the
media (``ace process SHOW --moments DIR/<stem>/moments.json``). Each events file (ACE JSONL, Twitch
chat JSON, Bilibili danmaku XML) becomes ``OUT/<stem>/moments.json`` with the same moment fields
as ``ace process`` writes; one file that cannot be read is an error for that file only.

Moments sit where the event happened, not where the chat peaked: the highlight model reads the
chat that follows each second by the audience's delay (:mod:`models.scorer`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ace.errors import AceError, InputError
from ace.events import load_events
from ace.lag import Lag
from ace.ranking import Candidate
from ace.signals.chat import EMOTE_LIKE, HYPE_WORDS, LAUGH_WORDS, MIN_CHAT, SHOCK_WORDS, chat_series, message_kinds
from ace.training import keep, stem_of
from ace.types import Event, Moment, Reason, to_dict
from models.scorer import HighlightModel

log = logging.getLogger("ace.triage")

_SAFE_STEM = re.compile(r"^[\w][\w.\-]{0,119}$")


@dataclass
class TriageResult:
    path: str
    stem: str
    ok: bool
    moments: list[Moment] = field(default_factory=list)
    duration: float = 0.0
    messages: int = 0
    lag: Lag | None = None
    out_path: str = ""
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def chat_moments(show_id: str, events: Sequence[Event], model: HighlightModel, duration: float | None = None,
                 top: int | None = None, min_confidence: float | None = None, lag: Lag | None = None) -> tuple[list[Moment], Lag, np.ndarray]:
    """The ranked moments of one show's chat, the delay used, and the per-second probability."""
    chats = [e for e in events if e.kind == "chat"]
    if duration is None:
        duration = math.ceil(max((e.t for e in chats), default=0.0)) + 1.0
    lag = lag or Lag(model.lag, "prior")
    series = chat_series(chats, duration)
    p = model.probability(series, lag.seconds)
    kept = keep(model, p, duration, top, min_confidence)
    moments = [_moment(show_id, k + 1, c, chats, series, lag.seconds) for k, c in enumerate(kept)]
    return moments, lag, p


def _moment(show_id: str, rank: int, c: Candidate, chats: Sequence[Event], series: np.ndarray, lag: float) -> Moment:
    lo, hi = c.peak + lag - 5.0, c.peak + lag + 15.0
    said = [e for e in chats if lo <= e.t < hi]
    expected = max(float(series[:, 0].mean()), 1e-9) * (hi - lo)
    words: Counter[str] = Counter()
    for e in said:
        text = (e.text or "").strip()
        parts = set(text.split())
        if len(parts) == 1 and len(text) <= 12 and any(message_kinds(text)[:3]):  # a reaction of its own: 哈哈哈, 卧槽!!!
            words[text] += 1
            continue
        for w in parts:
            lw = w.lower()
            if lw in HYPE_WORDS or lw in LAUGH_WORDS or lw in SHOCK_WORDS or EMOTE_LIKE.match(w):
                words[w] += 1
    top = ", ".join(f"{w} ×{n}" for w, n in words.most_common(3))
    detail = (f"{len(said)} messages {max(lo, 0):.0f}-{hi:.0f} s ({len(said) / expected:.1f}× the room's rate)"
              + (f": {top}" if top else ""))
    return Moment(show_id, round(c.start, 3), round(c.end, 3), round(c.raw, 4), round(c.peak, 2),
                  (Reason("chat", round(c.raw, 3), detail),), "", rank, round(c.confidence, 1), c.strong)


def safe_stem(path: str | os.PathLike) -> str:
    stem = stem_of(path)
    if _SAFE_STEM.match(stem) and stem not in (".", ".."):
        return stem
    from ace.pipeline import slug

    return slug(stem)


def triage_file(path: str | os.PathLike, out_root: Path | None, model: HighlightModel, top: int | None = None,
                min_confidence: float | None = None, stem: str | None = None, model_name: str = "default") -> TriageResult:
    """Triage one events file; never raises for bad input (the result says what went wrong)."""
    t0 = time.perf_counter()
    stem = stem or safe_stem(path)
    res = TriageResult(str(path), stem, ok=False)
    try:
        if not Path(path).is_file():
            raise InputError(f"no such file: {path}")
        load = load_events(path)
        res.warnings = list(load.warnings)
        chats = [e for e in load.events if e.kind == "chat"]
        res.messages = len(chats)
        if len(chats) < MIN_CHAT:
            other = len(load.events) - len(chats)
            raise InputError(f"{path}: {len(chats)} usable chat message(s)"
                             + (f" (and {other} events of other kinds)" if other else "")
                             + f"; triage needs at least {MIN_CHAT}")
        res.moments, res.lag, p = chat_moments(stem, chats, model, top=top, min_confidence=min_confidence)
        res.duration = float(len(p))
        if out_root is not None:
            res.out_path = str(write_moments(res, Path(out_root), model, model_name))
        res.ok = True
    except AceError as e:
        res.error = str(e)
    except Exception as e:  # a bug must not take the other files down with it
        log.exception("triage of %s failed", path)
        res.error = f"internal error: {type(e).__name__}: {e}"
    res.seconds = time.perf_counter() - t0
    return res


def write_moments(res: TriageResult, out_root: Path, model: HighlightModel, model_name: str) -> Path:
    folder = out_root / res.stem
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "show_id": res.stem,
        "source": str(Path(res.path).resolve()),
        "duration": res.duration,
        "evidence": "chat",
        "messages": res.messages,
        "scorer": {"setting": model_name, "trained_on": model.trained_on},
        "lag": res.lag.to_dict() if res.lag else None,
        "moments": [to_dict(m) for m in res.moments],
        "warnings": res.warnings,
    }
    tmp = folder / ".moments.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    target = folder / "moments.json"
    tmp.replace(target)
    return target


def triage_files(paths: Sequence[str | os.PathLike], out_root: Path | None, model: HighlightModel, top: int | None = None,
                 min_confidence: float | None = None, model_name: str = "default",
                 progress: Callable[[int, int, TriageResult], None] | None = None) -> list[TriageResult]:
    """Triage every file; files with the same stem get ``<stem>``, ``<stem>-2``, ... (never a stem
    another file of the run has)."""
    used: set[str] = set()
    out = []
    for k, path in enumerate(paths):
        base = stem = safe_stem(path)
        n = 1
        while stem in used:
            n += 1
            stem = f"{base}-{n}"
        used.add(stem)
        res = triage_file(path, out_root, model, top, min_confidence, stem, model_name)
        out.append(res)
        if progress is not None:
            progress(k + 1, len(paths), res)
    return out
