"""Product segments, ad-wording hits and a tenant's settings in the store, on SQLite always and on
PostgreSQL when ``ACE_TEST_DATABASE_URL`` names one."""

from __future__ import annotations

import pytest

from ace.errors import StoreError
from ace.products.adwords import DEFAULT_AD_WORDS
from ace.store import Store
from ace.types import AdWordHit, Clip, Moment, Product, ProductSegment

MUG = Product("mug-01", "Aurora travel mug", aliases=("travel mug",), price=29.0, sku="AUR-350")
LAMP = Product("lamp", "Desk lamp")


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.create_all()
    yield s
    s.close()


def _show(store: Store, show_id: str, tenant: str = "acme") -> None:
    store.upsert_show(show_id, path=f"/shows/{show_id}.mp4", name=show_id, duration=600.0, settings_hash="h",
                      status="running", tenant=tenant)


def _seg(show_id: str, product: Product, n: int, start: float, end: float, confidence: float = 80.0) -> ProductSegment:
    return ProductSegment(show_id, product.id, product.name, n, start, end, confidence, heard=("travel mug", "29"),
                          evidence=("name", "price"))


def _clip(key: str, start: float, end: float, out: str = "/out") -> Clip:
    return Clip(key, f"{out}/{key}.mp4", start, end, "exact", srt_path=f"{out}/{key}.srt", thumb_path=f"{out}/{key}.jpg",
                seconds=2.0)


def _moment(show_id: str, start: float, end: float) -> Moment:
    return Moment(show_id, start, end, 0.8, (start + end) / 2)


def _results(store: Store, show_id: str = "s1", tenant: str = "acme") -> tuple[list[Moment], list[Clip]]:
    """Two moments (one cut a little wider than the moment, one not cut) saved for the show."""
    ms = [_moment(show_id, 10.0, 20.0), _moment(show_id, 100.0, 110.0)]
    clips = [_clip(ms[0].id, 8.0, 22.0)]
    store.save_results(show_id, ms, clips, "h", tenant=tenant)
    return ms, clips


HITS = [AdWordHit("最好", 8.5, 9.0, "这是最好的杯子"),         # in the first moment's clip (not the moment), in the mug's segment
        AdWordHit("第一", 105.0, 105.4, "全网第一"),            # in the second moment (no clip), in no segment
        AdWordHit("best ever", 300.0, 301.0, "best ever lamp")]  # in the lamp's segment only


