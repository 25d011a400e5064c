"""``ace bench cluster``: a real multi-node Ray cluster on one machine, a worker node killed, the
head restarted, and what ACE keeps through both.

The cluster is ``nodes`` separate ``ray start`` processes on loopback: a head
(``--node-ip-address 127.0.0.1``, in Ray's single-machine mode, see :mod:`workers.cluster`) and
``nodes - 1`` worker nodes joining it at ``127.0.0.1:PORT``, one CPU each. Every node has its own
Ray temp folder (``--temp-dir``: Ray allows one per node) under ``BENCH/nodeK/ray`` (or a short
folder under the system temp folder when that path is too long for Ray's unix sockets; the report
names them), and its own ACE working folder ``ACE_LOCAL_DIR=BENCH/nodeK/local`` (live stream
buffers, clips being cut), which the node's Ray workers inherit from its raylet. Shared by all
nodes, as a shared file system would be: ``BENCH/shared`` with the SQLite database and the clip
storage folder (``ACE_CLIP_STORAGE``).

Ray refuses to start a worker node in its single-machine mode (``ray start --address`` aborts:
"multi-node clusters are not supported on Windows and OSX"), and outside that mode it turns
``127.0.0.1`` into the machine's network address and listens on every interface. The bench
therefore starts worker nodes through ``ray start``'s own entry point with only that refusal
lifted (the node stays in single-machine mode: every address and bind is loopback).

A dead node is noticed by the GCS's health checks of its raylet; Ray's defaults (a check every
3 s, 10 s timeout, 5 misses) take 15-30 s. The head gets
``--system-config {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
"health_check_failure_threshold": 3}`` (:data:`HEALTH_CHECK`): a SIGKILLed node is marked dead
about 3 s later, and only then does Ray restart the stream actors it ran elsewhere.

The run, with times relative to every stream being live:

1. start the cluster and connect as a driver; start the controller (``ace:controller``, durable
   streams) and the back office (Serve's proxy on the head only: the nodes share one machine, so a
   proxy on every node would contend for one port), and make an API token for tenant ``bench``;
2. publish ``streams`` live HLS copies of the sample show on loopback and submit them, and one
   batch job (30 s of the show);
3. at 40 % of ``seconds``: snapshot every stream's moments and clips, then SIGKILL every process
   of the worker node running the most streams (found by its session folder); time how long each
   of its streams takes to run again elsewhere (another node, live, its analysed edge advancing);
4. at 70 %: snapshot again, SIGKILL every process of the cluster (a crash of all of it), start the
   head and the surviving worker nodes again (same port and folders), start the controller and the
   back office again, and time how long the streams take to resume; count the jobs still listed;
5. at the end: compare the moments with the snapshots, look for duplicate clips, fetch every clip
   through the API, then stop everything, ending only the processes of the nodes the bench started.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import psutil

from ace.config import Settings

log = logging.getLogger("ace.workers")

TENANT = "bench"
#: the GCS's health checks of the raylets (``--system-config`` of the head): a dead node is found
#: after about period x threshold (3 s) instead of Ray's 15-30 s
HEALTH_CHECK = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
#: how long a moved or resumed stream may take before the bench stops waiting for it (seconds)
MOVE_WAIT_S = 90.0
RESUME_WAIT_S = 90.0
#: target: every stream of the killed node runs again elsewhere within this many seconds
MOVE_TARGET_S = 30.0
#: the length of the show's piece that the batch job reprocesses (seconds)
REPLAY_S = 30.0

# ``ray start`` for a worker node, in Ray's single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# in its environment, so that 127.0.0.1 stays 127.0.0.1 and every process binds loopback), with the
# one check that refuses a worker node in that mode lifted: ``ray start`` reads it from its own
# reference to ray_constants, which is replaced by a copy saying clusters are allowed
_RAY_START_WORKER = (
    "import sys, types\n"
    "import ray._private.ray_constants as rc\n"
    "import ray.scripts.scripts as s\n"
    "s.ray_constants = types.SimpleNamespace(**{k: getattr(rc, k) for k in dir(rc) if not k.startswith('__')})\n"
    "s.ray_constants.ENABLE_RAY_CLUSTER = True\n"
    "sys.argv = ['ray'] + sys.argv[1:]\n"
    "sys.exit(s.main())\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    cand = Path(sys.executable).with_name("ray")
    return str(cand) if cand.exists() else "ray"


@dataclasses.dataclass
class _Node:
    index: int
    folder: Path  # BENCH/nodeK
    temp: Path  # the node's Ray temp folder
    session: str | None = None  # its current session folder
    node_id: str | None = None
    alive: bool = False

    @property
    def label(self) -> str:
        return f"node{self.index}"

    @property
    def head(self) -> bool:
        return self.index == 0


class _Cluster:
    """The bench's Ray nodes: started with ``ray start``, ended by their own session folders."""

    def __init__(self, root: Path, nodes: int, shared: Path, clip_storage: Path):
        from workers.cluster import _MAX_SOCKET_PREFIX

        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.shared = shared
        self.clip_storage = clip_storage
        short = Path(tempfile.gettempdir()) / f"ace-bc-{os.getuid()}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
        self.nodes: list[_Node] = []
        for k in range(nodes):
            folder = root / f"node{k}"
            temp = folder / "ray"
            if len(str(temp)) > _MAX_SOCKET_PREFIX:  # unix socket paths stop at 107 characters
                temp = short / f"n{k}"
            self.nodes.append(_Node(k, folder, temp))
        self.short = short
        self.ids: dict[str, str] = {}  # every node id seen -> its label

    def reset_folders(self) -> None:
        if self.short.exists():
            shutil.rmtree(self.short, ignore_errors=True)
        for n in self.nodes:
            (n.folder / "local").mkdir(parents=True, exist_ok=True)
            n.temp.mkdir(parents=True, exist_ok=True)
            if n.temp != n.folder / "ray":
                (n.folder / "ray").symlink_to(n.temp, target_is_directory=True)

    def _env(self, n: _Node) -> dict:
        from workers.cluster import RAY_LOCAL_ONLY_ENV

        return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **{RAY_LOCAL_ONLY_ENV: "0"},
                    ACE_LOCAL_DIR=str(n.folder / "local"), ACE_CLIP_STORAGE=str(self.clip_storage))

    def _command(self, n: _Node) -> list[str]:
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", str(n.temp),
                  "--disable-usage-stats", "--dashboard-agent-listen-port", str(_free_port())]
        if n.head:
            return [_ray_cli(), "start", "--head", "--port", str(self.port), "--include-dashboard", "false",
                    "--dashboard-port", str(_free_port()), "--system-config", json.dumps(HEALTH_CHECK)] + common
        return [sys.executable, "-c", _RAY_START_WORKER, "start", "--address", self.address] + common

    def start(self, nodes: list[_Node]) -> float:
        """Start ``nodes`` (the head first, then the others at once); returns the seconds it took."""
        t = time.monotonic()
        cwd = str(Path(__file__).resolve().parent.parent)  # the workers import ACE from here
        order = [n for n in nodes if n.head], [n for n in nodes if not n.head]
        for group in order:
            procs = [(n, subprocess.Popen(self._command(n), env=self._env(n), cwd=cwd, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)) for n in group]
            for n, p in procs:
                out, _ = p.communicate(timeout=180)
                if p.returncode != 0:
                    raise RuntimeError(f"ray start of {n.label} failed ({p.returncode}):\n{out[-3000:]}")
                latest = n.temp / "session_latest"
                n.session = str(latest.resolve()) if latest.exists() else None
                n.alive = True
        return time.monotonic() - t

    def refresh(self) -> dict[str, str]:
        """Node ids from Ray (``ray.nodes()``), matched to the bench's nodes by session folder;
        returns {label: node id} of the nodes Ray says are alive."""
        import ray

        alive = {}
        for info in ray.nodes():
            sock = info.get("ObjectStoreSocketName") or info.get("RayletSocketName") or ""
            for n in self.nodes:
                if n.session and sock.startswith(n.session + "/"):
                    self.ids[info["NodeID"]] = n.label
                    if info.get("Alive"):
                        n.node_id = info["NodeID"]
                        alive[n.label] = info["NodeID"]
        return alive

    def label_of(self, node_id: str | None) -> str | None:
        if not node_id:
            return None
        return self.ids.get(node_id, node_id)

    def processes(self, nodes: list[_Node]) -> list:
        from workers.cluster import ray_node_processes

        found: dict[int, psutil.Process] = {}
        for n in nodes:
            if n.session:
                found.update((p.pid, p) for p in ray_node_processes(n.session))
        return list(found.values())

    def kill(self, nodes: list[_Node] | None = None) -> int:
        """SIGKILL every process of ``nodes`` (all by default): stopped first (so that a raylet
        starts no new worker meanwhile), found again with their children, then killed; then what is
        left of them anywhere (:meth:`sweep`). Returns how many processes there were.

        Not SIGTERM: a raylet or GCS given SIGTERM takes over 10 s to go (and ``ray stop`` waits
        16 s before it kills); the bench's restart is a crash of the whole cluster."""
        nodes = self.nodes if nodes is None else nodes
        procs = self.processes(nodes)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for p in procs:
                try:
                    p.send_signal(sig)
                except psutil.Error:
                    pass
            if sig == signal.SIGSTOP:
                procs = list({p.pid: p for p in procs + self.processes(nodes)}.values())
        psutil.wait_procs(procs, timeout=10)
        for n in nodes:
            n.alive = False
        return len(procs) + self.sweep(nodes)

    def sweep(self, nodes: list[_Node] | None = None) -> int:
        """SIGKILL what is left of ``nodes`` (all by default) anywhere on the machine: the processes
        whose ``ACE_LOCAL_DIR`` is one of their folders (Ray workers and their ffmpegs, orphaned by
        a killed raylet). No other process has it. Returns how many there were."""
        nodes = self.nodes if nodes is None else nodes
        me = psutil.Process()
        mine = {me.pid} | {p.pid for p in me.parents()}
        folders = {str(n.folder / "local") for n in nodes}
        left = []
        for p in psutil.process_iter():
            if p.pid in mine:
                continue
            try:
                local = p.environ().get("ACE_LOCAL_DIR") or ""
            except psutil.Error:
                continue
            if local in folders or any(local.startswith(f + "/") for f in folders):
                left.append(p)
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)
        return len(left)


