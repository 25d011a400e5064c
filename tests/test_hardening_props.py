"""Property-based checks of what an attacker controls: the events route's parser (never a 5xx,
never a count for a refused batch) and the URL checker (refuses, or passes only allowed schemes and
public addresses), on random input."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ace.errors import InputError
from ace.live.journal import BatchConflict, EventJournal
from ace.netguard import ALLOWED_SCHEMES, METADATA_ADDRESSES, AddressPolicy, check_url
from ace.types import EVENT_KINDS

# ----------------------------------------------------------------------------------- events route

_surrogates = st.sampled_from(["\ud800", "\udfff", "a\udc80b"])
_texts = st.one_of(st.text(max_size=30), _surrogates, st.text(alphabet=st.characters(codec="utf-8"), max_size=5))
_numbers = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2.5, 1e18, -1, 10**400, 1e7, 1e12, 1e12 + 1]),
)
_json_scalars = st.one_of(st.none(), st.booleans(), _numbers, _texts)
_values = st.one_of(_numbers, _json_scalars, st.lists(_json_scalars, max_size=3), st.dictionaries(_texts, _json_scalars, max_size=3))
_events = st.dictionaries(
    st.sampled_from(["t", "kind", "user", "value", "text", "promoted", "trusted", "batch", "extra"]),
    st.one_of(_values, st.sampled_from(list(EVENT_KINDS) + ["dance", "CHAT", " like "])),
    max_size=8,
) | st.fixed_dictionaries({"t": _numbers, "kind": st.sampled_from(EVENT_KINDS)},
                          optional={"user": _json_scalars, "value": _numbers, "text": _texts})


def _dump(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()  # NaN/Infinity literals and \ud800 escapes included


_bodies = st.one_of(
    st.lists(_events, max_size=6).map(_dump),
    _events.map(_dump),
    st.lists(_events, max_size=6).map(lambda es: b"\n".join(_dump(e) for e in es)),
    st.integers(min_value=1, max_value=100_000).map(lambda n: b"[" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'[{"t": 1, "kind": "chat", "user": ' + b"[" * n + b"]"),
    st.binary(max_size=64),
    _values.map(_dump),
)
_keys = st.one_of(st.none(), st.just(""), st.just("   "), st.just("k" * 201), st.sampled_from(["a", "b", "c"]),
                  st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=12))
_types = st.sampled_from(["application/json", "application/x-ndjson", "text/plain", ""])


@pytest.fixture(scope="module")
def events_route(tmp_path_factory):
    """The real app and its parser; the backend's push goes to a real journal (no Ray needed)."""
    from fastapi.testclient import TestClient

    from ace.api.app import build_app
    from ace.api.backend import Backend, Refused

    folder = tmp_path_factory.mktemp("props")
    backend = Backend({"data_dir": str(folder / "data"), "api_rate": 1e6})
    journal = EventJournal(folder / "events.jsonl")
    last = {}

    async def push_events(tenant, sid, events, batch_id=None):
        try:
            n, repeat = journal.append(events, batch_id)
        except BatchConflict as e:
            raise Refused(str(e)) from None
        last["repeat"] = repeat
        return n

    backend.push_events = push_events
    token = backend.store.create_token("acme")[1]
    return TestClient(build_app(backend), raise_server_exceptions=False), {"Authorization": f"Bearer {token}"}, journal, last


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_bodies, ctype=_types, key=_keys)
def test_events_route_never_fails_and_counts_only_what_it_accepts(events_route, body, ctype, key):
    client, auth, journal, last = events_route
    headers = dict(auth)
    if ctype:
        headers["content-type"] = ctype
    if key is not None:
        headers["idempotency-key"] = key
    before = journal.count
    last.clear()
    try:
        r = client.post("/streams/room-1/events", content=body, headers=headers)
    except UnicodeEncodeError:  # a header value the HTTP client itself cannot send
        return
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json") and r.json()
    if r.status_code == 200:
        n = r.json()["accepted"]
        assert journal.count - before == (0 if last.get("repeat") else n)
    else:
        assert journal.count == before, (r.status_code, r.text[:200])
        assert r.status_code in (400, 409, 413, 422), r.text[:200]


