"""The live rooms' tally: raw interaction events by arrival second -> the ramp policy's aggregates."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ace.policy.live import RoomTally
from ace.types import EVENT_KINDS, Event


def test_events_map_onto_the_aggregate():
    tally = RoomTally(per_user_cap=3)
    tally.add([
        Event(0, "impression", value=500, promoted=True),
        Event(0, "impression", value=70),  # not promoted: not the policy's traffic
        Event(0, "entry", "a", promoted=True, trusted=True),
        Event(0, "entry", "b", promoted=True),
        Event(0, "entry", "c"),
        Event(0, "watch", "a", value=42.5, promoted=True),
        Event(0, "watch", "c", value=99.0),
        Event(0, "follow", "a", promoted=True, trusted=True),
        Event(0, "cart", "b", promoted=True),
        Event(0, "order", "a", promoted=True, trusted=True),
        Event(0, "order", "b", promoted=True),  # untrusted buyer: held back
        Event(0, "order", "c"),
        Event(0, "cancel", "b", promoted=True),
        Event(0, "viewers", value=1200),
    ], now=100.2)
    tally.add([Event(0, "like", "spam", value=50), Event(0, "chat", "spam"), Event(0, "chat", "d", trusted=True),
               Event(0, "like", value=4)], now=101.9)
    agg = tally.aggregate("room", 100.0, 102.0, category="food", budget=5000.0)
    assert agg.stream_id == "room" and agg.category == "food" and agg.budget == 5000.0
    assert (agg.impressions, agg.entries, agg.organic_entries, agg.watch_s) == (500, 2, 1, 42.5)
    assert (agg.follows, agg.carts, agg.orders, agg.orders_held, agg.organic_orders, agg.orders_cancelled) == (1, 1, 2, 1, 1, 1)
    assert (agg.likes, agg.comments) == (54, 2)
    assert agg.shallow_capped == 3 + 1 + 4  # spam capped at 3, d's one chat, 4 anonymous likes
    assert agg.users == 5 and agg.trusted_users == 2  # a, b, c, spam, d; a and d trusted
    assert agg.viewers == 1200
    # a later window with no events keeps the last viewer count and nothing else
    later = tally.aggregate("room", 102.0, 130.0)
    assert later.viewers == 1200 and later.impressions == 0 and later.users == 0


def test_windows_count_each_event_once_and_can_be_asked_again():
    tally = RoomTally()
    for k in range(100):
        tally.add([Event(0, "order", f"u{k}", promoted=True)], now=1000 + k * 0.37)
    edges = [1000.0, 1009.5, 1010.0, 1023.9, 1040.0]
    parts = [tally.aggregate("r", a, b).orders for a, b in zip(edges, edges[1:])]
    assert sum(parts) == 100
    assert [tally.aggregate("r", a, b).orders for a, b in zip(edges, edges[1:])] == parts  # a retried tick


def test_old_buckets_are_dropped():
    tally = RoomTally(horizon_s=60)
    tally.add([Event(0, "chat", "a")], now=0.0)
    tally.add([Event(0, "chat", "b")], now=100.0)
    assert tally.aggregate("r", 0, 200).comments == 1
    assert len(tally._buckets) == 1


def test_a_clock_step_back_keeps_every_event():
    tally = RoomTally()
    tally.add([Event(0, "chat", "a")], now=50.0)
    tally.add([Event(0, "chat", "b")], now=40.0)
    assert tally.aggregate("r", 0, 100).comments == 2
    assert tally.aggregate("r", 45, 100).comments == 1


_events = st.builds(
    Event,
    t=st.just(0.0),
    kind=st.sampled_from(EVENT_KINDS),
    user=st.sampled_from(["", "a", "b", "c", "d"]),
    value=st.floats(0, 1000, allow_nan=False),
    promoted=st.booleans(),
    trusted=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 300, allow_nan=False), st.lists(_events, max_size=5)), max_size=40),
       st.lists(st.floats(0, 300, allow_nan=False), max_size=6))
def test_any_split_into_ticks_adds_up_to_the_whole(arrivals, cuts):
    tally = RoomTally(horizon_s=1000)
    for at, evs in sorted(arrivals, key=lambda a: a[0]):
        tally.add(evs, now=at)
    edges = [0.0, *sorted(cuts), 301.0]
    whole = tally.aggregate("r", 0, 301)
    parts = [tally.aggregate("r", a, b) for a, b in zip(edges, edges[1:])]
    for name in ("impressions", "entries", "watch_s", "follows", "carts", "orders", "orders_held", "orders_cancelled",
                 "organic_entries", "organic_orders", "likes", "comments"):
        assert math.isclose(sum(getattr(p, name) for p in parts), getattr(whole, name), rel_tol=1e-9, abs_tol=1e-6), name
    assert whole.orders_held <= whole.orders and whole.trusted_users <= whole.users
