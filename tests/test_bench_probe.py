"""``ace bench probe`` as a user runs it: its own ``ace serve`` on loopback, probed, and stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.ray
def test_bench_probe_small(short_show, tmp_path):
    env = {**os.environ, "ACE_DATA_DIR": str(tmp_path / "data")}
    env.pop("RAY_ADDRESS", None)
    r = subprocess.run([sys.executable, "-m", "commands", "bench", "probe", "--inputs", "150", "--cycles", "2", "--batches", "10",
                        "--input", str(short_show.video), "--json"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert "error" not in report, report.get("error")
    assert set(report) >= {"ports", "hostile", "exactly_once", "stop_cycles", "shutdown", "targets"}
    assert report["shutdown"]["rc"] == 0 and report["shutdown"]["node_processes_left"] == 0
    assert report["stream"]["status"] == "live"
    ports, hostile, once, cycles = report["ports"], report["hostile"], report["exactly_once"], report["stop_cycles"]

    # the report's shape
    assert ports["ports_listening"] > 0 and isinstance(ports["ports_not_loopback"], list)
    assert hostile["inputs_tried"] == 150 and sum(hostile["answers"].values()) == 150
    assert {"200", "401", "404", "422"} <= set(hostile["answers"])
    assert once["batches"] == 10 and once["actor_restarts"] >= 1
    assert cycles["cycles"] == cycles["streams_submitted"] == 2 and cycles["rss_mb_after"] > 0
    assert all(isinstance(v, bool) for v in report["targets"].values())

    # the hard properties
    assert hostile["server_errors"] == 0, hostile["server_error_examples"]
    assert hostile["events_counted"] == hostile["events_accepted"]
    assert hostile["leak_count"] == 0, hostile["leaks"]
    assert once["events_sent"] == once["events_counted"] == 10 * 50
    assert cycles["stream_actors_alive_after"] == 0, cycles["stream_actor_states"]
    assert cycles["job_actors_alive_after"] == 0, cycles["job"]
    assert ports["ports_not_loopback"] == []