class _Pusher(threading.Thread):
    """Pushes the show's audience events to each stream through the controller as their time
    comes (stream time: seconds since the stream was submitted), at most one batch in flight per
    stream; paused while the cluster restarts (the backlog goes after, late)."""

    def __init__(self, events: list, show_s: float):
        super().__init__(name="ace-bench-events", daemon=True)
        self.events = events
        self.show_s = show_s
        self.queues: dict[str, deque] = {}
        self.inflight: dict[str, tuple] = {}  # stream id -> (ref, events in it)
        self.controller = None
        self.paused = threading.Event()
        self.done = threading.Event()
        self.counts = {"events_pushed": 0, "events_accepted": 0, "events_refused": 0, "events_unconfirmed": 0}

    def add(self, sid: str, published_at: float, offset: float, joined_at: float) -> None:
        """Events of a copy published at wall time ``published_at`` from ``offset`` into the show."""
        out = []
        for e in self.events:
            wall = published_at + (e.t - offset) % self.show_s
            if wall >= joined_at:
                out.append((wall, {"t": round(wall - joined_at, 3), "kind": e.kind, "user": e.user, "value": e.value,
                                   "text": e.text}))
        self.queues[sid] = deque(sorted(out, key=lambda x: x[0]))

    def pause(self) -> None:
        """Stop sending; batches in flight count as unconfirmed (the cluster they went to is going)."""
        self.paused.set()
        time.sleep(1.5)  # a round in progress ends
        self._collect(timeout=1.0)
        for _ref, n in self.inflight.values():
            self.counts["events_unconfirmed"] += n
        self.inflight.clear()

    def _collect(self, timeout: float = 0.0) -> None:
        """Count the batches answered; a stream that has finished (failed, stopped) gets no more."""
        import ray

        if not self.inflight:
            return
        ready, _ = ray.wait([ref for ref, _n in self.inflight.values()], num_returns=len(self.inflight), timeout=timeout)
        ready = set(ready)
        for sid, (ref, n) in list(self.inflight.items()):
            if ref not in ready:
                continue
            del self.inflight[sid]
            try:
                self.counts["events_accepted"] += int(ray.get(ref))
            except Exception as e:  # noqa: BLE001 - counted
                self.counts["events_refused"] += n
                if "StreamFinished" in f"{type(e).__name__} {e}":
                    self.counts["events_refused"] += len(self.queues[sid])
                    self.queues[sid].clear()

    def run(self) -> None:
        while not self.done.wait(1.0):
            c = self.controller
            if self.paused.is_set() or c is None:
                continue
            self._collect()
            now = time.time()
            for sid, q in self.queues.items():
                if sid in self.inflight or self.paused.is_set():
                    continue
                batch = []
                while q and q[0][0] <= now:
                    batch.append(q.popleft()[1])
                if batch:
                    self.inflight[sid] = (c.push_events.remote(sid, batch, TENANT), len(batch))
                    self.counts["events_pushed"] += len(batch)

    def stop(self) -> dict:
        self.done.set()
        if self.is_alive():
            self.join(timeout=5)
        if not self.paused.is_set():
            try:
                self._collect(timeout=2.0)
            except Exception:  # noqa: BLE001 - Ray is gone: left unconfirmed
                log.debug("events in flight left unconfirmed")
        for _ref, n in self.inflight.values():
            self.counts["events_unconfirmed"] += n
        self.inflight.clear()
        return dict(self.counts)


