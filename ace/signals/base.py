"""The detector contract and small helpers shared by all detectors.

A detector is fed its kind of input in time order (audio chunks, frames, transcript sentences,
interaction events) and returns :class:`~ace.types.Signal` evidence in show time. Detectors are
causal: a score at time ``t`` depends only on input up to ``t`` (plus, at most,
``look_ahead`` seconds that the detector buffers before answering). ``flush()`` returns what is
still buffered once the input ends. The same objects serve batch runs and live streams.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ace.types import Signal


class Detector:
    """Base class: ``name`` is the signal source; subclasses add a ``process_*`` method."""

    name: str = "detector"
    #: seconds of input a detector may hold back before it can score it
    look_ahead: float = 0.0

    def flush(self) -> list[Signal]:
        """Evidence still held back at the end of the input."""
        return []


class RollingBaseline:
    """Robust baseline (median and MAD) of a scalar over the last ``window`` samples."""

    def __init__(self, window: int, min_count: int = 5):
        self.values: deque[float] = deque(maxlen=window)
        self.min_count = min_count

    def ready(self) -> bool:
        return len(self.values) >= self.min_count

    def add(self, value: float) -> None:
        self.values.append(float(value))

    def median(self) -> float:
        return float(np.median(self.values)) if self.values else 0.0

    def spread(self, floor: float) -> float:
        """1.4826 × MAD (a robust standard deviation), at least ``floor``."""
        if not self.values:
            return floor
        arr = np.asarray(self.values)
        mad = float(np.median(np.abs(arr - np.median(arr))))
        return max(1.4826 * mad, floor)


def ramp(x: float, lo: float, hi: float) -> float:
    """0 below ``lo``, 1 above ``hi``, linear between."""
    if hi <= lo:
        return float(x >= hi)
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))
