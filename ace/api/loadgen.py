"""The load generator of ``ace bench api``: run as a second process, it drives the back office
over loopback HTTP and prints one JSON report on stdout.

Phase 1, events: ``clients`` concurrent clients, each on its own keep-alive connection, post
batches of ``batch`` interaction events to the given streams (round robin) for ``seconds``. With
``rate`` (events a second in all) the clients send on a fixed schedule, as a platform's webhook
would, and each request's latency is measured from the moment it was *due*, so a server that
falls behind is charged for the queueing too; with ``rate`` 0 each client sends as fast as it is
answered (a saturation test). Phase 2, submissions: ``submits`` stream
submissions sent at once. Every answer is classified; nothing is retried, so the counts are what
the server said.

    python -m ace.api.loadgen --url http://127.0.0.1:8000 --token ace_... --stream s1 --stream s2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))] * 1000, 1)


async def events_phase(url: str, token: str, streams: list[str], clients: int, seconds: float, batch: int,
                       rate: float = 0.0) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    lat: list[float] = []
    codes: dict[str, int] = {}
    accepted: dict[str, int] = {s: 0 for s in streams}
    errors: list[str] = []
    trace: list[tuple[float, float]] = []
    warm = 0
    ready = asyncio.Event()
    clock = {"t0": 0.0, "stop": 0.0}

    interval = clients * batch / rate if rate > 0 else 0.0  # seconds between one client's requests

    async def client(k: int) -> None:
        nonlocal warm
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30.0) as ac:
            # warm-up, not timed: the connection, the token and the stream's actor handle are
            # looked up once per client and stream, as on a server that has been running a while
            for sid in streams:
                r = await ac.post(f"/streams/{sid}/events", json=[{"t": 0.0, "kind": "like", "user": f"c{k}"}],
                                  headers={"Idempotency-Key": uuid.uuid4().hex})
                if r.status_code == 200:
                    accepted[sid] += int(r.json()["accepted"])
            warm += 1
            if warm == clients:
                clock["t0"] = time.monotonic()
                clock["stop"] = clock["t0"] + seconds
                ready.set()
            await ready.wait()
            t0, stop = clock["t0"], clock["stop"]
            n = 0
            while time.monotonic() < stop:
                sid = streams[(k + n) % len(streams)]
                t = round(time.monotonic() - t0, 3)
                body = [{"t": t, "kind": "chat" if i % 3 else "like", "user": f"c{k}-u{i % 50}", "text": "wow"} for i in range(batch)]
                if interval:
                    due = t0 + (k / clients + n) * interval
                    if due >= stop:
                        break
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                    started = time.perf_counter() - (time.monotonic() - due)
                else:
                    started = time.perf_counter()
                try:
                    r = await ac.post(f"/streams/{sid}/events", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
                except httpx.HTTPError as e:
                    codes["error"] = codes.get("error", 0) + 1
                    if len(errors) < 5:
                        errors.append(f"{type(e).__name__}: {e}")
                    n += 1
                    continue
                lat.append(time.perf_counter() - started)
                trace.append((round(time.monotonic() - t0, 3), round(lat[-1] * 1000, 1)))
                codes[str(r.status_code)] = codes.get(str(r.status_code), 0) + 1
                if r.status_code == 200:
                    accepted[sid] += int(r.json()["accepted"])
                elif len(errors) < 5:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                n += 1

    await asyncio.gather(*[client(k) for k in range(clients)])
    wall = time.monotonic() - clock["t0"]
    by_second: dict[int, float] = {}
    for at, ms in trace:
        by_second[int(at)] = max(by_second.get(int(at), 0.0), ms)
    total = sum(accepted.values()) - warm * len(streams)  # the rate counts the timed phase only
    return {"clients": clients, "batch": batch, "offered_events_per_s": rate or None, "seconds": round(wall, 2), "requests": len(lat), "codes": codes,
            "accepted_events": total, "accepted_by_stream": accepted, "warm_up_requests": warm * len(streams), "events_per_s": round(total / wall, 1),
            "latency_ms": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99),
                           "max": round(max(lat) * 1000, 1) if lat else None},
            "max_latency_ms_by_second": [by_second.get(i, None) for i in range(int(wall) + 1)], "errors": errors}


async def submit_phase(url: str, token: str, submits: int, target: str) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=submits, max_keepalive_connections=submits)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60.0) as ac:
        started = time.perf_counter()

        async def one(i: int):
            t = time.perf_counter()
            try:
                r = await ac.post("/streams", json={"url": f"{target}?n={i}", "name": f"burst-{i}"})
            except httpx.HTTPError as e:
                return "error", None, time.perf_counter() - t, f"{type(e).__name__}"
            return str(r.status_code), r, time.perf_counter() - t, None

        answers = await asyncio.gather(*[one(i) for i in range(submits)])
        wall = time.perf_counter() - started
        codes: dict[str, int] = {}
        ids, retry_after_missing = [], 0
        for code, r, _t, _e in answers:
            codes[code] = codes.get(code, 0) + 1
            if code == "201":
                ids.append(r.json()["id"])
            elif code in ("429", "503") and "retry-after" not in r.headers:
                retry_after_missing += 1
        listed = {s["id"] for s in (await ac.get("/streams")).json()}
        health = (await ac.get("/healthz")).status_code
    lat = [t for _c, _r, t, _e in answers]
    return {"submits": submits, "seconds": round(wall, 2), "codes": codes, "accepted": len(ids),
            "accepted_ids": ids, "lost": [i for i in ids if i not in listed], "refusals_without_retry_after": retry_after_missing,
            "unanswered": codes.get("error", 0), "latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99)},
            "healthy_after": health == 200}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--stream", action="append", default=[], help="stream id to post events to (repeat)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rate", type=float, default=0.0, help="events a second offered in all (0: as fast as answered)")
    p.add_argument("--submits", type=int, default=100)
    p.add_argument("--submit-url", dest="submit_url", default="http://127.0.0.1:9/never.m3u8",
                   help="URL the burst submits (allowlisted on the bench server; it never answers)")
    a = p.parse_args(argv)
    report: dict = {}
    if a.stream and a.seconds > 0:
        report["events"] = asyncio.run(events_phase(a.url, a.token, a.stream, a.clients, a.seconds, a.batch, a.rate))
    if a.submits > 0:
        report["submissions"] = asyncio.run(submit_phase(a.url, a.token, a.submits, a.submit_url))
    json.dump(report, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
