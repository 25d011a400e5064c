"""Publish-ready shapes for clips: vertical (9:16) and square crops that follow the subject, and
captions burned into the picture.

:func:`reframe_clip` turns a cut clip (an MP4 from :func:`ace.clipper.render_clip`) into its final
shape in three steps: :func:`~ace.reframe.detect.scan` finds faces and cuts in sampled frames,
:func:`~ace.reframe.path.plan_crop` plans the virtual camera, and :func:`~ace.reframe.render.render`
runs one ffmpeg pass. Detection uses dlib, imported only when a clip is actually reframed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ace.reframe.path import ASPECTS, FORMATS, CropPlan, check_format, inside_share, jitter, plan_crop

__all__ = ["FORMATS", "ASPECTS", "CropPlan", "Reframed", "check_format", "inside_share", "jitter",
           "plan_crop", "reframe_clip"]


@dataclass(frozen=True, slots=True)
class Reframed:
    """What :func:`reframe_clip` did: the plan, its size, and the seconds spent scanning and
    rendering."""

    plan: CropPlan
    scan_seconds: float
    render_seconds: float
    captions: int = 0


def reframe_clip(src: str | os.PathLike, dst: str | os.PathLike, fmt: str = "vertical",
                 sentences: Sequence = (), clip_start: float = 0.0, burn_captions: bool = False) -> Reframed:
    """Write the clip ``src`` to ``dst`` in ``fmt`` (one of :data:`FORMATS`), with the captions of
    ``sentences`` (source time; the clip starts at ``clip_start`` of the source) burned in when
    ``burn_captions``. ``fmt="source"`` keeps the frame and only burns captions; a clip without
    video is copied as it is."""
    from ace import media
    from ace.reframe.detect import Scan, scan
    from ace.reframe.render import render

    check_format(fmt)
    began = time.perf_counter()
    info = media.probe(src)
    sc = Scan(width=info.width, height=info.height, fps=info.fps or 30.0, duration=info.duration)
    if not info.has_video:  # nothing to reshape or to draw on
        plan = plan_crop(sc, "source")
        shutil.copyfile(src, dst)
        return Reframed(plan, time.perf_counter() - began, 0.0, 0)
    if fmt != "source":
        sc = scan(str(src))
    plan = plan_crop(sc, fmt)
    scanned = time.perf_counter() - began
    ass = None
    n_captions = 0
    dst = Path(os.fspath(dst))
    try:
        if burn_captions:
            from ace.subtitles import write_ass

            ass = dst.with_name(f".{dst.name}.captions.ass")
            n_captions = write_ass(sentences, clip_start, clip_start + sc.duration, ass, plan.out_w, plan.out_h)
        seconds = render(src, dst, plan, ass if n_captions else None)
    finally:
        if ass is not None:
            ass.unlink(missing_ok=True)
    return Reframed(plan, scanned, seconds, n_captions)
