"""Guard against server-side request forgery by submitted stream URLs.

Stream URLs come from users and are untrusted. ACE hands them to ffmpeg, which then opens network
connections on ACE's behalf, from inside ACE's network: a URL (or anything that URL makes ffmpeg
fetch) that names ``127.0.0.1``, a private address or a cloud metadata service would let a user read
or poke at services that only ACE's machine can reach. This module refuses such destinations:

* :func:`check_url` vets a submitted URL before ffmpeg sees it: the scheme must be one of
  :data:`ALLOWED_SCHEMES` (never ``file:``, ``concat:``, ``subfile:``, ``data:`` or another of
  ffmpeg's protocols), the authority must be plain (one host, a valid port, no odd characters), and
  **every** address the host resolves to must be public, unless the operator listed the destination
  in an allowlist (``ACE_URL_ALLOWLIST``; see :class:`AddressPolicy` for the forms an entry takes).
  It returns the addresses it checked, so a caller can pin them.
* Checking the submitted URL is not enough for http(s) sources. An HLS playlist names more URLs:
  variant playlists, segments, AES keys, and a server can answer any request with a redirect.
  ffmpeg follows all of them, to any host, whatever ``-protocol_whitelist`` says (the whitelist names
  protocols, not hosts). So :class:`GuardProxy`, a small HTTP forward proxy on 127.0.0.1, sits
  between ffmpeg and the network: ffmpeg's ``-http_proxy`` option sends **every** http request it
  makes through it (an absolute-URI ``GET``/``HEAD``), and every https request too (ffmpeg's ``tls``
  protocol then tunnels with ``CONNECT host:port``). The proxy checks each target with the same
  :class:`AddressPolicy`, connects to the address it checked (never resolving the name again, so a
  DNS answer that changes between check and connect cannot slip through), and answers a refused
  target with ``403 Forbidden``, which ffmpeg treats like any failed segment or playlist.
* The proxy must also read the playlists, https ones included, so it terminates the TLS of each
  CONNECT (ffmpeg does not verify certificates unless told to) and verifies the real server itself.
  Why: https through a proxy needs ``httpproxy`` in ffmpeg's protocol whitelist
  (:data:`GUARDED_PROTOCOL_WHITELIST`; without it every https open fails), and ffmpeg's HLS demuxer
  opens any protocol whose name starts with "http": a playlist that lists
  ``httpproxy://10.0.0.5:6379/x.ts`` makes ffmpeg connect to that address directly, past the proxy
  (measured with ffmpeg 5.1). The proxy refuses every playlist that names a URI of a protocol other
  than http or https (:func:`playlist_problem`), and ``-format_whitelist``
  (:data:`GUARDED_FORMAT_WHITELIST`) keeps out the other demuxers that open URLs named in what they
  read (dash, imf, concat).

How ingest uses it::

    policy = AddressPolicy(settings.url_allowlist)
    checked = check_url(url, policy=policy)            # InputError when refused
    with GuardProxy(policy) as proxy:                  # or one proxy for all streams of a process
        argv = guard_command(ingest_command(url, out_dir, options), checked.kind, proxy.url)
        subprocess.Popen(argv, env=guarded_env(), ...)

:func:`guard_command` adds :func:`guarded_input_options` (``-http_proxy``, ``-format_whitelist``) to
the input of an ffmpeg command line and widens its ``-protocol_whitelist`` by ``httpproxy`` (http
kinds only);
:func:`guarded_env` drops ``no_proxy`` from ffmpeg's environment (ffmpeg would bypass the proxy for
hosts listed there). ACE's own reads of a source (ingest reads an HLS playlist with urllib to see
whether it ended) must go through the proxy too: :func:`guarded_opener`.

RTMP and RTSP do not go through the proxy (ffmpeg speaks them over plain TCP or TLS, not http). An
RTMP or RTSP URL is checked by :func:`check_url`; :func:`pinned_url` then writes the checked address
into the URL so that ffmpeg connects to exactly that address. Limits:

* ``rtmps`` and ``rtsps`` are not pinned: TLS needs the host name (server name indication and the certificate).
  Between the check and ffmpeg's own lookup (milliseconds) a hostile DNS server could change its
  answer; only an egress firewall closes that window.
* ``rtmp``: the pinned address also shows in the RTMP ``tcUrl`` that ffmpeg sends; servers that route
  virtual hosts by the tcUrl host need the name, so pinning is the caller's choice.
* ``rtsp``: ffmpeg follows RTSP redirects (``3xx`` answers to ``DESCRIBE``, "Redirecting to" in its
  log) to any host; nothing in ffmpeg can refuse them. A hostile RTSP server can therefore make
  ffmpeg send RTSP requests (text, over TCP) to another host; it cannot make it fetch http.
  Deployments that need this closed must add egress rules for the ffmpeg processes.

The proxy listens on 127.0.0.1 only. Any local process can use it, but it forwards only to the
destinations the policy allows, so it grants nothing a local process could not do directly. It makes
its TLS certificate at start (with the ``cryptography`` package when installed, else the ``openssl``
command) and verifies upstream servers with the system's CAs (``upstream_tls`` to change that), which
is stricter than ffmpeg's default of not verifying: a source with a broken certificate gets 502.

Errors: :class:`~ace.errors.InputError` for a refused URL or address, with a message that says what
was refused and why, and never the URL's user info, path or query (stream keys live there).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import http.server
import ipaddress
import logging
import os
import re
import socket
import shutil
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from ace.errors import AceError, InputError

log = logging.getLogger("ace.netguard")

__all__ = [
    "ALLOWED_SCHEMES",
    "DEFAULT_PORTS",
    "METADATA_ADDRESSES",
    "GUARDED_PROTOCOL_WHITELIST",
    "GUARDED_FORMAT_WHITELIST",
    "IPAddress",
    "address_problem",
    "AddressPolicy",
    "CheckedURL",
    "check_url",
    "pinned_url",
    "guarded_input_options",
    "guard_command",
    "guarded_env",
    "guarded_opener",
    "playlist_problem",
    "Refusal",
    "GuardProxy",
]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: URL schemes a submitted stream URL may use (compared case-insensitively).
ALLOWED_SCHEMES: tuple[str, ...] = ("http", "https", "rtmp", "rtmps", "rtsp", "rtsps")

#: Port each scheme uses when the URL names none (as ffmpeg does).
DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443, "rtmp": 1935, "rtmps": 443, "rtsp": 554, "rtsps": 322}

#: Cloud instance metadata services (AWS, GCP, Azure, OpenStack; AWS IPv6; Alibaba; Oracle).
#: Refused even when a wider allowlist entry (a network, a host name) covers them: only an entry that
#: names the address itself allows one.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192", "169.254.170.2",
))

#: ``-format_whitelist`` for inputs read through :class:`GuardProxy`: the demuxers a live source
#: needs (HLS and the formats of its segments; FLV, MPEG-TS, MP4, Matroska over http). It leaves out
#: demuxers that open URLs named in what they read (dash, imf, concat ...) without the proxy's check.
GUARDED_FORMAT_WHITELIST = "hls,mpegts,mov,matroska,flv,live_flv,aac,mp3,ac3,eac3,webvtt"

#: ``-protocol_whitelist`` for inputs read through :class:`GuardProxy`: ingest's lists plus
#: ``httpproxy``, the protocol ffmpeg's ``tls`` uses to tunnel https through the proxy (without it
#: every https open fails with "Protocol 'httpproxy' not on whitelist").
GUARDED_PROTOCOL_WHITELIST: dict[str, str] = {
    "hls": "http,https,tcp,tls,crypto,httpproxy",
    "http": "http,https,tcp,tls,httpproxy",
}

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
# special-purpose networks that some Python versions still call global
_SPECIAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:db8::/32", "fec0::/10",
))
_HOST_CHARS = re.compile(r"[A-Za-z0-9._\-:]+\Z")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                         "proxy-authenticate", "te", "trailer", "trailers", "transfer-encoding",
                         "upgrade", "host", "content-length"})
_CHUNK = 64 * 1024


# ------------------------------------------------------------------------------------------ addresses


def address_problem(ip: IPAddress | str) -> str | None:
    """Why an address is not a public destination (``"loopback"``, ``"private"``, ``"link-local"``,
    ``"cloud metadata"`` ...), or None for a public one.

    IPv4 addresses inside IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``, 6to4
    ``2002:aabb:ccdd::``) are judged by the IPv4 address they carry.
    """
    ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            why = address_problem(inner)
            return f"{why} (IPv4 {inner} inside IPv6)" if why else None
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.version == 4 and ip in _SHARED:
        return "shared (carrier-grade NAT)"
    if ip.version == 6 and ip.is_site_local:
        return "site-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if any(ip.version == n.version and ip in n for n in _SPECIAL) or not ip.is_global:
        return "special-purpose"
    return None


@dataclass(frozen=True, slots=True)
class _Entry:
    """One allowlist entry: a host name (``*.`` prefix: any subdomain), or a network; maybe a port."""

    text: str
    name: str | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None

    def matches(self, host: str, ip: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            if ip.version != self.network.version or ip not in self.network:
                return False
            # a metadata address needs an entry that names exactly it
            return ip not in METADATA_ADDRESSES or self.network.num_addresses == 1
        if ip in METADATA_ADDRESSES:
            return False
        name = _norm_host(host)
        assert self.name is not None
        if self.name.startswith("*."):
            return name.endswith(self.name[1:])
        return name == self.name


def _norm_host(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def _parse_entry(text: str) -> _Entry:
    """Parse ``host``, ``*.domain``, ``ip``, ``cidr``, each optionally with ``:port`` (``[v6]:port``)."""
    raw = text.strip()
    if not raw:
        raise InputError("empty URL allowlist entry")
    host, port = raw, None
    if raw.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", raw)
        if not m:
            raise InputError(f"bad URL allowlist entry {text!r}: use [v6-address] or [v6-address]:port")
        host, port = m.group(1), m.group(2)
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise InputError(f"bad port in URL allowlist entry {text!r}")
        port = int(port)
    try:
        return _Entry(raw, None, ipaddress.ip_network(host, strict=False), port)
    except ValueError:
        pass
    name = _norm_host(host)
    label = r"[a-z0-9_]([a-z0-9_\-]*[a-z0-9_])?"
    if not re.fullmatch(rf"(\*\.)?{label}(\.{label})*", name):
        raise InputError(f"bad URL allowlist entry {text!r}: expected a host name, *.domain, an IP "
                         "address or a network (CIDR), optionally followed by :port")
    return _Entry(raw, name, None, port)


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class AddressPolicy:
    """Which network destinations ffmpeg may reach: public addresses, plus an operator's allowlist.

    ``allow`` entries (an ``ACE_URL_ALLOWLIST`` setting, say) take these forms::

        cams.local          a host name: whatever it resolves to (any port)
        *.cams.internal     any subdomain of cams.internal
        127.0.0.1           an address
        10.0.0.0/8          a network
        [::1]  fd00::/8     IPv6 (brackets are needed only with a port)
        127.0.0.1:8080      any of the above with a port: only that port
        [::1]:8080

    A cloud metadata address (:data:`METADATA_ADDRESSES`) is allowed only by an entry that names it
    exactly (``169.254.169.254`` or ``169.254.169.254/32``), never by a network or a host name.

    ``resolver(host, port)`` returns the addresses of a host (default: :func:`socket.getaddrinfo`,
    which also reads numeric forms such as ``2130706433`` and ``0x7f.1`` as ``127.0.0.1``); it exists
    so tests can play DNS. ``setting`` names the allowlist in error messages.
    """

    def __init__(self, allow: Iterable[str] = (), *, setting: str = "ACE_URL_ALLOWLIST",
                 resolver: Callable[[str, int], Sequence[str]] | None = None):
        if isinstance(allow, str):
            allow = [a for a in re.split(r"[,\s]+", allow) if a]
        self.entries: tuple[_Entry, ...] = tuple(_parse_entry(a) for a in allow)
        self.setting = setting
        self._resolve = resolver or _getaddrinfo

    def __repr__(self) -> str:
        return f"AddressPolicy({[e.text for e in self.entries]!r})"

    def allowed(self, host: str, ip: IPAddress, port: int) -> bool:
        """True when an allowlist entry covers this destination."""
        return any(e.matches(host, ip, port) for e in self.entries)

    def check_host(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and return its addresses (in the resolver's order, without repeats) when
        every one of them is public or allowlisted. Raises InputError naming the first address that
        is not, or when the host cannot be resolved."""
        if not isinstance(port, int) or not 0 < port < 65536:
            raise InputError(f"invalid port {port!r} for host {host!r}")
        name = host.strip("[]")
        if not name or not _HOST_CHARS.match(name):
            raise InputError(f"invalid host {host!r}: use a host name (letters, digits, '.', '-'; "
                             "international names in punycode) or an IP address")
        try:
            found = [str(ipaddress.ip_address(name))]  # a literal needs no lookup
        except ValueError:
            found = None
        try:
            found = found or self._resolve(name, port)
        except (OSError, UnicodeError) as e:
            raise InputError(f"cannot resolve host {name!r}: {getattr(e, 'strerror', None) or e}") from None
        addrs: list[IPAddress] = []
        for a in found:
            try:
                ip = ipaddress.ip_address(a.split("%", 1)[0] if isinstance(a, str) else a)
            except ValueError:
                raise InputError(f"host {name!r} resolves to {a!r}, which is not an IP address") from None
            if ip not in addrs:
                addrs.append(ip)
        if not addrs:
            raise InputError(f"cannot resolve host {name!r}: no addresses")
        for ip in addrs:
            why = address_problem(ip)
            if why is None or self.allowed(name, ip, port):
                continue
            literal = _is_literal(name, ip)
            what = f"address {ip} is" if literal else f"host {name!r} resolves to {ip},"
            article = "an" if why[0] in "aeiou" else "a"
            raise InputError(f"refused destination {_authority(name, port)}: {what} {article} {why} address; "
                             f"add it to {self.setting} to allow it")
        return addrs


