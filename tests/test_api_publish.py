"""The publishing routes end to end (no Ray): the tenant's webhook settings (the secret is
write-only), ``POST /clips/{id}/publish`` delivering to a real HTTP server on loopback,
``GET /clips/{id}/publication``, the clips' audience from ``clip_view`` / ``clip_click`` events, and
tenant isolation."""

from __future__ import annotations

import json
import time

import pytest

from ace.publish import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, RetryPolicy, verify_signature
from tests.test_api_routes import RichControl
from tests.test_publish import Hook


@pytest.fixture
def office(tmp_path):
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend
    from ace.types import Clip, Moment, Reason

    backend = Backend({"data_dir": str(tmp_path / "data"), "url_allowlist": ["127.0.0.1"]})
    backend._control = RichControl(backend.store)
    backend.publish_retry = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05, timeout_s=5.0)
    auth = {t: {"Authorization": f"Bearer {backend.store.create_token(t)[1]}"} for t in ("acme", "globex")}
    store = backend.store
    # acme's live stream s1 (the fake control has it live too) with two clips
    store.upsert_show("s1", path="https://cdn.example/live/room.m3u8", name="room", duration=120.0, settings_hash="h",
                      status="running", tenant="acme")
    ms = [Moment("s1", 10.0, 20.0, 0.8, 15.0, reasons=(Reason("chat", 0.7, "burst"),), transcript="link is up"),
          Moment("s1", 60.0, 75.0, 0.6, 66.0)]
    clips = [Clip(m.id, str(tmp_path / f"{i}.mp4"), m.start - 1, m.end + 1, "fast") for i, m in enumerate(ms)]
    store.save_results("s1", ms, clips, settings_hash="h", tenant="acme")
    hooks: list[Hook] = []
    yield TestClient(build_app(backend), raise_server_exceptions=False), backend, auth, [m.id for m in ms], hooks
    backend.close()
    for h in hooks:
        h.close()


def _hook(office, *script) -> Hook:
    h = Hook(script or ((200, {"Content-Type": "application/json"}, b'{"id": "remote-1"}'),))
    office[4].append(h)
    return h


