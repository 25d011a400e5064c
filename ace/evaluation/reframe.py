"""``ace eval --parts reframe``: how well vertical clips keep their subject in frame, how still the
crop holds, and what reframing costs over a plain exact cut.

Three videos:

* the project's own test video (:mod:`samples.subjects`): a real face photograph moving across a
  16:9 frame, with two cuts and a two-subject shot; the face's true box is known on every frame;
* ``video/friday.mp4`` (640x480, two people talking) and ``video/tears-of-steel-battle-clip-medium.webm``
  (800x332, fast cuts, few faces) from the evaluation data: there is no ground truth for them, so
  the subject is what the face detector finds on *every* tenth of a second (the planner only sees
  a sample every quarter second) — a check that the camera keeps up with what it is told, not of
  the detector.

For each: the share of frames whose subject box lies wholly inside the crop (a shot shown fitted
counts as inside: the whole frame is visible), the crop's jitter (mean absolute movement from frame
to frame, pixels; on the test video over its still spans), and the time of ``render_clip`` in
vertical format (+ burned captions) against the same clip cut plainly (an exact cut copies the
whole GOPs inside it) and against a plain re-encode of every frame, measured side by side.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ace.reframe.detect import DETECT_WIDTH, Box, find_faces, scan
from ace.reframe.path import inside_share, jitter, plan_crop

#: Real recordings measured, under the evaluation data's ``video/`` folder.
REAL_VIDEOS = ("friday.mp4", "tears-of-steel-battle-clip-medium.webm")
#: Samples per second of the detector's own boxes used as the subject on real recordings.
TRUTH_FPS = 10.0


def _timed_cuts(path: str, out: Path, start: float, end: float, repeats: int = 2) -> dict[str, Any]:
    """Seconds for a plain exact cut, a vertical one and a vertical one with burned captions of
    ``[start, end]``, interleaved and repeated (the minimum of each is kept)."""
    from ace import media
    from ace.clipper import render_clip
    from ace.types import ClipPlan, Sentence, Word

    words = [Word(start + 0.5 + 0.4 * i, start + 0.85 + 0.4 * i, w)
             for i, w in enumerate("here is the deal of the day only for the next ten minutes".split())]
    sentences = [Sentence(words[0].start, words[-1].end, " ".join(w.text for w in words), words=words)]
    plan = ClipPlan("timing", start, end, "exact")
    best = {"exact": float("inf"), "reencode": float("inf"), "vertical": float("inf"), "vertical_captions": float("inf")}
    for _ in range(repeats):
        for key, fmt, burn in (("exact", "source", False), ("reencode", None, False), ("vertical", "vertical", False),
                               ("vertical_captions", "vertical", True)):
            t0 = time.perf_counter()
            if fmt is None:  # every frame re-encoded, nothing else: what any change of the picture costs
                subprocess.run([media.ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-ss", f"{start:.6f}", "-i", path,
                                "-t", f"{end - start:.6f}", "-c:v", "libx264", "-preset", media.EXACT_PRESET, "-crf", "20",
                                "-c:a", "aac", str(out / "reencode.mp4")], check=True, capture_output=True)
            else:
                render_clip(path, plan, out, sentences, fmt=fmt, burn_captions=burn, name=key)
            best[key] = min(best[key], time.perf_counter() - t0)
    return {"clip_s": round(end - start, 2), "exact_s": round(best["exact"], 3), "reencode_s": round(best["reencode"], 3),
            "vertical_over_reencode": round(best["vertical"] / best["reencode"], 2),
            "vertical_s": round(best["vertical"], 3),
            "vertical_captions_s": round(best["vertical_captions"], 3),
            "vertical_over_exact": round(best["vertical"] / best["exact"], 2),
            "vertical_captions_over_exact": round(best["vertical_captions"] / best["exact"], 2)}


def _detector_truth(path: str, width: int) -> list[tuple[float, Box]]:
    """The detector's widest face on each frame sampled at :data:`TRUTH_FPS` (frames without a face
    are left out)."""
    from ace import media

    out = []
    for t, frame in media.iter_frames(path, fps=TRUTH_FPS, width=min(DETECT_WIDTH, width - width % 2)):
        boxes = find_faces(frame, width / frame.shape[1])
        if boxes:
            out.append((t, max(boxes, key=lambda b: b.width)))
    return out


def _measure(path: str, truth: list[tuple[float, Box]], still: list[tuple[float, float]] | None) -> dict[str, Any]:
    """The figures of both formats; ``_plans`` holds the plans (taken out before the report)."""
    sc = scan(path)
    out: dict[str, Any] = {"scan_s": round(sc.seconds, 2), "cuts": sc.cuts, "_plans": {}}
    for fmt in ("vertical", "square"):
        plan = out["_plans"][fmt] = plan_crop(sc, fmt)
        fitted = sum(b - a for a, b in plan.fit)
        out[fmt] = {"crop": f"{plan.crop_w}x{plan.crop_h}", "output": f"{plan.out_w}x{plan.out_h}",
                    "inside": round(inside_share(plan, truth), 4), "frames": len(truth),
                    "jitter_px": round(jitter(plan), 3),
                    "jitter_still_px": round(jitter(plan, still), 3) if still else None,
                    "fitted_share": round(fitted / max(sc.duration, 1e-9), 3),
                    "shots": [[round(a, 2), round(b, 2), m] for a, b, m in plan.shots]}
    return out


def evaluate_reframe(eval_data: Path | None, work_dir: Path, progress: Callable[[str], None] | None = None,
                     timing: bool = True) -> dict[str, Any]:
    """The reframing report (see the module docstring). ``eval_data`` may be None or missing: the
    test video is measured alone then."""
    from ace import media
    from samples.subjects import make_subject_video

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    videos: list[dict[str, Any]] = []

    if progress:
        progress("reframe: the test video")
    test = work_dir / "reframe-subjects.mp4"
    truth = make_subject_video(test)
    gt: list[tuple[float, Box]] = []
    for i, boxes in enumerate(truth.boxes):
        t = i / truth.fps
        if len(boxes) == 1:
            gt.append((t, Box(*boxes[0])))
    row = {"video": "test video (project-made)", "width": truth.width, "height": truth.height,
           "duration": truth.duration, "subject": "true face box"}
    row |= _measure(str(test), gt, truth.still)
    sc_cuts = row["cuts"]
    row["cut_error_frames"] = max((min(abs(c - t) for c in sc_cuts) * truth.fps for t in truth.cuts), default=0.0) \
        if sc_cuts else None
    two = [(a, b) for a, b in truth.two_subjects]
    plan = row.pop("_plans")["vertical"]  # the scan measured above, not a second one
    n_two = sum(1 for i in range(len(truth.boxes)) if any(a <= i / truth.fps < b for a, b in two))
    row["two_subject_fitted"] = round(sum(1 for i in range(len(truth.boxes))
                                          if any(a <= i / truth.fps < b for a, b in two) and plan.fitted_at(i / truth.fps))
                                      / max(n_two, 1), 3)
    if timing:
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            row["timing"] = _timed_cuts(str(test), Path(tmp), 0.0, min(20.0, truth.duration))
    videos.append(row)

    data = Path(eval_data) if eval_data else None
    skipped = None
    if data is None or not (data / "video").is_dir():
        skipped = f"no evaluation data at {data} (set ACE_EVAL_DATA)"
    else:
        for name in REAL_VIDEOS:
            path = data / "video" / name
            if not path.is_file():
                continue
            if progress:
                progress(f"reframe: {name}")
            info = media.probe(path)
            truth_r = _detector_truth(str(path), info.width)
            row = {"video": name, "width": info.width, "height": info.height, "duration": round(info.duration, 2),
                   "subject": f"detector's faces at {TRUTH_FPS:g} fps"}
            row |= _measure(str(path), truth_r, None)
            row.pop("_plans")
            if timing:
                with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
                    row["timing"] = _timed_cuts(str(path), Path(tmp), 0.0, min(30.0, info.duration))
            videos.append(row)

    inside = [v["vertical"]["inside"] for v in videos if v["vertical"]["frames"]]
    ratios = [v["timing"]["vertical_over_exact"] for v in videos if "timing" in v]
    ratios_c = [v["timing"]["vertical_captions_over_exact"] for v in videos if "timing" in v]
    summary = {
        "min_inside": min(inside) if inside else None,
        "test_inside": videos[0]["vertical"]["inside"],
        "test_jitter_still_px": videos[0]["vertical"]["jitter_still_px"],
        "max_jitter_px": max(v["vertical"]["jitter_px"] for v in videos),
        "test_two_subject_fitted": videos[0]["two_subject_fitted"],
        "test_cut_error_frames": videos[0]["cut_error_frames"],
        "max_vertical_over_exact": max(ratios) if ratios else None,
        "median_vertical_over_exact": round(statistics.median(ratios), 2) if ratios else None,
        "max_vertical_captions_over_exact": max(ratios_c) if ratios_c else None,
        "max_vertical_over_reencode": max((v["timing"]["vertical_over_reencode"] for v in videos if "timing" in v),
                                          default=None),
    }
    out: dict[str, Any] = {"videos": videos, "summary": summary}
    if skipped:
        out["skipped_real"] = skipped
    return out
