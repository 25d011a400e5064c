"""Burned-in captions for short clips: an Advanced SubStation Alpha (ASS) file per clip, drawn onto
the video by ffmpeg's ``ass`` filter (libass).

Why ASS rather than the clip's SRT: burned-in captions for short vertical videos need a style (bold
sans, white with a dark outline, placed clear of the platform's buttons and caption text) and a word
highlight, and SRT carries neither. ASS does, libass renders it with real font shaping (CJK
included, with fontconfig fallback for missing glyphs), and ffmpeg has it built in.

Layout (:func:`caption_style`): sizes are in output pixels (``PlayResX``/``PlayResY`` are the video's
size). The font size is :data:`FONT_SCALE` of the shorter side (70 px on 1080x1920 and 1080x1080,
47 px on 1280x720; :data:`CJK_SCALE` times that in the CJK style). Captions sit bottom-centre, with
side margins of :data:`MARGIN_SIDE` of the width and a bottom margin that depends on the shape:
:data:`MARGIN_VERTICAL` of the height for tall (9:16-like) videos, where the platform's own caption,
buttons and progress bar cover the bottom fifth, less for square and landscape ones. A caption holds
at most :data:`~ace.clipper.MAX_LINES` short lines of as many characters as fit the width at that
size (21 Latin or 12 CJK characters on 1080 px wide videos).

Word highlight: when the transcript carries word timings, each caption becomes consecutive Dialogue
events, one per spoken word, each showing the whole caption with the current word in
:data:`HIGHLIGHT_COLOUR`, from the word's start to the next word's start (the last one to the
caption's end). Karaoke tags (``\\k``) would colour every word already spoken, not just the current
one; separate events highlight exactly one word, keep the layout still, and look the same in every
ASS renderer. Without word timings a caption is one event.

Captions are grouped like the clip's SRT cues (:func:`ace.clipper.caption_cues`: a pause or a long
cue starts a new caption; times are shifted to the clip's start and clamped to it; captions do not
overlap). Captions containing CJK characters use the ``CJK`` style (:data:`CJK_FONT`), others the
``Default`` style (:data:`LATIN_FONT`); libass falls back through fontconfig for missing glyphs.
"""

from __future__ import annotations

import operator
import os
import re
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ace.clipper import (
    MAX_CUE_SECONDS,
    MAX_LINES,
    MAX_PAUSE,
    MIN_CUE_SECONDS,
    _is_cjk,
    _join,
    _wrap,
)
from ace.types import Sentence, Word

__all__ = [
    "CJK_FONT",
    "HIGHLIGHT_COLOUR",
    "LATIN_FONT",
    "CaptionStyle",
    "burn_filter",
    "caption_style",
    "cjk_font_available",
    "escape",
    "font_for_text",
    "write_ass",
]

#: Font of captions in Latin (and other space-separated) scripts.
LATIN_FONT = "DejaVu Sans"
#: Font of captions containing Chinese, Japanese or Korean characters (Debian: fonts-noto-cjk).
CJK_FONT = "Noto Sans CJK SC"
#: Colour of the word being spoken (ASS ``&HBBGGRR&``: yellow).
HIGHLIGHT_COLOUR = "&H00FFFF&"
#: Colour of the other words (white).
TEXT_COLOUR = "&HFFFFFF&"
#: Font size as a share of the video's shorter side.
FONT_SCALE = 0.065
#: The CJK style's font size relative to the Latin one: ASS sizes a font by its ascent plus descent,
#: which is larger in CJK fonts, so the same size draws visibly smaller glyphs.
CJK_SCALE = 1.2
#: Left and right margins as a share of the width.
MARGIN_SIDE = 0.07
#: Bottom margin as a share of the height, for tall (9:16-like), square-ish and landscape videos.
MARGIN_VERTICAL, MARGIN_SQUARE, MARGIN_LANDSCAPE = 0.20, 0.12, 0.07
#: Average advance of a bold Latin character and of a CJK character, in their styles' font sizes,
#: with some room to spare.
LATIN_ADVANCE, CJK_ADVANCE = 0.62, 0.85
#: Bounds on characters per line (Latin, CJK).
LATIN_CHARS, CJK_CHARS = (12, 32), (6, 16)

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class CaptionStyle:
    """Caption layout for one video size, in output pixels."""

    width: int
    height: int
    font_size: int
    cjk_font_size: int
    margin_side: int
    margin_bottom: int
    outline: float
    shadow: float
    latin_chars: int
    cjk_chars: int

    def chars_per_line(self, text: str) -> int:
        """Line length limit for ``text``: the CJK one when it holds any CJK character."""
        return self.cjk_chars if any(_is_cjk(c) for c in text) else self.latin_chars


