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
    tenant: str = "default"
    show_id: str | None = None  #: None: derived from the path
    moments: str | None = None  #: a moments.json to cut instead of finding moments (ace triage's)
    products: list[dict] | None = None  #: the show's product list (``ace.products.catalog`` objects)


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
    from ace.products.catalog import parse_products
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
    products = parse_products(job.products, "products") if job.products else []
    result = ShowPipeline(settings).process(job.path, out_root, job.events, progress=progress, store=store,
                                            tenant=job.tenant, show_id=job.show_id, moments_path=job.moments, products=products)
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


def fetch_recording(url: str, dest: Path, settings: Settings, timeout_s: float = 3600.0) -> Path:
    """Copy a recorded show at an http(s) URL into ``dest`` with ffmpeg (no re-encoding), every
    request going through ACE's address guard (:mod:`ace.netguard`), so the URL — or a playlist
    behind it — cannot reach loopback, private or metadata addresses."""
    import subprocess

    from ace.errors import InputError, MediaError
    from ace.live.ingest import redact
    from ace.netguard import GuardProxy, check_url, guarded_input_options

    check_url(url, allow=settings.url_allowlist)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with GuardProxy(settings.url_allowlist) as proxy:
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *guarded_input_options("http", proxy.url),
               "-protocol_whitelist", "http,https,tcp,tls,crypto,httpproxy", "-rw_timeout", "30000000",
               "-i", url, "-map", "0", "-c", "copy", "-f", "mp4", str(dest)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise MediaError(f"fetching {redact(url)} took over {timeout_s:.0f} s") from None
    if proc.returncode != 0 or not dest.is_file() or dest.stat().st_size == 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise InputError(f"cannot fetch {redact(url)}: {' / '.join(tail) or 'ffmpeg failed'}")
    return dest


def user_error(exc: BaseException, doing: str) -> str:
    """What a user is shown of a failure: ACE's own errors say what is wrong in a sentence; anything
    else is a fault of ACE's, named but not shown as a traceback (the worker's log has it)."""
    from ace.errors import AceError

    if isinstance(exc, AceError):
        return str(exc)
    log.error("%s failed", doing, exc_info=exc)
    return f"{doing} failed because of an internal error ({type(exc).__name__}); the worker's log has the details"


def run_job_item(item: dict, key: str, out_root: str, settings: Settings, board, tenant: str, show_id: str) -> ShowResult:
    """One item of a back-office batch job (runs inside a Ray worker): a file from the media folder,
    or an http(s) URL fetched first; processed as the tenant's show ``show_id``."""
    from ace.live.ingest import redact
    from workers.cluster import node_work_dir

    if not Path(out_root).is_absolute():  # in this node's own folder
        out_root = str(node_work_dir(settings) / out_root)
    path = item.get("path")
    if item.get("url"):
        if board is not None:
            board.update.remote(key, "fetch", 0, 1)
        try:
            path = str(fetch_recording(item["url"], Path(out_root) / "source" / f"{show_id}.mp4", settings))
        except Exception as exc:  # noqa: BLE001 - the job shows why
            if board is not None:
                board.update.remote(key, "failed", 1, 1)
            return ShowResult(show_id=show_id, path=redact(item["url"]), ok=False, error=user_error(exc, "fetching the recording"))
    return _process_show(Job(path, None, tenant, show_id), key, out_root, settings, board)