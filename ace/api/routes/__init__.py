"""The back office's routes, one :class:`fastapi.APIRouter` per resource: the web page, sign-in and
health (:mod:`.session`), streams with their events and ramp (:mod:`.streams`), moments and clips
(:mod:`.clips`) and batch jobs (:mod:`.jobs`). :func:`ace.api.app.build_app` includes them in
this order."""

from __future__ import annotations

from ace.api.routes import clips, jobs, session, streams

#: every router, in the order the app includes them
ROUTERS = (session.router, streams.router, clips.router, jobs.router)

__all__ = ["ROUTERS", "clips", "jobs", "session", "streams"]
