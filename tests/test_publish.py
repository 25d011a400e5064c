"""Publishing clips (:mod:`ace.publish`): signatures, the payload, and delivery against a real
HTTP server on loopback (retries with backoff, no retry on 4xx, no redirects, the URL guard, a
hard time limit), and idempotency by clip through the back office."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time

import pytest

from ace.errors import InputError
from ace.netguard import AddressPolicy
from ace.publish import (
    EVENT,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RetryPolicy,
    build_payload,
    check_webhook,
    deliver,
    encode,
    new_secret,
    sign,
    signed_headers,
    verify_signature,
)

SECRET = "whsec_test-secret-0123456789"
LOOPBACK = ["127.0.0.1"]
QUICK = RetryPolicy(attempts=5, base_s=0.01, max_s=0.05, timeout_s=5.0)


class Hook:
    """A webhook on loopback: answers from ``script`` (``(status, headers, body)``, the last one
    repeated), keeps every request's headers and body, and can stall (``delay``)."""

    def __init__(self, script=((200, {}, b""),), delay: float = 0.0):
        self.script, self.delay = list(script), delay
        self.requests: list[tuple[dict, bytes, str]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                hook.requests.append((dict(self.headers), body, self.path))
                if hook.delay:
                    time.sleep(hook.delay)
                status, headers, answer = hook.script[min(len(hook.requests), len(hook.script)) - 1]
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/clips?token=abc"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    made: list[Hook] = []

    def make(*script, delay: float = 0.0) -> Hook:
        h = Hook(script or ((200, {}, b""),), delay)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ----------------------------------------------------------------------------------- signatures


def test_signature_round_trip_and_tampering():
    body = encode({"clip_id": "c1", "title": "第一次", "n": 1})
    ts = int(time.time())
    header = sign(SECRET, ts, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, ts, body, header)
    assert verify_signature(SECRET, str(ts), body, header)
    assert not verify_signature(SECRET, ts, body.replace(b"c1", b"c2"), header)  # another body
    assert not verify_signature(SECRET, ts + 1, body, header)  # another timestamp
    assert not verify_signature("whsec_another-secret-000000", ts, body, header)  # another secret
    assert not verify_signature(SECRET, ts, body, header.replace("sha256=", "sha1="))
    assert not verify_signature(SECRET, ts, body, "")
    assert not verify_signature(SECRET, "12a", body, header)
    # a captured request replayed later is refused; the check can be turned off
    old = ts - 3600
    stale = sign(SECRET, old, body)
    assert not verify_signature(SECRET, old, body, stale)
    assert verify_signature(SECRET, old, body, stale, tolerance_s=None)
    assert verify_signature(SECRET, old, body, stale, now=old + 10)


def test_signed_headers_and_secrets():
    body = b'{"clip_id":"c1"}'
    h = signed_headers(SECRET, body, "c1", timestamp=1700000000)
    assert h[TIMESTAMP_HEADER] == "1700000000" and h[IDEMPOTENCY_HEADER] == "c1" and h["X-ACE-Event"] == EVENT
    assert verify_signature(SECRET, h[TIMESTAMP_HEADER], body, h[SIGNATURE_HEADER], now=1700000000)
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_") and len(a) >= 40


# ----------------------------------------------------------------------------------- payload


def test_payload_has_the_clip_and_a_link_back_to_the_room_and_nothing_of_the_tenant():
    clip = {"moment_id": "m1", "show_id": "s1", "tenant": "acme", "start": 10.0, "end": 25.5, "score": 0.8, "rank": 1,
            "confidence": 77.0, "transcript": "三二一 上链接", "path": "/srv/data/clips/m1.mp4", "srt_path": "/x.srt",
            "thumb_path": "", "reasons": [{"source": "chat", "score": 0.4, "detail": "burst"},
                                          {"source": "audio", "score": 0.9, "detail": "cheer"}]}
    show = {"id": "s1", "tenant": "acme", "name": "room 1", "path": "https://user:pw@cdn.example:8443/live/room1.m3u8?key=s3cret"}
    p = build_payload(clip, show, product={"product": "sku-1", "name": "lipstick"}, published_at=1700000000.0)
    assert p["event"] == EVENT and p["clip_id"] == "m1" and p["stream_id"] == "s1"
    assert (p["start"], p["end"], p["duration"]) == (10.0, 25.5, 15.5)
    assert p["score"] == 0.8 and p["rank"] == 1 and p["confidence"] == 77.0 and p["reason"] == "audio: cheer"
    assert p["product"] == {"id": "sku-1", "name": "lipstick"}
    assert p["links"]["video"] == "/clips/m1/video" and p["links"]["captions"] == "/clips/m1/captions"
    assert "thumbnail" not in p["links"]
    assert p["links"]["room"] == {"stream_id": "s1", "name": "room 1", "room_url": "https://cdn.example:8443/live/room1.m3u8"}
    body = encode(p).decode()
    for secret in ("acme", "s3cret", "user", "pw@", "/srv/data"):
        assert secret not in body
    # a show from a file, or an RTMP URL (whose path is a stream key): no room_url
    for path in ("/srv/media/show.mp4", "rtmp://ingest.example/live/KEY"):
        room = build_payload(clip, {"name": "x", "path": path})["links"]["room"]
        assert "room_url" not in room


def test_check_webhook_refuses_what_it_should():
    for url in ("ftp://hooks.example/x", "file:///etc/passwd", "hooks.example/x", "", "http://user:pw@127.0.0.1/x",
                "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]/x", "http://127.0.0.1:8080/x"):
        with pytest.raises(InputError):
            check_webhook(url)
    assert check_webhook("http://127.0.0.1:8080/x", LOOPBACK).addresses[0].is_loopback
    with pytest.raises(InputError, match="ACE_URL_ALLOWLIST"):
        check_webhook("http://127.0.0.1:8080/x")


# ----------------------------------------------------------------------------------- delivery


def test_retries_with_backoff_then_succeeds(hooks):
    hook = hooks((503, {}, b"busy"), (503, {}, b"busy"), (200, {"Content-Type": "application/json"}, b'{"id": "post-42"}'))
    body = encode({"clip_id": "c1"})
    slept: list[float] = []
    out = deliver(hook.url, body, lambda: signed_headers(SECRET, body, "c1"), allow=LOOPBACK,
                  retry=RetryPolicy(attempts=5, base_s=0.2, max_s=5.0, jitter=0.5), sleep=slept.append)
    assert out.ok and out.status == "sent" and out.attempts == 3 and out.response_status == 200 and out.remote_id == "post-42"
    assert len(hook.requests) == 3
    # exponential backoff with jitter: attempt n waits between half and all of base * 2**(n-1)
    assert slept == out.waits and len(slept) == 2
    assert 0.1 <= slept[0] <= 0.2 and 0.2 <= slept[1] <= 0.4
    for headers, got, path in hook.requests:
        assert got == body and path == "/hooks/clips?token=abc"
        assert headers[IDEMPOTENCY_HEADER] == "c1" and headers["Content-Type"] == "application/json"
        assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], got, headers[SIGNATURE_HEADER])


