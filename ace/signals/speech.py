"""Speech: faster-whisper transcripts and excitement cues.

:class:`Transcriber` turns 16 kHz audio into :class:`~ace.types.Sentence` objects with word
timings in show time. :class:`SpeechDetector` reads sentences and scores excitement:

* ``keyword`` signals — a phrase from the configurable list (English and Chinese, e.g.
  "link is up", "3 2 1", "秒杀", "上链接") was said;
* ``speech`` signals — exclamations and speech faster than the show's own typical rate.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ace.signals.base import Detector, RollingBaseline, ramp
from ace.types import Sentence, Signal, Word

log = logging.getLogger("ace.signals.speech")

_NUMBER_WORDS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}


def normalise(text: str) -> str:
    """Lower case, no punctuation, digits 1-5 as words, single spaces (CJK kept as is)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    text = " ".join(_NUMBER_WORDS.get(tok, tok) for tok in text.split())
    return text


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


class KeywordMatcher:
    """Finds configured phrases in text: whole words for Latin scripts, substrings for CJK."""

    def __init__(self, keywords: Iterable[str]):
        self.keywords = [k for k in keywords if k.strip()]
        self._latin = []
        self._cjk = []
        for k in self.keywords:
            if _is_cjk(k):
                self._cjk.append((k, _simplified(k)))
            else:
                norm = normalise(k)
                if norm:
                    self._latin.append((k, re.compile(rf"(?<!\w){re.escape(norm)}(?!\w)")))

    def find(self, text: str) -> list[str]:
        norm = normalise(text)
        hits = [k for k, rx in self._latin if rx.search(norm)]
        if self._cjk and _is_cjk(text):
            flat = _simplified(text)  # the recogniser writes traditional characters as often as simplified
            hits += [k for k, sub in self._cjk if sub in flat]
        return hits


def _simplified(text: str) -> str:
    from ace.products.adwords import simplified

    return simplified(text)


@dataclass(frozen=True)
class SpeechOptions:
    baseline_n: int = 40  #: sentences in the speech-rate baseline
    rate_lo: float = 1.2  #: speech rate / typical rate where the score starts
    rate_hi: float = 1.8  #: ... and where it is full
    exclamation_score: float = 0.5  #: score of a sentence ending with "!"
    keyword_score: float = 1.0


class SpeechDetector(Detector):
    """Feed sentences (in time order) with :meth:`process_sentences`."""

    name = "speech"

    def __init__(self, keywords: Iterable[str] = (), options: SpeechOptions | None = None):
        self.o = options or SpeechOptions()
        self.matcher = KeywordMatcher(keywords)
        self._rates = RollingBaseline(self.o.baseline_n, min_count=5)

    def process_sentences(self, sentences: Iterable[Sentence]) -> list[Signal]:
        out: list[Signal] = []
        for s in sentences:
            out.extend(self._score(s))
        return out

    def _score(self, s: Sentence) -> list[Signal]:
        out: list[Signal] = []
        span = max(s.end - s.start, 0.1)
        mid = (s.start + s.end) / 2
        for kw in self.matcher.find(s.text):
            # place the keyword at the words that say it when timings allow
            t = _phrase_time(s, kw) or mid
            out.append(Signal("keyword", t, self.o.keyword_score, f'said "{kw}"'))
        n_words = len(s.words) if s.words else len(s.text.split())
        rate = n_words / span
        excitement = 0.0
        reasons = []
        if self._rates.ready():
            typical = self._rates.median()
            if typical > 0:
                r = ramp(rate / typical, self.o.rate_lo, self.o.rate_hi)
                if r > 0:
                    excitement = max(excitement, r)
                    reasons.append(f"fast speech {rate:.1f} words/s vs typical {typical:.1f}")
        if s.text.rstrip().endswith(("!", "！")) or s.text.count("!") >= 1:
            excitement = max(excitement, self.o.exclamation_score)
            reasons.append("exclamation")
        if n_words >= 3:
            self._rates.add(rate)
        if excitement > 0:
            # one signal per second the sentence spans
            t = s.start
            while t < s.end:
                out.append(Signal(self.name, min(t + 0.5, s.end), round(excitement, 4), "; ".join(reasons)))
                t += 1.0
        return out


