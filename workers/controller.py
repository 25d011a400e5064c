"""The live controller: owns a cluster's live streams (one :data:`~workers.live.StreamActor` each)
and the back office's batch jobs, with everything it knows kept in the store.

Every stream and job is a row of the control plane (:mod:`ace.controlplane`) written *before* the
call that made it returns. The controller itself keeps only handles: a restarted controller (its
actor killed, ``ace serve`` restarted, the Ray head restarted) rebuilds itself from the rows: it
adopts the stream actors still running, starts a new worker for every other stream that was live
(the worker resumes from the state it saved, and records the outage as a gap), and runs again the
items of every job that had not finished. A stream a user stopped stays stopped.

A controller runs a stream only while it holds the stream's lease in the store (renewed every
:data:`REAP_S` seconds), so two controllers on one database never run the same stream; a stream
whose controller has gone (its lease expired) is taken over by another, with a new epoch that
fences off the old worker. The cluster's controller (``adopt=True``, named ``ace:controller``)
makes *durable* streams; a controller of a test or bench (``adopt=False``) owns its streams and
they end with it: nothing resumes them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

from ace.config import Settings, clip_settings
from ace.controlplane import LEASE_S, ControlPlane
from ace.errors import Busy, InputError, NotFound, Refused, StreamFinished, TooManyStreams
from ace.netguard import CheckedURL
from ace.live.ingest import FINAL_STATUSES, IngestOptions, redact, source_kind
from ace.policy.state import RoomAggregate
from ace.types import Moment, to_dict
from workers.live import (
    CALL_TIMEOUT_S,
    CONTROLLER_NAME,
    JOB_PREFIX,
    NAMESPACE,
    RESTART_WAIT_S,
    STREAM_ACTOR_CPUS,
    STREAM_PREFIX,
    StreamActor,
    StreamSpec,
    _clip_from_row,
    _is_url,
    _moment_from_row,
    check_stream_id,
    new_stream_id,
)

log = logging.getLogger("ace.workers")

CONTROLLER_CPUS = 0.05
#: how often the controller renews its leases, ends the actors of finished streams and takes up
#: streams nobody runs (seconds)
REAP_S = 2.0
#: finished streams a tenant's listing shows (older ones answer by id)
KEEP_FINISHED = 1000


def _spec_of(row: dict) -> StreamSpec:
    fields = {f.name for f in dataclasses.fields(StreamSpec)}
    return StreamSpec(**{k: v for k, v in (row.get("spec") or {}).items() if k in fields})


class LiveController:
    """Owns live streams and batch jobs; every call names a ``tenant``, and a tenant sees and
    touches only its own (another tenant's id answers as unknown)."""

    def __init__(self, settings: dict | None = None, actor_options: dict | None = None, adopt: bool = False,
                 owner: str | None = None, resume: bool | None = None, durable: bool | None = None,
                 lease_s: float = LEASE_S):
        self.settings = dict(settings or {})
        self.actor_options = dict(actor_options or {})
        self._streams: dict[str, tuple[StreamSpec, Any]] = {}
        self._jobs: dict[str, dict] = {}  # running jobs: handles and progress, the rest is in the store
        self._lock = threading.RLock()
        self._submit_lock = threading.Lock()
        self._reaper: threading.Thread | None = None
        # the cluster's controller (``adopt``) starts its stream actors detached, so that they outlive
        # a crash of the controller, and adopts the running ones when Ray starts it again; its
        # streams are durable (resumed after any restart). A controller of its own (tests, the live
        # bench) owns its streams, which end with it.
        self._adopt = adopt
        self._resume = adopt if resume is None else resume
        self._durable = adopt if durable is None else durable
        #: set by :meth:`shutdown_streams`: the streams it suspended are the next controller's to
        #: resume, not this one's (its background round would otherwise take them back at once)
        self._closing = False
        self.lease_s = float(lease_s)
        self.owner = owner or self._default_owner()
        self.cp = ControlPlane(self._store())
        if self._resume:
            self.rebuild()

    def _default_owner(self) -> str:
        if self._adopt and ray.is_initialized():
            # one named controller per cluster: a controller Ray starts again (same cluster) takes its
            # streams back at once, another cluster's must wait for the leases to expire
            return f"{CONTROLLER_NAME}@{ray.get_runtime_context().gcs_address}"
        return f"controller-{uuid.uuid4().hex[:12]}"

    def _store(self):
        from ace.store import Store

        if getattr(self, "_store_obj", None) is None:
            self._store_obj = Store.from_settings(Settings(**self.settings))
        return self._store_obj

    # -- rebuilding from the store ---------------------------------------------------------------

    def rebuild(self) -> dict:
        """Take up what the store says should be running: adopt the stream actors still alive, start
        a worker for every other durable stream that was live (its lease free or expired), finish
        the streams stopped while no controller ran, and run the unfinished items of every job.
        Runs at start and, for streams, every :data:`REAP_S` seconds. Returns what it did."""
        adopted = self._adopt_running() if self._adopt else 0
        resumed = self._take_orphans()
        jobs = self._resume_jobs()
        if adopted or resumed or jobs:
            log.info("rebuilt from the store: %d stream(s) adopted, %d resumed, %d job item(s) run again",
                     adopted, resumed, jobs)
        self._start_reaper()
        return {"adopted": adopted, "resumed": resumed, "job_items": jobs}

    def _adopt_running(self) -> int:
        """Take over the stream actors already running in the cluster (after a controller restart)."""
        try:
            named = ray.util.list_named_actors(all_namespaces=True)
        except Exception as e:  # noqa: BLE001 - not fatal: their rows resume them instead
            log.warning("cannot list the cluster's actors (%s); none adopted", e)
            return 0
        n = 0
        for a in named:
            name = a.get("name", "")
            if a.get("namespace") != NAMESPACE or not name.startswith(STREAM_PREFIX):
                continue
            sid = name[len(STREAM_PREFIX):]
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue
            row = self.cp.get_stream(sid)
            if row is None or row["final"] is not None or self.cp.acquire(sid, self.owner, lease_s=self.lease_s) is None:
                # not ours to run (finished, stopped, or another controller's lease)
                if row is not None and row["final"] is not None:
                    ray.kill(actor, no_restart=True)
                continue
            with self._lock:
                self._streams[sid] = (_spec_of(row), actor)
            n += 1
        return n

    def _take_orphans(self) -> int:
        """Start a worker for each durable live stream that nobody runs (lease free or expired)."""
        started = 0
        with self._submit_lock:
            for row in self.cp.list_streams(durable=True, unfinished=True):  # not the finished history, every round
                sid = row["id"]
                if row["final"] is not None or sid in self._streams:
                    continue
                if row["desired"] == "stop":  # stopped by its user while no controller ran it
                    if not row["owner"] or row["owner"] == self.owner or row["lease_until"] < time.time():
                        self._finish_row(row, "stopped")
                    continue
                epoch = self.cp.acquire(sid, self.owner, bump=True, lease_s=self.lease_s)
                if epoch is None:
                    continue
                try:
                    actor = self._start_actor(_spec_of(row), epoch)
                except Exception as e:  # noqa: BLE001 - it stays in the store; the next round tries again
                    log.warning("stream %s could not be resumed: %s", sid, e)
                    self.cp.release(sid, self.owner)
                    continue
                with self._lock:
                    self._streams[sid] = (_spec_of(row), actor)
                started += 1
                log.info("stream %s resumed (epoch %d)", sid, epoch)
        return started

    def _finish_row(self, row: dict, status: str, error: str = "") -> dict:
        final = {"id": row["id"], "name": row["spec"].get("name") or row["id"], "tenant": row["tenant"],
                 "url": redact(row["spec"].get("url", "")), "status": status, "error": error,
                 "analysed_until": row.get("analysed_until"), "restarts": row.get("restarts"),
                 "outages": row.get("outages") or []}
        self.cp.finish(row["id"], final)
        return final

    def _start_actor(self, spec: StreamSpec, epoch: int, ingest_options: dict | None = None):
        # spread over the cluster's nodes: each node added adds capacity; when a node dies, Ray
        # starts its stream actors again on the others
        opts = {"num_cpus": STREAM_ACTOR_CPUS, "max_restarts": 3, "max_task_retries": 0, "max_concurrency": 8,
                "scheduling_strategy": "SPREAD", "name": f"{STREAM_PREFIX}{spec.stream_id}",
                "namespace": NAMESPACE} | self.actor_options
        if self._adopt:
            opts["lifetime"] = "detached"
        return StreamActor.options(**opts).remote(spec, self.settings,
                                                  IngestOptions(**ingest_options) if ingest_options else None,
                                                  autostart=True, epoch=epoch)

    # -- the background round -----------------------------------------------------------------------

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
                log.exception("the controller's round failed")

    def reap(self) -> int:
        """One round: renew this controller's leases, stop the streams a user stopped elsewhere, end
        the actors of finished streams (their final status goes to the store), take up durable
        streams nobody runs, record finished job items. Returns how many stream actors were ended."""
        with self._lock:
            items = list(self._streams.items())
            jobs = list(self._jobs.values())
        ended = 0
        if items:
            self.cp.renew(self.owner, [sid for sid, _ in items], lease_s=self.lease_s)
            wanted = {r["id"]: r for r in self.cp.list_streams(unfinished=True) if r["id"] in self._streams}
            refs = {a.finished.remote(): sid for sid, (_spec, a) in items}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=CALL_TIMEOUT_S)
            for ref in ready:
                sid = refs[ref]
                row = wanted.get(sid)
                if row is not None and row["desired"] == "stop" and row["final"] is None:
                    try:  # stopped through another controller (or while this one was busy)
                        self._stop_here(sid)
                        ended += 1
                    except Exception:  # noqa: BLE001 - next round
                        pass
                    continue
                try:
                    done = ray.get(ref)
                except ray.exceptions.ActorDiedError as e:  # out of restarts: it failed for good
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
        if self._resume and not self._closing:
            self._take_orphans()
        for job in jobs:
            self._collect(job)
        return ended

    def _retire(self, sid: str, final: dict | None = None) -> bool:
        """Keep a finished stream's final status (asked of its actor when not given) in the store,
        then end its actor: from then on calls for it answer from the store."""
        with self._lock:
            item = self._streams.get(sid)
        if item is None:
            return False
        _spec, actor = item
        if final is None:
            try:
                final = ray.get(actor.status.remote(), timeout=CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - try again next round
                return False
        final = _without_latency_lists(final)
        with self._lock:
            if self._streams.pop(sid, None) is None:  # retired meanwhile
                return False
        self.cp.finish(sid, final)
        ray.kill(actor, no_restart=True)
        log.info("stream %s %s: its actor has ended", sid, final.get("status"))
        return True

    # -- streams ---------------------------------------------------------------------------------------

    def submit(self, url: str | CheckedURL, name: str = "", tenant: str = "default",
               events: str | CheckedURL | None = None, products: Sequence[dict | str] = (), stream_id: str | None = None,
               ingest_options: dict | None = None, category: str = "other", budget: float | None = None,
               max_live: int | None = None, clip_format: str | None = None, burn_captions: bool | None = None) -> str:
        """Start following ``url``; returns the stream id once the stream is in the store. A URL the
        back office checked comes as a :class:`~ace.netguard.CheckedURL` and is not checked again; a
        plain string (``ace live``: a URL or the operator's own local file) is checked here.
        :class:`~ace.errors.Refused` for a refused URL or a bad option. ``category`` and ``budget``
        (promoted impressions in total) are for the ramp policy. ``products`` is the stream's product
        list (``ace.products.catalog`` objects as dicts, or names); it is checked here and handed on as
        dicts (a bad one is :class:`~ace.errors.Refused`, naming the item and field). With ``max_live``, a tenant already
        running that many streams gets :class:`~ace.errors.TooManyStreams` (checked and recorded
        under one lock, so a burst cannot overshoot). ``clip_format`` and ``burn_captions`` give the
        stream's clips their own shape and captions (None: the cluster's settings)."""
        from ace.netguard import check_url
        from ace.policy.state import CATEGORIES

        allow = Settings(**self.settings).url_allowlist
        try:
            if not isinstance(url, CheckedURL) and source_kind(url) != "file":  # a local file is the operator's own
                url = check_url(url, allow=allow)
            if events and not isinstance(events, CheckedURL) and _is_url(events):
                events = check_url(events, allow=allow)
        except InputError as e:
            raise Refused(str(e)) from None
        from ace.products.catalog import parse_products, product_to_dict

        try:
            products = [product_to_dict(p) for p in parse_products(list(products or ()), "products")]
        except InputError as e:
            raise Refused(str(e)) from None
        url = url.url if isinstance(url, CheckedURL) else url
        events = events.url if isinstance(events, CheckedURL) else events
        sid = check_stream_id(stream_id) if stream_id else new_stream_id(name or None)
        category = (category or "other").strip().lower()
        if category not in CATEGORIES:
            raise Refused(f"unknown category {category!r}; expected one of: {', '.join(CATEGORIES)}")
        if budget is not None and not (float(budget) >= 0):
            raise Refused(f"budget must be a number >= 0, got {budget!r}")
        clip_format = _checked_format(clip_format)
        spec = StreamSpec(sid, url, name or sid, tenant, events, list(products), category=category,
                          budget=None if budget is None else float(budget), clip_format=clip_format or "",
                          burn_captions=None if burn_captions is None else bool(burn_captions))
        with self._submit_lock:
            if self._closing:  # its streams are being handed on: the next controller takes new ones
                raise Busy("the controller is shutting down; submit again once it is back", retry_after=10.0)
            if max_live is not None:
                live = self._live_count(tenant)
                if live >= max_live:
                    raise TooManyStreams(f"this tenant already runs {live} live streams (the limit is {max_live}); stop one first")
            epoch = self.cp.add_stream(sid, tenant, dataclasses.asdict(spec), owner=self.owner, durable=self._durable,
                                      lease_s=self.lease_s)
            try:
                actor = self._start_actor(spec, epoch, ingest_options)
            except Exception as e:
                self.cp.finish(sid, {"id": sid, "name": spec.name, "tenant": tenant, "url": redact(url),
                                     "status": "failed", "error": f"could not start: {type(e).__name__}: {e}"[:500]})
                raise
            with self._lock:
                self._streams[sid] = (spec, actor)
        self._start_reaper()
        log.info("stream %s submitted (%s)", sid, redact(url))
        return sid

    def _live_count(self, tenant: str) -> int:
        """The tenant's streams that are to run and have not finished, wherever they run."""
        return sum(1 for r in self.cp.list_streams(tenant, active=True) if r["status"] not in FINAL_STATUSES)

    def _row(self, stream_id: str, tenant: str) -> dict:
        row = self.cp.get_stream(stream_id, tenant)
        if row is None:
            raise NotFound(f"no stream {stream_id!r}")
        return row

    def _get(self, stream_id: str, tenant: str):
        """The running stream's (spec, actor); NotFound for another tenant's stream, as for none,
        and :class:`StreamFinished` for a finished one of this tenant (or one not run here)."""
        with self._lock:
            item = self._streams.get(stream_id)
        if item is not None and item[0].tenant == tenant:
            return item
        row = self._row(stream_id, tenant)
        if row["final"] is not None:
            raise StreamFinished(f"stream {stream_id!r} has {row['final'].get('status', 'ended')}")
        raise StreamFinished(f"stream {stream_id!r} is not running on this controller ({row['status']})")

    def stop(self, stream_id: str, tenant: str = "default") -> dict:
        """Stop a stream for good (kept stopped across restarts) and end its actor; returns its final
        status (a finished stream's as it was)."""
        row = self._row(stream_id, tenant)
        if row["final"] is not None:
            return row["final"]
        self.cp.set_desired(stream_id, tenant, "stop")  # first: whatever happens next, it stays stopped
        with self._lock:
            here = stream_id in self._streams
        if here:
            return self._stop_here(stream_id)
        if not row["owner"] or row["owner"] == self.owner or row["lease_until"] < time.time():
            return self._finish_row(row, "stopped")
        # another controller runs it: it stops it within a round
        return self._status_from_row(self._row(stream_id, tenant)) | {"status": "stopping"}

    def _stop_here(self, stream_id: str) -> dict:
        _spec, actor = self._streams[stream_id]
        final = ray.get(actor.stop.remote(), timeout=60)
        if final.get("status") in FINAL_STATUSES:
            self._retire(stream_id, final)
        return final

    def shutdown_streams(self, timeout: float = 30.0, suspend: bool | None = None) -> int:
        """End every tenant's stream actors (``ace serve --shutdown``); returns how many. The
        cluster's controller *suspends* them: their rows stay live and the next controller resumes
        them; a controller of its own (``suspend=False``) stops them for good."""
        suspend = self._adopt if suspend is None else suspend
        with self._submit_lock:  # a round taking up streams finishes first; no round takes any after
            self._closing = True
        with self._lock:  # taken out first: a round running meanwhile no longer sees them (it took
            items = list(self._streams.items())  # the killed actors for failed streams)
            self._streams.clear()
        refs = [(sid, actor, actor.stop.remote(timeout=min(15.0, timeout), final=not suspend))
                for sid, (_spec, actor) in items]
        for sid, actor, ref in refs:
            try:
                st = ray.get(ref, timeout=timeout)
                if not suspend:
                    self.cp.finish(sid, _without_latency_lists(st))
            except Exception as e:  # noqa: BLE001 - shutting down anyway
                log.warning("stream %s did not stop cleanly: %s", sid, type(e).__name__)
            ray.kill(actor, no_restart=True)
            if suspend:
                self.cp.release(sid, self.owner)
        return len(refs)

    def status(self, stream_id: str | None = None, tenant: str = "default") -> dict | list[dict]:
        """One stream's status, or the tenant's streams: those running here, then the others the
        store knows (live elsewhere or being resumed, then the finished ones, newest first)."""
        if stream_id is not None:
            with self._lock:
                item = self._streams.get(stream_id)
            if item is not None and item[0].tenant == tenant:
                return self._status_of(*item)
            return self._status_from_row(self._row(stream_id, tenant))
        with self._lock:
            items = [v for v in self._streams.values() if v[0].tenant == tenant]
        here = {spec.stream_id for spec, _a in items}
        rows = [r for r in self.cp.list_streams(tenant) if r["id"] not in here]
        active = [self._status_from_row(r) for r in rows if r["final"] is None]
        finished = [r["final"] for r in rows if r["final"] is not None][:KEEP_FINISHED]
        return [self._status_of(spec, actor) for spec, actor in items] + active + finished

    def _status_from_row(self, row: dict) -> dict:
        if row["final"] is not None:
            return row["final"]
        spec = row["spec"]
        status = row["status"]
        if row["desired"] == "stop":
            status = "stopping"
        elif row["owner"] != self.owner:
            status = "resuming" if row["lease_until"] < time.time() else status
        return {"id": row["id"], "name": spec.get("name") or row["id"], "tenant": row["tenant"],
                "url": redact(spec.get("url", "")), "status": status, "error": row["error"],
                "analysed_until": row["analysed_until"], "restarts": row["restarts"], "outages": row["outages"],
                "node": row["node"]}

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
        except ray.exceptions.RayTaskError as e:  # a malformed event, a batch key used with other events
            cause = getattr(e, "cause", None)
            if isinstance(cause, ValueError):
                raise Refused(str(cause)) from None
            raise

    def moments(self, stream_id: str, tenant: str = "default", min_score: float | None = None) -> list[dict]:
        with self._lock:
            item = self._streams.get(stream_id)
        if item is None or item[0].tenant != tenant:  # not running here: the store has them
            self._row(stream_id, tenant)
            rows = self._store().list_moments(stream_id, tenant=tenant, min_score=min_score)
            return [to_dict(m) | {"id": m.id} for m in (_moment_from_row(stream_id, r) for r in rows)]
        return _call(item[1].moments, min_score)

    def clips(self, stream_id: str, tenant: str = "default") -> list[dict]:
        with self._lock:
            item = self._streams.get(stream_id)
        if item is None or item[0].tenant != tenant:
            self._row(stream_id, tenant)
            return [to_dict(_clip_from_row(c)) for c in self._store().list_clips(stream_id, tenant=tenant)]
        return _call(item[1].clips)

    def streams(self, tenant: str = "default") -> list[str]:
        """The tenant's running streams' ids (run by this controller)."""
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
        store = self._store()
        if self.cp.get_stream(stream_id, tenant) is None and store.get_show(stream_id, tenant=tenant) is None:
            raise NotFound(f"no stream {stream_id!r}")
        history = store.list_ramp_decisions(stream_id, tenant=tenant, limit=limit)
        latest = history[-1] if history else None
        return {"stream_id": stream_id, "level": latest["level"] if latest else None,
                "share": latest["share"] if latest else None, "history": history}

    # -- batch jobs (the back office's reprocessing of recorded shows) ---------------------------

    def submit_job(self, items: list[dict], tenant: str = "default", name: str = "",
                   clip_format: str | None = None, burn_captions: bool | None = None) -> dict:
        """Reprocess recorded shows: ``items`` are ``{"path": checked absolute path}`` or
        ``{"url": checked http(s) URL}`` (the caller has checked them). The job and its items are
        stored first; then one Ray task per item, each the tenant's show ``<job id>-<n>``.
        ``clip_format`` and ``burn_captions`` give the job's clips their own shape and captions
        (kept with each item, so a resumed item keeps them)."""
        if not items:
            raise Refused("a job needs at least one item")
        clip_format = _checked_format(clip_format)
        extra = {k: v for k, v in (("format", clip_format), ("burn_captions", burn_captions)) if v not in (None, "")}
        items = [dict(it) | extra for it in items]
        jid = new_stream_id(name or "job")
        keys = [f"{jid}-{i}" for i in range(len(items))]
        self.cp.add_job(jid, tenant, name or jid, list(zip(keys, items)))
        self._run_items(jid, tenant, [(i, k, it) for i, (k, it) in enumerate(zip(keys, items))])
        self._start_reaper()
        return {"id": jid, "status": "running", "items": len(items)}

    def _run_items(self, jid: str, tenant: str, todo: list[tuple[int, str, dict]]) -> None:
        from workers.batch import ProgressBoard, run_job_item

        s = Settings(**(self.settings | {"cpu_threads": 1}))
        out_root = Path("jobs") / jid  # in the folder of the node that runs the item
        board = ray.remote(num_cpus=0)(ProgressBoard).options(name=f"{JOB_PREFIX}{jid}", namespace=NAMESPACE,
                                                              get_if_exists=True).remote()
        task = ray.remote(num_cpus=0.5, max_retries=0)(run_job_item)
        refs = {}
        for idx, key, item in todo:
            self.cp.set_item(jid, idx, "running", attempt=True)
            item_settings = clip_settings(s, item.get("format"), item.get("burn_captions"))
            refs[idx] = task.remote(item, key, str(out_root), item_settings, board, tenant, key)
        with self._lock:
            self._jobs[jid] = {"id": jid, "tenant": tenant, "keys": {i: k for i, k, _ in todo}, "refs": refs,
                               "board": board}

    def _resume_jobs(self) -> int:
        """Run again the items of unfinished jobs that no task of this controller runs."""
        n = 0
        for job in self.cp.list_jobs(unfinished=True):
            if job["id"] in self._jobs:
                continue
            todo = [(it["idx"], it["show_id"], it["source"]) for it in job["items"] if it["status"] in ("pending", "running")]
            if todo:
                self._run_items(job["id"], job["tenant"], todo)
                n += len(todo)
        return n

    def _collect(self, job: dict) -> dict:
        """Record the items whose tasks have finished; returns the job's progress per item index."""
        from workers.batch import fraction

        pending = list(job["refs"].items())
        if pending:
            done, _ = ray.wait([r for _i, r in pending], num_returns=len(pending), timeout=0)
            done = set(done)
            for idx, ref in pending:
                if ref not in done:
                    continue
                try:
                    res = ray.get(ref)
                    result = {"ok": res.ok, "error": res.error, "moments": len(res.moments), "clips": len(res.clips),
                              "duration": res.duration, "seconds": res.seconds}
                except ray.exceptions.RayError as e:
                    result = {"ok": False, "error": f"worker failed: {type(e).__name__}"}
                self.cp.set_item(job["id"], idx, "done" if result["ok"] else "failed", result)
                job["refs"].pop(idx, None)
        progress: dict[int, float] = {}
        if job["refs"]:
            try:
                snap = ray.get(job["board"].snapshot.remote(), timeout=5)
            except Exception:  # noqa: BLE001 - progress is a nicety
                snap = {}
            progress = {i: fraction(snap.get(job["keys"][i], {})) for i in job["refs"]}
        else:
            with self._lock:
                self._jobs.pop(job["id"], None)
            try:
                ray.kill(job["board"], no_restart=True)
            except Exception:  # noqa: BLE001 - gone already
                pass
        return progress

    def _job_view(self, row: dict) -> dict:
        with self._lock:
            live = self._jobs.get(row["id"])
        progress = self._collect(live) if live is not None else {}
        if live is not None:  # results may have just been recorded
            row = self.cp.list_jobs(job_id=row["id"])[0]
        items = []
        for it in row["items"]:
            src = it["source"]
            res = it["result"] or {}
            finished = it["status"] in ("done", "failed")
            items.append({"show_id": it["show_id"],
                          "source": redact(src["url"]) if src.get("url") else Path(src.get("path", "")).name,
                          "progress": 1.0 if finished else round(progress.get(it["idx"], 0.0), 3),
                          "status": it["status"] if finished else "running", "attempts": it["attempts"]} | res)
        status = row["status"] if row["finished_at"] is not None else "running"
        return {"id": row["id"], "name": row["name"], "status": status,
                "progress": round(sum(i["progress"] for i in items) / max(1, len(items)), 3), "items": items,
                "submitted_at": row["submitted_at"], "finished_at": row["finished_at"]}

    def job(self, job_id: str, tenant: str = "default") -> dict:
        rows = self.cp.list_jobs(tenant, job_id)
        if not rows:
            raise NotFound(f"no job {job_id!r}")
        return self._job_view(rows[0])

    def jobs(self, tenant: str = "default") -> list[dict]:
        return [self._job_view(r) for r in self.cp.list_jobs(tenant)]


#: a stream's status keys too long to keep in its row once it has ended (every clip's latency)
_LATENCY_LISTS = ("clip_latencies", "final_clip_latencies")


def _without_latency_lists(status: dict) -> dict:
    return {k: v for k, v in status.items() if k not in _LATENCY_LISTS}


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


ControllerActor = ray.remote(LiveController)


def _checked_format(clip_format: str | None) -> str | None:
    """A stream's or job's clip shape, checked (:class:`Refused` naming the valid ones)."""
    if not clip_format:
        return None
    from ace.reframe import check_format

    try:
        return check_format(str(clip_format).strip().lower())
    except ValueError as e:
        raise Refused(str(e)) from None


def get_controller(create: bool = True, settings: dict | None = None):
    """The cluster's controller actor (created, detached, when ``create`` and it does not exist)."""
    if create:
        return ControllerActor.options(name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached",
                                       get_if_exists=True, num_cpus=CONTROLLER_CPUS, max_concurrency=16,
                                       max_restarts=-1).remote(settings, adopt=True)
    return ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
