"""The traffic ramp fed by live streams: each stream's worker tallies its room, the controller
collects every live room for a tick, the ramp actor decides, keeps the decisions in the store for
the back office (per tenant) and sends them to the platform's sink."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from ace.config import Settings
from ace.types import Moment
from workers.live import StreamSpec, StreamWorker


def _promoted(t: float, n: int) -> list[dict]:
    """One second of a room on promoted traffic: impressions, entries, watch time, an order."""
    evs = [{"t": t, "kind": "impression", "value": 40 * n, "promoted": True}]
    for i in range(n):
        u = f"u{int(t)}-{i}"
        evs += [{"t": t, "kind": "entry", "user": u, "promoted": True, "trusted": True},
                {"t": t, "kind": "watch", "user": u, "value": 30, "promoted": True, "trusted": True}]
    evs.append({"t": t, "kind": "order", "user": f"u{int(t)}-0", "promoted": True, "trusted": True})
    return evs


def test_a_stream_worker_reports_its_room_for_a_tick(short_show, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", cpu_threads=1)
    worker = StreamWorker(StreamSpec("room", str(short_show.video), tenant="acme", category="food", budget=9000.0),
                          settings, with_speech=False)
    t0 = time.time()
    assert worker.push_events(_promoted(3.0, 4)) == 10
    # a moment found now, 6 s behind the analysed edge of 40 s: on the wall clock it ended 6 s ago
    worker.analyzer._analysed = 40.0
    m = Moment("room", 20.0, 34.0, 0.8, 30.0)
    worker._take(SimpleNamespace(moments=[m], clips=[], latency_s={}))
    agg, moments = worker.room(t0 - 1, time.time() + 1)
    assert (agg.stream_id, agg.category, agg.budget) == ("room", "food", 9000.0)
    assert (agg.impressions, agg.entries, agg.watch_s, agg.orders, agg.orders_held) == (160, 4, 120, 1, 0)
    assert agg.users == 4 and agg.trusted_users == 4
    assert len(moments) == 1 and moments[0].score == 0.8
    assert abs(moments[0].end - (time.time() - 6.0)) < 2.0 and moments[0].end - moments[0].start == pytest.approx(14.0)
    # the next tick's window holds none of it
    later = time.time() + 1
    agg2, moments2 = worker.room(later, later + 30)
    assert agg2.impressions == 0 and moments2 == []
    worker._status = "ended"
    assert worker.room(t0 - 1, time.time() + 1) is None  # an ended room is not live
    worker.ingest.discard()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_the_ramp_actor_decides_for_live_rooms_and_keeps_the_decisions(short_show, tmp_path):
    import ray

    from workers.controller import get_controller
    from workers.ramp import get_ramp

    sink = tmp_path / "decisions.jsonl"
    data = str(tmp_path / "data")
    controller = get_controller(create=True, settings={"data_dir": data, "cpu_threads": 1})
    ramp = None
    sids = []
    try:
        good = ray.get(controller.submit.remote(str(short_show.video), name="good", tenant="acme", category="beauty"))
        quiet = ray.get(controller.submit.remote(str(short_show.video), name="quiet", tenant="globex"))
        sids = [good, quiet]
        with pytest.raises(ray.exceptions.RayTaskError, match="category"):
            ray.get(controller.submit.remote(str(short_show.video), category="weapons"))
        ramp = get_ramp({"data_dir": data, "ramp_tick_s": 2.0, "ramp_sink": str(sink)})
        t0 = time.time()
        while time.time() - t0 < 16:
            ray.get(controller.push_events.remote(good, _promoted(time.time() - t0, 5), tenant="acme"))
            time.sleep(1.0)
        stats = ray.get(ramp.stats.remote())
        assert stats["ticks"] >= 4 and stats["feed_errors"] == 0 and stats["record_errors"] == 0, stats
        latest = ray.get(ramp.latest.remote())
        assert set(latest) == {good, quiet}
        # the back office's view: the tenant's own rooms only
        mine = ray.get(controller.ramp.remote(good, tenant="acme"))
        assert mine["level"] and mine["history"] and all(d["stream_id"] == good for d in mine["history"])
        assert mine["history"][-1]["reason"]
        assert sum(d["share"] for d in ray.get(ramp.latest.remote()).values()) <= 1.0 + 1e-9
        with pytest.raises(ray.exceptions.RayTaskError, match="no stream"):
            ray.get(controller.ramp.remote(good, tenant="globex"))
        # the converting room ends up with more of the pool than the silent one
        assert latest[good]["share"] > latest[quiet]["share"], latest
        # the platform's sink got the same decisions
        rows = [json.loads(x) for x in sink.read_text().splitlines()]
        assert {r["stream_id"] for r in rows} == {good, quiet}
        # a stopped room drops out of the next ticks
        ray.get(controller.stop.remote(quiet, tenant="globex"), timeout=60)
        time.sleep(5.0)
        assert set(ray.get(ramp.latest.remote())) == {good}
    finally:
        for s, tenant in zip(sids, ("acme", "globex")):
            try:
                ray.get(controller.stop.remote(s, tenant=tenant), timeout=60)
            except Exception:
                pass
        if ramp is not None:
            ray.get(ramp.stop.remote())
            ray.kill(ramp)
        ray.get(controller.shutdown_streams.remote(), timeout=120)  # the cluster controller's are detached
        ray.kill(controller)
