"""Batch reprocessing of recorded shows: one Ray task per show, progress through a small actor.

:class:`ProgressBoard` is a plain class (tested without Ray) that tasks report to;
``ray.remote(ProgressBoard)`` is declared once here. :func:`run_batch` submits every show, polls
the board for the caller's progress display, and returns every show's
:class:`~ace.types.ShowResult` in input order; a show that fails (bad file, or even a crashed
worker) becomes a failed result, never an exception that loses the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ace.config import Settings
from ace.types import ShowResult

log = logging.getLogger("ace.workers")


@dataclass(frozen=True)
class Job:
    path: str
    events: str | None = None


#: progress of every job: {job key: {stage: (done, total)}}
Snapshot = dict[str, dict[str, tuple[float, float]]]


class ProgressBoard:
    """Latest progress per job and stage (``video``, ``speech``, ``clips``, ``done``/``failed``)."""

    def __init__(self):
        self._state: Snapshot = {}

    def update(self, key: str, stage: str, done: float, total: float) -> None:
        self._state.setdefault(key, {})[stage] = (float(done), float(total))

    def snapshot(self) -> Snapshot:
        return {k: dict(v) for k, v in self._state.items()}


def fraction(stages: dict[str, tuple[float, float]]) -> float:
    """One number in [0, 1] for a job's progress: analysis (video and speech) is 90%, clips 10%."""
    if "done" in stages or "failed" in stages:
        return 1.0

    def frac(stage: str) -> float:
        done, total = stages.get(stage, (0.0, 0.0))
        return min(1.0, done / total) if total > 0 else 0.0

    return 0.45 * frac("video") + 0.45 * frac("speech") + 0.10 * frac("clips")


def _process_show(job: Job, key: str, out_root: str, settings: Settings, board) -> ShowResult:
    """Runs inside a Ray worker."""
    from ace.pipeline import ShowPipeline
    from ace.store import Store

    def progress(stage: str, done: float, total: float) -> None:
        if board is not None:
            board.update.remote(key, stage, done, total)

    store = None
    try:
        store = Store(settings.db_url)
        store.create_all()
    except Exception as exc:  # the clips still get made; the summary says why nothing was stored
        log.warning("store unavailable: %s", exc)
        store = None
    result = ShowPipeline(settings).process(job.path, out_root, job.events, progress=progress, store=store)
    if store is None:
        result.warnings.append("results were not saved to the database (store unavailable)")
    progress("done" if result.ok else "failed", 1, 1)
    return result


def job_keys(jobs: Sequence[Job]) -> list[str]:
    return [f"{i}:{Path(j.path).name}" for i, j in enumerate(jobs)]


def run_batch(
    jobs: Sequence[Job],
    out_root: str | os.PathLike,
    settings: Settings,
    address: str | None = None,
    num_cpus: int | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
    poll_s: float = 0.5,
    dashboard: bool = False,
) -> list[ShowResult]:
    """Process ``jobs`` in parallel as Ray tasks; results in input order."""
    import ray

    from workers.cluster import init_ray

    init_ray(address, num_cpus=num_cpus, data_dir=settings.data_dir, dashboard=dashboard)
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    parallel = max(1, min(len(jobs), int(cpus)))
    # each show's speech recognition gets an equal share of the cores
    threads = settings.cpu_threads or max(1, int(cpus) // parallel)
    task_settings = settings.model_copy(update={"cpu_threads": threads})
    Board = ray.remote(num_cpus=0)(ProgressBoard)
    board = Board.remote()
    task = ray.remote(num_cpus=min(1.0, cpus / parallel), max_retries=0)(_process_show)
    keys = job_keys(jobs)
    refs = [task.remote(j, k, str(out_root), task_settings, board) for j, k in zip(jobs, keys)]
    pending = set(refs)
    while pending:
        _done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll_s)
        pending -= set(_done)
        if on_progress is not None:
            try:
                on_progress(ray.get(board.snapshot.remote(), timeout=5))
            except ray.exceptions.GetTimeoutError:
                pass
    results = []
    for job, ref in zip(jobs, refs):
        try:
            results.append(ray.get(ref))
        except ray.exceptions.RayError as exc:
            results.append(ShowResult(show_id="", path=job.path, ok=False, error=f"worker failed: {exc}"))
    if on_progress is not None:
        on_progress(ray.get(board.snapshot.remote()))
    ray.kill(board)
    return results
