"""A room's own finality horizon (the audience's term only with an audience feed, the room's own
event delay) and provisional moments: let out once final with respect to everything but the
audience, then confirmed or replaced in place (same id, same files) once final."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ace import media
from ace.config import Settings
from ace.fusion import FusionOptions
from ace.live import analyzer as mod
from ace.live.analyzer import LiveAnalyzer, LiveOptions, MomentGate, finality_horizon
from ace.live.finality import AudienceFeed
from ace.types import Event, Moment, Sentence, Word
from tests.test_live_analyzer import segments  # noqa: F401 - the sample show as 2 s segments (a fixture)


def chat(t: float, user: str = "u") -> Event:
    return Event(t, "chat", user, 1.0, "hi")


def room(tmp_path, options: LiveOptions | None = None, **kw) -> LiveAnalyzer:
    return LiveAnalyzer("sample", Settings(), None, tmp_path / "clips", options=options, **kw)


# ------------------------------------------------------------------------------------------ horizon


def test_the_audience_term_counts_only_in_a_room_with_an_audience_feed(tmp_path):
    fo = FusionOptions()
    assert finality_horizon(fo, audience=False) == pytest.approx(6.0)  # 2 * 2 + max(audio 1, visual 1 + 1)
    assert finality_horizon(fo) == pytest.approx(10.5)
    an = room(tmp_path)
    an._start_at(0.0)
    an._analysed = 100.0
    st = an.stats()
    assert (st["horizon_s"], st["provisional_horizon_s"], st["audience"], st["event_delay_s"]) == (6.0, 6.0, False, 1.0)
    an.push_events([Event(100.5, "like", "u")])  # any kind of event, on time
    st = an.stats()
    assert (st["horizon_s"], st["provisional_horizon_s"], st["audience"], st["event_delay_s"]) == (10.5, 6.0, True, 1.0)
    an._analysed = 100.5 + an.o.look_behind_s + 0.5  # the room went quiet a look-behind ago
    assert not an.audience and an.horizon_s == pytest.approx(6.0)
    # an event more than a look-behind ahead of the analysed time is a bad clock, not an audience
    an.push_events([chat(an.analysed_until + an.o.look_behind_s + 60)])
    assert not an.audience


def test_late_events_raise_the_rooms_horizon_up_to_a_bound(tmp_path):
    an = room(tmp_path)
    an._start_at(0.0)
    an._analysed = 100.0
    # 5 % of the events late: the 90th percentile is on time, the room keeps the default second
    an.push_events([chat(100.0 + i * 0.01, f"u{i}") for i in range(190)] + [chat(93.0, f"x{i}") for i in range(10)])
    assert an.event_delay_s == pytest.approx(1.0) and an.horizon_s == pytest.approx(10.5)
    # most of them 4 s late: it waits for them (2 * 2 + 3 + 2.5 + 4)
    an.push_events([chat(96.0, f"v{i}") for i in range(200)])
    assert an.event_delay_s == pytest.approx(4.0) and an.horizon_s == pytest.approx(13.5)
    assert an.stats()["event_delay_s"] == pytest.approx(4.0)
    # never more than max_event_delay_s (10 s by default)
    an.push_events([chat(40.0, f"w{i}") for i in range(200)])
    assert an.event_delay_s == pytest.approx(10.0) and an.horizon_s == pytest.approx(19.5)
    assert an.provisional_horizon_s == pytest.approx(6.0)
    # its own bound, and the room's delay survives a restart; events pushed again after it do not count
    capped = room(tmp_path, LiveOptions(max_event_delay_s=3.0))
    capped._start_at(0.0)
    capped._analysed = 100.0
    capped.push_events([chat(90.0, f"v{i}") for i in range(50)])
    assert capped.event_delay_s == pytest.approx(3.0)
    state = json.loads(json.dumps(an.state()))
    fresh = room(tmp_path)
    fresh.restore(state)
    assert fresh.event_delay_s == pytest.approx(10.0) and fresh.audience
    replayed = room(tmp_path)
    replayed.restore(json.loads(json.dumps(room(tmp_path).state() | {"analysed_until": 100.0})))
    replayed.push_events([chat(50.0, f"r{i}") for i in range(100)])  # the journal's pending events, 50 s "late"
    assert replayed.event_delay_s == pytest.approx(1.0) and replayed.audience


def test_an_explicit_horizon_overrides_everything(tmp_path):
    an = room(tmp_path, LiveOptions(horizon_s=8.0))
    an._start_at(0.0)
    an._analysed = 100.0
    assert (an.horizon_s, an.provisional_horizon_s) == (8.0, 8.0)
    an.push_events([chat(99.0)] + [chat(90.0, f"v{i}") for i in range(20)])
    assert an.audience and (an.horizon_s, an.provisional_horizon_s) == (8.0, 8.0)
    with pytest.raises(ValueError, match="max_event_delay_s"):
        LiveOptions(event_delay_s=12.0)


def test_audience_feed_state_round_trips():
    feed = AudienceFeed(1.0, 10.0, recent_s=180.0)
    assert feed.delay_s == 1.0 and not feed.active(0.0)
    feed.push([chat(10.0), chat(2.0)], analysed=8.0)
    assert feed.last_t == 10.0 and list(feed.delays) == [0.0, 6.0] and feed.active(100.0)
    again = AudienceFeed(1.0, 10.0)
    again.restore(json.loads(json.dumps(feed.state())))
    assert again.last_t == 10.0 and list(again.delays) == [0.0, 6.0]
    again.restore(None)  # a state from before rooms had a feed
    assert not again.active(0.0) and again.delay_s == 1.0


# ----------------------------------------------------------------------------------- the gate alone


def m(start, end, peak=None, score=0.9):
    return Moment("live", start, end, score, (start + end) / 2 if peak is None else peak)


def test_gate_lets_out_provisional_moments_and_settles_each_once():
    gate = MomentGate("live")
    a, b = m(10.0, 20.0), m(40.0, 50.0)
    # a is final, b only provisional (its end between the two lines)
    out = gate.admit([a, b], final_until=30.0, provisional_until=52.0)
    assert out == [a, b] and set(gate.provisional) == {b.id} and gate.total == 2
    assert gate.admit([a, b], final_until=31.0, provisional_until=54.0) == []  # each once
    # not final yet: nothing settles
    assert gate.settle([b], final_until=45.0) == []
    # the same moment, final now, grown: b's id, the candidate's edges
    grown = m(40.0, 51.0, peak=45.0)
    [(p, final)] = gate.settle([grown], final_until=52.0)
    assert p == b and final.id == b.id and (final.start, final.end) == (40.0, 51.0) and final.fixed_id == b.id
    assert not gate.provisional and gate.replaced == 1 and b.id in [e[0] for e in gate.emitted]
    assert [e for e in gate.emitted if e[0] == b.id] == [(b.id, 40.0, 51.0)]  # its span follows
    assert gate.admit([grown], final_until=60.0, provisional_until=60.0) == []  # never again

    # unchanged: confirmed; no candidate any more: final as it was, once its end is
    c, d = m(70.0, 80.0), m(90.0, 100.0)
    gate.admit([c, d], final_until=60.0, provisional_until=101.0)
    assert gate.settle([c], final_until=79.0) == []
    [(p, final)] = gate.settle([c], final_until=85.0)
    assert final == c and gate.confirmed == 1
    assert gate.settle([], final_until=99.0) == []
    # a same-moment candidate that is not final yet is waited for
    assert gate.settle([m(89.0, 104.0, peak=95.0)], final_until=101.0) == []
    [(p, final)] = gate.settle([], final_until=101.0)
    assert final == d and gate.confirmed == 2 and not gate.provisional


def test_a_provisional_moments_final_version_stays_clear_of_its_neighbours():
    gate = MomentGate("live", min_length=4.0)
    left = m(10.0, 20.0)
    gate.admit([left], final_until=25.0)
    p = m(20.0, 30.0, peak=26.0)
    gate.admit([p], final_until=25.0, provisional_until=31.0)
    # fusion now reaches back into the final moment before it: trimmed to start where that one ends
    [(_, final)] = gate.settle([m(17.0, 32.0, peak=26.0)], final_until=40.0)
    assert (final.start, final.end, final.id) == (20.0, 32.0, p.id)
    # the cut-ahead preview of a provisional moment that will be cut again, and only of that
    q = m(50.0, 60.0)
    gate.admit([q], final_until=40.0, provisional_until=61.0)
    assert gate.preview_settle([q], ahead_until=62.0) == []  # the same edges: nothing to cut again
    [ahead] = gate.preview_settle([m(50.0, 62.0, peak=55.0)], ahead_until=62.0)
    assert ahead.id == q.id and ahead.end == 62.0 and q.id in gate.provisional  # changes nothing
    state = json.loads(json.dumps(gate.state()))
    assert state["provisional"] == [q.id]
    fresh = MomentGate("live")
    fresh.restore(state)
    # provisional at the restart: final as it was, never settled or emitted again
    assert not fresh.provisional and fresh.settle([m(50.0, 62.0, peak=55.0)], 100.0) == []
    assert fresh.admit([m(50.0, 62.0, peak=55.0)], final_until=100.0) == []


# ------------------------------------------------------------------------- the analyzer, real clips


def drive(an: LiveAnalyzer, T: float):
    an._analysed = T
    return an._emit(final=False)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def fused(monkeypatch):
    """What fusion finds, set by the test (the media are the sample show's, cut for real)."""
    found: list[Moment] = []
    monkeypatch.setattr(mod, "fuse_window", lambda *a, **k: list(found))
    return found


def test_a_provisional_clip_is_confirmed_when_its_moment_stays(segments, tmp_path, fused):  # noqa: F811
    an = room(tmp_path, segments_for=lambda t0, t1: segments)
    an.push_events([chat(30.0)])  # the room has an audience
    m0 = Moment("sample", 20.0, 34.0, 0.9, 27.0)
    fused.append(m0)
    assert drive(an, 38.0).moments == [] and m0.id in an._ahead  # cut ahead of the provisional line
    up = drive(an, 40.0)  # 40 - 6 = 34: final but for the audience
    assert up.moments == [m0] and up.provisional == {m0.id} and not up.confirmed | up.replaced
    [clip] = up.clips
    assert (clip.state, clip.revision) == ("provisional", 0) and m0.id in up.latency_s and m0.id not in up.final_latency_s
    assert an.stats()["cuts_ahead_used"] == 1 and Path(clip.path).name == f"{m0.id}.mp4"
    assert drive(an, 42.0).moments == []  # 42 - 10.5 < 34: not final yet
    an._sentences.append(Sentence(30.0, 31.0, "what a save", (Word(30.0, 31.0, "what a save"),)))  # heard since
    up = drive(an, 44.5)
    assert up.moments == [m0] and up.confirmed == {m0.id} and not up.provisional | up.replaced
    [final] = up.clips
    assert (final.state, final.revision, final.path) == ("final", 0, clip.path)
    assert "what a save" in Path(final.srt_path).read_text()  # captions written again; the video not cut again
    assert m0.id in up.final_latency_s and m0.id not in up.latency_s
    st = an.stats()
    assert (st["clips"], st["provisional_clips"], st["confirmed_clips"], st["replaced_clips"]) == (1, 1, 1, 0), st
    assert files(tmp_path / "clips") == [f"{m0.id}{x}" for x in (".jpg", ".mp4", ".srt")]
    assert drive(an, 60.0).moments == [] and an.flush().moments == []
    an.close()


def test_a_provisional_clip_is_replaced_in_place_when_its_moment_grows(segments, tmp_path, fused):  # noqa: F811
    an = room(tmp_path, segments_for=lambda t0, t1: segments)
    an.push_events([chat(30.0)])
    m0 = Moment("sample", 20.0, 34.0, 0.9, 27.0)
    fused.append(m0)
    up = drive(an, 40.0)
    [clip] = up.clips
    assert up.provisional == {m0.id} and media.probe(clip.path).duration == pytest.approx(14.0, abs=0.05)
    # the audience's reaction arrives: the moment grows (a new id from fusion), its end not final yet
    grown = Moment("sample", 20.0, 38.0, 0.9, 30.0)
    fused[:] = [grown]
    assert drive(an, 44.5).moments == []  # 44.5 - 10.5 = 34 < 38: the grown one is waited for
    assert m0.id in an._ahead and an._ahead[m0.id].key == (m0.id, 20.0, 38.0, 30.0)  # its final clip is cut ahead
    up = drive(an, 48.5)
    [final_m] = up.moments
    assert final_m.id == m0.id != grown.id and (final_m.start, final_m.end, final_m.peak) == (20.0, 38.0, 30.0)
    assert up.replaced == {m0.id} and not up.provisional | up.confirmed
    [final] = up.clips
    assert (final.state, final.revision, final.moment_id) == ("final", 1, m0.id) and final.path == clip.path
    assert media.probe(final.path).duration == pytest.approx(18.0, abs=0.05)
    st = an.stats()
    assert (st["provisional_clips"], st["confirmed_clips"], st["replaced_clips"]) == (1, 0, 1), st
    assert st["moments"] == 1 and st["cuts_ahead_used"] == 1
    assert files(tmp_path / "clips") == [f"{m0.id}{x}" for x in (".jpg", ".mp4", ".srt")]  # one clip, not two
    assert drive(an, 70.0).moments == [] and an.flush().moments == []
    an.close()


def test_a_provisional_moment_no_candidate_matches_becomes_final_as_it_was(segments, tmp_path, fused):  # noqa: F811
    an = room(tmp_path, LiveOptions(cut_ahead_s=0), segments_for=lambda t0, t1: segments)
    an.push_events([chat(30.0)])
    m0 = Moment("sample", 20.0, 34.0, 0.9, 27.0)
    fused.append(m0)
    assert drive(an, 40.0).provisional == {m0.id}
    fused.clear()  # fusion no longer finds it: it is not withdrawn
    assert drive(an, 42.0).moments == []
    up = drive(an, 44.5)
    assert up.moments == [m0] and up.confirmed == {m0.id} and [c.state for c in up.clips] == ["final"]
    assert an.stats()["clips"] == 1


def test_a_room_without_an_audience_lets_moments_out_final_at_once(segments, tmp_path, fused):  # noqa: F811
    an = room(tmp_path, LiveOptions(cut_ahead_s=0), segments_for=lambda t0, t1: segments)
    m0 = Moment("sample", 20.0, 34.0, 0.9, 27.0)
    fused.append(m0)
    assert drive(an, 39.5).moments == []
    up = drive(an, 40.0)  # the 6 s horizon: no chat to wait for
    assert up.moments == [m0] and not up.provisional | up.confirmed | up.replaced
    assert [c.state for c in up.clips] == ["final"] and up.latency_s.keys() == up.final_latency_s.keys() == {m0.id}
    assert an.stats()["provisional_clips"] == 0


def test_a_restarted_analyzer_keeps_provisional_moments_as_they_were(segments, tmp_path, fused):  # noqa: F811
    an = room(tmp_path, LiveOptions(cut_ahead_s=0), segments_for=lambda t0, t1: segments)
    an.push_events([chat(30.0)])
    m0 = Moment("sample", 20.0, 34.0, 0.9, 27.0)
    fused.append(m0)
    assert drive(an, 40.0).provisional == {m0.id}
    state = json.loads(json.dumps(an.state()))
    an.close()
    assert state["version"] == 2 and state["provisional"] == [m0.id]
    fresh = room(tmp_path, LiveOptions(cut_ahead_s=0), segments_for=lambda t0, t1: [])
    fresh.restore(state)
    fresh._warm_from = None  # nothing to warm up on here
    fused[:] = [Moment("sample", 20.0, 38.0, 0.9, 30.0)]  # it grew meanwhile: still the same moment
    assert drive(fresh, 60.0).moments == [] and fresh.flush().moments == []
    assert fresh.stats()["moments"] == 1 and fresh.stats()["clips"] == 0
