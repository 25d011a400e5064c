"""The URL guard (ace.netguard): URL and address checks without network access, the guard proxy with
real loopback sockets, and real ffmpeg reading hostile HLS playlists (over http and https) through it.

"Internal" services listen on 127.0.0.2 (Linux routes all of 127/8 to lo) and count every TCP
connection they accept; the "allowed" stream server listens on 127.0.0.1, the only allowlisted
address. Control tests run the same ffmpeg without the guard and show the internal service IS
reached, so a zero count under the guard means something.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ace.errors import InputError
from ace.live.ingest import PROTOCOL_WHITELIST, IngestOptions, ingest_command
from ace.netguard import (
    GUARDED_FORMAT_WHITELIST,
    GUARDED_PROTOCOL_WHITELIST,
    AddressPolicy,
    GuardProxy,
    address_problem,
    check_url,
    guard_command,
    guarded_env,
    guarded_input_options,
    guarded_opener,
    pinned_url,
    playlist_problem,
)
from tests.media_factory import ffmpeg_bin

ALLOWED = "127.0.0.1"
INTERNAL = "127.0.0.2"


def fake_dns(table: dict[str, list[str]]):
    """A resolver for AddressPolicy: names from ``table``, anything else is NXDOMAIN."""

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


# ------------------------------------------------------------------------------------- test servers


class Recorder(http.server.ThreadingHTTPServer):
    """A threaded HTTP server that counts accepted connections and records request paths.

    ``routes`` maps a path to (status, headers, body); bodies may be bytes or a Path. Unknown paths
    get 404. Special: status 0 sends a chunked body, status -1 a body delimited by closing.
    """

    daemon_threads = True

    def __init__(self, host: str, routes: dict | None = None, tls: ssl.SSLContext | None = None):
        self.routes: dict = routes if routes is not None else {}
        self.connections = 0
        self.paths: list[str] = []
        self.request_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        super().__init__((host, 0), _RecorderHandler)
        if tls is not None:
            # handshake on first read, not in accept(): a connection that never speaks TLS counts too
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def verify_request(self, request, client_address) -> bool:
        with self._lock:
            self.connections += 1
        return True

    @property
    def port(self) -> int:
        return self.server_address[1]

    def base(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.server_address[0]}:{self.port}"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        srv = self.server
        with srv._lock:
            srv.paths.append(self.path)
            srv.request_headers.append(dict(self.headers.items()))
        status, headers, body = srv.routes.get(self.path.split("?")[0], (404, {}, b"not found"))
        if isinstance(body, Path):
            body = body.read_bytes()
        code = 200 if status in (0, -1) else status
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Range" in self.headers:
            self.send_header("X-Got-Range", self.headers["Range"])
        if status == 0:
            self.send_header("Transfer-Encoding", "chunked")
        elif status == -1:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if status == 0:
            for i in range(0, len(body), 1000):
                part = body[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)


class EchoServer:
    """A TCP echo server that counts connections (a stand-in for a TLS server behind CONNECT)."""

    def __init__(self, host: str):
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                while data := conn.recv(4096):
                    conn.sendall(data)

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


def read_head(sock: socket.socket) -> bytes:
    """Read an HTTP response head (up to the blank line) from a raw socket."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            break
        buf += data
    return buf


# ------------------------------------------------------------------------------------- URL checks


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "FILE:/etc/passwd", "concat:http://a/1.ts|http://a/2.ts",
    "subfile:,start,0,end,10,:/etc/passwd",
    "data:text/plain;base64,aGk=", "gopher://93.184.216.34/", "ftp://93.184.216.34/x.ts", "http+unix://%2Fsock/x",
    "pipe:0", "crypto+http://93.184.216.34/x", "hls+http://93.184.216.34/x.m3u8", "rtspt://93.184.216.34/x",
    "/var/streams/x.m3u8", "x.m3u8", "../x.ts", "//93.184.216.34/x", "", "   ",
])
def test_refuses_schemes(url):
    with pytest.raises(InputError, match="refused stream URL|empty"):
        check_url(url)


