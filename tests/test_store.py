"""The results database, on SQLite always and on PostgreSQL when ``ACE_TEST_DATABASE_URL`` names one
(e.g. ``postgresql+psycopg://ace:ace@127.0.0.1:5432/ace_test``; its ACE tables are dropped and recreated)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from ace.errors import StoreError
from ace.schema import metadata, moments_table, shows_table
from ace.store import Store, normalize_url
from ace.types import Clip, Moment, Reason

@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.create_all()
    yield s
    s.close()


def _moment(show_id: str, start: float, score: float = 0.7, **kw) -> Moment:
    return Moment(
        show_id=show_id,
        start=start,
        end=start + 10.0,
        score=score,
        peak=start + 4.0,
        reasons=kw.pop("reasons", (Reason("interaction", 0.9, "chat x4"), Reason("keyword", 0.6, "'link is up'"))),
        transcript=kw.pop("transcript", "the link is up, go go go"),
        rank=kw.pop("rank", 0),
        confidence=kw.pop("confidence", 0.0),
        strong=kw.pop("strong", True),
    )


def _clip(m: Moment, out: str = "/out") -> Clip:
    return Clip(
        moment_id=m.id,
        path=f"{out}/{m.id}.mp4",
        start=m.start - 0.5,
        end=m.end,
        mode="exact",
        srt_path=f"{out}/{m.id}.srt",
        thumb_path=f"{out}/{m.id}.jpg",
        seconds=1.25,
    )


def _show(store: Store, show_id: str, tenant: str = "default", status: str = "running", **kw) -> None:
    store.upsert_show(
        show_id,
        path=kw.get("path", f"/shows/{show_id}.mp4"),
        name=kw.get("name", show_id),
        duration=kw.get("duration", 600.0),
        settings_hash=kw.get("settings_hash", "h1"),
        status=status,
        error=kw.get("error", ""),
        tenant=tenant,
    )


def test_round_trip(store):
    _show(store, "s1")
    ms = [_moment("s1", 30.0, 0.9), _moment("s1", 100.0, 0.4), _moment("s1", 5.0, 0.6)]
    clips = [_clip(ms[0]), _clip(ms[2])]
    store.save_results("s1", ms, clips, settings_hash="h2")
    _show(store, "s1", status="done", settings_hash="h2")

    show = store.get_show("s1")
    assert show["status"] == "done" and show["settings_hash"] == "h2" and show["tenant"] == "default"
    assert show["path"] == "/shows/s1.mp4" and show["duration"] == 600.0 and show["error"] == ""
    assert show["created_at"] <= show["updated_at"]

    rows = store.list_moments("s1")
    assert [r["start"] for r in rows] == [5.0, 30.0, 100.0]  # time order
    first = rows[1]
    assert first["id"] == ms[0].id and first["show_id"] == "s1"
    assert first["end"] == 40.0 and first["score"] == 0.9 and first["peak"] == 34.0
    assert first["reasons"] == [
        {"source": "interaction", "score": 0.9, "detail": "chat x4"},
        {"source": "keyword", "score": 0.6, "detail": "'link is up'"},
    ]
    assert first["transcript"] == "the link is up, go go go"
    assert first["clip_path"] == f"/out/{ms[0].id}.mp4"
    assert rows[2]["clip_path"] == ""
    assert [r["start"] for r in store.list_moments("s1", min_score=0.6)] == [5.0, 30.0]

    got = store.list_clips("s1")
    assert [c["moment_id"] for c in got] == [ms[2].id, ms[0].id]
    c = got[1]
    assert (c["path"], c["start"], c["end"], c["mode"]) == (clips[0].path, 29.5, 40.0, "exact")
    assert (c["srt_path"], c["thumb_path"], c["seconds"], c["show_id"]) == (clips[0].srt_path, clips[0].thumb_path, 1.25, "s1")

    assert [s["id"] for s in store.list_shows()] == ["s1"]
    assert store.get_show("nope") is None
    assert store.list_moments("nope") == [] and store.list_clips("nope") == []


def test_resave_is_idempotent(store):
    _show(store, "s1")
    ms = [_moment("s1", t) for t in (10.0, 50.0, 90.0)]
    clips = [_clip(m) for m in ms]
    store.save_results("s1", ms, clips, settings_hash="h1")
    created = {r["id"]: r["created_at"] for r in store.list_moments("s1")}
    store.save_results("s1", ms, clips, settings_hash="h1")
    assert len(store.list_moments("s1")) == 3 and len(store.list_clips("s1")) == 3

    # same interval, new score: updated in place; a moment that is gone is deleted with its clip
    changed = [_moment("s1", 10.0, score=0.95), ms[1]]
    store.save_results("s1", changed, [_clip(changed[0], out="/new")], settings_hash="h3")
    rows = store.list_moments("s1")
    assert [r["id"] for r in rows] == [ms[0].id, ms[1].id]
    assert rows[0]["score"] == 0.95 and rows[0]["created_at"] == created[ms[0].id]
    assert rows[0]["clip_path"] == f"/new/{ms[0].id}.mp4" and rows[1]["clip_path"] == ""
    assert [c["path"] for c in store.list_clips("s1")] == [f"/new/{ms[0].id}.mp4"]
    assert store.get_show("s1")["settings_hash"] == "h3"

    store.save_results("s1", [], [], settings_hash="h4")
    assert store.list_moments("s1") == [] and store.list_clips("s1") == []


def test_results_of_other_shows_are_untouched(store):
    _show(store, "a")
    _show(store, "b")
    ma, mb = _moment("a", 1.0), _moment("b", 1.0)
    store.save_results("a", [ma], [_clip(ma)], settings_hash="h")
    store.save_results("b", [mb], [_clip(mb)], settings_hash="h")
    store.save_results("a", [], [], settings_hash="h")
    assert store.list_moments("a") == []
    assert len(store.list_moments("b")) == 1 and len(store.list_clips("b")) == 1


def test_tenant_isolation(store):
    _show(store, "acme-1", tenant="acme")
    _show(store, "globex-1", tenant="globex")
    m = _moment("acme-1", 3.0)
    store.save_results("acme-1", [m], [_clip(m)], settings_hash="h", tenant="acme")

    assert store.get_show("acme-1", tenant="acme")["tenant"] == "acme"
    assert store.get_show("acme-1", tenant="globex") is None
    assert [s["id"] for s in store.list_shows(tenant="globex")] == ["globex-1"]
    assert {s["id"] for s in store.list_shows()} == {"acme-1", "globex-1"}
    assert store.list_moments("acme-1", tenant="globex") == []
    assert store.list_clips("acme-1", tenant="globex") == []
    assert store.list_moments("acme-1", tenant="acme")[0]["tenant"] == "acme"
    assert store.list_clips("acme-1", tenant="acme")[0]["tenant"] == "acme"

    # another tenant can neither take over the show nor write its results
    with pytest.raises(StoreError, match="another tenant"):
        _show(store, "acme-1", tenant="globex")
    with pytest.raises(StoreError, match="another tenant"):
        store.save_results("acme-1", [], [], settings_hash="h", tenant="globex")
    assert len(store.list_moments("acme-1")) == 1
    assert store.get_show("acme-1")["path"] == "/shows/acme-1.mp4"


def test_failed_show_keeps_its_error(store):
    _show(store, "bad", status="failed", error="MediaError: ffprobe: moov atom not found")
    show = store.get_show("bad")
    assert show["status"] == "failed" and "moov atom" in show["error"]
    assert [s["id"] for s in store.list_shows(status="failed")] == ["bad"]
    _show(store, "bad", status="running")  # a retry clears it
    assert store.get_show("bad")["error"] == ""
    with pytest.raises(ValueError, match="pending, running, done, failed"):
        _show(store, "bad", status="exploded")


def test_save_results_needs_its_show_and_matching_items(store):
    m = _moment("ghost", 1.0)
    with pytest.raises(StoreError, match="upsert_show"):
        store.save_results("ghost", [m], [], settings_hash="h")
    _show(store, "s1")
    with pytest.raises(ValueError, match="belongs to show"):
        store.save_results("s1", [m], [], settings_hash="h")
    m1 = _moment("s1", 1.0)
    with pytest.raises(ValueError, match="not among the moments"):
        store.save_results("s1", [], [_clip(m1)], settings_hash="h")


def test_delete_show_removes_everything(store):
    _show(store, "s1", tenant="acme")
    m = _moment("s1", 1.0)
    store.save_results("s1", [m], [_clip(m)], settings_hash="h", tenant="acme")
    assert store.delete_show("s1", tenant="other") is False
    assert store.delete_show("s1", tenant="acme") is True
    assert store.get_show("s1") is None and store.list_moments("s1") == [] and store.list_clips("s1") == []


def _write_shows(url: str, prefix: str, n: int) -> int:
    s = Store(url)
    try:
        for i in range(n):
            sid = f"{prefix}-{i}"
            _show(s, sid)
            ms = [_moment(sid, float(t)) for t in range(0, 50, 10)]
            s.save_results(sid, ms, [_clip(m) for m in ms], settings_hash="h")
            s.save_results(sid, ms, [_clip(m) for m in ms], settings_hash="h")
            _show(s, sid, status="done")
        return n
    finally:
        s.close()


def test_two_stores_write_concurrently(db_url):
    Store(db_url).create_all()
    a, b = Store(db_url), Store(db_url)
    _show(a, "shared")
    start = threading.Barrier(2)

    def work(store: Store, prefix: str) -> None:
        start.wait()
        for i in range(15):
            sid = f"{prefix}-{i}"
            _show(store, sid)
            ms = [_moment(sid, float(t), score=0.5 + i / 100) for t in range(0, 30, 10)]
            store.save_results(sid, ms, [_clip(m) for m in ms], settings_hash="h")
            shared = [_moment("shared", float(t), score=i / 20) for t in range(0, 40, 10)]
            store.save_results("shared", shared, [_clip(shared[0])], settings_hash=prefix)

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(work, a, "a"), pool.submit(work, b, "b")]:
            f.result()

    assert len(a.list_shows()) == 31
    for prefix in ("a", "b"):
        for i in range(15):
            assert len(b.list_moments(f"{prefix}-{i}")) == 3
            assert len(a.list_clips(f"{prefix}-{i}")) == 3
    assert len(a.list_moments("shared")) == 4 and len(b.list_clips("shared")) == 1
    a.close()
    b.close()


def test_two_processes_write_one_database(db_url):
    Store(db_url).create_all()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        done = list(pool.map(_write_shows, [db_url, db_url], ["p", "q"], [8, 8]))
    assert done == [8, 8]
    s = Store(db_url)
    assert len(s.list_shows(status="done")) == 16
    assert all(len(s.list_moments(f"{p}-{i}")) == 5 for p in "pq" for i in range(8))
    s.close()


def test_readers_do_not_wait_for_a_writer(db_url):
    a, b = Store(db_url), Store(db_url)
    a.create_all()
    _show(a, "s1")
    with a.engine.begin() as conn:  # an open write transaction in another connection
        conn.execute(sa.update(shows_table).where(shows_table.c.id == "s1").values(name="renamed"))
        t0 = time.perf_counter()
        assert b.get_show("s1")["name"] == "s1"  # sees the committed state, at once
        assert time.perf_counter() - t0 < 2.0
    assert b.get_show("s1")["name"] == "renamed"
    a.close()
    b.close()


# --------------------------------------------------------------------------- SQLite specifics


def test_sqlite_file_is_wal_with_foreign_keys(tmp_path):
    path = tmp_path / "deep" / "er" / "ace.db"
    store = Store(f"sqlite:///{path}")
    store.create_all()
    assert path.is_file()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    store.close()
    with sqlite3.connect(path) as raw:
        tables = {r[0] for r in raw.execute("select name from sqlite_master where type='table'")}
    assert {"shows", "moments", "clips"} <= tables


def test_database_errors_become_store_errors(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'empty.db'}")  # no create_all: no tables
    with pytest.raises(StoreError, match="listing shows failed"):
        store.list_shows()
    with pytest.raises(StoreError):
        Store("definitely not a url")
    store.close()


def test_postgres_url_gets_psycopg_driver():
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgresql+psycopg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("sqlite:////x/ace.db") == "sqlite:////x/ace.db"


def test_ramp_decisions_are_kept_per_tenant(store):
    from ace.types import RampDecision

    _show(store, "r1", tenant="acme")
    _show(store, "r2", tenant="globex")
    ds = [RampDecision("r1", 30.0, "probe", 0.01, "new room"), RampDecision("r2", 30.0, "ramp", 0.2, "orders up"),
          RampDecision("r1", 60.0, "ramp", 0.04, "highlight corroborated"),
          RampDecision("gone", 60.0, "cool", 0.0, "unknown room")]
    assert store.save_ramp_decisions(ds) == 3  # the unknown room is skipped
    hist = store.list_ramp_decisions("r1", tenant="acme")
    assert [(d["t"], d["level"], d["share"]) for d in hist] == [(30.0, "probe", 0.01), (60.0, "ramp", 0.04)]
    assert hist[-1]["reason"] == "highlight corroborated"
    assert store.list_ramp_decisions("r1", tenant="globex") == []
    assert [d["t"] for d in store.list_ramp_decisions("r1", tenant="acme", limit=1)] == [60.0]
    assert store.delete_show("r1", tenant="acme") and store.list_ramp_decisions("r1") == []
    assert len(store.list_ramp_decisions("r2")) == 1


def test_clip_reviews_and_lookup_per_tenant(store):
    _show(store, "s1", tenant="acme")
    m = _moment("s1", 1.0)
    store.save_results("s1", [m], [_clip(m)], settings_hash="h", tenant="acme")
    assert store.set_review(m.id, "approve", tenant="globex") is None  # not theirs
    assert store.set_review(m.id, "reject", tenant="acme", note="too short")["verdict"] == "reject"
    store.set_review(m.id, "approve", tenant="acme")
    assert store.list_reviews("s1", tenant="acme")[m.id]["verdict"] == "approve"
    assert store.list_reviews("s1", tenant="globex") == {}
    with pytest.raises(ValueError):
        store.set_review(m.id, "maybe", tenant="acme")
    clip = store.get_clip(m.id, tenant="acme")
    assert clip["path"].endswith(".mp4") and clip["score"] == m.score
    assert store.get_clip(m.id, tenant="globex") is None
    # a re-run that no longer finds the moment drops its review with it
    store.save_results("s1", [], [], settings_hash="h", tenant="acme")
    assert store.list_reviews("s1") == {}


def test_api_tokens_are_kept_hashed_and_can_be_revoked(store):
    tid, token = store.create_token("acme", name="ops laptop")
    assert token.startswith("ace_") and len(token) > 40
    assert store.token_tenant(token) == "acme"
    assert store.token_tenant(token + "x") is None and store.token_tenant("nope") is None
    listed = store.list_tokens("acme")
    assert [t["id"] for t in listed] == [tid] and "hash" not in listed[0]
    with store.engine.connect() as conn:  # the token itself is nowhere in the database
        assert token not in str(conn.execute(sa.text("SELECT * FROM api_tokens")).all())
    assert store.revoke_token(tid) and not store.revoke_token(tid)
    assert store.token_tenant(token) is None


def test_sessions_are_kept_hashed_expire_and_end_with_sign_out_or_their_token(store):
    tid, token = store.create_token("acme", name="web")
    secret = store.create_session(token, ttl_s=3600)
    assert secret and secret != token and token not in secret
    assert store.session_tenant(secret) == "acme"
    got = store.get_session(secret)
    assert got["tenant"] == "acme" and got["token_id"] == tid and got["expires_at"] > got["created_at"]
    with store.engine.connect() as conn:  # only the secret's hash is stored, never the secret
        rows = conn.execute(sa.text("SELECT * FROM sessions")).all()
    assert len(rows) == 1 and secret not in str(rows) and token not in str(rows)
    from ace.store import token_hash

    assert rows[0]._mapping["id"] == token_hash(secret)
    # an unknown, forged, overlong or API-token-shaped secret is no session
    for bad in ("", "nope", secret + "x", secret[:-1], "aces_" + "x" * 300, token):
        assert store.session_tenant(bad) is None and store.revoke_session(bad) is False
    # a session needs a valid token
    assert store.create_session(token + "x", ttl_s=60) is None and store.create_session("nope", ttl_s=60) is None
    with pytest.raises(ValueError):
        store.create_session(token, ttl_s=0)

    # sign-out: revoked at once, and only once; other sessions of the token live on
    other = store.create_session(token, ttl_s=3600)
    assert other != secret
    assert store.revoke_session(secret) is True and store.revoke_session(secret) is False
    assert store.session_tenant(secret) is None and store.session_tenant(other) == "acme"

    # expiry: a session is over at expires_at, and ended sessions are swept by the next sign-in
    short = store.create_session(token, ttl_s=0.5)
    assert store.session_tenant(short) == "acme"
    time.sleep(0.8)
    assert store.session_tenant(short) is None and store.get_session(short) is None
    fresh = store.create_session(token, ttl_s=3600)
    with store.engine.connect() as conn:
        ids = set(conn.execute(sa.text("SELECT id FROM sessions")).scalars())
    assert token_hash(short) not in ids and token_hash(fresh) in ids

    # revoking the API token ends every session opened with it, and no new one can be opened
    tid2, token2 = store.create_token("globex")
    theirs = store.create_session(token2, ttl_s=3600)
    assert store.revoke_token(tid)
    assert store.session_tenant(other) is None and store.session_tenant(fresh) is None
    assert store.create_session(token, ttl_s=3600) is None
    assert store.session_tenant(theirs) == "globex"  # another token's session is untouched
    # the join check alone also ends a session whose token is revoked (a token revoked by hand)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_tokens SET revoked_at = created_at WHERE id = :id"), {"id": tid2})
    assert store.session_tenant(theirs) is None


# --------------------------------------------------------------------------- rank and confidence


def test_rank_confidence_and_strength_round_trip(store):
    _show(store, "s1", tenant="acme")
    ms = [_moment("s1", 50.0, 0.9, rank=1, confidence=83.5, strong=True),
          _moment("s1", 10.0, 0.5, rank=3, confidence=31.25, strong=False),
          _moment("s1", 30.0, 0.7, rank=2, confidence=64.0, strong=True)]
    store.save_results("s1", ms, [_clip(ms[1])], settings_hash="h", tenant="acme")
    rows = store.list_moments("s1", tenant="acme")
    assert [(r["start"], r["rank"], r["confidence"], r["strong"]) for r in rows] == [
        (10.0, 3, 31.25, False), (30.0, 2, 64.0, True), (50.0, 1, 83.5, True)]
    assert all(type(r["rank"]) is int and type(r["strong"]) is bool for r in rows)
    clip = store.get_clip(ms[1].id, tenant="acme")
    assert (clip["rank"], clip["confidence"], clip["strong"]) == (3, 31.25, False)
    # a re-run that ranks differently updates them in place
    again = [_moment("s1", 50.0, 0.9, rank=2, confidence=70.0, strong=True),
             _moment("s1", 10.0, 0.5, rank=1, confidence=90.0, strong=True)]
    store.save_results("s1", again, [], settings_hash="h", tenant="acme")
    assert [(r["rank"], r["confidence"], r["strong"]) for r in store.list_moments("s1")] == [(1, 90.0, True), (2, 70.0, True)]


def test_moments_ordered_by_rank_and_filtered_by_confidence(store):
    _show(store, "s1", tenant="acme")
    _show(store, "s2", tenant="globex")
    ms = [_moment("s1", 10.0, 0.9, rank=2, confidence=60.0),
          _moment("s1", 20.0, 0.4, rank=0, confidence=20.0),  # not ranked: after the ranked ones
          _moment("s1", 30.0, 0.8, rank=1, confidence=80.0),
          _moment("s1", 5.0, 0.3, rank=0, confidence=10.0),
          _moment("s1", 40.0, 0.6, rank=3, confidence=40.0, strong=False)]
    store.save_results("s1", ms, [], settings_hash="h", tenant="acme")
    store.save_results("s2", [_moment("s2", 1.0, rank=1, confidence=99.0)], [], settings_hash="h", tenant="globex")
    assert [r["start"] for r in store.list_moments("s1")] == [5.0, 10.0, 20.0, 30.0, 40.0]  # time, by default
    assert [r["start"] for r in store.list_moments("s1", order="time")] == [5.0, 10.0, 20.0, 30.0, 40.0]
    by_rank = store.list_moments("s1", tenant="acme", order="rank")
    assert [(r["rank"], r["start"]) for r in by_rank] == [(1, 30.0), (2, 10.0), (3, 40.0), (0, 5.0), (0, 20.0)]
    assert [r["confidence"] for r in store.list_moments("s1", min_confidence=60)] == [60.0, 80.0]  # at least, in time order
    assert [r["rank"] for r in store.list_moments("s1", min_confidence=40, order="rank")] == [1, 2, 3]
    assert [r["rank"] for r in store.list_moments("s1", min_confidence=40, min_score=0.7, order="rank")] == [1, 2]
    assert store.list_moments("s1", min_confidence=100) == []
    assert store.list_moments("s1", tenant="globex", order="rank") == []  # another tenant's show: nothing
    with pytest.raises(ValueError, match="time, rank"):
        store.list_moments("s1", order="score")


NEW_MOMENT_COLUMNS = ("rank", "confidence", "strong")


def _old_schema(url: str) -> None:
    """ACE's tables as an older release made them: the moments table without rank, confidence and
    strong; a show with a moment, its clip and its review in them."""
    old = sa.MetaData()
    for t in metadata.sorted_tables:
        if t.name != "moments":
            t.to_metadata(old)
    sa.Table("moments", old, *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                                         server_default=c.server_default.arg if c.server_default is not None else None)
                               for c in moments_table.columns if c.name not in NEW_MOMENT_COLUMNS])
    raw = Store(url)  # its engine only (the folder made, the driver chosen): no create_all
    engine = raw.engine
    try:
        old.create_all(engine)
        now = "2024-05-01 10:00:00+00:00"
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO shows (id, tenant, name, duration, status, created_at, updated_at) "
                                 "VALUES ('old', 'acme', 'old show', 120, 'done', :t, :t)"), {"t": now})
            conn.execute(sa.text('INSERT INTO moments (id, show_id, tenant, start, "end", score, peak, reasons, clip_path, created_at) '
                                 "VALUES ('m-old', 'old', 'acme', 12.5, 22.5, 0.75, 15, '[]', '/out/m-old.mp4', :t)"), {"t": now})
            conn.execute(sa.text('INSERT INTO clips (moment_id, show_id, tenant, path, start, "end", mode, created_at) '
                                 "VALUES ('m-old', 'old', 'acme', '/out/m-old.mp4', 12, 22.5, 'fast', :t)"), {"t": now})
            conn.execute(sa.text("INSERT INTO reviews (moment_id, tenant, verdict, updated_at) VALUES ('m-old', 'acme', 'approve', :t)"),
                         {"t": now})
        with engine.connect() as conn:
            assert not {c["name"] for c in sa.inspect(conn).get_columns("moments")} & set(NEW_MOMENT_COLUMNS)
    finally:
        engine.dispose()


def test_create_all_adds_new_columns_to_an_older_database_and_keeps_its_rows(db_url):
    _old_schema(db_url)
    store = Store(db_url)
    with pytest.raises(StoreError, match="listing moments"):  # before the upgrade the columns are missing
        store.list_moments("old")
    store.create_all()
    store.create_all()  # again: nothing left to add, no error
    with store.engine.connect() as conn:
        cols = {c["name"]: c for c in sa.inspect(conn).get_columns("moments")}
    assert set(NEW_MOMENT_COLUMNS) <= set(cols) and not any(cols[c]["nullable"] for c in NEW_MOMENT_COLUMNS)
    # the old rows are all there, with the columns' defaults: unranked, confidence 0, strong
    [row] = store.list_moments("old", tenant="acme")
    assert (row["id"], row["start"], row["end"], row["score"], row["clip_path"]) == ("m-old", 12.5, 22.5, 0.75, "/out/m-old.mp4")
    assert (row["rank"], row["confidence"], row["strong"]) == (0, 0.0, True)
    assert type(row["rank"]) is int and type(row["strong"]) is bool
    assert [c["moment_id"] for c in store.list_clips("old", tenant="acme")] == ["m-old"]
    assert store.list_reviews("old", tenant="acme")["m-old"]["verdict"] == "approve"
    assert store.get_clip("m-old", tenant="acme")["rank"] == 0
    assert store.get_show("old", tenant="acme")["name"] == "old show"
    # and the upgraded database takes new results with their rank and confidence
    m = _moment("old", 12.5, 0.8, rank=1, confidence=72.0, strong=False)
    store.save_results("old", [m], [], settings_hash="h", tenant="acme")
    assert [(r["rank"], r["confidence"], r["strong"]) for r in store.list_moments("old", order="rank")] == [(1, 72.0, False)]
    store.close()


def test_processes_upgrading_one_older_database_at_once_all_succeed(db_url):
    _old_schema(db_url)
    stores = [Store(db_url) for _ in range(3)]
    start = threading.Barrier(len(stores))

    def upgrade(s: Store) -> None:
        start.wait()
        s.create_all()

    with ThreadPoolExecutor(len(stores)) as pool:
        for f in [pool.submit(upgrade, s) for s in stores]:
            f.result()
    with stores[0].engine.connect() as conn:
        names = [c["name"] for c in sa.inspect(conn).get_columns("moments")]
    assert all(names.count(c) == 1 for c in NEW_MOMENT_COLUMNS), names
    assert [(r["rank"], r["strong"]) for r in stores[1].list_moments("old")] == [(0, True)]
    for s in stores:
        s.close()


def test_a_clip_keeps_its_shape_and_burned_captions(store, db_url):
    """``format`` and ``burned`` are stored with the clip (and added to an older clips table)."""
    import dataclasses

    _show(store, "s1")
    ms = [_moment("s1", 30.0, 0.9), _moment("s1", 100.0, 0.4)]
    clips = [dataclasses.replace(_clip(ms[0]), format="vertical", burned=True), _clip(ms[1])]
    store.save_results("s1", ms, clips, settings_hash="h1")
    got = store.get_clip(ms[0].id)
    assert (got["format"], got["burned"]) == ("vertical", True)
    plain = store.get_clip(ms[1].id)
    assert (plain["format"], plain["burned"]) == ("source", False)
    if db_url.startswith("sqlite"):  # a database made before clips had a shape gets the columns
        import sqlalchemy as sa

        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE clips DROP COLUMN format")
            conn.exec_driver_sql("ALTER TABLE clips DROP COLUMN burned")
        again = Store(db_url)
        again.create_all()
        cols = {c["name"] for c in sa.inspect(again.engine).get_columns("clips")}
        assert {"format", "burned"} <= cols and again.get_clip(ms[1].id)["format"] == "source"
