"""What the HTTP back office calls: the cluster (through :class:`ace.control.StreamControl`) and the store.

:class:`Backend` is the one place the web app reaches streams, jobs or the database, so the app's
routes can be tested against a fake of the protocol. Every method takes the caller's tenant and
answers :class:`~ace.errors.NotFound` for anything that tenant does not own, exactly as for
something that does not exist. A submitted URL is checked here, once, and handed on as a
:class:`~ace.netguard.CheckedURL`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ace.config import Settings
from ace.control import StreamControl
from ace.errors import Busy, InputError, NotFound, Refused, StreamFinished

log = logging.getLogger("ace.api")

#: the names the app's error handlers use
Finished = StreamFinished
#: clip deliveries to webhooks at once (threads), and the most queued or running in one process
PUBLISH_THREADS, PUBLISH_QUEUE = 4, 256
#: what a publish webhook's secret may look like when the tenant chooses it
_SECRET_CHARS = frozenset(chr(c) for c in range(33, 127))
__all__ = ["Backend", "Busy", "Finished", "NoWebhook", "NotFound", "Refused", "media_path"]


class _TTLCache:
    """A small LRU cache with a time-to-live (token -> tenant, show -> tenant)."""

    def __init__(self, size: int = 4096, ttl_s: float = 30.0):
        self.size, self.ttl_s = size, ttl_s
        self._d: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any:
        item = self._d.get(key)
        if item is None or time.monotonic() - item[0] > self.ttl_s:
            self._d.pop(key, None)
            return None
        self._d.move_to_end(key)
        return item[1]

    def put(self, key: Any, value: Any) -> None:
        self._d[key] = (time.monotonic(), value)
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


class Backend:
    """The cluster's stream control and the store, for one process (a Serve replica, or a test)."""

    def __init__(self, settings: Settings | dict | None = None, control: StreamControl | None = None):
        from ace.store import Store

        self.settings = settings if isinstance(settings, Settings) else Settings(**(settings or {}))
        self.store = Store.from_settings(self.settings)
        self.store.create_all()
        self._control = control
        self._tokens = _TTLCache(ttl_s=30.0)
        self._owners = _TTLCache(ttl_s=300.0)
        self._submits = asyncio.Semaphore(self.settings.api_max_submits)
        self._storage: Any = False  # made when first needed
        from ace.publish import RetryPolicy

        #: how hard a clip's delivery to the tenant's webhook tries (tests make it quick)
        self.publish_retry = RetryPolicy()
        self._publisher: Any = None  # a thread pool, made when first needed
        self._publish_slots = threading.BoundedSemaphore(PUBLISH_QUEUE)

    # ------------------------------------------------------------------ plumbing

    @property
    def control(self) -> StreamControl:
        if self._control is None:
            raise Busy("no live controller is attached to this back office (start it with `ace serve`)", 5.0)
        return self._control

    async def _db(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ------------------------------------------------------------------ auth

    async def tenant_of(self, token: str) -> str | None:
        """The tenant of a valid token (cached for 30 s, so a revoked token stops working within that)."""
        tenant = self._tokens.get(token)
        if tenant is None:
            tenant = await self._db(self.store.token_tenant, token)
            if tenant is not None:
                self._tokens.put(token, tenant)
        return tenant

    async def owns(self, show_id: str, tenant: str) -> bool:
        key = (show_id, tenant)
        if self._owners.get(key):
            return True
        show = await self._db(self.store.get_show, show_id, tenant)
        if show is not None:
            self._owners.put(key, True)
        return show is not None

    async def _require(self, show_id: str, tenant: str) -> None:
        if not await self.owns(show_id, tenant):
            raise NotFound(f"no stream {show_id!r}")

    # ------------------------------------------------------------------ streams

    async def submit_stream(self, tenant: str, url: str, name: str = "", products: list[dict | str] | None = None,
                            events: str | None = None, category: str = "other", budget: float | None = None,
                            clip_format: str | None = None, burn_captions: bool | None = None) -> dict:
        """Start a stream. ``products``: product objects (dicts) or names, checked here
        (:func:`~ace.products.catalog.parse_products`: :class:`Refused` naming the item and field)
        and handed on as ``product_to_dict`` dicts."""
        from ace.netguard import check_url
        from ace.products.catalog import parse_products, product_to_dict

        try:  # once, here: the controller takes the checked value as it is
            checked_products = [product_to_dict(p) for p in parse_products(list(products or []), "products")]
            checked = await asyncio.to_thread(check_url, url, self.settings.url_allowlist)
            checked_events = await asyncio.to_thread(check_url, events, self.settings.url_allowlist) if events else None
        except InputError as e:
            raise Refused(str(e)) from None
        try:
            await asyncio.wait_for(self._submits.acquire(), timeout=2.0)
        except asyncio.TimeoutError:
            raise Busy("too many stream submissions at once; try again shortly", 2.0) from None
        try:
            sid = await self.control.submit(tenant, checked, name=name, events=checked_events, products=checked_products,
                                            category=category, budget=budget, max_live=self.settings.api_max_streams,
                                            **_clip_options(clip_format, burn_captions))
        finally:
            self._submits.release()
        self._owners.put((sid, tenant), True)
        return {"id": sid, "status": "starting"}

    async def streams(self, tenant: str) -> list[dict]:
        live = {s["id"]: s for s in await self.control.status(tenant)}
        return sorted(live.values(), key=lambda s: s.get("id", ""))

    async def stream(self, tenant: str, sid: str) -> dict:
        """A live stream's status; for a recorded show (a batch job's item) its row in the store."""
        try:
            return await self.control.status(tenant, sid)
        except NotFound:
            show = await self._db(self.store.get_show, sid, tenant)
            if show is None:
                raise
            return {"id": sid, "name": show["name"], "tenant": tenant, "kind": "recorded", "status": show["status"],
                    "error": show["error"], "analysed_until": show["duration"], "duration": show["duration"]}

    async def stop_stream(self, tenant: str, sid: str) -> dict:
        return await self.control.stop(tenant, sid)

    async def push_events(self, tenant: str, sid: str, events: list, batch_id: str | None = None) -> int:
        """To the stream, the tenant's ownership checked in the store first (so the cluster can take
        the fast path); whatever the path, an id the tenant does not own answers
        :class:`~ace.errors.NotFound` ``no stream 'ID'``, and a finished stream ``StreamFinished``."""
        owned = await self.owns(sid, tenant)  # False: another tenant's, none, or submitted a moment ago
        n = await self.control.push_events(tenant, sid, events, batch_id, owned=owned)
        seen = [(e.text.strip(), "view" if e.kind == "clip_view" else "click", e.user)
                for e in events if e.kind in ("clip_view", "clip_click") and e.user and e.text.strip()]
        if seen:  # the published clips' audience (distinct users; a retried batch counts once)
            try:
                await self._db(self.store.record_clip_audience, tenant, seen)
            except Exception:  # the events are in; the counters are a convenience
                log.warning("could not record the audience of %d clip events", len(seen), exc_info=True)
        return n

    async def ramp(self, tenant: str, sid: str, limit: int = 100) -> dict:
        await self._require(sid, tenant)
        return await self.control.ramp(tenant, sid, limit)

    # ------------------------------------------------------------------ moments and clips

    async def moments(self, tenant: str, sid: str, min_score: float | None = None, start: float | None = None,
                      end: float | None = None, min_confidence: float | None = None, order: str = "time") -> list[dict]:
        """The stream's moments with their clips and reviews, in time order or (``order="rank"``)
        best first; ``rank`` (1 = best, 0 = not ranked), ``confidence`` (0-100) and ``strong`` each,
        and ``ad_words``: the ad-wording phrases heard inside the clip (the moment before it is cut)."""
        await self._require(sid, tenant)
        rows = await self._db(self.store.list_moments, sid, tenant, min_score, min_confidence=min_confidence, order=order)
        clips = {c["moment_id"]: c for c in await self._db(self.store.list_clips, sid, tenant)}
        reviews = await self._db(self.store.list_reviews, sid, tenant)
        out = []
        for m in rows:
            if (start is not None and m["end"] < start) or (end is not None and m["start"] > end):
                continue
            c = clips.get(m["id"])
            r = reviews.get(m["id"])
            out.append({"id": m["id"], "stream_id": sid, "start": m["start"], "end": m["end"], "score": m["score"],
                        "rank": int(m["rank"]), "confidence": float(m["confidence"]), "strong": bool(m["strong"]),
                        "peak": m["peak"], "reasons": m["reasons"], "transcript": m["transcript"],
                        "clip": _clip_view(c) if c else None, "review": r["verdict"] if r else None,
                        "ad_words": m.get("ad_words") or []})
        return out

    async def clip(self, tenant: str, moment_id: str) -> dict:
        row = await self._db(self.store.get_clip, moment_id, tenant)
        if row is None:
            raise NotFound(f"no clip {moment_id!r}")
        return row

    # ------------------------------------------------------------------ products and ad-wording

    async def products(self, tenant: str, sid: str) -> dict:
        """The stream's (or recorded show's) product list, its product segments in time order (each
        with its clip's links when cut, and the ad-wording phrases heard inside it) and every
        ad-wording phrase heard (with the segment and the moment's clip it was said in)."""
        await self._require(sid, tenant)
        doc = await self._db(self.store.list_products, sid, tenant)
        segments = [{"id": g["id"], "stream_id": sid, "product": g["product"], "name": g["name"], "n": int(g["n"]),
                     "start": g["start"], "end": g["end"], "confidence": float(g["confidence"]),
                     "heard": list(g.get("heard") or []), "evidence": list(g.get("evidence") or []),
                     "ad_words": list(g.get("ad_words") or []), "clip": _product_clip_view(g) if g.get("clip_path") else None}
                    for g in doc["segments"]]
        hits = [{"phrase": h["phrase"], "start": h["start"], "end": h["end"], "text": h["text"],
                 "segment_id": h["segment_id"], "moment_id": h["moment_id"]} for h in doc["ad_words"]]
        return {"stream_id": sid, "products": doc["products"], "segments": segments, "ad_words": hits}

    async def product_clip(self, tenant: str, segment_id: str) -> dict:
        """A product segment's clip row (``path``, ``srt_path``, ``thumb_path``: see :meth:`clip_file`)."""
        row = await self._db(self.store.get_product_clip, segment_id, tenant)
        if row is None:
            raise NotFound(f"no product clip {segment_id!r}")
        return row

    async def ad_words(self, tenant: str) -> dict:
        """The tenant's ad-wording list (``source: "tenant"``), or the server's (``"default"``)."""
        from ace.schema import AD_WORDS_KEY

        own = await self._db(self.store.get_tenant_setting, tenant, AD_WORDS_KEY)
        if isinstance(own, list):
            return {"ad_words": [str(x) for x in own], "source": "tenant"}
        return {"ad_words": list(self.settings.ad_words), "source": "default"}

    async def set_ad_words(self, tenant: str, phrases: list | None) -> dict:
        """Keep the tenant's own ad-wording list (checked: :class:`Refused` naming the bad phrase), or
        with None go back to the server's."""
        from ace.products.adwords import parse_ad_words
        from ace.schema import AD_WORDS_KEY

        value = None
        if phrases is not None:
            try:
                value = list(parse_ad_words(phrases, "ad_words"))
            except InputError as e:
                raise Refused(str(e)) from None
        await self._db(self.store.set_tenant_setting, tenant, AD_WORDS_KEY, value)
        return await self.ad_words(tenant)

    # ------------------------------------------------------------------ publishing clips

    async def publish_settings(self, tenant: str) -> dict:
        """The tenant's publish webhook: ``url`` (None when none is set) and ``secret_set``; never the secret."""
        from ace.schema import PUBLISH_KEY

        own = await self._db(self.store.get_tenant_setting, tenant, PUBLISH_KEY)
        if not isinstance(own, dict) or not own.get("url"):
            return {"url": None, "secret_set": False}
        return {"url": str(own["url"]), "secret_set": bool(own.get("secret"))}

    async def set_publish_settings(self, tenant: str, url: str | None, secret: str | None = None,
                                   rotate_secret: bool = False) -> dict:
        """Keep the tenant's publish webhook ``url`` (checked by the URL guard: :class:`Refused`
        when it is not an http(s) URL whose host is public or allowlisted) with ``secret``; without
        one, the secret kept before stays, or a new one is made (also with ``rotate_secret``), and
        the answer carries it, once. With ``url`` None the webhook is forgotten."""
        from ace.publish import check_webhook, new_secret
        from ace.schema import PUBLISH_KEY

        if url is None:
            await self._db(self.store.set_tenant_setting, tenant, PUBLISH_KEY, None)
            return await self.publish_settings(tenant)
        try:
            await asyncio.to_thread(check_webhook, url, self.settings.url_allowlist)
        except InputError as e:
            raise Refused(f"url: {e}") from None
        if secret is not None and (not 16 <= len(secret) <= 256 or not set(secret) <= _SECRET_CHARS):
            raise Refused("secret: 16-256 printable ASCII characters without spaces")
        old = await self._db(self.store.get_tenant_setting, tenant, PUBLISH_KEY)
        kept = old.get("secret") if isinstance(old, dict) and isinstance(old.get("secret"), str) else None
        made = None
        if secret is None and (rotate_secret or not kept):
            secret = made = new_secret()
        await self._db(self.store.set_tenant_setting, tenant, PUBLISH_KEY, {"url": url, "secret": secret or kept})
        out = await self.publish_settings(tenant)
        if made is not None:
            out["secret"] = made
        return out

    async def publish(self, tenant: str, clip_id: str, force: bool = False) -> dict:
        """Send the clip to the tenant's publish webhook, in the background: its publication record
        (``pending`` while it is delivered). A clip published before is not sent again (its record
        answers as it is) unless ``force``, and never while a delivery of it is under way.
        :class:`NotFound` for a clip the tenant does not have; :class:`Refused` ``no_webhook``
        when the tenant keeps no webhook; :class:`NotFinal` for a provisional clip (its moment is
        not final yet: it may still be cut again); :class:`Busy` when too many deliveries wait."""
        from ace.publish import plain_url
        from ace.schema import PUBLISH_KEY

        clip = await self.clip(tenant, clip_id)
        if clip_state(clip)["state"] != "final":
            raise NotFinal(f"clip {clip_id!r} is provisional: its moment is not final yet and the clip may still be cut "
                           "again; publish it once its state is final (seconds from now)")
        conf = await self._db(self.store.get_tenant_setting, tenant, PUBLISH_KEY)
        if not isinstance(conf, dict) or not conf.get("url") or not conf.get("secret"):
            raise NoWebhook("no publish webhook is set for this tenant: PUT /settings/publish first")
        url, secret = str(conf["url"]), str(conf["secret"])
        where = plain_url(url) or ""
        if not self._publish_slots.acquire(blocking=False):
            raise Busy("too many clips are being published; try again shortly", 5.0)
        try:
            row, start = await self._db(self.store.claim_publication, clip_id, tenant, show_id=clip["show_id"], target=where,
                                        force=force)
        except BaseException:
            self._publish_slots.release()
            raise
        if row is None:
            self._publish_slots.release()
            raise NotFound(f"no clip {clip_id!r}")
        if not start:
            self._publish_slots.release()
            return _publication_view(await self._db(self.store.get_publication, clip_id, tenant) or row)
        try:
            body = await self._db(self._payload, tenant, clip)
            self._executor().submit(self._deliver, tenant, clip_id, url, secret, body)
        except BaseException as e:
            self._publish_slots.release()
            await self._db(self.store.update_publication, clip_id, tenant, status="failed",
                           last_error=f"could not start the delivery ({type(e).__name__})")
            raise
        log.info("publishing clip %s of %s", clip_id, tenant)
        return _publication_view(row)

    async def publication(self, tenant: str, clip_id: str) -> dict:
        """The clip's publication record; :class:`NotFound` when it was never published (or is another's)."""
        row = await self._db(self.store.get_publication, clip_id, tenant)
        if row is None:
            await self.clip(tenant, clip_id)  # "no clip" when there is none
            raise NotFound(f"clip {clip_id!r} has not been published")
        return _publication_view(row)

    def _executor(self):
        if self._publisher is None:
            from concurrent.futures import ThreadPoolExecutor

            self._publisher = ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="ace-publish")
        return self._publisher

    def _payload(self, tenant: str, clip: dict) -> bytes:
        """The clip's publish payload (:func:`ace.publish.build_payload`) as the request body."""
        from ace.publish import build_payload, encode

        show = self.store.get_show(clip["show_id"], tenant)
        mid = (float(clip["start"]) + float(clip["end"])) / 2
        segs = self.store.list_products(clip["show_id"], tenant)["segments"]
        product = next((g for g in segs if g["start"] <= mid <= g["end"]), None)
        return encode(build_payload(clip, show, product=product))

    def _deliver(self, tenant: str, clip_id: str, url: str, secret: str, body: bytes) -> None:
        """Deliver one publication (in a thread of the pool) and keep its outcome in the store."""
        from ace.publish import deliver, signed_headers

        try:
            def progress(n: int, error: str, status: int | None) -> None:
                self.store.update_publication(clip_id, tenant, attempts=n, last_error=error, response_status=status)

            out = deliver(url, body, lambda: signed_headers(secret, body, clip_id), allow=self.settings.url_allowlist,
                          retry=self.publish_retry, on_attempt=progress)
            self.store.update_publication(clip_id, tenant, status=out.status, attempts=out.attempts, last_error=out.error,
                                          response_status=out.response_status, remote_id=out.remote_id)
            log.info("clip %s of %s: %s after %d attempt(s)%s", clip_id, tenant, out.status, out.attempts,
                     f" ({out.error})" if out.error else "")
        except Exception as e:
            log.exception("publishing clip %s failed", clip_id)
            try:
                self.store.update_publication(clip_id, tenant, status="failed", last_error=f"internal error ({type(e).__name__})")
            except Exception:
                log.exception("could not record the failure of clip %s's publication", clip_id)
        finally:
            self._publish_slots.release()

    def close(self) -> None:
        """Stop taking deliveries and wait for the ones under way."""
        if self._publisher is not None:
            self._publisher.shutdown(wait=True)
            self._publisher = None

    @property
    def storage(self):
        """The clip storage (``ACE_CLIP_STORAGE``), or None: clips are files in the data folder."""
        if self._storage is False:
            from ace.clipstore import storage_for

            self._storage = storage_for(self.settings)
        return self._storage

    def clip_file(self, row: dict, kind: str) -> Path | str:
        """The clip's file of ``kind`` (video, captions, thumbnail): a local path checked to lie inside
        the data folder or the clip storage's folder, or a location of object storage (a string, for
        :meth:`open_stored`). Paths come from the database, and the database is not trusted to name files."""
        key = {"video": "path", "captions": "srt_path", "thumbnail": "thumb_path"}[kind]
        raw = row.get(key) or ""
        if not raw:
            raise NotFound(f"this clip has no {kind}")
        st = self.storage
        if st is not None and st.owns(raw):
            from ace.clipstore import FolderStorage

            if isinstance(st, FolderStorage):
                p = Path(raw).resolve()
                if p.is_file():
                    return p
            elif st.exists(raw):
                return raw
            raise NotFound(f"the clip's {kind} file is not available")
        p = Path(raw).resolve()
        roots = [Path(self.settings.data_dir).resolve()]
        if not any(p.is_relative_to(r) for r in roots) or not p.is_file():
            raise NotFound(f"the clip's {kind} file is not available")
        return p

    def open_stored(self, location: str):
        """``(size, seekable binary stream)`` of a location in object storage (see :meth:`clip_file`)."""
        st = self.storage
        return st.size(location), st.open(location)

    async def review(self, tenant: str, moment_id: str, verdict: str, note: str = "") -> dict:
        row = await self._db(self.store.set_review, moment_id, verdict, tenant, note)
        if row is None:
            raise NotFound(f"no clip {moment_id!r}")
        return row

    # ------------------------------------------------------------------ batch jobs

    async def submit_job(self, tenant: str, items: list[dict], name: str = "", clip_format: str | None = None,
                         burn_captions: bool | None = None) -> dict:
        from ace.netguard import check_url

        checked = []
        for i, it in enumerate(items):
            src = it.get("path") or it.get("url")
            if it.get("url"):
                try:
                    check_url(it["url"], allow=self.settings.url_allowlist)
                except InputError as e:
                    raise Refused(f"item {i}: {e}") from None
                checked.append({"url": it["url"]})
            else:
                checked.append({"path": str(media_path(self.settings, src, what=f"item {i}"))})
        return await self.control.submit_job(tenant, checked, name, **_clip_options(clip_format, burn_captions))

    async def jobs(self, tenant: str) -> list[dict]:
        return await self.control.jobs(tenant)

    async def job(self, tenant: str, job_id: str) -> dict:
        return await self.control.job(tenant, job_id)


