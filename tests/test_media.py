"""ace.media against real ffmpeg, on small synthetic files (tests/media_factory.py)."""

from __future__ import annotations

import logging
import resource
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ace import media
from ace.errors import InputError, MediaError, NoStreamError
from tests import media_factory as mf

FPS = 30


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def counter(mdir) -> Path:
    """4 s, 30 fps, keyframe every second, 3 B-frames, white-noise audio; frame n shows n."""
    return mf.make_counter_video(mdir / "counter.mp4", duration=4, fps=FPS, gop=30, noise=True)


@pytest.fixture(scope="module")
def scenes(mdir) -> Path:
    return mf.make_scenes(mdir / "scenes.mp4", SCENES, gop=60)


@pytest.fixture(scope="module")
def mute(mdir) -> Path:
    return mf.make_video(mdir / "mute.mp4", duration=2, audio=False)


@pytest.fixture(scope="module")
def voice(mdir) -> Path:
    return mf.make_audio(mdir / "voice.m4a", duration=2)


SCENES = [("black", 1.0), ("white", 1.0), ("red", 1.0), ("blue", 1.0)]


def decode_gray(path: Path, width: int = 160, height: int = 120) -> np.ndarray:
    """Every frame of ``path`` (no frame-rate conversion), grey."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", f"scale={width}:{height},format=gray",
         "-fps_mode", "passthrough", "-f", "rawvideo", "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width)


def decode_errors(path: Path) -> str:
    """What ffmpeg says (at level error) while decoding every stream of ``path``."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True).stderr.strip()


def ids(path: Path) -> list[int]:
    return [mf.read_counter(f) for f in decode_gray(path)]


def ids_and_errors(path: Path) -> tuple[list[int], str]:
    """Counter ids of every frame, and ffmpeg's complaints while decoding all streams, in one pass."""
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", "scale=160:120,format=gray",
         "-fps_mode", "passthrough", "-f", "rawvideo", "-", "-map", "0:a?", "-f", "null", "-"],
        capture_output=True,
    )
    frames = np.frombuffer(proc.stdout, np.uint8).reshape(-1, 120, 160)
    return [mf.read_counter(f) for f in frames], proc.stderr.decode().strip()


# ---------------------------------------------------------------------------------------------- probe


def test_probe_reads_video_and_audio(counter):
    info = media.probe(counter)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(30)
    assert info.duration == pytest.approx(4.0, abs=0.05)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.start_time == pytest.approx(0.0, abs=0.05)
    assert info.path == str(counter)


def test_probe_audio_only_and_mute(voice, mute):
    a = media.probe(voice)
    assert (a.has_video, a.has_audio, a.width, a.fps) == (False, True, 0, 0.0)
    assert a.duration == pytest.approx(2.0, abs=0.05)
    m = media.probe(mute)
    assert (m.has_video, m.has_audio, m.audio_codec) == (True, False, "")


