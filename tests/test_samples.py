"""samples.show: the generated sample show has what its truth file says, and is generated once."""

from __future__ import annotations

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
from samples.show import CALM_SENTENCES, DECOY_SENTENCE, TRUTH_SCHEMA, VARIANTS, make_sample_show

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
    before = {p: p.stat().st_mtime_ns for p in (show.video, show.events, show.truth)}
    messages: list[str] = []
    again = make_sample_show(show.video.parent, duration=DURATION, seed=SEED, size=SIZE, fps=FPS, progress=messages.append)
    assert again.reused and again.seconds == 0 and messages == [f"reusing {show.video}"] and (again.video, again.events, again.truth) == (show.video, show.events, show.truth)
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
    assert list(tmp_path.iterdir()) == []
