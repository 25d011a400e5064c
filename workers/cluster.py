"""Starting or joining Ray, the same way for every ACE command.

A local instance gets a fixed number of CPUs (the machine's unless told otherwise), a temp folder
under ACE's data folder (or a short one under the system temp folder when that path would be too
long for Ray's unix sockets), no usage reporting, and no dashboard unless asked for.

A local instance, and any cluster reached at a loopback address (``ace serve``'s default), runs in
Ray's single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's default on macOS and
Windows): the node's address is 127.0.0.1 instead of the machine's, and from it every Ray process
(GCS, raylet, object manager, workers, dashboard agent, runtime-env agent, Ray Client server, metrics
servers) takes its bind address, so nothing listens on the network. Without it, Ray binds most of
them to all interfaces, with no authentication unless ``RAY_AUTH_MODE=token``.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("ace.workers")

_MAX_SOCKET_PREFIX = 40  # Ray appends ~65 characters; unix socket paths stop at 107

# Ray reads it when `ray._private.ray_constants` is imported: "0" makes the node's address 127.0.0.1
# (Ray turns an explicit 127.0.0.1 into the machine's address otherwise, even `--node-ip-address`)
RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# The node addresses Ray itself treats as loopback (ray._common.network_utils.is_localhost): with one
# of them it binds loopback only; with any other address (127.0.0.2 too) it binds all interfaces.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def address_host(address: str) -> str:
    """The host of ``host:port``, ``[v6]:port`` or a bare host (``ray://`` and similar stripped)."""
    address = address.strip().split("://", 1)[-1]
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.rsplit(":", 1)[0]
    return address


def is_loopback_host(host: str) -> bool:
    """Whether Ray runs a node at ``host`` in loopback-only mode."""
    return host.strip().strip("[]").lower() in LOOPBACK_HOSTS


def use_loopback_only() -> None:
    """Ray's single-machine mode for this process and the Ray processes it starts (they inherit
    ``os.environ``): the node address is 127.0.0.1 and a loopback address is not turned into the
    machine's when connecting."""
    os.environ[RAY_LOCAL_ONLY_ENV] = "0"
    consts = sys.modules.get("ray._private.ray_constants")
    if consts is not None:  # Ray was imported before: it read the variable then
        consts.ENABLE_RAY_CLUSTER = False


def loopback_address(port: int) -> str:
    """``host:port`` of a loopback-only node (``ray start``'s GCS address there)."""
    use_loopback_only()
    from ray._common.network_utils import build_address, get_localhost_ip

    return build_address(get_localhost_ip(), port)


def serve_replica_on_loopback() -> None:
    """On a loopback-only node, keep this Serve replica's inter-deployment gRPC server on loopback.

    Ray Serve binds it to ``[::]:0``, every interface, whatever the node's address (hard-coded in
    ``ray.serve._private.replica``), and it unpickles what it receives, without authentication unless
    ``RAY_AUTH_MODE=token``. Call this in the deployment's constructor: it runs in the replica's
    process before the replica starts that server. Elsewhere (a node with a network address, where
    other nodes' proxies must reach the replica) it does nothing."""
    import ray

    host = ray.util.get_node_ip_address()
    if not is_loopback_host(host):
        return
    from ray.serve._private import replica

    add_port = getattr(replica, "add_port_to_grpc_server", None)
    if add_port is None:  # another Ray version: say so (tests/test_ray_ports.py checks the sockets)
        log.warning("this Ray version's Serve replica cannot be kept on loopback; its gRPC port listens on every interface")
        return
    if getattr(add_port, "ace_loopback", False):
        return

    def add_port_on_loopback(server, address: str):
        if address.startswith(("[::]:", "0.0.0.0:")):
            from ray._common.network_utils import build_address

            address = build_address(host, int(address.rsplit(":", 1)[1]))
        return add_port(server, address)

    add_port_on_loopback.ace_loopback = True
    replica.add_port_to_grpc_server = add_port_on_loopback


def ray_temp_dir(data_dir: Path) -> str:
    preferred = (Path(data_dir) / "ray").resolve()
    if len(str(preferred)) <= _MAX_SOCKET_PREFIX:
        return str(preferred)
    return str(Path(tempfile.gettempdir()) / f"ace-ray-{os.getuid()}")


def init_ray(address: str | None = None, num_cpus: int | None = None, data_dir: Path | str = "data", dashboard: bool = False, quiet: bool = True):
    """``ray.init`` for ACE: join ``address`` (or ``RAY_ADDRESS``) when given, else start locally.

    A local instance listens on loopback only, and so does this process when it joins a cluster at a
    loopback address (one that ``ace serve`` started there); see the module's docstring."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return sys.modules["ray"].get_runtime_context()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "local" or is_loopback_host(address_host(address)):
        use_loopback_only()
    import ray

    kwargs: dict = {"logging_level": logging.WARNING if quiet else logging.INFO, "log_to_driver": not quiet}
    if address:
        kwargs["address"] = address
    else:
        temp = ray_temp_dir(Path(data_dir))
        Path(temp).mkdir(parents=True, exist_ok=True)
        kwargs.update(
            # "local": always a new instance, never the cluster that a `ray start` (e.g. `ace serve`)
            # left recorded in the temp folder
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=dashboard,
            _temp_dir=temp,
        )
    return ray.init(**kwargs)


def worker_logging() -> None:
    """With ``ACE_LOG_LEVEL`` set (DEBUG, INFO, ...), log ACE's messages from an actor at that level
    to its worker log, which the Ray dashboard shows per actor (unset: warnings only, Python's default)."""
    level = os.environ.get("ACE_LOG_LEVEL", "").upper()
    ace_log = logging.getLogger("ace")
    if not isinstance(logging.getLevelName(level), int) or ace_log.handlers:  # unset or unknown
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ace_log.addHandler(handler)
    ace_log.setLevel(level)


def actor_settings(settings) -> dict:
    """The settings the cluster's actors get (the controller, streams, ramp, back office): the
    cluster-wide ones, not this node's own (``local_dir`` is each node's, from its environment)."""
    keep = ("data_dir", "database_url", "url_allowlist", "media_root", "api_rate", "api_max_body", "api_max_events",
            "api_max_streams", "api_max_submits", "speech_pool", "model", "device", "compute_type", "beam_size", "language",
            "analysis_fps", "analysis_width", "clip_min", "clip_max", "clip_mode", "clip_format", "burn_captions", "threshold", "top", "scorer", "keywords",
            "ramp_tick_s", "ramp_pool", "ramp_sink", "clip_storage", "s3_endpoint")
    d = {k: getattr(settings, k) for k in keep}
    d["data_dir"] = str(Path(settings.data_dir).absolute())
    d["cpu_threads"] = 1
    return d


def node_work_dir(settings) -> Path:
    """The working folder of the node this process runs on: its own ``ACE_LOCAL_DIR`` (set for each
    node's ``ray start``; Ray's workers inherit it), else the settings' :attr:`~ace.config.Settings.work_dir`."""
    local = os.environ.get("ACE_LOCAL_DIR")
    return Path(local).absolute() if local else Path(settings.work_dir).absolute()


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def ray_node_processes(session_dir: str | None, gcs_address: str | None = None) -> list:
    """The processes of one Ray node (``ray start`` leaves them to init): those whose command line
    names its session folder ``session_dir`` (GCS, raylet, dashboard, agents, monitors) or its GCS
    address ``gcs_address`` (``--address=HOST:P``, ``--gcs-address=HOST:P``, or ``--gcs_server_port=P``
    with ``--node-ip-address=HOST``: the Ray Client server, and the node's processes while its session
    folder is not known), and their children (workers, dashboard modules). The address is matched
    with its host (any loopback name for a loopback one): a temp folder such as ``/tmp/ace-ray-<uid>``
    can hold the sessions of several nodes, on other ports. Never this process or its parents."""
    import psutil

    session_dir = str(session_dir).rstrip("/") if session_dir else None
    host, port = (address_host(gcs_address), gcs_address.rsplit(":", 1)[-1]) if gcs_address else (None, None)

    def same_host(h: str) -> bool:
        return h == host or (is_loopback_host(h) and is_loopback_host(host))

    def names_node(cmd: list[str]) -> bool:
        if session_dir and any(session_dir + "/" in a or a.endswith(session_dir) for a in cmd):
            return True
        if not gcs_address:
            return False
        flags = dict(a.split("=", 1) for a in cmd if a.startswith("--") and "=" in a)
        if any(v.rsplit(":", 1)[-1] == port and same_host(address_host(v))
               for f, v in flags.items() if f in ("--address", "--gcs-address", "--gcs_address")):
            return True
        return flags.get("--gcs_server_port") == port and same_host(flags.get("--node-ip-address", ""))

    me = psutil.Process()
    mine = {me.pid} | {p.pid for p in me.parents()}
    roots = {p.pid: p for p in psutil.process_iter(["cmdline"]) if p.pid not in mine and names_node(p.info["cmdline"] or [])}
    found = dict(roots)
    for p in roots.values():
        try:
            found.update((c.pid, c) for c in p.children(recursive=True) if c.pid not in mine)
        except psutil.Error:
            pass
    return list(found.values())


def end_processes(procs: list, grace_s: float = 15.0) -> int:
    """SIGTERM to ``procs`` (psutil processes), then SIGKILL to those still running after ``grace_s``.
    Returns how many were given."""
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


def stop_ray_node(session_dir: str, gcs_address: str | None = None, grace_s: float = 15.0) -> int:
    """End the processes of one Ray node (what ``ray stop`` does to every Ray process on the machine,
    other users' and other instances' included): SIGTERM, then SIGKILL after ``grace_s``. Returns how
    many there were."""
    return end_processes(ray_node_processes(session_dir, gcs_address), grace_s)
