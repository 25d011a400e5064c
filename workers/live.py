"""Live streams on Ray: one stream actor per stream, owned by one named, detached controller.

:class:`StreamWorker` is a plain class (tested without Ray) holding one stream's
:class:`~ace.live.ingest.Ingest` (ffmpeg into a rolling buffer) and
:class:`~ace.live.analyzer.LiveAnalyzer` (causal detectors, fusion, clips). It runs its own loop
in a thread that lives as long as it does — ffmpeg is tied to the thread that started it — and
keeps what it found in the store (rows of the ``shows`` table with the stream id, its moments and
clips) and a small state file beside the buffer, so a restarted actor resumes without repeating a
moment. :class:`LiveController` owns the streams: submit, stop, status, push_events, moments,
clips — the protocol the HTTP back office calls. The Ray actors are made here and only here:
:data:`StreamActor` (``ace:stream:<id>``, fractional CPU, restarted by Ray when it dies) and
:data:`ControllerActor` (``ace:controller`` in namespace ``ace``, detached).

Stream time: seconds since ACE started following the stream. After an actor restart the new ffmpeg
starts its clock over; the worker shifts it by the saved analysed time plus the outage measured
by the wall clock, so the gap is recorded and times never run backwards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray

from ace.config import Settings
from ace.events import iter_jsonl_lines
from ace.live.ingest import FINAL_STATUSES, Ingest, IngestOptions, redact, source_kind
from ace.live.journal import EventJournal
from ace.policy.live import RoomTally
from ace.policy.state import RoomAggregate
from ace.types import Clip, Event, Moment, Segment, to_dict
from workers.metrics import LiveMetrics

log = logging.getLogger("ace.workers")

NAMESPACE = "ace"
CONTROLLER_NAME = "ace:controller"
STREAM_PREFIX = "ace:stream:"
#: a batch job's progress actor: ``ace:job:<id>``
JOB_PREFIX = "ace:job:"
#: CPU share a stream actor asks Ray for (a reservation, not a limit): a 2 s segment takes about
#: 0.2 s of CPU to analyse, and backpressure degrades analysis when the machine is short; with 0.05
#: forty streams fit the reservations of two cores, with room left for the speech pool
STREAM_ACTOR_CPUS = 0.05
CONTROLLER_CPUS = 0.05
#: how long the controller waits for a stream actor's answer (one that is restarting, or cannot be
#: scheduled, answers with an error instead of hanging the caller)
CALL_TIMEOUT_S = 10.0
#: how long a call waits for a stream actor that Ray is restarting (model loading included)
RESTART_WAIT_S = 60.0
#: how often a stream's loop polls the ingest (seconds)
POLL_S = 0.5
#: how often the controller looks for streams that have finished, to end their actors (seconds)
REAP_S = 2.0
#: finished streams whose final status the controller keeps (older ones answer from the store)
KEEP_FINISHED = 1000
#: an id given by the caller: letters, digits, '-', '_' (the actor name and folder derive from it)
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_STORE_STATUS = {"starting": "running", "live": "running", "reconnecting": "running", "ended": "done",
                 "stopped": "done", "failed": "failed"}


class TooManyStreams(RuntimeError):
    """The tenant already runs as many live streams as it may."""


class StreamFinished(LookupError):
    """The stream has ended, failed or been stopped: it takes no more calls (its status, moments
    and clips still answer)."""


def new_stream_id(name: str | None = None) -> str:
    """``<slug of name>-<8 hex>`` (or just the hex): unique, safe as a folder and actor name."""
    from ace.pipeline import slug

    tail = uuid.uuid4().hex[:8]
    return f"{slug(name, 24)}-{tail}" if name else tail


def check_stream_id(stream_id: str) -> str:
    if not stream_id or len(stream_id) > 64 or not set(stream_id) <= _ID_CHARS:
        raise ValueError(f"bad stream id {stream_id!r}: use 1-64 letters, digits, '-' or '_'")
    return stream_id


@dataclass
class StreamSpec:
    """What a stream was submitted with."""

    stream_id: str
    url: str
    name: str = ""
    tenant: str = "default"
    events: str | None = None  #: a JSONL file being appended to (pushed events need nothing here)
    products: list[str] = field(default_factory=list)
    submitted_at: float = field(default_factory=time.time)
    #: the room's category for the ramp policy's priors (see ``ace.policy.state.CATEGORIES``)
    category: str = "other"
    #: promoted impressions the room may receive in total; None for no budget of its own
    budget: float | None = None


class EventTail:
    """Follows an ACE JSONL file that is being appended to: each :meth:`read` returns the events of
    the complete lines added since the last one (a half-written last line waits for its newline);
    malformed lines are counted and logged with their line number, never silently dropped."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._pos = 0
        self._line = 1
        self._partial = b""
        self.bad_lines = 0

    def _new_bytes(self) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._pos)
                return fh.read(1 << 20)
        except FileNotFoundError:
            return b""

    def read(self) -> list[Event]:
        data = self._new_bytes()
        if not data:
            return []
        self._pos += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out: list[Event] = []
        for item in iter_jsonl_lines(lines, start_line=self._line):
            if item.event is not None:
                out.append(item.event)
            else:
                self.bad_lines += 1
                log.warning("%s: %s", self._name, item.warning)
        self._line += len(lines)
        return out

    @property
    def _name(self) -> str:
        return self.path.name


