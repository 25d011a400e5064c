"""The durable record of the interaction events pushed to one live stream, counted exactly once.

A live stream's pushed events are appended to ``events.jsonl`` in its folder, ACE JSONL that can be
read back as a recorded show's events (:func:`ace.events.load_events`). The journal also gives the
stream its memory of batch keys (HTTP ``Idempotency-Key``): the first line of a keyed batch carries
the key, the batch's size and a digest of its events (keys that ACE JSONL readers ignore)::

    {"t": 12.5, "kind": "chat", "user": "u1", "batch": "k-17", "batch_size": 2, "batch_digest": "9f…"}
    {"t": 12.6, "kind": "like", "user": "u2"}

so a stream actor that Ray restarts finds the keys of the batches it accepted before, and a retried
batch is not counted again; a key sent again with other events is refused (:class:`BatchConflict`).

Each batch is one ``write`` of whole lines to the file opened for appending, after every event of it
has been checked and serialised: a batch is in the journal whole or not at all. A last line without
its newline (the process died inside the write) is cut off when the journal is opened again.

:meth:`EventJournal.checkpoint` gives what a restarted journal needs to open without reading the
whole file: the byte offset and event count at that moment, where the oldest remembered key's
batch starts, and the offset up to which the events have been handed to the analysis
(``consumed``); the events after it are :attr:`EventJournal.pending` when it is opened again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ace.events import _event_from_obj, event_to_obj
from ace.types import Event

log = logging.getLogger("ace.live")

#: how many batch keys a stream remembers (the oldest are forgotten first)
KEEP_KEYS = 10_000
_CHUNK = 1 << 20


class BatchConflict(ValueError):
    """A batch key that was used before with other events."""


def batch_digest(lines: Sequence[str]) -> str:
    """A digest of a batch's events, as their ACE JSONL lines."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:32]


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


class EventJournal:
    """``events.jsonl`` of one stream, with its event count and recent batch keys (thread-safe).

    ``checkpoint`` is an earlier :meth:`checkpoint` of this file (from the stream's state file), or
    None to read the file from its start."""

    def __init__(self, path: str | os.PathLike, checkpoint: dict[str, Any] | None = None, keep_keys: int = KEEP_KEYS):
        self.path = Path(path)
        self.keep_keys = int(keep_keys)
        self._lock = threading.Lock()
        #: key -> (events, digest, byte offset of the batch's first line), oldest first
        self._keys: OrderedDict[str, tuple[int, str, int]] = OrderedDict()
        self.count = 0
        self.end = 0
        #: events after the checkpoint's ``consumed`` offset: accepted, not yet analysed
        self.pending: list[Event] = []
        #: the journal offset where :attr:`pending` begins
        self.pending_from = 0
        self._recover(checkpoint or {})

    # ------------------------------------------------------------------ opening

    def _recover(self, ck: dict[str, Any]) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        offset, count = int(ck.get("offset", 0)), int(ck.get("count", 0))
        consumed = int(ck.get("consumed", offset))
        keys_from = int(ck.get("keys_from", offset))
        if not (0 <= offset <= size and 0 <= consumed <= offset and 0 <= keys_from <= size):
            log.warning("%s: checkpoint %s does not fit the file (%d bytes); reading it whole", self.path, ck, size)
            offset, count, consumed, keys_from = 0, 0, 0, 0
        start = min(offset, consumed, keys_from)
        self.pending_from = consumed
        self.count = count
        pos = start
        with open(self.path, "rb") as fh:
            fh.seek(start)
            rest = b""
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                data = rest + chunk
                lines = data.split(b"\n")
                rest = lines.pop()
                for raw in lines:
                    self._recover_line(raw, pos, offset, consumed)
                    pos += len(raw) + 1
        if rest:  # the last write was cut short: that batch was never accepted
            log.warning("%s: dropping %d bytes of an unfinished last line", self.path, len(rest))
            with open(self.path, "r+b") as fh:
                fh.truncate(pos)
        self.end = pos

    def _recover_line(self, raw: bytes, pos: int, offset: int, consumed: int) -> None:
        if not raw.strip():
            return
        if pos >= offset:
            self.count += 1
        keyed = b'"batch"' in raw
        if not keyed and pos < consumed:
            return
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            log.warning("%s: unreadable line at byte %d", self.path, pos)
            return
        if keyed and isinstance(obj, dict) and isinstance(obj.get("batch"), str):
            self._remember(obj["batch"], int(obj.get("batch_size") or 0), str(obj.get("batch_digest") or ""), pos)
        if pos >= consumed:
            ev, problem = _event_from_obj(obj)
            if ev is not None:
                self.pending.append(ev)
            else:
                log.warning("%s: line at byte %d: %s", self.path, pos, problem)

    def _remember(self, key: str, n: int, digest: str, pos: int) -> None:
        self._keys[key] = (n, digest, pos)
        self._keys.move_to_end(key)
        while len(self._keys) > self.keep_keys:
            self._keys.popitem(last=False)

    def take_pending(self) -> list[Event]:
        """The events found after the checkpoint's ``consumed`` offset when the journal was opened
        (accepted, not yet analysed), once; they begin at :attr:`pending_from`."""
        out, self.pending = self.pending, []
        return out

    # ------------------------------------------------------------------ writing

    def append(self, events: Sequence[Event], key: str | None = None) -> tuple[int, bool]:
        """Append a batch; returns ``(events accepted, whether it was a repeat of an accepted batch)``.
        A repeated key answers as the first time and appends nothing; a key used before with other
        events raises :class:`BatchConflict`. Serialising comes before writing, so an event that
        cannot be written (not UTF-8 text) raises and nothing of the batch is kept."""
        lines = [_line(event_to_obj(e)) for e in events]
        digest = batch_digest(lines) if key is not None else ""
        with self._lock:
            if key is not None and key in self._keys:
                n, seen, _pos = self._keys[key]
                if seen != digest:
                    raise BatchConflict("this Idempotency-Key was used before with other events; use a new key for a new batch")
                return n, True
            if not lines:
                return 0, False
            if key is not None:
                first = event_to_obj(events[0]) | {"batch": key, "batch_size": len(lines), "batch_digest": digest}
                lines[0] = _line(first)
            data = ("\n".join(lines) + "\n").encode("utf-8")
            pos = self.end
            self._write(data)
            self.end += len(data)
            self.count += len(lines)
            if key is not None:
                self._remember(key, len(lines), digest, pos)
            return len(lines), False

    def _write(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ state

    def checkpoint(self, consumed: int | None = None) -> dict[str, int]:
        """Where the journal stands: ``offset`` (its size), ``count`` (events in it), ``keys_from``
        (where the oldest remembered key's batch starts) and ``consumed`` (given by the caller: the
        offset up to which events were handed on; default all of them)."""
        with self._lock:
            keys_from = next(iter(self._keys.values()))[2] if self._keys else self.end
            return {"offset": self.end, "count": self.count, "keys_from": keys_from,
                    "consumed": self.end if consumed is None else int(consumed)}
