"""ACE's database: shows, their moments and their clips (SQLAlchemy Core).

SQLite by default (``sqlite:////abs/path/ace.db``: parent folders are created, WAL journal,
foreign keys on, a 30 s busy timeout and ``BEGIN IMMEDIATE`` for writes, so several processes can
write one file), PostgreSQL when the URL says so (``postgresql+psycopg://user:pw@host/db``; a bare
``postgresql://`` URL is given the psycopg 3 driver, installed by the ``postgres`` extra).

The tables, and the values their columns take, are in :mod:`ace.schema`.

``status`` is one of :data:`SHOW_STATUSES`. Times of the media are float seconds; ``created_at`` /
``updated_at`` are wall-clock UTC and come back as ISO 8601 strings. Reads return plain dicts.
:meth:`Store.create_all` also brings a database made by an older ACE up to date: a column that is
missing from an existing table is added (``ALTER TABLE ... ADD COLUMN`` with its default).
Every SQLAlchemy or driver error is raised as :class:`ace.errors.StoreError`.

::

    store = Store("sqlite:////tmp/ace.db"); store.create_all()
    store.upsert_show("s1", path="show.mp4", name="show", duration=3600.0, settings_hash="ab12", status="running")
    store.save_results("s1", moments, clips, settings_hash="ab12")   # idempotent: replaces s1's set
    store.list_moments("s1", min_score=0.5)
    store.list_moments("s1", min_confidence=60, order="rank")   # the show's best first
    store.save_products("s1", segments, {seg.id: clip}, hits, tenant="acme", products=products)
    store.list_products("s1", tenant="acme")   # {"products": [...], "segments": [...], "ad_words": [...]}
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from ace.errors import StoreError
from ace.schema import (
    AD_WORDS_KEY,
    AUDIENCE_KINDS,
    DEFAULT_TENANT,
    MOMENT_ORDERS,
    PUBLICATION_STATUSES,
    SESSION_PREFIX,
    SHOW_STATUSES,
    TOKEN_PREFIX,
    ad_word_hits_table,
    clip_audience_table,
    clips_table,
    metadata,
    moments_table,
    product_segments_table,
    publications_table,
    ramp_table,
    reviews_table,
    sessions_table,
    shows_table,
    tenant_settings_table,
    tokens_table,
)
from ace.types import (
    CLIP_STATES,
    AdWordHit,
    Clip,
    Moment,
    Product,
    ProductSegment,
    to_dict,
)

logger = logging.getLogger("ace.store")

#: Seconds a SQLite connection waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT = 30.0

_CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit

F = TypeVar("F", bound=Callable[..., Any])


def _converted(op: str) -> Callable[[F], F]:
    """Raise SQLAlchemy's and the driver's errors as :class:`StoreError` naming ``op``."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except sa.exc.SQLAlchemyError as e:
                orig = getattr(e, "orig", None)
                detail = str(orig) if orig is not None else str(e)
                raise StoreError(f"{op} failed: {detail.strip().splitlines()[0] if detail.strip() else type(e).__name__}") from e

        return inner  # type: ignore[return-value]

    return wrap


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    return value


