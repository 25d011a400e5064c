"""The back office's routers and answer models (no Ray): every route where it was, with its tag; the
OpenAPI schema names each JSON answer's model; and the answers are the backend's dicts as they are:
no key dropped, none added, the order kept, an integer not turned into a float."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from ace.errors import NotFound
from tests.test_api_protocol import FakeControl

#: a live stream's status as its actor gives it (keys in its order), with a key no model declares
LIVE = {"id": "s1", "name": "room", "tenant": "acme", "url": "http://127.0.0.1:9/live.m3u8", "status": "live", "error": None,
        "analysed_until": 12, "lag_s": 1.5, "level": "full", "seconds_behind_live": 0.4, "reconnects": 0, "gaps": [],
        "segments": 6, "moments": 2, "clips": 1, "clip_latency_p50_s": None, "clip_latency_p95_s": 3.25, "clip_latencies": [3.25],
        "restarts": 1, "outages": [{"start": 1.0, "end": 2.0}], "node": "n1", "epoch": 3, "realtime": 0.0, "busy_p95_s": 0.2,
        "speech_lag_s": None, "cut_mean_s": 1, "cuts_ahead_used": 0, "cuts_ahead_wasted": 0, "events_received": 10,
        "something_new": {"nested": [1, 2.5, "x", None, True]}}
#: a finished stream's status (fewer keys)
FINAL = {"id": "s0", "name": "old", "tenant": "acme", "url": "rtmp://x/***", "status": "stopped", "error": "", "analysed_until": 30.0,
         "restarts": 0, "outages": []}
#: a job as the controller shows it: one item finished (its result merged in), one running
JOB = {"id": "job-1", "name": "j", "status": "running", "progress": 0.625,
       "items": [{"show_id": "job-1-0", "source": "show.mp4", "progress": 1.0, "status": "done", "attempts": 1, "ok": True,
                  "error": None, "moments": 3, "clips": 2, "duration": 40.0, "seconds": 7.5},
                 {"show_id": "job-1-1", "source": "http://x/***", "progress": 0.25, "status": "running", "attempts": 2}],
       "submitted_at": 1700000000.5, "finished_at": None}

#: every documented route: (method, path) -> its OpenAPI tags
ROUTES = {
    ("get", "/healthz"): ["meta"], ("post", "/session"): ["meta"], ("delete", "/session"): ["meta"], ("get", "/me"): ["meta"],
    ("post", "/streams"): ["streams"], ("get", "/streams"): ["streams"], ("get", "/streams/{sid}"): ["streams"],
    ("post", "/streams/{sid}/stop"): ["streams"], ("post", "/streams/{sid}/events"): ["streams"],
    ("get", "/streams/{sid}/ramp"): ["ramp"],
    ("get", "/streams/{sid}/moments"): ["moments and clips"], ("get", "/streams/{sid}/clips"): ["moments and clips"],
    ("get", "/clips/{mid}"): ["moments and clips"], ("get", "/clips/{mid}/video"): ["moments and clips"],
    ("get", "/clips/{mid}/captions"): ["moments and clips"], ("get", "/clips/{mid}/thumbnail"): ["moments and clips"],
    ("post", "/clips/{mid}/review"): ["moments and clips"],
    ("post", "/jobs"): ["batch jobs"], ("get", "/jobs"): ["batch jobs"], ("get", "/jobs/{jid}"): ["batch jobs"],
    ("get", "/streams/{sid}/products"): ["products"], ("get", "/products/{seg}/video"): ["products"],
    ("get", "/products/{seg}/captions"): ["products"], ("get", "/products/{seg}/thumbnail"): ["products"],
    ("get", "/settings/ad-words"): ["settings"], ("put", "/settings/ad-words"): ["settings"],
    ("delete", "/settings/ad-words"): ["settings"],
    ("post", "/clips/{mid}/publish"): ["moments and clips"], ("get", "/clips/{mid}/publication"): ["moments and clips"],
    ("get", "/settings/publish"): ["settings"], ("put", "/settings/publish"): ["settings"],
    ("delete", "/settings/publish"): ["settings"],
}


class RichControl(FakeControl):
    """The fake control, with statuses and jobs shaped as the cluster's are, and ramp decisions from the store."""

    def __init__(self, store):
        super().__init__()
        self.store = store
        self.streams = {"s1": copy.deepcopy(LIVE), "s0": copy.deepcopy(FINAL)}

    async def ramp(self, tenant, stream_id, limit=100):
        if self.store.get_show(stream_id, tenant=tenant) is None:
            self._own(tenant, stream_id)
        history = self.store.list_ramp_decisions(stream_id, tenant=tenant, limit=limit)
        last = history[-1] if history else None
        return {"stream_id": stream_id, "level": last and last["level"], "share": last and last["share"], "history": history}

    async def jobs(self, tenant):
        return [copy.deepcopy(JOB)] if tenant == "acme" else []

    async def job(self, tenant, job_id):
        if tenant == "acme" and job_id == JOB["id"]:
            return copy.deepcopy(JOB)
        raise NotFound(f"no job {job_id!r}")


