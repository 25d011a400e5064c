"""Speech recognition as the pipeline runs it: parallel parts split in pauses, and live windows."""

from __future__ import annotations

import difflib

import numpy as np
import pytest

from ace import media
from ace.signals.speech import SAMPLE_RATE, LiveTranscriber, Transcriber, normalise, quiet_splits, words_of
from ace.types import Sentence, Word


def _bursts(spans: list[tuple[float, float]], total: float, seed: int = 0) -> np.ndarray:
    """Noise bursts (loud) at ``spans`` over a faint noise floor."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0, 0.002, int(total * SAMPLE_RATE)).astype(np.float32)
    for a, b in spans:
        i, j = int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)
        audio[i:j] += rng.normal(0, 0.3, j - i).astype(np.float32)
    return audio


def test_quiet_splits_fall_in_the_pauses():
    # "speech" everywhere except short pauses near 31 s, 58.5 s and 92 s
    pauses = [(30.8, 31.3), (58.2, 58.7), (91.7, 92.2)]
    spans, t = [], 0.0
    for a, b in pauses:
        spans.append((t, a))
        t = b
    spans.append((t, 120.0))
    audio = _bursts(spans, 120.0)
    splits = quiet_splits(audio, every=30.0, search=4.0)
    assert len(splits) == 3
    for s, (a, b) in zip(splits, pauses):
        assert a <= s / SAMPLE_RATE <= b


def test_quiet_splits_leave_short_audio_whole():
    assert quiet_splits(np.zeros(10 * SAMPLE_RATE, np.float32), every=30.0) == []
    assert quiet_splits(np.zeros(0, np.float32), every=30.0) == []


class _Scripted:
    """A stand-in for the Whisper call: 'hears' the words of a fixed script whose middle lies in
    the audio handed to it, with the timings relative to that audio (as faster-whisper does)."""

    def __init__(self, script: list[Word]):
        self.script = script
        self.calls: list[tuple[float, float]] = []

    def __call__(self, audio: np.ndarray, offset: float, progress, context_s: float | None = None) -> list[Sentence]:
        end = offset + audio.size / SAMPLE_RATE
        self.calls.append((offset, end))
        heard = [w for w in self.script if offset <= w.start and w.end <= end]
        # a word cut by the window's end is misheard: a fragment, ending at the edge
        cut = [w for w in self.script if w.start < end < w.end]
        if cut:
            heard.append(Word(cut[0].start, end, cut[0].text[:2], 0.3))
        return [Sentence(w.start, w.end, w.text, (w,)) for w in heard]


def _script(total: float, seed: int = 1) -> list[Word]:
    rng = np.random.default_rng(seed)
    out, t, i = [], 0.3, 0
    while t < total - 1:
        length = float(rng.uniform(0.15, 0.6))
        text = f"w{i}" + ("." if rng.random() < 0.1 else "")
        out.append(Word(round(t, 3), round(t + length, 3), text, 0.9))
        t += length + float(rng.choice([0.05, 0.08, 0.4]))
        i += 1
    return out


@pytest.mark.parametrize("chunk", [0.5, 2.0, 3.3])
def test_live_windows_commit_every_word_once_in_order(chunk):
    script = _script(95.0)
    tr = Transcriber(model=None)
    fake = _Scripted(script)
    tr._transcribe_one = fake
    live = LiveTranscriber(tr, window=8.0, guard=1.0)
    audio = np.zeros(int(95.0 * SAMPLE_RATE), np.float32)
    step = int(chunk * SAMPLE_RATE)
    got: list[Word] = []
    for i in range(0, audio.size, step):
        got.extend(live.feed(audio[i : i + step]))
        assert live.buffered <= live.max_window + chunk  # memory stays bounded
    got.extend(live.flush())
    assert [w.text for w in got] == [w.text for w in script]
    assert all(a.end <= b.start for a, b in zip(got, got[1:]))
    # overlap is the price of safety, but bounded: well under twice the audio
    assert live.audio_decoded < 1.6 * 95.0


def test_hurrying_commits_words_before_the_full_window_and_loses_none():
    script = _script(60.0, seed=3)
    tr = Transcriber(model=None)
    tr._transcribe_one = _Scripted(script)
    live = LiveTranscriber(tr, window=8.0, guard=1.0)
    audio = np.zeros(int(60.0 * SAMPLE_RATE), np.float32)
    step = 2 * SAMPLE_RATE
    got: list[Word] = []
    got.extend(live.feed(audio[:step]))
    assert live.hurry() == []  # 2 s buffered: under guard + 2 s, nothing to gain yet
    got.extend(live.feed(audio[step : 2 * step]))
    assert got == [] and live.decodes == 0  # a full window is 8 s away
    early = live.hurry()
    assert early and live.decodes == 1 and early[-1].end <= 4.0 - 1.0  # clear of the guard band
    got.extend(early)
    lag_after_hurry = live.buffered
    assert lag_after_hurry < 4.0 - early[-1].end + 0.5  # the uncommitted tail only
    for i in range(2 * step, audio.size, step):
        got.extend(live.feed(audio[i : i + step]))
        if i % (5 * step) == 0:
            got.extend(live.hurry())
    got.extend(live.flush())
    assert [w.text for w in got] == [w.text for w in script]  # every word once, in order


def test_live_window_options_are_checked():
    with pytest.raises(ValueError):
        LiveTranscriber(Transcriber(model=None), window=4.0, guard=5.0)


# ------------------------------------------------------------------------------ the real model


@pytest.fixture(scope="module")
def tiny():
    from models.registry import load_whisper

    return load_whisper("tiny.en", device="cpu", cpu_threads=1, num_workers=2)


def _tokens(words: list[Word]) -> list[str]:
    return normalise(" ".join(w.text for w in words)).split()


def test_parallel_parts_hear_what_one_pass_hears(tiny, short_show):
    audio = media.read_audio(short_show.video)
    one = words_of(Transcriber(tiny, workers=1).transcribe(audio))
    reached: list[float] = []
    two = words_of(Transcriber(tiny, workers=2).transcribe(audio, progress=reached.append))
    a, b = _tokens(one), _tokens(two)
    assert len(a) > 50 and len(b) >= 0.95 * len(a), "nothing lost at the split"
    # the parts differ from one pass only where Whisper itself wavers (one pass over this show
    # skips a whole phrase that the parts hear)
    assert difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio() > 0.88
    assert all(x.start <= y.start for x, y in zip(two, two[1:])), "parts come back in show order"
    assert reached and reached == sorted(reached) and reached[-1] <= audio.size / SAMPLE_RATE + 0.5


def test_live_windows_hear_what_one_pass_hears(tiny, short_show):
    audio = media.read_audio(short_show.video)[: 45 * SAMPLE_RATE]
    tr = Transcriber(tiny)
    whole = words_of(tr.transcribe(audio))
    live = LiveTranscriber(tr)
    got: list[Word] = []
    for i in range(0, audio.size, 2 * SAMPLE_RATE):  # 2 s segments, as they arrive live
        got.extend(live.feed(audio[i : i + 2 * SAMPLE_RATE]))
    got.extend(live.flush())
    a, b = _tokens(whole), _tokens(got)
    # short windows give Whisper less context, so some words waver (this synthetic voice is hard
    # for tiny.en); what must not happen is a stretch lost or heard twice
    assert len(b) >= 0.9 * len(a)
    assert difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio() > 0.8
    assert all(x.end <= y.start + 0.05 for x, y in zip(got, got[1:])), "no word twice, in order"


def test_a_shorter_encoder_window_is_used_only_where_asked(tiny, short_show, monkeypatch):
    """``context_s`` pads a live window to that many seconds for the encoder instead of 30, and
    hears the same speech; a call without it (batch) still pads to 30 s."""
    from ace.signals import speech as sp

    audio = media.read_audio(short_show.video)[10 * SAMPLE_RATE : 20 * SAMPLE_RATE]
    shapes: list[int] = []
    real_encode = type(tiny).encode

    def encode(self, features):
        shapes.append(features.shape[-1])
        return real_encode(self, features)

    monkeypatch.setattr(type(tiny), "encode", encode)
    tr = Transcriber(tiny)
    full = words_of(tr._transcribe_one(audio, 0.0, None))
    assert shapes and set(shapes) == {3000}
    shapes.clear()
    short = words_of(tr._transcribe_one(audio, 0.0, None, context_s=15.0))
    assert shapes and max(shapes) == 1500
    assert sp._CONTEXT.frames is None  # reset after the call
    a, b = _tokens(full), _tokens(short)
    assert len(a) > 10 and difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio() > 0.8
    with pytest.raises(ValueError):
        LiveTranscriber(tr, context_s=45.0)


def test_which_models_get_a_shorter_live_window():
    from models.registry import live_context_s

    assert live_context_s("tiny.en") == 15.0  # measured: same accuracy, half the encoder's work
    assert live_context_s("base") is None  # measured: 3 points worse, so Whisper's 30
    assert live_context_s("/some/local/folder") is None
    assert live_context_s("base", 12.0) == 12.0 and live_context_s("tiny.en", 30.0) is None


def test_the_shorter_encoder_window_is_for_the_cpu_only():
    """On a GPU the 30 s window costs little and one shape runs faster: ``context_s`` is ignored."""
    import types

    from ace.signals import speech as sp

    seen = []

    class Model:  # records the window the encoder would be given
        def __init__(self, device):
            self.model = types.SimpleNamespace(device=device, is_multilingual=False)

        def transcribe(self, audio, **kw):
            seen.append(sp._CONTEXT.frames)
            return iter(()), None

    for device in ("cpu", "cuda"):
        Transcriber(Model(device))._transcribe_one(np.zeros(SAMPLE_RATE, np.float32), 0.0, None, context_s=15.0)
    assert seen == [1500, None]
