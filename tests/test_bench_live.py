"""`ace bench live` runs end to end on a short show and reports what it promises (figures are
the benchmark's business, not this test's)."""

from __future__ import annotations

from ace.config import Settings
from workers.bench_live import run_live_bench


def test_live_bench_reports_every_stream(short_show, tmp_path):
    r = run_live_bench(Settings(data_dir=tmp_path / "data"), streams=2, seconds=20, input_path=str(short_show.video),
                       events_path=str(short_show.events), num_cpus=2)
    assert [s["status"] for s in r["per_stream"]] == ["live", "live"]
    assert all(s["segments"] >= 4 for s in r["per_stream"])  # about 10 segments of 2 s each
    assert r["peak_memory_mb"] > 100 and r["cpu_mean_percent"] is not None
    assert set(r["targets"]) == {"all_streams_keep_up", "clip_p95<=15s", "memory<=6GB"}
