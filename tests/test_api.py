"""The back office's HTTP API on a real local Ray instance, a real controller actor and the store:
tokens and tenants, URL checks, events, limits, batch jobs, clips with HTTP Range, reviews, ramp."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import subprocess
import threading
from functools import partial
from pathlib import Path

import pytest

from tests.util import wait_for

pytestmark = [pytest.mark.ray]


@pytest.fixture(scope="module")
def hls_server(short_show, tmp_path_factory):
    """A finished 12 s HLS stream of the sample show served over http on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("hls")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", "12", "-i", str(short_show.video), "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "30", "-c:a", "aac", "-f", "hls", "-hls_time", "2",
                    "-hls_playlist_type", "vod", str(folder / "live.m3u8")], check=True)
    handler = partial(_QuietHandler, directory=str(folder))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/live.m3u8"
    srv.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/moved"):  # a redirect to the cloud metadata service
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/x.m3u8")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(scope="module")
def office(ray_local, tmp_path_factory, short_show):
    """The API app (as Serve runs it) on a real controller actor, with tokens for two tenants."""
    import ray
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend
    from workers.control import RayStreamControl
    from workers.controller import ControllerActor

    data = tmp_path_factory.mktemp("office") / "data"
    media = data / "media"
    media.mkdir(parents=True)
    shutil.copy(short_show.video, media / "show.mp4")
    shutil.copy(short_show.events, media / "show.events.jsonl")
    # on a real PostgreSQL server when the suite has one (CI does), else SQLite in the data folder
    settings = {"data_dir": str(data), "cpu_threads": 1, "url_allowlist": ["127.0.0.1"], "api_max_streams": 3,
                "api_max_events": 500, "api_max_body": 200_000, "database_url": os.environ.get("ACE_TEST_DATABASE_URL", "")}
    controller = ControllerActor.options(num_cpus=0.05, max_concurrency=16).remote(settings)
    backend = Backend(settings, control=RayStreamControl(controller))
    acme = backend.store.create_token("acme")[1]
    globex = backend.store.create_token("globex")[1]
    client = TestClient(build_app(backend), raise_server_exceptions=False)
    yield client, {"acme": {"Authorization": f"Bearer {acme}"}, "globex": {"Authorization": f"Bearer {globex}"}}, backend, controller
    for st in ray.get(controller.status.remote(tenant="acme")) + ray.get(controller.status.remote(tenant="globex")):
        try:
            ray.get(controller.stop.remote(st["id"], tenant=st["tenant"]), timeout=60)
        except Exception:
            pass
    ray.kill(controller)


def _ranked_show(backend, tenant: str = "acme") -> tuple[str, list]:
    """A recorded show of ``tenant`` straight in the store: four moments with known ranks and
    confidences (one weak, one not ranked), three of them with clips."""
    import uuid

    from ace.types import Clip, Moment

    sid = f"ranked-{uuid.uuid4().hex[:8]}"
    backend.store.upsert_show(sid, path="ranked.mp4", name="ranked", duration=300.0, settings_hash="h", status="done",
                              tenant=tenant)
    ms = [Moment(sid, 10.0, 20.0, 0.62, 14.0, rank=2, confidence=71.5, strong=True),
          Moment(sid, 40.0, 55.0, 0.91, 47.0, rank=1, confidence=88.0, strong=True),
          Moment(sid, 90.0, 100.0, 0.48, 95.0, rank=3, confidence=33.0, strong=False),
          Moment(sid, 150.0, 160.0, 0.55, 155.0, rank=0, confidence=52.0, strong=True)]
    clips = [Clip(m.id, f"/nowhere/{m.id}.mp4", m.start, m.end, "fast") for m in ms[:3]]
    backend.store.save_results(sid, ms, clips, settings_hash="h", tenant=tenant)
    return sid, ms


