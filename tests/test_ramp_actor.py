"""The ramp actor: the plain controller without Ray, then one real local Ray instance."""

from __future__ import annotations

import json
import os

import pytest

from ace.policy import RoomAggregate
from ace.policy.sink import SinkError
from ace.types import Moment
from workers.ramp import FeedBatch, RampController

PLAN = 10_000.0


class FakeFeed:
    """Three live rooms; room-2 leaves after tick 5; a highlight in room-0 at tick 8."""

    def __init__(self):
        self.calls = []
        self.alloc = {}

    def poll(self, since, until):
        self.calls.append((since, until))
        k = len(self.calls)
        rooms = ["room-0", "room-1"] + (["room-2"] if k <= 5 else [])
        aggs = []
        for r in rooms:
            a = self.alloc.get(r, 0.0)
            aggs.append(
                RoomAggregate(
                    r,
                    category="beauty",
                    viewers=400.0,
                    impressions=a,
                    entries=a * 0.05,
                    watch_s=a * 3.5,
                    orders=a * 0.005 + (k == 2),
                    users=50.0,
                    trusted_users=30.0,
                )
            )
        moments = [Moment("room-0", until - 10.0, until + 60.0, 0.8, until)] if k == 8 else []
        return FeedBatch(aggs, moments)


class RecordingGauge:
    def __init__(self):
        self.values = {}

    def set(self, value, tags=None):
        self.values[tags["stream"]] = value


class FailingSink:
    def send(self, decisions):
        raise SinkError("platform down")

    def close(self):
        pass


def test_controller_ticks_stores_publishes_and_sends(tmp_path):
    feed = FakeFeed()
    gauge = RecordingGauge()
    out = tmp_path / "decisions.jsonl"
    c = RampController(feed, plan=PLAN, sink=str(out), history=7, gauge=gauge)
    for k in range(10):
        ds = c.tick(30.0 * (k + 1))
        feed.alloc = {d.stream_id: d.share * PLAN for d in ds}
    assert feed.calls[0] == (0.0, 30.0) and feed.calls[1] == (30.0, 60.0)
    latest = c.latest()
    assert set(latest) == {"room-0", "room-1"}  # room-2 left
    assert gauge.values["room-2"] == 0.0 and gauge.values["room-0"] == latest["room-0"]["share"]
    hist = c.history(limit=100)
    assert len(hist) == 7 and hist[-1]["t"] == 300.0  # bounded, newest last
    assert all(h["stream_id"] == "room-1" for h in c.history("room-1"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 * 3 + 5 * 2 and rows[0]["reason"]
    st = c.room_state("room-0")
    assert st["stream_id"] == "room-0" and st["budget_left"] is None
    s = c.stats()
    assert s["ticks"] == 10 and s["rooms"] == 2 and s["sink_errors"] == 0 and s["policy"] == "ramp"


def test_controller_survives_feed_and_sink_failures():
    def broken(since, until):
        raise RuntimeError("pipeline down")

    c = RampController(broken, plan=PLAN, sink=FailingSink())
    assert c.tick(30.0) == []
    assert c.stats()["feed_errors"] == 1
    ds = c.push([RoomAggregate("a", viewers=10.0)], t=60.0)
    assert len(ds) == 1 and c.stats()["sink_errors"] == 1 and "platform down" in c.stats()["last_error"]


def test_controller_accepts_tuple_feeds_and_kill_switch():
    c = RampController(lambda since, until: ([RoomAggregate("a"), RoomAggregate("b")], []), plan=PLAN)
    c.tick(30.0)
    c.kill("a")
    ds = {d.stream_id: d for d in c.tick(60.0)}
    assert ds["a"].share == 0.0 and "kill switch" in ds["a"].reason and ds["b"].share > 0


def test_controller_background_thread(tmp_path):
    feed = FakeFeed()
    clock = iter(range(30, 100_000, 30))
    c = RampController(feed, plan=PLAN, clock=lambda: float(next(clock)))
    assert c.start(interval_s=0.01)
    assert not c.start(interval_s=0.01)
    import time

    deadline = time.time() + 5.0
    while c.stats()["ticks"] < 3 and time.time() < deadline:
        time.sleep(0.01)
    c.stop()
    assert c.stats()["ticks"] >= 3 and not c.running


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import logging

    import ray

    temp = "/tmp/ace-ray-test"
    os.makedirs(temp, exist_ok=True)
    ray.init(address="local", num_cpus=1, include_dashboard=False, _temp_dir=temp, logging_level=logging.WARNING,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_ramp_actor_on_local_ray(ray_local, tmp_path):
    ray = ray_local
    from workers.ramp import RAMP_ACTOR_CPUS, RampActor

    out = tmp_path / "ray-decisions.jsonl"
    actor = RampActor.remote(None, plan=PLAN, sink=str(out))
    allocs = {}
    for k in range(6):
        aggs = [
            RoomAggregate(
                r,
                viewers=300.0,
                impressions=allocs.get(r, 0.0),
                entries=allocs.get(r, 0.0) * 0.05,
                watch_s=allocs.get(r, 0.0) * 3.0,
                users=40.0,
                trusted_users=20.0,
            )
            for r in ("a", "b")
        ]
        ds = ray.get(actor.push.remote(aggs, [], 30.0 * (k + 1)))
        allocs = {d.stream_id: d.share * PLAN for d in ds}
    latest = ray.get(actor.latest.remote())
    assert set(latest) == {"a", "b"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and {r["stream_id"] for r in rows} == {"a", "b"}
    assert ray.get(actor.stats.remote())["ticks"] == 6
    assert 0 < RAMP_ACTOR_CPUS < 1
    ray.kill(actor)


def test_the_policys_memory_survives_a_restart_through_the_store(db_url):
    """Tiers, estimates, pacing and a kill switch are kept in the control plane's table: a ramp
    started again decides as the old one would have, and the killed room stays killed."""
    from workers.ramp import StoreMemory

    settings = {"database_url": db_url}
    feed = FakeFeed()
    old = RampController(feed, plan=PLAN, memory=StoreMemory(settings))
    twin = RampController(FakeFeed(), plan=PLAN)  # the same ticks, never restarted
    for k in range(6):
        ds = old.tick(30.0 * (k + 1))
        twin.tick(30.0 * (k + 1))
        feed.alloc = twin.feed.alloc = {d.stream_id: d.share * PLAN for d in ds}
    old.kill("room-1")
    twin.kill("room-1")
    new = RampController(feed, plan=PLAN, memory=StoreMemory(settings))
    assert new.room_state("room-0") == old.room_state("room-0")
    assert new.policy.slots.get("room-1") == old.policy.slots.get("room-1")
    a, b = new.tick(210.0), twin.tick(210.0)
    assert [(d.stream_id, d.level, round(d.share, 9)) for d in a] == [(d.stream_id, d.level, round(d.share, 9)) for d in b]
    assert {d.stream_id: d.share for d in a}["room-1"] == 0.0
