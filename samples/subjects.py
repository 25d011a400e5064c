"""A test video for reframing: a face moving across a 16:9 frame, with cuts and a two-subject shot,
and where the face truly is on every frame.

The face is a real photograph (Grace Hopper's US Navy portrait, in the public domain, which
matplotlib ships as sample data), pasted over a textured background that changes at each cut.
Shots of the default script (seconds):

====================  ================================================================
0-4                   still, left of centre (crop jitter on a still subject)
4-10                  walks right across the frame and bobs a little
10-13                 still, right of centre
13 (cut)              new background; the face at the left edge, still until 16
16-20                 walks to the centre
20 (cut)              two faces far apart, at the left and right edges, until 24
====================  ================================================================

``make_subject_video(path)`` writes the MP4 (H.264, 25 fps, with a quiet tone as audio) and returns
a :class:`SubjectTruth`: the face box on every frame, the cut times, and the still and the
two-subject spans.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: Bumped whenever the video changes, so cached copies are made again.
SUBJECT_VERSION = 1

W, H, FPS = 1280, 720, 25
#: The face inside the photograph (pixels of the original 512x600 image, found by dlib).
_FACE = (161, 137, 376, 352)
#: Scale of the pasted photograph.
_SCALE = 0.42


@dataclass(slots=True)
class SubjectTruth:
    """Where the subject is: ``boxes[i]`` lists the face boxes ``(x0, y0, x1, y1)`` on frame ``i``
    (shown at ``i / fps``)."""

    width: int
    height: int
    fps: float
    duration: float
    boxes: list[list[tuple[float, float, float, float]]] = field(default_factory=list)
    cuts: list[float] = field(default_factory=list)
    still: list[tuple[float, float]] = field(default_factory=list)
    two_subjects: list[tuple[float, float]] = field(default_factory=list)


def _photo() -> np.ndarray:
    import cv2
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    img = cv2.imread(str(path))
    if img is None:
        raise FileNotFoundError(f"matplotlib's sample photograph is missing: {path}")
    return cv2.resize(img, None, fx=_SCALE, fy=_SCALE, interpolation=cv2.INTER_AREA)


def _background(seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(30, 200, size=(9, 16, 3), dtype=np.uint8)
    bg = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, size=(H, W, 3))
    return np.clip(bg.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _centres(t: float) -> list[tuple[float, float]]:
    """The photograph's centre(s) at ``t`` (pixels)."""
    if t < 4:
        return [(0.32 * W, 0.5 * H)]
    if t < 10:
        u = (t - 4) / 6
        return [((0.32 + 0.40 * u) * W, (0.5 + 0.03 * np.sin(u * 6 * np.pi)) * H)]
    if t < 13:
        return [(0.72 * W, 0.5 * H)]
    if t < 16:
        return [(0.14 * W, 0.52 * H)]
    if t < 20:
        u = (t - 16) / 4
        return [((0.14 + 0.36 * u) * W, 0.52 * H)]
    return [(0.12 * W, 0.5 * H), (0.88 * W, 0.5 * H)]


DURATION = 24.0
CUTS = (13.0, 20.0)


def make_subject_video(path: str | os.PathLike) -> SubjectTruth:
    """Write the test video to ``path`` (MP4) and return where the face is on each frame; a copy
    made by the same version is reused (its truth is kept beside it as ``<path>.json``)."""
    path = Path(os.fspath(path))
    meta = path.with_suffix(path.suffix + ".json")
    if path.exists() and meta.exists():
        try:
            data = json.loads(meta.read_text())
            if data.get("version") == SUBJECT_VERSION:
                truth = data["truth"]
                truth["boxes"] = [[tuple(b) for b in frame] for frame in truth["boxes"]]
                return SubjectTruth(**truth)
        except (ValueError, KeyError, TypeError):
            pass
    photo = _photo()
    ph, pw = photo.shape[:2]
    fx0, fy0, fx1, fy1 = (v * _SCALE for v in _FACE)
    backgrounds = [_background(s) for s in (1, 2, 3)]
    n = int(DURATION * FPS)
    truth = SubjectTruth(W, H, float(FPS), DURATION, cuts=list(CUTS), still=[(0.0, 4.0), (10.5, 13.0), (13.0, 16.0)],
                         two_subjects=[(20.0, DURATION)])
    tmp = path.with_name(f".{path.name}.part.mp4")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{W}x{H}", "-r", str(FPS), "-i", "pipe:",
           "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=48000:duration={DURATION}",
           "-filter:a", "volume=0.05", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", "50",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for i in range(n):
            t = i / FPS
            shot = sum(t >= c for c in CUTS)
            frame = backgrounds[shot].copy()
            boxes = []
            for cx, cy in _centres(t):
                x, y = int(round(cx - pw / 2)), int(round(cy - ph / 2))
                xa, ya, xb, yb = max(x, 0), max(y, 0), min(x + pw, W), min(y + ph, H)
                frame[ya:yb, xa:xb] = photo[ya - y:yb - y, xa - x:xb - x]
                boxes.append((x + fx0, y + fy0, x + fx1, y + fy1))
            truth.boxes.append(boxes)
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        proc.stdin.close()
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not write {path}: {err.decode(errors='replace')[-500:]}")
        os.replace(tmp, path)
    finally:
        if proc.poll() is None:
            proc.kill()
        tmp.unlink(missing_ok=True)
    meta.write_text(json.dumps({"version": SUBJECT_VERSION, "truth": asdict(truth)}))
    return truth
