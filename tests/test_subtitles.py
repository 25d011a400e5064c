"""ace.subtitles: ASS captions with word highlight (pure), and burning them in with real ffmpeg."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ace.clipper import MAX_LINES
from ace.subtitles import (
    CJK_FONT,
    HIGHLIGHT_COLOUR,
    LATIN_FONT,
    burn_filter,
    caption_style,
    cjk_font_available,
    escape,
    font_for_text,
    write_ass,
)
from ace.types import Sentence, Word
from tests.media_factory import ffmpeg_bin

DIALOGUE = re.compile(r"Dialogue: 0,(\d+):(\d\d):(\d\d)\.(\d\d),(\d+):(\d\d):(\d\d)\.(\d\d),(\w+),,0,0,0,,(.*)")
HL_ON, HL_OFF = "{\\1c" + HIGHLIGHT_COLOUR + "}", "{\\1c&HFFFFFF&}"


def words(text: str, start: float, step: float = 0.4, dur: float = 0.3) -> tuple[Word, ...]:
    """Whisper-like words (leading spaces) every ``step`` seconds."""
    return tuple(Word(start + i * step, start + i * step + dur, " " + w) for i, w in enumerate(text.split()))


def said(text: str, start: float, **kw) -> Sentence:
    ws = words(text, start, **kw)
    return Sentence(ws[0].start, ws[-1].end, text, ws)


def parse_ass(path: Path) -> list[tuple[float, float, str, str]]:
    """The Dialogue events of an ASS file: (start, end, style, raw text)."""
    body = path.read_text(encoding="utf-8")
    assert body.startswith("[Script Info]\n")
    assert "\n[V4+ Styles]\n" in body and "\n[Events]\nFormat: Layer, Start, End, Style," in body
    out = []
    for line in body.split("[Events]\n", 1)[1].splitlines()[1:]:
        m = DIALOGUE.fullmatch(line)
        assert m, f"not a well-formed event: {line!r}"
        g = m.groups()
        a = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3]) / 100
        b = int(g[4]) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7]) / 100
        out.append((a, b, g[8], g[9]))
    return out


def plain(raw: str) -> str:
    """What an event shows: our colour tags dropped, escapes undone, ``\\N`` as a newline."""
    text = raw.replace(HL_ON, "").replace(HL_OFF, "")
    assert not re.search(r"(?<!\\)[{}]", text), "no unescaped braces besides our own tags"
    return text.replace("\\N", "\n").replace("\\{", "{").replace("\\}", "}").replace("\\\u2060", "\\")


def highlighted(raw: str) -> str:
    m = re.search(re.escape(HL_ON) + "(.*?)" + re.escape(HL_OFF), raw)
    return m.group(1) if m else ""


def check_events(events, length: float, width: int = 1080, height: int = 1920) -> None:
    style = caption_style(width, height)
    last = 0.0
    for a, b, name, raw in events:
        assert 0 <= a < b <= length + 0.006
        assert a >= last - 1e-6, "events do not overlap"
        last = b
        assert raw.count(HL_ON) == raw.count(HL_OFF) <= 1 and (HL_ON not in raw or highlighted(raw))
        lines = plain(raw).split("\n")
        assert 1 <= len(lines) <= MAX_LINES
        limit = style.cjk_chars if name == "CJK" else style.latin_chars
        assert all(0 < len(line) <= limit and line == line.strip() for line in lines)


# ------------------------------------------------------------------------------------------------ unit


def test_one_event_per_word_from_its_start_to_the_next(tmp_path):
    path = tmp_path / "c.ass"
    s = said("grab it now before it is gone", 100.0)  # 100.0, 100.4, ... 102.4 (+0.3)
    n = write_ass([s], 99.0, 110.0, path, 1080, 1920)
    events = parse_ass(path)
    assert n == len(events) == 7
    check_events(events, 11.0)
    assert [a for a, _, _, _ in events] == pytest.approx([1.0 + 0.4 * i for i in range(7)])
    assert [b for _, b, _, _ in events] == pytest.approx([1.4 + 0.4 * i for i in range(6)] + [3.7])
    assert [highlighted(raw) for *_, raw in events] == ["grab", "it", "now", "before", "it", "is", "gone"]
    shown = {plain(raw) for *_, raw in events}
    assert len(shown) == 1 and shown.pop().replace("\n", " ") == "grab it now before it is gone"
    assert all(name == "Default" for _, _, name, _ in events)


def test_events_are_clamped_to_the_clip(tmp_path):
    path = tmp_path / "c.ass"
    ws = words("one two three four five six", 9.0, step=1.0, dur=0.9)  # 9.0 .. 14.9
    write_ass([Sentence(9.0, 14.9, "", ws)], 10.4, 13.5, path, 1080, 1920)
    events = parse_ass(path)
    check_events(events, 3.1)
    # "one" and "six" lie outside; "two" and "five" are mostly inside and clamped to the clip
    assert [highlighted(raw) for *_, raw in events] == ["two", "three", "four", "five"]
    assert events[0][0] == 0.0 and events[-1][1] == pytest.approx(3.1)
    assert [a for a, *_ in events[1:]] == pytest.approx([0.6, 1.6, 2.6])


def test_captions_hold_at_most_two_short_lines(tmp_path):
    text = ("okay everyone the link is up right now three two one go go go this flash sale "
            "is only for the next ten minutes so grab it before it is sold out")
    zh = "今天我们的秒杀活动马上开始大家准备好了吗三二一上链接抢购吧库存只有一百台赶快下单" * 2
    path = tmp_path / "c.ass"
    for sentences in ([said(text, 0.0, step=0.3)], [Sentence(0.0, 20.0, text)], [Sentence(0.0, 20.0, zh)]):
        write_ass(sentences, 0.0, 30.0, path, 1080, 1920)
        events = parse_ass(path)
        check_events(events, 30.0)
        captions = list(dict.fromkeys(plain(raw) for *_, raw in events))
        assert len(captions) >= 3
        src = sentences[0].text
        if " " in src:
            assert " ".join(c.replace("\n", " ") for c in captions) == src, "every word, in order, once"
        else:
            assert "".join(c.replace("\n", "") for c in captions) == src


def test_a_word_too_long_for_one_caption_is_split(tmp_path):
    path = tmp_path / "c.ass"
    url = "https://example.com/" + "x" * 60
    n = write_ass([Sentence(1.0, 3.0, url, (Word(1.0, 3.0, " " + url),))], 0.0, 5.0, path, 1080, 1920)
    events = parse_ass(path)
    assert n == len(events) >= 2
    check_events(events, 5.0)
    assert "".join(plain(raw).replace("\n", "") for *_, raw in events) == url
    assert events[0][0] == 1.0 and events[-1][1] == 3.0


def test_cjk_captions_use_the_cjk_style(tmp_path):
    path = tmp_path / "c.ass"
    zh = [Word(1.0 + 0.3 * i, 1.25 + 0.3 * i, ch) for i, ch in enumerate("大家好欢迎")]
    n = write_ass([Sentence(1.0, 2.5, "大家好欢迎", tuple(zh)), Sentence(4.0, 5.0, "hello there")], 0.0, 6.0,
                  path, 1080, 1920)
    events = parse_ass(path)
    assert n == 6
    assert [name for _, _, name, _ in events] == ["CJK"] * 5 + ["Default"]
    assert [highlighted(raw) for *_, raw in events[:5]] == list("大家好欢迎")
    assert plain(events[0][3]) == "大家好欢迎", "no spaces between CJK characters"
    body = path.read_text(encoding="utf-8")
    assert f"Style: CJK,{CJK_FONT}," in body and f"Style: Default,{LATIN_FONT}," in body
    assert font_for_text("价格 99 元") == CJK_FONT and font_for_text("price 99") == LATIN_FONT


def test_ass_specials_are_escaped(tmp_path):
    path = tmp_path / "c.ass"
    text = r"{\an8}look C:\new {x} \N"
    write_ass([Sentence(0.0, 2.0, text)], 0.0, 3.0, path, 1080, 1920)
    (event,) = parse_ass(path)
    shown = plain(event[3])
    assert shown.replace("\n", " ") == text
    assert event[3].count("\\N") == shown.count("\n"), "only real line breaks read as \\N"
    assert "{\\an8}" not in event[3] and "\\\u2060n" in event[3] and "\\\u2060N" in event[3]
    assert escape("a{b}c\\d\ne") == "a\\{b\\}c\\\u2060d e"


def test_without_word_timings_one_event_per_caption(tmp_path):
    path = tmp_path / "c.ass"
    assert write_ass([Sentence(1.0, 3.0, "Hello there."), Sentence(4.0, 5.0, "Bye.")], 0.0, 6.0, path, 720, 1280) == 2
    events = parse_ass(path)
    assert [(a, b, plain(raw)) for a, b, _, raw in events] == [(1.0, 3.0, "Hello there."), (4.0, 5.0, "Bye.")]
    assert HL_ON not in path.read_text(encoding="utf-8")
    # timed words without highlight: one event per caption as well
    assert write_ass([said("grab it now", 1.0)], 0.0, 6.0, path, 720, 1280, highlight=False) == 1


def test_empty_transcript_gives_a_valid_file(tmp_path):
    path = tmp_path / "c.ass"
    assert write_ass([], 10.0, 20.0, path, 1080, 1920) == 0
    assert parse_ass(path) == []
    assert write_ass([Sentence(0.0, 5.0, "before the clip")], 10.0, 20.0, path, 1080, 1920) == 0
    assert write_ass([said("hi", 11.0)], 10.0, 10.0, path, 1080, 1920) == 0, "an empty clip"
    assert [p.name for p in tmp_path.iterdir()] == ["c.ass"], "no temporary files left behind"


def test_layout_fits_the_video_shape():
    tall, square, wide = caption_style(1080, 1920), caption_style(1080, 1080), caption_style(1280, 720)
    assert 0.18 <= tall.margin_bottom / 1920 <= 0.22
    assert 0.06 <= tall.margin_side / 1080 <= 0.08
    assert wide.margin_bottom / 720 < square.margin_bottom / 1080 < tall.margin_bottom / 1920
    for s in (tall, square, wide):
        assert 0.045 <= s.font_size / min(s.width, s.height) <= 0.08
        assert s.cjk_chars < s.latin_chars <= 42
        assert s.cjk_font_size >= s.font_size
    assert 18 <= tall.latin_chars <= 26 and 10 <= tall.cjk_chars <= 14
    with pytest.raises(ValueError):
        caption_style(0, 1920)
    with pytest.raises(ValueError):
        caption_style(1080.5, 1920)
    assert caption_style(np.int64(1080), np.int32(1920)) == tall


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b.ass", "../c.ass", "my captions.ass", "c:1.ass", "c'.ass"])
def test_burn_filter_takes_only_plain_names(bad):
    assert burn_filter("clip-1_a.ass") == "ass=filename=clip-1_a.ass"
    with pytest.raises(ValueError):
        burn_filter(bad)


word_st = st.builds(lambda s, d, t: Word(s, s + d, t), st.floats(0, 30), st.floats(0, 3),
                    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=20))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(lambda s, d, t: Sentence(s, s + d, t), st.floats(0, 30), st.floats(0, 10),
                      st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=120)),
            st.builds(lambda ws: Sentence(min((w.start for w in ws), default=0), max((w.end for w in ws), default=0),
                                          "", tuple(sorted(ws, key=lambda w: w.start))),
                      st.lists(word_st, max_size=20)),
        ),
        max_size=5,
    ),
    st.floats(0, 25),
    st.floats(0.1, 20),
)
def test_events_are_always_well_formed(tmp_path_factory, sentences, start, length):
    path = tmp_path_factory.mktemp("prop") / "c.ass"
    n = write_ass(sentences, start, start + length, path, 1080, 1920)
    events = parse_ass(path)
    assert n == len(events)
    check_events(events, length)


# ---------------------------------------------------------------------------------------------- render

W, H, FPS, SECONDS = 360, 640, 25, 4


def ffmpeg(*args: str, cwd: Path | None = None) -> bytes:
    proc = subprocess.run([ffmpeg_bin(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          cwd=cwd, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout


def frames(path: Path) -> np.ndarray:
    raw = ffmpeg("-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-")
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W).astype(np.int16)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A flat-colour 360x640 video and its frames re-encoded without captions."""
    folder = tmp_path_factory.mktemp("burn")
    src = folder / "in.mp4"
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"]
    ffmpeg("-f", "lavfi", "-i", f"color=c=0x336699:s={W}x{H}:d={SECONDS}:r={FPS}", *enc, str(src))
    ffmpeg("-i", str(src), *enc, str(folder / "plain.mp4"))
    return src, frames(folder / "plain.mp4")


