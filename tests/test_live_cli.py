"""The live commands as a user runs them: ace serve --detach, ace live, ace streams, ace stop, ace serve --shutdown."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ace(*args, env, timeout=180):
    return subprocess.run([sys.executable, "-m", "ace", *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def clip12(short_show, tmp_path_factory):
    """12 s of the sample show around its highlight."""
    path = tmp_path_factory.mktemp("cli") / "room.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "40", "-t", "12", "-i", str(short_show.video),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", str(path)], check=True)
    return path


def test_serve_live_streams_stop_shutdown(clip12, tmp_path):
    env = {**os.environ, "ACE_DATA_DIR": str(tmp_path / "data"), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    # nothing is serving yet: a clear message, not a traceback
    r = _ace("live", str(clip12), env=env)
    assert r.returncode != 0 and "ace serve" in r.stderr
    port, dash = _free_port(), _free_port()
    r = _ace("serve", "--detach", "--port", str(port), "--dashboard-port", str(dash), "--num-cpus", "2", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"127.0.0.1:{port}" in r.stdout and "dashboard" in r.stdout
    try:
        r = _ace("live", str(clip12), "--name", "room", "--json", env=env, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        statuses = [x["status"] for x in lines if "status" in x]
        assert statuses[-1] == "ended"
        sid = lines[0]["stream"]
        r = _ace("streams", "--json", env=env)
        rows = json.loads(r.stdout)
        assert [x["id"] for x in rows] == [sid] and rows[0]["status"] == "ended"
        r = _ace("stop", "no-such-stream", env=env)
        assert r.returncode == 1 and "no stream" in r.stderr
        r = _ace("live", "concat:/etc/passwd", env=env)
        assert r.returncode == 1 and "refused" in r.stderr
    finally:
        r = _ace("serve", "--shutdown", env=env)
    assert r.returncode == 0 and "stopped" in r.stderr
    assert not (tmp_path / "data" / "ray.address").exists()
