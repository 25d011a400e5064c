"""The bench's CPU profile: categories from command lines, and the accounting of sampled and
short-lived processes with real subprocesses (no Ray: a ``bash`` titled ``ray::StreamWorker`` with
``exec -a`` stands in for a stream actor, its children for the ffmpegs it runs)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers import bench_profile as bp
from workers.bench_profile import CpuProfile, categorize, is_ace

# burns `secs` of CPU, then writes its own CPU time to `out`; with `go`, waits for that file to exit
BURN = """import os, sys, time
secs, out, go = float(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
t = time.process_time()
while time.process_time() - t < secs:
    pass
open(out + ".tmp", "w").write(str(time.process_time()))
os.replace(out + ".tmp", out)
while go and not os.path.exists(go):
    time.sleep(0.02)
"""


def _burn(tmp: Path, secs: float, name: str, go: Path | None = None) -> str:
    (tmp / "burn.py").write_text(BURN)
    args = [sys.executable, str(tmp / "burn.py"), f"{secs}", str(tmp / name)] + ([str(go)] if go else [])
    return shlex.join(args)


def _actor(script: str) -> subprocess.Popen:
    """A bash whose command line reads ``ray::StreamWorker ...``, running ``script``."""
    return subprocess.Popen(["bash", "-c", f'exec -a "ray::StreamWorker" bash -c {shlex.quote(script)}'],
                            start_new_session=True)


def _end(actor: subprocess.Popen) -> None:
    os.killpg(actor.pid, signal.SIGKILL)  # its `sleep` too
    actor.wait()


def _wait(cond, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _cpu(tmp: Path, *names: str) -> float:
    return sum(float((tmp / n).read_text()) for n in names)


def test_categories_from_command_lines(tmp_path):
    from ace.live.ingest import ingest_command

    pad = " " * 200  # Ray pads a worker's title with spaces
    assert categorize("ray::StreamWork", ["ray::StreamWorker.step" + pad]) == bp.STREAM
    assert categorize("ray::StreamWork", ["ray::StreamWorker" + pad]) == bp.STREAM
    assert categorize("ray::ace:stream", ["ray::ace:stream:s0-0e7ffaa6:StreamWorker.__init__"]) == bp.STREAM
    assert categorize("ray::SpeechServ", ["ray::SpeechServer.transcribe"]) == bp.SPEECH
    assert categorize("ray::ace:speech", ["ray::ace:speech:1:SpeechServer.__init__"]) == bp.SPEECH
    assert categorize("ray::LiveContro", ["ray::LiveController.status"]) == bp.CONTROLLER
    assert categorize("ray::IDLE", ["ray::IDLE" + pad]) == bp.RAY_IDLE
    assert categorize("ray::DashboardA", ["ray::DashboardAgent"]) == bp.RAY_SYSTEM
    assert categorize("ray::run_job_it", ["ray::run_job_item"]) == bp.RAY_OTHER
    site = "/v/lib/python3.11/site-packages/ray"
    raylet = [f"{site}/core/src/ray/raylet/raylet", "--raylet_socket_name=/x",
              f"--python_worker_command=/v/bin/python {site}/_private/workers/default_worker.py --x"]
    assert categorize("raylet", raylet) == bp.RAY_SYSTEM
    assert categorize("gcs_server", [f"{site}/core/src/ray/gcs/gcs_server", "--log_dir=/x"]) == bp.RAY_SYSTEM
    for script in ("dashboard/dashboard.py", "_private/log_monitor.py", "autoscaler/_private/monitor.py",
                   "dashboard/agent.py"):
        assert categorize("python", ["/v/bin/python", "-u", f"{site}/{script}", "--logs-dir=/x"]) == bp.RAY_SYSTEM
    assert categorize("python", ["/v/bin/python", f"{site}/_private/workers/default_worker.py", "--x"]) == bp.RAY_IDLE

    ingest = ingest_command("http://127.0.0.1:8000/s0/live.m3u8", tmp_path)
    assert categorize("ffmpeg", ingest, bp.STREAM) == bp.INGEST
    publisher = ["/usr/bin/ffmpeg", "-nostdin", "-v", "error", "-stream_loop", "-1", "-ss", "0.000", "-re", "-i", "show.mp4",
                 "-t", "40.0", "-c", "copy", "-f", "hls", "-hls_time", "2", "s0/live.m3u8"]
    assert categorize("ffmpeg", publisher, bp.DRIVER) == bp.PUBLISHER
    cut = ["/usr/bin/ffmpeg", "-nostdin", "-hide_banner", "-y", "-ss", "12.0", "-i", "seg.ts", "-c", "copy", "clip.mp4"]
    assert categorize("ffmpeg", cut, bp.STREAM) == bp.CUT
    assert categorize("ffprobe", ["/usr/bin/ffprobe", "-of", "json", "clip.mp4"], bp.STREAM) == bp.CUT
    assert categorize("ffmpeg", cut, bp.DRIVER) == bp.OTHER
    assert categorize("ffmpeg", [], bp.STREAM) == bp.CUT  # a zombie: its name only
    assert categorize("bash", ["bash", "-c", "true"], None) == bp.OTHER

    assert is_ace(bp.STREAM) and is_ace(bp.SHORT + bp.STREAM) and is_ace(bp.RAY_SYSTEM)
    assert not is_ace(bp.PUBLISHER) and not is_ace(bp.DRIVER) and not is_ace(bp.SHORT + bp.DRIVER)


def test_short_lived_children_are_counted_through_their_parent(tmp_path):
    # no sample between the first and the last: the two children start and end unseen, and the
    # "actor" is seen once, at the end, with its reaped children's time
    script = f"{_burn(tmp_path, 0.3, 'a')}; {_burn(tmp_path, 0.3, 'b')}; touch {tmp_path}/done; sleep 30 & wait"
    with CpuProfile(interval=60) as prof:
        actor = _actor(script)
        _wait(lambda: (tmp_path / "done").exists())
    _end(actor)
    used = _cpu(tmp_path, "a", "b")
    cpu = prof.cpu_by_category()
    short = cpu.get(bp.SHORT + bp.STREAM, 0.0)
    assert 0.5 * used <= short <= 1.5 * used + 0.1, (cpu, used)
    assert prof.samples == 2 and prof.errors == 0


def test_sampled_children_are_not_counted_twice(tmp_path):
    go = tmp_path / "go"
    # a long child, seen by several samples while it lives, and a short one after it
    script = f"{_burn(tmp_path, 0.6, 'long', go)}; {_burn(tmp_path, 0.2, 'short')}; touch {tmp_path}/done; sleep 30 & wait"
    with CpuProfile(interval=0.1) as prof:
        actor = _actor(script)
        try:
            _wait(lambda: (tmp_path / "long").exists())
            n = prof.samples
            _wait(lambda: prof.samples >= n + 2)  # seen after its work is done
            go.touch()
            _wait(lambda: (tmp_path / "done").exists())
            n = prof.samples
            _wait(lambda: prof.samples >= n + 1)
        finally:
            go.touch()
    _end(actor)
    long, used = _cpu(tmp_path, "long"), _cpu(tmp_path, "long", "short")
    cpu = prof.cpu_by_category()
    assert 0.7 * long <= cpu.get(bp.OTHER, 0.0) <= 1.3 * long + 0.1, (cpu, long)  # a python child of an "actor"
    children = cpu.get(bp.OTHER, 0.0) + cpu.get(bp.SHORT + bp.STREAM, 0.0)
    assert 0.5 * used <= children <= 1.5 * used, (cpu, used)
    assert cpu.get(bp.STREAM, 0.0) < 0.3  # bash itself does next to nothing
    assert prof.errors == 0

    r = prof.result()
    t = r["totals"]
    assert t["wall_s"] > 0 and t["samples"] == prof.samples and t["machine_cpu_s"] > 0
    assert [row["cpu_s"] for row in r["rows"]] == sorted((row["cpu_s"] for row in r["rows"]), reverse=True)
    assert abs(sum(row["share"] for row in r["rows"]) - 100) < 2
    by = {row["category"]: row for row in r["rows"]}
    assert by[bp.OTHER]["processes"] >= 1 and by[bp.OTHER]["ace"] is False


def test_a_child_gone_with_its_parent_is_not_counted_twice(tmp_path):
    # actor -> bash -> burning child: the child is sampled, then child and bash end together and the
    # actor reaps bash (whose figure holds the child): the child's sampled time is owed by the actor
    go = tmp_path / "go"
    inner = shlex.quote(f"{_burn(tmp_path, 0.5, 'long', go)}; exit 0")
    with CpuProfile(interval=0.2) as prof:
        actor = _actor(f"bash -c {inner}; touch {tmp_path}/done; sleep 30 & wait")
        _wait(lambda: (tmp_path / "long").exists())
        n = prof.samples
        _wait(lambda: prof.samples >= n + 2)
        go.touch()
        _wait(lambda: (tmp_path / "done").exists())
    _end(actor)
    used = _cpu(tmp_path, "long")
    cpu = prof.cpu_by_category()
    assert cpu.get(bp.OTHER, 0.0) >= 0.7 * used, (cpu, used)  # sampled while it lived
    children = sum(v for k, v in cpu.items() if k in (bp.OTHER, bp.SHORT + bp.STREAM, bp.SHORT + bp.OTHER))
    assert 0.5 * used <= children <= 1.3 * used + 0.05, (cpu, used)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg")
def test_an_ffmpeg_run_by_a_stream_actor_is_a_cut(tmp_path):
    from ace.media import ffmpeg_binary

    cut = shlex.join([ffmpeg_binary(), "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i",
                      "testsrc=size=320x240:rate=25", "-t", "1.5", "-f", "null", "-"])
    with CpuProfile(interval=0.1) as prof:
        actor = _actor(f"{cut}; touch {tmp_path}/done; sleep 30 & wait")
        _wait(lambda: (tmp_path / "done").exists())
    _end(actor)
    rows = {row["category"]: row for row in prof.result()["rows"]}
    assert rows[bp.CUT]["processes"] == 1 and rows[bp.STREAM]["processes"] == 1, rows
    assert rows[bp.CUT]["ace"] and rows[bp.CUT]["cpu_s"] > 0


def test_a_failing_sample_never_reaches_the_caller(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(bp, "categorize", boom)
    with CpuProfile(interval=0.05) as prof:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            _wait(lambda: prof.errors >= 1)
        finally:
            child.kill()
            child.wait()
    assert prof.errors >= 1
    assert prof.result()["totals"]["wall_s"] > 0
