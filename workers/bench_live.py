"""``ace bench live``: N copies of the sample show as live HLS on loopback, through the controller.

Each copy is published by ``ffmpeg -re`` as an HLS playlist (2 s segments), starting at its own
point of the show (copy ``i`` at ``i / N`` of the part that plays to the end of the run without
looping; a run longer than the show loops it), into a folder served by
one threaded HTTP server on 127.0.0.1; the show's audience events are pushed to the controller as
their time comes. A local Ray instance runs the controller and one stream actor per copy, exactly
as ``ace serve`` does. Every second the bench samples each stream's status, the machine's CPU and
the resident memory of this process tree (Ray, its workers, the ffmpeg processes), and
:class:`~workers.bench_profile.CpuProfile` says where the machine's CPU time went, by kind of
process, short-lived ffmpeg runs included (``report["cpu_profile"]``).

A stream *keeps up* when its analysis lag stays bounded: the lag over the last third of the run
stays under ``max(10 s, 3 segments)`` and does not keep growing. Clip latency is the time from a
moment's end in the stream to its clip being ready (the stream actors measure it).
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import subprocess
import threading
import time
from pathlib import Path

import psutil

from ace.bench import PeakMemory
from ace.config import Settings
from ace.events import load_events
from workers.bench_profile import CpuProfile

log = logging.getLogger("ace.workers")

SEGMENT_S = 2.0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D401 - silence the access log
        pass


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="ace-bench-http").start()
    return server, server.server_address[1]


def _publish(src: Path, out: Path, seconds: float, offset: float = 0.0) -> subprocess.Popen:
    """``ffmpeg -re`` publishing ``src`` as live HLS from ``offset`` seconds into it, looping."""
    out.mkdir(parents=True, exist_ok=True)
    from ace.media import ffmpeg_binary

    cmd = [ffmpeg_binary(), "-nostdin", "-v", "error", "-stream_loop", "-1", "-ss", f"{offset:.3f}", "-re",
           "-i", str(src), "-t", f"{seconds:.1f}", "-c", "copy",
           "-f", "hls", "-hls_time", f"{SEGMENT_S:g}", "-hls_list_size", "6", "-hls_flags", "delete_segments+temp_file",
           str(out / "live.m3u8")]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_publishing(pubs: list[subprocess.Popen], server: http.server.ThreadingHTTPServer) -> None:
    """Stop the publishing ffmpegs and the loopback HTTP server."""
    for p in pubs:
        if p.poll() is None:
            p.kill()
        p.wait()
    server.shutdown()


def _pool_stats() -> list[dict]:
    """What each recogniser of the speech pool did (windows, batches), while it is still there."""
    import ray

    from workers.speech_pool import pool_actors

    try:
        return ray.get([a.stats.remote() for a in pool_actors()], timeout=30)
    except Exception as e:  # noqa: BLE001 - a figure, not the run
        log.warning("speech pool stats: %s", e)
        return []


def run_live_bench(settings: Settings, streams: int = 8, seconds: float = 180.0, input_path: str | None = None,
                   events_path: str | None = None, num_cpus: int | None = None, progress=None) -> dict:
    """Run the live benchmark and return its report (plain data)."""
    import ray

    from samples.show import make_sample_show
    from workers.cluster import init_ray, shutdown_ray
    from workers.controller import LiveController
    from workers.live import percentile

    say = progress or (lambda msg: None)
    if input_path is None:
        show = make_sample_show(settings.data_dir / "samples")
        input_path, events_path = str(show.video), str(show.events)
    events = load_events(events_path).events if events_path else []
    from ace.media import probe

    show_s = probe(input_path).duration
    root = Path(settings.data_dir).absolute() / "bench-live"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    (root / "hls").mkdir(parents=True)
    server, port = _serve(root / "hls")
    pubs = []
    report: dict = {"streams": streams, "seconds": seconds, "input": str(input_path), "segment_s": SEGMENT_S,
                    "cpu_count": psutil.cpu_count(), "model": settings.model}
    shutdown_ray()
    init_ray(num_cpus=num_cpus, data_dir=settings.data_dir)
    actor_settings = {"data_dir": str(root / "data"), "model": settings.model, "cpu_threads": 1,
                      "beam_size": settings.beam_size, "database_url": settings.database_url,
                      "url_allowlist": ["127.0.0.1"], "speech_pool": settings.speech_pool,  # copies served on loopback
                      "speech_batch": settings.speech_batch, "speech_batch_wait_ms": settings.speech_batch_wait_ms,
                      "speech_vad_skip": settings.speech_vad_skip}
    from workers.speech_pool import speech_batch

    report["speech_batch"] = speech_batch(settings) if settings.speech_pool else None
    report["speech_vad_skip"] = settings.speech_vad_skip
    controller = ray.remote(LiveController).options(num_cpus=0.05, max_concurrency=16).remote(actor_settings)
    samples: dict[str, list[tuple[float, float]]] = {}
    cpu: list[float] = []
    try:
        # the publishing ffmpegs stand in for the platform: not ACE's memory
        # the CPU profile counts everything, the publishers as a row of their own
        with PeakMemory(interval=0.5, exclude=pubs, pss_every=15.0) as mem, CpuProfile(interval=0.5) as prof:
            say(f"publishing {streams} HLS copies on 127.0.0.1:{port} ...")
            # each copy starts at another point of the show, as unrelated rooms would: highlights
            # (and so clip cuts) do not all fall in the same second
            # spread over the part of the show that plays without looping for the whole run: a
            # loop joins the file's end to its start with a jump in the timestamps, which no steady
            # live source has (the ingest records it as a gap, and clips across it are re-encoded)
            span = show_s - seconds - 20.0 if show_s > seconds + 20.0 else show_s
            offsets = [i * span / streams for i in range(streams)]
            for i in range(streams):
                pubs.append(_publish(Path(input_path), root / "hls" / f"s{i}", seconds + 10, offsets[i]))
            per_stream = [sorted((((e.t - off) % show_s, e) for e in events), key=lambda x: x[0]) for off in offsets]
            time.sleep(SEGMENT_S * 3)  # a few segments in the playlists
            ids = [ray.get(controller.submit.remote(f"http://127.0.0.1:{port}/s{i}/live.m3u8", name=f"s{i}"))
                   for i in range(streams)]
            t0 = time.time()
            pushed = [0] * streams
            psutil.cpu_percent(None)
            say(f"following {streams} streams for {seconds:.0f} s ...")
            while time.time() - t0 < seconds:
                now = time.time() - t0
                calls = []
                for i, sid in enumerate(ids):
                    k = pushed[i]
                    while k < len(per_stream[i]) and per_stream[i][k][0] <= now:
                        k += 1
                    if k > pushed[i]:
                        # stream time starts when ACE joins: close to the publisher's clock, good enough for a load test
                        batch = [{"t": t, "kind": e.kind, "user": e.user, "value": e.value, "text": e.text}
                                 for t, e in per_stream[i][pushed[i]:k]]
                        calls.append(controller.push_events.remote(sid, batch))
                        pushed[i] = k
                ray.get(calls)
                for st in ray.get(controller.status.remote()):
                    samples.setdefault(st["id"], []).append((now, float(st.get("lag_s") or 0.0)))
                cpu.append(psutil.cpu_percent(None))
                if int(now) // 30 > int(now - 1.0) // 30 or not cpu[:-1]:
                    say(f"{now:.0f} s: mean lag {sum(lag for lag in (v[-1][1] for v in samples.values())) / max(1, len(samples)):.1f} s")
                time.sleep(1.0)
            final = {st["id"]: st for st in ray.get(controller.status.remote())}
            report["speech_pool"] = _pool_stats()
            for sid, ref in zip(ids, [controller.stop.remote(sid) for sid in ids]):
                try:  # a stream that cannot stop in time is killed by the controller: a figure, not the end
                    ray.get(ref, timeout=120)
                except Exception as e:  # noqa: BLE001 - reported with the stream
                    log.warning("stream %s did not stop cleanly: %s", sid, e)
                    final.setdefault(sid, {})["stop_error"] = f"{type(e).__name__}"
        report["peak_memory_mb"] = round(mem.peak / 2**20)  # RSS summed: shared libraries once per process
        report["peak_memory_pss_mb"] = round(mem.peak_pss / 2**20)  # each page once (sampled every 15 s)
        report["cpu_profile"] = prof.result()
    finally:
        stop_publishing(pubs, server)
        shutdown_ray()
    rows = []
    all_lat: list[float] = []  # to the first clip of a moment: provisional, or final at once
    final_lat: list[float] = []  # to its final clip
    clip_counts = {"provisional_clips": 0, "confirmed_clips": 0, "replaced_clips": 0}
    speech_windows: dict[str, float] = {}
    stages: dict[str, dict[str, float]] = {}  # the stream actors' analysis threads, summed over streams
    for sid, st in sorted(final.items()):
        lags = samples.get(sid, [])
        tail = [lag for t, lag in lags if t >= seconds * 2 / 3]
        bound = max(10.0, 3 * SEGMENT_S)
        growing = len(tail) > 4 and tail[-1] - tail[0] > bound / 2
        keeps_up = bool(tail) and max(tail) < bound and not growing and st.get("status") in ("live", "reconnecting")
        lat = st.get("clip_latencies") or []
        all_lat.extend(lat)
        final_lat.extend(st.get("final_clip_latencies") or [])
        for k in clip_counts:
            clip_counts[k] += int(st.get(k) or 0)
        for k, v in (st.get("stages") or {}).items():
            acc = stages.setdefault(k, {"cpu_s": 0.0, "wall_s": 0.0})
            acc["cpu_s"] = round(acc["cpu_s"] + v["cpu_s"], 2)
            acc["wall_s"] = round(acc["wall_s"] + v["wall_s"], 2)
        for k, v in (st.get("speech_windows") or {}).items():
            speech_windows[k] = round(speech_windows.get(k, 0) + v, 1)
        rows.append({"id": sid, "status": st.get("status"), "keeps_up": keeps_up,
                     "max_lag_s": round(max((lag for _, lag in lags), default=0.0), 2),
                     "final_lag_s": round(tail[-1], 2) if tail else None, "level": st.get("level"),
                     "segments": st.get("segments"), "moments": st.get("moments"), "clips": st.get("clips"),
                     "clip_p50_s": st.get("clip_latency_p50_s"), "clip_p95_s": st.get("clip_latency_p95_s"),
                     "final_clip_p95_s": st.get("final_clip_latency_p95_s"), "horizon_s": st.get("horizon_s"),
                     "lag_p95_s": percentile(sorted(lag for _, lag in lags), 95),
                     "busy_p95_s": st.get("busy_p95_s"), "cut_mean_s": st.get("cut_mean_s"),
                     "cuts_ahead": [st.get("cuts_ahead_used"), st.get("cuts_ahead_wasted")],
                     "lag_series": [[round(t, 1), round(lag, 2)] for t, lag in lags],
                     "error": (st.get("error") or "")[:200]})
    all_lat.sort()
    final_lat.sort()

    report.update({
        "per_stream": rows,
        "keeping_up": sum(r["keeps_up"] for r in rows),
        "clip_latency_p50_s": percentile(all_lat, 50),
        "clip_latency_p95_s": percentile(all_lat, 95),
        "clips": len(all_lat),
        "final_clip_latency_p50_s": percentile(final_lat, 50),
        "final_clip_latency_p95_s": percentile(final_lat, 95),
        **clip_counts,
        "speech_windows": speech_windows,
        "analysis_stages": stages,
        "cpu_mean_percent": round(sum(cpu) / len(cpu), 1) if cpu else None,
        # clips cut while their moment settled and taken as they were / cut ahead for nothing
        "cuts_ahead_used": sum(r["cuts_ahead"][0] or 0 for r in rows),
        "cuts_ahead_wasted": sum(r["cuts_ahead"][1] or 0 for r in rows),
    })
    # the targets: clips at p95 within 10 s at up to 8 streams and within 15 s at more; 8 GB at 16 streams
    bound = 10.0 if streams <= 8 else 15.0
    report["targets"] = {
        "all_streams_keep_up": report["keeping_up"] == streams,
        f"clip_p95<={bound:g}s": report["clip_latency_p95_s"] is not None and report["clip_latency_p95_s"] <= bound,
        "memory<=8GB": report["peak_memory_pss_mb"] <= 8 * 1024,
    }
    return report


def print_live_report(r: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"live bench: {r['streams']} streams x {r['seconds']:.0f} s ({r['cpu_count']} CPUs, {r['model']})")
    for col in ("stream", "status", "keeps up", "max lag s", "level", "moments", "clips", "clip p50 s", "clip p95 s"):
        t.add_column(col)
    for s in r["per_stream"]:
        t.add_row(s["id"], str(s["status"]), "yes" if s["keeps_up"] else "NO", str(s["max_lag_s"]), str(s["level"]),
                  str(s["moments"]), str(s["clips"]), str(s["clip_p50_s"]), str(s["clip_p95_s"]))
    console.print(t)
    console.print(f"keeping up: {r['keeping_up']}/{r['streams']}   clip latency p50 {r['clip_latency_p50_s']} s, "
                  f"p95 {r['clip_latency_p95_s']} s over {r['clips']} clips   CPU {r['cpu_mean_percent']}%   "
                  f"peak memory {r['peak_memory_mb']} MB RSS, {r.get('peak_memory_pss_mb')} MB PSS   cut ahead: {r['cuts_ahead_used']} used, "
                  f"{r['cuts_ahead_wasted']} wasted")
    console.print(f"final clips: p50 {r.get('final_clip_latency_p50_s')} s, p95 {r.get('final_clip_latency_p95_s')} s; "
                  f"provisional first {r.get('provisional_clips')}, then confirmed {r.get('confirmed_clips')}, "
                  f"replaced {r.get('replaced_clips')}; speech windows {r.get('speech_windows')}")
    pool = r.get("speech_pool") or []
    if pool:
        windows = sum(p.get("windows", 0) for p in pool)
        gen = [p["batching"]["generate"] for p in pool if p.get("batching")]
        batches = sum(g["batches"] for g in gen)
        mean = sum(g["mean_batch"] * g["batches"] for g in gen if g["batches"]) / batches if batches else 1.0
        console.print(f"speech pool: {len(pool)} recogniser(s), {windows} windows, batches of up to "
                      f"{r.get('speech_batch')}: mean decoder batch {mean:.2f}")
    print_cpu_profile(r.get("cpu_profile"), console)
    if r.get("analysis_stages"):
        console.print("stream analysis threads, all streams (CPU s / wall s): " + ", ".join(
            f"{k} {v['cpu_s']:.1f} / {v['wall_s']:.1f}" for k, v in r["analysis_stages"].items()))
    console.print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["targets"].items()))
    console.print(json.dumps({k: r[k] for k in ("keeping_up", "clip_latency_p95_s", "peak_memory_mb")}))


def print_cpu_profile(profile: dict | None, console) -> None:
    """The table of :mod:`workers.bench_profile`: where the CPU time of the run went."""
    if not profile:
        return
    from rich.table import Table

    tot = profile["totals"]
    t = Table(title=f"where the CPU time goes ({tot['wall_s']:.0f} s wall, {tot['cpu_count']} CPUs)")
    for col in ("category", "CPU s", "share %", "cores", "processes"):
        t.add_column(col, justify="left" if col == "category" else "right")
    for row in profile["rows"]:
        name = row["category"] + ("" if row["ace"] else " [dim](not ACE)[/dim]")
        t.add_row(name, f"{row['cpu_s']:.1f}", f"{row['share']:.1f}", f"{row['cores']:.2f}",
                  "" if row.get("processes") is None else str(row["processes"]))
    console.print(t)
    console.print(f"machine {tot['machine_cpu_s']:.1f} CPU s ({tot['machine_cores']:.2f} cores), of which ACE "
                  f"{tot['ace_cpu_s']:.1f} s ({tot['ace_cores']:.2f} cores); {tot['samples']} samples every "
                  f"{tot['interval_s']} s")
