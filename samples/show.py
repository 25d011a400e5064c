"""A realistic sample show: a live-commerce / game stream with planted highlights and decoys.

:func:`make_sample_show` writes four files into a folder and returns their paths:

``show-<key>.mp4``
    720p30 H.264 (libx264 veryfast, a keyframe every 2 s, no scene-cut keyframes, a fixed IBBP
    pattern and no lookahead, capped CRF 23: like a live encoder) with AAC 48 kHz stereo, MP4 with
    ``faststart``. A host speaks English (espeak-ng) or Mandarin (``lang="zh"``: FastSpeech2 via
    :mod:`samples.voice_zh`) with natural pauses over a quiet ambient bed; the picture cuts between
    a few visually distinct scenes ("Studio", "Product close-up", "Gameplay", ...).
``show-<key>.events.jsonl``
    The audience's interaction in ACE JSONL (:mod:`ace.events`): background chat at a slowly
    varying Poisson rate from a few hundred users with heavy-tailed activity, likes in tapping
    sessions, occasional follows, shares and gifts, carts and orders during product scenes (tagged
    with the product during its pitch) and a ``viewers`` count every 10 s that rises after highlights.
``show-<key>.products.json``
    The show's product list (:mod:`samples.commerce`), as ``ace process --products`` reads it.
``show-<key>.truth.json``
    What was planted, with times measured from what was actually placed (see :data:`TRUTH_SCHEMA`).

Highlights (about one per 70 s, at least one) combine evidence as real ones do, and which
evidence differs from one to the next: excited speech with keywords ("three, two, one, the link
is up"), a loud cheer, visual action (flashes and fast motion) and an interaction spike (chat from
many distinct users at 5-10x the baseline, likes, gifts, and carts and orders for sales).
Decoys must *not* count as highlights: a scene cut with nothing else, a chat spam burst from one
or two accounts, a single short knock, and a calm sentence with no keyword.

Between generic chatter (greetings, questions, game talk naming no product) the host pitches
products (live-commerce 看点): the picture cuts to the product held up, the host names it, describes
it, says the price and calls the link. A sale highlight ends the pitch it belongs to (its "three,
two, one, the link is up" is the link call); other pitches call the link without any keyword. A few
pitch sentences carry ad-wording phrases (:data:`samples.commerce.AD_WORDS`).

``<key>`` hashes the parameters, so the same call finds its files and reuses them; files are
written under temporary names and renamed into place.

>>> from pathlib import Path
>>> from samples.show import make_sample_show
>>> show = make_sample_show(Path("data/samples"), duration=90, size=(640, 360))
>>> show.video, show.events, show.truth, show.products
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ace.errors import AceError, MediaError
from ace.events import write_jsonl
from ace.types import Event
from samples.commerce import CATALOG, Item, ad_phrases

log = logging.getLogger("ace.samples")

#: Bump when the generator's output changes, so cached shows are not reused across versions.
GENERATOR_VERSION = 6
SAMPLE_RATE = 48_000
#: libx264 options on top of ``-preset veryfast``: a fixed IBBP pattern and no frame lookahead, as
#: low-latency live encoders run (and a third less CPU than veryfast's default lookahead).
X264_PARAMS = "bframes=2:b-adapt=0:rc-lookahead=0:mbtree=0"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
LANGS = ("en", "zh")

#: The truth file's layout (all times in seconds on the show's clock).
TRUTH_SCHEMA: dict[str, str] = {
    "duration": "float: the show's length",
    "fps": "int",
    "size": "[width, height]",
    "seed": "int",
    "highlights": "[{start, end, kinds: [evidence...], note, evidence: {kind: [start, end]}}]; evidence kinds are "
    "speech (excited), cheer (loud crowd), visual (flashes + fast motion) and interaction kinds (chat, like, gift, "
    "follow, cart, order)",
    "decoys": "[{kind: scene_cut | chat_spam | knock | calm_sentence, t, start, end, note}]",
    "sentences": "[{start, end, text, excited: bool, role}] every sentence the host speaks, voiced span; role is the "
    "sentence's part in a product pitch (intro, description, price, link, closing, sale) or empty",
    "scene_cuts": "[t, ...] hard cuts, frame-aligned",
    "scenes": "[{start, end, name}]",
    "speech_ratio": "fraction of the show with the host speaking",
    "chat_baseline_rate": "messages per second of background chat",
    "event_counts": "{kind: count} in the events file",
    "params": "the parameters the files were generated from (and their hash key)",
    "lang": "en | zh: the language the host speaks (and the chat is written in)",
    "products": "[{id, name, aliases, price}] the show's product list (the same as show-<key>.products.json)",
    "product_segments": "[{product, name, n, start, end, price_said: [start, end] | null, link_call: [start, end] | null, "
    "highlight: variant | null}] each pitch (n counts the product's pitches from 1): start is the cut to the product "
    "(or the first sentence naming it, when earlier), end the end of the pitch's last sentence; link_call is a sale "
    "highlight's speech when the pitch ends with one",
    "ad_words": "[{phrase, start, end, text}] every listed ad-wording phrase said, with the voiced span of its sentence",
}


class SampleError(AceError):
    """The sample show could not be generated (a tool is missing or failed)."""


@dataclass(frozen=True)
class SampleShow:
    """Paths of a generated sample show; ``reused`` is True when the files already existed."""

    video: Path
    events: Path
    truth: Path
    reused: bool = False
    seconds: float = 0.0  #: wall time spent generating (0 when reused)
    products: Path | None = None  #: the show's product list (JSON)

    def load_truth(self) -> dict:
        return json.loads(self.truth.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------
# script: what the host says and what the audience writes

#: Generic chatter per language: greetings, questions, logistics, game talk. None names a product of
#: the show's list, contains a speech keyword or an ad-wording phrase.
GENERIC_SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hello everyone, and welcome back to the Sunday live show.",
        "If you just joined us, make yourself comfortable and say hi in the chat.",
        "Today we have a few nice things for the home and for the road.",
        "Shipping usually takes three to five days, depending on where you live.",
        "Someone asked about returns, and yes, you have thirty days.",
        "Let me read a few questions from the chat before we move on.",
        "We will take a short look at the next item in a moment.",
        "Thank you all for being here, it really means a lot.",
        "If you have any questions about sizing, just type them below.",
        "For the game fans, we will play another round after the break.",
        "This level is mostly about collecting keys and avoiding the guards.",
        "I will take the left path this time and see where it leads.",
        "Okay, let me check the map and plan the next move.",
        "The weather here is grey today, so it is a good day to stay inside.",
        "Some of you asked about the music, it is a playlist from the studio.",
        "We restock most items on Mondays, so keep an eye on the shop page.",
        "Please remember to be kind to each other in the chat.",
        "Let me put this down and have a quick sip of water.",
        "Somebody asked where I grew up, it was a small town by the sea.",
        "Give me a second, I am just reading through the questions.",
    ),
    "zh": (
        "欢迎大家来到我们的直播间。",
        "刚进来的朋友可以在评论区打个招呼。",
        "今天我们准备了好几样东西给大家看看。",
        "有问题可以直接在评论区问我。",
        "快递一般三到五天就能到。",
        "七天无理由退换，大家放心。",
        "我先看一下评论区的问题。",
        "有朋友问能不能寄到外地，可以的。",
        "今天外面下雨，大家在家里看直播吧。",
        "背景音乐是我们工作室的歌单。",
        "大家在评论区要互相友好哦。",
        "谢谢大家的支持，真的很感谢。",
        "等一下我们再玩一局游戏。",
        "这一关主要是收集钥匙，躲开守卫。",
        "我这次走左边这条路试试。",
        "我看一下地图，想想下一步怎么走。",
        "我们每周一补货，大家可以关注一下店铺。",
        "我喝口水，休息一下。",
        "新来的朋友记得点个关注。",
        "我们稍后再看下一样东西。",
    ),
}

#: Every calm English sentence the host may say: the generic chatter and the product pitches'
#: lines. None contains a speech keyword.
CALM_SENTENCES: tuple[str, ...] = GENERIC_SENTENCES["en"] + tuple(line for it in CATALOG["en"] for line in it.lines())

#: The calm decoy: said like any other sentence, in a quiet stretch, with no keyword.
DECOY_SENTENCE = "Take your time and look at the size chart, there is no rush at all."
DECOY_SENTENCES: dict[str, str] = {"en": DECOY_SENTENCE, "zh": "大家慢慢看尺码表，不着急。"}


@dataclass(frozen=True)
class Variant:
    """One kind of planted highlight: which evidence it carries."""

    name: str
    note: str
    speech: tuple[str, ...] = ()
    cheer: bool = False
    visual: bool = False
    likes: bool = False
    gifts: bool = False
    sale: bool = False  # cart and order bursts
    follows: bool = False
    chat_lines: str = "hype"
    link: int = -1  #: which speech sentence calls the link (a sale highlight ends a product pitch with it)


VARIANTS: dict[str, Variant] = {
    "giveaway": Variant(
        "giveaway",
        "giveaway goal reached: excited speech, cheer, flashes and fast motion, chat, likes, gifts, follows",
        speech=("Oh my god, we hit the goal, let's go!", "Three, two, one, the giveaway link is up!"),
        cheer=True, visual=True, likes=True, gifts=True, follows=True,
    ),
    "flash_sale": Variant(
        "flash_sale",
        "flash sale countdown: excited speech, chat, likes, cart and order bursts",
        speech=("Three, two, one! The link is up!", "Flash sale, go go go, grab it right now!"),
        likes=True, sale=True, chat_lines="sale", link=0,
    ),
    "big_win": Variant(
        "big_win",
        "big win in the game: flashes and fast motion, cheer, chat and gifts; the host says nothing",
        cheer=True, visual=True, gifts=True,
    ),
    "shoutout": Variant(
        "shoutout",
        "surprise on stream: excited speech and a chat spike only",
        speech=("Oh my god, let's go!", "That was incredible, thank you so much!"),
    ),
    "sold_out": Variant(
        "sold_out",
        "almost sold out: excited speech, cheer, chat, gifts, cart and order bursts",
        speech=("Wow, it is almost sold out!", "Flash sale, only ten left, go go go!"),
        cheer=True, gifts=True, sale=True, chat_lines="sale", link=1,
    ),
}
#: The same highlights with the host speaking Mandarin (every excited sentence has a keyword).
VARIANTS_ZH: dict[str, Variant] = {
    "giveaway": replace(VARIANTS["giveaway"], speech=("天哪，我们达到目标了，太棒了！", "三二一，抽奖开始，大家快来抢！")),
    "flash_sale": replace(VARIANTS["flash_sale"], speech=("三，二，一，上链接！", "秒杀开始，家人们快抢！")),
    "big_win": VARIANTS["big_win"],
    "shoutout": replace(VARIANTS["shoutout"], speech=("天哪，这也太棒了吧！", "谢谢大家，真的太棒了！")),
    "sold_out": replace(VARIANTS["sold_out"], speech=("哇，马上就要卖完了，库存不多了！", "最后十件，赶紧上车，快抢！")),
}

#: The scene a highlight of each kind is shown in, when the cuts around it allow.
_VARIANT_SCENE = {"flash_sale": "Product close-up", "sold_out": "Product close-up", "big_win": "Gameplay", "giveaway": "Studio"}

_CHAT_CALM = (
    "hi", "hello from Manila", "how much is shipping?", "size M available?", "lol", "nice", "is it waterproof?",
    "what colour is that", "love the vibe", "first time here", "👋", "hey everyone", "can you show the back?",
    "does it come in black", "price?", "😂", "good evening", "hi from Texas", "❤️", "which one is the lamp",
    "is there a discount code", "the grey one pls", "cute", "is the kettle loud?", "gg", "ok", "haha", "👍",
    "hello hello", "what size are you wearing", "can u ship to Canada", "that pan looks good", "back again",
    "how long is the battery", "nice stream", "the blue one!", "hi Anna", "is it dishwasher safe",
)
_CHAT_HYPE = (
    "OMG", "LETS GOOOO", "🔥🔥🔥", "wow!!!", "YESSS", "no way", "W", "hype", "GOGOGO", "💯", "🎉🎉", "insane",
    "PogChamp", "!!!!!", "omg omg", "let's gooo", "WHAT", "clip it!", "hahaha yes", "🔥", "W stream", "so good",
)
_CHAT_SALE = (
    "got one!", "added to cart", "ordered 2!", "link pls", "link works", "bought it 😍", "checkout done", "mine!",
    "too fast", "sold out already?", "GOT IT", "grabbed the grey one", "3 2 1 go", "yesss ordered", "cart!!",
)
_SPAM_LINES = ("FREE followers at promo dot link", "👉 check my page 👈", "follow me for follow back")
#: chat per language: (calm, hype, sale, spam)
_CHAT: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": (_CHAT_CALM, _CHAT_HYPE, _CHAT_SALE, _SPAM_LINES),
    "zh": (
        ("主播好", "来了来了", "包邮吗？", "有没有黑色", "多少钱", "哈哈哈", "👋", "晚上好", "刚来", "可以寄到广州吗",
         "尺码怎么选", "好看", "杯子能装多少", "台灯亮吗", "主播穿的什么码", "❤️", "有优惠券吗", "想要白色的", "👍",
         "蓝色那个好看", "支持主播", "什么时候发货", "可以退吗", "这个能机洗吗", "😂", "打卡", "又来了", "好的"),
        ("冲冲冲", "哇！！", "666", "🔥🔥🔥", "太强了", "牛", "啊啊啊", "好厉害", "赢了！", "🎉🎉", "绝了", "来了来了！！",
         "主播厉害", "💯", "哈哈哈哈好耶", "起飞"),
        ("抢到了！", "已下单", "拍了两件", "链接呢", "付款了", "没抢到😭", "321冲", "买了买了", "加购物车了", "手慢了",
         "下单了", "冲！"),
        ("互粉互粉关注我", "免费涨粉加我", "👉看我主页👈"),
    ),
}
_GIFT_VALUES = (1, 1, 1, 5, 5, 10, 10, 20, 50, 100, 520)

_NAME_A = (
    "mia", "leo", "sam", "kai", "zoe", "li", "ana", "max", "eva", "tom", "yuki", "omar", "nina", "raj", "sofia",
    "ben", "ivy", "jon", "lucy", "mateo", "chen", "amir", "ola", "pia", "hugo", "lena", "ravi", "tess", "noah", "iris",
)
_NAME_B = ("shop", "cat", "gamer", "fan", "x", "lover", "tv", "pixel", "moon", "bee", "deals", "home", "chef", "runner", "")
_NAME_UNICODE = ("小明", "阿花", "たろう", "Zoë_", "José", "Łukasz")
_NAME_ZH = ("小明", "阿花", "大橙子", "喵喵", "小鱼", "阿杰", "糖糖", "老王", "晴天", "小鹿", "木木", "豆豆", "阿彬", "七七")


# --------------------------------------------------------------------------------------------------
# public entry point


def make_sample_show(
    out_dir: Path,
    duration: float = 360.0,
    seed: int = 7,
    size: tuple[int, int] = (1280, 720),
    fps: int = 30,
    progress: Callable[[str], None] | None = None,
    preset: str = "veryfast",
    lang: str = "en",
    cache_dir: Path | None = None,
) -> SampleShow:
    """Generate (or reuse) a sample show in ``out_dir``; see the module docstring.

    ``progress`` receives one-line status messages. ``preset`` is libx264's (``veryfast`` like a
    live encoder; ``ultrafast`` takes about half the time). ``lang`` is the host's language: ``en``
    (espeak-ng) or ``zh`` (Mandarin, :mod:`samples.voice_zh`; its patched model is kept in
    ``cache_dir``, by default ``<out_dir>/../cache/voices``)."""
    t0 = time.monotonic()
    width, height = int(size[0]), int(size[1])
    fps = int(fps)
    if duration < 30:
        raise ValueError("a sample show needs at least 30 s")
    if width < 160 or height < 90 or width % 2 or height % 2:
        raise ValueError("size must be even and at least 160x90")
    if not 1 <= fps <= 60:
        raise ValueError("fps must be between 1 and 60")
    if preset not in X264_PRESETS:
        raise ValueError(f"unknown x264 preset {preset!r}; choose one of: {', '.join(X264_PRESETS)}")
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; choose one of: {', '.join(LANGS)}")
    n_frames = int(round(duration * fps))
    duration = n_frames / fps
    params = {"duration": duration, "seed": int(seed), "size": [width, height], "fps": fps, "version": GENERATOR_VERSION}
    if preset != "veryfast":  # the default keeps its key
        params["preset"] = preset
    if lang != "en":  # as does English
        params["lang"] = lang
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video, events, truth, products = (out_dir / f"show-{key}{ext}"
                                      for ext in (".mp4", ".events.jsonl", ".truth.json", ".products.json"))
    say = progress or (lambda msg: None)

    if video.exists() and events.exists() and truth.exists() and products.exists():
        log.info("reusing sample show %s", video)
        say(f"reusing {video}")
        return SampleShow(video, events, truth, reused=True, products=products)

    for tool in ("ffmpeg",) + (("espeak-ng",) if lang == "en" else ()):
        if shutil.which(tool) is None:
            raise SampleError(f"{tool} is not installed (Debian/Ubuntu: apt-get install {tool})")
    voice = None
    if lang == "zh":
        from samples import voice_zh

        why = voice_zh.available()
        if why:
            raise SampleError(why)
        try:
            voice = voice_zh.MandarinVoice(Path(cache_dir) if cache_dir else out_dir.resolve().parent / "cache" / "voices")
        except voice_zh.VoiceError as exc:
            raise SampleError(str(exc)) from exc

    _remove_stale_work_dirs(out_dir)
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix=f".show-{key}-", dir=out_dir))
    try:
        say(f"synthesising speech for a {duration:.0f} s show (seed {seed})")
        plan = _plan(duration, fps, rng, work, lang, voice)
        say(f"{len(plan.sentences)} sentences, {len(plan.highlights)} highlights, {len(plan.pitches)} product pitches, "
            f"{len(plan.decoys)} decoys, {len(plan.cuts)} scene cuts; mixing audio")
        wav = work / "audio.wav"
        audio = _mix_audio(plan, n_frames, fps, rng)
        _write_wav(wav, audio)
        say("writing events")
        ev = _make_events(plan, rng)
        tmp_events = work / events.name
        write_jsonl(ev, tmp_events)
        tmp_truth = work / truth.name
        tmp_truth.write_text(json.dumps(_truth(plan, ev, params, key, audio), indent=1, ensure_ascii=False), encoding="utf-8")
        del audio
        tmp_products = work / products.name
        tmp_products.write_text(json.dumps([it.as_json() for it in plan.catalog], indent=1, ensure_ascii=False) + "\n",
                                encoding="utf-8")
        tmp_video = work / video.name
        _encode(plan, wav, tmp_video, width, height, fps, n_frames, say, preset)
        # the truth goes last: a complete set of four names means a complete show
        os.replace(tmp_video, video)
        os.replace(tmp_events, events)
        os.replace(tmp_products, products)
        os.replace(tmp_truth, truth)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - t0
    log.info("sample show %s generated in %.1f s", video, took)
    say(f"done in {took:.1f} s: {video}")
    return SampleShow(video, events, truth, reused=False, seconds=took, products=products)


def _remove_stale_work_dirs(out_dir: Path, older_than_s: float = 6 * 3600) -> None:
    """Temporary folders left by a generation that was killed (a running one is younger)."""
    now = time.time()
    for p in out_dir.glob(".show-*-*"):
        try:
            if p.is_dir() and now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------
# planning


@dataclass
class _Sentence:
    text: str
    excited: bool
    audio: np.ndarray  # float32 at SAMPLE_RATE, voiced span only
    start: float = 0.0
    role: str = ""  # in a pitch: intro, description, price, link, closing, sale ("" elsewhere)

    @property
    def dur(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.start + self.dur


@dataclass
class _Highlight:
    variant: Variant
    t: float  # the trigger
    evidence: dict[str, list[float]] = field(default_factory=dict)  # kind -> [start, end]
    chat_mult: float = 7.0
    product: str = ""  # what a sale highlight sells, when it ends a pitch
    speech: list[_Sentence] = field(default_factory=list)

    @property
    def start(self) -> float:
        return min(v[0] for v in self.evidence.values())

    @property
    def end(self) -> float:
        return max(v[1] for v in self.evidence.values())


@dataclass
class _Decoy:
    kind: str
    start: float
    end: float
    note: str
    users: tuple[str, ...] = ()


@dataclass
class _Pitch:
    """A product pitch: the cut to the product, then the host's lines (ending with a sale
    highlight's speech when ``highlight`` is set)."""

    item: Item
    cut: float
    sentences: list[_Sentence]
    highlight: _Highlight | None = None
    n: int = 1

    @property
    def start(self) -> float:
        return min(self.cut, self.sentences[0].start)

    @property
    def end(self) -> float:
        return max(s.end for s in self.sentences)

    def line(self, role: str) -> _Sentence | None:
        return next((s for s in self.sentences if s.role == role), None)