def _is_literal(name: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(name) == ip
    except ValueError:
        return False


def _authority(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ------------------------------------------------------------------------------------------------ URLs


@dataclass(frozen=True, slots=True)
class CheckedURL:
    """A submitted URL that passed :func:`check_url`, with what was checked."""

    #: the URL as submitted (it may hold credentials: do not log it; use :attr:`origin`)
    url: str
    #: lower-case scheme, one of :data:`ALLOWED_SCHEMES`
    scheme: str
    #: host name or address as written in the URL (lower case, IPv6 without brackets)
    host: str
    #: port, the scheme's default when the URL names none
    port: int
    #: every address the host resolved to; all of them passed the policy
    addresses: tuple[IPAddress, ...]

    @property
    def origin(self) -> str:
        """``scheme://host:port``: safe for logs and messages."""
        return f"{self.scheme}://{_authority(self.host, self.port)}"

    @property
    def kind(self) -> str:
        """The ingest kind, as :func:`ace.live.ingest.source_kind` names it: hls, http, rtmp, rtsp."""
        if self.scheme in ("http", "https"):
            path = urllib.parse.urlsplit(self.url).path
            return "hls" if path.lower().endswith(".m3u8") else "http"
        return "rtmp" if self.scheme.startswith("rtmp") else "rtsp"


def check_url(url: str, allow: Iterable[str] = (), *, policy: AddressPolicy | None = None) -> CheckedURL:
    """Vet an untrusted stream URL; returns it with the addresses it resolved to.

    Raises :class:`~ace.errors.InputError` when the scheme is not one of :data:`ALLOWED_SCHEMES`,
    the URL is malformed (spaces, control characters, backslashes, no host, an empty or invalid
    port, user info with a second ``@``, a non-ASCII host), the host cannot be resolved, or one of
    its addresses is not public and not allowed (``allow`` entries, or ``policy``; see
    :class:`AddressPolicy`). Messages name the scheme, host and port only.
    """
    if policy is None:
        policy = AddressPolicy(allow)
    if not isinstance(url, str) or not url.strip():
        raise InputError("empty stream URL")
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", url)
    scheme = m.group(1).lower() if m else None
    allowed = ", ".join(f"{s}://" for s in ALLOWED_SCHEMES)
    if scheme not in ALLOWED_SCHEMES:
        what = f"scheme {scheme!r}" if scheme else "no scheme (a local path?)"
        raise InputError(f"refused stream URL: {what}; only {allowed} URLs are accepted")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InputError(f"refused {scheme} URL: it contains spaces or control characters")
    if not url[len(scheme) + 1:].startswith("//"):
        raise InputError(f"refused {scheme} URL: expected {scheme}://host/...")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as e:
        raise InputError(f"refused {scheme} URL: {e}") from None
    netloc = parts.netloc
    if "\\" in netloc:
        raise InputError(f"refused {scheme} URL: backslash in its host part")
    userinfo, _, hostport = netloc.rpartition("@")
    if "@" in userinfo:
        raise InputError(f"refused {scheme} URL: more than one '@' in its host part (escape '@' in a "
                         "password as %40)")
    if hostport.endswith(":"):
        raise InputError(f"refused {scheme} URL: empty port")
    try:
        port = parts.port
        host = parts.hostname
    except ValueError as e:
        raise InputError(f"refused {scheme} URL: {e}") from None
    if not host:
        raise InputError(f"refused {scheme} URL: no host")
    if not host.isascii():
        raise InputError(f"refused {scheme} URL: non-ASCII host (write international names in punycode)")
    if port == 0:
        raise InputError(f"refused {scheme} URL: port 0")
    port = port or DEFAULT_PORTS[scheme]
    addrs = policy.check_host(host, port)
    return CheckedURL(url, scheme, host, port, tuple(addrs))


def pinned_url(checked: CheckedURL) -> str:
    """The URL with its host replaced by the first checked address, so that ffmpeg connects to
    exactly that address (no second DNS lookup). For ``rtsp`` and ``rtmp`` only.

    http(s) need no pinning (they go through :class:`GuardProxy`, which pins every request) and
    ``rtmps`` and ``rtsps`` cannot be pinned (TLS needs the name). See the module docstring for what pinning does
    not cover (RTSP redirects; the RTMP tcUrl carries the address).
    """
    if checked.scheme not in ("rtsp", "rtmp"):
        raise InputError(f"{checked.scheme} URLs are not pinned: "
                         + ("read them through GuardProxy" if checked.scheme.startswith("http")
                            else "TLS needs the host name"))
    parts = urllib.parse.urlsplit(checked.url)
    userinfo = parts.netloc.rpartition("@")[0]
    ip = checked.addresses[0]
    netloc = (userinfo + "@" if userinfo else "") + _authority(str(ip), checked.port)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# ------------------------------------------------------------------------------------ ffmpeg options


def guarded_input_options(kind: str, proxy_url: str) -> list[str]:
    """ffmpeg input options that send a source of ingest ``kind`` through :class:`GuardProxy`.

    ``hls`` and ``http``: ``-http_proxy proxy_url`` and ``-format_whitelist``
    :data:`GUARDED_FORMAT_WHITELIST` (demuxers that read URLs out of what they download, such as
    dash, imf or concat, would open them without the proxy; hls is the one that may, and the proxy
    inspects its playlists). Nothing for ``rtmp`` and ``rtsp`` (not http: check them with
    :func:`check_url`, pin with :func:`pinned_url`) or ``file``.

    Use :data:`GUARDED_PROTOCOL_WHITELIST` as the input's ``-protocol_whitelist`` too (https needs
    ``httpproxy``), or let :func:`guard_command` do both.
    """
    if kind in ("hls", "http"):
        if not re.fullmatch(r"http://127\.0\.0\.1:\d+", proxy_url or ""):
            raise InputError(f"proxy URL must be http://127.0.0.1:PORT (GuardProxy.url), got {proxy_url!r}")
        return ["-http_proxy", proxy_url, "-format_whitelist", GUARDED_FORMAT_WHITELIST]
    if kind in ("rtmp", "rtsp", "file"):
        return []
    raise InputError(f"unknown source kind {kind!r}")


def guard_command(argv: Sequence[str], kind: str, proxy_url: str) -> list[str]:
    """An ffmpeg command line (as :func:`ace.live.ingest.ingest_command` builds it) with the first
    input read through the proxy: :func:`guarded_input_options` inserted before its ``-i``, and its
    ``-protocol_whitelist`` (which must come before that ``-i``) set to
    :data:`GUARDED_PROTOCOL_WHITELIST`. Other kinds come back unchanged (as a new list)."""
    out = list(argv)
    extra = guarded_input_options(kind, proxy_url)
    if not extra:
        return out
    try:
        i = out.index("-i")
    except ValueError:
        raise InputError("ffmpeg command has no -i input") from None
    wl = [j for j in range(i) if out[j] == "-protocol_whitelist"]
    if wl:
        out[wl[-1] + 1] = GUARDED_PROTOCOL_WHITELIST[kind]
    else:
        extra = [*extra, "-protocol_whitelist", GUARDED_PROTOCOL_WHITELIST[kind]]
    out[i:i] = extra
    return out


def guarded_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a guarded ffmpeg: ``base`` (default ``os.environ``) without ``no_proxy``
    (ffmpeg connects directly to hosts listed there, bypassing ``-http_proxy``) and without proxy
    variables that would send rtmps (``tls``) through another proxy."""
    env = dict(os.environ if base is None else base)
    for k in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        env.pop(k, None)
    return env


def guarded_opener(proxy: GuardProxy) -> urllib.request.OpenerDirector:
    """A :mod:`urllib.request` opener for ACE's own http(s) reads of a source (such as ingest's
    check of an HLS playlist for ``#EXT-X-ENDLIST``): every request, redirects included, goes through
    ``proxy`` (``no_proxy`` and other proxy variables are ignored), https trusts only the proxy's own
    certificate (the proxy verifies the real server), and only http and https are spoken (no
    ``file:``, ``ftp:`` or ``data:``, which a plain :func:`urllib.request.urlopen` would also follow
    or open)."""
    opener = urllib.request.OpenerDirector()
    for handler in (_ForceProxy(proxy.url), urllib.request.UnknownHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(context=proxy.client_context()),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPRedirectHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


class _ForceProxy(urllib.request.ProxyHandler):
    """Send http and https through one proxy, whatever the environment says (no ``no_proxy``)."""

    def __init__(self, proxy_url: str):
        super().__init__({"http": proxy_url, "https": proxy_url})
        self._hostport = proxy_url.split("://", 1)[1]

    def proxy_open(self, req, proxy, type):  # noqa: A002 (urllib's name)
        req.set_proxy(self._hostport, "http")  # https: http.client tunnels with CONNECT
        return None


# -------------------------------------------------------------------------------------------- playlists


def playlist_problem(text: str) -> str | None:
    """Why an HLS playlist must not reach ffmpeg, or None.

    Every URI in it (the lines that are not tags, and ``URI=`` attributes of tags: keys, media
    renditions, init sections) must be relative or use http or https. ffmpeg's HLS demuxer opens any
    protocol whose name starts with "http", ``httpproxy`` included, which connects straight to the
    host it names without the proxy; that one must be whitelisted for https to work at all.
    """
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        uris = [m.group(1) if m.group(1) is not None else m.group(2)
                for m in _URI_ATTR.finditer(line)] if line.startswith("#") else [line]
        for uri in uris:
            m = _SCHEME.match(uri.strip())
            if m and m.group(1).lower() not in ("http", "https"):
                return f"line {n} names a {m.group(1)}: URI (only http and https are allowed)"
    return None


_URI_ATTR = re.compile(r'URI\s*=\s*(?:"([^"]*)"|([^,\s]*))', re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z0-9+.\-]+):")
_SNIFF = 4096  # bytes of a response body looked at to tell a playlist
_BOM_WS = b"\xef\xbb\xbf \t\r\n\x0b\x0c"


def _is_playlist(head: bytes) -> bool:
    return head.lstrip(_BOM_WS)[:7].upper() == b"#EXTM3U"


# ------------------------------------------------------------------------------------------------ proxy


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request :class:`GuardProxy` refused."""

    #: wall-clock time (``time.time()``)
    at: float
    #: GET, HEAD or CONNECT
    method: str
    #: ``scheme://host:port`` for GET/HEAD, ``host:port`` for CONNECT (never a path or query)
    target: str
    #: why, as the policy (or the playlist check) said it
    reason: str


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, guard: GuardProxy):
        self.guard = guard
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup of 127.0.0.1
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Tunnel:
    """The checked target of a CONNECT whose TLS the proxy terminates."""

    __slots__ = ("host", "port", "addrs")

    def __init__(self, host: str, port: int, addrs: list[IPAddress]):
        self.host, self.port, self.addrs = host, port, addrs


class _Refused(Exception):
    """A response that must not reach ffmpeg (a playlist naming another protocol)."""


class _Handler(http.server.BaseHTTPRequestHandler):
    """One client connection of :class:`GuardProxy`: absolute-URI GET/HEAD, CONNECT, and then GET/HEAD
    inside the TLS the proxy terminates for that CONNECT."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # errors get a status line even for a garbled request line
    server: _Server
    tunnel: _Tunnel | None = None

    def setup(self) -> None:
        self.timeout = self.server.guard.timeout
        super().setup()
        self.server.guard._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.guard._track(self.connection, False)
        if self.tunnel is not None:
            with contextlib.suppress(OSError):
                self.connection.close()  # the TLS socket (the server closes only the plain one)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("proxy: " + format, *args)

    def log_request(self, code="-", size="-") -> None:
        pass  # refusals are logged by GuardProxy._refuse

    # ----------------------------------------------------------------------------------- GET/HEAD

    def do_GET(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        guard = self.server.guard
        tunnel = self.tunnel
        try:
            parts = urllib.parse.urlsplit(self.path)
            if tunnel is None:
                scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port or 80
            else:  # inside a CONNECT: the target was checked by CONNECT; origin-form paths only
                scheme, host, port = "https", tunnel.host, tunnel.port
        except ValueError:
            self.send_error(400, "Bad request target")
            return
        if tunnel is None and (scheme != "http" or not host):
            self.send_error(400, "Not a proxy request: expected an absolute http:// URI "
                            "(https goes through CONNECT)")
            return
        if tunnel is not None and not self.path.startswith("/"):
            self.send_error(400, "Inside a CONNECT tunnel requests name a path")
            return
        if self.headers.get("Transfer-Encoding") or (self.headers.get("Content-Length") or "0").strip() != "0":
            self.send_error(400, "Request bodies are not supported")
            return
        target = f"{scheme}://{_authority(host, port)}"
        addrs = tunnel.addrs if tunnel is not None else self._check(host, port, target)
        if addrs is None:
            return
        try:
            upstream = connect_checked(addrs, port, guard.connect_timeout, guard.timeout)
        except OSError as e:
            guard._note_error()
            self.send_error(502, f"Cannot connect to {target}: {e.strerror or e}")
            return
        guard._track(upstream, True)
        try:
            if tunnel is not None:
                try:
                    upstream = guard.upstream_tls.wrap_socket(upstream, server_hostname=host)
                except (OSError, ValueError) as e:
                    guard._note_error()
                    self.send_error(502, f"TLS with {target} failed: {e}")
                    return
            hostport = _authority(host, port) if tunnel is not None else parts.netloc.rpartition("@")[2]
            self._relay_http(upstream, parts, target, hostport)
        finally:
            guard._track(upstream, False)
            with contextlib.suppress(OSError):
                upstream.close()

    def _relay_http(self, upstream: socket.socket, parts: urllib.parse.SplitResult, target: str,
                    hostport: str) -> None:
        guard = self.server.guard
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        drop = _HOP_BY_HOP | {"accept-encoding"} | {
            t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        lines = [f"{self.command} {path} HTTP/1.1", f"Host: {hostport}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in drop]
        lines += ["Accept-Encoding: identity", "Connection: close", "", ""]
        try:
            upstream.sendall("\r\n".join(lines).encode("latin-1"))
            resp = http.client.HTTPResponse(upstream, method=self.command)
            resp.begin()
        except (OSError, http.client.HTTPException, UnicodeError) as e:
            guard._note_error()
            self.send_error(502, f"Bad answer from {target}: {e}")
            return
        try:
            self._answer(resp, target)
        finally:
            resp.close()

    def _answer(self, resp: http.client.HTTPResponse, target: str) -> None:
        """Send upstream's response on, streaming its body; a playlist is read whole and checked."""
        guard = self.server.guard
        bodyless = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        encoding = (resp.getheader("Content-Encoding") or "identity").strip().lower()
        if not bodyless and encoding != "identity":
            guard._note_error()
            self.send_error(502, f"{target} answered with a {encoding}-encoded body (identity was asked for)")
            return
        head = b""
        try:
            if not bodyless:
                # enough to tell a playlist: 7 bytes after any BOM and white space, or the whole body
                while len(head.lstrip(_BOM_WS)) < 7 and len(head) < _SNIFF and (data := resp.read1(_CHUNK)):
                    head += data
                if _is_playlist(head):
                    head = self._read_playlist(resp, head, target)
        except _Refused:
            return
        except (OSError, http.client.HTTPException) as e:
            guard._note_error()
            self.send_error(502, f"Bad answer from {target}: {e}")
            return
        guard._note_forward()
        whole = head if not bodyless and resp.isclosed() else None  # the whole body is in hand
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP_BY_HOP or (k.lower() == "content-length" and self.command == "HEAD"):
                self.send_header(k, v)
        chunked = False
        if bodyless:
            pass
        elif whole is not None:
            self.send_header("Content-Length", str(len(whole)))
        elif resp.chunked:
            chunked = True
            self.send_header("Transfer-Encoding", "chunked")
        elif resp.length is not None:
            self.send_header("Content-Length", str(len(head) + resp.length))
        else:  # the body ends when upstream closes: so must the client connection
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if bodyless:
            return
        try:
            data = head
            while data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                data = resp.read1(_CHUNK)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # a truncated body can only be signalled by closing

    def _read_playlist(self, resp: http.client.HTTPResponse, head: bytes, target: str) -> bytes:
        guard = self.server.guard
        body = bytearray(head)
        while data := resp.read1(_CHUNK):
            body += data
            if len(body) > guard.max_playlist_bytes:
                reason = f"playlist larger than {guard.max_playlist_bytes} bytes"
                break
        else:
            reason = playlist_problem(body.decode("utf-8", "replace"))
        if reason is None:
            resp.close()
            return bytes(body)
        guard._refuse(self.command, target, f"playlist refused: {reason}")
        self.send_error(403, "Refused by ACE's URL guard", f"playlist refused: {reason}")
        raise _Refused

    # ------------------------------------------------------------------------------------ CONNECT

    def do_CONNECT(self) -> None:
        guard = self.server.guard
        self.close_connection = True
        if self.tunnel is not None:
            self.send_error(400, "CONNECT inside a tunnel")
            return
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]/@]+):(\d{1,5})", self.path)
        if not m:
            self.send_error(400, "CONNECT needs host:port")
            return
        host, port = (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), int(m.group(4)))
        target = _authority(host, port)
        addrs = self._check(host, port, target)
        if addrs is None:
            return
        if _buffered(self.rfile, self.connection):
            # bytes sent before the 200 (checked before it is sent: afterwards the client's TLS hello
            # may already be on its way) would be lost to the TLS layer; ffmpeg and urllib wait
            self.send_error(400, "Data sent before the CONNECT was answered")
            return
        self.send_response_only(200, "Connection Established")
        self.end_headers()
        raw = self.connection
        guard._track(raw, False)
        tls = guard._server_tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        guard._track(tls, True)  # (raw is detached now) so that stop() can interrupt the handshake
        self.connection = tls  # finish() closes it
        self.tunnel = _Tunnel(host, port, addrs)
        try:
            tls.do_handshake()
        except (OSError, ValueError) as e:
            log.debug("proxy: TLS with the client for %s failed: %s", target, e)
            return
        # serve the requests inside the tunnel on this same handler (handle() loops while the
        # connection stays open); the target is fixed to what CONNECT named and the policy checked
        with contextlib.suppress(OSError):
            self.rfile.close()
        self.rfile = tls.makefile("rb", self.rbufsize)
        self.wfile = socketserver._SocketWriter(tls)  # type: ignore[attr-defined]
        self.close_connection = False

    # ------------------------------------------------------------------------------------- common

    def _check(self, host: str, port: int, target: str) -> list[IPAddress] | None:
        guard = self.server.guard
        try:
            return guard.policy.check_host(host, port)
        except InputError as e:
            guard._refuse(self.command, target, str(e))
            self.send_error(403, "Refused by ACE's URL guard", str(e))
            return None


