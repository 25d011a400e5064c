"""The back office as a Ray Serve application: one deployment (``BackOffice``) whose FastAPI app
(:func:`ace.api.app.build_app`) is built on the replica, at ``http://API_HOST:API_PORT``, on the
cluster's controller (:class:`workers.control.RayStreamControl`)."""

from __future__ import annotations

import logging
import os

from ray import serve

log = logging.getLogger("ace.api")

APP_NAME = "ace"
#: CPU share the back-office replica asks Ray for (it mostly waits on the controller and the store)
REPLICA_CPUS = 0.1


@serve.deployment(name="BackOffice", max_ongoing_requests=256,
                  ray_actor_options={"num_cpus": REPLICA_CPUS,
                                     # the app's handlers are async and never block: run them on the
                                     # replica's own loop instead of handing each request to a thread
                                     "runtime_env": {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}})
@serve.ingress()
class BackOffice:
    def __init__(self, settings: dict):
        from workers.cluster import serve_replica_on_loopback

        serve_replica_on_loopback()  # before Serve starts this replica's gRPC server, which binds [::]
        self.settings = dict(settings)

    def __serve_build_asgi_app__(self):
        from ace.api.app import build_app
        from ace.api.backend import Backend
        from workers.control import RayStreamControl

        return build_app(Backend(self.settings, control=RayStreamControl()))


def start_back_office(settings: dict, host: str, port: int) -> str:
    """Start Serve's HTTP proxy on ``host:port`` and deploy the back office; returns its URL."""
    # one HTTP proxy, on the head: the back office has one address however many nodes join (with
    # Serve's default, a proxy on every node, nodes sharing a machine would contend for the port)
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": int(port)})
    # one access-log line a request costs the replica more than parsing a batch of events: the
    # application logs its own warnings and errors; Ray's metrics still count every request
    serve.run(BackOffice.bind(settings), name=APP_NAME, route_prefix="/",
              logging_config={"enable_access_log": os.environ.get("ACE_ACCESS_LOG", "0") == "1"})
    return f"http://{host}:{port}"


def stop_back_office() -> None:
    try:
        serve.shutdown()
    except Exception as e:  # noqa: BLE001 - shutting down anyway
        log.warning("stopping Serve: %s", e)