@pytest.mark.parametrize("url", [
    "http:/93.184.216.34/x", "http:93.184.216.34", "http://", "http:///x", "http://93.184.216.34:/x",
    "http://93.184.216.34:0/x", "http://93.184.216.34:99999/x", "http://93.184.216.34:8o/x",
    "http://a@b@93.184.216.34/x", "http://93.184.216.34\\@127.0.0.1/x", "http://93.184.216.34 /x",
    "http://93.184.216.34/x\n", "http://bücher.example/x", "http://[::1/x", "http://a%2fb/x",
])
def test_refuses_malformed_urls(url):
    resolver = fake_dns({"bücher.example": ["93.184.216.34"], "a%2fb": ["93.184.216.34"]})
    with pytest.raises(InputError):
        check_url(url, policy=AddressPolicy(resolver=resolver))


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1/x.m3u8", "loopback"),
    ("http://localhost:8080/x.m3u8", "loopback"),
    ("http://LOCALHOST/x", "loopback"),
    ("http://127.8.9.10/x", "loopback"),
    ("https://10.1.2.3/x", "private"),
    ("rtmp://192.168.1.20/live/key", "private"),
    ("rtsp://172.16.0.9:8554/cam", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fd00:ec2::254]/latest/", "cloud metadata"),
    ("http://100.100.100.200/latest/meta-data", "cloud metadata"),
    ("http://100.64.0.1/x", "carrier-grade NAT"),
    ("http://[::1]:8080/x", "loopback"),
    ("http://[::ffff:127.0.0.1]/x", "loopback"),
    ("http://[::ffff:10.0.0.1]/x", "private"),
    ("http://[64:ff9b::a00:1]/x", "private"),
    ("http://[2002:7f00:1::1]/x", "loopback"),
    ("http://[fe80::1]/x", "link-local"),
    ("http://[fc00::1]/x", "private"),
    ("http://0.0.0.0/x", "unspecified"),
    ("http://0/x", "unspecified"),
    ("http://[::]/x", "unspecified"),
    ("http://224.0.0.1/x", "multicast"),
    ("http://240.0.0.1/x", "private|reserved"),
    ("http://192.0.2.7/x", "private|special"),
    ("http://2130706433/x", "loopback"),  # decimal 127.0.0.1: getaddrinfo reads it
    ("http://0x7f.1/x", "loopback"),  # hex and short form
    ("http://0177.0.0.1/x", "loopback"),  # octal
    ("http://127.1/x", "loopback"),
    ("http://0xa000001/x", "private"),
])
def test_refuses_non_public_addresses(url, why):
    with pytest.raises(InputError, match=why) as e:
        check_url(url)
    assert "ACE_URL_ALLOWLIST" in str(e.value)


def test_public_literal_passes_without_network():
    c = check_url("http://93.184.216.34/live/index.m3u8?token=abc")
    assert c.addresses == (ipaddress.ip_address("93.184.216.34"),)
    assert (c.scheme, c.host, c.port, c.kind, c.origin) == ("http", "93.184.216.34", 80, "hls",
                                                            "http://93.184.216.34:80")
    c = check_url("RTMPS://user:pw@[2606:4700:4700::1111]/app/key")
    assert (c.scheme, c.port, c.kind, c.origin) == ("rtmps", 443, "rtmp", "rtmps://[2606:4700:4700::1111]:443")
    assert check_url("rtsp://93.184.216.34/cam").port == 554
    c = check_url("rtsps://93.184.216.34/cam")  # RTSP over TLS, as the live command lists it
    assert (c.port, c.kind) == (322, "rtsp")
    assert check_url("rtmp://93.184.216.34/live/x").port == 1935
    assert check_url("https://93.184.216.34/x.flv").kind == "http"


def test_every_resolved_address_must_pass():
    policy = AddressPolicy(resolver=fake_dns({"cdn.test": ["93.184.216.34", "10.0.0.5"],
                                              "ok.test": ["93.184.216.34", "2606:4700::1"]}))
    with pytest.raises(InputError, match=r"host 'cdn.test' resolves to 10.0.0.5, a private address"):
        check_url("http://cdn.test/x.m3u8", policy=policy)
    c = check_url("http://ok.test/x.m3u8", policy=policy)
    assert [str(a) for a in c.addresses] == ["93.184.216.34", "2606:4700::1"]
    with pytest.raises(InputError, match="cannot resolve host 'nx.test'"):
        check_url("http://nx.test/x.m3u8", policy=policy)


def test_messages_do_not_leak_credentials_or_paths():
    for url in ("rtsp://admin:s3cret@10.0.0.5:554/stream?token=t0ken", "http://admin:s3cret@127.0.0.1/k3y/x.m3u8"):
        with pytest.raises(InputError) as e:
            check_url(url)
        msg = str(e.value)
        assert "s3cret" not in msg and "t0ken" not in msg and "k3y" not in msg and "admin" not in msg
    with pytest.raises(InputError) as e:
        check_url("gopher://admin:s3cret@93.184.216.34/")
    assert "s3cret" not in str(e.value)


