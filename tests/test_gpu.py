"""The GPU path, on a machine with a CUDA GPU (skipped without one).

* ``device="auto"`` picks the GPU (float16) and the GPU hears the public English recordings as
  well as the CPU does (word error rate against the human transcripts);
* the live streams' speech pool is made of GPU actors (one per GPU, ``num_gpus=1``) on a real
  local Ray instance, and a pooled live transcriber hears what a local GPU model hears.

The recordings come from ``ACE_EVAL_DATA`` (decoded with ffmpeg), or, on a machine without
ffmpeg, from ``ACE_TEST_SPEECH_NPZ``: the same clips decoded ahead by :func:`save_speech_npz`.
Figures (seconds of work, real-time multiples) are printed for the record, not asserted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from ace.config import Settings

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001 - no CUDA runtime at all
        return 0


if _cuda_devices() == 0:
    pytest.skip("no CUDA GPU visible to CTranslate2", allow_module_level=True)


def save_speech_npz(data_dir: Path, out: Path) -> Path:
    """The English clips of ``data_dir`` decoded to 16 kHz float32, with their transcripts."""
    from ace import media
    from ace.evaluation.speech import find_clips

    arrays, refs = {}, {}
    for path, ref in find_clips(data_dir, "en"):
        arrays[path.stem] = media.read_audio(path).astype(np.float16)  # half the size, plenty for speech
        refs[path.stem] = ref
    np.savez(out, __refs__=np.array(json.dumps(refs)), **arrays)
    return out


@pytest.fixture(scope="module")
def clips(request) -> list[tuple[str, np.ndarray, str]]:
    pre = os.environ.get("ACE_TEST_SPEECH_NPZ")
    if pre:
        data = np.load(pre)
        refs = json.loads(str(data["__refs__"]))
        return [(k, data[k].astype(np.float32), refs[k]) for k in sorted(refs)]
    from ace.evaluation.speech import find_clips
    from ace import media

    data_dir = request.getfixturevalue("eval_data")
    out = [(p.stem, media.read_audio(p), ref) for p, ref in find_clips(data_dir, "en")]
    if not out:
        pytest.skip(f"no English clips in {data_dir}")
    return out


def _wer(refs: list[str], hyps: list[str]) -> float:
    from ace.evaluation.speech import Normaliser, error_rate

    norm = Normaliser()
    return error_rate([norm(r, "en") for r in refs], [norm(h, "en") for h in hyps], "word")


def test_auto_device_is_the_gpu_and_hears_as_well_as_the_cpu(clips):
    from ace.signals.speech import Transcriber, words_of
    from models.registry import detect_device, load_whisper

    assert detect_device("auto") == ("cuda", "float16")
    model = Settings().model
    results = {}
    for device, compute in (("cuda", "float16"), ("cpu", "int8")):
        t = Transcriber(load_whisper(model, device=device, compute_type=compute, cpu_threads=4), beam_size=5)
        t.transcribe(clips[0][1][: 16000 * 2])  # warm-up: first CUDA call sets up kernels
        t0 = time.perf_counter()
        hyps = [" ".join(w.text for w in words_of(t.transcribe(audio))) for _, audio, _ in clips]
        results[device] = (time.perf_counter() - t0, _wer([r for *_, r in clips], hyps))
    audio_s = sum(a.size for _, a, _ in clips) / 16000
    for device, (secs, wer) in results.items():
        print(f"\n{device}: {len(clips)} clips, {audio_s:.0f} s of audio in {secs:.2f} s "
              f"({audio_s / secs:.0f}x real time), WER {wer:.1%}")
    gpu_wer, cpu_wer = results["cuda"][1], results["cpu"][1]
    assert gpu_wer <= cpu_wer + 0.02, (gpu_wer, cpu_wer)  # float16 on the GPU loses nothing that int8 keeps
    assert gpu_wer <= 0.15


@pytest.mark.ray
def test_speech_pool_is_made_of_gpu_actors(clips, tmp_path):
    import ray

    from ace.evaluation.speech import transcribe_live
    from ace.signals.speech import Transcriber
    from models.registry import load_whisper
    from workers.cluster import init_ray, shutdown_ray
    from workers.speech_pool import PooledTranscriber, get_speech_pool, kill_speech_pool, pool_size

    shutdown_ray()
    init_ray(num_cpus=4, data_dir=tmp_path / "raydata")
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        assert gpus >= 1  # Ray found the GPU by itself
        settings = Settings(data_dir=tmp_path / "data")
        assert pool_size(settings) == (gpus, 1.0)  # one actor per GPU, each holding a whole GPU
        actors = get_speech_pool(settings)
        assert len(actors) == gpus
        served = ray.get([a.stats.remote() for a in actors])
        assert all(s["device"] == "cuda" and len(s["gpus"]) == 1 for s in served), served
        assert len({s["gpus"][0] for s in served}) == gpus  # each actor on its own GPU

        audio = np.concatenate([a for _, a, _ in clips[:4]])
        local = Transcriber(load_whisper(settings.model, device="cuda", compute_type="float16"), beam_size=1)
        pooled = PooledTranscriber(actors, beam_size=1)
        t0 = time.perf_counter()
        a, stats_a = transcribe_live(local, audio)
        t1 = time.perf_counter()
        b, _ = transcribe_live(pooled, audio)
        t2 = time.perf_counter()
        print(f"\nlive windows of {audio.size / 16000:.0f} s of audio: local GPU {t1 - t0:.2f} s, "
              f"pooled GPU actor {t2 - t1:.2f} s, {stats_a['decodes']} decodes")
        assert len(a) > 30
        assert [w.text for w in a] == [w.text for w in b]
        assert max(abs(x.start - y.start) + abs(x.end - y.end) for x, y in zip(a, b)) < 0.05
        # every window with speech went to the pool (batched there), those without stayed home
        assert sum(s["windows"] for s in ray.get([x.stats.remote() for x in actors])) == pooled.windows
        assert pooled.windows + pooled.skipped <= stats_a["decodes"]
    finally:
        try:
            kill_speech_pool()
        finally:
            shutdown_ray()
