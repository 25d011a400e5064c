"""``ace bench probe``: a hardening probe against a real ``ace serve`` on loopback.

The probe starts its own ACE as a user does (``ace serve --detach`` in a subprocess, with its own
data folder and free ports, loopback HLS allowed by ``ACE_URL_ALLOWLIST``), makes API tokens for
two tenants (``acme`` and ``globex``), publishes a live HLS copy of the sample show (or ``--input``)
on 127.0.0.1 and submits it for acme. Then it measures what a careful attacker or user would check,
each phase reported as numbers, never stopping at an unexpected answer (it is counted instead):

1. **ports**: every listening TCP socket of the processes of the Ray node that ``ace serve`` started
   (found by their command lines naming that node's session folder, node id or GCS port, and
   their children; nothing else on the machine) whose address is not loopback.
2. **hostile inputs**: ``inputs`` requests drawn with a seeded ``random.Random`` over the routes
   (malformed and hostile event batches, hostile stream URLs, batch jobs with path tricks, odd ids
   in paths, the other tenant's ids, missing and forged tokens, junk sign-ins): the answers by
   status code, the 5xx among them, and whether the stream counted exactly the events of the
   requests answered 200.
3. **exactly once**: ``batches`` keyed batches of 50 events, each sent twice, from a few threads,
   while the stream's actor is killed once (Ray restarts it); a batch whose request failed is
   retried until answered 200. The events answered 200 must be the events the stream counted.
4. **submit-and-stop cycles**: ``cycles`` streams of globex submitted and stopped; their actors
   must have ended ~20 s later; the node's resident memory before and after; then one small batch
   job, whose progress actor must have ended once it is done.

At the end ACE is stopped with ``ace serve --shutdown``, and whatever it left of the probe's Ray node
is reported and ended by process id. (An ACE whose ``--shutdown`` still runs ``ray stop``, which
ends every Ray instance of the machine, other users' too, is not let run it: the probe ends its
own node itself.)
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import random
import re
import shutil
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from ace.config import Settings

log = logging.getLogger("ace.workers")

#: events in one batch of the exactly-once phase
BATCH_EVENTS = 50
#: how long the probe waits for finished streams' actors to end
ACTOR_END_WAIT_S = 20.0
#: client threads of the exactly-once phase
THREADS = 4
#: the documented form of an Idempotency-Key: 1-200 visible ASCII characters, spaces inside only
_VALID_KEY = re.compile(r"[!-~](?:[ -~]{0,198}[!-~])?")
_NOT_DEAD = ("ALIVE", "RESTARTING", "PENDING_CREATION", "DEPENDENCIES_UNREADY")


# ----------------------------------------------------------------------------------- the node


def _free_port() -> int:
    from workers.bench_api import _free_port as free

    return free()


class NodeProcesses:
    """The processes of one Ray node: those whose command line names its session folder or node id,
    or its GCS port (``--gcs_server_port=P``, ``--address=HOST:P``, ``--gcs-address=HOST:P``), and
    their children. Every process ever seen is remembered (psutil checks a pid's start time, so a
    reused pid is not taken for it)."""

    def __init__(self, gcs_port: int):
        self.gcs_port = gcs_port
        self.markers: list[str] = []
        self._port = re.compile(rf"(?:--gcs_server_port=|--(?:gcs[-_])?address=\S*:){gcs_port}(?!\d)")
        self.seen: dict[int, psutil.Process] = {}

    def find(self) -> list[psutil.Process]:
        me = os.getpid()
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
            except psutil.Error:
                continue
            if p.pid != me and (any(m in cmd for m in self.markers) or self._port.search(cmd)):
                found[p.pid] = p
        for p in list(found.values()):
            try:
                for c in p.children(recursive=True):
                    if c.pid != me:
                        found.setdefault(c.pid, c)
            except psutil.Error:
                continue
        for pid, p in found.items():
            self.seen.setdefault(pid, p)
        return list(found.values())

    def rss_mb(self) -> float:
        total = 0
        for p in self.find():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return round(total / 2**20, 1)

    def end(self, grace_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL, to the node's processes (only those); returns how many were running."""
        self.find()
        alive = [p for p in self.seen.values() if _running(p)]
        for p in alive:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _gone, left = psutil.wait_procs(alive, timeout=grace_s)
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=5)
        return len(alive)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _title(p: psutil.Process) -> str:
    """A process's name as a reader knows it: ``ray::<actor>``, the Ray binary, or the Python script."""
    try:
        cmd = p.cmdline() or [p.name()]
    except psutil.Error:
        return "?"
    first = cmd[0].split()[0] if cmd[0].startswith("ray::") else cmd[0]
    if first.startswith("ray::"):
        return first
    name = Path(first).name
    if name.startswith("python"):
        for i, a in enumerate(cmd[1:], start=1):
            if a == "-m" and i + 1 < len(cmd):
                return cmd[i + 1]
            if a == "-c":
                return "python -c"
            if not a.startswith("-"):
                return Path(a).name
    return name