def _actor_nodes() -> dict[str, str]:
    """{actor name: node id} of the cluster's named, alive actors (from the GCS)."""
    try:
        from ray._private.state import actors

        return {a.get("Name"): (a.get("Address") or {}).get("NodeID") for a in actors().values()
                if a.get("Name") and a.get("State") == "ALIVE"}
    except Exception:  # noqa: BLE001 - a nicety
        return {}


def _statuses(controller, sids: list[str], timeout: float = 12.0) -> dict[str, dict]:
    """Each stream's status from the controller, asked at once; a stream that does not answer in
    time (its actor restarting) is missing."""
    import ray

    refs = {controller.status.remote(sid, tenant=TENANT): sid for sid in sids}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    out = {}
    for ref in ready:
        try:
            out[refs[ref]] = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - reported as unavailable
            out[refs[ref]] = {"status": "unavailable", "error": f"{type(e).__name__}: {e}"[:300]}
    return out


def _running(st: dict | None) -> bool:
    return bool(st) and st.get("status") == "live" and st.get("analysed_until") is not None


def _snapshot(store, sids: list[str]) -> dict[str, dict]:
    """Every stream's moments ({id: [start, end]}) and clips ({moment id: video location}) in the store."""
    snap = {}
    for sid in sids:
        snap[sid] = {"moments": {m["id"]: [m["start"], m["end"]] for m in store.list_moments(sid, tenant=TENANT)},
                     "clips": {c["moment_id"]: c.get("path") for c in store.list_clips(sid, tenant=TENANT)}}
    return snap


