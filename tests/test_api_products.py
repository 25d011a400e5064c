"""The back office's products, product clips and ad-wording settings, against a fake of
:class:`ace.control.StreamControl` (no Ray): product objects are checked at the edge and handed on
as dicts; a stream's product segments, their clips' files and the ad-wording hits are the tenant's
own; each tenant keeps its own ad-wording list."""

from __future__ import annotations

import pytest

from ace.products.adwords import DEFAULT_AD_WORDS
from ace.types import AdWordHit, Clip, Moment, Product, ProductSegment
from tests.test_api_protocol import FakeControl


class ProductControl(FakeControl):
    """The fake control, remembering the products each stream was submitted with."""

    def __init__(self):
        super().__init__()
        self.products: list = []

    async def submit(self, tenant, url, *, products=None, **kw):
        self.products.append(products)
        return await super().submit(tenant, url, **kw)


@pytest.fixture
def office(tmp_path):
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend

    control = ProductControl()
    backend = Backend({"data_dir": str(tmp_path / "data"), "url_allowlist": ["127.0.0.1"], "ad_words": ["最好", "best ever"]},
                      control=control)
    auth = {t: {"Authorization": f"Bearer {backend.store.create_token(t)[1]}"} for t in ("acme", "globex")}
    return TestClient(build_app(backend), raise_server_exceptions=False), backend, control, auth


MUG = {"id": "mug-01", "name": "Aurora travel mug", "aliases": ["travel mug", "旅行杯"], "price": 29, "sku": "AUR-350",
       "image": "https://shop.example/mug.jpg"}


def test_submit_takes_product_objects_and_names_and_hands_on_dicts(office):
    client, _backend, control, auth = office
    r = client.post("/streams", json={"url": "http://127.0.0.1:9/live.m3u8", "products": [MUG, "Desk lamp", {"id": 7, "name": "Pen",
                                                                                                       "price": "¥12.50"}]},
                    headers=auth["acme"])
    assert r.status_code == 201, r.text
    assert control.products == [[MUG, {"id": "Desk-lamp", "name": "Desk lamp"}, {"id": "7", "name": "Pen", "price": 12.5}]]
    # plain names, as before
    assert client.post("/streams", json={"url": "http://127.0.0.1:9/a.m3u8", "products": ["a", "b"]},
                       headers=auth["acme"]).status_code == 201
    assert control.products[-1] == [{"id": "a", "name": "a"}, {"id": "b", "name": "b"}]


@pytest.mark.parametrize("products, words", [
    ([MUG, {"id": "x", "name": "X", "price": -3}], ["products[1]", "'price'"]),
    ([{"id": "x", "name": "X", "colour": "red"}], ["products[0]", "'colour'"]),
    ([{"name": "no id"}], ["products[0]", "'id'"]),
    ([{"id": "x", "name": ""}], ["products[0]", "'name'"]),
    ([{"id": "x", "name": "X", "image": "javascript:alert(1)"}], ["products[0]", "'image'"]),
    ([MUG, MUG], ["products[1]", "used twice"]),
    ([42], ["products[0]", "expected a product object or a name"]),
    (["p"] * 201, ["products", "at most 200"]),
    ("mug", ["products"]),
])
def test_a_bad_product_is_refused_naming_the_item_and_field(office, products, words):
    client, _backend, control, auth = office
    r = client.post("/streams", json={"url": "http://127.0.0.1:9/live.m3u8", "products": products}, headers=auth["acme"])
    assert r.status_code == 422, r.text
    assert all(w in r.json()["error"] for w in words), r.json()
    assert control.products == []  # never reached the cluster


