"""The back office's web page in a real headless Chromium, on the real app (uvicorn), a real
controller actor on a local Ray instance and a batch job made by the real pipeline: sign-in,
timeline, inline clips that load and seek (HTTP Range), reviews, refused URLs, tenants, escaping."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import threading
import urllib.error
import urllib.request

import pytest

from tests.util import wait_for

CHROMIUM = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ray,
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed"),
    pytest.mark.skipif(not CHROMIUM, reason="no chromium browser (/usr/bin/chromium) to drive"),
]

HOSTILE = "<img src=x onerror=window.__pwned=1>"
TIMEOUT_MS = 20_000


def _http(base: str, method: str, path: str, token: str, body=None, cookie: str | None = None) -> tuple[int, object]:
    """The API as a plain client sees it (not through the page): with a Bearer token, or with a
    ``Cookie`` header instead when ``cookie`` is given."""
    data = json.dumps(body).encode() if body is not None else None
    auth = {"Cookie": cookie} if cookie is not None else {"Authorization": f"Bearer {token}"}
    req = urllib.request.Request(base + path, data=data, method=method, headers=auth | {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")




@pytest.fixture(scope="module")
def site(ray_local, tmp_path_factory, short_show):
    """The app served by uvicorn on 127.0.0.1 (a thread), tokens for two tenants, a finished batch
    job of the sample show (named with markup) and a (failing) live stream, both of tenant acme."""
    import ray
    import uvicorn

    from ace.api.app import build_app
    from ace.api.backend import Backend
    from workers.control import RayStreamControl
    from workers.controller import ControllerActor

    data = tmp_path_factory.mktemp("web") / "data"
    media = data / "media"
    media.mkdir(parents=True)
    shutil.copy(short_show.video, media / "show.mp4")
    shutil.copy(short_show.events, media / "show.events.jsonl")
    settings = {"data_dir": str(data), "cpu_threads": 1, "url_allowlist": ["127.0.0.1"], "api_max_streams": 5}
    controller = ControllerActor.options(num_cpus=0.05, max_concurrency=16).remote(settings)
    backend = Backend(settings, control=RayStreamControl(controller))
    tokens = {"acme": backend.store.create_token("acme")[1], "globex": backend.store.create_token("globex")[1]}

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(build_app(backend), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, 0.1)
        acme = tokens["acme"]
        code, job = _http(base, "POST", "/jobs", acme, {"name": HOSTILE, "items": [{"path": "show.mp4"}]})
        assert code == 201, job
        code, stream = _http(base, "POST", "/streams", acme, {"url": "http://127.0.0.1:9/never.m3u8", "name": HOSTILE})
        assert code == 201, stream
        done = wait_for(lambda: (j := _http(base, "GET", f"/jobs/{job['id']}", acme)[1])["status"] != "running" and j, 300, 2)
        assert done["status"] == "done", done
        show = done["items"][0]["show_id"]
        code, moments = _http(base, "GET", f"/streams/{show}/moments", acme)
        assert code == 200 and moments and any(m["clip"] for m in moments), moments
        yield {"base": base, "tokens": tokens, "job": job["id"], "show": show, "stream": stream["id"], "backend": backend}
    finally:
        for tenant in tokens:
            try:
                for st in ray.get(controller.status.remote(tenant=tenant), timeout=30):
                    if st.get("status") not in ("ended", "failed", "stopped"):
                        ray.get(controller.stop.remote(st["id"], tenant=tenant), timeout=60)
            except Exception:  # noqa: BLE001 - best effort: the controller is killed next
                pass
        ray.kill(controller)
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def browser():
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _sign_in(page, site, tenant: str) -> None:
    page.goto(site["base"] + "/")
    page.get_by_label("API token").fill(site["tokens"][tenant])
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("who")).to_have_text(f"Signed in as {tenant}")


def test_sign_in_with_a_token_and_out(page, site):
    page.goto(site["base"] + "/")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.get_by_label("API token").fill("ace_00000000_forged")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_have_text("unknown or revoked API token")
    expect(page.locator("#app")).to_be_hidden()
    _sign_in(page, site, "acme")
    expect(page.locator("#app")).to_be_visible()
    assert page.evaluate("fetch('/me').then(r => r.json())") == {"tenant": "acme"}
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    from ace.api.app import COOKIE

    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies[COOKIE]["value"]  # a session secret, not the API token
    assert session != site["tokens"]["acme"] and site["tokens"]["acme"] not in json.dumps(list(cookies.values()))
    assert cookies[COOKIE]["httpOnly"] and cookies[COOKIE]["sameSite"] == "Strict"
    assert _http(site["base"], "GET", "/me", "", cookie=f"{COOKIE}={session}") == (200, {"tenant": "acme"})
    page.reload()  # the session survives a reload
    expect(page.get_by_test_id("who")).to_have_text("Signed in as acme")
    page.get_by_test_id("sign-out").click()
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("fetch('/me').then(r => r.status)") == 401
    assert COOKIE not in {c["name"] for c in page.context.cookies()}
    # sign-out ended the session on the server: the old cookie value, replayed, is refused
    assert _http(site["base"], "GET", "/me", "", cookie=f"{COOKIE}={session}")[0] == 401


def test_show_timeline_clips_play_seek_and_review(page, site):
    token, show = site["tokens"]["acme"], site["show"]
    moments = _http(site["base"], "GET", f"/streams/{show}/moments", token)[1]
    _sign_in(page, site, "acme")
    job = page.locator(f'[data-testid="job"][data-id="{site["job"]}"]')
    expect(job.get_by_test_id("job-status")).to_have_text("done")
    expect(job.get_by_test_id("job-progress")).to_have_text("100%")
    job.locator(f'[data-testid="job-item"][data-show="{show}"]').get_by_test_id("open-show").click()

    # the timeline: one mark per moment, along the show; a mark selects its clip
    marks = page.locator('#timeline [data-testid="mark"]')
    expect(marks).to_have_count(len(moments))
    assert sorted(marks.evaluate_all("els => els.map(e => e.dataset.moment)")) == sorted(m["id"] for m in moments)
    target = next(m for m in moments if m["clip"])
    page.locator(f'#timeline [data-moment="{target["id"]}"]').click()
    card = page.locator(f'#clips [data-testid="clip"][data-moment="{target["id"]}"]')
    expect(card).to_have_class("card selected")
    expect(page.locator('#timeline rect.selected')).to_have_count(1)
    expect(card.get_by_test_id("clip-score")).to_have_text(f"{target['score']:.2f}")
    expect(page.locator('#clips [data-testid="clip"]')).to_have_count(len(moments))

    # the clip plays inline: metadata loads, seeking works (HTTP Range), captions and thumbnail load
    video = card.get_by_test_id("video")
    assert video.get_attribute("preload") == "metadata"
    assert video.get_attribute("src") == f"/clips/{target['id']}/video"
    video.scroll_into_view_if_needed()
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=video.element_handle(), timeout=TIMEOUT_MS)
    duration = video.evaluate("v => v.duration")
    assert duration > 1.0 and video.evaluate("v => v.error") is None
    seeked = video.evaluate("""v => new Promise((ok, bad) => {
        v.addEventListener('seeked', () => ok(v.currentTime), {once: true});
        v.addEventListener('error', () => bad(new Error('media error ' + (v.error && v.error.code))), {once: true});
        v.currentTime = v.duration * 0.6;
    })""")
    assert abs(seeked - duration * 0.6) < 0.5, (seeked, duration)
    page.wait_for_function("v => v.readyState >= 2", arg=video.element_handle(), timeout=TIMEOUT_MS)
    assert video.evaluate("v => v.currentTime") > 0
    if target["clip"]["captions"]:
        track = card.locator("video track")
        assert track.get_attribute("kind") == "captions" and track.get_attribute("src") == target["clip"]["captions"]
        page.wait_for_function("t => t.readyState === 2", arg=track.element_handle(), timeout=TIMEOUT_MS)
    if target["clip"]["thumbnail"]:
        page.wait_for_function("i => i.complete && i.naturalWidth > 0",
                               arg=card.get_by_test_id("thumbnail").element_handle(), timeout=TIMEOUT_MS)

    # approve: the page shows the verdict, the API then reports it, and a reload still shows it
    expect(card.get_by_test_id("verdict")).to_have_text("not reviewed")
    card.get_by_test_id("approve").click()
    expect(card.get_by_test_id("verdict")).to_have_text("approved")
    expect(card.get_by_test_id("approve")).to_have_attribute("aria-pressed", "true")
    again = {m["id"]: m for m in _http(site["base"], "GET", f"/streams/{show}/moments", token)[1]}
    assert again[target["id"]]["review"] == "approve"
    page.wait_for_timeout(3500)  # a refresh of the list keeps the verdict and the video element
    expect(card.get_by_test_id("verdict")).to_have_text("approved")
    assert video.evaluate("v => v.currentTime") > 0
    card.get_by_test_id("reject").click()
    expect(card.get_by_test_id("verdict")).to_have_text("rejected")
    again = {m["id"]: m for m in _http(site["base"], "GET", f"/streams/{show}/moments", token)[1]}
    assert again[target["id"]]["review"] == "reject"


def test_timeline_legend_shows_the_colours_of_the_bars(page, site):
    import re

    def with_more_moments(route):  # the show's real moments, plus one of each band's score
        resp = route.fetch()
        real = resp.json()
        extra = [{"id": f"fake-{i}", "stream_id": site["show"], "start": 2.0 + 8 * i, "end": 6.0 + 8 * i, "score": score,
                  "peak": 4.0 + 8 * i, "reasons": [], "transcript": "", "clip": None, "review": None}
                 for i, score in enumerate((0.3, 0.59, 0.6, 0.79, 0.8, 1.0))]
        route.fulfill(response=resp, json=real + extra)

    page.route(re.compile(rf"/streams/{re.escape(site['show'])}/moments"), with_more_moments)
    _sign_in(page, site, "acme")
    job = page.locator(f'[data-testid="job"][data-id="{site["job"]}"]')
    job.locator(f'[data-testid="job-item"][data-show="{site["show"]}"]').get_by_test_id("open-show").click()
    marks = page.locator('#timeline [data-testid="mark"]')
    expect(marks.first).to_be_visible()
    # the colours as the browser paints them (computed styles), not as the page's code names them
    legend = dict(page.get_by_test_id("legend-swatch").evaluate_all(
        "els => els.map(e => [e.dataset.band, getComputedStyle(e).backgroundColor])"))
    bars = marks.evaluate_all("els => els.map(e => [e.dataset.band, getComputedStyle(e).fill, Number(e.dataset.score)])")
    assert len(legend) == 3 and len(set(legend.values())) == 3, legend  # one swatch, one colour per band
    assert all(c.startswith("rgb(") for c in legend.values()), legend
    assert {b for b, _f, _s in bars} == set(legend), bars  # every band has bars here
    for band, fill, score in bars:
        assert band in legend and fill == legend[band], (band, fill, score, legend)
    # each band's legend item names its score range, and the bars sit in the band their score says
    ranges = dict(page.get_by_test_id("legend-item").evaluate_all("els => els.map(e => [e.dataset.band, e.textContent])"))
    assert list(ranges) == ["low", "mid", "high"], ranges
    lows, highs = float(ranges["mid"].split("–")[0].split()[-1]), float(ranges["high"].split("≥")[1])
    for band, _fill, score in bars:
        assert band == ("low" if score < lows else "mid" if score < highs else "high"), (band, score, ranges)
    if os.environ.get("ACE_WEB_SCREENSHOTS"):  # for a person to look at: ACE_WEB_SCREENSHOTS=/some/folder
        page.get_by_test_id("detail").screenshot(path=os.path.join(os.environ["ACE_WEB_SCREENSHOTS"], "timeline.png"))
        page.screenshot(path=os.path.join(os.environ["ACE_WEB_SCREENSHOTS"], "page.png"), full_page=True)


def _open_show(page, site) -> None:
    job = page.locator(f'[data-testid="job"][data-id="{site["job"]}"]')
    job.locator(f'[data-testid="job-item"][data-show="{site["show"]}"]').get_by_test_id("open-show").click()


def _rank_text(m: dict) -> str:
    return f"#{m['rank']}" if m["rank"] > 0 else "unranked"


def _confidence_text(m: dict) -> str:  # the page rounds half up (Math.round)
    return f"confidence {math.floor(m['confidence'] + 0.5)}/100"


def _by_rank(moments: list[dict]) -> list[str]:
    """The ids best first: ranked ones by rank, then the unranked ones (rank 0) by time."""
    return [m["id"] for m in sorted(moments, key=lambda m: (m["rank"] == 0, m["rank"], m["start"], m["id"]))]


def _by_time(moments: list[dict]) -> list[str]:
    return [m["id"] for m in sorted(moments, key=lambda m: (m["start"], m["id"]))]


def _card_ids(page) -> list[str]:
    return page.locator('#clips [data-testid="clip"]').evaluate_all("els => els.map(e => e.dataset.moment)")


def test_clips_and_marks_show_the_rank_and_confidence_of_real_moments(page, site):
    token, show = site["tokens"]["acme"], site["show"]
    moments = _http(site["base"], "GET", f"/streams/{show}/moments?order=rank", token)[1]
    assert moments and moments[0]["rank"] == 1, moments  # the pipeline ranked the show's moments
    _sign_in(page, site, "acme")
    _open_show(page, site)
    cards = page.locator('#clips [data-testid="clip"]')
    expect(cards).to_have_count(len(moments))
    expect(page.get_by_test_id("clip-order")).to_have_value("rank")  # best first by default
    assert _card_ids(page) == _by_rank(moments)
    for m in moments:
        card = page.locator(f'#clips [data-testid="clip"][data-moment="{m["id"]}"]')
        expect(card.get_by_test_id("clip-rank")).to_have_text(_rank_text(m))
        expect(card.get_by_test_id("clip-confidence")).to_have_text(_confidence_text(m))
        expect(card.get_by_test_id("clip-score")).to_have_text(f"{m['score']:.2f}")  # the raw score is still shown
        if m["strong"]:
            expect(card.get_by_test_id("weak-tag")).to_be_hidden()
            assert card.get_attribute("data-strong") == "true"
        else:
            expect(card.get_by_test_id("weak-tag")).to_have_text("top few")
            assert card.get_attribute("data-strong") == "false"
        mark = page.locator(f'#timeline [data-testid="mark"][data-moment="{m["id"]}"]')
        label = mark.get_attribute("aria-label")
        assert _rank_text(m) in label and _confidence_text(m) in label, (label, m)
        assert _rank_text(m) in mark.locator("title").text_content() and _confidence_text(m) in mark.locator("title").text_content()
    best = moments[0]
    label = page.locator(f'#timeline [data-testid="mark-rank"][data-for="{best["id"]}"]')
    expect(label).to_have_text("#1")  # the best moment's mark carries its rank on the timeline
    expect(label).to_be_visible()
    assert _confidence_text(best) in label.get_attribute("title")
    page.get_by_test_id("clip-order").select_option("time")
    assert _card_ids(page) == _by_time(moments)


def test_the_clip_list_sorts_by_rank_or_time_and_weak_moments_are_marked(page, site):
    import re

    fakes: list[dict] = []

    def with_more_moments(route):  # the show's real moments, plus ranked ones placed against their rank
        resp = route.fetch()
        real = resp.json()
        top = max([m["rank"] for m in real] + [0])
        extra = [(70.0, top + 1, 64.4, True), (50.0, top + 2, 38.6, False), (30.0, top + 3, 21.0, False), (10.0, 0, 55.0, True)]
        fakes[:] = [{"id": f"fake-{i}", "stream_id": site["show"], "start": start, "end": start + 4.0, "score": 0.5, "rank": rank,
                     "confidence": conf, "strong": strong, "peak": start + 2.0, "reasons": [], "transcript": "", "clip": None,
                     "review": None} for i, (start, rank, conf, strong) in enumerate(extra)]
        route.fulfill(response=resp, json=real + fakes)

    page.route(re.compile(rf"/streams/{re.escape(site['show'])}/moments"), with_more_moments)
    real = _http(site["base"], "GET", f"/streams/{site['show']}/moments", site["tokens"]["acme"])[1]
    _sign_in(page, site, "acme")
    _open_show(page, site)
    cards = page.locator('#clips [data-testid="clip"]')
    expect(cards).to_have_count(len(real) + 4)
    everything = real + fakes
    rank_order, time_order = _by_rank(everything), _by_time(everything)
    assert rank_order != time_order  # the fakes make the two orders differ
    assert _card_ids(page) == rank_order

    order = page.get_by_test_id("clip-order")
    order.select_option("time")
    assert _card_ids(page) == time_order
    page.wait_for_timeout(3500)  # a refresh of the list keeps the chosen order
    assert _card_ids(page) == time_order
    assert page.locator('#timeline [data-testid="mark"]').count() == len(everything)  # the timeline is not filtered
    order.select_option("rank")
    assert _card_ids(page) == rank_order

    # weak moments (not strong: only among the show's best few) are marked and dimmer, in the list and on the timeline
    strong, weak = page.locator('#clips [data-moment="fake-0"]'), page.locator('#clips [data-moment="fake-1"]')
    expect(weak.get_by_test_id("weak-tag")).to_be_visible()
    expect(weak.get_by_test_id("weak-tag")).to_have_text("top few")
    expect(page.locator('#clips [data-moment="fake-2"]').get_by_test_id("weak-tag")).to_be_visible()
    expect(strong.get_by_test_id("weak-tag")).to_be_hidden()
    expect(weak.get_by_test_id("clip-rank")).to_have_text(_rank_text(fakes[1]))
    expect(weak.get_by_test_id("clip-confidence")).to_have_text("confidence 39/100")
    expect(strong.get_by_test_id("clip-confidence")).to_have_text("confidence 64/100")
    expect(page.locator('#clips [data-moment="fake-3"]').get_by_test_id("clip-rank")).to_have_text("unranked")
    opacity = "e => Number(getComputedStyle(e).opacity)"
    assert weak.evaluate(opacity) < strong.evaluate(opacity) == 1.0
    fill_opacity = "e => Number(getComputedStyle(e).fillOpacity)"
    weak_mark = page.locator('#timeline [data-testid="mark"][data-moment="fake-1"]')
    strong_mark = page.locator('#timeline [data-testid="mark"][data-moment="fake-0"]')
    assert weak_mark.evaluate(fill_opacity) < strong_mark.evaluate(fill_opacity) == 1.0
    assert "top few" in weak_mark.get_attribute("aria-label") and "top few" not in strong_mark.get_attribute("aria-label")
    expect(page.get_by_test_id("legend-weak")).to_contain_text("top few")
    if os.environ.get("ACE_WEB_SCREENSHOTS"):
        page.get_by_test_id("detail").screenshot(path=os.path.join(os.environ["ACE_WEB_SCREENSHOTS"], "ranked.png"))


def test_a_finished_stream_shows_no_live_lag(page, site):
    """A stream that ended, stopped or failed has no live lag: its row shows none (its last lag
    would read as current), while a running stream's row shows its lag."""
    import re

    from ace.live.ingest import FINAL_STATUSES

    extra = [{"id": f"fake-{st}", "name": f"Room {st}", "tenant": "acme", "status": st, "lag_s": 4.2, "analysed_until": 60.0,
              "moments": 1, "clips": 1, "reconnects": 0} for st in ("running", *sorted(FINAL_STATUSES))]

    def with_more_streams(route):  # the real list, plus a stream in each state with a last lag of 4.2 s
        resp = route.fetch()
        route.fulfill(response=resp, json=resp.json() + extra)

    page.route(re.compile(r"/streams$"), with_more_streams)
    page.route(re.compile(r"/streams/fake-[a-z]+/moments"), lambda route: route.fulfill(json=[]))
    page.route(re.compile(r"/streams/fake-[a-z]+/ramp"), lambda route: route.fulfill(json={"level": None, "history": []}))
    _sign_in(page, site, "acme")
    for st in sorted(FINAL_STATUSES):
        row = page.locator(f'[data-testid="stream-row"][data-id="fake-{st}"]')
        expect(row.get_by_test_id("stream-status")).to_have_text(st)
        expect(row.get_by_test_id("stream-lag")).to_have_text("–")
        expect(row.get_by_test_id("stop-stream")).to_have_count(0)
    running = page.locator('[data-testid="stream-row"][data-id="fake-running"]')
    expect(running.get_by_test_id("stream-lag")).to_have_text("4.2 s")
    # the real stream of the fixture cannot connect: once it has failed, it shows no lag either
    real = page.locator(f'[data-testid="stream-row"][data-id="{site["stream"]}"]')
    expect(real.get_by_test_id("stream-status")).to_contain_text("failed", timeout=90_000)
    expect(real.get_by_test_id("stream-lag")).to_have_text("–")
    if os.environ.get("ACE_WEB_SCREENSHOTS"):
        page.locator("#streams").screenshot(path=os.path.join(os.environ["ACE_WEB_SCREENSHOTS"], "streams.png"))
    # nor does the stream's detail line
    page.locator('[data-testid="stream-row"][data-id="fake-ended"]').get_by_test_id("open-stream").click()
    expect(page.get_by_test_id("detail-meta")).to_contain_text("ended")
    expect(page.get_by_test_id("detail-meta")).not_to_contain_text("lag")
    page.locator('[data-testid="stream-row"][data-id="fake-running"]').get_by_test_id("open-stream").click()
    expect(page.get_by_test_id("detail-meta")).to_contain_text("lag 4.2 s")


