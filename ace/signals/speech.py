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
import unicodedata
from collections.abc import Callable, Iterable, Sequence
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
                self._cjk.append((k, k))
            else:
                norm = normalise(k)
                if norm:
                    self._latin.append((k, re.compile(rf"(?<!\w){re.escape(norm)}(?!\w)")))

    def find(self, text: str) -> list[str]:
        norm = normalise(text)
        hits = [k for k, rx in self._latin if rx.search(norm)]
        hits += [k for k, sub in self._cjk if sub in text]
        return hits


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


class Transcriber:
    """faster-whisper with ACE's defaults: word timestamps, VAD filtering, no conditioning on the
    previous window (fewer repetition loops), results shifted into show time."""

    def __init__(self, model, beam_size: int = 1, language: str | None = None, vad: bool = True):
        self.model = model
        self.beam_size = beam_size
        self.language = language
        self.vad = vad

    def transcribe(
        self,
        audio: np.ndarray,
        offset: float = 0.0,
        progress: Callable[[float], None] | None = None,
    ) -> list[Sentence]:
        """Transcribe 16 kHz mono float32 ``audio`` that starts at show time ``offset``.

        ``progress`` is called with the show time reached so far.
        """
        if audio.size < 1600:  # under 0.1 s: nothing to say
            return []
        language = self.language
        if language is None and getattr(self.model, "model", None) is not None and not self.model.model.is_multilingual:
            language = "en"
        segments, _info = self.model.transcribe(
            audio,
            beam_size=self.beam_size,
            language=language,
            word_timestamps=True,
            vad_filter=self.vad,
            condition_on_previous_text=False,
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


_SENTENCE_END = (".", "!", "?", "。", "！", "？", "…")


def split_sentences(words: Sequence[Word]) -> list[Sentence]:
    """Split one recognised segment into sentences at words that end one (whisper often runs
    several sentences into one segment); the text keeps the words' own punctuation."""
    from ace.fusion import join_words

    out: list[Sentence] = []
    current: list[Word] = []
    for w in words:
        current.append(w)
        if w.text.endswith(_SENTENCE_END):
            out.append(Sentence(current[0].start, current[-1].end, join_words(current), tuple(current)))
            current = []
    if current:
        out.append(Sentence(current[0].start, current[-1].end, join_words(current), tuple(current)))
    return out


def words_of(sentences: Sequence[Sentence]) -> list[Word]:
    return [w for s in sentences for w in s.words]