def _show(backend, tmp_path) -> dict:
    """acme's recorded show with two moments (one cut), a product segment with a clip (files in the
    data folder), one without, and three ad-wording hits."""
    store = backend.store
    store.upsert_show("show1", path="show.mp4", name="show one", duration=600.0, settings_hash="h", status="done", tenant="acme")
    ms = [Moment("show1", 10.0, 20.0, 0.8, 15.0, rank=1, confidence=80.0), Moment("show1", 100.0, 110.0, 0.6, 105.0, rank=2)]
    folder = tmp_path / "data" / "clips"
    folder.mkdir(parents=True)
    (folder / "m0.mp4").write_bytes(b"moment clip")
    store.save_results("show1", ms, [Clip(ms[0].id, str(folder / "m0.mp4"), 8.0, 22.0, "exact")], "h", tenant="acme")
    mug, lamp = Product("mug-01", "Aurora travel mug", price=29.0), Product("lamp", "Desk lamp")
    segs = [ProductSegment("show1", "mug-01", "Aurora travel mug", 1, 5.0, 60.0, 82.5, ("travel mug", "29"), ("name", "price")),
            ProductSegment("show1", "lamp", "Desk lamp", 1, 280.0, 320.0, 40.0, ("desk lamp",), ("name",))]
    (folder / "mug-01-1.mp4").write_bytes(bytes(range(256)) * 4)
    (folder / "mug-01-1.srt").write_text("1\n00:00:01,000 --> 00:00:02,500\n这是最好的杯子\n", encoding="utf-8")
    (folder / "mug-01-1.jpg").write_bytes(b"\xff\xd8jpeg")
    clip = Clip(segs[0].id, str(folder / "mug-01-1.mp4"), 5.0, 60.0, "exact", srt_path=str(folder / "mug-01-1.srt"),
                thumb_path=str(folder / "mug-01-1.jpg"))
    hits = [AdWordHit("最好", 8.5, 9.0, "这是最好的杯子"), AdWordHit("第一", 105.0, 105.4, "全网第一"),
            AdWordHit("best ever", 300.0, 301.0, "best ever lamp")]
    store.save_products("show1", segs, {segs[0].id: clip}, hits, tenant="acme", products=[mug, lamp])
    return {"moments": [m.id for m in ms], "segments": [g.id for g in segs]}


def test_products_segments_clips_and_hits_per_tenant(office, tmp_path):
    client, backend, _control, auth = office
    acme, globex = auth["acme"], auth["globex"]
    ids = _show(backend, tmp_path)
    mug, lamp = ids["segments"]
    got = client.get("/streams/show1/products", headers=acme)
    assert got.status_code == 200, got.text
    doc = got.json()
    assert doc["stream_id"] == "show1"
    assert doc["products"] == [{"id": "mug-01", "name": "Aurora travel mug", "price": 29}, {"id": "lamp", "name": "Desk lamp"}]
    a, b = doc["segments"]
    assert (a["id"], a["product"], a["name"], a["n"], a["start"], a["end"], a["confidence"]) == (
        mug, "mug-01", "Aurora travel mug", 1, 5.0, 60.0, 82.5)
    assert a["heard"] == ["travel mug", "29"] and a["evidence"] == ["name", "price"]
    assert a["clip"] == {"segment_id": mug, "start": 5.0, "end": 60.0, "mode": "exact", "video": f"/products/{mug}/video",
                         "captions": f"/products/{mug}/captions", "thumbnail": f"/products/{mug}/thumbnail"}
    assert a["ad_words"] == [{"phrase": "最好", "start": 8.5, "end": 9.0, "text": "这是最好的杯子"}]
    assert b["id"] == lamp and b["clip"] is None and [h["phrase"] for h in b["ad_words"]] == ["best ever"]
    m0, m1 = ids["moments"]
    assert [(h["phrase"], h["segment_id"], h["moment_id"]) for h in doc["ad_words"]] == [
        ("最好", mug, m0), ("第一", None, m1), ("best ever", lamp, None)]

    # the moments and clips answers carry the hits inside each clip
    moments = {m["id"]: m for m in client.get("/streams/show1/moments", headers=acme).json()}
    assert [h["phrase"] for h in moments[m0]["ad_words"]] == ["最好"]
    assert [h["phrase"] for h in moments[m0]["clip"]["ad_words"]] == ["最好"]
    assert [h["phrase"] for h in moments[m1]["ad_words"]] == ["第一"] and moments[m1]["clip"] is None
    clips = client.get("/streams/show1/clips", headers=acme).json()
    assert [[h["phrase"] for h in c["ad_words"]] for c in clips] == [["最好"]]
    assert client.get(f"/clips/{m0}", headers=acme).json()["ad_words"] == [
        {"phrase": "最好", "start": 8.5, "end": 9.0, "text": "这是最好的杯子"}]

    # the product clip's files: video with Range, captions as WebVTT (or SRT), the thumbnail
    video = client.get(f"/products/{mug}/video", headers=acme | {"Range": "bytes=10-19"})
    assert video.status_code == 206 and video.content == bytes(range(10, 20)) and video.headers["content-type"] == "video/mp4"
    assert client.get(f"/products/{mug}/video", headers=acme).content == bytes(range(256)) * 4
    captions = client.get(f"/products/{mug}/captions", headers=acme)
    assert captions.text.startswith("WEBVTT") and "00:00:01.000" in captions.text and "最好" in captions.text
    assert client.get(f"/products/{mug}/captions?format=srt", headers=acme).text.startswith("1\n00:00:01,000")
    assert client.get(f"/products/{mug}/thumbnail", headers=acme).content == b"\xff\xd8jpeg"
    r = client.get(f"/products/{lamp}/video", headers=acme)  # not cut
    assert r.status_code == 404 and r.json() == {"error": f"no product clip {lamp!r}"}

    # another tenant's, an unknown one, an id of another shape: 404 alike
    for path in ("/streams/show1/products", f"/products/{mug}/video", f"/products/{mug}/captions", f"/products/{mug}/thumbnail"):
        r = client.get(path, headers=globex)
        assert r.status_code == 404 and list(r.json()) == ["error"], (path, r.text)
    assert client.get("/streams/nope/products", headers=acme).status_code == 404
    assert client.get("/products/..%2Fetc/video", headers=acme).status_code == 404
    assert client.get("/streams/show1/products").status_code == 401

    # a show with no products: empty lists
    backend.store.upsert_show("bare", path="b.mp4", name="b", duration=1.0, settings_hash="h", status="done", tenant="acme")
    assert client.get("/streams/bare/products", headers=acme).json() == {"stream_id": "bare", "products": [], "segments": [],
                                                                        "ad_words": []}


