"""``ace eval --parts products``: product segments and ad-wording checks on the sample shows.

Each sample show (English with ``tiny.en``; Mandarin with the multilingual ``base``) is processed
end to end with its product list and events, as ``ace process --products`` would. Found segments
are matched one to one with the planted ones: same product, and the overlap covers at least half
of each (so a segment twice as long as the pitch does not match). Ad-wording hits match a planted
phrase when the phrase is the same and its time lies within a second of the sentence it was
planted in.

The figures are on shows ACE generated itself: they check that the detector works end to end in
both languages, not how well it does on real commerce streams (none with labels are available).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ace.types import AdWordHit, ProductSegment

#: (language, speech model, spoken language setting)
SHOWS: tuple[tuple[str, str, str | None], ...] = (("en", "tiny.en", None), ("zh", "base", "zh"))


def match_segments(found: Sequence[ProductSegment], planted: Sequence[dict], min_overlap: float = 0.5) -> list[tuple[dict, ProductSegment]]:
    """Pairs (planted, found) of the same product whose overlap covers ``min_overlap`` of each, best first."""
    pairs = []
    for i, t in enumerate(planted):
        for j, f in enumerate(found):
            if f.product != t["product"]:
                continue
            inter = min(f.end, t["end"]) - max(f.start, t["start"])
            if inter <= 0:
                continue
            cover = min(inter / max(t["end"] - t["start"], 1e-6), inter / max(f.end - f.start, 1e-6))
            if cover >= min_overlap:
                pairs.append((cover, i, j))
    used_t, used_f, out = set(), set(), []
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            out.append((planted[i], found[j]))
    return out


def match_ad_words(flagged: Sequence[AdWordHit], planted: Sequence[dict], slack: float = 1.0) -> int:
    """How many planted phrases were flagged (same phrase, inside the planted sentence ± ``slack``)."""
    used: set[int] = set()
    n = 0
    for t in planted:
        for k, h in enumerate(flagged):
            if k in used or h.phrase != t["phrase"]:
                continue
            mid = (h.start + h.end) / 2
            if t["start"] - slack <= mid <= t["end"] + slack:
                used.add(k)
                n += 1
                break
    return n


def score_show(found: Sequence[ProductSegment], hits: Sequence[AdWordHit], truth: dict) -> dict[str, Any]:
    """The figures of one show against its truth file."""
    planted = truth.get("product_segments", [])
    pairs = match_segments(found, planted)
    starts = [abs(f.start - t["start"]) for t, f in pairs]
    ends = [abs(f.end - t["end"]) for t, f in pairs]
    ad_planted = truth.get("ad_words", [])
    ad_found = match_ad_words(hits, ad_planted)
    flagged_right = sum(1 for h in hits if any(h.phrase == t["phrase"] and t["start"] - 1 <= (h.start + h.end) / 2 <= t["end"] + 1
                                               for t in ad_planted))

    def r(x: float | None, d: int = 3) -> float | None:
        return None if x is None else round(x, d)

    return {
        "segments": {
            "planted": len(planted), "found": len(found), "matched": len(pairs),
            "recall": r(len(pairs) / len(planted)) if planted else None,
            "precision": r(len(pairs) / len(found)) if found else (1.0 if not planted else 0.0),
            "start_error_med_s": r(statistics.median(starts), 2) if starts else None,
            "end_error_med_s": r(statistics.median(ends), 2) if ends else None,
            "start_error_max_s": r(max(starts), 2) if starts else None,
            "end_error_max_s": r(max(ends), 2) if ends else None,
            "rows": [{"product": t["product"], "planted": [t["start"], t["end"]],
                      "found": next(([f.start, f.end] for tt, f in pairs if tt is t), None)} for t in planted]
                    + [{"product": f.product, "planted": None, "found": [f.start, f.end]} for f in found
                       if not any(ff is f for _, ff in pairs)],
        },
        "ad_words": {
            "planted": len(ad_planted), "flagged": len(hits), "matched": ad_found,
            "recall": r(ad_found / len(ad_planted)) if ad_planted else None,
            "precision": r(flagged_right / len(hits)) if hits else (1.0 if not ad_planted else 0.0),
        },
    }


def real_text_flags(eval_data: Path | None) -> dict[str, Any] | None:
    """The default ad-wording list over the human transcripts of the public recordings (speech
    clips and film captions, none of them selling anything): every flag there is a false one."""
    from ace.products.adwords import AdWordChecker
    from ace.types import Sentence

    if eval_data is None or not Path(eval_data).is_dir():
        return None
    texts = []
    for f in sorted(Path(eval_data).glob("speech/*/*.txt")) + sorted(Path(eval_data).glob("video/*.vtt")):
        try:
            texts += [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines()
                      if ln.strip() and "-->" not in ln and ln.strip() != "WEBVTT"]
        except (OSError, UnicodeDecodeError):
            continue
    hits = AdWordChecker().find([Sentence(0, 0, t) for t in texts])
    return {"lines": len(texts), "flags": len(hits), "flagged": [f"{h.phrase}: {h.text[:60]}" for h in hits][:20]}


def real_media_false_pitches(settings: Any, eval_data: Path | None, products: Sequence[Any]) -> list[dict] | None:
    """The public recordings with sound (a film clip, a dialogue scene: nothing sold in them),
    processed with a product list: every segment found there is a false one."""
    from ace.pipeline import ShowPipeline

    if eval_data is None or not Path(eval_data).is_dir() or not products:
        return None
    out = []
    pipe = ShowPipeline(settings.model_copy(update={"model": "tiny.en", "language": None}))
    for f in sorted(Path(eval_data).glob("video/*")):
        if f.suffix.lower() not in (".mp4", ".webm", ".mkv", ".mov"):
            continue
        try:
            an = pipe.analyse(f, products=products)
        except Exception as e:  # a file without sound is not a test of this
            out.append({"file": f.name, "skipped": f"{type(e).__name__}: {str(e)[:120]}"})
            continue
        out.append({"file": f.name, "duration": round(an.info.duration, 1), "sentences": len(an.sentences),
                    "false_segments": len(an.segments), "ad_words_flagged": len(an.ad_words)})
    return out


def evaluate_products(settings: Any, data_dir: Path, langs: Sequence[str] = ("en", "zh"), duration: float = 360.0,
                      progress: Callable[[str], None] | None = None, eval_data: Path | None = None) -> dict[str, Any]:
    """Both sample shows, made once (cached) and processed with their product lists; and the
    ad-wording list over real transcripts (``eval_data``) for its false flags."""
    from ace.pipeline import ShowPipeline
    from ace.products.catalog import parse_products
    from samples.show import make_sample_show

    say = progress or (lambda m: None)
    shows = []
    for lang, model, language in SHOWS:
        if lang not in langs:
            continue
        t0 = time.perf_counter()
        say(f"products: making the {lang} sample show (once)")
        show = make_sample_show(Path(settings.data_dir) / "samples", duration=duration, lang=lang)
        truth = show.load_truth()
        products = parse_products(truth.get("products", []), "truth products")
        s = settings.model_copy(update={"model": model, "language": language})
        say(f"products: processing the {lang} show with {model}")
        result = ShowPipeline(s).process(show.video, Path(data_dir) / "products", show.events, products=products,
                                         show_id=f"products-{lang}")
        if not result.ok:
            shows.append({"lang": lang, "model": model, "error": result.error})
            continue
        row = {"lang": lang, "model": model, "show": str(show.video), "duration": round(result.duration, 1),
               **score_show(result.segments, result.ad_words, truth),
               "seconds": round(time.perf_counter() - t0, 1), "process_seconds": round(result.seconds, 1),
               "realtime": round(result.realtime, 1)}
        shows.append(row)
    en_products = []
    for lang, _m, _l in SHOWS:
        if lang == "en":
            try:
                en_products = parse_products(make_sample_show(Path(settings.data_dir) / "samples", duration=duration,
                                                              lang="en").load_truth().get("products", []), "products")
            except Exception:
                en_products = []
    ok = [s for s in shows if "segments" in s]
    planted = sum(s["segments"]["planted"] for s in ok)
    found = sum(s["segments"]["found"] for s in ok)
    matched = sum(s["segments"]["matched"] for s in ok)
    ad_p = sum(s["ad_words"]["planted"] for s in ok)
    ad_m = sum(s["ad_words"]["matched"] for s in ok)
    return {
        "shows": shows,
        "real_text": real_text_flags(eval_data),
        "real_media": real_media_false_pitches(settings, eval_data, en_products),
        "summary": {
            "recall": round(matched / planted, 3) if planted else None,
            "precision": round(matched / found, 3) if found else None,
            "min_show_recall": min((s["segments"]["recall"] for s in ok if s["segments"]["recall"] is not None), default=None),
            "min_show_precision": min((s["segments"]["precision"] for s in ok), default=None),
            "max_start_error_med_s": max((s["segments"]["start_error_med_s"] or 0 for s in ok), default=None),
            "max_end_error_med_s": max((s["segments"]["end_error_med_s"] or 0 for s in ok), default=None),
            "ad_words_recall": round(ad_m / ad_p, 3) if ad_p else None,
            "min_ad_words_precision": min((s["ad_words"]["precision"] for s in ok), default=None),
            "shows_failed": len(shows) - len(ok),
        },
    }