def test_real_sleeps_between_attempts(hooks):
    hook = hooks((500, {}, b""), (502, {}, b""), (200, {}, b"ok"))
    t0 = time.monotonic()
    out = deliver(hook.url, b"{}", {}, allow=LOOPBACK, retry=RetryPolicy(base_s=0.1, jitter=0.0))
    assert out.ok and out.attempts == 3 and time.monotonic() - t0 >= 0.3 - 0.02  # 0.1 s, then 0.2 s


def test_no_retry_on_400_and_gives_up_after_the_last_attempt(hooks):
    bad = hooks((400, {}, b"no"))
    out = deliver(bad.url, b"{}", {}, allow=LOOPBACK, retry=QUICK, sleep=lambda _s: None)
    assert not out.ok and out.attempts == 1 and out.response_status == 400 and "answered 400" in out.error
    assert len(bad.requests) == 1
    down = hooks((503, {}, b""))
    seen: list[int] = []
    out = deliver(down.url, b"{}", {}, allow=LOOPBACK, retry=RetryPolicy(attempts=4, base_s=0.01),
                  sleep=lambda _s: None, on_attempt=lambda n, _e, _st: seen.append(n))
    assert not out.ok and out.attempts == 4 and len(down.requests) == 4 and seen == [1, 2, 3, 4]
    assert "gave up after 4 attempts" in out.error and out.response_status == 503


def test_429_is_retried_after_the_wait_it_asks(hooks):
    hook = hooks((429, {"Retry-After": "2"}, b""), (200, {}, b""))
    slept: list[float] = []
    out = deliver(hook.url, b"{}", {}, allow=LOOPBACK, retry=RetryPolicy(base_s=0.01, max_s=30.0), sleep=slept.append)
    assert out.ok and out.attempts == 2 and slept == [2.0]


def test_a_redirect_is_not_followed(hooks):
    elsewhere = hooks((200, {}, b""))
    hook = hooks((302, {"Location": elsewhere.url}, b""))
    out = deliver(hook.url, b"{}", {}, allow=LOOPBACK, retry=QUICK, sleep=lambda _s: None)
    assert not out.ok and out.attempts == 1 and out.response_status == 302 and "redirect" in out.error
    assert len(hook.requests) == 1 and elsewhere.requests == []


def test_a_private_address_is_refused_unless_allowed(hooks):
    hook = hooks((200, {}, b""))
    out = deliver(hook.url, b"{}", {}, retry=QUICK, sleep=lambda _s: None)  # loopback, not allowed
    assert not out.ok and out.attempts == 1 and out.response_status is None
    assert "loopback" in out.error and "ACE_URL_ALLOWLIST" in out.error
    assert hook.requests == []
    assert deliver(hook.url, b"{}", {}, allow=LOOPBACK, retry=QUICK).ok and len(hook.requests) == 1


