"""The back office's routes, one :class:`fastapi.APIRouter` per resource: the web page, sign-in and
health (:mod:`.session`), streams with their events and ramp (:mod:`.streams`), moments and clips
(:mod:`.clips`), batch jobs (:mod:`.jobs`), products with their segments and ad-wording hits
(:mod:`.products`) and the tenant's settings (:mod:`.settings`). :func:`ace.api.app.build_app`
includes them in this order."""

from __future__ import annotations

from ace.api.routes import clips, jobs, products, session, settings, streams

#: every router, in the order the app includes them
ROUTERS = (session.router, streams.router, clips.router, jobs.router, products.router, settings.router)

__all__ = ["ROUTERS", "clips", "jobs", "products", "session", "settings", "streams"]
