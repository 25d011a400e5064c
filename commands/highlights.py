"""``ace triage`` (moments from chat alone) and ``ace train`` (fit the highlight model).

::

    ace triage EVENTS [MORE ...] [--out DIR] [--top K] [--scorer PATH|default] [--json]
    ace train EVENTS [MORE ...] [--labels FILE ...] [--out PATH] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from ace.errors import AceError

err = Console(stderr=True)
out = Console()


def _scorer(args: argparse.Namespace):
    from models.scorer import load_model

    return load_model(getattr(args, "scorer", None))


def cmd_triage(args: argparse.Namespace) -> int:
    from ace.triage import triage_files
    from ace.types import to_dict

    try:
        model = _scorer(args)
    except AceError as e:
        err.print(f"[red]error[/] {e}")
        return 2
    if args.top is not None and args.top < 1:
        err.print("[red]error[/] --top must be at least 1")
        return 2
    out_root = Path(args.out)

    def progress(k: int, n: int, res) -> None:
        state = f"{len(res.moments)} moments" if res.ok else f"[red]failed[/]: {res.error}"
        err.print(f"[dim]{k}/{n}[/] {Path(res.path).name}: {state} ({res.seconds:.2f} s)")

    t0 = time.perf_counter()
    results = triage_files(args.events, out_root, model, top=args.top, model_name=args.scorer or "default",
                           progress=progress if len(args.events) > 1 or not args.json else None)
    if args.json:
        print(json.dumps([{"file": r.path, "stem": r.stem, "ok": r.ok, "error": r.error, "moments_json": r.out_path,
                           "messages": r.messages, "duration": r.duration, "lag": r.lag.to_dict() if r.lag else None,
                           "warnings": r.warnings, "moments": [to_dict(m) for m in r.moments]} for r in results],
                         indent=2, ensure_ascii=False))
    else:
        for r in results:
            if not r.ok:
                continue
            triage_table(r).print(out)
        failed = [r for r in results if not r.ok]
        err.print(f"{len(results) - len(failed)} of {len(results)} file(s) triaged in {time.perf_counter() - t0:.1f} s"
                  + (f"; {len(failed)} failed" if failed else ""))
    return 0 if all(r.ok for r in results) else 1


def triage_table(r):
    """One file's moments, best first, with their ids (those of moments.json and the reviews) whole."""
    from ace.console import Col, IdTable

    t = IdTable(f"{r.stem}: {len(r.moments)} moments from {r.messages} chat messages "
                f"({_clock(r.duration)}, audience delay {r.lag.seconds:.0f} s) -> {r.out_path}",
                [Col("rank", id=True, justify="right"), Col("moment", id=True), Col("from", id=True, justify="right"),
                 Col("to", id=True, justify="right"), Col("confidence", justify="right"), Col("why", min_width=16)])
    for m in r.moments:
        t.add_row(str(m.rank), m.id, _clock(m.start), _clock(m.end), f"{m.confidence:.0f}" + ("" if m.strong else " (top few)"),
                  m.reasons[0].detail if m.reasons else "")
    return t