def test_round_trip_with_clips_catalog_and_hits(store):
    _show(store, "s1")
    ms, _clips = _results(store)
    segs = [_seg("s1", MUG, 1, 5.0, 60.0), _seg("s1", LAMP, 1, 280.0, 320.0, 55.5)]
    store.save_products("s1", segs, {segs[0].id: _clip(segs[0].id, 4.5, 60.5)}, HITS, tenant="acme", products=[MUG, LAMP])

    got = store.list_products("s1", tenant="acme")
    assert got["products"] == [{"id": "mug-01", "name": "Aurora travel mug", "aliases": ["travel mug"], "price": 29,
                                "sku": "AUR-350"}, {"id": "lamp", "name": "Desk lamp"}]
    a, b = got["segments"]  # in time order
    assert (a["id"], a["product"], a["name"], a["n"], a["start"], a["end"], a["confidence"]) == (
        segs[0].id, "mug-01", "Aurora travel mug", 1, 5.0, 60.0, 80.0)
    assert a["heard"] == ["travel mug", "29"] and a["evidence"] == ["name", "price"] and a["tenant"] == "acme"
    assert (a["clip_path"], a["srt_path"], a["thumb_path"], a["clip_start"], a["clip_end"], a["mode"]) == (
        f"/out/{segs[0].id}.mp4", f"/out/{segs[0].id}.srt", f"/out/{segs[0].id}.jpg", 4.5, 60.5, "exact")
    assert a["ad_words"] == [{"phrase": "最好", "start": 8.5, "end": 9.0, "text": "这是最好的杯子"}]
    assert (b["clip_path"], b["srt_path"], b["clip_start"], b["mode"]) == ("", "", 0.0, "")  # not cut
    assert [h["phrase"] for h in b["ad_words"]] == ["best ever"] and b["confidence"] == 55.5
    assert isinstance(a["created_at"], str)

    # each hit knows the segment and the moment's clip it was said in
    places = {h["phrase"]: (h["segment_id"], h["moment_id"]) for h in got["ad_words"]}
    assert places == {"最好": (segs[0].id, ms[0].id), "第一": (None, ms[1].id), "best ever": (segs[1].id, None)}
    assert [h["phrase"] for h in got["ad_words"]] == ["最好", "第一", "best ever"]

    # the moments and clips show the hits said inside them (the clip's interval when cut)
    by_id = {m["id"]: m for m in store.list_moments("s1", tenant="acme")}
    assert [h["phrase"] for h in by_id[ms[0].id]["ad_words"]] == ["最好"]
    assert [h["phrase"] for h in by_id[ms[1].id]["ad_words"]] == ["第一"]
    assert [h["phrase"] for h in store.list_clips("s1", tenant="acme")[0]["ad_words"]] == ["最好"]
    assert store.get_clip(ms[0].id, tenant="acme")["ad_words"] == [{"phrase": "最好", "start": 8.5, "end": 9.0,
                                                                      "text": "这是最好的杯子"}]

    # a product clip by its segment id, under the names a moment's clip uses
    pc = store.get_product_clip(segs[0].id, tenant="acme")
    assert (pc["segment_id"], pc["path"], pc["srt_path"], pc["start"], pc["end"], pc["segment_start"]) == (
        segs[0].id, f"/out/{segs[0].id}.mp4", f"/out/{segs[0].id}.srt", 4.5, 60.5, 5.0)
    assert store.get_product_clip(segs[1].id, tenant="acme") is None  # no clip
    assert store.get_product_clip("nope", tenant="acme") is None


def test_resave_replaces_in_place_and_keeps_the_catalog_unless_given(store):
    _show(store, "s1")
    segs = [_seg("s1", MUG, 1, 5.0, 60.0), _seg("s1", LAMP, 1, 280.0, 320.0)]
    store.save_products("s1", segs, {}, HITS, tenant="acme", products=[MUG, LAMP])
    first = {r["id"]: r["created_at"] for r in store.list_products("s1", "acme")["segments"]}
    # the mug's segment grows a clip and stays; the lamp's goes; a new one comes; one hit goes
    new = _seg("s1", MUG, 2, 400.0, 450.0)
    store.save_products("s1", [segs[0], new], {segs[0].id: _clip(segs[0].id, 5.0, 60.0)}, HITS[:1], tenant="acme")
    got = store.list_products("s1", "acme")
    assert [(r["id"], r["n"]) for r in got["segments"]] == [(segs[0].id, 1), (new.id, 2)]
    assert got["segments"][0]["created_at"] == first[segs[0].id] and got["segments"][0]["clip_path"]
    assert [h["phrase"] for h in got["ad_words"]] == ["最好"]
    assert [p["id"] for p in got["products"]] == ["mug-01", "lamp"]  # products=None: kept
    # the same save again changes nothing; an empty one clears segments and hits; a catalog of dicts
    store.save_products("s1", [segs[0], new], {segs[0].id: _clip(segs[0].id, 5.0, 60.0)}, HITS[:1], tenant="acme")
    assert store.list_products("s1", "acme")["segments"] == got["segments"]
    store.save_products("s1", [], {}, [], tenant="acme", products=[{"id": "x1", "name": "X"}])
    assert store.list_products("s1", "acme") == {"products": [{"id": "x1", "name": "X"}], "segments": [], "ad_words": []}


