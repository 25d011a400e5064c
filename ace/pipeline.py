"""One show, end to end: probe → analysis taps → detectors → fusion → clips → files and store.

:class:`ShowPipeline` holds what is worth loading once (the speech model) and processes shows one
at a time; Ray workers hold one each. Video decoding (an ffmpeg process feeding the visual
detector in a thread) runs while speech recognition runs in the calling thread, so a show takes
about as long as the slower of the two.

>>> from ace.pipeline import ShowPipeline
>>> result = ShowPipeline().process("show.mp4", "out/")          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ace import media
from ace.clipper import plan_clip, render_clip
from ace.config import Settings, get_settings
from ace.errors import AceError, InputError, MediaError, NoStreamError
from ace.events import load_events
from ace.fusion import FusionOptions, Timeline, find_moments
from ace.products.adwords import AdWordChecker, hits_in
from ace.products.catalog import product_to_dict, tag_events
from ace.products.segments import find_segments
from ace.signals.chat import MIN_CHAT, chat_series
from models.scorer import model_for
from ace.signals import AudioDetector, InteractionDetector, SpeechDetector, Transcriber, VisualDetector
from ace.types import AdWordHit, Clip, ClipPlan, Event, MediaInfo, Moment, Product, ProductSegment, Sentence, ShowResult, Signal, to_dict

log = logging.getLogger("ace.pipeline")

#: progress callback: (stage, seconds of show done, show duration)
Progress = Callable[[str, float, float], None]

#: clips cut at once (each cut already runs its edges, middle and audio as parallel ffmpeg runs)
CLIP_WORKERS = 2
_CLIP_FILE = re.compile(r"^[0-9a-f]{12}\.(mp4|srt|jpg)$")


def slug(name: str, limit: int = 48) -> str:
    """A safe folder name: letters, digits, '-', '_' and '.', never starting with '.' or '-'."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")
    return (s[:limit] or "show").strip("-._") or "show"


def show_id_for(path: str | os.PathLike) -> str:
    """A stable id from the file's name and content (size, first and last MiB): the same show gives
    the same id wherever it lies."""
    p = Path(path)
    h = hashlib.sha1()
    size = p.stat().st_size
    h.update(str(size).encode())
    with p.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return f"{slug(p.stem, 32)}-{h.hexdigest()[:8]}"


def fusion_options(settings: Settings) -> FusionOptions:
    return FusionOptions(high=settings.threshold, low=min(settings.threshold * 0.55, settings.threshold - 0.05), clip_min=settings.clip_min, clip_max=settings.clip_max)


