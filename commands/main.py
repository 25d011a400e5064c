"""The ``ace`` command.

::

    ace process SHOW.mp4 [MORE ...] [--events chat.jsonl] [--out DIR] [--json]
    ace demo                      # make the sample show (once), process it, compare with the truth
    ace bench [--input FILE]      # decode, speech and full pipeline side by side, clip cut times
    ace policy simulate           # traffic-ramp policy against baselines in the simulator

Workers (Ray) are imported lazily so ``ace --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import contextlib
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from ace.config import Settings
from ace.console import Col, IdTable
from ace.errors import AceError
from ace.types import ShowResult
from commands.common import add_common, settings_from

err = Console(stderr=True)
out = Console()


# -- process ---------------------------------------------------------------------------------------


def cmd_process(args: argparse.Namespace) -> int:
    from workers.batch import Job

    settings = settings_from(args)
    events = list(args.events or [])
    if len(events) > len(args.shows):
        raise SystemExit("ace: more --events files than shows (give one --events per show, in the same order)")
    cutlists = list(args.moments or [])
    if len(cutlists) > len(args.shows):
        raise SystemExit("ace: more --moments files than shows (give one --moments per show, in the same order)")
    for m in cutlists:
        if not Path(m).is_file():
            raise SystemExit(f"ace: no moments file at {m}")
    catalogs = list(args.products or [])
    if len(catalogs) > len(args.shows) and len(catalogs) > 1:
        raise SystemExit("ace: more --products files than shows (give one per show in the same order, or one for all)")
    jobs = []
    for i, show in enumerate(args.shows):
        ev = events[i] if i < len(events) else _sidecar_events(show)
        cut = cutlists[i] if i < len(cutlists) else None
        cat = catalogs[0] if len(catalogs) == 1 else catalogs[i] if i < len(catalogs) else _sidecar(show, (".products.json", ".products.jsonl"))
        jobs.append(Job(str(show), str(ev) if ev else None, moments=str(cut) if cut else None, products=_products(cat)))
    results = run_jobs(jobs, Path(args.out), settings, args)
    report(results, args.json)
    return 0 if all(r.ok for r in results) else 1


def _sidecar_events(show: str) -> Path | None:
    """``show.events.jsonl`` (or .json/.xml) next to the show is used when no --events is given."""
    p = Path(show)
    for ext in (".events.jsonl", ".events.json", ".events.xml"):
        cand = p.with_name(p.stem + ext)
        if cand.is_file():
            return cand
    return None


def _sidecar(show: str, exts: tuple[str, ...]) -> Path | None:
    p = Path(show)
    return next((c for c in (p.with_name(p.stem + ext) for ext in exts) if c.is_file()), None)


def _products(path: str | Path | None) -> list[dict] | None:
    """A product file read and checked before any work starts (its errors name line and field)."""
    if path is None:
        return None
    from ace.products.catalog import load_products, product_to_dict

    try:
        return [product_to_dict(p) for p in load_products(path)]
    except AceError as e:
        raise SystemExit(f"ace: {e}") from None


def run_jobs(jobs, out_root: Path, settings: Settings, args: argparse.Namespace) -> list[ShowResult]:
    from workers.batch import fraction, job_keys, run_batch

    keys = job_keys(jobs)
    lines = not err.is_terminal  # no terminal (a log, CI): a line per change of stage instead of bars
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=err,
        disable=lines,
        transient=False,
    ) as bar:
        overall = bar.add_task(f"[bold]all {len(jobs)} show(s)", total=len(jobs), stage="")
        tasks = {k: bar.add_task(f"  {Path(j.path).name[:40]}", total=1.0, stage="starting") for k, j in zip(keys, jobs)}
        last_line = {}

        def on_progress(snapshot) -> None:
            total = 0.0
            for k, tid in tasks.items():
                stages = snapshot.get(k, {})
                f = fraction(stages)
                total += f
                stage = "failed" if "failed" in stages else "done" if "done" in stages else ", ".join(s for s in ("video", "speech", "clips") if s in stages) or "starting"
                bar.update(tid, completed=f, stage=stage)
                if lines and last_line.get(k) != stage:
                    last_line[k] = stage
                    err.print(f"{Path(k.split(':', 1)[1]).name}: {stage}")
            bar.update(overall, completed=total)

        results = run_batch(jobs, out_root, settings, address=settings.ray_address, num_cpus=getattr(args, "num_cpus", None), on_progress=on_progress, dashboard=getattr(args, "dashboard", False))
    return results


def report(results: list[ShowResult], as_json: bool) -> None:
    rows = [
        {
            "show": Path(r.path).name,
            "show_id": r.show_id,
            "ok": r.ok,
            "duration_s": round(r.duration, 2),
            "moments": len(r.moments),
            "clips": len(r.clips),
            "product_segments": len(r.segments),
            "ad_words": len(r.ad_words),
            "seconds": round(r.seconds, 2),
            "realtime": round(r.realtime, 1),
            "out_dir": r.out_dir if r.ok else "",
            "error": r.error,
            "warnings": r.warnings,
        }
        for r in results
    ]
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    shows_table(results, rows).print(out)
    for r in results:
        for seg in r.segments:
            out.print(f"pitch {Path(r.path).name}: {seg.name} #{seg.n} {_clock(seg.start)}-{_clock(seg.end)} "
                      f"(confidence {seg.confidence:.0f}; {', '.join(seg.evidence)})")
        for h in r.ad_words:
            err.print(f"[yellow]ad wording[/] {Path(r.path).name}: {h.phrase!r} at {_clock(h.start)} in \"{h.text[:80]}\"")
        for w in r.warnings[:20]:
            err.print(f"[yellow]warning[/] {Path(r.path).name}: {w}")
        if len(r.warnings) > 20:
            err.print(f"[yellow]warning[/] {Path(r.path).name}: ... and {len(r.warnings) - 20} more")


# -- demo ------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from ace.evaluate import compare_with_truth
    from ace.evaluation.products import score_show
    from samples.show import make_sample_show
    from workers.batch import Job

    settings = settings_from(args)
    sample_dir = settings.data_dir / "samples"
    with err.status("making the sample show (once; reused afterwards) ...") as status:
        show = make_sample_show(sample_dir, duration=args.duration, lang=args.lang, progress=lambda msg: status.update(msg))
    truth = json.loads(Path(show.truth).read_text())
    err.print(f"sample show: {show.video}\nevents: {show.events}\ntruth: {show.truth}\nspeech model: {settings.model}"
              f" ({settings.language or 'language detected'})")
    products = truth.get("products") or None
    results = run_jobs([Job(str(show.video), str(show.events), products=products)], Path(args.out), settings, args)
    report(results, args.json)
    r = results[0]
    if not r.ok:
        return 1
    cmp = compare_with_truth(r.moments, truth)
    pitches = score_show(r.segments, r.ad_words, truth)
    if args.json:
        print(json.dumps({**cmp, "products": pitches}, indent=2, ensure_ascii=False))
    else:
        truth_table(cmp).print(out)
        out.print(
            f"precision {cmp['precision']:.2f}  recall {cmp['recall']:.2f}  F1 {cmp['f1']:.2f}  "
            f"boundary error: start {cmp['start_error_s']:.1f} s, end {cmp['end_error_s']:.1f} s  decoys hit {cmp['decoys_hit']}"
        )
        g, a = pitches["segments"], pitches["ad_words"]
        if g["planted"]:
            out.print(f"product pitches: {g['matched']} of {g['planted']} found, {g['found']} reported (recall {g['recall']:.2f}, "
                      f"precision {g['precision']:.2f}); edge error median start {g['start_error_med_s']} s, end "
                      f"{g['end_error_med_s']} s; ad wording: {a['matched']} of {a['planted']} planted phrases flagged, "
                      f"{a['flagged']} flags")
        out.print(f"clips and moments.json: {r.out_dir}")
    return 0


def _clock(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def shows_table(results: list[ShowResult], rows: list[dict]) -> IdTable:
    """``ace process``' summary: a row a show, its file name whole (:mod:`ace.console`)."""
    t = IdTable("ACE — shows processed", [Col("show", id=True), Col("status", min_width=6), Col("length", justify="right"),
                                          Col("moments", justify="right"), Col("clips", justify="right"),
                                          Col("pitches", justify="right"), Col("ad words", justify="right"),
                                          Col("time", justify="right"), Col("× real time", justify="right"),
                                          Col("output / error", min_width=20)])
    for r, row in zip(results, rows):
        t.add_row(
            row["show"],
            Text("ok", style="green") if r.ok else Text("failed", style="red"),
            f"{r.duration:.0f} s" if r.duration else "-",
            str(row["moments"]),
            str(row["clips"]),
            str(len(r.segments)),
            Text(str(len(r.ad_words)), style="yellow") if r.ad_words else "0",
            f"{r.seconds:.1f} s",
            f"{r.realtime:.1f}×" if r.ok else "-",
            row["out_dir"] if r.ok else Text(str(r.error), style="red"),
        )
    return t


