"""Small synthetic media for tests, made with ffmpeg's lavfi sources into a folder you give.

Every factory writes one file and returns its path (a :class:`~pathlib.Path`); they need only the
``ffmpeg`` binary (``ACE_FFMPEG`` or ``ffmpeg`` on PATH) and take well under a second for the default
sizes. Keep test media short and small: the reference machine has two shared cores.

Factories:

* :func:`make_video` — H.264 (+ AAC sine tone) with a fixed GOP and B-frames; moving content by default,
  solid colours when ``colours`` is given.
* :func:`make_counter_video` — every frame carries its own index as a 12-bit barcode (read it back
  with :func:`read_counter`), so a test can tell exactly which source frame it is looking at.
* :func:`make_scenes` — solid-colour scenes with cuts at known times (:func:`scene_changes`).
* :func:`make_audio` — audio only (no video track).
* :func:`make_truncated` — a file cut short mid-way (MPEG-TS by default, which stays decodable).
* :func:`make_empty` / :func:`make_garbage` — a zero-byte file / bytes that are no media at all.

Example::

    from tests.media_factory import make_counter_video, read_counter
    src = make_counter_video(tmp_path / "c.mp4", duration=4, fps=30, gop=30)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Bits of the frame-index barcode drawn by :func:`make_counter_video` (frames 0 .. 4095).
COUNTER_BITS = 12

#: A few colours with very different grey levels, for scene tests.
DEFAULT_COLOURS: tuple[str, ...] = ("red", "green", "blue", "white", "black", "yellow")


def ffmpeg_bin() -> str:
    """The ffmpeg binary the factories use (``ACE_FFMPEG`` or ``ffmpeg`` on PATH)."""
    exe = os.environ.get("ACE_FFMPEG") or shutil.which("ffmpeg")
    if not exe:
        raise RuntimeError("ffmpeg not found (set ACE_FFMPEG or install ffmpeg)")
    return exe


def _run(args: Sequence[str]) -> None:
    cmd = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def _x264_args(gop: int, bframes: int, preset: str, crf: int) -> list[str]:
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
    if bframes >= 2:
        params += ":b-pyramid=normal"
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-x264-params", params]


def _container_args(path: Path) -> list[str]:
    ext = path.suffix.lower()
    if ext in (".ts", ".m2ts"):
        return ["-f", "mpegts"]
    if ext in (".mp4", ".m4v", ".mov", ".m4a"):
        return ["-movflags", "+faststart"]
    return []


def _audio_input(duration: float, freq: float, sample_rate: int, noise: bool = False) -> list[str]:
    if noise:  # white noise: never repeats, so audio offsets show up in a cross-correlation
        return ["-f", "lavfi", "-i",
                f"anoisesrc=duration={duration}:sample_rate={sample_rate}:amplitude=0.3:seed=7"]
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={sample_rate}:duration={duration}"]


def _audio_codec(path: Path) -> list[str]:
    if path.suffix.lower() == ".wav":
        return ["-c:a", "pcm_s16le"]
    return ["-c:a", "aac", "-b:a", "64k"]


def make_video(
    path: str | os.PathLike,
    duration: float = 10.0,
    size: tuple[int, int] = (320, 240),
    fps: float = 30,
    gop: int = 60,
    audio: bool = True,
    colours: Sequence[str] | None = None,
    *,
    bframes: int = 3,
    tone: float = 440.0,
    sample_rate: int = 48000,
    preset: str = "veryfast",
    crf: int = 23,
    noise: bool = False,
) -> Path:
    """An H.264 video (``testsrc2``: moving pattern) with a keyframe every ``gop`` frames exactly.

    ``colours``: instead of the moving pattern, show these solid colours one after the other, each for
    ``duration / len(colours)`` seconds. ``audio``: add an AAC sine tone at ``tone`` Hz (white noise
    with ``noise``). ``bframes`` B-frames between references (0 for none). The container
    follows the suffix (``.mp4`` gets ``+faststart``, ``.ts`` is MPEG-TS, ``.mkv`` Matroska).
    """
    path = Path(path)
    w, h = size
    if colours:
        each = duration / len(colours)
        return make_scenes(path, [(c, each) for c in colours], size=size, fps=fps, gop=gop, audio=audio,
                           bframes=bframes, tone=tone, sample_rate=sample_rate, preset=preset, crf=crf,
                           noise=noise)
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration}"]
    if audio:
        args += _audio_input(duration, tone, sample_rate, noise)
    args += ["-map", "0:v"] + (["-map", "1:a"] if audio else [])
    args += _x264_args(gop, bframes, preset, crf)
    if audio:
        args += _audio_codec(path)
    args += ["-t", str(duration), *_container_args(path), str(path)]
    _run(args)
    return path


def make_counter_video(
    path: str | os.PathLike,
    duration: float = 4.0,
    size: tuple[int, int] = (320, 240),
    fps: float = 30,
    gop: int = 30,
    audio: bool = True,
    *,
    bframes: int = 3,
    tone: float = 440.0,
    sample_rate: int = 48000,
    preset: str = "veryfast",
    crf: int = 23,
    noise: bool = False,
) -> Path:
    """A video whose frame ``n`` shows ``n`` as a barcode in its top third (bit ``i`` of ``n`` is the
    ``i``-th of :data:`COUNTER_BITS` vertical stripes, white for 1) above a moving ``testsrc2`` pattern.

    Decode any frame (grey, any width) and :func:`read_counter` tells which source frame it is: the frame
    shown at time ``t`` is ``floor(t * fps)``. Frames beyond 4095 wrap around. Audio as in
    :func:`make_video`.
    """
    path = Path(path)
    w, h = size
    bar_h = max(8, (h // 3) // 2 * 2)
    bits = COUNTER_BITS
    # the barcode is drawn at a tiny size (cheap for geq) and scaled up with nearest-neighbour
    bar = (
        f"nullsrc=size={bits * 4}x4:rate={fps}:duration={duration},"
        f"geq=lum='255*mod(floor(N/pow(2\\,floor(X/4)))\\,2)':cb=128:cr=128,"
        f"scale={w}:{bar_h}:flags=neighbor,format=yuv420p[bar];"
        f"testsrc2=size={w}x{h}:rate={fps}:duration={duration},format=yuv420p[bg];"
        f"[bg][bar]overlay=0:0:shortest=1[v]"
    )
    args = ["-filter_complex", bar]
    if audio:
        args += _audio_input(duration, tone, sample_rate, noise)
        args += ["-map", "[v]", "-map", "0:a"]
    else:
        args += ["-map", "[v]"]
    args += _x264_args(gop, bframes, preset, crf)
    if audio:
        args += _audio_codec(path)
    args += ["-t", str(duration), *_container_args(path), str(path)]
    _run(args)
    return path


def read_counter(frame: np.ndarray) -> int:
    """The frame index drawn by :func:`make_counter_video`, read from a decoded frame (grey ``H×W``
    uint8, or ``H×W×3``) of any size that keeps the aspect ratio."""
    img = np.asarray(frame)
    if img.ndim == 3:
        img = img.mean(axis=2)
    h, w = img.shape[:2]
    # the bar is the top third; sample the middle row band of it
    band = img[max(0, h // 12): max(1, h // 4), :].astype(np.float32)
    n = 0
    for i in range(COUNTER_BITS):
        x0 = int((i + 0.25) * w / COUNTER_BITS)
        x1 = max(x0 + 1, int((i + 0.75) * w / COUNTER_BITS))
        if band[:, x0:x1].mean() > 128:
            n |= 1 << i
    return n


def scene_changes(scenes: Sequence[tuple[str, float]]) -> list[float]:
    """The times (seconds) at which :func:`make_scenes` switches colour."""
    out, t = [], 0.0
    for _, length in scenes[:-1]:
        t += length
        out.append(t)
    return out


def make_scenes(
    path: str | os.PathLike,
    scenes: Sequence[tuple[str, float]] = (("red", 2.0), ("green", 2.0), ("blue", 2.0)),
    size: tuple[int, int] = (320, 240),
    fps: float = 30,
    gop: int = 60,
    audio: bool = True,
    *,
    bframes: int = 3,
    tone: float = 440.0,
    sample_rate: int = 48000,
    preset: str = "veryfast",
    crf: int = 23,
    noise: bool = False,
) -> Path:
    """Solid-colour scenes ``(colour, seconds)`` back to back: hard cuts at :func:`scene_changes`.

    Scene lengths should be whole multiples of ``1/fps`` so that cuts fall on frames exactly.
    """
    path = Path(path)
    w, h = size
    parts, labels = [], []
    for i, (colour, length) in enumerate(scenes):
        parts.append(f"color=c={colour}:size={w}x{h}:rate={fps}:duration={length},format=yuv420p[c{i}]")
        labels.append(f"[c{i}]")
    graph = ";".join(parts) + ";" + "".join(labels) + f"concat=n={len(scenes)}:v=1:a=0[v]"
    total = sum(length for _, length in scenes)
    args = ["-filter_complex", graph]
    if audio:
        args += _audio_input(total, tone, sample_rate, noise)
        args += ["-map", "[v]", "-map", "0:a"]
    else:
        args += ["-map", "[v]"]
    args += _x264_args(gop, bframes, preset, crf)
    if audio:
        args += _audio_codec(path)
    args += ["-t", str(total), *_container_args(path), str(path)]
    _run(args)
    return path


def make_audio(
    path: str | os.PathLike,
    duration: float = 5.0,
    tone: float = 440.0,
    sample_rate: int = 48000,
    *,
    volume: float = 0.5,
) -> Path:
    """Audio only: a sine tone at ``volume`` (peak, 0..1). ``.wav`` gives PCM, anything else AAC
    (``.m4a``/``.mp4`` in MP4, ``.ts`` in MPEG-TS)."""
    path = Path(path)
    args = _audio_input(duration, tone, sample_rate)
    # lavfi's sine has amplitude 1/8; scale it to the requested peak
    args += ["-af", f"volume={volume * 8:.6f}", *_audio_codec(path), *_container_args(path), str(path)]
    _run(args)
    return path


def make_truncated(
    path: str | os.PathLike,
    duration: float = 6.0,
    keep: float = 0.5,
    size: tuple[int, int] = (320, 240),
    fps: float = 30,
    gop: int = 30,
    audio: bool = True,
) -> Path:
    """A video cut off after ``keep`` (fraction) of its bytes, as a crashed recorder leaves it.

    The container follows the suffix: ``.ts`` (the default use) stays decodable up to the cut;
    ``.mp4`` is written with its index at the end (no faststart), so a truncated MP4 cannot be opened.
    """
    path = Path(path)
    full = path.with_name(path.stem + ".full" + path.suffix)
    make_video(full, duration=duration, size=size, fps=fps, gop=gop, audio=audio)
    if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
        # rewrite with the index at the end (make_video writes faststart files)
        _run(["-i", str(full), "-c", "copy", "-map", "0", str(path) + ".tmp.mp4"])
        os.replace(str(path) + ".tmp.mp4", full)
    data = full.read_bytes()
    cut = int(len(data) * keep)
    if path.suffix.lower() in (".ts", ".m2ts"):
        cut -= cut % 188 - 100  # end inside a packet, like a real interrupted write
    path.write_bytes(data[:cut])
    full.unlink()
    return path


def make_empty(path: str | os.PathLike) -> Path:
    """A zero-byte file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def make_garbage(path: str | os.PathLike, size: int = 4096, seed: int = 0) -> Path:
    """``size`` random bytes that no demuxer recognises."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path