def test_a_product_clip_file_outside_the_data_folder_is_not_served(office, tmp_path):
    client, backend, _control, auth = office
    store = backend.store
    store.upsert_show("s9", path="x.mp4", name="x", duration=60.0, settings_hash="h", status="done", tenant="acme")
    seg = ProductSegment("s9", "p", "P", 1, 1.0, 9.0, 50.0)
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"secret")
    store.save_products("s9", [seg], {seg.id: Clip(seg.id, str(outside), 1.0, 9.0, "fast")}, [], tenant="acme")
    r = client.get(f"/products/{seg.id}/video", headers=auth["acme"])
    assert r.status_code == 404 and b"secret" not in r.content


def test_ad_words_settings_per_tenant(office):
    client, backend, _control, auth = office
    acme, globex = auth["acme"], auth["globex"]
    assert client.get("/settings/ad-words", headers=acme).json() == {"ad_words": ["最好", "best ever"], "source": "default"}
    r = client.put("/settings/ad-words", json={"ad_words": ["第一!第一次", "  全网  最低 ", "第一!第一次"]}, headers=acme)
    assert r.status_code == 200, r.text
    assert r.json() == {"ad_words": ["第一!第一次", "全网 最低"], "source": "tenant"}
    assert client.get("/settings/ad-words", headers=acme).json()["source"] == "tenant"
    assert client.get("/settings/ad-words", headers=globex).json()["source"] == "default"  # the other tenant's is its own
    assert backend.store.ad_words_for("acme", DEFAULT_AD_WORDS) == ("第一!第一次", "全网 最低")
    assert backend.store.ad_words_for("globex", DEFAULT_AD_WORDS) == DEFAULT_AD_WORDS
    for bad, words in [({"ad_words": ["ok", ""]}, "ad_words[1]"), ({"ad_words": ["x" * 101]}, "ad_words[0]"),
                       ({"ad_words": [3]}, "ad_words[0]"), ({"ad_words": ["!nope"]}, "ad_words[0]"),
                       ({"ad_words": "最好"}, "ad_words"), ({"words": []}, "words"), ({"ad_words": ["a"] * 501}, "ad_words")]:
        r = client.put("/settings/ad-words", json=bad, headers=acme)
        assert r.status_code == 422 and words in r.json()["error"], (bad, r.text)
    assert client.get("/settings/ad-words", headers=acme).json()["ad_words"] == ["第一!第一次", "全网 最低"]  # unchanged
    assert client.put("/settings/ad-words", json={"ad_words": []}, headers=globex).json() == {"ad_words": [], "source": "tenant"}
    assert backend.store.ad_words_for("globex", DEFAULT_AD_WORDS) == ()
    r = client.delete("/settings/ad-words", headers=acme)
    assert r.status_code == 200 and r.json() == {"ad_words": ["最好", "best ever"], "source": "default"}
    assert client.get("/settings/ad-words", headers=globex).json() == {"ad_words": [], "source": "tenant"}
    assert client.get("/settings/ad-words").status_code == 401