def test_submitting_streams_shows_refusals_and_lists_them(page, site):
    token = site["tokens"]["acme"]
    refused = "http://169.254.169.254/x.m3u8"
    code, answer = _http(site["base"], "POST", "/streams", token, {"url": refused})
    assert code == 422 and answer["error"]
    _sign_in(page, site, "acme")
    page.get_by_label("Stream URL").fill(refused)
    page.get_by_label("Stream name").fill("metadata")
    page.get_by_test_id("stream-submit").click()
    expect(page.get_by_test_id("stream-error")).to_have_text(answer["error"])
    expect(page.locator('[data-testid="stream-row"]')).to_have_count(1)  # the fixture's stream only

    page.get_by_label("Stream URL").fill("http://127.0.0.1:9/never.m3u8")
    page.get_by_label("Stream name").fill("Room Two")
    page.get_by_label("Category").select_option("beauty")
    page.get_by_label("Products (comma-separated)").fill("lipstick, mascara")
    page.get_by_test_id("stream-submit").click()
    expect(page.get_by_test_id("stream-error")).to_have_text("")
    expect(page.get_by_test_id("stream-ok")).to_contain_text("Submitted: room-two-", ignore_case=True)
    row = page.locator('[data-testid="stream-row"]', has_text="Room Two")
    expect(row).to_have_count(1)
    sid = row.get_attribute("data-id")
    listed = {s["id"]: s for s in _http(site["base"], "GET", "/streams", token)[1]}
    assert sid in listed and listed[sid]["name"] == "Room Two"
    # it cannot connect: the list shows it failed (refreshed without reloading the page)
    expect(row.get_by_test_id("stream-status")).to_contain_text("failed", timeout=90_000)
    row.get_by_test_id("open-stream").click()
    expect(page.get_by_test_id("detail-title")).to_contain_text(sid)
    expect(page.get_by_test_id("ramp-level")).to_have_text("–")