def _loopback(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a.is_loopback


def listening(node: NodeProcesses) -> list[tuple[str, str, int]]:
    """(process title, address, port) of every TCP socket the node's processes listen on."""
    procs = {p.pid: p for p in node.find()}
    out = set()
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in procs and c.laddr:
            out.add((_title(procs[c.pid]), c.laddr.ip, c.laddr.port))
    return sorted(out, key=lambda x: (x[0], x[2], x[1]))


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _actor_states(prefix: str, ids: list[str]) -> Counter:
    """The GCS actor table's states of the actors named ``<prefix><id>`` (one per id: its newest)."""
    import ray._private.state as state

    want = {f"{prefix}{i}" for i in ids}
    newest: dict[str, tuple[float, str]] = {}
    for a in state.actors().values():
        name = a.get("Name") or ""
        if name in want:
            at = float(a.get("StartTime") or a.get("Timestamp") or 0)
            if name not in newest or at >= newest[name][0]:
                newest[name] = (at, a.get("State") or "?")
    return Counter(st for _at, st in newest.values())


def _named(prefix: str, ids: list[str]) -> int:
    """How many of those names Ray still lists as named actors (a dead actor's name is released)."""
    import ray

    want = {f"{prefix}{i}" for i in ids}
    return sum(1 for a in ray.util.list_named_actors(all_namespaces=True) if a.get("name") in want)


# ----------------------------------------------------------------------------------- HTTP


class _Http:
    """One httpx client (no cookies kept between requests) that never raises: every request
    gives ``(status code or "error:<Type>", parsed JSON or None)``."""

    def __init__(self, url: str, timeout: float = 60.0):
        import httpx

        self.httpx = httpx
        self.url, self.timeout = httpx.URL(url), timeout
        self.c = httpx.Client(base_url=url, timeout=timeout)
        self.raw_sent = 0

    def close(self) -> None:
        self.c.close()

    def send(self, method: str, path: str, *, token: str | None = None, headers: dict | None = None,
             json_body=None, content=None, cookies: dict | None = None):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        # a header value that is not ASCII goes as its UTF-8 bytes (as a hostile client sends it)
        h = {k: v.encode("utf-8", "surrogatepass") if isinstance(v, str) and not v.isascii() else v for k, v in h.items()}
        if re.search(r"/\.\.?(?:/|$|\?)", path):  # httpx would remove the dot segments: send them as they are
            return self._raw(method, path, h, content if json_body is None else json.dumps(json_body).encode())
        try:
            self.c.cookies.clear()
            kw: dict = {"headers": h}
            if json_body is not None:
                kw["json"] = json_body
            elif content is not None:
                kw["content"] = content
            r = self.c.request(method, path, **kw)
        except self.httpx.LocalProtocolError:
            # httpx refuses header values with edge spaces; a hostile client sends them anyway
            return self._raw(method, path, h, content if json_body is None else json.dumps(json_body).encode())
        except (self.httpx.InvalidURL, UnicodeEncodeError, ValueError, TypeError) as e:
            return f"client:{type(e).__name__}", None, None
        except self.httpx.HTTPError as e:
            return f"error:{type(e).__name__}", None, None
        try:
            data = r.json()
        except ValueError:
            data = None
        return r.status_code, data, r.headers


    def _raw(self, method: str, path: str, headers: dict, content):
        """The request over :mod:`http.client`, which sends header values as given."""
        import http.client
        from urllib.parse import quote

        path = quote(path, safe="/%?=&:;@!$'()*+,~-._")  # no character outside ASCII on the request line
        body = content if isinstance(content, bytes) or content is None else b"".join(content)
        conn = http.client.HTTPConnection(self.url.host, self.url.port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body)
            resp = conn.getresponse()
            raw = resp.read()
            self.raw_sent += 1
        except (http.client.InvalidURL, ValueError, UnicodeError) as e:
            return f"client:{type(e).__name__}", None, None
        except (OSError, http.client.HTTPException) as e:
            return f"error:{type(e).__name__}", None, None
        finally:
            conn.close()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return resp.status, data, resp.headers


def _wait_status(http: _Http, token: str, sid: str, want: tuple[str, ...], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    st: dict = {}
    while time.monotonic() < deadline:
        code, data, _h = http.send("GET", f"/streams/{sid}", token=token)
        if code == 200 and isinstance(data, dict):
            st = data
            if st.get("status") in want or st.get("status") in ("ended", "failed", "stopped"):
                return st
        time.sleep(1.0)
    return st


def _events_received(http: _Http, token: str, sid: str, timeout: float = 90.0) -> int | None:
    """The stream's own count of the events it accepted (waits out a restart: 'unavailable')."""
    deadline = time.monotonic() + timeout
    while True:
        code, data, _h = http.send("GET", f"/streams/{sid}", token=token)
        if code == 200 and isinstance(data, dict) and isinstance(data.get("events_received"), int):
            return data["events_received"]
        if time.monotonic() > deadline:
            return None
        time.sleep(1.0)


# ----------------------------------------------------------------------------------- hostile inputs


def _event(rng: random.Random) -> dict:
    from ace.types import EVENT_KINDS

    return {"t": round(rng.uniform(0, 7200), 3), "kind": rng.choice(EVENT_KINDS), "user": f"u{rng.randrange(10_000)}",
            "text": rng.choice(["wow", "ok", "so good", "🔥🔥", "lol", "", "price?", "ça va"]), "value": rng.choice([1, 1, 2, 5, 100])}


_NEST = 100_000


def _bad_event(rng: random.Random) -> tuple[dict | str, str]:
    """An event with one hostile field: (the event, or raw JSON text of it; what is wrong)."""
    e = _event(rng)
    k = rng.randrange(24)
    if k == 0:
        e["t"] = rng.choice([1, -1]) * 10 ** rng.randint(100, 900)
        return e, "t: an integer of hundreds of digits"
    if k == 1:
        e["value"] = 10 ** rng.randint(100, 900)
        return e, "value: an integer of hundreds of digits"
    if k == 2:
        e[rng.choice(["t", "value"])] = 1e18
        return e, "1e18"
    if k == 3:
        e[rng.choice(["t", "value"])] = -rng.choice([1, 0.001, 1e9])
        return e, "a negative number"
    if k == 4:
        e[rng.choice(["t", "value"])] = rng.choice([float("nan"), float("inf"), float("-inf")])
        return e, "NaN/Infinity literal"
    if k == 5:
        e[rng.choice(["text", "user"])] = rng.choice(["\ud800", "a\udfffb", "\udbff"])
        return e, "a lone surrogate escape"
    if k == 6:
        e["t"] = rng.choice(["12", "", None, [], {}, True, "1e3"])
        return e, "t: wrong type"
    if k == 7:
        e["kind"] = rng.choice([5, None, ["chat"], "", "CHAT\u0000", "x" * 300, "drop table"])
        return e, "kind: wrong type or unknown"
    if k == 8:
        e["user"] = rng.choice([["x"], {"a": 1}, 1.5, True, "u" * 201, 10 ** 70])
        return e, "user: wrong type or too long"
    if k == 9:
        e["text"] = rng.choice([123, ["x"], {"a": "b"}, "x" * 2001, True])
        return e, "text: wrong type or too long"
    if k == 10:
        e["value"] = rng.choice(["1", [], {}, True, 1e13, float("inf")])
        return e, "value: wrong type or too large"
    if k == 11:
        e[rng.choice(["promoted", "trusted"])] = rng.choice(["yes", 1, 0, "true", [True]])
        return e, "flag: not a boolean"
    if k == 12:
        raw = json.dumps(e)[:-1] + ', "extra": ' + "[" * _NEST + "]" * _NEST + "}"
        return raw, "a field nested 100,000 deep"
    if k == 13:
        return rng.choice([None, 1, "chat", [], [e], True]), "an event that is not an object"
    if k == 14:
        e.pop(rng.choice(["t", "kind"]))
        return e, "a required field missing"
    if k == 15:
        e["t"] = 10_000_001
        return e, "t beyond the longest stream"
    if k == 16:
        raw = json.dumps(e)[:-1] + ', "t": ' + "9" * 5000 + "}"
        return raw, "an integer of 5000 digits (over the parser's limit)"
    if k == 17:
        raw = json.dumps(e)[:-1] + ', "t": 1, "t": "x"}'
        return raw, "a duplicate key"
    if k == 18:
        e["text"] = "\u202e\u0000\u200b" + "é" * rng.randint(1, 300)
        return e, "control and bidi characters (valid)"
    if k == 19:
        e["kind"] = " Chat "
        return e, "kind with spaces and capitals (valid)"
    if k == 20:
        e["user"] = 10 ** 63
        return e, "user as a 64-digit number (valid)"
    if k == 21:
        e["t"] = 1e-320
        return e, "t subnormal (valid)"
    if k == 22:
        e["value"] = None
        return e, "value null (valid: 1)"
    e["t"] = rng.choice([1e308 * 10, -0.0])  # inf (NaN literal) or negative zero
    return e, "t: overflowing float or -0.0"


def _encode(items: list, ndjson: bool) -> tuple[bytes, int]:
    """A batch as a JSON array or NDJSON lines; items may be raw JSON text. Returns (body, events)."""
    parts = [it if isinstance(it, str) else json.dumps(it) for it in items]
    if ndjson:
        return ("\n".join(parts) + "\n").encode("utf-8", "surrogatepass"), len(parts)
    return ("[" + ",".join(parts) + "]").encode("utf-8", "surrogatepass"), len(parts)


class Hostile:
    """Draws the hostile requests of phase 2 from a seeded ``random.Random``."""

    def __init__(self, rng: random.Random, ctx: dict):
        self.rng, self.ctx = rng, ctx
        # what depends on the server's answers (replays of accepted batches) draws from its own
        # generator, so the seed's sequence of requests is the same whatever was accepted
        self.rng2 = random.Random(rng.random())
        self.accepted_keys: dict[str, str] = {}  # Idempotency-Key -> body digest, for acme's stream

    # -- tokens -----------------------------------------------------------------------------

    def auth(self) -> tuple[str, dict, dict | None]:
        """(who, headers, cookies): mostly acme; sometimes globex, nobody or a forged credential."""
        rng, ctx = self.rng, self.ctx
        r = rng.random()
        if r < 0.72:
            return "acme", {"Authorization": f"Bearer {ctx['acme']}"}, None
        if r < 0.82:
            return "globex", {"Authorization": f"Bearer {ctx['globex']}"}, None
        if r < 0.86:
            return "none", {}, None
        acme = ctx["acme"]
        forged = rng.choice([
            "Bearer ", "Bearer  ", "Bearer x", "Bearer ace_", "Bearer ace__", f"Bearer {acme[:-1]}{'A' if acme[-1] != 'A' else 'B'}",
            f"Bearer {acme}{acme}", f"Bearer {acme[:-1]}", f"Bearer {acme}\u00e9", f"Basic {acme}", f"bearer {acme.upper()}", f"Token {acme}",
            "Bearer " + "a" * 5000, f"Bearer ace_{'0' * 12}_{'0' * 40}", "Bearer ' OR '1'='1", "Bearer ace_x_y\u00e9",
        ])
        if rng.random() < 0.3:
            return "forged", {}, {"ace_session": rng.choice(["x", "a" * 4000, acme, "'; --", "\u00e9"])}
        return "forged", {"Authorization": forged}, None

    @staticmethod
    def credential(headers: dict, cookies: dict | None) -> str:
        """What credential a request carried, for the report (tokens shortened)."""
        if cookies:
            return f"cookie ace_session={str(cookies.get('ace_session'))[:16]!r}"
        a = headers.get("Authorization")
        if a is None:
            return "no credential"
        return f"Authorization {a[:24]!r}{'...' if len(a) > 24 else ''} ({len(a)} chars)"

    # -- ids ----------------------------------------------------------------------------------

    def odd_id(self) -> str:
        rng = self.rng
        alnum = string.ascii_letters + string.digits + "_-"
        return rng.choice([
            "".join(rng.choice(alnum) for _ in range(rng.randint(1, 64))),
            "".join(rng.choice(alnum) for _ in range(rng.randint(65, 400))),
            "..%2f..%2fetc%2fpasswd", "%2e%2e", "..", ".", "%00", "a%00b", "ace:controller", "ace:stream:x", "ストリーム",
            "%F0%9F%94%A5", "*", "%20", "a%20b", "NULL", "0", "-1", "9" * 300, "'%20OR%201=1--", "%25", "con",
            self.ctx["sid"] + "x", self.ctx["sid"].upper(), self.ctx["sid"][:-1], "%252e%252e%252f",
            "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(1, 80))).replace("/", "%2F")
            .replace("?", "%3F").replace("#", "%23").replace("%", "%25"),
        ])

    # -- the requests -----------------------------------------------------------------------

    def draw(self) -> dict:
        r = self.rng.random()
        if r < 0.45:
            return self.events()
        if r < 0.60:
            return self.stream_submission()
        if r < 0.70:
            return self.job()
        if r < 0.85:
            return self.path_ids()
        if r < 0.92:
            return self.other_tenant()
        return self.session()

    def _req(self, kind, method, path, desc, who=None, headers=None, cookies=None, **kw) -> dict:
        if who is None:
            who, headers2, cookies = self.auth()
            headers = {**headers2, **(headers or {})}
        return {"kind": kind, "method": method, "path": path, "desc": desc, "who": who, "headers": headers or {},
                "cookies": cookies, **kw}

    def events(self) -> dict:
        """An event batch to acme's live stream (mostly), hostile or not."""
        rng, ctx = self.rng, self.ctx
        sid = ctx["sid"] if rng.random() < 0.9 else self.odd_id()
        n = rng.choice([1, 2, 5, 20, 50])
        ndjson = rng.random() < 0.3
        items: list = []
        what: list[str] = []
        bad = rng.random() < 0.6
        for _ in range(n):
            if bad and (not items or rng.random() < 0.3):
                ev, why = _bad_event(rng)
                items.append(ev)
                what.append(why)
            else:
                items.append(_event(rng))
        body, count = _encode(items, ndjson)
        desc = ("NDJSON" if ndjson else "JSON array") + f" of {count}" + (f" ({'; '.join(sorted(set(what)))})" if what else "")
        ctype = "application/x-ndjson" if ndjson else "application/json"
        k = rng.random()
        if k < 0.06:  # the body itself is hostile
            body, count, desc, ctype = self._hostile_body(items)
        headers = {"Content-Type": ctype}
        key = None
        reuse = None
        kr = rng.random()
        if kr < 0.25:
            key = f"probe-{rng.getrandbits(64):016x}"
        elif kr < 0.32:
            key = rng.choice(["", " ", "   ", "\t", "a" * 201, "a" * 200, " a", "a ", "ключ", "k\x7f", "k\u00e9y", "k" * 5000])
            desc += f"; Idempotency-Key {key[:12]!r}{'...' if len(key) > 12 else ''} ({len(key)} chars)"
        elif kr < 0.40 and self.accepted_keys:
            rng2 = self.rng2
            key = rng2.choice(sorted(self.accepted_keys))
            if rng2.random() < 0.5:
                reuse = "same"
                body = self.ctx["bodies"][key]
                count = self.ctx["counts"][key]
                headers["Content-Type"] = self.ctx["ctypes"][key]
                desc = f"the batch of key {key} sent again (a retry)"
            else:  # a valid batch, other events: the key's reuse is the only thing wrong with it
                reuse = "other"
                body, count = _encode([_event(rng2) for _ in range(rng2.choice([1, 5, 20]))], False)
                headers["Content-Type"] = "application/json"
                desc = f"a valid batch of {count} with the Idempotency-Key {key} of another accepted batch"
        if key is not None:
            headers["Idempotency-Key"] = key
        return self._req("events", "POST", f"/streams/{sid}/events", desc, headers=headers, content=body,
                         events=count, key=key, reuse=reuse, to_stream=sid == ctx["sid"])

    def _hostile_body(self, items: list) -> tuple[bytes | object, int | None, str, str]:
        rng = self.rng
        k = rng.randrange(14)
        if k == 0:
            return b"[" * _NEST, None, "100,000 '[' (deep nesting)", "application/json"
        if k == 1:
            return b"[" * _NEST + b"]" * _NEST, None, "100,000 nested arrays, closed", "application/json"
        if k == 2:
            return b'[{"t":1,"kind":"chat","text":"\xff\xfe\xc3\x28"}]', None, "invalid UTF-8 bytes", "application/json"
        if k == 3:
            return b"", 0, "an empty body", rng.choice(["application/json", "application/x-ndjson", ""])
        if k == 4:
            return b" \n\t\r\n ", 0, "a whitespace body", rng.choice(["application/json", "application/x-ndjson"])
        if k == 5:
            lines = [json.dumps(_event(rng)), "{", "not json", "null", "[]", json.dumps(_event(rng)), '{"t":1,"kind":"like"']
            rng.shuffle(lines)
            return ("\n".join(lines)).encode(), None, "NDJSON with bad lines", "application/x-ndjson"
        if k == 6:
            one = b'{"t":1,"kind":"like"},'
            n = 4 * 2**20 // len(one) + 10
            return b"[" + one * n + b'{"t":1,"kind":"like"}]', None, "an oversized body (over 4 MiB, Content-Length)", "application/json"
        if k == 7:
            one = b'{"t":1,"kind":"like"}\n'

            def chunks():
                for _ in range(5 * 2**20 // (len(one) * 1000) + 1):
                    yield one * 1000
            return chunks(), None, "an oversized body (over 4 MiB, chunked, no Content-Length)", "application/x-ndjson"
        if k == 8:
            return b"[" + b'{"t":1,"kind":"like"},' * 10_000 + b'{"t":1,"kind":"like"}]', None, "10,001 events (over the limit)", "application/json"
        if k == 9:
            return b"\xef\xbb\xbf" + json.dumps([_event(rng)]).encode(), None, "a UTF-8 BOM before the array", "application/json"
        if k == 10:
            return rng.choice([b"null", b"{}", b"1", b'"x"', b"true", b"[]]", b"[,]", b"[1,]"]), None, "JSON that is not an array of events", "application/json"
        if k == 11:
            return json.dumps(_event(rng)).encode(), 1, "one event object, no array (valid NDJSON)", "application/json"
        if k == 12:
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000))), None, "random bytes", rng.choice(["application/json", "application/octet-stream"])
        return ("[" + ",".join(json.dumps(_event(rng)) for _ in range(3)) + "]").encode("utf-16"), None, "UTF-16", "application/json"

    def stream_submission(self) -> dict:
        rng, ctx = self.rng, self.ctx
        hls = ctx["hls_port"]
        urls = [
            "file:///etc/passwd", "FILE:///etc/passwd", "file://localhost/etc/passwd", "concat:/etc/passwd|/etc/hosts",
            "subfile:,start,0,end,0,:/etc/passwd", "data:text/plain;base64,SGVsbG8=", "data:application/vnd.apple.mpegurl,%23EXTM3U",
            "gopher://127.0.0.1:6379/_INFO", "dict://127.0.0.1:6379/info", "ftp://127.0.0.2/x", "tcp://127.0.0.2:6379",
            "udp://239.0.0.1:1234", "pipe:0", "async:file:/etc/passwd", "hls+file:///etc/passwd", "crypto:file:/etc/passwd",
            "http://169.254.169.254/latest/meta-data/", "http://169.254.169.254.nip.io/x.m3u8", "http://[fd00:ec2::254]/latest/",
            "http://metadata.google.internal/computeMetadata/v1/", "http://100.100.100.200/latest/meta-data/",
            "http://10.0.0.1/live.m3u8", "http://10.255.255.53/x.m3u8", "http://192.168.1.1/x.m3u8", "http://172.16.0.1/x.m3u8",
            f"http://[::1]:{hls}/s0/live.m3u8", f"http://[::ffff:127.0.0.2]:{hls}/x.m3u8", f"http://[::ffff:7f00:2]:{hls}/x",
            f"http://2130706434:{hls}/s0/live.m3u8", f"http://0x7f000002:{hls}/x", f"http://0177.0.0.2:{hls}/x", f"http://127.2:{hls}/x",
            f"http://0.0.0.0:{hls}/s0/live.m3u8", f"http://0:{hls}/s0/live.m3u8", f"http://127.0.0.2:{hls}/s0/live.m3u8",
            "http://user:pass@169.254.169.254/x.m3u8", "http://127.0.0.1@169.254.169.254/x.m3u8",
            "http://169.254.169.254#@127.0.0.1/x.m3u8", "http://169.254.169.254\\@127.0.0.1/x.m3u8",
            "http://127.0.0.1:80@10.0.0.1/x.m3u8", "http://[::1]@10.0.0.1/", "http://evil.com@10.0.0.1:80@127.0.0.1/",
            "http://127.0.0.1%2523@10.0.0.1/", "http://127.0.0.1%23@10.0.0.1/", "http://%31%30.0.0.1/x.m3u8", "http://10.0.0.1./x.m3u8",
            "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/x.m3u8", "http://１２７.０.０.２/x.m3u8", "http://xn--lcalhost-ssa/x", "http://例え.テスト/x.m3u8",
            "http://loc\u0430lhost/x.m3u8", "http://local\u200bhost/x", "http:///x.m3u8", "http://:80/x", "http://[/x", "http://[::1/x",
            "http://a b/x", "http://127.0.0.2:99999/x", "http://127.0.0.2:-1/x", "http://127.0.0.2:0/x",
            "rtsps://10.0.0.1/live", "rtsp://127.0.0.2:554/x", "rtmp://[::1]/live/x", "rtmps://169.254.169.254/x",
            "rtmp://10.0.0.1/live -i /etc/passwd", "srt://127.0.0.2:9000", "ws://127.0.0.2/", "https://10.0.0.1/x.m3u8",
            "http://example.invalid/" + "a" * 2100, "http://example.invalid/" + "a" * 2000, "https://" + "a" * 300 + ".com/x",
            "  http://10.0.0.1/x.m3u8", "http://10.0.0.1/x.m3u8\n", "\x00http://x/", "javascript:alert(1)",
            "http://localhost.localdomain/x", "http://[::]/x", "//10.0.0.1/x.m3u8", "10.0.0.1/x.m3u8", "",
        ]
        k = rng.random()
        hostile_url = k < 0.85  # the URL must be refused; else the body's other fields are odd
        if k < 0.75:
            body = {"url": rng.choice(urls), "name": "probe"}
            desc = f"url {body['url'][:80]!r}"
        elif k < 0.85:
            s = "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 300)))
            body = {"url": s}
            desc = "url: random characters"
        else:
            ok = f"http://127.0.0.1:{hls}/nothing-here/live.m3u8"
            variant = rng.randrange(9)
            body = [
                {"url": ok, "events": rng.choice(urls[:20])},
                {"url": ok, "name": "n" * 101},
                {"url": ok, "products": ["p"] * 101},
                {"url": ok, "category": rng.choice(["", "x", "BEAUTY ", "\u0000", "a" * 500])},
                {"url": ok, "budget": rng.choice([-1, 1e400, "NaN", "1e9", True])},
                {"url": ok, "extra": 1},
                {"url": 123},
                {"url": [ok]},
                {},
            ][variant]
            if variant == 3 and body["category"] == "BEAUTY ":
                body["category"] = "beauty!"
            desc = f"stream body {json.dumps(body)[:100]}"
        content = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
        return self._req("submit", "POST", "/streams", desc, headers={"Content-Type": "application/json"}, content=content,
                         hostile_url=hostile_url)

    def job(self) -> dict:
        rng = self.rng
        paths = ["../../etc/passwd", "../" * 20 + "etc/passwd", "/etc/passwd", "a/../../x.mp4", "media/../../ace.db", "..",
                 ".", "", "show.mp4\x00.txt", "\x00", "escape.mp4", "dirlink/etc/passwd", "dirlink", "loop/loop/loop",
                 "~/x.mp4", "%2e%2e/%2e%2e/etc/passwd", "..\\..\\windows\\win.ini", "C:\\x.mp4", "//etc/passwd",
                 "x" * 1025, "file:///etc/passwd", "nope.mp4", "ace.db", "../ace.db", "../ray.address", "/dev/zero", "/proc/self/environ"]
        urls = ["http://169.254.169.254/x.mp4", "file:///etc/passwd", "http://10.0.0.1/show.mp4", "gopher://127.0.0.1/",
                f"http://127.0.0.2:{self.ctx['hls_port']}/job.mp4", "concat:/etc/passwd", "http://[::1]/x.mp4", "ftp://127.0.0.2/x.mp4"]
        k = rng.randrange(8)
        if k < 4:
            body = {"items": [{"path": rng.choice(paths)}]}
        elif k < 6:
            body = {"items": [{"url": rng.choice(urls)}]}
        else:
            body = rng.choice([
                {"items": []}, {"items": [{}]}, {"items": [{"path": "x.mp4", "url": "http://10.0.0.1/x"}]},
                {"items": [{"path": "../x"}] * 101}, {"items": "../../etc/passwd"}, {"items": [{"path": ["../x"]}]},
                {"name": "n" * 101, "items": [{"path": "../x"}]}, {"items": [{"path": "../x", "extra": 1}]}, [],
            ])
        return self._req("job", "POST", "/jobs", f"job {json.dumps(body)[:100]}", headers={"Content-Type": "application/json"},
                         content=json.dumps(body).encode())

    def path_ids(self) -> dict:
        rng = self.rng
        i = self.odd_id()
        method, path = rng.choice([
            ("GET", f"/streams/{i}"), ("POST", f"/streams/{i}/stop"), ("GET", f"/streams/{i}/moments"),
            ("GET", f"/streams/{i}/clips"), ("GET", f"/streams/{i}/ramp"), ("GET", f"/clips/{i}"),
            ("GET", f"/clips/{i}/video"), ("GET", f"/clips/{i}/captions?format=" + rng.choice(["vtt", "srt", "x", "../"])),
            ("GET", f"/clips/{i}/thumbnail"), ("POST", f"/clips/{i}/review"), ("GET", f"/jobs/{i}"),
            ("GET", f"/static/{i}"), ("GET", f"/static/..%2f..%2fapp.py"), ("GET", "/static/%2e%2e%2fapp.py"),
            ("GET", f"/streams/{self.ctx['sid']}/moments?min_score=" + rng.choice(["NaN", "1e309", "-1", "x", "2"])),
            ("GET", f"/streams/{self.ctx['sid']}/ramp?limit=" + rng.choice(["-1", "0", "1" + "0" * 30, "x", "1001"])),
            ("GET", f"/streams/{self.ctx['sid']}/moments?start=-1&end=" + "9" * 400),
            ("PUT", f"/streams/{i}"), ("DELETE", f"/streams/{self.ctx['sid']}"), ("TRACE", "/"), ("OPTIONS", "/streams"),
        ])
        body = None
        headers = {}
        if path.endswith("/review"):
            body = json.dumps(rng.choice([{"verdict": "approve"}, {"verdict": "x"}, {"verdict": "reject", "note": "n" * 2001}, {}])).encode()
            headers["Content-Type"] = "application/json"
        return self._req("ids", method, path, f"{method} with id {i[:40]!r}", headers=headers, content=body)

    def other_tenant(self) -> dict:
        """globex's token on acme's stream (every answer must be 404; nothing may change)."""
        rng, ctx = self.rng, self.ctx
        sid = ctx["sid"]
        method, path, body = rng.choice([
            ("GET", f"/streams/{sid}", None), ("GET", f"/streams/{sid}/moments", None), ("GET", f"/streams/{sid}/clips", None),
            ("GET", f"/streams/{sid}/ramp", None), ("POST", f"/streams/{sid}/stop", None),
            ("POST", f"/streams/{sid}/events", json.dumps([_event(rng) for _ in range(3)]).encode()),
        ])
        count = 3 if body else None
        return self._req("other-tenant", method, path, f"globex's token: {method} {path.replace(sid, '<acme stream>')}", who="globex",
                         headers={"Authorization": f"Bearer {ctx['globex']}", "Content-Type": "application/json"}, content=body,
                         events=count, to_stream=body is not None)

    def session(self) -> dict:
        rng, ctx = self.rng, self.ctx
        body = rng.choice([
            b"", b"{}", b'{"token": ""}', json.dumps({"token": "x" * 201}).encode(), b'{"token": 123}', b'{"token": null}',
            json.dumps({"token": "ace_" + "0" * 12 + "_" + "0" * 40}).encode(), b"token=abc", b"[" * _NEST,
            json.dumps({"token": ctx["acme"], "extra": 1}).encode(), json.dumps({"token": ctx["acme"] + " "}).encode(),
            json.dumps({"token": "\ud800"}).encode(), b'{"token": "\xff"}', json.dumps({"token": ctx["acme"][:-2]}).encode(),
            b'{"token": "' + b"a" * 100_000 + b'"}',
        ])
        return self._req("session", "POST", "/session", f"sign-in with {body[:40]!r}{'...' if len(body) > 40 else ''}", who="none",
                         headers={"Content-Type": "application/json"}, content=body)


