"""ace.evaluation.boundaries: the inside-word check, probe planning through fusion, frame offsets of
exact cuts, and the whole evaluation on the tears-of-steel clip."""

from __future__ import annotations

import numpy as np
import pytest

from ace import media
from ace.evaluation import boundaries as bd
from ace.evaluation.boundaries import edge_offenders, evaluate_boundaries, frame_offsets, inside_word, probe_moments, summarise
from ace.fusion import FusionOptions
from ace.types import Sentence, Word
from tests import media_factory as mf

FPS = 30


def talk(start: float, n: int, step: float = 0.4, dur: float = 0.3) -> Sentence:
    """A sentence of ``n`` words, one every ``step`` seconds from ``start``."""
    ws = tuple(Word(round(start + i * step, 3), round(start + i * step + dur, 3), f"w{i}") for i in range(n))
    return Sentence(ws[0].start, ws[-1].end, " ".join(w.text for w in ws) + ".", ws)


# ------------------------------------------------------------------------------------------ inside word


def test_inside_word_is_strict_with_a_tolerance():
    ws = [Word(1.0, 1.5, "hello"), Word(2.0, 2.01, "a"), Word(3.0, 4.0, "world")]
    assert inside_word(1.25, ws) == ws[0]
    assert inside_word(3.5, ws) == ws[2]
    assert inside_word(1.0, ws) is None and inside_word(1.5, ws) is None, "edges touching a word are fine"
    assert inside_word(1.015, ws) is None and inside_word(1.49, ws) is None, "within the tolerance"
    assert inside_word(1.03, ws) == ws[0] and inside_word(1.47, ws) == ws[0]
    assert inside_word(2.005, ws) is None, "a word shorter than twice the tolerance contains nothing"
    assert inside_word(1.75, ws) is None and inside_word(5.0, ws) is None
    assert inside_word(1.03, ws, tol=0.05) is None
    assert inside_word(1.0, []) is None


def test_an_edge_between_words_that_run_on_cuts_speech():
    ws = [Word(1.0, 1.5, "for"), Word(1.5, 2.0, "the"), Word(2.03, 2.4, "phone"), Word(2.6, 2.6, "so"), Word(3.0, 3.5, "ok")]
    assert inside_word(1.5, ws) == ws[1], "no pause between 'for' and 'the'"
    assert inside_word(2.0, ws) == ws[2] and inside_word(2.015, ws) == ws[2], "a pause under twice the tolerance"
    assert inside_word(2.5, ws) is None and inside_word(2.9, ws) is None, "real pauses"
    assert inside_word(2.6, ws) is None, "a zero-length word alone"
    assert inside_word(1.5, list(reversed(ws))) == ws[1], "order does not matter"
    [off] = edge_offenders(1.5, 2.5, ws)
    assert off["where"] == "between running words" and off["word"] == "the" and off["depth_s"] == 0.0


def test_edge_offenders_name_the_edge_and_the_word():
    ws = [Word(1.0, 1.5, " hello"), Word(3.0, 4.0, "world")]
    assert edge_offenders(0.5, 2.0, ws) == []
    off = edge_offenders(1.1, 3.9, ws)
    assert [o["edge"] for o in off] == ["start", "end"]
    assert [o["where"] for o in off] == ["inside", "inside"]
    assert off[0]["word"] == "hello" and off[1]["word"] == "world"
    assert off[0]["depth_s"] == pytest.approx(0.1) and off[1]["depth_s"] == pytest.approx(0.1)
    assert [o["edge"] for o in edge_offenders(0.0, 3.5, ws, label="cut")] == ["cut end"]


def test_summarise_targets():
    ok = {"inside_word": False, "cut": True, "edge_error_frames": 1}
    uncut = {"inside_word": False, "cut": False}
    s = summarise([ok, uncut])
    assert s["clips"] == 2 and s["inside_word"] == 0 and s["inside_word_share"] == 0.0
    assert s["cut"] == 1 and s["max_edge_error_frames"] == 1 and s["targets_met"] is True
    s = summarise([ok, {"inside_word": True, "cut": False}])
    assert s["inside_word"] == 1 and s["inside_word_share"] == 0.5 and s["targets_met"] is False
    assert summarise([ok, {"inside_word": False, "cut": True, "edge_error_frames": 2}])["targets_met"] is False
    assert summarise([ok, {"inside_word": False, "cut": True, "edge_error_frames": None, "error": "ffmpeg"}])["targets_met"] is False
    assert summarise([ok, {"inside_word": False, "cut": True, "edge_error_frames": None}])["targets_met"] is False, "an unmeasured edge"
    assert summarise([])["targets_met"] is None and summarise([])["inside_word_share"] is None


def test_best_offset_prefers_the_exact_frame_among_look_alikes():
    base = np.zeros((4, 4), np.int16)
    moving = [base + 10 * i for i in range(5)]
    assert bd._best_offset(moving[3], moving, [-2, -1, 0, 1, 2]) == (1, False)
    still = [base, base, base + 50]
    assert bd._best_offset(base, still, [-1, 0, 1]) == (0, True), "identical frames: ambiguous, nearest 0"
    assert bd._best_offset(None, still, [-1, 0, 1]) == (None, False)


# ----------------------------------------------------------------------------------------------- probes