def burn(base, tmp_path: Path, sentences, name: str = "captions.ass") -> np.ndarray:
    """Frames of the base video with ``sentences`` burned in (ffmpeg runs in the captions' folder)."""
    src, _ = base
    write_ass(sentences, 0.0, SECONDS, tmp_path / name, W, H)
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"]
    ffmpeg("-i", str(src), "-vf", burn_filter(name), *enc, "out.mp4", cwd=tmp_path)
    return frames(tmp_path / "out.mp4")


def at(t: float) -> int:
    return round(t * FPS)


def check_shown_only_while_spoken(plain_frames: np.ndarray, burned: np.ndarray) -> np.ndarray:
    """Asserts the caption shows in the lower part during 1.0-2.5 s only; returns the changed-pixel
    masks of the frames in 1.1-2.4 s."""
    assert burned.shape == plain_frames.shape
    diff = np.abs(burned - plain_frames)
    for i in [*range(at(0.0), at(0.8)), *range(at(2.8), len(diff))]:
        assert diff[i].mean() < 0.3, f"frame {i} ({i / FPS:.2f} s) should show no caption"
    inside = range(at(1.1), at(2.4))
    for i in inside:
        lower, upper = diff[i, H // 2:], diff[i, : H // 2]
        assert lower.mean() > 0.8, f"frame {i} ({i / FPS:.2f} s) should show the caption"
        assert upper.mean() < 0.2, "the caption sits in the lower part"
    return diff[at(1.1):at(2.4)] > 40


def test_burned_caption_shows_only_while_spoken(base, tmp_path):
    s = Sentence(1.0, 2.5, "grab it now", (Word(1.0, 1.4, " grab"), Word(1.5, 1.9, " it"), Word(2.0, 2.5, " now")))
    burned = burn(base, tmp_path, [s])
    masks = check_shown_only_while_spoken(base[1], burned)
    assert masks.sum(axis=(1, 2)).min() > 800
    # the highlight moves from word to word; within one word the picture holds still
    d = np.abs(burned - base[1])
    assert np.abs(d[at(1.2)] - d[at(1.7)]).mean() > 0.03
    assert np.abs(d[at(1.1)] - d[at(1.3)]).mean() < 0.02


def test_burned_chinese_caption_draws_glyphs(base, tmp_path):
    if not cjk_font_available():
        pytest.skip("no CJK font installed (fc-list :lang=zh is empty; Debian: apt-get install fonts-noto-cjk)")
    latin = burn(base, tmp_path, [Sentence(1.0, 2.5, "welcome all")], "latin.ass")
    zh_a = burn(base, tmp_path, [Sentence(1.0, 2.5, "欢迎大家来")], "zh_a.ass")
    zh_b = burn(base, tmp_path, [Sentence(1.0, 2.5, "价格九十九")], "zh_b.ass")
    latin_px = check_shown_only_while_spoken(base[1], latin).sum(axis=(1, 2)).mean()
    a = check_shown_only_while_spoken(base[1], zh_a)
    b = check_shown_only_while_spoken(base[1], zh_b)
    assert a.sum(axis=(1, 2)).mean() > 0.6 * latin_px, "about as much ink as a Latin caption of similar width"
    # real glyphs: different characters draw different shapes (missing-glyph boxes all look alike and
    # are far smaller)
    assert (a[0] != b[0]).sum() > 0.3 * a[0].sum()
