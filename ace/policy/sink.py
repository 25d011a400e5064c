"""Where ramp decisions go for the platform to apply: a JSONL file or a webhook.

Every sink has ``send(decisions)`` and ``close()``. :func:`make_sink` picks one from a string:

* ``""``, ``"none"`` or ``None`` — :class:`NullSink` (decisions are only kept in memory);
* ``http://...`` or ``https://...`` — :class:`WebhookSink`: one POST per tick with
  ``{"decisions": [...]}`` as JSON, a hard timeout, no redirects followed;
* ``file:///path/x.jsonl`` or a plain path — :class:`JsonlSink`: one JSON object per decision
  and line, appended.

Any other scheme (``ftp:``, ``file://host/...``, ``gopher:`` ...) is refused with
``ValueError``. A sink that fails to deliver raises :class:`SinkError`; the ramp actor logs it and
goes on deciding.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ace.errors import AceError
from ace.types import RampDecision, to_dict

log = logging.getLogger("ace.policy")


class SinkError(AceError):
    """A sink could not deliver decisions (the webhook timed out or refused, the file failed)."""


class DecisionSink(Protocol):
    def send(self, decisions: Sequence[RampDecision]) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Sends nowhere."""

    def send(self, decisions: Sequence[RampDecision]) -> None:
        return None

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NullSink()"


class JsonlSink:
    """Appends one JSON object per decision to ``path`` (parent folders are created)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def send(self, decisions: Sequence[RampDecision]) -> None:
        if not decisions:
            return
        lines = "".join(json.dumps(to_dict(d), ensure_ascii=False) + "\n" for d in decisions)
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as f:
                f.write(lines)
        except OSError as e:
            raise SinkError(f"cannot append decisions to {self.path}: {e}") from e

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib API
        return None  # a redirect is an error: the webhook must answer itself


def check_webhook_url(url: str) -> str:
    """``url`` if it is an absolute http or https URL with a host; ``ValueError`` otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"webhook URL must be http or https, not {parts.scheme or 'relative'!r}: {url!r}")
    if not parts.hostname:
        raise ValueError(f"webhook URL has no host: {url!r}")
    return url


class WebhookSink:
    """POSTs each tick's decisions as ``{"decisions": [...]}`` to an http(s) URL.

    ``timeout`` (seconds) bounds connecting and reading; redirects are not followed; a non-2xx
    answer, a timeout or a network error raises :class:`SinkError`.
    """

    def __init__(self, url: str, timeout: float = 2.0, headers: dict[str, str] | None = None):
        self.url = check_webhook_url(url)
        if not timeout or timeout <= 0:
            raise ValueError("webhook timeout must be positive")
        self.timeout = float(timeout)
        self.headers = {"Content-Type": "application/json", "User-Agent": "ace-ramp/1"}
        self.headers.update(headers or {})
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, decisions: Sequence[RampDecision]) -> None:
        if not decisions:
            return
        body = json.dumps({"decisions": [to_dict(d) for d in decisions]}, ensure_ascii=False).encode()
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status = resp.status
                resp.read(1024)
        except urllib.error.HTTPError as e:
            raise SinkError(f"webhook {self._where()} answered {e.code}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SinkError(f"webhook {self._where()} failed: {reason}") from e
        if not 200 <= status < 300:
            raise SinkError(f"webhook {self._where()} answered {status}")

    def _where(self) -> str:
        p = urllib.parse.urlsplit(self.url)
        return f"{p.scheme}://{p.hostname}{':' + str(p.port) if p.port else ''}{p.path}"

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"WebhookSink({self._where()!r}, timeout={self.timeout})"


def make_sink(spec: str | Path | None, timeout: float = 2.0) -> DecisionSink:
    """A sink from a string (see the module docstring)."""
    if spec is None:
        return NullSink()
    if isinstance(spec, Path):
        return JsonlSink(spec)
    text = str(spec).strip()
    if text.lower() in ("", "none", "null"):
        return NullSink()
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return WebhookSink(text, timeout=timeout)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL with a remote host is not supported: {text!r}")
        return JsonlSink(urllib.parse.unquote(parts.path))
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ValueError(f"unsupported sink {text!r}: use a path, file:///path.jsonl or an http(s) URL")
    return JsonlSink(text)
