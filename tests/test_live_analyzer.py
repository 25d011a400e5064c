"""Causal live analysis: finality and de-duplication with made-up evidence, then the sample show fed as
2 s MPEG-TS segments the way the ingest announces them (real ffmpeg, the real tiny.en model)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest

from ace import media
from ace.config import Settings
from ace.evaluate import compare_with_truth
from ace.evaluation.boundaries import frame_offsets, inside_word
from ace.events import load_events
from ace.fusion import FusionOptions, find_moments
from ace.live.analyzer import (
    DEGRADE_LEVELS,
    Backpressure,
    LiveAnalyzer,
    LiveOptions,
    MomentGate,
    finality_horizon,
    fuse_window,
    speech_reach,
)
from ace.signals.interaction import InteractionOptions
from ace.types import Moment, Segment, Sentence, Signal, Word


def sig(source, t0, t1, score=1.0):
    return [Signal(source, t + 0.5, score, f"{source} evidence") for t in range(int(t0), int(t1))]


def moment(start, end, peak=None, score=0.9):
    return Moment("live", start, end, score, (start + end) / 2 if peak is None else peak)


# --------------------------------------------------------------------------------- finality, no media


def test_horizon_is_derived_from_the_fusion_and_detector_settings():
    fo = FusionOptions()
    # 2 * spread + the slowest source: interaction lag 3 + half its 5 s window + 1 s for late events
    assert finality_horizon(fo) == pytest.approx(10.5)
    assert finality_horizon(fo, event_delay_s=0.0) == pytest.approx(9.5)
    assert finality_horizon(FusionOptions(interaction_lag=6.0)) == pytest.approx(13.5)
    assert finality_horizon(fo, InteractionOptions(window_s=9)) == pytest.approx(12.5)
    assert finality_horizon(FusionOptions(interaction_lag=0.0), visual_look_ahead=8.0) == pytest.approx(13.0)
    assert speech_reach(fo) == pytest.approx(4.0)


def test_options_are_checked():
    with pytest.raises(ValueError):
        LiveOptions(max_level=len(DEGRADE_LEVELS))
    with pytest.raises(ValueError):
        LiveOptions(horizon_s=-1)
    with pytest.raises(ValueError, match="look_behind_s"):
        LiveAnalyzer("s", Settings(), None, "/tmp/unused", options=LiveOptions(look_behind_s=30))


def test_window_fusion_matches_batch_fusion_far_into_a_stream():
    fo = FusionOptions()
    base = 3600.0
    signals = sig("keyword", 40, 42) + sig("audio", 41, 45) + sig("interaction", 44, 50) + sig("visual", 90, 94, 0.3)
    batch, _ = find_moments("live", signals, 120.0, options=fo)
    shifted = [Signal(s.source, s.t + base, s.score, s.reason) for s in signals]
    # old evidence before the window is left out, not piled into its first second
    old = sig("keyword", base - 300, base - 290)
    live = fuse_window("live", old + shifted, [], [], base - 0.4, base + 120.0, fo)
    assert len(batch) == len(live) == 1
    assert live[0].start == pytest.approx(batch[0].start + base)
    assert live[0].end == pytest.approx(batch[0].end + base)
    assert live[0].id == Moment("live", live[0].start, live[0].end, 0, 0).id


def test_gate_emits_each_moment_once_when_final():
    gate = MomentGate("live", min_length=4.0)
    m = moment(30.0, 45.0)
    assert gate.admit([m], final_until=40.0) == []  # not final yet
    assert gate.admit([m], final_until=50.0) == [m]
    # fusion over a longer past finds it again with its edges moved a little: the same moment
    again = [moment(29.7, 45.4), moment(31.0, 44.0)]
    assert gate.admit(again, final_until=60.0) == []
    assert gate.suppressed == 2 and gate.total == 1
    # a neighbour that overlaps only its edge is trimmed to start where it ends
    nb = moment(42.0, 60.0, peak=55.0)
    out = gate.admit([m, nb], final_until=70.0)
    assert len(out) == 1 and out[0].start == pytest.approx(45.0) and out[0].end == pytest.approx(60.0)
    assert out[0].id != nb.id and gate.trimmed == 1
    # ... and dropped when little of it is left
    assert gate.admit([moment(44.0, 47.0, peak=46.5)], final_until=80.0) == []
    ids = [e[0] for e in gate.emitted]
    assert len(ids) == len(set(ids)) == 2


def test_gate_state_survives_a_restart_without_duplicates():
    gate = MomentGate("live")
    gate.admit([moment(10.0, 25.0)], final_until=30.0)
    state = json.loads(json.dumps(gate.state()))
    fresh = MomentGate("live")
    fresh.restore(state)
    # a restarted run finds the emitted moment again, a bit differently: not emitted again
    assert fresh.admit([moment(11.0, 24.5)], final_until=40.0) == []
    # a moment the earlier run had decided against (its end before the decided time) stays decided
    assert fresh.admit([moment(26.0, 29.0, peak=27.0)], final_until=40.0) == []
    # what was still pending comes out once
    later = moment(28.0, 38.0, peak=33.0)
    assert fresh.admit([later], final_until=40.0) == [later]
    assert fresh.total == 2


def test_causal_fusion_of_made_up_evidence_emits_the_batch_moments_once():
    """Evidence is revealed as a live stream would reveal it (each source after its own delay);
    fusion runs every 2 s and the gate emits with the derived horizon. Every moment comes out once,
    only after the horizon, as batch fusion over the whole stream would set it."""
    fo = FusionOptions()
    horizon = finality_horizon(fo)
    # seconds from a signal's time to when its detector reports it: audio at the end of its second,
    # visual after its look-ahead and the second, interaction after half its window and late events
    # (fusion then moves that evidence interaction_lag earlier); speech is gated on the transcript
    delay = {"audio": 1.0, "visual": 2.0, "keyword": 0.0, "speech": 0.0, "interaction": 3.5}
    signals = (sig("keyword", 40, 41) + sig("audio", 40, 44) + sig("interaction", 44, 50)
               + sig("audio", 130, 136) + sig("visual", 131, 136, 0.8)
               + sig("interaction", 250, 258) + sig("keyword", 247, 248))
    duration = 320.0
    batch, _ = find_moments("live", signals, duration, options=fo)
    batch.sort(key=lambda m: m.start)  # find_moments ranks them best first
    gate = MomentGate("live")
    emitted: list[tuple[float, Moment]] = []
    T = 0.0
    while T < duration:
        T += 2.0
        known = [s for s in signals if s.t + delay[s.source] <= T]
        for m in gate.admit(fuse_window("live", known, [], [], max(0.0, T - 180.0), T, fo), T - horizon):
            emitted.append((T, m))
    assert len(emitted) == len(batch) == 3
    for (T_emit, m), b in zip(emitted, batch):
        assert m.end <= T_emit - horizon
        assert m.start == pytest.approx(b.start) and m.end == pytest.approx(b.end)


def test_backpressure_steps_down_in_order_and_recovers():
    o = LiveOptions(degrade_after=3, recover_after=4)
    bp = Backpressure(o)
    levels = [bp.observe(busy_s=3.0, segment_s=2.0, lag_s=1.0 + i) for i in range(12)]
    assert levels == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert DEGRADE_LEVELS[bp.level] == "beam-1"
    ups = [bp.observe(busy_s=0.2, segment_s=2.0, lag_s=0.3) for _ in range(16)]
    assert ups[-1] == 0 and ups == sorted(ups, reverse=True)
    # a lag that is large but shrinking (catching up) is not a reason to degrade
    bp2 = Backpressure(o)
    assert {bp2.observe(busy_s=0.5, segment_s=2.0, lag_s=20.0 - i) for i in range(10)} == {0}
    assert Backpressure(LiveOptions(max_level=1)).level == 0
    capped = Backpressure(LiveOptions(max_level=1, degrade_after=1))
    assert max(capped.observe(5.0, 2.0, 9.0) for _ in range(5)) == 1


def test_memory_stays_bounded(tmp_path):
    an = LiveAnalyzer("s", Settings(), None, tmp_path)
    an._start_at(0.0)
    an._analysed = 10_000.0
    an._signals.extend(Signal("audio", float(t), 0.5) for t in range(0, 10_000, 2))
    an._visual.cuts.extend(float(t) for t in range(0, 10_000, 5))
    an._prune()
    keep = 10_000.0 - an.o.look_behind_s - 2 * an.fusion.interaction_lag
    assert all(s.t >= keep for s in an._signals) and len(an._signals) < 100
    assert len(an._visual.cuts) < 50


# ------------------------------------------------------------------------------ the sample show, live


@pytest.fixture(scope="module")
def tiny():
    from models.registry import load_whisper

    return load_whisper("tiny.en", device="cpu", cpu_threads=1)


@pytest.fixture(scope="module")
def segments(short_show, tmp_path_factory) -> list[Segment]:
    """The show as 2 s MPEG-TS segments, timed on the show's clock (each segment's first video frame)."""
    folder = tmp_path_factory.mktemp("segments")
    subprocess.run([media.ffmpeg_binary(), "-nostdin", "-v", "error", "-i", str(short_show.video), "-map", "0",
                    "-c", "copy", "-f", "segment", "-segment_time", "2", "-segment_format", "mpegts",
                    str(folder / "seg%03d.ts")], check=True)
    paths = sorted(folder.glob("seg*.ts"))
    first = [media.probe(p).start_time for p in paths]
    out = []
    for i, p in enumerate(paths):
        start = round(first[i] - first[0], 6)
        end = round(first[i + 1] - first[0], 6) if i + 1 < len(paths) else start + media.probe(p).duration
        out.append(Segment("sample", i, start, end, str(p)))
    return out


class SimClock:
    """Wall time for a stream that arrives in real time, without the waiting: when the next segment
    is not due yet, the clock jumps to its arrival; analysis itself takes real time."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.t0 = self()

    def __call__(self) -> float:
        return time.perf_counter() + self.offset

    def wait_for(self, stream_t: float) -> float:
        due = self.t0 + stream_t
        if self() < due:
            self.offset += due - self()
        return due