@pytest.fixture
def office(tmp_path):
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend

    backend = Backend({"data_dir": str(tmp_path / "data"), "url_allowlist": ["127.0.0.1"]})
    backend._control = RichControl(backend.store)
    auth = {t: {"Authorization": f"Bearer {backend.store.create_token(t)[1]}"} for t in ("acme", "globex")}
    return TestClient(build_app(backend), raise_server_exceptions=False), backend, auth


def _show(backend, tmp_path) -> list[str]:
    """A recorded show of acme in the store: moments (with reasons), clips with files (one without
    captions, one without a thumbnail), a review and two ramp decisions; returns the moment ids."""
    from ace.types import Clip, Moment, Reason

    store = backend.store
    store.upsert_show("show1", path="show.mp4", name="show one", duration=300.0, settings_hash="h", status="done", tenant="acme")
    ms = [Moment("show1", 10.0, 20.0, 0.62, 14.0, reasons=(Reason("chat", 0.7, "burst"), Reason("audio", 0.3)),
                 transcript="hello", rank=2, confidence=71.5, strong=True),
          Moment("show1", 40.0, 55.0, 0.91, 47.0, rank=1, confidence=88.0, strong=True),
          Moment("show1", 90.0, 100.0, 0.48, 95.0, rank=3, confidence=33.0, strong=False),
          Moment("show1", 150.0, 160.0, 0.55, 155.0, rank=0, confidence=52.0, strong=True)]
    folder = tmp_path / "data" / "clips"
    folder.mkdir(parents=True)
    clips = []
    for i, m in enumerate(ms[:3]):
        (folder / f"{i}.mp4").write_bytes(bytes(range(256)) * 8)
        (folder / f"{i}.srt").write_text("1\n00:00:01,000 --> 00:00:02,500\nhello\n")
        (folder / f"{i}.jpg").write_bytes(b"\xff\xd8jpeg")
        clips.append(Clip(m.id, str(folder / f"{i}.mp4"), m.start, m.end, "fast",
                          srt_path=str(folder / f"{i}.srt") if i != 1 else "", thumb_path=str(folder / f"{i}.jpg") if i != 2 else ""))
    store.save_results("show1", ms, clips, settings_hash="h", tenant="acme")
    store.set_review(ms[0].id, "approve", "acme", "good one")
    store.save_ramp_decisions([{"stream_id": "show1", "t": 100.0, "level": "boost", "share": 0.25, "reason": "hot"},
                               {"stream_id": "show1", "t": 130.0, "level": "hold", "share": 0.1, "reason": "cooling"}])
    return [m.id for m in ms]


def _as_sent(obj):
    """``obj`` as the JSON a client would read if it were sent as it is (key order and number types kept)."""
    return json.loads(json.dumps(obj))