def caption_style(width: int, height: int) -> CaptionStyle:
    """The caption layout for a ``width`` x ``height`` video (see the module docstring)."""
    try:
        width, height = operator.index(width), operator.index(height)
    except TypeError:
        raise ValueError(f"bad video size {width!r}x{height!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"bad video size {width}x{height}")
    font = max(8, round(min(width, height) * FONT_SCALE))
    cjk_font = round(font * CJK_SCALE)
    side = round(width * MARGIN_SIDE)
    aspect = height / width
    share = MARGIN_VERTICAL if aspect >= 1.5 else MARGIN_SQUARE if aspect >= 0.8 else MARGIN_LANDSCAPE
    usable = width - 2 * side

    def clamp(n: float, bounds: tuple[int, int]) -> int:
        return min(max(int(n), bounds[0]), bounds[1])

    return CaptionStyle(
        width=width, height=height, font_size=font, cjk_font_size=cjk_font,
        margin_side=side, margin_bottom=round(height * share),
        outline=round(max(1.0, font * 0.08), 1), shadow=round(max(0.5, font * 0.03), 1),
        latin_chars=clamp(usable / (font * LATIN_ADVANCE), LATIN_CHARS),
        cjk_chars=clamp(usable / (cjk_font * CJK_ADVANCE), CJK_CHARS),
    )


def font_for_text(text: str) -> str:
    """The font a caption of ``text`` is set in: :data:`CJK_FONT` when it holds CJK characters."""
    return CJK_FONT if any(_is_cjk(c) for c in text) else LATIN_FONT


def cjk_font_available() -> bool:
    """Whether fontconfig knows a font covering Chinese (``fc-list :lang=zh``); without one, CJK
    captions render as empty boxes."""
    try:
        out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def escape(text: str) -> str:
    """``text`` as literal ASS dialogue text: braces escaped (``\\{``, ``\\}``, as libass reads
    them), a backslash followed by a word joiner (U+2060, invisible) so it never starts an ASS escape
    such as ``\\N``, and line breaks turned into spaces."""
    out = []
    for ch in re.sub(r"\r\n|[\r\n]", " ", text):
        out.append("\\\u2060" if ch == "\\" else "\\" + ch if ch in "{}" else ch)
    return "".join(out)


def burn_filter(ass_name: str) -> str:
    """The ffmpeg video filter that burns the ASS file ``ass_name`` into the picture.

    ``ass_name`` must be a plain file name of ``[A-Za-z0-9._-]`` (no folder): run ffmpeg with its
    working directory set to the folder holding the file, so the name needs no quoting in the
    filter graph. Raises :class:`ValueError` for anything else.
    """
    if not _PLAIN_NAME.fullmatch(ass_name or "") or set(ass_name) == {"."}:
        raise ValueError(f"ASS file name must be a plain name of [A-Za-z0-9._-], got {ass_name!r}")
    return f"ass=filename={ass_name}"


# ------------------------------------------------------------------------------------------- captions


@dataclass(slots=True)
class _Caption:
    start: float  # seconds from the clip's start
    end: float
    lines: list[str]
    words: list[tuple[float, int]]  # each timed word's start (clip time) and its non-space characters


def _solid(text: str) -> int:
    return sum(not c.isspace() for c in text)


def _fits(text: str, style: CaptionStyle) -> bool:
    return len(_wrap(text, style.chars_per_line(text))) <= MAX_LINES


def _word_groups(words: Sequence[Word], style: CaptionStyle) -> list[list[Word]]:
    """Timed words grouped into captions that fit :data:`MAX_LINES` short lines."""
    groups: list[list[Word]] = []
    for w in words:
        if not w.text.strip():
            continue
        cur = groups[-1] if groups else None
        if cur and not (
            w.start - cur[-1].end > MAX_PAUSE
            or w.end - cur[0].start > MAX_CUE_SECONDS
            or not _fits(_join([x.text for x in cur] + [w.text]), style)
        ):
            cur.append(w)
        else:
            groups.append([w])
    return groups


def _share(a: float, b: float, lines: Sequence[str]) -> list[tuple[float, float, list[str]]]:
    """``lines`` split into captions of :data:`MAX_LINES` lines, ``[a, b]`` shared by their lengths."""
    total = sum(len(line) for line in lines)
    span, out, done = max(0.0, b - a), [], 0
    for i in range(0, len(lines), MAX_LINES):
        group = list(lines[i:i + MAX_LINES])
        t = a + span * done / total
        done += sum(len(line) for line in group)
        out.append((t, a + span * done / total, group))
    return out


def _captions(sentences: Sequence[Sentence], start: float, end: float, style: CaptionStyle) -> list[_Caption]:
    """Captions for the clip ``[start, end]``, in clip time: sorted, not overlapping, inside it."""
    length = end - start
    if not length > 0:
        return []

    def clip(t: float) -> float:
        return min(max(t - start, 0.0), length)

    raw: list[_Caption] = []
    for sentence in sorted(sentences, key=lambda x: (x.start, x.end)):
        if sentence.end < start or sentence.start > end:
            continue
        if sentence.words:
            inside = [w for w in sentence.words if start <= (w.start + w.end) / 2 <= end]
            for group in _word_groups(inside, style):
                text = _join([w.text for w in group])
                lines = _wrap(text, style.chars_per_line(text))
                a, b = group[0].start, max(group[-1].end, group[0].start)
                if len(lines) <= MAX_LINES:
                    raw.append(_Caption(clip(a), clip(b), lines, [(clip(w.start), _solid(w.text)) for w in group]))
                else:  # a single word too long for one caption
                    raw.extend(_Caption(clip(x), clip(y), part, []) for x, y, part in _share(a, b, lines))
        else:
            text = re.sub(r"\s+", " ", sentence.text).strip()
            for a, b, lines in _share(sentence.start, sentence.end, _wrap(text, style.chars_per_line(text))):
                if start <= (a + b) / 2 <= end:
                    raw.append(_Caption(clip(a), clip(b), lines, []))
    raw.sort(key=lambda c: c.start)

    # no overlaps: a caption ends where the next begins; captions starting together share the time
    out: list[_Caption] = []
    for cap in raw:
        cap.end = max(cap.end, cap.start)
        if out:
            prev = out[-1]
            if cap.start < prev.start + 1e-3:
                mid = prev.start + (max(prev.end, cap.end) - prev.start) / 2
                prev.end, cap.start, cap.end = mid, mid, max(cap.end, mid)
            elif prev.end > cap.start:
                prev.end = cap.start
        out.append(cap)
    for i, cap in enumerate(out):
        limit = out[i + 1].start if i + 1 < len(out) else length
        if cap.end - cap.start < MIN_CUE_SECONDS:
            cap.end = max(cap.end, min(cap.start + MIN_CUE_SECONDS, limit))
    return out


def _render(lines: Sequence[str], span: tuple[int, int] | None) -> str:
    """Caption lines as ASS text, the non-space characters ``span[0]`` to ``span[1]`` highlighted."""
    out, n = [], 0
    for line in lines:
        buf = ""
        for ch in line:
            if ch.isspace():
                buf += " "
                continue
            if span and n == span[0]:
                buf += "{\\1c" + HIGHLIGHT_COLOUR + "}"
            buf += escape(ch)
            n += 1
            if span and n == span[1]:
                buf += "{\\1c" + TEXT_COLOUR + "}"
        out.append(buf)
    return "\\N".join(out)


def _ass_time(cs: int) -> str:
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6000)
    s, cs = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{cs:02d}"