def test_probes_cover_the_show_without_merging_and_respect_words():
    # 100 s of talk: 4.6 s sentences with 1.4 s pauses between them
    sentences = [talk(0.5 + 6.0 * k, 12) for k in range(16)]
    words = [w for s in sentences for w in s.words]
    probes = probe_moments("show", 100.0, sentences, [], FusionOptions(), step=10.0)
    assert [round(p) for p, _m in probes] == list(range(5, 100, 10)), "one clip per evidence point"
    for p, m in probes:
        assert m.start <= p <= m.end
        assert 8.0 - 1.0 <= m.end - m.start <= 60.0
        assert inside_word(m.start, words) is None and inside_word(m.end, words) is None
        # edges land in the pauses between sentences, not between two words of one sentence
        assert not any(s.start < m.start < s.end for s in sentences), (m.start, m.end)
        assert not any(s.start < m.end < s.end for s in sentences if s.end < 100.0), (m.start, m.end)


def test_fusion_keeps_edges_out_of_running_speech():
    from ace.fusion import snap_start

    # whisper-like timing: one sentence runs into the next with no pause, its last word has no length
    first = [("The", 6.4, 6.5), ("pockets", 6.5, 8.2), ("are", 8.2, 8.7), ("enough", 8.7, 9.025), ("for", 9.025, 9.205),
             ("the", 9.205, 9.965), ("phone.", 9.965, 9.965)]
    second = [("Someone", 9.965, 10.985), ("asked", 10.985, 11.385), ("about", 11.385, 11.765), ("returns.", 11.765, 12.165)]
    sentences = [Sentence(ws[0][1], ws[-1][2], "", tuple(Word(a, b, t) for t, a, b in ws)) for ws in (first, second)]
    words = [w for s in sentences for w in s.words]
    start = snap_start(8.0, sentences, [], words, FusionOptions(), limit=13.0)
    assert inside_word(start, words) is None, f"clip starts at {start:.3f}, cutting {inside_word(start, words)}"


def test_probe_edges_in_a_pause_snap_to_a_scene_cut():
    # silence; evidence at 15 s gives a clip from about 10 s: a cut at 9.3 s is within reach
    probes = dict(probe_moments("show", 60.0, [], [9.3, 33.0], FusionOptions(), step=10.0))
    assert probes[15.0].start == pytest.approx(9.3)
    assert probes[5.0].start == pytest.approx(0.0)
    with pytest.raises(ValueError):
        probe_moments("show", 60.0, [], [], FusionOptions(), step=0)


# ---------------------------------------------------------------------------------------- frame offsets


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    """A 4 s, 30 fps video whose frames carry their own number, and exact cuts of it."""
    d = tmp_path_factory.mktemp("counter")
    src = mf.make_counter_video(d / "src.mp4", duration=4.0, fps=FPS, gop=30)
    cuts = {}
    for name, (a, b) in {"middle": (1.37, 2.61), "head": (0.0, 1.2)}.items():
        cuts[name] = (a, b, str(d / f"{name}.mp4"))
        media.cut_exact(src, a, b, d / f"{name}.mp4")
    return str(src), cuts


@pytest.mark.slow
def test_frame_offsets_of_exact_cuts_are_zero(counter):
    src, cuts = counter
    for a, b, clip in cuts.values():
        off = frame_offsets(src, clip, a, b, FPS)
        assert off["first"] == 0 and off["last"] == 0, (a, b, off)
        assert not off["first_ambiguous"] and not off["last_ambiguous"]


@pytest.mark.slow
def test_frame_offsets_see_a_shifted_plan(counter):
    src, cuts = counter
    a, b, clip = cuts["middle"]
    off = frame_offsets(src, clip, a + 2 / FPS, b - 1 / FPS, FPS)
    assert off["first"] == -2, "the clip starts two frames before this plan"
    assert off["last"] == 1, "and ends one frame after it"
    a, b, clip = cuts["head"]
    assert frame_offsets(src, clip, a + 1 / FPS, b, FPS)["first"] == -1


# ------------------------------------------------------------------------------------------- real media


@pytest.fixture(scope="module")
def tears(eval_data, tmp_path_factory):
    from ace.config import Settings

    if not (eval_data / bd.TEARS_VIDEO).is_file():
        pytest.skip(f"{bd.TEARS_VIDEO} not in {eval_data}")
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), cpu_threads=2)
    return evaluate_boundaries(eval_data, settings=settings, include_sample_show=False, max_cuts=3,
                               out_dir=tmp_path_factory.mktemp("clips"))


@pytest.mark.slow
@pytest.mark.shared_data
def test_tears_of_steel_clip_boundaries(tears):
    assert tears["skipped"] == []
    [video] = tears["videos"]
    assert video["name"] == "tears-of-steel" and video["codec"] == "vp8"
    probes = video["probes"]
    assert probes["clips"] >= 6, "probe clips all over the 70 s"
    rows = probes["rows"]
    assert rows[0]["start"] < 10.0 and rows[-1]["end"] > 60.0
    s = tears["summary"]
    assert s["clips"] == video["moments"]["clips"] + probes["clips"] == video["clips"]
    assert video["inside_word"] == s["inside_word"] and video["max_edge_error_frames"] == s["max_edge_error_frames"]
    assert s["inside_word"] == 0 and s["inside_word_share"] == 0.0
    assert s["cut"] == 3 and s["cut_failed"] == 0, "VP8 in WebM is re-encoded whole, and must work"
    assert s["max_edge_error_frames"] is not None and s["max_edge_error_frames"] <= 1
    assert s["targets_met"] is True
    for row in (r for v in tears["videos"] for k in ("moments", "probes") for r in v[k]["rows"] if r["cut"]):
        assert abs(row["cut_start"] - row["start"]) <= 0.5 / video["fps"] + 1e-3
        assert abs(row["cut_end"] - row["end"]) <= 0.5 / video["fps"] + 1e-3
        assert media.probe(row["path"]).has_video
