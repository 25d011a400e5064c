"""One pass over a live segment, in this process: its clock, its audio and its analysis frames.

The batch pipeline reads a show with one ffmpeg process per kind of data, which costs nothing next
to an hour of video. A live stream hands over a 2 s segment at a time, and starting ffmpeg or
ffprobe costs about 60 ms of CPU each (measured: ``ffmpeg -version`` alone takes 0.06 s of CPU on
the reference machine), so probing, reading the audio and reading the frames of every segment in
three processes cost about 0.32 s of CPU per segment and stream, most of it start-up. Here the
segment is demuxed once with PyAV (the FFmpeg libraries, which faster-whisper already depends on):
the same decoders and resampler, and about 0.06 s of CPU for a 720p30 segment at the
default analysis rate.

What it gives is what the ffmpeg command lines of :mod:`ace.media` give:

* times on the media clock of :mod:`ace.media` (seconds after the file's ``format.start_time``);
* audio: the first audio track resampled to 16 kHz mono float32 in [-1, 1] from its first sample
  (:func:`ace.media.read_audio`);
* frames: grey, ``width`` wide with the displayed aspect ratio (:func:`ace.media.frame_size`),
  scaled with area averaging (:func:`grey`: ffmpeg's within a few grey levels), on the grid
  ``i / fps`` where frame ``i`` is the latest decoded picture shown at or before ``i / fps``
  (ffmpeg's ``fps=round=up:start_time=0``), with the same frame skipping
  (:func:`ace.media.skip_mode`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ace import media
from ace.errors import MediaError

log = logging.getLogger("ace.live")

SAMPLE_RATE = 16000
#: PyAV's names for ffmpeg's -skip_frame levels
_SKIP = {"default": "DEFAULT", "noref": "NONREF", "bidir": "BIDIR", "nokey": "NONKEY"}
_EPS = 1e-6


@dataclass(frozen=True)
class SegmentTimes:
    """Where a segment file's streams start, on the media clock's source timestamps (seconds)."""

    start: float  #: the file's time 0 (``format.start_time``)
    video: float | None  #: first video timestamp; None without video
    audio: float | None  #: first audio timestamp; None without audio


@dataclass
class SegmentMedia:
    times: SegmentTimes
    audio: np.ndarray | None = None  #: 16 kHz mono float32; None without audio
    #: (seconds after the file's time 0, grey frame) on the ``i / fps`` grid
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    decoded_frames: int = 0  #: pictures the decoder produced (the rest were skipped)


# segment times are read again when a clip joins the segments: keep the last few hundred
_TIMES: OrderedDict[tuple[str, int, int], SegmentTimes] = OrderedDict()
_TIMES_MAX = 512
_TIMES_LOCK = threading.Lock()  # a stream's clips are cut in another thread than its analysis


def _key(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return (os.fspath(path), st.st_mtime_ns, st.st_size)


def _remember(path: str, times: SegmentTimes) -> None:
    try:
        key = _key(path)
    except OSError:
        return
    with _TIMES_LOCK:
        _TIMES[key] = times
        _TIMES.move_to_end(key)
        while len(_TIMES) > _TIMES_MAX:
            _TIMES.popitem(last=False)


def _seconds(ts: int | None, base: Fraction | None) -> float | None:
    return None if ts is None or base is None else float(ts * base)


def _open(path: str):
    import av

    if not Path(path).is_file():
        raise MediaError(f"segment {path} does not exist")
    if Path(path).stat().st_size == 0:
        raise MediaError(f"segment {path} is empty")
    try:
        return av.open(os.fspath(path), mode="r")
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot read segment {path}: {e}") from None


def _times(container) -> SegmentTimes:
    v = container.streams.video[0] if container.streams.video else None
    a = container.streams.audio[0] if container.streams.audio else None
    vt = _seconds(v.start_time, v.time_base) if v is not None else None
    at = _seconds(a.start_time, a.time_base) if a is not None else None
    fmt = container.start_time / 1e6 if container.start_time is not None else None
    if fmt is None:
        fmt = min((t for t in (vt, at) if t is not None), default=0.0)
    return SegmentTimes(fmt, vt, at)


def segment_times(path: str | os.PathLike) -> SegmentTimes:
    """The segment's start times (remembered per file; a decoded segment is already known)."""
    path = os.fspath(path)
    try:
        key = _key(path)
        with _TIMES_LOCK:
            hit = _TIMES.get(key)
    except OSError:
        hit = None
    if hit is not None:
        return hit
    container = _open(path)
    try:
        times = _times(container)
    finally:
        container.close()
    _remember(path, times)
    return times


