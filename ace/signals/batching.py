"""One Whisper model shared by many threads, whose calls run together as batches.

faster-whisper transcribes one audio window at a time: for each window it runs CTranslate2's
``encode`` (the audio encoder), ``generate`` (the text decoder) and ``align`` (word timestamps), each
on a batch of one. A recogniser serving many live streams gets windows from all of them.
:class:`BatchedWhisper` stands in for the CTranslate2 model (``WhisperModel.model``): each stream's
window is transcribed in a thread of its own by faster-whisper's unchanged code, and the model calls
those threads make are gathered and run as one batch per kind of call. So every window goes through
exactly the steps it would go through alone (voice activity filter, seeking, word timestamps): only
the arithmetic is shared, and the words come out the same.

**When a batch runs.** One thread runs the model. It takes the oldest waiting call and every waiting
call that can join it (the same kind of call on inputs of the same shape with the same options), and
runs them when

* they fill the batch (:attr:`BatchedWhisper.limits`, per kind of call), or
* every window being transcribed is waiting for the model (no company can come before one of them
  is answered), or
* the oldest has waited ``max_wait_s`` for company: the bound on what batching adds to a window.

A window alone is never held back, and under load the calls that queued while a batch ran form the
next one.

**What batching buys on a CPU** (tiny.en, int8, one thread, 10 s windows padded to 15 s): the
decoder gains most, 8 windows in one ``generate`` cost 0.45 s against 1.05 s one by one; the encoder
does not gain, 8 windows together cost more than one by one (1.1 s against 0.8 s: the activations
leave the caches), so the CPU encoder batches at most 2. On a GPU every kind of call batches wide.

The module knows nothing of Ray: the speech pool (``workers/speech_pool.py``) calls a transcriber
that uses this model from the threads of a threaded actor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BatchedWhisper", "SharedTranscriber", "batch_limits"]

#: the kinds of call that are batched
OPS = ("encode", "generate", "align")


def batch_limits(batch: int, device: str) -> dict[str, int]:
    """Most windows in one call of each kind: ``batch`` for the decoder and the aligner, and on a
    CPU at most 2 for the encoder (see the module docstring)."""
    batch = max(1, int(batch))
    encode = batch if device == "cuda" else min(2, batch)
    return {"encode": encode, "generate": batch, "align": batch}


@dataclass
class _Call:
    op: str
    key: tuple
    n: int  # windows in this call (its batch dimension)
    args: dict[str, Any]
    t: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


def _array(x) -> np.ndarray:
    """A CTranslate2 StorageView (on the CPU) or an array as a numpy array."""
    return np.asarray(x) if isinstance(x, np.ndarray) else np.array(x)


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


class BatchedWhisper:
    """Stands in for a ``ctranslate2.models.Whisper`` shared by threads (see the module docstring).

    Each thread transcribing a window wraps its work in :meth:`request`, so the model thread knows
    how many windows may still bring a call. Attributes other than the batched calls are the
    model's own."""

    def __init__(self, model: Any, limits: Mapping[str, int] | None = None, max_wait_s: float = 0.05):
        self._model = model
        self._cuda = getattr(model, "device", "cpu") == "cuda"
        wanted = dict(limits or {})
        self.limits = {op: max(1, int(wanted.get(op, 1))) for op in OPS}
        self.max_wait_s = max(0.0, float(max_wait_s))
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._active = 0
        self._closed = False
        #: per kind of call: calls, batches, windows, seconds in the model, seconds calls waited
        self.counts = {op: {"calls": 0, "batches": 0, "windows": 0, "largest": 0, "model_s": 0.0, "wait_s": 0.0}
                       for op in OPS}
        self._thread = threading.Thread(target=self._loop, name="ace-speech-batch", daemon=True)
        self._thread.start()

    # -- what faster-whisper calls -------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features, to_cpu: bool = False):
        x = _array(features)
        return self._submit("encode", ("encode", x.shape[1:], x.dtype.str), x.shape[0], {"x": x})

    def generate(self, features, prompts, **options):
        x = _array(features)
        prompts = [list(p) for p in prompts]
        key = ("generate", x.shape[1:], x.dtype.str, _frozen(options))
        return self._submit("generate", key, x.shape[0], {"x": x, "prompts": prompts, "options": options})

    def align(self, features, start_sequence, text_tokens, num_frames, **options):
        x = _array(features)
        n = x.shape[0]
        frames = list(num_frames) if isinstance(num_frames, (list, tuple)) else [int(num_frames)] * n
        key = ("align", x.shape[1:], x.dtype.str, tuple(start_sequence), _frozen(options))
        return self._submit("align", key, n, {"x": x, "start": list(start_sequence), "tokens": list(text_tokens),
                                              "frames": frames, "options": options})

    # -- the threads' side ------------------------------------------------------------------------------

    @contextmanager
    def request(self) -> Iterator[None]:
        """Marks one window being transcribed by the calling thread."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _submit(self, op: str, key: tuple, n: int, args: dict[str, Any]):
        call = _Call(op, key, n, args)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batched model is closed")
            self._queue.append(call)
            self._cond.notify_all()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def close(self) -> None:
        """Answer what is queued, then stop the model thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def stats(self) -> dict[str, Any]:
        """Per kind of call: calls, batches, mean and largest batch, seconds in the model, mean wait."""
        out: dict[str, Any] = {"limits": dict(self.limits), "max_wait_s": self.max_wait_s}
        for op, c in self.counts.items():
            out[op] = {"calls": c["calls"], "batches": c["batches"], "largest": c["largest"],
                       "mean_batch": round(c["windows"] / c["batches"], 2) if c["batches"] else None,
                       "model_s": round(c["model_s"], 3),
                       "mean_wait_ms": round(1000 * c["wait_s"] / c["calls"], 1) if c["calls"] else None}
        return out

    # -- the model thread ----------------------------------------------------------------------------

    def _next_batch(self) -> list[_Call] | None:
        """The calls to run next, once they should run (see the module docstring); None when closed."""
        with self._cond:
            while True:
                if not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                first = self._queue[0]
                limit = self.limits[first.op]
                group, size = [], 0
                for c in self._queue:
                    if c.key == first.key and (not group or size + c.n <= limit):
                        group.append(c)
                        size += c.n
                waited = time.monotonic() - first.t
                if (size >= limit or len(self._queue) >= self._active or waited >= self.max_wait_s
                        or self._closed):
                    taken = {id(c) for c in group}
                    self._queue = [c for c in self._queue if id(c) not in taken]
                    return group
                self._cond.wait(self.max_wait_s - waited)

    def _loop(self) -> None:
        while True:
            group = self._next_batch()
            if group is None:
                return
            started = time.monotonic()
            try:
                results = getattr(self, f"_run_{group[0].op}")(group)
                for c, r in zip(group, results):
                    c.result = r
            except BaseException as e:  # noqa: BLE001 - handed to every caller of the batch
                for c in group:
                    c.error = e
            spent = time.monotonic() - started
            c0 = self.counts[group[0].op]
            c0["calls"] += len(group)
            c0["batches"] += 1
            windows = sum(c.n for c in group)
            c0["windows"] += windows
            c0["largest"] = max(c0["largest"], windows)
            c0["model_s"] += spent
            c0["wait_s"] += sum(started - c.t for c in group)
            for c in group:
                c.done.set()

    def _stacked(self, group: list[_Call]):
        import ctranslate2

        x = group[0].args["x"] if len(group) == 1 else np.concatenate([c.args["x"] for c in group])
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(x))

    def _split(self, group: list[_Call], items: list) -> list[list]:
        out, i = [], 0
        for c in group:
            out.append(items[i : i + c.n])
            i += c.n
        return out

    def _run_encode(self, group: list[_Call]) -> list:
        import ctranslate2

        # on a GPU the output comes back to the host, where the next batch is put together
        out = self._model.encode(self._stacked(group), to_cpu=self._cuda)
        if len(group) == 1:
            return [out]
        arr = _array(out)
        out, i = [], 0
        for c in group:
            out.append(ctranslate2.StorageView.from_array(np.ascontiguousarray(arr[i : i + c.n])))
            i += c.n
        return out

    def _run_generate(self, group: list[_Call]) -> list:
        prompts = [p for c in group for p in c.args["prompts"]]
        results = self._model.generate(self._stacked(group), prompts, **group[0].args["options"])
        return self._split(group, list(results))

    def _run_align(self, group: list[_Call]) -> list:
        tokens = [t for c in group for t in c.args["tokens"]]
        frames = [f for c in group for f in c.args["frames"]]
        results = self._model.align(self._stacked(group), group[0].args["start"], tokens, frames,
                                    **group[0].args["options"])
        return self._split(group, list(results))