def _same(got, want) -> None:
    """Equal, with the same keys in the same order at every level, and integers still integers."""
    assert json.dumps(got) == json.dumps(want), (got, want)


# ----------------------------------------------------------------------------------- layout and OpenAPI


def test_one_router_per_resource_and_every_route_where_it_was(office):
    from fastapi import APIRouter

    from ace.api import app as app_module
    from ace.api.routes import (
        ROUTERS,
        clips,
        jobs,
        products,
        session,
        settings,
        streams,
    )

    assert all(isinstance(m.router, APIRouter) for m in (session, streams, clips, jobs, products, settings))
    assert ROUTERS == (session.router, streams.router, clips.router, jobs.router, products.router, settings.router)
    assert app_module.srt_to_vtt("1\r\n00:00:01,500 --> 00:00:02,000\r\nhi\r\n") == "WEBVTT\n\n1\n00:00:01.500 --> 00:00:02.000\nhi\n"
    client, _backend, _auth = office
    spec = client.get("/openapi.json").json()
    got = {(m, p): op.get("tags") for p, ops in spec["paths"].items() for m, op in ops.items()}
    assert got == ROUTES
    assert [t["name"] for t in spec["tags"]] == ["meta", "streams", "moments and clips", "ramp", "batch jobs", "products",
                                                 "settings"]
    # the web page, its files and the docs, outside the schema
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/nope.js").json() == {"error": "no such file"}
    assert client.get("/docs").status_code == 200


