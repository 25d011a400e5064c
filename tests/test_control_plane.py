"""The control plane in the store: leases and fencing, jobs, and a controller rebuilt from the rows
(on SQLite, and on PostgreSQL when ``ACE_TEST_DATABASE_URL`` names one)."""

from __future__ import annotations

import time

import pytest

from ace.controlplane import ControlPlane
from ace.errors import Refused
from ace.store import Store
from tests.util import first_seconds
from workers.live import StreamSpec, StreamWorker


@pytest.fixture
def cp(db_url):
    store = Store(db_url)
    yield ControlPlane(store)
    store.close()


def test_a_stream_lease_is_held_by_one_controller_at_a_time(cp):
    assert cp.add_stream("s1", "acme", {"stream_id": "s1", "url": "x"}, owner="A") == 1
    with pytest.raises(Refused, match="taken"):
        cp.add_stream("s1", "acme", {"stream_id": "s1", "url": "x"}, owner="B")
    assert cp.acquire("s1", "B", bump=True) is None  # A holds it
    assert cp.acquire("s1", "A") == 1  # renewing one's own keeps the epoch
    assert cp.renew("A") == 1
    # a new worker of A's: one more epoch, and the old worker's writes are refused
    assert cp.acquire("s1", "A", bump=True) == 2
    assert cp.save_progress("s1", 1, status="live") is False
    assert cp.save_progress("s1", 2, status="live", analysed_until=12.5) is True
    # A is gone: once its lease has expired, B takes the stream over
    cp.renew("A", lease_s=-1.0)
    assert cp.acquire("s1", "B", bump=True) == 3
    assert cp.save_progress("s1", 2, status="live") is False
    assert cp.renew("A") == 0
    row = cp.get_stream("s1", "acme")
    assert row["owner"] == "B" and row["epoch"] == 3 and row["analysed_until"] == 12.5
    assert cp.get_stream("s1", "other-tenant") is None


def test_a_stopped_stream_stays_stopped_and_finishes_once(cp):
    cp.add_stream("s2", "acme", {"stream_id": "s2", "url": "x"}, owner="A")
    assert cp.set_desired("s2", "someone-else", "stop") is False  # not theirs
    assert cp.set_desired("s2", "acme", "stop") is True
    cp.renew("A", lease_s=-1.0)
    assert cp.acquire("s2", "B", bump=True) is None  # nobody resumes a stopped stream
    assert [r["id"] for r in cp.list_streams("acme", active=True)] == []
    assert cp.finish("s2", {"status": "stopped"}) is True
    assert cp.finish("s2", {"status": "ended"}) is False  # the first final status is kept
    row = cp.get_stream("s2")
    assert row["status"] == "stopped" and row["final"] == {"status": "stopped"} and row["owner"] == ""
    assert [r["id"] for r in cp.list_streams("acme", active=False)] == ["s2"]


def test_jobs_keep_their_items_and_finish_when_every_item_has(cp):
    cp.add_job("j1", "acme", "nightly", [("j1-0", {"path": "/m/a.mp4"}), ("j1-1", {"url": "https://example.com/b.mp4"})])
    assert [j["id"] for j in cp.list_jobs("acme", unfinished=True)] == ["j1"]
    assert cp.list_jobs("other-tenant") == []
    cp.set_item("j1", 0, "running", attempt=True)
    cp.set_item("j1", 0, "done", {"ok": True, "moments": 3})
    assert cp.list_jobs("acme", "j1")[0]["status"] == "running"
    cp.set_item("j1", 1, "failed", {"ok": False, "error": "cannot fetch"})
    (job,) = cp.list_jobs("acme", "j1")
    assert job["status"] == "failed" and job["finished_at"] is not None
    assert [(i["show_id"], i["status"], i["attempts"]) for i in job["items"]] == [("j1-0", "done", 1), ("j1-1", "failed", 0)]
    assert job["items"][0]["result"] == {"ok": True, "moments": 3}
    assert cp.list_jobs("acme", unfinished=True) == []
    cp.set_value("speech_pool", {"size": 2})
    assert cp.get_value("speech_pool") == {"size": 2} and cp.get_value("nothing", 7) == 7


