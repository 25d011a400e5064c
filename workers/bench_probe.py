"""``ace bench probe``: a hardening probe against a real ``ace serve`` on loopback.

The probe starts its own ACE as a user does (``ace serve --detach`` in a subprocess, with its own
data folder and free ports, loopback HLS allowed by ``ACE_URL_ALLOWLIST``), makes API tokens for
two tenants (``acme`` and ``globex``), publishes a live HLS copy of the sample show (or ``--input``)
on 127.0.0.1 and submits it for acme. Then it measures what a careful attacker or user would check,
each phase reported as numbers, never stopping at an unexpected answer (it is counted instead):

1. **ports**: every listening TCP socket of the processes of the Ray node that ``ace serve`` started
   (:func:`workers.cluster.ray_node_processes`: those whose command lines name that node's session
   folder or GCS address, and their children; nothing else on the machine) whose address is not
   loopback.
2. **hostile inputs**: ``inputs`` requests drawn from a seed by :class:`ace.api.hostile.Hostile`
   over the routes (malformed and hostile event batches, hostile stream URLs, batch jobs with path
   tricks, odd ids in paths, the other tenant's ids, missing and forged tokens, junk sign-ins): the
   answers by status code, the 5xx among them, and whether the stream counted exactly the events of
   the requests answered 200.
3. **exactly once**: ``batches`` keyed batches of 50 events, each sent twice, from a few threads,
   while the stream's actor is killed once (Ray restarts it); a batch whose request failed is
   retried until answered 200. The events answered 200 must be the events the stream counted.
4. **submit-and-stop cycles**: ``cycles`` streams of globex submitted and stopped; their actors
   must have ended ~20 s later; the node's resident memory before and after; then one small batch
   job, whose progress actor must have ended once it is done.

At the end ACE is stopped with ``ace serve --shutdown``, and whatever it left of the probe's Ray node
is reported and ended by process id.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from ace.api.hostile import Client, Hostile, event
from ace.api.app import _IDEMPOTENCY_KEY
from ace.config import Settings
from workers.bench_api import _free_port
from workers.bench_live import _publish, _serve, stop_publishing
from workers.cluster import end_processes, init_ray, ray_node_processes, shutdown_ray

log = logging.getLogger("ace.workers")

#: events in one batch of the exactly-once phase
BATCH_EVENTS = 50
#: how long the probe waits for finished streams' actors to end
ACTOR_END_WAIT_S = 20.0
#: client threads of the exactly-once phase
THREADS = 4
#: the documented form of an Idempotency-Key: 1-200 visible ASCII characters, spaces inside only
_NOT_DEAD = ("ALIVE", "RESTARTING", "PENDING_CREATION", "DEPENDENCIES_UNREADY")


# ----------------------------------------------------------------------------------- the node


class NodeProcesses:
    """The processes of the probe's Ray node (:func:`workers.cluster.ray_node_processes`), every one
    ever seen remembered for the final report (psutil checks a pid's start time, so a reused pid is
    not taken for it)."""

    def __init__(self, gcs_address: str):
        self.gcs_address, self.session_dir = gcs_address, None
        self.seen: dict[int, psutil.Process] = {}

    def find(self) -> list[psutil.Process]:
        procs = ray_node_processes(self.session_dir, self.gcs_address)
        for p in procs:
            self.seen.setdefault(p.pid, p)
        return procs

    def running(self) -> list[psutil.Process]:
        """Those seen that still run."""
        return [p for p in self.seen.values() if _running(p)]

    def rss_mb(self) -> float:
        total = 0
        for p in self.find():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return round(total / 2**20, 1)

    def end(self) -> int:
        """SIGTERM, then SIGKILL, to the node's processes (only those); returns how many were running."""
        self.find()
        return end_processes(self.running(), grace_s=10.0)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _title(p: psutil.Process) -> str:
    """A process's name as a reader knows it: ``ray::<actor>``, the Ray binary, or the Python script."""
    try:
        cmd = p.cmdline() or [p.name()]
    except psutil.Error:
        return "?"
    first = cmd[0].split()[0] if cmd[0].startswith("ray::") else cmd[0]
    if first.startswith("ray::"):
        return first
    name = Path(first).name
    if name.startswith("python"):
        for i, a in enumerate(cmd[1:], start=1):
            if a == "-m" and i + 1 < len(cmd):
                return cmd[i + 1]
            if a == "-c":
                return "python -c"
            if not a.startswith("-"):
                return Path(a).name
    return name


