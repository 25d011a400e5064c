"""What the back office asks of the cluster: the :class:`StreamControl` protocol.

The HTTP back office (:mod:`ace.api`) runs streams and jobs only through this small interface, so
``ace/`` never touches Ray: :class:`workers.control.RayStreamControl` fills it in with the cluster's
controller actor, and the API's tests use a fake of it. Every method takes the caller's tenant; an
id the tenant does not own raises :class:`~ace.errors.NotFound`, exactly as one that does not
exist. Errors are ACE's own (:mod:`ace.errors`): ``Refused`` for a request that cannot be accepted,
``StreamFinished`` for a stream that takes no more calls, ``Busy`` / ``TooManyStreams`` with the
seconds to wait.
"""

from __future__ import annotations

from typing import Any, Protocol

from ace.netguard import CheckedURL


class StreamControl(Protocol):
    async def submit(self, tenant: str, url: CheckedURL, *, name: str = "", events: CheckedURL | None = None,
                     products: list[dict | str] | None = None, category: str = "other", budget: float | None = None,
                     max_live: int | None = None, clip_format: str | None = None,
                     burn_captions: bool | None = None) -> str:
        """Start following a checked URL; returns the stream id once the stream is recorded.
        ``products`` is the stream's product list, checked (``ace.products.catalog.product_to_dict``
        dicts; a plain string is a product's name). ``clip_format`` (``source``, ``vertical``,
        ``square``) and ``burn_captions`` are the stream's own clip shape and captions; the back office
        passes them only when the request sets them."""
        ...

    async def status(self, tenant: str, stream_id: str | None = None) -> Any:
        """One stream's status (a dict), or the tenant's streams (a list of dicts)."""
        ...

    async def stop(self, tenant: str, stream_id: str) -> dict:
        """Stop a stream for good; returns its final status."""
        ...

    async def push_events(self, tenant: str, stream_id: str, events: list, batch_id: str | None = None,
                          owned: bool = False) -> int:
        """Queue interaction events; returns how many were accepted (a batch id seen before counts
        once). ``owned``: the caller has checked in the store that the tenant owns the stream, so a
        fast path may skip the controller."""
        ...

    async def ramp(self, tenant: str, stream_id: str, limit: int = 100) -> dict:
        """The stream's ramp level and recent decisions."""
        ...

    async def submit_job(self, tenant: str, items: list[dict], name: str = "", clip_format: str | None = None,
                         burn_captions: bool | None = None) -> dict:
        """Reprocess recorded shows (``{"path": checked absolute path}`` or ``{"url": checked URL}`` each);
        ``clip_format`` and ``burn_captions`` as for :meth:`submit`."""
        ...

    async def jobs(self, tenant: str) -> list[dict]:
        ...

    async def job(self, tenant: str, job_id: str) -> dict:
        ...
