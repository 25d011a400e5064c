"""The back office against a fake of :class:`ace.control.StreamControl` (no Ray): URLs are checked
once, at the edge, and handed on checked; the protocol's errors become the right HTTP answers;
tenants see only their own streams."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ace.errors import Busy, NotFound, StreamFinished, TooManyStreams
from ace.netguard import CheckedURL


class FakeControl:
    """Streams and jobs in memory, as the protocol describes them; ``fail`` makes the next call raise."""

    def __init__(self):
        self.streams: dict[str, dict] = {}
        self.submitted: list[CheckedURL] = []
        self.events: dict[str, list] = {}
        self.fail: Exception | None = None

    def _raise(self):
        if self.fail is not None:
            e, self.fail = self.fail, None
            raise e

    def _own(self, tenant, sid):
        st = self.streams.get(sid)
        if st is None or st["tenant"] != tenant:
            raise NotFound(f"no stream {sid!r}")
        return st

    async def submit(self, tenant, url, *, name="", events=None, products=None, category="other", budget=None,
                     max_live=None, **clip):
        self._raise()
        assert isinstance(url, CheckedURL) and (events is None or isinstance(events, CheckedURL))
        self.submitted.append(url)
        self.clip_options = clip
        sid = f"s{len(self.streams) + 1}"
        self.streams[sid] = {"id": sid, "tenant": tenant, "name": name, "status": "live"}
        return sid

    async def status(self, tenant, stream_id=None):
        self._raise()
        if stream_id is None:
            return [s for s in self.streams.values() if s["tenant"] == tenant]
        return self._own(tenant, stream_id)

    async def stop(self, tenant, stream_id):
        st = self._own(tenant, stream_id)
        st["status"] = "stopped"
        return st

    async def push_events(self, tenant, stream_id, events, batch_id=None, owned=False):
        self._raise()
        st = self._own(tenant, stream_id)
        if st["status"] == "stopped":
            raise StreamFinished(f"stream {stream_id!r} has stopped")
        self.events.setdefault(stream_id, []).extend(events)
        return len(events)

    async def ramp(self, tenant, stream_id, limit=100):
        self._own(tenant, stream_id)
        return {"stream_id": stream_id, "level": None, "share": None, "history": []}

    async def submit_job(self, tenant, items, name="", **clip):
        self.clip_options = clip
        return {"id": "job-1", "status": "running", "items": len(items)}

    async def jobs(self, tenant):
        return []

    async def job(self, tenant, job_id):
        raise NotFound(f"no job {job_id!r}")


@pytest.fixture
def office(tmp_path):
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend

    control = FakeControl()
    (tmp_path / "data" / "media").mkdir(parents=True)
    (tmp_path / "data" / "media" / "show.mp4").write_bytes(b"not really a show")
    backend = Backend({"data_dir": str(tmp_path / "data"), "url_allowlist": ["127.0.0.1"], "api_max_body": 200_000},
                      control=control)
    auth = {t: {"Authorization": f"Bearer {backend.store.create_token(t)[1]}"} for t in ("acme", "globex")}
    return TestClient(build_app(backend), raise_server_exceptions=False), control, auth


def test_a_url_is_checked_once_at_the_edge_and_handed_on_checked(office):
    client, control, auth = office
    r = client.post("/streams", json={"url": "http://127.0.0.1:9/live.m3u8", "name": "room"}, headers=auth["acme"])
    assert r.status_code == 201, r.text
    (checked,) = control.submitted
    assert checked.url == "http://127.0.0.1:9/live.m3u8" and checked.host == "127.0.0.1" and checked.port == 9
    for bad in ("http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "concat:a|b", "http://10.0.0.1/x.m3u8"):
        r = client.post("/streams", json={"url": bad}, headers=auth["acme"])
        assert r.status_code == 422 and "error" in r.json(), (bad, r.text)
    assert len(control.submitted) == 1  # refused URLs never reach the cluster


def test_the_protocols_errors_become_http_answers(office):
    client, control, auth = office
    control.fail = TooManyStreams("this tenant already runs 50 live streams")
    r = client.post("/streams", json={"url": "http://127.0.0.1:9/a.m3u8"}, headers=auth["acme"])
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    control.fail = Busy("the live controller is restarting", 5.0)
    r = client.get("/streams", headers=auth["acme"])
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    sid = client.post("/streams", json={"url": "http://127.0.0.1:9/a.m3u8"}, headers=auth["acme"]).json()["id"]
    assert client.post(f"/streams/{sid}/events", json=[{"t": 1, "kind": "like"}], headers=auth["acme"]).json() == {"accepted": 1}
    assert client.post(f"/streams/{sid}/stop", headers=auth["acme"]).json()["status"] == "stopped"
    r = client.post(f"/streams/{sid}/events", json=[{"t": 2, "kind": "like"}], headers=auth["acme"])
    assert r.status_code == 409
    assert client.get("/jobs/nope", headers=auth["acme"]).status_code == 404


def test_tenants_see_only_their_own_streams(office):
    client, control, auth = office
    sid = client.post("/streams", json={"url": "http://127.0.0.1:9/a.m3u8"}, headers=auth["acme"]).json()["id"]
    assert [s["id"] for s in client.get("/streams", headers=auth["acme"]).json()] == [sid]
    assert client.get("/streams", headers=auth["globex"]).json() == []
    for method, path in [("get", f"/streams/{sid}"), ("post", f"/streams/{sid}/stop"), ("get", f"/streams/{sid}/ramp")]:
        r = getattr(client, method)(path, headers=auth["globex"])
        assert r.status_code == 404, (path, r.text)
    r = client.post(f"/streams/{sid}/events", json=[{"t": 1, "kind": "like"}], headers=auth["globex"])
    assert r.status_code == 404 and control.events == {}


def test_the_back_office_and_the_library_load_without_ray():
    code = ("import sys; import ace.api.app, ace.api.backend, ace.control, ace.controlplane, ace.clipstore, ace.pipeline; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'workers'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_route_but_health_needs_a_valid_token(office):
    client, _control, auth = office
    backend = client.app.state.backend
    assert client.get("/healthz").json() == {"ok": True}
    for method, path in [("get", "/streams"), ("post", "/streams"), ("get", "/jobs"), ("get", "/clips/x"),
                         ("post", "/streams/x/events"), ("get", "/streams/x/ramp"), ("get", "/me")]:
        r = getattr(client, method)(path)
        assert r.status_code == 401 and "token" in r.json()["error"], (path, r.text)
    assert client.get("/me", headers={"Authorization": "Bearer ace_00000000_forged"}).status_code == 401
    tid, token = backend.store.create_token("initech")
    backend.store.revoke_token(tid)
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/me", headers=auth["acme"]).json() == {"tenant": "acme"}
    # the web page signs in once and then uses an HttpOnly cookie holding a session, not the token
    from ace.api.app import COOKIE

    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    globex = auth["globex"]["Authorization"][7:]
    r = client.post("/session", json={"token": globex})
    assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    session = client.cookies.get(COOKIE)
    assert session and session != globex and globex not in r.headers["set-cookie"]
    assert client.get("/me").json() == {"tenant": "globex"}
    r = client.delete("/session")
    assert r.status_code == 200 and f'{COOKIE}=""' in r.headers["set-cookie"] and "max-age=0" in r.headers["set-cookie"].lower()
    client.cookies.clear()
    assert client.get("/me").status_code == 401
    # signed out on the server: the old cookie value, replayed, is refused
    r = client.get("/me", headers={"Cookie": f"{COOKIE}={session}"})
    assert r.status_code == 401 and "session" in r.json()["error"], r.text
    assert client.post("/session", json={"token": token}).status_code == 401  # a revoked token opens none
    # revoking the token ends the sessions opened with it
    tid, token = backend.store.create_token("hooli")
    assert client.post("/session", json={"token": token}).json() == {"tenant": "hooli"}
    session = client.cookies.get(COOKIE)
    client.cookies.clear()
    assert client.get("/me", headers={"Cookie": f"{COOKIE}={session}"}).json() == {"tenant": "hooli"}
    backend.store.revoke_token(tid)
    assert client.get("/me", headers={"Cookie": f"{COOKIE}={session}"}).status_code == 401
    assert "/streams/{sid}/events" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs").text  # the docs work offline: their script comes from this server
    script = docs.split('src="')[1].split('"')[0]
    assert script.startswith("/") and client.get(script).status_code == 200


@pytest.mark.parametrize("url", ["file:///etc/passwd", "concat:/etc/passwd|/etc/hosts", "subfile:,,start,0,end,0,,:/etc/passwd",
                                 "data:text/plain,hi", "gopher://example.com/", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.1.2.3/live.m3u8", "http://[::1]:8080/x.m3u8", "http://127.0.0.2:9/x.m3u8",
                                 "rtmp://192.168.1.20/live/key", "/etc/passwd", "http://2130706434/x.m3u8"])
def test_untrusted_urls_are_refused(office, url):
    client, control, auth = office
    r = client.post("/streams", json={"url": url}, headers=auth["acme"])
    assert r.status_code == 422, r.text
    assert r.json()["error"]
    assert control.submitted == []  # never reached the cluster


def test_malformed_submissions_say_what_is_wrong(office):
    client, _control, auth = office
    cases = [({}, "url"), ({"url": "http://127.0.0.1:1/x.m3u8", "colour": "red"}, "colour"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "name": "n" * 500}, "name"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "category": "weapons"}, "category"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "budget": -5}, "budget"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "budget": True}, "budget"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "budget": "1e9"}, "budget"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "products": "not a list"}, "products"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "format": "tiktok"}, "format"),
             ({"url": "http://127.0.0.1:1/x.m3u8", "burn_captions": "maybe"}, "burn_captions")]
    for body, word in cases:
        r = client.post("/streams", json=body, headers=auth["acme"])
        assert r.status_code == 422 and word in r.json()["error"], (body, r.text)
    r = client.post("/streams", content=b"{not json", headers=auth["acme"] | {"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]
    r = client.post("/streams", content=b"x" * 300_000, headers=auth["acme"] | {"content-type": "application/json"})
    assert r.status_code == 413


def test_media_paths_cannot_leave_the_media_folder(office, tmp_path):
    client, _control, auth = office
    backend = client.app.state.backend
    media = Path(backend.settings.media_dir)
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x")
    link = media / "link.mp4"
    if not link.exists():
        os.symlink(outside, link)
    loop = media / "loop"
    if not loop.is_symlink():
        os.symlink(loop, loop)  # a link to itself: resolving it loops
    for path in ["../ace.db", "/etc/passwd", "link.mp4", "nope.mp4", "sub/../../x.mp4", "", "loop/loop/x.mp4", "loop"]:
        r = client.post("/jobs", json={"items": [{"path": path}]}, headers=auth["acme"])
        assert r.status_code == 422, (path, r.text)
    r = client.post("/jobs", json={"items": [{"path": "show.mp4", "url": "http://127.0.0.1/x.mp4"}]}, headers=auth["acme"])
    assert r.status_code == 422 and "exactly one" in r.json()["error"]
    r = client.post("/jobs", json={"items": [{"url": "http://169.254.169.254/show.mp4"}]}, headers=auth["acme"])
    assert r.status_code == 422


def test_a_stream_or_job_may_ask_for_its_own_clip_shape_and_captions(office):
    """``format`` and ``burn_captions`` reach the cluster only when the request sets them."""
    client, control, auth = office
    r = client.post("/streams", json={"url": "http://127.0.0.1:1/x.m3u8", "format": "vertical", "burn_captions": True},
                    headers=auth["acme"])
    assert r.status_code == 201 and control.clip_options == {"clip_format": "vertical", "burn_captions": True}
    r = client.post("/streams", json={"url": "http://127.0.0.1:1/y.m3u8"}, headers=auth["acme"])
    assert r.status_code == 201 and control.clip_options == {}
    r = client.post("/jobs", json={"items": [{"path": "show.mp4"}], "format": "square"}, headers=auth["acme"])
    assert r.status_code == 201 and control.clip_options == {"clip_format": "square"}
    r = client.post("/jobs", json={"items": [{"path": "show.mp4"}], "format": "wide"}, headers=auth["acme"])
    assert r.status_code == 422 and "format" in r.json()["error"]
