"""In-process segment decoding (PyAV) gives what ace.media's ffmpeg command lines give: the same
clock, the same 16 kHz audio, the same frames on the same grid, and the same frame skipping."""

from __future__ import annotations

import numpy as np
import pytest

from ace import media
from ace.errors import MediaError
from ace.live import decode
from ace.live.decode import decode_segment, segment_times
from tests import media_factory as mf

FPS = 30


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    """A 2 s MPEG-TS segment like the ingest writes: clock starting at 1.4 s, audio a bit before video."""
    return mf.make_counter_video(tmp_path_factory.mktemp("seg") / "seg.ts", duration=2, fps=FPS, gop=30)


@pytest.fixture(scope="module")
def mute_ts(tmp_path_factory):
    return mf.make_video(tmp_path_factory.mktemp("mute") / "mute.ts", duration=2, audio=False)


def test_clock_matches_ffprobe(seg):
    got = segment_times(seg)
    p = media._probe(str(seg))
    assert got.start == pytest.approx(p.start, abs=1e-6)
    assert got.video == pytest.approx(p.info.start_time, abs=1e-6)
    assert got.audio == pytest.approx(float(p.audio["start_time"]), abs=1e-6)
    assert got.start > 1.0  # an MPEG-TS clock, not zero


def test_audio_is_what_ffmpeg_gives(seg):
    got = decode_segment(seg, fps=None)
    ref = media.read_audio(seg, sr=16000)
    assert got.audio is not None and got.audio.dtype == np.float32
    assert got.audio.size == ref.size
    assert np.abs(got.audio - ref).max() < 1e-4
    assert got.frames == []  # fps=None: no frames read


@pytest.mark.parametrize(("fps", "skip"), [(4.0, True), (2.0, True), (30.0, True), (1.0, "nokey"), (4.0, False)])
def test_frames_are_ffmpegs_on_the_same_grid(seg, fps, skip):
    got = decode_segment(seg, fps=fps, width=160, skip=skip).frames
    ref = list(media.iter_frames(seg, fps=fps, width=160, skip_bidir=skip))
    assert got and ref
    # the same instants (this grid may run a slot further at the very end, which the analyzer drops)
    assert len(ref) <= len(got) <= len(ref) + 2
    assert [t for t, _ in got[: len(ref)]] == pytest.approx([t for t, _ in ref])
    for (_, a), (_, b) in zip(got, ref):
        assert a.shape == b.shape and a.shape[1] == 160 and a.dtype == np.uint8
        # the same picture or its neighbour: ffmpeg's frame-rate filter counts a picture shown up to a
        # frame after the instant as shown at it; this grid takes the one on screen then. With
        # B-frames skipped the next decoded picture is up to 4 frames on, with keyframes only a GOP on.
        na, nb = mf.read_counter(a), mf.read_counter(b)
        step = 30 if skip == "nokey" else 1 if skip is False or fps * 2 > FPS else 4
        assert 0 <= nb - na <= step, (na, nb)


def test_counter_frames_are_the_latest_shown(tmp_path):
    """Frame i is the latest picture at or before i / fps: read the counter's barcode at full width."""
    src = mf.make_counter_video(tmp_path / "c.ts", duration=2, fps=FPS, gop=30, bframes=0)
    got = decode_segment(src, fps=10.0, width=mf.COUNTER_BITS * 4, skip=False)
    first_video = segment_times(src).video - segment_times(src).start
    for t, frame in got.frames:
        n = mf.read_counter(frame)
        assert n == max(0, int(np.floor((t - first_video) * FPS + 1e-6))), (t, n)


def test_skipping_decodes_fewer_pictures(seg):
    every = decode_segment(seg, fps=4.0, skip=False).decoded_frames
    bidir = decode_segment(seg, fps=4.0, skip=True).decoded_frames
    keys = decode_segment(seg, fps=1.0, skip="nokey").decoded_frames
    assert every == 2 * FPS and keys == 2 and keys < bidir < every


def test_no_audio_or_no_video(mute_ts, tmp_path):
    got = decode_segment(mute_ts, fps=4.0)
    assert got.audio is None and got.times.audio is None and got.frames
    voice = mf.make_audio(tmp_path / "voice.ts", duration=2)
    got = decode_segment(voice, fps=4.0)
    assert got.times.video is None and got.frames == [] and got.audio.size == pytest.approx(32000, abs=2048)


def test_bad_segments_are_media_errors(tmp_path):
    with pytest.raises(MediaError, match="empty"):
        decode_segment(mf.make_empty(tmp_path / "e.ts"))
    with pytest.raises(MediaError):
        decode_segment(mf.make_garbage(tmp_path / "g.ts"))
    with pytest.raises(MediaError, match="does not exist"):
        decode_segment(tmp_path / "missing.ts")


def test_a_truncated_segment_gives_what_it_holds(seg, tmp_path):
    cut = tmp_path / "half.ts"
    data = seg.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    got = decode_segment(cut, fps=4.0)
    full = decode_segment(seg, fps=4.0)
    assert 0 < got.audio.size < full.audio.size and 0 < len(got.frames) < len(full.frames)


def test_times_are_remembered_per_file(seg, monkeypatch):
    decode_segment(seg, fps=None)

    def fail(path):
        raise AssertionError("opened again")

    monkeypatch.setattr(decode, "_open", fail)
    assert segment_times(seg).video is not None  # from memory


@pytest.mark.parametrize("fmt", ["yuv420p", "yuvj420p", "nv12", "rgb24"])
def test_grey_is_swscales_area_grey(fmt):
    """The luma-plane shortcut gives swscale's full-range grey within 2 levels, for limited- and
    full-range YUV; other formats go through swscale itself."""
    import av

    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 320, dtype=np.float32)[None, :, None]
    rgb = np.clip(ramp + rng.normal(0, 20, (180, 320, 3)), 0, 255).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
    got = decode.grey(frame, 80, 45)
    ref = frame.reformat(width=80, height=45, format="gray", interpolation="AREA").to_ndarray()[:45, :80]
    assert got.shape == (45, 80) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 2
    assert got.max() - got.min() > 150, "the range is kept, not squeezed"