def _digest(body) -> str:
    return hashlib.sha256(body if isinstance(body, bytes) else b"").hexdigest()[:16]


def hostile_phase(http: _Http, ctx: dict, inputs: int, seed: int, say) -> dict:
    rng = random.Random(seed)
    gen = Hostile(rng, ctx)
    ctx.setdefault("bodies", {})
    ctx.setdefault("counts", {})
    ctx.setdefault("ctypes", {})
    cross_answers: Counter = Counter()
    answers: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    errors: list[dict] = []
    transport: list[dict] = []
    accepted_events = 0
    leaks: list[str] = []
    submitted: list[tuple[str, str, str]] = []  # (who, id, url) of hostile submissions answered 201
    odd_accepts: list[str] = []
    ids_ok: list[str] = []
    count_mismatch: list[str] = []
    before = _events_received(http, ctx["acme"], ctx["sid"])
    t0 = time.monotonic()
    for n in range(inputs):
        q = gen.draw()
        code, data, _h = http.send(q["method"], q["path"], headers=q["headers"], content=q.get("content"), cookies=q["cookies"])
        answers[str(code)] += 1
        by_kind.setdefault(q["kind"], Counter())[str(code)] += 1
        line = {"method": q["method"], "path": q["path"][:120], "who": q["who"], "body": q["desc"][:200], "answer": code,
                "error": (data or {}).get("error", "")[:200] if isinstance(data, dict) else ""}
        if isinstance(code, int) and code >= 500:
            errors.append(line)
        elif isinstance(code, str) and code.startswith("error:"):
            transport.append(line)
        ok = isinstance(code, int) and 200 <= code < 300
        if ok and q["who"] in ("none", "forged"):
            leaks.append(f"{q['who']} credentials answered {code}: {q['method']} {q['path'][:80]} "
                         f"({Hostile.credential(q['headers'], q['cookies'])})")
        cross = q["kind"] == "other-tenant" or (q["kind"] == "events" and q["who"] == "globex" and q.get("to_stream"))
        if cross:
            cross_answers[str(code)] += 1
        # another tenant's stream must look like none: never accepted, never "finished" or "forbidden"
        # (a 400/422 for a malformed body is what any id gets: the body is checked first)
        if cross and isinstance(code, int) and (200 <= code < 300 or code in (403, 409)):
            leaks.append(f"globex on acme's stream answered {code}: {q['method']} {q['desc'][:80]}")
        if q["kind"] == "submit" and code == 201 and isinstance(data, dict) and data.get("id"):
            submitted.append((q["who"], data["id"], q["desc"], q["hostile_url"]))
        if q["kind"] == "ids" and ok:
            ids_ok.append(f"{code}: {q['method']} {q['path'][:100]} ({q['who']})")
        if q["kind"] == "job" and ok:
            odd_accepts.append(f"job accepted: {q['desc'][:120]}")
        if q.get("to_stream") and code == 200:
            said = data.get("accepted") if isinstance(data, dict) else None
            key, reuse = q.get("key"), q.get("reuse")
            if q["who"] != "acme":
                n_new = said if isinstance(said, int) else (q.get("events") or 0)
            elif reuse == "same":
                n_new = 0  # a retry: counted once, already
            elif reuse == "other":
                n_new = 0
                odd_accepts.append(f"key {key} reused with other events answered 200 (accepted {said})")
            else:
                n_new = q["events"] if q["events"] is not None else (said if isinstance(said, int) else 0)
                if q["events"] is None:
                    odd_accepts.append(f"answered 200 (accepted {said}): {q['desc'][:120]}")
                elif said != q["events"]:
                    count_mismatch.append(f"sent {q['events']}, told accepted {said}: {q['desc'][:100]}")
                if key is not None:
                    key = key.strip(" \t")  # what the server reads: a header value's edge spaces are not part of it
                if key is not None and not _VALID_KEY.fullmatch(key):
                    odd_accepts.append(f"Idempotency-Key {key[:20]!r} ({len(key)} chars) answered 200")
                elif key is not None and isinstance(q.get("content"), bytes) and key not in gen.accepted_keys:
                    gen.accepted_keys[key] = _digest(q["content"])
                    ctx["bodies"][key], ctx["counts"][key] = q["content"], q["events"]
                    ctx["ctypes"][key] = q["headers"].get("Content-Type", "")
            accepted_events += n_new
        if (n + 1) % 250 == 0:
            say(f"hostile inputs: {n + 1}/{inputs} sent, answers {dict(sorted(answers.items()))}")
    seconds = time.monotonic() - t0
    let_in, lax = [], []
    for who, sid, desc, hostile_url in submitted:  # stop the streams that were let in
        tok = ctx.get(who) or ctx["acme"]
        code, data, _h = http.send("POST", f"/streams/{sid}/stop", token=tok)
        (let_in if hostile_url else lax).append({"id": sid, "request": desc, "stop": code})
    after = _events_received(http, ctx["acme"], ctx["sid"])
    counted = after - before if after is not None and before is not None else None
    return {
        "inputs_tried": inputs, "seconds": round(seconds, 1), "seed": seed,
        "answers": dict(sorted(answers.items())),
        "answers_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "server_errors": sum(1 for e in errors), "server_error_examples": errors[:8],
        "transport_errors": len(transport), "transport_error_examples": transport[:5],
        "events_accepted": accepted_events, "events_counted": counted,
        "counted_before": before, "counted_after": after,
        "other_tenant_answers": dict(sorted(cross_answers.items())), "leaks": leaks[:20], "leak_count": len(leaks),
        "submissions_let_in": let_in, "odd_submissions_accepted": lax, "odd_ids_answered_2xx": ids_ok[:10],
        "sent_raw": http.raw_sent,
        "unexpected_accepts": odd_accepts[:20], "accepted_count_mismatches": count_mismatch[:10],
    }