def test_allowlist_entries():
    policy = AddressPolicy(["127.0.0.1", "10.0.0.0/8", "192.168.1.5:8080", "[::1]:9000", "cams.local",
                            "*.studio.internal", "fd00::/8"],
                           resolver=fake_dns({"cams.local": ["192.168.7.7"], "a.studio.internal": ["10.9.9.9"],
                                              "b.studio.internal": ["172.16.0.1"], "studio.internal": ["172.16.0.2"],
                                              "evil.test": ["192.168.7.7"], "localhost": ["127.0.0.1"]}))
    ok = ["http://127.0.0.1:8080/x.m3u8", "http://localhost/x", "rtmp://10.20.30.40/live/k",
          "http://192.168.1.5:8080/x", "http://[::1]:9000/x", "rtsp://cams.local/cam1",
          "http://b.studio.internal/x", "http://[fd00::5]/x"]
    for url in ok:
        check_url(url, policy=policy)
    refused = ["http://192.168.1.5/x",  # port 80, only 8080 is listed
               "http://192.168.1.5:8081/x", "http://[::1]:9001/x", "http://[::1]/x",
               "http://evil.test/x",  # same address as cams.local, but the name is not listed
               "http://studio.internal/x",  # *.studio.internal covers subdomains only
               "http://127.0.0.2/x", "http://[::ffff:127.0.0.1]/x"]
    for url in refused:
        with pytest.raises(InputError):
            check_url(url, policy=policy)
    assert check_url("http://127.0.0.1/x", allow="127.0.0.1, 10.0.0.0/8").port == 80  # a setting string
    for bad in ["", "10.0.0.0/33", "host:port", "a b", "[::1", "127.0.0.1:0", "-bad-.example"]:
        with pytest.raises(InputError):
            AddressPolicy([bad])


def test_metadata_needs_an_exact_entry():
    for wide in (["169.254.0.0/16"], ["0.0.0.0/0"], ["100.64.0.0/10"], ["metadata.google.internal"]):
        policy = AddressPolicy(wide, resolver=fake_dns({"metadata.google.internal": ["169.254.169.254"]}))
        for url in ("http://169.254.169.254/", "http://100.100.100.200/", "http://metadata.google.internal/"):
            with pytest.raises(InputError, match="cloud metadata"):
                check_url(url, policy=policy)
    assert check_url("http://169.254.169.254/", ["169.254.169.254"]).port == 80
    assert check_url("http://169.254.169.254:80/", ["169.254.169.254/32:80"]).port == 80
    assert check_url("http://169.254.1.1/", ["169.254.0.0/16"]).port == 80  # link-local, not metadata


def test_address_problem():
    assert address_problem("8.8.8.8") is None
    assert address_problem("2606:4700:4700::1111") is None
    assert address_problem("64:ff9b::808:808") is None  # NAT64 of a public address
    assert address_problem("fe80::1%eth0") == "link-local"
    assert address_problem(ipaddress.ip_address("198.18.0.1")) is not None


def test_pinned_url():
    policy = AddressPolicy(resolver=fake_dns({"cam.test": ["93.184.216.34"], "v6.test": ["2606:4700::1"]}))
    c = check_url("rtsp://user:pw@cam.test:8554/live/ch1?subtype=0", policy=policy)
    assert pinned_url(c) == "rtsp://user:pw@93.184.216.34:8554/live/ch1?subtype=0"
    assert pinned_url(check_url("rtmp://v6.test/live/key", policy=policy)) == "rtmp://[2606:4700::1]:1935/live/key"
    for url in ("rtmps://cam.test/live/key", "rtsps://cam.test/live/ch1", "https://cam.test/x.m3u8", "http://cam.test/x.flv"):
        with pytest.raises(InputError):
            pinned_url(check_url(url, policy=policy))


