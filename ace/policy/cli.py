"""``ace policy simulate``: every policy over several seeded simulated days, a table of the
metrics (mean and spread over seeds, targets checked for the ramp policy), and PNG plots.

``--rooms`` is a density, rooms per 4 hours of the day: arrivals go on all day, so
``--hours 24`` simulates about 6x the rooms of the default 4 h day with about as many live at a
time (about 35). The default day stays 4 h (about 10 s for 5 seeds); ``--hours 24`` is a full day
(about 70 s and 3 GB of memory for 5 seeds on an idle core).

The simulated days include the clip loop (moments published as clips whose views and clicks
bring viewers back, and which the ramp policy counts as interest in the room); ``--no-clip-loop``
turns it off. With the loop on and the ramp policy among those run, a second table shows what the
loop changes: the ramp policy on the same seeds without the loop, with it but ignoring clip
interest, and with it (``--json``: the ramp policy's object gets ``clip_loop``).

``register(subparsers)`` adds the ``policy`` command to the ``ace`` command's argparse
subparsers; ``python -m ace.policy simulate ...`` runs the same thing standalone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

from ace.policy import policy_names
from ace.policy.metrics import CLIP_LOOP_METRICS, METRICS, Summary, clip_loop_summary, evaluate, summarize
from ace.policy.simulator import ROOMS_PER_H, SimOptions, run_clip_loop, run_many

log = logging.getLogger("ace.policy")

DEFAULT_OUT = Path("data") / "policy"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``policy`` (with its ``simulate`` subcommand) to an argparse subparsers object."""
    p = subparsers.add_parser("policy", help="traffic-ramp policy: simulate a day of live rooms and compare policies")
    sub = p.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    add_simulate(sub)
    return p


