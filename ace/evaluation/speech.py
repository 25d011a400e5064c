"""Speech recognition on real recordings: error rates per model, whole clip vs live windows.

For every installed model (:func:`models.registry.installed_models`, or the names given) and every
clip set in the data folder that the model can speak:

* ``en`` — ``speech/en/*.{ogg,flac,wav}`` with a ``.txt`` transcript beside each (the FLEURS
  sentences and jfk.flac): word error rate after Whisper's English normaliser (lower case, no
  punctuation, numbers and spellings made standard), over the whole set (total edits / total words);
* ``zh`` — ``speech/zh/*`` (AISHELL-1): character error rate after Whisper's basic normaliser
  with spaces removed and traditional characters made simplified (Whisper writes either).

Each clip is transcribed twice: whole, as batch processing does, and the way the live pipeline hears
a stream — fed in 2 s segments to :class:`~ace.signals.speech.LiveTranscriber` with its default
windows — so the cost of live chunking shows as ``live_penalty`` (points of error rate; target ≤ 1).
Then every clip of the set is heard live at once through one recogniser that batches the windows of
all of them, as the live speech pool does (``live_batched``); ``batched_same_words`` says whether that
gave the very same words and timings as one window at a time.
Speed is the real-time multiple of the whole-clip pass (seconds of audio per second of work).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

from ace import media
from ace.signals.speech import LiveTranscriber, Transcriber, words_of
from ace.types import Word

log = logging.getLogger("ace.evaluation.speech")

AUDIO_EXT = (".ogg", ".flac", ".wav", ".mp3", ".opus", ".m4a")
#: live segments fed to the live transcriber (the ingest writes segments of about this length)
LIVE_SEGMENT_S = 2.0
#: the most live chunking may add to the error rate, in points
LIVE_PENALTY_MAX = 1.0


def find_clips(data_dir: Path, language: str) -> list[tuple[Path, str]]:
    """``(audio, reference text)`` for every clip of ``speech/<language>/`` that has a transcript."""
    folder = Path(data_dir) / "speech" / language
    if not folder.is_dir():
        return []
    out = []
    for audio in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_EXT):
        ref = audio.with_suffix(".txt")
        if ref.is_file():
            out.append((audio, ref.read_text(encoding="utf-8").strip()))
    return out


class Normaliser:
    """Text normalisation as Whisper's evaluations do it (the ``whisper-normalizer`` package)."""

    def __init__(self) -> None:
        try:
            from whisper_normalizer.basic import BasicTextNormalizer
            from whisper_normalizer.english import EnglishTextNormalizer
        except ImportError as e:  # pragma: no cover - an extra
            raise ImportError("ace eval needs whisper-normalizer: pip install 'ace[eval]'") from e
        self._en = EnglishTextNormalizer()
        self._basic = BasicTextNormalizer()
        self._t2s = None
        try:
            import opencc

            self._t2s = opencc.OpenCC("t2s")
        except ImportError:  # pragma: no cover - an extra
            log.warning("opencc is not installed: traditional characters count as errors in Chinese")

    def __call__(self, text: str, language: str) -> str:
        if language == "en":
            return self._en(text)
        text = self._basic(text)
        if language == "zh":
            if self._t2s is not None:
                text = self._t2s.convert(text)
            text = re.sub(r"\s+", "", text)
        return text


def error_rate(refs: Sequence[str], hyps: Sequence[str], unit: str) -> float:
    """Corpus error rate (total edits / total reference units) of ``unit`` "word" or "char"."""
    import jiwer

    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    if not pairs:
        return float("nan")
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    return float(jiwer.wer(refs, hyps) if unit == "word" else jiwer.cer(refs, hyps))


def transcribe_live(transcriber: Transcriber, audio, segment_s: float = LIVE_SEGMENT_S,
                    context_s: float | None = None) -> tuple[list[Word], dict]:
    """Words of ``audio`` heard the live way: segment by segment through a LiveTranscriber
    (``context_s``: the encoder's window, as the live pipeline sets it for the model)."""
    live = LiveTranscriber(transcriber, context_s=context_s)
    step = max(1, int(segment_s * 16000))
    words: list[Word] = []
    for i in range(0, audio.size, step):
        words.extend(live.feed(audio[i : i + step]))
    words.extend(live.flush())
    return words, {"decodes": live.decodes, "audio_decoded_s": live.audio_decoded}


class _StreamWindows:
    """A live stream's side of the speech pool: the voice filter runs here, and only windows with
    speech go to the shared recogniser, with their speech chunks."""

    def __init__(self, shared, beam_size: int):
        self.shared, self.beam_size = shared, beam_size

    def _transcribe_one(self, audio, offset: float, progress=None, context_s: float | None = None) -> list:
        from ace.signals.speech import speech_chunks

        chunks = speech_chunks(audio)
        if not chunks:
            return []
        return self.shared._transcribe_one(audio, offset, None, context_s=context_s, speech=chunks,
                                           beam_size=self.beam_size)


def transcribe_live_batched(model, audios: Sequence, language: str | None, context_s: float | None,
                            batch: int = 16, beam_size: int = 1) -> tuple[list[list[Word]], dict]:
    """Every audio as a live stream at once, through one recogniser that batches the windows of all
    of them (:class:`~ace.signals.batching.SharedTranscriber`), as the live speech pool does."""
    import threading

    from ace.signals.batching import SharedTranscriber

    shared = SharedTranscriber(model, beam_size=beam_size, language=language, batch=batch)
    out: list[list[Word]] = [[] for _ in audios]
    failed: list[BaseException] = []

    def one(i: int) -> None:
        try:
            out[i] = transcribe_live(_StreamWindows(shared, beam_size), audios[i], context_s=context_s)[0]
        except BaseException as e:  # noqa: BLE001 - raised below
            failed.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(audios))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stats = shared.stats() or {}
        shared.close()
    if failed:
        raise failed[0]
    return out, stats