def feed(an: LiveAnalyzer, segs, events, clock: SimClock, record: list, snapshots: dict | None = None,
         pushed_until: float = -1.0) -> None:
    """Feed segments in order, each at its arrival time, with the events of their span pushed first."""
    for seg in segs:
        arrived = clock.wait_for(seg.end)
        an.push_events([e for e in events if pushed_until <= e.t < seg.end])
        pushed_until = seg.end
        up = an.process_segment(seg, arrived=arrived)
        record.append({"T": up.analysed_until, "frontier": an.speech_frontier, "horizon": an.horizon_s,
                       "provisional_horizon": an.provisional_horizon_s, "update": up})
        if snapshots is not None:
            snapshots[round(seg.end)] = json.loads(json.dumps(an.state()))


@pytest.fixture(scope="module")
def live_run(segments, short_show, tiny, tmp_path_factory):
    from ace.signals.speech import Transcriber

    clips = tmp_path_factory.mktemp("live-clips")
    clock = SimClock()
    events = load_events(short_show.events).events
    from ace.products.catalog import parse_products

    products = parse_products(json.loads(Path(short_show.truth).read_text()).get("products", []))
    an = LiveAnalyzer("sample", Settings(cpu_threads=1), Transcriber(tiny), clips, clock=clock, products=products)
    record: list[dict] = []
    snapshots: dict[int, dict] = {}
    feed(an, segments, events, clock, record, snapshots)
    final = an.flush()
    return {"analyzer": an, "record": record, "final": final, "snapshots": snapshots, "events": events,
            "clips": clips}


