"""PNG plots of simulated days (matplotlib, drawn without pyplot so no global state changes).

* :func:`plot_allocations` — share of the pool over time for a few sample rooms, highlight
  episodes shaded, the ramp policy against the hindsight oracle.
* :func:`plot_highlight_ramp` — allocation around highlight onsets, relative to the onset tick,
  median over highlights, one line per policy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ace.policy.simulator import Trace

log = logging.getLogger("ace.policy")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def sample_rooms(tr: Trace, k: int = 6) -> list[int]:
    """Rooms worth looking at: the most promoted honest rooms, one with many highlights, one that
    arrived during the day, and a fake-engagement room."""
    w = tr.world
    honest = np.flatnonzero(~w.fake)
    total = tr.alloc.sum(axis=0)
    picks: list[int] = [int(i) for i in honest[np.argsort(-total[honest])][: max(1, k - 3)]]
    if w.highlights.size:
        rooms, counts = np.unique(w.highlights[:, 0].astype(int), return_counts=True)
        for r in rooms[np.argsort(-counts)]:
            if int(r) not in picks:
                picks.append(int(r))
                break
    late = np.flatnonzero((w.arrive_tick > 0) & ~w.fake)
    if late.size:
        r = int(late[np.argmax(total[late])])
        if r not in picks:
            picks.append(r)
    fakes = np.flatnonzero(w.fake)
    if fakes.size:
        picks.append(int(fakes[np.argmax(total[fakes])]))
    return picks[:k]


def plot_allocations(tr: Trace, path: str | Path, reference: Trace | None = None, rooms: Sequence[int] | None = None) -> Path:
    """Share of the pool over time for ``rooms`` (default: :func:`sample_rooms`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = tr.world
    rooms = list(rooms) if rooms is not None else sample_rooms(tr)
    fig = _figure(11, 1.7 * max(len(rooms), 1) + 0.6)
    minutes = tr.t / 60.0
    for row, i in enumerate(rooms):
        ax = fig.add_subplot(len(rooms), 1, row + 1)
        live = tr.live[:, i]
        share = np.where(live, tr.alloc[:, i] / tr.plan, np.nan)
        ax.step(minutes, 100 * share, where="post", color="tab:blue", lw=1.3, label=tr.policy)
        if reference is not None:
            ref = np.where(live, reference.alloc[:, i] / reference.plan, np.nan)
            ax.step(minutes, 100 * ref, where="post", color="0.45", lw=0.9, ls="--", label=reference.policy)
        for room, onset, end, _lift, det, _d in w.highlights:
            if int(room) == i:
                ax.axvspan(onset / 60.0, end / 60.0, color="tab:orange" if det else "0.85", alpha=0.3, lw=0)
        kind = "fake engagement" if w.fake[i] else f"quality {w.quality[i]:.2f}"
        ax.set_ylabel("% of pool", fontsize=8)
        ax.set_title(f"room {i} ({kind}; live {w.arrive_tick[i] * w.dt / 60:.0f}-{w.leave_tick[i] * w.dt / 60:.0f} min)", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.set_xlim(minutes[0], minutes[-1] + w.dt / 60.0)
        if row == 0:
            ax.legend(fontsize=7, loc="upper right")
    fig.axes[-1].set_xlabel("minutes (shaded: highlight episodes; grey: not detected by ACE)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def highlight_profile(tr: Trace, before: int = 4, after: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Allocation around detected highlight onsets relative to the mean of the two ticks before
    the onset tick: ticks, and the 25th, 50th and 75th percentile over highlights (rooms with no
    allocation before the onset left out)."""
    w, dt = tr.world, tr.world.dt
    rel = np.arange(-before, after + 1)
    rows = []
    for room, onset, _end, _lift, det, _d in w.highlights:
        if not det:
            continue
        i, k0 = int(room), int(onset // dt)
        if k0 - before < 0 or k0 + after >= w.T:
            continue
        base = float(tr.alloc[k0 - 2 : k0, i].mean())
        if base <= 0 or not tr.live[k0 - before : k0 + after + 1, i].all():
            continue
        rows.append(tr.alloc[k0 + rel, i] / base)
    if not rows:
        nan = np.full(rel.size, np.nan)
        return rel, nan, nan, nan
    arr = np.asarray(rows)
    q25, q50, q75 = np.percentile(arr, [25, 50, 75], axis=0)
    return rel, q25, q50, q75


def plot_highlight_ramp(traces: dict[str, Trace], path: str | Path) -> Path:
    """Median allocation around highlight onsets (relative to just before), one line per policy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(8, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    dt = next(iter(traces.values())).world.dt if traces else 30.0
    for name, tr in traces.items():
        rel, q25, q50, q75 = highlight_profile(tr)
        x = rel * dt / 60.0
        lw = 2.2 if name == "ramp" else 1.1
        ax.plot(x, q50, lw=lw, label=name)
        if name == "ramp" and not np.isnan(q50).all():
            ax.fill_between(x, q25, q75, alpha=0.15)
    ax.axhline(2.0, color="0.4", lw=0.8, ls=":")
    ax.axvline(0.0, color="0.4", lw=0.8)
    ax.text(0.05, 2.05, "2x", fontsize=8, color="0.3")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    ax.yaxis.set_major_locator(FixedLocator([0.25, 0.5, 1, 2, 4, 8, 16]))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("minutes from the tick of highlight onset", fontsize=9)
    ax.set_ylabel("allocation / allocation before onset (median)", fontsize=9)
    ax.set_title("Ramp after detected highlights (band: ramp policy, 25-75%)", fontsize=10)
    ax.legend(fontsize=8)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_plots(traces: dict[str, Sequence[Trace]], out_dir: str | Path) -> list[Path]:
    """The standard plots for the first seed of ``traces`` into ``out_dir``; returns the files.
    Without matplotlib, logs a warning and writes nothing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: no plots")
        return []
    out = Path(out_dir)
    first = {name: trs[0] for name, trs in traces.items() if trs}
    files = []
    if "ramp" in first:
        files.append(plot_allocations(first["ramp"], out / "allocation_over_time.png", reference=first.get("oracle")))
    if first:
        files.append(plot_highlight_ramp(first, out / "ramp_after_highlights.png"))
    return files
