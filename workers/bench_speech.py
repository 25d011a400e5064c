"""``ace bench speech``: how many live streams' speech the cluster's speech pool can keep up with,
with the windows of several streams batched and one at a time, side by side.

N streams' audio (the show's, each copy from another point) is fed to N live transcribers at once,
2 s segment by segment and as fast as the pool answers, each through the pool
(:class:`~workers.speech_pool.PooledTranscriber`), the way the stream actors do. The pool hears
``N * seconds`` of audio in ``wall`` seconds: ``streams_real_time = N * seconds / wall`` is how many
streams it could serve live. The same streams are run twice, with the pool made afresh each time:
with batching (``speech_batch``, else 16 windows on the CPU and 32 on a GPU) and without (one window at a
time), both with the live encoder window the model gets (``context_s``, 15 s for tiny.en) and the
streams' own voice-activity filter. Each run says how many windows were sent and skipped as
silence, how the recognisers batched them, and whether the words were the same in both runs.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ace.config import Settings

SEGMENT_S = 2.0
SR = 16000


def feed_streams(actors: list, audio: np.ndarray, streams: int, seconds: float, context_s: float | None,
                 beam_size: int = 1, vad_skip: bool = True) -> dict:
    """Feed ``streams`` copies of ``seconds`` of ``audio`` through the pool at once; returns figures
    (``texts``: each stream's words, to compare runs)."""
    from ace.signals.speech import LiveTranscriber
    from workers.speech_pool import PooledTranscriber

    n = int(seconds * SR)
    if audio.size < n:
        audio = np.tile(audio, int(np.ceil(n / max(1, audio.size))))
    words: list[list[str]] = [[] for _ in range(streams)]
    decodes = [0] * streams
    pooled = [PooledTranscriber(actors, beam_size=beam_size, vad_skip=vad_skip) for _ in range(streams)]
    errors: list[str] = []

    def one(i: int) -> None:
        start = (i * audio.size // max(1, streams)) % audio.size
        x = np.roll(audio, -start)[:n]
        live = LiveTranscriber(pooled[i], context_s=context_s)
        try:
            step = int(SEGMENT_S * SR)
            for k in range(0, x.size, step):
                words[i].extend(w.text for w in live.feed(x[k : k + step]))
            words[i].extend(w.text for w in live.flush())
            decodes[i] = live.decodes
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"context_s": context_s, "streams": streams, "audio_s_each": round(seconds, 1), "wall_s": round(wall, 2),
            "streams_real_time": round(streams * seconds / wall, 1), "words": sum(len(w) for w in words),
            "decodes": sum(decodes), "sent": sum(p.windows for p in pooled), "skipped": sum(p.skipped for p in pooled),
            "errors": errors, "texts": [" ".join(w) for w in words]}


def _since(now: dict | None, before: dict | None) -> dict | None:
    """A recogniser's batching figures for the measured run only (its counts less the warm-up's)."""
    if not now or not before:
        return now
    out = dict(now)
    for op in ("encode", "generate", "align"):
        a, b = now[op], before[op]
        calls, batches = a["calls"] - b["calls"], a["batches"] - b["batches"]
        windows = (a["mean_batch"] or 0) * a["batches"] - (b["mean_batch"] or 0) * b["batches"]
        out[op] = {**a, "calls": calls, "batches": batches, "model_s": round(a["model_s"] - b["model_s"], 3),
                   "mean_batch": round(windows / batches, 2) if batches else None}
    return out


def run_speech_bench(settings: Settings, streams: int = 8, seconds: float = 60.0, audio: np.ndarray | None = None,
                     input_path: str | None = None, num_cpus: int | None = None, progress=None) -> dict:
    """Start a local Ray instance and the speech pool, and measure it (see the module docstring)."""
    import ray

    from models.registry import live_context_s
    from workers.cluster import init_ray, shutdown_ray
    from workers.speech_pool import WIDE_BATCH, get_speech_pool, kill_speech_pool, pool_size, speech_batch

    say = progress or (lambda msg: None)
    if audio is None:
        from ace import media

        if input_path is None:
            from samples.show import make_sample_show

            input_path = str(make_sample_show(settings.data_dir / "samples").video)
        audio = media.read_audio(input_path)
    batched = speech_batch(settings, WIDE_BATCH)
    shutdown_ray()
    init_ray(num_cpus=num_cpus, data_dir=settings.data_dir)
    try:
        n, gpus = pool_size(settings)
        ctx = live_context_s(settings.model, settings.live_speech_context_s)
        report = {"model": settings.model, "pool": n, "gpus_each": gpus, "runs": []}
        for batch in (batched, 1) if batched > 1 else (1,):
            actors = get_speech_pool(settings.model_copy(update={"speech_batch": batch}))
            served = ray.get([a.stats.remote() for a in actors])  # loaded and answering
            report["device"] = served[0]["device"]
            # a short pass first, not counted: the first windows pay for loading (the voice filter,
            # the model's first calls), which would otherwise count against whichever run is first
            feed_streams(actors, audio, min(2, streams), min(10.0, seconds), ctx, settings.beam_size,
                         settings.speech_vad_skip)
            before = [a.get("batching") for a in ray.get([a.stats.remote() for a in actors])]
            say(f"{streams} streams x {seconds:.0f} s through {len(actors)} {served[0]['device']} recogniser(s), "
                f"{'batches of up to ' + str(batch) if batch > 1 else 'one window at a time'} ...")
            run = feed_streams(actors, audio, streams, seconds, ctx, settings.beam_size, settings.speech_vad_skip)
            run["batch"] = batch
            run["recognisers"] = [_since(a.get("batching"), b)
                                  for a, b in zip(ray.get([a.stats.remote() for a in actors]), before)]
            report["runs"].append(run)
            kill_speech_pool()
        runs = report["runs"]
        if len(runs) == 2:
            a, b = runs[0]["texts"], runs[1]["texts"]
            report["same_words"] = a == b
            report["streams_differing"] = sum(x != y for x, y in zip(a, b))
            report["speedup"] = round(runs[0]["streams_real_time"] / runs[1]["streams_real_time"], 2)
        return report
    finally:
        kill_speech_pool()
        shutdown_ray()


def print_speech_report(r: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"speech pool: {r['pool']} {r['device']} recogniser(s), {r['model']}")
    for col in ("batch", "encoder window s", "streams", "audio each s", "wall s", "streams in real time", "windows sent",
                "skipped (no speech)", "mean decoder batch", "errors"):
        t.add_column(col)
    for x in r["runs"]:
        gen = [g["generate"] for g in x.get("recognisers") or [] if g]
        mean = (sum(g["mean_batch"] * g["batches"] for g in gen if g["batches"]) / max(1, sum(g["batches"] for g in gen))
                if gen else 1.0)
        t.add_row(str(x["batch"]), f"{x['context_s'] or 30:g}", str(x["streams"]), str(x["audio_s_each"]), str(x["wall_s"]),
                  str(x["streams_real_time"]), str(x["sent"]), str(x["skipped"]), f"{mean:.2f}", str(len(x["errors"])))
    console.print(t)
    if "speedup" in r:
        console.print(f"batched / one at a time: {r['speedup']}x the streams; words the same in both runs: "
                      f"{'yes' if r['same_words'] else 'NO (' + str(r['streams_differing']) + ' streams differ)'}")
