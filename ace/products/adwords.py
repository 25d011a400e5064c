"""Ad-wording checks: phrases that advertising rules forbid or that platforms flag in live commerce.

China's Advertising Law (art. 9) forbids absolute claims such as "国家级", "最高级", "最佳"; live
commerce platforms flag more ("第一", "顶级", "全网最低", "100%有效"), and English-speaking
platforms flag unprovable superlatives and health claims ("best ever", "guaranteed cure").
:data:`DEFAULT_AD_WORDS` is where a tenant starts; the list is a setting (``ACE_AD_WORDS``) and
each tenant may keep its own (the back office's ``PUT /settings/ad-words``).

Matching is on the transcript: Chinese after traditional -> simplified conversion with spaces
removed, so "最 好" and "最好" match; Latin words on word boundaries and case-insensitive, so
"number one" does not match "number ones"... but does match "Number One". A Chinese phrase inside
a longer word that is harmless is still flagged (staff review it); phrases may be given with an
exception after ``!``: ``第一!第一次`` flags "第一" but not "第一次".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ace.errors import InputError
from ace.types import AdWordHit, Sentence, Word

DEFAULT_AD_WORDS: tuple[str, ...] = (
    # Chinese: absolute claims (广告法 第九条) and what platforms flag in live commerce
    "最好", "最佳", "最强", "最低价", "全网最低", "第一!第一次!第一个!第一步!第一天!第一件!第一眼", "唯一", "国家级", "世界级",
    "顶级", "极品", "首选", "绝对", "100%有效", "百分之百有效", "万能", "根治", "永久",
    # English: unprovable superlatives and health claims
    "best ever", "number one", "lowest price ever", "guaranteed cure", "100% effective", "miracle cure",
    "cures everything", "risk free", "best in the world",
)
MAX_AD_WORDS = 500
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

_cc = None


def simplified(text: str) -> str:
    """Traditional Chinese -> simplified (Whisper writes either); other text unchanged."""
    global _cc
    if not _CJK.search(text):
        return text
    if _cc is None:
        import opencc

        _cc = opencc.OpenCC("t2s")
    return _cc.convert(text)


def parse_ad_words(items: Iterable[str], where: str = "ad words") -> tuple[str, ...]:
    """A checked list: non-empty phrases of at most 100 characters, duplicates dropped."""
    out: list[str] = []
    for i, raw in enumerate(items):
        if not isinstance(raw, str):
            raise InputError(f"{where}[{i}]: must be a string, got {type(raw).__name__}")
        p = " ".join(raw.split())
        if not p or p.startswith("!"):
            raise InputError(f"{where}[{i}]: an empty phrase")
        if len(p) > 100:
            raise InputError(f"{where}[{i}]: longer than 100 characters")
        out.append(p)
    if len(out) > MAX_AD_WORDS:
        raise InputError(f"{where}: {len(out)} phrases; at most {MAX_AD_WORDS}")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class _Rule:
    phrase: str  #: as listed (without its exceptions)
    pattern: re.Pattern
    exceptions: tuple[re.Pattern, ...]


def _compile(phrase: str) -> re.Pattern:
    key = _norm(phrase)
    if _CJK.search(key):
        return re.compile(re.escape(key))
    return re.compile(r"(?<![\w])" + re.escape(key).replace(r"\ ", r"\s+") + r"(?![\w])")


def _norm(text: str) -> str:
    t = simplified(text).lower().replace("％", "%")
    # spaces between CJK characters are the recogniser's, not the speaker's
    t = re.sub(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff%\d])|(?<=[\d%])\s+(?=[\u3400-\u9fff])", "", t)
    return re.sub(r"[^\w%\s]", " ", t)


class AdWordChecker:
    """Finds listed phrases in sentences, with the time each was said (from word timestamps)."""

    def __init__(self, phrases: Sequence[str] = DEFAULT_AD_WORDS):
        self.rules: list[_Rule] = []
        for p in parse_ad_words(phrases):
            main, *exc = p.split("!")
            self.rules.append(_Rule(main.strip(), _compile(main.strip()), tuple(_compile(x.strip()) for x in exc if x.strip())))

    def find(self, sentences: Iterable[Sentence]) -> list[AdWordHit]:
        hits: list[AdWordHit] = []
        for s in sentences:
            text, spans = _indexed(s)
            for r in self.rules:
                blocked = [(m.start(), m.end()) for x in r.exceptions for m in x.finditer(text)]
                for m in r.pattern.finditer(text):
                    if any(a <= m.start() and m.end() <= b for a, b in blocked):
                        continue
                    a, b = _time_of(spans, m.start(), m.end(), s)
                    hits.append(AdWordHit(phrase=r.phrase, start=a, end=b, text=s.text.strip()))
        hits.sort(key=lambda h: (h.start, h.phrase))
        return hits


def _indexed(s: Sentence) -> tuple[str, list[tuple[int, int, Word]]]:
    """The sentence's normalised text and, per word, the characters it covers there."""
    if not s.words:
        return _norm(s.text), []
    parts: list[str] = []
    spans: list[tuple[int, int, Word]] = []
    pos = 0
    for w in s.words:
        t = _norm(w.text)
        if parts and t and not (_CJK.match(t.lstrip()[:1] or " ") and _CJK.search(parts[-1][-1:] or "")):
            t = " " + t.strip() if not t.startswith(" ") else t
        t = t if parts else t.lstrip()
        spans.append((pos, pos + len(t), w))
        parts.append(t)
        pos += len(t)
    text = "".join(parts)
    return text, spans


def _time_of(spans: list[tuple[int, int, Word]], a: int, b: int, s: Sentence) -> tuple[float, float]:
    ws = [w for x, y, w in spans if x < b and y > a]
    if not ws:
        return s.start, s.end
    return ws[0].start, ws[-1].end


def hits_in(hits: Sequence[AdWordHit], start: float, end: float) -> list[AdWordHit]:
    """The hits said inside ``[start, end]`` (by their middle)."""
    return [h for h in hits if start <= (h.start + h.end) / 2 <= end]
