"""``ace bench``: the bare steps and the full pipeline measured side by side in one process.

Steps, in order, on the same show: the analysis decode alone (video tap and audio tap), speech
recognition alone on the same audio, then the whole pipeline (which runs both, the detectors,
fusion and clip cutting). The figure that matters is the ratio of the pipeline to the slower bare
step: it says how much the pipeline adds beyond the unavoidable work. Peak memory is the largest
resident set of this process plus its children (ffmpeg), sampled every 50 ms. Clip cutting is
measured on a 30 s clip from the middle of the show, fast and exact, with the exact clip's first
and last frames compared against the source to count how many frames off its edges are.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from ace import media
from ace.config import Settings


class PeakMemory:
    """Samples RSS of this process and its children in a thread; ``peak`` in bytes. Processes in
    ``exclude`` (Popen objects or pids, a list that may grow while sampling) are not counted.

    RSS counts a shared page (a library many processes map) once in every process that maps it.
    With ``pss_every`` (seconds) the proportional set size is summed too, every so often (reading it
    costs more), into ``peak_pss``: each shared page split among its processes, so the machine's
    memory counts once."""

    def __init__(self, interval: float = 0.05, exclude: list | None = None, pss_every: float | None = None):
        self.interval = interval
        self.exclude = exclude if exclude is not None else []
        self.pss_every = pss_every
        self.peak = 0
        self.peak_pss = 0
        self._pss_at = -float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list:
        me = psutil.Process()
        skip = {getattr(p, "pid", p) for p in self.exclude}
        return [me] + [c for c in me.children(recursive=True) if c.pid not in skip]

    def _sample(self) -> int:
        procs = self._processes()
        total = 0
        for c in procs:
            try:
                total += c.memory_info().rss
            except psutil.Error:
                pass
        if self.pss_every is not None and time.monotonic() - self._pss_at >= self.pss_every:
            self._pss_at = time.monotonic()
            pss = 0
            for c in procs:
                try:
                    pss += getattr(c.memory_full_info(), "pss", 0)
                except psutil.Error:
                    pass
            self.peak_pss = max(self.peak_pss, pss)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def _timed(fn: Callable, *args, **kwargs):
    t = time.perf_counter()
    with PeakMemory() as mem:
        value = fn(*args, **kwargs)
    return value, time.perf_counter() - t, mem.peak


def edge_offsets(src: str, clip: str, start: float, end: float, fps: float) -> tuple[int, int]:
    """How many frames the clip's first and last frames are from the planned edges (0 = exact;
    99 when a frame could not be read). See :func:`ace.evaluation.boundaries.frame_offsets`."""
    from ace.evaluation.boundaries import frame_offsets

    r = frame_offsets(src, clip, start, end, fps)
    return (99 if r["first"] is None else r["first"]), (99 if r["last"] is None else r["last"])


def run_bench(
    settings: Settings,
    input_path: str | None = None,
    events_path: str | None = None,
    duration: float = 360.0,
    progress: Callable[[str], None] | None = None,
    lang: str = "en",
) -> dict:
    """The batch pipeline's speed on one show (default: the sample show in ``lang``; the Mandarin
    one carries its product list, so its product segments and ad-wording checks are timed too)."""
    from ace.clipper import plan_clip
    from ace.pipeline import ShowPipeline
    from ace.signals import Transcriber
    from ace.types import Moment

    say = progress or (lambda _m: None)
    products = []
    if input_path is None:
        from ace.products.catalog import parse_products
        from samples.show import make_sample_show

        say(f"making the {lang} sample show (once) ...")
        show = make_sample_show(settings.data_dir / "samples", duration=duration, lang=lang)
        input_path, events_path = str(show.video), str(show.events)
        products = parse_products(show.load_truth().get("products", []), "sample show products")
    info = media.probe(input_path)
    d = info.duration
    report: dict = {
        "input": str(input_path),
        "duration_s": round(d, 2),
        "video": f"{info.width}x{info.height} {info.fps:.2f} fps {info.video_codec}",
        "model": settings.model,
        "language": settings.language or "auto",
        "beam_size": settings.beam_size,
        "cpu_count": os.cpu_count(),
    }
    pipe = ShowPipeline(settings)
    say(f"device {pipe.device}")
    report["device"] = "/".join(pipe.device)

    def decode_all() -> int:
        n = 0
        for _t, _f in media.iter_frames(input_path, fps=settings.analysis_fps, width=settings.analysis_width):
            n += 1
        return n

    say("1/4 bare analysis decode ...")
    frames, t_video, m_video = _timed(decode_all)
    audio, t_audio, m_audio = _timed(media.read_audio, input_path, 16000)
    decode_s = t_video + t_audio
    report["decode"] = {"seconds": round(decode_s, 2), "video_s": round(t_video, 2), "audio_s": round(t_audio, 2), "frames": frames, "realtime": round(d / decode_s, 1), "peak_mb": round(max(m_video, m_audio) / 2**20)}

    say("2/4 bare speech recognition ...")
    model, t_load, _ = _timed(pipe.model)
    transcriber = Transcriber(model, beam_size=settings.beam_size, language=settings.language)
    sentences, t_asr, m_asr = _timed(transcriber.transcribe, audio, 0.0)
    report["speech"] = {"seconds": round(t_asr, 2), "model_load_s": round(t_load, 2), "sentences": len(sentences), "realtime": round(d / t_asr, 1), "peak_mb": round(m_asr / 2**20)}
    del audio

    say("3/4 full pipeline ...")
    with tempfile.TemporaryDirectory(prefix="ace-bench-") as tmp:
        result, t_pipe, m_pipe = _timed(pipe.process, input_path, tmp, events_path, products=products)
        if not result.ok:
            raise RuntimeError(f"pipeline failed on {input_path}: {result.error}")
        analysis_s = t_pipe - result.timings.get("clip", 0.0)
        slower = max(decode_s, t_asr)
        report["pipeline"] = {
            "seconds": round(t_pipe, 2),
            "analysis_s": round(analysis_s, 2),
            "clip_s": round(result.timings.get("clip", 0.0), 2),
            "moments": len(result.moments),
            "product_segments": len(result.segments),
            "ad_words": len(result.ad_words),
            "realtime": round(d / t_pipe, 1),
            "peak_mb": round(m_pipe / 2**20),
            "ratio_to_slower_bare_step": round(t_pipe / slower, 2),
            "analysis_ratio_to_slower_bare_step": round(analysis_s / slower, 2),
            "timings": {k: round(v, 2) for k, v in result.timings.items()},
        }

        say("4/4 clip cuts (30 s from the middle) ...")
        start = max(0.0, d / 2 - 15.0) + 0.37  # deliberately not on a frame or keyframe boundary
        end = min(d, start + 30.0)
        cuts = {}
        for mode in ("fast", "exact"):
            m = Moment("bench", start, end, 1.0, (start + end) / 2)
            plan = plan_clip(m, mode, info)
            dst = Path(tmp) / f"cut-{mode}.mp4"
            fn = media.cut_fast if mode == "fast" else media.cut_exact
            (a, b), secs, _ = _timed(fn, input_path, plan.start, plan.end, str(dst))
            row = {"seconds": round(secs, 3), "start": round(a, 3), "end": round(b, 3), "planned": [round(plan.start, 3), round(plan.end, 3)]}
            if mode == "exact" and info.fps > 0:
                first, last = edge_offsets(input_path, str(dst), plan.start, plan.end, info.fps)
                row["first_frame_offset"] = first
                row["last_frame_offset"] = last
            cuts[mode] = row
        # the same 30 s as a publish-ready short: 9:16 following the subject, then with burned captions
        from ace.clipper import render_clip
        from ace.types import ClipPlan

        for key, burn in (("vertical", False), ("vertical+captions", True)):
            clip, secs, _ = _timed(render_clip, input_path, ClipPlan("bench", start, end, "exact"), Path(tmp) / key,
                                   sentences, fmt="vertical", burn_captions=burn)
            out = media.probe(clip.path)
            cuts[key] = {"seconds": round(secs, 3), "start": round(clip.start, 3), "end": round(clip.end, 3),
                         "planned": [round(start, 3), round(end, 3)], "size": f"{out.width}x{out.height}",
                         "over_exact": round(secs / max(cuts["exact"]["seconds"], 1e-9), 2)}
        report["cuts"] = cuts
    report["targets"] = {
        "pipeline_realtime>=20": report["pipeline"]["realtime"] >= 20,
        "ratio<=1.5": report["pipeline"]["ratio_to_slower_bare_step"] <= 1.5,
        "peak_memory<=3GB": report["pipeline"]["peak_mb"] <= 3072,
        "exact_cut_30s<=3s": cuts["exact"]["seconds"] <= 3.0,
        "exact_edges_within_1_frame": abs(cuts["exact"].get("first_frame_offset", 99)) <= 1 and abs(cuts["exact"].get("last_frame_offset", 99)) <= 1,
    }
    return report


def print_report(r: dict, console) -> None:
    from ace.console import Col, IdTable

    # a row a step, its name whole; the notes fold (and a console too narrow gets a line a step)
    t = IdTable(f"ace bench — {Path(r['input']).name}, {r['duration_s']:.0f} s, {r['video']}, {r['model']} beam {r['beam_size']} on {r['device']}",
                [Col("step", id=True), Col("wall s", justify="right"), Col("× real time", justify="right"),
                 Col("peak MB", justify="right"), Col("notes", min_width=20)])
    dec, sp, pl = r["decode"], r["speech"], r["pipeline"]
    t.add_row("analysis decode (bare)", f"{dec['seconds']:.2f}", f"{dec['realtime']:.1f}", str(dec["peak_mb"]), f"video {dec['video_s']:.2f} s ({dec['frames']} frames), audio {dec['audio_s']:.2f} s")
    t.add_row("speech recognition (bare)", f"{sp['seconds']:.2f}", f"{sp['realtime']:.1f}", str(sp["peak_mb"]), f"{sp['sentences']} sentences; model load {sp['model_load_s']:.2f} s")
    t.add_row("full pipeline", f"{pl['seconds']:.2f}", f"{pl['realtime']:.1f}", str(pl["peak_mb"]), f"{pl['moments']} moments; analysis {pl['analysis_s']:.2f} s, clips {pl['clip_s']:.2f} s")
    t.add_row("pipeline / slower bare step", f"{pl['ratio_to_slower_bare_step']:.2f}", "", "", f"analysis only: {pl['analysis_ratio_to_slower_bare_step']:.2f}")
    for mode, c in r["cuts"].items():
        note = f"planned {c['planned'][0]:.2f}–{c['planned'][1]:.2f}, got {c['start']:.2f}–{c['end']:.2f}"
        if "first_frame_offset" in c:
            note += f"; edges off by {c['first_frame_offset']} / {c['last_frame_offset']} frames"
        if "size" in c:
            note += f"; {c['size']}, {c['over_exact']:.1f}× the exact cut's time"
        t.add_row(f"30 s clip, {mode}", f"{c['seconds']:.2f}", "", "", note)
    t.print(console)
    for k, ok in r["targets"].items():
        console.print(f"  {'[green]met' if ok else '[red]missed'}[/]  {k}")