def test_moments_and_clips_carry_rank_confidence_and_strength(office):
    client, auth, backend, _ = office
    sid, ms = _ranked_show(backend)
    acme = auth["acme"]
    got = client.get(f"/streams/{sid}/moments", headers=acme).json()
    assert [m["start"] for m in got] == [10.0, 40.0, 90.0, 150.0]  # time order by default
    assert [(m["id"], m["rank"], m["confidence"], m["strong"]) for m in got] == [
        (m.id, m.rank, m.confidence, m.strong) for m in ms]
    assert all(type(m["rank"]) is int and type(m["strong"]) is bool and type(m["confidence"]) is float for m in got)
    assert got[0]["score"] == 0.62  # the raw evidence is still there, unchanged

    by_rank = client.get(f"/streams/{sid}/moments?order=rank", headers=acme).json()
    assert [m["rank"] for m in by_rank] == [1, 2, 3, 0]  # the best first, unranked last
    assert client.get(f"/streams/{sid}/moments?order=time", headers=acme).json() == got
    sure = client.get(f"/streams/{sid}/moments?min_confidence=52", headers=acme).json()
    assert [m["confidence"] for m in sure] == [71.5, 88.0, 52.0]
    assert [m["rank"] for m in client.get(f"/streams/{sid}/moments?min_confidence=60&order=rank", headers=acme).json()] == [1, 2]
    assert [m["rank"] for m in client.get(f"/streams/{sid}/moments?min_confidence=60&min_score=0.9", headers=acme).json()] == [1]
    assert client.get(f"/streams/{sid}/moments?min_confidence=100", headers=acme).json() == []

    clips = client.get(f"/streams/{sid}/clips", headers=acme).json()
    assert [(c["moment_id"], c["rank"], c["confidence"], c["strong"]) for c in clips] == [
        (m.id, m.rank, m.confidence, m.strong) for m in ms[:3]]
    assert [c["rank"] for c in client.get(f"/streams/{sid}/clips?min_confidence=70", headers=acme).json()] == [2, 1]
    one = client.get(f"/clips/{ms[2].id}", headers=acme).json()
    assert (one["rank"], one["confidence"], one["strong"], one["score"]) == (3, 33.0, False, 0.48)

    # bad values say so (422), on both routes
    for query in ("order=score", "order=", "order=RANK", "min_confidence=101", "min_confidence=-1", "min_confidence=high"):
        r = client.get(f"/streams/{sid}/moments?{query}", headers=acme)
        assert r.status_code == 422 and query.split("=")[0] in r.json()["error"], (query, r.text)
    for query in ("min_confidence=100.5", "min_confidence=-0.1"):
        assert client.get(f"/streams/{sid}/clips?{query}", headers=acme).status_code == 422, query

    # another tenant sees nothing of it, whatever it asks
    globex = auth["globex"]
    for path in (f"/streams/{sid}/moments?order=rank", f"/streams/{sid}/moments?min_confidence=0",
                 f"/streams/{sid}/clips?min_confidence=0", f"/streams/{sid}/clips"):
        r = client.get(path, headers=globex)
        assert r.status_code == 404 and r.json() == {"error": f"no stream {sid!r}"}, (path, r.text)
    r = client.get(f"/clips/{ms[1].id}", headers=globex)
    assert r.status_code == 404 and r.json() == {"error": f"no clip {ms[1].id!r}"}, r.text
    # and its own show of the same shape lists only its own moments
    theirs, their_ms = _ranked_show(backend, tenant="globex")
    assert {m["id"] for m in client.get(f"/streams/{theirs}/moments?order=rank", headers=globex).json()} == {m.id for m in their_ms}
    assert client.get(f"/streams/{theirs}/moments", headers=acme).status_code == 404