# ----------------------------------------------------------------------------------- exactly once


def exactly_once_phase(url: str, ctx: dict, batches: int, say) -> dict:
    import ray

    from workers.live import NAMESPACE, STREAM_PREFIX

    sid, token = ctx["sid"], ctx["acme"]
    run = f"{random.getrandbits(32):08x}"
    rng = random.Random(1)
    work = []
    for i in range(batches):
        events = [_event(rng) for _ in range(BATCH_EVENTS)]
        work.append((f"probe-once-{run}-{i}", json.dumps(events).encode()))
    http0 = _Http(url)
    before = _events_received(http0, token, sid)
    restarts0 = _restarts(sid)
    lock = threading.Lock()
    answered: set[str] = set()
    answers: Counter = Counter()
    refused: list[dict] = []
    retries = [0]
    first_done = [0]
    killed = threading.Event()
    kill_info: dict = {}
    nxt = [0]

    def send_until_ok(http: _Http, key: str, body: bytes) -> bool:
        deadline = time.monotonic() + 180
        while True:
            code, data, h = http.send("POST", f"/streams/{sid}/events", token=token, content=body,
                                      headers={"Idempotency-Key": key, "Content-Type": "application/json"})
            with lock:
                answers[str(code)] += 1
            if code == 200:
                with lock:
                    answered.add(key)
                return True
            retryable = (isinstance(code, str) and code.startswith("error:")) or code in (429, 500, 502, 503, 504)
            if not retryable or time.monotonic() > deadline:
                with lock:
                    refused.append({"key": key, "answer": code, "error": (data or {}).get("error", "")[:200] if isinstance(data, dict) else ""})
                return False
            with lock:
                retries[0] += 1
            wait = 0.5
            if h is not None and h.get("retry-after"):
                try:
                    wait = min(5.0, float(h["retry-after"]))
                except ValueError:
                    pass
            time.sleep(wait)

    def worker():
        http = _Http(url)
        try:
            while True:
                with lock:
                    if nxt[0] >= len(work):
                        return
                    key, body = work[nxt[0]]
                    nxt[0] += 1
                if send_until_ok(http, key, body):
                    send_until_ok(http, key, body)  # the retry of a batch whose answer was "lost"
                with lock:
                    first_done[0] += 1
                    if first_done[0] >= len(work) // 2 and not killed.is_set():
                        killed.set()
                        threading.Thread(target=kill, daemon=True).start()
        finally:
            http.close()

    def kill():
        try:
            actor = ray.get_actor(f"{STREAM_PREFIX}{sid}", namespace=NAMESPACE)
            ray.kill(actor, no_restart=False)
            kill_info["killed_at_batch"] = first_done[0]
            say(f"exactly once: killed the stream's actor after {first_done[0]} batches (Ray restarts it)")
        except Exception as e:  # noqa: BLE001 - measured, reported
            kill_info["kill_error"] = f"{type(e).__name__}: {e}"[:300]

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if batches and not killed.is_set():
        killed.set()
        kill()
    seconds = time.monotonic() - t0
    after = _events_received(http0, token, sid)
    restarts1 = _restarts(sid)
    http0.close()
    return {"batches": batches, "events_a_batch": BATCH_EVENTS, "threads": THREADS, "seconds": round(seconds, 1),
            "events_sent": BATCH_EVENTS * len(answered), "events_counted": after - before if None not in (after, before) else None,
            "counted_before": before, "counted_after": after,
            "actor_restarts": restarts1 - restarts0 if None not in (restarts0, restarts1) else None,
            "answers": dict(sorted(answers.items())), "retries": retries[0], "batches_not_accepted": refused[:10],
            "batches_not_accepted_count": len(refused)} | kill_info


