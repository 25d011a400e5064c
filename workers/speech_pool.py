"""The shared speech-recognition pool of live streams: a few recogniser actors per cluster instead
of one model in every stream actor.

:class:`SpeechServer` holds one faster-whisper model (a plain class, tested without Ray);
:data:`SpeechActor` is its Ray actor, named ``ace:speech:<n>`` in namespace ``ace`` and detached,
so every stream of the cluster finds the same pool. :func:`get_speech_pool` makes the pool once,
sized to the machine: on a GPU, one actor per GPU (``num_gpus=1``, float16), on the CPU one
single-threaded actor per core (Whisper uses a second thread poorly, see the batch pipeline). A
stream's analyzer gets a :class:`PooledTranscriber`, which stands in for a
:class:`~ace.signals.speech.Transcriber`: each audio window (8-20 s of 16 kHz float32, at most
1.3 MB) goes to the next pool actor in turn.

**Batching** (setting ``speech_batch``: 32 windows on a GPU unless set; off on the CPU, where it
measured slower, see :data:`DEFAULT_BATCH`; 1 turns it off). A recogniser is a threaded actor: the windows of all streams that reach it are transcribed at
once, each in a thread of its own, and their model calls run as batches
(:class:`~ace.signals.batching.BatchedWhisper`); a window waits at most ``speech_batch_wait_ms`` for
others to join it. Without batching a recogniser takes one window at a time, in arrival order.

**Silence stays home** (setting ``speech_vad_skip``, on). Before a window is sent, the stream runs
faster-whisper's own voice-activity filter on it (:func:`~ace.signals.speech.speech_chunks`, Silero
VAD, a few milliseconds): a window without speech (music, silence, crowd noise) is not sent at all,
and a window with speech is sent with its speech chunks, so the recogniser does not run the filter a
second time. The words are the same either way.

The degrade ladder's ``beam-1`` level lowers ``beam_size`` per stream, as before.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Any

import ray

from ace.config import Settings

log = logging.getLogger("ace.workers")

POOL_PREFIX = "ace:speech:"
#: CPU a recogniser actor reserves: a reservation for scheduling only (the model uses one thread),
#: kept small so that the pool is placed however many stream actors came first (with 0.25, 16
#: streams on 2 cores left the second recogniser unplaced, and the windows sent to it waited)
SPEECH_ACTOR_CPUS = 0.05
#: scheduling priority of a CPU recogniser (``nice`` increment over the Ray worker's own 15): 0, the
#: streams' own. At +5 (nice 19) 16 streams on 2 cores starved it: its model calls took twice their
#: CPU time in wall time while clip cuts ran, every stream waited for its words and fell behind
SPEECH_NICE = 0


class SpeechServer:
    """One recogniser: loads the model once and transcribes audio windows for any stream; with
    ``batch`` > 1, from several threads at once, their model calls batched."""

    def __init__(self, settings: dict, threads: int = 1, batch: int = 1, max_wait_s: float = 0.05):
        from ace.signals.batching import SharedTranscriber
        from models.registry import detect_device, load_whisper

        s = Settings(**settings)
        device, compute = detect_device(s.device, s.compute_type)
        model = load_whisper(s.model, device=device, compute_type=compute, cpu_threads=threads, cache_dir=s.cache_dir)
        self.device = device
        if device == "cpu" and SPEECH_NICE and hasattr(os, "nice"):
            try:
                os.nice(SPEECH_NICE)
            except OSError:  # pragma: no cover - not allowed here
                pass
        self._t = SharedTranscriber(model, beam_size=s.beam_size, language=s.language, batch=batch,
                                    max_wait_s=max_wait_s)
        self.batched = self._t.batched
        self._lock = threading.Lock()
        self.windows = 0
        self.audio_s = 0.0

    def transcribe(self, audio, offset: float, beam_size: int, language: str | None = None,
                   context_s: float | None = None, speech: list | None = None) -> list:
        """The window's sentences (``speech``: its speech chunks, found by the stream)."""
        with self._lock:
            self.windows += 1
            self.audio_s += len(audio) / 16000.0
        return self._t._transcribe_one(audio, offset, None, context_s=context_s, speech=speech,
                                       beam_size=beam_size, language=language)

    def stats(self) -> dict:
        gpus = ray.get_gpu_ids() if ray.is_initialized() else []
        out = {"device": self.device, "gpus": [str(g) for g in gpus], "windows": self.windows,
               "audio_s": round(self.audio_s, 1), "pid": os.getpid()}
        if self.batched is not None:
            out["batching"] = self.batched.stats()
        return out