def test_a_worker_whose_stream_was_taken_over_stops_writing(db_url, short_show, tmp_path):
    """Fencing: a worker with an old epoch finds out at its next write and stops; its moments are
    not saved over the new worker's."""
    settings = {"data_dir": str(tmp_path / "data"), "database_url": db_url, "cpu_threads": 1}
    store = Store(db_url)
    cp = ControlPlane(store)
    spec = StreamSpec("fenced-1", str(short_show.video), "room", "acme")
    cp.add_stream(spec.stream_id, spec.tenant, {"stream_id": spec.stream_id, "url": spec.url}, owner="A")
    old = StreamWorker(spec, settings, with_speech=False, epoch=1)
    old._save_state()
    assert not old._fenced and cp.get_stream(spec.stream_id)["status"] == "starting"
    assert cp.acquire(spec.stream_id, "A", bump=True) == 2  # a new worker takes the stream
    old._save_state()
    assert old._fenced and old._stop.is_set()
    assert old._current() is False
    store.close()


# ------------------------------------------------------------------------- with a Ray cluster


def _wait(fn, timeout: float, every: float = 0.5):
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = fn()
        if got:
            return got
        time.sleep(every)
    return fn()


@pytest.fixture(scope="module")
def clip_show(short_show, tmp_path_factory):
    """40 s of the sample show, for streams (played at real speed) and a batch job."""
    return first_seconds(short_show.video, 40, tmp_path_factory.mktemp("clip") / "show.mp4")


@pytest.mark.usefixtures("ray_local")
def test_a_restarted_controller_resumes_streams_and_jobs_from_the_store(db_url, clip_show, tmp_path):
    """`ace serve --shutdown` then `ace serve` again: the live stream is resumed with its gap
    recorded, the stream a user stopped stays stopped, and the batch job is listed and finished."""
    import ray

    from workers.controller import get_controller

    settings = {"data_dir": str(tmp_path / "data"), "database_url": db_url, "cpu_threads": 1}
    controller = get_controller(create=True, settings=settings)
    try:
        sid = ray.get(controller.submit.remote(str(clip_show), name="room", tenant="acme"))
        gone = ray.get(controller.submit.remote(str(clip_show), name="gone", tenant="acme"))
        assert _wait(lambda: (ray.get(controller.status.remote(sid, tenant="acme")).get("analysed_until") or 0) >= 6, 90)
        assert ray.get(controller.stop.remote(gone, tenant="acme"))["status"] == "stopped"
        # a job the restart will interrupt (its item takes longer than the shutdown)
        job = ray.get(controller.submit_job.remote([{"path": str(clip_show)}], tenant="acme", name="replay"))
        before = ray.get(controller.status.remote(sid, tenant="acme"))
        # what `ace serve --shutdown` does: the streams are suspended, the controller ends
        shutdown = controller.shutdown_streams.remote()
        # rounds of the controller run during the shutdown and after it: the suspended stream is the
        # next controller's to resume, not this one's (a round after it used to take it back at
        # once, and one during it took the killed actor for a failed stream)
        rounds = []
        while not ray.wait([shutdown], timeout=0.1)[0]:
            rounds.append(controller.reap.remote())
        assert ray.get(shutdown, timeout=120) == 1
        ray.get(rounds + [controller.reap.remote()], timeout=120)
        with pytest.raises(Exception, match="shutting down"):  # Busy (503): for the next controller
            ray.get(controller.submit.remote(str(clip_show), name="late", tenant="acme"))
        st = ray.get(controller.status.remote(sid, tenant="acme"))
        assert st["status"] == "resuming", f"the controller that suspended the stream runs it again: {st}"
        ray.kill(controller, no_restart=True)
        time.sleep(2.0)  # the outage

        controller = get_controller(create=True, settings=settings)
        listed = {s["id"]: s for s in ray.get(controller.status.remote(tenant="acme"))}
        assert set(listed) == {sid, gone}
        assert listed[gone]["status"] == "stopped"
        with pytest.raises(ValueError):
            ray.get_actor(f"ace:stream:{gone}", namespace="ace")  # nobody runs it again
        after = _wait(lambda: (lambda st: st if (st.get("analysed_until") or 0) > before["analysed_until"] else None)(
            ray.get(controller.status.remote(sid, tenant="acme"))), 90)
        assert after and after["restarts"] == 1 and after["epoch"] == 2, after
        (gap,) = after["outages"]
        assert gap["seconds"] >= 2.0 and gap["at"] >= before["analysed_until"] - 2.0
        jobs = ray.get(controller.jobs.remote(tenant="acme"))
        assert [j["id"] for j in jobs] == [job["id"]]
        assert ray.get(controller.jobs.remote(tenant="other")) == []
        done = _wait(lambda: (lambda j: j if j["status"] != "running" else None)(
            ray.get(controller.job.remote(job["id"], tenant="acme"))), 240, every=2.0)
        assert done and done["status"] == "done", done
        assert done["items"][0]["show_id"] == f"{job['id']}-0" and done["items"][0]["moments"] >= 1
        assert done["items"][0]["attempts"] == 2  # run again by the new controller
        # the stream ends; its moments have no duplicates across the restart
        final = _wait(lambda: (lambda st: st if st["status"] in ("ended", "failed") else None)(
            ray.get(controller.status.remote(sid, tenant="acme"))), 90)
        assert final and final["status"] == "ended", final
        moments = ray.get(controller.moments.remote(sid, tenant="acme"))
        spans = sorted((m["start"], m["end"]) for m in moments)
        assert len({m["id"] for m in moments}) == len(moments)
        assert all(a[1] <= b[0] + 1.0 for a, b in zip(spans, spans[1:])), spans
    finally:
        ray.get(controller.shutdown_streams.remote(suspend=False), timeout=120)
        ray.kill(controller, no_restart=True)