def _updates(run) -> list:
    return [r["update"] for r in run["record"]] + [run["final"]]


def _emitted(run) -> list[Moment]:
    """Each moment as it ended up (a provisional moment's final version replaces it), in time order."""
    latest = {m.id: m for up in _updates(run) for m in up.moments}
    return sorted(latest.values(), key=lambda m: m.start)


def _final_clips(run) -> list:
    """Each moment's clip as it ended up (a confirmation or replacement of a provisional one replaces it)."""
    return list({c.moment_id: c for up in _updates(run) for c in up.clips}.values())


def _words(run):
    return [w for r in run["record"] for w in r["update"].words] + list(run["final"].words)


def test_live_finds_the_planted_highlights_like_batch(live_run, short_show):
    from ace.pipeline import ShowPipeline

    truth = json.loads(Path(short_show.truth).read_text())
    live = compare_with_truth(_emitted(live_run), truth)
    batch_moments = ShowPipeline(Settings(cpu_threads=1, speech_workers=1)).analyse(short_show.video, short_show.events).moments
    batch = compare_with_truth(batch_moments, truth)
    report = f"live {live['recall']} ({live['rows']}), batch {batch['recall']} ({batch['rows']})"
    assert batch["recall"] == 1.0, report
    assert live["recall"] >= 0.75, report
    # the edges agree with batch's within a snap window
    for lm in _emitted(live_run):
        near = min(batch_moments, key=lambda b: abs(b.start - lm.start) + abs(b.end - lm.end))
        assert abs(near.start - lm.start) < 4.0 and abs(near.end - lm.end) < 4.0, (lm, near)


def test_moments_are_emitted_only_once_final_and_never_twice(live_run):
    """Each moment comes out once: final, or provisional (final with respect to everything but the
    audience: the sample show has chat) and then once final, under the same id."""
    reach = speech_reach(live_run["analyzer"].fusion)
    emitted = []
    for r in live_run["record"]:
        up = r["update"]
        for m in up.moments:
            horizon = r["provisional_horizon"] if m.id in up.provisional else r["horizon"]
            assert m.end <= r["T"] - horizon + 1e-6, (m, r["T"])
            assert m.end <= r["frontier"] - reach + 1e-6, (m, r["frontier"])
            emitted.append(m)
    assert emitted, "the highlight is final before the stream ends"
    first, pending = [], set()
    for up in _updates(live_run):
        for m in up.moments:
            if m.id in up.confirmed | up.replaced:
                assert m.id in pending and m.id not in up.provisional, m  # settles what was provisional, once
                pending.discard(m.id)
            else:
                first.append(m.id)
        pending |= up.provisional
    assert not pending, "every provisional moment became final"
    everything = _emitted(live_run)
    assert len(set(first)) == len(first) == len(everything)
    spans = sorted((m.start, m.end) for m in everything)
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:])), spans
    st = live_run["analyzer"].stats()
    assert st["moments"] == len(everything) and st["suppressed"] > 0, st  # found again, let out once


def test_clips_are_frame_exact_on_the_stream_clock_and_clear_of_words(live_run, short_show):
    words = _words(live_run)
    assert len(words) > 50
    assert all(a.end <= b.start + 0.05 for a, b in zip(words, words[1:])), "each word committed once, in order"
    clips = _final_clips(live_run)
    by_id = {m.id: m for m in _emitted(live_run)}
    assert clips and {c.moment_id for c in clips} == set(by_id)
    fps = media.probe(short_show.video).fps
    for c in clips:
        m = by_id[c.moment_id]
        assert c.state == "final", c
        assert Path(c.path).name == f"{m.id}.mp4" and Path(c.path).parent == live_run["clips"]
        assert Path(c.srt_path).is_file() and Path(c.thumb_path).is_file()
        assert "-->" in Path(c.srt_path).read_text()
        assert abs(c.start - m.start) <= 1 / fps and abs(c.end - m.end) <= 1 / fps, (c, m)
        assert media.probe(c.path).duration == pytest.approx(c.end - c.start, abs=0.05)
        off = frame_offsets(str(short_show.video), c.path, c.start, c.end, fps)
        assert off["first"] == 0 and off["last"] == 0, off
        for t in (m.start, m.end):
            assert inside_word(t, words) is None, (t, inside_word(t, words))