def _clip_options(clip_format: str | None, burn_captions: bool | None) -> dict:
    """The clip shape and captions a request asked for, checked; only those it set (so a
    :class:`~ace.control.StreamControl` that knows nothing of them is called as before)."""
    out: dict = {}
    if clip_format:
        from ace.reframe import check_format

        try:
            out["clip_format"] = check_format(clip_format)
        except ValueError as e:
            raise Refused(f"format: {e}") from None
    if burn_captions is not None:
        out["burn_captions"] = bool(burn_captions)
    return out


def media_path(settings: Settings, rel: str | None, what: str = "path") -> Path:
    """A recorded show named by a user: a path *inside* the media folder (``ACE_MEDIA_ROOT``,
    default ``DATA_DIR/media``), with no way out of it (no absolute paths, no ``..``, no links
    leading elsewhere). Refused otherwise."""
    if not rel or not isinstance(rel, str) or len(rel) > 1024 or "\x00" in rel:
        raise Refused(f"{what}: give a file name inside the media folder")
    root = Path(settings.media_dir).resolve()
    candidate = Path(rel)
    if candidate.is_absolute() or any(part == ".." for part in candidate.parts):
        raise Refused(f"{what}: {rel!r} must be a relative path inside the media folder, without '..'")
    try:
        p = (root / candidate).resolve()
    except (RuntimeError, OSError):  # a link loop (RuntimeError before Python 3.13), a name too long
        raise Refused(f"{what}: {rel!r} cannot be resolved inside the media folder (a link loop?)") from None
    if not p.is_relative_to(root):
        raise Refused(f"{what}: {rel!r} leads outside the media folder")
    if not p.is_file():
        raise Refused(f"{what}: no file {rel!r} in the media folder")
    return p


