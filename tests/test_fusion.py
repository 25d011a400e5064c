"""Fusion: which evidence makes a moment, and where its edges land."""

from __future__ import annotations

import pytest

from ace.fusion import snap_end, snap_start, FusionOptions, find_moments, join_words
from ace.types import Sentence, Signal, Word

import numpy as np


def sig(source, t0, t1, score=1.0):
    return [Signal(source, t + 0.5, score, f"{source} evidence") for t in range(int(t0), int(t1))]


def test_single_weak_sources_make_no_strong_moment_but_agreement_does():
    weak = sig("visual", 10, 14, 0.9) + sig("speech", 50, 53, 0.5) + [Signal("visual", 80.0, 0.2, "scene cut")]
    moments, _ = find_moments("s", weak, 120.0)
    # a 2-minute show still returns its best moment, marked as not strong
    assert len(moments) == 1 and not moments[0].strong and moments[0].rank == 1
    assert 6 <= moments[0].start and moments[0].end <= 18  # the visual burst outranks the weaker speech
    assert find_moments("s", weak, 120.0, top=0)[0] == []  # live: only strong ones
    agree = sig("visual", 30, 34, 0.9) + sig("speech", 30, 34, 0.5)
    moments, _ = find_moments("s", weak + agree, 120.0, top=0)
    assert len(moments) == 1
    m = moments[0]
    assert m.strong and m.rank == 1 and m.confidence >= 45
    assert m.start <= 30 and m.end >= 34
    assert {r.source for r in m.reasons} == {"visual", "speech"}


def test_strong_single_sources_do_make_moments():
    for source in ("keyword", "audio", "interaction"):
        moments, _ = find_moments("s", sig(source, 40, 44), 120.0)
        assert len(moments) == 1, source


def test_interaction_evidence_is_moved_earlier_by_the_lag():
    o = FusionOptions(interaction_lag=5.0)
    moments, tl = find_moments("s", sig("interaction", 60, 64), 120.0, options=o)
    top = np.flatnonzero(tl.fused >= tl.fused.max() - 1e-9)
    assert 54 <= top.mean() <= 59
    assert moments[0].start < 55


def test_length_limits_hold():
    o = FusionOptions(clip_min=8, clip_max=20)
    short, _ = find_moments("s", sig("keyword", 50, 51), 200.0, options=o)
    assert short[0].duration >= 8 - 1e-6
    long_, _ = find_moments("s", sig("audio", 20, 120), 200.0, options=o)
    assert all(m.duration <= 20 + o.snap_window + 1e-6 for m in long_)


def test_edges_never_inside_a_spoken_word_and_snap_to_sentences():
    words = []
    sentences = []
    t = 0.0
    while t < 110:  # continuous speech: 2.5 s sentences of 5 words, 0.4 s pauses
        ws = tuple(Word(t + i * 0.5, t + i * 0.5 + 0.42, f"w{i}") for i in range(5))
        sentences.append(Sentence(t, t + 2.5, " ".join(w.text for w in ws), ws))
        words.extend(ws)
        t += 2.9
    moments, _ = find_moments("s", sig("keyword", 51, 53), 120.0, sentences)
    assert len(moments) == 1
    m = moments[0]
    for w in words:
        assert not (w.start < m.start < w.end), f"start {m.start} inside {w}"
        assert not (w.start < m.end < w.end), f"end {m.end} inside {w}"
    starts = [s.start for s in sentences]
    ends = [s.end for s in sentences]
    # edges sit in the pauses between sentences, clear of the words
    assert any(e + 0.1 <= m.start <= s - 0.1 for e, s in zip(ends, starts[1:]))
    assert any(e + 0.1 <= m.end <= s - 0.1 for e, s in zip(ends, starts[1:]))
    assert m.transcript.startswith("w0")


def test_edges_snap_to_a_nearby_scene_cut_when_no_speech():
    moments, _ = find_moments("s", sig("audio", 50, 54), 120.0, cuts=[45.5, 58.5])
    m = moments[0]
    assert m.start == pytest.approx(45.5)
    assert m.end == pytest.approx(58.5)


def test_overlapping_moments_merge_and_ids_are_stable():
    signals = sig("keyword", 40, 42) + sig("audio", 47, 50)
    a, _ = find_moments("s", signals, 120.0)
    b, _ = find_moments("s", list(reversed(signals)), 120.0)
    assert len(a) == 1
    assert [m.id for m in a] == [m.id for m in b]


def test_moments_stay_inside_the_show():
    moments, _ = find_moments("s", sig("keyword", 0, 1) + sig("audio", 58, 60), 60.0)
    assert moments and all(0 <= m.start < m.end <= 60.0 for m in moments)


def test_join_words_spaces_latin_not_chinese():
    assert join_words([Word(0, 1, "hello"), Word(1, 2, "world")]) == "hello world"
    assert join_words([Word(0, 1, "上"), Word(1, 2, "链接")]) == "上链接"


