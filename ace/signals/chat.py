"""What chat says, per second: message counts by kind of reaction, from the text itself.

Counts alone miss what a chat means: fifty "LUL" in ten seconds and fifty questions about the
price are the same rate. :func:`chat_series` turns chat events (Twitch, Bilibili danmaku and
ACE JSONL all load into the same :class:`~ace.types.Event`) into one row per second of the show,
one column per kind of message (:data:`COLUMNS`):

``msgs``      chat messages (one account counts at most once per :data:`USER_COOLDOWN_S`)
``hype``      excitement: PogChamp, Pog, Kreygasm, OMG, WOW, 666, 牛, 卧槽, 上车, 绝了, ...
``laugh``     laughter: LUL, KEKW, OMEGALUL, 4Head, lol, lmao, haha..., 哈哈哈, 233, xswl, 笑死
``shock``     dismay, fear, sadness: monkaS, WutFace, D:, NotLikeThis, BibleThump, 啊啊啊, 完了, 心疼
``emphatic``  emphasis: ``!!!``/``???``, a letter repeated four times or more, a shouted (all
              capitals) message
``question``  a real question: a question mark in a message of three words or more (or a
              Chinese question word) — people asking, not reacting
``short``     a message of one or two words (reactions are short)
``copy``      part of a copy-paste wave: the same text (letters and digits only, case
              folded) sent by :data:`COPY_USERS` accounts or more within :data:`COPY_WINDOW_S` s
``emote``     a message holding an emote-like word (a known emote, or a CamelCase word of
              the Twitch kind such as ``MingLee``) or only emoji

The word lists are written by hand from what these platforms use, not fitted to any data: the
learned scorer (:mod:`models.scorer`) decides how much each column counts. Matching is on
whitespace-separated words (case folded) for Latin text and on substrings for Chinese, which
has no spaces.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np

from ace.types import Event

COLUMNS: tuple[str, ...] = ("msgs", "hype", "laugh", "shock", "emphatic", "question", "short", "copy", "emote")
#: Fewer chat messages than this say nothing about a show: the highlight model is not asked.
MIN_CHAT = 20
#: Seconds within which the same text from other users makes a copy-paste wave ...
COPY_WINDOW_S = 15.0
#: ... sent by at least this many accounts (two accounts trading lines are spam, not a wave).
COPY_USERS = 3
#: A user's messages closer than this to their last counted one are not counted again, so one
#: account flooding the room is not a crowd (crowds on real streams are many accounts).
USER_COOLDOWN_S = 5.0

HYPE_WORDS = frozenset("""
pogchamp pog poggers pogu pogchomp pagchomp pogger poggies kreygasm omg omfg wow woah whoa wtf holy hype hyped
insane clutch gg ggwp ez clap epic sick nuts godlike monster incredible amazing unreal letsgo lets
goat pogpog 666 6666 66666 yes yess yesss noway yyds nb nbnb
""".split())
LAUGH_WORDS = frozenset("""
lul lulw lol lool loool lmao lmfao kekw kek omegalul 4head hahaa haha hahaha hahahaha xd xdd rofl
elegiggle lel jebaited kappa keklmao icant xswl hhh hhhh hhhhh
""".split())
SHOCK_WORDS = frozenset("""
monkas wutface d: notlikethis dansgame failfish biblethump feelsbadman residentsleeper pepehands sadge
rip f nooo noooo wtff ouch oof yikes babyrage
""".split())
#: Chinese reactions: matched as substrings, so a longer run (哈哈哈哈) or a phrase around them counts.
HYPE_ZH = ("牛", "卧槽", "我靠", "上车", "绝了", "太强", "厉害", "帅", "冲", "好家伙", "秀", "nb", "yyds", "前方高能", "高能")
LAUGH_ZH = ("哈哈哈", "hhh", "233", "笑死", "xswl", "草", "笑")
SHOCK_ZH = ("啊啊啊", "完了", "心疼", "呜呜", "可惜", "卧槽", "吓", "？？？")
QUESTION_ZH = ("吗", "多少钱", "怎么", "什么", "为什么", "哪里", "几号", "链接")

_KNOWN_EMOTES = frozenset("""
pogchamp kreygasm lul kekw omegalul 4head hahaa monkas wutface notlikethis dansgame failfish biblethump
feelsbadman feelsgoodman residentsleeper pepehands sadge kappa keepo elegiggle jebaited trihard cmonbruh
minglee osfrog seemsgood babyrage kappapride vohiyo swiftrage smorc coolstorybob pjsalt sobayed
""".split())
EMOTE_LIKE = re.compile(r"^[A-Za-z]*[a-z][A-Z][A-Za-z0-9]*$|^[0-9][A-Z][a-z]+$")
_EMPHASIS = re.compile(r"[!?！？]{3,}|([A-Za-z])\1{3,}|(.)\2{4,}")
_LAUGH_RUN = re.compile(r"(ha){3,}|(he){3,}|哈{3,}|h{3,}|2333*|x{2}d+", re.IGNORECASE)
_EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")
_NORMAL = re.compile(r"[\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u4e00-\u9fff]")


def message_kinds(text: str) -> tuple[bool, bool, bool, bool, bool, bool, bool]:
    """``(hype, laugh, shock, emphatic, question, short, emote)`` for one message's text."""
    text = text.strip()
    low = text.lower()
    words = low.split()
    raw = text.split()
    cjk = bool(_CJK.search(text))
    hype = any(w in HYPE_WORDS for w in words) or (cjk and any(k in low for k in HYPE_ZH))
    laugh = (any(w in LAUGH_WORDS for w in words) or bool(_LAUGH_RUN.search(low))
             or (cjk and any(k in low for k in LAUGH_ZH)))
    shock = any(w in SHOCK_WORDS for w in words) or any(k in text for k in SHOCK_ZH)
    letters = [c for c in text if c.isalpha() and c.isascii()]
    shouted = len(letters) >= 4 and all(c.isupper() for c in letters)
    emphatic = bool(_EMPHASIS.search(text)) or shouted
    n_words = len(words) if not cjk else max(len(words), len(_CJK.findall(text)) // 2)
    question = (("?" in text or "？" in text) and n_words >= 3 and not re.fullmatch(r"[?？\s]+", text)) or (
        cjk and any(k in text for k in QUESTION_ZH))
    short = 0 < n_words <= 2
    emote = (any(w.lower() in _KNOWN_EMOTES or EMOTE_LIKE.match(w) for w in raw)
             or (bool(_EMOJI.search(text)) and not any(c.isalnum() for c in text)))
    return hype, laugh, shock, emphatic, question, short, emote


def normal_text(text: str) -> str:
    """A message's text reduced for copy-paste matching: letters and digits, case folded."""
    return _NORMAL.sub("", text.casefold())[:60]


def chat_series(events: Iterable[Event], duration: float) -> np.ndarray:
    """``(T, len(COLUMNS))`` float32 counts per second (``T = ceil(duration)``, at least 1) of the
    chat events (``kind == "chat"``; other kinds are ignored). Events past the end count in the
    last second; events before 0 in the first."""
    n = max(1, int(math.ceil(duration)))
    x = np.zeros((n, len(COLUMNS)), dtype=np.float32)
    by_text: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
    last: dict[str, float] = {}
    for e in sorted((e for e in events if e.kind == "chat"), key=lambda e: e.t):
        if e.user:
            if e.t - last.get(e.user, -math.inf) < USER_COOLDOWN_S:
                continue
            last[e.user] = e.t
        i = min(max(int(math.floor(e.t)), 0), n - 1)
        hype, laugh, shock, emphatic, question, short, emote = message_kinds(e.text or "")
        row = x[i]
        row[0] += 1
        row[1] += hype
        row[2] += laugh
        row[3] += shock
        row[4] += emphatic
        row[5] += question
        row[6] += short
        row[8] += emote
        key = normal_text(e.text or "")
        if len(key) >= 2:
            by_text[key].append((e.t, e.user, i))
    for posts in by_text.values():
        if len(posts) < COPY_USERS:
            continue
        posts.sort()
        # the accounts that sent this text within COPY_WINDOW_S of each post: a window sliding over
        # the posts in time order (linear in the posts, however many send the same line)
        accounts: Counter[str] = Counter()
        lo = hi = 0
        for j, (t, user, i) in enumerate(posts):
            while hi < len(posts) and posts[hi][0] <= t + COPY_WINDOW_S:
                accounts[posts[hi][1] or f"anon{hi}"] += 1
                hi += 1
            while posts[lo][0] < t - COPY_WINDOW_S:
                key = posts[lo][1] or f"anon{lo}"
                accounts[key] -= 1
                if not accounts[key]:
                    del accounts[key]
                lo += 1
            if len(accounts) - 1 >= COPY_USERS - 1:  # other accounts than this post's own
                x[i, 7] += 1
    return x