def test_guarded_options_and_command(tmp_path):
    proxy = "http://127.0.0.1:4321"
    opts = ["-http_proxy", proxy, "-format_whitelist", GUARDED_FORMAT_WHITELIST]
    assert guarded_input_options("hls", proxy) == guarded_input_options("http", proxy) == opts
    assert "dash" not in GUARDED_FORMAT_WHITELIST and "concat" not in GUARDED_FORMAT_WHITELIST
    assert guarded_input_options("rtmp", proxy) == guarded_input_options("rtsp", proxy) == []
    with pytest.raises(InputError):
        guarded_input_options("hls", "http://evil.test:80")
    with pytest.raises(InputError):
        guarded_input_options("ftp", proxy)
    for url, kind in (("http://93.184.216.34/a.m3u8", "hls"), ("https://93.184.216.34/a.flv", "http")):
        base = ingest_command(url, tmp_path, IngestOptions())
        cmd = guard_command(base, kind, proxy)
        i = cmd.index("-i")
        assert cmd[i + 1] == url and cmd[cmd.index("-http_proxy") + 1] == proxy and cmd.index("-http_proxy") < i
        assert cmd[cmd.index("-protocol_whitelist") + 1] == GUARDED_PROTOCOL_WHITELIST[kind]
        widened = set(PROTOCOL_WHITELIST[kind].split(",")) | {"httpproxy"}
        assert set(GUARDED_PROTOCOL_WHITELIST[kind].split(",")) == widened
        assert len(cmd) == len(base) + 4 and cmd.index("-format_whitelist") < i
    rtmp = ingest_command("rtmp://93.184.216.34/live/k", tmp_path)
    assert guard_command(rtmp, "rtmp", proxy) == rtmp
    env = guarded_env({"PATH": "/bin", "no_proxy": "*", "NO_PROXY": "x", "http_proxy": "http://p:1"})
    assert env == {"PATH": "/bin"}


# ------------------------------------------------------------------------------------------ proxy


@pytest.fixture
def upstream() -> Iterator[Recorder]:
    big = bytes(range(256)) * 20000  # 5 MB
    routes = {
        "/hello": (200, {"Content-Type": "text/plain"}, b"hello"),
        "/big": (200, {}, big),
        "/chunked": (0, {}, b"c" * 2500),
        "/closing": (-1, {}, b"until close"),
        "/moved": (302, {"Location": f"http://{INTERNAL}:9/secret"}, b""),
    }
    with Recorder(ALLOWED, routes) as srv:
        yield srv


@pytest.fixture
def proxy() -> Iterator[GuardProxy]:
    with GuardProxy([ALLOWED], timeout=10) as p:
        yield p


def proxied(proxy: GuardProxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)


def test_proxy_forwards_keep_alive_range_chunked_and_big_bodies(proxy, upstream):
    base = upstream.base()
    conn = proxied(proxy)
    conn.request("GET", f"{base}/hello", headers={"Range": "bytes=1-3", "Proxy-Connection": "keep-alive"})
    r = conn.getresponse()
    assert (r.status, r.read(), r.getheader("X-Got-Range")) == (200, b"hello", "bytes=1-3")
    conn.request("GET", f"{base}/chunked")  # same client connection
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"c" * 2500
    conn.request("HEAD", f"{base}/big")
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == str(5_120_000) and r.read() == b""
    conn.request("GET", f"{base}/big")
    r = conn.getresponse()
    body = r.read()
    assert len(body) == 5_120_000 and body == bytes(range(256)) * 20000
    conn.request("GET", f"{base}/closing")
    r = conn.getresponse()
    assert r.read() == b"until close" and r.will_close
    conn.close()
    assert upstream.paths == ["/hello", "/chunked", "/big", "/big", "/closing"]
    hdrs = upstream.request_headers[0]
    assert hdrs["Host"] == f"{ALLOWED}:{upstream.port}" and "Proxy-Connection" not in hdrs
    assert proxy.forwarded == 5 and proxy.refused == 0


def test_proxy_refuses_internal_targets_and_redirects_lead_nowhere(proxy, upstream):
    with Recorder(INTERNAL, {"/secret": (200, {}, b"secret")}) as internal:
        conn = proxied(proxy)
        for target in (f"{internal.base()}/secret", "http://169.254.169.254/latest/meta-data/",
                       "http://2130706434:%d/secret" % internal.port):
            conn.request("GET", target)
            r = conn.getresponse()
            assert r.status == 403 and b"secret" not in r.read()
            conn.close()
        conn.request("GET", f"{upstream.base()}/moved")  # the redirect itself is relayed...
        r = conn.getresponse()
        assert r.status == 302 and r.getheader("Location") == f"http://{INTERNAL}:9/secret"
        r.read()
        conn.request("GET", r.getheader("Location"))  # ...but following it is refused
        assert conn.getresponse().status == 403
        assert internal.connections == 0
    assert proxy.refused == 4
    targets = [f.target for f in proxy.refusals]
    assert targets[0] == f"http://{INTERNAL}:{internal.port}" and targets[1] == "http://169.254.169.254:80"
    assert "loopback" in proxy.refusals[0].reason and "cloud metadata" in proxy.refusals[1].reason
    assert proxy.status()["refused"] == 4