def test_missing_file_is_input_error_before_ffmpeg(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(media.subprocess, "run", lambda *a, **k: called.append(a))
    with pytest.raises(InputError, match="no such file") as err:
        media.probe(tmp_path / "nope.mp4")
    assert not isinstance(err.value, MediaError)
    assert not called


def test_empty_file_is_media_error(tmp_path):
    with pytest.raises(MediaError, match="empty"):
        media.probe(mf.make_empty(tmp_path / "empty.mp4"))
    with pytest.raises(MediaError, match="empty"):
        media.read_audio(tmp_path / "empty.mp4")


def test_unreadable_file_carries_stderr(tmp_path):
    with pytest.raises(MediaError) as err:
        media.probe(mf.make_garbage(tmp_path / "garbage.mp4"))
    assert err.value.stderr.strip(), "the ffprobe message should travel with the error"
    assert "Invalid data" in str(err.value)


def test_truncated_mp4_without_index_is_media_error(tmp_path):
    with pytest.raises(MediaError, match="moov atom not found"):
        media.probe(mf.make_truncated(tmp_path / "cut.mp4", duration=3))


@pytest.mark.parametrize("name", ["concat:a.mp4|b.mp4", "http:example.com", "-i.mp4", "subfile,,x.mp4"])
def test_file_names_are_never_protocols(counter, tmp_path, monkeypatch, name):
    target = tmp_path / name
    shutil.copy(counter, target)
    monkeypatch.chdir(tmp_path)
    assert media.probe(name).duration == pytest.approx(4.0, abs=0.05)
    assert media.read_audio(name, duration=0.5).size == 8000
    # and a name that only looks like a URL is a missing file, not a network request
    with pytest.raises(InputError, match="no such file"):
        media.probe("http://localhost:1/x.mp4")


def test_binaries_from_environment(counter, monkeypatch, tmp_path):
    monkeypatch.setenv("ACE_FFPROBE", str(tmp_path / "no-ffprobe"))
    fresh = shutil.copy(counter, tmp_path / "fresh.mp4")  # not probed before: nothing remembered
    with pytest.raises(InputError, match="ACE_FFPROBE"):
        media.probe(fresh)
    monkeypatch.setenv("ACE_FFPROBE", shutil.which("ffprobe"))
    monkeypatch.setenv("ACE_FFMPEG", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(InputError, match="ACE_FFMPEG"):
        media.read_audio(counter)
    monkeypatch.delenv("ACE_FFMPEG")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="not found"):
        media.ffmpeg_binary()


def test_probe_is_remembered_until_the_file_changes(counter, tmp_path, monkeypatch):
    path = shutil.copy(counter, tmp_path / "show.mp4")
    first = media.probe(path)
    monkeypatch.setenv("ACE_FFPROBE", str(tmp_path / "no-ffprobe"))
    assert media.probe(path) == first  # unchanged: no ffprobe run needed
    with open(path, "ab") as f:  # changed (a live recording grows): probed again
        f.write(b"\0" * 16)
    with pytest.raises(InputError, match="ACE_FFPROBE"):
        media.probe(path)


# ---------------------------------------------------------------------------------------------- audio


def test_read_audio_is_float_mono_16k(counter):
    a = media.read_audio(counter)
    assert a.dtype == np.float32 and a.ndim == 1
    assert len(a) == pytest.approx(4 * 16000, abs=400)
    assert np.abs(a).max() <= 1.0
    assert a.std() > 0.05  # the noise is there
    assert a.flags.writeable  # callers may work on it in place


def test_read_audio_window_is_the_same_samples(counter):
    full = media.read_audio(counter, sr=8000)
    part = media.read_audio(counter, sr=8000, start=1.5, duration=1.0)
    assert len(part) == pytest.approx(8000, abs=10)
    ref = full[12000:12000 + len(part)]
    corr = np.corrcoef(part[:len(ref)], ref)[0, 1]
    assert corr > 0.9, "the window must start exactly at `start`"


def test_read_audio_without_audio_is_no_stream(mute):
    with pytest.raises(NoStreamError, match="no audio"):
        media.read_audio(mute)


def test_read_audio_of_audio_only_file(voice):
    a = media.read_audio(voice)
    assert len(a) == pytest.approx(32000, abs=400)
    assert 0.3 < np.abs(a).max() <= 1.0


# --------------------------------------------------------------------------------------------- frames


def test_frames_shape_and_times(counter):
    frames = list(media.iter_frames(counter, fps=4, width=161))
    assert len(frames) == 16
    for i, (t, f) in enumerate(frames):
        assert t == pytest.approx(i / 4)
        assert f.dtype == np.uint8 and f.shape == (120, 160)  # even width, aspect kept


@pytest.mark.parametrize("fps", [4, 6, 30])
@pytest.mark.parametrize("start", [None, 0.51, 1.3, 2.0])
def test_full_decode_frames_are_the_source_frames_at_their_time(counter, fps, start):
    got = list(media.iter_frames(counter, fps=fps, skip_bidir=False, start=start, duration=1.5))
    assert len(got) == pytest.approx(1.5 * fps, abs=1)
    for t, f in got:
        assert mf.read_counter(f) == int(np.floor(t * FPS + 1e-6)), f"frame at t={t:.3f}"


@pytest.mark.parametrize("fps", [2, 4, 6])
def test_skipping_b_frames_is_at_most_a_few_frames_early(counter, fps):
    got = list(media.iter_frames(counter, fps=fps, start=0.7))
    assert len(got) == pytest.approx((4 - 0.7) * fps, abs=1)
    lags = [int(np.floor(t * FPS + 1e-6)) - mf.read_counter(f) for t, f in got]
    assert min(lags) >= 0 and max(lags) <= 3  # at most the 3 B-frames between references
    assert len({mf.read_counter(f) for _, f in got}) == len(got), "every analysis frame is a new picture"


def _colour_at(t: float) -> str:
    return SCENES[min(int(t + 1e-6), len(SCENES) - 1)][0]


def _grey_of(name: str) -> float:
    bgr = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (0, 0, 255), "blue": (255, 0, 0)}[name]
    return float(cv2.cvtColor(np.uint8([[bgr]]), cv2.COLOR_BGR2GRAY)[0, 0])


