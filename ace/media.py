"""ffmpeg adapters: probe a file, tap it for analysis (16 kHz audio, small grey frames), find its
keyframes, cut clips (stream copy or frame-accurate smart cut) and grab thumbnails.

Command lines are built with ffmpeg-python and run with :mod:`subprocess`. The binaries come from
``ACE_FFMPEG`` / ``ACE_FFPROBE`` when set, else from ``PATH``.

Conventions

* Times are float seconds **from the beginning of the file**: 0 is the file's first timestamp (ffprobe's
  ``format.start_time``), which is the clock ffmpeg's ``-ss`` uses. :attr:`MediaInfo.start_time` reports
  where that beginning sits on the file's own media clock.
* Local paths only. They reach ffmpeg as ``file:`` + absolute path, so a file called ``concat:x`` or
  ``http:...`` can never be read as another ffmpeg protocol. A missing file raises
  :class:`~ace.errors.InputError` before ffmpeg runs.
* Every ffmpeg/ffprobe failure raises :class:`~ace.errors.MediaError` carrying the tail of its stderr;
  a missing track raises :class:`~ace.errors.NoStreamError`.

Errors::

    InputError       the file (or the ffmpeg binary) does not exist, or an argument is out of range
    └── MediaError   ffmpeg/ffprobe could not read or write the media (``.stderr`` holds the tail)
        └── NoStreamError   no video (iter_frames, keyframes, thumbnail) / no audio (read_audio)

Decoding for analysis (:func:`iter_frames`) asks the decoder to skip what the detectors do not need:
measured on a 60 s 720p30 H.264 file (x264 veryfast, 2 s GOP, 3 B-frames), one decoder thread, in
media seconds per CPU second: full decode about 9x, ``-skip_frame noref`` 14x, ``-skip_frame bidir``
21x, keyframes only 95x (more decoder threads add no throughput on two busy cores).
Skipping B-frames leaves at most ``bframes + 1`` source frames between decoded pictures (0.13 s at
30 fps), so up to 6 analysis frames per second still get a fresh picture each; keyframes only would not.

Exact cuts (:func:`cut_exact`) re-encode only the partial GOPs at the edges; the edges, the copied GOPs
and the AAC audio are made by parallel ffmpeg runs, joined as MPEG-TS and muxed into MP4. A 30 s clip of
a 720p30 source with 2 s GOPs costs about 2 CPU-seconds (0.8 when both ends fall on keyframes).
"""

from __future__ import annotations

import bisect
import collections
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from ace.errors import InputError, MediaError, NoStreamError
from ace.types import MediaInfo

log = logging.getLogger("ace.media")

__all__ = [
    "probe",
    "read_audio",
    "iter_frames",
    "keyframes",
    "cut_fast",
    "cut_exact",
    "thumbnail",
    "ffmpeg_binary",
    "ffprobe_binary",
    "SKIP_MODES",
]

#: Values ``iter_frames(skip_bidir=...)`` accepts as a string: ffmpeg's ``-skip_frame`` levels.
SKIP_MODES: tuple[str, ...] = ("none", "default", "noref", "bidir", "nointra", "nokey")

#: Analysis frame rates up to this use ``-skip_frame bidir`` on H.264 (see the module docstring).
BIDIR_MAX_FPS = 6.0

#: Decoder threads for :func:`iter_frames`. One thread decodes the most frames per CPU second, which
#: matters when several analyses share two cores; pass ``threads=0`` for ffmpeg's automatic choice.
DECODE_THREADS = 1

#: x264 settings for the re-encoded parts of an exact cut. The parts are the GOP fragments at the
#: clip's edges, a second or two: "ultrafast" encodes them in half the CPU of "superfast" (a 28 s
#: 720p clip from MPEG-TS: 1.10 against 1.32 CPU-s for the whole cut) at the same CRF, in more bytes.
#: Live streams cut a clip for every moment, on the machine that analyses them.
EXACT_PRESET = "ultrafast"
EXACT_CRF = 18
#: ffmpeg's AAC coder for cut audio: "fast" costs a third of the default "twoloop" (0.55 vs 1.55
#: CPU-s for 30 s of 48 kHz stereo) and sounds the same at 128 kb/s.
AAC_CODER = "fast"
#: AAC bitrate of the audio in cut clips.
AUDIO_BITRATE = "128k"

_STDERR_KEEP = 8000  # characters of stderr kept for error messages
_SEEK_EPS = 0.0005  # added to a keyframe time we seek to, so that rounding never lands on the one before
_LOOK_BEHIND = 0.5  # packets read before a cut: the keyframe before it may sort after it by dts
_INDEXED_FORMATS = ("mov", "mp4", "matroska", "webm")
#: seconds read before the keyframe a re-encoded part starts from, in containers without an index
#: (MPEG-TS, FLV): their seeks land on a timestamp at or before the one asked for, not on a keyframe
_UNINDEXED_MARGIN = 3.0


# --------------------------------------------------------------------------------------------- binaries


def _binary(env: str, name: str) -> str:
    exe = os.environ.get(env)
    if exe:
        found = shutil.which(exe)
        if not found:
            raise InputError(f"{env}={exe!r} is not an executable {name}")
        return found
    found = shutil.which(name)
    if not found:
        raise InputError(f"{name} not found on PATH; install ffmpeg (e.g. apt-get install ffmpeg) or set {env}")
    return found


def ffmpeg_binary() -> str:
    """Path of the ffmpeg executable (``ACE_FFMPEG`` or ``ffmpeg`` on PATH); InputError if absent."""
    return _binary("ACE_FFMPEG", "ffmpeg")


def ffprobe_binary() -> str:
    """Path of the ffprobe executable (``ACE_FFPROBE`` or ``ffprobe`` on PATH); InputError if absent."""
    return _binary("ACE_FFPROBE", "ffprobe")


# ------------------------------------------------------------------------------------------------ paths


def _src_url(path: str | os.PathLike) -> str:
    """``file:`` URL of an existing local file; InputError when it does not exist or is a folder."""
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise InputError(f"no such file: {path}")
    if not p.is_file():
        raise InputError(f"not a file: {path}")
    return "file:" + str(p.resolve())


