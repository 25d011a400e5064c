"""The ramp actor: each tick, read every live room's aggregates and moments, decide, keep the
decisions for the back office, publish each room's share as a metric, and send the decisions to
the platform's sink.

:class:`RampController` is a plain class (tested without Ray); :data:`RampActor` is the Ray
actor made from it, with its fractional CPU declared here and only here.

The live pipeline feeds it through a small protocol, :class:`RoomFeed`: anything that, given the
tick's window ``(since, until)``, returns the rooms live now as
:class:`~ace.policy.state.RoomAggregate` objects and the moments found since ``since``. A plain
callable ``feed(since, until) -> FeedBatch | (aggregates, moments)`` works, and so does an
object with a ``poll(since, until)`` method. Pipelines that push instead of being polled call
:meth:`RampController.push` with the same data.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import ray

from ace.policy import get_policy
from ace.policy.sink import DecisionSink, SinkError, make_sink
from ace.policy.state import RoomAggregate
from ace.types import Moment, RampDecision, to_dict

log = logging.getLogger("ace.workers")

__all__ = ["RAMP_ACTOR_CPUS", "RAMP_NAME", "ControllerFeed", "FeedBatch", "RampActor", "RampController", "RoomFeed",
           "ShareGauge", "StoreRecorder", "get_ramp", "ramp_sink_spec"]

#: CPU share the ramp actor asks Ray for (it mostly waits between ticks)
RAMP_ACTOR_CPUS = 0.1


@dataclass
class FeedBatch:
    """What the live pipeline reports for one tick."""

    aggregates: list[RoomAggregate] = field(default_factory=list)  #: every room live now
    moments: list[Moment] = field(default_factory=list)  #: moments found since the last tick (``show_id`` = stream id)


@runtime_checkable
class RoomFeed(Protocol):
    """Source of per-room aggregates and moments (the live pipeline provides one)."""

    def poll(self, since: float, until: float) -> FeedBatch: ...


FeedLike = RoomFeed | Callable[[float, float], Any]


class ShareGauge:
    """The per-room share metric: ``ace_ramp_share{stream=...}``, the share of the promoted pool
    each live room gets next tick. Uses Ray's metrics when Ray is initialised, else does nothing
    (unless given another gauge with the same ``set(value, tags=...)`` method)."""

    name = "ace_ramp_share"

    def __init__(self, gauge: Any | None = None):
        self._gauge = gauge
        if self._gauge is None and ray.is_initialized():
            from ray.util.metrics import Gauge

            self._gauge = Gauge(self.name, description="Share of the promoted-traffic pool a live room gets next tick.", tag_keys=("stream",))

    def set(self, stream: str, share: float) -> None:
        if self._gauge is not None:
            self._gauge.set(float(share), tags={"stream": stream})


def _batch(result: Any) -> FeedBatch:
    if isinstance(result, FeedBatch):
        return result
    if isinstance(result, tuple) and len(result) == 2:
        return FeedBatch(list(result[0]), list(result[1]))
    if isinstance(result, dict):
        return FeedBatch(list(result.get("aggregates", [])), list(result.get("moments", [])))
    raise TypeError(f"a room feed must return FeedBatch or (aggregates, moments), not {type(result).__name__}")


class RampController:
    """Holds a ramp policy and runs it tick by tick.

    ``policy`` is a catalogue name (``ramp`` by default) or a policy object; ``plan`` is the
    promoted impressions to spread per tick (a number, or a callable of the tick time), with a hard
    cap ``plan * (1 + pool_headroom)``. ``sink`` is a sink object or a :func:`make_sink` string
    (JSONL path or http(s) webhook URL). ``history`` bounds the decisions kept in memory.
    ``clock`` gives the tick time when :meth:`tick` is called without one. ``record``, when
    given, is called with each tick's decisions to keep them (the store, for the back office).
    ``autostart`` starts ticking at once (see :meth:`start`).
    """

    def __init__(
        self,
        feed: FeedLike | None = None,
        *,
        policy: Any = "ramp",
        seed: int = 0,
        plan: float | Callable[[float], float] = 20_000.0,
        pool_headroom: float = 0.10,
        tick_s: float = 30.0,
        sink: DecisionSink | str | None = None,
        sink_timeout: float = 2.0,
        history: int = 5000,
        clock: Callable[[], float] = time.time,
        gauge: Any | None = None,
        policy_options: dict | None = None,
        record: Callable[[list[RampDecision]], Any] | None = None,
        memory: Any | None = None,
        autostart: bool = False,
    ):
        self.feed = feed
        self.policy = get_policy(policy, seed=seed, **(policy_options or {})) if isinstance(policy, str) else policy
        self.plan = plan
        self.pool_headroom = float(pool_headroom)
        self.tick_s = float(tick_s)
        self.sink = sink if sink is not None and not isinstance(sink, str) else make_sink(sink, timeout=sink_timeout)
        self.clock = clock
        self.gauge = ShareGauge(gauge)
        self.record = record
        self._history: deque[RampDecision] = deque(maxlen=max(1, int(history)))
        self._latest: dict[str, RampDecision] = {}
        self._lock = threading.RLock()
        self._last_t: float | None = None
        self._stats = {"ticks": 0, "decisions": 0, "sink_errors": 0, "feed_errors": 0, "record_errors": 0, "last_tick": None, "last_error": ""}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # the policy's memory (tiers, estimates, kill switches, pacing) kept across restarts
        self.memory = memory
        if memory is not None and hasattr(self.policy, "restore"):
            try:
                snap = memory.load()
                if snap:
                    self.policy.restore(snap)
                    log.info("ramp: the policy's memory of %d room slot(s) restored", len(self.policy.slots))
            except Exception as e:  # noqa: BLE001 - a memory that cannot be read: start afresh, say so
                log.warning("ramp: cannot restore the policy's memory (%s); starting afresh", e)
        if autostart:  # an actor that Ray restarts ticks again by itself
            self.start()

    # ------------------------------------------------------------------ deciding

    def _plan(self, t: float) -> float:
        return float(self.plan(t)) if callable(self.plan) else float(self.plan)

    def tick(self, t: float | None = None) -> list[RampDecision]:
        """Poll the feed for the tick ending at ``t`` (default: the clock) and decide."""
        if self.feed is None:
            raise RuntimeError("this controller has no feed: call push() with the tick's data")
        t = float(self.clock() if t is None else t)
        since = self._last_t if self._last_t is not None else t - self.tick_s
        try:
            poll = self.feed.poll if isinstance(self.feed, RoomFeed) else self.feed
            batch = _batch(poll(since, t))
        except Exception as e:  # the live pipeline failing must not stop the ramp: log and skip
            with self._lock:
                self._stats["feed_errors"] += 1
                self._stats["last_error"] = f"feed: {e}"
            log.warning("room feed failed at t=%.1f: %s", t, e)
            return []
        return self.push(batch.aggregates, batch.moments, t=t)

    def push(self, aggregates: Sequence[RoomAggregate], moments: Sequence[Moment] = (), t: float | None = None) -> list[RampDecision]:
        """Decide the coming tick from the given aggregates (every live room) and moments."""
        t = float(self.clock() if t is None else t)
        plan = self._plan(t)
        with self._lock:
            dt = self.tick_s if self._last_t is None else max(t - self._last_t, 1e-3)
            decisions = self.policy.decide(t, list(aggregates), list(moments), plan=plan, pool_cap=plan * (1.0 + self.pool_headroom), dt=dt)
            gone = set(self._latest) - {d.stream_id for d in decisions}
            for s in gone:
                self.gauge.set(s, 0.0)
                del self._latest[s]
            for d in decisions:
                self._latest[d.stream_id] = d
                self._history.append(d)
                self.gauge.set(d.stream_id, d.share)
            self._last_t = t
            self._stats["ticks"] += 1
            self._stats["decisions"] += len(decisions)
            self._stats["last_tick"] = t
        self._remember()
        if self.record is not None and decisions:
            try:
                self.record(decisions)
            except Exception as e:  # the store being down must not stop the platform getting decisions
                with self._lock:
                    self._stats["record_errors"] += 1
                    self._stats["last_error"] = f"record: {e}"
                log.warning("keeping ramp decisions failed: %s", e)
        try:
            self.sink.send(decisions)
        except SinkError as e:
            with self._lock:
                self._stats["sink_errors"] += 1
                self._stats["last_error"] = f"sink: {e}"
            log.warning("%s", e)
        return decisions

    # ------------------------------------------------------------------ back office

    def latest(self) -> dict[str, dict]:
        """The latest decision of every live room, as plain dicts keyed by stream id."""
        with self._lock:
            return {s: to_dict(d) for s, d in self._latest.items()}

    def history(self, stream_id: str | None = None, limit: int = 100) -> list[dict]:
        """The most recent decisions (newest last), optionally for one room."""
        with self._lock:
            items = [d for d in self._history if stream_id is None or d.stream_id == stream_id]
        return [to_dict(d) for d in items[-max(0, int(limit)) :]] if limit else []

    def room_state(self, stream_id: str) -> dict:
        """The policy's explicit state of one room (ramp policy only; non-finite numbers such as
        an unlimited budget become None); ``KeyError`` if unknown."""
        with self._lock:
            if not hasattr(self.policy, "room_state"):
                raise KeyError(f"policy {self.policy.name!r} keeps no per-room state")
            state = asdict(self.policy.room_state(stream_id))
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in state.items()}

    def kill(self, stream_id: str, on: bool = True) -> None:
        """Manual kill switch for one room (takes effect next tick)."""
        with self._lock:
            if not hasattr(self.policy, "kill"):
                raise ValueError(f"policy {self.policy.name!r} has no kill switch")
            self.policy.kill(stream_id, on)
        self._remember()

    def _remember(self) -> None:
        if self.memory is None or not hasattr(self.policy, "snapshot"):
            return
        try:
            with self._lock:
                snap = self.policy.snapshot()
            self.memory.save(snap)
        except Exception as e:  # noqa: BLE001 - deciding goes on; the next tick tries again
            with self._lock:
                self._stats["record_errors"] += 1
                self._stats["last_error"] = f"memory: {e}"
            log.warning("keeping the ramp policy's memory failed: %s", e)

    def stats(self) -> dict:
        with self._lock:
            out = dict(self._stats)
        out.update(policy=self.policy.name, rooms=len(self._latest), running=self.running, sink=repr(self.sink))
        return out

    # ------------------------------------------------------------------ running on its own

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, interval_s: float | None = None) -> bool:
        """Tick every ``interval_s`` (default ``tick_s``) seconds in a background thread.
        Returns False if already running."""
        if self.running:
            return False
        if self.feed is None:
            raise RuntimeError("this controller has no feed to poll")
        interval = float(interval_s or self.tick_s)
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.tick()
                except Exception:  # keep ticking; the error is in the log
                    log.exception("ramp tick failed")

        self._thread = threading.Thread(target=loop, name="ace-ramp", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the background ticks (if running) and close the sink."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self.sink.close()


#: The Ray actor: one per cluster, holding the policy state.
RampActor = ray.remote(num_cpus=RAMP_ACTOR_CPUS)(RampController)

#: the cluster's ramp actor, beside the live controller
RAMP_NAME = "ace:ramp"


class ControllerFeed:
    """The live pipeline as a :class:`RoomFeed`: asks the cluster's live controller (looked up by
    name on each poll, so a restarted controller is found again) for every live room."""

    def __init__(self, controller_name: str | None = None, namespace: str | None = None):
        from workers.live import CONTROLLER_NAME, NAMESPACE

        self.controller_name = controller_name or CONTROLLER_NAME
        self.namespace = namespace or NAMESPACE

    def poll(self, since: float, until: float) -> FeedBatch:
        controller = ray.get_actor(self.controller_name, namespace=self.namespace)
        aggregates, moments = ray.get(controller.room_feed.remote(since, until), timeout=30)
        return FeedBatch(list(aggregates), list(moments))


class StoreRecorder:
    """Keeps decisions in the store (``ramp_decisions``), where the back office reads them."""

    def __init__(self, settings: dict | None = None):
        self.settings = dict(settings or {})
        self._store = None

    def __call__(self, decisions: list[RampDecision]) -> int:
        if self._store is None:
            from ace.config import Settings
            from ace.store import Store

            self._store = Store.from_settings(Settings(**self.settings))
            self._store.create_all()
        return self._store.save_ramp_decisions(decisions)


class StoreMemory:
    """The ramp policy's memory in the control plane's ``control`` table (key ``ramp:policy``)."""

    KEY = "ramp:policy"

    def __init__(self, settings: dict | None = None):
        self.settings = dict(settings or {})
        self._cp = None

    def _plane(self):
        if self._cp is None:
            from ace.config import Settings
            from ace.controlplane import ControlPlane
            from ace.store import Store

            self._cp = ControlPlane(Store.from_settings(Settings(**self.settings)))
        return self._cp

    def load(self) -> dict | None:
        return self._plane().get_value(self.KEY)

    def save(self, snap: dict) -> None:
        self._plane().set_value(self.KEY, snap)


def ramp_sink_spec(settings: Any) -> str:
    """The sink string for :func:`~ace.policy.sink.make_sink` from settings (``ramp_sink``; empty
    means ``DATA_DIR/ramp/decisions.jsonl``)."""
    spec = (settings.ramp_sink or "").strip()
    if spec:
        return spec
    from pathlib import Path

    return str(Path(settings.data_dir).absolute() / "ramp" / "decisions.jsonl")


def get_ramp(settings: dict | None = None, *, create: bool = True):
    """The cluster's ramp actor (``ace:ramp``, detached), fed by the live controller and keeping its
    decisions in the store; made (ticking every ``ramp_tick_s``) when ``create`` and it does not
    exist."""
    from ace.config import Settings
    from workers.live import NAMESPACE

    if not create:
        return ray.get_actor(RAMP_NAME, namespace=NAMESPACE)
    s = Settings(**(settings or {}))
    actor = RampActor.options(name=RAMP_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                              max_restarts=-1, max_concurrency=4).remote(
        ControllerFeed(), plan=s.ramp_pool, tick_s=s.ramp_tick_s, sink=ramp_sink_spec(s),
        record=StoreRecorder(settings), memory=StoreMemory(settings), autostart=True)
    ray.get(actor.stats.remote(), timeout=60)  # made and ticking (or its error, raised here)
    return actor