def _clock(t: float) -> str:
    t = int(round(t))
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}" if t >= 3600 else f"{t // 60}:{t % 60:02d}"


def labels_for(events: list[str], labels: list[str] | None) -> list[Path]:
    """The labels file of each events file: given in the same order, else ``<stem>.highlights.json`` beside it."""
    from ace.training import stem_of

    if labels:
        if len(labels) != len(events):
            raise SystemExit(f"ace: {len(events)} events files but {len(labels)} --labels files (give one per events file, in order)")
        return [Path(x) for x in labels]
    out = []
    for e in events:
        p = Path(e)
        cand = p.with_name(stem_of(p) + ".highlights.json")
        if not cand.is_file():
            raise SystemExit(f"ace: no labels for {e}: give --labels FILE, or put {cand.name} beside it")
        out.append(cand)
    return out


def cmd_train(args: argparse.Namespace) -> int:
    if args.reviews:
        return _train_on_reviews(args)
    if not args.events:
        raise SystemExit("ace: give labelled events files, or --reviews TENANT")
    from ace.config import get_settings
    from ace.training import fit_model, load_labelled

    labels = labels_for(list(args.events), args.labels)
    shows = []
    for e, lab in zip(args.events, labels, strict=True):
        try:
            shows.append(load_labelled(e, lab))
        except AceError as exc:
            err.print(f"[red]error[/] {exc}")
            return 2
    if args.out:
        target = Path(args.out)
    else:
        name = args.name or "scorer"
        if not name.replace("-", "").replace("_", "").isalnum():
            raise SystemExit("ace: --name takes letters, digits, '-' and '_'")
        data_dir = Path(args.data_dir) if args.data_dir else get_settings().data_dir
        target = data_dir / "scorers" / f"{name}.json"
    t0 = time.perf_counter()
    desc = args.describe or (f"{len(shows)} labelled shows: " + ", ".join(s.name for s in shows[:20])
                             + (" ..." if len(shows) > 20 else ""))
    try:
        model = fit_model(shows, trained_on=desc, progress=lambda m: err.print(f"[dim]{m}"))
    except (AceError, ValueError) as exc:
        err.print(f"[red]error[/] {exc}")
        return 2
    model.save(target)
    held = model.metrics.get("tuned_on_held_out") or {}
    err.print(f"fitted on {len(shows)} shows ({model.metrics['seconds']} s) in {time.perf_counter() - t0:.1f} s: "
              f"audience delay {model.lag:.1f} s")
    if held:
        err.print(f"settings chosen on held-out shows (leave one out; the nested figure is `ace eval --parts chat`): per-second F1 {held['second_f1']:.3f} at {100 * held['flagged_share']:.0f}% "
                  f"flagged, moment F1 {held['moment_f1']:.3f}; min confidence {model.min_confidence:.0f}")
    print(target)
    return 0


def _train_on_reviews(args: argparse.Namespace) -> int:
    from ace.config import get_settings
    from ace.store import Store
    from ace.training import MIN_REVIEWS_TO_TUNE as MIN_REVIEWS, reviewed_shows, tune_on_reviews
    from models.scorer import load_model, tenant_model_path

    if args.events:
        raise SystemExit("ace: --reviews learns from the back office's reviews; give no events files with it")
    settings = get_settings(**({"data_dir": Path(args.data_dir)} if args.data_dir else {}))
    tenant = args.reviews
    try:
        base = load_model(args.base)
        store = Store(settings.db_url)
        store.create_all()
        reviews = store.tenant_reviews(tenant)
    except AceError as e:
        err.print(f"[red]error[/] {e}")
        return 2
    live = Path(settings.data_dir).absolute() / "live"

    def events_for(show_id: str) -> Path | None:
        # a live stream's chat is its journal, in its own folder (the id is checked: it names a folder)
        if not show_id or "/" in show_id or "\\" in show_id or show_id.startswith("."):
            return None
        p = live / show_id / "events.jsonl"
        return p if p.is_file() else None

    shows, skipped = reviewed_shows(reviews, events_for)
    for s in skipped:
        err.print(f"[yellow]skipped[/] {s}")
    try:
        model = tune_on_reviews(base, shows, f"tenant {tenant}")
    except (AceError, ValueError) as e:
        err.print(f"[red]error[/] {e} ({len(reviews)} review(s) of tenant {tenant} in the store)")
        return 2
    target = Path(args.out) if args.out else tenant_model_path(settings.data_dir, tenant)
    model.save(target)
    r = model.metrics["reviews"]
    err.print(f"{r['approved']} approved and {r['rejected']} rejected moments of {r['shows']} show(s): "
              + ("weights tuned, confidence recalibrated" if r["weights_tuned"] else
                 f"confidence recalibrated (weights are tuned from {MIN_REVIEWS} of each verdict)"))
    print(target)
    return 0


def register(sub: argparse._SubParsersAction, add_common) -> None:
    t = sub.add_parser("triage", help="find the best moments of shows from their chat alone (no media), many files at once")
    t.add_argument("events", nargs="+", help="events files: ACE JSONL, Twitch chat JSON (TwitchDownloader) or Bilibili danmaku XML")
    t.add_argument("--out", default="out", help="output folder (default ./out); each file gets OUT/<stem>/moments.json")
    t.add_argument("--top", type=int, help="keep at least this many moments per file (default: one per 5 minutes, at least 1)")
    t.add_argument("--scorer", help="highlight model: a file written by `ace train`, or 'default' (the one ACE ships)")
    t.add_argument("--json", action="store_true", help="print every file's moments as JSON on stdout")
    t.set_defaults(func=cmd_triage)

    r = sub.add_parser("train", help="fit the highlight model from labelled shows (chat plus [start, end] highlights)")
    r.add_argument("events", nargs="*", help="events files of labelled shows")
    r.add_argument("--reviews", metavar="TENANT", help="learn from the back office's approve/reject reviews of this tenant "
                   "instead (live streams' chat); writes DATA_DIR/scorers/tenant-TENANT.json, which that tenant's shows "
                   "then use by default")
    r.add_argument("--base", help="with --reviews: the model to start from (default: the shipped one)")
    r.add_argument("--labels", action="append", help="labels file for the events file in the same position (JSON "
                   "{\"highlights\": [[start, end], ...]} or 'start end' lines); default <stem>.highlights.json beside it")
    r.add_argument("--out", help="where to write the model (default DATA_DIR/scorers/NAME.json)")
    r.add_argument("--name", help="model name under DATA_DIR/scorers (default 'scorer')")
    r.add_argument("--describe", help="what the model was fitted on, written into it (default: the shows' names)")
    r.add_argument("--data-dir", dest="data_dir", help="ACE's data folder (default ./data)")
    r.set_defaults(func=cmd_train)


