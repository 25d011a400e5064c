"""Where a run's CPU time goes, by kind of process: ``ace bench live``'s profile.

:class:`CpuProfile` is a context manager like :class:`ace.bench.PeakMemory`: a thread samples every
``interval`` (0.5 s) the run's processes (this one and its descendants, plus those whose command line
names this process's Ray session folder, and theirs) and adds each one's ``cpu_times()`` (user +
system) since the last sample to its category (:func:`categorize`, from name, command line and the
parent's category; a Ray worker's command line is its title: ``ray::StreamWorker.step``,
``ray::IDLE``), taken again at every sample. A process started during the run counts from zero.

Short-lived processes (a 0.3 s ffprobe, most clip cuts) start and end between two samples; they are
counted through their parent. Reaping a child adds its whole CPU time (its own and that of the
children it reaped) to the parent's ``children_user + children_system``. The rise of that figure,
less the last seen total (own + children) of the parent's sampled children that are gone (counted
already), goes to ``short-lived children of <parent's category>``: for the stream actors, their
clip cuts, joins and probes (the ingest ffmpeg lives as long as the stream and is sampled), plus
what a sampled child used after its last sample. Each sample reads a parent before its children, so
a child reaped between the two reads is taken as gone, never counted twice; a sampled child that
went up with its parent (reaped by it as it died, or orphaned) is owed by the grandparent.

The rest of the machine is sampled the same way, as ``not this run`` (another user's tests, say).
The machine's figure (``psutil.cpu_times()``: user, nice, system, irq, softirq) is the total of the
shares; what no process holds is ``other / unaccounted`` (interrupts, children reaped without
accounting). The sampling thread's time is a row of its own (about 7 ms a sample for 100
processes). ``ace: false`` rows are not ACE's cost: the bench's ``ffmpeg -re`` publishers stand in
for the platform, the driver for the API's callers; ``other`` is what no category names.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

log = logging.getLogger("ace.workers")

STREAM, SPEECH, CONTROLLER = "stream actors", "speech pool", "controller"
INGEST, CUT, PUBLISHER = "ingest ffmpeg", "cut ffmpeg", "publisher ffmpeg"
RAY_SYSTEM, RAY_IDLE, RAY_OTHER = "ray system", "idle Ray workers", "other Ray workers"
DRIVER, PROFILER, OTHER = "bench driver", "profiler (sampling thread)", "other"
FOREIGN, UNACCOUNTED = "not this run", "other / unaccounted"
SHORT = "short-lived children of "
#: categories that are not ACE's cost (nor are their short-lived children)
NOT_ACE = frozenset({PUBLISHER, DRIVER, PROFILER, OTHER, FOREIGN, UNACCOUNTED})

#: Ray actor class (the title after ``ray::``) -> category
_ACTORS = {"StreamWorker": STREAM, "SpeechServer": SPEECH, "LiveController": CONTROLLER, "IDLE": RAY_IDLE}
#: executables and Python scripts of Ray's own services
_RAY_SERVICES = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "agent", "ray_client_server")


def categorize(name: str, cmdline: Sequence[str], parent: str | None = None) -> str:
    """The category of a process from its name, its command line and its parent's category (``None``
    when its parent is not profiled). A pure function; the driver itself is told apart by its pid."""
    line = " ".join(a for a in cmdline if a).strip()
    title = line if line.startswith("ray::") else name if name.startswith("ray::") else ""
    if title:  # a Ray worker: ray::Class, ray::Class.method, ray::IDLE, ray::DashboardAgent, and while
        # a named actor starts, ray::NAME:Class.__init__ (ACE's names have colons: ace:stream:ID)
        cls = title[5:].split(None, 1)[0].rsplit(":", 1)[-1].split(".", 1)[0] if title[5:].strip() else ""
        if cls in _ACTORS:
            return _ACTORS[cls]
        return RAY_SYSTEM if cls.endswith("Agent") else RAY_OTHER
    exe = os.path.basename(cmdline[0]) if cmdline and cmdline[0] else name
    if exe in ("ffmpeg", "ffprobe") or name in ("ffmpeg", "ffprobe"):
        if "-segment_list" in cmdline:  # ace.live.ingest: copies the source into segments
            return INGEST
        if "-re" in cmdline and "hls" in cmdline:  # the bench's stand-in for the platform
            return PUBLISHER
        return CUT if parent == STREAM else OTHER
    if exe in ("raylet", "gcs_server"):  # before the workers: the raylet's arguments name default_worker.py
        return RAY_SYSTEM
    if "default_worker.py" in line:  # a worker before it took its title
        return RAY_IDLE
    if "/ray/" in line and any(s in line for s in _RAY_SERVICES):
        return RAY_SYSTEM
    return OTHER


def is_ace(category: str) -> bool:
    """Whether a category is ACE's cost (the publishers, the driver, the profiler and others are not)."""
    return category.removeprefix(SHORT) not in NOT_ACE


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))


