"""Clips in shared clip storage (a folder, or S3 on a real local server): a recorded show's clips
are put there, the store keeps their locations, and the back office serves them from it (whole, by
HTTP Range, captions and thumbnails), to their tenant only. No Ray: the clip routes need none."""

from __future__ import annotations

import pytest

from ace.clipstore import FolderStorage, S3Storage, storage_for
from ace.config import Settings
from ace.store import Store
from tests.util import first_seconds


@pytest.fixture(scope="module")
def show20(short_show, tmp_path_factory):
    """The sample show's first 40 s (a planted highlight in it) with its events."""
    return first_seconds(short_show.video, 40, tmp_path_factory.mktemp("show20") / "show.mp4")


@pytest.fixture(params=["folder", "s3"])
def stored_settings(request, tmp_path):
    if request.param == "folder":
        shared = tmp_path / "shared-clips"
        shared.mkdir()
        return Settings(data_dir=tmp_path / "data", cpu_threads=1, clip_storage=str(shared))
    endpoint, _client = request.getfixturevalue("s3_server")
    from tests.conftest import BUCKET

    return Settings(data_dir=tmp_path / "data", cpu_threads=1, clip_storage=f"s3://{BUCKET}/{tmp_path.name}",
                    s3_endpoint=endpoint)


def test_a_shows_clips_go_to_clip_storage_and_are_served_from_it(stored_settings, show20, tmp_path):
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend
    from ace.pipeline import ShowPipeline

    s = stored_settings
    store = Store.from_settings(s)
    result = ShowPipeline(s).process(str(show20), str(tmp_path / "out"), None, store=store, tenant="acme", show_id="show-1")
    assert result.ok and result.clips, result.error
    storage = storage_for(s)
    assert isinstance(storage, FolderStorage if not s.clip_storage.startswith("s3://") else S3Storage)
    rows = store.list_clips("show-1", tenant="acme")
    assert rows and all(storage.owns(r["path"]) and storage.exists(r["path"]) for r in rows)
    assert all(storage.owns(r["srt_path"]) for r in rows)
    # the output folder keeps its own copy
    assert all(c.path.startswith(str(tmp_path / "out")) for c in result.clips)

    _tid, acme = store.create_token("acme")
    _tid, globex = store.create_token("globex")
    client = TestClient(build_app(Backend(s)), raise_server_exceptions=False)
    auth = {"Authorization": f"Bearer {acme}"}
    mid = rows[0]["moment_id"]
    with storage.open(rows[0]["path"]) as fh:
        data = fh.read()
    whole = client.get(f"/clips/{mid}/video", headers=auth)
    assert whole.status_code == 200 and whole.content == data and whole.headers["content-type"] == "video/mp4"
    part = client.get(f"/clips/{mid}/video", headers=auth | {"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(f"/clips/{mid}/video", headers=auth | {"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    assert client.get(f"/clips/{mid}/video", headers=auth | {"Range": f"bytes={len(data) + 10}-"}).status_code == 416
    assert client.get(f"/clips/{mid}/captions", headers=auth).text.startswith("WEBVTT")
    thumb = client.get(f"/clips/{mid}/thumbnail", headers=auth)
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    assert client.get(f"/clips/{mid}/video", headers={"Authorization": f"Bearer {globex}"}).status_code == 404

    # a row naming a file outside the storage and the data folder is not served
    import sqlalchemy as sa

    from ace.schema import clips_table

    with store.engine.begin() as conn:
        conn.execute(sa.update(clips_table).where(clips_table.c.moment_id == mid).values(path="/etc/passwd"))
    assert client.get(f"/clips/{mid}/video", headers=auth).status_code == 404
    store.close()
