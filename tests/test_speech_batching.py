"""Batched speech recognition across streams: the batcher gathers the calls of concurrent windows,
hands each caller its own part, and the words are the same as one window at a time; windows without
speech never reach the recogniser."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

from ace import media
from ace.signals.batching import BatchedWhisper, batch_limits
from ace.signals.speech import SAMPLE_RATE, LiveTranscriber, Transcriber, speech_chunks


class _Model:
    """Counts the batches it is given; encode doubles its input, generate and align answer each
    item with its first value (so a caller can tell its own answer)."""

    device = "cpu"
    is_multilingual = False

    def __init__(self, fail: bool = False):
        self.batches: list[tuple[str, int]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def _seen(self, op: str, x) -> np.ndarray:
        arr = np.array(x)
        with self.lock:
            self.batches.append((op, arr.shape[0]))
        if self.fail:
            raise RuntimeError("model broke")
        return arr

    def encode(self, features, to_cpu=False):
        import ctranslate2

        return ctranslate2.StorageView.from_array(self._seen("encode", features) * 2)

    def generate(self, features, prompts, **options):
        return [float(row.flat[0]) for row in self._seen("generate", features)]

    def align(self, features, start_sequence, text_tokens, num_frames, **options):
        arr = self._seen("align", features)
        return [(float(row.flat[0]), tuple(t), f) for row, t, f in zip(arr, text_tokens, num_frames)]


def _run_threads(n: int, target) -> list:
    out: list = [None] * n
    errors: list = []

    def one(i: int) -> None:
        try:
            out[i] = target(i)
        except Exception as e:  # noqa: BLE001 - checked by the test
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a caller never got its answer"
    return out if not errors else errors


def _gathered(bw: BatchedWhisper, n: int, call):
    """n threads each in a request, all started before any call runs."""
    gate = threading.Barrier(n)

    def target(i: int):
        with bw.request():
            gate.wait()
            return call(i)

    return _run_threads(n, target)


def test_concurrent_windows_are_decoded_as_one_batch_and_each_gets_its_own_answer():
    model = _Model()
    bw = BatchedWhisper(model, {"encode": 2, "generate": 8, "align": 8}, max_wait_s=30.0)
    try:
        x = [np.full((1, 4, 6), float(i), np.float32) for i in range(6)]
        got = _gathered(bw, 6, lambda i: bw.generate(x[i], [[1, 2, 3]], beam_size=1, max_length=10))
        assert got == [[float(i)] for i in range(6)]
        assert model.batches == [("generate", 6)]  # everyone was waiting: one batch, no wait for more

        enc = _gathered(bw, 5, lambda i: np.array(bw.encode(x[i])))
        assert [float(e.flat[0]) for e in enc] == [2.0 * i for i in range(5)]
        assert all(e.shape == (1, 4, 6) for e in enc)
        sizes = [n for op, n in model.batches if op == "encode"]
        assert sum(sizes) == 5 and max(sizes) <= 2  # the CPU encoder's limit holds

        al = _gathered(bw, 3, lambda i: bw.align(x[i], [50257], [[i, i + 1]], 7, median_filter_width=7))
        assert al == [[(float(i), (i, i + 1), 7)] for i in range(3)]
        st = bw.stats()
        assert st["generate"]["largest"] == 6 and st["generate"]["batches"] == 1
    finally:
        bw.close()


def test_calls_that_cannot_share_a_batch_are_kept_apart():
    model = _Model()
    bw = BatchedWhisper(model, {"generate": 8}, max_wait_s=30.0)
    try:
        def call(i: int):  # two shapes, two beam sizes
            x = np.full((1, 4, 6 if i % 2 else 8), float(i), np.float32)
            return bw.generate(x, [[1]], beam_size=1 + (i // 2) % 2)

        got = _gathered(bw, 8, call)
        assert got == [[float(i)] for i in range(8)]
        assert sorted(n for _op, n in model.batches) == [2, 2, 2, 2]
    finally:
        bw.close()


def test_a_lone_window_does_not_wait_for_company():
    model = _Model()
    bw = BatchedWhisper(model, {"generate": 16}, max_wait_s=3600.0)  # a wait would hang the test
    try:
        with bw.request():
            assert bw.generate(np.ones((1, 2, 2), np.float32), [[1]]) == [1.0]
        assert model.batches == [("generate", 1)]
    finally:
        bw.close()


def test_a_failing_batch_fails_every_caller_in_it():
    bw = BatchedWhisper(_Model(fail=True), {"generate": 8}, max_wait_s=30.0)
    try:
        errors = _gathered(bw, 3, lambda i: bw.generate(np.ones((1, 2, 2), np.float32), [[1]]))
        assert len(errors) == 3 and all(isinstance(e, RuntimeError) and "model broke" in str(e) for e in errors)
    finally:
        bw.close()


def test_batch_limits_follow_the_device():
    assert batch_limits(16, "cpu") == {"encode": 2, "generate": 16, "align": 16}
    assert batch_limits(32, "cuda") == {"encode": 32, "generate": 32, "align": 32}
    assert batch_limits(1, "cpu") == {"encode": 1, "generate": 1, "align": 1}


# -- the real model ------------------------------------------------------------------------------------


def _speech_clips(eval_data) -> list[np.ndarray]:
    folder = eval_data / "speech" / "en"
    clips = sorted(p for p in folder.glob("*") if p.suffix in (".ogg", ".flac", ".wav")) if folder.is_dir() else []
    if not clips:
        pytest.skip(f"no speech clips in {folder}")
    return [media.read_audio(p) for p in clips]


def _live_words(transcriber, audio: np.ndarray) -> list[tuple[float, float, str]]:
    live = LiveTranscriber(transcriber, context_s=15.0)
    words = []
    for i in range(0, audio.size, 2 * SAMPLE_RATE):
        words += live.feed(audio[i : i + 2 * SAMPLE_RATE])
    words += live.flush()
    return [(w.start, w.end, w.text) for w in words]


class _Window:
    """What the stream actors do: the voice filter runs here, the rest at the recogniser."""

    beam_size = 1

    def __init__(self, server):
        self.server = server

    def _transcribe_one(self, audio, offset, progress=None, context_s=None):
        chunks = speech_chunks(audio)
        return self.server.transcribe(audio, offset, 1, None, context_s, chunks) if chunks else []


@pytest.mark.slow
def test_batched_streams_hear_the_same_words_as_one_window_at_a_time(eval_data):
    """The shared speech clips, each as a live stream, all at once through one batching recogniser,
    against the same clips one window at a time through a plain model."""
    from models.registry import load_whisper
    from workers.speech_pool import SpeechServer

    clips = _speech_clips(eval_data)
    plain = Transcriber(load_whisper("tiny.en", device="cpu", cpu_threads=1))
    alone = [_live_words(plain, a) for a in clips]
    server = SpeechServer({"model": "tiny.en", "device": "cpu"}, threads=1, batch=8, max_wait_s=0.2)
    try:
        together = _run_threads(len(clips), lambda i: _live_words(_Window(server), clips[i]))
        st = server.batched.stats()
    finally:
        server.batched.close()
    assert sum(len(w) for w in alone) > 100
    assert together == alone
    assert st["generate"]["largest"] > 1  # windows were really decoded together


def test_a_window_without_speech_never_reaches_the_recogniser():
    from workers.speech_pool import PooledTranscriber

    class _NoActor:  # calling it would fail the test: no window may be sent
        def __getattr__(self, name):
            raise AssertionError("a silent window was sent to the recogniser")

    rng = np.random.default_rng(0)
    quiet = (0.001 * rng.standard_normal(8 * SAMPLE_RATE)).astype(np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    assert speech_chunks(quiet) == [] and speech_chunks(tone) == []
    pooled = PooledTranscriber([_NoActor()])
    assert pooled._transcribe_one(quiet, 0.0) == [] and pooled._transcribe_one(tone, 8.0) == []
    assert pooled.stats() == {"windows": 0, "skipped": 2, "skipped_s": 16.0, "lost": 0}
    assert copy.copy(pooled).stats() == pooled.stats()  # the analyzer's copy counts for the stream


def test_chunks_found_by_the_stream_replace_the_recognisers_own_filter(short_show):
    from models.registry import load_whisper

    audio = media.read_audio(short_show.video)[: 12 * SAMPLE_RATE]
    t = Transcriber(load_whisper("tiny.en", device="cpu", cpu_threads=1))
    chunks = speech_chunks(audio)
    assert chunks  # the sample show talks
    own = t._transcribe_one(audio, 5.0, None, context_s=15.0)
    given = t._transcribe_one(audio, 5.0, None, context_s=15.0, speech=chunks)
    assert [s.words for s in given] == [s.words for s in own] and own
    assert t._transcribe_one(audio, 5.0, None, speech=[]) == []  # nothing said: the model is not run
