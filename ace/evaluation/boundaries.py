"""Clip boundaries: do clips start or end inside a spoken word, and how many frames off are the
edges of an ``exact`` cut?

Two videos: the film clip ``video/tears-of-steel-battle-clip-medium.webm`` of the data folder
(VP8/Vorbis, many cuts, little speech) and the generated sample show (H.264, speech throughout,
planted highlights and audience events). Each is analysed by the pipeline
(:meth:`ace.pipeline.ShowPipeline.analyse`), and two sets of clips are planned:

``moments``
    the moments ACE found, as the pipeline would cut them (:func:`ace.clipper.plan_clip`);
``probes``
    moments planned by fusion itself (:func:`ace.fusion.find_moments`, with the real transcript,
    the real scene cuts and the pipeline's options) from synthetic evidence placed every
    ``probe_step`` seconds, so the boundary logic is exercised all over a show, also where the
    detectors found nothing (a 70 s film clip without an audience may give no moments at all).
    Evidence points go through in interleaved passes far enough apart that their clips never merge.

For every planned clip, each edge is checked against the transcript's words: an edge strictly
inside a word (``word.start + tol < edge < word.end - tol``), or where two words meet with no pause
between them (under ``2 * tol``, so the cut still falls in running speech), makes the clip an
offender. Up to
``max_cuts`` clips per video are cut with :func:`ace.media.cut_exact` (the clipper's ``exact`` mode);
their actual edges are checked the same way, and :func:`frame_offsets` compares the cut's first and
last frames with the source frames around the planned edges (0 = frame-exact).

The words are ACE's own (the VAD-filtered transcript the pipeline works with), so the check says
whether fusion respects the words it was given, not whether the transcript heard everyone: where
the transcript is empty (``words == 0`` in the report) no edge can fall inside a word. Where the
show comes with ground truth (the sample show's ``<stem>.truth.json``), edges are also checked
against the voiced spans of the sentences actually spoken (``inside_true_sentence``); that is
stricter than the target (a pause between two words of one sentence counts too) and is reported,
not targeted.

Targets: no clip starts or ends inside a word (``inside_word == 0``) and every exact cut is within
one frame of its plan (``max_edge_error_frames <= 1``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ace import media
from ace.clipper import plan_clip
from ace.config import Settings, get_settings
from ace.errors import AceError, InputError
from ace.fusion import FusionOptions, find_moments
from ace.types import ClipPlan, Moment, Signal, Word

log = logging.getLogger("ace.evaluation.boundaries")

__all__ = [
    "TEARS_VIDEO",
    "WORD_TOLERANCE",
    "MAX_EDGE_FRAMES",
    "inside_word",
    "edge_offenders",
    "probe_moments",
    "frame_offsets",
    "summarise",
    "evaluate_video",
    "evaluate_boundaries",
]

#: The film clip, relative to the data folder.
TEARS_VIDEO = Path("video/tears-of-steel-battle-clip-medium.webm")

#: An edge this close to a word's start or end does not count as inside it (seconds).
WORD_TOLERANCE = 0.02

#: Most frames an exact cut's edge may be off its plan.
MAX_EDGE_FRAMES = 1

#: Source frames whose mean absolute difference from a clip's edge frame is at most ``TIE_RATIO``
#: times the best match's plus ``TIE_GREY`` grey levels cannot be told apart from it (a still
#: picture, or differences below the re-encode's own noise; see :func:`frame_offsets`).
TIE_RATIO = 1.5
TIE_GREY = 0.005

_PROBE_SOURCE = "probe"


# ------------------------------------------------------------------------------------------ word checks


def inside_word(t: float, words: Sequence[Word], tol: float = WORD_TOLERANCE) -> Word | None:
    """The word an edge at ``t`` would cut, else None.

    An edge cuts a word when it falls strictly inside it (``start + tol < t < end - tol``) or where
    one word ends and the next begins with no pause between them (a gap under ``2 * tol``: the
    words run on, so cutting there still cuts speech); it is then the word that begins there. Words
    are taken as runs of continuous speech, so a word shorter than ``2 * tol`` standing alone
    contains nothing."""
    ws = sorted(words, key=lambda w: (w.start, w.end))
    i = 0
    while i < len(ws):
        j, run_end = i, ws[i].end
        while j + 1 < len(ws) and ws[j + 1].start - run_end < 2 * tol:
            j += 1
            run_end = max(run_end, ws[j].end)
        if ws[i].start + tol < t < run_end - tol:
            run = ws[i : j + 1]
            holding = next((w for w in run if w.start <= t < w.end), None)
            return holding or next((w for w in run if w.start >= t), run[-1])  # else the next word
        if ws[i].start > t:
            break
        i = j + 1
    return None


def edge_offenders(start: float, end: float, words: Sequence[Word], tol: float = WORD_TOLERANCE, label: str = "") -> list[dict]:
    """The edges of ``[start, end]`` that cut a word (see :func:`inside_word`): ``{"edge", "t",
    "where", "word", "word_start", "word_end", "depth_s"}`` each. ``edge`` is ``"start"``/``"end"``,
    prefixed by ``label`` when given; ``where`` is ``"inside"`` or ``"between running words"``;
    ``depth_s`` is how far inside the word, from its nearer end."""
    out = []
    for name, t in (("start", start), ("end", end)):
        w = inside_word(t, words, tol)
        if w is not None:
            edge = f"{label} {name}" if label else name
            where = "inside" if w.start + tol < t < w.end - tol else "between running words"
            out.append({"edge": edge, "t": round(t, 3), "where": where, "word": w.text.strip(), "word_start": w.start,
                        "word_end": w.end, "depth_s": round(max(0.0, min(t - w.start, w.end - t)), 3)})
    return out


# ----------------------------------------------------------------------------------------------- probes


def probe_moments(
    show_id: str,
    duration: float,
    sentences: Sequence,
    cuts: Sequence[float],
    options: FusionOptions,
    step: float = 10.0,
) -> list[tuple[float, Moment]]:
    """Moments fusion plans around synthetic evidence every ``step`` seconds (from ``step / 2``):
    ``(evidence time, moment)`` pairs in time order.

    Each evidence point is one full-strength signal of a source weighted 1.0, fed to
    :func:`ace.fusion.find_moments` with the real ``sentences`` and ``cuts`` and ``options``'
    boundary settings, so its lead-in, tail, length limits and snapping are fusion's own. Points go
    through in interleaved passes spaced so that their clips cannot overlap and merge.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    o = dataclasses.replace(options, weights={_PROBE_SOURCE: 1.0})
    points = []
    t = step / 2
    while t < duration - 1.0:
        points.append(round(t, 3))
        t += step
    # widest clip one point can give: its region, lead-in and tail (or clip_min), snapping both ways
    reach = max(2 * o.spread_s + 1 + o.pre_roll + o.post_roll, o.clip_min) + 2 * o.snap_window + 2.0
    passes = max(1, math.ceil(reach / step))
    out: list[tuple[float, Moment]] = []
    for k in range(passes):
        group = points[k::passes]
        if not group:
            continue
        signals = [Signal(_PROBE_SOURCE, p, 1.0, "evidence point") for p in group]
        moments, _tl = find_moments(show_id, signals, duration, sentences, cuts, o)
        for m in moments:
            inside = [p for p in group if m.start - 1.0 <= p <= m.end + 1.0]
            out.append((inside[0] if inside else m.peak, m))
    out.sort(key=lambda x: (x[1].start, x[1].end))
    return out