class UrlEventTail(EventTail):
    """Follows ACE JSONL at an http(s) URL that is being appended to: every ``every_s`` seconds it
    asks for the bytes after those it has (``Range: bytes=N-``; a server that ignores ranges sends
    the whole file and the known part is skipped). Every request goes through ACE's URL guard
    (:mod:`ace.netguard`), so the URL cannot reach internal addresses, not even by a redirect.
    A source that cannot be read is retried at the next poll and counted in ``errors``."""

    def __init__(self, url: str, allow: Sequence[str] = (), every_s: float = 2.0, timeout: float = 5.0):
        from ace.netguard import AddressPolicy, GuardProxy, check_url, guarded_opener

        policy = AddressPolicy(allow)
        check_url(url, policy=policy)
        super().__init__(os.devnull)
        self.url, self.every_s, self.timeout = url, float(every_s), float(timeout)
        self._proxy = GuardProxy(policy).start()
        self._opener = guarded_opener(self._proxy)
        self._next = 0.0
        self.errors = 0

    @property
    def _name(self) -> str:
        return redact(self.url)

    def _new_bytes(self) -> bytes:
        import urllib.error
        import urllib.request

        now = time.monotonic()
        if now < self._next:
            return b""
        self._next = now + self.every_s
        req = urllib.request.Request(self.url, headers={"Range": f"bytes={self._pos}-", "User-Agent": "ace"})
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                data = r.read(1 << 20 if r.status == 206 else self._pos + (1 << 20))
                return data if r.status == 206 else data[self._pos:]
        except urllib.error.HTTPError as e:
            if e.code == 416:  # nothing after what we have
                return b""
            self.errors += 1
            log.warning("events %s: HTTP %s", redact(self.url), e.code)
        except (OSError, ValueError) as e:
            self.errors += 1
            log.warning("events %s: %s", redact(self.url), e)
        return b""

    def close(self) -> None:
        self._proxy.stop()