def test_proxy_connects_to_the_checked_address():
    """The name is resolved once, by the policy; the proxy connects to that address (no second lookup
    that a rebinding DNS server could answer differently). 'stream.test' exists only in the fake DNS."""
    policy = AddressPolicy([ALLOWED], resolver=fake_dns({"stream.test": [ALLOWED]}))
    with Recorder(ALLOWED, {"/x": (200, {}, b"x")}) as srv, GuardProxy(policy) as p:
        conn = proxied(p)
        conn.request("GET", f"http://stream.test:{srv.port}/x")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"x")
        assert srv.request_headers[0]["Host"] == f"stream.test:{srv.port}"


def test_guarded_opener_for_aces_own_reads(upstream, monkeypatch, tls):
    """urllib as ingest uses it (the ENDLIST check) goes through the proxy: redirects to an internal
    host are refused even when no_proxy names that host; ftp/file/data are not spoken at all."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", f"{INTERNAL},localhost,127.0.0.1")
    proxy = GuardProxy([ALLOWED], upstream_tls=tls.trust).start()
    opener = guarded_opener(proxy)
    with opener.open(f"{upstream.base()}/hello", timeout=5) as r:
        assert r.read() == b"hello"
    with Recorder(INTERNAL, {"/secret": (200, {}, b"secret")}) as internal:
        upstream.routes["/moved"] = (302, {"Location": f"{internal.base()}/secret"}, b"")
        upstream.routes["/ftp"] = (302, {"Location": f"ftp://{INTERNAL}:{internal.port}/x"}, b"")
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(f"{upstream.base()}/moved", timeout=5)
        assert e.value.code == 403
        with pytest.raises(urllib.error.URLError):
            opener.open(f"{upstream.base()}/ftp", timeout=5)
        for url in (f"{internal.base()}/secret", f"ftp://{INTERNAL}:{internal.port}/x", "file:///etc/passwd",
                    "data:,x"):
            with pytest.raises(urllib.error.URLError):
                opener.open(url, timeout=5)
        # https through CONNECT: the allowed TLS server answers, the internal one is never reached
        with Recorder(ALLOWED, {"/tls": (200, {}, b"over tls")}, tls=tls.server) as tls_srv:
            with opener.open(f"{tls_srv.base('https')}/tls", timeout=5) as r:
                assert r.read() == b"over tls"
            with pytest.raises(urllib.error.URLError):
                opener.open(f"https://{INTERNAL}:{internal.port}/secret", timeout=5)
        assert internal.connections == 0
        # control: plain urllib follows the redirect to the internal host
        with urllib.request.urlopen(f"{upstream.base()}/moved", timeout=5) as r:
            assert r.read() == b"secret"
        assert internal.connections == 1
    proxy.stop()


def test_proxy_connect_terminates_tls_and_verifies_upstream(tls):
    """CONNECT: a refused target gets 403 before any connection; an allowed one gets 200, then the
    proxy answers the TLS itself (its own certificate) and forwards the requests inside over a
    verified TLS connection to the checked address."""
    routes = {"/x": (200, {}, b"inside"), "/p.m3u8": (200, {}, b"#EXTM3U\nhttpproxy://127.0.0.2:9/x.ts\n")}
    with Recorder(ALLOWED, routes, tls=tls.server) as srv, EchoServer(INTERNAL) as internal, \
            GuardProxy([ALLOWED], upstream_tls=tls.trust) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
            raw.sendall(f"CONNECT {ALLOWED}:{srv.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_head(raw).startswith(b"HTTP/1.1 200")
            with proxy.client_context().wrap_socket(raw, server_hostname="anything") as s:
                conn = http.client.HTTPConnection("unused")
                conn.sock = s
                conn.request("GET", "/x", headers={"Host": f"{ALLOWED}:{srv.port}"})
                r = conn.getresponse()
                assert (r.status, r.read()) == (200, b"inside")
                conn.request("GET", "/p.m3u8")  # same tunnel; a playlist naming httpproxy: is refused
                r = conn.getresponse()
                assert r.status == 403 and b"httpproxy" in r.read()
        assert srv.paths == ["/x", "/p.m3u8"] and srv.request_headers[0]["Host"] == f"{ALLOWED}:{srv.port}"
        assert proxy.refusals[-1].target == f"https://{ALLOWED}:{srv.port}"
        # bytes sent before the 200 (ffmpeg and urllib wait for it): refused
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
            raw.sendall(f"CONNECT {ALLOWED}:{srv.port} HTTP/1.1\r\n\r\nearly".encode())
            assert read_head(raw).startswith(b"HTTP/1.1 400")
        for target in (f"{INTERNAL}:{internal.port}", "10.1.2.3:443", "[::1]:443", "0x7f000002:443"):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
                raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                assert read_head(raw).startswith(b"HTTP/1.1 403")
        assert internal.connections == 0
        assert [r.method for r in proxy.refusals][-4:] == ["CONNECT"] * 4
        assert proxy.refusals[-4].target == f"{INTERNAL}:{internal.port}"
    # an upstream whose certificate does not verify: 502, nothing relayed
    with Recorder(ALLOWED, routes, tls=tls.server) as srv, GuardProxy([ALLOWED]) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
            raw.sendall(f"CONNECT {ALLOWED}:{srv.port} HTTP/1.1\r\n\r\n".encode())
            assert read_head(raw).startswith(b"HTTP/1.1 200")
            with proxy.client_context().wrap_socket(raw) as s:
                s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                assert read_head(s).startswith(b"HTTP/1.1 502")
        assert proxy.errors == 1 and srv.paths == []


def test_playlist_problem():
    ok = ("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"https://k.test/key\"\n#EXTINF:2,\nseg1.ts\n"
          "#EXTINF:2,\nhttp://cdn.test/seg2.ts\n#EXTINF:2,\nHTTPS://cdn.test/seg3.ts\n//cdn.test/seg4.ts\n"
          "#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.4d401f,mp4a.40.2\"\nv/1.m3u8\n")
    assert playlist_problem(ok) is None
    for bad in ("httpproxy://127.0.0.2:6379/x.ts", "  HTTPPROXY://h/x.ts", "crypto+httpproxy://h/x.ts",
                "httpproxy:127.0.0.2:80/x.ts", "file:///etc/passwd", "data:video/mp2t;base64,AAAA", "tcp://h:1",
                "#EXT-X-KEY:METHOD=AES-128,URI=\"httpproxy://h:1/k\"", "#EXT-X-MAP:URI=httpproxy://h:1/i.mp4",
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",uri = \"file:/x\""):
        assert playlist_problem(f"#EXTM3U\n#EXTINF:1,\nok.ts\n{bad}\n"), bad
    assert "line 2" in playlist_problem("#EXTM3U\r\nhttpproxy://h:1/x.ts")


def test_proxy_survives_malformed_requests_and_stop_frees_the_port(upstream):
    p = GuardProxy([ALLOWED], timeout=5).start()
    port = p.port
    bad = [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not a proxy request
           b"GET ftp://93.184.216.34/x HTTP/1.1\r\n\r\n", b"GET http://[::1/x HTTP/1.1\r\n\r\n",
           b"CONNECT nowhere HTTP/1.1\r\n\r\n", b"CONNECT a:b:c HTTP/1.1\r\n\r\n",
           b"GET http://127.0.0.1:%d/hello HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde" % upstream.port,
           b"GET http://127.0.0.1:%d/hello HTTP/9.9\r\n\r\n" % upstream.port,
           b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(100) + b"\r\n\r\n"]
    for raw in bad:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(raw)
            assert read_head(s)[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 505", b"HTTP/1.0 400"), raw
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST http://127.0.0.1:%d/hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n" % upstream.port)
        assert read_head(s).startswith(b"HTTP/1.1 501")
    conn = proxied(p)
    conn.request("GET", f"{upstream.base()}/hello")  # still serving
    assert conn.getresponse().read() == b"hello"
    assert upstream.paths == ["/hello"]  # none of the bad requests reached upstream
    # a connection that is idle inside a tunnel does not keep stop() waiting
    with EchoServer(ALLOWED) as echo:
        t = socket.create_connection(("127.0.0.1", port), timeout=5)
        t.sendall(f"CONNECT {ALLOWED}:{echo.port} HTTP/1.1\r\n\r\n".encode())
        assert read_head(t).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        p.stop()
        assert time.monotonic() - t0 < 3
        assert t.recv(10) == b""  # the tunnel was closed
        t.close()
    p.stop()  # twice is fine
    assert not p.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # the port is free again


# --------------------------------------------------------------------------- ffmpeg, hostile HLS


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory) -> Path:
    """A real 3 s HLS stream (1 s segments seg0.ts..seg2.ts) made by ffmpeg."""
    d = tmp_path_factory.mktemp("hls")
    subprocess.run([
        ffmpeg_bin(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc=size=160x90:rate=15", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050",
        "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-pix_fmt", "yuv420p", "-c:a", "aac",
        "-b:a", "32k", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(d / "seg%d.ts"), str(d / "stream.m3u8"),
    ], check=True, timeout=60)
    assert sorted(p.name for p in d.glob("seg*.ts")) == ["seg0.ts", "seg1.ts", "seg2.ts"]
    return d


def hostile_routes(hls_dir: Path, case: str, internal: str) -> tuple[dict, str]:
    """Routes for the allowed server and the path ffmpeg should open, for one kind of hostile playlist.

    segment:  the media playlist lists http://INTERNAL/secret.ts between its real segments, and a
              segment whose server answers with a redirect to http://INTERNAL/redirected.ts
    variant:  a master playlist whose only variant is http://INTERNAL/internal.m3u8
    key:      the media playlist's AES-128 key URI is http://INTERNAL/key.bin
    httpproxy: the media playlist lists httpproxy://INTERNAL/x.ts; ffmpeg's HLS demuxer opens that
              protocol (it must be whitelisted for https through the proxy) and it connects directly
    """
    lines = (hls_dir / "stream.m3u8").read_text().splitlines()
    seg = {f"/seg{i}.ts": (200, {"Content-Type": "video/mp2t"}, hls_dir / f"seg{i}.ts") for i in range(3)}
    routes: dict = dict(seg)
    if case == "segment":
        i = lines.index("seg0.ts") + 1
        lines[i:i] = ["#EXTINF:1.0,", f"{internal}/secret.ts", "#EXTINF:1.0,", "redirect.ts"]
        routes["/redirect.ts"] = (302, {"Location": f"{internal}/redirected.ts"}, b"")
        routes["/media.m3u8"] = (200, {"Content-Type": "application/vnd.apple.mpegurl"}, "\n".join(lines).encode())
        return routes, "/media.m3u8"
    if case == "httpproxy":
        i = lines.index("seg0.ts") + 1
        hostport = internal.split("://", 1)[1]
        lines[i:i] = ["#EXTINF:1.0,", f"httpproxy://{hostport}/x.ts"]
        routes["/media.m3u8"] = (200, {}, "\n".join(lines).encode())
        return routes, "/media.m3u8"
    if case == "variant":
        master = f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=160x90\n{internal}/internal.m3u8\n"
        routes["/master.m3u8"] = (200, {}, master.encode())
        return routes, "/master.m3u8"
    if case == "key":
        i = next(n for n, line in enumerate(lines) if line.startswith("#EXTINF"))
        lines[i:i] = [f'#EXT-X-KEY:METHOD=AES-128,URI="{internal}/key.bin",IV=0x00000000000000000000000000000001']
        routes["/media.m3u8"] = (200, {}, "\n".join(lines).encode())
        return routes, "/media.m3u8"
    raise AssertionError(case)


def internal_routes(hls_dir: Path, scheme: str, base: str) -> dict:
    """What the internal service serves: enough real media that ffmpeg would happily use it."""
    playlist = (hls_dir / "stream.m3u8").read_text().replace("seg", f"{base}/seg")
    routes = {"/secret.ts": (200, {}, hls_dir / "seg1.ts"), "/redirected.ts": (200, {}, hls_dir / "seg2.ts"),
              "/internal.m3u8": (200, {}, playlist.encode()), "/key.bin": (200, {}, bytes(16))}
    routes.update({f"/seg{i}.ts": (200, {}, hls_dir / f"seg{i}.ts") for i in range(3)})
    return routes


def run_ingest_ffmpeg(url: str, out: Path, proxy: GuardProxy | None,
                      whitelist: str | None = None) -> subprocess.CompletedProcess:
    """ffmpeg exactly as ingest runs it (``ingest_command``), guarded when a proxy is given; or with
    only its protocol whitelist replaced."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = ingest_command(url, out, IngestOptions(rw_timeout_s=5, reconnect_delay_max_s=0))
    if proxy is not None:
        cmd = guard_command(cmd, "hls", proxy.url)
    if whitelist is not None:
        cmd[cmd.index("-protocol_whitelist") + 1] = whitelist
    return subprocess.run(cmd, env=guarded_env(), capture_output=True, text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["segment", "variant", "key", "httpproxy"])
