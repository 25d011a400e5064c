"""The back office as a Ray Serve application: one deployment (``BackOffice``) whose FastAPI app
(:func:`ace.api.app.build_app`) is built on the replica, at ``http://API_HOST:API_PORT``."""

from __future__ import annotations

import logging

from ray import serve

log = logging.getLogger("ace.api")

APP_NAME = "ace"
#: CPU share the back-office replica asks Ray for (it mostly waits on the controller and the store)
REPLICA_CPUS = 0.1


@serve.deployment(name="BackOffice", ray_actor_options={"num_cpus": REPLICA_CPUS}, max_ongoing_requests=256)
@serve.ingress()
class BackOffice:
    def __init__(self, settings: dict):
        self.settings = dict(settings)

    def __serve_build_asgi_app__(self):
        from ace.api.app import build_app
        from ace.api.backend import Backend

        return build_app(Backend(self.settings))


def start_back_office(settings: dict, host: str, port: int) -> str:
    """Start Serve's HTTP proxy on ``host:port`` and deploy the back office; returns its URL."""
    serve.start(http_options={"host": host, "port": int(port)})
    serve.run(BackOffice.bind(settings), name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop_back_office() -> None:
    try:
        serve.shutdown()
    except Exception as e:  # noqa: BLE001 - shutting down anyway
        log.warning("stopping Serve: %s", e)
