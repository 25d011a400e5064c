"""The live commands as a user runs them: ace serve --detach, ace live, ace streams, ace stop, ace serve --shutdown."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys

import psutil
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ace(*args, env, timeout=180):
    return subprocess.run([sys.executable, "-m", "commands", *args], capture_output=True, text=True, env=env, timeout=timeout)


def _node_processes(session_dir: str, gcs_address: str) -> dict[int, psutil.Process]:
    """The processes of the Ray node with this session folder: those naming it (or, the Ray Client
    server, its GCS address) on their command line, and all their children. Not this test's own."""
    me = psutil.Process()
    skip = {me.pid} | {p.pid for p in me.parents()}
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.pid not in skip and (session_dir in cmd or f"--address={gcs_address} " in cmd + " "):
            found[p.pid] = p
            try:
                found.update((c.pid, c) for c in p.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return found


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _listening(procs: dict[int, psutil.Process]) -> list[tuple[str, int, str]]:
    """(ip, port, "ip:port name (pid)") of every TCP socket these processes listen on."""
    rows = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs:
            try:
                name = procs[c.pid].name()
            except psutil.NoSuchProcess:
                name = "?"
            rows.append((c.laddr.ip, c.laddr.port, f"{c.laddr.ip}:{c.laddr.port} {name} (pid {c.pid})"))
    return sorted(rows)


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
    gcs, started, session = (tmp_path / "data" / "ray.address").read_text().splitlines()
    assert gcs == f"127.0.0.1:{port}" and started == "started" and session.startswith("session ")
    session = session.split(" ", 1)[1]
    node = _node_processes(session, gcs)
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
        # nothing of the Ray node (GCS, raylet, object manager, the workers of the controller, ramp and
        # stream actors, the back office's Serve proxy and replica, agents, dashboard, metrics servers,
        # Ray Client server) listens beyond loopback
        node.update(_node_processes(session, gcs))
        listening = _listening(node)
        assert {port, dash} <= {p for _ip, p, _row in listening}, listening
        exposed = [row for ip, _p, row in listening if not _is_loopback(ip)]
        assert not exposed, "Ray listens beyond loopback:\n" + "\n".join(exposed)
        # another tenant neither sees nor stops it: it answers as a stream that does not exist
        r = _ace("streams", "--json", "--tenant", "other", env=env)
        assert r.returncode == 0 and json.loads(r.stdout) == [], r.stdout + r.stderr[-2000:]
        r = _ace("stop", "--tenant", "other", sid, env=env)
        assert r.returncode == 1 and f"no stream '{sid}'" in r.stderr, r.stderr[-2000:]
        r = _ace("stop", "no-such-stream", env=env)
        assert r.returncode == 1 and "no stream 'no-such-stream'" in r.stderr
        r = _ace("live", "concat:/etc/passwd", env=env)
        assert r.returncode == 1 and "refused" in r.stderr
    finally:
        node.update(_node_processes(session, gcs))
        r = _ace("serve", "--shutdown", env=env)
    assert r.returncode == 0 and "stopped" in r.stderr
    assert not (tmp_path / "data" / "ray.address").exists()
    # the node's processes are gone (and only them: `ray stop` would end every Ray on the machine)
    _gone, alive = psutil.wait_procs(list(node.values()), timeout=10)
    alive = [p for p in alive if _running(p)]
    assert not alive, alive