def test_hostile_playlist_cannot_reach_internal_service(hls_dir, tmp_path, case):
    with Recorder(INTERNAL) as internal:
        internal.routes.update(internal_routes(hls_dir, "http", internal.base()))
        routes, entry = hostile_routes(hls_dir, case, internal.base())
        with Recorder(ALLOWED, routes) as allowed, GuardProxy([ALLOWED]) as proxy:
            run = run_ingest_ffmpeg(allowed.base() + entry, tmp_path / "out", proxy)
            assert internal.connections == 0, run.stderr
            assert internal.paths == []
            assert proxy.refused >= 1, run.stderr
            if case == "httpproxy":  # the playlist itself is refused
                assert [r.reason.split(":")[0] for r in proxy.refusals] == ["playlist refused"]
                assert proxy.refusals[0].target == f"http://{ALLOWED}:{allowed.port}"
            else:
                assert {r.target for r in proxy.refusals} == {f"http://{INTERNAL}:{internal.port}"}
            assert entry in allowed.paths
            if case == "segment":
                # the allowed segments were fetched (through the proxy) and became ingest segments
                assert {"/seg0.ts", "/seg1.ts", "/seg2.ts", "/redirect.ts"} <= set(allowed.paths)
                assert run.returncode == 0, run.stderr
                listed = (tmp_path / "out" / "segments.csv").read_text().splitlines()
                assert len(listed) >= 2
                assert proxy.refused >= 2  # secret.ts and the redirect's target


