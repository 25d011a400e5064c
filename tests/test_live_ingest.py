"""Live ingest with real ffmpeg and real loopback sources on 127.0.0.1: a file played at real speed,
an HLS stream written by ``ffmpeg -re`` and served by a threaded http.server (which the tests stop for
20 s), an RTMP stream from an ffmpeg listener, and sources that never answer, are not media, or die
at start. Every process and server a test starts is stopped when it ends, also on failure."""

from __future__ import annotations

import contextlib
import functools
import http.server
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ace.errors import InputError
from ace.live.ingest import (
    FINAL_STATUSES,
    PROTOCOL_WHITELIST,
    SOURCE_KINDS,
    Ingest,
    IngestOptions,
    RollingBuffer,
    ingest_command,
    source_kind,
)
from ace.types import Segment
from tests.media_factory import ffmpeg_bin, make_video

# a tiny live source: 320x180 at 15 fps, a keyframe every second, a sine tone
LAVFI_VIDEO = "testsrc=size=320x180:rate=15"
LAVFI_AUDIO = "sine=frequency=440:sample_rate=22050"
ENCODE = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-b:v", "150k",
          "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k"]
TOL = 0.01  # seconds: segment times from the CSV list are rounded to microseconds (FLV: milliseconds)

#: the test servers listen on loopback, which the URL guard refuses unless allowed
LOOPBACK = IngestOptions(allow=("127.0.0.1",))


# ---------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(args: list[str]) -> Iterator[subprocess.Popen]:
    """An ffmpeg (``args`` after the binary) that is stopped when the block ends."""
    cmd = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """A threaded http.server on 127.0.0.1:``port`` that can be stopped and started again."""

    def __init__(self, handler: Callable[..., http.server.BaseHTTPRequestHandler], port: int | None = None):
        self.handler = handler
        self.port = port or free_port()
        self._srv: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Server:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        srv.daemon_threads = True
        self._srv = srv
        self._thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._thread.join(timeout=5)
            self._srv = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class HtmlOr404(http.server.BaseHTTPRequestHandler):
    """An ordinary web server: an HTML page for every path, except 404 under /missing."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith("/missing"):
            self.send_error(404, "Not Found")
            return
        body = b"<!doctype html><html><head><title>Shop</title></head><body>" + b"<p>hello</p>" * 200 + b"</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Watch:
    """An Ingest under test: polls it, keeps every segment with the wall time it arrived."""

    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.t0 = time.monotonic()
        self.got: list[tuple[float, Segment]] = []
        self.statuses: list[tuple[float, str]] = []

    def poll(self) -> None:
        for seg in self.ingest.poll():
            self.got.append((time.monotonic() - self.t0, seg))
        st = self.ingest.status
        if not self.statuses or self.statuses[-1][1] != st:
            self.statuses.append((time.monotonic() - self.t0, st))

    @property
    def segments(self) -> list[Segment]:
        return [s for _, s in self.got]


def pump(watches: list[Watch], until: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    """Poll every watched ingest until ``until()`` holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        for w in watches:
            w.poll()
        if until():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


def assert_contiguous(segments: list[Segment]) -> None:
    for a, b in zip(segments, segments[1:]):
        assert abs(b.start - a.end) < TOL, (a, b)
        assert b.seq == a.seq + 1


@contextlib.contextmanager
def ingesting(*ingests: Ingest) -> Iterator[None]:
    """Start the ingests; stop them (and so their ffmpeg) however the block ends."""
    try:
        for ing in ingests:
            ing.start()
        yield
    finally:
        for ing in ingests:
            ing.stop()
            assert ing.stats()["ffmpeg_pid"] is None


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> Path:
    """6 s of 320x180 H.264 at 15 fps with a keyframe every second, AAC tone."""
    return make_video(tmp_path_factory.mktemp("src") / "show.mp4", duration=6, size=(320, 180), fps=15,
                      gop=15, bframes=0, sample_rate=22050, preset="ultrafast")


@pytest.fixture
def hls_source(tmp_path) -> Iterator[Path]:
    """``ffmpeg -re`` writing a live HLS playlist (1 s segments, 6 in the list) into a folder."""
    folder = tmp_path / "hls"
    folder.mkdir()
    args = ["-re", "-f", "lavfi", "-i", LAVFI_VIDEO, "-re", "-f", "lavfi", "-i", LAVFI_AUDIO, *ENCODE,
            "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "delete_segments",
            str(folder / "live.m3u8")]
    with process(args) as proc:
        deadline = time.monotonic() + 15
        playlist = folder / "live.m3u8"
        while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= 3):
            assert proc.poll() is None, "HLS publisher died"
            assert time.monotonic() < deadline, "HLS publisher wrote no playlist"
            time.sleep(0.2)
        yield folder


