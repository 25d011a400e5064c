"""Loudness / cheering: sustained loudness against the show's own recent baseline.

Each second is summarised by the *median* loudness of its 50 ms frames, so a short knock or a
clap (a few loud frames) does not lift the second, while cheering, applause or shouting (loud
for most of the second) does. The baseline is the loud end (75th percentile) of the previous
``baseline_s`` seconds — the level of ordinary talking in a show that alternates talk and
pauses — and the score grows with the decibels the current second sits above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace.signals.base import Detector, RollingBaseline, ramp
from ace.types import Signal


@dataclass(frozen=True)
class AudioOptions:
    sample_rate: int = 16000
    frame_s: float = 0.05  #: loudness frame
    baseline_s: int = 90  #: seconds of history for the baseline
    min_history_s: int = 8  #: no scores until this much history exists
    baseline_quantile: float = 75.0  #: percentile of the recent seconds taken as the baseline
    db_lo: float = 4.0  #: dB over baseline where the score starts rising
    db_hi: float = 12.0  #: dB over baseline for a full score


class AudioDetector(Detector):
    """Feed 16 kHz mono float32 audio with :meth:`process_audio`; one signal per loud second."""

    name = "audio"

    def __init__(self, options: AudioOptions | None = None):
        self.o = options or AudioOptions()
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_t = 0.0
        self._baseline = RollingBaseline(self.o.baseline_s, self.o.min_history_s)
        #: per-second loudness in dBFS, in order (for diagnostics and plots)
        self.loudness: list[tuple[float, float]] = []

    def process_audio(self, t0: float, samples: np.ndarray) -> list[Signal]:
        """Add audio starting at show time ``t0``; returns signals for completed seconds."""
        sr = self.o.sample_rate
        if self._pending.size == 0:
            self._pending_t = t0
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        out: list[Signal] = []
        while self._pending.size >= sr:
            second, self._pending = self._pending[:sr], self._pending[sr:]
            out.extend(self._score_second(self._pending_t, second))
            self._pending_t += 1.0
        return out

    def flush(self) -> list[Signal]:
        sr = self.o.sample_rate
        out: list[Signal] = []
        if self._pending.size >= sr // 2:
            out = self._score_second(self._pending_t, self._pending)
        self._pending = np.zeros(0, dtype=np.float32)
        return out

    def _score_second(self, t: float, x: np.ndarray) -> list[Signal]:
        n = max(1, int(self.o.frame_s * self.o.sample_rate))
        usable = (x.size // n) * n
        if usable == 0:
            return []
        frames = x[:usable].reshape(-1, n)
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        db = float(np.median(20.0 * np.log10(rms + 1e-9)))
        self.loudness.append((t, db))
        out: list[Signal] = []
        if self._baseline.ready():
            base = float(np.percentile(self._baseline.values, self.o.baseline_quantile))
            over = db - base
            score = ramp(over, self.o.db_lo, self.o.db_hi)
            if score > 0.05:
                out.append(Signal(self.name, t + 0.5, round(score, 4), f"sustained loudness +{over:.1f} dB over the show's baseline"))
        self._baseline.add(db)
        return out