def _nearest_colour(frame: np.ndarray) -> str:
    return min((abs(frame.mean() - _grey_of(c)), c) for c, _ in SCENES)[1]


def test_scene_changes_show_at_their_time(scenes):
    for t, f in media.iter_frames(scenes, fps=4, skip_bidir=False):
        assert _nearest_colour(f) == _colour_at(t), f"t={t}"
    # skipping B-frames may show a change up to 0.1 s (3 frames at 30 fps) late, never early
    for t, f in media.iter_frames(scenes, fps=4):
        assert _nearest_colour(f) in {_colour_at(t), _colour_at(t - 0.1)}, f"t={t}"


def test_frames_are_read_lazily_and_closing_stops_ffmpeg(counter, monkeypatch):
    procs = []
    real = media._popen
    monkeypatch.setattr(media, "_popen", lambda *a, **k: procs.append(real(*a, **k)) or procs[-1])
    gen = media.iter_frames(counter, fps=30, skip_bidir=False)
    assert not procs, "nothing runs before the first frame is asked for"
    next(gen)
    assert len(procs) == 1 and procs[0].poll() is None
    gen.close()
    assert procs[0].poll() is not None, "closing the generator must end ffmpeg"


def test_frames_need_video(voice):
    with pytest.raises(NoStreamError, match="no video"):
        media.iter_frames(voice)


def test_frames_of_unreadable_files(tmp_path):
    with pytest.raises(MediaError):
        list(media.iter_frames(mf.make_garbage(tmp_path / "g.mp4")))
    with pytest.raises(MediaError, match="empty"):
        list(media.iter_frames(mf.make_empty(tmp_path / "e.mp4")))


def test_truncated_stream_yields_what_decodes(tmp_path):
    path = mf.make_truncated(tmp_path / "cut.ts", duration=4, keep=0.5)
    got = list(media.iter_frames(path, fps=4))
    assert 4 <= len(got) < 16
    assert all(f.shape == (120, 160) for _, f in got)


def test_decode_failure_with_no_frames_raises_with_stderr(counter, monkeypatch):
    # a filter graph ffmpeg rejects: nothing decodes, and the reason must reach the caller
    monkeypatch.setattr(media, "_compile", lambda stream, *g: ["ffmpeg", "-v", "error", "-i", str(counter),
                                                                "-vf", "nosuchfilter", "-f", "null", "-"])
    with pytest.raises(MediaError) as err:
        list(media.iter_frames(counter))
    assert "nosuchfilter" in err.value.stderr


# ------------------------------------------------------------------------------------------ keyframes