def truth_table(cmp: dict) -> IdTable:
    """The demo's planted highlights against the moments found, a row a planted interval (kept whole)."""
    t = IdTable("found vs planted", [Col("planted", id=True), "evidence", Col("found", id=True), Col("score", justify="right"),
                                     Col("why", min_width=12)])
    for row in cmp["rows"]:
        t.add_row(row["planted"], row["kinds"], row["found"], row["score"], row["why"])
    return t


# -- bench -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send everything written to file descriptor 1 (by this process or its children) to 2."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


#: each bench's defaults of the options they share: streams, seconds
_BENCH_DEFAULTS = {"live": (8, 180.0), "speech": (8, 60.0), "api": (2, 20.0), "cluster": (6, 120.0)}


def _bench_run(args: argparse.Namespace, settings: Settings):
    """``(run, show)`` for the bench ``args.what``: ``run()`` returns its report, ``show(report, console)`` prints it."""
    say = lambda m: err.print(f"[dim]{m}")  # noqa: E731
    streams, seconds = _BENCH_DEFAULTS.get(args.what, (None, None))
    streams = args.streams if args.streams is not None else streams
    seconds = args.seconds if args.seconds is not None else seconds
    if args.what == "api":
        from workers.bench_api import print_api_report, run_api_bench

        return (lambda: run_api_bench(settings, clients=args.clients, seconds=seconds, batch=args.batch, submits=args.submits,
                                      streams=streams, rate=args.rate, num_cpus=args.num_cpus, input_path=args.input,
                                      progress=say)), print_api_report
    if args.what == "probe":
        from workers.bench_probe import print_probe_report, run_probe

        return (lambda: run_probe(settings, inputs=args.inputs, cycles=args.cycles, batches=args.batches, seed=args.seed,
                                  input_path=args.input, num_cpus=args.num_cpus or 2, progress=say)), print_probe_report
    if args.what == "speech":
        from workers.bench_speech import print_speech_report, run_speech_bench

        return (lambda: run_speech_bench(settings, streams=streams, seconds=seconds, input_path=args.input,
                                         num_cpus=args.num_cpus, progress=say)), print_speech_report
    if args.what == "live":
        from workers.bench_live import print_live_report, run_live_bench

        return (lambda: run_live_bench(settings, streams=streams, seconds=seconds, input_path=args.input,
                                       events_path=args.events, num_cpus=args.num_cpus, progress=say)), print_live_report
    if args.what == "cluster":
        from workers.bench_cluster import print_cluster_report, run_cluster_bench

        return (lambda: run_cluster_bench(settings, nodes=args.nodes, streams=streams, seconds=seconds,
                                          input_path=args.input, events_path=args.events, progress=say)), print_cluster_report
    from ace.bench import print_report, run_bench

    return (lambda: run_bench(settings, input_path=args.input, events_path=args.events, duration=args.duration,
                              progress=say, lang=args.lang)), print_report


