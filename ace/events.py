"""Audience interaction events: reading and writing the formats ACE understands.

Formats (detected from the content, not the file name):

``ace-jsonl``
    ACE's own format, one JSON object per line::

        {"t": 12.5, "kind": "chat", "user": "mia_88", "text": "how much?"}
        {"t": 13.0, "kind": "gift", "user": "li.wei", "value": 50}
        {"t": 20.0, "kind": "viewers", "value": 1834}

    ``t`` is seconds on the show's clock (0 to :data:`MAX_EVENT_T`), ``kind`` one of
    :data:`ace.types.EVENT_KINDS`, ``user`` a string (numbers are accepted and turned into strings),
    ``value`` an optional number (1 when absent; 0 to :data:`MAX_EVENT_VALUE`) and ``text`` an
    optional string (valid Unicode: a lone surrogate is refused). ``promoted`` and ``trusted`` are optional booleans
    (false when absent) that the traffic-ramp policy reads: the platform's attribution of the user
    to promoted traffic, and whether it trusts the account. Other keys are ignored. Blank lines and lines starting
    with ``#`` are skipped. A JSON array of such objects is read too (``ace-json``).

``twitch-json``
    The chat file TwitchDownloader writes (``{"comments": [...], "video": {...}}``, optionally
    gzip-compressed as ``.json.gz``). Each comment's ``content_offset_seconds`` (minus
    ``video.start`` when the download was trimmed) becomes ``t``; the user is the commenter's
    ``name``, else ``display_name``, else ``_id``. Mapping:

    * an ordinary message -> ``chat``;
    * a cheer (``message.bits_spent > 0``) -> ``chat`` plus ``gift`` with ``value`` = bits;
    * a subscription notice (``user_notice_params.msg_id`` ``sub``/``resub`` or the text
      "X subscribed at Tier N" / "X subscribed with Prime") -> ``gift`` worth 500 bits per tier
      step (Tier 1 and Prime 500, Tier 2 1000, Tier 3 2500), which is what a sub costs in bits;
    * gifted subs ("X is gifting 5 Tier 1 Subs", "X gifted a Tier 1 sub to Y") -> ``gift`` worth
      the same per sub; the single-gift notices Twitch sends after a bulk gift are not counted twice;
    * a raid ("250 raiders from X have joined!") -> ``share`` with ``value`` = raiders;
    * a follow announced by a chat bot ("X just followed") -> ``follow`` for X.

``bilibili-xml``
    Bilibili danmaku XML (``<i><d p="time,mode,size,color,unixtime,pool,user,rowid">text</d></i>``)
    and the live-recording variant written by BililiveRecorder, which adds ``<sc>`` (Super Chat),
    ``<gift>`` and ``<guard>`` elements with a ``ts`` attribute. ``d`` -> ``chat`` at ``p[0]`` by
    ``p[6]``; ``sc`` -> ``chat`` plus ``gift`` worth its ``price`` (CNY); ``gift`` -> ``gift`` with
    ``value`` = ``giftcount``; ``guard`` -> ``gift`` worth the guard level's monthly price (CNY) times
    ``count``. The XML is parsed with expat and refused if it declares a DOCTYPE or entities.

Bad records are skipped and reported in :attr:`EventLoad.warnings` as ``"line N: ..."`` (or
``"comment N: ..."`` for Twitch's JSON, where N counts comments from 1), never dropped silently. A
file that is not interaction events at all raises :class:`~ace.errors.EventFormatError`; a missing
file raises :class:`~ace.errors.InputError`; an empty file gives no events and no error.

>>> from ace.events import load_events
>>> load = load_events("show.events.jsonl")
>>> load.format, len(load.events), load.warnings[:3]
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from xml.parsers import expat

from ace import jsontext
from ace.errors import EventFormatError, InputError
from ace.types import EVENT_KINDS, Event

log = logging.getLogger("ace.events")

FORMAT_JSONL = "ace-jsonl"
FORMAT_JSON = "ace-json"
FORMAT_TWITCH = "twitch-json"
FORMAT_BILIBILI = "bilibili-xml"
FORMAT_EMPTY = "empty"
FORMATS: tuple[str, ...] = (FORMAT_JSONL, FORMAT_JSON, FORMAT_TWITCH, FORMAT_BILIBILI, FORMAT_EMPTY)

#: Largest whole-document file (JSON or XML, after gzip) read into memory.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
#: Longest single JSONL line.
MAX_LINE_BYTES = 1024 * 1024
#: Warnings kept in :attr:`EventLoad.warnings`; the rest are counted in one final line.
MAX_WARNINGS = 500

_KINDS = frozenset(EVENT_KINDS)
_SNIFF_BYTES = 64 * 1024


@dataclass
class EventLoad:
    """What :func:`load_events` read: the events sorted by ``t``, one warning per skipped or
    questionable record (``"line N: what is wrong"``) and the detected format (one of
    :data:`FORMATS`)."""

    events: list[Event] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    format: str = FORMAT_EMPTY


class JsonlLine(NamedTuple):
    """One non-blank, non-comment line of ACE JSONL: exactly one of ``event`` and ``warning`` is set."""

    line: int
    event: Event | None
    warning: str | None


class _Warnings:
    """Collects warnings up to :data:`MAX_WARNINGS`, counting the rest."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0

    def add(self, msg: str) -> None:
        if len(self.items) < MAX_WARNINGS:
            self.items.append(msg)
        else:
            self.dropped += 1

    @property
    def total(self) -> int:
        return len(self.items) + self.dropped

    def finish(self) -> list[str]:
        out = list(self.items)
        if self.dropped:
            out.append(f"{self.dropped} more warnings not shown")
        return out