def rtmp_publisher(port: int) -> list[str]:
    """ffmpeg arguments for an RTMP server on 127.0.0.1:port that plays a live lavfi stream to one client."""
    return ["-re", "-f", "lavfi", "-i", LAVFI_VIDEO, "-re", "-f", "lavfi", "-i", LAVFI_AUDIO, *ENCODE,
            "-f", "flv", "-listen", "1", f"rtmp://127.0.0.1:{port}/live/test"]


# -------------------------------------------------------------------------- sources and commands


@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1:8080/live/room.m3u8", "hls"),
    ("https://cdn.example.com/a/b/index.M3U8?token=x", "hls"),
    ("http://127.0.0.1:8080/live/room.flv", "http"),
    ("https://cdn.example.com/live.ts", "http"),
    ("rtmp://127.0.0.1/live/x", "rtmp"),
    ("rtmps://live.example.com:443/app/key", "rtmp"),
    ("rtsp://10.0.0.2:554/stream1", "rtsp"),
    ("RTSPS://cam.example.com/s", "rtsp"),
    ("/srv/shows/rehearsal.mp4", "file"),
    ("shows/rehearsal.mp4", "file"),
    ("file:///srv/shows/rehearsal.mp4", "file"),
    ("file:/srv/shows/rehearsal.mp4", "file"),
])
def test_source_kind(url, kind):
    assert kind in SOURCE_KINDS
    assert source_kind(url) == kind


@pytest.mark.parametrize("url", [
    "concat:/a.ts|/b.ts", "subfile:,start,0,end,10,:/etc/passwd", "data:video/mp4;base64,AAAA",
    "pipe:0", "ftp://example.com/a.mp4", "udp://239.0.0.1:1234", "srt://127.0.0.1:9000", "tcp://127.0.0.1:1",
    "gopher://x/", "hls+http://example.com/a.m3u8", "crypto+http://example.com/a.ts", "", "http:///nohost.flv",
    "file://remote.example.com/share/a.mp4", " http://127.0.0.1/a.flv",
])
def test_source_kind_refuses(url):
    with pytest.raises(InputError) as e:
        source_kind(url)
    if url.startswith(("concat", "ftp", "pipe")):
        assert "http://" in str(e.value) and "rtmp://" in str(e.value)  # names what is allowed


def test_ingest_command_by_kind(tmp_path):
    opts = IngestOptions(segment_s=3.0, rw_timeout_s=7.5, reconnect_delay_max_s=12.0)

    http = ingest_command("http://127.0.0.1:9/live.m3u8", tmp_path, opts)
    i = http.index("-i")
    before = http[:i]
    for flag, value in [("-reconnect", "1"), ("-reconnect_streamed", "1"), ("-reconnect_on_network_error", "1"),
                        ("-reconnect_on_http_error", "5xx"),
                        ("-reconnect_delay_max", "12"), ("-rw_timeout", "7500000"),
                        ("-protocol_whitelist", PROTOCOL_WHITELIST["hls"])]:
        assert before[before.index(flag) + 1] == value
    assert "file" not in PROTOCOL_WHITELIST["hls"].split(",")
    flv = ingest_command("http://127.0.0.1:9/live.flv", tmp_path, opts)
    before_flv = flv[:flv.index("-i")]
    for flag in ("-reconnect", "-reconnect_on_network_error", "-reconnect_delay_max", "-rw_timeout"):
        assert flag in before_flv
    # a live FLV response is never resumed in place (the demuxer cannot follow the fresh stream a
    # server sends): ffmpeg exits and the ingest restarts it
    assert "-reconnect_streamed" not in flv
    assert before_flv[before_flv.index("-protocol_whitelist") + 1] == "http,https,tcp,tls"
    assert http[i + 1] == "http://127.0.0.1:9/live.m3u8"
    assert "-re" not in http
    after = " ".join(http[i:])
    assert "-map 0:v:0? -map 0:a:0? -c copy -f segment -segment_time 3 -segment_format mpegts" in after
    assert f"-segment_list {tmp_path}/segments.csv -segment_list_type csv" in after
    assert "-reset_timestamps 0" in after and http[-1] == f"{tmp_path}/%06d.ts"

    rtmp = ingest_command("rtmp://127.0.0.1/live/x", tmp_path, opts)
    assert "-reconnect" not in rtmp and "-timeout" not in rtmp  # rtmp's -timeout would make it listen
    assert rtmp[rtmp.index("-rw_timeout") + 1] == "7500000"
    assert rtmp[rtmp.index("-protocol_whitelist") + 1] == "rtmp,rtmps,tcp,tls"

    rtsp = ingest_command("rtsp://127.0.0.1/s", tmp_path, opts)
    assert rtsp[rtsp.index("-rtsp_transport") + 1] == "tcp"
    assert rtsp[rtsp.index("-timeout") + 1] == "7500000"

    f = ingest_command(str(tmp_path / "concat:x.mp4"), tmp_path, opts)
    assert "-re" in f[: f.index("-i")]
    assert f[f.index("-i") + 1] == "file:" + str(tmp_path / "concat:x.mp4")  # never read as a protocol
    assert f[f.index("-protocol_whitelist") + 1] == "file"
    fast = ingest_command("file:///a/b.mp4", tmp_path, IngestOptions(realtime_file=False))
    assert "-re" not in fast and fast[fast.index("-i") + 1] == "file:/a/b.mp4"

    with pytest.raises(InputError):
        ingest_command("concat:/a.ts|/b.ts", tmp_path)


