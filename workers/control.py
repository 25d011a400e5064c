"""The cluster's side of :class:`ace.control.StreamControl`: the back office's calls, made to the
controller actor (and, for pushed events, straight to the stream's actor).

Errors come back as the types of :mod:`ace.errors` that the controller raised (Ray hands the
original exception over as ``RayTaskError.cause``); a controller that does not answer in time, or
is being restarted, is :class:`~ace.errors.Busy`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

from ace.errors import AceError, Busy, Refused
from ace.netguard import CheckedURL
from workers.live import NAMESPACE, RESTART_WAIT_S, STREAM_PREFIX


def _cause(e: ray.exceptions.RayTaskError) -> BaseException:
    return getattr(e, "cause", None) or e


class RayStreamControl:
    """:class:`ace.control.StreamControl` on the cluster's controller (``ace:controller``), or on
    ``controller`` when given (a test's own)."""

    def __init__(self, controller: Any = None):
        self._controller = controller
        self._fixed = controller is not None
        self._actors: dict[str, Any] = {}

    @property
    def controller(self):
        if self._controller is None:
            from workers.controller import get_controller

            try:
                self._controller = get_controller(create=False)
            except ValueError as e:
                raise Busy("the live controller is not running (start it with `ace serve`)", 5.0) from e
        return self._controller

    async def _await(self, ref, timeout: float):
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)

    async def _call(self, method: str, *args, timeout: float = 30.0, **kwargs):
        ref = getattr(self.controller, method).remote(*args, **kwargs)
        try:
            return await self._await(ref, timeout)
        except asyncio.TimeoutError:
            raise Busy(f"the live controller did not answer within {timeout:g} s", 5.0) from None
        except ray.exceptions.RayTaskError as e:
            cause = _cause(e)
            if isinstance(cause, AceError):
                raise cause from None
            raise
        except ray.exceptions.RayActorError as e:
            if not self._fixed:
                self._controller = None
            raise Busy(f"the live controller is restarting ({type(e).__name__})", 5.0) from None

    # -- the protocol -----------------------------------------------------------------------------

    async def submit(self, tenant: str, url: CheckedURL, *, name: str = "", events: CheckedURL | None = None,
                     products: list[dict | str] | None = None, category: str = "other", budget: float | None = None,
                     max_live: int | None = None, clip_format: str | None = None,
                     burn_captions: bool | None = None) -> str:
        return await self._call("submit", url, name=name, tenant=tenant, events=events, products=products or [],
                                category=category, budget=budget, max_live=max_live, clip_format=clip_format,
                                burn_captions=burn_captions)

    async def status(self, tenant: str, stream_id: str | None = None) -> Any:
        return await self._call("status", stream_id, tenant=tenant)

    async def stop(self, tenant: str, stream_id: str) -> dict:
        return await self._call("stop", stream_id, tenant=tenant, timeout=90.0)

    async def ramp(self, tenant: str, stream_id: str, limit: int = 100) -> dict:
        return await self._call("ramp", stream_id, tenant=tenant, limit=limit)

    async def submit_job(self, tenant: str, items: list[dict], name: str = "", clip_format: str | None = None,
                         burn_captions: bool | None = None) -> dict:
        return await self._call("submit_job", items, tenant=tenant, name=name, clip_format=clip_format,
                                burn_captions=burn_captions)

    async def jobs(self, tenant: str) -> list[dict]:
        return await self._call("jobs", tenant=tenant)

    async def job(self, tenant: str, job_id: str) -> dict:
        return await self._call("job", job_id, tenant=tenant)

    async def push_events(self, tenant: str, stream_id: str, events: list, batch_id: str | None = None,
                          owned: bool = False) -> int:
        """Straight to the stream's actor when the caller has checked that the tenant owns the stream
        (``owned``): the webhook's hot path skips the controller. While Ray restarts the actor the
        call is sent again (up to a minute), so accepted events are delivered once. Otherwise, and
        for a stream whose actor has ended, the controller answers (``NotFound``, ``StreamFinished``)."""
        if not owned:
            return await self._call("push_events", stream_id, events, tenant=tenant, batch_id=batch_id)
        actor = self._actors.get(stream_id)
        if actor is None:
            try:
                actor = ray.get_actor(f"{STREAM_PREFIX}{stream_id}", namespace=NAMESPACE)
            except ValueError:  # finished (its actor has ended), or running elsewhere: the controller says
                return await self._call("push_events", stream_id, events, tenant=tenant, batch_id=batch_id)
            self._actors[stream_id] = actor
        deadline = time.monotonic() + RESTART_WAIT_S
        while True:
            try:
                return await self._await(actor.push_events.remote(events, batch_id), 30.0)
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise Busy(f"stream {stream_id!r} is restarting", 5.0) from None
                await asyncio.sleep(0.5)
            except ray.exceptions.ActorDiedError:
                self._actors.pop(stream_id, None)
                return await self._call("push_events", stream_id, events, tenant=tenant, batch_id=batch_id)
            except ray.exceptions.RayTaskError as e:
                cause = _cause(e)
                if isinstance(cause, AceError):
                    raise cause from None
                if isinstance(cause, ValueError):  # a malformed event, a batch key used with other events
                    raise Refused(str(cause)) from None
                raise
            except asyncio.TimeoutError:
                raise Busy(f"stream {stream_id!r} did not answer in time", 5.0) from None

