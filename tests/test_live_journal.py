"""The pushed-events journal: each batch whole or not at all, keys remembered across a reopen, a
retried batch counted once, a reused key with other events refused, pending events handed back."""

from __future__ import annotations

import json

import pytest

from ace.events import load_events
from ace.live.journal import BatchConflict, EventJournal
from ace.types import Event


def _batch(n: int, t0: float = 0.0, user: str = "u") -> list[Event]:
    return [Event(t=t0 + i * 0.1, kind="chat", user=f"{user}{i}", text="wow") for i in range(n)]


def test_a_keyed_batch_counts_once_and_a_reused_key_with_other_events_is_refused(tmp_path):
    j = EventJournal(tmp_path / "events.jsonl")
    assert j.append(_batch(3), "k1") == (3, False)
    size = (tmp_path / "events.jsonl").stat().st_size
    assert j.append(_batch(3), "k1") == (3, True)  # a retry: same answer, nothing written
    assert (tmp_path / "events.jsonl").stat().st_size == size and j.count == 3
    with pytest.raises(BatchConflict):
        j.append(_batch(4), "k1")
    with pytest.raises(BatchConflict):
        j.append(_batch(3, user="v"), "k1")  # same size, other events
    assert j.append(_batch(2), None) == (2, False)
    assert j.append(_batch(2), None) == (2, False)  # no key: every batch counts
    assert j.count == 7 and j.end == (tmp_path / "events.jsonl").stat().st_size
    # the file is still ACE JSONL that the event loader reads, the key fields ignored
    load = load_events(tmp_path / "events.jsonl")
    assert len(load.events) == 7 and not load.warnings


def test_an_event_that_cannot_be_written_keeps_nothing_of_its_batch(tmp_path):
    j = EventJournal(tmp_path / "events.jsonl")
    bad = _batch(2) + [Event(t=1.0, kind="chat", user="x", text="\ud800")]
    with pytest.raises(UnicodeEncodeError):
        j.append(bad, "k")
    assert j.count == 0 and not (tmp_path / "events.jsonl").exists()
    assert j.append(_batch(3), "k") == (3, False)  # the key was not taken by the refused batch


def test_a_reopened_journal_remembers_keys_count_and_pending_events(tmp_path):
    path = tmp_path / "events.jsonl"
    j = EventJournal(path)
    j.append(_batch(5), "a")
    consumed = j.end  # the analysis took these five
    j.append(_batch(4, t0=10), "b")
    ck = j.checkpoint(consumed=consumed)
    j.append(_batch(2, t0=20), None)  # after the checkpoint: counted from the file
    j.append(_batch(1, t0=30), "c")
    again = EventJournal(path, ck)
    assert again.count == 12
    assert again.append(_batch(4, t0=10), "b") == (4, True)
    assert again.append(_batch(1, t0=30), "c") == (1, True)
    assert again.append(_batch(5), "a") == (5, True)
    assert [e.t for e in again.pending] == [e.t for e in _batch(4, t0=10) + _batch(2, t0=20) + _batch(1, t0=30)]
    assert again.pending_from == consumed
    # without a checkpoint the whole file is read: the same count and keys, everything pending
    whole = EventJournal(path)
    assert whole.count == 12 and len(whole.pending) == 12 and whole.append(_batch(5), "a") == (5, True)
    # a checkpoint that does not fit the file (a state file from another run) is not trusted
    odd = EventJournal(path, {"offset": 10**9, "count": 3, "consumed": 10**9, "keys_from": 0})
    assert odd.count == 12


def test_an_unfinished_last_line_is_cut_off(tmp_path):
    path = tmp_path / "events.jsonl"
    j = EventJournal(path)
    j.append(_batch(2), "a")
    good = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b'{"t": 5, "kind": "chat", "user": "half')  # the process died in the write
    again = EventJournal(path, j.checkpoint())
    assert again.count == 2 and path.stat().st_size == good and again.end == good
    again.append(_batch(1, t0=9), "b")
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)


def test_only_the_newest_keys_are_kept_and_the_checkpoint_reaches_back_to_them(tmp_path):
    path = tmp_path / "events.jsonl"
    j = EventJournal(path, keep_keys=3)
    offsets = []
    for i in range(5):
        offsets.append(j.end)
        j.append(_batch(1, t0=i), f"k{i}")
    ck = j.checkpoint()
    assert ck["keys_from"] == offsets[2] and ck["offset"] == j.end and ck["count"] == 5
    again = EventJournal(path, ck, keep_keys=3)
    assert again.append(_batch(1, t0=4), "k4") == (1, True)
    assert again.append(_batch(1, t0=2), "k2") == (1, True)
    assert again.append(_batch(1, t0=0), "k0") == (1, False)  # forgotten: a new batch
