"""Scene cuts: ACE's visual detector against hand-checked cut frames, next to PySceneDetect.

Ground truth is a ``*.cuts.json`` file beside its video::

    {"video": "bikes.mp4", "fps": 25, "cut_frames": [30, 76, 137, 187, 242]}

A cut is numbered by the **first frame of the new shot** (frame ``n`` differs sharply from frame
``n - 1``), counting the video's frames from 0; PySceneDetect numbers its scene starts the same way.

Every detector runs on every frame of the video at its native rate:

* ``ace`` — :class:`~ace.signals.visual.VisualDetector` with its default options, fed the pipeline's
  own low-resolution grey analysis frames (:func:`ace.media.iter_frames`, width 160) at the source
  frame rate, so no frame is skipped; the decoder may use every core, as OpenCV's does for
  PySceneDetect (the pipeline gives it one thread, since speech recognition runs beside it);
* ``pyscenedetect-content`` / ``pyscenedetect-adaptive`` — PySceneDetect's ``ContentDetector`` and
  ``AdaptiveDetector`` with default settings, its OpenCV backend and its automatic downscaling.

Found cuts are matched one-to-one to true cuts within ±``tolerance`` frames (:func:`match_cuts`).
Each detector's ``seconds`` is wall-clock time for the whole run, opening and decoding the video
included (for ACE also the ffprobe run that reads the frame rate), and ``fps`` is frames processed
per wall second. The summary's ``ace_fps`` / ``best_reference_fps`` are over every video in the
folder — the cut files and, speed only, the videos without one (:func:`speed_file`) — since one 10 s
clip mostly measures start-up. The video is read once before the timed runs, so that none of them pays for a cold
disk cache, and with ``repeats`` > 1 each detector's fastest run counts.

On a short clip ACE's fixed start-up cost weighs heavily: it decodes in an ffmpeg process, and two
ffprobe runs (the frame rate here, the stream layout inside :func:`~ace.media.iter_frames`) and one
ffmpeg start cost about 0.1 s each on two shared cores before the first frame arrives, where
PySceneDetect opens the file in-process. Past that, ACE's frames come faster (about 2,000 frames per
second at 320x180, 900 at 640x272, on the same machine), so its ``fps`` grows with the clip's length.

PySceneDetect is an optional dependency (``pip install 'ace[eval]'``); without it the reference rows
carry an ``error`` instead of numbers.

>>> from ace.evaluation.scenes import evaluate_scenes
>>> report = evaluate_scenes(Path("../shared/data"))          # doctest: +SKIP
>>> report["summary"]["ace_f1"], report["summary"]["target_met"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ace.errors import InputError
from ace.media import iter_frames, probe
from ace.signals.visual import VisualDetector

log = logging.getLogger("ace.evaluation.scenes")

__all__ = [
    "find_cut_files",
    "match_cuts",
    "ace_cuts",
    "pyscenedetect_cuts",
    "evaluate_scenes",
    "evaluate_file",
    "summarise",
    "ACE_WIDTH",
    "REFERENCE_DETECTORS",
    "SCENEDETECT_MISSING",
]

#: Width of ACE's grey analysis frames here: the pipeline's own analysis width.
ACE_WIDTH = 160

#: Reference rows: report name -> ``pyscenedetect_cuts`` detector name.
REFERENCE_DETECTORS: dict[str, str] = {
    "pyscenedetect-content": "content",
    "pyscenedetect-adaptive": "adaptive",
}

#: The error a reference row carries when PySceneDetect is not installed.
SCENEDETECT_MISSING = "scenedetect is not installed (pip install 'ace[eval]')"

_CUTS_SUFFIX = ".cuts.json"


# ------------------------------------------------------------------------------------------- truth files


def find_cut_files(data_dir: Path) -> list[tuple[Path, Path]]:
    """Every ``*.cuts.json`` under ``data_dir`` (recursively, sorted) paired with its video.

    The video is the json's ``"video"`` field, relative to the json's folder. A pair whose video is
    missing, or whose json cannot be read or names no video, is skipped with a warning.
    """
    data_dir = Path(data_dir)
    pairs: list[tuple[Path, Path]] = []
    if not data_dir.is_dir():
        return pairs
    for cuts in sorted(data_dir.rglob("*" + _CUTS_SUFFIX)):
        try:
            name = json.loads(cuts.read_text(encoding="utf-8")).get("video")
        except (OSError, ValueError, AttributeError) as e:
            log.warning("skipping %s: not a readable cuts file (%s)", cuts, e)
            continue
        if not isinstance(name, str) or not name:
            log.warning("skipping %s: no \"video\" field", cuts)
            continue
        video = cuts.parent / name
        if not video.is_file():
            log.warning("skipping %s: its video %s is missing", cuts, video)
            continue
        pairs.append((cuts, video))
    return pairs


def _read_truth(cuts_file: Path) -> tuple[list[int], float | None]:
    data = json.loads(Path(cuts_file).read_text(encoding="utf-8"))
    frames = sorted(int(f) for f in data.get("cut_frames", []))
    fps = data.get("fps")
    return frames, (float(fps) if fps else None)


# ------------------------------------------------------------------------------------------------ scoring


def match_cuts(found: Sequence[int], truth: Sequence[int], tolerance: int = 2) -> dict[str, Any]:
    """Precision, recall and F1 of ``found`` cut frames against ``truth`` cut frames.

    A found cut matches a true cut at most ``tolerance`` frames away; each cut on either side is
    matched at most once (a second detection of the same cut is a false positive). The matching is
    a maximum one: true cuts in order each take the earliest unmatched found cut in reach, which is
    optimal for equal-width windows on a line.

    Edge cases follow :func:`ace.evaluate.compare_with_truth`: recall is 1.0 when there is no true
    cut; precision is 1.0 when nothing is found *and* there is nothing to find, 0.0 when nothing is
    found but there were cuts; F1 is 0.0 when precision and recall are both 0.

    Returns ``{"tp", "fp", "fn", "precision", "recall", "f1"}``.
    """
    if tolerance < 0:
        raise InputError(f"tolerance must be at least 0 frames, got {tolerance}")
    f = sorted(int(x) for x in found)
    t = sorted(int(x) for x in truth)
    used = [False] * len(f)
    tp = 0
    lo = 0  # found cuts before f[lo] are too early for every later true cut
    for cut in t:
        while lo < len(f) and f[lo] < cut - tolerance:
            lo += 1
        j = lo
        while j < len(f) and f[j] <= cut + tolerance:
            if not used[j]:
                used[j] = True
                tp += 1
                break
            j += 1
    fp = len(f) - tp
    fn = len(t) - tp
    precision = tp / len(f) if f else (1.0 if not t else 0.0)
    recall = tp / len(t) if t else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


# ---------------------------------------------------------------------------------------------- detectors


def ace_cuts(video: Path, width: int = ACE_WIDTH) -> tuple[list[int], int, float]:
    """ACE's :class:`~ace.signals.visual.VisualDetector` on every frame of ``video``.

    The frame rate comes from :func:`ace.media.probe`; frames are the pipeline's grey analysis frames
    (:func:`ace.media.iter_frames`) at that rate, which decodes every frame. Returns (cut frame
    numbers — the first frame of each new shot —, frames processed, wall seconds including the probe
    and the decoding).
    """
    t0 = time.perf_counter()
    fps = probe(video).fps
    if not fps or fps <= 0:
        raise InputError(f"cannot tell the frame rate of {video}")
    det = VisualDetector(fps=fps)
    n = 0
    for t, frame in iter_frames(video, fps=fps, width=width, threads=0):
        det.process_frame(t, frame)
        n += 1
    det.flush()
    seconds = time.perf_counter() - t0
    cuts = [int(round(c * fps)) for c in det.cuts]
    log.debug("ace: %d cuts in %d frames of %s, %.3f s", len(cuts), n, video, seconds)
    return cuts, n, seconds


def _frame_number(tc: Any) -> int:
    """A PySceneDetect ``FrameTimecode``'s frame number (0.7: ``frame_num``; 0.6 also has it)."""
    num = getattr(tc, "frame_num", None)
    return int(num) if num is not None else int(tc.get_frames())