def test_latency_and_load_are_reported(live_run):
    an = live_run["analyzer"]
    st = an.stats()
    lat = [v for r in live_run["record"] for v in r["update"].latency_s.values()]
    assert lat and st["latency_max_s"] == pytest.approx(max(lat))
    # the horizon, the rest of the segment that completes it, and the cut
    assert max(lat) <= an.horizon_s + 2 * 2.0 + 8.0, st
    assert st["segments"] == len(live_run["record"]) and st["level"] == 0, st
    assert st["realtime"] > 1.0 and st["lag_s"] < 6.0, st
    assert st["clip_errors"] == 0 and st["bad_segments"] == 0 and st["gaps"] == 0, st
    # a moment settled on all but its words had the transcriber decode early, so it came out within a
    # segment of the provisional line instead of waiting up to a window for its words (on this show
    # it came out in the step its words arrived: there was nothing to cut ahead); a provisional clip
    # became final and was cut again only if it was replaced, and nothing cut ahead is left behind
    assert st["speech_hurries"] >= 1, st
    for r in live_run["record"]:
        for m in r["update"].moments:
            if m.id in r["update"].provisional:
                assert r["T"] - m.end <= r["provisional_horizon"] + 2.0 + 1e-6, (m, r["T"])
    assert st["confirmed_clips"] + st["replaced_clips"] >= 1, st
    assert st["clips"] == len(_final_clips(live_run)) + st["replaced_clips"], st
    assert not list(live_run["clips"].glob(".ace-*")), list(live_run["clips"].iterdir())
    # every clip published provisional was confirmed or replaced by the end, and has a final latency
    assert st["provisional_pending"] == 0 and st["provisional_clips"] == st["confirmed_clips"] + st["replaced_clips"], st
    final_lat = {k for up in _updates(live_run) for k in up.final_latency_s}
    assert final_lat == {c.moment_id for c in _final_clips(live_run)}, st


def test_restart_resumes_without_re_emitting(live_run, segments, tiny, tmp_path):
    """A fresh analyzer restored from a snapshot taken after the highlight was emitted warms up on
    the buffer and goes on to the end without emitting it again; one restored from before emits the
    pending highlight exactly once, at the end of the stream at the latest (flush)."""
    from ace.signals.speech import Transcriber

    emitted_at: dict[str, float] = {}
    for r in live_run["record"]:
        for m in r["update"].moments:
            emitted_at.setdefault(m.id, r["T"])  # its first emission (provisional, or final at once)
    first_emit = min(emitted_at.values())
    before = max(t for t in live_run["snapshots"] if t < first_emit - 4)
    after = min(t for t in live_run["snapshots"] if t > first_emit)
    events = live_run["events"]

    def covering(t0, t1):
        return [s for s in segments if s.end > t0 and s.start < t1]

    def resume(snapshot_t: int, upto: float) -> tuple[LiveAnalyzer, list[Moment]]:
        clock = SimClock()
        an = LiveAnalyzer("sample", Settings(cpu_threads=1), Transcriber(tiny), tmp_path / f"clips{snapshot_t}",
                          segments_for=covering, clock=clock)
        since = an.restore(live_run["snapshots"][snapshot_t])
        assert since is not None and since < snapshot_t
        an.push_events([e for e in events if since <= e.t < snapshot_t])
        record: list[dict] = []
        # the controller replays from a segment the earlier run had already seen: it is skipped
        todo = [s for s in segments if s.end > snapshot_t - 2.5 and s.start < upto]
        feed(an, todo, events, clock, record, pushed_until=snapshot_t)
        out = [m for r in record for m in r["update"].moments] + list(an.flush().moments)
        return an, list({m.id: m for m in out}.values())  # each as it ended up

    an, again = resume(after, segments[-1].end)
    assert again == [], again
    st = an.stats()
    assert st["moments"] == len(emitted_at) and st["segments"] >= 30, st  # warmed up on the buffer

    # stop two segments after the snapshot: the highlight is not final yet, flush() lets it out
    an, pending = resume(before, before + 4.0)
    originals = [m for m in _emitted(live_run) if m.id in emitted_at]
    assert len(pending) == len(originals) == 1, (pending, originals)
    assert abs(pending[0].start - originals[0].start) < 1.0 and pending[0].end <= before + 4.0 + 1e-6
    assert an.stats()["clips"] == 1


def test_keyframes_only_level_still_analyses(segments, tmp_path):
    an = LiveAnalyzer("sample", Settings(), None, tmp_path)
    an.set_level(2)
    for seg in segments[:6]:
        up = an.process_segment(seg)
        assert up.level == 2
    st = an.stats()
    assert st["level_name"] == "keyframes-only" and st["segments"] == 6 and st["bad_segments"] == 0
    assert an._visual.frames == 6  # one keyframe per 2 s segment
    # no audience here: the visual look-ahead over keyframes is what the horizon waits for
    assert not an.audience and an.horizon_s > finality_horizon(an.fusion, audience=False)