def test_openapi_names_a_response_model_for_every_json_answer(office):
    client, _backend, _auth = office
    spec = client.get("/openapi.json").json()

    def model(method, path, code="200"):
        schema = spec["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]
        ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
        return ref.rsplit("/", 1)[-1], schema.get("type", "object")

    assert model("get", "/streams") == ("StreamStatus", "array")
    assert model("get", "/streams/{sid}") == ("StreamStatus", "object")
    assert model("post", "/streams", "201") == ("StreamAccepted", "object")
    assert model("post", "/streams/{sid}/stop") == ("StreamStatus", "object")
    assert model("post", "/streams/{sid}/events") == ("EventsAccepted", "object")
    assert model("get", "/streams/{sid}/ramp") == ("RampOut", "object")
    assert model("get", "/streams/{sid}/moments") == ("MomentOut", "array")
    assert model("get", "/streams/{sid}/clips") == ("StreamClip", "array")
    assert model("get", "/clips/{mid}") == ("ClipOut", "object")
    assert model("post", "/clips/{mid}/review") == ("ReviewOut", "object")
    assert model("post", "/jobs", "201") == ("JobAccepted", "object")
    assert model("get", "/jobs") == ("JobOut", "array")
    assert model("get", "/jobs/{jid}") == ("JobOut", "object")
    assert model("get", "/me") == ("TenantOut", "object") and model("post", "/session") == ("TenantOut", "object")
    assert model("get", "/healthz") == ("OkOut", "object")
    assert model("get", "/streams/{sid}/products") == ("ProductsOut", "object")
    assert model("get", "/settings/ad-words") == ("AdWordsOut", "object")
    assert model("put", "/settings/ad-words") == ("AdWordsOut", "object")
    schemas = spec["components"]["schemas"]
    moment = schemas["MomentOut"]["properties"]
    assert moment["clip"]["anyOf"][0]["$ref"].endswith("/ClipView") and "review" in moment
    assert schemas["JobOut"]["properties"]["items"]["items"]["$ref"].endswith("/JobItemOut")
    assert schemas["RampOut"]["properties"]["history"]["items"]["$ref"].endswith("/RampDecision")
    assert {"id", "status"} <= set(schemas["StreamStatus"]["required"])
    assert schemas["StreamStatus"].get("additionalProperties") is True  # the keys it does not name are answered too
    # errors are documented as they are answered: {"error": ..., "problems": [...]}
    assert model("post", "/streams", "422") == ("ErrorOut", "object")
    assert model("get", "/streams/{sid}/moments", "404") == ("ErrorOut", "object")
    assert "HTTPValidationError" not in schemas
    assert set(spec["paths"]["/clips/{mid}/video"]["get"]["responses"]["200"]["content"]) == {"video/mp4"}


# ----------------------------------------------------------------------------------- answers as they were


def test_a_streams_status_keeps_every_key_in_its_order(office):
    client, backend, auth = office
    acme = auth["acme"]
    _same(client.get("/streams/s1", headers=acme).json(), _as_sent(LIVE))
    assert '"analysed_until":12,' in client.get("/streams/s1", headers=acme).text  # an integer stays one
    _same(client.get("/streams/s0", headers=acme).json(), _as_sent(FINAL))
    _same(client.get("/streams", headers=acme).json(), _as_sent(sorted([LIVE, FINAL], key=lambda s: s["id"])))
    got = client.get("/streams/s0", headers=acme).json()
    assert "kind" not in got and "duration" not in got  # fields the model names but the backend did not give stay out
    stopped = client.post("/streams/s1/stop", headers=acme).json()
    _same(stopped, _as_sent(LIVE | {"status": "stopped"}))
    # a recorded show (a batch job's item): its row in the store
    backend.store.upsert_show("rec-1", path="a.mp4", name="rec", duration=42.5, settings_hash="h", status="done", tenant="acme")
    _same(client.get("/streams/rec-1", headers=acme).json(), {"id": "rec-1", "name": "rec", "tenant": "acme", "kind": "recorded",
                                                              "status": "done", "error": "", "analysed_until": 42.5,
                                                              "duration": 42.5})
    r = client.post("/streams", json={"url": "http://127.0.0.1:9/a.m3u8"}, headers=acme)
    assert r.status_code == 201 and list(r.json()) == ["id", "status"] and r.json()["status"] == "starting"
    assert client.get("/streams", headers=auth["globex"]).json() == []
    assert client.get("/streams/s1", headers=auth["globex"]).json() == {"error": "no stream 's1'"}


def test_moments_clips_review_and_ramp_are_the_backends_answers(office, tmp_path):
    client, backend, auth = office
    acme = auth["acme"]
    mids = _show(backend, tmp_path)

    def direct(coro):
        return _as_sent(asyncio.run(coro))

    for query, args in [("", ()), ("?order=rank&min_confidence=40", (None, None, None, 40.0, "rank")),
                        ("?start=30&end=95", (None, 30.0, 95.0))]:
        got = client.get(f"/streams/show1/moments{query}", headers=acme).json()
        _same(got, direct(backend.moments("acme", "show1", *args)))
    moments = client.get("/streams/show1/moments", headers=acme).json()
    assert moments[0]["reasons"] == [{"source": "chat", "score": 0.7, "detail": "burst"}, {"source": "audio", "score": 0.3, "detail": ""}]
    assert moments[0]["review"] == "approve" and moments[1]["review"] is None and moments[3]["clip"] is None
    assert moments[1]["clip"]["captions"] is None and moments[2]["clip"]["thumbnail"] is None
    assert all(type(m["rank"]) is int and type(m["strong"]) is bool and type(m["confidence"]) is float for m in moments)

    clips = client.get("/streams/show1/clips", headers=acme).json()
    _same(clips, [m["clip"] | {k: m[k] for k in ("score", "rank", "confidence", "strong", "review")} for m in moments if m["clip"]])

    one = client.get(f"/clips/{mids[0]}", headers=acme).json()
    row = asyncio.run(backend.clip("acme", mids[0]))
    keep = ("moment_id", "show_id", "start", "end", "mode", "seconds", "state", "revision", "score", "rank", "confidence",
            "strong", "transcript", "reasons", "created_at")
    assert (one["state"], one["revision"]) == ("final", 0)  # a clip of a recorded show is final as cut
    _same(one, _as_sent({k: row.get(k) for k in keep} | {"video": f"/clips/{mids[0]}/video",
                                                          "captions": f"/clips/{mids[0]}/captions",
                                                          "thumbnail": f"/clips/{mids[0]}/thumbnail", "ad_words": []}))
    r = client.post(f"/clips/{mids[1]}/review", json={"verdict": "reject", "note": "meh"}, headers=acme)
    assert list(r.json()) == ["moment_id", "tenant", "verdict", "note", "updated_at"]
    assert r.json() | {"updated_at": None} == {"moment_id": mids[1], "tenant": "acme", "verdict": "reject", "note": "meh",
                                                "updated_at": None}
    assert client.get("/streams/show1/moments", headers=acme).json()[1]["review"] == "reject"

    _same(client.get("/streams/show1/ramp", headers=acme).json(), direct(backend.ramp("acme", "show1")))
    assert client.get("/streams/show1/ramp?limit=1", headers=acme).json()["history"] == [
        {"stream_id": "show1", "t": 130.0, "level": "hold", "share": 0.1, "reason": "cooling"}]
    backend.store.upsert_show("quiet", path="q.mp4", name="q", duration=1.0, settings_hash="h", status="done", tenant="acme")
    _same(client.get("/streams/quiet/ramp", headers=acme).json(), {"stream_id": "quiet", "level": None, "share": None, "history": []})
    # files are not JSON: as they were
    video = client.get(f"/clips/{mids[0]}/video", headers=acme | {"Range": "bytes=10-19"})
    assert video.status_code == 206 and video.content == bytes(range(10, 20)) and video.headers["content-type"] == "video/mp4"
    captions = client.get(f"/clips/{mids[0]}/captions", headers=acme)
    assert captions.text.startswith("WEBVTT") and captions.headers["content-type"].startswith("text/vtt")
    assert client.get(f"/clips/{mids[1]}/captions", headers=acme).json() == {"error": "this clip has no captions"}
    # another tenant's: 404, with the error's shape
    for path in ("/streams/show1/moments", "/streams/show1/clips", f"/clips/{mids[0]}", "/streams/show1/ramp"):
        r = client.get(path, headers=auth["globex"])
        assert r.status_code == 404 and list(r.json()) == ["error"], (path, r.text)


def test_jobs_and_small_answers_are_the_backends_answers(office, tmp_path):
    client, _backend, auth = office
    acme = auth["acme"]
    _same(client.get("/jobs", headers=acme).json(), _as_sent([JOB]))
    _same(client.get("/jobs/job-1", headers=acme).json(), _as_sent(JOB))
    assert client.get("/jobs/job-1", headers=auth["globex"]).status_code == 404
    assert client.get("/jobs", headers=auth["globex"]).json() == []
    (tmp_path / "data" / "media").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "media" / "show.mp4").write_bytes(b"x")
    r = client.post("/jobs", json={"items": [{"path": "show.mp4"}]}, headers=acme)
    assert r.status_code == 201 and r.json() == {"id": "job-1", "status": "running", "items": 1}
    r = client.post("/jobs", json={"items": [{"path": "show.mp4", "url": "http://127.0.0.1/x"}]}, headers=acme)
    assert r.status_code == 422 and r.json() == {"error": "items.0: give exactly one of 'path' or 'url'"}
    r = client.post("/streams/s1/events", json=[{"t": 1, "kind": "like"}, {"t": 2, "kind": "chat", "text": "hi"}], headers=acme)
    assert r.status_code == 200 and r.text == '{"accepted":2}'
    assert client.get("/healthz").text == '{"ok":true}'
    assert client.get("/me", headers=acme).json() == {"tenant": "acme"}
    r = client.get("/streams/s1/moments?min_score=2", headers=acme)
    assert r.status_code == 422 and set(r.json()) == {"error", "problems"}
