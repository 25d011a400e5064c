"""Publishing a clip to a tenant's webhook: the payload, its signature, and delivery with retries.

A tenant keeps a publish webhook (an http or https URL) and a secret (``PUT /settings/publish``).
``POST /clips/{id}/publish`` sends the clip there as one JSON ``POST``:

* **Payload** (:func:`build_payload`): ``event`` (``"clip.published"``), ``clip_id``,
  ``stream_id``, the clip's ``start``, ``end`` and ``duration`` (seconds of the stream), its
  moment's ``score``, ``rank``, ``confidence``, ``transcript`` and ``reason`` when the store has
  them, the ``product`` whose pitch it falls in when there is one, and ``links``: the clip's
  ``video``, ``captions``, ``thumbnail`` and details (paths on the back office) and ``room``, a link
  back to the live room (its stream id and name, and ``room_url``: the stream's URL as the store
  keeps it, without credentials or query, only when it is an http(s) URL). Nothing in it names the
  tenant.
* **Headers** (:func:`signed_headers`): ``X-ACE-Timestamp`` (Unix seconds) and
  ``X-ACE-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"`` under the
  tenant's secret; ``Idempotency-Key: <clip id>`` (the same on every retry and every re-publish of
  the clip, so a receiver can drop a second copy); ``X-ACE-Event: clip.published``. A receiver checks
  the signature with :func:`verify_signature`.
* **Delivery** (:func:`deliver`): each attempt checks the URL with :mod:`ace.netguard` again
  (scheme, host, and every address it resolves to must be public unless ``ACE_URL_ALLOWLIST``
  lists it) and connects to exactly the address it checked, so a DNS answer that changes between
  the check and the connection (DNS rebinding) cannot reach a private address. An attempt has a
  hard time limit (connecting, sending and reading the answer together); redirects are not
  followed (a 3xx is a failure). Network errors, timeouts, 429 and 5xx are retried with
  exponential backoff and jitter (``Retry-After`` is honoured up to the backoff's ceiling), at most
  :attr:`RetryPolicy.attempts` attempts in all; any other 4xx, a redirect or a refused destination
  fails at once. A 2xx is success; a JSON answer ``{"id": ...}`` gives the receiver's own id.

This module is the library layer: it imports neither Ray nor the workers.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import math
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ace import jsontext
from ace.errors import InputError
from ace.netguard import AddressPolicy, CheckedURL, check_url, connect_checked

log = logging.getLogger("ace.publish")

__all__ = [
    "EVENT",
    "EVENT_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Delivery",
    "RetryPolicy",
    "build_payload",
    "check_webhook",
    "deliver",
    "encode",
    "new_secret",
    "plain_url",
    "sign",
    "signed_headers",
    "verify_signature",
]

#: the payload's ``event`` and the ``X-ACE-Event`` header
EVENT = "clip.published"
SIGNATURE_HEADER = "X-ACE-Signature"
TIMESTAMP_HEADER = "X-ACE-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-ACE-Event"
#: a receiver refuses a signature whose timestamp is further than this from its clock (seconds)
DEFAULT_TOLERANCE_S = 300.0
#: the most of a webhook's answer that is read (the rest is ignored)
MAX_ANSWER_BYTES = 64 * 1024
#: the longest webhook URL a tenant may keep
MAX_URL_LENGTH = 2048
_USER_AGENT = "ace-publish/1"


# ----------------------------------------------------------------------------------- secrets and signatures


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 43 url-safe characters (256 random bits)."""
    import secrets

    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"``
    under ``secret``."""
    msg = str(timestamp).encode("ascii") + b"." + bytes(body)
    return "sha256=" + hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: int | str, body: bytes, header: str, *,
                     tolerance_s: float | None = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """Whether ``header`` (the ``X-ACE-Signature`` value) signs ``body`` with ``timestamp`` (the
    ``X-ACE-Timestamp`` value) under ``secret``, compared in constant time. The timestamp must lie
    within ``tolerance_s`` seconds of ``now`` (default: the clock; None skips the check), so a
    captured request cannot be replayed later. ``body`` is the raw request body, as received."""
    if not isinstance(header, str) or not header.startswith("sha256="):
        return False
    ts = str(timestamp).strip()
    if not ts.isdigit() or len(ts) > 12:
        return False
    if tolerance_s is not None and abs((time.time() if now is None else now) - int(ts)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body).encode(), header.strip().encode())


def signed_headers(secret: str, body: bytes, clip_id: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers of a publish request: content type, signature and timestamp, idempotency key and event."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {"Content-Type": "application/json", "User-Agent": _USER_AGENT, TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret, ts, body), IDEMPOTENCY_HEADER: clip_id, EVENT_HEADER: EVENT}


# ----------------------------------------------------------------------------------- the payload


def plain_url(path: str) -> str | None:
    """An http(s) URL without user info, query or fragment (a stream's URL as the store keeps it,
    a webhook for messages); None for anything else (a file path, an RTMP URL, garbage)."""
    try:
        parts = urllib.parse.urlsplit(path or "")
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc += f":{port}"
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path, "", ""))


def _reason(reasons: Any) -> str | None:
    """The strongest reason of a moment in words (``"chat: burst"``), or None."""
    best = None
    for r in reasons or ():
        if isinstance(r, Mapping) and (best is None or float(r.get("score") or 0) > float(best.get("score") or 0)):
            best = r
    if best is None:
        return None
    source, detail = str(best.get("source") or ""), str(best.get("detail") or "")
    return f"{source}: {detail}" if source and detail else (source or detail or None)


def _number(v: Any) -> float | int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def build_payload(clip: Mapping[str, Any], show: Mapping[str, Any] | None = None, *,
                  product: Mapping[str, Any] | None = None, published_at: float | None = None) -> dict[str, Any]:
    """The JSON object sent for a clip: ``clip`` is the store's clip row (``Store.get_clip``),
    ``show`` its show's row (``Store.get_show``), ``product`` the product segment it falls in, if any
    (``{"product": id, "name": ...}``). See the module docstring for the fields. Only what the
    store has is sent; nothing names the tenant."""
    mid = str(clip["moment_id"])
    start, end = float(clip["start"]), float(clip["end"])
    out: dict[str, Any] = {"event": EVENT, "clip_id": mid, "stream_id": str(clip.get("show_id") or ""),
                           "start": start, "end": end, "duration": round(end - start, 3)}
    for key in ("score", "rank", "confidence"):
        v = _number(clip.get(key))
        if v is not None:
            out[key] = v
    if clip.get("title"):
        out["title"] = str(clip["title"])
    if clip.get("transcript"):
        out["transcript"] = str(clip["transcript"])
    reason = _reason(clip.get("reasons"))
    if reason:
        out["reason"] = reason
    if product and product.get("product"):
        out["product"] = {"id": str(product["product"]), "name": str(product.get("name") or "")}
    links: dict[str, Any] = {"clip": f"/clips/{mid}", "video": f"/clips/{mid}/video"}
    if clip.get("srt_path"):
        links["captions"] = f"/clips/{mid}/captions"
    if clip.get("thumb_path"):
        links["thumbnail"] = f"/clips/{mid}/thumbnail"
    room: dict[str, Any] = {"stream_id": out["stream_id"]}
    if show:
        if show.get("name"):
            room["name"] = str(show["name"])
        url = plain_url(str(show.get("path") or ""))
        if url:
            room["room_url"] = url
    links["room"] = room
    out["links"] = links
    out["published_at"] = round(time.time() if published_at is None else float(published_at), 3)
    return out


def encode(payload: Mapping[str, Any]) -> bytes:
    """The payload as the request body: compact UTF-8 JSON (the signature covers these exact bytes)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