def test_a_gap_in_the_stream_restarts_the_audio_side(segments, tmp_path):
    an = LiveAnalyzer("sample", Settings(), None, tmp_path)
    for seg in segments[:3] + segments[6:8]:  # 6 s missing: longer than max_fill_s
        an.process_segment(seg)
    an.process_segment(segments[7])  # a replay is skipped
    st = an.stats()
    assert st["gaps"] == 1 and st["segments"] == 5 and st["bad_segments"] == 0, st
    assert an.analysed_until == pytest.approx(segments[7].end)
    assert an.flush().moments == [] and an.flush().moments == []
    with pytest.raises(RuntimeError):
        an.process_segment(segments[8])


def test_flush_right_after_a_restore_has_nothing_to_warm_up_on(tmp_path):
    an = LiveAnalyzer("sample", Settings(), None, tmp_path, segments_for=lambda t0, t1: [])
    state = {"version": 1, "stream_id": "sample", "analysed_until": 50.0, "level": 0,
             "decided_until": 39.5, "emitted": [["abc", 20.0, 35.0]], "emitted_total": 1}
    assert an.restore(state) == pytest.approx(0.0)
    up = an.flush()
    assert up.moments == [] and an.state()["emitted_total"] == 1
    with pytest.raises(ValueError):
        LiveAnalyzer("other", Settings(), None, tmp_path).restore(state)


@pytest.mark.parametrize("reset", [False, True])
def test_segments_join_for_a_smart_cut(tmp_path, caplog, reset):
    """Segments as the ingest writes them (its segment list counts the first one from its audio,
    which leads the video) join byte for byte and cut smart; segments whose timestamps restart are
    laid end to end by ffmpeg's concat demuxer instead."""
    import csv
    import logging

    from ace.live.analyzer import join_segments
    from tests import media_factory as mf

    src = mf.make_counter_video(tmp_path / "src.ts", duration=6, fps=30, gop=30)
    out = tmp_path / "segs"
    out.mkdir()
    subprocess.run([mf.ffmpeg_bin(), "-nostdin", "-v", "error", "-i", str(src), "-map", "0:v:0", "-map", "0:a:0",
                    "-c", "copy", "-f", "segment", "-segment_time", "1", "-segment_format", "mpegts",
                    "-segment_list", str(out / "list.csv"), "-segment_list_type", "csv",
                    "-reset_timestamps", "1" if reset else "0", str(out / "%03d.ts")], check=True)
    rows = list(csv.reader((out / "list.csv").read_text().splitlines()))
    segs = [Segment("s", i, float(r[1]), float(r[2]), str(out / r[0])) for i, r in enumerate(rows)]
    assert len(segs) >= 5
    joined = tmp_path / "joined.ts"
    base = join_segments(segs, joined)
    assert joined.with_suffix(".txt").exists() == reset  # the concat demuxer's listing: only for restarts
    with caplog.at_level(logging.INFO, logger="ace.media"):
        s, e = media.cut_exact(joined, 0.5 - base, 4.5 - base, tmp_path / "clip.mp4")
    if not reset:
        assert "exact cut (smart" in caplog.text
    v0 = media.keyframes(joined)[0]
    ids = [mf.read_counter(f) for _, f in media.iter_frames(tmp_path / "clip.mp4", fps=30, width=48, skip_bidir=False)]
    want = list(range(round((s - v0) * 30), round((e - v0) * 30)))
    if not reset:
        assert ids == want  # frame-exact
    else:  # laid end to end by duration: a frame may repeat or go missing at a join
        assert ids[0] == want[0] and abs(len(ids) - len(want)) <= 2


def _cut_dir_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_clip_cut_ahead_is_used_only_for_the_same_edges(segments, tmp_path, monkeypatch):
    """A clip cut while its moment was settling is taken when the final moment has the same edges
    and peak (captions written from the transcript as it is then); a moment that changed, or a cut
    that failed, is cut again, and what was cut ahead is removed."""
    from ace.live import analyzer as mod

    an = LiveAnalyzer("sample", Settings(), None, tmp_path / "clips", segments_for=lambda t0, t1: segments)
    m = Moment("sample", 20.0, 34.0, 0.9, 27.0)
    an._cut_ahead([m], [])
    assert an._ahead[m.id].future.result()[0].end == pytest.approx(34.0, abs=0.04)
    clip = an._cut(m, [])
    st = an.stats()
    assert (st["cuts_ahead_used"], st["cuts_ahead_wasted"], st["clips"]) == (1, 0, 1), st
    assert Path(clip.path) == tmp_path / "clips" / f"{m.id}.mp4"
    assert media.probe(clip.path).duration == pytest.approx(14.0, abs=0.05)
    assert _cut_dir_listing(tmp_path / "clips") == [f"{m.id}{x}" for x in (".jpg", ".mp4", ".srt")]

    # the moment grew before it was final (a new id): it is cut for its final edges, and what was
    # cut for the old ones is dropped at the next step
    m2 = Moment("sample", 40.0, 52.0, 0.9, 45.0)
    an._cut_ahead([m2], [])
    grown = Moment("sample", 40.0, 56.0, 0.9, 45.0)
    clip2 = an._cut(grown, [])
    assert media.probe(clip2.path).duration == pytest.approx(16.0, abs=0.05)
    an._cut_ahead([], [])
    assert an.stats()["cuts_ahead_wasted"] == 1 and not an._ahead
    # same edges, but its peak (the thumbnail) moved: cut again
    an._cut_ahead([m2], [])
    moved = dataclasses.replace(m2, peak=48.0)
    assert an._cut(moved, []) is not None
    assert an.stats()["cuts_ahead_wasted"] == 2 and an.stats()["cuts_ahead_used"] == 1

    # a moment that went away is dropped at the next step; a failed cut ahead is cut again
    m3 = Moment("sample", 60.0, 70.0, 0.9, 65.0)
    an._cut_ahead([m3], [])
    an._cut_ahead([], [])
    assert an.stats()["cuts_ahead_wasted"] == 3 and not an._ahead
    real = mod.render_clip

    def broken(*a, **k):
        raise media.MediaError("disk full")

    monkeypatch.setattr(mod, "render_clip", broken)
    an._cut_ahead([m3], [])
    an._ahead[m3.id].future.exception()
    monkeypatch.setattr(mod, "render_clip", real)
    clip3 = an._cut(m3, [])
    assert clip3 is not None and media.probe(clip3.path).duration == pytest.approx(10.0, abs=0.05)
    # a stream stopped before its end: what is being cut ahead is dropped
    an._cut_ahead([Moment("sample", 72.0, 84.0, 0.9, 80.0)], [])
    an.close()
    assert not list((tmp_path / "clips").glob(".ace-*")) and not an._ahead
    an.flush()
    assert an.stats()["cuts_ahead_wasted"] == 5 and an.stats()["clip_errors"] == 0


