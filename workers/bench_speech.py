"""``ace bench speech``: how many live streams' speech the cluster's speech pool can keep up with.

N streams' audio (the show's, each copy from another point) is fed to N live transcribers at once,
2 s segment by segment and as fast as the pool answers, each through the pool
(:class:`~workers.speech_pool.PooledTranscriber`), the way the stream actors do. The pool hears
``N * seconds`` of audio in ``wall`` seconds: ``streams_real_time = N * seconds / wall`` is how many
streams it could serve live. Run once with the live encoder window the model gets
(``context_s``, 15 s for tiny.en) and once with Whisper's own 30 s, side by side.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ace.config import Settings

SEGMENT_S = 2.0
SR = 16000


def feed_streams(actors: list, audio: np.ndarray, streams: int, seconds: float, context_s: float | None,
                 beam_size: int = 1) -> dict:
    """Feed ``streams`` copies of ``seconds`` of ``audio`` through the pool at once; returns figures."""
    from ace.signals.speech import LiveTranscriber
    from workers.speech_pool import PooledTranscriber

    n = int(seconds * SR)
    if audio.size < n:
        audio = np.tile(audio, int(np.ceil(n / max(1, audio.size))))
    words = [0] * streams
    decodes = [0] * streams
    errors: list[str] = []

    def one(i: int) -> None:
        start = (i * audio.size // max(1, streams)) % audio.size
        x = np.roll(audio, -start)[:n]
        live = LiveTranscriber(PooledTranscriber(actors, beam_size=beam_size), context_s=context_s)
        try:
            step = int(SEGMENT_S * SR)
            for k in range(0, x.size, step):
                words[i] += len(live.feed(x[k : k + step]))
            words[i] += len(live.flush())
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
            "streams_real_time": round(streams * seconds / wall, 1), "words": sum(words), "decodes": sum(decodes),
            "errors": errors}


def run_speech_bench(settings: Settings, streams: int = 8, seconds: float = 60.0, audio: np.ndarray | None = None,
                     input_path: str | None = None, num_cpus: int | None = None, progress=None) -> dict:
    """Start a local Ray instance and the speech pool, and measure it (see the module docstring)."""
    import ray

    from models.registry import live_context_s
    from workers.cluster import init_ray, shutdown_ray
    from workers.speech_pool import get_speech_pool, kill_speech_pool, pool_size

    say = progress or (lambda msg: None)
    if audio is None:
        from ace import media

        if input_path is None:
            from samples.show import make_sample_show

            input_path = str(make_sample_show(settings.data_dir / "samples").video)
        audio = media.read_audio(input_path)
    shutdown_ray()
    init_ray(num_cpus=num_cpus, data_dir=settings.data_dir)
    try:
        n, gpus = pool_size(settings)
        actors = get_speech_pool(settings)
        served = ray.get([a.stats.remote() for a in actors])  # loaded and answering
        report = {"model": settings.model, "pool": len(actors), "gpus_each": gpus, "device": served[0]["device"],
                  "runs": []}
        ctx = live_context_s(settings.model, settings.live_speech_context_s)
        for c in ([ctx, None] if ctx else [None]):
            say(f"{streams} streams x {seconds:.0f} s through {len(actors)} {served[0]['device']} recogniser(s), "
                f"encoder window {c or 30:g} s ...")
            report["runs"].append(feed_streams(actors, audio, streams, seconds, c, settings.beam_size))
        return report
    finally:
        kill_speech_pool()
        shutdown_ray()


def print_speech_report(r: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"speech pool: {r['pool']} {r['device']} recogniser(s), {r['model']}")
    for col in ("encoder window s", "streams", "audio each s", "wall s", "streams in real time", "decodes", "errors"):
        t.add_column(col)
    for x in r["runs"]:
        t.add_row(f"{x['context_s'] or 30:g}", str(x["streams"]), str(x["audio_s_each"]), str(x["wall_s"]),
                  str(x["streams_real_time"]), str(x["decodes"]), str(len(x["errors"])))
    console.print(t)