def _duplicates(moments: list[dict], clips: list[dict]) -> int:
    """Clips whose moment overlaps another moment of the stream by more than half of the shorter
    of the two, plus clips of one moment id more than once."""
    ids = [c["moment_id"] for c in clips]
    n = len(ids) - len(set(ids))
    spans = {m["id"]: (float(m["start"]), float(m["end"])) for m in moments}
    for c in {c["moment_id"]: c for c in clips}.values():
        a0, a1 = spans.get(c["moment_id"], (float(c["start"]), float(c["end"])))
        for mid, (b0, b1) in spans.items():
            if mid == c["moment_id"]:
                continue
            overlap = min(a1, b1) - max(a0, b0)
            if overlap > 0.5 * max(1e-6, min(a1 - a0, b1 - b0)):
                n += 1
                break
    return n


def _cut(src: str, dst: Path, seconds: float) -> Path:
    from ace.media import ffmpeg_binary

    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-i", src, "-t", f"{seconds:g}", "-c", "copy",
                    "-movflags", "+faststart", str(dst)], check=True, capture_output=True)
    return dst


def run_cluster_bench(settings: Settings, nodes: int = 3, streams: int = 6, seconds: float = 120.0,
                      progress=None, input_path: str | None = None, events_path: str | None = None) -> dict:
    """Run the cluster benchmark and return its report (plain data); see the module's docstring.

    ``settings`` gives the data folder (the bench works in ``DATA_DIR/bench-cluster``, wiped at
    start) and the model settings; ``input_path`` a show to publish instead of the sample show,
    ``events_path`` its audience events (pushed to each copy as their time comes; none without).

    The report's main keys: ``nodes`` (alive at the start), ``streams`` (live at the start),
    ``streams_per_node`` (node label -> streams, before the kill), ``node_killed`` (its label;
    ``node_killed_id`` its Ray node id), ``node_dead_detected_s``, ``streams_moved`` and
    ``move_seconds_max`` (from the kill to running elsewhere), ``streams_resumed_after_restart``
    and ``resume_seconds_max`` (from the cluster going down), ``jobs_kept_after_restart``,
    ``duplicate_clips``, ``lost_moments``, ``clips_served_from_api`` of ``clips_total``,
    ``stray_processes`` (of the bench's nodes, after the stop: 0), ``per_stream`` (each with its
    ``timeline`` of [seconds since submission, status, node] changes), ``stream_log_lines`` (what
    the stream workers logged) and ``timings``. Node labels are ``node0`` (the head), ``node1``, ..."""
    import httpx
    import ray

    from ace.media import probe
    from ace.store import Store
    from workers.bench_live import _publish, _serve, stop_publishing
    from workers.cluster import (
        actor_settings,
        init_ray,
        shutdown_ray,
        use_loopback_only,
    )
    from workers.controller import get_controller
    from workers.serve import start_back_office, stop_back_office

    if nodes < 2:
        raise ValueError("the cluster bench needs at least 2 nodes (a head and a worker node to kill)")
    if streams < 1 or seconds < 30:
        raise ValueError("the cluster bench needs at least 1 stream and 30 s")
    say = progress or (lambda msg: None)
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(name: str, since: float) -> None:
        timings[name] = round(time.monotonic() - since, 1)

    if input_path is None:
        from samples.show import make_sample_show

        say("making the sample show (once) ...")
        show = make_sample_show(Path(settings.data_dir) / "samples")
        input_path, events_path = str(show.video), str(show.events)
    show_s = probe(input_path).duration
    from ace.events import load_events

    pusher = _Pusher(load_events(events_path).events if events_path else [], show_s)
    root = Path(settings.data_dir).absolute() / "bench-cluster"
    shared = root / "shared"
    clips_dir = shared / "clips"
    cluster = _Cluster(root, nodes, shared, clips_dir)
    if root.exists():
        cluster.sweep()  # a previous run's leftovers, if it was killed
        shutil.rmtree(root)
    clips_dir.mkdir(parents=True)  # a folder clip storage must exist (a share that is not mounted fails loudly)
    cluster.reset_folders()
    (root / "hls").mkdir()
    replay = _cut(input_path, shared / "media" / "replay.mp4", min(REPLAY_S, show_s))
    url = f"sqlite:///{shared / 'ace.db'}"
    d = actor_settings(settings) | {
        "data_dir": str(shared), "database_url": url, "clip_storage": str(clips_dir), "cpu_threads": 1,
        "url_allowlist": ["127.0.0.1"]}  # the copies are served on loopback
    api_port = _free_port()
    api = f"http://127.0.0.1:{api_port}"
    report: dict = {"nodes_asked": nodes, "streams_asked": streams, "seconds": seconds, "input": str(input_path),
                    "model": settings.model, "cpu_count": psutil.cpu_count(), "address": cluster.address,
                    "health_check": HEALTH_CHECK, "bench_dir": str(root),
                    "ray_temp_dirs": {n.label: str(n.temp) for n in cluster.nodes}}
    server, http_port = _serve(root / "hls")
    pubs: list[subprocess.Popen] = []
    store = Store(url)
    auth: dict = {}
    controller = None
    sids: list[str] = []
    job_id = None
    rows: dict[str, dict] = {}

    def connect() -> None:
        init_ray(address=cluster.address, data_dir=root)

    def office() -> None:
        quiet = logging.getLogger("ray.serve")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # not the "connecting to Serve" lines
        try:
            start_back_office(d, "127.0.0.1", api_port)
        finally:
            quiet.setLevel(level)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the back office did not answer within 60 s")

    def api_get(path: str, timeout: float = 30.0):
        return httpx.get(api + path, headers=auth, timeout=timeout)

    origin = [time.monotonic()]  # the streams' submission: the timelines' zero

    def observe(st_by: dict[str, dict]) -> None:
        now = time.monotonic() - origin[0]
        for sid, st in st_by.items():
            r = rows[sid]
            key = (st.get("status"), cluster.label_of(st.get("node")))
            if key != r.get("_last"):
                r["_last"] = key
                r["timeline"].append([round(now, 1), key[0], key[1]])

    def wait_running(wanted: list[str], since_mono: float, limit: float, exclude_node: str | None = None,
                     epoch_after: dict[str, int] | None = None) -> dict[str, float]:
        """Seconds from ``since_mono`` until each of ``wanted`` is live (on another node than
        ``exclude_node``) with its analysed edge advancing; those not there within ``limit`` are missing."""
        first: dict[str, float] = {}
        done: dict[str, float] = {}
        deadline = since_mono + limit
        while len(done) < len(wanted) and time.monotonic() < deadline:
            todo = [s for s in wanted if s not in done]
            st_by = _statuses(controller, todo)
            now = time.monotonic()
            observe(st_by)
            for sid, st in st_by.items():
                ok = _running(st) and (exclude_node is None or (st.get("node") and st.get("node") != exclude_node))
                if ok and epoch_after is not None and sid in epoch_after:
                    ok = (st.get("epoch") or 0) > epoch_after[sid]
                if not ok:
                    first.pop(sid, None)
                    continue
                a = float(st["analysed_until"])
                if sid in first and a > first[sid]:
                    done[sid] = round(now - since_mono, 1)
                elif sid not in first:
                    first[sid] = a
            time.sleep(0.5)
        return done

    def sample_until(t_end: float) -> None:
        while time.monotonic() < t_end:
            observe(_statuses(controller, sids))
            time.sleep(max(0.0, min(2.0, t_end - time.monotonic())))

    try:
        # -- 1. the cluster ---------------------------------------------------------------------
        use_loopback_only()  # this process too: it joins at 127.0.0.1
        shutdown_ray()
        say(f"starting a Ray cluster of {nodes} nodes at {cluster.address} ...")
        t = time.monotonic()
        cluster.start(cluster.nodes)
        connect()
        deadline = time.monotonic() + 60
        while len(cluster.refresh()) < nodes and time.monotonic() < deadline:
            time.sleep(0.5)
        mark("cluster_start_s", t)
        report["nodes"] = len([x for x in ray.nodes() if x.get("Alive")])
        report["node_ids"] = {n.label: n.node_id for n in cluster.nodes}

        @ray.remote(num_cpus=0)
        def _where() -> tuple[str, str | None]:
            return ray.get_runtime_context().get_node_id(), os.environ.get("ACE_LOCAL_DIR")

        # each node's workers see the node's own ACE_LOCAL_DIR (inherited from its raylet)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        env_ok = {}
        for n in cluster.nodes:
            nid, local = ray.get(_where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)).remote())
            env_ok[n.label] = nid == n.node_id and local == str(n.folder / "local")
        report["local_dir_inherited"] = env_ok

        # -- 2. controller, back office, token ------------------------------------------------------
        t = time.monotonic()
        controller = get_controller(create=True, settings=d)
        ray.get(controller.streams.remote(tenant=TENANT))  # it answers: ready
        office()
        _tid, token = store.create_token(TENANT, "bench")
        auth = {"Authorization": f"Bearer {token}"}
        mark("controller_and_office_s", t)
        report["controller_node"] = cluster.label_of(_actor_nodes().get("ace:controller"))

        # -- 3. streams and a batch job -----------------------------------------------------------
        say(f"publishing {streams} HLS copies on 127.0.0.1:{http_port} and submitting them ...")
        # each copy from another point of the show, within the part that plays to the end of the
        # run without looping when the show is long enough (a loop is a jump in the timestamps);
        # the run lasts about 2 min more than ``seconds`` (waits, the restart)
        expected = seconds + 120.0
        span = show_s - expected - 10.0 if show_s > expected + 40.0 else show_s
        offsets = [i * span / streams for i in range(streams)]
        published = []
        for i in range(streams):
            pubs.append(_publish(Path(input_path), root / "hls" / f"s{i}", expected + 900.0, offsets[i]))
            published.append(time.time())
        time.sleep(6.0)  # a few segments in the playlists
        origin[0] = time.monotonic()
        for i in range(streams):
            sid = ray.get(controller.submit.remote(f"http://127.0.0.1:{http_port}/s{i}/live.m3u8", name=f"cam{i}",
                                                   tenant=TENANT))
            pusher.add(sid, published[i], offsets[i], time.time())
            sids.append(sid)
            rows[sid] = {"id": sid, "name": f"cam{i}", "timeline": []}
        pusher.controller = controller
        pusher.start()
        job = ray.get(controller.submit_job.remote([{"path": str(replay)}], tenant=TENANT, name="replay"))
        job_id = job["id"]
        report["job_id"] = job_id

        # -- 4. every stream live -------------------------------------------------------------------
        t = time.monotonic()
        say("waiting for every stream to be live ...")
        live = wait_running(sids, t, 180.0)
        mark("streams_live_s", t)
        report["streams"] = len(live)
        st_by = _statuses(controller, sids)
        per_node: dict[str, int] = {}
        for sid in sids:
            lab = cluster.label_of(st_by.get(sid, {}).get("node"))
            rows[sid]["node_before"] = lab
            per_node[lab or "?"] = per_node.get(lab or "?", 0) + 1
        report["streams_per_node"] = dict(sorted(per_node.items()))
        if len(live) < streams:
            say(f"only {len(live)}/{streams} streams are live; going on")
        t0 = time.monotonic()
        say(f"following {streams} streams for {seconds:.0f} s: a worker node dies at {0.4 * seconds:.0f} s, "
            f"the cluster restarts at {0.7 * seconds:.0f} s")

        # -- 5. kill a worker node ------------------------------------------------------------------
        sample_until(t0 + 0.4 * seconds)
        snap_kill = _snapshot(store, sids)
        st_by = _statuses(controller, sids)
        ctl = _actor_nodes().get("ace:controller")
        on = {n.node_id: [s for s in sids if st_by.get(s, {}).get("node") == n.node_id] for n in cluster.nodes if not n.head}
        # the worker node running the most streams (one without the controller when it can be)
        victim = max((n for n in cluster.nodes if not n.head), key=lambda n: (len(on.get(n.node_id, [])), n.node_id != ctl))
        moved = on.get(victim.node_id, [])
        killed_id = victim.node_id
        report["node_killed"] = victim.label
        report["node_killed_id"] = killed_id
        report["streams_on_killed_node"] = len(moved)
        say(f"{time.monotonic() - t0:.0f} s: killing {victim.label} ({killed_id}), which runs {len(moved)} stream(s) ...")
        t_kill = time.monotonic()
        report["kill_at_s"] = round(t_kill - origin[0], 1)
        report["processes_killed"] = cluster.kill([victim])
        dead_after = None
        while time.monotonic() - t_kill < 60:
            info = {x["NodeID"]: x.get("Alive") for x in ray.nodes()}
            if not info.get(killed_id, False):
                dead_after = round(time.monotonic() - t_kill, 1)
                break
            time.sleep(0.2)
        report["node_dead_detected_s"] = dead_after
        done = wait_running(moved, t_kill, MOVE_WAIT_S, exclude_node=killed_id)
        for sid in moved:
            rows[sid]["move_s"] = done.get(sid)
        report["streams_moved"] = len(done)
        report["move_seconds_max"] = max(done.values()) if done else None
        if len(done) < len(moved):
            say(f"{len(moved) - len(done)} stream(s) did not run again within {MOVE_WAIT_S:.0f} s of the kill")

        # -- 6. restart the head and the surviving nodes -------------------------------------------
        sample_until(t0 + 0.7 * seconds)
        snap_restart = _snapshot(store, sids)
        before = {sid: (_statuses(controller, [sid]).get(sid) or {}) for sid in sids}
        epochs = {sid: int(st.get("epoch") or 0) for sid, st in before.items()}
        r = api_get("/jobs")
        jobs_before = {j["id"] for j in r.json()} if r.status_code == 200 else set()
        report["jobs_before_restart"] = len(jobs_before)
        say(f"{time.monotonic() - t0:.0f} s: restarting the head and the surviving worker nodes ...")
        t_down = time.monotonic()
        report["restart_at_s"] = round(t_down - origin[0], 1)
        pusher.pause()
        shutdown_ray()
        _forget_serve()
        survivors = [n for n in cluster.nodes if n is not victim]
        report["processes_ended_at_restart"] = cluster.kill(survivors)
        mark("restart_stop_s", t_down)
        timings["restart_nodes_s"] = round(cluster.start(survivors), 1)
        connect()
        deadline = time.monotonic() + 60
        while len(cluster.refresh()) < len(survivors) and time.monotonic() < deadline:
            time.sleep(0.5)
        report["nodes_after_restart"] = len([x for x in ray.nodes() if x.get("Alive")])
        controller = get_controller(create=True, settings=d)
        ray.get(controller.streams.remote(tenant=TENANT))
        pusher.controller = controller
        pusher.paused.clear()
        office()
        mark("restart_s", t_down)
        say(f"cluster back after {timings['restart_s']:.0f} s; waiting for the streams to resume ...")
        done = wait_running(sids, t_down, RESUME_WAIT_S, epoch_after=epochs)
        for sid in sids:
            rows[sid]["resume_s"] = done.get(sid)
        report["streams_resumed_after_restart"] = len(done)
        report["resume_seconds_max"] = max(done.values()) if done else None
        r = api_get("/jobs")
        jobs_after = {j["id"]: j for j in r.json()} if r.status_code == 200 else {}
        report["jobs_kept_after_restart"] = len(jobs_before & set(jobs_after))

        # -- 7. to the end, then what was kept -----------------------------------------------------
        sample_until(max(t0 + seconds, time.monotonic() + 10.0))
        final = _statuses(controller, sids)
        report.update(pusher.stop())
        r = api_get("/jobs")
        jobs_end = {j["id"]: j for j in r.json()} if r.status_code == 200 else {}
        report["job"] = {k: (jobs_end.get(job_id) or {}).get(k) for k in ("status", "progress")} | {
            "items": [{k: it.get(k) for k in ("status", "attempts", "moments", "clips", "error")}
                      for it in (jobs_end.get(job_id) or {}).get("items", [])]}
        lost = dup = served = total = api_moments = 0
        for sid in sids:
            ms = store.list_moments(sid, tenant=TENANT)
            cs = store.list_clips(sid, tenant=TENANT)
            have = {m["id"] for m in ms}
            gone = sorted((set(snap_kill[sid]["moments"]) | set(snap_restart[sid]["moments"])) - have)
            lost += len(gone)
            dup_s = _duplicates(ms, cs)
            dup += dup_s
            r = api_get(f"/streams/{sid}/moments")
            items = r.json() if r.status_code == 200 else []
            api_moments += len(items)
            ok = 0
            videos = [m["clip"]["video"] for m in items if m.get("clip") and m["clip"].get("video")]
            for v in videos:
                try:
                    resp = api_get(v, timeout=60)
                    ok += resp.status_code == 200 and len(resp.content) > 0
                except httpx.HTTPError:
                    pass
            served += ok
            total += len(cs)
            st = final.get(sid) or {}
            rows[sid].update({"status": st.get("status"), "node_final": cluster.label_of(st.get("node")),
                              "analysed_until": st.get("analysed_until"), "epoch": st.get("epoch"),
                              "restarts": st.get("restarts"), "outages": len(st.get("outages") or []),
                              "outage_s": round(sum(float(o.get("seconds") or 0) for o in st.get("outages") or []), 1),
                              "moments": len(ms), "clips": len(cs), "clips_served": ok, "lost_moments": gone,
                              "duplicate_clips": dup_s, "error": (st.get("error") or "")[:300]})
        moments_total = sum(r["moments"] for r in rows.values())
        report.update({"duplicate_clips": dup, "lost_moments": lost, "clips_served_from_api": served,
                       "clips_total": total, "moments_total": moments_total,
                       "moments_without_clips": moments_total - total,
                       "moments_from_api": api_moments,
                       "moments_at_kill": sum(len(s["moments"]) for s in snap_kill.values()),
                       "moments_at_restart": sum(len(s["moments"]) for s in snap_restart.values())})
    finally:
        say("stopping ...")
        pusher.stop()
        t = time.monotonic()
        if ray.is_initialized():
            try:
                c = get_controller(create=False)
                ray.get(c.shutdown_streams.remote(suspend=False), timeout=120)
            except Exception as e:  # noqa: BLE001 - stopping anyway
                log.warning("stopping the streams: %s", e)
            stop_back_office()
            shutdown_ray()
        _forget_serve()
        ended = cluster.kill()
        stop_publishing(pubs, server)
        report["processes_ended_at_stop"] = ended
        report["stray_processes"] = len(cluster.processes(cluster.nodes)) + cluster.sweep()
        mark("stop_s", t)
        report["ray_logs"] = {n.label: str(n.temp / "session_latest" / "logs") for n in cluster.nodes}
        report["stream_log_lines"] = _stream_log_lines(cluster, sids)
    report["per_stream"] = [{k: v for k, v in rows[s].items() if not k.startswith("_")} for s in sids]
    timings["total_s"] = round(time.monotonic() - started, 1)
    report["timings"] = timings
    report["targets"] = {
        "all_nodes_up": report.get("nodes") == nodes,
        f"moved<={MOVE_TARGET_S:g}s": (report.get("streams_moved") == report.get("streams_on_killed_node")
                                      and (report.get("move_seconds_max") or 0) <= MOVE_TARGET_S),
        "all_resumed": report.get("streams_resumed_after_restart") == streams,
        "jobs_kept": report.get("jobs_kept_after_restart") == report.get("jobs_before_restart"),
        "no_duplicate_clips": report.get("duplicate_clips") == 0,
        "no_lost_moments": report.get("lost_moments") == 0,
        "all_clips_served": report.get("clips_served_from_api") == report.get("clips_total"),
    }
    return report