def test_cutting_ahead_waits_while_degraded_and_runs_behind_analysis(segments, tmp_path, monkeypatch):
    """Nothing is cut ahead while analysis is degraded; the cutting thread, and the ffmpeg it starts,
    run at a lower priority than the thread that analyses."""
    import os

    from ace.live import analyzer as mod

    m = Moment("sample", 20.0, 34.0, 0.9, 27.0)
    monkeypatch.setattr(mod, "fuse_window", lambda *a, **k: [m])
    an = LiveAnalyzer("sample", Settings(), None, tmp_path / "clips", segments_for=lambda t0, t1: segments)
    an.set_level(1)
    an._analysed = m.end + an.horizon_s - 2.0  # final two seconds from now
    assert an._emit(final=False).moments == [] and not an._ahead
    an.set_level(0)
    an._analysed = m.end + an.horizon_s - 2.0
    assert an._emit(final=False).moments == [] and m.id in an._ahead

    def nice_of_a_child() -> int:
        out = subprocess.run(["sh", "-c", "cut -d' ' -f19 /proc/self/stat"], capture_output=True, text=True)
        return int(out.stdout)

    here = os.getpriority(os.PRIO_PROCESS, 0)
    assert an._cutter.submit(nice_of_a_child).result() == min(19, here + mod.CUT_AHEAD_NICE)
    assert nice_of_a_child() == here
    an._analysed += 2.0
    up = an._emit(final=False)
    assert [c.moment_id for c in up.clips] == [m.id] and an.stats()["cuts_ahead_used"] == 1
    an.flush()


# ------------------------------------------------------------------------ the room's chat and its delay


def chat_room(duration, bursts=(), rate=0.8, seed=0):
    """Calm chat from many viewers at ``rate`` per second, and ``(t0, t1, rate, text)`` bursts from
    other viewers (each message's text unique, so no copy-paste waves)."""
    import numpy as np

    from ace.types import Event

    rng = np.random.default_rng(seed)
    calm = np.sort(rng.uniform(0, duration, int(rate * duration)))
    events = [Event(float(t), "chat", f"u{i}", 1.0, "hello there, nice stream") for i, t in enumerate(calm)]
    for k, (t0, t1, r, text) in enumerate(bursts):
        at = np.sort(rng.uniform(t0, t1, int(r * (t1 - t0))))
        events += [Event(float(t), "chat", f"b{k}_{i}", 1.0, f"{text} {i}") for i, t in enumerate(at)]
    return sorted(events, key=lambda e: e.t)


def run_room(room, events, signals, duration, step=2.0):
    """Feed a RoomChat as the analyzer does, ``step`` seconds at a time (media evidence known 1 s late)."""
    room.start(0.0)
    T = 0.0
    while T < duration:
        T += step
        room.push([e for e in events if T - step <= e.t < T])
        room.advance(T, [s for s in signals if s.t + 1.0 <= T], T - finality_horizon(FusionOptions()))
    return room