def _settled(client, mid, headers, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/clips/{mid}/publication", headers=headers)
        if r.status_code == 200 and r.json()["status"] != "pending":
            return r.json()
        time.sleep(0.02)
    raise AssertionError(f"still pending: {r.json()}")


def test_publish_settings_keep_the_secret_write_only(office):
    client, _backend, auth, _mids, _hooks = office
    acme = auth["acme"]
    hook = _hook(office)
    assert client.get("/settings/publish", headers=acme).json() == {"url": None, "secret_set": False}
    r = client.put("/settings/publish", json={"url": hook.url}, headers=acme)
    assert r.status_code == 200
    made = r.json()
    assert made["url"] == hook.url and made["secret_set"] is True and made["secret"].startswith("whsec_")
    got = client.get("/settings/publish", headers=acme)
    assert got.json() == {"url": hook.url, "secret_set": True} and made["secret"] not in got.text
    # a new URL keeps the secret (not shown again); rotate_secret makes a new one, shown once
    again = client.put("/settings/publish", json={"url": hook.url + "&v=2"}, headers=acme).json()
    assert again == {"url": hook.url + "&v=2", "secret_set": True}
    rotated = client.put("/settings/publish", json={"url": hook.url, "rotate_secret": True}, headers=acme).json()
    assert rotated["secret"] != made["secret"]
    own = client.put("/settings/publish", json={"url": hook.url, "secret": "my-own-secret-1234567"}, headers=acme)
    assert own.status_code == 200 and "secret" not in own.json() and "my-own-secret" not in own.text
    # the other tenant sees none of it
    assert client.get("/settings/publish", headers=auth["globex"]).json() == {"url": None, "secret_set": False}
    assert client.delete("/settings/publish", headers=acme).json() == {"url": None, "secret_set": False}
    assert client.get("/settings/publish", headers=acme).json() == {"url": None, "secret_set": False}


def test_publish_settings_refuse_bad_urls_and_secrets(office):
    client, _backend, auth, _mids, _hooks = office
    acme = auth["acme"]
    for url in ("ftp://hooks.example/x", "http://10.0.0.7/hook", "http://169.254.169.254/", "http://user:pw@127.0.0.1/x",
                "not a url", "http://[::1]:9/x"):
        r = client.put("/settings/publish", json={"url": url}, headers=acme)
        assert r.status_code == 422, (url, r.json())
        assert r.json()["error"]
    assert client.put("/settings/publish", json={"url": "http://127.0.0.1:9/x", "secret": "short"}, headers=acme).status_code == 422
    bad = client.put("/settings/publish", json={"url": "http://127.0.0.1:9/x", "secret": "has spaces in it 123"}, headers=acme)
    assert bad.status_code == 422 and "secret" in bad.json()["error"]
    assert client.put("/settings/publish", json={"url": "http://127.0.0.1:9/x", "extra": 1}, headers=acme).status_code == 422
    assert client.get("/settings/publish", headers=acme).json()["url"] is None


def test_publish_a_clip_end_to_end(office):
    client, _backend, auth, mids, _hooks = office
    acme = auth["acme"]
    hook = _hook(office, (503, {}, b""), (200, {"Content-Type": "application/json"}, b'{"id": "remote-1"}'))
    # no webhook yet: 409, and no record
    r = client.post(f"/clips/{mids[0]}/publish", headers=acme)
    assert r.status_code == 409 and "PUT /settings/publish" in r.json()["error"]
    assert client.get(f"/clips/{mids[0]}/publication", headers=acme).status_code == 404
    secret = client.put("/settings/publish", json={"url": hook.url}, headers=acme).json()["secret"]

    r = client.post(f"/clips/{mids[0]}/publish", headers=acme)
    assert r.status_code == 202
    assert r.json()["status"] == "pending" and r.json()["clip_id"] == mids[0] and r.json()["stream_id"] == "s1"
    done = _settled(client, mids[0], acme)
    assert done["status"] == "sent" and done["attempts"] == 2 and done["response_status"] == 200
    assert done["remote_id"] == "remote-1" and done["last_error"] is None and done["sent_at"]
    assert done["target"] == hook.url.split("?")[0]  # origin and path: the query stays out
    assert len(hook.requests) == 2
    headers, body, _path = hook.requests[-1]
    assert headers[IDEMPOTENCY_HEADER] == mids[0]
    assert verify_signature(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["clip_id"] == mids[0] and payload["stream_id"] == "s1" and payload["reason"] == "chat: burst"
    assert payload["links"]["room"] == {"stream_id": "s1", "name": "room", "room_url": "https://cdn.example/live/room.m3u8"}
    assert payload["transcript"] == "link is up" and payload["duration"] == 12.0
    assert "acme" not in body.decode()

    # again: the same record, no second delivery; force=true sends it again
    again = client.post(f"/clips/{mids[0]}/publish", headers=acme)
    assert again.status_code == 202 and again.json()["status"] == "sent" and again.json()["remote_id"] == "remote-1"
    time.sleep(0.1)
    assert len(hook.requests) == 2
    assert client.post(f"/clips/{mids[0]}/publish?force=true", headers=acme).json()["status"] == "pending"
    assert _settled(client, mids[0], acme)["status"] == "sent" and len(hook.requests) == 3
    assert client.post(f"/clips/{mids[0]}/publish?force=maybe", headers=acme).status_code == 422


def test_a_failed_delivery_is_recorded(office):
    client, _backend, auth, mids, _hooks = office
    acme = auth["acme"]
    hook = _hook(office, (400, {}, b"bad payload"))
    client.put("/settings/publish", json={"url": hook.url}, headers=acme)
    client.post(f"/clips/{mids[1]}/publish", headers=acme)
    done = _settled(client, mids[1], acme)
    assert done["status"] == "failed" and done["attempts"] == 1 and done["response_status"] == 400
    assert "answered 400" in done["last_error"] and len(hook.requests) == 1


def test_another_tenant_can_neither_publish_nor_see(office):
    client, _backend, auth, mids, _hooks = office
    acme, globex = auth["acme"], auth["globex"]
    hook = _hook(office)
    client.put("/settings/publish", json={"url": hook.url}, headers=acme)
    client.put("/settings/publish", json={"url": hook.url}, headers=globex)
    r = client.post(f"/clips/{mids[0]}/publish", headers=globex)
    assert r.status_code == 404 and r.json() == {"error": f"no clip {mids[0]!r}"}
    assert client.post("/clips/nope/publish", headers=globex).json() == {"error": "no clip 'nope'"}
    assert client.post("/clips/bad id!/publish", headers=acme).status_code == 404
    client.post(f"/clips/{mids[0]}/publish", headers=acme)
    _settled(client, mids[0], acme)
    assert client.get(f"/clips/{mids[0]}/publication", headers=globex).json() == {"error": f"no clip {mids[0]!r}"}
    assert client.get(f"/clips/{mids[1]}/publication", headers=acme).json() == {"error": f"clip {mids[1]!r} has not been published"}
    assert len(hook.requests) == 1
    assert client.post(f"/clips/{mids[0]}/publish").status_code == 401


def test_clip_events_count_distinct_viewers_and_clickers(office):
    client, backend, auth, mids, _hooks = office
    acme = auth["acme"]
    hook = _hook(office)
    client.put("/settings/publish", json={"url": hook.url}, headers=acme)
    client.post(f"/clips/{mids[0]}/publish", headers=acme)
    _settled(client, mids[0], acme)
    events = [{"t": 30.0, "kind": "clip_view", "user": "u1", "text": mids[0]},
              {"t": 31.0, "kind": "clip_view", "user": "u1", "text": mids[0]},
              {"t": 31.0, "kind": "clip_view", "user": "u2", "text": mids[0]},
              {"t": 32.0, "kind": "clip_click", "user": "u2", "text": mids[0]},
              {"t": 33.0, "kind": "clip_view", "text": mids[0]},  # no user: not counted
              {"t": 33.0, "kind": "clip_view", "user": "u3", "text": mids[1]},  # a clip not published
              {"t": 34.0, "kind": "chat", "user": "u4", "text": "wow"}]
    r = client.post("/streams/s1/events", json=events, headers={**acme, "Idempotency-Key": "b1"})
    assert r.status_code == 200 and r.json() == {"accepted": 7}
    assert [e.kind for e in backend._control.events["s1"]][:4] == ["clip_view", "clip_view", "clip_view", "clip_click"]
    pub = client.get(f"/clips/{mids[0]}/publication", headers=acme).json()
    assert (pub["viewers"], pub["clickers"]) == (2, 1)
    client.post("/streams/s1/events", json=events, headers={**acme, "Idempotency-Key": "b1"})  # retried: counted once
    pub = client.get(f"/clips/{mids[0]}/publication", headers=acme).json()
    assert (pub["viewers"], pub["clickers"]) == (2, 1)
    bad = client.post("/streams/s1/events", json=[{"t": 1, "kind": "clip_share", "user": "u1"}], headers=acme)
    assert bad.status_code == 422 and "clip_view" in bad.json()["error"]


def test_the_routes_are_documented(office):
    client, *_ = office
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert paths["/clips/{mid}/publish"]["post"]["tags"] == ["moments and clips"]
    assert paths["/clips/{mid}/publication"]["get"]["tags"] == ["moments and clips"]
    assert {m for m in paths["/settings/publish"]} == {"get", "put", "delete"}
    assert paths["/settings/publish"]["put"]["tags"] == ["settings"]
    answer = paths["/clips/{mid}/publish"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/PublicationOut")
    assert "409" in paths["/clips/{mid}/publish"]["post"]["responses"]
    assert "secret" not in spec["components"]["schemas"]["PublishSettingsOut"]["required"]