def _restarts(sid: str) -> int | None:
    """How many times Ray has restarted the stream's actor (the GCS actor table)."""
    import ray._private.state as state

    from workers.live import STREAM_PREFIX

    try:
        rows = [a for a in state.actors().values() if a.get("Name") == f"{STREAM_PREFIX}{sid}"]
    except Exception:  # noqa: BLE001 - reported as unknown
        return None
    return max((int(a.get("NumRestarts") or 0) for a in rows), default=None)


# ----------------------------------------------------------------------------------- cycles


def cycles_phase(http: _Http, ctx: dict, node: NodeProcesses, cycles: int, say) -> dict:
    from workers.live import JOB_PREFIX, STREAM_PREFIX

    token = ctx["globex"]
    hls_url = ctx["hls_url"]
    rss_before = node.rss_mb()
    ids: list[str] = []
    submit_answers: Counter = Counter()
    stop_answers: Counter = Counter()
    after_stop: Counter = Counter()
    t0 = time.monotonic()
    for i in range(cycles):
        sid = None
        for _try in range(5):
            code, data, h = http.send("POST", "/streams", token=token, json_body={"url": hls_url, "name": f"cycle{i}"})
            submit_answers[str(code)] += 1
            if code == 201 and isinstance(data, dict):
                sid = data.get("id")
                break
            if code in (429, 503) or (isinstance(code, str) and code.startswith("error:")):
                time.sleep(2.0)
                continue
            break
        if not sid:
            continue
        ids.append(sid)
        code, data, _h = http.send("POST", f"/streams/{sid}/stop", token=token)
        stop_answers[str(code)] += 1
        # a stopped stream takes no more events: 409
        code, _d, _h = http.send("POST", f"/streams/{sid}/events", token=token, json_body=[{"t": 1, "kind": "like"}])
        after_stop[str(code)] += 1
        if (i + 1) % 5 == 0 or i + 1 == cycles:
            say(f"cycles: {i + 1}/{cycles} submitted and stopped")
    cycle_s = time.monotonic() - t0
    deadline = time.monotonic() + ACTOR_END_WAIT_S
    while True:
        states = _actor_states(STREAM_PREFIX, ids) if ids else Counter()
        alive = sum(n for s, n in states.items() if s in _NOT_DEAD)
        if alive == 0 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    waited = time.monotonic() - t0 - cycle_s
    named = _named(STREAM_PREFIX, ids) if ids else 0
    rss_after = node.rss_mb()
    out = {"cycles": cycles, "streams_submitted": len(ids), "seconds": round(cycle_s, 1), "waited_s": round(waited, 1),
           "submit_answers": dict(submit_answers), "stop_answers": dict(stop_answers),
           "events_after_stop_answers": dict(after_stop), "stream_actors_alive_after": alive,
           "stream_actor_states": dict(states), "stream_names_still_registered": named,
           "rss_mb_before": rss_before, "rss_mb_after": rss_after}
    # one small batch job, then its progress actor must be gone
    say("cycles: one small batch job ...")
    job: dict = {}
    code, data, _h = http.send("POST", "/jobs", token=token, json_body={"name": "probe", "items": [{"url": ctx["job_url"]}]})
    job["submit_answer"] = code
    jid = data.get("id") if code == 201 and isinstance(data, dict) else None
    if jid:
        t1 = time.monotonic()
        view: dict = {}
        while time.monotonic() - t1 < 300:
            code, data, _h = http.send("GET", f"/jobs/{jid}", token=token)
            if code == 200 and isinstance(data, dict):
                view = data
                if data.get("status") != "running":
                    break
            time.sleep(2.0)
        job.update({"id": jid, "status": view.get("status"), "seconds": round(time.monotonic() - t1, 1),
                    "error": "; ".join(str(i.get("error")) for i in view.get("items", []) if i.get("error"))[:300]})
        deadline = time.monotonic() + 10.0
        while True:
            jstates = _actor_states(JOB_PREFIX, [jid])
            jalive = sum(n for s, n in jstates.items() if s in _NOT_DEAD)
            if jalive == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        job["actor_states"] = dict(jstates)
        out["job_actors_alive_after"] = jalive
    else:
        job["error"] = (data or {}).get("error", "") if isinstance(data, dict) else ""
        out["job_actors_alive_after"] = None
    out["job"] = job
    return out