def test_idempotency_keys_are_checked_before_anything_counts(events_route):
    client, auth, journal, _ = events_route
    batch = [{"t": 1.0, "kind": "chat", "user": "u"}]
    before = journal.count
    for bad in ("", " ", "x" * 201):
        r = client.post("/streams/room-1/events", json=batch, headers=auth | {"Idempotency-Key": bad})
        assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"]
    assert journal.count == before
    assert client.post("/streams/room-1/events", json=batch, headers=auth | {"Idempotency-Key": "once"}).json() == {"accepted": 1}
    assert client.post("/streams/room-1/events", json=batch, headers=auth | {"Idempotency-Key": "once"}).json() == {"accepted": 1}
    r = client.post("/streams/room-1/events", json=batch * 2, headers=auth | {"Idempotency-Key": "once"})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"]
    assert journal.count == before + 1
    for body, word in ((b"[" * 100_000, "nested"), (b'[{"t": ' + b"9" * 400 + b', "kind": "chat"}]', "'t'"),
                       (b'[{"t": 1e18, "kind": "chat"}]', "'t'"), (b'[{"t": 1, "kind": "gift", "value": -5}]', "'value'"),
                       (b'[{"t": 1, "kind": "chat", "text": "\\ud800"}]', "surrogate")):
        r = client.post("/streams/room-1/events", content=body, headers=auth | {"content-type": "application/json"})
        assert r.status_code in (400, 422) and word in r.json()["error"], (body[:40], r.text)
    assert journal.count == before + 1


# ----------------------------------------------------------------------------------- URL checker

_ADDRESSES = ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "127.0.0.1", "10.1.2.3", "192.168.0.9", "172.16.5.4",
              "169.254.169.254", "100.100.100.200", "::1", "fe80::1", "fd00::5", "::ffff:127.0.0.1", "0.0.0.0",
              "100.64.0.1", "224.0.0.1", "255.255.255.255", "64:ff9b::a00:1", "2001:db8::1", "198.18.0.1"]
_hosts = st.one_of(st.sampled_from(["cdn.test", "a.b", "localhost", "2130706434", "0x7f.1", "[::1]", "[::ffff:10.0.0.1]",
                                    "127.1", "017700000001", "xn--nxasmq6b", "例え.jp", "a@b", ""]),
                   st.sampled_from(_ADDRESSES).map(lambda a: f"[{a}]" if ":" in a else a),
                   st.text(max_size=12))
_urls = st.one_of(
    st.builds(lambda scheme, user, host, port, path: f"{scheme}://{user}{host}{port}{path}",
              st.sampled_from(list(ALLOWED_SCHEMES) + ["HTTP", "RtSpS", "file", "concat", "data", "gopher", "ftp", "rtspt", "hls+http"]),
              st.sampled_from(["", "u:p@", "a@b@", "evil.com@", "%40@"]),
              _hosts,
              st.sampled_from(["", ":0", ":80", ":99999", ":", ":-1", ":8554"]),
              st.one_of(st.just("/live.m3u8"), st.text(max_size=20))),
    st.text(max_size=60),
)


@settings(max_examples=400, deadline=None)
@given(url=_urls, data=st.data())
def test_url_checker_refuses_or_passes_only_public_addresses(url, data):
    def resolver(host, port):  # DNS answers drawn at random, several addresses at a time
        return data.draw(st.lists(st.sampled_from(_ADDRESSES), min_size=1, max_size=3))

    try:
        checked = check_url(url, policy=AddressPolicy(resolver=resolver))
    except InputError as e:
        assert str(e)
        return
    assert checked.scheme in ALLOWED_SCHEMES and 0 < checked.port < 65536
    for ip in checked.addresses:
        ip = ipaddress.ip_address(ip)
        assert ip.is_global and ip not in METADATA_ADDRESSES, (url, ip)