def pyscenedetect_cuts(video: Path, detector: str) -> tuple[list[int], int, float]:
    """PySceneDetect's ``ContentDetector`` (``detector="content"``) or ``AdaptiveDetector``
    (``"adaptive"``), default settings, on every frame of ``video``.

    Uses its OpenCV backend and default automatic downscaling. Returns (cut frame numbers — the
    first frame of each new scene —, frames processed, wall seconds including its decoding).
    ImportError when scenedetect is not installed; ValueError for an unknown detector.
    """
    if detector not in ("content", "adaptive"):
        raise ValueError(f"unknown PySceneDetect detector {detector!r}; choose content or adaptive")
    import scenedetect  # optional dependency: ImportError is the caller's to report

    t0 = time.perf_counter()
    stream = scenedetect.open_video(str(video))
    manager = scenedetect.SceneManager()
    manager.add_detector(scenedetect.ContentDetector() if detector == "content" else scenedetect.AdaptiveDetector())
    n = int(manager.detect_scenes(video=stream))
    scenes = manager.get_scene_list()
    seconds = time.perf_counter() - t0
    # scenes are (start, end) pairs from the first frame on: every start but the first is a cut
    cuts = [_frame_number(start) for start, _end in scenes[1:]]
    log.debug("pyscenedetect-%s: %d cuts in %d frames of %s, %.3f s", detector, len(cuts), n, video, seconds)
    return cuts, n, seconds