def test_edges_inside_a_sentence_longer_than_the_snap_window_fall_back_to_a_pause():
    ws = tuple(Word(10 + i * 0.6, 10 + i * 0.6 + 0.45, f"w{i}") for i in range(80))  # 10 s .. 58 s
    long_sentence = Sentence(10.0, ws[-1].end, " ".join(w.text for w in ws), ws)
    moments, _ = find_moments("s", sig("keyword", 30, 32), 120.0, [long_sentence])
    assert len(moments) == 1
    m = moments[0]
    for w in ws:
        assert not (w.start < m.start < w.end) and not (w.start < m.end < w.end)


def test_edges_prefer_sentence_edges_with_a_real_pause():
    # sentence B follows A with no pause (Whisper split running speech); C follows after 0.6 s
    def sent(t0, n, text):
        ws = tuple(Word(round(t0 + i * 0.4, 3), round(t0 + i * 0.4 + 0.4, 3), f"{text}{i}") for i in range(n))
        return Sentence(ws[0].start, ws[-1].end, " ".join(w.text for w in ws), ws)

    a, b, c = sent(40.0, 6, "a"), sent(42.4, 6, "b"), sent(45.4, 12, "c")
    sentences = [a, b, c]
    words = [w for s in sentences for w in s.words]
    o = FusionOptions()
    # evidence from 43 s: the start is inside B; B's own start touches A, so the clip starts at A
    start = snap_start(43.0, sentences, [], words, o, limit=44.0)
    assert start == pytest.approx(40.0 - o.edge_lead)
    # the end inside C's running words goes to a real pause, never between touching words
    end = snap_end(44.0, sentences, [], words, o, duration=200.0, limit=43.0)
    assert end == pytest.approx(45.1)  # B's end (44.8) + half of the 0.6 s pause before C


def test_a_show_with_no_evidence_but_talk_returns_its_busiest_talk():
    words = [Word(30 + i * 0.4, 30 + i * 0.4 + 0.3, f"w{i}") for i in range(20)] + [Word(80.0, 80.3, "hm")]
    sentences = [Sentence(words[0].start, words[19].end, " ".join(w.text for w in words[:20]), tuple(words[:20])),
                 Sentence(80.0, 80.3, "hm", (words[20],))]
    moments, tl = find_moments("s", [], 120.0, sentences)
    assert len(moments) == 1  # a 2-minute show: one moment
    m = moments[0]
    assert m.rank == 1 and not m.strong and m.confidence < 10
    assert m.start <= 31 and m.end >= 37  # where the talk is
    assert [r.source for r in m.reasons] == ["talk"]
    assert find_moments("s", [], 120.0, sentences, top=0)[0] == []  # live: nothing strong, nothing at all


def _chat_follows(evidence_at, delay, n=900, seed=3):
    """A chat series (T, 9) with a reaction burst ``delay`` s after each evidence time."""
    from ace.signals.chat import chat_series
    from ace.types import Event

    rng = np.random.default_rng(seed)
    events = [Event(float(t), "chat", f"u{rng.integers(10_000)}", 1.0, "hello there")
              for t in np.sort(rng.uniform(0, n, int(n * 0.5)))]
    for t0 in evidence_at:
        for k in range(40):
            events.append(Event(float(t0 + delay + rng.uniform(0, 10)), "chat", f"fan{t0}-{k}", 1.0, "LUL PogChamp"))
    return chat_series(events, n)


def test_chat_joins_fusion_with_the_delay_measured_on_the_show():
    from models.scorer import default_model

    at = [100, 250, 400, 550, 700]
    media = [s for t0 in at for s in sig("visual", t0, t0 + 4, 0.6)]
    chat = _chat_follows(at, delay=9)
    moments, tl = find_moments("s", media, 900.0, chat=chat, model=default_model(), top=0)
    assert tl.lag.method == "xcorr" and 6 <= tl.lag.seconds <= 12
    assert "chat" in tl.sources
    found = sorted(m.peak for m in moments if m.strong)
    # every burst makes a strong moment where the picture changed, not where the chat peaked
    assert len(found) == len(at)
    for t0, peak in zip(at, found):
        assert t0 - 3 <= peak <= t0 + 6
    # visual evidence alone (0.4 × 0.6) is not strong: the chat made them so
    alone, _ = find_moments("s", media, 900.0, top=0)
    assert alone == []


def test_too_little_chat_leaves_fusion_as_it_was():
    from models.scorer import default_model

    media = sig("keyword", 50, 53)
    sparse = _chat_follows([], 0, n=120)[:120] * 0
    sparse[10, 0] = 3  # three messages are not enough to say anything
    with_chat, tl = find_moments("s", media, 120.0, chat=sparse, model=default_model())
    without, _ = find_moments("s", media, 120.0)
    assert tl.lag.method == "fixed" and "chat" not in tl.sources
    assert [(m.start, m.end) for m in with_chat] == [(m.start, m.end) for m in without]


def test_every_strong_moment_is_returned_however_many():
    # strong evidence every 17 s of a 120 s show: seven strong moments, none left out by the ranking
    signals = [s for t0 in (8, 25, 42, 59, 76, 93, 110) for s in sig("keyword", t0, t0 + 1)]
    o = FusionOptions(clip_min=4, clip_max=10, pre_roll=1, post_roll=1)
    moments, _ = find_moments("s", signals, 120.0, options=o, top=0)
    assert len(moments) == 7 and all(m.strong for m in moments)
    assert sorted(m.rank for m in moments) == list(range(1, 8))
