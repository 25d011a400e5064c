"""What the commands print in a pipe or a narrow terminal: ids whole; a follower stopped by a signal
says one line and exits, with no traceback and no native stack dump."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from ace.console import Col, IdTable, say

ROOT = Path(__file__).resolve().parent.parent
IDS = ["rehearsal-evening-main-stage-1a2b3c4d", "rehearsal-evening-main-stage-9f8e7d6c", "backstage-0011aabb"]
DUMP_MARKS = ("Traceback", "Stack trace", "*** SIGTERM", "*** SIGHUP", "*** SIGINT", "PC: @", "logging.cc", "Aborted")


def _render(renderable_or_table, width: int | None) -> str:
    """What ``print`` writes to a console of ``width`` columns that is not a terminal (a pipe when None)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, legacy_windows=False)
    if isinstance(renderable_or_table, IdTable):
        renderable_or_table.print(console)
    else:
        console.print(renderable_or_table)
    return buf.getvalue()


def _stream_rows(ids=IDS) -> list[dict]:
    """Rows as the controller's ``status(tenant=...)`` returns them, with the ramp added as ``ace streams`` does."""
    rows = []
    for i, sid in enumerate(ids):
        rows.append({"id": sid, "name": sid.rsplit("-", 1)[0], "tenant": "default", "url": f"https://cdn.example/{sid}/index.m3u8",
                     "status": ["running", "ended", "failed"][i % 3], "error": "ConnectionError: the origin went away\nat segment 12" if i == 2 else "",
                     "analysed_until": 123.4, "lag_s": 0.8, "moments": 3, "clips": 2, "clip_latency_p95_s": 4.2, "reconnects": 1,
                     "ramp_level": "L2" if i == 0 else None, "ramp_share": 0.125 if i == 0 else None})
    return rows


# -- the table helper ------------------------------------------------------------------------------


def _table(n_other: int = 4) -> IdTable:
    t = IdTable("streams", [Col("id", id=True), "status"] + [Col(f"col {k}", justify="right") for k in range(n_other - 1)])
    for sid in IDS:
        t.add_row(sid, "running", *[f"{k * 1.5:.1f}" for k in range(n_other - 1)])
    return t


@pytest.mark.parametrize("n_other", [1, 4, 9])
def test_ids_whole_at_width_40(n_other):
    text = _render(_table(n_other), 40)
    for sid in IDS:
        assert sid in text, text
    assert "…" not in text


def test_ids_whole_at_every_width():
    t = _table(6)
    t.add_row("x", "a status that is long enough to fold", *["7"] * 5)
    for width in range(12, 220, 3):
        text = _render(t, width)
        assert all(sid in text for sid in IDS + ["x"]), (width, text)
        assert "…" not in text, (width, text)
        if t.fits(width):  # the table form: no line wider than the console (nothing cropped)
            assert "┃" in text and max(len(line) for line in text.splitlines()) <= width, (width, text)
        else:  # a line a row, ids first, nothing folded
            lines = text.splitlines()
            assert lines[0] == "streams" and [line.split()[0] for line in lines[1:]] == IDS + ["x"], text


def test_table_form_where_it_fits_records_where_not():
    t = _table(4)
    wide = _render(t, 120)
    assert "┏" in wide and all(sid in wide for sid in IDS)
    narrow = _render(t, 40)
    assert "┏" not in narrow
    assert f"{IDS[0]}  status: running; col 0: 0.0; col 1: 1.5; col 2: 3.0" in narrow.splitlines()


def test_cells_are_not_markup_and_multiline_cells_make_one_record_line():
    t = IdTable("t", [Col("show", id=True), "output / error"])
    t.add_row("[bold]clip[1].mp4", "line one\nline two")
    for width in (20, 30, 120):
        text = _render(t, width)
        assert "[bold]clip[1].mp4" in text
    assert not t.fits(20) and "[bold]clip[1].mp4  output / error: line one line two" in _render(t, 20).splitlines()


def test_say_never_breaks_a_line():
    buf = io.StringIO()
    say(Console(file=buf, width=20, color_system=None), f"stream {IDS[0]}: https://cdn.example/[x]/very/long/path/index.m3u8")
    assert buf.getvalue() == f"stream {IDS[0]}: https://cdn.example/[x]/very/long/path/index.m3u8\n"


# -- the commands' tables ----------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 80, None, 200])
def test_streams_table_ids_whole(width, monkeypatch):
    from commands.live import streams_table

    monkeypatch.delenv("COLUMNS", raising=False)
    text = _render(streams_table(_stream_rows()), width)
    for sid in IDS:
        assert sid in text, text
    assert "…" not in text and "origin" in text


