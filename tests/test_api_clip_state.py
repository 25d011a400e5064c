"""Every API answer that shows a clip says its ``state`` and ``revision``; a provisional clip cannot
be published (409) until it is final."""

from __future__ import annotations

import dataclasses

from tests.test_api_publish import _hook, _settled, office  # noqa: F401 - the office fixture


def _provisional(backend, mid: str, revision: int = 0, state: str = "provisional") -> None:
    """Make acme's clip ``mid`` of stream s1 provisional (or final again), as the live worker saves it."""
    from workers.live import _clip_from_row, _moment_from_row

    store = backend.store
    moments = [_moment_from_row("s1", r) for r in store.list_moments("s1", tenant="acme")]
    clips = [_clip_from_row(c) for c in store.list_clips("s1", tenant="acme")]
    clips = [dataclasses.replace(c, state=state, revision=revision) if c.moment_id == mid else c for c in clips]
    store.save_results("s1", moments, clips, settings_hash="h", tenant="acme")


def test_clip_answers_say_state_and_revision(office):  # noqa: F811
    client, backend, auth, mids, _hooks = office
    acme = auth["acme"]
    _provisional(backend, mids[0])
    one = client.get(f"/clips/{mids[0]}", headers=acme).json()
    assert (one["state"], one["revision"]) == ("provisional", 0)
    assert (client.get(f"/clips/{mids[1]}", headers=acme).json()["state"]) == "final"
    moments = {m["id"]: m for m in client.get("/streams/s1/moments", headers=acme).json()}
    assert (moments[mids[0]]["clip"]["state"], moments[mids[0]]["clip"]["revision"]) == ("provisional", 0)
    assert (moments[mids[1]]["clip"]["state"], moments[mids[1]]["clip"]["revision"]) == ("final", 0)
    clips = {c["moment_id"]: c for c in client.get("/streams/s1/clips", headers=acme).json()}
    assert clips[mids[0]]["state"] == "provisional" and clips[mids[1]]["state"] == "final"
    # replaced in place once final: the same id, revision 1
    _provisional(backend, mids[0], revision=1, state="final")
    one = client.get(f"/clips/{mids[0]}", headers=acme).json()
    assert (one["state"], one["revision"]) == ("final", 1) and one["moment_id"] == mids[0]
    assert len(client.get("/streams/s1/clips", headers=acme).json()) == 2
    # the documented answer has both
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("ClipOut", "ClipView", "StreamClip"):
        assert {"state", "revision"} <= set(schema[name]["properties"]), name


def test_a_provisional_clip_is_published_only_once_final(office):  # noqa: F811
    client, backend, auth, mids, _hooks = office
    acme = auth["acme"]
    hook = _hook(office)
    assert client.put("/settings/publish", json={"url": hook.url}, headers=acme).status_code == 200
    _provisional(backend, mids[0])
    r = client.post(f"/clips/{mids[0]}/publish", headers=acme)
    assert r.status_code == 409 and "provisional" in r.json()["error"] and "final" in r.json()["error"]
    assert client.get(f"/clips/{mids[0]}/publication", headers=acme).status_code == 404  # no record was made
    assert hook.requests == []
    # another tenant still gets 404, not a hint that the clip exists
    assert client.post(f"/clips/{mids[0]}/publish", headers=auth["globex"]).status_code == 404
    _provisional(backend, mids[0], revision=1, state="final")
    r = client.post(f"/clips/{mids[0]}/publish", headers=acme)
    assert r.status_code == 202
    assert _settled(client, mids[0], acme)["status"] == "sent" and len(hook.requests) == 1