# ----------------------------------------------------------------------------------- the webhook URL


def check_webhook(url: str, allow: Iterable[str] = (), *, policy: AddressPolicy | None = None) -> CheckedURL:
    """A tenant's webhook URL checked: http or https only, at most :data:`MAX_URL_LENGTH`
    characters, no user info (the signature is the credential), and a host whose every address
    is public or allowed (:func:`ace.netguard.check_url`). :class:`~ace.errors.InputError` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise InputError("the webhook URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InputError(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in ("http", "https"):
        raise InputError(f"the webhook URL must be http:// or https://, not {scheme + '://' if scheme else 'a relative URL'}")
    try:
        if urllib.parse.urlsplit(url).username is not None:
            raise InputError("the webhook URL must not carry a user name or password (requests are signed instead)")
    except ValueError as e:
        raise InputError(f"the webhook URL is malformed: {e}") from None
    return check_url(url, allow, policy=policy)


def _where(checked: CheckedURL) -> str:
    """The webhook's origin and path, for messages (never its query)."""
    return checked.origin + urllib.parse.urlsplit(checked.url).path


# ----------------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class RetryPolicy:
    """How hard delivery tries: ``attempts`` in all; the wait before attempt ``n + 1`` is
    ``min(max_s, base_s * 2 ** (n - 1))`` times a random factor in ``[1 - jitter, 1]``; each
    attempt has ``timeout_s`` seconds in all (connect, send, read)."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.5
    timeout_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based); at least ``retry_after``
        (the webhook's ``Retry-After``) up to ``max_s``."""
        base = min(self.max_s, self.base_s * 2 ** max(0, attempt - 1))
        j = min(max(self.jitter, 0.0), 1.0)
        d = base * (1.0 - j * (rng or random).random())
        if retry_after is not None and retry_after > d:
            d = min(float(retry_after), self.max_s)
        return max(0.0, d)


