"""Batch reprocessing as Ray tasks on a real local Ray instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import media_factory as mf
from workers.batch import Job, ProgressBoard, fraction, run_batch
from workers.cluster import ray_temp_dir


def test_progress_board_and_fraction_without_ray():
    b = ProgressBoard()
    b.update("0:a.mp4", "video", 30, 60)
    b.update("0:a.mp4", "speech", 60, 60)
    snap = b.snapshot()
    assert snap == {"0:a.mp4": {"video": (30.0, 60.0), "speech": (60.0, 60.0)}}
    assert fraction(snap["0:a.mp4"]) == pytest.approx(0.45 * 0.5 + 0.45)
    b.update("0:a.mp4", "done", 1, 1)
    assert fraction(b.snapshot()["0:a.mp4"]) == 1.0
    snap["0:a.mp4"]["video"] = (0, 0)  # snapshots are copies
    assert b.snapshot()["0:a.mp4"]["video"] == (30.0, 60.0)


def test_ray_temp_dir_stays_short_enough_for_unix_sockets(tmp_path):
    assert ray_temp_dir(Path("/d")) == "/d/ray"
    long_dir = tmp_path / ("x" * 80)
    assert len(ray_temp_dir(long_dir)) <= 40


@pytest.mark.ray
@pytest.mark.slow
def test_batch_runs_shows_in_parallel_and_isolates_failures(ray_local, settings, short_show, tmp_path):
    bad = mf.make_garbage(tmp_path / "broken.mp4")
    jobs = [Job(str(short_show.video), str(short_show.events)), Job(str(tmp_path / "nope.mp4")), Job(str(bad))]
    seen = []
    results = run_batch(jobs, tmp_path / "out", settings, on_progress=lambda snap: seen.append(snap))
    assert [r.path for r in results] == [j.path for j in jobs]
    good, missing, broken = results
    assert good.ok and good.moments and len(good.clips) == len(good.moments)
    assert not missing.ok and "no such file" in missing.error
    assert not broken.ok and broken.error
    final = seen[-1]
    assert set(final) == {"0:" + Path(short_show.video).name, "1:nope.mp4", "2:broken.mp4"}
    assert "done" in final["0:" + Path(short_show.video).name]
    assert "failed" in final["1:nope.mp4"]
    assert any("speech" in s.get("0:" + Path(short_show.video).name, {}) for s in seen), "progress was reported while running"
    # the store saw the run
    from ace.store import Store

    store = Store(settings.db_url)
    assert store.get_show(good.show_id)["status"] == "done"
    assert len(store.list_moments(good.show_id)) == len(good.moments)