def _row(row: sa.Row) -> dict[str, Any]:
    return {k: _iso(v) for k, v in row._mapping.items()}


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def normalize_url(url: str) -> str:
    """``url`` with psycopg 3 as the PostgreSQL driver when none is named."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


class Store:
    """The database behind one URL. Thread-safe; open one per process (or per worker)."""

    def __init__(self, url: str, *, echo: bool = False):
        try:
            self.url = normalize_url(url)
            parsed = make_url(self.url)
        except sa.exc.ArgumentError as e:
            raise StoreError(f"not a database URL: {url!r} ({e})") from e
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            self._prepare_sqlite_file(parsed)
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = sa.create_engine(self.url, **kwargs)
        except ModuleNotFoundError as e:
            extra = " (pip install 'ace-live[postgres]')" if self.dialect == "postgresql" else ""
            raise StoreError(f"the database driver for {parsed.drivername} is not installed: {e.name}{extra}") from e
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(f"cannot open database {parsed.render_as_string(hide_password=True)}: {e}") from e
        if self.dialect == "sqlite":
            self._sqlite_events(self.engine)

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    @classmethod
    def from_settings(cls, settings: Any) -> Store:
        """A store at ``settings.db_url`` (an ``ace.config.Settings``), tables created."""
        store = cls(settings.db_url)
        store.create_all()
        return store

    # ------------------------------------------------------------------ connections

    @staticmethod
    def _prepare_sqlite_file(url: sa.URL) -> None:
        db = url.database
        if db and db != ":memory:" and not db.startswith("file:"):
            try:
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder for {db}: {e}") from e

    @staticmethod
    def _sqlite_events(engine: Engine) -> None:
        """WAL, foreign keys and a busy timeout on every connection; ``BEGIN IMMEDIATE`` for
        writes (so a writer waits for the lock up front instead of failing on upgrade)."""

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
                cur.execute("PRAGMA foreign_keys = ON")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("ace_read_only"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(ace_read_only=True)
            with conn.begin():
                yield conn

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise StoreError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")
        return insert(table)

    def _upsert(
        self,
        conn: Connection,
        table: sa.Table,
        key: str,
        rows: list[dict[str, Any]],
        keep: Iterable[str] = (),
        same_tenant: bool = False,
    ) -> int:
        """Insert ``rows``, updating every column but ``key`` and ``keep`` where ``key`` exists
        (only when the existing row has the same tenant, with ``same_tenant``). Returns the rowcount."""
        if not rows:
            return 0
        stmt = self._insert(table)
        skip = {key, *keep}
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[key]],
            set_={c: stmt.excluded[c] for c in rows[0] if c not in skip},
            where=(table.c.tenant == stmt.excluded.tenant) if same_tenant else None,
        )
        return conn.execute(stmt, rows).rowcount

    # ------------------------------------------------------------------ schema

    @_converted("creating the tables")
    def create_all(self) -> None:
        """Create the tables and indexes that do not exist yet, and add the columns that an existing
        table lacks (a database made by an older ACE: its rows get the columns' defaults). Safe to
        call from every process."""
        try:
            metadata.create_all(self.engine)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
            # PostgreSQL: another process created them at the same moment; check they are there
            with self._read() as conn:
                missing = {t.name for t in metadata.sorted_tables} - set(sa.inspect(conn).get_table_names())
            if missing:
                raise
        self._add_missing_columns()
        logger.debug("tables ready at %s", self)

    @staticmethod
    def _missing_columns(conn: Connection) -> list[sa.Column]:
        """The columns of ACE's tables that the database's tables lack."""
        inspector = sa.inspect(conn)
        have_tables = set(inspector.get_table_names())
        missing = []
        for table in metadata.sorted_tables:
            if table.name not in have_tables:
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing.extend(c for c in table.columns if c.name not in have)
        return missing

    def _add_missing_columns(self) -> None:
        """``ALTER TABLE ... ADD COLUMN`` (with the column's default) for each column an existing
        table lacks. Checked again under the write lock (SQLite: ``BEGIN IMMEDIATE``), and with
        ``IF NOT EXISTS`` on PostgreSQL, so processes upgrading one database at once add each once."""
        with self._read() as conn:
            if not self._missing_columns(conn):
                return
        with self._write() as conn:
            for col in self._missing_columns(conn):
                table = col.table
                if col.primary_key or (not col.nullable and col.server_default is None):
                    raise StoreError(f"the {table.name} table lacks column {col.name!r}, which cannot be added to "
                                     "existing rows (no default); recreate the database")
                ddl = sa.schema.CreateColumn(col).compile(dialect=conn.dialect)
                guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
                conn.exec_driver_sql(
                    f"ALTER TABLE {conn.dialect.identifier_preparer.format_table(table)} ADD COLUMN {guard}{ddl}")
                logger.info("%s: added column %s.%s (an older database)", self, table.name, col.name)

    def drop_all(self) -> None:
        """Drop ACE's tables and everything in them (tests and resets only)."""
        try:
            metadata.drop_all(self.engine)
        except sa.exc.SQLAlchemyError as e:
            raise StoreError(f"dropping the tables failed: {e}") from e

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ shows

    @staticmethod
    def _check_tenant(conn: Connection, show_id: str, tenant: str, *, lock: bool) -> str | None:
        """The show's tenant (None when there is no such show); StoreError when it is another's."""
        q = sa.select(shows_table.c.tenant).where(shows_table.c.id == show_id)
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        owner = conn.execute(q).scalar_one_or_none()
        if owner is not None and owner != tenant:
            raise StoreError(f"show {show_id!r} belongs to another tenant")
        return owner

    @_converted("saving the show")
    def upsert_show(
        self,
        show_id: str,
        *,
        path: str,
        name: str,
        duration: float,
        settings_hash: str,
        status: str,
        error: str = "",
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """Create the show or update it in place (``created_at`` is kept). A show id used by
        another tenant raises :class:`StoreError`."""
        if status not in SHOW_STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of: {', '.join(SHOW_STATUSES)}")
        now = _now()
        row = {
            "id": show_id,
            "tenant": tenant,
            "path": str(path),
            "name": name,
            "duration": float(duration),
            "settings_hash": settings_hash,
            "status": status,
            "error": error or "",
            "created_at": now,
            "updated_at": now,
        }
        with self._write() as conn:
            self._check_tenant(conn, show_id, tenant, lock=True)
            if self._upsert(conn, shows_table, "id", [row], keep=("created_at", "tenant"), same_tenant=True) == 0:
                raise StoreError(f"show {show_id!r} belongs to another tenant")

    @_converted("reading the show")
    def get_show(self, show_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        """The show as a dict, or None (also when it belongs to another ``tenant``)."""
        q = sa.select(shows_table).where(shows_table.c.id == show_id)
        if tenant is not None:
            q = q.where(shows_table.c.tenant == tenant)
        with self._read() as conn:
            row = conn.execute(q).first()
        return _row(row) if row is not None else None

    @_converted("listing shows")
    def list_shows(self, tenant: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Shows, newest first, optionally only one tenant's and/or one status."""
        q = sa.select(shows_table).order_by(shows_table.c.created_at.desc(), shows_table.c.id)
        if tenant is not None:
            q = q.where(shows_table.c.tenant == tenant)
        if status is not None:
            q = q.where(shows_table.c.status == status)
        with self._read() as conn:
            return [_row(r) for r in conn.execute(q)]

    @_converted("deleting the show")
    def delete_show(self, show_id: str, tenant: str | None = None) -> bool:
        """Delete a show with its moments, clips, ramp decisions, product segments, ad-wording hits and
        publications; False when there was none (for ``tenant``)."""
        with self._write() as conn:
            cond = shows_table.c.id == show_id
            if tenant is not None:
                cond = cond & (shows_table.c.tenant == tenant)
            if conn.execute(sa.select(shows_table.c.id).where(cond)).first() is None:
                return False
            conn.execute(sa.delete(clips_table).where(clips_table.c.show_id == show_id))
            conn.execute(sa.delete(ramp_table).where(ramp_table.c.show_id == show_id))
            conn.execute(sa.delete(ad_word_hits_table).where(ad_word_hits_table.c.show_id == show_id))
            conn.execute(sa.delete(product_segments_table).where(product_segments_table.c.show_id == show_id))
            ids = sa.select(moments_table.c.id).where(moments_table.c.show_id == show_id)
            conn.execute(sa.delete(clip_audience_table).where(clip_audience_table.c.clip_id.in_(ids)))
            conn.execute(sa.delete(publications_table).where(publications_table.c.show_id == show_id))
            conn.execute(sa.delete(reviews_table).where(reviews_table.c.moment_id.in_(ids)))
            conn.execute(sa.delete(moments_table).where(moments_table.c.show_id == show_id))
            conn.execute(sa.delete(shows_table).where(shows_table.c.id == show_id))
            return True

    # ------------------------------------------------------------------ results

    @_converted("saving results")
    def save_results(
        self,
        show_id: str,
        moments: Sequence[Moment],
        clips: Sequence[Clip],
        settings_hash: str,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """Make the show's moments and clips exactly these, in one transaction: same ids are
        updated in place (``created_at`` kept), ids not given are deleted, new ones inserted.
        Re-saving the same results changes nothing. The show must exist (see :meth:`upsert_show`)
        and belong to ``tenant``; its ``settings_hash`` is updated."""
        by_id: dict[str, Moment] = {}
        for m in moments:
            if m.show_id != show_id:
                raise ValueError(f"moment {m.id} belongs to show {m.show_id!r}, not {show_id!r}")
            if m.id in by_id:
                logger.warning("show %s: two moments share id %s (%.2f-%.2f); keeping the last", show_id, m.id, m.start, m.end)
            by_id[m.id] = m
        clip_by_moment: dict[str, Clip] = {}
        for c in clips:
            if c.moment_id not in by_id:
                raise ValueError(f"clip {c.path!r} is for moment {c.moment_id!r}, which is not among the moments given")
            if getattr(c, "state", "final") not in CLIP_STATES:
                raise ValueError(f"clip {c.path!r} has an unknown state {c.state!r}; expected one of: {', '.join(CLIP_STATES)}")
            clip_by_moment[c.moment_id] = c

        now = _now()
        moment_rows = [
            {
                "id": mid,
                "show_id": show_id,
                "tenant": tenant,
                "start": float(m.start),
                "end": float(m.end),
                "score": float(m.score),
                "peak": float(m.peak),
                "reasons": to_dict(list(m.reasons)),
                "transcript": m.transcript or "",
                "clip_path": clip_by_moment[mid].path if mid in clip_by_moment else "",
                "rank": max(0, int(m.rank)),
                "confidence": float(m.confidence),
                "strong": bool(m.strong),
                "created_at": now,
            }
            for mid, m in by_id.items()
        ]
        clip_rows = [
            {
                "moment_id": c.moment_id,
                "show_id": show_id,
                "tenant": tenant,
                "path": str(c.path),
                "start": float(c.start),
                "end": float(c.end),
                "mode": c.mode,
                "srt_path": c.srt_path or "",
                "thumb_path": c.thumb_path or "",
                "seconds": float(c.seconds),
                "created_at": now,
                "format": c.format or "source",
                "burned": bool(c.burned),
                "state": getattr(c, "state", "final"),
                "revision": max(0, int(getattr(c, "revision", 0))),
            }
            for c in clip_by_moment.values()
        ]

        with self._write() as conn:
            if self._check_tenant(conn, show_id, tenant, lock=True) is None:
                raise StoreError(f"no show {show_id!r} for tenant {tenant!r}; call upsert_show first")
            old_moments = set(conn.execute(sa.select(moments_table.c.id).where(moments_table.c.show_id == show_id)).scalars())
            old_clips = set(conn.execute(sa.select(clips_table.c.moment_id).where(clips_table.c.show_id == show_id)).scalars())
            for ids in _chunks(sorted(old_clips - set(clip_by_moment))):
                conn.execute(sa.delete(clips_table).where(clips_table.c.moment_id.in_(ids)))
            for ids in _chunks(sorted(old_moments - set(by_id))):
                conn.execute(sa.delete(clips_table).where(clips_table.c.moment_id.in_(ids)))
                conn.execute(sa.delete(reviews_table).where(reviews_table.c.moment_id.in_(ids)))
                conn.execute(sa.delete(moments_table).where(moments_table.c.id.in_(ids)))
            self._upsert(conn, moments_table, "id", moment_rows, keep=("created_at",))
            self._upsert(conn, clips_table, "moment_id", clip_rows, keep=("created_at",))
            self._replace_hits(conn, show_id)  # the ad-wording hits' moment_id follows the new clips
            conn.execute(
                sa.update(shows_table).where(shows_table.c.id == show_id).values(settings_hash=settings_hash, updated_at=now)
            )
        logger.debug("show %s: saved %d moments, %d clips", show_id, len(moment_rows), len(clip_rows))

    @_converted("listing moments")
    def list_moments(self, show_id: str, tenant: str | None = None, min_score: float | None = None, *,
                     min_confidence: float | None = None, order: str = "time") -> list[dict[str, Any]]:
        """The show's moments (``reasons`` as a list of dicts), at least ``min_score`` (0-1) and
        ``min_confidence`` (0-100) when given, in time order or, with ``order="rank"``, best first
        (rank 1, 2, ...; unranked moments, rank 0, last, in time order). Each has ``ad_words``: the
        ad-wording hits said inside its clip (inside the moment when it has no clip), in time order,
        each ``{"phrase", "start", "end", "text"}``."""
        if order not in MOMENT_ORDERS:
            raise ValueError(f"unknown order {order!r}; expected one of: {', '.join(MOMENT_ORDERS)}")
        c = moments_table.c
        q = sa.select(moments_table).where(c.show_id == show_id)
        if order == "rank":
            q = q.order_by(sa.case((c.rank > 0, 0), else_=1), c.rank, c.start, c.id)
        else:
            q = q.order_by(c.start, c.id)
        if tenant is not None:
            q = q.where(c.tenant == tenant)
        if min_score is not None:
            q = q.where(c.score >= float(min_score))
        if min_confidence is not None:
            q = q.where(c.confidence >= float(min_confidence))
        with self._read() as conn:
            rows = [_row(r) for r in conn.execute(q)]
            hits = self._show_hits(conn, show_id, tenant) if rows else []
            spans = self._clip_spans(conn, show_id) if hits else {}
        for r in rows:
            a, b = spans.get(r["id"], (r["start"], r["end"]))
            r["ad_words"] = _hits_between(hits, a, b)
        return rows

    @_converted("listing clips")
    def list_clips(self, show_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """The show's clips in time order, each with the ad-wording hits said inside it (``ad_words``)."""
        q = sa.select(clips_table).where(clips_table.c.show_id == show_id).order_by(clips_table.c.start, clips_table.c.moment_id)
        if tenant is not None:
            q = q.where(clips_table.c.tenant == tenant)
        with self._read() as conn:
            rows = [_row(r) for r in conn.execute(q)]
            hits = self._show_hits(conn, show_id, tenant) if rows else []
        for r in rows:
            r["ad_words"] = _hits_between(hits, r["start"], r["end"])
        return rows

    # ------------------------------------------------------------------ ramp decisions

    @_converted("saving ramp decisions")
    def save_ramp_decisions(self, decisions: Iterable[Any]) -> int:
        """Keep the traffic-ramp policy's decisions (``RampDecision`` objects or dicts with
        ``stream_id``, ``t``, ``level``, ``share``, ``reason``), each under its stream's tenant.
        Decisions for a stream the store does not know are skipped; returns how many were saved."""
        items = [d if isinstance(d, dict) else to_dict(d) for d in decisions]
        if not items:
            return 0
        ids = sorted({str(d["stream_id"]) for d in items})
        with self._write() as conn:
            owners: dict[str, str] = {}
            for chunk in _chunks(ids):
                q = sa.select(shows_table.c.id, shows_table.c.tenant).where(shows_table.c.id.in_(chunk))
                owners.update({r.id: r.tenant for r in conn.execute(q)})
            rows = [{"show_id": str(d["stream_id"]), "tenant": owners[str(d["stream_id"])], "t": float(d["t"]),
                     "level": str(d["level"])[:16], "share": float(d["share"]), "reason": str(d.get("reason") or "")}
                    for d in items if str(d["stream_id"]) in owners]
            if rows:
                conn.execute(sa.insert(ramp_table), rows)
        return len(rows)

    @_converted("listing ramp decisions")
    def list_ramp_decisions(self, show_id: str, tenant: str | None = None, limit: int = 100,
                            since: float | None = None) -> list[dict[str, Any]]:
        """The stream's most recent ramp decisions (at most ``limit``, oldest first), each as
        ``stream_id``, ``t``, ``level``, ``share``, ``reason``."""
        q = sa.select(ramp_table).where(ramp_table.c.show_id == show_id)
        if tenant is not None:
            q = q.where(ramp_table.c.tenant == tenant)
        if since is not None:
            q = q.where(ramp_table.c.t >= float(since))
        q = q.order_by(ramp_table.c.t.desc(), ramp_table.c.id.desc()).limit(max(0, int(limit)))
        with self._read() as conn:
            rows = [_row(r) for r in conn.execute(q)]
        rows.reverse()
        return [{"stream_id": r["show_id"], "t": r["t"], "level": r["level"], "share": r["share"], "reason": r["reason"]}
                for r in rows]

    # ------------------------------------------------------------------ clip reviews

    @_converted("saving the review")
    def set_review(self, moment_id: str, verdict: str, tenant: str = DEFAULT_TENANT, note: str = "") -> dict[str, Any] | None:
        """Approve or reject a clip (by its moment id), kept as feedback for later tuning; a later
        review replaces an earlier one. None when the tenant has no such moment."""
        if verdict not in ("approve", "reject"):
            raise ValueError(f"verdict must be 'approve' or 'reject', got {verdict!r}")
        with self._write() as conn:
            q = sa.select(moments_table.c.id).where((moments_table.c.id == moment_id) & (moments_table.c.tenant == tenant))
            if conn.execute(q).first() is None:
                return None
            row = {"moment_id": moment_id, "tenant": tenant, "verdict": verdict, "note": note, "updated_at": _now()}
            self._upsert(conn, reviews_table, "moment_id", [row])
        return _iso_row(row)

    @_converted("listing the tenant's reviews")
    def tenant_reviews(self, tenant: str) -> list[dict[str, Any]]:
        """Every review of ``tenant``'s moments, with the moment's show and interval: rows of
        ``{"moment_id", "show_id", "start", "end", "verdict"}`` (what ``ace train --reviews`` learns from)."""
        q = (sa.select(reviews_table.c.moment_id, moments_table.c.show_id, moments_table.c.start, moments_table.c.end,
                       reviews_table.c.verdict)
             .join(moments_table, moments_table.c.id == reviews_table.c.moment_id)
             .where((reviews_table.c.tenant == tenant) & (moments_table.c.tenant == tenant))
             .order_by(moments_table.c.show_id, moments_table.c.start))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    @_converted("listing reviews")
    def list_reviews(self, show_id: str, tenant: str | None = None) -> dict[str, dict[str, Any]]:
        """The show's reviews by moment id."""
        q = (sa.select(reviews_table).join(moments_table, moments_table.c.id == reviews_table.c.moment_id)
             .where(moments_table.c.show_id == show_id))
        if tenant is not None:
            q = q.where(reviews_table.c.tenant == tenant)
        with self._read() as conn:
            return {r.moment_id: _row(r) for r in conn.execute(q)}

    @_converted("finding the clip")
    def get_clip(self, moment_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        """One clip with its moment's score, rank, confidence, strong and transcript (None when the
        tenant has none such)."""
        q = (sa.select(clips_table, moments_table.c.score, moments_table.c.rank, moments_table.c.confidence,
                       moments_table.c.strong, moments_table.c.transcript, moments_table.c.reasons)
             .join(moments_table, moments_table.c.id == clips_table.c.moment_id)
             .where(clips_table.c.moment_id == moment_id))
        if tenant is not None:
            q = q.where(clips_table.c.tenant == tenant)
        with self._read() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None
            out = _row(row)
            hits = self._show_hits(conn, out["show_id"], out["tenant"])
        out["ad_words"] = _hits_between(hits, out["start"], out["end"])
        return out

    # ------------------------------------------------------------------ product segments and ad-wording hits

    @_converted("saving product segments")
    def save_products(
        self,
        show_id: str,
        segments: Sequence[ProductSegment],
        clips: Mapping[str, Clip] | None = None,
        hits: Sequence[AdWordHit] = (),
        tenant: str = DEFAULT_TENANT,
        products: Sequence[Product | Mapping[str, Any]] | None = None,
    ) -> None:
        """Make the show's product segments and ad-wording hits exactly these, in one transaction
        (as :meth:`save_results` does for moments: same ids updated in place, ``created_at`` kept,
        the others deleted). ``clips`` maps a segment's id to its product clip (segments without
        one have empty clip columns); ``products`` is the show's product list (``Product`` objects
        or their dicts), kept on the show; None keeps the list saved before.

        Each hit's ``segment_id`` and ``moment_id`` are worked out here, from the segments given and
        the show's moments and clips in the store: the segment, and the moment whose clip (or the
        moment itself, when it has no clip) contains the middle of the hit, the earliest one when
        several do. :meth:`save_results` works ``moment_id`` out again whenever the moments change,
        so the two can be saved in either order. Each segment's ``ad_words`` lists the hits said
        inside it. The show must exist and belong to ``tenant``."""
        from ace.products.catalog import parse_product, product_to_dict

        clips = dict(clips or {})
        by_id: dict[str, ProductSegment] = {}
        for g in segments:
            if g.show_id != show_id:
                raise ValueError(f"product segment {g.id} belongs to show {g.show_id!r}, not {show_id!r}")
            by_id[g.id] = g
        for key, c in clips.items():
            if key not in by_id:
                raise ValueError(f"product clip {c.path!r} is for segment {key!r}, which is not among the segments given")
        hit_list = sorted({_hit_id(show_id, h): h for h in hits}.items(), key=lambda kv: (kv[1].start, kv[1].phrase))
        catalog = None
        if products is not None:
            catalog = [product_to_dict(p if isinstance(p, Product) else parse_product(dict(p), f"products[{i}]"))
                       for i, p in enumerate(products)]

        now = _now()
        seg_rows = []
        for sid, g in by_id.items():
            c = clips.get(sid)
            seg_rows.append({
                "id": sid, "show_id": show_id, "tenant": tenant, "product": g.product, "name": g.name, "n": int(g.n),
                "start": float(g.start), "end": float(g.end), "confidence": float(g.confidence),
                "heard": list(g.heard), "evidence": list(g.evidence),
                "clip_path": str(c.path) if c else "", "srt_path": (c.srt_path or "") if c else "",
                "thumb_path": (c.thumb_path or "") if c else "", "clip_start": float(c.start) if c else 0.0,
                "clip_end": float(c.end) if c else 0.0, "mode": (c.mode or "") if c else "",
                "seconds": float(c.seconds) if c else 0.0,
                "ad_words": [_hit_dict(h) for _hid, h in hit_list if g.start <= _mid(h) <= g.end],
                "created_at": now,
            })
        with self._write() as conn:
            if self._check_tenant(conn, show_id, tenant, lock=True) is None:
                raise StoreError(f"no show {show_id!r} for tenant {tenant!r}; call upsert_show first")
            t = product_segments_table
            old = set(conn.execute(sa.select(t.c.id).where(t.c.show_id == show_id)).scalars())
            for ids in _chunks(sorted(old - set(by_id))):
                conn.execute(sa.delete(t).where(t.c.id.in_(ids)))
            self._upsert(conn, t, "id", seg_rows, keep=("created_at",))
            self._replace_hits(conn, show_id, tenant, hit_list, now)
            values: dict[str, Any] = {"updated_at": now}
            if catalog is not None:
                values["products"] = catalog
            conn.execute(sa.update(shows_table).where(shows_table.c.id == show_id).values(**values))
        logger.debug("show %s: saved %d product segments, %d ad-wording hits", show_id, len(seg_rows), len(hit_list))

    def _replace_hits(self, conn: Connection, show_id: str, tenant: str | None = None,
                      hits: list[tuple[str, AdWordHit]] | None = None, now: datetime | None = None) -> None:
        """Make the show's hits ``hits`` (``(id, hit)`` pairs), or with None only work out the saved
        ones' ``segment_id`` and ``moment_id`` again; see :meth:`save_products`."""
        t = ad_word_hits_table
        if hits is None:
            saved = conn.execute(sa.select(t.c.id, t.c.start, t.c.end, t.c.segment_id, t.c.moment_id)
                                 .where(t.c.show_id == show_id)).all()
            if not saved:
                return
            places = self._places(conn, show_id)
            for r in saved:
                seg, mom = places((r.start + r.end) / 2)
                if (seg, mom) != (r.segment_id, r.moment_id):
                    conn.execute(sa.update(t).where(t.c.id == r.id).values(segment_id=seg, moment_id=mom))
            return
        places = self._places(conn, show_id)
        rows = []
        for hid, h in hits:
            seg, mom = places(_mid(h))
            rows.append({"id": hid, "show_id": show_id, "tenant": tenant, "phrase": h.phrase, "start": float(h.start),
                         "end": float(h.end), "text": h.text or "", "segment_id": seg, "moment_id": mom, "created_at": now})
        old = set(conn.execute(sa.select(t.c.id).where(t.c.show_id == show_id)).scalars())
        for ids in _chunks(sorted(old - {hid for hid, _h in hits})):
            conn.execute(sa.delete(t).where(t.c.id.in_(ids)))
        self._upsert(conn, t, "id", rows, keep=("created_at",))

    @classmethod
    def _places(cls, conn: Connection, show_id: str) -> Callable[[float], tuple[str | None, str | None]]:
        """``t -> (segment id, moment id)``: the show's product segment and moment (its clip's
        interval, else its own) that contain ``t``, the earliest-starting of each (None: none)."""
        p = product_segments_table.c
        segs = [(r.start, r.end, r.id) for r in conn.execute(
            sa.select(p.id, p.start, p.end).where(p.show_id == show_id).order_by(p.start, p.id))]
        spans = cls._clip_spans(conn, show_id)
        m = moments_table.c
        moms = sorted((*spans.get(r.id, (r.start, r.end)), r.id) for r in conn.execute(
            sa.select(m.id, m.start, m.end).where(m.show_id == show_id)))

        def place(t: float) -> tuple[str | None, str | None]:
            seg = next((i for a, b, i in segs if a <= t <= b), None)
            mom = next((i for a, b, i in moms if a <= t <= b), None)
            return seg, mom

        return place

    @staticmethod
    def _clip_spans(conn: Connection, show_id: str) -> dict[str, tuple[float, float]]:
        c = clips_table.c
        return {r.moment_id: (r.start, r.end) for r in conn.execute(
            sa.select(c.moment_id, c.start, c.end).where(c.show_id == show_id))}

    @staticmethod
    def _show_hits(conn: Connection, show_id: str, tenant: str | None) -> list[dict[str, Any]]:
        t = ad_word_hits_table.c
        q = sa.select(t.phrase, t.start, t.end, t.text).where(t.show_id == show_id).order_by(t.start, t.phrase)
        if tenant is not None:
            q = q.where(t.tenant == tenant)
        return [dict(r._mapping) for r in conn.execute(q)]

    @_converted("listing product segments")
    def list_products(self, show_id: str, tenant: str | None = None) -> dict[str, Any]:
        """The show's product list, product segments and ad-wording hits::

            {"products": [product dicts, as given],
             "segments": [rows in time order: id, show_id, tenant, product, name, n, start, end,
                          confidence, heard, evidence, clip_path, srt_path, thumb_path, clip_start,
                          clip_end, mode, seconds (clip columns empty / 0 when not cut), ad_words,
                          created_at],
             "ad_words": [rows in time order: id, phrase, start, end, text, segment_id, moment_id]}

        Empty lists for a show that has none (or is another ``tenant``'s)."""
        s, t, h = shows_table.c, product_segments_table.c, ad_word_hits_table.c
        qs = sa.select(s.products).where(s.id == show_id)
        qg = sa.select(product_segments_table).where(t.show_id == show_id).order_by(t.start, t.product, t.id)
        qh = (sa.select(h.id, h.phrase, h.start, h.end, h.text, h.segment_id, h.moment_id)
              .where(h.show_id == show_id).order_by(h.start, h.phrase, h.id))
        if tenant is not None:
            qs, qg, qh = qs.where(s.tenant == tenant), qg.where(t.tenant == tenant), qh.where(h.tenant == tenant)
        with self._read() as conn:
            catalog = conn.execute(qs).scalar_one_or_none()
            segments = [_row(r) for r in conn.execute(qg)]
            hits = [dict(r._mapping) for r in conn.execute(qh)]
        return {"products": list(catalog or []), "segments": segments, "ad_words": hits}

    @_converted("finding the product clip")
    def get_product_clip(self, segment_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        """One product segment's row (see :meth:`list_products`) with its clip's files under the
        names :meth:`get_clip` uses (``path``, ``srt_path``, ``thumb_path``, ``start``/``end`` the
        clip's); None when the tenant has no such segment or it has no clip."""
        t = product_segments_table.c
        q = sa.select(product_segments_table).where(t.id == segment_id)
        if tenant is not None:
            q = q.where(t.tenant == tenant)
        with self._read() as conn:
            row = conn.execute(q).first()
        if row is None or not row.clip_path:
            return None
        out = _row(row)
        out.update(segment_id=out["id"], path=out["clip_path"], segment_start=out["start"], segment_end=out["end"],
                   start=out["clip_start"], end=out["clip_end"])
        return out

    # ------------------------------------------------------------------ a tenant's settings

    @_converted("reading the tenant's setting")
    def get_tenant_setting(self, tenant: str, key: str, default: Any = None) -> Any:
        """The tenant's value of ``key`` (any JSON), or ``default`` when it has none."""
        t = tenant_settings_table.c
        with self._read() as conn:
            row = conn.execute(sa.select(t.value).where((t.tenant == tenant) & (t.key == key))).first()
        return default if row is None else row.value

    @_converted("saving the tenant's setting")
    def set_tenant_setting(self, tenant: str, key: str, value: Any) -> None:
        """Keep ``value`` (any JSON) as the tenant's ``key``; None removes it (back to the default)."""
        if not tenant or not key or len(key) > 64:
            raise ValueError("a tenant setting needs a tenant and a key of 1-64 characters")
        t = tenant_settings_table
        with self._write() as conn:
            if value is None:
                conn.execute(sa.delete(t).where((t.c.tenant == tenant) & (t.c.key == key)))
                return
            stmt = self._insert(t)
            stmt = stmt.on_conflict_do_update(index_elements=[t.c.tenant, t.c.key],
                                              set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at})
            conn.execute(stmt, [{"tenant": tenant, "key": key, "value": value, "updated_at": _now()}])

    def ad_words_for(self, tenant: str, default: Sequence[str] | None = None) -> tuple[str, ...]:
        """The ad-wording phrases to check ``tenant``'s shows with: its own list (``PUT
        /settings/ad-words``; an empty list turns the check off) when it keeps one, else ``default``
        (the ``ad_words`` setting), else :data:`ace.products.adwords.DEFAULT_AD_WORDS`."""
        from ace.products.adwords import DEFAULT_AD_WORDS

        own = self.get_tenant_setting(tenant, AD_WORDS_KEY)
        if isinstance(own, list) and all(isinstance(x, str) for x in own):
            return tuple(own)
        return tuple(DEFAULT_AD_WORDS if default is None else default)

    # ------------------------------------------------------------------ publications

    #: a pending publication not updated for this long (its process died) may be claimed again
    PUBLICATION_STALE_S = 600.0

    @staticmethod
    def _publication(conn: Connection, clip_id: str, tenant: str) -> dict[str, Any] | None:
        p = publications_table.c
        row = conn.execute(sa.select(publications_table).where((p.clip_id == clip_id) & (p.tenant == tenant))).first()
        return _row(row) if row is not None else None

    @_converted("publishing the clip")
    def claim_publication(self, clip_id: str, tenant: str, *, show_id: str = "", target: str = "",
                          force: bool = False) -> tuple[dict[str, Any] | None, bool]:
        """The clip's publication for ``tenant``, made when there is none: ``(row, start)``, where
        ``start`` says the caller should deliver it now. Publishing is idempotent by clip: a clip
        published before keeps its row and is not delivered again, unless ``force`` and it is not
        being delivered right now (``pending`` and updated within :attr:`PUBLICATION_STALE_S`);
        then its row goes back to ``pending`` with no attempts. ``(None, False)`` when the tenant
        has no such clip. Safe against concurrent calls: only one of them gets ``start``."""
        from datetime import timedelta

        c, p = clips_table.c, publications_table.c
        now = _now()
        with self._write() as conn:
            owned = conn.execute(sa.select(c.show_id).where((c.moment_id == clip_id) & (c.tenant == tenant))).first()
            if owned is None:
                return None, False
            stmt = (self._insert(publications_table)
                    .values(clip_id=clip_id, tenant=tenant, show_id=show_id or owned.show_id, status="pending", attempts=0,
                            last_error="", target=target[:2048], created_at=now, updated_at=now)
                    .on_conflict_do_nothing(index_elements=[p.clip_id, p.tenant]).returning(p.id))
            if conn.execute(stmt).first() is not None:  # made now (RETURNING: no row when it was there)
                return self._publication(conn, clip_id, tenant), True
            start = False
            if force:
                stale = now - timedelta(seconds=self.PUBLICATION_STALE_S)
                res = conn.execute(
                    sa.update(publications_table)
                    .where((p.clip_id == clip_id) & (p.tenant == tenant) & ((p.status != "pending") | (p.updated_at < stale)))
                    .values(status="pending", attempts=0, last_error="", response_status=None, target=target[:2048],
                            updated_at=now))
                start = res.rowcount > 0
            return self._publication(conn, clip_id, tenant), start

    @_converted("saving the publication")
    def update_publication(self, clip_id: str, tenant: str, **values: Any) -> dict[str, Any] | None:
        """Change a publication's ``status``, ``attempts``, ``last_error``, ``response_status`` or
        ``remote_id`` (``sent_at`` is set when the status becomes ``sent``); None when the tenant has none."""
        allowed = {"status", "attempts", "last_error", "response_status", "remote_id"}
        bad = set(values) - allowed
        if bad:
            raise ValueError(f"a publication has no field(s) {', '.join(sorted(bad))} to change")
        if "status" in values and values["status"] not in PUBLICATION_STATUSES:
            raise ValueError(f"unknown status {values['status']!r}; expected one of: {', '.join(PUBLICATION_STATUSES)}")
        if "last_error" in values:
            values["last_error"] = str(values["last_error"] or "")[:2000]
        now = _now()
        values["updated_at"] = now
        if values.get("status") == "sent":
            values["sent_at"] = now
        p = publications_table.c
        with self._write() as conn:
            res = conn.execute(sa.update(publications_table).where((p.clip_id == clip_id) & (p.tenant == tenant)).values(**values))
            if not res.rowcount:
                return None
            return self._publication(conn, clip_id, tenant)

    @_converted("reading the publication")
    def get_publication(self, clip_id: str, tenant: str) -> dict[str, Any] | None:
        """The clip's publication for ``tenant`` with its audience (``viewers``, ``clickers``: the
        distinct users the platform reported), or None when it was never published (or is another's)."""
        with self._read() as conn:
            row = self._publication(conn, clip_id, tenant)
            if row is None:
                return None
            row.update(self._audience(conn, tenant, [clip_id]).get(clip_id, {"viewers": 0, "clickers": 0}))
        return row

    @_converted("listing publications")
    def list_publications(self, tenant: str, show_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's publications, newest first (one show's with ``show_id``), each with its audience."""
        p = publications_table.c
        q = sa.select(publications_table).where(p.tenant == tenant).order_by(p.created_at.desc(), p.id.desc())
        if show_id is not None:
            q = q.where(p.show_id == show_id)
        with self._read() as conn:
            rows = [_row(r) for r in conn.execute(q)]
            counts = self._audience(conn, tenant, [r["clip_id"] for r in rows]) if rows else {}
        for r in rows:
            r.update(counts.get(r["clip_id"], {"viewers": 0, "clickers": 0}))
        return rows

    @staticmethod
    def _audience(conn: Connection, tenant: str, clip_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        a = clip_audience_table.c
        out: dict[str, dict[str, int]] = {}
        for chunk in _chunks(sorted(set(clip_ids))):
            q = (sa.select(a.clip_id, a.kind, sa.func.count()).where((a.tenant == tenant) & a.clip_id.in_(chunk))
                 .group_by(a.clip_id, a.kind))
            for clip_id, kind, n in conn.execute(q):
                out.setdefault(clip_id, {"viewers": 0, "clickers": 0})["viewers" if kind == "view" else "clickers"] = int(n)
        return out

    @_converted("recording the clips' audience")
    def record_clip_audience(self, tenant: str, items: Iterable[tuple[str, str, str]]) -> int:
        """Note ``(clip id, kind, user)`` triples (kind ``view`` or ``click``) for the tenant's
        published clips: each user counts once per clip and kind, however often it is reported
        (a retried batch changes nothing). Triples of clips the tenant has not published, without a
        user, or of another kind are skipped. Returns how many new ones were noted."""
        wanted = {(str(c), k, str(u)[:200]) for c, k, u in items if c and u and k in AUDIENCE_KINDS}
        if not wanted:
            return 0
        p = publications_table.c
        with self._write() as conn:
            published: set[str] = set()
            for chunk in _chunks(sorted({c for c, _k, _u in wanted})):
                published.update(conn.execute(sa.select(p.clip_id).where((p.tenant == tenant) & p.clip_id.in_(chunk))).scalars())
            now = _now()
            rows = [{"clip_id": c, "tenant": tenant, "kind": k, "user": u, "created_at": now}
                    for c, k, u in sorted(wanted) if c in published]
            if not rows:
                return 0
            a = clip_audience_table.c
            added = 0
            for chunk in _chunks(rows, 100):
                stmt = (self._insert(clip_audience_table).values(list(chunk))
                        .on_conflict_do_nothing(index_elements=[a.clip_id, a.tenant, a.kind, a.user]).returning(a.clip_id))
                added += len(conn.execute(stmt).all())
            return added

    # ------------------------------------------------------------------ API tokens

    @_converted("creating the token")
    def create_token(self, tenant: str, name: str = "") -> tuple[str, str]:
        """A new API token for ``tenant``: returns ``(token id, token)``. Only the token's SHA-256
        is kept, so the token cannot be shown again."""
        import secrets

        if not tenant or len(tenant) > 64:
            raise ValueError("a tenant name is 1-64 characters")
        tid = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}{tid}_{secrets.token_urlsafe(32)}"
        with self._write() as conn:
            conn.execute(sa.insert(tokens_table), [{"id": tid, "tenant": tenant, "name": name[:200],
                                                    "hash": token_hash(token), "created_at": _now()}])
        return tid, token

    @_converted("checking the token")
    def token_tenant(self, token: str) -> str | None:
        """The tenant of a valid (not revoked) token, else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        q = sa.select(tokens_table.c.tenant).where((tokens_table.c.hash == token_hash(token)) & tokens_table.c.revoked_at.is_(None))
        with self._read() as conn:
            return conn.execute(q).scalar_one_or_none()

    @_converted("listing tokens")
    def list_tokens(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Tokens (id, tenant, name, created_at, revoked_at; never the hash)."""
        q = sa.select(tokens_table.c.id, tokens_table.c.tenant, tokens_table.c.name, tokens_table.c.created_at,
                      tokens_table.c.revoked_at).order_by(tokens_table.c.created_at)
        if tenant is not None:
            q = q.where(tokens_table.c.tenant == tenant)
        with self._read() as conn:
            return [_row(r) for r in conn.execute(q)]

    @_converted("revoking the token")
    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token by id (its sessions end with it: :meth:`get_session` checks the token); False
        when there is no such live token."""
        with self._write() as conn:
            res = conn.execute(sa.update(tokens_table).where((tokens_table.c.id == token_id) & tokens_table.c.revoked_at.is_(None))
                               .values(revoked_at=_now()))
            return res.rowcount > 0

    # ------------------------------------------------------------------ sign-in sessions

    @_converted("opening the session")
    def create_session(self, token: str, ttl_s: float) -> str | None:
        """A new session for a valid API token, alive for ``ttl_s`` seconds: returns its secret (only
        its SHA-256 is kept), or None when the token is unknown or revoked. Sessions that ended
        (expired) are deleted on the way."""
        import secrets
        from datetime import timedelta

        ttl_s = float(ttl_s)
        if not (0 < ttl_s <= 366 * 86400):
            raise ValueError(f"a session lives between 0 and 366 days, not {ttl_s!r} s")
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        secret = f"{SESSION_PREFIX}{secrets.token_urlsafe(32)}"
        now = _now()
        with self._write() as conn:
            q = sa.select(tokens_table.c.id, tokens_table.c.tenant).where(
                (tokens_table.c.hash == token_hash(token)) & tokens_table.c.revoked_at.is_(None))
            tok = conn.execute(q).first()
            if tok is None:
                return None
            conn.execute(sa.delete(sessions_table).where(sessions_table.c.expires_at < now))
            conn.execute(sa.insert(sessions_table), [{"id": token_hash(secret), "tenant": tok.tenant, "token_id": tok.id,
                                                      "created_at": now, "expires_at": now + timedelta(seconds=ttl_s)}])
        return secret

    @_converted("checking the session")
    def get_session(self, secret: str) -> dict[str, Any] | None:
        """A live session (tenant, token_id, created_at, expires_at; never the hash), or None when it
        is unknown, expired or revoked, or when its API token has been revoked since."""
        if not secret.startswith(SESSION_PREFIX) or len(secret) > 200:
            return None
        q = (sa.select(sessions_table.c.tenant, sessions_table.c.token_id, sessions_table.c.created_at,
                       sessions_table.c.expires_at)
             .join(tokens_table, tokens_table.c.id == sessions_table.c.token_id)
             .where((sessions_table.c.id == token_hash(secret)) & sessions_table.c.revoked_at.is_(None)
                    & (sessions_table.c.expires_at > _now()) & tokens_table.c.revoked_at.is_(None)))
        with self._read() as conn:
            row = conn.execute(q).first()
        return _row(row) if row is not None else None

    def session_tenant(self, secret: str) -> str | None:
        """The tenant of a live session (see :meth:`get_session`), else None."""
        found = self.get_session(secret)
        return found["tenant"] if found is not None else None

    @_converted("revoking the session")
    def revoke_session(self, secret: str) -> bool:
        """End a session now (sign-out); False when there is no such session or it was revoked already."""
        if not secret.startswith(SESSION_PREFIX) or len(secret) > 200:
            return False
        with self._write() as conn:
            res = conn.execute(sa.update(sessions_table)
                               .where((sessions_table.c.id == token_hash(secret)) & sessions_table.c.revoked_at.is_(None))
                               .values(revoked_at=_now()))
            return res.rowcount > 0


def token_hash(token: str) -> str:
    """SHA-256 of a token, hex. Tokens carry 256 random bits, so a fast hash is enough: there is no
    password to guess, and a lookup by hash needs no per-row salt."""
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def _iso_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) for k, v in row.items()}


def _mid(h: AdWordHit) -> float:
    return (float(h.start) + float(h.end)) / 2


def _hit_id(show_id: str, h: AdWordHit) -> str:
    """A hit's stable id: the same show, phrase and time give the same id on every save."""
    import hashlib

    return hashlib.sha1(f"{show_id}:{h.phrase}:{float(h.start):.2f}:{float(h.end):.2f}".encode()).hexdigest()[:16]


def _hit_dict(h: AdWordHit) -> dict[str, Any]:
    return {"phrase": h.phrase, "start": float(h.start), "end": float(h.end), "text": h.text or ""}


def _hits_between(hits: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    """The hits (dicts) said inside ``[start, end]``, by their middle (as :func:`ace.products.adwords.hits_in`)."""
    return [dict(h) for h in hits if start <= (h["start"] + h["end"]) / 2 <= end]
