"""Live streams end to end: a stream worker following a file played at real speed, and the Ray
controller with a stream actor that is killed mid-stream."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ace.config import Settings
from ace.events import load_events
from ace.live.ingest import IngestOptions
from workers.controller import LiveController
from workers.live import (
    EventTail,
    StreamSpec,
    StreamWorker,
    check_stream_id,
    new_stream_id,
)

OFFSET = 15.0  # the rehearsal file starts 15 s into the sample show
LENGTH = 70.0  # the highlight at about 27-38 s is final well before the end, however its edges snap


@pytest.fixture(scope="module")
def rehearsal(short_show, tmp_path_factory):
    """70 s of the sample show (its highlight at about 27-38 s) and its events on the same clock."""
    folder = tmp_path_factory.mktemp("rehearsal")
    video = folder / "show.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", str(OFFSET), "-t", str(LENGTH), "-i", str(short_show.video),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", str(video)], check=True)
    events = [e for e in load_events(short_show.events).events if OFFSET <= e.t < OFFSET + LENGTH]
    truth = json.loads(Path(short_show.truth).read_text())
    highlights = [(h["start"] - OFFSET, h["end"] - OFFSET) for h in truth["highlights"] if OFFSET <= h["start"] < OFFSET + LENGTH]
    assert highlights
    return video, [e.__class__(e.t - OFFSET, e.kind, e.user, e.value, e.text) for e in events], highlights


class _Appender(threading.Thread):
    """Appends events to a JSONL file as their time comes (a chat log being written live)."""

    def __init__(self, path: Path, events):
        super().__init__(daemon=True)
        self.path, self.events, self.t0 = path, sorted(events, key=lambda e: e.t), time.time()
        self.stop = threading.Event()

    def run(self):
        from ace.events import event_to_json

        with open(self.path, "a") as fh:
            for e in self.events:
                while time.time() - self.t0 < e.t and not self.stop.is_set():
                    time.sleep(0.05)
                fh.write(event_to_json(e) + "\n")
                fh.flush()


def test_event_tail_reads_complete_lines_and_reports_bad_ones(tmp_path):
    path = tmp_path / "chat.jsonl"
    tail = EventTail(path)
    assert tail.read() == []  # not there yet
    path.write_text('{"t": 1, "kind": "chat", "user": "a"}\n{"t": 2, "kind": "li')
    assert [e.t for e in tail.read()] == [1.0]
    with open(path, "a") as fh:
        fh.write('ke", "user": "b"}\nnot json\n')
    got = tail.read()
    assert [(e.t, e.kind) for e in got] == [(2.0, "like")]
    assert tail.bad_lines == 1


def test_stream_ids_are_safe():
    assert check_stream_id(new_stream_id("My Room / 1")) .startswith("My-Room-1-")
    for bad in ("", "../x", "a b", "x" * 65):
        with pytest.raises(ValueError):
            check_stream_id(bad)


def test_a_highlight_is_clipped_while_the_stream_still_runs(rehearsal, tmp_path):
    video, events, highlights = rehearsal
    chat = tmp_path / "chat.jsonl"
    chat.touch()
    settings = Settings(data_dir=tmp_path / "data", cpu_threads=1)
    worker = StreamWorker(StreamSpec("rehearsal", str(video), events=str(chat)), settings,
                          IngestOptions(segment_s=2.0))
    appender = _Appender(chat, events)
    appender.start()
    worker.start()
    t0 = time.time()
    first_clip_at = None
    try:
        while time.time() - t0 < LENGTH + 40:
            st = worker.status()
            if first_clip_at is None and st["clips"] > 0:
                first_clip_at = time.time() - t0
            if st["status"] in ("ended", "failed", "stopped"):
                break
            time.sleep(0.5)
    finally:
        appender.stop.set()
        final = worker.stop()
    assert final["status"] == "ended", final
    assert first_clip_at is not None and first_clip_at < LENGTH, f"first clip after {first_clip_at} s of a {LENGTH} s stream"
    moments = worker.moments()
    h0, h1 = highlights[0]
    hit = [m for m in moments if m["start"] < h1 and m["end"] > h0]
    assert hit, (moments, highlights)
    clips = worker.clips()
    assert clips and all(Path(c["path"]).is_file() for c in clips)
    assert final["clip_latency_p95_s"] is not None and final["clip_latency_p95_s"] < 30
    # the store holds the same, once each
    rows = worker.store.list_moments("rehearsal")
    assert sorted(r["id"] for r in rows) == sorted(m["id"] for m in moments)
    assert worker.store.get_show("rehearsal")["status"] == "done"


def test_bad_urls_are_refused_before_anything_starts(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    from ace.errors import InputError

    with pytest.raises(InputError):
        StreamWorker(StreamSpec("bad", "concat:/etc/passwd|x"), settings, with_speech=False)
    controller = LiveController(settings={"data_dir": str(tmp_path / "data")})
    with pytest.raises(ValueError, match="scheme|protocol|allowed"):
        controller.submit("gopher://example.com/x")


@pytest.mark.usefixtures("ray_local")
def test_controller_streams_survive_a_killed_actor_without_duplicates(rehearsal, tmp_path):
    import ray

    from workers.controller import ControllerActor

    video, events, highlights = rehearsal
    controller = ControllerActor.options(num_cpus=0.05).remote({"data_dir": str(tmp_path / "data"), "cpu_threads": 1,
                                                                "url_allowlist": ["127.0.0.1"]})
    sid = ray.get(controller.submit.remote(str(video), name="room"))
    other = ray.get(controller.submit.remote("http://127.0.0.1:9/never.m3u8", name="dead",
                                             ingest_options={"start_timeout_s": 5.0}))
    t0 = time.time()
    pushed = 0
    killed = False
    try:
        while time.time() - t0 < LENGTH + 60:
            now = time.time() - t0
            due = [e for e in events[pushed:] if e.t <= now]
            if due:
                ray.get(controller.push_events.remote(sid, [e.__dict__ if hasattr(e, "__dict__") else
                                                             {"t": e.t, "kind": e.kind, "user": e.user, "value": e.value, "text": e.text}
                                                             for e in due]))
                pushed += len(due)
            if not killed and now > 20:
                ray.kill(ray.get_actor(f"ace:stream:{sid}", namespace="ace"), no_restart=False)
                killed = True
            st = ray.get(controller.status.remote(sid))
            if st["status"] in ("ended", "failed", "stopped"):
                break
            time.sleep(0.5)
        dead = ray.get(controller.status.remote(other))
        assert dead["status"] == "failed" and dead["error"], dead
        st = ray.get(controller.status.remote(sid))
        assert st["status"] == "ended", {k: st.get(k) for k in ("status", "error", "restarts", "outages")}
        assert st["restarts"] >= 1
        moments = ray.get(controller.moments.remote(sid))
        ids = [m["id"] for m in moments]
        assert ids and len(ids) == len(set(ids))
        spans = sorted((m["start"], m["end"]) for m in moments)
        assert all(a[1] <= b[0] + 1.0 for a, b in zip(spans, spans[1:])), f"overlapping moments: {spans}"
        # another tenant sees nothing of it
        with pytest.raises(ray.exceptions.RayTaskError):
            ray.get(controller.status.remote(sid, tenant="someone-else"))
    finally:
        for s in (sid, other):
            try:
                ray.get(controller.stop.remote(s), timeout=30)
            except Exception:
                pass
        ray.kill(controller)


@pytest.mark.usefixtures("ray_local")
def test_a_restarted_controller_adopts_the_running_streams(rehearsal, tmp_path):
    """The cluster's controller crashes mid-stream: its stream actors (detached) keep running, and
    the controller Ray starts again adopts them, tenant and all; shutdown ends every tenant's."""
    import ray

    from workers.controller import get_controller

    video, _events, _h = rehearsal
    controller = get_controller(create=True, settings={"data_dir": str(tmp_path / "data"), "cpu_threads": 1})
    sid = ray.get(controller.submit.remote(str(video), name="room", tenant="acme"))
    try:
        t0 = time.time()
        while ray.get(controller.status.remote(sid, tenant="acme"))["status"] != "live" and time.time() - t0 < 60:
            time.sleep(0.5)
        before = ray.get(controller.status.remote(sid, tenant="acme"))
        assert before["status"] == "live", before
        ray.kill(controller, no_restart=False)  # a crash: Ray starts it again
        t0 = time.time()
        adopted: list = []
        while time.time() - t0 < 90:
            try:
                adopted = ray.get(get_controller(create=False).streams.remote(tenant="acme"), timeout=10)
                break
            except Exception:  # noqa: BLE001 - still restarting
                time.sleep(1.0)
        assert adopted == [sid]
        controller = get_controller(create=False)
        assert ray.get(controller.streams.remote()) == []  # still per tenant
        after = ray.get(controller.status.remote(sid, tenant="acme"))
        assert after["status"] in ("live", "ended") and after["restarts"] == 0, after  # the same actor ran on
        assert after["segments"] >= before["segments"]
    finally:
        assert ray.get(controller.shutdown_streams.remote(), timeout=120) == 1
        ray.kill(controller)
    with pytest.raises(ValueError):
        ray.get_actor(f"ace:stream:{sid}", namespace="ace")  # ended with the shutdown


