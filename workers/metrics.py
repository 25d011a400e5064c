"""Every metric ACE publishes to Ray's dashboard (and Prometheus), declared here and only here.

Live-stream metrics carry the tag ``stream``. Outside a Ray worker (plain-class tests, the CLI
before ``ray.init``) every metric is a no-op, so library code can record unconditionally.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("ace.workers")

#: seconds from a moment's end in the stream to its clip being ready
CLIP_LATENCY_BOUNDARIES = [1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, 60.0]


class _Noop:
    def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
        pass

    def set(self, value: float, tags: dict | None = None) -> None:
        pass

    def observe(self, value: float, tags: dict | None = None) -> None:
        pass


class LiveMetrics:
    """The live pipeline's metrics for one stream (tag ``stream`` = its id)."""

    def __init__(self, stream_id: str):
        self.tags = {"stream": stream_id}
        m = _make()
        self.segments = m.get("segments", _Noop())
        self.behind = m.get("behind", _Noop())
        self.lag = m.get("lag", _Noop())
        self.moments = m.get("moments", _Noop())
        self.clips = m.get("clips", _Noop())
        self.latency = m.get("latency", _Noop())
        self.reconnects = m.get("reconnects", _Noop())
        self.errors = m.get("errors", _Noop())
        self.level = m.get("level", _Noop())
        self.product_segments = m.get("product_segments", _Noop())

    def count(self, name: str, n: float = 1.0) -> None:
        if n > 0:
            getattr(self, name).inc(n, tags=self.tags)

    def gauge(self, name: str, value: float | None) -> None:
        if value is not None:
            getattr(self, name).set(float(value), tags=self.tags)

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(float(seconds), tags=self.tags)


_METRICS: dict[str, Any] | None = None


def _make() -> dict[str, Any]:
    """Create the metric objects once per process (only inside a Ray worker or driver)."""
    global _METRICS
    if _METRICS is not None:
        return _METRICS
    try:
        import ray

        if not ray.is_initialized():
            return {}
        from ray.util.metrics import Counter, Gauge, Histogram
    except Exception as e:  # pragma: no cover - ray is a core dependency
        log.debug("no Ray metrics: %s", e)
        return {}
    keys = ("stream",)
    _METRICS = {
        "segments": Counter("ace_live_segments", "Segments ingested", tag_keys=keys),
        "behind": Gauge("ace_live_seconds_behind", "Seconds since the newest segment closed (behind the live edge)", tag_keys=keys),
        "lag": Gauge("ace_live_analysis_lag_seconds", "Seconds the analysis trails the live edge", tag_keys=keys),
        "moments": Counter("ace_live_moments", "Moments found", tag_keys=keys),
        "clips": Counter("ace_live_clips", "Clips cut", tag_keys=keys),
        "latency": Histogram("ace_live_clip_latency_seconds", "From a moment's end in the stream to its clip being ready",
                             boundaries=CLIP_LATENCY_BOUNDARIES, tag_keys=keys),
        "reconnects": Counter("ace_live_reconnects", "ffmpeg restarts after an outage", tag_keys=keys),
        "errors": Counter("ace_live_errors", "Errors (failed segments, failed cuts, failed streams)", tag_keys=keys),
        "level": Gauge("ace_live_degrade_level", "Backpressure level (0 = full analysis)", tag_keys=keys),
        "product_segments": Counter("ace_live_product_segments", "Product pitches found (each cut as a clip)", tag_keys=keys),
    }
    return _METRICS
