"""Detectors on synthetic inputs: each must fire on its evidence and stay quiet on decoys."""

from __future__ import annotations

import numpy as np
import pytest

from ace.config import DEFAULT_KEYWORDS
from ace.signals import (
    AudioDetector,
    InteractionDetector,
    SpeechDetector,
    VisualDetector,
    get_detector,
)
from ace.signals.speech import KeywordMatcher, normalise
from ace.types import Event, Sentence, Word

SR = 16000
rng = np.random.default_rng(0)


def noise(seconds: float, level_db: float) -> np.ndarray:
    amp = 10 ** (level_db / 20)
    return (rng.standard_normal(int(seconds * SR)) * amp).astype(np.float32)


def test_catalogue_rejects_unknown_names_with_the_choices():
    with pytest.raises(ValueError, match="speech, audio, visual, interaction"):
        get_detector("smell")
    assert isinstance(get_detector("audio"), AudioDetector)


# -- audio ---------------------------------------------------------------------------------------


def test_audio_fires_on_sustained_cheer_not_on_a_knock():
    bed = noise(60, -40)
    bed[30 * SR : 35 * SR] += noise(5, -15)  # a five-second cheer, 25 dB over the bed
    knock = noise(0.3, -5)
    bed[45 * SR : 45 * SR + knock.size] += knock  # a loud 0.3 s knock
    det = AudioDetector()
    sigs = det.process_audio(0.0, bed[: 20 * SR]) + det.process_audio(20.0, bed[20 * SR :]) + det.flush()
    loud = {int(s.t) for s in sigs if s.score > 0.5}
    assert loud >= {30, 31, 32, 33, 34}
    assert all(29 <= t <= 35 for t in loud), loud
    assert not [s for s in sigs if 44 <= s.t <= 47], "a short knock must not count as loudness"
    assert "dB" in sigs[0].reason


def test_audio_is_causal_chunking_does_not_change_scores():
    x = noise(40, -35)
    x[25 * SR : 29 * SR] += noise(4, -10)
    a = AudioDetector()
    whole = a.process_audio(0.0, x) + a.flush()
    b = AudioDetector()
    parts = []
    for i in range(0, x.size, 3333):
        parts += b.process_audio(i / SR, x[i : i + 3333])
    parts += b.flush()
    assert [(s.t, s.score) for s in whole] == [(s.t, s.score) for s in parts]


# -- visual --------------------------------------------------------------------------------------


def moving_frames(seconds: int, fps: int = 4, cut_at=(), fast=()):
    """Grey 90x160 frames: a slowly drifting pattern, new scenes at cut_at, fast motion in fast."""
    import cv2

    def scene_image(k: int) -> np.ndarray:
        r = np.random.default_rng(k)
        img = cv2.GaussianBlur(r.integers(0, 255, (90, 320)).astype(np.float32), (0, 0), 6)
        img = (img - img.min()) / (np.ptp(img) + 1e-6) * 120 + 40 + 60 * (k % 2)
        return img.astype(np.uint8)

    frames = []
    scene = 0
    base = scene_image(scene)
    for i in range(seconds * fps):
        t = i / fps
        if any(abs(t - c) < 1e-9 for c in cut_at):
            scene += 1
            base = scene_image(scene)
        speed = 40 if any(a <= t < b for a, b in fast) else 1
        off = (i * speed) % 160
        frames.append((t, np.ascontiguousarray(base[:, off : off + 160])))
    return frames


def test_visual_finds_cuts_and_action():
    det = VisualDetector(fps=4)
    sigs = []
    for t, f in moving_frames(60, cut_at=(20.0, 40.0), fast=((30.0, 34.0),)):
        sigs += det.process_frame(t, f)
    sigs += det.flush()
    assert det.cuts == pytest.approx([20.0, 40.0])
    action = [s for s in sigs if s.reason.startswith("fast motion")]
    assert action and all(29 <= s.t <= 35 for s in action)
    assert {int(s.t) for s in action} >= {30, 31, 32, 33}