def test_events_are_followed_from_a_url_being_appended_to(tmp_path):
    """A JSONL log served over http and growing: read in pieces (Range), a half-written line waits
    for its newline, bad lines are counted; an internal URL is refused unless allowed."""
    import functools
    import http.server

    from ace.errors import InputError
    from workers.live import UrlEventTail

    log_file = tmp_path / "chat.jsonl"
    log_file.write_text('{"t": 1, "kind": "chat", "user": "a"}\n{"t": 2, "kind": "like", "us')

    class Ranged(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            data = log_file.read_bytes()
            start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Ranged, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/chat.jsonl"
    try:
        with pytest.raises(InputError, match="ACE_URL_ALLOWLIST"):
            UrlEventTail(url)
        tail = UrlEventTail(url, allow=["127.0.0.1"], every_s=0.0)
        assert [(e.t, e.kind) for e in tail.read()] == [(1.0, "chat")]
        with open(log_file, "a") as fh:
            fh.write('er": "b"}\nnot json\n{"t": 3, "kind": "order", "user": "c", "promoted": true}\n')
        got = tail.read()
        assert [(e.t, e.kind, e.user) for e in got] == [(2.0, "like", "b"), (3.0, "order", "c")] and got[1].promoted
        assert tail.bad_lines == 1 and tail.read() == []  # nothing new: 416
        assert tail._proxy.forwarded >= 3
        tail.close()
    finally:
        srv.shutdown()


def test_a_restarted_worker_keeps_the_buffer_from_before_the_crash(short_show, tmp_path):
    """The state file lists the buffer on the stream clock; a new worker (what Ray restarts) moves
    those segments aside before its ingest clears the folder, and still finds them by time."""
    settings = Settings(data_dir=tmp_path / "data", cpu_threads=1)
    spec = StreamSpec("crash", str(short_show.video))
    # played at real speed, so the stream is still running at the "crash"
    first = StreamWorker(spec, settings, IngestOptions(segment_s=2.0), with_speech=False)
    first.ingest.start()
    t0 = time.time()
    while first.analyzer.analysed_until < 12.0 and time.time() - t0 < 60:
        first.step()
        time.sleep(0.2)
    before = first._covering(0.0, first.analyzer.analysed_until)
    assert len(before) >= 5 and first.ingest._run is not None
    first.ingest._terminate(first.ingest._run)  # the crash: ffmpeg gone, nothing finalised

    second = StreamWorker(spec, settings, IngestOptions(segment_s=2.0), with_speech=False)
    assert second._restarts == 1 and second._offset >= first.analyzer.analysed_until
    kept = second._covering(0.0, first.analyzer.analysed_until)
    assert [(sg.start, sg.end) for sg in kept] == [(round(sg.start, 6), round(sg.end, 6)) for sg in before]
    assert all(Path(sg.path).is_file() and "buffer-prev" in sg.path for sg in kept)
    second.ingest.start()  # clears buffer/ of the old runs: the kept segments are elsewhere
    assert all(Path(sg.path).is_file() for sg in kept)
    second.ingest.discard()