def connect_checked(addrs: Sequence[IPAddress], port: int, connect_timeout: float, timeout: float) -> socket.socket:
    """A TCP connection to the first of ``addrs`` that answers (the checked addresses, never a name),
    ``connect_timeout`` to connect and ``timeout`` for each read and write after."""
    err: OSError | None = None
    for ip in addrs:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.settimeout(connect_timeout)
            s.connect((str(ip), port))
            s.settimeout(timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError as e:
            err = e
            s.close()
    raise err or OSError("no address to connect to")


def _buffered(rfile, sock: socket.socket) -> bool:
    """Whether the client sent bytes after its CONNECT head that already sit in ``rfile``'s buffer."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(rfile.peek())  # no blocking read: the socket is non-blocking
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)


def _tls_identity() -> tuple[bytes, bytes]:
    """A fresh self-signed certificate and its key (PEM) for the TLS the proxy terminates: made with
    the ``cryptography`` package when it is installed, else with the ``openssl`` command."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        pass
    else:
        import datetime

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACE URL guard")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    openssl = shutil.which("openssl")
    if not openssl:
        raise AceError("GuardProxy needs the cryptography package or the openssl command to make its "
                       "TLS certificate")
    with tempfile.TemporaryDirectory(prefix="ace-netguard-") as d:
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "3650", "-subj", "/CN=ACE URL guard",
                        "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem"],
                       check=True, capture_output=True, timeout=60)
        with open(f"{d}/cert.pem", "rb") as c, open(f"{d}/key.pem", "rb") as k:
            return c.read(), k.read()