# --------------------------------------------------------------------------------------------------
# ACE JSONL


#: the latest ``t`` an event may have: about 116 days of stream time (a larger one is a unit mistake,
#: milliseconds or a Unix timestamp, and would stall the detectors' clocks)
MAX_EVENT_T = 1e7
#: the largest ``value`` an event may carry (a count, a gift's worth, seconds watched)
MAX_EVENT_VALUE = 1e12


def _number(v: Any) -> float | None:
    """A JSON number as float (bools are not numbers here); None otherwise, also for an integer too
    large for a float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _is_text(s: str) -> bool:
    """Whether ``s`` can be written as UTF-8 (JSON's ``\\ud800`` escapes give lone surrogates)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _event_from_obj(obj: Any) -> tuple[Event | None, str | None]:
    """Validate one ACE event object; (event, None) or (None, what is wrong)."""
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    if "t" not in obj:
        return None, "missing 't'"
    t = _number(obj["t"])
    if t is None:
        return None, f"'t' must be a number, got {_short(obj['t'])}"
    if not math.isfinite(t) or t < 0 or t > MAX_EVENT_T:
        return None, f"'t' must be a finite number >= 0 and at most {MAX_EVENT_T:g} (seconds of stream time), got {t!r:.40}"
    kind = obj.get("kind")
    if not isinstance(kind, str):
        return None, "missing 'kind'" if kind is None else f"'kind' must be a string, got {kind!r:.40}"
    k = kind.strip().lower()
    if k not in _KINDS:
        return None, f"unknown kind {kind!r:.40} (expected one of {', '.join(EVENT_KINDS)})"
    user = obj.get("user", "")
    if user is None:
        user = ""
    elif isinstance(user, bool) or not isinstance(user, (str, int)):
        return None, f"'user' must be a string, got {type(user).__name__}"
    elif isinstance(user, int):
        if abs(user) >= 10**64:
            return None, "'user' as a number must have at most 64 digits"
        user = str(user)
    elif not _is_text(user):
        return None, "'user' is not valid Unicode text (a lone surrogate)"
    value = obj.get("value", 1)
    if value is None:
        value = 1
    fv = _number(value)
    if fv is None or not math.isfinite(fv):
        return None, f"'value' must be a finite number, got {_short(value)}"
    if fv < 0 or fv > MAX_EVENT_VALUE:
        return None, f"'value' must be >= 0 and at most {MAX_EVENT_VALUE:g} (a count, a worth or seconds), got {fv!r:.40}"
    text = obj.get("text", "")
    if text is None:
        text = ""
    elif not isinstance(text, str):
        return None, f"'text' must be a string, got {type(text).__name__}"
    elif not _is_text(text):
        return None, "'text' is not valid Unicode text (a lone surrogate)"
    flags = {}
    for name in ("promoted", "trusted"):
        v = obj.get(name, False)
        if v is None:
            v = False
        if not isinstance(v, bool):
            return None, f"'{name}' must be true or false, got {v!r:.40}"
        flags[name] = v
    product = obj.get("product", "")
    if product is None:
        product = ""
    elif isinstance(product, bool) or not isinstance(product, (str, int)):
        return None, f"'product' must be a product id (a string), got {_short(product)}"
    product = str(product).strip()
    if len(product) > 200 or not _is_text(product):
        return None, "'product' must be a product id of at most 200 characters"
    return Event(t=t, kind=k, user=user, value=fv, text=text, product=product, **flags), None


def _short(v: Any) -> str:
    """A value for an error message, cut to 40 characters (a huge number is not printed whole)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**40:
        return f"an integer of {len(str(abs(v)))} digits" if abs(v) < 10**4000 else "an integer of over 4000 digits"
    return f"{v!r:.40}"


def _parse_jsonl_line(raw: str | bytes, n: int) -> tuple[JsonlLine | None, bool]:
    """One line: (None, False) for blank and comment lines, else the parsed line and whether it
    looked like an event record at all (a JSON object with ``t`` or ``kind``)."""
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_LINE_BYTES:
            return JsonlLine(n, None, f"line {n}: longer than {MAX_LINE_BYTES} bytes"), False
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return JsonlLine(n, None, f"line {n}: not UTF-8 text"), False
    elif len(raw) > MAX_LINE_BYTES:
        return JsonlLine(n, None, f"line {n}: longer than {MAX_LINE_BYTES} characters"), False
    s = raw.strip().lstrip("\ufeff")
    if not s or s.startswith("#"):
        return None, False
    try:
        obj = jsontext.loads(s)
    except (ValueError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        return JsonlLine(n, None, f"line {n}: not valid JSON ({msg})"), False
    is_record = isinstance(obj, dict) and ("t" in obj or "kind" in obj)
    ev, problem = _event_from_obj(obj)
    if ev is None:
        return JsonlLine(n, None, f"line {n}: {problem}"), is_record
    return JsonlLine(n, ev, None), True


def iter_jsonl_lines(lines: Iterable[str | bytes], start_line: int = 1) -> Iterator[JsonlLine]:
    """Parse ACE JSONL lines one at a time; yields a :class:`JsonlLine` per line that is not blank
    and not a ``#`` comment (``str`` or UTF-8 ``bytes`` lines, with or without the newline).
    ``start_line`` is the number of the first line given, so a reader following a file that is
    being appended to can feed only the new *complete* lines and keep the numbering (hold back a
    last line without its newline until the writer finishes it)."""
    for n, raw in enumerate(lines, start=start_line):
        item, _ = _parse_jsonl_line(raw, n)
        if item is not None:
            yield item


def _load_jsonl(stream: io.BufferedIOBase, name: str) -> EventLoad:
    warns = _Warnings()
    events: list[Event] = []
    records = 0  # lines that look like event records, valid or not
    content_lines = 0
    for n, raw in enumerate(_binary_lines(stream), start=1):
        item, is_record = _parse_jsonl_line(raw, n)
        if item is None:
            continue
        content_lines += 1
        records += is_record
        if item.event is not None:
            events.append(item.event)
        else:
            warns.add(item.warning or f"line {n}: unreadable")
    if content_lines and not records:
        first = "; ".join(warns.items[:3])
        raise EventFormatError(
            f"{name}: not an events file (no line is an ACE event record, and it is not Twitch chat "
            f"JSON or Bilibili danmaku XML): {first}"
        )
    return _finish(events, warns, FORMAT_JSONL if content_lines else FORMAT_EMPTY, name)


def _binary_lines(stream: io.BufferedIOBase) -> Iterator[bytes]:
    """Lines of a binary stream without reading an overlong line into memory whole."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            # swallow the rest of the overlong line, keeping one entry for it
            while True:
                more = stream.readline(MAX_LINE_BYTES)
                if not more or more.endswith(b"\n"):
                    break
        yield line


def write_jsonl(events: Iterable[Event], path: str | os.PathLike) -> Path:
    """Write events as ACE JSONL (atomically: a temporary file renamed into place). ``value`` is
    left out when it is 1 and ``text`` when empty. Returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            for e in events:
                f.write(event_to_json(e))
                f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def event_to_json(e: Event) -> str:
    """One event as a line of ACE JSONL (without the newline)."""
    return json.dumps(event_to_obj(e), ensure_ascii=False, allow_nan=False)


def event_to_obj(e: Event) -> dict[str, Any]:
    """One event as the JSON object of ACE JSONL."""
    obj: dict[str, Any] = {"t": e.t, "kind": e.kind, "user": e.user}
    if e.value != 1:
        obj["value"] = int(e.value) if float(e.value).is_integer() and abs(e.value) < 2**53 else e.value
    if e.text:
        obj["text"] = e.text
    if e.promoted:
        obj["promoted"] = True
    if e.trusted:
        obj["trusted"] = True
    if e.product:
        obj["product"] = e.product
    return obj


# --------------------------------------------------------------------------------------------------
# Twitch chat JSON (TwitchDownloader)

_BITS_PER_TIER = {"1": 500.0, "2": 1000.0, "3": 2500.0, "prime": 500.0}
_SUB_RE = re.compile(r"^\s*(?P<who>\S+) subscribed (?:at Tier (?P<tier>\d)|with (?P<prime>Prime))")
_CONVERTED_RE = re.compile(r"^\s*(?P<who>\S+) converted from a (?:Prime|Tier \d) sub to a (?:Tier (?P<tier>\d)|(?P<prime>Prime))")
_GIFT_MANY_RE = re.compile(r"^\s*(?P<who>\S+) is gifting (?P<n>\d+) Tier (?P<tier>\d) Subs?", re.I)
_GIFT_ONE_RE = re.compile(r"^\s*(?P<who>\S+) gifted a Tier (?P<tier>\d) sub to", re.I)
_ANON_GIFT_RE = re.compile(r"^\s*An anonymous user (?:gifted a|is gifting (?P<n>\d+)) Tier (?P<tier>\d)", re.I)
_RAID_RE = re.compile(r"^\s*(?P<n>[\d,]+) raiders? from (?P<who>\S+) ha(?:ve|s) joined", re.I)
_FOLLOW_RES = (
    re.compile(r"^\W*@?(?P<who>[A-Za-z0-9_]{2,25}),? (?:just |has just |has )?followed\b", re.I),
    re.compile(r"\bthanks? (?:you )?for (?:the )?follow(?:ing)?,? @?(?P<who>[A-Za-z0-9_]{2,25})\b", re.I),
    re.compile(r"\b(?:welcome|thank you|thanks),? @?(?P<who>[A-Za-z0-9_]{2,25}),? (?:for|on) (?:the )?follow", re.I),
)
_CHAT_BOTS = frozenset(
    {"streamelements", "streamlabs", "nightbot", "moobot", "fossabot", "wizebot", "sery_bot", "botisimo", "deepbot", "coebot"}
)


def _twitch_user(commenter: Any) -> str | None:
    if not isinstance(commenter, dict):
        return None
    for key in ("name", "display_name", "_id"):
        v = commenter.get(key)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
            return str(v)
    return None


def _own(m: re.Match | None, names: set[str]) -> re.Match | None:
    """A notice counts only when it names its own commenter (as Twitch's system messages do), so
    a viewer typing "bob subscribed at Tier 1" is just chat."""
    return m if m is not None and m.group("who").lower() in names else None


def _load_twitch(doc: Any, name: str) -> EventLoad:
    comments = doc.get("comments") if isinstance(doc, dict) else doc
    if not isinstance(comments, list):
        raise EventFormatError(f"{name}: Twitch chat JSON whose 'comments' is not a list")
    shift = 0.0
    video = doc.get("video") if isinstance(doc, dict) else None
    if isinstance(video, dict):
        start = _number(video.get("start"))
        if start is not None and math.isfinite(start) and start > 0:
            shift = start
            log.info("%s: chat trimmed to start at %.3f s of the VOD; times shifted by -%.3f s", name, start, start)
    warns = _Warnings()
    events: list[Event] = []
    pending_gifts: dict[str, tuple[float, int]] = {}  # gifter -> (t of bulk notice, single notices still expected)
    for i, c in enumerate(comments, start=1):
        where = f"comment {i}"
        if not isinstance(c, dict):
            warns.add(f"{where}: expected an object, got {type(c).__name__}")
            continue
        off = _number(c.get("content_offset_seconds"))
        if off is None:
            warns.add(f"{where}: missing or non-numeric 'content_offset_seconds'")
            continue
        t = off - shift
        if not math.isfinite(t) or t < 0:
            warns.add(f"{where}: time {off!r} is negative or not finite" + (f" after the trim shift of {shift:g} s" if shift else ""))
            continue
        user = _twitch_user(c.get("commenter"))
        if user is None:
            warns.add(f"{where}: missing commenter name")
            continue
        msg = c.get("message")
        if not isinstance(msg, dict):
            warns.add(f"{where}: missing 'message' object")
            continue
        body = msg.get("body")
        if body is None:
            frags = msg.get("fragments")
            if isinstance(frags, list):
                body = "".join(str(f.get("text", "")) for f in frags if isinstance(f, dict))
        if not isinstance(body, str):
            warns.add(f"{where}: message body is not text")
            continue
        commenter = c["commenter"]
        display = str(commenter.get("display_name") or user)
        params = msg.get("user_notice_params")
        msg_id = (params.get("msg_id") or params.get("msg-id")) if isinstance(params, dict) else None
        if not isinstance(msg_id, str):
            msg_id = ""

        # subscriptions and gifted subs
        names = {user.lower(), display.lower()}
        m_many = _own(_GIFT_MANY_RE.match(body), names)
        m_one = _own(_GIFT_ONE_RE.match(body), names)
        m_anon = _ANON_GIFT_RE.match(body)
        if m_many or (m_anon and m_anon.group("n")):
            m = m_many or m_anon
            n = int(m.group("n"))
            worth = _BITS_PER_TIER.get(m.group("tier"), 500.0)
            events.append(Event(t, "gift", user, n * worth, body))
            pending_gifts[user] = (t, n)
            continue
        if m_one or m_anon or msg_id == "subgift":
            m = m_one or m_anon
            tier = m.group("tier") if m else "1"
            pend = pending_gifts.get(user)
            if pend and pend[1] > 0 and t - pend[0] <= 30.0:
                pending_gifts[user] = (pend[0], pend[1] - 1)  # already counted by the bulk notice
                continue
            events.append(Event(t, "gift", user, _BITS_PER_TIER.get(tier, 500.0), body))
            continue
        m_sub = _own(_SUB_RE.match(body), names) or _own(_CONVERTED_RE.match(body), names)
        if m_sub or msg_id in ("sub", "resub"):
            tier = "prime" if m_sub and m_sub.group("prime") else (m_sub.group("tier") if m_sub else "1")
            events.append(Event(t, "gift", user, _BITS_PER_TIER.get(tier, 500.0), body))
            continue
        m_raid = _RAID_RE.match(body)
        if m_raid or msg_id == "raid":
            n = float(m_raid.group("n").replace(",", "")) if m_raid else 1.0
            who = m_raid.group("who") if m_raid else user
            events.append(Event(t, "share", who, n, body))
            continue
        if user.lower() in _CHAT_BOTS or display.lower() in _CHAT_BOTS:
            for rx in _FOLLOW_RES:
                m_f = rx.search(body)
                if m_f:
                    events.append(Event(t, "follow", m_f.group("who"), 1.0, body))
                    break
            else:
                events.append(Event(t, "chat", user, 1.0, body))
            continue
        events.append(Event(t, "chat", user, 1.0, body))
        bits = msg.get("bits_spent")
        if bits is not None:
            b = _number(bits)
            if b is None or not math.isfinite(b) or b < 0:
                warns.add(f"{where}: 'bits_spent' is not a non-negative number ({bits!r:.40}); counted as chat only")
            elif b > 0:
                events.append(Event(t, "gift", user, b, body))
    return _finish(events, warns, FORMAT_TWITCH, name)


def _load_ace_json_array(doc: list, name: str) -> EventLoad:
    warns = _Warnings()
    events: list[Event] = []
    for i, obj in enumerate(doc, start=1):
        ev, problem = _event_from_obj(obj)
        if ev is None:
            warns.add(f"record {i}: {problem}")
        else:
            events.append(ev)
    if doc and not events and not any(isinstance(o, dict) and ("t" in o or "kind" in o) for o in doc):
        raise EventFormatError(f"{name}: a JSON array, but not of ACE events or Twitch comments")
    return _finish(events, warns, FORMAT_JSON, name)


def _load_json_document(data: bytes, name: str, jsonl_fallback: bool = False) -> EventLoad:
    """One JSON document of events; with ``jsonl_fallback``, a file that is not one after all but
    JSON Lines with a bad first line (:func:`_is_jsonl_after_all`) is read as JSON Lines."""
    try:
        doc = jsontext.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        if jsonl_fallback and _is_jsonl_after_all(data, exc):
            return _load_jsonl(io.BytesIO(data), name)
        raise EventFormatError(f"{name}: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        if jsonl_fallback and _is_jsonl_after_all(data, exc):
            return _load_jsonl(io.BytesIO(data), name)
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise EventFormatError(f"{name}: looks like JSON but is not valid JSON{where}: {exc}") from None
    if isinstance(doc, dict):
        if "comments" in doc:
            return _load_twitch(doc, name)
        keys = ", ".join(list(doc)[:8]) or "none"
        raise EventFormatError(
            f"{name}: a JSON object, but not an events file (no 'comments' list as in Twitch chat JSON; keys: {keys})"
        )
    if isinstance(doc, list):
        if doc and all(isinstance(c, dict) and "content_offset_seconds" in c for c in doc[:5]):
            return _load_twitch(doc, name)
        return _load_ace_json_array(doc, name)
    raise EventFormatError(f"{name}: JSON {type(doc).__name__}, not an events file")


# --------------------------------------------------------------------------------------------------
# Bilibili danmaku XML

#: Monthly price in CNY of a guard level (1 governor, 2 admiral, 3 captain).
_GUARD_PRICE = {1: 19998.0, 2: 1998.0, 3: 198.0}


class _DanmakuParser:
    """expat handlers for danmaku XML; records are the root's direct children."""

    def __init__(self, name: str, warns: _Warnings):
        self.name = name
        self.warns = warns
        self.events: list[Event] = []
        self.depth = 0
        self.root = ""
        self.records = 0
        self.cur: tuple[str, dict[str, str], int] | None = None
        self.text: list[str] = []
        self.p = expat.ParserCreate(encoding=None)
        self.p.buffer_text = True
        self.p.StartElementHandler = self.start
        self.p.EndElementHandler = self.end
        self.p.CharacterDataHandler = self.chars
        self.p.StartDoctypeDeclHandler = self.refuse_doctype
        self.p.EntityDeclHandler = self.refuse_entity
        self.p.ExternalEntityRefHandler = self.refuse_external
        try:
            self.p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        except AttributeError:  # pragma: no cover - very old expat bindings
            pass

    # the three refusals stop entity-expansion bombs and external fetches before they start
    def refuse_doctype(self, *args: Any) -> None:
        raise EventFormatError(f"{self.name}: XML with a DOCTYPE declaration is refused (line {self.p.CurrentLineNumber})")

    def refuse_entity(self, *args: Any) -> None:
        raise EventFormatError(f"{self.name}: XML with an ENTITY declaration is refused (line {self.p.CurrentLineNumber})")

    def refuse_external(self, *args: Any) -> int:
        raise EventFormatError(f"{self.name}: XML with external entities is refused (line {self.p.CurrentLineNumber})")

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            self.root = tag
            if tag != "i":
                raise EventFormatError(f"{self.name}: XML, but not Bilibili danmaku (root element <{tag}>, expected <i>)")
        elif self.depth == 2 and tag in ("d", "sc", "gift", "guard"):
            self.cur = (tag, dict(attrs), self.p.CurrentLineNumber)
            self.text = []

    def chars(self, data: str) -> None:
        if self.cur is not None and self.depth == 2:
            self.text.append(data)

    def end(self, tag: str) -> None:
        if self.depth == 2 and self.cur is not None and tag == self.cur[0]:
            kind, attrs, line = self.cur
            self.cur = None
            self.records += 1
            self.record(kind, attrs, "".join(self.text), line)
        self.depth -= 1

    def record(self, tag: str, attrs: dict[str, str], text: str, line: int) -> None:
        where = f"line {line}"
        if tag == "d":
            p = attrs.get("p")
            if p is None:
                self.warns.add(f"{where}: <d> without a 'p' attribute")
                return
            parts = p.split(",")
            t = _parse_time(parts[0])
            if t is None:
                self.warns.add(f"{where}: <d> time {parts[0]!r:.40} is not a finite number >= 0")
                return
            user = parts[6].strip() if len(parts) > 6 and parts[6].strip() else attrs.get("user", "")
            if not user:
                self.warns.add(f"{where}: <d> without a user in p[6]; kept with an empty user")
            self.events.append(Event(t, "chat", user, 1.0, text))
            return
        t = _parse_time(attrs.get("ts", ""))
        if t is None:
            self.warns.add(f"{where}: <{tag}> 'ts' {attrs.get('ts')!r:.40} is not a finite number >= 0")
            return
        user = attrs.get("uid") or attrs.get("user") or ""
        if tag == "sc":
            price = _parse_float(attrs.get("price", ""))
            if price is None or price < 0:
                self.warns.add(f"{where}: <sc> price {attrs.get('price')!r:.40} is not a number; counted as chat only")
                self.events.append(Event(t, "chat", user, 1.0, text))
                return
            self.events.append(Event(t, "chat", user, 1.0, text))
            self.events.append(Event(t, "gift", user, price, text))
        elif tag == "gift":
            count = _parse_float(attrs.get("giftcount", "1"))
            if count is None or count <= 0:
                self.warns.add(f"{where}: <gift> giftcount {attrs.get('giftcount')!r:.40} is not a positive number")
                return
            self.events.append(Event(t, "gift", user, count, attrs.get("giftname", "")))
        else:  # guard
            level = _parse_float(attrs.get("level", "3"))
            count = _parse_float(attrs.get("count", "1"))
            if level is None or count is None or count <= 0:
                self.warns.add(f"{where}: <guard> level/count are not numbers")
                return
            price = _GUARD_PRICE.get(int(level), 198.0)
            self.events.append(Event(t, "gift", user, price * count, f"guard level {int(level)}"))


def _parse_float(s: str | None) -> float | None:
    try:
        v = float((s or "").strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _parse_time(s: str | None) -> float | None:
    v = _parse_float(s)
    return v if v is not None and v >= 0 else None


def _load_danmaku(stream: io.BufferedIOBase, name: str) -> EventLoad:
    warns = _Warnings()
    dp = _DanmakuParser(name, warns)
    total = 0
    try:
        while True:
            chunk = stream.read(1 << 20)
            total += len(chunk)
            if total > MAX_DOCUMENT_BYTES:
                raise EventFormatError(f"{name}: XML larger than {MAX_DOCUMENT_BYTES} bytes is refused")
            dp.p.Parse(chunk, not chunk)
            if not chunk:
                break
    except expat.ExpatError as exc:
        if not dp.root:
            raise EventFormatError(f"{name}: not well-formed XML ({expat.ErrorString(exc.code)} at line {exc.lineno})") from None
        if not dp.records:
            raise EventFormatError(
                f"{name}: danmaku XML broken before its first record ({expat.ErrorString(exc.code)} at line {exc.lineno})"
            ) from None
        # a recording cut short leaves a truncated file: keep what was read, say where it stopped
        warns.add(f"line {exc.lineno}: XML error ({expat.ErrorString(exc.code)}); the rest of the file is ignored")
    if not dp.root:
        raise EventFormatError(f"{name}: XML without a root element")
    return _finish(dp.events, warns, FORMAT_BILIBILI, name)


# --------------------------------------------------------------------------------------------------
# detection


def _finish(events: list[Event], warns: _Warnings, fmt: str, name: str) -> EventLoad:
    events.sort(key=lambda e: e.t)
    if warns.total:
        log.warning("%s: %d records skipped or questionable (first: %s)", name, warns.total, warns.items[0])
    log.debug("%s: %d events (%s)", name, len(events), fmt)
    return EventLoad(events=events, warnings=warns.finish(), format=fmt)


def _open_stream(path: Path) -> io.BufferedIOBase:
    f = open(path, "rb")
    head = f.read(2)
    f.seek(0)
    if head == b"\x1f\x8b":  # TwitchDownloader writes .json.gz when asked to compress
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f  # type: ignore[return-value]


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        dec.decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


def load_events(path: str | os.PathLike) -> EventLoad:
    """Read an interaction-event file in any supported format (see the module docstring)."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError(f"events file not found: {name}")
    if path.is_dir():
        raise InputError(f"events path is a folder, not a file: {name}")
    try:
        stream = _open_stream(path)
    except OSError as exc:
        raise InputError(f"cannot read events file {name}: {exc}") from exc
    try:
        with stream:
            try:
                head = stream.read(_SNIFF_BYTES)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise EventFormatError(f"{name}: unreadable compressed data ({exc})") from None
            if _looks_binary(head):
                raise EventFormatError(f"{name}: binary data, not an events file (JSONL, Twitch chat JSON or danmaku XML)")
            if not head:
                return EventLoad(format=FORMAT_EMPTY)
            text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
            stream.seek(0)
            if text.startswith("<"):
                return _load_danmaku(stream, name)
            if text.startswith("[") or (text.startswith("{") and not _first_line_is_record(text)):
                data = stream.read(MAX_DOCUMENT_BYTES + 1)
                if len(data) > MAX_DOCUMENT_BYTES:
                    raise EventFormatError(f"{name}: JSON document larger than {MAX_DOCUMENT_BYTES} bytes is refused")
                return _load_json_document(data, name, jsonl_fallback=text.startswith("{"))
            return _load_jsonl(stream, name)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read events file {name}: {exc}") from exc


def _looks_like_event_record(line: str) -> bool:
    try:
        obj = jsontext.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and ("t" in obj or "kind" in obj)


def _first_line_is_record(text: str) -> bool:
    first = text.split("\n", 1)[0].strip()
    return _looks_like_event_record(first)


def _is_jsonl_after_all(data: bytes, exc: Exception) -> bool:
    """A file whose first line is a broken or foreign object and that failed to parse as one JSON
    document (``exc``): JSONL with a bad first line (reported as a warning rather than refusing
    the file)."""
    if isinstance(exc, json.JSONDecodeError) and exc.msg == "Extra data":  # one object per line
        return True
    lines = data.split(b"\n", 50)[:50]
    return any(_looks_like_event_record(ln.decode("utf-8", "ignore").strip()) for ln in lines[1:])


__all__ = [
    "FORMATS",
    "FORMAT_BILIBILI",
    "FORMAT_EMPTY",
    "FORMAT_JSON",
    "FORMAT_JSONL",
    "FORMAT_TWITCH",
    "EventLoad",
    "JsonlLine",
    "event_to_json",
    "iter_jsonl_lines",
    "load_events",
    "write_jsonl",
]