def _text(words: Sequence[Word], language: str) -> str:
    sep = "" if language == "zh" else " "
    return sep.join(w.text for w in words)


def evaluate_model(model_name: str, data_dir: Path, settings=None, languages: Sequence[str] = ("en", "zh")) -> dict:
    """Error rates and speed of one model on every clip set it can speak."""
    from ace.config import Settings
    from models.registry import BUNDLED, live_context_s, load_whisper

    s = settings or Settings()
    spec = BUNDLED.get(model_name)
    multilingual = spec.multilingual if spec else not model_name.endswith(".en")
    t0 = time.perf_counter()
    model = load_whisper(model_name, device="cpu" if s.device == "auto" else s.device, compute_type=s.compute_type,
                         cpu_threads=s.cpu_threads or 0, cache_dir=s.cache_dir)
    load_s = time.perf_counter() - t0
    norm = Normaliser()
    out: dict = {"model": model_name, "load_s": round(load_s, 2), "sets": {}}
    for lang in languages:
        clips = find_clips(data_dir, lang)
        if not clips:
            continue
        if lang != "en" and not multilingual:
            out["sets"][lang] = {"skipped": f"{model_name} speaks English only"}
            continue
        tr = Transcriber(model, beam_size=s.beam_size, language=lang if multilingual else None)
        unit = "word" if lang == "en" else "char"
        refs, whole, live, rows, audios, live_words = [], [], [], [], [], []
        audio_s = whole_s = live_s = decoded_s = 0.0
        for path, ref in clips:
            audio = media.read_audio(path)
            seconds = audio.size / 16000
            t = time.perf_counter()
            w = _text(words_of(tr.transcribe(audio)), lang)
            t_whole = time.perf_counter() - t
            t = time.perf_counter()
            lw, stats = transcribe_live(tr, audio, context_s=live_context_s(model_name, s.live_speech_context_s))
            t_live = time.perf_counter() - t
            lv = _text(lw, lang)
            audios.append(audio)
            live_words.append(lw)
            r, w_n, l_n = norm(ref, lang), norm(w, lang), norm(lv, lang)
            refs.append(r)
            whole.append(w_n)
            live.append(l_n)
            audio_s += seconds
            whole_s += t_whole
            live_s += t_live
            decoded_s += stats["audio_decoded_s"]
            rows.append({
                "clip": path.name,
                "seconds": round(seconds, 2),
                "whole": round(error_rate([r], [w_n], unit), 4),
                "live": round(error_rate([r], [l_n], unit), 4),
                "live_windows": stats["decodes"],
                "text": w,
            })
        # the same live windows, every clip at once through one batching recogniser
        t = time.perf_counter()
        ctx = live_context_s(model_name, s.live_speech_context_s)
        bw, bstats = transcribe_live_batched(model, audios, tr.language, ctx, beam_size=s.beam_size)
        t_batched = time.perf_counter() - t
        batched = [norm(_text(w, lang), lang) for w in bw]
        e_whole, e_live = error_rate(refs, whole, unit), error_rate(refs, live, unit)
        out["sets"][lang] = {
            "metric": "wer" if unit == "word" else "cer",
            "clips": len(clips),
            "audio_s": round(audio_s, 1),
            "whole": round(e_whole, 4),
            "live": round(e_live, 4),
            "live_penalty": round(100 * (e_live - e_whole), 2),
            "live_batched": round(error_rate(refs, batched, unit), 4),
            # word for word, with the same timings, as one window at a time
            "batched_same_words": [[(w.start, w.end, w.text) for w in x] for x in bw]
            == [[(w.start, w.end, w.text) for w in x] for x in live_words],
            "batched_realtime": round(audio_s / t_batched, 1) if t_batched else None,
            "batched_mean_decoder_batch": (bstats.get("generate") or {}).get("mean_batch"),
            "realtime": round(audio_s / whole_s, 1) if whole_s else None,
            "live_realtime": round(audio_s / live_s, 1) if live_s else None,
            "live_audio_decoded": round(decoded_s / audio_s, 2) if audio_s else None,
            "rows": rows,
        }
        log.info("%s %s: %s whole %.3f live %.3f", model_name, lang, unit, e_whole, e_live)
    return out


def evaluate_speech(data_dir: Path, models: Sequence[str] | None = None, settings=None) -> dict:
    """:func:`evaluate_model` for each model (default: every installed bundled model), with a
    summary of the live-chunking target (each set's ``live_penalty`` ≤ 1 point)."""
    from models.registry import installed_models

    names = list(models) if models else installed_models()
    results, errors = [], {}
    for name in names:
        try:
            results.append(evaluate_model(name, Path(data_dir), settings))
        except Exception as e:  # one model's failure (e.g. not installed) must not hide the others
            log.warning("speech evaluation of %s failed: %s", name, e)
            errors[name] = f"{type(e).__name__}: {e}"
    penalties = [st["live_penalty"] for r in results for st in r["sets"].values() if "live_penalty" in st]
    batched = [st["batched_same_words"] for r in results for st in r["sets"].values() if "batched_same_words" in st]
    return {
        "models": results,
        "errors": errors,
        "summary": {
            "max_live_penalty": max(penalties) if penalties else None,
            "live_target_met": bool(penalties) and max(penalties) <= LIVE_PENALTY_MAX,
            # sets whose words changed when their clips' windows were batched together (target 0)
            "batched_differing_sets": sum(not same for same in batched) if batched else None,
        },
    }