def _loopback(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a.is_loopback


def listening(node: NodeProcesses) -> list[tuple[str, str, int]]:
    """(process title, address, port) of every TCP socket the node's processes listen on."""
    procs = {p.pid: p for p in node.find()}
    out = set()
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs and c.laddr:
            out.add((_title(procs[c.pid]), c.laddr.ip, c.laddr.port))
    return sorted(out, key=lambda x: (x[0], x[2], x[1]))


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _actor_rows(names: set[str]) -> list[dict]:
    """The GCS actor table's rows of the actors with those names (several for a name used again)."""
    import ray._private.state as state

    return [a for a in state.actors().values() if (a.get("Name") or "") in names]


def _actor_states(prefix: str, ids: list[str]) -> Counter:
    """The states of the actors named ``<prefix><id>`` (one per id: its newest)."""
    newest: dict[str, tuple[float, str]] = {}
    for a in _actor_rows({f"{prefix}{i}" for i in ids}):
        at = float(a.get("StartTime") or a.get("Timestamp") or 0)
        if a["Name"] not in newest or at >= newest[a["Name"]][0]:
            newest[a["Name"]] = (at, a.get("State") or "?")
    return Counter(st for _at, st in newest.values())


def _wait_actors_end(prefix: str, ids: list[str], timeout: float) -> tuple[Counter, int]:
    """Waits up to ``timeout`` for those actors to end: (their states, how many are not dead)."""
    deadline = time.monotonic() + timeout
    while True:
        states = _actor_states(prefix, ids) if ids else Counter()
        alive = sum(n for s, n in states.items() if s in _NOT_DEAD)
        if alive == 0 or time.monotonic() > deadline:
            return states, alive
        time.sleep(1.0)


def _named(prefix: str, ids: list[str]) -> int:
    """How many of those names Ray still lists as named actors (a dead actor's name is released)."""
    import ray

    want = {f"{prefix}{i}" for i in ids}
    return sum(1 for a in ray.util.list_named_actors(all_namespaces=True) if a.get("name") in want)


def _restarts(sid: str) -> int | None:
    """How many times Ray has restarted the stream's actor."""
    from workers.live import STREAM_PREFIX

    try:
        rows = _actor_rows({f"{STREAM_PREFIX}{sid}"})
    except Exception:  # noqa: BLE001 - reported as unknown
        return None
    return max((int(a.get("NumRestarts") or 0) for a in rows), default=None)


# ----------------------------------------------------------------------------------- HTTP


def _poll(http: Client, token: str, path: str, done, timeout: float, every: float = 1.0) -> dict:
    """GET ``path`` every ``every`` seconds until ``done(answer)`` or ``timeout``: the last answer
    that was 200 and an object ({} when none was)."""
    deadline = time.monotonic() + timeout
    view: dict = {}
    while True:
        code, data, _h = http.send("GET", path, token=token)
        if code == 200 and isinstance(data, dict):
            view = data
            if done(view):
                return view
        if time.monotonic() > deadline:
            return view
        time.sleep(every)


def _wait_status(http: Client, token: str, sid: str, want: tuple[str, ...], timeout: float) -> dict:
    """The stream's view once its status is one of ``want`` or final (or ``timeout`` is out)."""
    return _poll(http, token, f"/streams/{sid}", lambda v: v.get("status") in (*want, "ended", "failed", "stopped"), timeout)


def _events_received(http: Client, token: str, sid: str) -> int | None:
    """The stream's own count of the events it accepted (waits out a restart: 'unavailable')."""
    n = _poll(http, token, f"/streams/{sid}", lambda v: isinstance(v.get("events_received"), int), 90.0).get("events_received")
    return n if isinstance(n, int) else None


def _error(data, n: int | None = 200) -> str:
    """The ``error`` of a JSON answer, cut to ``n`` characters ("" for none)."""
    return data.get("error", "")[:n] if isinstance(data, dict) else ""


# ----------------------------------------------------------------------------------- hostile inputs


def hostile_phase(http: Client, ctx: dict, inputs: int, seed: int, say) -> dict:
    gen = Hostile(seed, ctx)
    answers: Counter = Counter()
    cross_answers: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    errors: list[dict] = []
    transport: list[dict] = []
    accepted_events = 0
    leaks: list[str] = []
    submitted: list[tuple[str, str, str, bool]] = []  # (who, id, request, hostile URL) of submissions answered 201
    odd_accepts: list[str] = []
    ids_ok: list[str] = []
    count_mismatch: list[str] = []
    before = _events_received(http, ctx["acme"], ctx["sid"])
    t0 = time.monotonic()
    for n in range(inputs):
        q = gen.draw()
        code, data, _h = http.send(q["method"], q["path"], headers=q["headers"], content=q.get("content"), cookies=q["cookies"])
        answers[str(code)] += 1
        by_kind.setdefault(q["kind"], Counter())[str(code)] += 1
        line = {"method": q["method"], "path": q["path"][:120], "who": q["who"], "body": q["desc"][:200], "answer": code,
                "error": _error(data)}
        if isinstance(code, int) and code >= 500:
            errors.append(line)
        elif isinstance(code, str) and code.startswith("error:"):
            transport.append(line)
        ok = isinstance(code, int) and 200 <= code < 300
        if ok and q["who"] in ("none", "forged"):
            leaks.append(f"{q['who']} credentials answered {code}: {q['method']} {q['path'][:80]} "
                         f"({Hostile.credential(q['headers'], q['cookies'])})")
        cross = q["kind"] == "other-tenant" or (q["kind"] == "events" and q["who"] == "globex" and q.get("to_stream"))
        if cross:
            cross_answers[str(code)] += 1
        # another tenant's stream must look like none: never accepted, never "finished" or "forbidden"
        # (a 400/422 for a malformed body is what any id gets: the body is checked first)
        if cross and isinstance(code, int) and (200 <= code < 300 or code in (403, 409)):
            leaks.append(f"globex on acme's stream answered {code}: {q['method']} {q['desc'][:80]}")
        if q["kind"] == "submit" and code == 201 and isinstance(data, dict) and data.get("id"):
            submitted.append((q["who"], data["id"], q["desc"], q["hostile_url"]))
        if q["kind"] == "ids" and ok:
            ids_ok.append(f"{code}: {q['method']} {q['path'][:100]} ({q['who']})")
        if q["kind"] == "job" and ok:
            odd_accepts.append(f"job accepted: {q['desc'][:120]}")
        if q.get("to_stream") and code == 200:
            said = data.get("accepted") if isinstance(data, dict) else None
            key, reuse = q.get("key"), q.get("reuse")
            if q["who"] != "acme":
                n_new = said if isinstance(said, int) else (q.get("events") or 0)
            elif reuse == "same":
                n_new = 0  # a retry: counted once, already
            elif reuse == "other":
                n_new = 0
                odd_accepts.append(f"key {key} reused with other events answered 200 (accepted {said})")
            else:
                n_new = q["events"] if q["events"] is not None else (said if isinstance(said, int) else 0)
                if q["events"] is None:
                    odd_accepts.append(f"answered 200 (accepted {said}): {q['desc'][:120]}")
                elif said != q["events"]:
                    count_mismatch.append(f"sent {q['events']}, told accepted {said}: {q['desc'][:100]}")
                if key is not None:
                    key = key.strip(" \t")  # what the server reads: a header value's edge spaces are not part of it
                    if _IDEMPOTENCY_KEY.fullmatch(key):
                        gen.remember(key, q)
                    else:
                        odd_accepts.append(f"Idempotency-Key {key[:20]!r} ({len(key)} chars) answered 200")
            accepted_events += n_new
        if (n + 1) % 250 == 0:
            say(f"hostile inputs: {n + 1}/{inputs} sent, answers {dict(sorted(answers.items()))}")
    seconds = time.monotonic() - t0
    let_in, lax = [], []
    for who, sid, desc, hostile_url in submitted:  # stop the streams that were let in
        code, _d, _h = http.send("POST", f"/streams/{sid}/stop", token=ctx.get(who) or ctx["acme"])
        (let_in if hostile_url else lax).append({"id": sid, "request": desc, "stop": code})
    after = _events_received(http, ctx["acme"], ctx["sid"])
    return {
        "inputs_tried": inputs, "seconds": round(seconds, 1), "seed": seed,
        "answers": dict(sorted(answers.items())),
        "answers_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "server_errors": len(errors), "server_error_examples": errors[:8],
        "transport_errors": len(transport), "transport_error_examples": transport[:5],
        "events_accepted": accepted_events, "events_counted": after - before if None not in (after, before) else None,
        "counted_before": before, "counted_after": after,
        "other_tenant_answers": dict(sorted(cross_answers.items())), "leaks": leaks[:20], "leak_count": len(leaks),
        "submissions_let_in": let_in, "odd_submissions_accepted": lax, "odd_ids_answered_2xx": ids_ok[:10],
        "sent_raw": http.raw_sent,
        "unexpected_accepts": odd_accepts[:20], "accepted_count_mismatches": count_mismatch[:10],
    }


# ----------------------------------------------------------------------------------- exactly once


def exactly_once_phase(url: str, ctx: dict, batches: int, say) -> dict:
    import ray

    from workers.live import NAMESPACE, STREAM_PREFIX

    sid, token = ctx["sid"], ctx["acme"]
    run = f"{random.getrandbits(32):08x}"
    rng = random.Random(1)
    work = [(f"probe-once-{run}-{i}", json.dumps([event(rng) for _ in range(BATCH_EVENTS)]).encode()) for i in range(batches)]
    todo = iter(work)
    http0 = Client(url)
    before, restarts0 = _events_received(http0, token, sid), _restarts(sid)
    lock = threading.Lock()
    answered: set[str] = set()
    answers: Counter = Counter()
    refused: list[dict] = []
    retries = done = 0
    killed = threading.Event()
    kill_info: dict = {}

    def send_until_ok(http: Client, key: str, body: bytes) -> bool:
        nonlocal retries
        deadline = time.monotonic() + 180
        while True:
            code, data, h = http.send("POST", f"/streams/{sid}/events", token=token, content=body,
                                      headers={"Idempotency-Key": key, "Content-Type": "application/json"})
            with lock:
                answers[str(code)] += 1
                if code == 200:
                    answered.add(key)
            if code == 200:
                return True
            retryable = (isinstance(code, str) and code.startswith("error:")) or code in (429, 500, 502, 503, 504)
            if not retryable or time.monotonic() > deadline:
                with lock:
                    refused.append({"key": key, "answer": code, "error": _error(data)})
                return False
            with lock:
                retries += 1
            wait = 0.5
            if h is not None and h.get("retry-after"):
                try:
                    wait = min(5.0, float(h["retry-after"]))
                except ValueError:
                    pass
            time.sleep(wait)

    def worker():
        nonlocal done
        http = Client(url)
        try:
            while True:
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                if send_until_ok(http, *item):
                    send_until_ok(http, *item)  # the retry of a batch whose answer was "lost"
                with lock:
                    done += 1
                    if done >= len(work) // 2 and not killed.is_set():
                        killed.set()
                        threading.Thread(target=kill, daemon=True).start()
        finally:
            http.close()

    def kill():
        try:
            ray.kill(ray.get_actor(f"{STREAM_PREFIX}{sid}", namespace=NAMESPACE), no_restart=False)
            kill_info["killed_at_batch"] = done
            say(f"exactly once: killed the stream's actor after {done} batches (Ray restarts it)")
        except Exception as e:  # noqa: BLE001 - measured, reported
            kill_info["kill_error"] = f"{type(e).__name__}: {e}"[:300]

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if batches and not killed.is_set():
        killed.set()
        kill()
    seconds = time.monotonic() - t0
    after, restarts1 = _events_received(http0, token, sid), _restarts(sid)
    http0.close()
    return {"batches": batches, "events_a_batch": BATCH_EVENTS, "threads": THREADS, "seconds": round(seconds, 1),
            "events_sent": BATCH_EVENTS * len(answered), "events_counted": after - before if None not in (after, before) else None,
            "counted_before": before, "counted_after": after,
            "actor_restarts": restarts1 - restarts0 if None not in (restarts0, restarts1) else None,
            "answers": dict(sorted(answers.items())), "retries": retries, "batches_not_accepted": refused[:10],
            "batches_not_accepted_count": len(refused)} | kill_info


# ----------------------------------------------------------------------------------- cycles


def cycles_phase(http: Client, ctx: dict, node: NodeProcesses, cycles: int, say) -> dict:
    from workers.live import JOB_PREFIX, STREAM_PREFIX

    token, hls_url = ctx["globex"], ctx["hls_url"]
    rss_before = node.rss_mb()
    ids: list[str] = []
    submit_answers: Counter = Counter()
    stop_answers: Counter = Counter()
    after_stop: Counter = Counter()
    t0 = time.monotonic()
    for i in range(cycles):
        sid = None
        for _try in range(5):
            code, data, _h = http.send("POST", "/streams", token=token, json_body={"url": hls_url, "name": f"cycle{i}"})
            submit_answers[str(code)] += 1
            if code == 201 and isinstance(data, dict):
                sid = data.get("id")
            if code not in (429, 503) and not str(code).startswith("error:"):
                break
            time.sleep(2.0)
        if not sid:
            continue
        ids.append(sid)
        code, _d, _h = http.send("POST", f"/streams/{sid}/stop", token=token)
        stop_answers[str(code)] += 1
        # a stopped stream takes no more events: 409
        code, _d, _h = http.send("POST", f"/streams/{sid}/events", token=token, json_body=[{"t": 1, "kind": "like"}])
        after_stop[str(code)] += 1
        if (i + 1) % 5 == 0 or i + 1 == cycles:
            say(f"cycles: {i + 1}/{cycles} submitted and stopped")
    cycle_s = time.monotonic() - t0
    states, alive = _wait_actors_end(STREAM_PREFIX, ids, ACTOR_END_WAIT_S)
    waited = time.monotonic() - t0 - cycle_s
    out = {"cycles": cycles, "streams_submitted": len(ids), "seconds": round(cycle_s, 1), "waited_s": round(waited, 1),
           "submit_answers": dict(submit_answers), "stop_answers": dict(stop_answers),
           "events_after_stop_answers": dict(after_stop), "stream_actors_alive_after": alive,
           "stream_actor_states": dict(states), "stream_names_still_registered": _named(STREAM_PREFIX, ids) if ids else 0,
           "rss_mb_before": rss_before, "rss_mb_after": node.rss_mb()}
    # one small batch job, then its progress actor must be gone
    say("cycles: one small batch job ...")
    code, data, _h = http.send("POST", "/jobs", token=token, json_body={"name": "probe", "items": [{"url": ctx["job_url"]}]})
    job: dict = {"submit_answer": code}
    jid = data.get("id") if code == 201 and isinstance(data, dict) else None
    out["job_actors_alive_after"] = None
    if jid:
        t1 = time.monotonic()
        view = _poll(http, token, f"/jobs/{jid}", lambda v: v.get("status") != "running", 300.0, every=2.0)
        job.update({"id": jid, "status": view.get("status"), "seconds": round(time.monotonic() - t1, 1),
                    "error": "; ".join(str(i.get("error")) for i in view.get("items", []) if i.get("error"))[:300]})
        jstates, out["job_actors_alive_after"] = _wait_actors_end(JOB_PREFIX, [jid], 10.0)
        job["actor_states"] = dict(jstates)
    else:
        job["error"] = _error(data, None)
    out["job"] = job
    return out


# ----------------------------------------------------------------------------------- ace serve


def _serve_env(data: Path) -> dict:
    env = {**os.environ, "ACE_DATA_DIR": str(data), "ACE_URL_ALLOWLIST": '["127.0.0.1"]',
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return env


def _ace(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "commands", *args], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        text = [b.decode(errors="replace") if isinstance(b, bytes) else (b or "") for b in (e.stdout, e.stderr)]
        return subprocess.CompletedProcess(e.cmd, 124, text[0], text[1] + f"\n(timed out after {timeout:g} s)")


def _shutdown(env: dict, node: NodeProcesses) -> dict:
    """``ace serve --shutdown`` (it ends its own node); then whatever it left of the probe's Ray node a
    few seconds on is reported, and ended by process id."""
    shutdown_ray()
    t0 = time.monotonic()
    r = _ace(["serve", "--shutdown"], env, timeout=240)
    out: dict = {"rc": r.returncode, "seconds": round(time.monotonic() - t0, 1), "scope": "the node (ace serve --shutdown)"}
    if r.returncode != 0:
        out["stderr"] = r.stderr[-1000:]
    node.find()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and node.running():
        time.sleep(0.5)
    out["left_by_ace_shutdown"] = sorted({_title(p) for p in node.running()})
    out["node_processes_ended"] = node.end()
    out["node_processes_left"] = len(node.running())
    return out


# ----------------------------------------------------------------------------------- the probe


def run_probe(settings: Settings, inputs: int = 2000, cycles: int = 20, batches: int = 200, seed: int = 0,
              input_path: str | None = None, num_cpus: int = 2, progress=None) -> dict:
    """Run the probe and return its report (plain data)."""
    from ace.media import ffmpeg_binary
    from ace.store import Store
    from samples.show import make_sample_show

    say = progress or (lambda msg: None)
    video = Path(input_path or make_sample_show(settings.data_dir / "samples").video).absolute()
    root = Path(settings.data_dir).absolute() / "bench-probe"
    if root.exists():
        shutil.rmtree(root)
    data, hls = root / "data", root / "hls"
    hls.mkdir(parents=True)
    (data / "media").mkdir(parents=True)
    # traps in the media folder: links out of it
    os.symlink("/etc/hostname", data / "media" / "escape.mp4")
    os.symlink("/", data / "media" / "dirlink")
    os.symlink(data / "media" / "loop", data / "media" / "loop")
    server, hls_port = _serve(hls)
    pubs: list[subprocess.Popen] = []
    env = _serve_env(data)
    port, dash, api = _free_port(), _free_port(), _free_port()
    url = f"http://127.0.0.1:{api}"
    report: dict = {"input": str(video), "data_dir": str(data), "api": url, "ray_port": port, "seed": seed,
                    "cpu_count": psutil.cpu_count()}
    node = NodeProcesses(f"127.0.0.1:{port}")
    http = None
    phases_t0 = time.monotonic()
    try:
        # a short piece of the show, served as a file, for the batch job
        # (the index first: the loopback server answers no Range requests, so ffmpeg cannot seek to it)
        subprocess.run([ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-t", "6", "-i", str(video), "-c", "copy",
                        "-movflags", "+faststart", str(hls / "job.mp4")], check=False, timeout=60)
        pubs.append(_publish(video, hls / "s0", 6 * 3600, 0.0))
        say(f"starting ACE (ace serve --detach, Ray on 127.0.0.1:{port}, back office on {url}) ...")
        t0 = time.monotonic()
        r = _ace(["serve", "--detach", "--port", str(port), "--dashboard-port", str(dash), "--api-port", str(api),
                  "--num-cpus", str(num_cpus)], env, timeout=300)
        report["serve_start_s"] = round(time.monotonic() - t0, 1)
        if r.returncode != 0:
            raise RuntimeError(f"ace serve --detach failed ({r.returncode}): {r.stderr[-2000:]}")
        store = Store.from_settings(Settings(data_dir=data))
        store.create_all()
        ctx: dict = {"acme": store.create_token("acme", "ace bench probe")[1],
                     "globex": store.create_token("globex", "ace bench probe")[1], "hls_port": hls_port,
                     "hls_url": f"http://127.0.0.1:{hls_port}/s0/live.m3u8", "job_url": f"http://127.0.0.1:{hls_port}/job.mp4"}
        store.close()
        node.gcs_address = (data / "ray.address").read_text().split()[0]
        init_ray(address=node.gcs_address, data_dir=data)
        import ray

        node.session_dir = ray._private.worker._global_node.get_session_dir_path()
        node.find()
        http = Client(url)
        code, data_, _h = http.send("POST", "/streams", token=ctx["acme"], json_body={"url": ctx["hls_url"], "name": "probe"})
        if code != 201:
            raise RuntimeError(f"the live stream was not accepted: {code} {data_}")
        ctx["sid"] = data_["id"]
        st = _wait_status(http, ctx["acme"], ctx["sid"], ("live",), 120)
        report["stream"] = {"id": ctx["sid"], "status": st.get("status"), "error": (st.get("error") or "")[:300]}
        say(f"stream {ctx['sid']}: {st.get('status')}")

        ports_seen: set[tuple[str, str, int]] = set(listening(node))
        report["ports"] = _ports_report(ports_seen)

        for name, fn in (
            ("hostile", lambda: hostile_phase(http, ctx, inputs, seed, say)),
            ("exactly_once", lambda: exactly_once_phase(url, ctx, batches, say)),
            ("stop_cycles", lambda: cycles_phase(http, ctx, node, cycles, say)),
        ):
            say(f"phase {name} ...")
            t0 = time.monotonic()
            try:
                report[name] = fn()
            except Exception as e:  # noqa: BLE001 - the probe measures; a phase that breaks is reported
                log.exception("probe phase %s", name)
                report[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            report[name]["phase_s"] = round(time.monotonic() - t0, 1)
            say(f"phase {name}: done in {report[name]['phase_s']} s")
        ports_seen |= set(listening(node))  # the job's and the streams' workers too
        report["ports"] = _ports_report(ports_seen) | {"node_processes": len(node.seen)}
        code, data_, _h = http.send("GET", "/healthz")
        report["healthy_after"] = code == 200
        st = _wait_status(http, ctx["acme"], ctx["sid"], ("live", "reconnecting"), 5)
        report["stream"]["status_after"] = st.get("status")
    except Exception as e:  # noqa: BLE001 - still reported, ACE still stopped
        log.exception("probe")
        report["error"] = f"{type(e).__name__}: {e}"[:2000]
    finally:
        if http is not None:
            http.close()
        say("stopping ACE (ace serve --shutdown, then the probe's Ray node) ...")
        report["shutdown"] = _shutdown(env, node)
        stop_publishing(pubs, server)
    report["seconds"] = round(time.monotonic() - phases_t0, 1)
    report["targets"] = _targets(report)
    return report


def _ports_report(seen: set[tuple[str, str, int]]) -> dict:
    return {"ports_listening": len(seen),
            "ports_not_loopback": sorted(f"{t} {_addr(ip, p)}" for t, ip, p in seen if not _loopback(ip)),
            "ports_loopback": sorted(f"{t} {_addr(ip, p)}" for t, ip, p in seen if _loopback(ip))}


def _targets(r: dict) -> dict:
    h, x, c, p = r.get("hostile", {}), r.get("exactly_once", {}), r.get("stop_cycles", {}), r.get("ports", {})
    return {
        "ports_loopback_only": "ports_not_loopback" in p and p["ports_not_loopback"] == [],
        "no_server_errors": h.get("server_errors") == 0 and "inputs_tried" in h,
        "refused_not_counted": h.get("events_counted") is not None and h.get("events_counted") == h.get("events_accepted"),
        "no_leaks": h.get("leak_count") == 0 and not h.get("submissions_let_in") and not h.get("unexpected_accepts"),
        "exactly_once": x.get("events_counted") is not None and x.get("events_counted") == x.get("events_sent")
        and x.get("events_sent") == x.get("batches", -1) * BATCH_EVENTS,
        "stopped_actors_end": c.get("stream_actors_alive_after") == 0 and c.get("streams_submitted") == c.get("cycles"),
        "job_actor_ends": c.get("job_actors_alive_after") == 0 and c.get("job", {}).get("status") == "done",
        "clean_shutdown": r.get("shutdown", {}).get("rc") == 0 and "error" not in r and not r.get("shutdown", {}).get("left_by_ace_shutdown"),
    }


def print_probe_report(r: dict, console) -> None:
    p, h, x, c = r.get("ports", {}), r.get("hostile", {}), r.get("exactly_once", {}), r.get("stop_cycles", {})
    if r.get("error"):
        console.print(f"[red]probe error[/] {r['error']}")
    console.print(f"ACE on {r.get('api')} (Ray port {r.get('ray_port')}), stream {r.get('stream', {}).get('id')}: "
                  f"{r.get('stream', {}).get('status')} -> {r.get('stream', {}).get('status_after')}")
    console.print(f"ports: {p.get('ports_listening')} listening on {p.get('node_processes')} processes of the node; "
                  f"not loopback: {len(p.get('ports_not_loopback') or [])}")
    for line in p.get("ports_not_loopback") or []:
        console.print(f"  {line}")
    if h:
        console.print(f"hostile inputs: {h.get('inputs_tried')} tried (seed {h.get('seed')}) in {h.get('seconds')} s, answers {h.get('answers')}; "
                      f"[bold]{h.get('server_errors')} server errors[/], {h.get('transport_errors')} transport errors, "
                      f"{h.get('leak_count')} leaks; events answered 200: {h.get('events_accepted')}, counted by the stream: {h.get('events_counted')}"
                      + (f"; error: {h['error']}" if h.get("error") else ""))
        for line in ([f"{e['answer']} {e['method']} {e['path']} ({e['who']}): {e['body']} -> {e['error']}"
                      for e in (h.get("server_error_examples") or [])[:5]]
                     + (h.get("leaks") or [])[:5] + (h.get("unexpected_accepts") or [])[:5]
                     + [f"let in: {s['request']} (stopped: {s['stop']})" for s in h.get("submissions_let_in") or []]):
            console.print(f"  {line}")
    if x:
        console.print(f"exactly once: {x.get('batches')} batches x {x.get('events_a_batch')} events, each sent twice, actor killed "
                      f"after {x.get('killed_at_batch')} ({x.get('actor_restarts')} restart(s)); sent {x.get('events_sent')}, "
                      f"[bold]counted {x.get('events_counted')}[/]; answers {x.get('answers')}, retries {x.get('retries')}"
                      + (f"; error: {x['error']}" if x.get("error") else "") + (f"; kill error: {x['kill_error']}" if x.get("kill_error") else ""))
    if c:
        console.print(f"stop cycles: {c.get('streams_submitted')}/{c.get('cycles')} submitted and stopped in {c.get('seconds')} s; "
                      f"[bold]{c.get('stream_actors_alive_after')} stream actors alive[/] {c.get('waited_s')} s later {c.get('stream_actor_states')}; "
                      f"events after stop {c.get('events_after_stop_answers')}; node RSS {c.get('rss_mb_before')} -> {c.get('rss_mb_after')} MB; "
                      f"job {c.get('job', {}).get('status')} in {c.get('job', {}).get('seconds')} s, progress actors alive {c.get('job_actors_alive_after')}"
                      + (f"; error: {c['error']}" if c.get("error") else ""))
    sh = r.get("shutdown", {})
    console.print(f"shutdown: rc {sh.get('rc')} in {sh.get('seconds')} s ({sh.get('scope')}); left by it: {sh.get('left_by_ace_shutdown')}; "
                  f"node processes then ended by the probe {sh.get('node_processes_ended')}, left {sh.get('node_processes_left')}")
    console.print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["targets"].items()))