def test_a_tenant_sees_only_its_own_streams_and_jobs(page, site):
    _sign_in(page, site, "globex")
    expect(page.get_by_test_id("streams-updated")).not_to_have_text("")  # one refresh has happened
    expect(page.locator('[data-testid="stream-row"]')).to_have_count(0)
    expect(page.locator('[data-testid="job"]')).to_have_count(0)
    assert site["stream"] not in page.content() and site["show"] not in page.content()
    status = page.evaluate("id => fetch('/streams/' + id + '/moments').then(r => r.status)", site["show"])
    assert status == 404
    status = page.evaluate("id => fetch('/clips/' + id + '/video').then(r => r.status)",
                           _http(site["base"], "GET", f"/streams/{site['show']}/moments", site["tokens"]["acme"])[1][0]["id"])
    assert status == 404


def test_text_from_the_data_is_escaped(page, site):
    _sign_in(page, site, "acme")
    row = page.locator(f'[data-testid="stream-row"][data-id="{site["stream"]}"]')
    expect(row.get_by_test_id("open-stream")).to_have_text(HOSTILE)
    job = page.locator(f'[data-testid="job"][data-id="{site["job"]}"]')
    expect(job.get_by_test_id("job-name")).to_have_text(HOSTILE)
    job.get_by_test_id("open-show").first.click()
    expect(page.get_by_test_id("detail-title")).to_contain_text(HOSTILE)
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator('img[src="x"]').count() == 0