@pytest.mark.usefixtures("ray_local")
def test_a_second_controller_cannot_take_a_live_stream_until_its_lease_expires(tmp_path, clip_show):
    import ray

    from workers.controller import ControllerActor

    settings = {"data_dir": str(tmp_path / "data"), "cpu_threads": 1}
    opts = {"resume": True, "durable": True, "lease_s": 6.0}
    first = ControllerActor.options(num_cpus=0.05).remote(settings, owner="first", **opts)
    second = None
    try:
        sid = ray.get(first.submit.remote(str(clip_show), name="room"))
        assert _wait(lambda: ray.get(first.status.remote(sid))["status"] == "live", 60)
        second = ControllerActor.options(num_cpus=0.05).remote(settings, owner="second", **opts)
        assert ray.get(second.rebuild.remote())["resumed"] == 0
        assert ray.get(second.streams.remote()) == []
        time.sleep(3.0)  # a couple of rounds: the first renews its lease, the second keeps off
        assert ray.get(second.streams.remote()) == []
        assert ray.get(second.status.remote(sid))["status"] == "live"  # as the store has it
        # the first controller dies with its stream (a controller of its own owns its actors)
        ray.kill(first, no_restart=True)
        took = _wait(lambda: ray.get(second.streams.remote()) == [sid], 30)
        assert took
        st = _wait(lambda: (lambda s: s if s.get("epoch") == 2 and s["status"] in ("live", "ended") else None)(
            ray.get(second.status.remote(sid))), 60)
        assert st and st["outages"], st
    finally:
        for c in (first, second):
            if c is not None:
                try:
                    ray.get(c.shutdown_streams.remote(suspend=False), timeout=60)
                except Exception:  # noqa: BLE001 - killed already
                    pass
                ray.kill(c, no_restart=True)