def test_keyframes_from_packet_flags(counter, voice):
    assert media.keyframes(counter) == pytest.approx([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(NoStreamError):
        media.keyframes(voice)


# ----------------------------------------------------------------------------------------------- cuts


@pytest.fixture(scope="module")
def counter_ts(mdir) -> Path:
    """Like ``counter`` but MPEG-TS: no index, a clock that starts at 1.4 s, video a bit after audio."""
    return mf.make_counter_video(mdir / "counter.ts", duration=4, fps=FPS, gop=30)


@pytest.mark.parametrize(
    ("start", "end", "key"),
    [(0.0, 1.0, 0), (0.2, 1.5, 0), (2.5, 3.5, 2), (1.05, 2.0, 1), (1.0, 2.0, 0)],  # key 1 is at 1.021
)
def test_cut_fast_from_mpeg_ts(counter_ts, tmp_path, start, end, key):
    v0 = media.keyframes(counter_ts)[0]  # the video starts a little after the audio
    dst = tmp_path / "fast.mp4"
    s, e = media.cut_fast(counter_ts, start, end, dst)
    assert s == pytest.approx(key + v0, abs=1e-3)
    assert ids(dst) == list(range(key * FPS, round((e - v0) * FPS)))
    assert e >= end - 1 / FPS
    assert decode_errors(dst) == ""


def test_cut_fast_starts_at_the_keyframe_before(counter, tmp_path):
    dst = tmp_path / "fast.mp4"
    s, e = media.cut_fast(counter, 1.5, 3.0, dst)
    assert s == pytest.approx(1.0)
    assert e >= 3.0 - 1 / FPS
    got = ids(dst)
    assert got == list(range(30, round(e * FPS))), "from the keyframe, no frame missing, up to e"
    assert media.probe(dst).duration == pytest.approx(e - s, abs=0.1)  # audio ends on an AAC frame
    assert decode_errors(dst) == ""


def _audio_lag(src: Path, clip: Path, start: float) -> float:
    """Seconds by which the clip's audio lags the source audio at ``start`` (cross-correlation)."""
    sr = 16000
    a = media.read_audio(clip, sr=sr)[: sr // 2]
    ref = media.read_audio(src, sr=sr, start=max(0.0, start - 0.1), duration=0.7)
    corr = np.correlate(ref, a, mode="valid")
    return (int(np.argmax(corr)) - round((start - max(0.0, start - 0.1)) * sr)) / sr


EXACT_CASES = [
    (0.55, 2.5),  # partial GOP at both ends
    (1.0, 3.0),  # on keyframes: copy only
    (1.01, 2.99),  # snaps to the keyframes
    (0.2, 0.8),  # no keyframe inside: re-encode it all
    (0.5, 4.0),  # to the end of the file
    (2.9, 3.1),  # a few frames around a keyframe
]


@pytest.mark.parametrize(("start", "end"), EXACT_CASES)
def test_cut_exact_is_frame_accurate(counter, tmp_path, start, end):
    dst = tmp_path / "exact.mp4"
    s, e = media.cut_exact(counter, start, end, dst)
    assert abs(s - start) <= 0.5 / FPS + 1e-6 and abs(e - end) <= 0.5 / FPS + 1e-6
    got, errors = ids_and_errors(dst)
    assert got == list(range(round(s * FPS), round(e * FPS))), "exactly the frames of [s, e)"
    assert errors == ""
    info = media.probe(dst)
    assert info.has_audio and info.audio_codec == "aac"
    audio = media.read_audio(dst)
    assert len(audio) / 16000 == pytest.approx(e - s, abs=0.03)
    assert abs(_audio_lag(counter, dst, s)) < 0.002, "audio in sync with the video"


@pytest.mark.parametrize("bframes", [0, 1])
def test_cut_exact_smart_cut_matches_other_b_frame_layouts(tmp_path, bframes, caplog):
    src = mf.make_counter_video(tmp_path / f"b{bframes}.mp4", duration=3, fps=FPS, gop=30, bframes=bframes)
    with caplog.at_level(logging.INFO, logger="ace.media"):
        s, e = media.cut_exact(src, 0.4, 2.6, tmp_path / "x.mp4")
    assert "smart" in caplog.text, "the GOPs inside should be copied, not re-encoded"
    assert ids(tmp_path / "x.mp4") == list(range(round(s * FPS), round(e * FPS)))
    assert decode_errors(tmp_path / "x.mp4") == ""


@pytest.mark.parametrize("before", [1, 2])
def test_cut_exact_a_head_of_one_or_two_frames_starts_earlier_and_stays_smart(counter, tmp_path, caplog, before):
    """One or two frames ahead of a keyframe cannot be re-encoded to join the copied GOPs (their
    timestamps would run backwards): the clip starts at the third frame before the keyframe."""
    key = 2.0
    with caplog.at_level(logging.INFO, logger="ace.media"):
        s, e = media.cut_exact(counter, key - before / FPS, 3.5, tmp_path / "x.mp4")
    assert "smart: enc 3+copy" in caplog.text
    assert s == pytest.approx(key - 3 / FPS, abs=1e-3) and e == pytest.approx(3.5, abs=0.5 / FPS + 1e-6)
    assert ids(tmp_path / "x.mp4") == list(range(round(s * FPS), round(e * FPS)))
    assert decode_errors(tmp_path / "x.mp4") == ""


@pytest.mark.parametrize(("start", "end"), [(1.3, 3.4), (0.0, 1.5), (2.0, 4.0)])
def test_cut_exact_from_mpeg_ts(counter_ts, tmp_path, start, end):
    src = counter_ts
    assert media.probe(src).start_time > 1  # MPEG-TS clocks do not start at 0
    # the audio starts a little before the video here: frame 0 is at the first keyframe's time
    v0 = media.keyframes(src)[0]
    assert 0 < v0 < 0.1
    s, e = media.cut_exact(src, start, end, tmp_path / "x.mp4")
    assert ids(tmp_path / "x.mp4") == list(range(round((s - v0) * FPS), round((e - v0) * FPS)))
    assert decode_errors(tmp_path / "x.mp4") == ""


def test_cut_exact_without_audio_and_audio_only(mute, voice, tmp_path):
    s, e = media.cut_exact(mute, 0.3, 1.7, tmp_path / "m.mp4")
    info = media.probe(tmp_path / "m.mp4")
    assert not info.has_audio and info.duration == pytest.approx(e - s, abs=0.04)
    s, e = media.cut_exact(voice, 0.5, 1.5, tmp_path / "v.mp4")
    info = media.probe(tmp_path / "v.mp4")
    assert (info.has_video, info.has_audio) == (False, True)
    assert info.duration == pytest.approx(1.0, abs=0.05)


def test_cut_bounds_are_checked(counter, tmp_path):
    with pytest.raises(InputError, match="empty cut"):
        media.cut_exact(counter, 3.0, 2.0, tmp_path / "x.mp4")
    with pytest.raises(InputError, match="empty cut"):
        media.cut_fast(counter, 5.0, 6.0, tmp_path / "x.mp4")
    with pytest.raises(InputError, match="no such folder"):
        media.cut_exact(counter, 1.0, 2.0, tmp_path / "missing" / "x.mp4")
    # a cut past the end is clamped to the media
    s, e = media.cut_exact(counter, 3.5, 9.0, tmp_path / "x.mp4")
    assert (s, e) == pytest.approx((3.5, 4.0), abs=1e-3)


@pytest.mark.slow
def test_cut_exact_30s_of_720p(tmp_path):
    """The target case: 30 s from a 720p30 source with 2 s GOPs, first/last frames on the plan."""
    src = mf.make_video(tmp_path / "hd.mp4", duration=33, size=(1280, 720), fps=FPS, gop=60,
                        preset="ultrafast", crf=28)
    start, end = 1.55, 31.55
    dst = tmp_path / "clip.mp4"
    began, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    s, e = media.cut_exact(src, start, end, dst)
    took, cpu1 = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    # CPU time, not wall time: other work on a shared machine stretches the wall clock. About 3 CPU-s
    # (2 s wall on two idle cores); a whole re-encode of 30 s of 720p would take 15-20 CPU-s.
    assert cpu < 8, f"smart cut used {cpu:.1f} CPU-s ({took:.1f}s wall)"
    assert abs(s - start) <= 1 / FPS and abs(e - end) <= 1 / FPS

    clip = decode_gray(dst, 320, 180).astype(np.int16)
    assert len(clip) == pytest.approx((e - s) * FPS, abs=1)
    src_frames = [f.astype(np.int16) for _, f in media.iter_frames(
        src, fps=FPS, width=320, skip_bidir=False, start=s - 2 / FPS, duration=3 / FPS)]
    diffs = [float(np.abs(clip[0] - f).mean()) for f in src_frames]  # frames at s-2, s-1, s
    assert diffs[2] < 2.0, "the clip's first frame is the source frame at start"
    assert diffs[1] > 3 * diffs[2] and diffs[0] > diffs[1], f"and not the ones before: {diffs}"
    last = [f.astype(np.int16) for _, f in media.iter_frames(
        src, fps=FPS, width=320, skip_bidir=False, start=e - 1 / FPS, duration=1 / FPS)]
    assert float(np.abs(clip[-1] - last[0]).mean()) < 2.0, "the last frame is the one before end"
    assert decode_errors(dst) == ""
    assert len(media.read_audio(dst)) / 16000 == pytest.approx(e - s, abs=0.03)


# ------------------------------------------------------------------------------------------ thumbnail


def test_thumbnail_is_the_frame_at_t(counter, tmp_path):
    dst = tmp_path / "t.jpg"
    media.thumbnail(counter, 1.5, dst, width=160)
    img = cv2.imread(str(dst))
    assert img.shape == (120, 160, 3)
    assert mf.read_counter(img) == 45
    media.thumbnail(counter, 99.0, dst)  # past the end: the last frame
    assert mf.read_counter(cv2.imread(str(dst))) == 119


def test_thumbnail_needs_video(voice, tmp_path):
    with pytest.raises(NoStreamError):
        media.thumbnail(voice, 0.5, tmp_path / "t.jpg")