@dataclass
class _Plan:
    duration: float
    fps: int
    sentences: list[_Sentence]
    highlights: list[_Highlight]
    decoys: list[_Decoy]
    cuts: list[float]
    scenes: list[tuple[float, float, str]]  # start, end, scene name
    cheers: list[tuple[float, float]]
    visuals: list[tuple[float, float]]
    knocks: list[tuple[float, float]]
    users: list[str]
    weights: np.ndarray
    chat_rate: float
    chat_phase: float
    pitches: list[_Pitch] = field(default_factory=list)
    catalog: tuple[Item, ...] = ()
    lang: str = "en"


def _voiced(x: np.ndarray, sr: int, excited: bool, text: str, who: str) -> np.ndarray:
    """Mono float32 speech at ``sr`` -> SAMPLE_RATE, trimmed to the voiced span, faded in and out
    and brought to the host's level (louder when excited)."""
    x = np.asarray(x, dtype=np.float32)
    if sr != SAMPLE_RATE:  # linear interpolation is plenty for a synthetic voice
        n_out = int(round(len(x) * SAMPLE_RATE / sr))
        x = np.interp(np.arange(n_out) * (sr / SAMPLE_RATE), np.arange(len(x)), x).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.02 * max(1e-6, float(np.abs(x).max()))) if len(x) else np.zeros(0, int)
    if loud.size == 0:
        raise SampleError(f"{who} produced silence for {text!r}")
    guard = int(0.01 * SAMPLE_RATE)
    x = x[max(0, loud[0] - guard): loud[-1] + guard].copy()
    fade = min(len(x) // 4, int(0.005 * SAMPLE_RATE))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    rms = float(np.sqrt(np.mean(x**2)))
    target = 0.16 if excited else 0.085
    return (x * (target / max(rms, 1e-6))).astype(np.float32)


def _tts(text: str, excited: bool, path: Path) -> np.ndarray:
    """espeak-ng -> float32 mono at SAMPLE_RATE, trimmed to the voiced span."""
    args = ["espeak-ng", "-v", "en-us", "-w", str(path)]
    args += ["-s", "205", "-p", "80", "-a", "160"] if excited else ["-s", "165", "-p", "45", "-a", "110"]
    try:
        subprocess.run(args + [text], check=True, capture_output=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        raise SampleError(f"espeak-ng failed: {exc.stderr.decode(errors='replace')[-300:]}") from exc
    with wave.open(str(path), "rb") as w:
        sr, width, ch = w.getframerate(), w.getsampwidth(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise SampleError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return _voiced(x, sr, excited, text, "espeak-ng")


def _tts_zh(voice: Any, text: str, excited: bool) -> np.ndarray:
    """The Mandarin voice (:mod:`samples.voice_zh`): faster when excited, as the English one is."""
    from samples import voice_zh

    try:
        x = voice.synth(text, voice_zh.EXCITED_SPEED if excited else voice_zh.CALM_SPEED)
    except voice_zh.VoiceError as exc:
        raise SampleError(str(exc)) from exc
    return _voiced(x, voice_zh.SAMPLE_RATE, excited, text, "the Mandarin voice")


def _synthesise(texts: list[tuple[str, bool]], work: Path, voice: Any = None) -> dict[tuple[str, bool], np.ndarray]:
    texts = list(dict.fromkeys(texts))
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        if voice is None:
            futs = {k: pool.submit(_tts, k[0], k[1], work / f"tts{i}.wav") for i, k in enumerate(texts)}
        else:
            futs = {k: pool.submit(_tts_zh, voice, k[0], k[1]) for k in texts}
        return {k: f.result() for k, f in futs.items()}


def _free_intervals(lo: float, hi: float, busy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, cur = [], lo
    for s0, s1 in sorted(busy):
        if s0 > cur:
            out.append((cur, min(s0, hi)))
        cur = max(cur, s1)
        if cur >= hi:
            break
    if cur < hi:
        out.append((cur, hi))
    return [(a, b) for a, b in out if b > a]


def _user_population(rng: np.random.Generator, n: int = 320, lang: str = "en") -> tuple[list[str], np.ndarray]:
    names: set[str] = set()
    ordered: list[str] = []
    local = 0.35 if lang == "zh" else 0.0  # a Mandarin room has many Chinese names
    while len(ordered) < n:
        r = rng.random()
        if r < 0.02:
            name = str(rng.choice(_NAME_UNICODE)) + str(rng.integers(1, 99))
        elif r < 0.02 + local:
            name = str(rng.choice(_NAME_ZH)) + (str(rng.integers(1, 9999)) if rng.random() < 0.7 else "")
        else:
            a, b = str(rng.choice(_NAME_A)), str(rng.choice(_NAME_B))
            sep = str(rng.choice(["_", "", ".", "_"]))
            digits = str(rng.integers(1, 9999)) if rng.random() < 0.6 else ""
            name = f"{a}{sep}{b}{digits}" if b else f"{a}{digits or rng.integers(10, 99)}"
        if name not in names:
            names.add(name)
            ordered.append(name)
    ranks = np.arange(1, n + 1, dtype=float)
    weights = 1.0 / ranks**1.1  # a few regulars write most of the messages
    return ordered, weights / weights.sum()


#: pauses between a pitch's sentences, and from the cut to the product to the first sentence
_PITCH_PAUSE = (0.45, 1.1)
_PITCH_LEAD = (0.4, 1.0)
#: the calm-sentence and scene-cut decoys stay this far before a pitch's cut (and the cut decoy
#: this far from any other cut)
_CUT_CLEAR = 12.0


def _pitch_lines(item: Item, rng: np.random.Generator, n_desc: int, ads: list[str], sale: bool,
                 closing: bool) -> list[tuple[str, str]]:
    """(role, text) for a pitch: the intro naming the product, ``n_desc`` descriptions with the
    ad-wording ``ads`` among them, the price and, unless a sale highlight ends the pitch, the link
    call and maybe a closing line."""
    body = [("description", item.descriptions[int(i)]) for i in rng.permutation(len(item.descriptions))[:n_desc]]
    price = ("price", item.price_line)
    for a in ads:
        if a == item.price_ad_line:
            price = ("price", a)
        else:
            body.insert(int(rng.integers(0, len(body) + 1)), ("description", a))
    lines = [("intro", str(item.intros[int(rng.integers(0, len(item.intros)))]))] + body + [price]
    if not sale:
        lines.append(("link", item.link_line))
        if closing and item.closings:
            lines.append(("closing", str(item.closings[int(rng.integers(0, len(item.closings)))])))
    return lines


def _assign_items(catalog: tuple[Item, ...], k: int, duration: float, rng: np.random.Generator) -> list[Item]:
    """Which product each of ``k`` pitches sells, in time order: long shows pitch one product twice
    (never twice in a row)."""
    perm = [catalog[int(i)] for i in rng.permutation(len(catalog))]
    distinct = min(len(catalog), k - 1 if duration >= 300 and k >= 3 else k)
    return [perm[i % max(1, distinct)] for i in range(k)]


def _decoy_room(lo: float, hi: float, busy: list[tuple[float, float]], pitches: list[_Pitch], lengths: list[float],
                margin: float) -> bool:
    """Whether the calm-sentence and scene-cut decoys (``lengths``) still fit outside highlights and pitches."""
    spans = busy + [(p.cut - _CUT_CLEAR, p.end + 2.0) for p in pitches]
    free = [[a + margin, b - margin] for a, b in _free_intervals(lo, hi, spans) if b - a >= 2 * margin]
    for length in sorted(lengths, reverse=True):
        for iv in free:
            if iv[1] - iv[0] >= length:
                iv[0] += length + 2 * margin
                break
        else:
            return False
    return True


def _plan(duration: float, fps: int, rng: np.random.Generator, work: Path, lang: str = "en", voice: Any = None) -> _Plan:
    D = duration
    catalog = CATALOG[lang]
    generic = GENERIC_SENTENCES[lang]
    decoy_text = DECOY_SENTENCES[lang]
    by_name = VARIANTS_ZH if lang == "zh" else VARIANTS
    # ---- which highlights, in which order (fixed by the seed)
    n_hl = max(1, int(D // 70))
    names = list(VARIANTS)
    order = [names[i] for i in rng.permutation(len(names))]
    chosen = [order[i % len(order)] for i in range(n_hl)]
    if "giveaway" not in chosen:  # short shows still get one highlight with every kind of evidence
        chosen[int(rng.integers(0, n_hl))] = "giveaway"
    variants = [by_name[n] for n in chosen]

    # ---- speech audio (one voice run per distinct sentence, in parallel)
    texts = [(s, False) for s in generic] + [(decoy_text, False)]
    texts += [(line, False) for it in catalog for line in it.lines()]
    texts += sorted({(s, True) for v in variants for s in v.speech})
    audio = _synthesise(texts, work, voice)

    def dur(text: str, excited: bool = False) -> float:
        return len(audio[(text, excited)]) / SAMPLE_RATE

    margin = float(np.clip(D / 45.0, 2.5, 8.0))  # clear time around highlights and decoys
    # ---- highlights: one per slot, after enough history for a baseline
    first = min(30.0, 0.35 * D)
    slot = (D - 6.0 - first) / n_hl
    highlights: list[_Highlight] = []
    cheers: list[tuple[float, float]] = []
    visuals: list[tuple[float, float]] = []
    sentences: list[_Sentence] = []
    for i, v in enumerate(variants):
        span = 15.0
        jitter = max(0.0, 0.35 * (slot - span - 2 * margin))
        base = first + i * slot
        h = base + margin + float(rng.uniform(0, jitter)) if jitter > 0 else base + 0.5 * margin
        h = round(min(h, D - span - 3.0), 2)
        hl = _Highlight(v, h, chat_mult=float(rng.uniform(6.0, 9.0)))
        if v.speech:
            t = h
            for text in v.speech:
                s = _Sentence(text, True, audio[(text, True)], start=round(t, 3))
                sentences.append(s)
                hl.speech.append(s)
                t = s.end + float(rng.uniform(0.25, 0.5))
            hl.evidence["speech"] = [hl.speech[0].start, hl.speech[-1].end]
        if v.cheer:
            c0 = h + float(rng.uniform(0.3, 1.0))
            c1 = c0 + float(rng.uniform(4.5, 6.5))
            cheers.append((c0, c1))
            hl.evidence["cheer"] = [c0, c1]
        if v.visual:
            v0 = round((h + float(rng.uniform(0.0, 0.5))) * fps) / fps
            v1 = round((v0 + float(rng.uniform(4.0, 6.0))) * fps) / fps
            visuals.append((v0, v1))
            hl.evidence["visual"] = [v0, v1]
        # interaction spans are measured from the generated events later; reserve them now
        hl.evidence["chat"] = [h + 1.0, h + 15.0]
        highlights.append(hl)

    # ---- product pitches between the highlights: a sale highlight ends the pitch before it; other
    # pitches end well before the next highlight, leaving room for the calm and cut decoys
    hl_busy = [(hl.start - margin, hl.end + margin) for hl in highlights]
    decoy_lo, decoy_hi = min(25.0, max(6.0, 0.12 * D)), D - 3.0
    n_sets = max(1, round(D / 360.0))
    cs_lengths = [dur(decoy_text), 0.0] * n_sets
    windows: list[tuple[float, float, _Highlight | None]] = []
    a = min(8.0, 0.1 * D)
    for hl in sorted(highlights, key=lambda x: x.t):
        windows.append((a, hl.t, hl))
        a = hl.t + 21.0  # a cut to the product stays 5 s clear of the highlight's end
    windows.append((a, D - 4.0, None))
    sale_slots = [w for w in windows if w[2] is not None and w[2].variant.sale and w[2].variant.link >= 0]
    plain = [w for w in windows if w[2] is None or not w[2].variant.sale]
    n_target = max(1, round(D / 100.0))
    # a pitch just before the giveaway would hear its "three, two, one" as its own link call: last choice
    ranked = sorted(plain, key=lambda w: (w[2] is not None and w[2].variant.link < 0 and bool(w[2].variant.speech
                                          and w[2].variant.name == "giveaway"), -(w[1] - w[0]) + float(rng.uniform(0, 10))))
    slots = sorted(sale_slots + ranked[: max(0, n_target - len(sale_slots))], key=lambda w: w[0])
    items = _assign_items(catalog, len(slots), D, rng)
    n_ads = [0] * len(slots)
    if len(slots) == 1:
        n_ads[0] = 2
    for i in rng.permutation(len(slots))[: min(4, len(slots))] if len(slots) > 1 else ():
        n_ads[int(i)] = 1
    used_ads: set[str] = set()
    long_show = D >= 240
    pitches: list[_Pitch] = []
    for (a, b, hl), item, k_ad in zip(slots, items, n_ads):
        if pitches and pitches[-1].item is item:
            continue
        sale = hl is not None and hl.variant.sale
        options = [x for x in (*item.ad_lines, item.price_ad_line) if x and x not in used_ads]
        ads = options[:k_ad]
        target = float(rng.uniform(38.0, 58.0)) if long_show else float(rng.uniform(18.0, 30.0))
        want_closing = not sale and rng.random() < 0.5
        hi = hl.t - float(rng.uniform(0.6, 1.1)) if sale else (b if hl is None else b - 10.0)
        found: _Pitch | None = None
        for n_desc in range(len(item.descriptions), 0, -1):
            for closing in ((True, False) if want_closing else (False,)):
                lines = _pitch_lines(item, rng, n_desc, ads, sale, closing)
                length = sum(dur(t) for _, t in lines) + _PITCH_PAUSE[1] * (len(lines) - 1) + _PITCH_LEAD[1] + 1.0 / fps
                if length > min(target, hi - a):
                    continue
                starts = [hi - length] if sale else list(a + (hi - a - length) * rng.uniform(0, 1, 6))
                for c0 in starts:
                    sents: list[_Sentence] = []
                    if sale:  # backwards from the highlight
                        t_end = hi
                        for role, text in reversed(lines):
                            s = _Sentence(text, False, audio[(text, False)], start=round(t_end - dur(text), 3), role=role)
                            sents.insert(0, s)
                            t_end = s.start - float(rng.uniform(*_PITCH_PAUSE))
                        cut = math.floor((sents[0].start - float(rng.uniform(*_PITCH_LEAD))) * fps) / fps
                    else:
                        cut = round(c0 * fps) / fps
                        t = cut + float(rng.uniform(*_PITCH_LEAD))
                        for role, text in lines:
                            s = _Sentence(text, False, audio[(text, False)], start=round(t, 3), role=role)
                            sents.append(s)
                            t = s.end + float(rng.uniform(*_PITCH_PAUSE))
                    p = _Pitch(item, cut, sents, hl if sale else None)
                    if _decoy_room(decoy_lo, decoy_hi, hl_busy, pitches + [p], cs_lengths, margin):
                        found = p
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            log.info("no room for a %.0f s pitch of %s", target, item.name)
            continue
        used_ads.update(x for x in ads if any(s.text == x for s in found.sentences))
        if sale and hl is not None:
            hl.product = item.id
            for j, s in enumerate(hl.speech):
                s.role = "link" if j == hl.variant.link else "sale"
            found.sentences += hl.speech
        sentences += [s for s in found.sentences if not s.excited]
        pitches.append(found)
    pitches.sort(key=lambda p: p.cut)
    seen: dict[str, int] = {}
    for p in pitches:
        seen[p.item.id] = p.n = seen.get(p.item.id, 0) + 1

    # ---- decoys in the free time between highlights; the calm sentence and the lone cut also stay
    # out of the pitches (placed first: they have the least room)
    busy = list(hl_busy)
    pitch_busy = [(p.cut - _CUT_CLEAR, p.end + 2.0) for p in pitches]
    cut_busy = [(p.cut - 2.0, p.cut + 2.0) for p in pitches]
    decoy_sentence = audio[(decoy_text, False)]
    # one of each kind per six minutes (at least one), longest first so that short shows still fit them
    wanted = []
    for _ in range(n_sets):
        wanted += [("chat_spam", float(rng.uniform(7.0, 9.0))), ("calm_sentence", len(decoy_sentence) / SAMPLE_RATE),
                   ("knock", round(float(rng.uniform(0.15, 0.3)), 3)), ("scene_cut", 0.0)]
    wanted.sort(key=lambda w: (w[0] not in ("calm_sentence", "scene_cut"), -w[1]))
    decoys: list[_Decoy] = []
    knocks: list[tuple[float, float]] = []
    for kind, length in wanted:
        # long shows keep decoys past the first 25 s, where detectors have a baseline to compare with
        spans = busy + (pitch_busy if kind in ("calm_sentence", "scene_cut") else cut_busy)
        free = [(a + margin, b - margin - length) for a, b in _free_intervals(decoy_lo, decoy_hi, spans)]
        free = [(a, b) for a, b in free if b >= a]
        if not free:
            log.info("no room for the %s decoy in a %.0f s show", kind, D)
            continue
        sizes = np.array([b - a + 1e-3 for a, b in free])
        a, b = free[int(rng.choice(len(free), p=sizes / sizes.sum()))]
        t0 = round(float(rng.uniform(a, b)), 3)
        if kind == "scene_cut":
            t0 = round(t0 * fps) / fps
            d = _Decoy(kind, t0, t0, "hard cut to another scene with no speech change, cheer or chat reaction")
        elif kind == "chat_spam":
            spammers = ("promo_bot_77",) if rng.random() < 0.5 else ("promo_bot_77", "cheap_followers_4u")
            d = _Decoy(kind, t0, round(t0 + length, 3), f"chat spam from {len(spammers)} account(s) only", spammers)
        elif kind == "knock":
            d = _Decoy(kind, t0, round(t0 + length, 3), f"a single loud knock of {length:.2f} s")
            knocks.append((d.start, d.end))
        else:
            s = _Sentence(decoy_text, False, decoy_sentence, start=t0)
            sentences.append(s)
            d = _Decoy(kind, s.start, s.end, "calm sentence without any keyword, nothing else happening")
        decoys.append(d)
        busy.append((d.start - margin, d.end + margin))
    decoys.sort(key=lambda d: d.start)

    # ---- generic chatter everywhere else, with natural pauses, aiming at ~52% speech
    fixed = sorted((s.start, s.end) for s in sentences)
    reserved = [(s.start - 0.8, s.end + 0.8) for s in sentences]
    reserved += [(hl.t - 0.5, hl.t + 9.0) for hl in highlights]
    reserved += [(d.start - 1.5, d.end + 1.5) for d in decoys if d.kind == "calm_sentence"]
    reserved += [(p.cut - 1.2, p.end + 2.5) for p in pitches]  # a pause sets each pitch apart
    rest = [int(i) + 1 for i in rng.permutation(len(generic) - 1)]
    k, t, spoken = 0, float(rng.uniform(0.8, 2.0)), 0.0
    while t < D - 1.0:
        text = generic[0] if k == 0 else generic[rest[(k - 1) % len(rest)]]  # it opens with the greeting
        clip = audio[(text, False)]
        dur_s = len(clip) / SAMPLE_RATE
        if t + dur_s > D - 0.5:
            break
        clash = [r for r in reserved if t < r[1] and t + dur_s > r[0]]
        if clash:
            t = max(r[1] for r in clash) + float(rng.uniform(0.3, 1.2))
            continue
        sentences.append(_Sentence(text, False, clip, start=round(t, 3)))
        spoken += dur_s
        k += 1
        r = rng.random()
        pause = float(rng.uniform(0.6, 2.4)) if r < 0.7 else float(rng.uniform(2.4, 5.0)) if r < 0.95 else float(rng.uniform(6.0, 9.0))
        now = t + dur_s
        ratio = (spoken + sum(min(e, now) - s0 for s0, e in fixed if s0 < now)) / max(now, 1.0)
        if ratio > 0.53:
            pause *= 1.6
        elif ratio < 0.46:
            pause *= 0.6
        t += dur_s + pause
    sentences.sort(key=lambda s: s.start)

    # ---- scene cuts: one to the product at each pitch, one soon after it ends, and others every
    # 20-60 s away from highlights, pitches and decoys; the decoy cut stands alone
    forbid = [(hl.start - 5.0, hl.end + 5.0) for hl in highlights]
    forbid += [(d.start - (_CUT_CLEAR if d.kind == "scene_cut" else margin), d.end + (_CUT_CLEAR if d.kind == "scene_cut" else margin))
               for d in decoys]
    fixed_cuts = [p.cut for p in pitches]
    for p in pitches:
        after = (p.end + float(rng.uniform(1.5, 3.5))) if p.highlight is None else p.highlight.t + 21.0 + float(rng.uniform(0, 3))
        after = round(after * fps) / fps
        if (after < D - 6.0 and not any(a < after < b for a, b in forbid)
                and all(abs(after - c) >= 6.0 for c in fixed_cuts)
                and not any(q.cut - 6.0 < after < q.end + 1.0 for q in pitches)):
            fixed_cuts.append(after)
    allowed = _free_intervals(4.0, D - 5.0, forbid + [(p.cut - 10.0, p.end + 2.0) for p in pitches]
                              + [(c - 10.0, c + 10.0) for c in fixed_cuts])
    lo_gap, hi_gap = (20.0, 60.0) if D >= 180 else (min(20.0, D / 3), min(45.0, D / 2))
    cuts: list[float] = []
    prev = 0.0
    while True:
        want = prev + float(rng.uniform(lo_gap, hi_gap))
        spots = [(max(a, prev + 10.0), b) for a, b in allowed if b >= prev + 10.0]
        spots = [(a, b) for a, b in spots if b >= a]
        if not spots or (want > D - 5.0 and min(a for a, _ in spots) > D - 8.0):
            break
        t = min((min(max(want, a), b) for a, b in spots), key=lambda x: abs(x - want))
        if t > D - 8.0 and cuts:
            break
        cuts.append(round(t * fps) / fps)
        prev = t
    cuts += [d.start for d in decoys if d.kind == "scene_cut"] + fixed_cuts
    cuts = sorted(set(c for c in cuts if 1.0 < c < D - 1.0))
    scene_names = list(SCENES)
    pitch_at = {p.cut: p for p in pitches}
    scenes: list[tuple[float, float, str]] = []
    prev_name = ""
    bounds = [0.0, *cuts, D]
    for i in range(len(bounds) - 1):
        if bounds[i] in pitch_at:
            name = product_scene(pitch_at[bounds[i]].item)
        elif i == 0:
            name = "Studio"
        else:
            options = [n for n in scene_names if n != prev_name]
            name = options[int(rng.integers(0, len(options)))]
        scenes.append((bounds[i], bounds[i + 1], name))
        prev_name = name
    # a sale happens on the product shot and a big win in the game, where neighbouring scenes allow
    for hl in highlights:
        want_scene = _VARIANT_SCENE.get(hl.variant.name)
        i = next((k for k, (a, b, _) in enumerate(scenes) if a <= hl.t < b), None)
        if want_scene is None or i is None or hl.product or scenes[i][2].startswith(_PRODUCT_SCENE):
            continue
        neighbours = {scenes[k][2] for k in (i - 1, i + 1) if 0 <= k < len(scenes)}
        if want_scene not in neighbours:
            scenes[i] = (scenes[i][0], scenes[i][1], want_scene)

    users, weights = _user_population(rng, lang=lang)
    return _Plan(
        duration=D, fps=fps, sentences=sentences, highlights=highlights, decoys=decoys, cuts=cuts, scenes=scenes,
        cheers=cheers, visuals=visuals, knocks=knocks, users=users, weights=weights,
        chat_rate=float(rng.uniform(0.55, 0.8)), chat_phase=float(rng.uniform(0, 2 * math.pi)),
        pitches=pitches, catalog=catalog, lang=lang,
    )


_PRODUCT_SCENE = "Product: "


def product_scene(item: Item) -> str:
    """The scene name of a product held up to the camera during its pitch."""
    return _PRODUCT_SCENE + item.name


# --------------------------------------------------------------------------------------------------
# audio


def _shaped_noise(n: int, rng: np.random.Generator, lo: float, hi: float, tilt: float) -> np.ndarray:
    """Noise with a band-passed, tilted spectrum (|X(f)| ~ f^-tilt inside [lo, hi] Hz), unit RMS."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    f[0] = 1.0
    shape = f ** (-tilt)
    shape *= 1.0 / (1.0 + (lo / f) ** 4)
    shape *= 1.0 / (1.0 + (f / hi) ** 4)
    x = np.fft.irfft(spec * shape, n).astype(np.float32)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-9)


def _cheer(n: int, rng: np.random.Generator) -> np.ndarray:
    """A crowd cheering and clapping for ``n`` samples, unit-ish RMS, with attack and release."""
    crowd = _shaped_noise(n, rng, 250.0, 5000.0, 0.4)
    # a few "woo" voices: narrow bands that glide
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    woo = np.zeros(n, dtype=np.float32)
    for _ in range(4):
        f0 = float(rng.uniform(350, 900))
        glide = f0 * (1 + 0.25 * np.sin(2 * np.pi * float(rng.uniform(0.2, 0.6)) * t + float(rng.uniform(0, 6))))
        phase = 2 * np.pi * np.cumsum(glide) / SAMPLE_RATE
        woo += (np.sin(phase) * (0.5 + 0.5 * np.sin(2 * np.pi * float(rng.uniform(0.3, 1.0)) * t))).astype(np.float32)
    woo /= max(float(np.sqrt(np.mean(woo**2))), 1e-9)
    # applause: a dense random train of short noisy clicks
    claps = np.zeros(n, dtype=np.float32)
    count = int(35 * n / SAMPLE_RATE)
    pos = rng.integers(0, n, count)
    np.add.at(claps, pos, rng.lognormal(0.0, 0.5, count).astype(np.float32))
    k = int(0.006 * SAMPLE_RATE)
    kernel = (rng.standard_normal(k) * np.exp(-np.arange(k) / (0.0015 * SAMPLE_RATE))).astype(np.float32)
    claps = np.convolve(claps, kernel, mode="same").astype(np.float32)
    claps /= max(float(np.sqrt(np.mean(claps**2))), 1e-9)
    x = 0.65 * crowd + 0.35 * woo + 0.7 * claps
    x /= max(float(np.sqrt(np.mean(x**2))), 1e-9)
    env = np.ones(n, dtype=np.float32)
    a, r = int(0.35 * SAMPLE_RATE), int(1.4 * SAMPLE_RATE)
    env[:a] = np.linspace(0.0, 1.0, a) ** 1.5
    env[-r:] *= np.exp(-np.linspace(0.0, 4.0, r))
    env *= (1.0 + 0.15 * np.sin(2 * np.pi * 0.7 * t + float(rng.uniform(0, 6)))).astype(np.float32)
    return x * env


def _knock(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    thump = np.sin(2 * np.pi * 85.0 * t) * np.exp(-t / 0.05)
    body = np.sin(2 * np.pi * 210.0 * t) * np.exp(-t / 0.02)
    click = rng.standard_normal(n).astype(np.float32) * np.exp(-t / 0.003)
    x = (0.9 * thump + 0.4 * body + 0.3 * click).astype(np.float32)
    return x / max(float(np.abs(x).max()), 1e-9)


def _bed(n: int, rng: np.random.Generator) -> np.ndarray:
    """A quiet room-tone plus a soft chord pad: never digital silence."""
    loop_n = min(n, 20 * SAMPLE_RATE)
    noise = _shaped_noise(loop_n, rng, 60.0, 8000.0, 0.5)
    xf = int(0.5 * SAMPLE_RATE)
    reps = int(math.ceil(n / (loop_n - xf))) + 1
    room = np.zeros(reps * (loop_n - xf) + xf, dtype=np.float32)
    win = np.ones(loop_n, dtype=np.float32)
    win[:xf] = np.linspace(0.0, 1.0, xf)
    win[-xf:] = np.linspace(1.0, 0.0, xf)
    for i in range(reps):
        s = i * (loop_n - xf)
        room[s:s + loop_n] += noise * win
    room = room[:n]
    chords = ((220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (196.0, 246.9, 329.6))
    pad = np.zeros(n, dtype=np.float32)
    block = 8 * SAMPLE_RATE
    for b in range(0, n, block):
        freqs = chords[(b // block) % len(chords)]
        tt = np.arange(b, min(n, b + block), dtype=np.float64) / SAMPLE_RATE
        seg = sum(np.sin(2 * np.pi * f * tt + k) for k, f in enumerate(freqs))
        fade = np.minimum(1.0, np.minimum((tt - tt[0]) / 0.5, (tt[-1] - tt + 1e-3) / 0.5))
        pad[b:b + block] = (seg * fade * (0.8 + 0.2 * np.sin(2 * np.pi * 0.1 * tt))).astype(np.float32)
    pad /= max(float(np.sqrt(np.mean(pad**2))), 1e-9)
    return 0.004 * room + 0.007 * pad


def _mix_audio(plan: _Plan, n_frames: int, fps: int, rng: np.random.Generator) -> np.ndarray:
    n = int(round(n_frames * SAMPLE_RATE / fps))
    y = _bed(n, rng)
    for s in plan.sentences:
        i = int(round(s.start * SAMPLE_RATE))
        seg = s.audio[: max(0, n - i)]
        y[i:i + len(seg)] += seg
    for c0, c1 in plan.cheers:
        i, m = int(round(c0 * SAMPLE_RATE)), int(round((c1 - c0) * SAMPLE_RATE))
        y[i:i + m] += 0.34 * _cheer(m, rng)[: n - i]
    for k0, k1 in plan.knocks:
        i, m = int(round(k0 * SAMPLE_RATE)), int(round((k1 - k0) * SAMPLE_RATE))
        y[i:i + m] += 0.95 * _knock(m, rng)[: n - i]
    # a soft limiter keeps peaks (and the AAC encoder's overshoot) below full scale without
    # touching normal levels
    a = np.abs(y)
    over = a > 0.7
    y[over] = np.sign(y[over]) * (0.7 + 0.22 * np.tanh((a[over] - 0.7) / 0.22))
    return y


def _write_wav(path: Path, y: np.ndarray) -> None:
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2")
    pcm = np.repeat(pcm, 2)  # stereo, both channels the same (an upmix by ffmpeg would lower the level 3 dB)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


# --------------------------------------------------------------------------------------------------
# events


def _poisson_times(rng: np.random.Generator, t0: float, t1: float, rate: Callable[[np.ndarray], np.ndarray] | float,
                   rate_max: float) -> np.ndarray:
    """Inhomogeneous Poisson arrivals in [t0, t1) by thinning."""
    if t1 <= t0 or rate_max <= 0:
        return np.zeros(0)
    n = rng.poisson(rate_max * (t1 - t0))
    ts = np.sort(rng.uniform(t0, t1, n))
    if callable(rate):
        keep = rng.random(n) < rate(ts) / rate_max
        ts = ts[keep]
    return ts


def _make_events(plan: _Plan, rng: np.random.Generator) -> list[Event]:
    D = plan.duration
    users, w = plan.users, plan.weights
    chat_calm, chat_hype, chat_sale, spam_lines = _CHAT[plan.lang]
    out: list[Event] = []

    def pick(k: int, flat: bool = False) -> list[str]:
        if flat:  # a crowd reacting: many distinct users, regulars and newcomers alike
            return [str(u) for u in rng.choice(users, size=k)]
        return [str(u) for u in rng.choice(users, size=k, p=w)]

    def chat_rate(ts: np.ndarray) -> np.ndarray:
        return plan.chat_rate * (1.0 + 0.25 * np.sin(2 * np.pi * ts / 150.0 + plan.chat_phase))

    # ---- background
    ts = _poisson_times(rng, 0.0, D, chat_rate, plan.chat_rate * 1.25)
    for t, u in zip(ts, pick(len(ts))):
        out.append(Event(round(float(t), 3), "chat", u, 1.0, str(rng.choice(chat_calm))))
    sessions = _poisson_times(rng, 0.0, D, 0.25, 0.25)
    for t, u in zip(sessions, pick(len(sessions))):
        for k in range(int(rng.integers(1, 6))):
            tk = float(t) + k * float(rng.uniform(0.15, 0.45))
            if tk < D:
                out.append(Event(round(tk, 3), "like", u))
    for kind, rate in (("follow", 1 / 45), ("share", 1 / 90), ("gift", 1 / 70)):
        ts = _poisson_times(rng, 0.0, D, rate, rate)
        for t, u in zip(ts, pick(len(ts))):
            value = float(rng.choice((1, 1, 5))) if kind == "gift" else 1.0
            out.append(Event(round(float(t), 3), kind, u, value, "Rose" if kind == "gift" else ""))
    for s0, s1, name in plan.scenes:  # a trickle of carts and orders while a product is on screen
        if name in ("Product close-up", "Unboxing"):  # (not one of the list: untagged)
            for kind, rate in (("cart", 1 / 25), ("order", 1 / 60)):
                ts = _poisson_times(rng, s0, s1, rate, rate)
                for t, u in zip(ts, pick(len(ts))):
                    out.append(Event(round(float(t), 3), kind, u))
    cuts = sorted(p.cut for p in plan.pitches)
    for p in plan.pitches:  # during a pitch, for its product: a little more once the price is said
        t0 = p.sentences[0].start
        price = p.line("price")
        tp = price.start if price else p.end
        t1 = min([p.end + 10.0, *(c for c in cuts if c > p.cut)])
        for kind, (r0, r1) in (("cart", (1 / 25, 1 / 15)), ("order", (1 / 60, 1 / 40))):
            ts = np.concatenate([_poisson_times(rng, t0, tp, r0, r0), _poisson_times(rng, tp, t1, r1, r1)])
            for t, u in zip(ts, pick(len(ts))):
                out.append(Event(round(float(t), 3), kind, u, product=p.item.id))

    # ---- highlight spikes
    for hl in plan.highlights:
        v = hl.variant
        c0 = hl.t + float(rng.uniform(0.8, 1.8))
        c1 = c0 + float(rng.uniform(8.0, 11.0))
        peak = plan.chat_rate * hl.chat_mult

        def spike(ts: np.ndarray, c0: float = c0, c1: float = c1, peak: float = peak) -> np.ndarray:
            rise = np.clip((ts - c0) / 1.2, 0.0, 1.0)
            fall = np.clip((c1 - ts) / 3.0, 0.0, 1.0)
            return peak * np.minimum(rise, fall)

        lines = chat_sale + chat_hype[:8] if v.chat_lines == "sale" else chat_hype
        ts = _poisson_times(rng, c0, c1, spike, peak)
        for t, u in zip(ts, pick(len(ts), flat=True)):
            out.append(Event(round(float(t), 3), "chat", u, 1.0, str(rng.choice(lines))))
        hl.evidence["chat"] = [round(float(ts[0]), 3), round(float(ts[-1]), 3)] if len(ts) else [c0, c1]
        if v.likes:
            ss = _poisson_times(rng, c0 - 0.5, c1, 2.5, 2.5)
            for t, u in zip(ss, pick(len(ss), flat=True)):
                for k in range(int(rng.integers(2, 9))):
                    out.append(Event(round(float(t) + k * float(rng.uniform(0.1, 0.3)), 3), "like", u))
            hl.evidence["like"] = [round(float(ss[0]), 3), round(float(ss[-1]), 3)] if len(ss) else [c0, c1]
        if v.gifts:
            k = int(rng.integers(8, 18))
            ts = np.sort(rng.uniform(c0, c0 + 9.0, k))
            for t, u in zip(ts, pick(k, flat=True)):
                out.append(Event(round(float(t), 3), "gift", u, float(rng.choice(_GIFT_VALUES)), str(rng.choice(("Rose", "Heart", "Rocket", "Crown")))))
            hl.evidence["gift"] = [round(float(ts[0]), 3), round(float(ts[-1]), 3)]
        if v.follows:
            k = int(rng.integers(5, 12))
            ts = np.sort(rng.uniform(c0, c1, k))
            fresh = [f"new_viewer_{int(x)}" for x in rng.integers(1000, 99999, k)]
            for t, u in zip(ts, fresh):
                out.append(Event(round(float(t), 3), "follow", u))
            hl.evidence["follow"] = [round(float(ts[0]), 3), round(float(ts[-1]), 3)]
        if v.sale:
            kc, ko = int(rng.integers(25, 45)), int(rng.integers(10, 24))
            buyers = pick(kc, flat=True)
            tc = np.sort(np.minimum(c0 - 0.5 + rng.gamma(2.0, 2.0, kc), c1))
            to = np.sort(np.minimum(c0 + 2.0 + rng.gamma(2.5, 2.2, ko), c1 + 2.0))
            for t, u in zip(tc, buyers):
                out.append(Event(round(float(t), 3), "cart", u, product=hl.product))
            for t, u in zip(to, buyers[:ko]):
                out.append(Event(round(float(t), 3), "order", u, product=hl.product))
            hl.evidence["cart"] = [round(float(tc[0]), 3), round(float(tc[-1]), 3)]
            hl.evidence["order"] = [round(float(to[0]), 3), round(float(to[-1]), 3)]

    # ---- chat spam decoy: lots of messages, one or two accounts
    for d in plan.decoys:
        if d.kind != "chat_spam":
            continue
        k = int(rng.integers(40, 61))
        ts = np.sort(rng.uniform(d.start, d.end, k))
        line = str(rng.choice(spam_lines))
        for i, t in enumerate(ts):
            out.append(Event(round(float(t), 3), "chat", d.users[i % len(d.users)], 1.0, line))

    # ---- viewers every 10 s: a slow random walk that rises after each highlight
    v = float(rng.integers(600, 1300))
    boosts = [(hl.t, float(rng.uniform(0.08, 0.18))) for hl in plan.highlights]
    t = 0.0
    while t <= D:
        v *= math.exp(float(rng.normal(0.001, 0.012)))
        lift = 1.0
        for h, b in boosts:
            if t > h:
                age = t - h
                lift += b * min(1.0, age / 30.0) * math.exp(-max(0.0, age - 30.0) / 150.0)
        out.append(Event(round(t, 3), "viewers", "", float(int(v * lift))))
        t += 10.0

    out = [e for e in out if 0.0 <= e.t < D]
    out.sort(key=lambda e: (e.t, e.kind, e.user))
    return out


# --------------------------------------------------------------------------------------------------
# truth


def _truth(plan: _Plan, events: list[Event], params: dict, key: str, audio: np.ndarray) -> dict[str, Any]:
    speech = sum(s.dur for s in plan.sentences)
    counts: dict[str, int] = {}
    for e in events:
        counts[e.kind] = counts.get(e.kind, 0) + 1

    def r(x: float) -> float:
        return round(float(x), 3)

    def span(s: _Sentence | None) -> list[float] | None:
        return [r(s.start), r(s.end)] if s is not None else None

    highlights = []
    for hl in plan.highlights:
        ev = {k: [r(a), r(b)] for k, (a, b) in hl.evidence.items()}
        highlights.append({
            "start": r(hl.start), "end": r(hl.end), "kinds": list(ev), "note": hl.variant.note,
            "variant": hl.variant.name, "trigger": r(hl.t), "evidence": ev,
        })
    return {
        "duration": plan.duration,
        "fps": plan.fps,
        "size": params["size"],
        "seed": params["seed"],
        "highlights": highlights,
        "decoys": [{"kind": d.kind, "t": r(d.start), "start": r(d.start), "end": r(d.end), "note": d.note} for d in plan.decoys],
        "sentences": [{"start": r(s.start), "end": r(s.end), "text": s.text, "excited": s.excited, "role": s.role}
                      for s in plan.sentences],
        "scene_cuts": [r(c) for c in plan.cuts],
        "scenes": [{"start": r(a), "end": r(b), "name": n} for a, b, n in plan.scenes],
        "speech_ratio": round(speech / plan.duration, 3),
        "chat_baseline_rate": round(plan.chat_rate, 3),
        "event_counts": counts,
        "audio_rms_dbfs": round(20 * math.log10(max(float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))), 1e-9)), 1),
        "params": {**params, "key": key},
        "lang": plan.lang,
        "products": [it.as_json() for it in plan.catalog],
        "product_segments": [
            {"product": p.item.id, "name": p.item.name, "n": p.n, "start": r(p.start), "end": r(p.end),
             "price_said": span(p.line("price")), "link_call": span(p.line("link")),
             "highlight": p.highlight.variant.name if p.highlight else None, "cut": r(p.cut)}
            for p in sorted(plan.pitches, key=lambda p: p.start)
        ],
        "ad_words": [{"phrase": ph, "start": r(s.start), "end": r(s.end), "text": s.text}
                     for s in plan.sentences for ph in ad_phrases(s.text)],
        "schema": TRUTH_SCHEMA,
    }


# --------------------------------------------------------------------------------------------------
# video


#: Scene name -> (background colour, accent colour, moving-object colour)
SCENES: dict[str, tuple[str, str, str]] = {
    "Studio": ("0x1c2a48", "0x3b5a8c", "0xe0b48c"),
    "Product close-up": ("0xe9dcc4", "0xb08a5a", "0xc0392b"),
    "Gameplay": ("0x0d3b2e", "0x1f7a5a", "0xf1c40f"),
    "Unboxing": ("0x6b4a2f", "0x8d6748", "0xf5f5f0"),
    "Q&A corner": ("0x3d1f5c", "0x6a3d99", "0x7fd3e6"),
}
#: Backgrounds of the product scenes (one per item of the list, in order): mid greys apart from
#: each other and from the scenes above, so every cut shows
_PRODUCT_BG = ("0x3f7f8c", "0x9a6fb0", "0xd9825b", "0x8fd3c1")


def _font() -> str:
    for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
              "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf", "/System/Library/Fonts/Supplemental/Arial Bold.ttf"):
        if os.path.exists(p):
            return "fontfile=" + p.replace("\\", "/").replace(":", "\\:")
    return "font=Sans"


def _text(s: str) -> str:
    """Text for drawtext inside a single-quoted filtergraph value: quotes and expansion marks are
    dropped, backslashes and colons escaped for the option parser."""
    return s.replace("'", "").replace("%", "").replace("\\", "\\\\").replace(":", "\\:")


def _scene_chain(idx: int, name: str, n: int, W: int, H: int, fps: int, font: str, item: Item | None = None,
                 item_bg: str = "") -> str:
    bg, accent, obj = (item_bg, "0x4a3728", item.colour) if item is not None else SCENES[name]
    d = (n + 2) / fps
    sx, sy = W / 1280.0, H / 720.0
    fs = lambda px: max(8, int(round(px * sy)))  # noqa: E731
    src = f"color=c={bg}:s={W}x{H}:r={fps}:d={1.5 / fps:.5f},format=yuv420p,trim=end_frame=1"
    deco: list[str] = []
    if item is not None:  # the product held up to the camera, with its name and today's price
        deco += [f"drawbox=x=0:y={int(H * 0.74)}:w={W}:h={H - int(H * 0.74)}:color={accent}:t=fill",
                 f"drawbox=x={int(W * 0.06)}:y={int(H * 0.16)}:w={int(W * 0.3)}:h={int(H * 0.12)}:color=white:t=fill",
                 f"drawtext={font}:text='NOW SHOWING':x={int(W * 0.08)}:y={int(H * 0.19)}:fontsize={fs(34)}:fontcolor=black",
                 f"drawbox=x={int(W * 0.7)}:y={int(H * 0.12)}:w={int(W * 0.22)}:h={int(H * 0.14)}:color=0xffd400:t=fill",
                 f"drawtext={font}:text='{_text(item.price_text)}':x={int(W * 0.72)}:y={int(H * 0.15)}:fontsize={fs(48)}:fontcolor=black"]
        ow, oh = int(200 * sx), int(320 * sy)
        ox, oy = f"{W * 0.42:.0f}+{18 * sx:.0f}*sin(t*0.7)", f"{H * 0.28:.0f}+{10 * sy:.0f}*sin(t*1.3)"
        banner = item.label
        name = "Product close-up"
    elif name == "Studio":
        deco += [f"drawbox=x=0:y={int(H * 0.72)}:w={W}:h={H - int(H * 0.72)}:color=0x5a3b22:t=fill",
                 f"drawbox=x={int(W * 0.06)}:y={int(H * 0.18)}:w={int(W * 0.26)}:h={int(H * 0.42)}:color={accent}:t=fill",
                 f"drawbox=x={int(W * 0.8)}:y={int(H * 0.4)}:w={int(W * 0.07)}:h={int(H * 0.32)}:color=0x2e7d32:t=fill"]
        ow, oh = int(220 * sx), int(300 * sy)
        ox, oy = f"{W * 0.45:.0f}+{30 * sx:.0f}*sin(t*0.9)", f"{H * 0.3:.0f}+{8 * sy:.0f}*sin(t*1.7)"
        banner = "Sunday live sale"
    elif name == "Product close-up":
        deco += [f"drawbox=x={int(W * 0.08)}:y={int(H * 0.78)}:w={int(W * 0.84)}:h={int(H * 0.06)}:color={accent}:t=fill",
                 f"drawbox=x={int(W * 0.7)}:y={int(H * 0.12)}:w={int(W * 0.22)}:h={int(H * 0.14)}:color=0xffd400:t=fill",
                 f"drawtext={font}:text='{_text('$19.99')}':x={int(W * 0.72)}:y={int(H * 0.15)}:fontsize={fs(48)}:fontcolor=black"]
        ow, oh = int(420 * sx), int(300 * sy)
        ox, oy = f"{W * 0.3:.0f}+{40 * sx:.0f}*sin(t*0.35)", f"{H * 0.3:.0f}+{12 * sy:.0f}*sin(t*0.5)"
        banner = "Product close-up"
    elif name == "Gameplay":
        deco += [f"drawgrid=w={int(80 * sx)}:h={int(80 * sy)}:t=2:color={accent}",
                 f"drawtext={font}:text='HP 87   SCORE 12040':x={int(W * 0.03)}:y={int(H * 0.14)}:fontsize={fs(32)}:fontcolor=white"]
        ow, oh = int(90 * sx), int(90 * sy)
        ox, oy = f"mod(t*{160 * sx:.0f}\\,{W})", f"{H * 0.55:.0f}+{120 * sy:.0f}*sin(t*1.1)"
        banner = "Gameplay"
    elif name == "Unboxing":
        deco += [f"drawbox=x={int(W * 0.15)}:y={int(H * 0.45)}:w={int(W * 0.3)}:h={int(H * 0.3)}:color=0xc8a165:t=fill",
                 f"drawbox=x={int(W * 0.55)}:y={int(H * 0.5)}:w={int(W * 0.18)}:h={int(H * 0.22)}:color=0x2c3e50:t=fill"]
        ow, oh = int(160 * sx), int(110 * sy)
        ox, oy = f"{W * 0.4:.0f}+{150 * sx:.0f}*sin(t*0.6)", f"{H * 0.35:.0f}+{40 * sy:.0f}*sin(t*0.8)"
        banner = "Unboxing"
    else:  # Q&A corner
        deco += [f"drawbox=x={int(W * 0.62)}:y={int(H * 0.12)}:w={int(W * 0.34)}:h={int(H * 0.7)}:color=0x000000@0.45:t=fill"]
        for i, q in enumerate(("Q - shipping to Canada", "Q - is it machine washable", "Q - the grey one in M", "Q - battery life")):
            deco.append(f"drawtext={font}:text='{_text(q)}':x={int(W * 0.64)}:y={int(H * (0.16 + 0.08 * i))}:fontsize={fs(22)}:fontcolor=white")
        ow, oh = int(200 * sx), int(280 * sy)
        ox, oy = f"{W * 0.2:.0f}+{20 * sx:.0f}*sin(t*0.8)", f"{H * 0.32:.0f}+{6 * sy:.0f}*sin(t*1.5)"
        banner = "Q and A"
    deco += [f"drawbox=x={W - int(150 * sx)}:y={int(20 * sy)}:w={int(120 * sx)}:h={int(44 * sy)}:color=0xe02020:t=fill",
             f"drawtext={font}:text='LIVE':x={W - int(138 * sx)}:y={int(28 * sy)}:fontsize={fs(30)}:fontcolor=white",
             f"drawtext={font}:text='{_text(name)}':x={int(24 * sx)}:y={int(24 * sy)}:fontsize={fs(40)}:fontcolor=white:box=1:boxcolor=black@0.4:boxborderw={max(2, int(8 * sy))}",
             f"drawbox=x=0:y={int(H * 0.88)}:w={W}:h={int(H * 0.07)}:color=black@0.5:t=fill",
             f"drawtext={font}:text='{_text(banner)}':x={int(30 * sx)}:y={int(H * 0.895)}:fontsize={fs(30)}:fontcolor=white"]
    ow, oh = max(2, ow // 2 * 2), max(2, oh // 2 * 2)
    # the static picture is drawn once and repeated (drawing it on every frame costs ~10 ms a frame);
    # only the moving object is composited per frame
    return (
        f"{src},{','.join(deco)},loop=loop=-1:size=1:start=0,setpts=N/({fps}*TB)[bg{idx}];"
        f"color=c={obj}:s={ow}x{oh}:r={fps}:d={d:.4f},format=yuv420p[ob{idx}];"
        f"[bg{idx}][ob{idx}]overlay=x='{ox}':y='{oy}':eval=frame:shortest=1,trim=end_frame={n},setpts=PTS-STARTPTS[s{idx}]"
    )


def _filtergraph(plan: _Plan, W: int, H: int, fps: int, n_frames: int) -> str:
    font = _font()
    parts: list[str] = []
    bounds = [round(a * fps) for a, _, _ in plan.scenes] + [n_frames]
    items = {product_scene(it): (it, _PRODUCT_BG[k % len(_PRODUCT_BG)]) for k, it in enumerate(plan.catalog)}
    for i, (_, _, name) in enumerate(plan.scenes):
        item, item_bg = items.get(name, (None, ""))
        parts.append(_scene_chain(i, name, bounds[i + 1] - bounds[i], W, H, fps, font, item, item_bg))
    k = len(plan.scenes)
    chain = "".join(f"[s{i}]" for i in range(k)) + f"concat=n={k}:v=1:a=0"
    sy = H / 720.0
    # a running clock, as stream overlays have (the LIVE badge is part of each scene's still)
    chain += f",drawtext={font}:text='%{{pts\\:hms}}':x={W - int(390 * W / 1280)}:y={int(28 * sy)}:fontsize={max(8, int(26 * sy))}:fontcolor=white"
    if plan.visuals:
        on = "+".join(f"between(t\\,{a:.3f}\\,{b:.3f})" for a, b in plan.visuals)
        flash = "+".join(f"between(t\\,{a:.3f}\\,{b:.3f})*lt(mod(t-{a:.3f}\\,0.33)\\,0.11)" for a, b in plan.visuals)
        chain += f",hue=H=2*PI*t*1.5:s=1.8:enable='{on}'"
        chain += f",drawbox=x=0:y=0:w={W}:h={H}:color=white@0.85:t=fill:enable='{flash}'"
        parts.append(chain + "[base]")
        last = "base"
        for j, (col, size, speed, ph) in enumerate((("0xff2bd6", 0.28, 1.9, 0.0), ("0x00e5ff", 0.2, 2.6, 2.1), ("0xfff200", 0.16, 3.3, 4.2))):
            bw, bh = max(2, int(W * size) // 2 * 2), max(2, int(H * size * 1.6) // 2 * 2)
            parts.append(f"color=c={col}:s={bw}x{bh}:r={fps}:d={n_frames / fps + 1:.3f},format=yuv420p[fx{j}]")
            x = f"mod(t*{speed * W:.0f}+{ph * W:.0f}\\,{W + bw})-{bw}"
            y = f"{(H - bh) / 2:.0f}+{H * 0.3:.0f}*sin(t*{7 + 3 * j}+{ph})"
            parts.append(f"[{last}][fx{j}]overlay=x='{x}':y='{y}':eval=frame:shortest=1:enable='{on}'[v{j}]")
            last = f"v{j}"
        parts.append(f"[{last}]format=yuv420p[v]")
    else:
        parts.append(chain + ",format=yuv420p[v]")
    return ";\n".join(parts)


def _encode(plan: _Plan, wav: Path, out: Path, W: int, H: int, fps: int, n_frames: int, say: Callable[[str], None],
            preset: str = "veryfast") -> None:
    graph = _filtergraph(plan, W, H, fps, n_frames)
    script = out.parent / "graph.txt"
    script.write_text(graph, encoding="utf-8")
    duration = n_frames / fps
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error", "-progress", "pipe:1", "-nostats",
        "-i", str(wav), "-filter_complex_script", str(script),
        "-map", "[v]", "-map", "0:a",
        "-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p", "-r", str(fps),
        "-g", str(2 * fps), "-keyint_min", str(2 * fps), "-sc_threshold", "0",
        "-crf", "23", "-maxrate", "3M", "-bufsize", "6M", "-x264-params", X264_PARAMS,
        "-c:a", "aac", "-b:a", "128k", "-ar", str(SAMPLE_RATE), "-ac", "2",
        "-t", f"{duration:.6f}", "-movflags", "+faststart",
        "-metadata", "title=ACE sample show",
        "-metadata", f"comment={len(plan.highlights)} highlights, {len(plan.decoys)} decoys",
        str(out),
    ]
    say(f"encoding {duration:.0f} s of {W}x{H}@{fps} video (one ffmpeg run)")
    log.debug("ffmpeg %s", " ".join(cmd))
    err_path = out.parent / "ffmpeg.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        try:
            assert proc.stdout is not None
            next_report = 0.1
            for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith("out_time_us="):
                    try:
                        done = int(line.split("=", 1)[1]) / 1e6 / duration
                    except ValueError:
                        continue
                    if done >= next_report:
                        say(f"encoding {min(done, 1.0) * 100:.0f}%")
                        next_report = math.floor(done * 10 + 1) / 10
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc != 0:
        raise MediaError("ffmpeg could not encode the sample show", err_path.read_text(errors="replace"), rc)