@pytest.mark.slow
def test_a_stream_with_events_is_the_tenants_alone(office, hls_server):
    client, auth, _, _ = office
    r = client.post("/streams", json={"url": hls_server, "name": "Room One", "products": ["lipstick"], "category": "beauty"},
                    headers=auth["acme"])
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert sid in [s["id"] for s in client.get("/streams", headers=auth["acme"]).json()]
    assert sid not in [s["id"] for s in client.get("/streams", headers=auth["globex"]).json()]
    for method, path in [("get", f"/streams/{sid}"), ("post", f"/streams/{sid}/stop"), ("get", f"/streams/{sid}/moments"),
                         ("get", f"/streams/{sid}/ramp"), ("post", f"/streams/{sid}/events")]:
        kw = {"json": [{"t": 1, "kind": "chat"}]} if path.endswith("events") else {}
        assert getattr(client, method)(path, headers=auth["globex"], **kw).status_code == 404, path
    # events: a JSON array, NDJSON, a retried batch, and bad input that accepts nothing
    batch = [{"t": 1.0 + i * 0.1, "kind": "chat", "user": f"u{i}", "text": "wow"} for i in range(50)]
    assert client.post(f"/streams/{sid}/events", json=batch, headers=auth["acme"]).json() == {"accepted": 50}
    nd = "\n".join(json.dumps({"t": 3.0, "kind": "like", "user": f"v{i}"}) for i in range(20)) + "\n"
    r = client.post(f"/streams/{sid}/events", content=nd, headers=auth["acme"] | {"content-type": "application/x-ndjson"})
    assert r.json() == {"accepted": 20}
    key = {"Idempotency-Key": "batch-7"}
    for _ in range(2):
        r = client.post(f"/streams/{sid}/events", json=batch[:10], headers=auth["acme"] | key)
        assert r.json() == {"accepted": 10}
    r = client.post(f"/streams/{sid}/events", json=batch[:5] + [{"t": -1, "kind": "chat"}, {"kind": "dance", "t": 2}],
                    headers=auth["acme"])
    assert r.status_code == 422 and "none accepted" in r.json()["error"] and len(r.json()["problems"]) == 2
    assert client.post(f"/streams/{sid}/events", json=batch * 11, headers=auth["acme"]).status_code == 413
    assert client.post(f"/streams/{sid}/events", json={"t": 1}, headers=auth["acme"]).status_code == 422
    st = client.get(f"/streams/{sid}", headers=auth["acme"]).json()
    assert st["events_received"] == 80, st  # 50 + 20 + 10 once, nothing of the refused ones
    # the ramp answers with an empty history before any decision, not an error
    ramp = wait_for(lambda: (r := client.get(f"/streams/{sid}/ramp", headers=auth["acme"])).status_code == 200 and r.json())
    assert ramp["history"] == [] and ramp["level"] is None
    # the finite stream ends by itself
    final = wait_for(lambda: (s := client.get(f"/streams/{sid}", headers=auth["acme"]).json())["status"] in ("ended", "failed") and s)
    assert final["status"] == "ended", final


@pytest.mark.slow
def test_submission_bursts_are_answered_never_lost(office):
    client, auth, _, _ = office
    import httpx

    async def burst():
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            return await asyncio.gather(*[ac.post("/streams", json={"url": f"http://127.0.0.1:9/never-{i}.m3u8"},
                                                  headers=auth["globex"]) for i in range(12)])

    answers = asyncio.run(burst())
    codes = [r.status_code for r in answers]
    assert set(codes) <= {201, 429, 503}, codes
    assert 1 <= codes.count(201) <= 3  # the tenant's limit of live streams is 3
    assert all("retry-after" in r.headers for r in answers if r.status_code != 201)
    accepted = {r.json()["id"] for r in answers if r.status_code == 201}
    listed = {s["id"] for s in client.get("/streams", headers=auth["globex"]).json()}
    assert accepted <= listed