def _phrase_time(s: Sentence, phrase: str) -> float | None:
    if not s.words:
        return None
    first = normalise(phrase).split()[:1]
    for w in s.words:
        if first and normalise(w.text) == first[0]:
            return (w.start + w.end) / 2
        if _is_cjk(phrase) and phrase[:1] in w.text:
            return (w.start + w.end) / 2
    return None


# Whisper's encoder was trained on 30 s of audio, and faster-whisper pads every window to 30 s
# before encoding it: a fixed cost per window however little audio it holds. The live pipeline
# decodes 8-20 s windows; with tiny.en, padding them to 15 s instead halves the encoder's work (the
# live transcriber ran 2.2x faster) at about the same word error rate on the public English
# recordings (beam 5: 6.8% with either; beam 1: 7.3% vs 6.8%), with word times 0.04 s from the 30 s
# ones on average. base is more sensitive (+2.6 to +3.4 points at 15-25 s) and keeps 30 s, see
# models.registry.live_context_s. The padding length is faster-whisper's ``pad_or_trim`` default; a
# per-thread setting shortens it only for a call that asks (``context_s``); batch transcription is
# left as it is.
_CONTEXT = threading.local()
#: mel frames per second of audio (Whisper's 10 ms hop)
_FRAMES_PER_S = 100


def _wrap_once(name: str, make: Callable) -> bool:
    """Replace faster-whisper's module-level function ``name`` by ``make(original)``, once; False
    when this faster-whisper has no such function."""
    try:
        import faster_whisper.transcribe as fwt
    except ImportError:  # pragma: no cover - a dependency
        return False
    orig = getattr(fwt, name, None)
    if orig is None:  # pragma: no cover - another faster-whisper
        return False
    if not getattr(orig, "_ace_wrapped", False):
        wrapped = make(orig)
        wrapped._ace_wrapped = True
        setattr(fwt, name, wrapped)
    return True


def _install_context_hook() -> bool:
    """Wrap faster-whisper's ``pad_or_trim`` once; False when this faster-whisper has none
    (then every window is padded to 30 s, as before)."""

    def make(orig):
        def pad_or_trim(array, length: int = 3000, *, axis: int = -1):
            frames = getattr(_CONTEXT, "frames", None)
            if frames and length == 3000:
                length = min(length, max(frames, array.shape[axis]))
            return orig(array, length, axis=axis)

        return pad_or_trim

    return _wrap_once("pad_or_trim", make)


# faster-whisper runs its voice-activity filter (Silero VAD) on each window it is given. A live
# stream runs the same filter on its window before sending it to the speech pool (a window with no
# speech is not sent at all); the pool then uses the chunks the stream found (``speech``) instead of
# running the filter again: the same function on the same samples, so the same chunks.
_VAD = threading.local()