def test_visual_fast_motion_is_not_a_run_of_cuts():
    det = VisualDetector(fps=4)
    for t, f in moving_frames(30, fast=((10.0, 20.0),)):
        det.process_frame(t, f)
    det.flush()
    assert det.cuts == []


# -- speech --------------------------------------------------------------------------------------


def sentence(start, end, text):
    toks = text.split()
    step = (end - start) / max(1, len(toks))
    words = tuple(Word(start + i * step, start + (i + 1) * step - 0.05, w) for i, w in enumerate(toks))
    return Sentence(start, end, text, words)


def test_keywords_in_english_and_chinese():
    m = KeywordMatcher(DEFAULT_KEYWORDS)
    assert "link is up" in m.find("Okay everyone, the LINK is up!")
    assert "3 2 1" in m.find("three, two, one, go") or "three two one" in m.find("three, two, one, go")
    assert "上链接" in m.find("好的大家上链接了")
    assert m.find("the linked list is upside down") == []
    assert normalise("Three-2-1!") == "three two one"


def test_speech_detector_scores_keywords_and_exclamations_not_calm_talk():
    det = SpeechDetector(keywords=DEFAULT_KEYWORDS)
    calm = [sentence(i * 4.0, i * 4.0 + 3.0, "this jacket is made of soft cotton and wool") for i in range(8)]
    hot = [sentence(40.0, 42.0, "three two one the link is up go go go!")]
    sigs = det.process_sentences(calm + hot)
    assert all(s.t >= 40.0 for s in sigs), "calm sentences must not score"
    kinds = {s.source for s in sigs}
    assert kinds == {"keyword", "speech"}
    kw = [s for s in sigs if s.source == "keyword"]
    assert any("link is up" in s.reason for s in kw)
    assert all(40.0 <= s.t <= 42.0 for s in kw)


def test_speech_rate_against_the_show_typical_rate():
    det = SpeechDetector()
    calm = [sentence(i * 5.0, i * 5.0 + 4.0, "we have a few colours today in the shop") for i in range(10)]
    fast = sentence(60.0, 61.5, "we have a few colours today in the shop")  # same words, 2.7x faster
    sigs = det.process_sentences(calm + [fast])
    assert sigs and all(s.source == "speech" and s.t >= 60 for s in sigs)
    assert "fast speech" in sigs[0].reason


# -- interaction ---------------------------------------------------------------------------------


def background(seconds: int, rate: float = 0.8, users: int = 300, seed: int = 1):
    r = np.random.default_rng(seed)
    out = []
    for s in range(seconds):
        for _ in range(r.poisson(rate)):
            out.append(Event(s + float(r.random()), "chat", f"u{int(r.integers(users))}", 1.0, "hi"))
    return out


def test_interaction_spike_from_many_users_fires():
    ev = background(180)
    for i in range(60):  # 60 distinct users in 6 s, plus orders
        ev.append(Event(100 + i * 0.1, "chat", f"fan{i}", 1.0, "wow"))
    ev += [Event(101 + i * 0.3, "order", f"buyer{i}") for i in range(10)]
    det = InteractionDetector()
    sigs = det.process_events(sorted(ev, key=lambda e: e.t), now=180) + det.flush(180)
    hot = [s for s in sigs if s.score > 0.5]
    assert hot and all(99 <= s.t <= 112 for s in hot)  # the 5 s window trails the burst
    assert "users" in hot[0].reason


def test_interaction_spam_from_one_user_does_not_fire():
    ev = background(180)
    ev += [Event(100 + i * 0.05, "chat", "spammer", 1.0, "BUY BUY BUY") for i in range(200)]
    det = InteractionDetector()
    sigs = det.process_events(sorted(ev, key=lambda e: e.t), now=180) + det.flush(180)
    assert not [s for s in sigs if s.score > 0.3]


def test_interaction_late_events_are_counted_not_dropped():
    det = InteractionDetector()
    det.process_events([Event(1.0, "chat", "a")], now=10)
    det.process_events([Event(2.0, "chat", "b")], now=11)  # second 2 already scored
    assert det.late == 1