def test_options_are_checked():
    assert IngestOptions().buffer_s == 600.0 and IngestOptions().max_restarts is None
    for bad in [dict(segment_s=0), dict(buffer_s=1, segment_s=2), dict(backoff_jitter=1.5),
                dict(max_restarts=-1), dict(start_timeout_s=0), dict(ended_after_s=0),
                dict(endlist_grace_s=-1)]:
        with pytest.raises(InputError):
            IngestOptions(**bad)
    opts = IngestOptions(backoff_initial_s=1, backoff_max_s=30, backoff_jitter=0.3)
    for attempt, base in [(0, 1), (1, 2), (3, 8), (4, 16), (5, 30), (50, 30)]:
        for _ in range(20):
            assert base * 0.7 - 1e-9 <= opts.backoff(attempt) <= base * 1.3 + 1e-9


def test_missing_file_and_bad_url_raise(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        Ingest("s", str(tmp_path / "nope.mp4"), tmp_path / "buf").start()
    with pytest.raises(InputError):
        Ingest("s", "concat:a|b", tmp_path / "buf")


@pytest.mark.slow
def test_codec_that_cannot_be_copied_into_mpegts_fails_clearly(tmp_path):
    src = tmp_path / "vp8.webm"
    with process(["-f", "lavfi", "-i", "testsrc=size=160x90:rate=10:duration=3", "-c:v", "libvpx",
                  "-b:v", "100k", str(src)]) as enc:
        assert enc.wait(timeout=30) == 0
    ing = Ingest("vp8", str(src), tmp_path / "buf", IngestOptions(realtime_file=False))
    w = Watch(ing)
    with ingesting(ing):
        assert pump([w], lambda: ing.status in FINAL_STATUSES, timeout=15)
    assert ing.status == "failed"
    assert "vp8 track cannot be copied into MPEG-TS" in ing.error, ing.error


# ------------------------------------------------------------------------------------ rolling buffer


def test_rolling_buffer_deletes_old_segments_and_covers(tmp_path):
    buf = RollingBuffer(tmp_path, buffer_s=5.0, stream_id="r1")
    files = []
    for i, (t0, t1) in enumerate([(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]):
        p = tmp_path / f"{i:06d}.ts"
        p.write_bytes(b"x" * 10)
        files.append(p)
        seg = buf.add(p, t0, t1)
        assert seg == Segment("r1", i, float(t0), float(t1), str(p))
    # kept: every segment that ends after latest_end - buffer_s = 5
    assert [(s.start, s.end) for s in buf.segments()] == [(4, 6), (6, 8), (8, 10)]
    assert [p.exists() for p in files] == [False, False, True, True, True]
    assert buf.latest_end == 10 and buf.earliest_start == 4 and buf.deleted == 2 and buf.bytes == 30
    assert [s.seq for s in buf.covering(5, 7)] == [2, 3]
    assert [s.seq for s in buf.covering(6, 6.5)] == [3]
    assert [s.seq for s in buf.covering(0, 4)] == []  # deleted
    assert [s.seq for s in buf.covering(9.5, 100)] == [4]
    assert buf.covering(7, 7) == []

    # a later start records a gap; covering() inside it finds nothing
    p = tmp_path / "000005.ts"
    p.write_bytes(b"x")
    buf.add(p, 13.0, 14.0)
    assert buf.gaps == [(10.0, 13.0)] and buf.gap_count == 1 and buf.gap_seconds == pytest.approx(3.0)
    assert buf.covering(10.5, 12.5) == []
    assert [s.seq for s in buf.covering(9, 13.5)] == [4, 5]
    assert [(s.start, s.end) for s in buf.segments()] == [(8, 10), (13, 14)]
    # rounding is not a gap
    p = tmp_path / "000006.ts"
    p.write_bytes(b"x")
    buf.add(p, 14.001, 16.0)
    assert buf.gap_count == 1
    # once the buffer has moved past a gap, the gap is forgotten but still counted
    for i, t in enumerate(range(16, 24, 2), start=7):
        p = tmp_path / f"{i:06d}.ts"
        p.write_bytes(b"x")
        buf.add(p, t, t + 2)
    assert buf.gaps == [] and buf.gap_count == 1
    assert buf.earliest_start >= 24 - 5 - 2
    buf.clear()
    assert len(buf) == 0 and not list(tmp_path.glob("*.ts"))


# -------------------------------------------------------------------------------------- real streams


@pytest.mark.slow
def test_file_played_at_real_speed(tiny_video, tmp_path):
    ing = Ingest("rehearsal", str(tiny_video), tmp_path / "buf", IngestOptions(segment_s=2.0))
    w = Watch(ing)
    with ingesting(ing):
        assert ing.status == "starting"
        assert pump([w], lambda: ing.status in FINAL_STATUSES, timeout=20)
    assert ing.status == "ended", ing.error
    assert ing.error == ""
    segs = w.segments
    assert len(segs) == 3, segs
    first_at = w.got[0][0]
    print(f"file: first segment after {first_at:.1f} s, last after {w.got[-1][0]:.1f} s")
    assert first_at < 4.0  # about one segment (2 s) after start, measured about 2.1 s
    assert w.got[-1][0] > 4.5  # played at real speed, not read at once
    assert segs[0].start == 0.0
    assert_contiguous(segs)
    assert segs[-1].end == pytest.approx(6.0, abs=0.15)
    for s in segs:
        assert s.stream_id == "rehearsal" and Path(s.path).is_file() and s.path.endswith(".ts")
        assert 1.5 < s.end - s.start < 2.6
    assert ing.gaps == [] and ing.reconnects == 0
    assert ing.segments() == segs and ing.covering(2.5, 3.0) == [segs[1]]
    st = ing.stats()
    assert st["status"] == "ended" and st["segments_total"] == 3 and st["ffmpeg_pid"] is None
    assert st["first_segment_s"] < 4.0
    assert ing.poll() == []
    ing.discard()
    assert not list((tmp_path / "buf").rglob("*.ts"))


@pytest.mark.slow
def test_hls_recovers_after_http_server_stops_for_20_s(hls_source, tmp_path):
    server = Server(functools.partial(QuietFiles, directory=str(hls_source))).start()
    try:
        ing = Ingest("hls", server.url("live.m3u8"), tmp_path / "buf", LOOPBACK)  # default options, guarded
        w = Watch(ing)
        with ingesting(ing):
            assert pump([w], lambda: len(w.got) >= 3, timeout=20), (ing.status, ing.error)
            assert ing.status == "live"
            assert ing._proxy is not None and ing._proxy.forwarded >= 3  # ffmpeg's requests went through the guard
            before = len(w.got)

            # the web server goes away for 20 s while the publisher keeps going
            server.stop()
            t_down = time.monotonic()
            pump([w], lambda: False, timeout=20)
            # the HLS demuxer gives up on the first playlist reload that fails: ffmpeg exits and the
            # ingest restarts it with backoff (ffmpeg's own http reconnect retries the connection
            # meanwhile), so the stream is reconnecting during the outage
            assert ing.status == "reconnecting", ing.statuses
            assert "HLS playlist could not be reloaded" in ing.error or "connection refused" in ing.error.lower()
            assert ing.seconds_behind_live() > 15
            server.start()
            t_up = time.monotonic()
            assert pump([w], lambda: len(w.got) >= before + 4 and ing.status == "live", timeout=45), \
                (ing.status, ing.error)
        # ffmpeg closed the segment it was writing when it exited, so one more arrived after the stop
        after = next(i for i, (t, _) in enumerate(w.got) if w.t0 + t > t_up)
        assert after in (before, before + 1)
        t_back = w.t0 + w.got[after][0]  # wall time of the first segment after the outage
        outage = t_up - t_down
        recovery = t_back - t_up
        print([(round(t, 2), round(s.start, 3), round(s.end, 3)) for t, s in w.got])
        print(f"HLS: first segment after {w.got[0][0]:.1f} s; outage {outage:.1f} s; recovered "
              f"{recovery:.1f} s after the server came back; gap {ing.gaps}; reconnects {ing.reconnects}")
        assert ing.reconnects >= 1
        assert recovery < 15
        segs = w.segments
        assert [s.seq for s in segs] == list(range(len(segs)))
        assert all(b.start >= a.end - TOL for a, b in zip(segs, segs[1:]))
        assert_contiguous(segs[:after])  # one ffmpeg run before the outage
        assert_contiguous(segs[after:])  # and one after
        # one gap, between the last segment before and the first after, about as long as the outage
        # (the wall clock from the last media before to the first after; the restarted ffmpeg starts
        # three playlist segments behind the live edge, so a little media is read twice)
        gaps = ing.gaps
        assert len(gaps) == 1
        (g0, g1), = gaps
        assert segs[after - 1].end == g0 and segs[after].start == g1
        assert outage - 6 < g1 - g0 < outage + recovery + 3
        assert ing.stats()["gaps"] == 1
    finally:
        server.stop()


@pytest.mark.slow
def test_rtmp_from_an_ffmpeg_listener_with_a_small_buffer_and_a_publisher_restart(tmp_path):
    port = free_port()
    opts = IngestOptions(segment_s=1.0, buffer_s=3.0, allow=("127.0.0.1",))
    ing = Ingest("rtmp", f"rtmp://127.0.0.1:{port}/live/test", tmp_path / "buf", opts)
    w = Watch(ing)
    with contextlib.ExitStack() as stack:
        pub = stack.enter_context(process(rtmp_publisher(port)))
        time.sleep(0.5)  # let it listen (a probe connection would use up its single client)
        stack.enter_context(ingesting(ing))
        assert pump([w], lambda: len(w.got) >= 7, timeout=25), (ing.status, ing.error)
        assert ing.status == "live"
        segs = w.segments
        assert_contiguous(segs)
        assert segs[0].start == 0.0
        assert all(0.5 < s.end - s.start < 1.6 for s in segs)
        # the buffer keeps about 3 s: older files are gone from disk
        kept = ing.segments()
        assert kept[-1] == segs[-1]
        assert kept[-1].end - kept[0].start <= 3.0 + 1.6
        assert not Path(segs[0].path).exists() and Path(segs[-1].path).exists()
        on_disk = list((tmp_path / "buf").rglob("*.ts"))
        assert len(on_disk) <= len(kept) + 1  # + the segment ffmpeg is writing
        assert ing.stats()["segments_buffered"] == len(kept)
        assert ing.seconds_behind_live() < 3

        # the publisher goes away: RTMP has no reconnect of its own, ffmpeg exits, the ingest restarts it
        stop_process(pub)
        t_down = time.monotonic()
        assert pump([w], lambda: ing.status == "reconnecting", timeout=10), ing.status
        n = len(w.got)
        time.sleep(2.0)
        stack.enter_context(process(rtmp_publisher(port)))
        t_up = time.monotonic()
        assert pump([w], lambda: len(w.got) >= n + 2 and ing.status == "live", timeout=25), (ing.status, ing.error)
        t_back = w.t0 + w.got[n][0]
    assert ing.status == "stopped" and ing.reconnects >= 1
    print(f"RTMP: first segment after {w.got[0][0]:.1f} s; publisher away {t_up - t_down:.1f} s, back after "
          f"{t_back - t_up:.1f} s; gaps {ing.gaps}; reconnects {ing.reconnects}")
    assert w.got[0][0] < 6
    (g0, g1), = ing.gaps
    segs = w.segments
    assert segs[n - 1].end == g0 and segs[n].start == g1
    assert 1.0 < g1 - g0 < (t_back - t_down) + 1
    assert_contiguous(segs[n:])


@pytest.mark.slow
def test_http_flv_from_an_ffmpeg_http_listener(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/live.flv"
    args = ["-re", "-f", "lavfi", "-i", LAVFI_VIDEO, "-re", "-f", "lavfi", "-i", LAVFI_AUDIO, *ENCODE,
            "-f", "flv", "-listen", "1", url]
    ing = Ingest("flv", url, tmp_path / "buf", IngestOptions(segment_s=1.0, allow=("127.0.0.1",)))
    w = Watch(ing)
    with process(args) as pub:
        time.sleep(0.5)
        with ingesting(ing):
            assert pump([w], lambda: len(w.got) >= 3, timeout=20), (ing.status, ing.error)
            assert ing.kind == "http" and ing.status == "live"
            assert_contiguous(w.segments)
            stop_process(pub)
            # the response ends; ffmpeg exits and the ingest reconnects (the listener is gone: refused)
            assert pump([w], lambda: ing.status == "reconnecting", timeout=10), ing.status
            assert "source lost" in ing.error


@pytest.mark.slow
def test_failing_sources_get_clear_errors_and_leave_other_streams_alone(tiny_video, tmp_path):
    # a TCP server that accepts connections and never says a word
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)
    hole = blackhole.getsockname()[1]
    web = Server(HtmlOr404).start()
    dead_rtmp = free_port()
    short = IngestOptions(start_timeout_s=3.0, allow=("127.0.0.1",))
    ings = {
        "silent": Ingest("silent", f"http://127.0.0.1:{hole}/live.flv", tmp_path / "silent", short),
        "silent_rtmp": Ingest("silent_rtmp", f"rtmp://127.0.0.1:{hole}/live/x", tmp_path / "silent_rtmp", short),
        "html": Ingest("html", web.url("live/room.flv"), tmp_path / "html", short),
        "html_hls": Ingest("html_hls", web.url("live/room.m3u8"), tmp_path / "html_hls", short),
        "missing": Ingest("missing", web.url("missing/room.flv"), tmp_path / "missing", short),
        "refused_rtsp": Ingest("refused_rtsp", f"rtsp://127.0.0.1:{free_port()}/cam", tmp_path / "rtsp", short),
        "dies": Ingest("dies", f"rtmp://127.0.0.1:{dead_rtmp}/live/test", tmp_path / "dies",
                       IngestOptions(start_timeout_s=5.0, max_restarts=1, segment_s=1.0, allow=("127.0.0.1",))),
        "good": Ingest("good", str(tiny_video), tmp_path / "good"),
    }
    watches = {k: Watch(v) for k, v in ings.items()}
    try:
        with process(rtmp_publisher(dead_rtmp)) as publisher:
            time.sleep(0.5)
            with ingesting(*ings.values()):
                # the RTMP publisher dies about a second after its client connected
                threading.Timer(1.2, lambda: publisher.send_signal(signal.SIGKILL)).start()
                done = pump(list(watches.values()),
                            lambda: all(i.status in FINAL_STATUSES for i in ings.values()), timeout=30)
                assert done, {k: (i.status, i.error) for k, i in ings.items()}
    finally:
        web.stop()
        blackhole.close()
    for name, ing in ings.items():
        print(f"{name}: {ing.status} after {watches[name].statuses[-1][0]:.1f} s: {ing.error.splitlines()[:1]}")

    silent = ings["silent"]
    assert silent.status == "failed"
    assert "no media from" in silent.error and "within 3 s" in silent.error
    assert watches["silent"].statuses[-1][0] < 5
    assert ings["silent_rtmp"].status == "failed" and "within 3 s" in ings["silent_rtmp"].error

    for name in ("html", "html_hls"):
        assert ings[name].status == "failed"
        assert "not media" in ings[name].error, ings[name].error
        assert "Invalid data found when processing input" in ings[name].error  # ffmpeg's own words
        assert watches[name].statuses[-1][0] < 3  # at once, not after the start timeout
    assert ings["missing"].status == "failed" and "HTTP 404 Not Found" in ings["missing"].error

    rtsp = ings["refused_rtsp"]
    assert rtsp.status == "failed" and "connection refused" in rtsp.error.lower()
    assert rtsp.reconnects >= 1  # retried within the start timeout
    assert "whitelist" not in rtsp.error

    dies = ings["dies"]
    assert dies.status == "failed"
    assert "connection refused" in dies.error.lower() or "within 5 s" in dies.error
    if watches["dies"].got:  # it lived long enough to close a segment: lost, restarted once, gave up
        assert "gave up after 1 restart" in dies.error and dies.reconnects == 1
        assert ("reconnecting" in [s for _, s in watches["dies"].statuses])

    good = ings["good"]
    assert good.status == "ended" and good.error == ""
    assert_contiguous(watches["good"].segments)
    assert watches["good"].segments[-1].end == pytest.approx(6.0, abs=0.15)
    for ing in ings.values():
        assert ing.stats()["ffmpeg_pid"] is None


def hls_publisher(folder: Path, seconds: float | None = None, realtime: bool = True) -> list[str]:
    """ffmpeg arguments for an HLS publisher writing ``folder/live.m3u8`` (1 s segments, 4 in the list);
    with ``seconds`` it stops after that much media and closes the playlist (#EXT-X-ENDLIST)."""
    re_ = ["-re"] if realtime else []
    limit = ["-t", f"{seconds:g}"] if seconds is not None else []
    return [*re_, "-f", "lavfi", "-i", LAVFI_VIDEO, *re_, "-f", "lavfi", "-i", LAVFI_AUDIO, *limit, *ENCODE,
            "-f", "hls", "-hls_time", "1", "-hls_list_size", "4", "-hls_flags", "delete_segments",
            str(folder / "live.m3u8")]


def wait_for_playlist(proc: subprocess.Popen, playlist: Path, segments: int = 2, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not (playlist.exists() and playlist.read_text().count("#EXTINF") >= segments):
        assert proc.poll() is None and time.monotonic() < deadline, "HLS publisher wrote no playlist"
        time.sleep(0.1)


def closed_live_playlist(ing: Ingest) -> bool:
    return ing.status == "reconnecting" and "EXT-X-ENDLIST" in ing.error


def test_live_hls_closed_for_good_ends_after_the_grace_period(tmp_path):
    """A live playlist closed with #EXT-X-ENDLIST that never comes back: `reconnecting` for
    endlist_grace_s (the playlist is read meanwhile, nothing is replayed), then `ended` with the reason.
    A second ingest of the same source with a long grace period is stopped during it: at once."""
    folder = tmp_path / "hls"
    folder.mkdir()
    server = Server(functools.partial(QuietFiles, directory=str(folder)))
    grace = 3.0
    opts = IngestOptions(segment_s=1.0, endlist_grace_s=grace, allow=("127.0.0.1",))
    ing = Ingest("closed", server.url("live.m3u8"), tmp_path / "buf", opts)
    patient = Ingest("patient", server.url("live.m3u8"), tmp_path / "buf2",
                     IngestOptions(segment_s=1.0, endlist_grace_s=60, allow=("127.0.0.1",)))
    w, wp = Watch(ing), Watch(patient)
    with process(hls_publisher(folder, seconds=5)) as proc:
        wait_for_playlist(proc, folder / "live.m3u8")
        server.start()
        try:
            with ingesting(ing, patient):
                assert pump([w, wp], lambda: closed_live_playlist(ing) or ing.status in FINAL_STATUSES,
                            timeout=30), w.statuses
                assert closed_live_playlist(ing), (ing.status, ing.error)
                assert f"waiting up to {grace:g} s" in ing.error
                t_closed = time.monotonic()
                assert pump([w, wp], lambda: ing.status in FINAL_STATUSES, timeout=grace + 10), w.statuses
                waited = time.monotonic() - t_closed
                assert ing.status == "ended", (ing.status, ing.error)
                assert "EXT-X-ENDLIST" in ing.error and f"did not come back live within {grace:g} s" in ing.error
                assert grace - 0.5 < waited < grace + 4, waited
                # the other one still waits for the playlist to come back; stop() does not wait for it
                assert closed_live_playlist(patient), (patient.status, patient.error)
                t = time.monotonic()
                patient.stop()
                assert time.monotonic() - t < 1.0
                assert patient.status == "stopped" and patient.poll() == [] and patient.status == "stopped"
        finally:
            server.stop()
    assert ing.reconnects <= 1 and ing.stats()["ffmpeg_pid"] is None
    assert ing.gaps == []
    assert sum(s.end - s.start for s in w.segments) < 8.0  # about the 5 s published, not replayed
    assert_contiguous(w.segments)
    print(f"closed live playlist: ended {waited:.1f} s after the close was seen; statuses {w.statuses}")


def test_live_hls_that_restarts_after_endlist_resumes(tmp_path):
    """A publisher restarting: its playlist is closed (#EXT-X-ENDLIST), then gone for a moment, then
    live again with new segments. The ingest waits (`reconnecting`), resumes (`live`) and keeps stream
    time monotonic with the outage recorded as one gap."""
    folder = tmp_path / "hls"
    folder.mkdir()
    playlist = folder / "live.m3u8"
    server = Server(functools.partial(QuietFiles, directory=str(folder)))
    opts = IngestOptions(segment_s=1.0, endlist_grace_s=20, allow=("127.0.0.1",))
    ing = Ingest("restart", server.url("live.m3u8"), tmp_path / "buf", opts)
    w = Watch(ing)
    with contextlib.ExitStack() as stack:
        stack.callback(server.stop)
        first = stack.enter_context(process(hls_publisher(folder, seconds=5)))
        wait_for_playlist(first, playlist)
        server.start()
        stack.enter_context(ingesting(ing))
        assert pump([w], lambda: closed_live_playlist(ing) or ing.status in FINAL_STATUSES, timeout=30), \
            w.statuses
        assert closed_live_playlist(ing), (ing.status, ing.error)
        t_closed = time.monotonic()
        n = len(w.got)
        assert n >= 2
        playlist.unlink()  # gone for a moment (404), as while a publisher restarts
        pump([w], lambda: False, timeout=1.5)
        assert ing.status == "reconnecting" and len(w.got) == n
        second = stack.enter_context(process(hls_publisher(folder)))  # a new live playlist, sequence 0
        t_restart = time.monotonic()
        assert pump([w], lambda: len(w.got) >= n + 3 and ing.status == "live", timeout=30), \
            (ing.status, ing.error, w.statuses)
        assert second.poll() is None
        t_back = w.t0 + w.got[n][0]
    print(f"restart: closed seen, back {t_back - t_closed:.1f} s later ({t_back - t_restart:.1f} s after the "
          f"publisher restarted); gaps {ing.gaps}; statuses {w.statuses}")
    states = [st for _, st in w.statuses]
    assert "ended" not in states and states[-1] == "live" and ing.status == "stopped"
    assert states[states.index("reconnecting"):][:2] == ["reconnecting", "live"]
    assert ing.reconnects >= 1
    segs = w.segments
    assert [s.seq for s in segs] == list(range(len(segs)))
    assert all(b.start >= a.end - TOL for a, b in zip(segs, segs[1:]))  # stream time never goes back
    assert_contiguous(segs[:n])
    assert_contiguous(segs[n:])
    (g0, g1), = ing.gaps  # the outage, between the last segment before and the first after
    assert segs[n - 1].end == g0 and segs[n].start == g1
    assert 1.5 < g1 - g0 < (t_back - t_closed) + 6


def test_vod_hls_ends_at_once(tmp_path):
    """A VOD playlist (closed from the first read) read to its end is `ended` at once: no grace period,
    no restart, nothing replayed."""
    folder = tmp_path / "hls"
    folder.mkdir()
    with process(hls_publisher(folder, seconds=4, realtime=False)) as proc:
        assert proc.wait(timeout=30) == 0
    assert "#EXT-X-ENDLIST" in (folder / "live.m3u8").read_text()
    server = Server(functools.partial(QuietFiles, directory=str(folder))).start()
    try:
        ing = Ingest("vod", server.url("live.m3u8"), tmp_path / "buf", LOOPBACK)  # default grace period
        assert ing.options.endlist_grace_s >= 30
        w = Watch(ing)
        with ingesting(ing):
            assert pump([w], lambda: ing.status in FINAL_STATUSES, timeout=15), w.statuses
        assert ing.status == "ended" and ing.error == "", (ing.status, ing.error)
        assert w.statuses[-1][0] < 10
        assert "reconnecting" not in [st for _, st in w.statuses]
        assert ing.reconnects == 0
        media = sum(s.end - s.start for s in w.segments)
        assert 3.0 < media < 5.0  # the 4 s listed, once
    finally:
        server.stop()


def test_a_refused_destination_never_starts_ffmpeg(tmp_path):
    for url in ("http://127.0.0.2:9/live.m3u8", "rtmp://10.0.0.1/live/x", "http://169.254.169.254/x.flv"):
        ing = Ingest("internal", url, tmp_path / "buf")
        with pytest.raises(InputError, match="refused|ACE_URL_ALLOWLIST"):
            ing.start()
        assert ing._run is None