def _header(style: CaptionStyle) -> str:
    fmt = ("Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
           "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
           "Alignment, MarginL, MarginR, MarginV, Encoding")
    s = style

    def line(name: str, font: str, size: int) -> str:
        return (f"Style: {name},{font},{size},&H00FFFFFF,&H000000FF,&H00000000,&H80000000,-1,0,0,0,"
                f"100,100,0,0,1,{s.outline:g},{s.shadow:g},2,{s.margin_side},{s.margin_side},{s.margin_bottom},1")

    return (
        "[Script Info]\n; captions written by ACE\nScriptType: v4.00+\n"
        f"PlayResX: {s.width}\nPlayResY: {s.height}\nWrapStyle: 0\nScaledBorderAndShadow: yes\n"
        "YCbCr Matrix: None\n\n"
        f"[V4+ Styles]\nFormat: {fmt}\n{line('Default', LATIN_FONT, s.font_size)}\n"
        f"{line('CJK', CJK_FONT, s.cjk_font_size)}\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
    )


def write_ass(sentences: Sequence[Sentence], start: float, end: float, path: str | os.PathLike,
              width: int, height: int, *, highlight: bool = True) -> int:
    """Write ASS captions for the clip ``[start, end]`` of the source (times from the clip's start)
    for a ``width`` x ``height`` video to ``path`` as UTF-8 (under a temporary name, then renamed).

    With ``highlight`` and word timings, each caption is one event per word with that word in
    :data:`HIGHLIGHT_COLOUR`; otherwise one event per caption. A clip without speech gives a valid
    file with no events. Returns the number of Dialogue events written.
    """
    style = caption_style(width, height)
    events: list[str] = []
    for cap in _captions(sentences, start, end, style):
        a, b = round(cap.start * 100), round(cap.end * 100)
        if b <= a:
            continue
        name = "CJK" if font_for_text("".join(cap.lines)) == CJK_FONT else "Default"
        pieces: list[tuple[int, int, tuple[int, int] | None]] = []
        if highlight and cap.words:
            starts, spans, n = [], [], 0
            for t, size in cap.words:
                starts.append(min(max(round(t * 100), starts[-1] if starts else a), b))
                spans.append((n, n + size))
                n += size
            starts[0] = a
            for i, s in enumerate(starts):
                e = starts[i + 1] if i + 1 < len(starts) else b
                if e > s and spans[i][1] > spans[i][0]:
                    pieces.append((s, e, spans[i]))
        else:
            pieces.append((a, b, None))
        for s, e, span in pieces:
            events.append(f"Dialogue: 0,{_ass_time(s)},{_ass_time(e)},{name},,0,0,0,,{_render(cap.lines, span)}\n")

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(_header(style) + "".join(events), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(events)