@pytest.mark.parametrize("columns", [None, "40", "300"])
def test_ace_streams_rendering_in_a_pipe(columns):
    """The real stdout of a process writing into a pipe, with and without COLUMNS."""
    code = textwrap.dedent("""
        from commands.live import out, streams_table
        from tests.test_terminal_output import _stream_rows
        streams_table(_stream_rows()).print(out)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns:
        env["COLUMNS"] = columns
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    for sid in IDS:
        assert sid in r.stdout, r.stdout
    assert "…" not in r.stdout and "\x1b[" not in r.stdout
    width = int(columns) if columns else 80
    if "┃" in r.stdout:
        assert max(len(line) for line in r.stdout.splitlines()) <= width
    if columns == "300":
        assert "┃" in r.stdout  # wide enough for the table


def test_truth_shows_and_triage_tables_keep_ids_whole():
    from commands.main import shows_table, truth_table
    from commands.highlights import triage_table
    from ace.lag import Lag
    from ace.triage import TriageResult
    from ace.types import Moment, Reason, ShowResult

    cmp = {"rows": [{"planted": "123.4–131.9 s", "kinds": "chat burst, laughter", "found": "122.0–132.5 s", "score": "0.91",
                     "why": "chat, audio, speech keywords"},
                    {"planted": "(none)", "kinds": "", "found": "301.5–309.0 s", "score": "0.40", "why": "chat"}]}
    moments = [Moment(show_id="evening-show-2024-05-01", start=60.0 * k + 3.25, end=60.0 * k + 18.5, score=0.8, peak=60.0 * k + 9,
                      reasons=(Reason("chat", 0.9, "chat burst: 48 messages in 10 s, 12 emotes"),), rank=k + 1, confidence=83.0)
               for k in range(3)]
    triage = TriageResult(path="evening.jsonl", stem="evening", ok=True, moments=moments, duration=3600.0, messages=5000,
                          lag=Lag(6.0, "prior"), out_path="/very/long/output/folder/evening/moments.json")
    shows = [ShowResult(show_id="s1", path=f"/videos/{name}", ok=ok, duration=1800.0, seconds=90.0, error="" if ok else "no video stream [x]",
                        out_dir=f"/out/{name}" if ok else "") for name, ok in
             (("evening-show-2024-05-01-main-stage.mp4", True), ("broken-upload-2024-05-02[1].mp4", False))]
    rows = [{"show": Path(s.path).name, "moments": 0, "clips": 0, "out_dir": s.out_dir} for s in shows]
    cases = [(truth_table(cmp), ["123.4–131.9 s", "122.0–132.5 s", "301.5–309.0 s", "(none)"]),
             (triage_table(triage), [m.id for m in moments] + ["0:03", "1:03", "2:18"]),
             (shows_table(shows, rows), [r["show"] for r in rows])]
    for table, keys in cases:
        for width in (40, 60, 80, 120, 200):
            text = _render(table, width)
            for key in keys:
                assert key in text, (width, key, text)
            assert "…" not in text


# -- the follower and signals ------------------------------------------------------------------------

_FAKE_FOLLOWER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever started this test
signal.signal(signal.SIGHUP, signal.SIG_DFL)
from commands.live import follow

class Call:
    def __init__(self, fn):
        self.remote = fn

class Controller:  # answers as the controller does; `get` then blocks the way ray.get waits on a busy actor
    status = Call(lambda sid: {"status": "running"})
    clips = Call(lambda sid: [])
    moments = Call(lambda sid: [])

calls = []
def get(value):
    calls.append(value)
    if len(calls) > 3 and sys.argv[1] == "blocked":
        time.sleep(600)
    return value

sys.exit(follow(Controller(), ["rehearsal-evening-main-stage-1a2b3c4d"], poll_s=0.05, get=get))
"""


def _start(script: str, *args: str, limit_s: float = 120) -> subprocess.Popen:
    """``script`` in a child of its own session (killed with what it started after ``limit_s``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    watchdog = threading.Timer(limit_s, _kill, (p,))
    watchdog.daemon = True
    watchdog.start()
    return p


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # its own session: this child and what it started
        except ProcessLookupError:
            pass


def _stop(p: subprocess.Popen, sig: int, timeout: float = 60) -> tuple[int, str, str]:
    try:
        p.send_signal(sig)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    finally:
        if p.poll() is None:
            _kill(p)
            p.communicate()


@pytest.mark.parametrize("where", ["blocked", "polling"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_follower_detaches_quietly_on_signals(sig, where):
    from commands.live import DETACHED

    p = _start(_FAKE_FOLLOWER, where)
    assert p.stdout.readline().strip() == "rehearsal-evening-main-stage-1a2b3c4d: running"
    time.sleep(0.3)  # in its wait
    rc, _out, err = _stop(p, sig)
    assert rc == 0, err
    assert err.splitlines() == [DETACHED], err
    assert not any(mark in err for mark in DUMP_MARKS)


def test_follower_second_signal_leaves_at_once():
    from commands.live import _leave_now, _on_signals, _restore_signals

    previous = _on_signals(_leave_now)
    try:
        assert all(signal.getsignal(s) is _leave_now for s in previous)
    finally:
        _restore_signals(previous)
    assert all(signal.getsignal(s) == old for s, old in previous.items())


def test_follower_keeps_an_ignored_sighup(monkeypatch):
    """Under nohup SIGHUP stays ignored; the follower does not take it over."""
    from commands.live import _interrupt, _on_signals, _restore_signals

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        previous = _on_signals(_interrupt)
        try:
            assert signal.SIGHUP not in previous and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.SIGTERM in previous and signal.getsignal(signal.SIGTERM) is _interrupt
        finally:
            _restore_signals(previous)
    finally:
        signal.signal(signal.SIGHUP, old)


def test_follower_ends_with_the_streams_and_gives_the_handlers_back(capsys):
    from commands.live import follow

    class Call:
        def __init__(self, fn):
            self.remote = fn

    n = {"status": 0}

    def status(sid):
        n["status"] += 1
        return {"status": "running" if n["status"] < 3 else "ended"}

    moment = {"id": "m1", "start": 1.0, "end": 9.5, "score": 0.75, "reasons": [{"source": "chat"}]}
    controller = type("C", (), {"status": Call(status), "clips": Call(lambda sid: [{"moment_id": "m1", "path": "/c/m1.mp4"}]),
                                "moments": Call(lambda sid: [moment])})()
    before = signal.getsignal(signal.SIGTERM)
    assert follow(controller, ["room-1a2b3c4d"], poll_s=0.01, get=lambda v: v) == 0
    assert signal.getsignal(signal.SIGTERM) == before
    out = capsys.readouterr().out.splitlines()
    assert out == ["room-1a2b3c4d: running", "room-1a2b3c4d: moment 1.0-9.5 s score 0.75 (chat) -> /c/m1.mp4", "room-1a2b3c4d: ended"]


def test_follower_with_a_closed_stdout_detaches_quietly():
    """``ace live URL | head -1``: the reader goes away, the follower says so once and exits 0."""
    from commands.live import DETACHED

    flapping = _FAKE_FOLLOWER.replace('status = Call(lambda sid: {"status": "running"})',
                                      'status = Call(lambda sid: {"status": ["running", "reconnecting"][len(calls) // 3 % 2]})')
    assert flapping != _FAKE_FOLLOWER
    r, w = os.pipe()
    p = subprocess.Popen([sys.executable, "-c", flapping, "polling"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         stdout=w, stderr=subprocess.PIPE, text=True, start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            assert f.readline().strip() == "rehearsal-evening-main-stage-1a2b3c4d: running"
        _out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            _kill(p)
            p.communicate()
    assert p.returncode == 0 and err.splitlines() == [DETACHED], err


_RAY_FOLLOWER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
import ray
from workers.cluster import init_ray, shutdown_ray

init_ray(num_cpus=1, data_dir=sys.argv[1])

@ray.remote(num_cpus=0)
class Controller:  # answers once, then keeps the follower waiting in ray.get
    def __init__(self):
        self.calls = 0
    def status(self, sid):
        self.calls += 1
        if self.calls > 1:
            time.sleep(300)
        return {"status": "running"}
    def clips(self, sid):
        return []
    def moments(self, sid):
        return []

from commands.live import follow

controller = Controller.remote()
ray.get(controller.clips.remote(""))  # started
try:
    rc = follow(controller, ["rehearsal-evening-main-stage-1a2b3c4d"], poll_s=0.05)
finally:
    shutdown_ray()  # as `ace`'s main does on the way out
sys.exit(rc)
"""


def test_follower_in_ray_get_detaches_without_a_stack_dump(tmp_path_factory):
    """A real local Ray with the follower blocked in ray.get on a busy actor, then SIGTERM."""
    from commands.live import DETACHED

    data = tmp_path_factory.mktemp("r")  # short: Ray's socket paths live under it
    p = _start(_RAY_FOLLOWER, str(data))
    try:
        line = p.stdout.readline()
        assert line.strip() == "rehearsal-evening-main-stage-1a2b3c4d: running", line + (p.stderr.read() if p.poll() is not None else "")
        time.sleep(1.0)  # the second status call is in ray.get now
        t0 = time.monotonic()
        rc, _out, err = _stop(p, signal.SIGTERM, timeout=60)
    finally:
        if p.poll() is None:
            _kill(p)
            p.communicate()
    assert rc == 0, err
    assert not any(mark in err for mark in DUMP_MARKS), err
    assert [line for line in err.splitlines() if "detached" in line] == [DETACHED], err
    assert time.monotonic() - t0 < 30
