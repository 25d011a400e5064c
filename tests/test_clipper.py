"""ace.clipper: planning (pure), captions, and rendering with real ffmpeg."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ace import clipper, media
from ace.clipper import MAX_CHARS, MAX_LINES, caption_cues, plan_clip, render_clip, write_srt
from ace.errors import MediaError
from ace.types import Clip, ClipPlan, MediaInfo, Moment, Sentence, Word
from tests import media_factory as mf

FPS = 30


def moment(start: float, end: float, show: str = "show") -> Moment:
    return Moment(show_id=show, start=start, end=end, score=0.9, peak=(start + end) / 2)


def info(duration: float) -> MediaInfo:
    return MediaInfo(path="x.mp4", duration=duration, has_video=True, has_audio=True)


def words(text: str, start: float, step: float = 0.4, dur: float = 0.3) -> tuple[Word, ...]:
    """Whisper-like words (leading spaces) every ``step`` seconds."""
    return tuple(Word(start + i * step, start + i * step + dur, " " + w) for i, w in enumerate(text.split()))


SRT_BLOCK = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n((?:.+\n)+)\n")


def parse_srt(path: Path) -> list[tuple[float, float, str]]:
    text = path.read_text(encoding="utf-8")
    blocks = SRT_BLOCK.findall(text)
    assert "".join(m.group(0) for m in SRT_BLOCK.finditer(text)) == text, "nothing but well-formed cues"
    out = []
    for i, b in enumerate(blocks, 1):
        assert int(b[0]) == i
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, b[1:9])
        out.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000, b[9].rstrip("\n")))
    return out


def check_cues(cues: list[tuple[float, float, str]], length: float) -> None:
    last_end = 0.0
    for a, b, text in cues:
        assert 0 <= a < b <= length + 1e-3
        assert a >= last_end - 1e-3, "cues do not overlap"
        last_end = b
        lines = text.split("\n")
        assert 1 <= len(lines) <= MAX_LINES
        assert all(0 < len(line) <= MAX_CHARS and line == line.strip() for line in lines)


# ----------------------------------------------------------------------------------------------- plan


def test_plan_clamps_to_the_media():
    m = moment(-2.0, 12.0)
    plan = plan_clip(m, "fast", info(10.0))
    assert (plan.moment_id, plan.start, plan.end, plan.mode) == (m.id, 0.0, 10.0, "fast")
    assert plan_clip(moment(3.0, 12.0)).end == 12.0  # without info only the start is clamped
    assert plan_clip(moment(3.0, 5.0)).mode == "exact"


def test_plan_rejects_unknown_modes_by_listing_the_valid_ones():
    with pytest.raises(ValueError) as err:
        plan_clip(moment(1, 2), "precise")
    assert "exact" in str(err.value) and "fast" in str(err.value)


@pytest.mark.parametrize(("start", "end"), [(11.0, 15.0), (5.0, 5.0), (float("nan"), 3.0), (-5.0, -1.0)])
def test_plan_rejects_empty_or_outside_moments(start, end):
    with pytest.raises(ValueError):
        plan_clip(moment(start, end), "exact", info(10.0))


# ------------------------------------------------------------------------------------------- captions


def test_srt_is_empty_without_speech(tmp_path):
    path = tmp_path / "c.srt"
    assert write_srt([], 10.0, 20.0, path) == 0
    assert path.read_text() == ""
    assert write_srt([Sentence(0.0, 5.0, "before the clip")], 10.0, 20.0, path) == 0
    assert path.read_text() == ""


def test_srt_times_are_relative_to_the_clip(tmp_path):
    path = tmp_path / "c.srt"
    write_srt([Sentence(12.0, 13.5, "Hello there."), Sentence(15.0, 16.0, "Bye.")], 10.0, 20.0, path)
    assert parse_srt(path) == [(2.0, 3.5, "Hello there."), (5.0, 6.0, "Bye.")]


def test_long_sentence_is_split_on_word_timings(tmp_path):
    text = ("okay everyone the link is up right now three two one go go go this flash sale "
            "is only for the next ten minutes so grab it before it is sold out")
    ws = words(text, 100.0)
    path = tmp_path / "c.srt"
    n = write_srt([Sentence(ws[0].start, ws[-1].end, text, ws)], 99.0, 130.0, path)
    cues = parse_srt(path)
    assert n == len(cues) >= 2
    check_cues(cues, 31.0)
    assert " ".join(c[2].replace("\n", " ") for c in cues) == text, "every word, in order, once"
    # each cue spans its own words: from its first word's start to its last word's end
    i = 0
    for a, b, cue_text in cues:
        n = len(cue_text.split())
        assert a == pytest.approx(ws[i].start - 99.0, abs=1e-3)
        assert b == pytest.approx(ws[i + n - 1].end - 99.0, abs=1e-3)
        i += n


def test_words_outside_the_clip_are_left_out_and_times_clamped():
    ws = words("one two three four five six", 9.0, step=1.0, dur=0.9)  # 9.0 .. 14.9
    cues = caption_cues([Sentence(9.0, 14.9, "", ws)], 10.4, 13.5)
    check_cues(cues, 3.1)
    # "one" and "six" lie outside; "two" and "five" are mostly inside and get clamped to the clip
    assert " ".join(c[2] for c in cues) == "two three four five"
    assert cues[0][0] == 0.0 and cues[-1][1] == pytest.approx(3.1)
    assert caption_cues([Sentence(9.0, 14.9, "", ws)], 10.5, 13.5)[0][2].startswith("three")


def test_untimed_sentence_split_by_length():
    text = "a " * 60 + "end"
    cues = caption_cues([Sentence(0.0, 12.0, text)], 0.0, 12.0)
    check_cues(cues, 12.0)
    assert len(cues) >= 2
    assert cues[0][0] == 0.0 and cues[-1][1] == pytest.approx(12.0)


def test_pauses_start_new_cues_and_zero_length_words_still_show():
    ws = (Word(1.0, 1.0, " wow"), Word(5.0, 5.2, " amazing"))
    cues = caption_cues([Sentence(1.0, 5.2, "wow amazing", ws)], 0.0, 10.0)
    assert [c[2] for c in cues] == ["wow", "amazing"]
    check_cues(cues, 10.0)


def test_cjk_and_long_tokens_are_wrapped():
    zh = "今天我们的秒杀活动马上开始大家准备好了吗三二一上链接抢购吧库存只有一百台赶快下单太棒了" * 2
    url = "https://example.com/" + "x" * 100
    cues = caption_cues([Sentence(0, 8, zh), Sentence(8, 10, url)], 0.0, 10.0)
    check_cues(cues, 10.0)
    joined = "".join(c[2].replace("\n", "") for c in cues)
    assert joined == zh + url


def test_sentences_starting_together_do_not_overlap():
    cues = caption_cues([Sentence(1.0, 3.0, "first"), Sentence(1.0, 2.0, "second")], 0.0, 5.0)
    check_cues(cues, 5.0)
    assert sorted(c[2] for c in cues) == ["first", "second"]


word_st = st.builds(
    lambda s, d, t: Word(s, s + d, t),
    st.floats(0, 60),
    st.floats(0, 3),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=50),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(lambda s, d, t: Sentence(s, s + d, t), st.floats(0, 60), st.floats(0, 10),
                      st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=200)),
            st.builds(lambda ws: Sentence(min((w.start for w in ws), default=0), max((w.end for w in ws), default=0),
                                          "", tuple(sorted(ws, key=lambda w: w.start))),
                      st.lists(word_st, max_size=30)),
        ),
        max_size=6,
    ),
    st.floats(0, 50),
    st.floats(0.1, 30),
)
def test_cues_are_always_well_formed(sentences, start, length):
    check_cues(caption_cues(sentences, start, start + length), length)


# ---------------------------------------------------------------------------------------------- render


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return mf.make_counter_video(tmp_path_factory.mktemp("clipsrc") / "show.mp4", duration=4, fps=FPS, gop=30)


SPEECH = [
    Sentence(0.5, 1.5, "three two one"),
    Sentence(2.0, 3.2, "the link is up", words("the link is up", 2.0, 0.3, 0.25)),
]


def test_render_exact_clip_writes_mp4_srt_and_thumbnail(src, tmp_path):
    plan = plan_clip(moment(0.55, 2.5), "exact", media.probe(src))
    clip = render_clip(str(src), plan, tmp_path / "clips", SPEECH)
    assert isinstance(clip, Clip) and clip.mode == "exact" and clip.seconds > 0
    out = tmp_path / "clips"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{plan.moment_id}{e}" for e in (".mp4", ".srt", ".jpg"))
    assert clip.path == str(out / f"{plan.moment_id}.mp4")
    assert (clip.start, clip.end) == pytest.approx((17 / 30, 2.5), abs=1e-3)
    assert media.probe(clip.path).duration == pytest.approx(clip.end - clip.start, abs=0.04)
    cues = parse_srt(Path(clip.srt_path))
    check_cues(cues, clip.end - clip.start)
    assert cues[0] == (0.0, pytest.approx(1.5 - clip.start, abs=1e-3), "three two one")
    assert cues[1][0] == pytest.approx(2.0 - clip.start, abs=1e-3)
    thumb = cv2.imread(clip.thumb_path)
    assert mf.read_counter(thumb) == int((clip.start + clip.end) / 2 * FPS)


def test_an_exact_clip_probes_its_source_once(src, tmp_path, monkeypatch):
    """The thumbnail reuses what the cut's packet probe learnt about the file (a live stream cuts a
    clip for every moment; each ffprobe run costs a process start)."""
    fresh = tmp_path / "fresh.mp4"  # a file no earlier test has probed
    fresh.write_bytes(src.read_bytes())
    calls = []
    real = media._ffprobe_json

    def counted(path, *args, **kwargs):
        calls.append(args)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(media, "_ffprobe_json", counted)
    clip = render_clip(str(fresh), ClipPlan("once", 0.55, 2.5, "exact"), tmp_path / "clips")
    assert len(calls) == 1, calls
    assert mf.read_counter(cv2.imread(clip.thumb_path)) == int((clip.start + clip.end) / 2 * FPS)


def test_render_fast_clip_starts_at_a_keyframe_and_thumb_at(src, tmp_path):
    plan = plan_clip(moment(1.5, 3.0), "fast")
    clip = render_clip(str(src), plan, tmp_path, (), thumb_at=2.0)
    assert clip.start == pytest.approx(1.0)
    assert Path(clip.srt_path).read_text() == ""
    assert mf.read_counter(cv2.imread(clip.thumb_path)) == 60


def test_rerender_replaces_files_and_leaves_no_temporaries(src, tmp_path):
    plan = plan_clip(moment(1.2, 2.2), "exact")
    first = render_clip(str(src), plan, tmp_path, SPEECH)
    old = Path(first.path).stat().st_ino
    second = render_clip(str(src), plan, tmp_path, SPEECH)
    assert second.path == first.path and (second.start, second.end) == (first.start, first.end)
    assert Path(second.path).stat().st_ino != old, "a new file renamed into place"
    assert len(list(tmp_path.iterdir())) == 3


def test_failed_render_leaves_nothing_half_written(src, tmp_path, monkeypatch):
    plan = plan_clip(moment(1.2, 2.2), "exact")
    good = render_clip(str(src), plan, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*a, **k):
        raise MediaError("thumbnail failed", "boom")

    monkeypatch.setattr(clipper.media, "thumbnail", broken)
    with pytest.raises(MediaError):
        render_clip(str(src), plan, tmp_path, SPEECH)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before, "the earlier clip is untouched and no temporary file is left"
    assert Path(good.path).exists()

    fresh = tmp_path / "fresh"
    with pytest.raises(MediaError):
        render_clip(str(src), plan, fresh, SPEECH)
    assert list(fresh.iterdir()) == []


def test_render_audio_only_source_has_no_thumbnail(tmp_path):
    voice = mf.make_audio(tmp_path / "voice.m4a", duration=3)
    clip = render_clip(str(voice), plan_clip(moment(0.5, 2.0)), tmp_path / "out")
    assert clip.thumb_path == ""
    assert media.probe(clip.path).has_audio
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".mp4", ".srt"]


def test_render_rejects_unknown_mode(src, tmp_path):
    with pytest.raises(ValueError, match="exact"):
        render_clip(str(src), ClipPlan("id", 1.0, 2.0, "precise"), tmp_path)
    assert list(tmp_path.iterdir()) == []