def _stream_log_lines(cluster: _Cluster, sids: list[str], limit: int = 80) -> list[str]:
    """What the stream workers logged (warnings and errors: ACE logs no more by default), from
    every node's Ray sessions, once each, prefixed with the node."""
    out: list[str] = []
    seen: set[str] = set()
    for n in cluster.nodes:
        for session in sorted(n.temp.glob("session_2*")):
            for f in sorted((session / "logs").glob("worker-*.err")):
                try:
                    lines = f.read_text(errors="replace").splitlines()
                except OSError:
                    continue
                for line in lines:
                    if line not in seen and any(line.startswith(sid) or f"stream {sid}" in line for sid in sids):
                        seen.add(line)
                        out.append(f"{n.label}: {line[:400]}")
    return out[:limit]


def _forget_serve() -> None:
    """Forget this process's Serve client: the next cluster has its own Serve."""
    try:
        from ray.serve.context import _set_global_client
    except ImportError:  # another Ray version: nothing cached there
        return
    _set_global_client(None)


def print_cluster_report(r: dict, console=None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # a file or pipe: as wide as the table needs, not 80 columns
            console = Console(width=160)
    rows = r.get("per_stream", [])
    t = Table(title=f"cluster bench: {r.get('nodes')} nodes, {r.get('streams_asked')} streams x {r['seconds']:.0f} s "
                    f"({r['cpu_count']} CPUs, {r['model']}); killed {r.get('node_killed')}", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("stream", no_wrap=True, min_width=max([len(s["id"]) for s in rows] + [6]))  # ids whole
    for col in ("node", "status", "move s", "resume s", "outages", "moments", "clips", "served", "lost", "dup"):
        t.add_column(col, overflow="fold")
    for s in rows:
        t.add_row(s["id"], f"{s.get('node_before')}>{s.get('node_final')}", str(s.get("status")), str(s.get("move_s", "-")),
                  str(s.get("resume_s")), str(s.get("outages")), str(s.get("moments")), str(s.get("clips")),
                  str(s.get("clips_served")), str(len(s.get("lost_moments") or [])), str(s.get("duplicate_clips")))
    console.print(t)
    console.print(f"nodes {r.get('nodes')}, {r.get('nodes_after_restart')} after the restart; streams per node "
                  f"{r.get('streams_per_node')}; killed {r.get('node_killed')} ({r.get('node_killed_id')}), found dead "
                  f"after {r.get('node_dead_detected_s')} s; streams moved {r.get('streams_moved')}/"
                  f"{r.get('streams_on_killed_node')} (slowest {r.get('move_seconds_max')} s); resumed after the restart "
                  f"{r.get('streams_resumed_after_restart')}/{r.get('streams_asked')} (slowest {r.get('resume_seconds_max')} s "
                  f"after the cluster went down); jobs kept {r.get('jobs_kept_after_restart')}/{r.get('jobs_before_restart')}",
                  soft_wrap=True)
    console.print(f"moments {r.get('moments_total')}, lost {r.get('lost_moments')}, without a clip "
                  f"{r.get('moments_without_clips')}; clips {r.get('clips_total')}, served "
                  f"by the API {r.get('clips_served_from_api')}, duplicate {r.get('duplicate_clips')}; events pushed "
                  f"{r.get('events_pushed')}, accepted {r.get('events_accepted')}; stray processes "
                  f"{r.get('stray_processes')}; timings {r.get('timings')}", soft_wrap=True)
    console.print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r.get("targets", {}).items()))
    keys = ("nodes", "streams", "streams_per_node", "node_killed", "streams_moved", "move_seconds_max",
            "streams_resumed_after_restart", "jobs_kept_after_restart", "duplicate_clips", "lost_moments",
            "clips_served_from_api", "clips_total")
    console.print(json.dumps({k: r.get(k) for k in keys}), soft_wrap=True)
