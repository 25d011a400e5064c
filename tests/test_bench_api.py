"""`ace bench api` runs end to end, briefly, and reports what it promises (the figures are the
benchmark's business, not this test's)."""

from __future__ import annotations

import pytest

from ace.config import Settings
from workers.bench_api import run_api_bench


@pytest.mark.slow
@pytest.mark.ray
def test_api_bench_counts_every_accepted_event(short_show, tmp_path):
    r = run_api_bench(Settings(data_dir=tmp_path / "data"), clients=4, seconds=4, batch=50, submits=12, rate=1000,
                      num_cpus=2, input_path=str(short_show.video))
    ev, sub = r["events"], r["submissions"]
    assert ev["codes"] == {"200": ev["requests"]} and ev["accepted_events"] > 0
    assert r["counted_by_stream"] == ev["accepted_by_stream"]  # every accepted event counted once, by its stream
    assert sub["unanswered"] == 0 and sub["lost"] == [] and sub["accepted"] >= 1
    assert sum(sub["codes"].values()) == 12 and set(sub["codes"]) <= {"201", "429", "503"}
    assert r["targets"]["every_accepted_event_counted"] and r["targets"]["burst_none_lost"] and r["targets"]["no_crash"]
    assert ev["latency_ms"]["p99"] is not None and r["peak_memory_mb"] > 100
