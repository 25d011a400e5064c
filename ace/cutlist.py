"""Cutting moments chosen elsewhere: ``ace process SHOW --moments moments.json``.

Chat-only triage (``ace triage``) says where a long show's best moments are; this cuts just those
from the media, without analysing the whole show. Each moment's edges are brought within the clip
length limits and snapped to sentence edges heard in the moment's own audio (only those few
seconds are transcribed, so a 10-hour VOD costs what its clips cost), and its captions come from the
same transcript. The moments keep their rank, confidence and reasons.

A ``moments.json`` is what ``ace triage`` or ``ace process`` writes: ``{"moments": [{"start": s,
"end": e, ...}, ...]}`` (a bare list of moments is accepted too). A file that does not parse, or a
moment without numeric ``start`` < ``end``, is an :class:`~ace.errors.InputError` naming the moment.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ace import jsontext, media
from ace.errors import InputError
from ace.fusion import FusionOptions, Timeline, snap_end, snap_start
from ace.types import MediaInfo, Moment, Reason, Sentence

#: Seconds of audio transcribed beyond each edge, so the edge can move to a sentence boundary.
MARGIN_S = 4.0


def load_moments(path: str | os.PathLike, show_id: str) -> list[Moment]:
    """The moments of a moments file, for ``show_id``, in the file's order."""
    p = Path(path)
    try:
        doc = jsontext.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"no moments file at {p}") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read the moments: {e}") from e
    items = doc.get("moments") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise InputError(f"{p}: expected {{\"moments\": [{{\"start\": ..., \"end\": ...}}, ...]}} (what ace triage writes)")
    out = []
    for k, m in enumerate(items, 1):
        if not isinstance(m, dict):
            raise InputError(f"{p}: moment {k}: expected an object with start and end")
        try:
            start, end = float(m["start"]), float(m["end"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{p}: moment {k}: start and end must be numbers of seconds") from e
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise InputError(f"{p}: moment {k}: needs 0 <= start < end, got {start} and {end}")
        reasons = []
        for r in m.get("reasons") or ():
            if isinstance(r, dict) and isinstance(r.get("source"), str):
                reasons.append(Reason(r["source"], _num(r.get("score")), str(r.get("detail") or "")))
        out.append(Moment(show_id, start, end, _num(m.get("score")), _num(m.get("peak"), (start + end) / 2), tuple(reasons), "",
                          int(_num(m.get("rank"), k)), _num(m.get("confidence")), bool(m.get("strong", True))))
    return out


def _num(v, default: float = 0.0) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default


def plan(moments: list[Moment], info: MediaInfo, transcribe: Callable[[float, float], list[Sentence]],
         o: FusionOptions) -> tuple[list[Moment], list[Sentence], list[str]]:
    """The moments that lie in the show, each within the clip length limits and snapped to the
    sentences heard around it; the sentences; warnings for moments left out."""
    from ace.fusion import join_words

    warnings = []
    kept: list[Moment] = []
    sentences: list[Sentence] = []
    d = info.duration
    for m in moments:
        if m.start >= d:
            warnings.append(f"moment at {m.start:.1f}-{m.end:.1f} s lies after the end of the show ({d:.1f} s): left out")
            continue
        start, end = m.start, min(m.end, d)
        if end - start < o.clip_min:
            grow = (o.clip_min - (end - start)) / 2
            start, end = start - grow, end + grow
        if end - start > o.clip_max:  # keep clip_max around the peak
            mid = min(max(m.peak, start + o.clip_max / 2), end - o.clip_max / 2)
            start, end = mid - o.clip_max / 2, mid + o.clip_max / 2
        start, end = max(0.0, start), min(d, end)
        heard = transcribe(max(0.0, start - MARGIN_S), min(d, end + MARGIN_S))
        words = sorted((w for s in heard for w in s.words), key=lambda w: w.start)
        new_end = snap_end(end, heard, (), words, o, d, limit=end - o.snap_window / 2)
        new_start = snap_start(start, heard, (), words, o, limit=start + o.snap_window / 2, latest=new_end - o.clip_min + 0.5)
        if new_end <= new_start:
            new_start, new_end = start, end
        sentences.extend(heard)
        text = join_words([w for w in words if w.start >= new_start - 0.01 and w.end <= new_end + 0.01])
        kept.append(Moment(m.show_id, round(new_start, 3), round(new_end, 3), m.score, min(max(m.peak, new_start), new_end),
                           m.reasons, text, m.rank, m.confidence, m.strong))
    # two moments that now overlap are cut once, as the better ranked
    kept.sort(key=lambda m: (m.rank or 10**9, m.start))
    out: list[Moment] = []
    for m in kept:
        if any(m.start < x.end and x.start < m.end for x in out):
            warnings.append(f"moment at {m.start:.1f}-{m.end:.1f} s overlaps a better one: cut once")
            continue
        out.append(m)
    sentences.sort(key=lambda s: s.start)
    unique = []
    for s in sentences:
        if not unique or (s.start, s.text) != (unique[-1].start, unique[-1].text):
            unique.append(s)
    return out, unique, warnings


def empty_timeline(duration: float) -> Timeline:
    return Timeline(duration, {}, np.zeros(max(1, int(math.ceil(duration)))))


def audio_window(path: str, start: float, end: float) -> np.ndarray:
    return media.read_audio(path, sr=16000, start=start, duration=max(0.0, end - start))
