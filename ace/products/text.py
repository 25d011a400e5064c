"""What a host says about products, read from the transcript: names (fuzzy, and in Chinese by
sound), prices said aloud and link calls ("上链接", "3 2 1", "the link is up").

Chinese is compared as pinyin without tones, so a recogniser's homophone ("小雄" for "小熊",
"上练肩" for "上链接") still matches; both traditional and simplified characters are read. Latin
text is compared case-insensitively with a fuzzy ratio (rapidfuzz), so "travel mugs" matches "travel
mug". Nothing here is fitted to data: the thresholds are what a one-letter slip costs a name of
typical length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz

from ace.products.adwords import simplified
from ace.types import Product

_CJK = re.compile(r"[\u3400-\u9fff]")
#: a name matches at this fuzzy ratio (0-100) or above; Chinese by its pinyin
NAME_RATIO = 88.0
#: Latin names shorter than this must match exactly (on word boundaries)
_SHORT = 5


@lru_cache(maxsize=4096)
def pinyin(text: str) -> str:
    """Toneless pinyin of the Chinese in ``text``, syllables separated by spaces; other words
    lower-cased as they are. Traditional characters are read as simplified ones."""
    from pypinyin import lazy_pinyin

    t = simplified(text).lower()
    out: list[str] = []
    for part in lazy_pinyin(t, errors=lambda s: [s]):
        out.extend(re.findall(r"[a-z]+|\d+(?:\.\d+)?", part))
    return " ".join(out)


def latin(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()))


@dataclass(frozen=True)
class _Name:
    text: str
    key: str  #: pinyin (Chinese) or lower-case words
    chinese: bool


class ProductMatcher:
    """Finds which products a sentence names, with how well (0-100)."""

    def __init__(self, products: list[Product]):
        self.products = list(products)
        self._names: dict[str, list[_Name]] = {}
        for p in self.products:
            names = []
            for n in (p.name, *p.aliases):
                zh = bool(_CJK.search(n))
                key = pinyin(n) if zh else latin(n)
                if key:
                    names.append(_Name(n, key, zh))
            self._names[p.id] = names

    def mentions(self, text: str) -> dict[str, tuple[float, str]]:
        """product id -> (ratio, the name matched) for each product the text names."""
        zh_key = pinyin(text) if _CJK.search(text) else ""
        en_key = latin(text)
        found: dict[str, tuple[float, str]] = {}
        for pid, names in self._names.items():
            best = (0.0, "")
            for n in names:
                hay = zh_key if n.chinese else en_key
                if not hay:
                    continue
                r = _ratio(n.key, hay)
                if r > best[0]:
                    best = (r, n.text)
            if best[0] >= NAME_RATIO:
                found[pid] = best
        return found


def _ratio(needle: str, hay: str) -> float:
    if len(needle) < _SHORT:
        return 100.0 if re.search(rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])", hay) else 0.0
    if needle in hay:
        return 100.0
    al = fuzz.partial_ratio_alignment(needle, hay)
    if al is None:
        return 0.0
    # the matched stretch must be about as long as the name (no half-word matches)
    if al.dest_end - al.dest_start < 0.8 * len(needle):
        return 0.0
    return float(al.score)


# ---------------------------------------------------------------------------------------- prices

_DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
           "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_CN_NUM = re.compile(r"[零〇一幺二两俩三四五六七八九十百千万]+(?:[点块][零〇一二两三四五六七八九]+)?")
_EN_SMALL = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                        "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_EN_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"}
_EN_NUM = re.compile(r"\b(?:(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                     r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
                     r"thousand|and|point)[\s-]*)+", re.I)


def cn_number(s: str) -> float | None:
    """Chinese numerals to a number: 一百九十九 -> 199, 六十九 -> 69, 九块九 -> 9.9, 两千 -> 2000."""
    s = s.strip()
    frac = ""
    for sep in ("点", "块"):
        if sep in s:
            s, frac = s.split(sep, 1)
            break
    total, section, digit = 0, 0, None
    if not s:
        return None
    for ch in s:
        if ch in _DIGITS:
            if digit is not None and section == 0 and total == 0 and not any(u in s for u in _UNITS):
                digit = digit * 10 + _DIGITS[ch]  # 一九九 read digit by digit
                continue
            digit = _DIGITS[ch]
        elif ch in _UNITS:
            unit = _UNITS[ch]
            if unit == 10000:
                section = (section + (digit or 0)) * unit
                total += section
                section = 0
            else:
                section += (digit if digit is not None else 1) * unit
            digit = None
        else:
            return None
    value = float(total + section + (digit or 0))
    if frac:
        ds = "".join(str(_DIGITS[c]) for c in frac if c in _DIGITS)
        if ds:
            value += float("0." + ds)
    return value


def en_number(s: str) -> float | None:
    """English number words: "forty nine" -> 49, "one hundred and ninety nine" -> 199, "nine point nine" -> 9.9."""
    words = [w for w in re.split(r"[\s-]+", s.lower()) if w and w != "and"]
    if not words:
        return None
    if "point" in words:
        i = words.index("point")
        whole = en_number(" ".join(words[:i])) if i else 0.0
        ds = "".join(str(_EN_SMALL[w]) for w in words[i + 1:] if w in _EN_SMALL and _EN_SMALL[w] < 10)
        return None if whole is None else whole + (float("0." + ds) if ds else 0.0)
    total, cur = 0, 0
    for w in words:
        if w in _EN_SMALL:
            cur += _EN_SMALL[w]
        elif w in _EN_TENS:
            cur += _EN_TENS[w]
        elif w == "hundred":
            cur = max(cur, 1) * 100
        elif w == "thousand":
            total += max(cur, 1) * 1000
            cur = 0
        else:
            return None
    return float(total + cur)


def numbers(text: str) -> list[float]:
    """Every number said in ``text``: digits (1,299 / 9.9 / ¥69), Chinese numerals, English words."""
    t = simplified(text)
    out: list[float] = []
    for m in re.finditer(r"\d[\d,]*(?:\.\d+)?", t):
        try:
            out.append(float(m.group().replace(",", "")))
        except ValueError:
            pass
    for m in _CN_NUM.finditer(t):
        v = cn_number(m.group())
        if v is not None and not (len(m.group()) == 1 and m.group() in "一两"):  # 一/两 alone is "a"/"a couple"
            out.append(v)
    for m in _EN_NUM.finditer(t):
        chunk = m.group().strip()
        if chunk.lower() in {"and", "point", "one"}:
            continue
        v = en_number(chunk)
        if v is not None:
            out.append(v)
    return out


def says_price(text: str, price: float | None) -> bool:
    """Whether ``text`` says ``price`` aloud (any number within 1% of it, or 0.5)."""
    if price is None or price <= 0:
        return False
    return any(abs(v - price) <= max(0.5, 0.01 * price) for v in numbers(text))


# ---------------------------------------------------------------------------------------- link calls

_LINK_ZH = ("shang lian jie", "lian jie shang", "lian jie yi jing shang", "lian jie gua", "gua lian jie", "kai lian jie",
            "shang che", "qiang gou", "pin lian jie")
_LINK_EN = re.compile(r"\b(link is (?:up|live|open|in|below|down)|links? (?:are|is) (?:up|live)|link (?:for it )?is in the shop|"
                      r"in the shop below|link below|add (?:it )?to (?:your )?cart|grab it (?:now|right now)|go go go)\b")
_COUNT = re.compile(r"\b3\W{0,3}2\W{0,3}1\b|\bthree\W{1,3}two\W{1,3}one\b|三\W{0,2}二\W{0,2}一")


def link_call(text: str) -> str:
    """The link call in ``text`` ("" when none): the words that matched."""
    t = simplified(text)
    m = _COUNT.search(t.lower())
    if m:
        return m.group()
    m = _LINK_EN.search(t.lower())
    if m:
        return m.group()
    if _CJK.search(t):
        py = pinyin(t)
        for k in _LINK_ZH:
            if k in py or (len(k) >= 12 and fuzz.partial_ratio(k, py) >= 86):
                return t.strip()[:40]  # what was heard (matched by its sound)
    return ""


def countdown_digit(text: str) -> int | None:
    """A sentence that is only a digit of a countdown ("3", "三!", "two"), as the recogniser
    often splits "3, 2, 1" into three."""
    t = simplified(text).strip().strip(".,!?，。！？、 ").lower()
    return {"3": 3, "2": 2, "1": 1, "三": 3, "二": 2, "一": 1, "three": 3, "two": 2, "one": 1}.get(t)