def _clock(sec: float) -> str:
    """Seconds as the page writes them (``m:ss.s``)."""
    m, r = divmod(max(0.0, sec), 60)
    return f"{int(m)}:{r:04.1f}"


def test_product_rows_show_segments_their_clips_and_ad_word_flags(page, site):
    from ace.types import AdWordHit, Clip, Product, ProductSegment

    store, show = site["backend"].store, site["show"]
    c = store.list_clips(show, tenant="acme")[0]
    mug = ProductSegment(show, "mug-01", HOSTILE, 1, c["start"], c["end"], 82.4, ("travel mug",), ("name",))
    lamp = ProductSegment(show, "lamp", "Desk lamp", 1, c["end"] + 2.0, c["end"] + 12.0, 40.0)
    clip = Clip(mug.id, c["path"], c["start"], c["end"], c["mode"], srt_path=c["srt_path"], thumb_path=c["thumb_path"])
    at = (c["start"] + c["end"]) / 2
    hit = AdWordHit("最好", at, at + 0.5, HOSTILE)
    store.save_products(show, [mug, lamp], {mug.id: clip}, [hit], tenant="acme",
                        products=[Product("mug-01", HOSTILE), Product("lamp", "Desk lamp"), Product("pen", "Pen")])
    try:
        _sign_in(page, site, "acme")
        _open_show(page, site)
        rows = page.locator('[data-testid="product-row"]')
        expect(rows).to_have_count(3)
        assert rows.evaluate_all("els => els.map(e => e.dataset.product)") == ["mug-01", "lamp", "pen"]
        row = page.locator('[data-testid="product-row"][data-product="mug-01"]')
        expect(row.get_by_test_id("product-name")).to_have_text(HOSTILE)  # as text, not markup
        expect(row.get_by_test_id("product-bar")).to_have_count(1)
        expect(row.get_by_test_id("segment-confidence")).to_have_text("confidence 82/100")
        expect(row.get_by_test_id("segment-time")).to_have_text(f"{_clock(c['start'])} – {_clock(c['end'])}")
        flag = f"⚠ 最好 at {_clock(at)}"
        expect(row.get_by_test_id("segment-ad-words").get_by_test_id("ad-word")).to_have_text(flag)
        expect(row.get_by_test_id("product-flag")).to_have_count(1)
        expect(row.get_by_test_id("product-clip-link")).to_have_attribute("href", f"/products/{mug.id}/video")
        lamp_row = page.locator('[data-testid="product-row"][data-product="lamp"]')
        expect(lamp_row.get_by_test_id("segment-confidence")).to_have_text("confidence 40/100")
        expect(lamp_row.get_by_test_id("play-product")).to_have_count(0)  # not cut
        expect(page.locator('[data-testid="product-row"][data-product="pen"]')).to_contain_text("Not pitched yet.")
        # the clip the phrase was heard in carries the flag too
        card = page.locator(f'#clips [data-testid="clip"][data-moment="{c["moment_id"]}"]')
        expect(card.get_by_test_id("clip-ad-words").get_by_test_id("ad-word")).to_have_text(flag)
        expect(card.get_by_test_id("clip-ad-words").get_by_test_id("ad-word")).to_have_attribute("title", f"heard: {HOSTILE}")
        # the product clip plays in the page
        row.get_by_test_id("play-product").click()
        video = page.get_by_test_id("product-video")
        expect(video).to_have_attribute("src", f"/products/{mug.id}/video")
        video.scroll_into_view_if_needed()
        page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=video.element_handle(), timeout=TIMEOUT_MS)
        page.wait_for_timeout(3500)  # a refresh keeps the player (the rows are redrawn only when they change)
        assert video.evaluate("v => v.isConnected && v.error === null")
        assert page.evaluate("typeof window.__pwned") == "undefined" and page.locator('img[src="x"]').count() == 0
        # another tenant sees none of it
        assert page.evaluate(f"fetch('/products/{mug.id}/video').then(r => r.status)") in (200, 206)
        assert _http(site["base"], "GET", f"/streams/{show}/products", site["tokens"]["globex"])[0] == 404
    finally:
        store.save_products(show, [], {}, [], tenant="acme", products=[])


