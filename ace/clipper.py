"""Clips: where to cut a moment (:func:`plan_clip`, pure) and the files that make a clip
(:func:`render_clip`: the MP4, its SRT captions and a JPEG thumbnail).

Two cutting modes, by name:

* ``"exact"`` — frame-accurate smart cut (:func:`ace.media.cut_exact`): whole GOPs are copied, only the
  edges are re-encoded. A 30 s 720p clip takes a second or two.
* ``"fast"`` — stream copy (:func:`ace.media.cut_fast`): a blink, but the clip starts at the keyframe at
  or before the moment's start (up to one GOP early).

Files are written under temporary names in the output folder and renamed into place, the ``.mp4``
last: a crash never leaves a half-written file under a final name, and once ``<moment_id>.mp4``
exists its ``.srt`` and ``.jpg`` are complete. Rendering the same plan again replaces the files
atomically (readers of the old files keep reading them).

Captions: each sentence overlapping the clip becomes one or more cues of at most :data:`MAX_LINES`
lines of :data:`MAX_CHARS` characters, timed by the words' own timings when the transcript has them
(else spread over the sentence by length), shifted to the clip's actual start and clamped to it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from ace import media
from ace.errors import NoStreamError
from ace.types import Clip, ClipPlan, MediaInfo, Moment, Sentence, Word

log = logging.getLogger("ace.clipper")

__all__ = ["MODES", "MAX_CHARS", "MAX_LINES", "plan_clip", "render_clip", "write_srt", "caption_cues"]

#: Cutting modes by name (see the module docstring).
MODES: tuple[str, ...] = ("exact", "fast")

#: Longest caption line, in characters (the usual broadcast subtitle limit).
MAX_CHARS = 42
#: Lines per caption cue.
MAX_LINES = 2
#: A pause between words longer than this starts a new cue (seconds).
MAX_PAUSE = 1.2
#: Longest cue (seconds) when words carry timings.
MAX_CUE_SECONDS = 7.0
#: Shortest cue (seconds): a zero-length word still shows this long when there is room.
MIN_CUE_SECONDS = 0.3


# ------------------------------------------------------------------------------------------------- plan


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown clip mode {mode!r}; choose one of: {', '.join(MODES)}")
    return mode


def plan_clip(moment: Moment, mode: str = "exact", info: MediaInfo | None = None) -> ClipPlan:
    """Where to cut ``moment``: its interval clamped to ``[0, info.duration]`` (to ``[0, end]``
    without ``info``). Pure: nothing is read.

    Raises ValueError for an unknown ``mode`` (valid: ``"exact"``, ``"fast"``) and for a moment
    that lies entirely outside the media.
    """
    _check_mode(mode)
    start, end = float(moment.start), float(moment.end)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"moment {moment.id} has a non-finite interval {start}..{end}")
    start = max(0.0, start)
    if info is not None and info.duration > 0:
        end = min(end, info.duration)
    if end <= start:
        limit = f" of media lasting {info.duration:.3f}s" if info is not None else ""
        raise ValueError(f"moment {moment.id} ({moment.start:.3f}-{moment.end:.3f}s) is empty or outside{limit}")
    return ClipPlan(moment_id=moment.id, start=start, end=end, mode=mode)


# ----------------------------------------------------------------------------------------------- render


def render_clip(
    src: str,
    plan: ClipPlan,
    out_dir: Path,
    sentences: Sequence[Sentence] = (),
    thumb_at: float | None = None,
    name: str | None = None,
    *,
    fmt: str = "source",
    burn_captions: bool = False,
) -> Clip:
    """Cut ``plan`` from ``src`` into ``out_dir/<moment_id>.mp4`` (``<name>.mp4`` when given: a
    plain file name without a folder) with ``.srt`` captions from
    ``sentences`` (an empty file when nobody speaks) and a ``.jpg`` thumbnail of the source frame at
    ``thumb_at`` (default: the middle of the clip; none for audio-only sources).

    ``fmt`` ``"vertical"`` or ``"square"`` reframes the cut around its subject and
    ``burn_captions`` burns word-timed captions into the picture (:func:`ace.reframe.reframe_clip`);
    the thumbnail then shows the reframed picture.

    Returns the :class:`Clip` with the interval actually cut (``exact`` snaps to frames, ``fast``
    starts at a keyframe) and the wall time spent in ``seconds``. ffmpeg failures raise
    :class:`~ace.errors.MediaError`; nothing is left under the final names then.
    """
    began = time.perf_counter()
    _check_mode(plan.mode)
    reshape = fmt != "source" or burn_captions
    if reshape:
        from ace.reframe import check_format

        check_format(fmt)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or plan.moment_id
    if not stem or stem.startswith(".") or "/" in stem or "\\" in stem or "\0" in stem:
        raise ValueError(f"a clip's file name must be a plain name, not {stem!r}")
    final = {ext: out_dir / f"{stem}{ext}" for ext in (".mp4", ".srt", ".jpg")}
    tag = f".{plan.moment_id}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
    tmp = {ext: out_dir / f"{tag}{ext}" for ext in final}
    if reshape:
        tmp[".cut.mp4"] = out_dir / f"{tag}.cut.mp4"
    try:
        cut = media.cut_exact if plan.mode == "exact" else media.cut_fast
        if reshape:
            from ace.reframe import reframe_clip

            start, end = cut(src, plan.start, plan.end, tmp[".cut.mp4"])
            reframe_clip(tmp[".cut.mp4"], tmp[".mp4"], fmt, sentences, clip_start=start, burn_captions=burn_captions)
        else:
            start, end = cut(src, plan.start, plan.end, tmp[".mp4"])
        write_srt(sentences, start, end, tmp[".srt"])
        at = (start + end) / 2 if thumb_at is None else min(max(thumb_at, start), end)
        try:
            if reshape:  # the picture as it will be posted
                media.thumbnail(tmp[".mp4"], at - start, tmp[".jpg"])
            else:
                media.thumbnail(src, at, tmp[".jpg"])
            has_thumb = True
        except NoStreamError:
            has_thumb = False
        if has_thumb:
            os.replace(tmp[".jpg"], final[".jpg"])
        else:
            final[".jpg"].unlink(missing_ok=True)  # a stale thumbnail from an earlier render
        os.replace(tmp[".srt"], final[".srt"])
        os.replace(tmp[".mp4"], final[".mp4"])
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    seconds = time.perf_counter() - began
    log.info("clip %s (%s, %s%s) %.3f-%.3f written in %.2fs", plan.moment_id, plan.mode, fmt,
             ", captions burned" if burn_captions else "", start, end, seconds)
    return Clip(
        moment_id=plan.moment_id,
        path=str(final[".mp4"]),
        start=start,
        end=end,
        mode=plan.mode,
        srt_path=str(final[".srt"]),
        thumb_path=str(final[".jpg"]) if has_thumb else "",
        seconds=seconds,
        format=fmt,
        burned=burn_captions,
    )


# --------------------------------------------------------------------------------------------- captions


def _is_cjk(ch: str) -> bool:
    """Scripts written without spaces between words (CJK ideographs, kana, hangul, fullwidth forms)."""
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF
            or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x2FA1F)


def _join(pieces: Sequence[str]) -> str:
    """Join word texts: whisper's words carry their own leading space; words given without one get a
    space between letters of space-separated scripts, none between CJK characters."""
    out = ""
    for piece in pieces:
        if not piece:
            continue
        if (out and not out[-1].isspace() and not piece[0].isspace() and piece[0].isalnum()
                and not _is_cjk(piece[0]) and not _is_cjk(out[-1])):
            out += " "
        out += piece
    return re.sub(r"\s+", " ", out).strip()


def _tokens(text: str) -> list[tuple[str, bool]]:
    """Line-breaking units with whether a space precedes them in the text: words, and single
    characters inside runs of CJK text (which may break anywhere)."""
    out: list[tuple[str, bool]] = []
    for word in text.split():
        run, space = "", True
        for ch in word:
            if _is_cjk(ch):
                if run:
                    out.append((run, space))
                    run, space = "", False
                out.append((ch, space))
                space = False
            else:
                run += ch
        if run:
            out.append((run, space))
    return out


def _wrap(text: str, width: int = MAX_CHARS) -> list[str]:
    """Greedy line breaking at ``width`` characters; a token longer than a line is split."""
    lines: list[str] = []
    line = ""
    for token, space in _tokens(text):
        while len(token) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(token[:width])
            token, space = token[width:], False
        if not token:
            continue
        sep = " " if line and space else ""
        if len(line) + len(sep) + len(token) <= width:
            line += sep + token
        else:
            lines.append(line)
            line = token
    if line:
        lines.append(line)
    return lines


def _fits(text: str) -> bool:
    return len(_wrap(text)) <= MAX_LINES


def _word_chunks(words: Sequence[Word]) -> list[tuple[float, float, str]]:
    """Group timed words into cues that fit :data:`MAX_LINES` lines."""
    chunks: list[tuple[float, float, str]] = []
    cur: list[Word] = []

    def flush() -> None:
        if cur:
            text = _join([w.text for w in cur])
            if text:
                chunks.append((cur[0].start, max(cur[-1].end, cur[0].start), text))

    for w in words:
        if not w.text.strip():
            continue
        if cur and (
            w.start - cur[-1].end > MAX_PAUSE
            or w.end - cur[0].start > MAX_CUE_SECONDS
            or not _fits(_join([x.text for x in cur] + [w.text]))
        ):
            flush()
            cur = []
        cur.append(w)
    flush()
    return chunks


def _text_chunks(sentence: Sentence) -> list[tuple[float, float, str]]:
    """Split an untimed sentence into cues of :data:`MAX_LINES` lines, timed by their share of the
    characters."""
    lines = _wrap(re.sub(r"\s+", " ", sentence.text).strip())
    if not lines:
        return []
    groups = [lines[i:i + MAX_LINES] for i in range(0, len(lines), MAX_LINES)]
    total = sum(len(line) for line in lines)
    span = max(0.0, sentence.end - sentence.start)
    out, done = [], 0
    for group in groups:
        n = sum(len(line) for line in group)
        a = sentence.start + span * done / total
        done += n
        b = sentence.start + span * done / total
        out.append((a, b, "\n".join(group)))
    return out


def caption_cues(sentences: Sequence[Sentence], start: float, end: float) -> list[tuple[float, float, str]]:
    """Caption cues ``(start, end, text)`` for the clip ``[start, end]`` of the source, in seconds
    from the clip's start: sorted, not overlapping, non-empty, inside ``[0, end - start]``, each at
    most :data:`MAX_LINES` lines of :data:`MAX_CHARS` characters (lines joined by ``\\n``).

    Words (or untimed pieces of a sentence) whose middle falls outside the clip are left out.
    """
    length = end - start
    if not length > 0:
        return []
    raw: list[tuple[float, float, str]] = []
    for sentence in sorted(sentences, key=lambda x: (x.start, x.end)):
        if sentence.end < start or sentence.start > end:
            continue
        if sentence.words:
            words = [w for w in sentence.words if start <= (w.start + w.end) / 2 <= end]
            pieces = [(a, b, "\n".join(_wrap(t))) for a, b, t in _word_chunks(words)]
        else:
            pieces = [c for c in _text_chunks(sentence) if start <= (c[0] + c[1]) / 2 <= end]
        for a, b, text in pieces:
            a, b = min(max(a - start, 0.0), length), min(max(b - start, 0.0), length)
            if text.strip():
                raw.append((a, max(a, b), text))
    raw.sort(key=lambda c: c[0])

    # no overlaps: a cue ends where the next begins; cues starting together share the time
    timed: list[tuple[float, float, str]] = []
    for a, b, text in raw:
        if timed:
            pa, pb, pt = timed[-1]
            if a < pa + 1e-3:
                mid = pa + (max(pb, b) - pa) / 2
                timed[-1] = (pa, mid, pt)
                a, b = mid, max(b, mid)
            elif pb > a:
                timed[-1] = (pa, a, pt)
        timed.append((a, b, text))
    cues: list[tuple[float, float, str]] = []
    for i, (a, b, text) in enumerate(timed):
        limit = timed[i + 1][0] if i + 1 < len(timed) else length
        if b - a < MIN_CUE_SECONDS:
            b = max(b, min(a + MIN_CUE_SECONDS, limit))
        if round(b * 1000) > round(a * 1000):
            cues.append((a, b, text))
    return cues


def _srt_time(t: float) -> str:
    ms = max(0, int(round(t * 1000)))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(sentences: Sequence[Sentence], start: float, end: float, path: str | os.PathLike) -> int:
    """Write SubRip captions for the clip ``[start, end]`` of the source (see :func:`caption_cues`)
    to ``path`` as UTF-8; an empty file when there is no speech. Written under a temporary name and
    renamed, so ``path`` is always complete. Returns the number of cues."""
    cues = caption_cues(sentences, start, end)
    body = "".join(
        f"{i}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n\n" for i, (a, b, text) in enumerate(cues, 1)
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(body, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(cues)
