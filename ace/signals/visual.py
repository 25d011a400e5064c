"""Visual change from low-resolution grey frames (OpenCV): scene cuts and sustained action.

* **Cuts** — a frame whose content differs sharply from the previous one, both in absolute terms
  (mean absolute pixel difference and a grey-histogram distance) and relative to the recent
  frame-to-frame change (so a fast-moving scene does not read as a run of cuts; the same idea
  as PySceneDetect's AdaptiveDetector). Cut times are kept in :attr:`VisualDetector.cuts` for
  clip boundaries; a cut on its own is only weak evidence of a highlight.
* **Action** — motion energy (mean absolute difference between consecutive frames, cuts
  excluded) averaged over each second and compared with the show's own recent baseline:
  sustained fast motion or flashing scores high.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from ace.signals.base import Detector, RollingBaseline, ramp
from ace.types import Signal


@dataclass(frozen=True)
class VisualOptions:
    cut_diff: float = 18.0  #: mean absolute difference (0-255) a cut must exceed
    cut_hist: float = 0.25  #: histogram distance (Bhattacharyya, 0-1) a cut must exceed (unless diff > 2 × cut_diff)
    cut_ratio: float = 3.0  #: ... and this many times the recent mean difference
    cut_window: int = 4  #: frames on each side used for the recent mean (adaptive test)
    min_cut_gap: float = 0.5  #: seconds between two cuts at least
    baseline_s: int = 90  #: seconds of motion history for the baseline
    min_history_s: int = 8
    motion_lo: float = 2.0  #: motion over baseline (in robust std units) where the score starts
    motion_hi: float = 6.0  #: ... and where it is full
    motion_floor: float = 1.0  #: minimum spread of the motion baseline (grey levels)
    cut_score: float = 0.2  #: the weak score a cut alone contributes


class VisualDetector(Detector):
    """Feed ``(t, grey frame)`` pairs with :meth:`process_frame`, in time order.

    Cut decisions need ``cut_window`` frames after the candidate, so the detector answers with
    that much delay (``look_ahead``); call :meth:`flush` at the end.
    """

    name = "visual"

    def __init__(self, options: VisualOptions | None = None, fps: float = 4.0):
        self.o = options or VisualOptions()
        self.look_ahead = self.o.cut_window / fps
        self.cuts: list[float] = []
        self._prev: np.ndarray | None = None
        self._prev_hist: np.ndarray | None = None
        # pending frame-to-frame records: (t, diff, hist_distance)
        self._recent: deque[tuple[float, float, float]] = deque()
        self._history: deque[float] = deque(maxlen=self.o.cut_window)
        self._second: int | None = None
        self._second_motion: list[float] = []
        self._baseline = RollingBaseline(self.o.baseline_s, self.o.min_history_s)
        self.frames = 0

    def process_frame(self, t: float, frame: np.ndarray) -> list[Signal]:
        self.frames += 1
        hist = cv2.calcHist([frame], [0], None, [32], [0, 256])
        cv2.normalize(hist, hist)
        out: list[Signal] = []
        if self._prev is not None and self._prev.shape == frame.shape:
            diff = float(cv2.mean(cv2.absdiff(frame, self._prev))[0])
            hd = float(cv2.compareHist(self._prev_hist, hist, cv2.HISTCMP_BHATTACHARYYA))
            self._recent.append((t, diff, hd))
            out.extend(self._decide(final=False))
        self._prev, self._prev_hist = frame, hist
        return out

    def flush(self) -> list[Signal]:
        out = self._decide(final=True)
        out.extend(self._close_second())
        return out

    # -- internals ---------------------------------------------------------------------------

    def _decide(self, final: bool) -> list[Signal]:
        """Decide on every pending record that has ``cut_window`` records after it."""
        out: list[Signal] = []
        w = self.o.cut_window
        while self._recent and (final or len(self._recent) > w):
            t, diff, hd = self._recent[0]
            after = [r[1] for r in list(self._recent)[1 : w + 1]]
            around = list(self._history) + after
            recent_mean = float(np.mean(around)) if around else 0.0
            is_cut = (
                diff >= self.o.cut_diff
                and (hd >= self.o.cut_hist or diff >= 2 * self.o.cut_diff)
                and diff >= self.o.cut_ratio * max(recent_mean, 1.0)
                and (not self.cuts or t - self.cuts[-1] >= self.o.min_cut_gap)
            )
            self._recent.popleft()
            if is_cut:
                self.cuts.append(t)
                out.append(Signal(self.name, t, self.o.cut_score, "scene cut"))
            else:
                self._history.append(diff)
                out.extend(self._add_motion(t, diff))
        return out

    def _add_motion(self, t: float, diff: float) -> list[Signal]:
        sec = int(t)
        out: list[Signal] = []
        if self._second is not None and sec != self._second:
            out.extend(self._close_second())
        self._second = sec
        self._second_motion.append(diff)
        return out

    def _close_second(self) -> list[Signal]:
        if self._second is None or not self._second_motion:
            return []
        motion = float(np.mean(self._second_motion))
        t = self._second + 0.5
        self._second_motion = []
        out: list[Signal] = []
        if self._baseline.ready():
            base = self._baseline.median()
            z = (motion - base) / self._baseline.spread(floor=self.o.motion_floor)
            score = ramp(z, self.o.motion_lo, self.o.motion_hi)
            if score > 0.05:
                out.append(Signal(self.name, t, round(score, 4), f"fast motion {motion:.1f} vs baseline {base:.1f}"))
        self._baseline.add(motion)
        return out