def cmd_bench(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    run, show = _bench_run(args, settings)
    if args.what == "pipeline":
        report_ = run()
    else:
        with _stdout_to_stderr():  # Ray's own messages and the subprocesses' must not get into the report on stdout
            report_ = run()
    if args.json:
        print(json.dumps(report_, indent=2))
    else:
        show(report_, out)
    return 0


# -- eval ------------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from ace.evaluation.suite import PARTS, broken_floors, run_eval, tables

    settings = settings_from(args)
    data = Path(args.data) if args.data else settings.eval_data
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else list(PARTS)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    if not data.is_dir():
        err.print(f"[red]error[/] no evaluation data at {data} (give --data DIR or set ACE_EVAL_DATA)")
        return 2
    sample = args.sample
    if sample is None and "boundaries" in parts:
        from samples.show import make_sample_show

        with err.status("making the sample show (once; reused afterwards) ...") as status:
            sample = make_sample_show(settings.data_dir / "samples", progress=lambda msg: status.update(msg)).video
    try:
        report_ = run_eval(data, models=models, parts=parts, sample_show=sample, settings=settings,
                           out_dir=settings.data_dir / "eval", progress=lambda m: err.print(f"[dim]{m}"))
    except AceError as e:
        err.print(f"[red]error[/] {e}")
        return 2
    if args.json:
        print(json.dumps(report_, indent=2, default=str))
    else:
        for table in tables(report_):
            out.print(table)
    broken = broken_floors(report_)
    for b in broken:
        err.print(f"[red]floor broken[/] {b['what']}: {b['value']} (needs {b['rule']})")
    return 1 if (args.check and broken) else 0


# -- entry -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ace", description="Find highlights in live and recorded shows, cut clips, ramp traffic.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("process", help="analyse recorded shows and cut their highlight clips")
    p.add_argument("shows", nargs="+", help="video files")
    p.add_argument("--events", action="append", help="interaction events for the show in the same position (JSONL, Twitch chat JSON or Bilibili XML); repeat per show")
    p.add_argument("--moments", action="append", help="cut these moments (a moments.json, e.g. from `ace triage`) instead "
                   "of finding them: only their own seconds are decoded; repeat per show")
    p.add_argument("--products", action="append", help="the show's product list (JSON or JSON Lines: id, name, aliases, "
                   "price, sku, image): each product's pitch is found and cut as clips/<product>-<n>.mp4; one file for "
                   "every show, or one per show in the same order (default: SHOW.products.json beside the show)")
    p.add_argument("--out", default="out", help="output folder (default ./out); each show gets OUT/<show>/")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_common(p)
    p.set_defaults(func=cmd_process)

    d = sub.add_parser("demo", help="make the sample show once, process it and compare with the planted highlights")
    d.add_argument("--duration", type=float, default=360.0, help="sample show length in seconds (default 360)")
    d.add_argument("--out", default="out", help="output folder (default ./out)")
    d.add_argument("--lang", choices=["en", "zh"], default="en", help="the sample show's language: en (English, tiny.en) or "
                   "zh (Mandarin, run with the multilingual base model unless --model says otherwise)")
    d.add_argument("--json", action="store_true", help="print results as JSON")
    add_common(d)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="benchmark the batch pipeline on one show (default) or live streams (bench live)")
    b.add_argument("what", nargs="?", choices=["pipeline", "live", "api", "speech", "probe", "cluster"], default="pipeline",
                   help="pipeline: decode, speech and the full pipeline on one show; live: N live HLS copies through the "
                        "controller; api: the back office under concurrent event posts and a burst of submissions; "
                        "speech: how many live streams' speech the speech pool keeps up with; probe: a hardening probe "
                        "against its own `ace serve` on loopback (listening ports, hostile inputs, exactly-once events "
                        "across an actor restart, stopped streams' actors ending); cluster: a multi-node Ray cluster of "
                        "`ray start` processes on this machine, a worker node killed and the head restarted mid-run")
    b.add_argument("--streams", type=int, help="live, speech: how many copies of the show (default 8); cluster: 6")
    b.add_argument("--seconds", type=float, help="live: how long to follow them (default 180); api: how long "
                   "the clients post events (default 20); speech: audio per stream (default 60); cluster: the run (default 120)")
    b.add_argument("--nodes", type=int, default=3, help="cluster: Ray nodes, the head included (default 3)")
    b.add_argument("--clients", type=int, default=16, help="api: concurrent clients posting events (default 16)")
    b.add_argument("--batch", type=int, default=200, help="api: events a request (default 200)")
    b.add_argument("--submits", type=int, default=100, help="api: simultaneous stream submissions (default 100)")
    b.add_argument("--rate", type=float, default=6000.0, help="api: events a second the clients offer in all, on a "
                   "schedule (default 6000; 0: as fast as answered)")
    b.add_argument("--inputs", type=int, default=2000, help="probe: hostile requests to send (default 2000)")
    b.add_argument("--cycles", type=int, default=20, help="probe: streams submitted and stopped (default 20)")
    b.add_argument("--batches", type=int, default=200, help="probe: keyed batches of 50 events, each sent twice, "
                   "across a restart of the stream's actor (default 200)")
    b.add_argument("--seed", type=int, default=0, help="probe: seed of the hostile requests (default 0)")
    b.add_argument("--input", help="show to measure (default: the sample show)")
    b.add_argument("--events", help="events file for --input")
    b.add_argument("--duration", type=float, default=360.0, help="sample show length when no --input (default 360)")
    b.add_argument("--lang", choices=["en", "zh"], default="en", help="pipeline: the sample show's language; zh is the "
                   "Mandarin show, run with the multilingual base model unless --model says otherwise (default en)")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    add_common(b)
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("eval", help="measure quality on real recordings with ground truth, next to reference tools")
    e.add_argument("--data", help="folder of recordings with ground truth (default: ACE_EVAL_DATA or ../shared/data)")
    e.add_argument("--models", help="speech models to measure, comma-separated (default: every installed bundled model)")
    e.add_argument("--parts", help="comma-separated subset of speech,captions,scenes,boundaries,chat,products,reframe (default: all)")
    e.add_argument("--sample", help="sample show for the clip-boundary check (default: the demo's sample show, made once)")
    e.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    e.add_argument("--check", action="store_true", help="exit 1 when a quality floor is broken (for CI)")
    add_common(e)
    e.set_defaults(func=cmd_eval)

    from commands.highlights import register as register_highlights

    register_highlights(sub, add_common)

    from commands.live import register as register_live

    register_live(sub, add_common)

    from commands.tokens import register as register_tokens

    register_tokens(sub, add_common)

    try:
        from ace.policy.cli import register as register_policy
    except ImportError:
        register_policy = None
    if register_policy is not None:
        register_policy(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)], format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        err.print("[red]interrupted")
        return 130
    finally:
        if "ray" in sys.modules:
            from workers.cluster import shutdown_ray

            shutdown_ray()


if __name__ == "__main__":
    sys.exit(main())
