"""What a reframed clip follows: faces found in sampled frames, and the shot changes inside the clip.

Faces come from dlib's frontal face detector (a HOG + linear SVM model compiled into dlib itself, so
nothing is downloaded). The clip is decoded once, every frame scaled to :data:`DETECT_WIDTH` pixels
wide and grey; :data:`DETECT_FPS` frames a second are searched for faces (with one upsampling step
the smallest face found is about 40 px there, a twelfth of the frame's width). Every frame, shrunk
further, gives the shot changes: a jump of the difference between two consecutive frames well above
the differences around it is a cut, on the frame where it happens.

Boxes are returned in source pixels (the clip's stored frame size), times in seconds from the clip's
start.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ace import media

log = logging.getLogger("ace.reframe")

#: Frames per second searched for faces.
DETECT_FPS = 3.0
#: Width (pixels) of the frames searched for faces.
DETECT_WIDTH = 480
#: Upsampling steps of the face detector (1 finds faces down to ~40 px at DETECT_WIDTH).
UPSAMPLE = 1
#: Detector scores below this are ignored (dlib's scores: 0 is its decision boundary).
MIN_SCORE = 0.0
#: Threads searching frames for faces at once (at most one per core).
DETECT_THREADS = 4
#: Width of the tiny frames compared to find cuts.
CUT_WIDTH = 64
#: Mean absolute difference (0-255) of two tiny frames taken as a cut, and the ratio to the
#: usual difference it must also exceed.
CUT_DIFF = 28.0
CUT_RATIO = 3.0
#: Highest frame rate read for cuts (a faster source is read at this rate).
MAX_RATE = 60.0
#: Shortest shot (seconds): a jump this soon after a cut is not another one.
MIN_SHOT = 0.4


@dataclass(frozen=True, slots=True)
class Box:
    """A face: its rectangle in source pixels and the detector's confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 0.0

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def width(self) -> float:
        return self.x1 - self.x0


@dataclass(frozen=True, slots=True)
class Sample:
    """The faces found in the frame shown at ``t``."""

    t: float
    boxes: tuple[Box, ...] = ()


@dataclass(slots=True)
class Scan:
    """What :func:`scan` saw in a clip."""

    width: int
    height: int
    fps: float
    duration: float
    samples: list[Sample] = field(default_factory=list)
    cuts: list[float] = field(default_factory=list)
    seconds: float = 0.0


_LOCAL = threading.local()


def _detector():
    """dlib's frontal face detector, one per thread (an instance is not safe to share while it
    runs; dlib is imported only here)."""
    det = getattr(_LOCAL, "detector", None)
    if det is None:
        import dlib

        det = _LOCAL.detector = dlib.get_frontal_face_detector()
    return det


def find_faces(grey: np.ndarray, scale: float = 1.0, upsample: int = UPSAMPLE) -> tuple[Box, ...]:
    """Faces in a grey ``uint8`` frame, boxes multiplied by ``scale`` (to source pixels), the most
    confident first."""
    det = _detector()
    rects, scores, _ = det.run(np.ascontiguousarray(grey), upsample, MIN_SCORE)
    boxes = [Box(r.left() * scale, r.top() * scale, r.right() * scale, r.bottom() * scale, float(s))
             for r, s in zip(rects, scores)]
    boxes.sort(key=lambda b: -b.score)
    return tuple(boxes)


def _tiny(frame: np.ndarray) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    return cv2.resize(frame, (CUT_WIDTH, max(2, round(CUT_WIDTH * h / w))), interpolation=cv2.INTER_AREA).astype(np.float32)


def find_cuts(diffs: Sequence[float]) -> list[int]:
    """Indexes ``i`` of the jumps ``diffs[i]`` (difference between frame ``i`` and ``i + 1``) that
    are cuts: above :data:`CUT_DIFF` and :data:`CUT_RATIO` times the median difference around."""
    out = []
    d = np.asarray(diffs, dtype=float)
    for i, v in enumerate(d):
        around = np.concatenate([d[max(0, i - 6):i], d[i + 1:i + 7]])
        usual = float(np.median(around)) if around.size else 0.0
        if v >= CUT_DIFF and v >= CUT_RATIO * max(usual, 1.0):
            out.append(i)
    return out


def scan(path: str, fps: float = DETECT_FPS, width: int = DETECT_WIDTH, faces: bool = True) -> Scan:
    """Read ``path`` (a short clip) once: faces in :data:`DETECT_FPS` frames a second and the cuts
    between shots (the time of each new shot's first frame).

    ``faces=False`` finds only the cuts (for a clip that is only fitted, never tracked).
    """
    import time

    began = time.perf_counter()
    info = media.probe(path)
    if not info.has_video:
        from ace.errors import NoStreamError

        raise NoStreamError(f"no video stream in {path}")
    src_w, src_h = info.width, info.height
    w = min(width, src_w) if src_w else width
    w -= w % 2
    out = Scan(width=src_w, height=src_h, fps=info.fps or 30.0, duration=info.duration)
    rate = min(out.fps, MAX_RATE)  # a stream claiming 1000 fps (some FLV) is not read a thousand times a second
    step = max(1, int(round(rate / fps)))
    pending = []
    times: list[float] = []
    diffs: list[float] = []
    prev = None
    # one pass at the clip's own rate: every frame for the cuts (a cut lands on its frame), every
    # ``step``-th searched for faces; dlib lets go of the GIL while it searches, so frames are
    # searched on every core while ffmpeg decodes the next ones
    with ThreadPoolExecutor(max(1, min(DETECT_THREADS, os.cpu_count() or 1)), thread_name_prefix="ace-faces") as pool:
        for i, (t, frame) in enumerate(media.iter_frames(path, fps=rate, width=w, skip_bidir=False)):
            if faces and i % step == 0:
                scale = src_w / frame.shape[1] if src_w else 1.0
                pending.append((t, pool.submit(find_faces, frame, scale)))
            elif not faces and i % step == 0:
                pending.append((t, None))
            small = _tiny(frame)
            if prev is not None:
                diffs.append(float(np.mean(np.abs(small - prev))))
            prev = small
            times.append(t)
            if not src_w and i == 0:
                out.width, out.height = w, round(w * frame.shape[0] / frame.shape[1])
        out.samples = [Sample(t, fut.result() if fut is not None else ()) for t, fut in pending]
    for i in find_cuts(diffs):
        # a flash is two jumps a frame apart: one cut, not a shot of one frame
        if not out.cuts or times[i + 1] - out.cuts[-1] >= MIN_SHOT:
            out.cuts.append(round(times[i + 1], 6))
    out.seconds = time.perf_counter() - began
    log.debug("scanned %s: %d samples, %d with faces, cuts %s in %.2fs", path, len(out.samples),
              sum(1 for s in out.samples if s.boxes), out.cuts, out.seconds)
    return out