def decode_segment(path: str | os.PathLike, *, audio: bool = True, fps: float | None = 4.0, width: int = 160,
                   skip: bool | str = True) -> SegmentMedia:
    """Demux and decode one segment once (see the module docstring). ``fps=None`` reads no frames.

    A segment that breaks off mid-way gives what could be decoded and logs a warning; MediaError
    when the file cannot be opened or nothing in it can be decoded."""
    import av

    path = os.fspath(path)
    container = _open(path)
    try:
        times = _times(container)
        _remember(path, times)
        out = SegmentMedia(times)
        streams = []
        a = container.streams.audio[0] if (audio and container.streams.audio) else None
        v = container.streams.video[0] if (fps and container.streams.video) else None
        resampler = None
        chunks: list[np.ndarray] = []
        if a is not None:
            streams.append(a)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        grid: _Grid | None = None
        if v is not None:
            if not fps > 0:
                raise ValueError(f"fps must be positive, got {fps}")
            cc = v.codec_context
            cc.thread_count = 1  # a stream is one of many: one thread each (ace.media.DECODE_THREADS)
            rate = v.average_rate or v.guessed_rate
            src_fps = float(rate) if rate else None
            mode = media.skip_mode(skip, fps, src_fps, cc.name)
            cc.skip_frame = _SKIP[mode]
            try:
                w, h = media.frame_size(cc.width, cc.height, float(v.sample_aspect_ratio or 1), width)
            except ValueError:
                raise MediaError(f"the video of {path} has no size") from None
            grid = _Grid(fps, w, h, times.start, 1.0 / src_fps if src_fps else 1.0 / 30)
            streams.append(v)
        if not streams:
            return out
        broke = None
        try:
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream is v:
                        out.decoded_frames += 1
                        grid.add(frame, out.frames)
                    else:
                        chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
        except av.error.FFmpegError as e:
            broke = e
        if resampler is not None:
            try:
                chunks.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
            except av.error.FFmpegError:
                pass
        if grid is not None:
            grid.finish(out.frames)
        if a is not None:
            x = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
            np.clip(x, -1.0, 1.0, out=x)
            out.audio = x
        if broke is not None:
            got = (out.audio is not None and out.audio.size > 0) or bool(out.frames)
            if not got:
                raise MediaError(f"cannot decode segment {path}: {broke}")
            log.warning("segment %s breaks off: %s (kept what was decoded)", path, broke)
        return out
    finally:
        container.close()


#: 8-bit pixel formats whose first plane is the full-size luma: their grey picture is that plane
_LUMA_FIRST = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21")
#: limited-range luma (16-235) to full-range grey, as swscale maps it
_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG


def grey(frame, w: int, h: int) -> np.ndarray:
    """The decoded picture as a ``h`` x ``w`` full-range grey image, scaled by area averaging.

    For 8-bit YUV this is the luma plane, resized by OpenCV and mapped to full range: what swscale's
    ``gray`` with ``AREA`` gives, 0.3 grey levels apart on average and at most 5 (in one pixel of
    100,000) on the public recordings in the evaluation data, in a fifth less of the segment's
    decoding CPU (the swscale call was a third of it). Other formats go through swscale."""
    import cv2

    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[: frame.height, : frame.width]
        img = cv2.resize(luma, (w, h), interpolation=cv2.INTER_AREA)
        if frame.format.name.startswith("yuvj") or getattr(frame, "color_range", 0) == _JPEG_RANGE:
            return img
        return cv2.LUT(img, _FULL_RANGE)
    img = frame.reformat(width=w, height=h, format="gray", interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(img[:h, :w])


class _Grid:
    """ffmpeg's ``fps=round=up:start_time=0`` filter: output ``i`` at ``i / fps`` is the latest
    picture shown at or before it (the first picture before the first one); the grid runs to the
    last picture's end. Each picture is scaled once, however often it is repeated."""

    def __init__(self, fps: float, w: int, h: int, origin: float, frame_s: float):
        self.fps, self.w, self.h, self.origin, self.frame_s = fps, w, h, origin, frame_s
        self.i = 0
        self.last = None  # (time, frame, scaled or None)

    def _scaled(self, entry) -> np.ndarray:
        if entry[2] is None:
            entry[2] = grey(entry[1], self.w, self.h)
            entry[1] = None  # the decoded picture is no longer needed
        return entry[2]

    def add(self, frame, out: list) -> None:
        t = frame.time
        if t is None:
            return
        t -= self.origin
        if self.last is not None and t <= self.last[0] + _EPS:
            return  # not later than the previous picture (a broken timestamp): keep the earlier one
        entry = [t, frame, None]
        while self.i / self.fps < t - _EPS:
            out.append((self.i / self.fps, self._scaled(self.last if self.last is not None else entry)))
            self.i += 1
        self.last = entry

    def finish(self, out: list) -> None:
        if self.last is None:
            return
        end = self.last[0] + self.frame_s
        while self.i / self.fps < end - _EPS:
            out.append((self.i / self.fps, self._scaled(self.last)))
            self.i += 1
