"""The stream worker keeps a provisional clip, then confirms or replaces the same row and files in
place; the ramp policy hears of a moment once; a restart finalises what was provisional."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ace.config import Settings
from ace.live.analyzer import LiveUpdate
from ace.live.ingest import IngestOptions
from ace.types import Clip, Moment
from workers.live import StreamSpec, StreamWorker


def _cut(folder: Path, mid: str, video: bytes, captions: str = "1\n00:00:00,000 --> 00:00:01,000\nhi\n") -> Clip:
    """What the analyzer's cut leaves in its clip folder: ``<id>.mp4``, ``.srt``, ``.jpg``."""
    folder.mkdir(parents=True, exist_ok=True)
    for ext, data in ((".mp4", video), (".srt", captions.encode()), (".jpg", b"jpeg")):
        (folder / f"{mid}{ext}").write_bytes(data)
    return Clip(mid, str(folder / f"{mid}.mp4"), 20.0, 34.0, "exact", str(folder / f"{mid}.srt"), str(folder / f"{mid}.jpg"))


@pytest.fixture(params=["local", "storage"])
def worker(request, short_show, tmp_path):
    extra = {}
    if request.param == "storage":  # clips go to a shared folder, and leave the worker's
        (tmp_path / "share").mkdir()
        extra = {"clip_storage": str(tmp_path / "share")}
    settings = Settings(data_dir=tmp_path / "data", cpu_threads=1, **extra)
    w = StreamWorker(StreamSpec("room", str(short_show.video)), settings, IngestOptions(segment_s=2.0), with_speech=False)
    yield w
    w.analyzer.close()


def _rows(w: StreamWorker) -> list[dict]:
    return w.store.list_clips("room")


def test_a_provisional_clip_is_confirmed_in_place(worker):
    w = worker
    m = Moment("room", 20.0, 34.0, 0.9, 27.0)
    clip = dataclasses.replace(_cut(w.clip_dir, m.id, b"first cut"), state="provisional")
    new = w._take(LiveUpdate(moments=[m], clips=[clip], provisional={m.id}, latency_s={m.id: 5.0}))
    assert new == [m] and len(w._found) == 1
    [row] = _rows(w)
    assert (row["state"], row["revision"]) == ("provisional", 0)
    published = row["path"]
    # confirmed: the analyzer wrote the captions again; the video it cut is where the worker put it
    (w.clip_dir / f"{m.id}.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nhi there\n")
    final = dataclasses.replace(clip, state="final")
    assert w._take(LiveUpdate(moments=[m], clips=[final], confirmed={m.id}, final_latency_s={m.id: 7.0})) == []
    [row] = _rows(w)
    assert (row["state"], row["revision"], row["path"]) == ("final", 0, published)
    assert Path(row["path"]).read_bytes() == b"first cut" and "hi there" in Path(row["srt_path"]).read_text()
    assert len(w._found) == 1  # the ramp policy heard of it once
    st = w.status()
    assert (st["provisional_clips"], st["confirmed_clips"], st["replaced_clips"]) == (1, 1, 0), st
    assert st["clip_latencies"] == [5.0] and st["final_clip_latencies"] == [7.0] and st["final_clip_latency_p50_s"] == 7.0
    assert st["moments"] == st["clips"] == 1


def test_a_provisional_clip_is_replaced_in_place(worker):
    w = worker
    m = Moment("room", 20.0, 34.0, 0.9, 27.0)
    clip = dataclasses.replace(_cut(w.clip_dir, m.id, b"first cut"), state="provisional")
    w._take(LiveUpdate(moments=[m], clips=[clip], provisional={m.id}, latency_s={m.id: 5.0}))
    [before] = _rows(w)
    # final with other edges: the same id, cut again under the same names
    grown = Moment("room", 20.0, 38.0, 0.9, 30.0, fixed_id=m.id)
    again = dataclasses.replace(_cut(w.clip_dir, m.id, b"second cut"), end=38.0, state="final", revision=1)
    assert w._take(LiveUpdate(moments=[grown], clips=[again], replaced={m.id}, final_latency_s={m.id: 9.0})) == []
    [row] = _rows(w)
    assert (row["moment_id"], row["state"], row["revision"], row["end"]) == (m.id, "final", 1, 38.0)
    assert row["path"] == before["path"] and Path(row["path"]).read_bytes() == b"second cut"
    assert row["created_at"] == before["created_at"]
    [mrow] = w.store.list_moments("room")
    assert (mrow["id"], mrow["end"]) == (m.id, 38.0)
    assert len(w._found) == 1 and [c["moment_id"] for c in w.clips()] == [m.id]
    assert [x["id"] for x in w.moments()] == [m.id]
    st = w.status()
    assert (st["provisional_clips"], st["confirmed_clips"], st["replaced_clips"]) == (1, 0, 1), st


def test_provisional_clips_are_final_after_a_restart_or_a_stop(short_show, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", cpu_threads=1)
    spec = StreamSpec("room", str(short_show.video))
    first = StreamWorker(spec, settings, IngestOptions(segment_s=2.0), with_speech=False)
    m = Moment("room", 20.0, 34.0, 0.9, 27.0)
    clip = dataclasses.replace(_cut(first.clip_dir, m.id, b"cut"), state="provisional")
    first._take(LiveUpdate(moments=[m], clips=[clip], provisional={m.id}))
    first._save_state()  # the crash comes after this
    assert [r["state"] for r in first.store.list_clips("room")] == ["provisional"]
    second = StreamWorker(spec, settings, IngestOptions(segment_s=2.0), with_speech=False)
    assert [r["state"] for r in second.store.list_clips("room")] == ["final"]
    assert second._clips[m.id].state == "final" and second._moments[m.id].id == m.id
    # a moment whose edges moved keeps its id when read back
    grown = Moment("room", 20.0, 38.0, 0.9, 30.0, fixed_id=m.id)
    later = dataclasses.replace(_cut(second.clip_dir, "x", b"x"), moment_id=m.id, state="provisional", end=38.0)
    second._take(LiveUpdate(moments=[grown], clips=[later], provisional=set()))
    third = StreamWorker(spec, settings, IngestOptions(segment_s=2.0), with_speech=False)
    assert third._moments[m.id].end == 38.0 and third._moments[m.id].id == m.id
    # a stream stopped for good leaves no clip provisional; one suspended leaves it to the next worker
    third._clips[m.id] = dataclasses.replace(third._clips[m.id], state="provisional")
    third._save_results()
    third._finish("suspended")
    assert [r["state"] for r in third.store.list_clips("room")] == ["provisional"]
    third._finish("stopped")
    assert [r["state"] for r in third.store.list_clips("room")] == ["final"]
    for w in (first, second, third):
        w.analyzer.close()
