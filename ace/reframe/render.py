"""Render a clip in another shape: one ffmpeg pass that crops along the camera path, fits the shots
that cannot be cropped over a blurred copy of themselves, and burns captions in.

The camera path (:class:`~ace.reframe.path.CropPlan`) reaches ffmpeg as a ``sendcmd`` script that
moves the ``crop`` filter's window whenever its left edge changes, so the crop stays inside ffmpeg
and costs no more than a plain re-encode. Fitted shots come from a second branch (the frame scaled to
the output's width, over a blurred and zoomed copy) laid over the crop only while they play.
Captions are an ASS file burned by libass at the end of the chain.

The command runs in a private temporary folder that holds the script and the captions, so no path
from outside ever appears inside the filter graph.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ace import media
from ace.errors import InputError, MediaError
from ace.reframe.path import CropPlan

log = logging.getLogger("ace.reframe")

#: x264 settings of reframed clips (every frame is re-encoded; the preset of exact cuts' edges).
PRESET = media.EXACT_PRESET
CRF = 20
#: Blur of the fitted shots' background: drawn at 1/BLUR_SCALE of the output's size.
BLUR_SCALE = 4
BLUR_RADIUS = 6


def _sendcmd_script(plan: CropPlan) -> str:
    """Commands moving the crop window: one line whenever its left edge changes."""
    lines = []
    last = None
    for i, x in enumerate(plan.xs):
        if x != last:
            # a hair before the frame's own time, so the frame shown at i / fps gets it
            at = max(0.0, (i - 0.5) / plan.fps)
            lines.append(f"{at:.4f} crop@cam x {x};")
            last = x
    return "\n".join(lines) + "\n"


def _between(spans: list[tuple[float, float]]) -> str:
    return "+".join(f"between(t,{a:.4f},{b - 0.0001:.4f})" for a, b in spans)


def filter_graph(plan: CropPlan, captions: str | None = None, script: str = "cmds.txt") -> str:
    """The ``-filter_complex`` graph for ``plan`` (output pad ``[v]``); ``captions`` is a filter
    such as ``ass=filename=captions.ass`` applied last."""
    ow, oh = plan.out_w, plan.out_h
    scale = "" if (plan.crop_w, plan.crop_h) == (ow, oh) else f",scale={ow}:{oh}:flags=bicubic"
    tail = f",{captions}" if captions else ""
    x0 = plan.xs[0] if plan.xs else 0
    crop = f"sendcmd=f={script},crop@cam=w={plan.crop_w}:h={plan.crop_h}:x={x0}:y={plan.y}:exact=1{scale}"
    bw, bh = max(2, ow // BLUR_SCALE // 2 * 2), max(2, oh // BLUR_SCALE // 2 * 2)
    fit = (f"scale={bw}:{bh}:force_original_aspect_ratio=increase,crop={bw}:{bh},"
           f"boxblur={BLUR_RADIUS}:2,scale={ow}:{oh}[bg];"
           "{fg_in}scale=" f"{ow}:{oh}:force_original_aspect_ratio=decrease[fg];"
           "[bg][fg]overlay=(W-w)/2:(H-h)/2")
    if plan.as_is:
        return f"[0:v]null{tail},setsar=1[v]" if captions else "[0:v]null,setsar=1[v]"
    if not plan.fit:
        return f"[0:v]{crop},setsar=1{tail}[v]"
    whole = len(plan.fit) == 1 and plan.fit[0][0] <= 0 and plan.fit[0][1] * plan.fps >= len(plan.xs) - 0.5
    if whole:
        return "[0:v]split=2[b0][f0];[b0]" + fit.format(fg_in="[f0]") + f",setsar=1{tail}[v]"
    return ("[0:v]split=3[c0][b0][f0];"
            f"[c0]{crop},setsar=1[trk];"
            "[b0]" + fit.format(fg_in="[f0]") + ",setsar=1[fit];"
            f"[trk][fit]overlay=0:0:enable='{_between(plan.fit)}'{tail}[v]")


def render(src: str | os.PathLike, dst: str | os.PathLike, plan: CropPlan, ass_file: str | os.PathLike | None = None,
           *, preset: str = PRESET, crf: int = CRF) -> float:
    """Write ``src`` (a short clip) reframed by ``plan`` to the MP4 ``dst``, with the captions of
    the ASS file ``ass_file`` burned in when given. Audio is copied. Returns the seconds spent.

    MediaError when ffmpeg fails; ``dst`` is then not written.
    """
    began = time.perf_counter()
    src_p = Path(os.fspath(src)).resolve()
    if not src_p.is_file():
        raise InputError(f"no such file: {src}")
    dst_p = Path(os.fspath(dst)).absolute()
    info = media.probe(src_p)
    with tempfile.TemporaryDirectory(prefix=".ace-reframe-", dir=dst_p.parent) as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "cmds.txt").write_text(_sendcmd_script(plan), encoding="ascii")
        captions = None
        if ass_file is not None:
            shutil.copyfile(ass_file, tmpdir / "captions.ass")
            from ace.subtitles import burn_filter

            captions = burn_filter("captions.ass")
        graph = filter_graph(plan, captions)
        (tmpdir / "graph.txt").write_text(graph, encoding="utf-8")
        out = tmpdir / "out.mp4"
        cmd = [media.ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-i", "file:" + str(src_p), "-filter_complex_script", "graph.txt", "-map", "[v]"]
        if info.has_audio:
            cmd += ["-map", "0:a:0?", "-c:a", "copy"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "file:" + str(out)]
        log.debug("reframe: %s (graph: %s)", " ".join(cmd), graph)
        proc = subprocess.run(cmd, cwd=tmpdir, stdin=subprocess.DEVNULL, capture_output=True)
        if proc.returncode != 0:
            raise MediaError(f"reframing {src_p.name} failed (exit {proc.returncode})",
                             proc.stderr.decode("utf-8", "replace")[-4000:], proc.returncode)
        os.replace(out, dst_p)
    seconds = time.perf_counter() - began
    log.info("reframed %s to %s %dx%d (%d fitted spans%s) in %.2fs", src_p.name, plan.fmt, plan.out_w,
             plan.out_h, len(plan.fit), ", captions" if ass_file else "", seconds)
    return seconds