# --------------------------------------------------------------------------------------------- evaluation


def _row(cuts: list[int], frames: int, seconds: float, truth: list[int], tolerance: int) -> dict[str, Any]:
    row: dict[str, Any] = match_cuts(cuts, truth, tolerance)
    row["cuts"] = cuts
    row["frames"] = frames
    row["seconds"] = round(seconds, 4)
    row["fps"] = round(frames / seconds, 1) if seconds > 0 else None
    return row


def _scenedetect_available() -> bool:
    try:
        import scenedetect  # noqa: F401
    except ImportError:
        return False
    return True


def _warm(path: Path) -> None:
    """Read a file once so that every timed run finds it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 20):
            pass


def _fastest(run: Callable[[], tuple[list[int], int, float]], repeats: int) -> tuple[list[int], int, float]:
    """The result of ``run`` with the lowest wall time over ``repeats`` runs."""
    best = run()
    for _ in range(repeats - 1):
        again = run()
        if again[2] < best[2]:
            best = again
    return best


def evaluate_file(cuts_file: Path, video: Path, tolerance: int = 2, repeats: int = 1) -> dict[str, Any]:
    """One cut file: ACE and the PySceneDetect references on its video, each scored against it.

    A detector that fails reports ``{"error": ...}`` in its place; the others still run.
    """
    truth, truth_fps = _read_truth(cuts_file)
    _warm(video)
    row: dict[str, Any] = {"file": video.name, "cuts_file": cuts_file.name, "fps": truth_fps, "frames": None,
                           "truth": truth, "detectors": {}}
    try:  # outside the timed runs: the source rate is for the report and the sanity check
        src_fps = probe(video).fps
    except Exception as e:  # ace_cuts reports an unreadable video below
        log.debug("probe of %s failed: %s", video, e)
        src_fps = None
    if src_fps:
        if truth_fps and abs(src_fps - truth_fps) > 0.01:
            row["warning"] = f"{cuts_file.name} counts frames at {truth_fps:g} fps, the video runs at {src_fps:.3f}"
            log.warning("%s", row["warning"])
        row["fps"] = src_fps
    detectors: dict[str, Any] = row["detectors"]
    try:
        cuts, frames, seconds = _fastest(lambda: ace_cuts(video), repeats)
        detectors["ace"] = _row(cuts, frames, seconds, truth, tolerance)
        row["frames"] = frames
    except Exception as e:  # a broken video must not hide the other results
        log.warning("ace on %s failed: %s", video, e)
        detectors["ace"] = {"error": f"{type(e).__name__}: {e}"}
    have_scenedetect = _scenedetect_available()
    for name, kind in REFERENCE_DETECTORS.items():
        if not have_scenedetect:
            detectors[name] = {"error": SCENEDETECT_MISSING}
            continue
        try:
            cuts, frames, seconds = _fastest(lambda: pyscenedetect_cuts(video, kind), repeats)
            detectors[name] = _row(cuts, frames, seconds, truth, tolerance)
            if row["frames"] is None:
                row["frames"] = frames
        except Exception as e:
            log.warning("%s on %s failed: %s", name, video, e)
            detectors[name] = {"error": f"{type(e).__name__}: {e}"}
    return row


VIDEO_EXT = (".mp4", ".webm", ".mkv", ".mov", ".ts", ".flv", ".avi")


def speed_file(video: Path, repeats: int = 1) -> dict[str, Any]:
    """Speed only, for a video without a cut file: every detector's frames, seconds, fps and how
    many cuts it found (no truth to score them against)."""
    _warm(video)
    row: dict[str, Any] = {"file": video.name, "frames": None, "detectors": {}}
    runs: dict[str, Callable[[], tuple[list[int], int, float]]] = {"ace": lambda: ace_cuts(video)}
    if _scenedetect_available():
        for name, kind in REFERENCE_DETECTORS.items():
            runs[name] = lambda kind=kind: pyscenedetect_cuts(video, kind)
    for name, run in runs.items():
        try:
            cuts, frames, seconds = _fastest(run, repeats)
            row["detectors"][name] = {"cuts_found": len(cuts), "frames": frames, "seconds": round(seconds, 3),
                                      "fps": round(frames / seconds, 1) if seconds > 0 else None}
            row["frames"] = row["frames"] or frames
        except Exception as e:
            log.warning("%s on %s failed: %s", name, video, e)
            row["detectors"][name] = {"error": f"{type(e).__name__}: {e}"}
    return row


def _aggregate(files: list[dict[str, Any]], name: str, speed: list[dict[str, Any]] = ()) -> tuple[float | None, float | None]:
    """Mean F1 over the cut files and overall frames per second (all frames / all seconds, over
    the cut files and the ``speed`` files) of one detector; (None, None) when it failed on any file."""
    rows = [f["detectors"].get(name, {}) for f in files]
    if not rows or any("f1" not in r for r in rows):
        return None, None
    f1 = sum(r["f1"] for r in rows) / len(rows)
    timed = rows + [f["detectors"].get(name, {}) for f in speed]
    if any("seconds" not in r for r in timed):
        return f1, None
    seconds = sum(r["seconds"] for r in timed)
    fps = sum(r["frames"] for r in timed) / seconds if seconds > 0 else None
    return f1, (round(fps, 1) if fps is not None else None)


def summarise(files: list[dict[str, Any]], speed: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """ACE's mean F1 and overall fps, the best reference (highest mean F1; of equal F1 the faster,
    which is the harder one to beat), and whether ACE meets the target: F1 at least the best
    reference's, at a higher fps. ``target_met`` is None when it cannot be judged (no files, ACE or
    every reference failed)."""
    ace_f1, ace_fps = _aggregate(files, "ace", speed)
    best: tuple[str, float, float] | None = None
    for name in REFERENCE_DETECTORS:
        f1, fps = _aggregate(files, name, speed)
        if f1 is None or fps is None:
            continue
        if best is None or (f1, fps) > (best[1], best[2]):
            best = (name, f1, fps)
    target: bool | None = None
    if ace_f1 is not None and ace_fps is not None and best is not None:
        target = bool(ace_f1 >= best[1] - 1e-9 and ace_fps > best[2])
    return {
        "ace_f1": ace_f1,
        "best_reference": best[0] if best else None,
        "best_reference_f1": best[1] if best else None,
        "ace_fps": ace_fps,
        "best_reference_fps": best[2] if best else None,
        "target_met": target,
    }


def evaluate_scenes(data_dir: Path, tolerance: int = 2, repeats: int = 1) -> dict[str, Any]:
    """Score ACE's cut detection and the PySceneDetect references on every cut file under ``data_dir``.

    Returns ``{"files": [{"file", "fps", "frames", "truth", "detectors": {"ace": {...}, ...}}],
    "summary": {"ace_f1", "best_reference", "best_reference_f1", "ace_fps", "best_reference_fps",
    "target_met"}}``, each detector row being :func:`match_cuts`'s dict plus ``cuts``, ``frames``,
    ``seconds`` and ``fps`` (or ``{"error": ...}``); ``repeats`` runs of each detector, the fastest
    counting. With no cut file, ``files`` is empty, the summary
    values are None and ``note`` says why.
    """
    if tolerance < 0:
        raise InputError(f"tolerance must be at least 0 frames, got {tolerance}")
    if repeats < 1:
        raise InputError(f"repeats must be at least 1, got {repeats}")
    pairs = find_cut_files(Path(data_dir))
    files = [evaluate_file(cuts, video, tolerance, repeats) for cuts, video in pairs]
    with_truth = {video.resolve() for _, video in pairs}
    others = sorted(p for p in Path(data_dir).rglob("*") if p.suffix.lower() in VIDEO_EXT and p.is_file()
                    and p.resolve() not in with_truth) if files else []
    speed = [speed_file(v, repeats) for v in others]
    report: dict[str, Any] = {"files": files, "speed": speed, "summary": summarise(files, speed),
                              "tolerance": tolerance, "repeats": repeats}
    if not files:
        report["note"] = f"no *{_CUTS_SUFFIX} file with its video under {data_dir}"
    else:
        s = report["summary"]
        log.info("scenes: ace F1 %s at %s fps; best reference %s F1 %s at %s fps", _fmt(s["ace_f1"]),
                 s["ace_fps"], s["best_reference"], _fmt(s["best_reference_f1"]), s["best_reference_fps"])
    return report


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
