"""Ray as ACE starts it listens on loopback only: the local instance of ``init_ray()`` (``ace process``,
tests, benches) and a Serve replica that asks for it. (``ace serve``'s head: tests/test_live_cli.py.)"""

from __future__ import annotations

import ipaddress
import os
import socket

import psutil
import pytest

from workers.cluster import address_host, is_loopback_host


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _listening(pids) -> list[tuple[str, str]]:
    """(ip, "ip:port name (pid)") of the TCP sockets these processes listen on."""
    rows = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            try:
                name = psutil.Process(c.pid).name()
            except psutil.NoSuchProcess:
                name = "?"
            rows.append((c.laddr.ip, f"{c.laddr.ip}:{c.laddr.port} {name} (pid {c.pid})"))
    return sorted(rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_host_and_loopback():
    assert address_host("127.0.0.1:6379") == "127.0.0.1"
    assert address_host("[::1]:6379") == "::1"
    assert address_host("ray://10.0.0.5:10001") == "10.0.0.5"
    assert address_host("localhost") == "localhost"
    # the addresses Ray itself runs a loopback-only node at; any other (127.0.0.2 too) binds all interfaces
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback_host(h) for h in ("127.0.0.2", "10.0.0.5", "0.0.0.0", "auto"))


@pytest.mark.ray
@pytest.mark.usefixtures("ray_local")
def test_local_instance_listens_on_loopback_only():
    import ray

    @ray.remote(num_cpus=0)
    class Probe:
        def pid(self) -> int:
            return os.getpid()

    probe = Probe.remote()
    actor_pid = ray.get(probe.pid.remote())
    try:
        session = ray._private.worker.global_worker.node.get_session_dir_path()
        pids = {os.getpid(), actor_pid}  # the driver's and a worker's gRPC servers too
        for p in psutil.process_iter(["cmdline"]):
            if any(session in a for a in p.info["cmdline"] or []):
                pids.add(p.pid)
                pids.update(c.pid for c in p.children(recursive=True))
        listening = _listening(pids)
        assert len(listening) >= 5, listening  # GCS, raylet (node and object manager), driver, worker at least
        exposed = [row for ip, row in listening if not _is_loopback(ip)]
        assert not exposed, "Ray listens beyond loopback:\n" + "\n".join(exposed)
    finally:
        ray.kill(probe)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_serve_replica_on_loopback():
    """Serve binds each replica's inter-deployment gRPC server to [::]:0 unless the deployment's
    constructor calls serve_replica_on_loopback() (as the back office's does)."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Replica:
        def __init__(self):
            from workers.cluster import serve_replica_on_loopback

            serve_replica_on_loopback()

        def __call__(self) -> int:
            return os.getpid()

    serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
    try:
        pid = serve.run(Replica.bind(), name="ports", route_prefix=None).remote().result(timeout_s=60)
        listening = _listening({pid})
        assert len(listening) >= 2, listening  # its core worker's gRPC server and Serve's own
        exposed = [row for ip, row in listening if not _is_loopback(ip)]
        assert not exposed, "the replica listens beyond loopback:\n" + "\n".join(exposed)
    finally:
        serve.shutdown()
