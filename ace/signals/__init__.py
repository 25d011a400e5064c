"""Detectors: each turns one kind of input into :class:`~ace.types.Signal` evidence in show time.

======================  ==================  ==========================================
name                    input               evidence
======================  ==================  ==========================================
``speech``              transcript          excitement (exclamations, fast speech) and
                                            ``keyword`` hits ("link is up", "秒杀", ...)
``audio``               16 kHz audio        sustained loudness over the show's baseline
``visual``              low-res grey frames scene cuts and sustained fast motion
``interaction``         audience events     engagement spikes from distinct users
======================  ==================  ==========================================

>>> from ace.signals import get_detector
>>> det = get_detector("audio")
"""

from __future__ import annotations

from ace.signals.audio import AudioDetector, AudioOptions
from ace.signals.base import Detector
from ace.signals.interaction import InteractionDetector, InteractionOptions
from ace.signals.speech import SpeechDetector, SpeechOptions, Transcriber
from ace.signals.visual import VisualDetector, VisualOptions

DETECTORS: dict[str, type[Detector]] = {
    "speech": SpeechDetector,
    "audio": AudioDetector,
    "visual": VisualDetector,
    "interaction": InteractionDetector,
}

#: every signal source name a detector can emit (``keyword`` comes from the speech detector)
SOURCES: tuple[str, ...] = ("speech", "keyword", "audio", "visual", "interaction")


def get_detector(name: str, **kwargs) -> Detector:
    """A new detector by name; an unknown name raises ValueError listing the valid ones."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}") from None
    return cls(**kwargs)


__all__ = [
    "DETECTORS",
    "SOURCES",
    "AudioDetector",
    "AudioOptions",
    "Detector",
    "InteractionDetector",
    "InteractionOptions",
    "SpeechDetector",
    "SpeechOptions",
    "Transcriber",
    "VisualDetector",
    "VisualOptions",
    "get_detector",
]
