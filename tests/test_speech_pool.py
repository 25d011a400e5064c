"""The live streams' shared speech pool on a real local Ray instance: sized to the machine, found
again by name, and hearing exactly what a local model hears in the same windows."""

from __future__ import annotations

import copy

import pytest

from ace import media
from ace.config import Settings
from ace.signals.speech import SAMPLE_RATE, LiveTranscriber, Transcriber

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_pool_hears_what_a_local_model_hears(ray_local, short_show, tmp_path):
    import ray

    from models.registry import load_whisper
    from workers.speech_pool import PooledTranscriber, get_speech_pool, kill_speech_pool, pool_size

    settings = Settings(data_dir=tmp_path / "data")
    try:
        actors = get_speech_pool(settings)
        assert len(actors) == pool_size(settings)[0] == int(ray.cluster_resources()["CPU"])  # one per core here
        again = get_speech_pool(settings)
        assert [a._actor_id for a in again] == [a._actor_id for a in actors]  # found by name, not made twice

        audio = media.read_audio(short_show.video)[: 30 * SAMPLE_RATE]
        local = LiveTranscriber(Transcriber(load_whisper("tiny.en", device="cpu", cpu_threads=1)))
        pooled_t = PooledTranscriber(actors)
        pooled = LiveTranscriber(copy.copy(pooled_t))  # the analyzer copies its transcriber, as here
        a, b = [], []
        for i in range(0, audio.size, 2 * SAMPLE_RATE):  # 2 s segments, as they arrive live
            a += local.feed(audio[i : i + 2 * SAMPLE_RATE])
            b += pooled.feed(audio[i : i + 2 * SAMPLE_RATE])
        a += local.flush()
        b += pooled.flush()
        assert len(a) > 20 and [(w.start, w.end, w.text) for w in a] == [(w.start, w.end, w.text) for w in b]
        served = ray.get([x.stats.remote() for x in actors])
        assert sum(s["windows"] for s in served) >= 3 and all(s["windows"] > 0 for s in served)  # turns are shared
        assert len({s["pid"] for s in served}) == len(actors)
    finally:
        assert kill_speech_pool() >= 1