def test_a_clip_is_published_from_its_card(page, site):
    """The card's Publish button: without a webhook the page says so; with one (a real local HTTP
    server) the clip is delivered once, signed, and the card shows the receiver's id."""
    import http.server

    from ace.publish import verify_signature

    got: list[tuple[dict, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            answer = b'{"id": "post-1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token, show = site["tokens"]["acme"], site["show"]
    try:
        target = next(m for m in _http(site["base"], "GET", f"/streams/{show}/moments", token)[1] if m["clip"])
        _sign_in(page, site, "acme")
        page.locator(f'[data-testid="job"][data-id="{site["job"]}"]').locator(
            f'[data-testid="job-item"][data-show="{show}"]').get_by_test_id("open-show").click()
        card = page.locator(f'#clips [data-testid="clip"][data-moment="{target["id"]}"]')
        card.get_by_test_id("publish").click()
        expect(card.get_by_test_id("publication")).to_have_text("no publish webhook is set (PUT /settings/publish)")
        code, saved = _http(site["base"], "PUT", "/settings/publish", token,
                            {"url": f"http://127.0.0.1:{server.server_address[1]}/hook"})
        assert code == 200 and saved["secret"], saved
        card.get_by_test_id("publish").click()
        expect(card.get_by_test_id("publication")).to_have_text("published (post-1)")
        assert len(got) == 1
        headers, body = got[0]
        assert verify_signature(saved["secret"], headers["X-ACE-Timestamp"], body, headers["X-ACE-Signature"])
        assert json.loads(body)["clip_id"] == target["id"] and headers["Idempotency-Key"] == target["id"]
        card.get_by_test_id("publish").click()  # published before: shown again, not sent again
        expect(card.get_by_test_id("publication")).to_have_text("published (post-1)")
        assert len(got) == 1
    finally:
        _http(site["base"], "DELETE", "/settings/publish", token)
        server.shutdown()
        server.server_close()