# ---------------------------------------------------------------------------------------- frame offsets


def _frames_at(path: str, times: Sequence[float], fps: float, width: int = 160) -> list[np.ndarray]:
    """The source frames shown at ``times`` (consecutive, ``1 / fps`` apart), as small grey frames."""
    if not times:
        return []
    frames = []
    for _t, f in media.iter_frames(path, fps=fps, width=width, skip_bidir=False, start=times[0], duration=(len(times) + 0.5) / fps):
        frames.append(f.astype(np.int16))
        if len(frames) >= len(times):
            break
    return frames


def _last_frame(path: str, size: tuple[int, int], fps: float) -> np.ndarray | None:
    """The last frame of ``path`` scaled to ``size`` (w, h) the way :func:`ace.media.iter_frames`
    scales, decoded without a frame-rate filter (which drops a file's final frame)."""
    w, h = size
    start = max(0.0, media.probe(path).duration - max(1.0, 4.0 / fps))
    cmd = [
        media.ffmpeg_binary(), "-nostdin", "-v", "error", "-ss", f"{start:.6f}", "-i", "file:" + str(Path(path).resolve()),
        "-map", "0:v:0", "-vf", f"scale={w}:{h}:flags=area,format=gray", "-vsync", "passthrough", "-f", "rawvideo", "pipe:",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("reading the last frame of %s failed: %s", path, exc)
        return None
    n = len(proc.stdout) // (w * h)
    if proc.returncode != 0 or n == 0:
        log.warning("reading the last frame of %s failed: %s", path, proc.stderr.decode(errors="replace")[-300:])
        return None
    return np.frombuffer(proc.stdout[(n - 1) * w * h : n * w * h], dtype=np.uint8).reshape(h, w).astype(np.int16)


def _best_offset(target: np.ndarray | None, cands: Sequence[np.ndarray], offsets: Sequence[int]) -> tuple[int | None, bool]:
    """The offset of the candidate frame most like ``target``, and whether that is ambiguous.

    Candidates within :data:`TIE_RATIO` and :data:`TIE_GREY` of the best cannot be told apart; among
    those the offset nearest 0 is taken and the result marked ambiguous."""
    if target is None or not cands:
        return None, False
    errs = [float(np.mean(np.abs(target - c))) if c.shape == target.shape else math.inf for c in cands]
    best = min(errs)
    if not math.isfinite(best):
        return None, False
    ties = [o for o, e in zip(offsets, errs) if e <= best * TIE_RATIO + TIE_GREY]
    return min(ties, key=abs), len(ties) > 1


def frame_offsets(src: str, clip: str, start: float, end: float, fps: float, probe: int = 3) -> dict:
    """How many frames an exact clip's first and last frames are from the planned ``[start, end]``.

    The method of :func:`ace.bench.edge_offsets`: the clip's first (last) frame is compared with
    the source frames around the one the plan asks for — the frame nearest ``start`` (the frame
    before the frame boundary nearest ``end``) — and the offset is that of the most alike. Three
    differences make it hold at every edge: source frames are sampled at the middle of each frame
    interval (a sample on a frame boundary can show either neighbour), the candidates stay aligned
    when the plan starts within ``probe`` frames of the beginning, and the clip's last frame is
    decoded without a frame-rate filter (which drops the final frame unless the clip's length is a
    whole number of frames). Where several source frames match about equally well (see
    :data:`TIE_RATIO`), the offset nearest 0 among them is reported and the edge marked ambiguous.

    Returns ``{"first", "last", "first_ambiguous", "last_ambiguous"}``; an offset is None when the
    frames could not be read. Assumes frames at multiples of ``1 / fps`` from the file's beginning.
    """
    clip_first = _frames_at(clip, [0.5 / fps], fps)
    first_frame = clip_first[0] if clip_first else None
    last_frame = _last_frame(clip, (first_frame.shape[1], first_frame.shape[0]), fps) if first_frame is not None else None
    out: dict = {}
    for name, target, k in (("first", first_frame, round(start * fps)), ("last", last_frame, round(end * fps) - 1)):
        lo = max(0, k - probe)
        idx = list(range(lo, k + probe + 1))
        cands = _frames_at(src, [(i + 0.5) / fps for i in idx], fps)
        offset, ambiguous = _best_offset(target, cands, [i - k for i in idx[: len(cands)]])
        out[name], out[f"{name}_ambiguous"] = offset, ambiguous
    return out


# ----------------------------------------------------------------------------------------------- report


def summarise(rows: Sequence[dict]) -> dict:
    """Counts over clip rows: ``clips``, ``inside_word``, ``inside_word_share``, ``cut``,
    ``cut_failed``, ``max_edge_error_frames`` (None when nothing was measured), ``ambiguous_edges``,
    ``inside_true_sentence`` (None without ground truth) and ``targets_met`` (None without clips;
    a failed cut or an unreadable edge misses the targets)."""
    n = len(rows)
    inside = sum(1 for r in rows if r["inside_word"])
    cut = [r for r in rows if r.get("cut")]
    failed = sum(1 for r in cut if r.get("error"))
    errs = [r.get("edge_error_frames") for r in cut if not r.get("error")]
    measured = [e for e in errs if e is not None]
    true_checked = [r["inside_true_sentence"] for r in rows if "inside_true_sentence" in r]
    max_err = max(measured) if measured else None
    met = None
    if n:
        met = inside == 0 and failed == 0 and len(measured) == len(errs) and (max_err is None or max_err <= MAX_EDGE_FRAMES)
    return {
        "clips": n,
        "inside_word": inside,
        "inside_word_share": round(inside / n, 4) if n else None,
        "cut": len(cut),
        "cut_failed": failed,
        "max_edge_error_frames": max_err,
        "ambiguous_edges": sum(int(r.get("first_ambiguous", False)) + int(r.get("last_ambiguous", False)) for r in cut),
        "inside_true_sentence": sum(true_checked) if true_checked else None,
        "targets_met": met,
    }


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)``."""
    if k <= 0 or n <= 0:
        return []
    if k >= n:
        return list(range(n))
    if k == 1:
        return [n // 2]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _true_sentences(video: Path) -> list[Word] | None:
    """The voiced spans of the sentences in ``<stem>.truth.json`` beside ``video`` (as words)."""
    path = video.with_name(video.stem + ".truth.json")
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
        return [Word(float(s["start"]), float(s["end"]), str(s.get("text", ""))) for s in truth["sentences"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _clip_row(kind: str, evidence: float, plan: ClipPlan, words: Sequence[Word], truth: Sequence[Word] | None, tol: float) -> dict:
    offenders = edge_offenders(plan.start, plan.end, words, tol)
    row = {
        "set": kind,
        "id": plan.moment_id,
        "start": round(plan.start, 3),
        "end": round(plan.end, 3),
        "evidence": round(evidence, 3),
        "inside_word": bool(offenders),
        "offenders": offenders,
        "cut": False,
    }
    if truth is not None:
        hits = edge_offenders(plan.start, plan.end, truth, tol)
        row["inside_true_sentence"] = bool(hits)
        row["true_sentence_offenders"] = hits
    return row


def _cut_and_measure(src: str, fps: float, plan: ClipPlan, row: dict, folder: Path, words: Sequence[Word], tol: float) -> None:
    """Cut ``plan`` exactly into ``folder``, check the cut's own edges against ``words`` and measure
    its frame offsets, filling in ``row``."""
    dst = folder / f"{row['set']}-{plan.moment_id}.mp4"
    row["cut"] = True
    row["edge_error_frames"] = None
    t0 = time.perf_counter()
    try:
        a, b = media.cut_exact(src, plan.start, plan.end, dst)
    except AceError as exc:
        log.warning("exact cut of %s %.3f-%.3f failed: %s", src, plan.start, plan.end, exc)
        row["error"] = str(exc)
        return
    row["cut_seconds"] = round(time.perf_counter() - t0, 2)
    row["cut_start"], row["cut_end"] = round(a, 3), round(b, 3)
    row["path"] = str(dst)
    cut_off = edge_offenders(a, b, words, tol, label="cut")
    if cut_off:
        row["offenders"] = row["offenders"] + cut_off
        row["inside_word"] = True
    try:
        off = frame_offsets(src, str(dst), plan.start, plan.end, fps)
    except AceError as exc:
        log.warning("measuring the edges of %s failed: %s", dst, exc)
        row["measure_error"] = str(exc)
        return
    row["first_offset_frames"], row["last_offset_frames"] = off["first"], off["last"]
    row["first_ambiguous"], row["last_ambiguous"] = off["first_ambiguous"], off["last_ambiguous"]
    if off["first"] is not None and off["last"] is not None:
        row["edge_error_frames"] = max(abs(off["first"]), abs(off["last"]))


def evaluate_video(
    path: str | os.PathLike,
    pipeline,
    out_dir: str | os.PathLike,
    events_path: str | os.PathLike | None = None,
    name: str | None = None,
    max_cuts: int = 6,
    probe_step: float = 10.0,
    tol: float = WORD_TOLERANCE,
) -> dict:
    """Boundary checks on one video (see the module docstring); exact cuts go to ``out_dir/<name>/``.

    ``pipeline`` is a :class:`~ace.pipeline.ShowPipeline` (its settings give the fusion options). At
    most ``max_cuts`` clips are cut: up to half of them from the found moments, the rest from the
    probes, spread evenly over the show. Returns ``{"name"/"video", "path", "duration", "fps",
    "codec", "words", "scene_cuts", "moments": {summary + rows}, "probes": {summary + rows},
    "summary", "seconds"}`` with the main figures of ``summary`` (``clips``, ``inside_word``,
    ``inside_word_share``, ``max_edge_error_frames``, ``targets_met``) repeated at the top.
    """
    from ace.pipeline import fusion_options

    t0 = time.perf_counter()
    path = str(path)
    name = name or Path(path).stem
    analysis = pipeline.analyse(path, events_path)
    info = analysis.info
    words = sorted((w for s in analysis.sentences for w in s.words), key=lambda w: w.start)
    truth = _true_sentences(Path(path))
    options = fusion_options(pipeline.settings)
    found = [(m.peak, m) for m in analysis.moments]
    probes = probe_moments(analysis.show_id, info.duration, analysis.sentences, analysis.cuts, options, probe_step)

    rows: dict[str, list[tuple[ClipPlan, dict]]] = {"moments": [], "probes": []}
    for kind, items in (("moments", found), ("probes", probes)):
        for evidence, m in items:
            try:
                plan = plan_clip(m, "exact", info)
            except ValueError as exc:
                log.warning("%s: cannot plan %s: %s", name, m.id, exc)
                continue
            rows[kind].append((plan, _clip_row(kind, evidence, plan, words, truth, tol)))

    k_moments = min(len(rows["moments"]), math.ceil(max_cuts / 2))
    k_probes = min(len(rows["probes"]), max_cuts - k_moments)
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    for kind, k in (("moments", k_moments), ("probes", k_probes)):
        for i in _pick(len(rows[kind]), k):
            plan, row = rows[kind][i]
            _cut_and_measure(path, info.fps or 30.0, plan, row, folder, words, tol)

    report: dict = {
        "name": name,
        "video": name,
        "path": path,
        "duration": round(info.duration, 3),
        "fps": info.fps,
        "codec": info.video_codec,
        "words": len(words),
        "scene_cuts": len(analysis.cuts),
    }
    for kind in ("moments", "probes"):
        kind_rows = [r for _p, r in rows[kind]]
        report[kind] = summarise(kind_rows) | {"rows": kind_rows}
    report["summary"] = summarise([r for kind in ("moments", "probes") for _p, r in rows[kind]])
    report.update({k: report["summary"][k] for k in ("clips", "inside_word", "inside_word_share", "max_edge_error_frames", "targets_met")})
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if not words:
        log.warning("%s: the transcript has no words, so no edge can fall inside one", name)
    s = report["summary"]
    log.info("%s: %d clips, %d inside a word, %d cut, max edge error %s frames",
             name, s["clips"], s["inside_word"], s["cut"], s["max_edge_error_frames"])
    return report


def _sample_events(video: Path) -> Path | None:
    for ext in (".events.jsonl", ".events.json", ".events.xml"):
        p = video.with_name(video.stem + ext)
        if p.is_file():
            return p
    return None


def evaluate_boundaries(
    data_dir: str | os.PathLike,
    sample_show: Path | None = None,
    settings: Settings | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    include_sample_show: bool = True,
    pipeline=None,
    max_cuts: int = 6,
    probe_step: float = 10.0,
) -> dict:
    """Boundary checks on the film clip of ``data_dir`` and on the sample show.

    ``sample_show`` is the sample show's video (its events are read from ``<stem>.events.jsonl``
    and its truth from ``<stem>.truth.json`` beside it when present); by default the one
    ``ace demo`` makes under ``settings.data_dir / "samples"`` (reused when it exists, generated
    once otherwise, which takes minutes). ``include_sample_show=False`` checks the film clip only.
    Clips go to ``out_dir`` (kept), else to a temporary folder (removed). ``pipeline`` may pass a
    loaded :class:`~ace.pipeline.ShowPipeline` (default: one for ``settings``).

    Returns ``{"videos": [reports of evaluate_video], "skipped": [reasons], "model", "summary"}``
    (a video that could not be analysed is listed in ``skipped`` too) where ``summary``, over every
    clip of every video, holds ``clips``, ``inside_word``, ``inside_word_share``,
    ``max_edge_error_frames`` and ``targets_met`` (plus ``cut``, ``cut_failed``, ``ambiguous_edges``
    and ``inside_true_sentence``). Raises :class:`~ace.errors.InputError` when neither video is
    available.
    """
    from ace.pipeline import ShowPipeline

    settings = settings or (pipeline.settings if pipeline is not None else get_settings())
    pipeline = pipeline or ShowPipeline(settings)
    videos: list[tuple[str, Path, Path | None]] = []
    skipped: list[str] = []
    tears = Path(data_dir) / TEARS_VIDEO
    if tears.is_file():
        videos.append(("tears-of-steel", tears, None))
    else:
        skipped.append(f"{tears} not found")
    if include_sample_show:
        if sample_show is None:
            from samples.show import make_sample_show

            show = make_sample_show(settings.data_dir / "samples")
            videos.append(("sample-show", Path(show.video), Path(show.events)))
        elif Path(sample_show).is_file():
            videos.append(("sample-show", Path(sample_show), _sample_events(Path(sample_show))))
        else:
            skipped.append(f"sample show {sample_show} not found")
    if not videos:
        raise InputError("boundary evaluation found no video: " + "; ".join(skipped))

    reports = []
    with tempfile.TemporaryDirectory(prefix="ace-eval-boundaries-") as tmp:
        root = Path(out_dir) if out_dir is not None else Path(tmp)
        for name, video, events in videos:
            try:
                reports.append(evaluate_video(video, pipeline, root, events, name=name, max_cuts=max_cuts, probe_step=probe_step))
            except AceError as exc:  # a broken video must not hide the other's numbers
                log.warning("boundary evaluation of %s failed: %s", video, exc)
                skipped.append(f"{name}: {exc}")
    if out_dir is None:  # the clips went with the temporary folder
        for r in reports:
            for kind in ("moments", "probes"):
                for row in r[kind]["rows"]:
                    row.pop("path", None)
    summary = summarise([row for r in reports for kind in ("moments", "probes") for row in r[kind]["rows"]])
    keys = ("clips", "inside_word", "inside_word_share", "max_edge_error_frames", "targets_met",
            "cut", "cut_failed", "ambiguous_edges", "inside_true_sentence")
    return {"videos": reports, "skipped": skipped, "model": settings.model, "summary": {k: summary[k] for k in keys}}