def _ray_session_dir() -> str | None:
    ray = sys.modules.get("ray")
    try:
        node = ray._private.worker._global_node if ray is not None and ray.is_initialized() else None
        return node.get_session_dir_path() if node is not None else None
    except Exception:  # noqa: BLE001 - another Ray version: the descendants are still profiled
        return None


@dataclass
class _Proc:
    cat: str
    own: float  # user + system at the last sample
    kids: float  # children_user + children_system at the last sample
    kids0: float  # the children figure the run starts from
    parent: tuple | None  # key of the parent when last seen
    gone_kids: float = 0.0  # last seen totals of sampled children that are gone (counted already)


class CpuProfile:
    """Samples the CPU time of this process tree and its Ray session in a thread; :meth:`result`
    gives it by category (see the module's docstring). Never raises into the code it measures."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.samples = 0
        self.errors = 0
        self._cpu: dict[str, float] = defaultdict(float)
        self._procs: dict[tuple, _Proc] = {}  # (pid, create time) -> the processes alive at the last sample
        self._count: dict[str, int] = {}  # processes seen and gone, by category
        self._roots: set[int] = set()
        self._me = os.getpid()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ace-cpu-profile")
        self._t0 = self._wall = self._busy = 0.0

    def _scope(self) -> tuple[list[int], set[int], dict[int, int]]:
        """Pids to read, each after its parent (the run's first), the run's pids, the pid -> ppid map."""
        try:
            ppid = psutil._ppid_map()
        except Exception:  # noqa: BLE001 - a private helper; the public way is slower
            ppid = {p.pid: p.info["ppid"] for p in psutil.process_iter(["ppid"])}
        if self.samples % 10 == 0:  # Ray's services live long: look for them every few seconds
            session = _ray_session_dir()
            if session:
                roots = set()
                for p in psutil.process_iter(["cmdline"]):
                    if p.pid != self._me and session in " ".join(p.info["cmdline"] or ()):
                        roots.add(p.pid)
                self._roots = roots
        kids: dict[int, list[int]] = defaultdict(list)
        for pid, pp in ppid.items():
            kids[pp].append(pid)
        order, seen = [], set()

        def walk(todo: list[int]) -> None:  # breadth first: parents before children
            while todo:
                pid = todo.pop(0)
                if pid not in seen and pid in ppid:
                    seen.add(pid)
                    order.append(pid)
                    todo.extend(kids.get(pid, ()))

        walk([self._me, *sorted(self._roots)])
        run = set(order)
        walk(sorted(pid for pid, pp in ppid.items() if pp not in ppid))  # the rest of the machine, from its roots
        return order, run, ppid

    def _sample(self) -> None:
        started = time.thread_time()
        order, run, ppid = self._scope()
        now: dict[int, tuple] = {}  # pid -> key of this sample's processes
        for pid in order:
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    key, t, name, cmd = (pid, p.create_time()), p.cpu_times(), "", None
                    if pid in run:
                        name = p.name()
                        try:
                            cmd = p.cmdline()
                        except psutil.Error:  # a zombie has none
                            pass
            except psutil.Error:  # gone (or not ours to read) since the listing
                continue
            parent = now.get(ppid.get(pid, -1))
            prev = self._procs.get(key)
            if pid not in run:
                cat = FOREIGN
            elif pid == self._me:
                cat = DRIVER
            elif cmd is None and prev is not None:
                cat = prev.cat
            else:
                cat = categorize(name, cmd or [], self._procs[parent].cat if parent in self._procs else None)
            own, kids = t.user + t.system, t.children_user + t.children_system
            with self._lock:
                if prev is None:  # born during the run: all of it; else from now on
                    born = self.samples > 0 and p.create_time() > self._t0 - 2.0
                    prev = self._procs[key] = _Proc(cat, 0.0 if born else own, 0.0 if born else kids,
                                                    0.0 if born else kids, parent)
                self._cpu[cat] += max(0.0, own - prev.own)
                prev.cat, prev.own, prev.kids, prev.parent = cat, own, kids, parent
            now[pid] = key
        alive = set(now.values())
        with self._lock:
            gone = [key for key in self._procs if key not in alive]
            for key in gone:  # counted already: not again through the parent that reaps it
                rec = self._procs[key]
                if rec.parent in self._procs:
                    self._procs[rec.parent].gone_kids += rec.own + rec.kids
            for key, owed in self._fold(gone, self._cpu, self._count).items():
                self._procs[key].gone_kids += owed  # alive: it owes when it reaps, or at the end
            for key in gone:
                del self._procs[key]
            self.samples += 1
            self._cpu[PROFILER] += time.thread_time() - started
            self._cpu[DRIVER] -= time.thread_time() - started

    def _fold(self, keys: list[tuple], cpu: dict[str, float], count: dict[str, int]) -> dict[tuple, float]:
        """Adds what the processes ``keys`` reaped, less their sampled children, to the short-lived
        rows, children first; less than nothing is owed by the parent (see the module's docstring),
        or at a root by the category. Returns what parents not in ``keys`` owe."""
        def depth(key: tuple) -> int:
            d = 0
            while key in self._procs and d < 64:
                key, d = self._procs[key].parent, d + 1
            return d

        owed: dict[tuple, float] = {}
        for key in sorted(keys, key=depth, reverse=True):
            rec = self._procs[key]
            rest = rec.kids - rec.kids0 - rec.gone_kids - owed.pop(key, 0.0)
            if rest < 0 and rec.parent in self._procs:
                owed[rec.parent] = owed.get(rec.parent, 0.0) - rest
            elif rest:
                cat = rec.cat if rec.cat == FOREIGN else SHORT + rec.cat
                cpu[cat] = cpu.get(cat, 0.0) + rest
            count[rec.cat] = count.get(rec.cat, 0) + 1
        return owed

    def _safe_sample(self) -> None:
        try:
            self._sample()
        except Exception:  # noqa: BLE001 - the profile must never break the bench
            self.errors += 1
            log.debug("cpu profile sample failed", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._safe_sample()

    def __enter__(self) -> CpuProfile:
        self._t0, self._wall, self._busy = time.time(), time.perf_counter(), _machine_busy()
        self._safe_sample()  # what runs now counts from here
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._safe_sample()
        self._wall = time.perf_counter() - self._wall
        self._busy = _machine_busy() - self._busy

    def _totals(self) -> tuple[dict[str, float], dict[str, int]]:
        with self._lock:
            cpu, count = dict(self._cpu), dict(self._count)
            self._fold(list(self._procs), cpu, count)
        return cpu, count

    def cpu_by_category(self) -> dict[str, float]:
        """CPU seconds by category so far, short-lived children included (no unaccounted row)."""
        return self._totals()[0]

    def result(self) -> dict:
        """Plain data: ``rows`` (category, cpu_s, share %, cores, ace, processes sampled) by CPU
        seconds, and ``totals``. Call it after the ``with`` block."""
        wall = max(self._wall, 1e-9)
        cpu, count = self._totals()
        cpu = {k: max(0.0, v) for k, v in {**dict.fromkeys(count, 0.0), **cpu}.items()}
        accounted = sum(v for k, v in cpu.items() if k != FOREIGN)
        cpu[UNACCOUNTED] = max(0.0, self._busy - accounted - cpu.get(FOREIGN, 0.0))
        total = max(self._busy, sum(cpu.values()), 1e-9)
        rows = [{"category": k, "cpu_s": round(v, 2), "share": round(100 * v / total, 1), "cores": round(v / wall, 3),
                 "ace": is_ace(k), "processes": count.get(k)}  # short-lived ones are not counted
                for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.005 or count.get(k)]
        ace = sum(v for k, v in cpu.items() if is_ace(k))
        return {"rows": rows, "totals": {
            "wall_s": round(self._wall, 2), "machine_cpu_s": round(self._busy, 2), "accounted_cpu_s": round(accounted, 2),
            "ace_cpu_s": round(ace, 2), "ace_cores": round(ace / wall, 3), "machine_cores": round(self._busy / wall, 3),
            "cpu_count": psutil.cpu_count(), "samples": self.samples, "interval_s": self.interval,
            "sample_errors": self.errors}}