@pytest.mark.slow
def test_a_batch_job_gives_clips_to_play_seek_and_review(office):
    client, auth, _, _ = office
    r = client.post("/jobs", json={"name": "rerun", "items": [{"path": "show.mp4"}]}, headers=auth["acme"])
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    assert client.get(f"/jobs/{jid}", headers=auth["globex"]).status_code == 404
    job = wait_for(lambda: (j := client.get(f"/jobs/{jid}", headers=auth["acme"]).json())["status"] != "running" and j, timeout=300)
    assert job["status"] == "done" and job["progress"] == 1.0, job
    show = job["items"][0]["show_id"]
    st = client.get(f"/streams/{show}", headers=auth["acme"]).json()
    assert st["kind"] == "recorded" and st["status"] == "done" and st["duration"] > 60
    assert client.get(f"/streams/{show}", headers=auth["globex"]).status_code == 404
    moments = client.get(f"/streams/{show}/moments", headers=auth["acme"]).json()
    assert moments and all(m["clip"] for m in moments)
    # the pipeline's ranks and confidences reach the API: best first with order=rank
    assert all(isinstance(m["rank"], int) and 0 <= m["confidence"] <= 100 and isinstance(m["strong"], bool) for m in moments)
    ranked = client.get(f"/streams/{show}/moments?order=rank", headers=auth["acme"]).json()
    assert sorted(m["id"] for m in ranked) == sorted(m["id"] for m in moments)
    ranks = [m["rank"] for m in ranked]
    assert ranks[0] == 1 and ranks == sorted(ranks, key=lambda r: (r == 0, r)), ranks
    assert client.get(f"/streams/{show}/moments", headers=auth["globex"]).status_code == 404
    high = client.get(f"/streams/{show}/moments?min_score=0.99", headers=auth["acme"]).json()
    assert all(m["score"] >= 0.99 for m in high) and len(high) <= len(moments)
    first = moments[0]
    window = client.get(f"/streams/{show}/moments?start={first['end'] + 0.01}", headers=auth["acme"]).json()
    assert first["id"] not in [m["id"] for m in window]
    mid = first["id"]
    whole = client.get(f"/clips/{mid}/video", headers=auth["acme"])
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4" and whole.content[4:8] == b"ftyp"
    part = client.get(f"/clips/{mid}/video", headers=auth["acme"] | {"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    assert client.get(f"/clips/{mid}/video", headers=auth["globex"]).status_code == 404
    vtt = client.get(f"/clips/{mid}/captions", headers=auth["acme"])
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    thumb = client.get(f"/clips/{mid}/thumbnail", headers=auth["acme"])
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    assert client.post(f"/clips/{mid}/review", json={"verdict": "approve"}, headers=auth["globex"]).status_code == 404
    assert client.post(f"/clips/{mid}/review", json={"verdict": "maybe"}, headers=auth["acme"]).status_code == 422
    assert client.post(f"/clips/{mid}/review", json={"verdict": "reject", "note": "off topic"}, headers=auth["acme"]).json()["verdict"] == "reject"
    again = {m["id"]: m for m in client.get(f"/streams/{show}/moments", headers=auth["acme"]).json()}
    assert again[mid]["review"] == "reject"
    meta = client.get(f"/clips/{mid}", headers=auth["acme"]).json()
    assert meta["moment_id"] == mid and meta["video"].endswith("/video") and "path" not in meta
    assert client.get(f"/streams/{show}/ramp", headers=auth["acme"]).json()["history"] == []


def test_rate_limit_answers_429_with_retry_after(ray_local, tmp_path):
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend

    backend = Backend({"data_dir": str(tmp_path / "data"), "api_rate": 1.0})
    token = backend.store.create_token("acme")[1]
    client = TestClient(build_app(backend))
    codes = [client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(5)]
    assert codes[:2] == [200, 200] and 429 in codes
    r = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def _alive_actor_names(prefix: str) -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("name", "").startswith(prefix)}


@pytest.mark.slow
def test_events_are_counted_exactly_once_also_across_an_actor_restart(office, short_show):
    import ray

    client, auth, _, controller = office
    # a local file played at real speed (the operator's path) keeps the stream live for the test
    sid = ray.get(controller.submit.remote(str(short_show.video), name="once", tenant="acme"))
    events = f"/streams/{sid}/events"
    wait_for(lambda: client.get(f"/streams/{sid}", headers=auth["acme"]).json().get("status") == "live", timeout=120)
    batch = [{"t": 2.0 + i * 0.1, "kind": "chat", "user": f"u{i}", "text": "wow"} for i in range(11)]
    key = {"Idempotency-Key": "retry-me"}
    assert client.post(events, json=batch, headers=auth["acme"] | key).json() == {"accepted": 11}
    # refused outright, nothing counted: an empty key, a reused key with other events, a lone
    # surrogate, numbers out of range, JSON nested too deeply
    assert client.post(events, json=batch, headers=auth["acme"] | {"Idempotency-Key": ""}).status_code == 422
    r = client.post(events, json=batch[:5], headers=auth["acme"] | key)
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"], r.text
    for body in (b'[{"t": 1, "kind": "chat"}, {"t": 2, "kind": "chat", "text": "\\ud800"}]',
                 b'[{"t": ' + b"1" * 400 + b', "kind": "chat"}]', b'[{"t": 1, "kind": "like", "value": ' + b"9" * 400 + b"}]",
                 b'[{"t": 1e18, "kind": "chat"}]', b'[{"t": 1, "kind": "gift", "value": -5}]', b"[" * 100_000):
        r = client.post(events, content=body, headers=auth["acme"] | {"content-type": "application/json"})
        assert r.status_code in (400, 422), (body[:50], r.status_code, r.text[:200])
    assert client.get(f"/streams/{sid}", headers=auth["acme"]).json()["events_received"] == 11
    # Ray restarts the stream's actor; the retried batch is still known, a new one counts
    ray.kill(ray.get_actor(f"ace:stream:{sid}", namespace="ace"), no_restart=False)
    assert client.post(events, json=batch, headers=auth["acme"] | key).json() == {"accepted": 11}
    assert client.post(events, json=batch[:3], headers=auth["acme"] | {"Idempotency-Key": "after"}).json() == {"accepted": 3}
    assert client.post(events, json=batch[:3], headers=auth["acme"] | {"Idempotency-Key": "after"}).json() == {"accepted": 3}
    st = client.get(f"/streams/{sid}", headers=auth["acme"]).json()
    assert st["restarts"] == 1 and st["events_received"] == 14, st
    lines = (Path(backend_data(office)) / "live" / sid / "events.jsonl").read_text().splitlines()
    assert len(lines) == 14
    # a stopped stream answers its final status, and refuses events with 409 (the same for a retry)
    assert client.post(f"/streams/{sid}/stop", headers=auth["acme"]).json()["status"] == "stopped"
    r = client.post(events, json=batch[:1], headers=auth["acme"] | {"Idempotency-Key": "late"})
    assert r.status_code == 409 and "stopped" in r.json()["error"], r.text
    # the other tenant's answer for this id is the one for an id that does not exist
    a = client.post(events, json=batch[:1], headers=auth["globex"])
    b = client.post("/streams/no-such-stream/events", json=batch[:1], headers=auth["globex"])
    assert a.status_code == b.status_code == 404 and a.json()["error"] == f"no stream {sid!r}"
    assert b.json()["error"] == "no stream 'no-such-stream'"


def backend_data(office) -> str:
    return office[2].settings.data_dir


@pytest.mark.slow
def test_finished_streams_and_jobs_give_their_actors_back(office, hls_server):
    client, auth, _, controller = office
    import ray

    ids = []
    for _ in range(5):  # more than the tenant's limit of 3 live streams: stopped ones do not count
        r = client.post("/streams", json={"url": hls_server, "name": "cycle"}, headers=auth["acme"] | {})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        assert client.post(f"/streams/{ids[-1]}/stop", headers=auth["acme"]).json()["status"] == "stopped"
    names = {f"ace:stream:{s}" for s in ids}
    wait_for(lambda: not (names & _alive_actor_names("ace:stream:")), timeout=30)
    listed = {s["id"]: s for s in client.get("/streams", headers=auth["acme"]).json()}
    assert all(listed[s]["status"] == "stopped" for s in ids)
    assert client.get(f"/streams/{ids[0]}", headers=auth["acme"]).json()["status"] == "stopped"
    assert client.get(f"/streams/{ids[0]}", headers=auth["globex"]).status_code == 404
    assert client.post(f"/streams/{ids[0]}/stop", headers=auth["acme"]).json()["status"] == "stopped"
    # a stream that ends by itself goes too
    r = client.post("/streams", json={"url": hls_server, "name": "ends"}, headers=auth["acme"])
    sid = r.json()["id"]
    wait_for(lambda: client.get(f"/streams/{sid}", headers=auth["acme"]).json()["status"] == "ended", timeout=120)
    wait_for(lambda: f"ace:stream:{sid}" not in _alive_actor_names("ace:stream:"), timeout=30)
    assert ray.get(controller.streams.remote(tenant="acme")) == [] or sid not in ray.get(controller.streams.remote(tenant="acme"))


@pytest.mark.slow
def test_a_batch_job_by_url_is_fetched_through_the_guard(office, hls_server):
    client, auth, _, _ = office
    r = client.post("/jobs", json={"name": "by-url", "items": [{"url": hls_server}]}, headers=auth["acme"])
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    job = wait_for(lambda: (j := client.get(f"/jobs/{jid}", headers=auth["acme"]).json())["status"] != "running" and j, timeout=300)
    assert job["status"] == "done", job
    item = job["items"][0]
    assert item["ok"] and item["duration"] > 10 and item["source"] == hls_server
    st = client.get(f"/streams/{item['show_id']}", headers=auth["acme"]).json()
    assert st["kind"] == "recorded" and st["status"] == "done"
    # the job's progress actor is gone once the job is done; its view stays
    wait_for(lambda: f"ace:job:{jid}" not in _alive_actor_names("ace:job:"), timeout=30)
    assert client.get(f"/jobs/{jid}", headers=auth["acme"]).json() == job
    # a recording that redirects to a metadata address: refused by the guard, said in a sentence
    moved = hls_server.rsplit("/", 1)[0] + "/moved.m3u8"
    r = client.post("/jobs", json={"items": [{"url": moved}]}, headers=auth["acme"])
    jid = r.json()["id"]
    job = wait_for(lambda: (j := client.get(f"/jobs/{jid}", headers=auth["acme"]).json())["status"] != "running" and j, timeout=120)
    err = job["items"][0]["error"]
    assert job["status"] == "failed" and err.startswith("cannot fetch") and "Traceback" not in err and "Error" not in err, err
