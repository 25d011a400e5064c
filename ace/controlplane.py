"""The control plane's rows: live streams, batch jobs and cluster-wide values, kept in ACE's database.

Everything a controller needs to rebuild itself after a restart (of its actor, of ``ace serve``, of
the Ray head) is written here *before* it is acknowledged to the user:

    streams    id PK, tenant, spec (JSON: what it was submitted with), durable (resumed after a
               restart: the cluster controller's streams; a bench's or test's own controller sets
               False), desired (run | stop: a user's stop is kept), status, error, analysed_until
               (the stream clock), state (JSON: what a restarted worker resumes from, the buffer's
               position included), node (where it last ran), owner + lease_until + epoch (the
               lease), restarts, outages (JSON: [{at, seconds, why}], the gaps it did not see),
               final (JSON: the final status, once it has ended, failed or been stopped),
               submitted_at, updated_at (wall seconds)
    jobs       id PK, tenant, name, status (running | done | failed), submitted_at, finished_at
    job_items  (job_id, idx) PK, tenant, show_id, source (JSON: {"path"} or {"url"}), status
               (pending | running | done | failed), result (JSON), attempts, updated_at
    control    key PK, value (JSON), updated_at: the speech pool's size, the ramp's switches

**The lease.** A controller (``owner``) runs a stream only while it holds the stream's lease:
:meth:`ControlPlane.acquire` takes it when it is free, already the caller's or expired, and
:meth:`ControlPlane.renew` extends every lease the owner holds (the controller does so every few
seconds). Taking a stream over for a new worker adds one to its ``epoch``, the fencing token: a
worker writes its progress only where the row still has its epoch (:meth:`ControlPlane.save_progress`),
so a worker left over from an earlier owner stops at its next write instead of running the stream
twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ace.errors import Refused
from ace.schema import DEFAULT_TENANT, metadata
from ace.store import Store, _converted

#: seconds a lease lasts unless renewed (a controller renews every couple of seconds)
LEASE_S = 15.0
#: a user's wish for a stream
DESIRED = ("run", "stop")
JOB_ITEM_STATUSES = ("pending", "running", "done", "failed")

streams_table = sa.Table(
    "streams",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("durable", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("desired", sa.String(8), nullable=False, server_default="run"),
    sa.Column("status", sa.String(16), nullable=False, server_default="starting"),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("analysed_until", sa.Float, nullable=False, server_default="0"),
    sa.Column("state", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("node", sa.String, nullable=False, server_default=""),
    sa.Column("owner", sa.String, nullable=False, server_default=""),
    sa.Column("lease_until", sa.Float, nullable=False, server_default="0"),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("outages", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("final", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("submitted_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

jobs_table = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False, server_default="running"),
    sa.Column("submitted_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
)

job_items_table = sa.Table(
    "job_items",
    metadata,
    sa.Column("job_id", sa.String, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("show_id", sa.String, nullable=False),
    sa.Column("source", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.Float, nullable=False),
)

control_table = sa.Table(
    "control",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

_STREAM_FIELDS = {"status", "error", "analysed_until", "state", "node", "restarts", "outages"}


def _stream(row: sa.Row) -> dict[str, Any]:
    d = dict(row._mapping)
    d["outages"] = d.get("outages") or []
    return d


class ControlPlane:
    """Streams, jobs and cluster values in ``store``'s database (tables created with the store's)."""

    def __init__(self, store: Store):
        self.store = store
        store.create_all()

    # ------------------------------------------------------------------ streams

    @_converted("saving the stream")
    def add_stream(self, stream_id: str, tenant: str, spec: dict, *, owner: str = "", durable: bool = True,
                   lease_s: float = LEASE_S) -> int:
        """Record a new stream (desired ``run``), its lease held by ``owner``; returns its epoch (1).
        :class:`~ace.errors.Refused` when the id is taken."""
        now = time.time()
        row = {"id": stream_id, "tenant": tenant, "spec": dict(spec), "durable": bool(durable), "desired": "run",
               "status": "starting", "error": "", "analysed_until": 0.0, "state": None, "node": "", "owner": owner,
               "lease_until": now + lease_s if owner else 0.0, "epoch": 1, "restarts": 0, "outages": [],
               "final": None, "submitted_at": now, "updated_at": now}
        with self.store._write() as conn:
            if conn.execute(sa.select(streams_table.c.id).where(streams_table.c.id == stream_id)).first() is not None:
                raise Refused(f"stream id {stream_id!r} is taken")
            conn.execute(sa.insert(streams_table), [row])
        return 1

    @_converted("reading the stream")
    def get_stream(self, stream_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        q = sa.select(streams_table).where(streams_table.c.id == stream_id)
        if tenant is not None:
            q = q.where(streams_table.c.tenant == tenant)
        with self.store._read() as conn:
            row = conn.execute(q).first()
        return _stream(row) if row is not None else None

    @_converted("listing streams")
    def list_streams(self, tenant: str | None = None, *, active: bool | None = None, durable: bool | None = None,
                     unfinished: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
        """Streams, newest first; ``active`` True: not finished and not stopped by a user; False: finished;
        ``unfinished``: only those not finished (whatever their user wants)."""
        t = streams_table
        q = sa.select(t).order_by(t.c.submitted_at.desc(), t.c.id)
        if tenant is not None:
            q = q.where(t.c.tenant == tenant)
        if active is True:
            q = q.where(t.c.final.is_(None), t.c.desired == "run")
        elif active is False:
            q = q.where(t.c.final.is_not(None))
        if unfinished:
            q = q.where(t.c.final.is_(None))
        if durable is not None:
            q = q.where(t.c.durable == durable)
        if limit is not None:
            q = q.limit(int(limit))
        with self.store._read() as conn:
            return [_stream(r) for r in conn.execute(q)]

    @_converted("taking the stream's lease")
    def acquire(self, stream_id: str, owner: str, *, bump: bool = False, lease_s: float = LEASE_S) -> int | None:
        """Take the stream's lease for ``owner`` when it is free, already ``owner``'s or expired, and the
        stream is to run; returns its epoch (one more with ``bump``: a new worker will run it), or None
        when another owner holds it or it has finished or been stopped."""
        now = time.time()
        t = streams_table
        values: dict[str, Any] = {"owner": owner, "lease_until": now + lease_s, "updated_at": now}
        if bump:
            values["epoch"] = t.c.epoch + 1
        cond = ((t.c.id == stream_id) & t.c.final.is_(None) & (t.c.desired == "run")
                & ((t.c.owner == "") | (t.c.owner == owner) | (t.c.lease_until < now)))
        with self.store._write() as conn:
            if conn.execute(sa.update(t).where(cond).values(**values)).rowcount != 1:
                return None
            return int(conn.execute(sa.select(t.c.epoch).where(t.c.id == stream_id)).scalar_one())

    @_converted("renewing leases")
    def renew(self, owner: str, stream_ids: Sequence[str] | None = None, lease_s: float = LEASE_S) -> int:
        """Extend the leases ``owner`` holds (of ``stream_ids`` only, when given); returns how many."""
        now = time.time()
        t = streams_table
        q = sa.update(t).where(t.c.owner == owner, t.c.final.is_(None))
        if stream_ids is not None:
            if not stream_ids:
                return 0
            q = q.where(t.c.id.in_(list(stream_ids)))
        with self.store._write() as conn:
            return conn.execute(q.values(lease_until=now + lease_s)).rowcount

    @_converted("releasing the lease")
    def release(self, stream_id: str, owner: str) -> bool:
        t = streams_table
        with self.store._write() as conn:
            return conn.execute(sa.update(t).where(t.c.id == stream_id, t.c.owner == owner)
                                .values(owner="", lease_until=0.0, updated_at=time.time())).rowcount == 1

    @_converted("saving the stream's progress")
    def save_progress(self, stream_id: str, epoch: int | None = None, **fields: Any) -> bool:
        """Write a worker's progress (``status``, ``error``, ``analysed_until``, ``state``, ``node``,
        ``restarts``, ``outages``); with ``epoch``, only while the row still has it. False: fenced
        (another worker runs the stream now) or no such stream."""
        bad = set(fields) - _STREAM_FIELDS
        if bad:
            raise ValueError(f"not a stream progress field: {', '.join(sorted(bad))}")
        t = streams_table
        q = sa.update(t).where(t.c.id == stream_id)
        if epoch is not None:
            q = q.where(t.c.epoch == int(epoch))
        with self.store._write() as conn:
            return conn.execute(q.values(updated_at=time.time(), **fields)).rowcount == 1

    @_converted("stopping the stream")
    def set_desired(self, stream_id: str, tenant: str, desired: str) -> bool:
        """A user's wish (``stop`` stays stopped across restarts); False when the tenant has no such stream."""
        if desired not in DESIRED:
            raise ValueError(f"desired must be one of {DESIRED}")
        t = streams_table
        with self.store._write() as conn:
            return conn.execute(sa.update(t).where(t.c.id == stream_id, t.c.tenant == tenant)
                                .values(desired=desired, updated_at=time.time())).rowcount == 1

    @_converted("finishing the stream")
    def finish(self, stream_id: str, final: dict) -> bool:
        """Keep the stream's final status (ended, failed or stopped) and let its lease go; a stream
        finished before keeps its first final status. False when it had finished already."""
        t = streams_table
        status = str(final.get("status") or "ended")
        with self.store._write() as conn:
            return conn.execute(sa.update(t).where(t.c.id == stream_id, t.c.final.is_(None)).values(
                final=dict(final), status=status, error=str(final.get("error") or "")[:2000], owner="",
                lease_until=0.0, updated_at=time.time())).rowcount == 1

    # ------------------------------------------------------------------ jobs

    @_converted("saving the job")
    def add_job(self, job_id: str, tenant: str, name: str, items: Sequence[tuple[str, dict]]) -> None:
        """Record a job and its items (``(show_id, source)`` each), all pending."""
        now = time.time()
        with self.store._write() as conn:
            conn.execute(sa.insert(jobs_table), [{"id": job_id, "tenant": tenant, "name": name, "status": "running",
                                                  "submitted_at": now, "finished_at": None}])
            conn.execute(sa.insert(job_items_table), [
                {"job_id": job_id, "idx": i, "tenant": tenant, "show_id": sid, "source": dict(src), "status": "pending",
                 "result": None, "attempts": 0, "updated_at": now} for i, (sid, src) in enumerate(items)])

    @_converted("updating the job")
    def set_item(self, job_id: str, idx: int, status: str, result: dict | None = None, *, attempt: bool = False) -> None:
        """An item's new status (and result); when every item has finished, the job's status too."""
        if status not in JOB_ITEM_STATUSES:
            raise ValueError(f"unknown job item status {status!r}")
        now = time.time()
        it = job_items_table
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if result is not None:
            values["result"] = dict(result)
        if attempt:
            values["attempts"] = it.c.attempts + 1
        with self.store._write() as conn:
            conn.execute(sa.update(it).where(it.c.job_id == job_id, it.c.idx == int(idx)).values(**values))
            states = [r[0] for r in conn.execute(sa.select(it.c.status).where(it.c.job_id == job_id))]
            if states and all(s in ("done", "failed") for s in states):
                conn.execute(sa.update(jobs_table).where(jobs_table.c.id == job_id, jobs_table.c.finished_at.is_(None))
                             .values(status="done" if all(s == "done" for s in states) else "failed", finished_at=now))

    @_converted("reading jobs")
    def list_jobs(self, tenant: str | None = None, job_id: str | None = None, *,
                  unfinished: bool = False) -> list[dict[str, Any]]:
        """Jobs with their ``items`` (in order), oldest first."""
        j, it = jobs_table, job_items_table
        q = sa.select(j).order_by(j.c.submitted_at, j.c.id)
        if tenant is not None:
            q = q.where(j.c.tenant == tenant)
        if job_id is not None:
            q = q.where(j.c.id == job_id)
        if unfinished:
            q = q.where(j.c.finished_at.is_(None))
        with self.store._read() as conn:
            jobs = [dict(r._mapping) for r in conn.execute(q)]
            for job in jobs:
                job["items"] = [dict(r._mapping) for r in conn.execute(
                    sa.select(it).where(it.c.job_id == job["id"]).order_by(it.c.idx))]
        return jobs

    # ------------------------------------------------------------------ cluster values

    @_converted("saving a control value")
    def set_value(self, key: str, value: Any) -> None:
        with self.store._write() as conn:
            self.store._upsert(conn, control_table, "key", [{"key": key, "value": value, "updated_at": time.time()}])

    @_converted("reading a control value")
    def get_value(self, key: str, default: Any = None) -> Any:
        with self.store._read() as conn:
            row = conn.execute(sa.select(control_table.c.value).where(control_table.c.key == key)).first()
        return default if row is None or row[0] is None else row[0]
