"""The clip loop: ``clip_view`` / ``clip_click`` events parse, are tallied with per-user caps,
raise a room's ramp value against an otherwise identical room, and the simulator reports what
the loop changes."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from ace.events import event_to_obj, load_events
from ace.policy.live import RoomTally
from ace.policy.ramp import RampPolicy
from ace.policy.simulator import CLIP_LOOP_VARIANTS, SimOptions, World, run_clip_loop
from ace.policy.state import RoomAggregate, interaction_counts
from ace.types import EVENT_KINDS, Event
from tests.policy.factories import make_obs


def test_clip_events_parse_and_old_files_still_read(tmp_path):
    assert {"clip_view", "clip_click"} <= set(EVENT_KINDS)
    path = tmp_path / "show.events.jsonl"
    path.write_text("\n".join([
        '{"t": 1.0, "kind": "chat", "user": "u1", "text": "hi"}',
        '{"t": 2.0, "kind": "clip_view", "user": "u1", "text": "clip-abc"}',
        '{"t": 3.0, "kind": "CLIP_CLICK", "user": 42, "text": "clip-abc", "trusted": true}',
        '{"t": 4.0, "kind": "clip_share", "user": "u2"}',
    ]) + "\n")
    load = load_events(path)
    assert [(e.kind, e.user, e.text) for e in load.events] == [("chat", "u1", "hi"), ("clip_view", "u1", "clip-abc"),
                                                              ("clip_click", "42", "clip-abc")]
    assert len(load.warnings) == 1 and "clip_share" in load.warnings[0]
    assert event_to_obj(load.events[2]) == {"t": 3.0, "kind": "clip_click", "user": "42", "text": "clip-abc", "trusted": True}
    old = tmp_path / "old.jsonl"
    old.write_text('{"t": 1, "kind": "order", "user": "b", "promoted": true}\n{"t": 2, "kind": "viewers", "value": 30}\n')
    assert [e.kind for e in load_events(old).events] == ["order", "viewers"] and not load_events(old).warnings


def _tally_events():
    farm = [Event(0, "clip_click", "bot", text=f"c{i % 3}") for i in range(50)]  # one account, many clicks
    farm += [Event(0, "clip_view", "bot", text=f"c{i % 3}") for i in range(50)]
    honest = [Event(0, "clip_view", f"u{i}", text="c1") for i in range(20)] + [Event(0, "clip_click", f"u{i}", text="c1") for i in range(4)]
    anonymous = [Event(0, "clip_click", "", value=500, text="c1"), Event(0, "clip_view", "", value=9000, text="c1")]
    return farm, honest, anonymous


def test_tally_counts_clips_once_per_user_and_caps_each_user():
    farm, honest, anonymous = _tally_events()
    tally = RoomTally()
    tally.add(farm + honest + anonymous, now=100.0)
    agg = tally.aggregate("r", 0, 200)
    # the bot: its 3 clips' views count once each (cap 3), its clicks once (cap 1); anonymous ones nothing
    assert agg.clip_views == 20 + 3 and agg.clip_clicks == 4 + 1
    assert agg.users == 0 and agg.trusted_users == 0  # clip viewers are not in the room
    # the same user and clip within the horizon: not counted again; after it, counted again
    tally.add(farm + honest, now=130.0)
    assert tally.aggregate("r", 120, 200).clip_clicks == 0 and tally.aggregate("r", 0, 200).clip_clicks == 5
    tally.add([Event(0, "clip_click", "u0", text="c1")], now=100.0 + tally.horizon_s + 1)
    assert tally.aggregate("r", 1000, 1100).clip_clicks == 1
    # the one-tick helper agrees
    counts = interaction_counts(farm + honest + anonymous)
    assert counts["clip_views"] == 23 and counts["clip_clicks"] == 5 and counts["users"] == 0


def _room_counts(alloc: np.ndarray) -> dict:
    return {"live": np.ones(alloc.size, bool), "viewers": 400.0, "impressions": alloc, "entries": alloc * 0.045,
            "watch_s": alloc * 0.045 * 60.0, "orders": alloc * 0.045 * 0.05, "organic_entries": 24.0, "organic_orders": 1.2,
            "likes": 160.0, "comments": 24.0, "shallow_capped": 180.0, "users": 48.0, "trusted_users": 26.0, "category": 5}


def _play(clicks: np.ndarray, views: np.ndarray, ticks: int = 60, **options):
    n = clicks.size
    p = RampPolicy(thompson=False, **options)
    alloc = np.zeros(n)
    for k in range(ticks):
        a = p.step(make_obs(n, k * 30.0, clip_clicks=clicks, clip_views=views, **_room_counts(alloc)))
        alloc = a.impressions.copy()
    return p, a


def test_clip_interest_raises_a_rooms_value_against_an_identical_room():
    n = 10
    clicks, views = np.zeros(n), np.zeros(n)
    clicks[0], views[0] = 8.0, 200.0  # room 0's clips draw clicks; the others are the same rooms without
    p, a = _play(clicks, views)
    assert a.impressions[0] > 1.04 * a.impressions[1]
    assert np.allclose(a.impressions[1:], a.impressions[1])
    s0, s1 = p.room_state(0), p.room_state(1)
    assert s0.clip_interest > 10 and 1.1 < s0.clip_lift <= 1.25 and s1.clip_lift == 1.0
    assert "clip interest x1.1" in a.reason(0) and "clip interest" not in a.reason(1)
    # without the clip weighting the rooms are the same
    _p, b = _play(clicks, views, clip_lift_max=0.0)
    assert np.allclose(b.impressions, b.impressions[0])
    # a view weighs a twentieth of a click
    pv, _ = _play(np.zeros(n), clicks * 20.0)
    pc, _ = _play(clicks, np.zeros(n))
    pw, _ = _play(np.zeros(n), clicks)
    assert pw.room_state(0).clip_lift < pc.room_state(0).clip_lift
    assert abs(pv.room_state(0).clip_interest - pc.room_state(0).clip_interest) < 1e-9


def test_a_frozen_or_killed_room_gets_nothing_from_clips():
    n = 10
    clicks, views = np.zeros(n), np.zeros(n)
    clicks[:2] = 50.0
    p = RampPolicy(thompson=False)
    alloc = np.zeros(n)
    for k in range(40):
        if k == 30:
            p.kill(0)
            p.state.freeze_until[1] = 1e9
        a = p.step(make_obs(n, k * 30.0, clip_clicks=clicks, clip_views=views, **_room_counts(alloc)))
        alloc = a.impressions.copy()
        if k == 29:
            assert "clip interest" in a.reason(0) and "clip interest" in a.reason(1)
    assert a.impressions[0] == 0.0
    assert "clip interest" not in a.reason(0) and "clip interest" not in a.reason(1)
    assert "clip interest" not in a.reason(2)  # no clicks, no lift
    assert p.decide(2000.0, [RoomAggregate("x", clip_clicks=3.0)], plan=1000.0)  # the live front door takes them


def test_the_simulator_reports_what_the_loop_changes():
    o = SimOptions(rooms=40, hours=1.5)
    on, off = World(replace(o, clip_loop=True)), World(replace(o, clip_loop=False))
    # the same day, and with the loop viewers come back from the clips
    assert np.array_equal(on.live, off.live) and np.array_equal(on.clip_clicks, off.clip_clicks)
    assert on.clip_entries.sum() > 0 and on.organic_entries.sum() > off.organic_entries.sum()
    assert on.organic_orders.sum() >= off.organic_orders.sum() and (on.viewers >= off.viewers).all()
    assert (on.clip_clicks[:, ~on.fake] <= on.clip_views[:, ~on.fake]).all()
    from ace.policy.metrics import CLIP_LOOP_METRICS, clip_loop_metrics, clip_loop_summary

    traces = run_clip_loop([0], o)
    assert list(traces) == list(CLIP_LOOP_VARIANTS)
    m = {v: clip_loop_metrics(trs[0]) for v, trs in traces.items()}
    assert m["without loop"]["clip_clicks"] == 0 and m["without loop"]["clip_entries"] == 0
    assert m["with loop"]["clip_clicks"] > 0 and m["with loop"]["clip_entries"] > 0 and m["with loop"]["clip_gmv"] > 0
    assert m["with loop"]["clip_views"] == m["loop, clips ignored"]["clip_views"]  # the same days
    assert not np.array_equal(traces["with loop"][0].alloc, traces["loop, clips ignored"][0].alloc)
    for v in CLIP_LOOP_VARIANTS:
        assert m[v]["orders_per_1k"] > 0 and m[v]["entries_per_1k"] > 0 and m[v]["gmv_per_1k"] > 0
        assert 0 < m[v]["good_clip_share"] < 1 and m[v]["fake_pool_share"] <= 0.01
    summary = clip_loop_summary(traces)
    assert set(summary["with loop"]) == {x.name for x in CLIP_LOOP_METRICS}


def test_simulate_command_prints_the_loop_and_can_turn_it_off(tmp_path, capsys):
    from ace.policy.cli import main

    tiny = ["simulate", "--rooms", "16", "--hours", "0.5", "--seeds", "1", "--policies", "ramp,uniform", "--no-plots"]
    assert main([*tiny, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["policy"] for d in data] == ["ramp", "uniform"] and data[0]["clip_loop_on"] is True
    loop = data[0]["clip_loop"]
    assert list(loop) == list(CLIP_LOOP_VARIANTS) and "clip_loop" not in data[1]
    assert loop["without loop"]["clip_clicks"]["mean"] == 0 and loop["with loop"]["clip_clicks"]["mean"] > 0
    assert loop["with loop"]["orders_per_1k"]["mean"] == data[0]["metrics"]["orders_per_1k"]["mean"]
    assert main([*tiny, "--json", "--no-clip-loop"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["clip_loop_on"] is False and "clip_loop" not in data[0]
    assert main(tiny) == 0
    out = capsys.readouterr().out
    for words in ("clip loop", "without loop", "with loop", "viewers brought by clips", "GMV / 1k promoted imps"):
        assert words in out
