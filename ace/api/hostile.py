"""Hostile requests to the back office's HTTP API, drawn from a seed: what ``ace bench probe`` sends
in its hostile-inputs phase (the other traffic generator, :mod:`ace.api.loadgen`, sends valid load).

:class:`Hostile` draws requests over the routes: event batches with malformed and hostile fields or
bodies (huge integers, NaN, lone surrogates, deep nesting, invalid UTF-8, oversized or chunked bodies)
and odd, reused or replayed ``Idempotency-Key`` headers; stream submissions with hostile URLs (other
schemes, private and metadata addresses, tricks in the host) or odd fields; batch jobs with path
tricks; odd ids in paths; the other tenant's token on a stream; missing and forged credentials; junk
sign-ins. Each request is plain data (method, path, headers, body, what is odd about it);
:class:`Client` sends it as it is, even what an ordinary HTTP client refuses or changes (header
values with edge spaces, dot segments in a path), and never raises.

The requests are reproducible from the seed: the same seed gives the same requests whatever the
server answers (replays of batches it accepted draw from a second generator, seeded from the first).
"""

from __future__ import annotations

import json
import random
import re
import string

from ace.types import EVENT_KINDS

#: how deep the nested JSON of the hostile bodies goes
_NEST = 100_000


def event(rng: random.Random) -> dict:
    """A valid event with random fields."""
    return {"t": round(rng.uniform(0, 7200), 3), "kind": rng.choice(EVENT_KINDS), "user": f"u{rng.randrange(10_000)}",
            "text": rng.choice(["wow", "ok", "so good", "🔥🔥", "lol", "", "price?", "ça va"]), "value": rng.choice([1, 1, 2, 5, 100])}


def _bad_event(rng: random.Random) -> tuple[dict | str, str]:
    """An event with one hostile field: (the event, or raw JSON text of it; what is wrong)."""
    e = event(rng)
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
    """Draws hostile requests from ``random.Random(seed)``. ``ctx`` names the server's side: the API
    tokens of two tenants (``acme``, whose live stream ``sid`` is the target, and ``globex``) and the
    port of the loopback HLS server (``hls_port``).

    :meth:`draw` gives one request: a dict with ``kind``, ``method``, ``path``, ``desc`` (what is odd
    about it), ``who`` (``acme``, ``globex``, ``none`` or ``forged``), ``headers``, ``cookies``,
    ``content`` (bytes, an iterator of chunks, or None) and per kind ``events`` (how many a batch
    holds, None when unknown), ``key``, ``reuse``, ``to_stream`` or ``hostile_url``. Tell
    :meth:`remember` the keyed batches the server accepted: later draws replay some of them."""

    def __init__(self, seed: int, ctx: dict):
        self.rng, self.ctx = random.Random(seed), ctx
        # what depends on the server's answers (replays of accepted batches) draws from its own
        # generator, so the seed's sequence of requests is the same whatever was accepted
        self.rng2 = random.Random(self.rng.random())
        self.accepted: dict[str, tuple[bytes, int | None, str]] = {}  # Idempotency-Key -> (body, events, Content-Type)

    def remember(self, key: str, q: dict) -> None:
        """The batch ``q`` was accepted under ``key`` (a key remembered already keeps its first batch)."""
        if isinstance(q.get("content"), bytes) and key not in self.accepted:
            self.accepted[key] = (q["content"], q["events"], q["headers"].get("Content-Type", ""))

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
                items.append(event(rng))
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
        elif kr < 0.40 and self.accepted:
            rng2 = self.rng2
            key = rng2.choice(sorted(self.accepted))
            if rng2.random() < 0.5:
                reuse = "same"
                body, count, headers["Content-Type"] = self.accepted[key]
                desc = f"the batch of key {key} sent again (a retry)"
            else:  # a valid batch, other events: the key's reuse is the only thing wrong with it
                reuse = "other"
                body, count = _encode([event(rng2) for _ in range(rng2.choice([1, 5, 20]))], False)
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
            lines = [json.dumps(event(rng)), "{", "not json", "null", "[]", json.dumps(event(rng)), '{"t":1,"kind":"like"']
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
            return b"\xef\xbb\xbf" + json.dumps([event(rng)]).encode(), None, "a UTF-8 BOM before the array", "application/json"
        if k == 10:
            return rng.choice([b"null", b"{}", b"1", b'"x"', b"true", b"[]]", b"[,]", b"[1,]"]), None, "JSON that is not an array of events", "application/json"
        if k == 11:
            return json.dumps(event(rng)).encode(), 1, "one event object, no array (valid NDJSON)", "application/json"
        if k == 12:
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000))), None, "random bytes", rng.choice(["application/json", "application/octet-stream"])
        return ("[" + ",".join(json.dumps(event(rng)) for _ in range(3)) + "]").encode("utf-16"), None, "UTF-16", "application/json"

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
            ("GET", f"/static/{i}"), ("GET", "/static/..%2f..%2fapp.py"), ("GET", "/static/%2e%2e%2fapp.py"),
            ("GET", f"/streams/{self.ctx['sid']}/moments?min_score=" + rng.choice(["NaN", "1e309", "-1", "x", "2"])),
            ("GET", f"/streams/{self.ctx['sid']}/moments?min_confidence=" + rng.choice(["NaN", "101", "-1", "x", "1e309"])),
            ("GET", f"/streams/{self.ctx['sid']}/moments?order=" + rng.choice(["rank;drop", "", "RANK", "../", "score"])),
            ("GET", f"/streams/{self.ctx['sid']}/clips?min_confidence=" + rng.choice(["inf", "-0.1", "x"])),
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
            ("POST", f"/streams/{sid}/events", json.dumps([event(rng) for _ in range(3)]).encode()),
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


# ----------------------------------------------------------------------------------- sending


class Client:
    """Sends requests as they are given, hostile ones too, and never raises: every request gives
    ``(status code, parsed JSON or None, headers)``, or ``("error:<Type>", None, None)`` when the
    connection failed and ``("client:<Type>", None, None)`` when the request could not be sent. One
    httpx client, no cookies kept between requests; what httpx would change or refuse (dot segments
    in a path, header values with edge spaces) goes over :mod:`http.client` as it is (``raw_sent``
    counts those)."""

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
        raw = content if json_body is None else json.dumps(json_body).encode()
        if re.search(r"/\.\.?(?:/|$|\?)", path):  # httpx would remove the dot segments: send them as they are
            return self._raw(method, path, h, raw)
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
            return self._raw(method, path, h, raw)
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
