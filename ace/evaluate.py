"""Scoring found moments against ground truth (the sample show's planted highlights)."""

from __future__ import annotations

from collections.abc import Sequence

from ace.types import Moment


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def compare_with_truth(moments: Sequence[Moment], truth: dict, min_overlap: float = 1.0) -> dict:
    """Precision, recall and boundary error of ``moments`` against ``truth["highlights"]``.

    A moment and a highlight match when they overlap by at least ``min_overlap`` seconds (or by
    half the highlight when it is shorter); each is matched at most once, largest overlap first.
    ``decoys_hit`` counts unmatched moments that overlap a planted decoy.
    """
    highlights = truth.get("highlights", [])
    decoys = truth.get("decoys", [])
    pairs = []
    for i, m in enumerate(moments):
        for j, h in enumerate(highlights):
            ov = overlap(m.start, m.end, h["start"], h["end"])
            need = min(min_overlap, 0.5 * (h["end"] - h["start"]))
            if ov >= need and ov > 0:
                pairs.append((ov, i, j))
    pairs.sort(reverse=True)
    used_m, used_h, matches = set(), set(), {}
    for _ov, i, j in pairs:
        if i not in used_m and j not in used_h:
            used_m.add(i)
            used_h.add(j)
            matches[j] = i
    tp = len(matches)
    precision = tp / len(moments) if moments else (1.0 if not highlights else 0.0)
    recall = tp / len(highlights) if highlights else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    start_err = [abs(moments[i].start - highlights[j]["start"]) for j, i in matches.items()]
    end_err = [abs(moments[i].end - highlights[j]["end"]) for j, i in matches.items()]

    def decoy_span(d):
        if "start" in d:
            return d["start"], d.get("end", d["start"] + 1)
        return d["t"] - 0.5, d["t"] + 0.5

    decoys_hit = 0
    for i, m in enumerate(moments):
        if i in used_m:
            continue
        if any(overlap(m.start, m.end, *decoy_span(d)) > 0 for d in decoys):
            decoys_hit += 1
    rows = []
    for j, h in enumerate(highlights):
        i = matches.get(j)
        m = moments[i] if i is not None else None
        rows.append(
            {
                "planted": f"{h['start']:.1f}–{h['end']:.1f} s",
                "kinds": ", ".join(h.get("kinds", [])),
                "found": f"{m.start:.1f}–{m.end:.1f} s" if m else "missed",
                "score": f"{m.score:.2f}" if m else "",
                "why": ", ".join(r.source for r in m.reasons) if m else "",
            }
        )
    for i, m in enumerate(moments):
        if i not in used_m:
            rows.append({"planted": "(none)", "kinds": "", "found": f"{m.start:.1f}–{m.end:.1f} s", "score": f"{m.score:.2f}", "why": ", ".join(r.source for r in m.reasons)})
    return {
        "highlights": len(highlights),
        "moments": len(moments),
        "matched": tp,
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "f1": round(f1, 3),
        "start_error_s": round(sum(start_err) / len(start_err), 2) if start_err else 0.0,
        "end_error_s": round(sum(end_err) / len(end_err), 2) if end_err else 0.0,
        "decoys_hit": decoys_hit,
        "rows": rows,
    }