def settings_hash(settings: Settings, events_digest: str = "") -> str:
    keys = ("model", "beam_size", "language", "analysis_fps", "analysis_width", "clip_min", "clip_max", "clip_mode", "clip_format", "burn_captions", "threshold", "keywords",
            "top", "scorer", "ad_words")
    blob = json.dumps({k: getattr(settings, k) for k in keys} | {"events": events_digest}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class Analysis:
    """Everything analysis learned about a show, before clips are cut."""

    show_id: str
    info: MediaInfo
    sentences: list[Sentence]
    signals: list[Signal]
    cuts: list[float]
    moments: list[Moment]
    timeline: Timeline
    events: list[Event] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    scorer: str = ""  #: what the highlight model used was fitted on
    products: list[Product] = field(default_factory=list)
    segments: list[ProductSegment] = field(default_factory=list)  #: each product's pitch (see ace.products)
    ad_words: list[AdWordHit] = field(default_factory=list)


class ShowPipeline:
    """Processes recorded shows with one loaded speech model."""

    def __init__(self, settings: Settings | None = None, model=None):
        self.settings = settings or get_settings()
        self._model = model
        self._lock = threading.Lock()

    # -- resources ---------------------------------------------------------------------------

    @property
    def device(self) -> tuple[str, str]:
        from models.registry import detect_device

        return detect_device(self.settings.device, self.settings.compute_type)

    def model(self):
        with self._lock:
            if self._model is None:
                from models.registry import load_whisper_from_settings

                self._model = load_whisper_from_settings(self.settings)
            return self._model

    def transcriber(self) -> Transcriber:
        from models.registry import speech_parallelism

        s = self.settings
        _, workers = speech_parallelism(self.device[0], s.cpu_threads, s.speech_workers)
        return Transcriber(self.model(), beam_size=s.beam_size, language=s.language, workers=workers)

    # -- analysis ----------------------------------------------------------------------------

    def analyse(self, path: str | os.PathLike, events_path: str | os.PathLike | None = None, progress: Progress | None = None,
                show_id: str | None = None, tenant: str | None = None, products: Sequence[Product] = (),
                ad_words: Sequence[str] | None = None) -> Analysis:
        """Run every detector over one show and fuse their evidence into moments; with
        ``products``, find each product's pitch too. Ad-wording phrases (``ad_words``, default
        the setting) are looked for in the transcript."""
        s = self.settings
        path = str(path)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        info = _probe_show(path)
        if not info.has_audio:
            raise NoStreamError(f"{path}: no audio track (ACE needs the show's sound for speech and loudness)")
        show_id = show_id or show_id_for(path)
        timings["probe"] = time.perf_counter() - t0
        scorer = model_for(s.scorer, s.data_dir, tenant)  # a bad --scorer fails before any decoding

        warnings: list[str] = []
        events: list[Event] = []
        if events_path is not None:
            loaded = load_events(events_path)
            events = loaded.events
            warnings.extend(f"{Path(events_path).name}: {w}" for w in loaded.warnings)
            if products:
                events, unknown = tag_events(events, products)
                warnings.extend(unknown)
            late = [e for e in events if e.t > info.duration + 1]
            if late:
                warnings.append(f"{len(late)} events lie after the end of the show ({info.duration:.1f} s) and were ignored")
                events = [e for e in events if e.t <= info.duration + 1]

        # audio tap (fast) ---------------------------------------------------------------------
        t = time.perf_counter()
        audio = media.read_audio(path, sr=16000)
        timings["audio_decode"] = time.perf_counter() - t
        audio_seconds = audio.size / 16000
        if audio_seconds < min(info.duration, 1.0) * 0.5 or audio_seconds < info.duration - 2.0:
            raise MediaError(f"{path}: audio decodes only to {audio_seconds:.1f} s of {info.duration:.1f} s (truncated or corrupt file)")

        # video tap + visual detector, in a thread ----------------------------------------------
        visual = VisualDetector(fps=s.analysis_fps)
        vis_signals: list[Signal] = []
        vis_state: dict = {"last_t": 0.0, "error": None}
        hwaccel = "cuda" if self.device[0] == "cuda" else None

        def run_visual() -> None:
            t1 = time.perf_counter()
            try:
                for ft, frame in media.iter_frames(path, fps=s.analysis_fps, width=s.analysis_width, hwaccel=hwaccel):
                    vis_signals.extend(visual.process_frame(ft, frame))
                    vis_state["last_t"] = ft
                    if progress is not None and visual.frames % 16 == 0:
                        progress("video", ft, info.duration)
                vis_signals.extend(visual.flush())
            except BaseException as exc:  # re-raised in the calling thread
                vis_state["error"] = exc
            timings["video_decode"] = time.perf_counter() - t1

        thread = threading.Thread(target=run_visual, name="ace-visual", daemon=True)
        thread.start()

        # audio loudness -------------------------------------------------------------------------
        audio_det = AudioDetector()
        signals: list[Signal] = list(audio_det.process_audio(0.0, audio))
        signals.extend(audio_det.flush())

        # speech ---------------------------------------------------------------------------------
        t = time.perf_counter()
        transcriber = self.transcriber()
        sentences = transcriber.transcribe(audio, 0.0, progress=(lambda x: progress("speech", x, info.duration)) if progress else None)
        timings["transcribe"] = time.perf_counter() - t
        del audio
        speech = SpeechDetector(keywords=s.keywords)
        signals.extend(speech.process_sentences(sentences))

        # interaction: chat goes to the highlight model when there is enough of it, the rest
        # (likes, gifts, carts, orders, ...) to the interaction detector ------------------------
        chats = [e for e in events if e.kind == "chat"]
        chat = chat_series(chats, info.duration) if len(chats) >= MIN_CHAT else None
        inter = InteractionDetector()
        signals.extend(inter.process_events([e for e in events if e.kind != "chat"] if chat is not None else events, now=info.duration))
        signals.extend(inter.flush(info.duration))

        thread.join()
        if vis_state["error"] is not None:
            raise vis_state["error"]
        if visual.frames == 0 or vis_state["last_t"] < info.duration - max(2.0, 3.0 / s.analysis_fps):
            raise MediaError(f"{path}: video decodes only to {vis_state['last_t']:.1f} s of {info.duration:.1f} s (truncated or corrupt file)")
        signals.extend(vis_signals)
        if progress is not None:
            progress("video", info.duration, info.duration)

        t = time.perf_counter()
        moments, timeline = find_moments(show_id, signals, info.duration, sentences, visual.cuts, fusion_options(s),
                                         chat=chat, model=scorer, top=s.top)
        timings["fuse"] = time.perf_counter() - t
        t = time.perf_counter()
        segments = find_segments(show_id, products, sentences, visual.cuts, events)
        hits = AdWordChecker(self.settings.ad_words if ad_words is None else ad_words).find(sentences)
        timings["products"] = time.perf_counter() - t
        return Analysis(show_id, info, sentences, signals, list(visual.cuts), moments, timeline, events, warnings, timings,
                        scorer.trained_on, list(products), segments, hits)

    def given(self, path: str | os.PathLike, moments_path: str | os.PathLike, progress: Progress | None = None,
              show_id: str | None = None) -> Analysis:
        """The moments of a moments file, planned for this show (:mod:`ace.cutlist`): only their
        own few seconds of audio are decoded and transcribed."""
        from ace import cutlist

        path = str(path)
        t0 = time.perf_counter()
        info = _probe_show(path)
        show_id = show_id or show_id_for(path)
        wanted = cutlist.load_moments(moments_path, show_id)
        if not wanted:
            raise InputError(f"{moments_path}: no moments to cut")
        transcriber = self.transcriber() if info.has_audio else None
        done = [0]

        def heard(a: float, b: float) -> list[Sentence]:
            if transcriber is None:
                return []
            sents = transcriber.transcribe(cutlist.audio_window(path, a, b), a)
            done[0] += 1
            if progress is not None:
                progress("speech", done[0], len(wanted))
            return sents

        moments, sentences, warnings = cutlist.plan(wanted, info, heard, fusion_options(self.settings))
        if not moments:
            raise InputError(f"{moments_path}: none of its {len(wanted)} moments lies within the show ({info.duration:.1f} s)")
        if progress is not None:
            progress("video", info.duration, info.duration)
        timings = {"plan": time.perf_counter() - t0}
        return Analysis(show_id, info, sentences, [], [], moments, cutlist.empty_timeline(info.duration), [], warnings, timings)

    # -- whole show ----------------------------------------------------------------------------

    def process(
        self,
        path: str | os.PathLike,
        out_root: str | os.PathLike,
        events_path: str | os.PathLike | None = None,
        progress: Progress | None = None,
        store=None,
        tenant: str = "default",
        show_id: str | None = None,
        moments_path: str | os.PathLike | None = None,
        products: Sequence[Product] = (),
    ) -> ShowResult:
        """Analyse a show and cut its clips into ``out_root/<show>/``. Never raises for bad input:
        the result says what went wrong. ``tenant`` owns the store rows; ``show_id`` replaces the
        id derived from the path (the back office gives each job its own). With ``moments_path``
        (a moments.json, e.g. from ``ace triage``) nothing is detected: those moments are cut.
        With ``products`` each product's pitch is found and cut as ``clips/<product>-<n>.mp4``."""
        path = str(path)
        started = time.perf_counter()
        name = slug(Path(path).stem)
        result = ShowResult(show_id="", path=path, ok=False, out_dir=str(Path(out_root) / name))
        try:
            if not Path(path).is_file():
                raise InputError(f"no such file: {path}")
            if Path(path).stat().st_size == 0:
                raise MediaError(f"{path}: empty file (zero bytes)")
            result.show_id = show_id or show_id_for(path)
            events_digest = _file_digest(events_path) if events_path else ""
            if moments_path:
                events_digest += ":moments:" + _file_digest(moments_path)
            if products:
                events_digest += ":products:" + hashlib.sha1(json.dumps([product_to_dict(p) for p in products], sort_keys=True,
                                                                        ensure_ascii=False).encode()).hexdigest()[:12]
            shash = settings_hash(self.settings, events_digest)
            if store is not None:
                store.upsert_show(result.show_id, path=path, name=name, duration=0.0, settings_hash=shash, status="running",
                                  tenant=tenant)
            if moments_path:
                analysis = self.given(path, moments_path, progress, show_id=result.show_id)
            else:
                phrases = store.ad_words_for(tenant, self.settings.ad_words) if store is not None else None
                analysis = self.analyse(path, events_path, progress, show_id=result.show_id, tenant=tenant, products=products,
                                        ad_words=phrases)
            result.duration = analysis.info.duration
            result.warnings = analysis.warnings
            result.timings = dict(analysis.timings)
            t = time.perf_counter()
            clips = self._cut(path, analysis, Path(result.out_dir), progress)
            product_clips = self._cut_products(path, analysis, Path(result.out_dir))
            result.timings["clip"] = time.perf_counter() - t
            result.moments, result.clips = analysis.moments, clips
            result.segments, result.ad_words = analysis.segments, analysis.ad_words
            self._write_json(result, analysis, shash, product_clips)
            if store is not None:
                store.upsert_show(result.show_id, path=path, name=name, duration=result.duration, settings_hash=shash, status="done",
                                  tenant=tenant)
                from ace.clipstore import publish_clip, storage_for

                # where every node and the API read them (a copy: the output folder keeps its own)
                storage = storage_for(self.settings)
                stored = [publish_clip(storage, c, tenant, result.show_id, keep_local=True) for c in clips]
                store.save_results(result.show_id, analysis.moments, stored, shash, tenant=tenant)
                stored_products = {sid: publish_clip(storage, c, tenant, result.show_id, keep_local=True)
                                   for sid, c in product_clips.items()}
                store.save_products(result.show_id, analysis.segments, stored_products, analysis.ad_words, tenant=tenant,
                                    products=analysis.products)
            result.ok = True
        except AceError as exc:
            result.error = str(exc)
        except Exception as exc:  # a bug must not take the other shows down with it
            log.exception("processing %s failed", path)
            result.error = f"internal error: {type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - started
        if not result.ok and store is not None and result.show_id:
            try:
                store.upsert_show(result.show_id, path=path, name=name, duration=result.duration, settings_hash="", status="failed",
                                  error=result.error, tenant=tenant)
            except AceError:
                log.warning("could not record the failure of %s in the store", path)
        return result

    def _cut(self, path: str, analysis: Analysis, out_dir: Path, progress: Progress | None) -> list[Clip]:
        clips_dir = out_dir / "clips"
        clips_dir.mkdir(parents=True, exist_ok=True)
        previous = _previous_clips(out_dir / "moments.json")
        keep = {m.id for m in analysis.moments}
        clips: list[Clip | None] = [None] * len(analysis.moments)
        todo: list[tuple[int, ClipPlan, float]] = []
        for i, m in enumerate(analysis.moments):
            plan = plan_clip(m, self.settings.clip_mode, analysis.info)
            old = previous.get(m.id)
            if (old and old.mode == plan.mode and old.format == self.settings.clip_format
                    and old.burned == self.settings.burn_captions and abs(old.start - plan.start) < 0.2
                    and _files_exist(out_dir, old)):
                clips[i] = old
            else:
                todo.append((i, plan, m.peak))
        done = len(analysis.moments) - len(todo)
        if progress is not None:
            progress("clips", done, len(analysis.moments))
        # two clips at a time: each cut runs several short ffmpeg processes and waits on their
        # start-up, so a second cut fills the gaps (5 clips of the sample show: 9.7 s -> 5.6 s)
        with ThreadPoolExecutor(max(1, min(CLIP_WORKERS, len(todo))), thread_name_prefix="ace-clip") as pool:
            futures = {pool.submit(render_clip, path, plan, clips_dir, analysis.sentences, peak,
                                   fmt=self.settings.clip_format, burn_captions=self.settings.burn_captions): i
                       for i, plan, peak in todo}
            for fut in as_completed(futures):
                clips[futures[fut]] = fut.result()
                done += 1
                if progress is not None:
                    progress("clips", done, len(analysis.moments))
        for f in clips_dir.iterdir():  # clips of moments that no longer exist
            if _CLIP_FILE.match(f.name) and f.stem not in keep:
                f.unlink()
        return [c for c in clips if c is not None]

    def _cut_products(self, path: str, analysis: Analysis, out_dir: Path) -> dict[str, Clip]:
        """Each product segment cut as ``clips/<product>-<n>.mp4`` (with captions and thumbnail);
        files of segments an earlier run found and this one did not are removed."""
        clips_dir = out_dir / "clips"
        clips_dir.mkdir(parents=True, exist_ok=True)
        previous = _previous_product_files(out_dir / "moments.json")
        out: dict[str, Clip] = {}
        names = {seg.id: product_clip_name(seg) for seg in analysis.segments}
        with ThreadPoolExecutor(max(1, min(CLIP_WORKERS, len(analysis.segments))), thread_name_prefix="ace-clip") as pool:
            futures = {pool.submit(render_clip, path, ClipPlan(seg.id, seg.start, min(seg.end, analysis.info.duration),
                                                               self.settings.clip_mode),
                                   clips_dir, analysis.sentences, None, names[seg.id],
                                   fmt=self.settings.clip_format, burn_captions=self.settings.burn_captions): seg.id
                       for seg in analysis.segments if seg.end > seg.start}
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
        keep = {f"{n}{ext}" for n in names.values() for ext in (".mp4", ".srt", ".jpg")}
        for name in previous - keep:
            (clips_dir / name).unlink(missing_ok=True)
        return out

    def _write_json(self, result: ShowResult, analysis: Analysis, shash: str, product_clips: dict[str, Clip] | None = None) -> None:
        out_dir = Path(result.out_dir)
        by_id = {c.moment_id: c for c in result.clips}
        moments = []
        for m in analysis.moments:
            d = to_dict(m)
            c = by_id.get(m.id)
            if c is not None:
                d["clip"] = _clip_json(c, out_dir)
            inside = hits_in(analysis.ad_words, c.start, c.end) if c is not None else hits_in(analysis.ad_words, m.start, m.end)
            if inside:
                d["ad_words"] = to_dict(inside)
            moments.append(d)
        segments = []
        for seg in analysis.segments:
            d = to_dict(seg)
            c = (product_clips or {}).get(seg.id)
            if c is not None:
                d["clip"] = _clip_json(c, out_dir)
            d["ad_words"] = to_dict(hits_in(analysis.ad_words, seg.start, seg.end))
            segments.append(d)
        doc = {
            "show_id": result.show_id,
            "source": str(Path(result.path).resolve()),
            "duration": analysis.info.duration,
            "settings_hash": shash,
            "model": self.settings.model,
            "scorer": {"setting": self.settings.scorer, "trained_on": analysis.scorer},
            "lag": analysis.timeline.lag.to_dict() if analysis.timeline.lag else None,
            "moments": moments,
            "catalog": [product_to_dict(p) for p in analysis.products],
            "products": segments,
            "ad_words": to_dict(analysis.ad_words),
            "warnings": analysis.warnings,
        }
        tmp = out_dir / ".moments.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
        tmp.replace(out_dir / "moments.json")


def product_clip_name(seg: ProductSegment) -> str:
    """``<product>-<n>``: the product's id made safe as a file name (letters of any script, digits,
    '-', '_', '.'; never starting with '.')."""
    stem = re.sub(r"[^\w.-]+", "-", seg.product, flags=re.UNICODE).strip("-.")[:64] or "product"
    return f"{stem}-{seg.n}"


def _clip_json(c: Clip, out_dir: Path) -> dict:
    return {"path": _rel(c.path, out_dir), "srt": _rel(c.srt_path, out_dir), "thumbnail": _rel(c.thumb_path, out_dir),
            "start": c.start, "end": c.end, "mode": c.mode, "format": c.format, "burned": c.burned}


def _previous_product_files(path: Path) -> set[str]:
    """The file names of the product clips an earlier run recorded in moments.json."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    out: set[str] = set()
    for seg in doc.get("products", []) if isinstance(doc, dict) else []:
        clip = seg.get("clip") if isinstance(seg, dict) else None
        for key in ("path", "srt", "thumbnail"):
            name = Path(str((clip or {}).get(key) or "")).name
            if name and not name.startswith(".") and (clip or {}).get(key, "").startswith("clips/"):
                out.add(name)
    return out


def _probe_show(path: str) -> MediaInfo:
    """What ffprobe says of a show, which must have length and a video track."""
    info = media.probe(path)
    if info.duration <= 0:
        raise MediaError(f"{path}: the show has zero length")
    if not info.has_video:
        raise NoStreamError(f"{path}: no video track (ACE cuts video clips)")
    return info


def _rel(p: str, base: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(base.resolve()))
    except ValueError:
        return p


def _file_digest(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def _previous_clips(path: Path) -> dict[str, Clip]:
    """Clips recorded by an earlier run in moments.json (to skip cutting them again)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    base = path.parent
    for m in doc.get("moments", []):
        c = m.get("clip")
        if not c:
            continue
        try:
            out[m["id"]] = Clip(m["id"], str(base / c["path"]), float(c["start"]), float(c["end"]), c["mode"], str(base / c["srt"]),
                                str(base / c["thumbnail"]), format=c.get("format", "source"), burned=bool(c.get("burned")))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _files_exist(out_dir: Path, clip: Clip) -> bool:
    return all(Path(p).is_file() and Path(p).resolve().is_relative_to(out_dir.resolve()) for p in (clip.path, clip.srt_path, clip.thumb_path))