@pytest.mark.slow
@pytest.mark.parametrize("case", ["segment", "variant", "key", "httpproxy"])
def test_control_unguarded_ffmpeg_reaches_internal_service(hls_dir, tmp_path, case):
    """Without the guard the same playlists DO reach the internal service: the test above can fail.
    (httpproxy: with the guarded protocol whitelist but no proxy to inspect the playlist.)"""
    with Recorder(INTERNAL) as internal:
        internal.routes.update(internal_routes(hls_dir, "http", internal.base()))
        routes, entry = hostile_routes(hls_dir, case, internal.base())
        with Recorder(ALLOWED, routes) as allowed:
            whitelist = GUARDED_PROTOCOL_WHITELIST["hls"] if case == "httpproxy" else None
            run = run_ingest_ffmpeg(allowed.base() + entry, tmp_path / "out", None, whitelist)
            assert internal.connections > 0, run.stderr
            expected = {"segment": {"/secret.ts", "/redirected.ts"}, "variant": {"/internal.m3u8"},
                        "key": {"/key.bin"}, "httpproxy": set()}[case]
            assert expected <= set(internal.paths), internal.paths


class TLS:
    """A throwaway self-signed certificate for 127.0.0.1 and 127.0.0.2: a server context, and a client
    context that trusts it (the proxy's ``upstream_tls`` in tests)."""

    def __init__(self, folder: Path):
        openssl = shutil.which("openssl")
        if not openssl:
            pytest.skip("openssl not found")
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
        self.server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server.load_cert_chain(cert, key)
        self.trust = ssl.create_default_context(cafile=str(cert))


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TLS:
    return TLS(tmp_path_factory.mktemp("tls"))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["segment", "httpproxy"])
