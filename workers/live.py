"""Live streams on Ray: one stream actor per stream, owned by one named, detached controller.

:class:`StreamWorker` is a plain class (tested without Ray) holding one stream's
:class:`~ace.live.ingest.Ingest` (ffmpeg into a rolling buffer) and
:class:`~ace.live.analyzer.LiveAnalyzer` (causal detectors, fusion, clips). It runs its own loop
in a thread that lives as long as it does — ffmpeg is tied to the thread that started it — and
keeps what it found in the store (rows of the ``shows`` table with the stream id, its moments and
clips) and a small state file beside the buffer, so a restarted actor resumes without repeating a
moment. A clip the analysis lets out *provisional* (:mod:`ace.live.analyzer`: final with respect to
everything but the audience) is stored with ``state="provisional"`` and later confirmed or replaced
in place: the same store row and the same files, ``revision`` + 1 when cut again; one still
provisional when its worker restarts, or when the stream stops for good, is final as it is.
:class:`LiveController` owns the streams: submit, stop, status, push_events, moments,
clips — the protocol the HTTP back office calls. The Ray actors are made here and only here:
:data:`StreamActor` (``ace:stream:<id>``, fractional CPU, restarted by Ray when it dies) and
:data:`ControllerActor` (``ace:controller`` in namespace ``ace``, detached).

Stream time: seconds since ACE started following the stream. After a restart (of the actor, the
controller or the node) the new worker's ingest starts its clock at the saved analysed time plus
the outage measured by the wall clock (``Ingest(origin=...)``), so the gap is recorded (the
stream's ``outages``) and times never run backwards; the worker's state lives in the store
(:mod:`ace.controlplane`), so any node can resume it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray

from ace.config import Settings, clip_settings
from ace.events import iter_jsonl_lines
from ace.live.ingest import FINAL_STATUSES, Ingest, IngestOptions, redact, source_kind
from ace.live.journal import EventJournal
from ace.policy.live import RoomTally
from ace.policy.state import RoomAggregate
from ace.types import AdWordHit, Clip, Event, Moment, ProductSegment, Segment, to_dict
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
#: how long the controller waits for a stream actor's answer (one that is restarting, or cannot be
#: scheduled, answers with an error instead of hanging the caller)
CALL_TIMEOUT_S = 10.0
#: how long a call waits for a stream actor that Ray is restarting (model loading included)
RESTART_WAIT_S = 60.0
#: how often a stream's loop polls the ingest (seconds)
POLL_S = 0.5
#: an id given by the caller: letters, digits, '-', '_' (the actor name and folder derive from it)
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_STORE_STATUS = {"starting": "running", "live": "running", "reconnecting": "running", "ended": "done",
                 "stopped": "done", "failed": "failed"}


def new_stream_id(name: str | None = None) -> str:
    """``<slug of name>-<8 hex>`` (or just the hex): unique, safe as a folder and actor name."""
    from ace.pipeline import slug

    tail = uuid.uuid4().hex[:8]
    return f"{slug(name, 24)}-{tail}" if name else tail


def check_stream_id(stream_id: str) -> str:
    from ace.errors import Refused

    if not stream_id or len(stream_id) > 64 or not set(stream_id) <= _ID_CHARS:
        raise Refused(f"bad stream id {stream_id!r}: use 1-64 letters, digits, '-' or '_'")
    return stream_id


@dataclass
class StreamSpec:
    """What a stream was submitted with."""

    stream_id: str
    url: str
    name: str = ""
    tenant: str = "default"
    events: str | None = None  #: a JSONL file being appended to (pushed events need nothing here)
    #: the stream's product list: ``ace.products.catalog`` objects (a plain string is a name)
    products: list[dict | str] = field(default_factory=list)
    submitted_at: float = field(default_factory=time.time)
    #: the room's category for the ramp policy's priors (see ``ace.policy.state.CATEGORIES``)
    category: str = "other"
    #: promoted impressions the room may receive in total; None for no budget of its own
    budget: float | None = None
    #: the clips' shape (``source``, ``vertical``, ``square``) and burned captions; empty / None:
    #: the cluster's settings
    clip_format: str = ""
    burn_captions: bool | None = None


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
                 autostart: bool = False, with_speech: bool = True, epoch: int | None = None):
        from ace.live.analyzer import LiveAnalyzer
        from ace.pipeline import settings_hash
        from ace.store import Store
        from workers.cluster import worker_logging

        worker_logging()

        self.spec = spec if isinstance(spec, StreamSpec) else StreamSpec(**spec)
        check_stream_id(self.spec.stream_id)
        from ace.products.catalog import parse_products

        self.products = parse_products(list(self.spec.products or []), "products")  # InputError naming item and field
        source_kind(self.spec.url)  # InputError for a refused URL, before anything starts
        s = settings if isinstance(settings, Settings) else Settings(**(settings or {}))
        s = clip_settings(s, self.spec.clip_format, self.spec.burn_captions)
        self.settings = s
        # this node's own folder (ACE_LOCAL_DIR on each node of a cluster whose data folder is shared)
        self.folder = Path(s.work_dir).absolute() / "live" / self.spec.stream_id
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clip_dir = self.folder / "clips"
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
        self._segments: dict[str, ProductSegment] = {}  # product pitches, by segment id
        self._product_clips: dict[str, Clip] = {}
        self._hits: list[AdWordHit] = []  # ad-wording phrases heard
        self._latencies: deque[float] = deque(maxlen=1000)  # to each moment's first clip (provisional or final)
        self._final_latencies: deque[float] = deque(maxlen=1000)  # to its final clip
        self._clip_counts = {"provisional": 0, "confirmed": 0, "replaced": 0}
        self.tally = RoomTally()
        #: (wall time found, moment on the wall clock) for the ramp policy, newest last
        self._found: deque[tuple[float, Moment]] = deque(maxlen=1000)
        self._shash = settings_hash(s)
        from ace.clipstore import storage_for

        self._storage = storage_for(s)  # clips go where every node and the API read them
        self.store = Store.from_settings(s)
        from ace.controlplane import ControlPlane

        # the stream's row of the control plane: what it resumes from, and the fencing token (epoch)
        self.cp = ControlPlane(self.store)
        self._epoch = epoch
        self._fenced = False
        self._suspend = False
        row = self.cp.get_stream(self.spec.stream_id)
        if row is None:  # a worker of its own (no controller): its row, so that it can resume too
            self.cp.add_stream(self.spec.stream_id, self.spec.tenant, dataclasses.asdict(self.spec), durable=False)
            row = self.cp.get_stream(self.spec.stream_id)
        elif row["tenant"] != self.spec.tenant:
            raise ValueError(f"stream id {self.spec.stream_id!r} is taken")
        saved = dict(row.get("state") or {})
        self._outages: list[dict] = list(row.get("outages") or [])
        self._node = _node_id()
        self._offset = 0.0
        if saved.get("analysed_until") is not None:
            outage = max(0.0, time.time() - float(saved.get("saved_at", time.time())))
            self._offset = float(saved["analysed_until"]) + outage
            # the gap this stream did not see, on its own clock
            self._outages.append({"at": round(float(saved["analysed_until"]), 3), "seconds": round(outage, 3),
                                  "node": self._node})
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
        if saved:
            self._load_products()

        opts = ingest_options or IngestOptions()
        opts = replace(opts, allow=tuple(s.url_allowlist) + tuple(opts.allow))
        self._buffer_s = opts.buffer_s
        # the buffer of the run before a restart: kept (moved aside) so that moments still pending
        # at the crash can be cut and the detectors warmed from it; the new ingest starts afresh
        self._previous: list[Segment] = self._adopt_previous(saved.get("segments") or [])

        self._pooled = None  # the speech pool's side of this stream, when it has one
        transcriber = self._transcriber() if with_speech else None
        from models.scorer import model_for

        # the tenant's own highlight model (ace train --reviews) when it has one and the setting is the default
        self.analyzer = LiveAnalyzer(self.spec.stream_id, s, transcriber, self.clip_dir,
                                     segments_for=self._covering, options=live_options,
                                     model=model_for(s.scorer, s.data_dir, self.spec.tenant), products=self.products,
                                     ad_words=self._ad_words())
        if saved.get("analyzer"):
            try:
                self.analyzer.restore(saved["analyzer"])
            except (ValueError, RuntimeError) as e:
                log.warning("stream %s: cannot resume the analysis (%s); starting afresh", self.spec.stream_id, e)
        # clips provisional at the crash are final as they were: the restored analysis never settles them
        self._finalise_provisional()
        # the stream clock goes on where the last worker stopped, plus the outage (set in the ingest only)
        self.ingest = Ingest(self.spec.stream_id, self.spec.url, self.folder / "buffer", opts, origin=self._offset)
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

            self._pooled = PooledTranscriber(get_speech_pool(s), beam_size=s.beam_size, language=s.language,
                                             vad_skip=s.speech_vad_skip)
            return self._pooled
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

    def _save_state(self) -> None:
        """The stream's progress and what a restarted worker resumes from, into its row; a worker
        whose epoch is no longer the row's (another worker has taken the stream over) stops."""
        if self._fenced:
            return
        with self._lock:
            journal = self.journal.checkpoint(consumed=self._consumed)
        state = {"analyzer": self.analyzer.state(), "saved_at": time.time(), "restarts": self._restarts,
                 "offset": self._offset, "journal": journal,
                 # the buffer on the stream clock (kept segments of earlier runs included), for a restart
                 "segments": [[sg.seq, round(sg.start, 6), round(sg.end, 6), sg.path]
                              for sg in self._previous + self.ingest.segments()]}
        a = state["analyzer"].get("analysed_until")
        state["analysed_until"] = a
        with self._lock:
            status, error = self._status, self._error
        if not self.cp.save_progress(self.spec.stream_id, self._epoch, state=state, analysed_until=float(a or 0.0),
                                     status=status, error=error[:2000], node=self._node, restarts=self._restarts,
                                     outages=self._outages[-100:]):
            self._fence()

    def _fence(self) -> None:
        if not self._fenced:
            log.warning("stream %s: another worker runs it now (epoch %s is old); this one stops", self.spec.stream_id,
                        self._epoch)
        self._fenced = True
        self._stop.set()

    def _current(self) -> bool:
        """Whether this worker still runs the stream (its epoch is the row's)."""
        if self._fenced:
            return False
        if self._epoch is not None and not self.cp.save_progress(self.spec.stream_id, self._epoch):
            self._fence()
        return not self._fenced

    def _save_show(self) -> None:
        if self._fenced:
            return
        s = self.spec
        self.store.upsert_show(s.stream_id, path=redact(s.url), name=s.name or s.stream_id,
                               duration=max(0.0, self.analyzer.analysed_until),
                               settings_hash=self._shash, status=_STORE_STATUS.get(self._status, "running"),
                               error=self._error[:2000], tenant=s.tenant)

    def _save_results(self) -> None:
        if not self._current():
            return
        self.store.save_results(self.spec.stream_id, sorted(self._moments.values(), key=lambda m: m.start),
                                list(self._clips.values()), self._shash, tenant=self.spec.tenant)
        if self._segments or self._hits or self.products:
            self.store.save_products(self.spec.stream_id, sorted(self._segments.values(), key=lambda g: g.start),
                                     dict(self._product_clips), list(self._hits), tenant=self.spec.tenant,
                                     products=self.products)

    def _ad_words(self) -> tuple[str, ...] | None:
        """The tenant's own ad-wording list when it keeps one, else the setting's."""
        default = tuple(self.settings.ad_words)
        try:
            return tuple(self.store.ad_words_for(self.spec.tenant, default))
        except Exception:
            log.exception("stream %s: reading the tenant's ad-wording list failed; using the setting", self.spec.stream_id)
        return default

    def _load_products(self) -> None:
        """Segments, their clips and ad-wording hits saved before a restart (so a save does not lose them)."""
        doc = self.store.list_products(self.spec.stream_id, tenant=self.spec.tenant) or {}
        for row in doc.get("segments", []):
            try:
                seg = ProductSegment(self.spec.stream_id, str(row["product"]), str(row.get("name", "")), int(row["n"]),
                                     float(row["start"]), float(row["end"]), float(row.get("confidence", 0)),
                                     tuple(row.get("heard") or ()), tuple(row.get("evidence") or ()))
            except (KeyError, TypeError, ValueError):
                continue
            self._segments[seg.id] = seg
            clip = row.get("clip") if isinstance(row.get("clip"), dict) else None
            path = (clip or {}).get("path") or row.get("clip_path") or ""
            if path:
                self._product_clips[seg.id] = Clip(seg.id, str(path), float((clip or row).get("clip_start", seg.start) or seg.start),
                                                   float((clip or row).get("clip_end", seg.end) or seg.end),
                                                   str((clip or row).get("mode", "exact") or "exact"),
                                                   str((clip or {}).get("srt_path") or row.get("srt_path") or ""),
                                                   str((clip or {}).get("thumb_path") or row.get("thumb_path") or ""))
        for h in doc.get("ad_words", []):
            try:
                self._hits.append(AdWordHit(str(h["phrase"]), float(h["start"]), float(h["end"]), str(h.get("text", ""))))
            except (KeyError, TypeError, ValueError):
                continue

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
                if not self._fenced:
                    self._finish("suspended" if self._suspend else "stopped")
            self.analyzer.close()  # nothing is left half cut ahead
            try:
                self._save_show()
            except Exception:  # pragma: no cover - the store is gone too
                log.exception("stream %s: saving its final status failed", self.spec.stream_id)

    def step(self) -> list[Moment]:
        """One round: take pushed and tailed events, new segments, analyse them; at the stream's
        end, flush. Returns the moments let out for the first time (final or provisional)."""
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
                update = self.analyzer.process_segment(seg, arrived=arrived)
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

    def _finalise_provisional(self) -> None:
        """Mark every provisional clip final as it is and save (after a restart, or when the stream
        stops for good before its moments were settled): no clip stays unpublishable."""
        with self._lock:
            left = [mid for mid, c in self._clips.items() if c.state == "provisional"]
            for mid in left:
                self._clips[mid] = replace(self._clips[mid], state="final")
        if left:
            log.info("stream %s: %d provisional clips are final as they are", self.spec.stream_id, len(left))
            self._save_results()

    def _finish(self, status: str) -> None:
        if status != "suspended":  # a suspended stream resumes, and its next worker finalises them
            self._finalise_provisional()
        with self._lock:
            self._status = status
        if isinstance(self._tail, UrlEventTail):
            self._tail.close()
        if status == "failed":
            self.metrics.count("errors")
        self._save_state()
        self._save_show()

    def _publish(self, update) -> dict[str, Clip]:
        """The update's clips, published to the clip storage. A confirmed clip keeps its published
        video and thumbnail (only its captions were written again); a replaced one is put under the
        same keys, over the provisional files."""
        from ace.clipstore import publish_clip

        confirmed = getattr(update, "confirmed", set())
        out = {}
        for c in update.clips:
            with self._lock:
                before = self._clips.get(c.moment_id)
            if c.moment_id in confirmed and before is not None:
                # the captions written again, when they were (else the ones published stand)
                srt = c.srt_path if c.srt_path and os.path.isfile(c.srt_path) else before.srt_path
                c = replace(before, srt_path=srt, state=c.state, revision=c.revision)
            out[c.moment_id] = publish_clip(self._storage, c, self.spec.tenant, self.spec.stream_id)
        return out

    def _take(self, update) -> list[Moment]:
        """Keep and save what the analysis let out: new moments (final or provisional) and the final
        versions of provisional ones (the same id; their clip confirmed or replaced in place).
        Returns the moments new in this update."""
        from ace.clipstore import publish_clip

        clips = self._publish(update)
        pitch_clips = {sid: publish_clip(self._storage, c, self.spec.tenant, self.spec.stream_id)
                       for sid, c in getattr(update, "product_clips", {}).items()}
        confirmed, replaced = getattr(update, "confirmed", set()), getattr(update, "replaced", set())
        settled = confirmed | replaced
        new = [m for m in update.moments if m.id not in settled]
        now = time.time()
        # stream time -> wall time, taking the analysed edge as now (the analysis keeps close to it)
        edge = self.analyzer.analysed_until
        with self._lock:
            for m in update.moments:
                self._moments[m.id] = m
            for m in new:  # the ramp policy hears of a moment once, when it is first let out
                to_wall = now - (edge if math.isfinite(edge) else m.end)
                self._found.append((now, replace(m, start=m.start + to_wall, end=m.end + to_wall,
                                                 peak=m.peak + to_wall)))
            had = {mid for mid in clips if mid in self._clips}  # clips confirmed or replaced in place
            self._clips.update(clips)
            self._clip_counts["provisional"] += len(getattr(update, "provisional", set()) & set(clips))
            self._clip_counts["confirmed"] += len(confirmed & had)
            self._clip_counts["replaced"] += len(replaced & had)
            for seg in getattr(update, "segments", []):
                self._segments[seg.id] = seg
            self._product_clips.update(pitch_clips)
            self._hits.extend(getattr(update, "ad_words", []))
            for lat in update.latency_s.values():
                self._latencies.append(lat)
            for lat in getattr(update, "final_latency_s", {}).values():
                self._final_latencies.append(lat)
        self.metrics.count("moments", len(new))
        self.metrics.count("clips", len(set(clips) - had))
        for lat in update.latency_s.values():
            self.metrics.observe_latency(lat)
        self.metrics.count("product_segments", len(getattr(update, "segments", [])))
        if update.moments or clips or getattr(update, "segments", None) or getattr(update, "ad_words", None):
            self._save_results()
            for m in update.moments:
                state = clips[m.id].state if m.id in clips else "no clip"
                log.info("stream %s: moment %s %.1f-%.1f (%.2f), %s", self.spec.stream_id, m.id, m.start, m.end, m.score,
                         state if m.id not in settled else f"{state}, {'replaced' if m.id in replaced else 'confirmed'}")
        return new

    def _covering(self, t0: float, t1: float) -> list[Segment]:
        kept = [sg for sg in self._previous if sg.end > t0 and sg.start < t1]
        return kept + self.ingest.covering(t0, t1)

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

    def stop(self, timeout: float = 15.0, final: bool = True) -> dict:
        """Stop following the stream (pending moments are flushed); returns the final status. With
        ``final=False`` the stream is only *suspended* (status ``suspended``): its row stays live, and
        the next worker resumes it from where this one stopped."""
        self._suspend = not final
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
        else:
            self.ingest.stop()
            self._finish("stopped" if final else "suspended")
        return self.status()

    def status(self) -> dict:
        st = self.ingest.stats()
        an = self.analyzer.stats()
        with self._lock:
            lat = sorted(self._latencies)
            final_lat = sorted(self._final_latencies)
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
                "final_clip_latency_p50_s": percentile(final_lat, 50),
                "final_clip_latency_p95_s": percentile(final_lat, 95),
                "final_clip_latencies": [round(x, 3) for x in self._final_latencies],
                "provisional_clips": self._clip_counts["provisional"],
                "confirmed_clips": self._clip_counts["confirmed"],
                "replaced_clips": self._clip_counts["replaced"],
                "horizon_s": an.get("horizon_s"),
                "provisional_horizon_s": an.get("provisional_horizon_s"),
                "audience": an.get("audience"),
                "event_delay_s": an.get("event_delay_s"),
                "restarts": self._restarts,
                "outages": list(self._outages),
                "node": self._node,
                "epoch": self._epoch,
                "realtime": an.get("realtime"),
                "busy_p95_s": an.get("busy_p95_s"),
                "speech_lag_s": an.get("speech_lag_s"),
                "stages": an.get("stages"),
                # windows sent to the speech pool, and those without speech that were not
                "speech_windows": self._pooled.stats() if self._pooled is not None else None,
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
    m = Moment(stream_id, float(row["start"]), float(row["end"]), float(row["score"]), float(row.get("peak") or row["start"]),
               reasons, row.get("transcript") or "", int(row.get("rank") or 0), float(row.get("confidence") or 0.0),
               True if strong is None else bool(strong))
    # a moment whose edges moved after it was first published keeps its first id
    return m if not row.get("id") or row["id"] == m.id else replace(m, fixed_id=str(row["id"]))


def _clip_from_row(row: dict) -> Clip:
    keys = ("moment_id", "path", "start", "end", "mode", "srt_path", "thumb_path", "seconds", "format", "burned", "state",
            "revision")
    return Clip(**{k: row[k] for k in keys if k in row})


def _node_id() -> str:
    """The Ray node this worker runs on ("" outside Ray)."""
    try:
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - only a label
        return ""


def _arrival(path: str) -> float:
    """Wall time at which a segment file was closed (its mtime), never later than now."""
    now = time.time()
    try:
        return min(now, os.path.getmtime(path))
    except OSError:
        return now


StreamActor = ray.remote(StreamWorker)