@dataclass
class Delivery:
    """What :func:`deliver` did: ``ok`` when the webhook answered 2xx; ``status`` is ``"sent"`` or
    ``"failed"``; ``response_status`` the last HTTP status (None when none came); ``remote_id`` the
    receiver's ``{"id": ...}``; ``error`` why it failed (the last failure's message);
    ``waits`` the seconds waited between attempts."""

    ok: bool
    attempts: int
    response_status: int | None = None
    remote_id: str | None = None
    error: str = ""
    waits: list[float] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "sent" if self.ok else "failed"


class _Retry(Exception):
    """An attempt failed in a way worth another try (``retry_after``: the webhook's wish, seconds)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class _Fail(Exception):
    """An attempt failed for good (a refused destination, a 4xx, a redirect)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class _PinnedHTTP(http.client.HTTPConnection):
    """http.client's connection, connected to the checked addresses instead of the host name."""

    def __init__(self, checked: CheckedURL, timeout: float):
        super().__init__(checked.host, checked.port, timeout=timeout)
        self._addrs = checked.addresses

    def connect(self) -> None:
        self.sock = connect_checked(self._addrs, self.port, self.timeout, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """The same for https: the TLS session is made with the host name (SNI, certificate check)."""

    def __init__(self, checked: CheckedURL, timeout: float, context: ssl.SSLContext | None = None):
        super().__init__(checked.host, checked.port, timeout=timeout, context=context or ssl.create_default_context())
        self._addrs = checked.addresses

    def connect(self) -> None:
        sock = connect_checked(self._addrs, self.port, self.timeout, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        v = float(value.strip())
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def _remote_id(body: bytes, content_type: str) -> str | None:
    """The receiver's ``{"id": ...}`` (a string or an integer, at most 200 characters), if it sent one."""
    if not body or "json" not in (content_type or "").lower():
        return None
    try:
        doc = jsontext.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    rid = doc.get("id") if isinstance(doc, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return None
    rid = str(rid)
    return rid if 0 < len(rid) <= 200 else None


def _attempt(url: str, body: bytes, headers: Mapping[str, str], policy: AddressPolicy, timeout_s: float,
             tls: ssl.SSLContext | None) -> tuple[int, str | None]:
    """One POST: ``(status, remote id)`` on 2xx; raises :class:`_Retry` or :class:`_Fail`."""
    try:
        checked = check_webhook(url, policy=policy)
    except InputError as e:
        if str(e).startswith("cannot resolve"):  # DNS trouble may pass
            raise _Retry(str(e)) from None
        raise _Fail(str(e)) from None
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = _PinnedHTTPS(checked, timeout_s, tls) if checked.scheme == "https" else _PinnedHTTP(checked, timeout_s)
    where = _where(checked)

    def _cut() -> None:  # the hard limit: whatever the server does, the attempt ends
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout_s, _cut)
    watchdog.daemon = True
    started = time.monotonic()
    watchdog.start()
    try:
        conn.request("POST", target, body=body, headers=dict(headers))
        resp = conn.getresponse()
        answer = resp.read(MAX_ANSWER_BYTES)
        status = resp.status
    except (OSError, http.client.HTTPException) as e:
        if time.monotonic() - started >= timeout_s - 1e-3:
            raise _Retry(f"webhook {where} did not answer within {timeout_s:g} s") from None
        raise _Retry(f"webhook {where} failed: {getattr(e, 'strerror', None) or e or type(e).__name__}") from None
    finally:
        watchdog.cancel()
        conn.close()
    if 200 <= status < 300:
        return status, _remote_id(answer, resp.getheader("content-type") or "")
    if 300 <= status < 400:
        raise _Fail(f"webhook {where} answered {status} (a redirect; redirects are not followed)", status)
    if status == 429 or status >= 500:
        raise _Retry(f"webhook {where} answered {status}", status, _retry_after(resp.getheader("retry-after")))
    raise _Fail(f"webhook {where} answered {status}", status)


def deliver(url: str, body: bytes, headers: Mapping[str, str] | Callable[[], Mapping[str, str]], *, allow: Iterable[str] = (),
            policy: AddressPolicy | None = None, retry: RetryPolicy | None = None,
            sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
            on_attempt: Callable[[int, str, int | None], None] | None = None, tls: ssl.SSLContext | None = None) -> Delivery:
    """POST ``body`` with ``headers`` to ``url`` until it is accepted, fails for good, or the
    attempts run out (see the module docstring). ``headers`` may be a function called before each
    attempt (to sign it with a fresh timestamp). ``allow`` (or ``policy``) is the URL allowlist;
    ``on_attempt(n, error, status)`` is called after each failed attempt (to record progress);
    ``sleep`` and ``rng`` exist for tests; ``tls`` verifies https servers (default: the system's CAs).
    Never raises for a delivery problem: the outcome is in the returned :class:`Delivery`."""
    r = retry or RetryPolicy()
    pol = policy or AddressPolicy(allow)
    waits: list[float] = []
    last_status: int | None = None
    error = ""
    n = 0
    for n in range(1, max(1, int(r.attempts)) + 1):
        try:
            heads = headers() if callable(headers) else headers
            status, remote = _attempt(url, body, heads, pol, float(r.timeout_s), tls)
        except _Fail as e:
            last_status = e.status if e.status is not None else last_status
            log.info("publish to %s failed for good: %s", _safe(url), e)
            return Delivery(False, n, last_status, None, str(e), waits)
        except _Retry as e:
            last_status = e.status if e.status is not None else last_status
            error = str(e)
            if on_attempt is not None:
                on_attempt(n, error, e.status)
            if n >= r.attempts:
                break
            wait = r.delay(n, rng, e.retry_after)
            waits.append(wait)
            log.debug("publish attempt %d to %s failed (%s); next in %.2f s", n, _safe(url), e, wait)
            sleep(wait)
            continue
        return Delivery(True, n, status, remote, "", waits)
    return Delivery(False, n, last_status, None, f"{error} (gave up after {n} attempts)", waits)


def _safe(url: str) -> str:
    """A URL for logs: scheme, host and path only."""
    return plain_url(url) or "(webhook)"
