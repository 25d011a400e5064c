"""How long after a moment its audience reacts: measured per show, with a prior when it cannot be.

The chat of a show reacts to what is said, heard and seen, some seconds later. :func:`estimate_lag`
cross-correlates the show's chat rate with its own media evidence (speech, sound and picture,
fused per second) over shifts of 0..``max_lag`` seconds and takes the best shift when the
correlation there is clear (``min_corr``) and the show long enough (``min_seconds``, and the
largest shift plus half a minute). Otherwise —
a room with only chat, a quiet show, evidence that does not line up — it keeps the ``prior``
(the delay learned from labelled shows, :attr:`models.scorer.HighlightModel.lag`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lag:
    seconds: float
    method: str  #: "xcorr" (measured on this show) or "prior"
    corr: float = 0.0  #: the correlation at the chosen shift (xcorr), 0 for the prior

    def to_dict(self) -> dict:
        return {"seconds": round(self.seconds, 1), "method": self.method, "corr": round(self.corr, 3)}


def estimate_lag(chat_rate: np.ndarray, evidence: np.ndarray, prior: float, max_lag: int = 45,
                 min_corr: float = 0.15, min_seconds: int = 60, smooth_s: int = 5) -> Lag:
    """The shift (seconds) at which ``chat_rate`` (messages per second) best follows ``evidence``
    (per-second media evidence in [0, 1]), or the ``prior``."""
    c = np.asarray(chat_rate, dtype=np.float64)
    e = np.asarray(evidence, dtype=np.float64)
    n = min(len(c), len(e))
    if n < max(min_seconds, max_lag + 30):
        return Lag(prior, "prior")
    c = np.convolve(c[:n], np.ones(smooth_s) / smooth_s, mode="same")
    e = e[:n]
    if c.std() <= 1e-9 or e.std() <= 1e-9:
        return Lag(prior, "prior")
    best_k, best = 0, -1.0
    for k in range(0, max_lag + 1):
        a, b = e[: n - k], c[k:]
        if a.std() <= 1e-9 or b.std() <= 1e-9:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best:
            best_k, best = k, r
    if best < min_corr:
        return Lag(prior, "prior", max(best, 0.0))
    return Lag(float(best_k), "xcorr", best)