class StreamWorker:
    """One live stream: ingest, analysis, clips, store rows. Thread-safe public methods; the
    analysis itself runs in the worker's own thread (:meth:`start`)."""

    def __init__(self, spec: StreamSpec | dict, settings: Settings | dict | None = None,
                 ingest_options: IngestOptions | None = None, live_options: Any = None, *,
                 autostart: bool = False, with_speech: bool = True):
        from ace.live.analyzer import LiveAnalyzer
        from ace.pipeline import settings_hash
        from ace.store import Store
        from workers.cluster import worker_logging

        worker_logging()

        self.spec = spec if isinstance(spec, StreamSpec) else StreamSpec(**spec)
        check_stream_id(self.spec.stream_id)
        source_kind(self.spec.url)  # InputError for a refused URL, before anything starts
        s = settings if isinstance(settings, Settings) else Settings(**(settings or {}))
        self.settings = s
        self.folder = Path(s.data_dir).absolute() / "live" / self.spec.stream_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clip_dir = self.folder / "clips"
        self._state_path = self.folder / "state.json"
        self._lock = threading.RLock()
        self._events: deque[Event] = deque()
        self._tail: EventTail | None = None
        if self.spec.events:
            self._tail = (UrlEventTail(self.spec.events, allow=s.url_allowlist) if _is_url(self.spec.events)
                          else EventTail(self.spec.events))
        self.metrics = LiveMetrics(self.spec.stream_id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error = ""
        self._status = "starting"
        self._moments: dict[str, Moment] = {}
        self._clips: dict[str, Clip] = {}
        self._latencies: deque[float] = deque(maxlen=1000)
        self.tally = RoomTally()
        #: (wall time found, moment on the wall clock) for the ramp policy, newest last
        self._found: deque[tuple[float, Moment]] = deque(maxlen=1000)
        self._shash = settings_hash(s)
        self.store = Store.from_settings(s)
        self.store.create_all()

        saved = self._load_state()
        self._offset = 0.0
        if saved.get("analysed_until") is not None:
            outage = max(0.0, time.time() - float(saved.get("saved_at", time.time())))
            self._offset = float(saved["analysed_until"]) + outage
        self._restarts = int(saved.get("restarts", -1)) + 1
        self._current_arrival: float | None = None  # arrival of the segment being analysed now
        # pushed events, durable and counted once (across restarts too); those accepted but not yet
        # analysed before a restart are queued again
        self.journal = EventJournal(self.folder / "events.jsonl", saved.get("journal"))
        pending = self.journal.take_pending()
        self._events.extend(pending)
        self.tally.add(pending)
        self._queued_end = self.journal.end  # the journal's end when the queue was last added to
        self._consumed = self.journal.pending_from  # the journal offset handed to the analysis
        if pending:
            log.info("stream %s: %d pushed events from before the restart queued again", self.spec.stream_id, len(pending))
        for m in self.store.list_moments(self.spec.stream_id, tenant=self.spec.tenant) if saved else []:
            self._moments[m["id"]] = _moment_from_row(self.spec.stream_id, m)
        for c in self.store.list_clips(self.spec.stream_id, tenant=self.spec.tenant) if saved else []:
            self._clips[c["moment_id"]] = _clip_from_row(c)

        opts = ingest_options or IngestOptions()
        opts = replace(opts, allow=tuple(s.url_allowlist) + tuple(opts.allow))
        self._buffer_s = opts.buffer_s
        # the buffer of the run before a restart: kept (moved aside) so that moments still pending
        # at the crash can be cut and the detectors warmed from it; the new ingest starts afresh
        self._previous: list[Segment] = self._adopt_previous(saved.get("segments") or [])

        transcriber = self._transcriber() if with_speech else None
        from models.scorer import model_for

        # the tenant's own highlight model (ace train --reviews) when it has one and the setting is the default
        self.analyzer = LiveAnalyzer(self.spec.stream_id, s, transcriber, self.clip_dir,
                                     segments_for=self._covering, options=live_options,
                                     model=model_for(s.scorer, s.data_dir, self.spec.tenant))
        if saved.get("analyzer"):
            try:
                self.analyzer.restore(saved["analyzer"])
            except (ValueError, RuntimeError) as e:
                log.warning("stream %s: cannot resume the analysis (%s); starting afresh", self.spec.stream_id, e)
        self.ingest = Ingest(self.spec.stream_id, self.spec.url, self.folder / "buffer", opts)
        self._save_show()
        if autostart:
            self.start()

    # -- set-up ---------------------------------------------------------------------------------

    def _transcriber(self):
        from ace.signals.speech import Transcriber
        from models.registry import detect_device, load_whisper

        s = self.settings
        if s.speech_pool and ray.is_initialized():
            from workers.speech_pool import PooledTranscriber, get_speech_pool

            return PooledTranscriber(get_speech_pool(s), beam_size=s.beam_size, language=s.language)
        device, compute = detect_device(s.device, s.compute_type)
        # one thread per stream: streams run side by side, and Whisper uses a second thread poorly
        model = load_whisper(s.model, device=device, compute_type=compute, cpu_threads=s.cpu_threads or 1,
                             cache_dir=s.cache_dir)
        return Transcriber(model, beam_size=s.beam_size, language=s.language)

    def _adopt_previous(self, listed: list) -> list[Segment]:
        """Move the previous run's buffer to ``buffer-prev/<n>`` (the new ingest clears its folder)
        and return its segments on the stream clock, as the state file listed them."""
        import shutil

        buf = self.folder / "buffer"
        if not listed or not buf.is_dir():
            return []
        prev_root = self.folder / "buffer-prev"
        n = 0
        while (prev_root / str(n)).exists():
            n += 1
        dest = prev_root / str(n)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(buf), str(dest))
        out: list[Segment] = []
        for seq, start, end, path in listed:
            try:
                rel = Path(path).relative_to(buf)
            except ValueError:
                continue
            moved = dest / rel
            if moved.is_file():
                out.append(Segment(self.spec.stream_id, int(seq), float(start), float(end), str(moved)))
        out.sort(key=lambda sg: sg.start)
        log.info("stream %s: kept %d segments of the buffer before the restart", self.spec.stream_id, len(out))
        return out

    def _trim_previous(self) -> None:
        """Forget (and delete) kept segments older than the rolling buffer's length."""
        if not self._previous:
            return
        horizon = self.analyzer.analysed_until - self._buffer_s
        while self._previous and self._previous[0].end < horizon:
            old = self._previous.pop(0)
            try:
                os.unlink(old.path)
            except OSError:
                pass
        if not self._previous:
            import shutil

            shutil.rmtree(self.folder / "buffer-prev", ignore_errors=True)

    def _load_state(self) -> dict:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        with self._lock:
            journal = self.journal.checkpoint(consumed=self._consumed)
        state = {"analyzer": self.analyzer.state(), "saved_at": time.time(), "restarts": self._restarts,
                 "offset": self._offset, "journal": journal,
                 # the buffer on the stream clock (kept segments of earlier runs included), for a restart
                 "segments": [[sg.seq, round(sg.start, 6), round(sg.end, 6), sg.path]
                              for sg in self._previous + [self._shift(x) for x in self.ingest.segments()]]}
        a = state["analyzer"].get("analysed_until")
        state["analysed_until"] = a
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state_path)

    def _save_show(self) -> None:
        s = self.spec
        self.store.upsert_show(s.stream_id, path=redact(s.url), name=s.name or s.stream_id,
                               duration=max(0.0, self.analyzer.analysed_until),
                               settings_hash=self._shash, status=_STORE_STATUS.get(self._status, "running"),
                               error=self._error[:2000], tenant=s.tenant)

    def _save_results(self) -> None:
        self.store.save_results(self.spec.stream_id, sorted(self._moments.values(), key=lambda m: m.start),
                                list(self._clips.values()), self._shash, tenant=self.spec.tenant)

    # -- the loop -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the stream in the worker's own thread."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"ace-stream-{self.spec.stream_id}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self.ingest.start()
            while not self._stop.is_set():
                self.step()
                if self._status in FINAL_STATUSES:
                    break
                self._stop.wait(POLL_S)
        except Exception as e:  # a bug or a broken disk must show as the stream's error, not vanish
            log.exception("stream %s failed", self.spec.stream_id)
            with self._lock:
                self._status, self._error = "failed", f"{type(e).__name__}: {e}"
            self.metrics.count("errors")
        finally:
            if self._stop.is_set() and self._status not in FINAL_STATUSES:
                self.ingest.stop()
                self._finish("stopped")
            self.analyzer.close()  # nothing is left half cut ahead
            try:
                self._save_show()
            except Exception:  # pragma: no cover - the store is gone too
                log.exception("stream %s: saving its final status failed", self.spec.stream_id)

    def step(self) -> list[Moment]:
        """One round: take pushed and tailed events, new segments, analyse them; at the stream's
        end, flush. Returns the moments that became final."""
        events = self._take_events()
        if events:
            self.analyzer.push_events(events)
        before = self.ingest.reconnects
        segments = self.ingest.poll()
        self.metrics.count("reconnects", self.ingest.reconnects - before)
        found: list[Moment] = []
        for seg in segments:
            self.metrics.count("segments")
            # a segment arrived when ffmpeg closed its file, however long it waited to be analysed
            arrived = _arrival(seg.path)
            self._current_arrival = arrived
            try:
                update = self.analyzer.process_segment(self._shift(seg), arrived=arrived)
            finally:
                self._current_arrival = None
            found.extend(self._take(update))
        status = self.ingest.status
        if status in FINAL_STATUSES:
            found.extend(self._take(self.analyzer.flush()))
            with self._lock:
                self._error = self.ingest.error or self._error
            self._finish(status)
        else:
            with self._lock:
                self._status = status
        st = self.ingest.stats()
        self.metrics.gauge("behind", st.get("seconds_behind_live"))
        self.metrics.gauge("lag", self.analyzer.lag_s)
        self.metrics.gauge("level", self.analyzer.level)
        if segments or found:
            self._trim_previous()
            self._save_state()
        return found

    def _finish(self, status: str) -> None:
        with self._lock:
            self._status = status
        if isinstance(self._tail, UrlEventTail):
            self._tail.close()
        if status == "failed":
            self.metrics.count("errors")
        self._save_state()
        self._save_show()

    def _take(self, update) -> list[Moment]:
        clips = {c.moment_id: c for c in update.clips}
        now = time.time()
        # stream time -> wall time, taking the analysed edge as now (the analysis keeps close to it)
        edge = self.analyzer.analysed_until
        with self._lock:
            for m in update.moments:
                self._moments[m.id] = m
                to_wall = now - (edge if math.isfinite(edge) else m.end)
                self._found.append((now, replace(m, start=m.start + to_wall, end=m.end + to_wall,
                                                 peak=m.peak + to_wall)))
            self._clips.update(clips)
            for lat in update.latency_s.values():
                self._latencies.append(lat)
        self.metrics.count("moments", len(update.moments))
        self.metrics.count("clips", len(clips))
        for lat in update.latency_s.values():
            self.metrics.observe_latency(lat)
        if update.moments or clips:
            self._save_results()
            for m in update.moments:
                log.info("stream %s: moment %s %.1f-%.1f (%.2f)", self.spec.stream_id, m.id, m.start, m.end, m.score)
        return list(update.moments)

    def _shift(self, seg: Segment) -> Segment:
        return seg if not self._offset else replace(seg, start=seg.start + self._offset, end=seg.end + self._offset)

    def _covering(self, t0: float, t1: float) -> list[Segment]:
        kept = [sg for sg in self._previous if sg.end > t0 and sg.start < t1]
        return kept + [self._shift(s) for s in self.ingest.covering(t0 - self._offset, t1 - self._offset)]

    def _take_events(self) -> list[Event]:
        out: list[Event] = []
        if self._tail is not None:
            tailed = self._tail.read()
            self.tally.add(tailed)
            out.extend(tailed)
        with self._lock:
            while self._events:
                out.append(self._events.popleft())
            self._consumed = self._queued_end
        return out

    # -- the public API (any thread) ---------------------------------------------------------------

    def _lag_now(self, lag: float | None) -> float | None:
        """The analysis lag as of now: while a segment is being analysed (or stuck, say waiting for
        speech), the time since it arrived counts too."""
        current = self._current_arrival
        if current is None:
            return lag
        return round(max(lag or 0.0, time.time() - current), 3)

    def describe(self) -> dict:
        """What the stream was submitted with (a restarted controller adopts the stream by it)."""
        return dataclasses.asdict(self.spec)

    @property
    def events_received(self) -> int:
        """Events accepted through :meth:`push_events` since the stream began (restarts included)."""
        return self.journal.count

    def push_events(self, events: Iterable[Event | dict], batch_id: str | None = None) -> int:
        """Queue interaction events (stream time, ACE's JSONL fields); returns how many were
        accepted. All or nothing: a malformed event raises ValueError naming it, and nothing of the
        call is queued or counted. A ``batch_id`` seen before (among the last 10,000, also before a
        restart) is not queued again: a client that retries a batch whose answer it missed does not
        count it twice (the answer is the same); the same ``batch_id`` with other events raises
        :class:`~ace.live.journal.BatchConflict` (a ValueError). Accepted events are appended to
        ``events.jsonl`` in the stream's folder (:class:`~ace.live.journal.EventJournal`), a durable
        record of the room for reprocessing the recorded show later."""
        from ace.events import _event_from_obj

        parsed: list[Event] = []
        for i, e in enumerate(events):
            if isinstance(e, Event):
                parsed.append(e)
                continue
            ev, problem = _event_from_obj(e)
            if ev is None:
                raise ValueError(f"event {i}: {problem}")
            parsed.append(ev)
        with self._lock:
            n, repeat = self.journal.append(parsed, batch_id)
            if not repeat:
                self._events.extend(parsed)
                self.tally.add(parsed)
                self._queued_end = self.journal.end
        return n

    def stop(self, timeout: float = 15.0) -> dict:
        """Stop following the stream (pending moments are flushed); returns the final status."""
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
        else:
            self.ingest.stop()
            self._finish("stopped")
        return self.status()

    def status(self) -> dict:
        st = self.ingest.stats()
        an = self.analyzer.stats()
        with self._lock:
            lat = sorted(self._latencies)
            return {
                "id": self.spec.stream_id,
                "name": self.spec.name or self.spec.stream_id,
                "tenant": self.spec.tenant,
                "url": redact(self.spec.url),
                "status": self._status,
                "error": self._error,
                "analysed_until": an.get("analysed_until"),
                "lag_s": self._lag_now(an.get("lag_s")),
                "level": an.get("level_name"),
                "seconds_behind_live": st.get("seconds_behind_live"),
                "reconnects": st.get("reconnects"),
                "gaps": st.get("gaps"),
                "segments": an.get("segments"),
                "moments": len(self._moments),
                "clips": len(self._clips),
                "clip_latency_p50_s": percentile(lat, 50),
                "clip_latency_p95_s": percentile(lat, 95),
                "clip_latencies": [round(x, 3) for x in self._latencies],
                "restarts": self._restarts,
                "realtime": an.get("realtime"),
                "busy_p95_s": an.get("busy_p95_s"),
                "speech_lag_s": an.get("speech_lag_s"),
                "cut_mean_s": an.get("cut_mean_s"),
                "cuts_ahead_used": an.get("cuts_ahead_used"),
                "cuts_ahead_wasted": an.get("cuts_ahead_wasted"),
                "events_received": self.events_received,
            }

    def moments(self, min_score: float | None = None) -> list[dict]:
        with self._lock:
            ms = sorted(self._moments.values(), key=lambda m: m.start)
        return [to_dict(m) | {"id": m.id} for m in ms if min_score is None or m.score >= min_score]

    def clips(self) -> list[dict]:
        with self._lock:
            return [to_dict(c) for c in sorted(self._clips.values(), key=lambda c: c.start)]

    def room(self, since: float, until: float) -> tuple[RoomAggregate, list[Moment]] | None:
        """What the ramp policy needs of this room for the tick ``[since, until)`` (wall seconds):
        its interaction aggregate and the moments found in that window (times on the wall clock);
        None once the stream has ended, failed or been stopped (the room is no longer live)."""
        if self._status in FINAL_STATUSES:
            return None
        spec = self.spec
        extra = {"category": spec.category} | ({"budget": float(spec.budget)} if spec.budget is not None else {})
        agg = self.tally.aggregate(spec.stream_id, since, until, **extra)
        lo, hi = float(int(since)), float(int(until))
        with self._lock:
            found = [m for at, m in self._found if lo <= at < hi]
        return agg, found

    def ping(self) -> str:
        return self.spec.stream_id

    def finished(self) -> bool:
        """Whether the stream has ended, failed or been stopped and its loop has exited: then
        nothing more will change, and its actor can go."""
        t = self._thread
        return self._status in FINAL_STATUSES and (t is None or not t.is_alive())


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile of sorted ``values`` (nearest rank), rounded to 0.01; None if empty."""
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return round(values[k], 2)


def _is_url(s: str) -> bool:
    return "://" in s


def _moment_from_row(stream_id: str, row: dict) -> Moment:
    from ace.types import Reason

    reasons = tuple(Reason(**r) if isinstance(r, dict) else r for r in (row.get("reasons") or ()))
    strong = row.get("strong")
    return Moment(stream_id, float(row["start"]), float(row["end"]), float(row["score"]), float(row.get("peak") or row["start"]),
                  reasons, row.get("transcript") or "", int(row.get("rank") or 0), float(row.get("confidence") or 0.0),
                  True if strong is None else bool(strong))


def _clip_from_row(row: dict) -> Clip:
    keys = ("moment_id", "path", "start", "end", "mode", "srt_path", "thumb_path", "seconds")
    return Clip(**{k: row[k] for k in keys if k in row})


# ----------------------------------------------------------------------------------- controller


class LiveController:
    """Owns every live stream of a Ray cluster: one :data:`StreamActor` each.

    Every call names a ``tenant``; a tenant sees and touches only its own streams (another
    tenant's id answers as unknown)."""

    def __init__(self, settings: dict | None = None, actor_options: dict | None = None, adopt: bool = False):
        self.settings = dict(settings or {})
        self.actor_options = dict(actor_options or {})
        self._streams: dict[str, tuple[StreamSpec, Any]] = {}
        self._jobs: dict[str, dict] = {}
        self._lock = threading.RLock()
        self._submit_lock = threading.Lock()
        self._final: set[str] = set()  # streams seen ended, failed or stopped
        #: finished streams, their actors ended: stream id -> (spec, final status), oldest first
        self._finished: OrderedDict[str, tuple[StreamSpec, dict]] = OrderedDict()
        self._reaper: threading.Thread | None = None
        # the cluster's controller (``adopt``) starts its stream actors detached, so that they outlive
        # a crash of the controller, and adopts the running ones when Ray starts it again; a
        # controller of its own (tests, the live bench) owns its streams, which end with it
        self._adopt = adopt
        if adopt:
            self._adopt_running()

    def _adopt_running(self) -> None:
        """Take over the stream actors already running in the cluster (after a controller restart)."""
        try:
            named = ray.util.list_named_actors(all_namespaces=True)
        except Exception as e:  # noqa: BLE001 - not fatal: start empty
            log.warning("cannot list the cluster's actors (%s); no streams adopted", e)
            return
        names = [a["name"] for a in named if a.get("namespace") == NAMESPACE and a.get("name", "").startswith(STREAM_PREFIX)]
        for name in names:
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
                spec = StreamSpec(**ray.get(actor.describe.remote(), timeout=CALL_TIMEOUT_S))
            except Exception as e:  # noqa: BLE001 - gone or not answering: leave it
                log.warning("stream actor %s not adopted: %s", name, type(e).__name__)
                continue
            self._streams[spec.stream_id] = (spec, actor)
        if names:
            log.info("adopted %d running stream(s)", len(self._streams))
            self._start_reaper()

    # -- finished streams and jobs give their processes back ---------------------------------------

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_loop, name="ace-reaper", daemon=True)
                self._reaper.start()

    def _reap_loop(self) -> None:
        while True:  # as long as the controller lives (a daemon thread)
            time.sleep(REAP_S)
            try:
                self.reap()
            except Exception:  # noqa: BLE001 - try again next round
                log.exception("reaping finished streams failed")

    def reap(self) -> int:
        """End the actors of streams that have finished (their final status is kept, their moments
        and clips are in the store) and the progress actors of batch jobs that are done; returns
        how many stream actors were ended. Runs every :data:`REAP_S` seconds in the background."""
        with self._lock:
            items = list(self._streams.items())
            jobs = [j for j in self._jobs.values() if "final" not in j]
        ended = 0
        if items:
            refs = {a.finished.remote(): sid for sid, (_spec, a) in items}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=CALL_TIMEOUT_S)
            for ref in ready:
                sid = refs[ref]
                try:
                    done = ray.get(ref)
                except ray.exceptions.ActorDiedError as e:  # out of restarts: it failed for good
                    with self._lock:
                        item = self._streams.get(sid)
                    if item is not None and self._retire(sid, {
                            "id": sid, "name": item[0].name, "tenant": item[0].tenant, "url": redact(item[0].url),
                            "status": "failed", "error": f"the stream's worker died ({type(e).__name__})"}):
                        ended += 1
                    continue
                except Exception:  # noqa: BLE001 - restarting or busy: ask again next round
                    continue
                if done and self._retire(sid):
                    ended += 1
        for job in jobs:
            with self._lock:
                self._job_view(job)
        return ended

    def _retire(self, sid: str, final: dict | None = None) -> bool:
        """Keep a finished stream's final status (asked of its actor when not given), then end its
        actor: from then on calls for it answer from what was kept."""
        with self._lock:
            item = self._streams.get(sid)
        if item is None:
            return False
        spec, actor = item
        if final is None:
            try:
                final = ray.get(actor.status.remote(), timeout=CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - try again next round
                return False
        final = {k: v for k, v in final.items() if k != "clip_latencies"}
        with self._lock:
            if self._streams.pop(sid, None) is None:  # retired meanwhile
                return False
            self._final.discard(sid)
            self._finished[sid] = (spec, final)
            while len(self._finished) > KEEP_FINISHED:
                self._finished.popitem(last=False)
        ray.kill(actor, no_restart=True)
        log.info("stream %s %s: its actor has ended", sid, final.get("status"))
        return True

    def submit(self, url: str, name: str = "", tenant: str = "default", events: str | None = None,
               products: Sequence[str] = (), stream_id: str | None = None,
               ingest_options: dict | None = None, category: str = "other", budget: float | None = None,
               max_live: int | None = None) -> str:
        """Start following ``url``; returns the stream id. A refused URL raises ValueError.
        ``category`` and ``budget`` (promoted impressions in total) are for the ramp policy. With
        ``max_live``, a tenant already running that many streams gets :class:`TooManyStreams`
        (checked and started under one lock, so a burst of submissions cannot overshoot)."""
        from ace.errors import InputError
        from ace.netguard import check_url

        allow = Settings(**self.settings).url_allowlist
        try:
            if source_kind(url) != "file":  # a local file is the operator's own (the HTTP API takes URLs only)
                check_url(url, allow=allow)
            if events and _is_url(events):
                check_url(events, allow=allow)
        except InputError as e:
            raise ValueError(str(e)) from None
        sid = check_stream_id(stream_id) if stream_id else new_stream_id(name or None)
        from ace.policy.state import CATEGORIES

        category = (category or "other").strip().lower()
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}; expected one of: {', '.join(CATEGORIES)}")
        if budget is not None and not (float(budget) >= 0):
            raise ValueError(f"budget must be a number >= 0, got {budget!r}")
        spec = StreamSpec(sid, url, name or sid, tenant, events, list(products), category=category,
                          budget=None if budget is None else float(budget))
        opts = {"num_cpus": STREAM_ACTOR_CPUS, "max_restarts": 3, "max_task_retries": 0, "max_concurrency": 8,
                "name": f"{STREAM_PREFIX}{sid}", "namespace": NAMESPACE} | self.actor_options
        if self._adopt:
            opts["lifetime"] = "detached"
        with self._submit_lock:
            if max_live is not None:
                live = self._live_count(tenant)
                if live >= max_live:
                    raise TooManyStreams(f"this tenant already runs {live} live streams (the limit is {max_live}); stop one first")
            actor = StreamActor.options(**opts).remote(spec, self.settings,
                                                       IngestOptions(**ingest_options) if ingest_options else None,
                                                       autostart=True)
            with self._lock:
                self._streams[sid] = (spec, actor)
        self._start_reaper()
        log.info("stream %s submitted (%s)", sid, redact(url))
        return sid

    def _live_count(self, tenant: str) -> int:
        """The tenant's streams not known to have finished (one that does not answer counts as live)."""
        now = time.time()
        with self._lock:
            items = [(sid, a, now - spec.submitted_at < 30.0) for sid, (spec, a) in self._streams.items()
                     if spec.tenant == tenant and sid not in self._final]
        # a stream submitted in the last 30 s is live (its actor may still be loading its model and
        # would keep a burst of submissions waiting); older ones are asked, briefly
        young = sum(1 for *_x, y in items if y)
        refs = {a.status.remote(): sid for sid, a, y in items if not y}
        if not refs:
            return young
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=2.0)
        live = young + len(refs) - len(ready)
        for ref in ready:
            try:
                st = ray.get(ref)
            except Exception:  # noqa: BLE001 - restarting: counts as live
                live += 1
                continue
            if st.get("status") in FINAL_STATUSES:
                self._final.add(refs[ref])
            else:
                live += 1
        return live

    def _get(self, stream_id: str, tenant: str):
        """The running stream's (spec, actor); KeyError for another tenant's stream, as for none,
        and :class:`StreamFinished` for a finished one of this tenant."""
        with self._lock:
            item = self._streams.get(stream_id)
            done = self._finished.get(stream_id)
        if item is not None and item[0].tenant == tenant:
            return item
        if done is not None and done[0].tenant == tenant:
            raise StreamFinished(f"stream {stream_id!r} has {done[1].get('status', 'ended')}")
        raise KeyError(f"no stream {stream_id!r}")

    def _finished_of(self, stream_id: str, tenant: str) -> tuple[StreamSpec, dict] | None:
        with self._lock:
            done = self._finished.get(stream_id)
        return done if done is not None and done[0].tenant == tenant else None

    def stop(self, stream_id: str, tenant: str = "default") -> dict:
        """Stop a stream and end its actor; returns its final status (a finished stream's as it was)."""
        done = self._finished_of(stream_id, tenant)
        if done is not None:
            return done[1]
        _spec, actor = self._get(stream_id, tenant)
        final = ray.get(actor.stop.remote(), timeout=60)
        if final.get("status") in FINAL_STATUSES:
            self._retire(stream_id, final)
        return final

    def shutdown_streams(self, timeout: float = 30.0) -> int:
        """Stop every tenant's streams and end their actors (``ace serve --shutdown``); returns how many."""
        with self._lock:
            items = list(self._streams.items())
        refs = [(sid, actor, actor.stop.remote(timeout=min(15.0, timeout))) for sid, (_spec, actor) in items]
        for sid, actor, ref in refs:
            try:
                ray.get(ref, timeout=timeout)
            except Exception as e:  # noqa: BLE001 - shutting down anyway
                log.warning("stream %s did not stop cleanly: %s", sid, type(e).__name__)
            ray.kill(actor, no_restart=True)
        with self._lock:
            for sid, _a, _r in refs:
                self._streams.pop(sid, None)
        return len(refs)

    def status(self, stream_id: str | None = None, tenant: str = "default") -> dict | list[dict]:
        """One stream's status, or the tenant's streams (running, then the finished ones it keeps)."""
        if stream_id is not None:
            done = self._finished_of(stream_id, tenant)
            if done is not None:
                return done[1]
            spec, actor = self._get(stream_id, tenant)
            return self._status_of(spec, actor)
        with self._lock:
            items = [v for v in self._streams.values() if v[0].tenant == tenant]
            finished = [st for spec, st in self._finished.values() if spec.tenant == tenant]
        return [self._status_of(spec, actor) for spec, actor in items] + finished

    def _status_of(self, spec: StreamSpec, actor) -> dict:
        try:
            return ray.get(actor.status.remote(), timeout=CALL_TIMEOUT_S)
        except Exception as e:  # the actor is restarting or gone: say so, do not fail the listing
            return {"id": spec.stream_id, "name": spec.name, "tenant": spec.tenant, "url": redact(spec.url),
                    "status": "unavailable", "error": f"{type(e).__name__}: {e}"[:500]}

    def push_events(self, stream_id: str, events: list[dict], tenant: str = "default", batch_id: str | None = None) -> int:
        _spec, actor = self._get(stream_id, tenant)
        try:
            return _call(actor.push_events, events, batch_id)
        except ray.exceptions.ActorDiedError:  # retired by the reaper during the call
            self._get(stream_id, tenant)  # StreamFinished
            raise

    def moments(self, stream_id: str, tenant: str = "default", min_score: float | None = None) -> list[dict]:
        if self._finished_of(stream_id, tenant) is not None:  # its actor has gone: the store has them
            rows = self._store().list_moments(stream_id, tenant=tenant, min_score=min_score)
            return [to_dict(m) for m in (_moment_from_row(stream_id, r) for r in rows)]
        _spec, actor = self._get(stream_id, tenant)
        return _call(actor.moments, min_score)

    def clips(self, stream_id: str, tenant: str = "default") -> list[dict]:
        if self._finished_of(stream_id, tenant) is not None:
            return [to_dict(_clip_from_row(c)) for c in self._store().list_clips(stream_id, tenant=tenant)]
        _spec, actor = self._get(stream_id, tenant)
        return _call(actor.clips)

    def streams(self, tenant: str = "default") -> list[str]:
        """The tenant's running streams' ids."""
        with self._lock:
            return [sid for sid, (spec, _a) in self._streams.items() if spec.tenant == tenant]

    def room_feed(self, since: float, until: float) -> tuple[list[RoomAggregate], list[Moment]]:
        """Every live room's interaction aggregate for the tick ``[since, until)`` and the moments
        found in it, across tenants (the ramp actor's feed). A stream actor that does not answer
        in time is left out of this tick, not waited for."""
        with self._lock:
            actors = [(sid, a) for sid, (_spec, a) in self._streams.items()]
        refs = [(sid, a.room.remote(since, until)) for sid, a in actors]
        ready, _ = ray.wait([r for _s, r in refs], num_returns=len(refs), timeout=CALL_TIMEOUT_S) if refs else ([], [])
        done = set(ready)
        aggregates: list[RoomAggregate] = []
        moments: list[Moment] = []
        for sid, ref in refs:
            if ref not in done:
                log.warning("stream %s did not report to the ramp in time", sid)
                continue
            try:
                got = ray.get(ref)
            except Exception as e:  # restarting or gone: no room this tick
                log.warning("stream %s: no room report (%s)", sid, type(e).__name__)
                continue
            if got is not None:
                aggregates.append(got[0])
                moments.extend(got[1])
        return aggregates, moments

    def ramp(self, stream_id: str, tenant: str = "default", limit: int = 100) -> dict:
        """The stream's current ramp level and its recent decisions (oldest first); before the
        first decision, level None and an empty history."""
        with self._lock:
            item = self._streams.get(stream_id)
        if item is not None and item[0].tenant != tenant:
            raise KeyError(f"no stream {stream_id!r}")
        store = self._store()
        if item is None and store.get_show(stream_id, tenant=tenant) is None:
            raise KeyError(f"no stream {stream_id!r}")
        history = store.list_ramp_decisions(stream_id, tenant=tenant, limit=limit)
        latest = history[-1] if history else None
        return {"stream_id": stream_id, "level": latest["level"] if latest else None,
                "share": latest["share"] if latest else None, "history": history}

    # -- batch jobs (the back office's reprocessing of recorded shows) ---------------------------

    def submit_job(self, items: list[dict], tenant: str = "default", name: str = "") -> dict:
        """Reprocess recorded shows: ``items`` are ``{"path": checked absolute path}`` or
        ``{"url": checked http(s) URL}`` (the caller has checked them). One Ray task per item;
        each becomes the tenant's show ``<job id>-<n>``."""
        from workers.batch import ProgressBoard, run_job_item

        if not items:
            raise ValueError("a job needs at least one item")
        jid = new_stream_id(name or "job")
        s = Settings(**(self.settings | {"cpu_threads": 1}))
        out_root = Path(s.data_dir).absolute() / "jobs" / jid
        board = ray.remote(num_cpus=0)(ProgressBoard).options(name=f"{JOB_PREFIX}{jid}", namespace=NAMESPACE).remote()
        task = ray.remote(num_cpus=0.5, max_retries=0)(run_job_item)
        keys = [f"{jid}-{i}" for i in range(len(items))]
        refs = [task.remote(it, k, str(out_root), s, board, tenant, k) for it, k in zip(items, keys)]
        with self._lock:
            self._jobs[jid] = {"id": jid, "name": name or jid, "tenant": tenant, "items": items, "keys": keys,
                               "refs": refs, "board": board, "results": {}, "submitted_at": time.time()}
        self._start_reaper()
        return {"id": jid, "status": "running", "items": len(items)}

    def _job_view(self, job: dict) -> dict:
        """A job's progress and results; once every item has finished, the view is kept and the
        job's progress actor and results in the object store are let go."""
        from workers.batch import fraction

        if "final" in job:
            return job["final"]
        pending = [r for r in job["refs"] if r.hex() not in job["results"]]
        if pending:
            done, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
            for ref in done:
                try:
                    res = ray.get(ref)
                    job["results"][ref.hex()] = {"ok": res.ok, "error": res.error, "moments": len(res.moments),
                                                 "clips": len(res.clips), "duration": res.duration, "seconds": res.seconds}
                except ray.exceptions.RayError as e:
                    job["results"][ref.hex()] = {"ok": False, "error": f"worker failed: {type(e).__name__}"}
        try:
            snap = ray.get(job["board"].snapshot.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - progress is a nicety
            snap = {}
        items = []
        for it, key, ref in zip(job["items"], job["keys"], job["refs"]):
            res = job["results"].get(ref.hex())
            items.append({"show_id": key, "source": it.get("url") and redact(it["url"]) or Path(it["path"]).name,
                          "progress": 1.0 if res else round(fraction(snap.get(key, {})), 3),
                          "status": ("done" if res["ok"] else "failed") if res else "running"} | (res or {}))
        finished = all(i["status"] != "running" for i in items)
        status = "running" if not finished else ("done" if all(i["status"] == "done" for i in items) else "failed")
        view = {"id": job["id"], "name": job["name"], "status": status,
                "progress": round(sum(i["progress"] for i in items) / len(items), 3), "items": items,
                "submitted_at": job["submitted_at"]}
        if finished:
            job["final"] = view
            ray.kill(job.pop("board"), no_restart=True)
            job.pop("refs")
            job.pop("results")
        return view

    def job(self, job_id: str, tenant: str = "default") -> dict:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job["tenant"] != tenant:
                raise KeyError(f"no job {job_id!r}")
            return self._job_view(job)

    def jobs(self, tenant: str = "default") -> list[dict]:
        with self._lock:
            return [self._job_view(j) for j in self._jobs.values() if j["tenant"] == tenant]

    def _store(self):
        from ace.store import Store

        if getattr(self, "_store_obj", None) is None:
            s = Settings(**self.settings)
            self._store_obj = Store.from_settings(s)
            self._store_obj.create_all()
        return self._store_obj


def _arrival(path: str) -> float:
    """Wall time at which a segment file was closed (its mtime), never later than now."""
    now = time.time()
    try:
        return min(now, os.path.getmtime(path))
    except OSError:
        return now


def _call(method, *args, wait_s: float = RESTART_WAIT_S):
    """``ray.get(method.remote(*args))`` that waits out a stream actor's restart: while Ray restarts
    it the call is refused (not run), so it is sent again until ``wait_s`` has passed — pushed
    events are then delivered once, not lost. A call that is only slow is waited for, not resent."""
    deadline = time.monotonic() + wait_s
    ref = method.remote(*args)
    while True:
        try:
            return ray.get(ref, timeout=CALL_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            # queued behind a busy or still starting actor (16 streams starting at once on 2
            # cores): wait on for the same call, never send it twice
            if time.monotonic() > deadline:
                raise
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            ref = method.remote(*args)


StreamActor = ray.remote(StreamWorker)
ControllerActor = ray.remote(LiveController)


def get_controller(create: bool = True, settings: dict | None = None):
    """The cluster's controller actor (created, detached, when ``create`` and it does not exist)."""
    if create:
        return ControllerActor.options(name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached",
                                       get_if_exists=True, num_cpus=CONTROLLER_CPUS, max_concurrency=16,
                                       max_restarts=-1).remote(settings, adopt=True)
    return ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