def test_a_rooms_delay_is_measured_on_its_own_chat_and_media(tmp_path):
    import numpy as np

    from ace.live.chat import RoomChat
    from ace.signals.chat import chat_series
    from ace.types import Event
    from models.scorer import default_model

    rng = np.random.default_rng(1)
    moments = np.cumsum(rng.uniform(20, 45, 14)) + 10
    moments = moments[moments < 380]
    # moments a little loud (not strong on their own), each answered by the audience 8 s later
    loud = [Signal("audio", t + k + 0.5, 0.6, "loud") for t in moments for k in range(3)]
    events = chat_room(400, [(t + 8, t + 11, 5.0, "wow") for t in moments])
    room = run_room(RoomChat(default_model(), FusionOptions()), events, loud, 400)
    assert room.lag.method == "xcorr" and room.lag.seconds == pytest.approx(8, abs=1), room.lag
    assert room.estimates >= 8 and room.stats()["audience_lag_s"] == room.lag.seconds
    # with the chat they become strong, where they happened rather than where the chat peaked
    found = room.candidates("room", loud, [], [], 220.0, 400.0)
    assert found and all(any(t <= m.peak <= t + 3 for t in moments) for m in found), (found, moments)
    assert all({r.source for r in m.reasons} == {"audio", "chat"} for m in found)
    # the same chat with nothing seen or heard to line it up with: the model's prior stays
    quiet = run_room(RoomChat(default_model(), FusionOptions()), events, [], 400)
    assert quiet.lag.method == "prior" and quiet.lag.seconds == default_model().lag and quiet.estimates >= 8

    # the room's series, sealed piece by piece, is the batch series of all its chat: users on
    # cooldown and copy-paste waves included
    chatty = [Event(float(t), "chat", f"u{rng.integers(40)}", 1.0, str(rng.choice(["gg", "wow", "nice one", "LUL"])))
              for t in np.sort(rng.uniform(0, 300, 900))]
    room = run_room(RoomChat(default_model(), FusionOptions(), history_s=200), chatty, [], 300)
    origin, live = room.series(300)
    assert origin == 100 and len(live) == 200  # bounded
    assert np.array_equal(live, chat_series(chatty, 300)[origin:])
    assert chat_series(chatty, 300)[:, 7].sum() > 0  # (there were waves)


def step_room(an: LiveAnalyzer, T: float, signals=()):
    """What process_segment does once a segment is decoded, for a room with no media files."""
    an._analysed = T
    an._signals.extend(signals)
    an._signals.extend(an._inter.process_events((), now=T - an.o.event_delay_s))
    an.chat.advance(T, an._signals, T - an.horizon_s)
    an._prune()
    return an._emit(final=False)


def test_the_chat_tier_waits_for_the_chat_and_the_media_tier_does_not(tmp_path):
    """A chat burst with nothing seen or heard comes out once the chat that makes it is all there
    (the chat horizon, with the prior: the room's chat lines up with nothing), not before; a burst
    the interaction detector already caught is not emitted again by the chat tier; a moment strong
    on what is seen and heard comes out at the media horizon although the room has chat."""
    an = LiveAnalyzer("room", Settings(), None, tmp_path, options=LiveOptions(cut_ahead_s=0))
    an._cut = lambda m, sentences: None  # no media to cut clips from
    an._start_at(0.0)
    events = chat_room(380, [(100, 110, 3.2, "wow pog"), (220, 245, 1.6, "wow pog")])
    media = [Signal("keyword", 320.5, 1.0, "keyword"), Signal("audio", 320.5, 1.0, "loud"), Signal("audio", 321.5, 1.0, "loud")]
    out, provisional, final_at = [], set(), {}
    T = 0.0
    while T < 380:
        T += 2.0
        an.push_events([e for e in events if T - 2 <= e.t < T])
        up = step_room(an, T, [s for s in media if T - 2 <= s.t < T])
        # each moment's first emission (the media tier's are provisional: the room has an audience)
        out += [(T, up.tiers[m.id], m, an.horizon_s, an.chat_horizon_s) for m in up.moments
                if m.id not in up.confirmed | up.replaced]
        provisional |= up.provisional
        final_at.update((m.id, (T, m)) for m in up.moments if m.id not in up.provisional)
    st = an.stats()
    assert st["audience_lag_method"] == "prior" and st["chat_horizon_s"] == pytest.approx(2 * 2 + 27 + 20 + 10 + 1)
    assert [tier for _T, tier, *_ in out] == ["media", "chat", "media"], out
    (T1, _, burst, h, _), (T2, _, chat_only, _, ch), (T3, _, seen, _, _) = out
    assert provisional == {burst.id, seen.id} and chat_only.id in final_at  # the chat tier is final only
    burst_T, burst = final_at[burst.id]
    assert burst.start < 110 and burst.end > 100  # the interaction detector's moment, at its fixed lag
    assert burst.end <= burst_T - h
    assert chat_only.end <= T2 - ch and chat_only.end > T2 - 2 - ch  # as soon as final, not before
    assert [r.source for r in chat_only.reasons] == ["chat"] and chat_only.end < 220  # the prior's 27 s before
    assert seen.start < 320 < seen.end and T3 - seen.end < an.provisional_horizon_s + 2.0  # not delayed by the chat
    seen_T, final_seen = final_at[seen.id]
    assert final_seen.start < 320 < final_seen.end and seen_T - final_seen.end < h + 2.0  # final at the media horizon
    assert st["chat_moments"] == 1 and st["moments"] == 3


def test_the_rooms_delay_survives_a_restart(tmp_path):
    from ace.lag import Lag

    an = LiveAnalyzer("room", Settings(), None, tmp_path)
    assert an.stats()["audience_lag_method"] == "prior" and an.chat_horizon_s == pytest.approx(62.0)
    an.chat.lag, an.chat.estimates = Lag(6.0, "xcorr", 0.7), 3
    an.gate.admit([], 100.0)
    an.gate.admit([], 70.0, tier="chat")
    an._analysed = 110.0
    state = json.loads(json.dumps(an.state()))
    assert state["audience_lag"] == {"seconds": 6.0, "method": "xcorr", "corr": 0.7, "estimates": 3}
    fresh = LiveAnalyzer("room", Settings(), None, tmp_path)
    fresh.restore(state)
    st = fresh.stats()
    assert (st["audience_lag_s"], st["audience_lag_method"]) == (6.0, "xcorr")
    assert fresh.chat_horizon_s == pytest.approx(2 * 2 + 6 + 20 + 10 + 1) and fresh.chat.estimates == 3
    # what the chat tier had decided stays decided
    assert fresh.gate.chat_floor == 70.0 and fresh.gate.floor == 100.0
    assert fresh.gate.admit([moment(50.0, 69.0)], 90.0, tier="chat") == []
    # a state from before rooms had a delay: the prior, and the chat tier decided what the media tier had
    old = {k: v for k, v in state.items() if k not in ("audience_lag", "chat_decided_until")}
    older = LiveAnalyzer("room", Settings(), None, tmp_path)
    older.restore(old)
    assert older.chat.lag.method == "prior" and older.gate.chat_floor == 100.0


