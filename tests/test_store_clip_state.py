"""A clip's ``state`` (provisional | final) and ``revision`` in the store: kept with the clip,
replaced in place (one row), and added to a clips table made before they existed."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from ace.schema import clips_table, metadata
from ace.store import Store
from tests.test_store import _clip, _moment, _show, store  # noqa: F401 - the store fixture


def test_a_clip_is_replaced_in_place_with_its_state_and_revision(store):  # noqa: F811
    _show(store, "s1")
    m = _moment("s1", 30.0, 0.9)
    provisional = dataclasses.replace(_clip(m), state="provisional")
    store.save_results("s1", [m], [provisional], settings_hash="h1")
    got = store.get_clip(m.id)
    assert (got["state"], got["revision"]) == ("provisional", 0)
    created = got["created_at"]
    # the moment grew once final: same id (fixed), same file names, the row updated, revision 1
    grown = dataclasses.replace(m, end=m.end + 4.0, fixed_id=m.id)
    final = dataclasses.replace(_clip(m), end=grown.end, state="final", revision=1)
    store.save_results("s1", [grown], [final], settings_hash="h1")
    rows = store.list_clips("s1")
    assert len(rows) == 1 and rows[0]["moment_id"] == m.id and rows[0]["end"] == grown.end
    assert (rows[0]["state"], rows[0]["revision"]) == ("final", 1) and rows[0]["created_at"] == created
    [mrow] = store.list_moments("s1")
    assert mrow["id"] == m.id and mrow["end"] == grown.end
    # a clip made without them (a recorded show's) is final, revision 0; an unknown state is refused
    other = _moment("s1", 100.0, 0.4)
    store.save_results("s1", [grown, other], [final, _clip(other)], settings_hash="h1")
    assert (store.get_clip(other.id)["state"], store.get_clip(other.id)["revision"]) == ("final", 0)
    with pytest.raises(ValueError, match="unknown state"):
        store.save_results("s1", [other], [dataclasses.replace(_clip(other), state="draft")], settings_hash="h1")
    assert len(store.list_clips("s1")) == 2  # nothing of the refused save was written


def test_an_older_clips_table_gets_state_and_revision(db_url):
    """A clips table made before clips had a state: create_all adds both columns; its rows are
    final, revision 0, and new clips keep theirs."""
    old = sa.MetaData()
    for t in metadata.sorted_tables:
        if t.name != "clips":
            t.to_metadata(old)
    sa.Table("clips", old, *[sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                                       server_default=c.server_default.arg if c.server_default is not None else None)
                             for c in clips_table.columns if c.name not in ("state", "revision")])
    raw = Store(db_url)
    try:
        old.create_all(raw.engine)
        now = "2024-05-01 10:00:00+00:00"
        with raw.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO shows (id, tenant, name, duration, status, created_at, updated_at) "
                                 "VALUES ('old', 'acme', 'old show', 120, 'done', :t, :t)"), {"t": now})
            conn.execute(sa.text('INSERT INTO moments (id, show_id, tenant, start, "end", score, peak, reasons, clip_path, created_at) '
                                 "VALUES ('m-old', 'old', 'acme', 12.5, 22.5, 0.75, 15, '[]', '/out/m-old.mp4', :t)"), {"t": now})
            conn.execute(sa.text('INSERT INTO clips (moment_id, show_id, tenant, path, start, "end", mode, created_at) '
                                 "VALUES ('m-old', 'old', 'acme', '/out/m-old.mp4', 12, 22.5, 'fast', :t)"), {"t": now})
        with raw.engine.connect() as conn:
            assert not {"state", "revision"} & {c["name"] for c in sa.inspect(conn).get_columns("clips")}
    finally:
        raw.close()
    s = Store(db_url)
    s.create_all()
    with s.engine.connect() as conn:
        cols = {c["name"]: c for c in sa.inspect(conn).get_columns("clips")}
    assert {"state", "revision"} <= set(cols) and not cols["state"]["nullable"] and not cols["revision"]["nullable"]
    row = s.get_clip("m-old", tenant="acme")
    assert (row["state"], row["revision"]) == ("final", 0) and type(row["revision"]) is int
    m = _moment("old", 40.0)
    s.save_results("old", [m], [dataclasses.replace(_clip(m), state="provisional")], settings_hash="h", tenant="acme")
    assert s.get_clip(m.id, tenant="acme")["state"] == "provisional"
    s.close()
