"""Scene-cut evaluation: cut matching, ACE's cut frames on synthetic video, the public bikes clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ace.errors import InputError
from ace.evaluation.scenes import (
    SCENEDETECT_MISSING,
    ace_cuts,
    evaluate_scenes,
    find_cut_files,
    match_cuts,
    pyscenedetect_cuts,
    summarise,
)
from tests.media_factory import ffmpeg_bin

# -- match_cuts ----------------------------------------------------------------------------------


def test_match_within_tolerance_counts_and_beyond_does_not():
    assert match_cuts([32], [30], tolerance=2)["tp"] == 1
    assert match_cuts([28], [30], tolerance=2)["tp"] == 1
    r = match_cuts([33], [30], tolerance=2)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 1)
    assert r["precision"] == r["recall"] == r["f1"] == 0.0
    assert match_cuts([30], [30], tolerance=0)["tp"] == 1
    assert match_cuts([31], [30], tolerance=0)["tp"] == 0


def test_match_is_one_to_one():
    # two detections of one cut: one hit, one false positive
    r = match_cuts([30, 31], [30], tolerance=2)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0)
    assert r["precision"] == 0.5 and r["recall"] == 1.0
    assert r["f1"] == pytest.approx(2 / 3)
    # one detection between two close cuts can only count once
    r = match_cuts([31], [30, 32], tolerance=2)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)


def test_match_finds_the_largest_matching():
    # greedy "closest first" would pair 31 with 32 and leave 29 and 34 apart; the best pairing has 2
    r = match_cuts([31, 34], [29, 32], tolerance=2)
    assert r["tp"] == 2
    r = match_cuts([10, 20, 30, 41], [11, 19, 33, 40], tolerance=2)
    assert (r["tp"], r["fp"], r["fn"]) == (3, 1, 1)
    # order of the inputs does not matter
    assert match_cuts([41, 10, 30, 20], [40, 33, 19, 11])["tp"] == 3


def test_match_empty_cases():
    assert match_cuts([], []) == {"tp": 0, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    missed = match_cuts([], [10, 20])
    assert (missed["tp"], missed["fn"], missed["precision"], missed["recall"], missed["f1"]) == (0, 2, 0.0, 0.0, 0.0)
    spurious = match_cuts([10], [])
    assert (spurious["fp"], spurious["precision"], spurious["recall"], spurious["f1"]) == (1, 0.0, 1.0, 0.0)
    with pytest.raises(InputError):
        match_cuts([1], [1], tolerance=-1)


def test_summary_picks_the_best_reference_and_judges_the_target():
    def row(f1, frames, seconds):
        return {"f1": f1, "frames": frames, "seconds": seconds}

    files = [{"detectors": {"ace": row(1.0, 100, 0.1),
                            "pyscenedetect-content": row(1.0, 100, 0.2),
                            "pyscenedetect-adaptive": row(0.8, 100, 0.05)}}]
    s = summarise(files)
    assert s["best_reference"] == "pyscenedetect-content"
    assert s["ace_fps"] == 1000.0 and s["best_reference_fps"] == 500.0
    assert s["target_met"] is True
    files[0]["detectors"]["ace"] = row(1.0, 100, 0.4)  # as good, but slower
    assert summarise(files)["target_met"] is False
    files[0]["detectors"]["ace"] = row(0.9, 100, 0.01)  # faster, but worse
    assert summarise(files)["target_met"] is False
    files[0]["detectors"]["pyscenedetect-content"] = {"error": "boom"}
    files[0]["detectors"]["pyscenedetect-adaptive"] = {"error": "boom"}
    s = summarise(files)
    assert s["best_reference"] is None and s["target_met"] is None and s["ace_f1"] == 0.9


# -- cut files -----------------------------------------------------------------------------------


def _cuts_json(path: Path, video: str, frames: list[int], fps: float = 25) -> Path:
    path.write_text(json.dumps({"video": video, "fps": fps, "cut_frames": frames}))
    return path


def test_find_cut_files_pairs_recursively_and_skips_missing_videos(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "one.mp4").write_bytes(b"x")
    (tmp_path / "two.mkv").write_bytes(b"x")
    one = _cuts_json(tmp_path / "a" / "b" / "one.cuts.json", "one.mp4", [1])
    two = _cuts_json(tmp_path / "two.cuts.json", "two.mkv", [2])
    _cuts_json(tmp_path / "a" / "gone.cuts.json", "gone.mp4", [3])  # video missing
    (tmp_path / "broken.cuts.json").write_text("{not json")
    assert find_cut_files(tmp_path) == [(one, tmp_path / "a" / "b" / "one.mp4"), (two, tmp_path / "two.mkv")]
    assert find_cut_files(tmp_path / "nowhere") == []


def test_no_cut_files_gives_an_empty_report_with_a_note(tmp_path):
    report = evaluate_scenes(tmp_path)
    assert report["files"] == []
    assert report["note"]
    assert set(report["summary"]) >= {"ace_f1", "best_reference", "best_reference_f1", "ace_fps",
                                      "best_reference_fps", "target_met"}
    assert all(v is None for v in report["summary"].values())


# -- synthetic video -----------------------------------------------------------------------------

#: (lavfi source, frames) back to back at 25 fps: moving test card, static bars, a zooming
#: fractal, another test card. Cuts fall on the first frame of each later segment.
SEGMENTS = (("testsrc2", 40), ("smptebars", 35), ("mandelbrot", 50), ("testsrc", 30))
SYNTH_CUTS = [40, 75, 125]


def make_segments(path: Path, segments=SEGMENTS, fps: int = 25, size: str = "320x180") -> Path:
    parts, labels = [], []
    for i, (src, frames) in enumerate(segments):
        parts.append(f"{src}=size={size}:rate={fps},trim=end_frame={frames},setpts=PTS-STARTPTS,format=yuv420p[s{i}]")
        labels.append(f"[s{i}]")
    graph = ";".join(parts) + ";" + "".join(labels) + f"concat=n={len(segments)}:v=1:a=0[v]"
    cmd = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-filter_complex", graph,
           "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-x264-params", "keyint=50:bframes=2", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cuts")
    make_segments(folder / "segments.mp4")
    _cuts_json(folder / "segments.cuts.json", "segments.mp4", SYNTH_CUTS)
    return folder


def test_ace_finds_synthetic_cuts_within_a_frame(synthetic):
    cuts, frames, seconds = ace_cuts(synthetic / "segments.mp4")
    assert frames == sum(n for _, n in SEGMENTS)
    assert seconds > 0
    assert len(cuts) == len(SYNTH_CUTS)
    assert all(abs(c - t) <= 1 for c, t in zip(cuts, SYNTH_CUTS))


def test_ace_finds_no_cut_in_one_moving_shot(tmp_path):
    video = make_segments(tmp_path / "one.mp4", (("testsrc2", 60),))
    cuts, frames, _ = ace_cuts(video)
    assert frames == 60
    assert cuts == []


def test_evaluate_scenes_on_synthetic_folder(synthetic):
    pytest.importorskip("scenedetect")
    report = evaluate_scenes(synthetic)
    (row,) = report["files"]
    assert row["file"] == "segments.mp4" and row["truth"] == SYNTH_CUTS
    assert row["fps"] == pytest.approx(25.0) and row["frames"] == 155
    assert set(row["detectors"]) == {"ace", "pyscenedetect-content", "pyscenedetect-adaptive"}
    ace = row["detectors"]["ace"]
    assert ace["f1"] == 1.0 and ace["cuts"] == SYNTH_CUTS and ace["fps"] > 0
    for name in ("pyscenedetect-content", "pyscenedetect-adaptive"):
        ref = row["detectors"][name]
        assert "error" not in ref and ref["frames"] == 155 and ref["fps"] > 0
    s = report["summary"]
    assert s["ace_f1"] == 1.0
    assert s["best_reference"] in ("pyscenedetect-content", "pyscenedetect-adaptive")
    assert isinstance(s["target_met"], bool)


def test_pyscenedetect_cuts_rejects_unknown_detector(synthetic):
    with pytest.raises(ValueError, match="content or adaptive"):
        pyscenedetect_cuts(synthetic / "segments.mp4", "histogram")


def test_missing_scenedetect_is_reported_not_raised(synthetic, monkeypatch):
    monkeypatch.setitem(sys.modules, "scenedetect", None)  # makes `import scenedetect` fail
    report = evaluate_scenes(synthetic)
    dets = report["files"][0]["detectors"]
    assert dets["pyscenedetect-content"] == {"error": SCENEDETECT_MISSING}
    assert dets["pyscenedetect-adaptive"] == {"error": SCENEDETECT_MISSING}
    assert dets["ace"]["f1"] == 1.0
    assert report["summary"]["best_reference"] is None and report["summary"]["target_met"] is None


# -- public recordings ---------------------------------------------------------------------------


def test_bikes_cuts_against_pyscenedetect(eval_data):
    pytest.importorskip("scenedetect")
    if not (eval_data / "video" / "bikes.cuts.json").is_file():
        pytest.skip(f"video/bikes.cuts.json not found under {eval_data}")
    report = evaluate_scenes(eval_data)
    rows = {r["file"]: r for r in report["files"]}
    bikes = rows["bikes.mp4"]
    assert bikes["frames"] == 250
    ace = bikes["detectors"]["ace"]
    assert ace["f1"] >= 0.8, ace
    assert ace["fps"] > 0
    for name in ("pyscenedetect-content", "pyscenedetect-adaptive"):
        ref = bikes["detectors"][name]
        assert "error" not in ref, ref
        assert ref["frames"] == 250 and ref["recall"] > 0
