"""The back office against a fake of :class:`ace.control.StreamControl` (no Ray): URLs are checked
once, at the edge, and handed on checked; the protocol's errors become the right HTTP answers;
tenants see only their own streams."""

from __future__ import annotations

import subprocess
import sys

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
                     max_live=None):
        self._raise()
        assert isinstance(url, CheckedURL) and (events is None or isinstance(events, CheckedURL))
        self.submitted.append(url)
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

    async def submit_job(self, tenant, items, name=""):
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
    backend = Backend({"data_dir": str(tmp_path / "data"), "url_allowlist": ["127.0.0.1"]}, control=control)
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
