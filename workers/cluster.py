"""Starting or joining Ray, the same way for every ACE command.

A local instance gets a fixed number of CPUs (the machine's unless told otherwise), a temp folder
under ACE's data folder (or a short one under the system temp folder when that path would be too
long for Ray's unix sockets), no usage reporting, and no dashboard unless asked for.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("ace.workers")

_MAX_SOCKET_PREFIX = 40  # Ray appends ~65 characters; unix socket paths stop at 107


def ray_temp_dir(data_dir: Path) -> str:
    preferred = (Path(data_dir) / "ray").resolve()
    if len(str(preferred)) <= _MAX_SOCKET_PREFIX:
        return str(preferred)
    return str(Path(tempfile.gettempdir()) / f"ace-ray-{os.getuid()}")


def init_ray(address: str | None = None, num_cpus: int | None = None, data_dir: Path | str = "data", dashboard: bool = False, quiet: bool = True):
    """``ray.init`` for ACE: join ``address`` (or ``RAY_ADDRESS``) when given, else start locally."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"logging_level": logging.WARNING if quiet else logging.INFO, "log_to_driver": not quiet}
    if address:
        kwargs["address"] = address
    else:
        temp = ray_temp_dir(Path(data_dir))
        Path(temp).mkdir(parents=True, exist_ok=True)
        kwargs.update(
            # "local": always a new instance, never the cluster that a `ray start` (e.g. `ace serve`)
            # left recorded in the temp folder
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=dashboard,
            _temp_dir=temp,
        )
    return ray.init(**kwargs)


def worker_logging() -> None:
    """With ``ACE_LOG_LEVEL`` set (DEBUG, INFO, ...), log ACE's messages from an actor at that level
    to its worker log, which the Ray dashboard shows per actor (unset: warnings only, Python's default)."""
    level = os.environ.get("ACE_LOG_LEVEL", "").upper()
    ace_log = logging.getLogger("ace")
    if not isinstance(logging.getLevelName(level), int) or ace_log.handlers:  # unset or unknown
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ace_log.addHandler(handler)
    ace_log.setLevel(level)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
