"""`ace bench cluster` (the command, as a user runs it) on a small cluster: two nodes (a head and one
worker node), two streams; the worker node is killed and the head restarted. What must hold whatever the figures: every node came
up, no moment seen before the kill or the restart is lost, no clip is a duplicate, and nothing of
the bench's nodes is left running."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KEYS = ("nodes", "streams", "streams_per_node", "node_killed", "streams_moved", "move_seconds_max",
        "streams_resumed_after_restart", "jobs_kept_after_restart", "duplicate_clips", "lost_moments",
        "clips_served_from_api", "clips_total")


@pytest.mark.slow
@pytest.mark.ray
def test_cluster_bench_kills_a_node_and_restarts_the_head(short_show, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "commands", "bench", "cluster", "--nodes", "2", "--streams", "2",
                           "--seconds", "40", "--input", str(short_show.video), "--events", str(short_show.events),
                           "--data-dir", str(tmp_path / "data"), "--json"], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    try:
        assert set(KEYS) <= set(r)
        assert r["nodes"] == 2 and r["nodes_after_restart"] == 1
        assert all(r["local_dir_inherited"].values())  # each node's workers have its own ACE_LOCAL_DIR
        assert r["node_killed"] == "node1" and r["node_dead_detected_s"] is not None
        assert r["duplicate_clips"] == 0
        assert r["lost_moments"] == 0
        assert r["stray_processes"] == 0
        assert r["clips_served_from_api"] <= r["clips_total"]
    finally:  # Ray's logs, when they were kept in a short folder outside tmp_path
        for temp in r["ray_temp_dirs"].values():
            if not Path(temp).is_relative_to(tmp_path):
                shutil.rmtree(Path(temp).parent, ignore_errors=True)