def test_a_short_room_uses_only_the_media_tier(live_run):
    """The sample show is under the two minutes a room's delay needs: no chat tier yet."""
    st = live_run["analyzer"].stats()
    assert st["audience_lag_method"] == "prior" and st["audience_lag_estimates"] == 0, st
    assert st["chat_moments"] == 0 and st["chat_messages"] > 0, st
    tiers = {t for r in live_run["record"] for t in r["update"].tiers.values()}
    assert tiers == {"media"}, tiers


def test_a_moment_only_partly_in_the_buffer_is_cut_from_the_part_held(tmp_path):
    """An outage inside a moment (or a restart that lost the buffer before it): the clip covers the
    longest unbroken run of segments the buffer holds of it, the one with the peak; too little held,
    no clip."""
    from ace.live.analyzer import LiveAnalyzer
    from ace.types import Moment, Segment

    held: list[Segment] = []
    an = LiveAnalyzer("s", Settings(clip_min=8.0), None, tmp_path, segments_for=lambda t0, t1: list(held))
    # 100-110 s before an outage, 128-140 s after it
    held[:] = [Segment("s", i, 100.0 + 2 * i, 102.0 + 2 * i, f"/x/{i}.ts") for i in range(5)]
    held += [Segment("s", 10 + i, 128.0 + 2 * i, 130.0 + 2 * i, f"/x/{10 + i}.ts") for i in range(6)]
    m = Moment("s", 97.0, 139.0, 0.8, 133.0)
    segs, span = an._holds(m)
    assert span == (128.0, 139.0) and [s.seq for s in segs] == list(range(10, 16))  # the run with the peak
    whole = Moment("s", 101.0, 109.0, 0.8, 104.0)
    segs, span = an._holds(whole)
    assert span == (101.0, 109.0) and [s.seq for s in segs] == [0, 1, 2, 3, 4]
    held[:] = [Segment("s", 0, 100.0, 102.0, "/x/0.ts")]
    assert an._holds(Moment("s", 95.0, 120.0, 0.8, 110.0)) is None  # 2 s of 25: not worth a clip


def test_live_cuts_each_product_pitch_once_its_end_is_certain(live_run, short_show):
    """The sample show's pitches: each emitted once, after its end, with a clip named after the
    product; the same segments as batch finds in the whole transcript."""
    from ace.evaluation.products import match_segments

    truth = json.loads(Path(short_show.truth).read_text())
    planted = truth.get("product_segments", [])
    if not planted:
        pytest.skip("this sample show plants no product pitch")
    emitted = [(r["T"], g, r["update"].product_clips.get(g.id)) for r in live_run["record"] for g in r["update"].segments]
    emitted += [(live_run["final"].analysed_until, g, live_run["final"].product_clips.get(g.id)) for g in live_run["final"].segments]
    segs = [g for _, g, _ in emitted]
    assert len({g.id for g in segs}) == len(segs), "a segment was emitted twice"
    assert len(match_segments(segs, planted)) == len(planted), (segs, planted)
    for t, g, clip in emitted:
        assert t >= g.end  # never before the pitch is over
        assert clip is not None and Path(clip.path).name == f"{g.product}-{g.n}.mp4" and Path(clip.path).is_file()
        assert abs(clip.start - g.start) < 0.5 and abs(clip.end - g.end) < 0.5


def test_a_stream_asking_for_vertical_clips_gets_them_with_captions(segments, tmp_path):
    """A stream's own clip shape (``StreamSpec.clip_format``, through ``clip_settings``) reaches the
    live cut: a 9:16 picture from the 16:9 stream, captions burned in, the sidecar kept."""
    from ace.config import clip_settings

    s = clip_settings(Settings(), "vertical", True)
    assert (s.clip_format, s.burn_captions) == ("vertical", True)
    assert clip_settings(s, None, None) is s
    with pytest.raises(ValueError, match="clip format"):
        clip_settings(s, "wide", None)
    an = LiveAnalyzer("sample", s, None, tmp_path / "clips", segments_for=lambda t0, t1: segments)
    words = [Word(22.0 + 0.4 * i, 22.3 + 0.4 * i, w) for i, w in enumerate("link is up now".split())]
    clip = an._cut(Moment("sample", 20.0, 30.0, 0.9, 25.0), [Sentence(22.0, 23.6, "link is up now", words=words)])
    info = media.probe(clip.path)
    assert (clip.format, clip.burned) == ("vertical", True)
    assert info.height == 360 and info.width == 202 and info.duration == pytest.approx(10.0, abs=0.05)
    assert "link is up now" in Path(clip.srt_path).read_text()
    an.close()