class NoWebhook(Refused):
    """The tenant keeps no publish webhook (the API answers 409)."""


class NotFinal(Refused):
    """The clip is provisional: it may still be cut again, so it is published once final (409)."""


def _publication_view(row: dict) -> dict:
    """A publication as the API shows it (no internal id, no tenant)."""
    return {"clip_id": row["clip_id"], "stream_id": row["show_id"], "status": row["status"], "attempts": int(row["attempts"]),
            "last_error": row["last_error"] or None, "response_status": row["response_status"], "remote_id": row["remote_id"],
            "target": row.get("target") or None, "created_at": row["created_at"], "updated_at": row["updated_at"],
            "sent_at": row.get("sent_at"), "viewers": int(row.get("viewers") or 0), "clickers": int(row.get("clickers") or 0)}


def _clip_view(c: dict) -> dict:
    mid = c["moment_id"]
    return {"moment_id": mid, "start": c["start"], "end": c["end"], "mode": c["mode"], "seconds": c.get("seconds"),
            "format": c.get("format") or "source", "burned": bool(c.get("burned")), **clip_state(c),
            "video": f"/clips/{mid}/video", "captions": f"/clips/{mid}/captions" if c.get("srt_path") else None,
            "thumbnail": f"/clips/{mid}/thumbnail" if c.get("thumb_path") else None, "ad_words": c.get("ad_words") or []}


def clip_state(c: dict) -> dict:
    """A clip's ``state`` (``provisional`` or ``final``) and ``revision`` as the API shows them."""
    return {"state": c.get("state") or "final", "revision": int(c.get("revision") or 0)}


def _product_clip_view(g: dict) -> dict:
    sid = g["id"]
    return {"segment_id": sid, "start": g["clip_start"], "end": g["clip_end"], "mode": g.get("mode") or None,
            "video": f"/products/{sid}/video", "captions": f"/products/{sid}/captions" if g.get("srt_path") else None,
            "thumbnail": f"/products/{sid}/thumbnail" if g.get("thumb_path") else None}