def _dst_url(path: str | os.PathLike) -> str:
    p = Path(os.fspath(path)).expanduser().absolute()
    if not p.parent.is_dir():
        raise InputError(f"no such folder: {p.parent}")
    return "file:" + str(p)


def _check_not_empty(path: str | os.PathLike) -> None:
    if Path(os.fspath(path)).stat().st_size == 0:
        raise MediaError(f"empty file (0 bytes), not media: {path}")


def _ts(t: float) -> str:
    """A time for ffmpeg's command line (microsecond precision, never exponent notation)."""
    return f"{t:.6f}"


# ------------------------------------------------------------------------------------------- processes


def _tail(stderr: bytes | str) -> str:
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    return stderr[-_STDERR_KEEP:]


def _compile(stream: Any, *global_args: str) -> list[str]:
    """ffmpeg-python's command line with our global options moved next to the executable."""
    args = stream.compile(cmd=ffmpeg_binary())
    return [args[0], "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *global_args, *args[1:]]


def _popen(cmd: list[str], **kw: Any) -> subprocess.Popen:
    log.debug("run: %s", shlex.join(cmd))
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
    except OSError as e:  # binary vanished or is not executable
        raise InputError(f"cannot run {cmd[0]}: {e}") from e


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    """Run to completion; MediaError with stderr's tail on a non-zero exit."""
    proc = _popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise MediaError(f"{what} failed (exit {proc.returncode})", _tail(err), proc.returncode)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


class _StderrTail(threading.Thread):
    """Drains a process's stderr so that it can never block on a full pipe; keeps the last lines."""

    def __init__(self, pipe: Any):
        super().__init__(daemon=True, name="ace-ffmpeg-stderr")
        self._pipe = pipe
        self._lines: collections.deque[bytes] = collections.deque(maxlen=200)
        self.start()

    def run(self) -> None:
        try:
            for line in iter(self._pipe.readline, b""):
                self._lines.append(line)
        except (OSError, ValueError):
            pass

    @property
    def text(self) -> str:
        return _tail(b"".join(self._lines))


# ------------------------------------------------------------------------------------------------ probe


@dataclass(frozen=True, slots=True)
class _Probe:
    """ffprobe's answer plus the bits of it the cutters need beyond :class:`MediaInfo`."""

    info: MediaInfo
    format_name: str
    start: float  # format start_time on the media clock: time 0 of this module
    video: dict | None
    audio: dict | None
    rotation: int  # degrees, as ffprobe's display matrix says; 0 when none


def _num(x: Any, default: float = 0.0) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def _rate(s: Any) -> float:
    try:
        num, _, den = str(s).partition("/")
        n, d = float(num), float(den or 1)
    except ValueError:
        return 0.0
    return n / d if d > 0 and n > 0 else 0.0


def _rotation(stream: dict) -> int:
    for sd in stream.get("side_data_list") or ():
        if "rotation" in sd:
            return int(round(_num(sd["rotation"]))) % 360
    return int(round(_num((stream.get("tags") or {}).get("rotate")))) % 360


def _ffprobe_json(path: str | os.PathLike, extra: Sequence[str] = ()) -> tuple[dict, bytes]:
    url = _src_url(path)
    _check_not_empty(path)
    cmd = [ffprobe_binary(), "-v", "error", "-hide_banner", "-print_format", "json",
           "-show_format", "-show_streams", *extra, url]
    log.debug("run: %s", shlex.join(cmd))
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as e:
        raise InputError(f"cannot run {cmd[0]}: {e}") from e
    if proc.returncode != 0:
        raise MediaError(f"ffprobe cannot read {path} (exit {proc.returncode})", _tail(proc.stderr), proc.returncode)
    try:
        return json.loads(proc.stdout or b"{}"), proc.stderr
    except json.JSONDecodeError as e:
        raise MediaError(f"ffprobe gave unreadable output for {path}", _tail(proc.stderr)) from e


_PROBES: collections.OrderedDict[tuple[str, int, int], _Probe] = collections.OrderedDict()
_PROBES_LOCK = threading.Lock()
_PROBES_MAX = 64


def _probe(path: str | os.PathLike) -> _Probe:
    """ffprobe's view of a file, remembered while the file is unchanged (same size and mtime):
    a show is probed by analysis, every cut and every thumbnail, and each ffprobe run costs
    0.1 s of start-up."""
    key = _probe_key(path)
    if key is not None:
        with _PROBES_LOCK:
            hit = _PROBES.get(key)
            if hit is not None:
                _PROBES.move_to_end(key)
                return hit
    data, stderr = _ffprobe_json(path)
    result = _parse_probe(path, data, stderr)
    _remember_probe(key, result)
    return result


def _probe_key(path: str | os.PathLike) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
        return (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except (OSError, TypeError, ValueError):
        return None


def _remember_probe(key: tuple[str, int, int] | None, result: _Probe) -> None:
    if key is None:
        return
    with _PROBES_LOCK:
        _PROBES[key] = result
        _PROBES.move_to_end(key)
        while len(_PROBES) > _PROBES_MAX:
            _PROBES.popitem(last=False)


def _parse_probe(path: str | os.PathLike, data: dict, stderr: bytes) -> _Probe:
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise MediaError(f"no audio or video stream in {path}", _tail(stderr))

    fmt_start = _num(fmt.get("start_time"))
    duration = _num(fmt.get("duration"))
    if duration <= 0:
        ends = []
        for s in (video, audio):
            if s is None:
                continue
            d = _num(s.get("duration"))
            if d <= 0 and s.get("duration_ts") not in (None, "N/A"):
                d = _num(s.get("duration_ts")) * _rate(s.get("time_base"))
            if d > 0:
                ends.append(_num(s.get("start_time"), fmt_start) - fmt_start + d)
        duration = max(ends, default=0.0)
    if duration <= 0:
        log.warning("ffprobe reports no duration for %s", path)

    width = height = 0
    fps = 0.0
    rotation = 0
    if video is not None:
        width, height = int(_num(video.get("width"))), int(_num(video.get("height")))
        rotation = _rotation(video)
        if rotation in (90, 270):
            width, height = height, width
        fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    first = video if video is not None else audio
    info = MediaInfo(
        path=str(path),
        duration=max(0.0, duration),
        has_video=video is not None,
        has_audio=audio is not None,
        width=width,
        height=height,
        fps=fps,
        video_codec=(video or {}).get("codec_name", ""),
        audio_codec=(audio or {}).get("codec_name", ""),
        start_time=_num(first.get("start_time"), fmt_start),
    )
    return _Probe(info, fmt.get("format_name", ""), fmt_start, video, audio, rotation)


def probe(path: str | os.PathLike) -> MediaInfo:
    """What ffprobe says about a local media file.

    ``duration`` comes from the container, else from the longest stream; ``width``/``height`` are the
    displayed size (swapped for 90°-rotated video); ``fps`` is the average frame rate.
    Raises InputError for a missing file, MediaError for an empty or unreadable one.
    """
    return _probe(path).info


# ------------------------------------------------------------------------------------------------ audio


def read_audio(
    path: str | os.PathLike,
    sr: int = 16000,
    start: float | None = None,
    duration: float | None = None,
) -> np.ndarray:
    """The first audio track resampled to ``sr`` Hz mono, as float32 samples in [-1, 1].

    ``start``/``duration`` (seconds) select a part; the first sample is at ``start`` exactly.
    Raises NoStreamError when the file has no audio.
    """
    if sr <= 0:
        raise InputError(f"sample rate must be positive, got {sr}")
    if duration is not None and duration <= 0:
        return np.zeros(0, dtype=np.float32)
    url = _src_url(path)
    _check_not_empty(path)
    in_kw: dict[str, Any] = {}
    if start:
        in_kw["ss"] = _ts(max(0.0, start))
    if duration is not None:
        in_kw["t"] = _ts(duration)
    inp = ffmpeg.input(url, **in_kw)
    cmd = _compile(inp["a:0"].output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=int(sr)))
    try:
        proc = _run(cmd, f"reading audio of {path}")
    except MediaError as e:
        if "matches no streams" in e.stderr:
            raise NoStreamError(f"no audio stream in {path}") from None
        raise
    out = proc.stdout
    samples = np.frombuffer(out, dtype="<f4", count=len(out) // 4).astype(np.float32, copy=True)
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples


# ----------------------------------------------------------------------------------------------- frames


def _frame_size(p: _Probe, width: int) -> tuple[int, int]:
    """Output size for analysis frames of ``p`` (see :func:`frame_size`)."""
    v = p.video or {}
    sar = _rate(v.get("sample_aspect_ratio", "1:1").replace(":", "/")) or 1.0
    try:
        return frame_size(p.info.width, p.info.height, sar, width, p.rotation)
    except ValueError:
        raise MediaError(f"video of {p.info.path} has no size") from None


def frame_size(src_w: int, src_h: int, sar: float, width: int, rotation: int = 0) -> tuple[int, int]:
    """Output size for analysis frames: ``width`` (even) and the height that keeps the displayed
    aspect ratio, rounded to an even number. ValueError for a picture with no size."""
    sar = sar if sar and sar > 0 else 1.0
    if rotation in (90, 270):
        disp_w, disp_h = src_w, src_h * sar
    else:
        disp_w, disp_h = src_w * sar, src_h
    if disp_w <= 0 or disp_h <= 0:
        raise ValueError("the picture has no size")
    out_w = max(2, int(width) // 2 * 2)
    out_h = max(2, int(round(out_w * disp_h / disp_w / 2.0)) * 2)
    return out_w, out_h


def _skip_mode(skip_bidir: bool | str, fps: float, p: _Probe) -> str:
    return skip_mode(skip_bidir, fps, p.info.fps, p.info.video_codec)


def skip_mode(skip_bidir: bool | str, fps: float, src_fps: float | None, codec: str | None) -> str:
    """ffmpeg's ``-skip_frame`` level for analysis frames at ``fps`` of a ``src_fps`` ``codec`` video
    (see :func:`iter_frames`)."""
    if isinstance(skip_bidir, str):
        if skip_bidir not in SKIP_MODES:
            raise ValueError(f"unknown skip mode {skip_bidir!r}; choose one of {', '.join(SKIP_MODES)}")
        return skip_bidir
    if not skip_bidir:
        return "default"
    if fps * 2 > (src_fps or 30.0):
        return "default"  # nearly every frame is wanted: skipping would leave gaps
    if fps <= BIDIR_MAX_FPS and codec == "h264":
        return "bidir"
    # other codecs may code P pictures as B slices (HEVC low-delay B): only drop unreferenced frames
    return "noref"


def iter_frames(
    path: str | os.PathLike,
    fps: float = 4.0,
    width: int = 160,
    skip_bidir: bool | str = True,
    start: float | None = None,
    duration: float | None = None,
    hwaccel: str | None = None,
    *,
    threads: int | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Low-res grey frames for analysis: ``(t, frame)`` with ``frame`` a ``H×W`` uint8 array
    (``W = width``, ``H`` keeps the displayed aspect ratio, both even) and ``t = start + i / fps``.

    Frame ``i`` is the latest decoded source picture shown at or before ``t``. With ``skip_bidir``
    the decoder skips what the detectors do not need: B-frames for H.264 at ``fps`` <= 6 (a frame may
    then come from up to ``bframes`` source frames earlier, 0.1 s at 30 fps with 3 B-frames),
    unreferenced frames otherwise; nothing when ``fps`` is over half the source rate. A string picks an
    ffmpeg ``-skip_frame`` level directly (one of :data:`SKIP_MODES`). ``hwaccel`` is passed to ffmpeg's
    ``-hwaccel`` (``cuda``, ``vaapi``, ``auto``...).

    Frames are read lazily; closing the generator early stops ffmpeg. A file that breaks off mid-way
    yields every frame that could be decoded and logs a warning; MediaError only when nothing could
    be decoded. NoStreamError when there is no video.
    """
    if not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")
    if width < 2:
        raise InputError(f"width must be at least 2, got {width}")
    p = _probe(path)
    if not p.info.has_video:
        raise NoStreamError(f"no video stream in {path}")
    out_w, out_h = _frame_size(p, width)
    skip = _skip_mode(skip_bidir, fps, p)
    t0 = max(0.0, start or 0.0)
    if duration is not None and duration <= 0:
        return iter(())

    in_kw: dict[str, Any] = {"threads": DECODE_THREADS if threads is None else int(threads)}
    if skip != "default":
        in_kw["skip_frame"] = skip
    if hwaccel:
        in_kw["hwaccel"] = hwaccel
    if t0 > 0:
        # decode from the keyframe before t0 and let the fps filter (start_time=0) drop what is
        # before t0: the frame shown at t0 (pts just below it) is then kept, which -ss's own
        # accurate seek would drop
        in_kw["ss"] = _ts(t0)
        in_kw["noaccurate_seek"] = None
    out_kw: dict[str, Any] = {"format": "rawvideo", "pix_fmt": "gray"}
    if duration is not None:
        out_kw["t"] = _ts(duration)
    stream = (
        ffmpeg.input(_src_url(path), **in_kw)[f"{p.video['index']}"]
        # round=up: output frame n is the last input frame with pts <= n / fps
        .filter("fps", fps=fps, round="up", start_time=0)
        .filter("scale", out_w, out_h, flags="area")
        .filter("format", "gray")
        .output("pipe:", **out_kw)
    )
    # a generator: ffmpeg starts at the first next() and stops when the generator is closed
    return _frame_reader(_compile(stream), str(path), out_w, out_h, t0, fps, skip)


def _frame_reader(cmd: list[str], path: str, w: int, h: int, t0: float, fps: float,
                  skip: str) -> Iterator[tuple[float, np.ndarray]]:
    proc = _popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    errs = _StderrTail(proc.stderr)
    size = w * h
    n = 0
    started = time.perf_counter()
    try:
        while True:
            buf = bytearray(size)
            view = memoryview(buf)
            got = 0
            while got < size:
                k = proc.stdout.readinto(view[got:])
                if not k:
                    break
                got += k
            if got < size:
                break
            yield t0 + n / fps, np.frombuffer(buf, dtype=np.uint8).reshape(h, w)
            n += 1
        rc = proc.wait()
        errs.join(timeout=5)
        if rc != 0:
            if n == 0:
                raise MediaError(f"decoding frames of {path} failed (exit {rc})", errs.text, rc)
            log.warning("decoding %s stopped early (exit %d) after %d frames: %s",
                        path, rc, n, errs.text.strip()[-300:])
        else:
            lines = [ln for ln in errs.text.splitlines() if ln.strip() and "Last message repeated" not in ln]
            if skip != "default":
                # skipped B-frames make the H.264 decoder complain about references it never needs
                lines = [ln for ln in lines if "mmco: unref short failure" not in ln]
            if lines:
                log.warning("decoding %s: %d frames, with errors: %s", path, n, "\n".join(lines)[-300:])
        log.debug("decoded %d frames of %s in %.2fs", n, path, time.perf_counter() - started)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()
        errs.join(timeout=5)
        proc.stderr.close()


# -------------------------------------------------------------------------------------------- keyframes


@dataclass(frozen=True, slots=True)
class _Packet:
    pts: float  # seconds from the beginning of the file
    dts: float
    key: bool


def _video_packets(path: str | os.PathLike, p: _Probe, start: float | None = None,
                   end: float | None = None, index: int | None = None) -> list[_Packet]:
    """Video packets in decode order (ffprobe, no decoding). With ``start``, reading begins at the
    keyframe at or before it; with ``end``, it stops after ``end``."""
    if p.video is None and index is None:
        raise NoStreamError(f"no video stream in {path}")
    stream = p.video["index"] if index is None else index
    cmd = [ffprobe_binary(), "-v", "error", "-hide_banner", "-select_streams", str(stream),
           "-show_entries", "packet=pts_time,dts_time,flags", "-of", "compact=p=0:nk=0"]
    if start is not None or end is not None:
        # no seek near the start: the first keyframe may decode before the file's start time
        a = "" if start is None or start < 0.5 else _ts(start + p.start)
        b = "" if end is None else "%" + _ts(end + p.start)
        cmd += ["-read_intervals", a + b]
    cmd.append(_src_url(path))
    proc = _run(cmd, f"reading packets of {path}")
    out: list[_Packet] = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        pk = _parse_packet(dict(kv.split("=", 1) for kv in line.split("|") if "=" in kv), p.start)
        if pk is not None:
            out.append(pk)
    return out


def _parse_packet(fields: dict, origin: float) -> _Packet | None:
    if "pts_time" not in fields:  # side data lines
        return None
    flags = fields.get("flags", "")
    if "D" in flags:  # edit-list pre-roll the demuxer marks for discarding
        return None
    pts, dts = fields.get("pts_time", "N/A"), fields.get("dts_time", "N/A")
    if pts == "N/A":
        return None
    pts_f = float(pts) - origin
    dts_f = float(dts) - origin if dts != "N/A" else pts_f
    return _Packet(pts_f, dts_f, "K" in flags)


def _probe_window(path: str | os.PathLike, start: float, end: float) -> tuple[_Probe, list[_Packet]]:
    """probe() plus the video packets from the keyframe at or before ``start`` to about ``end``, in
    one ffprobe run (times relative to the file's start, as everywhere here)."""
    key = _probe_key(path)
    a = max(0.0, start) if start >= 0.5 else 0.0  # no seek near the start (see _video_packets)
    interval = (f"+{_ts(a)}" if a > 0 else "") + f"%+{_ts(end - a + 3.0)}"
    data, stderr = _ffprobe_json(path, ["-show_entries", "packet=stream_index,pts_time,dts_time,flags",
                                        "-read_intervals", interval])
    for stream in data.get("streams") or ():
        stream.pop("nb_read_packets", None)  # what -show_entries packet adds; a plain probe has none
    p = _parse_probe(path, data, stderr)
    _remember_probe(key, p)  # the clip's thumbnail probes the same file next
    if p.video is None:
        return p, []
    vi = p.video["index"]
    pk = [x for x in (_parse_packet(f, p.start) for f in data.get("packets") or ()
                      if f.get("stream_index") == vi) if x is not None]
    last = max((x.pts for x in pk), default=-1.0)
    fd = 1.0 / (p.info.fps or 30.0)
    if last < end + fd and last < p.info.duration - 2 * fd:
        # the relative interval stopped early (long GOPs): read again on absolute times
        pk = _video_packets(path, p, start, end + 1.0)
    return p, pk


def _with_key_before(path: str | os.PathLike, p: _Probe, pk: list[_Packet], t: float,
                     end: float) -> list[_Packet]:
    """``pk``, or a longer read of packets up to ``end``, so that it holds the keyframe at or before
    ``t`` (long GOPs, or containers that seek only roughly)."""
    if t <= 0 or p.video is None or any(k.key and k.pts <= t + 1e-3 for k in pk):
        return pk
    for back in (20.0, 120.0, None):
        more = _video_packets(path, p, None if back is None else t - back, end)
        if any(k.key and k.pts <= t + 1e-3 for k in more):
            return more
    return pk


def keyframes(path: str | os.PathLike) -> list[float]:
    """Times of the video keyframes, sorted (from packet flags; nothing is decoded).
    NoStreamError when there is no video."""
    p = _probe(path)
    if not p.info.has_video:
        raise NoStreamError(f"no video stream in {path}")
    return sorted({round(pk.pts, 6) for pk in _video_packets(path, p) if pk.key})


# ------------------------------------------------------------------------------------------------- cuts


def _check_interval(p: _Probe, start: float, end: float) -> tuple[float, float]:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise InputError(f"cut bounds must be finite, got {start}..{end}")
    s = max(0.0, start)
    e = min(end, p.info.duration) if p.info.duration > 0 else end
    if e <= s:
        raise InputError(f"empty cut {start:.3f}..{end:.3f} of {p.info.path} ({p.info.duration:.3f}s long)")
    return s, e


def _maps(p: _Probe) -> list[str]:
    m = []
    if p.video is not None:
        m.append(f"0:{p.video['index']}")
    if p.audio is not None:
        m.append(f"0:{p.audio['index']}")
    return m


def cut_fast(src: str | os.PathLike, start: float, end: float, dst: str | os.PathLike) -> tuple[float, float]:
    """Stream-copy ``[start, end]`` of ``src`` into the MP4 ``dst``: no re-encoding, so it takes a
    blink, but the clip starts at the keyframe at or before ``start``. It ends after the last frame
    shown before ``end``, plus whatever frames that one needs to decode (a B-frame group is never cut
    in half).

    Returns the interval actually written, in source time.
    """
    t_begin = time.perf_counter()
    p, pk = _probe_window(src, start - _LOOK_BEHIND, end + 1.0)
    s, e = _check_interval(p, start, end)
    pk = _with_key_before(src, p, pk, s, e + 1.0)
    out_kw: dict[str, Any] = {"t": _ts(e - s)}
    seek, s_actual, e_actual = s, s, e
    keys = [i for i, k in enumerate(pk) if k.key]
    if p.video is not None and keys:
        before = [i for i in keys if pk[i].pts <= s + 1e-3]
        i0 = max(before, key=lambda i: pk[i].pts) if before else min(keys, key=lambda i: pk[i].pts)
        key = pk[i0]
        fd = 1.0 / (p.info.fps or 30.0)
        s_actual = max(0.0, key.pts)
        seek = s_actual + _SEEK_EPS
        if not any(n in p.format_name for n in _INDEXED_FORMATS):
            # no index: seek well before, then drop the packets that precede the keyframe in decode
            # order (when copying, ffmpeg's output -ss compares decode times)
            seek = max(0.0, key.pts - 3.0)
            drop_before = key.dts - fd / 2 - seek
            if drop_before > 0:
                out_kw["ss"] = _ts(drop_before)
        n, e_actual = _closed_prefix(pk[i0:], e, fd)
        out_kw["frames:v"] = n
        out_kw["t"] = _ts(e_actual - s_actual)
    # no -ss at all from the start: seeking to 0 may skip a first keyframe decoded before it
    inp = ffmpeg.input(_src_url(src), **({"ss": _ts(seek)} if seek > 0.001 else {}))
    streams = [inp[m.split(":", 1)[1]] for m in _maps(p)]
    out = ffmpeg.output(*streams, _dst_url(dst), format="mp4", c="copy", avoid_negative_ts="make_zero",
                        movflags="+faststart", **out_kw)
    _run(_compile(out), f"cutting {src}")
    log.info("fast cut %s %.3f-%.3f -> %.3f-%.3f in %.2fs", src, start, end, s_actual, e_actual,
             time.perf_counter() - t_begin)
    return s_actual, e_actual


def _closed_prefix(seq: list[_Packet], end: float, fd: float) -> tuple[int, float]:
    """How many packets (decode order, from a keyframe) to copy so that every frame shown before
    ``end`` is in, and no frame is missing between them; and the end time of the last frame."""
    if not seq:
        return 0, end
    last_needed = max((i for i, k in enumerate(seq) if k.pts < end - fd / 2), default=0)
    suffix_min = [math.inf] * (len(seq) + 1)
    for i in range(len(seq) - 1, -1, -1):
        suffix_min[i] = min(seq[i].pts, suffix_min[i + 1])
    j, top = 0, -math.inf
    for j, k in enumerate(seq):
        top = max(top, k.pts)
        if j >= last_needed and top < suffix_min[j + 1]:
            break
    return j + 1, top + fd


@dataclass(frozen=True, slots=True)
class _Part:
    kind: str  # "enc" (re-encode) or "copy" (whole GOPs, stream copy)
    start: float  # first frame's pts
    end: float  # pts of the frame after the last one
    frames: int
    seek: float  # a keyframe at or before start (enc) / dts of the first packet (copy)


#: Offset (s) added to every timestamp of the intermediate MPEG-TS parts, so that the negative decode
#: timestamps of B-frame streams near 0 stay positive.
_PART_TS_OFFSET = 10.0


def _x264_matching(p: _Probe, delay: int | None) -> dict[str, Any]:
    """Encoder options. With ``delay`` (the source's B-frame reorder delay in frames) the part matches
    the copied GOPs around it (profile, level, pixel format, colours, decode delay)."""
    v = p.video or {}
    kw: dict[str, Any] = {"c:v": "libx264", "preset": EXACT_PRESET, "crf": EXACT_CRF}
    pix_fmt = v.get("pix_fmt") or "yuv420p"
    if delay is None and pix_fmt not in ("yuv420p", "yuvj420p"):
        pix_fmt = "yuv420p"  # a whole re-encode: the most widely playable format
    kw["pix_fmt"] = pix_fmt
    params = ["scenecut=0", "open-gop=0"]
    if delay is not None:
        bframes, pyramid = {0: (0, "none"), 1: (1, "none"), 2: (3, "normal")}[delay]
        params += [f"bframes={bframes}", f"b-pyramid={pyramid}"]
        prof = (v.get("profile") or "").lower()
        profile = {"constrained baseline": "baseline", "baseline": "baseline", "main": "main",
                   "high": "high", "high 10": "high10", "high 4:2:2": "high422",
                   "high 4:4:4 predictive": "high444"}.get(prof)
        if profile and not (profile == "baseline" and bframes):
            kw["profile:v"] = profile
        level = int(_num(v.get("level")))
        if level > 0:
            kw["level"] = f"{level / 10:.1f}"
        for key, opt in (("color_range", "color_range"), ("color_space", "colorspace"),
                         ("color_transfer", "color_trc"), ("color_primaries", "color_primaries")):
            val = v.get(key)
            if val and val not in ("unknown", "reserved"):
                kw[opt] = val
    kw["x264-params"] = ":".join(params)
    return kw


#: the fewest frames a re-encoded head before the first copied keyframe may hold (see cut_exact)
_MIN_HEAD_FRAMES = 3


def _plan_parts(pk: list[_Packet], s: float, e: float, fd: float, at_eof: bool = False) -> list[_Part] | None:
    """Split ``[s, e)`` (on frame times) into re-encoded edges and stream-copied whole GOPs;
    None when no keyframe falls inside. ``at_eof``: ``e`` is the end of the stream, which closes
    the last GOP like a keyframe would."""
    frames = sorted(k.pts for k in pk)
    keys = sorted(k.pts for k in pk if k.key)
    if at_eof:
        keys.append(e)
    key_dts = {k.pts: k.dts for k in pk if k.key}
    eps = fd / 2

    def count(a: float, b: float) -> int:
        return bisect.bisect_left(frames, b - eps) - bisect.bisect_left(frames, a - eps)

    inside = [k for k in keys if s - eps <= k <= e + eps]
    starts = [k for k in inside if k < e - eps]
    if not starts:
        return None
    k1, k_last = starts[0], inside[-1]
    parts: list[_Part] = []
    if k1 > s + eps:  # head: re-encode [s, k1), decoding from the keyframe before s
        before = [k for k in keys if k <= s + eps]
        if not before:
            return None
        parts.append(_Part("enc", s, k1, count(s, k1), before[-1]))
    if k_last >= e - eps:  # a keyframe (or the end of the stream) right at e: copy up to it
        parts.append(_Part("copy", k1, e, count(k1, e), key_dts[k1]))
    else:
        if k_last > k1 + eps:
            parts.append(_Part("copy", k1, k_last, count(k1, k_last), key_dts[k1]))
        parts.append(_Part("enc", k_last, e, count(k_last, e), k_last))
    return parts


def _part_cmd(src: str | os.PathLike, p: _Probe, part: _Part, dst: Path, delay: int | None,
              margin: float, threads: int) -> list[str]:
    """ffmpeg command writing one part as MPEG-TS on the source's own clock (``-copyts``) shifted
    by :data:`_PART_TS_OFFSET`."""
    vi = p.video["index"]
    fd = 1.0 / (p.info.fps or 30.0)
    mux_kw: dict[str, Any] = {"format": "mpegts", "muxdelay": 0, "muxpreload": 0,
                              "avoid_negative_ts": "disabled"}
    if part.kind == "copy":
        # ffmpeg drops copied packets whose dts is before the output -ss and shifts the rest by it;
        # -output_ts_offset undoes the shift. Packets before the keyframe have smaller dts.
        a_rel = part.seek - fd / 2
        seek = max(0.0, min(part.start - margin, a_rel))
        inp = ffmpeg.input(_src_url(src), **({"ss": _ts(seek)} if seek > 0.001 else {}))
        a_abs = a_rel + p.start
        out = inp[str(vi)].output(_dst_url(dst), vcodec="copy", ss=_ts(a_abs),
                                  output_ts_offset=_ts(_PART_TS_OFFSET + a_abs),
                                  **{"frames:v": part.frames}, **mux_kw)
    else:
        seek = max(0.0, part.seek - margin + _SEEK_EPS)
        in_kw: dict[str, Any] = {"noaccurate_seek": None}
        if seek > 0.001:
            in_kw["ss"] = _ts(seek)
        if delay is not None:
            in_kw["noautorotate"] = None
        inp = ffmpeg.input(_src_url(src), **in_kw)
        a, b = part.start + p.start - fd / 2, part.end + p.start - fd / 2
        stream = inp[str(vi)].trim(start=_ts(a), end=_ts(b))
        if delay is None:  # whole re-encode of any codec: x264 wants even sizes
            stream = stream.filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2")
        out = stream.output(_dst_url(dst), fps_mode="passthrough", enc_time_base="-1", threads=threads,
                            output_ts_offset=_ts(_PART_TS_OFFSET), **_x264_matching(p, delay), **mux_kw)
    return _compile(out, "-copyts")


def _join_ts(files: list[Path], dst: Path) -> list[tuple[int, int]]:
    """Concatenate MPEG-TS parts whose timestamps already continue each other, renumbering the
    packets' continuity counters so the joins read as one clean stream. Returns (pts, dts) in 90 kHz
    ticks of each video PES (ffmpeg's muxer writes one per frame), in file order."""
    counters: dict[int, int] = {}
    frames: list[tuple[int, int]] = []

    def stamp(b: bytearray, i: int) -> int:
        return (((b[i] >> 1) & 7) << 30 | b[i + 1] << 22 | (b[i + 2] >> 1) << 15 | b[i + 3] << 7 | b[i + 4] >> 1)

    with open(dst, "wb") as out:
        for f in files:
            data = bytearray(f.read_bytes())
            if len(data) % 188:
                raise MediaError(f"{f.name} is not MPEG-TS (size {len(data)})")
            for off in range(0, len(data), 188):
                if data[off] != 0x47:
                    raise MediaError(f"{f.name} is not MPEG-TS (lost sync at byte {off})")
                pid = (data[off + 1] & 0x1F) << 8 | data[off + 2]
                afc = data[off + 3] >> 4 & 3
                if afc & 1:  # the counter counts packets with payload
                    cc = (counters.get(pid, -1) + 1) & 15
                    counters[pid] = cc
                    data[off + 3] = (data[off + 3] & 0xF0) | cc
                else:
                    continue
                if not data[off + 1] & 0x40:  # payload_unit_start_indicator
                    continue
                pos = off + 4 + (1 + data[off + 4] if afc & 2 else 0)
                if pos + 19 > off + 188 or data[pos:pos + 3] != b"\x00\x00\x01" or not 0xE0 <= data[pos + 3] <= 0xEF:
                    continue
                flags = data[pos + 7] >> 6
                if flags & 2:
                    pts = stamp(data, pos + 9)
                    frames.append((pts, stamp(data, pos + 14) if flags == 3 else pts))
            out.write(data)
    return frames


def _parts_fit(p: _Probe, parts: list[_Part], pkts: list[tuple[int, int]], fd: float) -> bool:
    """True when the joined parts hold exactly the planned frames, each part where it belongs, and
    decode timestamps rise across the joins (so the stream muxes into MP4 and decodes cleanly)."""
    if len(pkts) != sum(pt.frames for pt in parts):
        log.debug("joined parts hold %d frames, planned %s", len(pkts), [pt.frames for pt in parts])
        return False
    tol = fd / 4 * 90000
    i = 0
    last_dts = None
    for part in parts:
        chunk = pkts[i:i + part.frames]
        i += part.frames
        pts_sorted = sorted(pts for pts, _ in chunk)
        first = (part.start + p.start + _PART_TS_OFFSET) * 90000
        last = (part.end - fd + p.start + _PART_TS_OFFSET) * 90000
        if abs(pts_sorted[0] - first) > tol or abs(pts_sorted[-1] - last) > tol:
            log.debug("part %s %.3f-%.3f holds frames %s..%s", part.kind, part.start, part.end,
                      pts_sorted[0] / 90000, pts_sorted[-1] / 90000)
            return False
        for pts, dts in chunk:
            if dts > pts or (last_dts is not None and dts <= last_dts):
                log.debug("part %s %.3f-%.3f breaks decode order", part.kind, part.start, part.end)
                return False
            last_dts = dts
    return True


def _run_parallel(cmds: list[list[str]], what: str) -> None:
    procs = []
    try:
        for cmd in cmds:
            procs.append(_popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        failed = None
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0 and failed is None:
                failed = MediaError(f"{what} failed (exit {proc.returncode})", _tail(err), proc.returncode)
        if failed:
            raise failed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def cut_exact(src: str | os.PathLike, start: float, end: float, dst: str | os.PathLike) -> tuple[float, float]:
    """Frame-accurate cut of ``[start, end]`` of ``src`` into the MP4 ``dst`` (``+faststart``).

    A smart cut: whole GOPs inside the interval are stream-copied and only the partial GOPs at the
    edges are re-encoded (libx264 with the source's size, pixel format, profile, level and B-frame
    delay, so the parts join into one valid stream). Audio is re-encoded to AAC for exactly the same
    interval. When no keyframe falls inside, the source is not H.264, or the parts would not join
    cleanly, the whole interval is re-encoded instead.

    ``start``/``end`` are snapped to the nearest frame times (a start one or two frames before a
    keyframe moves to the third frame before it, see ``_MIN_HEAD_FRAMES``); returns that interval (source time):
    the clip's first frame is the source frame at the returned start, and it holds every frame up to
    the returned end.
    """
    t_begin = time.perf_counter()
    p, pk = _probe_window(src, start - 3.0, end + 1.0)
    s, e = _check_interval(p, start, end)
    pk = _with_key_before(src, p, pk, s, e + 1.0)
    dst = Path(os.fspath(dst))
    _dst_url(dst)
    if p.video is None:
        return _encode_audio_only(src, p, s, e, dst)

    fps = p.info.fps or 30.0
    fd = 1.0 / fps
    # containers without an index (MPEG-TS, FLV) seek only roughly: start reading earlier
    margin = 0.0 if any(n in p.format_name for n in _INDEXED_FORMATS) else _UNINDEXED_MARGIN
    frames = sorted(k.pts for k in pk)
    if not frames:
        raise MediaError(f"no video frames in {src} between {s:.3f} and {e:.3f}")

    # snap to frame times: the first frame is the one nearest start, the clip ends at the frame nearest end
    ends = frames + [frames[-1] + fd]
    s_snap = round(min(frames, key=lambda t: (abs(t - s), t)), 6)
    e_snap = round(min((t for t in ends if t > s_snap + fd / 2), key=lambda t: (abs(t - e), t)), 6)
    at_eof = e_snap > frames[-1]  # the packets read reach past `end` unless the stream ends first

    parts: list[_Part] | None = None
    delay = None
    if p.info.video_codec == "h264" and p.rotation == 0:
        parts = _plan_parts(pk, s_snap, e_snap, fd, at_eof)
        if parts and parts[0].kind == "enc" and parts[0].frames < _MIN_HEAD_FRAMES:
            # a head of one or two frames re-encoded ahead of a keyframe cannot take the source's
            # B-frame delay, so its timestamps would run backwards into the copied GOPs: start the
            # clip up to two frames earlier instead (it keeps every frame asked for)
            earlier = [t for t in frames if t < s_snap - fd / 2]
            need = _MIN_HEAD_FRAMES - parts[0].frames
            if len(earlier) >= need:
                s_snap = round(earlier[-need], 6)
                parts = _plan_parts(pk, s_snap, e_snap, fd, at_eof)
        keys = [k for k in pk if k.key and k.pts >= s_snap - fd / 2]
        if parts and keys:
            d = round((keys[0].pts - keys[0].dts) * fps)
            delay = d if d in (0, 1, 2) else None
        if delay is None:
            parts = None

    with tempfile.TemporaryDirectory(prefix=".ace-cut-", dir=dst.parent) as tmp:
        tmpdir = Path(tmp)
        audio = tmpdir / "audio.m4a" if p.audio is not None else None
        audio_cmd = [_audio_cmd(src, p, s_snap, e_snap, audio)] if audio else []
        files: list[Path] = []
        if parts:
            files = [tmpdir / f"part{i}.ts" for i in range(len(parts))]
            n_enc = sum(pt.kind == "enc" for pt in parts)
            threads = 1 if n_enc > 1 else 0
            cmds = [_part_cmd(src, p, pt, f, delay, margin, threads) for pt, f in zip(parts, files)]
            try:
                _run_parallel(cmds + audio_cmd, f"cutting {src}")
                audio_cmd = []
                joined = tmpdir / "video.ts"
                if not _parts_fit(p, parts, _join_ts(files, joined), fd):
                    log.info("smart cut of %s %.3f-%.3f does not join cleanly; re-encoding it whole",
                             src, s_snap, e_snap)
                    parts = None
            except MediaError as err:  # e.g. a profile this libx264 cannot encode
                log.info("smart cut of %s %.3f-%.3f failed; re-encoding it whole: %s", src, s_snap, e_snap, err)
                parts = None
        mode = "smart" if parts else "re-encode"
        if not parts:
            key_before = max((k.pts for k in pk if k.key and k.pts <= s_snap + fd / 2), default=0.0)
            n = sum(1 for t in frames if s_snap - fd / 2 <= t < e_snap - fd / 2)
            parts = [_Part("enc", s_snap, e_snap, n, key_before)]
            joined = tmpdir / "whole.ts"
            _run_parallel([_part_cmd(src, p, parts[0], joined, None, margin, 0)] + audio_cmd,
                          f"cutting {src}")
        _mux(joined, audio, dst)
    log.info("exact cut (%s: %s) %s %.3f-%.3f -> %.3f-%.3f in %.2fs", mode,
             "+".join(f"{pt.kind} {pt.frames}" for pt in parts), src, start, end, s_snap, e_snap,
             time.perf_counter() - t_begin)
    return s_snap, e_snap


def _audio_cmd(src: str | os.PathLike, p: _Probe, s: float, e: float, dst: Path) -> list[str]:
    """AAC of exactly [s, e] of the first audio track (MP4, whose edit list hides the encoder delay)."""
    inp = ffmpeg.input(_src_url(src), ss=_ts(s), t=_ts(e - s))
    out = inp[str(p.audio["index"])].output(_dst_url(dst), format="mp4", acodec="aac",
                                            aac_coder=AAC_CODER, **{"b:a": AUDIO_BITRATE})
    return _compile(out)


def _mux(video_ts: Path, audio: Path | None, dst: Path) -> None:
    """Mux the joined video (and the cut audio) into the final MP4, moov atom first."""
    streams = [ffmpeg.input(_src_url(video_ts))["v:0"]]
    if audio is not None:
        streams.append(ffmpeg.input(_src_url(audio))["a:0"])
    out = ffmpeg.output(*streams, _dst_url(dst), format="mp4", c="copy", movflags="+faststart")
    _run(_compile(out), f"writing {dst.name}")


def _encode_audio_only(src: str | os.PathLike, p: _Probe, s: float, e: float, dst: Path) -> tuple[float, float]:
    inp = ffmpeg.input(_src_url(src), ss=_ts(s), t=_ts(e - s))
    out = inp[str(p.audio["index"])].output(_dst_url(dst), format="mp4", acodec="aac", aac_coder=AAC_CODER,
                                            movflags="+faststart", **{"b:a": AUDIO_BITRATE})
    _run(_compile(out), f"cutting {src}")
    return s, e


# ------------------------------------------------------------------------------------------- thumbnail


def thumbnail(src: str | os.PathLike, t: float, dst: str | os.PathLike, width: int = 480) -> None:
    """Write the frame shown at ``t`` (clamped to the video) as a JPEG ``width`` pixels wide.
    NoStreamError when there is no video."""
    p = _probe(src)
    if p.video is None:
        raise NoStreamError(f"no video stream in {src}")
    fd = 1.0 / (p.info.fps or 30.0)
    t = min(max(0.0, t), max(0.0, p.info.duration - fd))
    inp = ffmpeg.input(_src_url(src), ss=_ts(t))
    out = (
        inp[str(p.video["index"])]
        .filter("scale", max(2, int(width) // 2 * 2), -2)
        .output(_dst_url(dst), format="image2", vcodec="mjpeg", update=1, **{"frames:v": 1, "q:v": 3})
    )
    _run(_compile(out), f"thumbnail of {src} at {t:.3f}s")
    if not Path(os.fspath(dst)).is_file() or Path(os.fspath(dst)).stat().st_size == 0:
        raise MediaError(f"no frame at {t:.3f}s in {src}")