def add_simulate(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = SimOptions()
    s = subparsers.add_parser(
        "simulate",
        help="run every policy over seeded simulated days and print the metrics",
        description="Run the ramp policy, the baselines and the hindsight oracle over seeded simulated days; "
        "print mean and spread of each metric over seeds, and write PNG plots.",
    )
    s.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    s.add_argument("--seeds", type=int, default=5, help="number of seeds: seed, seed+1, ... (default 5)")
    s.add_argument("--rooms", type=int, default=d.rooms, help=f"rooms per {ROOMS_PER_H:g} h of the day; a longer day has proportionally more (default {d.rooms})")
    s.add_argument("--hours", type=float, default=d.hours, help=f"length of the day in hours, e.g. 24 for a full day (default {d.hours:g})")
    s.add_argument("--policies", default=",".join(policy_names()), help="comma-separated policies (default: all)")
    s.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for the plots (default {DEFAULT_OUT})")
    s.add_argument("--no-plots", action="store_true", help="do not write plots")
    s.add_argument("--json", action="store_true", help="print the table as JSON: one object per policy with its metrics by name")
    s.add_argument("--check", action="store_true", help="exit with status 1 when the ramp policy misses a target")
    s.add_argument("--no-clip-loop", action="store_true",
                   help="simulate days without the clip loop (published clips whose views and clicks bring viewers back; "
                        "on by default) and skip the table of what it changes")
    s.set_defaults(func=simulate_command)
    return s


def simulate_command(args: argparse.Namespace) -> int:
    """Handler of ``ace policy simulate``; returns the exit status."""
    from ace.policy import POLICIES

    names = [n.strip().lower() for n in str(args.policies).split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown or not names:
        print(f"unknown policies: {', '.join(unknown) or '(none given)'}; valid names: {', '.join(POLICIES)}", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.rooms < 1 or args.hours <= 0:
        print("--seeds and --rooms must be at least 1 and --hours positive", file=sys.stderr)
        return 2
    loop = not getattr(args, "no_clip_loop", False)
    opts = replace(SimOptions(), rooms=int(args.rooms), hours=float(args.hours), clip_loop=loop)
    seeds = list(range(int(args.seed), int(args.seed) + int(args.seeds)))
    t0 = time.perf_counter()
    traces = _run(names, seeds, opts, quiet=bool(args.json))
    per_seed = evaluate(traces)
    summary = summarize(per_seed)
    clips = None
    if loop and "ramp" in names:
        clips = clip_loop_summary(run_clip_loop(seeds, opts, with_loop=traces["ramp"]))
    elapsed = time.perf_counter() - t0
    files: list[Path] = []
    if not args.no_plots:
        from ace.policy.plots import write_plots

        files = write_plots(traces, args.out)
    if args.json:
        print(json.dumps(to_json(summary, seeds, opts, clips), indent=2, ensure_ascii=False))
    else:
        print_table(summary, seeds, opts, elapsed)
        if clips is not None:
            print_clip_loop(clips, seeds)
        for f in files:
            print(f"plot: {f}")
    missed = [m.name for m in METRICS if summary.get("ramp", {}).get(m.name) is not None and summary["ramp"][m.name].passed is False]
    if missed:
        log.info("ramp policy misses: %s", ", ".join(missed))
    return 1 if (args.check and missed) else 0


def _run(names, seeds, opts, quiet: bool):
    if quiet:
        return run_many(names, seeds, opts)
    from rich.progress import Progress

    with Progress(transient=True, console=_console(stderr=True)) as progress:
        task = progress.add_task("simulating", total=len(names) * len(seeds))

        def tick(name: str, seed: int) -> None:
            progress.update(task, advance=1, description=f"seed {seed}: {name}")

        traces = run_many(names, seeds, opts, progress=tick)
    return traces


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output gets a wide table instead of rich's 80-column default
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=width)


def _cell(metric, s: Summary, n: int) -> str:
    if s.mean is None or (isinstance(s.mean, float) and math.isnan(s.mean)):
        return "–"
    if math.isinf(s.mean):
        return "never" if s.mean > 0 else "-inf"
    text = metric.fmt.format(s.mean)
    if n > 1 and s.std is not None and math.isfinite(s.std) and s.std > 0:
        text += " ± " + metric.fmt.format(s.std).lstrip("+")
    return text


def print_table(summary: dict[str, dict[str, Summary]], seeds, opts: SimOptions, elapsed: float) -> None:
    """The metrics as a rich table: one row per metric, one column per policy, then the ramp
    policy's target and whether it is met."""
    from rich.table import Table

    names = list(summary)
    table = Table(
        title=f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), {opts.rooms} rooms per {ROOMS_PER_H:g} h ({opts.total_rooms()} in the day), "
        f"{opts.hours:g} h, tick {opts.tick_s:g} s — mean ± std over seeds",
        title_justify="left",
    )
    table.add_column("metric", style="bold")
    for n in names:
        table.add_column(n, justify="right", style="cyan" if n == "ramp" else None)
    table.add_column("target (ramp)", justify="right")
    table.add_column("met", justify="center")
    for m in METRICS:
        row = [m.label] + [_cell(m, summary[n][m.name], len(seeds)) for n in names]
        passed = summary.get("ramp", {}).get(m.name)
        ok = "" if passed is None or passed.passed is None else ("[green]yes[/green]" if passed.passed else "[red]no[/red]")
        table.add_row(*row, m.target_text(), ok)
    con = _console()
    con.print(table)
    con.print(f"{elapsed:.1f} s")


def print_clip_loop(clips: dict[str, dict[str, Summary]], seeds) -> None:
    """What the clip loop changes, as a rich table: one row per metric, one column per run of the
    ramp policy (without the loop, with it but ignoring clip interest, with it)."""
    from rich.table import Table

    table = Table(title=f"clip loop: the ramp policy on the same {len(seeds)} seeds — mean ± std over seeds",
                  title_justify="left")
    table.add_column("metric", style="bold")
    for v in clips:
        table.add_column(v, justify="right", style="cyan" if v == "with loop" else None)
    for m in CLIP_LOOP_METRICS:
        table.add_row(m.label, *[_cell(m, clips[v][m.name], len(seeds)) for v in clips])
    _console().print(table)


def _num(x: float) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def to_json(summary: dict[str, dict[str, Summary]], seeds, opts: SimOptions,
            clips: dict[str, dict[str, Summary]] | None = None) -> list[dict]:
    """The table as JSON-ready objects: one per policy, ``metrics`` by name with ``mean``,
    ``std`` and per-seed ``values`` (non-finite numbers become null; a highlight never ramped
    counts as infinitely slow, so such means are null), plus ``target`` and ``met`` for the ramp
    policy; with ``clips`` (:func:`~ace.policy.metrics.clip_loop_summary`) the ramp policy's object
    also has ``clip_loop``: each run's metrics in the same form."""
    out = []
    for name, per in summary.items():
        metrics = {}
        for m in METRICS:
            s = per[m.name]
            entry = {"mean": _num(s.mean), "std": _num(s.std), "values": [_num(v) for v in s.values]}
            if name == "ramp" and m.target is not None:
                entry["target"] = {"op": m.target[0], "value": m.target[1], "check": m.check}
                entry["met"] = s.passed
            metrics[m.name] = entry
        obj = {"policy": name, "seeds": list(seeds), "rooms": opts.rooms, "rooms_total": opts.total_rooms(), "hours": opts.hours,
               "clip_loop_on": bool(opts.clip_loop), "metrics": metrics}
        if name == "ramp" and clips is not None:
            obj["clip_loop"] = {v: {m.name: {"mean": _num(per_v[m.name].mean), "std": _num(per_v[m.name].std),
                                             "values": [_num(x) for x in per_v[m.name].values]} for m in CLIP_LOOP_METRICS}
                                for v, per_v in clips.items()}
        out.append(obj)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m ace.policy``."""
    parser = argparse.ArgumentParser(prog="python -m ace.policy", description="ACE traffic-ramp policy tools")
    sub = parser.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    add_simulate(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))
