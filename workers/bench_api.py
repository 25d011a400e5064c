"""``ace bench api``: the back office under load, driven from a second process over loopback.

The bench starts what ``ace serve`` starts — a local Ray instance, the live controller, and the
back office on Ray Serve — plus ``streams`` live HLS copies of the sample show on loopback, and
submits them through the API so real stream actors receive the events. Then a second process
(:mod:`ace.api.loadgen`) posts events from many concurrent clients for ``seconds`` and sends a
burst of ``submits`` simultaneous stream submissions. Afterwards every stream's own count of
events received is compared with what the clients were told was accepted.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from ace.bench import PeakMemory
from ace.config import Settings

log = logging.getLogger("ace.workers")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_by_process() -> dict[str, float]:
    """CPU seconds used so far by every process of this machine, grouped by its title (Ray names
    its workers ``ray::<actor class>``), for the per-part breakdown of the load phase."""
    out: dict[str, float] = {}
    for p in psutil.process_iter(["cmdline", "name"]):
        try:
            t = p.cpu_times()
            cmd = p.info["cmdline"] or [p.info["name"] or "?"]
            title = cmd[0] if cmd[0].startswith("ray::") else Path(cmd[0]).name
            if title.startswith("python") and len(cmd) > 2 and cmd[1] == "-m":
                title = cmd[2]
            out[title] = out.get(title, 0.0) + t.user + t.system
        except (psutil.Error, IndexError):
            continue
    return out


def run_api_bench(settings: Settings, clients: int = 16, seconds: float = 20.0, batch: int = 200, submits: int = 100,
                  streams: int = 2, rate: float = 6000.0, num_cpus: int | None = None, input_path: str | None = None,
                  progress=None) -> dict:
    import httpx
    import ray

    from ace.store import Store
    from samples.show import make_sample_show
    from workers.bench_live import _publish, _serve, stop_publishing
    from workers.cluster import init_ray, shutdown_ray
    from workers.controller import get_controller
    from workers.serve import start_back_office, stop_back_office

    say = progress or (lambda msg: None)
    video = input_path or str(make_sample_show(settings.data_dir / "samples").video)
    root = Path(settings.data_dir).absolute() / "bench-api"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    (root / "hls").mkdir(parents=True)
    server, hls_port = _serve(root / "hls")
    pubs: list[subprocess.Popen] = []
    report: dict = {"clients": clients, "seconds": seconds, "batch": batch, "rate": rate, "submits": submits, "streams": streams,
                    "cpu_count": psutil.cpu_count()}
    burst_limit = 8
    actor_settings = {"data_dir": str(root / "data"), "model": settings.model, "cpu_threads": 1,
                      "database_url": settings.database_url, "url_allowlist": ["127.0.0.1"],
                      "api_max_streams": streams + burst_limit}
    shutdown_ray()
    init_ray(num_cpus=num_cpus, data_dir=settings.data_dir)
    controller = None
    api_port = _free_port()
    url = f"http://127.0.0.1:{api_port}"
    cpu: list[float] = []
    try:
        with PeakMemory(interval=0.5, exclude=pubs) as mem:
            for i in range(streams):
                pubs.append(_publish(Path(video), root / "hls" / f"s{i}", seconds + 120, i * 37.0))
            controller = get_controller(create=True, settings=actor_settings)
            say(f"starting the back office on {url} ...")
            start_back_office(actor_settings, "127.0.0.1", api_port)
            store = Store.from_settings(Settings(**{k: v for k, v in actor_settings.items() if k in ("data_dir", "database_url")}))
            store.create_all()
            token = store.create_token("bench", "ace bench api")[1]
            auth = {"Authorization": f"Bearer {token}"}
            time.sleep(6.0)  # a few segments in the playlists
            ids = []
            with httpx.Client(base_url=url, headers=auth, timeout=60.0) as c:
                for i in range(streams):
                    r = c.post("/streams", json={"url": f"http://127.0.0.1:{hls_port}/s{i}/live.m3u8", "name": f"room{i}"})
                    r.raise_for_status()
                    ids.append(r.json()["id"])
                deadline = time.time() + 60
                while time.time() < deadline and not all(c.get(f"/streams/{s}").json().get("status") == "live" for s in ids):
                    time.sleep(1.0)
            say(f"{clients} clients post {'%g events/s' % rate if rate else 'events as fast as answered'} for {seconds:.0f} s, "
        f"then {submits} submissions at once ...")
            cmd = [sys.executable, "-m", "ace.api.loadgen", "--url", url, "--token", token, "--clients", str(clients),
                   "--seconds", str(seconds), "--batch", str(batch), "--submits", str(submits), "--rate", str(rate)]
            for s in ids:
                cmd += ["--stream", s]
            psutil.cpu_percent(None)
            before = _cpu_by_process()
            t_load = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            gen_cpu = 0.0
            while proc.poll() is None:
                time.sleep(1.0)
                cpu.append(psutil.cpu_percent(None))
                try:
                    t = psutil.Process(proc.pid).cpu_times()
                    gen_cpu = t.user + t.system
                except psutil.Error:
                    pass
            out, errs = proc.communicate()
            after = _cpu_by_process()
            load_s = time.monotonic() - t_load
            # the load generator has exited: its CPU is in `after` only if it was sampled while alive
            use = {k: round((after.get(k, 0.0) - before.get(k, 0.0)) / load_s, 3) for k in after}
            use["load generator (ace.api.loadgen)"] = round(gen_cpu / load_s, 3)
            report["cpu_cores_by_process"] = dict(sorted(((k, v) for k, v in use.items() if v >= 0.01), key=lambda kv: -kv[1])[:12])
            if proc.returncode != 0:
                raise RuntimeError(f"the load generator failed: {errs[-2000:]}")
            load = json.loads(out.strip().splitlines()[-1])
            with httpx.Client(base_url=url, headers=auth, timeout=60.0) as c:
                counted = {s: c.get(f"/streams/{s}").json().get("events_received") for s in ids}
                report["healthy_after"] = c.get("/healthz").status_code == 200
        report["peak_memory_mb"] = round(mem.peak / 2**20)
    finally:
        stop_back_office()
        if controller is not None:
            try:
                for st in ray.get(controller.status.remote(tenant="bench"), timeout=30):
                    ray.get(controller.stop.remote(st["id"], tenant="bench"), timeout=60)
            except Exception as e:  # noqa: BLE001 - shutting down anyway
                log.warning("stopping the bench streams: %s", e)
            ray.kill(controller)
        stop_publishing(pubs, server)
        shutdown_ray()
    ev, sub = load.get("events", {}), load.get("submissions", {})
    sent = ev.get("accepted_by_stream", {})
    report.update({"events": ev, "submissions": {k: v for k, v in sub.items() if k != "accepted_ids"},
                   "counted_by_stream": counted, "cpu_mean_percent": round(sum(cpu) / len(cpu), 1) if cpu else None})
    report["targets"] = {
        "events/s>=5000": (ev.get("events_per_s") or 0) >= 5000,
        "p99<=200ms": ev.get("latency_ms", {}).get("p99") is not None and ev["latency_ms"]["p99"] <= 200,
        "every_accepted_event_counted": bool(sent) and all(counted.get(s) == n for s, n in sent.items()),
        "burst_all_answered": sub.get("unanswered", 1) == 0 and set(sub.get("codes", {})) <= {"201", "429", "503"}
        and sub.get("refusals_without_retry_after", 1) == 0,
        "burst_none_lost": sub.get("lost") == [] and sub.get("accepted", 0) >= 1,
        "no_crash": bool(report.get("healthy_after")) and sub.get("healthy_after", False),
    }
    return report


def print_api_report(r: dict, console) -> None:
    ev, sub = r["events"], r["submissions"]
    lat = ev.get("latency_ms", {})
    offered = f"{r['rate']:g}/s offered, " if r.get("rate") else "as fast as answered, "
    console.print(f"events ({offered}{r['clients']} clients): {ev.get('accepted_events')} accepted in {ev.get('seconds')} s = [bold]{ev.get('events_per_s')}/s[/] "
                  f"({r['clients']} clients x {r['batch']} a request, {ev.get('requests')} requests, answers {ev.get('codes')}); "
                  f"latency p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms, [bold]p99 {lat.get('p99')} ms[/], max {lat.get('max')} ms")
    console.print(f"counted by the streams: {r['counted_by_stream']} vs accepted {ev.get('accepted_by_stream')}")
    console.print(f"burst: {sub.get('submits')} submissions at once -> {sub.get('codes')} in {sub.get('seconds')} s; "
                  f"lost {len(sub.get('lost') or [])}, refusals without Retry-After {sub.get('refusals_without_retry_after')}, "
                  f"healthy after: {sub.get('healthy_after')}")
    console.print(f"CPU {r['cpu_mean_percent']}% ({r['cpu_count']} CPUs), peak memory {r['peak_memory_mb']} MB; "
                  f"cores used by part during the load: {r.get('cpu_cores_by_process')}")
    console.print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["targets"].items()))