class GuardProxy:
    """An HTTP forward proxy on 127.0.0.1 that lets ffmpeg reach only what ``policy`` allows.

    ``GuardProxy(policy)`` (or a list of allowlist entries); :meth:`start` it (or use ``with``),
    give ffmpeg :attr:`url` through :func:`guarded_input_options`, :meth:`stop` it when done. One
    proxy can serve any number of ffmpeg processes at once (a thread per client connection).

    Requests:

    * ``GET``/``HEAD`` of an absolute ``http://`` URI: the target is checked, the proxy connects to
      the checked address and relays.
    * ``CONNECT host:port`` (https): the target is checked; then the proxy answers the TLS itself
      with a certificate of its own (made at :meth:`start`; ffmpeg does not verify certificates unless
      told to, and :func:`guarded_opener` trusts exactly this one), reads the requests inside, and
      sends each to the checked address over a new TLS connection that verifies the real server with
      ``upstream_tls`` (default: the system's CAs and the host name). The proxy must see inside:
      a playlist fetched over https is as dangerous as one over http.
    * every response body that is an HLS playlist (it starts with ``#EXTM3U``, whatever its type or
      name) is read whole (up to ``max_playlist_bytes``) and refused with 403 when it names a URI of
      another protocol (:func:`playlist_problem`). Other bodies are streamed in 64 KiB pieces, never
      held whole. Upstream is asked for ``identity`` encoding; a compressed body is refused (502),
      since it could not be checked.

    Other methods get 501, a malformed request 400, a refused destination 403 (recorded in
    :attr:`refusals`), an unreachable or failing one 502. Upstream requests carry
    ``Connection: close`` (one connection per request); the client connection is kept alive when the
    response length is known (``Content-Length``, or re-chunked). ``Range`` and other end-to-end
    headers pass through.

    ``timeout``: seconds a connection (client, upstream) may sit idle; ``connect_timeout``: seconds to
    connect upstream.
    """

    def __init__(self, policy: AddressPolicy | Iterable[str] = (), *, timeout: float = 30.0,
                 connect_timeout: float = 10.0, upstream_tls: ssl.SSLContext | None = None,
                 max_playlist_bytes: int = 8 << 20, keep_refusals: int = 100):
        self.policy = policy if isinstance(policy, AddressPolicy) else AddressPolicy(policy)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.upstream_tls = upstream_tls or ssl.create_default_context()
        self.max_playlist_bytes = int(max_playlist_bytes)
        self._refusals: collections.deque[Refusal] = collections.deque(maxlen=keep_refusals)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cert_pem = b""
        self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        #: requests refused since start (all of them; :attr:`refusals` keeps the newest)
        self.refused = 0
        #: requests forwarded (and answered by upstream)
        self.forwarded = 0
        #: forwarded requests that failed upstream (502)
        self.errors = 0

    # --------------------------------------------------------------------------------- lifecycle

    def start(self) -> GuardProxy:
        """Make the TLS certificate, listen on an ephemeral port of 127.0.0.1 and serve in a daemon
        thread; returns self."""
        if self._server is not None:
            return self
        if not self._cert_pem:
            cert, key = _tls_identity()
            with tempfile.TemporaryDirectory(prefix="ace-netguard-") as d:
                path = os.path.join(d, "identity.pem")
                with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                    f.write(key + cert)
                self._server_tls.load_cert_chain(path)
            self._cert_pem = cert
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"ace-netguard-{self.port}", daemon=True)
        self._thread.start()
        log.info("URL guard proxy listening on %s (%r)", self.url, self.policy)
        return self

    def stop(self) -> None:
        """Stop serving, free the port and close every open connection. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            socks = list(self._sockets)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GuardProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise AceError("GuardProxy is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the value for ffmpeg's ``-http_proxy``."""
        return f"http://127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context for https through this proxy: it trusts the proxy's certificate and
        nothing else (the name is not checked: the proxy has one certificate for every host, and it
        verifies the real server itself)."""
        if not self._cert_pem:
            raise AceError("GuardProxy has not been started")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=self._cert_pem.decode("ascii"))
        return ctx

    # ------------------------------------------------------------------------------------ status

    @property
    def refusals(self) -> list[Refusal]:
        """The newest refused requests, oldest first."""
        with self._lock:
            return list(self._refusals)

    def status(self) -> dict[str, object]:
        """Counters and the last refusal, for a status page."""
        with self._lock:
            last = self._refusals[-1] if self._refusals else None
            return {"running": self.running, "forwarded": self.forwarded, "refused": self.refused,
                    "errors": self.errors, "open_connections": len(self._sockets),
                    "last_refusal": None if last is None else f"{last.method} {last.target}: {last.reason}"}

    # ---------------------------------------------------------------------------------- internal

    def _refuse(self, method: str, target: str, reason: str) -> None:
        with self._lock:
            self.refused += 1
            self._refusals.append(Refusal(time.time(), method, target, reason))
        log.warning("URL guard refused %s %s: %s", method, target, reason)

    def _note_forward(self) -> None:
        with self._lock:
            self.forwarded += 1

    def _note_error(self) -> None:
        with self._lock:
            self.errors += 1

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)