# ----------------------------------------------------------------------------------- ace serve


def _serve_env(data: Path) -> dict:
    env = {**os.environ, "ACE_DATA_DIR": str(data), "ACE_URL_ALLOWLIST": '["127.0.0.1"]',
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return env


def _ace(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-m", "ace", *args], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, 124, _text(e.stdout), _text(e.stderr) + f"\n(timed out after {timeout:g} s)")


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def _shutdown(data: Path, env: dict, node: NodeProcesses | None) -> dict:
    """``ace serve --shutdown``; then whatever is left of the probe's Ray node is ended by process id.
    An ACE that wrote its node's session folder into ``ray.address`` ends only that node; an older
    one ran ``ray stop``, which ends every Ray instance of the machine, other users' too: for
    that one the probe takes "started" out of the file, and ends the node itself."""
    from workers.cluster import shutdown_ray

    shutdown_ray()
    addr = data / "ray.address"
    lines = addr.read_text().splitlines() if addr.is_file() else []
    node_scoped = any(x.startswith("session ") for x in lines)
    if lines and "started" in lines and not node_scoped:
        addr.write_text(lines[0] + "\n")
    t0 = time.monotonic()
    r = _ace(["serve", "--shutdown"], env, timeout=240)
    out: dict = {"rc": r.returncode, "seconds": round(time.monotonic() - t0, 1),
                 "scope": "the node (ace serve --shutdown)" if node_scoped else "ray stop skipped; the node ended by the probe"}
    if r.returncode != 0:
        out["stderr"] = r.stderr[-1000:]
    if node is not None:
        if node_scoped:  # what ACE's own shutdown left running, a few seconds on
            node.find()
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and any(_running(p) for p in node.seen.values()):
                time.sleep(0.5)
            left = sorted({_title(p) for p in node.seen.values() if _running(p)})
            out["left_by_ace_shutdown"] = left
        out["node_processes_ended"] = node.end()
        out["node_processes_left"] = sum(1 for p in node.seen.values() if _running(p))
    return out


# ----------------------------------------------------------------------------------- the probe


def run_probe(settings: Settings, inputs: int = 2000, cycles: int = 20, batches: int = 200, seed: int = 0,
              input_path: str | None = None, num_cpus: int = 2, progress=None) -> dict:
    """Run the probe and return its report (plain data)."""
    from ace.store import Store
    from samples.show import make_sample_show
    from workers.bench_live import _publish, _serve, stop_publishing
    from workers.cluster import init_ray

    say = progress or (lambda msg: None)
    video = Path(input_path or make_sample_show(settings.data_dir / "samples").video).absolute()
    root = Path(settings.data_dir).absolute() / "bench-probe"
    if root.exists():
        shutil.rmtree(root)
    data, hls = root / "data", root / "hls"
    hls.mkdir(parents=True)
    (data / "media").mkdir(parents=True)
    # traps in the media folder: links out of it
    os.symlink("/etc/hostname", data / "media" / "escape.mp4")
    os.symlink("/", data / "media" / "dirlink")
    os.symlink(data / "media" / "loop", data / "media" / "loop")
    server, hls_port = _serve(hls)
    pubs: list[subprocess.Popen] = []
    env = _serve_env(data)
    port, dash, api = _free_port(), _free_port(), _free_port()
    url = f"http://127.0.0.1:{api}"
    report: dict = {"input": str(video), "data_dir": str(data), "api": url, "ray_port": port, "seed": seed,
                    "cpu_count": psutil.cpu_count()}
    node = NodeProcesses(port)
    http = None
    phases_t0 = time.monotonic()
    try:
        # a short piece of the show, served as a file, for the batch job
        from ace.media import ffmpeg_binary

        # (the index first: the loopback server answers no Range requests, so ffmpeg cannot seek to it)
        subprocess.run([ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-t", "6", "-i", str(video), "-c", "copy",
                        "-movflags", "+faststart", str(hls / "job.mp4")], check=False, timeout=60)
        pubs.append(_publish(video, hls / "s0", 6 * 3600, 0.0))
        say(f"starting ACE (ace serve --detach, Ray on 127.0.0.1:{port}, back office on {url}) ...")
        t0 = time.monotonic()
        r = _ace(["serve", "--detach", "--port", str(port), "--dashboard-port", str(dash), "--api-port", str(api),
                  "--num-cpus", str(num_cpus)], env, timeout=300)
        report["serve_start_s"] = round(time.monotonic() - t0, 1)
        if r.returncode != 0:
            raise RuntimeError(f"ace serve --detach failed ({r.returncode}): {r.stderr[-2000:]}")
        store = Store.from_settings(Settings(data_dir=data))
        store.create_all()
        ctx: dict = {"acme": store.create_token("acme", "ace bench probe")[1],
                     "globex": store.create_token("globex", "ace bench probe")[1], "hls_port": hls_port,
                     "hls_url": f"http://127.0.0.1:{hls_port}/s0/live.m3u8", "job_url": f"http://127.0.0.1:{hls_port}/job.mp4"}
        store.close()
        address = (data / "ray.address").read_text().split()[0]
        init_ray(address=address, data_dir=data)
        import ray

        w = ray._private.worker._global_node
        node.markers = [w.get_session_dir_path(), ray.get_runtime_context().get_node_id()]
        node.find()
        http = _Http(url)
        code, data_, _h = http.send("POST", "/streams", token=ctx["acme"], json_body={"url": ctx["hls_url"], "name": "probe"})
        if code != 201:
            raise RuntimeError(f"the live stream was not accepted: {code} {data_}")
        ctx["sid"] = data_["id"]
        st = _wait_status(http, ctx["acme"], ctx["sid"], ("live",), 120)
        report["stream"] = {"id": ctx["sid"], "status": st.get("status"), "error": (st.get("error") or "")[:300]}
        say(f"stream {ctx['sid']}: {st.get('status')}")

        ports_seen: set[tuple[str, str, int]] = set(listening(node))
        report["ports"] = _ports_report(ports_seen)

        for name, fn in (
            ("hostile", lambda: hostile_phase(http, ctx, inputs, seed, say)),
            ("exactly_once", lambda: exactly_once_phase(url, ctx, batches, say)),
            ("stop_cycles", lambda: cycles_phase(http, ctx, node, cycles, say)),
        ):
            say(f"phase {name} ...")
            t0 = time.monotonic()
            try:
                report[name] = fn()
            except Exception as e:  # noqa: BLE001 - the probe measures; a phase that breaks is reported
                log.exception("probe phase %s", name)
                report[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            report[name]["phase_s"] = round(time.monotonic() - t0, 1)
            say(f"phase {name}: done in {report[name]['phase_s']} s")
        ports_seen |= set(listening(node))  # the job's and the streams' workers too
        report["ports"] = _ports_report(ports_seen) | {"node_processes": len(node.seen)}
        code, data_, _h = http.send("GET", "/healthz")
        report["healthy_after"] = code == 200
        st = _wait_status(http, ctx["acme"], ctx["sid"], ("live", "reconnecting"), 5)
        report["stream"]["status_after"] = st.get("status")
    except Exception as e:  # noqa: BLE001 - still reported, ACE still stopped
        log.exception("probe")
        report["error"] = f"{type(e).__name__}: {e}"[:2000]
    finally:
        if http is not None:
            http.close()
        say("stopping ACE (ace serve --shutdown, then the probe's Ray node) ...")
        report["shutdown"] = _shutdown(data, env, node)
        stop_publishing(pubs, server)
    report["seconds"] = round(time.monotonic() - phases_t0, 1)
    report["targets"] = _targets(report)
    return report


def _ports_report(seen: set[tuple[str, str, int]]) -> dict:
    return {"ports_listening": len(seen),
            "ports_not_loopback": sorted(f"{t} {_addr(ip, p)}" for t, ip, p in seen if not _loopback(ip)),
            "ports_loopback": sorted(f"{t} {_addr(ip, p)}" for t, ip, p in seen if _loopback(ip))}


def _targets(r: dict) -> dict:
    h, x, c, p = r.get("hostile", {}), r.get("exactly_once", {}), r.get("stop_cycles", {}), r.get("ports", {})
    return {
        "ports_loopback_only": "ports_not_loopback" in p and p["ports_not_loopback"] == [],
        "no_server_errors": h.get("server_errors") == 0 and "inputs_tried" in h,
        "refused_not_counted": h.get("events_counted") is not None and h.get("events_counted") == h.get("events_accepted"),
        "no_leaks": h.get("leak_count") == 0 and not h.get("submissions_let_in") and not h.get("unexpected_accepts"),
        "exactly_once": x.get("events_counted") is not None and x.get("events_counted") == x.get("events_sent")
        and x.get("events_sent") == x.get("batches", -1) * BATCH_EVENTS,
        "stopped_actors_end": c.get("stream_actors_alive_after") == 0 and c.get("streams_submitted") == c.get("cycles"),
        "job_actor_ends": c.get("job_actors_alive_after") == 0 and c.get("job", {}).get("status") == "done",
        "clean_shutdown": r.get("shutdown", {}).get("rc") == 0 and "error" not in r and not r.get("shutdown", {}).get("left_by_ace_shutdown"),
    }


def print_probe_report(r: dict, console) -> None:
    p, h, x, c = r.get("ports", {}), r.get("hostile", {}), r.get("exactly_once", {}), r.get("stop_cycles", {})
    if r.get("error"):
        console.print(f"[red]probe error[/] {r['error']}")
    console.print(f"ACE on {r.get('api')} (Ray port {r.get('ray_port')}), stream {r.get('stream', {}).get('id')}: "
                  f"{r.get('stream', {}).get('status')} -> {r.get('stream', {}).get('status_after')}")
    console.print(f"ports: {p.get('ports_listening')} listening on {p.get('node_processes')} processes of the node; "
                  f"not loopback: {len(p.get('ports_not_loopback') or [])}")
    for line in p.get("ports_not_loopback") or []:
        console.print(f"  {line}")
    if h:
        console.print(f"hostile inputs: {h.get('inputs_tried')} tried (seed {h.get('seed')}) in {h.get('seconds')} s, answers {h.get('answers')}; "
                      f"[bold]{h.get('server_errors')} server errors[/], {h.get('transport_errors')} transport errors, "
                      f"{h.get('leak_count')} leaks; events answered 200: {h.get('events_accepted')}, counted by the stream: {h.get('events_counted')}"
                      + (f"; error: {h['error']}" if h.get("error") else ""))
        for e in (h.get("server_error_examples") or [])[:5]:
            console.print(f"  {e['answer']} {e['method']} {e['path']} ({e['who']}): {e['body']} -> {e['error']}")
        for e in (h.get("leaks") or [])[:5] + (h.get("unexpected_accepts") or [])[:5]:
            console.print(f"  {e}")
        for s in h.get("submissions_let_in") or []:
            console.print(f"  let in: {s['request']} (stopped: {s['stop']})")
    if x:
        console.print(f"exactly once: {x.get('batches')} batches x {x.get('events_a_batch')} events, each sent twice, actor killed "
                      f"after {x.get('killed_at_batch')} ({x.get('actor_restarts')} restart(s)); sent {x.get('events_sent')}, "
                      f"[bold]counted {x.get('events_counted')}[/]; answers {x.get('answers')}, retries {x.get('retries')}"
                      + (f"; error: {x['error']}" if x.get("error") else "") + (f"; kill error: {x['kill_error']}" if x.get("kill_error") else ""))
    if c:
        console.print(f"stop cycles: {c.get('streams_submitted')}/{c.get('cycles')} submitted and stopped in {c.get('seconds')} s; "
                      f"[bold]{c.get('stream_actors_alive_after')} stream actors alive[/] {c.get('waited_s')} s later {c.get('stream_actor_states')}; "
                      f"events after stop {c.get('events_after_stop_answers')}; node RSS {c.get('rss_mb_before')} -> {c.get('rss_mb_after')} MB; "
                      f"job {c.get('job', {}).get('status')} in {c.get('job', {}).get('seconds')} s, progress actors alive {c.get('job_actors_alive_after')}"
                      + (f"; error: {c['error']}" if c.get("error") else ""))
    sh = r.get("shutdown", {})
    console.print(f"shutdown: rc {sh.get('rc')} in {sh.get('seconds')} s ({sh.get('scope')}); left by it: {sh.get('left_by_ace_shutdown')}; "
                  f"node processes then ended by the probe {sh.get('node_processes_ended')}, left {sh.get('node_processes_left')}")
    console.print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["targets"].items()))
