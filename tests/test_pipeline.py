"""The whole batch pipeline on real media: real ffmpeg, the real tiny.en model, a real database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ace.evaluate import compare_with_truth
from ace.pipeline import ShowPipeline, show_id_for, slug
from ace.store import Store
from tests import media_factory as mf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline():
    from ace.config import Settings

    return ShowPipeline(Settings(cpu_threads=2))


@pytest.fixture(scope="module")
def processed(pipeline, short_show, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    store = Store(f"sqlite:///{out / 'ace.db'}")
    store.create_all()
    result = pipeline.process(short_show.video, out, short_show.events, store=store)
    return result, out, store


def test_sample_show_highlights_are_found_with_clips(processed, short_show):
    result, _out, _store = processed
    assert result.ok, result.error
    truth = json.loads(Path(short_show.truth).read_text())
    cmp = compare_with_truth(result.moments, truth)
    assert cmp["recall"] >= 0.6, cmp
    assert cmp["precision"] >= 0.6, cmp
    assert cmp["decoys_hit"] == 0, cmp
    for m in result.moments:
        assert 8.0 - 0.5 <= m.duration <= 60.0 + 4.5
        assert m.reasons, "every moment explains itself"


def test_outputs_on_disk_match_moments_json(processed):
    result, _out, _store = processed
    out_dir = Path(result.out_dir)
    doc = json.loads((out_dir / "moments.json").read_text())
    assert doc["show_id"] == result.show_id
    assert [m["id"] for m in doc["moments"]] == [m.id for m in result.moments]
    for m in doc["moments"]:
        clip = m["clip"]
        for key in ("path", "srt", "thumbnail"):
            assert (out_dir / clip[key]).is_file(), clip[key]
        assert m["reasons"] and {"source", "score", "detail"} <= set(m["reasons"][0])
        assert abs(clip["start"] - m["start"]) < 0.1  # exact mode: the clip starts where the moment does
    srt_texts = [(out_dir / m["clip"]["srt"]).read_text() for m in doc["moments"]]
    assert any("-->" in s for s in srt_texts), "captions come from the transcript"


def test_clip_edges_are_not_inside_spoken_words(pipeline, short_show):
    analysis = pipeline.analyse(short_show.video, short_show.events)
    words = [w for s in analysis.sentences for w in s.words]
    assert len(words) > 50, "the sample host speaks"
    for m in analysis.moments:
        for w in words:
            assert not (w.start < m.start < w.end), (m, w)
            assert not (w.start < m.end < w.end), (m, w)


def test_rerun_is_idempotent(pipeline, processed, short_show):
    result, out, store = processed
    clips_dir = Path(result.out_dir) / "clips"
    before = sorted(p.name for p in clips_dir.iterdir())
    mtimes = {p.name: p.stat().st_mtime_ns for p in clips_dir.iterdir()}
    again = pipeline.process(short_show.video, out, short_show.events, store=store)
    assert again.ok
    assert [m.id for m in again.moments] == [m.id for m in result.moments]
    assert sorted(p.name for p in clips_dir.iterdir()) == before
    assert {p.name: p.stat().st_mtime_ns for p in clips_dir.iterdir()} == mtimes, "unchanged clips are not cut again"
    assert len(store.list_moments(result.show_id)) == len(result.moments)
    assert len(store.list_clips(result.show_id)) == len(result.clips)
    assert store.get_show(result.show_id)["status"] == "done"


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: mf.make_empty(d / "empty.mp4"), "empty"),
        (lambda d: mf.make_garbage(d / "garbage.mp4"), ""),
        (lambda d: mf.make_audio(d / "voice.m4a", duration=3), "no video"),
        (lambda d: mf.make_video(d / "mute.mp4", duration=3, audio=False), "no audio"),
        (lambda d: mf.make_truncated(d / "cut.mp4", duration=6), ""),
        (lambda d: _cut_short(mf.make_video(d / "faststart.mp4", duration=12), 0.5), "truncated"),
    ],
    ids=["missing", "empty", "garbage", "audio-only", "video-only", "truncated-no-index", "truncated-faststart"],
)
def test_bad_input_is_a_clear_error_not_a_crash(pipeline, tmp_path, make, expect):
    src = make(tmp_path)
    result = pipeline.process(src, tmp_path / "out")
    assert not result.ok
    assert result.error and "internal error" not in result.error
    assert expect in result.error.lower()


def _cut_short(path: Path, keep: float) -> Path:
    """A faststart MP4 whose media data stops part-way (the index still promises all of it)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_show_id_depends_on_content_and_folder_names_are_safe(tmp_path):
    a = mf.make_video(tmp_path / "a.mp4", duration=1)
    b = tmp_path / "copy" / "a.mp4"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    assert show_id_for(a) == show_id_for(b)
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("..") == "show"
    assert "/" not in slug("a/b\\c")


