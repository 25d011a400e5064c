"""Caption timing: ACE's transcript timing against human-timed captions (``video/friday.vtt``).

The recording's audio goes through ACE's own speech path (the pipeline's :class:`~ace.signals.Transcriber`
with the pipeline's settings). The transcript's words and the captions' words are normalised (lower
case, no punctuation, common contractions expanded, small numbers spelled out) and aligned as two
token sequences with :class:`difflib.SequenceMatcher`; inside a stretch the two disagree on, tokens
that are spelled almost alike ("jewell" / "jewels") still pair up, in order. Each cue then gets the
transcript words paired with its tokens, and:

* ``start_error_s`` = first matched word's start − cue start (negative: ACE's word begins early);
* ``end_error_s`` = last matched word's end − cue end.

A cue none of whose words was recognised is reported as unmatched (errors ``None``), never dropped.
The summary's errors are over matched cues: mean absolute (``*_mae_s``), largest absolute (``*_max_s``)
and signed mean (``*_bias_s``).

>>> from ace.evaluation.captions import evaluate_captions
>>> report = evaluate_captions("../shared/data")          # doctest: +SKIP
>>> report["summary"]["start_mae_s"]                       # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import html
import logging
import os
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ace.config import Settings, get_settings
from ace.errors import InputError
from ace.types import Word

log = logging.getLogger("ace.evaluation.captions")

__all__ = ["Cue", "parse_vtt", "parse_vtt_text", "tokens", "align_cues", "summarise", "evaluate_captions", "FRIDAY_VIDEO", "FRIDAY_VTT"]

#: The recording and its human-timed captions, relative to the data folder.
FRIDAY_VIDEO = Path("video/friday.mp4")
FRIDAY_VTT = Path("video/friday.vtt")

#: Two differently spelled tokens pair up inside a disagreeing stretch when
#: ``difflib.SequenceMatcher(None, a, b).ratio()`` reaches this ("jewell"/"jewels" 0.83, "lot"/"lord" 0.57).
FUZZY_RATIO = 0.75


@dataclass(frozen=True, slots=True)
class Cue:
    """One caption cue: ``start``/``end`` in seconds, ``text`` without markup (lines joined by
    ``\\n``), the optional cue ``id`` and its raw ``settings`` (e.g. ``"line:80%"``)."""

    start: float
    end: float
    text: str
    id: str = ""
    settings: str = ""


# ------------------------------------------------------------------------------------------------ WebVTT

_TIMESTAMP = r"(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3}"
_TIMING = re.compile(rf"^\s*({_TIMESTAMP})\s*-->\s*({_TIMESTAMP})(?:[ \t]+(.*))?$")
_TAG = re.compile(r"<[^>]*>")


def _seconds(stamp: str) -> float:
    """``[hh:]mm:ss.ttt`` (a comma is accepted for the dot) in seconds."""
    parts = stamp.replace(",", ".").split(":")
    secs = float(parts[-1])
    mins = int(parts[-2])
    hours = int(parts[-3]) if len(parts) > 2 else 0
    if mins > 59 or secs >= 60:
        raise ValueError(f"bad timestamp {stamp!r}")
    return hours * 3600 + mins * 60 + secs


def _clean(line: str) -> str:
    """Cue payload text without tags (``<v Name>``, ``<i>``, ``<00:00:01.000>``) or entities."""
    return html.unescape(_TAG.sub("", line)).strip()


def parse_vtt_text(text: str) -> list[Cue]:
    """Cues of a WebVTT document (see :func:`parse_vtt`)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = re.split(r"\n[ \t]*\n", text.strip("\n"))
    if not blocks or not blocks[0].startswith("WEBVTT"):
        raise ValueError("not a WebVTT document (it must start with 'WEBVTT')")
    cues: list[Cue] = []
    for block in blocks[1:]:
        lines = block.split("\n")
        if lines[0].startswith(("NOTE", "STYLE", "REGION")) and "-->" not in lines[0]:
            continue
        cue_id = ""
        if "-->" not in lines[0]:
            cue_id, lines = lines[0].strip(), lines[1:]
        if not lines:
            continue
        m = _TIMING.match(lines[0])
        if m is None:
            log.warning("skipping a WebVTT block without a valid timing line: %r", block[:80])
            continue
        try:
            start, end = _seconds(m.group(1)), _seconds(m.group(2))
        except ValueError as exc:
            log.warning("skipping a WebVTT cue: %s", exc)
            continue
        payload = "\n".join(c for c in (_clean(x) for x in lines[1:]) if c)
        cues.append(Cue(start, end, payload, cue_id, (m.group(3) or "").strip()))
    return cues


