"""``ace eval``: every quality measurement over one data folder, one report, one table.

:func:`run_eval` runs the parts (speech, captions, scenes, boundaries, chat), each isolated — a part that
fails reports ``{"error": ...}`` and the others still run — and checks the report against two lists:

* :data:`TARGETS` — what ACE aims for (the issue's targets), reported as met or not;
* :data:`FLOORS` — loose lower bounds that CI enforces (``ace eval --check`` exits 1 when one is
  broken), so that a regression fails the build while machine noise does not.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ace.errors import InputError

log = logging.getLogger("ace.evaluation.suite")

PARTS = ("speech", "captions", "scenes", "boundaries", "chat", "products", "reframe")


def _get(report: dict, path: str) -> Any:
    cur: Any = report
    for key in path.split("/"):
        if isinstance(cur, list):
            cur = next((x for x in cur if isinstance(x, dict) and x.get("model") == key), None)
        elif isinstance(cur, dict):
            cur = cur.get(key)
        else:
            return None
        if cur is None:
            return None
    return cur


#: (report path, comparison, bound, what it means). Paths are "/"-separated; a step through the
#: list ``speech/models`` picks the model by name.
TARGETS: list[tuple[str, str, float, str]] = [
    ("speech/summary/max_live_penalty", "<=", 1.0, "live chunking costs at most 1 point of WER/CER over whole clips"),
    ("speech/summary/batched_differing_sets", "<=", 0, "batching live windows across streams changes no word"),
    ("scenes/summary/ace_f1_minus_best", ">=", 0.0, "ACE's cut F1 at least the best PySceneDetect detector's"),
    ("scenes/summary/ace_fps_over_best", ">", 1.0, "... at a higher frames-per-second"),
    ("boundaries/summary/inside_word", "<=", 0, "no clip starts or ends inside a spoken word"),
    ("boundaries/summary/max_edge_error_frames", "<=", 1, "exact cuts within one frame of the plan"),
    ("chat/summary/ace_second_f1", ">=", 0.40, "chat triage per-second F1 (leave one show out)"),
    ("chat/summary/ace_flagged_share", "<=", 0.20, "... with at most 20% of the timeline flagged"),
    ("chat/summary/ace_second_f1_minus_best_rule", ">", 0.0, "... above both simple rate rules"),
    ("chat/summary/ace_moment_f1", ">=", 0.55, "chat triage moment F1 (leave one show out)"),
    ("products/summary/min_show_recall", ">=", 0.9, "product segments found, each sample show (recall)"),
    ("products/summary/min_show_precision", ">=", 0.9, "... and right (precision)"),
    ("products/summary/max_start_error_med_s", "<=", 5.0, "product segment start error, median seconds"),
    ("products/summary/max_end_error_med_s", "<=", 5.0, "product segment end error, median seconds"),
    ("products/summary/ad_words_recall", ">=", 1.0, "planted ad-wording phrases flagged"),
    ("products/summary/min_ad_words_precision", ">=", 0.9, "... flags that were planted"),
    ("reframe/summary/min_inside", ">=", 0.95, "vertical crop keeps the subject's box inside, each video"),
    ("reframe/summary/test_jitter_still_px", "<=", 2.0, "crop jitter on a still subject, pixels per frame"),
    ("reframe/summary/max_vertical_over_exact", "<=", 2.0, "vertical clip time over a plain exact cut (CPU)"),
]

FLOORS: list[tuple[str, str, float, str]] = [
    ("speech/models/tiny.en/sets/en/whole", "<=", 0.15, "tiny.en WER on the English clips (measured 0.068)"),
    ("speech/models/base/sets/en/whole", "<=", 0.15, "base WER on the English clips (measured 0.060)"),
    ("speech/models/base/sets/zh/whole", "<=", 0.30, "base CER on the Mandarin clip (measured 0.077)"),
    # the target is 1 point; the same code measures 0.0-2.1 points on different CPUs (CTranslate2 runs
    # Intel MKL on Intel, oneDNN on AMD: one word more or less of ~120 is 0.9 points), so CI holds 3
    ("speech/summary/max_live_penalty", "<=", 3.0, "live chunking penalty, points (target 1; CPU backends differ by up to 2)"),
    ("speech/summary/batched_differing_sets", "<=", 0, "clip sets whose words change when live windows are batched"),
    ("captions/summary/matched_share", ">=", 0.6, "friday.vtt cues found in the transcript (tiny.en: 3 of 5)"),
    ("captions/summary/start_mae_s", "<=", 0.3, "caption start error, mean seconds (measured 0.11)"),
    ("captions/summary/end_mae_s", "<=", 0.3, "caption end error, mean seconds (measured 0.13)"),
    ("scenes/summary/ace_f1", ">=", 0.8, "ACE scene-cut F1 (±2 frames)"),
    ("boundaries/summary/inside_word", "<=", 0, "clips starting or ending inside a word"),
    ("boundaries/summary/max_edge_error_frames", "<=", 1, "exact-cut edge error, frames"),
    ("chat/summary/ace_second_f1", ">=", 0.33, "chat triage per-second F1, leave one out (target 0.40)"),
    ("chat/summary/ace_moment_f1", ">=", 0.45, "chat triage moment F1, leave one out (target 0.55)"),
    ("chat/summary/ace_second_f1_minus_chance", ">=", 0.1, "chat triage above chance (its own moments shifted in time)"),
    ("products/summary/recall", ">=", 0.75, "product segments found on the sample shows (target 0.9 each)"),
    ("products/summary/precision", ">=", 0.75, "product segments right on the sample shows (target 0.9 each)"),
    ("products/summary/ad_words_recall", ">=", 0.75, "planted ad-wording phrases flagged (target 1.0)"),
    ("reframe/summary/test_inside", ">=", 0.9, "test video: subject inside the vertical crop (target 0.95)"),
    ("reframe/summary/test_jitter_still_px", "<=", 2.0, "test video: crop jitter on a still subject, px"),
    ("reframe/summary/test_two_subject_fitted", ">=", 0.9, "test video: two far-apart subjects shown fitted"),
]


def _compare(value: Any, op: str, bound: float) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return {"<=": value <= bound, ">=": value >= bound, ">": value > bound, "<": value < bound}[op]


def check(report: dict, rules: Sequence[tuple[str, str, float, str]]) -> list[dict]:
    """Each rule with the report's value and whether it holds (``None`` when the value is absent,
    e.g. a model that is not installed)."""
    out = []
    for path, op, bound, what in rules:
        value = _get(report, path)
        out.append({"check": path, "rule": f"{op} {bound}", "value": value, "what": what,
                    "ok": None if value is None else _compare(value, op, bound)})
    return out


def _derive(report: dict) -> None:
    """Summary figures the rules read that the parts do not compute themselves."""
    sc = (report.get("scenes") or {}).get("summary") or {}
    if sc.get("ace_f1") is not None and sc.get("best_reference_f1") is not None:
        sc["ace_f1_minus_best"] = round(sc["ace_f1"] - sc["best_reference_f1"], 4)
    if sc.get("ace_fps") and sc.get("best_reference_fps"):
        sc["ace_fps_over_best"] = round(sc["ace_fps"] / sc["best_reference_fps"], 3)
    cap = (report.get("captions") or {}).get("summary") or {}
    if cap.get("cues"):
        cap["matched_share"] = round(cap.get("matched", 0) / cap["cues"], 3)


def run_eval(
    data_dir: str | Path,
    models: Sequence[str] | None = None,
    parts: Sequence[str] = PARTS,
    sample_show: str | Path | None = None,
    settings: Any = None,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run the chosen ``parts`` over ``data_dir`` and return one report (plain data, JSON-ready).

    Raises :class:`~ace.errors.InputError` when ``data_dir`` is missing or a part name is unknown."""
    data = Path(data_dir).expanduser()
    if not data.is_dir():
        raise InputError(f"no evaluation data at {data} (give --data DIR or set ACE_EVAL_DATA; "
                         "the folder holds speech/ and video/ with ground truth)")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise InputError(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    report: dict[str, Any] = {"data": str(data.resolve()), "seconds": {}}
    for part in PARTS:
        if part not in parts:
            continue
        if progress is not None:
            progress(f"{part} ...")
        t0 = time.perf_counter()
        try:
            report[part] = _run_part(part, data, models, sample_show, settings, out_dir)
        except Exception as e:  # one part failing must not hide the others
            log.exception("%s evaluation failed", part)
            report[part] = {"error": f"{type(e).__name__}: {e}"}
        report["seconds"][part] = round(time.perf_counter() - t0, 1)
    _derive(report)
    report["targets"] = check(report, TARGETS)
    report["floors"] = check(report, FLOORS)
    return report


def _run_part(part: str, data: Path, models, sample_show, settings, out_dir) -> dict:
    if part == "speech":
        from ace.evaluation.speech import evaluate_speech

        return evaluate_speech(data, models, settings)
    if part == "captions":
        from ace.evaluation.captions import evaluate_captions

        return evaluate_captions(data, settings=settings)
    if part == "scenes":
        from ace.evaluation.scenes import evaluate_scenes

        return evaluate_scenes(data)
    if part == "chat":
        from ace.evaluation.chat import evaluate_chat

        return evaluate_chat(data)
    if part == "products":
        from ace.config import get_settings
        from ace.evaluation.products import evaluate_products

        s = settings or get_settings()
        return evaluate_products(s, Path(out_dir) if out_dir else Path(s.data_dir) / "eval", eval_data=data)
    if part == "reframe":
        from ace.config import get_settings
        from ace.evaluation.reframe import evaluate_reframe

        s = settings or get_settings()
        return evaluate_reframe(data, Path(out_dir) if out_dir else Path(s.data_dir) / "eval")
    from ace.evaluation.boundaries import evaluate_boundaries

    return evaluate_boundaries(data, sample_show=Path(sample_show) if sample_show else None, settings=settings,
                               out_dir=Path(out_dir) if out_dir else None)


def broken_floors(report: dict) -> list[dict]:
    """Floors that a present value breaks (absent values — a model not installed — are not failures)."""
    return [f for f in report.get("floors", []) if f["ok"] is False]


# ------------------------------------------------------------------------------------------ table


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def tables(report: dict) -> list:
    """The report as rich tables (speech, captions, scenes, boundaries, chat, targets and floors)."""
    from rich.table import Table

    out = []
    sp = report.get("speech")
    if sp:
        t = Table(title="speech recognition (whole clip vs live 2 s segments)")
        for col in ("model", "set", "metric", "clips", "whole", "live", "live penalty (pts)", "live batched",
                    "same words", "× real time"):
            t.add_column(col)
        for m in sp.get("models", []):
            for lang, st in m["sets"].items():
                if "skipped" in st:
                    t.add_row(m["model"], lang, "-", "-", "-", "-", "-", "-", "-", st["skipped"])
                    continue
                same = st.get("batched_same_words")
                t.add_row(m["model"], lang, st["metric"], str(st["clips"]), _f(st["whole"]), _f(st["live"]),
                          _f(st["live_penalty"], 2), _f(st.get("live_batched")),
                          "-" if same is None else ("yes" if same else "NO"), _f(st["realtime"], 1))
        for name, e in sp.get("errors", {}).items():
            t.add_row(name, "-", "-", "-", "-", "-", "-", "-", "-", f"error: {e}")
        if "error" in sp:
            t.add_row("error", sp["error"], *["-"] * 8)
        out.append(t)
    cap = report.get("captions")
    if cap:
        t = Table(title="caption timing vs human-timed cues")
        s = cap.get("summary", {})
        for col in ("file", "cues", "matched", "start MAE s", "end MAE s", "start max s", "end max s"):
            t.add_column(col)
        if "error" in cap:
            t.add_row("error", cap["error"], *["-"] * 5)
        else:
            t.add_row(str(cap.get("file", "friday.vtt")), _f(s.get("cues")), _f(s.get("matched")), _f(s.get("start_mae_s")),
                      _f(s.get("end_mae_s")), _f(s.get("start_max_s")), _f(s.get("end_max_s")))
        out.append(t)
    sc = report.get("scenes")
    if sc:
        t = Table(title="scene cuts (±2 frames)")
        for col in ("file", "detector", "precision", "recall", "F1", "frames/s"):
            t.add_column(col)
        if "error" in sc:
            t.add_row("error", sc["error"], *["-"] * 4)
        for f in sc.get("files", []):
            for name, d in f["detectors"].items():
                if "error" in d:
                    t.add_row(f["file"], name, "-", "-", "-", d["error"])
                else:
                    t.add_row(f["file"], name, _f(d["precision"]), _f(d["recall"]), _f(d["f1"]), _f(d["fps"], 0))
        out.append(t)
    bd = report.get("boundaries")
    if bd:
        t = Table(title="clip boundaries")
        for col in ("video", "clips", "inside a word", "max edge error (frames)"):
            t.add_column(col)
        if "error" in bd:
            t.add_row("error", bd["error"], "-", "-")
        for v in bd.get("videos", []):
            t.add_row(str(v.get("video")), _f(v.get("clips")), _f(v.get("inside_word")), _f(v.get("max_edge_error_frames")))
        s = bd.get("summary", {})
        t.add_row("all", _f(s.get("clips")), _f(s.get("inside_word")), _f(s.get("max_edge_error_frames")))
        out.append(t)
    ch = report.get("chat")
    if ch:
        t = Table(title=f"chat triage on {ch.get('shows', '?')} labelled chat logs (leave one show out; means over shows)")
        for col in ("method", "sec P", "sec R", "sec F1", "flagged", "mom P", "mom R", "mom F1", "moments", "start err s"):
            t.add_column(col)
        if "error" in ch:
            t.add_row("error", ch["error"], *["-"] * 8)
        for name, m in (ch.get("methods") or {}).items():
            t.add_row(name, _f(m["second_precision"]), _f(m["second_recall"]), _f(m["second_f1"]), _f(m["flagged_share"]),
                      _f(m["moment_precision"]), _f(m["moment_recall"]), _f(m["moment_f1"]), _f(m["moments"], 1),
                      _f(m["start_error_s"], 1))
        out.append(t)
        cal = ch.get("calibration")
        if cal:
            t = Table(title=f"chat triage confidence vs how often it was right (ECE {cal['ece_points']} points)")
            for col in ("confidence", "moments", "mean confidence", "right %"):
                t.add_column(col)
            for b in cal["bands"]:
                t.add_row(b["confidence"], str(b["moments"]), _f(b["mean_confidence"], 1), _f(b["right_pct"], 1))
            out.append(t)
    pr = report.get("products")
    if pr:
        t = Table(title="product segments and ad-wording checks on the sample shows")
        for col in ("show", "model", "planted", "found", "recall", "precision", "start err med s", "end err med s",
                    "ad words planted", "flagged", "ad recall", "ad precision", "× real time"):
            t.add_column(col)
        if "error" in pr:
            t.add_row("error", pr["error"], *["-"] * 11)
        for sh in pr.get("shows", []):
            if "error" in sh:
                t.add_row(sh["lang"], sh["model"], "error: " + sh["error"], *["-"] * 10)
                continue
            g, a = sh["segments"], sh["ad_words"]
            t.add_row(sh["lang"], sh["model"], _f(g["planted"]), _f(g["found"]), _f(g["recall"]), _f(g["precision"]),
                      _f(g["start_error_med_s"], 1), _f(g["end_error_med_s"], 1), _f(a["planted"]), _f(a["flagged"]),
                      _f(a["recall"]), _f(a["precision"]), _f(sh["realtime"], 1))
        out.append(t)
    rf = report.get("reframe")
    if rf:
        t = Table(title="vertical reframing: subject inside the crop, jitter, time over a plain exact cut")
        for col in ("video", "subject", "frames", "inside", "jitter px", "still jitter px", "fitted", "cuts",
                    "exact s", "re-encode s", "vertical s", "+captions s", "vertical / exact"):
            t.add_column(col)
        if "error" in rf:
            t.add_row("error", rf["error"], *["-"] * 11)
        for v in rf.get("videos", []):
            vv, tm = v["vertical"], v.get("timing") or {}
            t.add_row(v["video"], v["subject"], _f(vv["frames"]), _f(vv["inside"]), _f(vv["jitter_px"], 2),
                      _f(vv["jitter_still_px"], 2), _f(vv["fitted_share"], 2), _f(len(v["cuts"])), _f(tm.get("exact_s"), 2), _f(tm.get("reencode_s"), 2),
                      _f(tm.get("vertical_s"), 2), _f(tm.get("vertical_captions_s"), 2), _f(tm.get("vertical_over_exact"), 2))
        out.append(t)
    for key, title in (("targets", "targets"), ("floors", "floors (CI)")):
        t = Table(title=title)
        for col in ("check", "rule", "value", "ok"):
            t.add_column(col)
        for c in report.get(key, []):
            ok = "-" if c["ok"] is None else ("yes" if c["ok"] else "NO")
            t.add_row(c["what"], c["rule"], _f(c["value"]), ok)
        out.append(t)
    return out