class SharedTranscriber:
    """One model transcribing windows for many threads at once (the speech pool's recogniser, the
    speech evaluation's batched run): with ``batch`` > 1 their model calls run as batches
    (:class:`BatchedWhisper`), else each thread's window runs as it comes. A window is passed with
    its speech chunks when the caller found them (:func:`~ace.signals.speech.speech_chunks`)."""

    def __init__(self, model: Any, beam_size: int = 1, language: str | None = None, batch: int = 1,
                 max_wait_s: float = 0.05):
        import copy

        self.beam_size = beam_size
        self.language = language
        self.batched: BatchedWhisper | None = None
        if batch > 1:
            device = getattr(model.model, "device", "cpu")
            self.batched = BatchedWhisper(model.model, batch_limits(batch, device), max_wait_s)
            model = copy.copy(model)  # a loaded model is shared in its process: wrap a copy of it
            model.model = self.batched
        self.model = model

    def _transcribe_one(self, audio: np.ndarray, offset: float, progress=None, context_s: float | None = None,
                        speech: list[dict] | None = None, beam_size: int | None = None,
                        language: str | None = None) -> list:
        from ace.signals.speech import Transcriber

        t = Transcriber(self.model, beam_size=self.beam_size if beam_size is None else int(beam_size),
                        language=self.language if language is None else language)
        if self.batched is None:
            return t._transcribe_one(audio, offset, progress, context_s=context_s, speech=speech)
        with self.batched.request():
            return t._transcribe_one(audio, offset, progress, context_s=context_s, speech=speech)

    def stats(self) -> dict[str, Any] | None:
        return self.batched.stats() if self.batched is not None else None

    def close(self) -> None:
        if self.batched is not None:
            self.batched.close()
