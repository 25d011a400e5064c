"""Decision sinks: JSONL files and webhooks (http/https only, with a timeout, no redirects)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ace.policy.sink import JsonlSink, NullSink, SinkError, WebhookSink, make_sink
from ace.types import RampDecision

DECISIONS = [RampDecision("room-1", 30.0, "ramp", 0.05, "because"), RampDecision("room-2", 30.0, "cool", 0.0, "weak")]


class _Handler(BaseHTTPRequestHandler):
    received: list = []
    mode = "ok"

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "slow":
            time.sleep(1.0)
        if self.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.end_headers()
            return
        type(self).received.append(json.loads(body))
        self.send_response(500 if self.mode == "error" else 204)
        self.end_headers()

    def log_message(self, *args):
        return


@pytest.fixture
def server():
    _Handler.received = []
    _Handler.mode = "ok"
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv, _Handler
    srv.shutdown()
    srv.server_close()


def test_jsonl_sink_appends_one_object_per_decision(tmp_path):
    path = tmp_path / "out" / "decisions.jsonl"
    sink = make_sink(str(path))
    assert isinstance(sink, JsonlSink)
    sink.send(DECISIONS)
    sink.send(DECISIONS[:1])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["stream_id"] for r in rows] == ["room-1", "room-2", "room-1"]
    assert rows[0] == {"stream_id": "room-1", "t": 30.0, "level": "ramp", "share": 0.05, "reason": "because"}
    assert isinstance(make_sink(f"file://{path}"), JsonlSink)


@pytest.mark.parametrize("spec", ["ftp://example.com/x", "gopher://example.com", "file://remote-host/x.jsonl", "javascript:alert(1)"])
def test_make_sink_refuses_other_schemes(spec):
    with pytest.raises(ValueError):
        make_sink(spec)


@pytest.mark.parametrize("url", ["ftp://h/x", "file:///etc/passwd", "http:///nohost", "//host/path", "localhost:8080/x"])
def test_webhook_only_http_and_https(url):
    with pytest.raises(ValueError):
        WebhookSink(url)


def test_null_sink_and_empty_spec():
    for spec in (None, "", "none"):
        assert isinstance(make_sink(spec), NullSink)
    NullSink().send(DECISIONS)


def test_webhook_posts_decisions(server):
    srv, handler = server
    sink = make_sink(f"http://127.0.0.1:{srv.server_port}/ramp")
    assert isinstance(sink, WebhookSink)
    sink.send(DECISIONS)
    assert handler.received == [
        {
            "decisions": [
                {"stream_id": "room-1", "t": 30.0, "level": "ramp", "share": 0.05, "reason": "because"},
                {"stream_id": "room-2", "t": 30.0, "level": "cool", "share": 0.0, "reason": "weak"},
            ]
        }
    ]


def test_webhook_times_out(server):
    srv, handler = server
    handler.mode = "slow"
    sink = WebhookSink(f"http://127.0.0.1:{srv.server_port}/ramp", timeout=0.2)
    t0 = time.perf_counter()
    with pytest.raises(SinkError):
        sink.send(DECISIONS)
    assert time.perf_counter() - t0 < 0.9


def test_webhook_errors_and_redirects_raise(server):
    srv, handler = server
    sink = WebhookSink(f"http://127.0.0.1:{srv.server_port}/ramp", timeout=2.0)
    handler.mode = "error"
    with pytest.raises(SinkError, match="500"):
        sink.send(DECISIONS)
    handler.mode = "redirect"
    with pytest.raises(SinkError):
        sink.send(DECISIONS)


def test_webhook_unreachable_raises():
    with pytest.raises(SinkError):
        WebhookSink("http://127.0.0.1:9/ramp", timeout=0.5).send(DECISIONS)
    with pytest.raises(ValueError):
        WebhookSink("http://example.com", timeout=0)