def test_friday_clip_transcript_matches_its_captions(pipeline, eval_data):
    analysis = pipeline.analyse(eval_data / "video" / "friday.mp4")
    text = " ".join(s.text for s in analysis.sentences).lower()
    vtt = (eval_data / "video" / "friday.vtt").read_text().lower()
    cue_words = {w.strip(".,!?\"'") for line in vtt.splitlines() if "-->" not in line for w in line.split() if len(w) > 4}
    heard = {w.strip(".,!?\"'") for w in text.split()}
    assert len(cue_words & heard) >= 3, (text, cue_words)


def test_cli_process_json_summary_reports_each_show(tmp_path, short_show):
    bad = mf.make_garbage(tmp_path / "bad.mp4")
    env_data = tmp_path / "data"
    proc = subprocess.run(
        [
            sys.executable,
            "-m", "commands", "process", str(short_show.video), str(bad),
            "--events", str(short_show.events), "--out", str(tmp_path / "out"), "--json", "--num-cpus", "2",
            "--data-dir", str(env_data),
        ],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # one show failed
    rows = json.loads(proc.stdout)
    assert [r["show"] for r in rows] == [Path(short_show.video).name, "bad.mp4"]
    good, failed = rows
    assert good["ok"] and good["moments"] >= 1 and good["clips"] == good["moments"]
    assert good["realtime"] > 0
    assert not failed["ok"] and failed["error"]
    assert (env_data / "ace.db").is_file()


def test_triage_then_cut_only_those_moments(pipeline, short_show, tmp_path):
    """``ace triage`` on the show's events, then ``process --moments``: the clips are the triaged
    moments (edges within the length limits, outside words), ranks kept, nothing else detected."""
    from ace.triage import triage_file
    from models.scorer import default_model

    tri = triage_file(short_show.events, tmp_path / "triage", default_model(), top=2)
    assert tri.ok, tri.error
    doc = json.loads(Path(tri.out_path).read_text())
    wanted = doc["moments"]
    assert len(wanted) >= 1
    result = pipeline.process(short_show.video, tmp_path / "out", moments_path=tri.out_path)
    assert result.ok, result.error
    assert len(result.clips) == len(result.moments) >= 1
    assert sorted(m.rank for m in result.moments) == sorted({w["rank"] for w in wanted})[: len(result.moments)]
    for m in result.moments:
        src = next(w for w in wanted if w["rank"] == m.rank)
        assert 8.0 - 0.5 <= m.duration <= 60.0 + 4.5
        # the clip covers the triaged moment's middle (edges only move to sentence ends and limits)
        mid = (src["start"] + src["end"]) / 2
        assert m.start - 4.5 <= mid <= m.end + 4.5, (m, src)
        assert m.confidence == src["confidence"] and m.reasons[0].source == "chat"
    out = json.loads((Path(result.out_dir) / "moments.json").read_text())
    assert [x["rank"] for x in out["moments"]] == [m.rank for m in result.moments]


def test_moments_file_errors_are_clear(pipeline, short_show, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"moments": [{"start": 5, "end": 10}, {"start": 30, "end": 20}]}')
    r = pipeline.process(short_show.video, tmp_path / "out", moments_path=bad)
    assert not r.ok and "moment 2" in r.error and "start < end" in r.error
    late = tmp_path / "late.json"
    late.write_text('[{"start": 5000, "end": 5010}]')
    r = pipeline.process(short_show.video, tmp_path / "out", moments_path=late)
    assert not r.ok and "none of its 1 moments" in r.error
    broken = tmp_path / "broken.json"
    broken.write_text('{"moments": [\n{"start": 5,,}]}')
    r = pipeline.process(short_show.video, tmp_path / "out", moments_path=broken)
    assert not r.ok and "line 2" in r.error