SpeechActor = ray.remote(SpeechServer)


def pool_size(settings: Settings) -> tuple[int, float]:
    """(actors, GPUs each): one per GPU on a GPU machine, else one per CPU core of the cluster."""
    from models.registry import detect_device

    device, _ = detect_device(settings.device, settings.compute_type)
    gpus = int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0
    if device == "cuda" and gpus > 0:
        return gpus, 1.0
    cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1)) if ray.is_initialized() else (os.cpu_count() or 1)
    return max(1, cpus), 0.0


def recorded_pool_size(s: Settings, n: int, gpus: float) -> tuple[int, float]:
    """The pool's size as the control plane keeps it (``control`` row ``speech_pool``): a pool made
    again after a restart has the size it had, and grows (never shrinks) with the cluster."""
    from ace.controlplane import ControlPlane
    from ace.store import Store

    try:
        cp = ControlPlane(Store.from_settings(s))
        was = cp.get_value("speech_pool") or {}
        size = max(n, int(was.get("size", 0)))
        if gpus:  # one recogniser per GPU: what the cluster has now
            size = n
        if was.get("size") != size or float(was.get("gpus", 0.0)) != gpus:
            cp.set_value("speech_pool", {"size": size, "gpus": gpus})
        return size, gpus
    except Exception as e:  # noqa: BLE001 - the pool still works without the record
        log.warning("speech pool: its size is not recorded (%s)", e)
        return n, gpus


#: windows a recogniser batches by default, per device. On the CPU batching is off: on the 2-core
#: reference machine the pool alone served 0.8x the streams with batches of up to 16 (35 against 44
#: streams' speech in real time, 16 streams, after a warm-up; an earlier run gave 1.2x): the decoder
#: gains, but the windows' own Python work (features, word timings) then waits on the model thread's
#: batches. On a GPU every kind of call batches wide (not measured here).
DEFAULT_BATCH = {"cpu": 1, "cuda": 32}
#: what ``ace bench speech`` compares with one window at a time when the setting says nothing
WIDE_BATCH = {"cpu": 16, "cuda": 32}


def speech_batch(settings: Settings, default: dict[str, int] = DEFAULT_BATCH) -> int:
    """Most windows a recogniser batches: the setting, else ``default`` for the device."""
    if settings.speech_batch:
        return int(settings.speech_batch)
    from models.registry import detect_device

    device, _ = detect_device(settings.device, settings.compute_type)
    return default.get(device, 1)


def get_speech_pool(settings: Settings | dict) -> list:
    """The cluster's recogniser actors (made, detached, the first time; found by name after)."""
    from workers.live import NAMESPACE

    s = settings if isinstance(settings, Settings) else Settings(**settings)
    n, gpus = recorded_pool_size(s, *pool_size(s))
    keep = ("model", "device", "compute_type", "beam_size", "language", "data_dir")
    args = {k: getattr(s, k) for k in keep}
    args["data_dir"] = str(args["data_dir"])
    batch = speech_batch(s)
    actors = []
    for i in range(n):
        opts: dict[str, Any] = {"name": f"{POOL_PREFIX}{i}", "namespace": NAMESPACE, "lifetime": "detached",
                                "get_if_exists": True, "max_restarts": -1, "max_task_retries": 2,
                                "num_cpus": SPEECH_ACTOR_CPUS,
                                # a thread per window being transcribed: room for two batches
                                "max_concurrency": 2 * batch + 2 if batch > 1 else 1}
        if gpus:
            opts["num_gpus"] = gpus
        actors.append(SpeechActor.options(**opts).remote(args, 1, batch, s.speech_batch_wait_ms / 1000.0))
    return actors