def parse_vtt(path: str | os.PathLike) -> list[Cue]:
    """The cues of the WebVTT file ``path``, in file order.

    Handles optional cue ids, optional hours in timestamps, cue settings after the timing
    (``line:80%``), ``NOTE``/``STYLE``/``REGION`` blocks, a byte-order mark, CRLF line ends and
    markup in the payload (removed). Raises ValueError when the file is not WebVTT.
    """
    return parse_vtt_text(Path(path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------- alignment

_CONTRACTIONS = (("n't", " not"), ("'ve", " have"), ("'re", " are"), ("'ll", " will"), ("'m", " am"))
_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
    "7": "seven", "8": "eight", "9": "nine", "10": "ten", "11": "eleven", "12": "twelve",
}


def tokens(text: str) -> list[str]:
    """Normalised words of ``text``: NFKC, lower case, unambiguous contractions expanded ("must've"
    → "must have"), other apostrophes dropped ("he's" → "hes"), punctuation removed, 0-12 spelled out."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\bcan't\b", "can not", re.sub(r"\bwon't\b", "will not", text))
    for short, long in _CONTRACTIONS:
        text = re.sub(rf"(?<=\w){short}\b", long, text)
    text = text.replace("'", "")
    text = re.sub(r"[^\w\s]|_", " ", text)
    return [_NUMBERS.get(t, t) for t in text.split()]


def _similar(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= FUZZY_RATIO


def _pairs(a: list[str], b: list[str]) -> list[tuple[int, int, bool]]:
    """Pairs ``(i, j, exact)`` of aligned tokens ``a[i]`` ~ ``b[j]``, increasing in both."""
    out: list[tuple[int, int, bool]] = []
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            out.extend((i1 + k, j1 + k, True) for k in range(i2 - i1))
        elif tag == "replace":
            j = j1
            for i in range(i1, i2):
                for jj in range(j, j2):
                    if _similar(a[i], b[jj]):
                        out.append((i, jj, False))
                        j = jj + 1
                        break
    return out


def align_cues(cues: Sequence[Cue], words: Sequence[Word]) -> list[dict]:
    """One row per cue (in the cues' order) saying which transcript words it was aligned with and
    how far their timing is from the cue's.

    Row keys: ``cue`` (1-based), ``id``, ``start``, ``end``, ``text``, ``tokens`` (the cue's normalised
    word count), ``matched`` (transcript words aligned with the cue), ``fuzzy`` (how many of those were
    spelled differently), ``first_token_matched``/``last_token_matched``, ``transcript`` (the aligned
    words' text), ``word_start``/``word_end``, ``start_error_s``/``end_error_s`` and ``status``
    (``"matched"`` or ``"unmatched"``; an unmatched cue has ``None`` for the times and errors).
    """
    words = sorted((w for w in words if w.text.strip()), key=lambda w: (w.start, w.end))
    cue_tok: list[tuple[str, int]] = [(t, i) for i, c in enumerate(cues) for t in tokens(c.text)]
    word_tok: list[tuple[str, int]] = [(t, j) for j, w in enumerate(words) for t in tokens(w.text)]
    matched: dict[int, dict[int, bool]] = {}  # cue -> {word index: exact}
    matched_tok: set[int] = set()
    for i, j, exact in _pairs([t for t, _ in cue_tok], [t for t, _ in word_tok]):
        ci, wi = cue_tok[i][1], word_tok[j][1]
        seen = matched.setdefault(ci, {})
        seen[wi] = seen.get(wi, False) or exact
        matched_tok.add(i)
    rows: list[dict] = []
    for ci, cue in enumerate(cues):
        own = [k for k, (_t, c) in enumerate(cue_tok) if c == ci]
        hit = matched.get(ci, {})
        row = {
            "cue": ci + 1,
            "id": cue.id,
            "start": round(cue.start, 3),
            "end": round(cue.end, 3),
            "text": cue.text.replace("\n", " "),
            "tokens": len(own),
            "matched": len(hit),
            "fuzzy": sum(1 for exact in hit.values() if not exact),
            "first_token_matched": bool(own) and own[0] in matched_tok,
            "last_token_matched": bool(own) and own[-1] in matched_tok,
            "transcript": "",
            "word_start": None,
            "word_end": None,
            "start_error_s": None,
            "end_error_s": None,
            "status": "matched" if hit else "unmatched",
        }
        if hit:
            ws = [words[j] for j in sorted(hit)]
            first, last = min(w.start for w in ws), max(w.end for w in ws)
            row.update(
                transcript=" ".join(w.text.strip() for w in ws),
                word_start=round(first, 3),
                word_end=round(last, 3),
                start_error_s=round(first - cue.start, 3),
                end_error_s=round(last - cue.end, 3),
            )
        rows.append(row)
    return rows


def summarise(rows: Sequence[dict]) -> dict:
    """Counts and errors over :func:`align_cues` rows (errors over matched cues; ``None`` if none)."""
    done = [r for r in rows if r["status"] == "matched"]

    def stat(key: str, fn) -> float | None:
        vals = [r[key] for r in done]
        return round(fn(vals), 3) if vals else None

    return {
        "cues": len(rows),
        "matched": len(done),
        "unmatched": [r["cue"] for r in rows if r["status"] != "matched"],
        "start_mae_s": stat("start_error_s", lambda v: sum(abs(x) for x in v) / len(v)),
        "end_mae_s": stat("end_error_s", lambda v: sum(abs(x) for x in v) / len(v)),
        "start_max_s": stat("start_error_s", lambda v: max(abs(x) for x in v)),
        "end_max_s": stat("end_error_s", lambda v: max(abs(x) for x in v)),
        "start_bias_s": stat("start_error_s", lambda v: sum(v) / len(v)),
        "end_bias_s": stat("end_error_s", lambda v: sum(v) / len(v)),
    }


# ------------------------------------------------------------------------------------------ evaluation


def evaluate_captions(data_dir: str | os.PathLike, transcriber=None, settings: Settings | None = None) -> dict:
    """Transcribe ``video/friday.mp4`` of the data folder the way the pipeline does and compare the
    words' timing with ``video/friday.vtt``.

    ``transcriber`` defaults to the pipeline's (:meth:`ace.pipeline.ShowPipeline.transcriber` with
    ``settings``, default :func:`~ace.config.get_settings`). Returns ``{"file", "video", "vtt",
    "rows", "words", "summary"}``: the rows of :func:`align_cues`, the transcript's words, and the summary
    of :func:`summarise` plus ``model``, ``beam_size`` and ``seconds`` (transcription wall time).
    Raises :class:`~ace.errors.InputError` when the recording or its captions are missing.
    """
    from ace import media

    settings = settings or get_settings()
    data_dir = Path(data_dir)
    video, vtt = data_dir / FRIDAY_VIDEO, data_dir / FRIDAY_VTT
    for p in (video, vtt):
        if not p.is_file():
            raise InputError(f"caption evaluation needs {p} (the public recordings folder, ACE_EVAL_DATA)")
    cues = parse_vtt(vtt)
    if transcriber is None:
        from ace.pipeline import ShowPipeline

        transcriber = ShowPipeline(settings).transcriber()
    audio = media.read_audio(video, sr=16000)
    t0 = time.perf_counter()
    sentences = transcriber.transcribe(audio, 0.0)
    seconds = time.perf_counter() - t0
    words = [w for s in sentences for w in s.words]
    rows = align_cues(cues, words)
    summary = summarise(rows) | {"model": settings.model, "beam_size": settings.beam_size, "seconds": round(seconds, 2)}
    log.info("captions: %d of %d cues matched, start MAE %s s, end MAE %s s",
             summary["matched"], summary["cues"], summary["start_mae_s"], summary["end_mae_s"])
    return {
        "file": vtt.name,
        "video": str(video),
        "vtt": str(vtt),
        "rows": rows,
        "words": [{"start": w.start, "end": w.end, "text": w.text} for w in words],
        "summary": summary,
    }