def test_hits_follow_the_moments_saved_before_or_after(store):
    _show(store, "s1")
    store.save_products("s1", [], {}, HITS, tenant="acme")  # no moments yet
    assert {h["moment_id"] for h in store.list_products("s1", "acme")["ad_words"]} == {None}
    ms, _ = _results(store)  # moments come later: the hits are placed in them
    places = {h["phrase"]: h["moment_id"] for h in store.list_products("s1", "acme")["ad_words"]}
    assert places == {"最好": ms[0].id, "第一": ms[1].id, "best ever": None}
    store.save_results("s1", [ms[1]], [], "h", tenant="acme")  # the first moment goes away
    places = {h["phrase"]: h["moment_id"] for h in store.list_products("s1", "acme")["ad_words"]}
    assert places == {"最好": None, "第一": ms[1].id, "best ever": None}


def test_tenant_isolation(store):
    _show(store, "a1", tenant="acme")
    _show(store, "g1", tenant="globex")
    seg = _seg("a1", MUG, 1, 5.0, 60.0)
    store.save_products("a1", [seg], {seg.id: _clip(seg.id, 5.0, 60.0)}, HITS, tenant="acme", products=[MUG])
    with pytest.raises(StoreError, match="another tenant"):
        store.save_products("a1", [], {}, [], tenant="globex")
    with pytest.raises(StoreError, match="upsert_show first"):
        store.save_products("nope", [], {}, [], tenant="acme")
    assert store.list_products("a1", tenant="globex") == {"products": [], "segments": [], "ad_words": []}
    assert store.get_product_clip(seg.id, tenant="globex") is None
    assert store.get_product_clip(seg.id, tenant="acme") is not None
    assert len(store.list_products("a1", tenant="acme")["segments"]) == 1
    # a clip's hits are its tenant's only
    _results(store, "g1", tenant="globex")
    assert all(m["ad_words"] == [] for m in store.list_moments("g1", tenant="globex"))
    # and deleting the show removes its segments and hits
    assert store.delete_show("a1", tenant="acme")
    assert store.list_products("a1") == {"products": [], "segments": [], "ad_words": []}


def test_bad_items_are_refused(store):
    _show(store, "s1")
    other = _seg("s2", MUG, 1, 5.0, 60.0)
    with pytest.raises(ValueError, match="belongs to show 's2'"):
        store.save_products("s1", [other], {}, [], tenant="acme")
    seg = _seg("s1", MUG, 1, 5.0, 60.0)
    with pytest.raises(ValueError, match="not among the segments"):
        store.save_products("s1", [seg], {"zzz": _clip("zzz", 0, 1)}, [], tenant="acme")


def test_tenant_settings_and_ad_words(store):
    assert store.get_tenant_setting("acme", "ad_words") is None
    assert store.get_tenant_setting("acme", "ad_words", ["x"]) == ["x"]
    assert store.ad_words_for("acme") == DEFAULT_AD_WORDS
    assert store.ad_words_for("acme", ("最好",)) == ("最好",)
    store.set_tenant_setting("acme", "ad_words", ["第一!第一次", "best ever"])
    store.set_tenant_setting("acme", "ad_words", ["最佳", "best ever"])  # replaced
    assert store.ad_words_for("acme", ("最好",)) == ("最佳", "best ever")
    assert store.ad_words_for("globex", ("最好",)) == ("最好",)  # another tenant's own
    store.set_tenant_setting("acme", "other", {"nested": [1, 2.5, None]})
    assert store.get_tenant_setting("acme", "other") == {"nested": [1, 2.5, None]}
    store.set_tenant_setting("globex", "ad_words", [])  # an empty list: the check is off
    assert store.ad_words_for("globex", ("最好",)) == ()
    store.set_tenant_setting("acme", "ad_words", None)  # back to the default
    assert store.ad_words_for("acme", ("最好",)) == ("最好",)
    with pytest.raises(ValueError):
        store.set_tenant_setting("", "ad_words", ["x"])