def pool_actors() -> list:
    """The pool's actors that exist now (found by name; none made)."""
    from workers.live import NAMESPACE

    found = []
    for i in itertools.count():
        try:
            found.append(ray.get_actor(f"{POOL_PREFIX}{i}", namespace=NAMESPACE))
        except ValueError:
            return found


def kill_speech_pool() -> int:
    """Kill the pool's actors (``ace serve --shutdown``); returns how many there were."""
    from workers.live import NAMESPACE

    n = 0
    for actor in pool_actors():
        ray.kill(actor)
        n += 1
    # the names are released once the actors are dead: a pool made right after must not find them
    deadline = time.monotonic() + 30.0
    for i in range(n):
        while time.monotonic() < deadline:
            try:
                ray.get_actor(f"{POOL_PREFIX}{i}", namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.1)
    return n


class PooledTranscriber:
    """What a stream's analyzer calls instead of a local model: ``_transcribe_one`` sends the
    window to the pool and waits for the words (the analyzer runs in the stream's own thread).
    With ``vad_skip`` a window without speech is not sent (see the module docstring)."""

    def __init__(self, actors: list, beam_size: int = 1, language: str | None = None, timeout_s: float = 120.0,
                 vad_skip: bool = True):
        if not actors:
            raise ValueError("the speech pool has no actors")
        self.actors = list(actors)
        self.beam_size = beam_size
        self.language = language
        self.timeout_s = timeout_s
        self.vad_skip = vad_skip
        self._next = itertools.cycle(range(len(self.actors)))
        #: windows sent to the pool, windows without speech not sent and their seconds, windows no
        #: recogniser answered; shared by copies (the analyzer copies its transcriber)
        self.counts = {"windows": 0, "skipped": 0, "skipped_s": 0.0, "lost": 0}

    def __copy__(self):
        out = PooledTranscriber(self.actors, self.beam_size, self.language, self.timeout_s, self.vad_skip)
        out.counts = self.counts
        return out

    @property
    def windows(self) -> int:
        return self.counts["windows"]

    @property
    def skipped(self) -> int:
        return self.counts["skipped"]

    @property
    def lost(self) -> int:
        return self.counts["lost"]

    def _transcribe_one(self, audio, offset: float, progress=None, context_s: float | None = None) -> list:
        """The window's words from the next recogniser; one that is gone or restarting (its node
        died) is passed over for the next, and when none answers the window is heard as silence
        (logged and counted in ``lost``): a stream never fails for its speech."""
        if audio.size < 1600:
            return []
        speech = None
        if self.vad_skip:
            from ace.signals.speech import speech_chunks

            speech = speech_chunks(audio)
            if not speech:
                self.counts["skipped"] += 1
                self.counts["skipped_s"] += audio.size / 16000
                return []
        self.counts["windows"] += 1
        ref = ray.put(audio)
        for _ in range(len(self.actors)):
            actor = self.actors[next(self._next)]
            try:
                return ray.get(actor.transcribe.remote(ref, offset, self.beam_size, self.language, context_s, speech),
                               timeout=self.timeout_s)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                log.warning("speech pool: a recogniser did not answer (%s); trying the next", type(e).__name__)
        self.counts["lost"] += 1
        log.warning("speech pool: no recogniser answered; %.1f s of audio at %.1f s heard as silence",
                    audio.size / 16000, offset)
        return []

    def transcribe(self, audio, offset: float = 0.0, progress=None) -> list:
        return self._transcribe_one(audio, offset, progress)

    def stats(self) -> dict:
        return {**self.counts, "skipped_s": round(self.counts["skipped_s"], 1)}