def speech_chunks(audio: np.ndarray) -> list[dict]:
    """The speech in 16 kHz ``audio`` as faster-whisper's own filter finds it (Silero VAD with its
    default options): ``[{"start": sample, "end": sample}, ...]``, empty when nothing is said."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if audio.size < 1600:
        return []
    return get_speech_timestamps(audio, VadOptions())


def _install_vad_hook() -> bool:
    """Wrap faster-whisper's ``get_speech_timestamps`` once, so that a call given the window's chunks
    uses them; False when this faster-whisper has none (the filter then runs again)."""

    def make(orig):
        def get_speech_timestamps(audio, vad_options=None, *args, **kwargs):
            known = getattr(_VAD, "chunks", None)
            if known is not None and getattr(_VAD, "size", -1) == audio.shape[0]:
                return [dict(c) for c in known]
            return orig(audio, vad_options, *args, **kwargs)

        return get_speech_timestamps

    return _wrap_once("get_speech_timestamps", make)


class Transcriber:
    """faster-whisper with ACE's defaults: word timestamps, VAD filtering, no conditioning on the
    previous window (fewer repetition loops), results shifted into show time.

    With ``workers`` > 1 (a model loaded with as many ``num_workers``), audio over 40 s is split at
    its quietest moments (:func:`quiet_splits`) into one part per worker, transcribed at once; a
    split falls in a pause, so no word is cut in two."""

    def __init__(self, model, beam_size: int = 1, language: str | None = None, vad: bool = True,
                 workers: int = 1):
        self.model = model
        self.beam_size = beam_size
        self.language = language
        self.vad = vad
        self.workers = max(1, int(workers))

    def _language(self) -> str | None:
        if self.language is None and getattr(self.model, "model", None) is not None and not self.model.model.is_multilingual:
            return "en"
        return self.language

    def transcribe(
        self,
        audio: np.ndarray,
        offset: float = 0.0,
        progress: Callable[[float], None] | None = None,
    ) -> list[Sentence]:
        """Transcribe 16 kHz mono float32 ``audio`` that starts at show time ``offset``.

        ``progress`` is called with the show time reached so far (with several workers: ``offset``
        plus the seconds of audio done).
        """
        if audio.size < 1600:  # under 0.1 s: nothing to say
            return []
        seconds = audio.size / SAMPLE_RATE
        if self.workers <= 1 or seconds < 2 * 20.0:
            return self._transcribe_one(audio, offset, progress)
        # one part per worker: Whisper pads every part's last 30 s window, so more parts cost more
        cuts = [0, *quiet_splits(audio, every=seconds / self.workers), audio.size]
        pieces = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
        reached = [0.0] * len(pieces)
        lock = threading.Lock()

        def run(k: int) -> list[Sentence]:
            a, b = pieces[k]
            start = offset + a / SAMPLE_RATE

            def report(t: float) -> None:
                with lock:
                    reached[k] = max(reached[k], t - start)
                    progress(offset + sum(reached))

            return self._transcribe_one(audio[a:b], start, report if progress is not None else None)

        with ThreadPoolExecutor(len(pieces), thread_name_prefix="ace-speech") as pool:
            results = list(pool.map(run, range(len(pieces))))
        return [sentence for part_sentences in results for sentence in part_sentences]

    def _transcribe_one(self, audio: np.ndarray, offset: float,
                        progress: Callable[[float], None] | None, context_s: float | None = None,
                        speech: Sequence[dict] | None = None) -> list[Sentence]:
        """Transcribe one window. ``context_s`` (under 30) pads it to that many seconds for the
        encoder instead of Whisper's 30 (see ``_install_context_hook``) when the model runs on the
        CPU; longer windows keep their length. ``speech``: the window's speech chunks as
        :func:`speech_chunks` found them (none: nothing is said, and the model is not run)."""
        if audio.size < 1600:
            return []
        if speech is not None and self.vad:
            if not speech:
                return []
            if _install_vad_hook():
                _VAD.chunks, _VAD.size = [dict(c) for c in speech], audio.shape[0]
        try:
            return self._transcribe_padded(audio, offset, progress, context_s)
        finally:
            _VAD.chunks = None

    def _transcribe_padded(self, audio: np.ndarray, offset: float, progress: Callable[[float], None] | None,
                           context_s: float | None) -> list[Sentence]:
        frames = None
        # on a GPU the encoder's 30 s cost little and one shape for every window runs faster
        # (measured on an H200: 77 streams' speech in real time with 30 s, 66 with 15 s)
        on_cpu = getattr(getattr(self.model, "model", None), "device", "cpu") == "cpu"
        if context_s is not None and 0 < context_s < 30 and on_cpu and _install_context_hook():
            frames = int(round(context_s * _FRAMES_PER_S))
        _CONTEXT.frames = frames
        try:
            return self._run(audio, offset, progress)
        finally:
            _CONTEXT.frames = None

    def _run(self, audio: np.ndarray, offset: float, progress: Callable[[float], None] | None) -> list[Sentence]:
        segments, _info = self.model.transcribe(
            audio,
            beam_size=self.beam_size,
            language=self._language(),
            word_timestamps=True,
            vad_filter=self.vad,
            condition_on_previous_text=False,
            temperature=0.0,  # no sampled fallback: the same audio always gives the same words
        )
        out: list[Sentence] = []
        for seg in segments:
            words = tuple(
                Word(round(offset + float(w.start), 3), round(offset + float(w.end), 3), w.word.strip(), round(float(w.probability), 3))
                for w in (seg.words or ())
                if w.word.strip()
            )
            text = seg.text.strip()
            if not text:
                continue
            if words:
                out.extend(split_sentences(words))
            else:
                out.append(Sentence(round(offset + float(seg.start), 3), round(offset + float(seg.end), 3), text))
            if progress is not None:
                progress(offset + float(seg.end))
        return out


SAMPLE_RATE = 16000


class LiveTranscriber:
    """Causal transcription of a stream that arrives in pieces, the way the live pipeline hears it.

    Audio is fed as it comes (:meth:`feed`); once ``window`` seconds are buffered they are
    transcribed, and words are *committed* only up to a safe break — a word that ends a sentence or
    is followed by a pause of ``min_gap`` — that ends at least ``guard`` seconds before the buffer's
    end (a word at the end may be cut in two). The next window starts at that break, so the
    uncommitted tail is heard again with what follows it: a word cut at a window edge is neither
    lost nor doubled. Without a safe break the buffer grows, up to ``max_window`` seconds, where
    every word clear of the guard is committed. :meth:`flush` commits the rest at the end.

    Committed words come back in stream time, in order, each exactly once. With ``context_s`` the
    encoder sees each window padded to that many seconds rather than Whisper's 30
    (:func:`models.registry.live_context_s` says which models keep their accuracy so).
    """

    def __init__(self, transcriber: Transcriber, window: float = 8.0, guard: float = 1.0,
                 min_gap: float = 0.25, max_window: float = 20.0, start: float = 0.0,
                 context_s: float | None = None):
        if not 0 < guard < window <= max_window:
            raise ValueError("need 0 < guard < window <= max_window")
        if context_s is not None and not 0 < context_s <= 30:
            raise ValueError("context_s must be in (0, 30] seconds, or None for Whisper's 30")
        self.transcriber = transcriber
        self.context_s = context_s
        self.window, self.guard, self.min_gap, self.max_window = window, guard, min_gap, max_window
        self._chunks: list[np.ndarray] = []
        self._size = 0
        self._start = start  # stream time of the first buffered sample
        self._committed_until = start
        self._need = window  # buffered seconds that trigger the next decode
        self.decodes = 0  #: windows transcribed so far
        self.audio_decoded = 0.0  #: seconds of audio handed to the model (overlap included)

    @property
    def buffered(self) -> float:
        return self._size / SAMPLE_RATE

    def feed(self, audio: np.ndarray) -> list[Word]:
        """Add the next 16 kHz mono float32 samples; returns the words committed by them."""
        if audio.size:
            self._chunks.append(np.asarray(audio, dtype=np.float32))
            self._size += audio.size
        out: list[Word] = []
        while self.buffered >= max(self.window, min(self._need, self.max_window)):
            words, progressed = self._decode(final=False)
            out.extend(words)
            if not progressed:
                break
            self._need = self.window
        return out

    def hurry(self, min_s: float = 2.0) -> list[Word]:
        """Decode what is buffered now rather than at the next full window, and commit what can be
        committed (someone is waiting for these words); nothing when under ``guard + min_s``
        seconds are buffered. The next window is due a full ``window`` later, as after any decode."""
        if self.buffered < self.guard + min_s:
            return []
        words, _progressed = self._decode(final=False)
        self._need = self.window
        return words

    def flush(self) -> list[Word]:
        """Commit everything still buffered (the stream ended)."""
        words, _ = self._decode(final=True) if self._size else ([], True)
        self._chunks, self._size = [], 0
        return words

    def _buffer(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, np.float32)

    def _decode(self, final: bool) -> tuple[list[Word], bool]:
        audio = self._buffer()
        end = self._start + audio.size / SAMPLE_RATE
        self.decodes += 1
        self.audio_decoded += audio.size / SAMPLE_RATE
        sents = self.transcriber._transcribe_one(audio, self._start, None, context_s=self.context_s)
        heard = [w for sent in sents for w in sent.words]
        # never repeat what an earlier window committed
        heard = [w for w in heard if w.start >= self._committed_until - 0.05 or w.end > self._committed_until + 0.1]
        if final:
            self._committed_until = max([self._committed_until, *(w.end for w in heard)])
            return heard, True
        edge = end - self.guard
        cut = None  # index of the last word to commit
        for i, w in enumerate(heard):
            if w.end > edge:
                break
            nxt = heard[i + 1] if i + 1 < len(heard) else None
            if w.text.endswith(_SENTENCE_END) or (nxt is not None and nxt.start - w.end >= self.min_gap) \
                    or (nxt is None and edge - w.end >= self.min_gap):
                cut = i
        forced = self.buffered >= self.max_window
        if cut is None and forced:
            cut = max((i for i, w in enumerate(heard) if w.end <= edge), default=None)
        if cut is None:
            if not heard or heard[0].start > edge:
                # nothing said that could be committed yet: keep the tail that may hold a word
                return [], self._advance(min(edge, heard[0].start - 0.1) if heard else edge)
            if forced:  # one word longer than the guard band: give up on it rather than stall
                return [], self._advance(edge)
            self._grow()
            return [], False
        words = heard[: cut + 1]
        last = words[-1].end
        nxt = heard[cut + 1].start if cut + 1 < len(heard) else edge
        self._committed_until = last
        self._advance(min(max(last, (last + nxt) / 2), edge))
        return words, True

    def _advance(self, t: float) -> bool:
        """Drop the buffered audio before stream time ``t``."""
        n = int(round((t - self._start) * SAMPLE_RATE))
        if n <= 0:
            self._grow()
            return False
        audio = self._buffer()[n:]
        self._chunks, self._size = ([audio] if audio.size else []), audio.size
        self._start += n / SAMPLE_RATE
        return True

    def _grow(self) -> None:
        """Wait for more audio before the next try (the window grows by a second)."""
        self._need = self.buffered + 1.0



def quiet_splits(audio: np.ndarray, every: float = 60.0, search: float = 4.0, span: float = 0.3,
                 sr: int = SAMPLE_RATE) -> list[int]:
    """Sample indices that split ``audio`` into parts of about ``every`` seconds, each at the
    middle of the quietest ``span`` seconds within ``search`` seconds of its target, so a split
    falls in a pause between words. Sorted, strictly inside the audio, at least ``every / 2`` apart."""
    n = audio.size
    frame = max(1, int(0.01 * sr))
    if n < 1.5 * every * sr or n < 4 * frame:
        return []
    frames = n // frame
    energy = np.square(audio[: frames * frame].astype(np.float32)).reshape(frames, frame).mean(axis=1)
    k = max(1, int(round(span / 0.01)))
    smooth = np.convolve(energy, np.ones(k) / k, mode="same")
    out: list[int] = []
    target = every
    last = 0.0
    total = n / sr
    while target < total - every / 2:
        lo = max(int((target - search) / 0.01), int((last + every / 2) / 0.01), 1)
        hi = min(int((target + search) / 0.01), frames - 1)
        if hi > lo:
            i = lo + int(np.argmin(smooth[lo:hi]))
            out.append(i * frame + frame // 2)
            last = out[-1] / sr
        target += every
    return out


_SENTENCE_END = (".", "!", "?", "。", "！", "？", "…")


def split_sentences(words: Sequence[Word], ends: tuple[str, ...] = _SENTENCE_END) -> list[Sentence]:
    """Split one recognised segment into sentences at words that end one (whisper often runs
    several sentences into one segment; ``ends``: the punctuation that ends one); the text keeps
    the words' own punctuation."""
    from ace.fusion import join_words

    out: list[Sentence] = []
    current: list[Word] = []
    for w in words:
        current.append(w)
        if w.text.endswith(ends):
            out.append(Sentence(current[0].start, current[-1].end, join_words(current), tuple(current)))
            current = []
    if current:
        out.append(Sentence(current[0].start, current[-1].end, join_words(current), tuple(current)))
    return out


def words_of(sentences: Sequence[Sentence]) -> list[Word]:
    return [w for s in sentences for w in s.words]