def test_hostile_https_playlist_goes_through_connect(hls_dir, tmp_path, tls, case):
    """https: ffmpeg tunnels every TLS connection with CONNECT through the proxy, which terminates it
    and checks what is inside; the allowed server's segments arrive, the internal service is never
    connected to. The control run without the proxy reaches it."""
    with Recorder(INTERNAL, tls=tls.server) as internal:
        internal.routes.update(internal_routes(hls_dir, "https", internal.base("https")))
        routes, entry = hostile_routes(hls_dir, case, internal.base("https"))
        with Recorder(ALLOWED, routes, tls=tls.server) as allowed, \
                GuardProxy([ALLOWED], upstream_tls=tls.trust) as proxy:
            run = run_ingest_ffmpeg(allowed.base("https") + entry, tmp_path / "out", proxy)
            assert internal.connections == 0, run.stderr
            if case == "segment":
                assert {"/media.m3u8", "/seg0.ts", "/seg1.ts", "/seg2.ts", "/redirect.ts"} <= set(allowed.paths)
                assert proxy.refused >= 2 and {r.method for r in proxy.refusals} == {"CONNECT"}
                assert {r.target for r in proxy.refusals} == {f"{INTERNAL}:{internal.port}"}
                assert run.returncode == 0, run.stderr
            else:
                assert allowed.paths[:1] == ["/media.m3u8"] and proxy.refused >= 1
                assert {r.target for r in proxy.refusals} == {f"https://{ALLOWED}:{allowed.port}"}
                assert all(r.reason.startswith("playlist refused") for r in proxy.refusals)
        with Recorder(ALLOWED, routes, tls=tls.server) as allowed:
            run_ingest_ffmpeg(allowed.base("https") + entry, tmp_path / "out2", None,
                              GUARDED_PROTOCOL_WHITELIST["hls"])
        assert internal.connections > 0