def test_each_attempt_is_checked_and_pinned_to_the_address_checked(hooks):
    """DNS rebinding: a name that resolved to a public address when the tenant saved it, and to
    loopback at delivery, is refused; a name allowed to resolve to loopback is reached at exactly
    the address checked (the system's resolver does not know the name at all)."""
    hook = hooks((200, {}, b""))
    port = hook.server.server_address[1]
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])
    rebinding = AddressPolicy([], resolver=lambda _h, _p: [next(answers)])
    url = f"http://hooks.invalid:{port}/hook"
    assert str(check_webhook(url, policy=rebinding).addresses[0]) == "93.184.216.34"  # when saved
    out = deliver(url, b"{}", {}, policy=rebinding, retry=QUICK, sleep=lambda _s: None)
    assert not out.ok and "resolves to 127.0.0.1" in out.error and hook.requests == []
    pinned = AddressPolicy(LOOPBACK, resolver=lambda _h, _p: ["127.0.0.1"])
    out = deliver(url, b"{}", {}, policy=pinned, retry=QUICK)
    assert out.ok and len(hook.requests) == 1
    assert hook.requests[0][0]["Host"] == f"hooks.invalid:{port}"


def test_an_attempt_has_a_hard_time_limit(hooks):
    hook = hooks((200, {}, b""), delay=3.0)
    t0 = time.monotonic()
    out = deliver(hook.url, b"{}", {}, allow=LOOPBACK, retry=RetryPolicy(attempts=2, base_s=0.01, timeout_s=0.4))
    took = time.monotonic() - t0
    assert not out.ok and out.attempts == 2 and "did not answer within 0.4 s" in out.error
    assert took < 2.0


def test_an_unreachable_webhook_is_retried():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = deliver(f"http://127.0.0.1:{port}/x", b"{}", {}, allow=LOOPBACK, retry=RetryPolicy(attempts=3, base_s=0.01))
    assert not out.ok and out.attempts == 3 and out.response_status is None and "failed" in out.error


# ----------------------------------------------------------------------------------- idempotency by clip


@pytest.fixture
def backend(tmp_path):
    from ace.api.backend import Backend
    from ace.types import Clip, Moment

    b = Backend({"data_dir": str(tmp_path / "data"), "url_allowlist": LOOPBACK})
    b.publish_retry = QUICK
    b.store.upsert_show("s1", path="https://cdn.example/live/s1.m3u8", name="room one", duration=60.0, settings_hash="h",
                        status="running", tenant="acme")
    m = Moment("s1", 10.0, 20.0, 0.7, 15.0)
    b.store.save_results("s1", [m], [Clip(m.id, str(tmp_path / "c.mp4"), 9.0, 21.0, "fast")], settings_hash="h", tenant="acme")
    b.clip_id = m.id
    yield b
    b.close()


def _settle(backend, clip_id, tenant="acme", timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = backend.store.get_publication(clip_id, tenant)
        if row and row["status"] != "pending":
            return row
        time.sleep(0.02)
    raise AssertionError("the publication is still pending")


def test_publishing_a_clip_twice_delivers_it_once(backend, hooks):
    hook = hooks((200, {"Content-Type": "application/json"}, b'{"id": 7}'))
    conf = asyncio.run(backend.set_publish_settings("acme", hook.url))
    secret = conf["secret"]
    first = asyncio.run(backend.publish("acme", backend.clip_id))
    assert first["status"] == "pending" and first["attempts"] == 0
    row = _settle(backend, backend.clip_id)
    assert row["status"] == "sent" and row["remote_id"] == "7" and row["attempts"] == 1 and row["response_status"] == 200
    again = asyncio.run(backend.publish("acme", backend.clip_id))
    assert again["status"] == "sent" and again["remote_id"] == "7"
    time.sleep(0.2)
    assert len(hook.requests) == 1
    headers, body, _path = hook.requests[0]
    assert verify_signature(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["clip_id"] == backend.clip_id and payload["links"]["room"]["room_url"] == "https://cdn.example/live/s1.m3u8"
    # force: sent again, with the same idempotency key, so the receiver can tell
    asyncio.run(backend.publish("acme", backend.clip_id, force=True))
    assert _settle(backend, backend.clip_id)["status"] == "sent"
    assert len(hook.requests) == 2 and hook.requests[1][0][IDEMPOTENCY_HEADER] == backend.clip_id


def test_concurrent_publishes_make_one_delivery(backend, hooks):
    hook = hooks((200, {}, b""), delay=0.2)
    asyncio.run(backend.set_publish_settings("acme", hook.url))

    async def many():
        return await asyncio.gather(*[backend.publish("acme", backend.clip_id, force=True) for _ in range(8)])

    rows = asyncio.run(many())
    assert {r["clip_id"] for r in rows} == {backend.clip_id}
    assert _settle(backend, backend.clip_id)["status"] == "sent"
    time.sleep(0.3)
    assert len(hook.requests) == 1
