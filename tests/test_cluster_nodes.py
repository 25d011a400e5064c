"""ACE on a real multi-node Ray cluster (Ray's ``cluster_utils.Cluster``: a head and two worker
nodes, each a raylet of its own with its own working folder): stream actors spread over the nodes,
and when a node dies its streams start again on another node, resumed from the store with the gap
recorded, nothing found before the outage lost and no moment twice."""

from __future__ import annotations

import time

import pytest

from tests.util import first_seconds

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray
    from ray.cluster_utils import Cluster

    from workers.cluster import shutdown_ray

    shutdown_ray()
    root = tmp_path_factory.mktemp("nodes")
    fast_health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3, "health_check_timeout_ms": 1000}
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"ace_head": 1}, "_system_config": fast_health,
        "env_vars": {"ACE_LOCAL_DIR": str(root / "node0")}})
    workers = [c.add_node(num_cpus=1, env_vars={"ACE_LOCAL_DIR": str(root / f"node{i}")}) for i in (1, 2)]
    c.wait_for_nodes()
    ray.init(address=c.address, namespace="ace-tests")
    yield c, workers, root
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def long_show(short_show, tmp_path_factory):
    return first_seconds(short_show.video, 90, tmp_path_factory.mktemp("long") / "show.mp4")


def test_a_dead_nodes_streams_move_to_another_node(cluster, long_show, tmp_path):
    import ray

    from workers.controller import ControllerActor

    c, workers, root = cluster
    settings = {"data_dir": str(tmp_path / "shared"), "cpu_threads": 1, "speech_pool": False}
    controller = ControllerActor.options(num_cpus=0, resources={"ace_head": 0.01}).remote(
        settings, resume=True, durable=True, owner="node-test")
    ids = []
    try:
        ids = [ray.get(controller.submit.remote(str(long_show), name=f"cam{i}")) for i in range(3)]

        def statuses():
            return {s["id"]: s for s in ray.get(controller.status.remote())}

        t0 = time.time()
        while time.time() - t0 < 120:
            st = statuses()
            if all(st[i]["status"] == "live" and (st[i].get("analysed_until") or 0) > 10 for i in ids):
                break
            time.sleep(1.0)
        st = statuses()
        nodes = {i: st[i]["node"] for i in ids}
        assert len(set(nodes.values())) >= 2, nodes  # spread over the nodes
        victim = next((w for w in workers if w.node_id in nodes.values()), None)
        assert victim is not None, nodes
        moved = [i for i in ids if nodes[i] == victim.node_id]
        # a worker keeps its buffer in its own node's folder, not in the shared data folder
        assert all(any((root / f"node{n}" / "live" / i).is_dir() for n in (0, 1, 2)) for i in ids)
        assert not (tmp_path / "shared" / "live").exists()
        before = {i: {m["id"] for m in ray.get(controller.moments.remote(i))} for i in ids}
        analysed = {i: st[i]["analysed_until"] for i in ids}
        killed_at = time.time()
        c.remove_node(victim, allow_graceful=False)
        took: dict[str, float] = {}
        while time.time() - killed_at < 90 and len(took) < len(moved):
            for i, s in statuses().items():
                if (i in moved and i not in took and s.get("node") not in ("", victim.node_id)
                        and s["status"] == "live" and (s.get("analysed_until") or 0) > analysed[i]):
                    took[i] = time.time() - killed_at
            time.sleep(0.5)
        assert set(took) == set(moved), (took, moved)
        assert max(took.values()) < 60.0, took  # the bench's target is 30 s; a shared test machine gets slack
        after = statuses()
        for i in moved:
            assert after[i]["outages"] and after[i]["restarts"] >= 1, after[i]
        for i in ids:
            now = ray.get(controller.moments.remote(i))
            assert before[i] <= {m["id"] for m in now}, i  # nothing found before the outage is lost
            assert len({m["id"] for m in now}) == len(now)
    finally:
        try:
            ray.get(controller.shutdown_streams.remote(suspend=False), timeout=120)
        finally:
            ray.kill(controller, no_restart=True)
