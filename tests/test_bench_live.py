"""`ace bench live` runs end to end on a short show and reports what it promises (figures are
the benchmark's business, not this test's)."""

from __future__ import annotations

import pytest

from ace.config import Settings
from workers.bench_live import run_live_bench


def test_live_bench_reports_every_stream(short_show, tmp_path):
    r = run_live_bench(Settings(data_dir=tmp_path / "data"), streams=2, seconds=20, input_path=str(short_show.video),
                       events_path=str(short_show.events), num_cpus=2)
    assert [s["status"] for s in r["per_stream"]] == ["live", "live"]
    assert all(s["segments"] >= 4 for s in r["per_stream"])  # about 10 segments of 2 s each
    assert r["peak_memory_mb"] > 100 and r["cpu_mean_percent"] is not None
    assert 50 < r["peak_memory_pss_mb"] <= r["peak_memory_mb"]  # shared pages counted once
    assert set(r["targets"]) == {"all_streams_keep_up", "clip_p95<=10s", "memory<=8GB"}
    assert r["speech_batch"] == 1 and len(r["speech_pool"]) == 2  # on the CPU a window at a time by default
    assert all("batching" not in p and p["windows"] > 0 for p in r["speech_pool"])
    rows = {row["category"]: row for row in r["cpu_profile"]["rows"]}
    assert rows["stream actors"]["cpu_s"] > 0 and rows["speech pool"]["cpu_s"] > 0
    from ace.live.analyzer import STAGES

    stages = r["analysis_stages"]  # the streams' analysis threads, stage by stage
    assert set(stages) == set(STAGES) and stages["decode"]["cpu_s"] > 0
    assert stages["audio and speech"]["wall_s"] >= stages["audio and speech"]["cpu_s"] > 0  # waits for the pool


def test_speech_bench_feeds_every_stream_through_the_pool(short_show, tmp_path):
    from workers.bench_speech import run_speech_bench

    r = run_speech_bench(Settings(data_dir=tmp_path / "data"), streams=3, seconds=20, input_path=str(short_show.video),
                         num_cpus=2)
    assert r["device"] == "cpu" and r["pool"] == 2
    assert [x["batch"] for x in r["runs"]] == [16, 1]  # batched, then one window at a time
    assert [x["context_s"] for x in r["runs"]] == [15.0, 15.0]  # tiny.en's live window
    for run in r["runs"]:
        assert run["errors"] == [] and run["streams"] == 3 and run["decodes"] >= 6 and run["words"] > 30
        assert run["streams_real_time"] == pytest.approx(3 * 20 / run["wall_s"], rel=0.02)
        assert 0 < run["sent"] + run["skipped"] <= run["decodes"]
    batching = [g for g in r["runs"][0]["recognisers"] if g]
    assert len(batching) == 2 and sum(g["generate"]["calls"] for g in batching) >= r["runs"][0]["sent"]
    assert r["runs"][1]["recognisers"] == [None, None]
    assert r["same_words"] is True and r["speedup"] > 0
