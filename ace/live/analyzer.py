"""Causal analysis of one live stream: segments in, moments and clips out, as soon as they are final.

A :class:`LiveAnalyzer` is fed the stream's :class:`~ace.types.Segment` files in order
(:meth:`LiveAnalyzer.process_segment`) and its audience events as they arrive
(:meth:`LiveAnalyzer.push_events`). For each segment it

1. taps the segment in one pass in this process (:func:`ace.live.decode.decode_segment`, PyAV):
   its clock, 16 kHz audio and small grey frames, as :func:`ace.media.read_audio` and
   :func:`ace.media.iter_frames` give them, placed on the stream clock;
2. feeds the same detectors the batch pipeline uses, kept across segments so their baselines and
   look-aheads run on as if the stream were one file: loudness (:class:`~ace.signals.AudioDetector`),
   visual change (:class:`~ace.signals.VisualDetector`), audience spikes
   (:class:`~ace.signals.InteractionDetector`, scored up to the analysed time), and speech: audio goes
   to a :class:`~ace.signals.speech.LiveTranscriber`, whose overlapping windows commit each word once
   (a word cut at a segment boundary is heard again with what follows it), committed words become
   sentences (:func:`~ace.signals.speech.split_sentences`) for the
   :class:`~ace.signals.SpeechDetector` and for clip edges;
3. fuses the evidence of the last ``look_behind_s`` seconds (:func:`fuse_window`, the batch
   :func:`~ace.fusion.find_moments` on a sliding window) and lets each moment out once, when it
   is final or, in a room with an audience, provisionally before (:class:`MomentGate`);
4. cuts each moment's clip from the rolling buffer: the segments covering it are
   joined into one MPEG-TS file and cut like a recorded show (:func:`ace.clipper.render_clip`:
   frame-accurate ``exact`` cut, ``.srt`` captions, ``.jpg`` thumbnail), into
   ``clip_dir/<moment id>.*``, with clip times on the stream clock.

**Finality.** A moment is final when nothing the stream can still bring would change it. Its end
``E`` must be at least :func:`finality_horizon` behind the analysed time ``T``, a horizon chosen per
room from what its evidence needs::

    horizon = 2 * spread_s + settle
    settle  = max(1 s                                          audio: a second is scored when complete,
                  visual look-ahead + 1 s                      cut decisions wait for later frames,
                  interaction_lag + window_s / 2 + event_delay)  the audience reacts late

A moment's end lies at most ``spread_s`` before the end of the evidence region behind it (snapping
may pull it back that far), and the region is known to have ended once the fused score one second
later is final, which needs every source's evidence up to ``spread_s`` beyond that second. The
audience's term counts only while the room has an audience feed (:class:`AudienceFeed`): an event
of any kind whose stream time lies within ``look_behind_s`` of ``T``. A room without one (no chat
connected, or chat gone quiet) does not wait for chat that is not coming. ``event_delay`` is the
room's own: for each event pushed, how far ``T`` had already passed its stream time (0 when it had
not), over the last 200 events; the horizon uses ``max(event_delay_s, min(p90, max_event_delay_s))``
(``max_event_delay_s`` is 10 s), and the interaction detector scores a second that long after it. With
the default options the horizon is 10.5 s in a room with an audience whose events come on time,
6 s in a room without; ``LiveOptions.horizon_s`` overrides it all (and there is no provisional step
then). Speech is checked against what the transcriber has actually committed rather than a fixed
delay (its commit delay runs from ``guard`` to ``window`` seconds, up to ``max_window`` in talk
without pauses): the end must also lie ``speech_reach`` (``max(snap_window, 2 * spread_s)``, 4 s)
before the first uncommitted word, so sentence edges used for snapping and speech evidence there
are final and no edge lands inside a word that is still to come.

**Provisional moments.** The audience is the slowest source, so it alone need not hold a clip
back: a moment whose end is final with respect to every other source (``E <= min(T - provisional horizon,
speech frontier - speech_reach)``, the provisional horizon being the horizon without the audience's
term, 6 s by default) is let out at once, *provisional*: its clip is cut and published with
``state="provisional"`` (``LiveUpdate.provisional``). Once the full horizon has passed its end,
the final candidate that is the same moment (:class:`MomentGate`'s rule) settles it, under the same
id: with the same edges and peak, its clip is *confirmed* (``state="final"``, captions written again
from the transcript as it is then, the video untouched; ``LiveUpdate.confirmed``); with other edges
or peak, the clip is *replaced*: cut again under the same file names, ``revision`` + 1
(``LiveUpdate.replaced``). A provisional moment no final candidate matches any more becomes final
as it was (confirmed); it is never withdrawn, and never emitted twice. While only candidates that
are not final yet match it, it waits for them. In a room without an audience feed the two lines
are one: moments are final at once. The chat tier and product pitches are final only.

**Words on demand.** The transcriber commits words once per window (8 s), so the speech line
(``speech_reach`` before the last committed word) trails the analysed time by 5-12 s, and most
moments wait for their words rather than for the media. When a moment the last fusion found waits
only for its words (its end beyond the speech line, and far enough behind the analysed time that a
decode can bring them: ``speech_reach`` plus the guard band and half a second, or the provisional
horizon), the transcriber decodes what it holds at once (:meth:`LiveTranscriber.hurry
<ace.signals.speech.LiveTranscriber.hurry>`, ``LiveOptions.hurry_speech``): one decode more for such
a moment, none for the rest of the audio. On the 90 s sample show the first clip came 6.9 s after its
moment's end instead of 9.2 s (``stats()["speech_hurries"]`` counts them).

**Cutting ahead.** A moment's edges usually settle a few seconds before it is let out, and a cut
takes 1-4 s (more under load). So a moment whose end is within ``cut_ahead_s`` (4 s) of the line
that lets it out (the provisional line; the chat tier's line for that tier), and whose words are in
(its end behind the speech line: edges snapped to sentences still to come move, and at 8 streams 15
of the 25 clips cut ahead before that rule were cut for nothing), is cut at once in the
background, by one thread per stream, into a private folder under ``clip_dir``, and so is the final
version of a provisional moment whose edges changed, ``cut_ahead_s`` before the final line. When
the moment is let out with the same edges and peak, that clip is moved into place (captions are
written again from the transcript as it is then, which may have grown); a moment that changed or
went away is dropped and cut anew when let out. Nothing is published before it is let out. The
thread and its ffmpeg processes run at ``nice`` +10 (:data:`CUT_AHEAD_NICE`), behind analysis and
speech, which have no time to spare; while analysis is degraded nothing is cut ahead. ``stats()``
counts ``cuts_ahead_used`` and ``cuts_ahead_wasted``.

**Latency.** ``LiveUpdate.latency_s`` is the wall time from the stream reaching a moment's end to
its first clip (the provisional one, when there is one) being ready, ``final_latency_s`` to its
final clip; ``stats()`` gives ``latency_p50_s`` / ``latency_p95_s`` and ``final_latency_p50_s`` /
``final_latency_p95_s``, the horizons in effect (``horizon_s``, ``provisional_horizon_s``), whether
the room has an audience feed (``audience``) and its ``event_delay_s``, and how many clips were
published provisional, confirmed and replaced. Before provisional moments (a fixed 10.5 s horizon)
a clip came out about 10-12 s after its moment's end (p95 about 12 s), the transcriber's commit
delay included (4.4 s on average, 8 s at most on the sample show with 8 s windows).

**Chat finality: a second tier.** A room's chat also goes to the highlight model, as in batch
(:class:`~ace.live.chat.RoomChat`: a per-second chat series bounded to ``look_behind_s`` plus twice
the model's baseline, 780 s). The model reads, for second ``t``, the chat up to ``t + lag +
max(offsets) + window``, so what the chat makes strong waits longer than what is seen and heard; it
must not hold the rest back. Moments strong on the media evidence (the fusion above, the
interaction detector with its fixed ``interaction_lag`` included) are let out at the media horizon
(provisionally before, as above). In addition, with ``MIN_CHAT`` messages or more in the window,
fusion runs again with the chat's probability (noisy-OR with the media evidence; the rest of the
interaction from a detector without chat) and the gate lets out what became strong with it once its
end lies
:func:`~ace.live.chat.chat_horizon` behind ``T``::

    chat_horizon = max(horizon, 2 * spread_s + lag + max(offsets) + window + event_delay_s)

(``event_delay_s`` here is ``LiveOptions.event_delay_s``: the chat tier does not follow the room's
measured event delay.)

``lag`` is the room's own delay: its chat rate cross-correlated with its fused media evidence
(:func:`ace.lag.estimate_lag`) every 30 s of analysed time once the room has two minutes of both, the
median of the last five clear estimates; where the chat lines up with nothing (a room with only
chat), the model's prior (27 s, learned on Twitch esports chat). The chat tier starts with the
room's first estimate, two minutes plus the media horizon into the room (132 s on the sample show),
so a room that can be measured never has its moments placed by the prior; chat-tier moments that
ended before then come out at that first step.

What it costs: with the shipped model (offsets up to +20 s, 10 s windows) a chat-tier moment is
emitted ``35 s + lag`` after its end, plus up to a segment: 39 s on the 360 s sample show (its delay
measures 2-4 s), 62 s with the prior, against the media tier's horizon, whose moments are not
delayed at all (the same latency with and without the chat tier). The copy-paste counts of the last
15 s the model reads may still grow after the chat horizon (waiting for them too would add 15 s). The
chat tier takes 3-16 ms of CPU per 2 s segment at 1-20 messages a second. A chat-tier moment with no
media evidence is placed by the delay alone; one that, moved by ``lag - interaction_lag``, is a
moment already emitted (the interaction detector's take on the same burst) is not emitted again
(:func:`~ace.live.chat.echoes`). :meth:`LiveAnalyzer.stats` reports the delay (``audience_lag_s``,
``audience_lag_method``), ``chat_horizon_s`` and ``chat_moments``; each update says which tier let a
moment out (``LiveUpdate.tiers``).

Batch fusion merges a moment into a better-ranked one it overlaps; live, the first may be
emitted before the second is seen, so the second becomes its own moment, its start moved to the
first one's end when they would overlap. A moment is never emitted twice: re-running fusion over a
longer past may shift a moment's edges slightly, and a candidate whose peak lies inside an emitted
moment (or that overlaps one by half of the shorter) is the same moment (:class:`MomentGate`).

**Backpressure.** When analysis cannot keep up (the smoothed time per segment exceeds the segment's
length, or the lag behind the live edge keeps growing), the analyzer steps down one level at a time
(:data:`DEGRADE_LEVELS`): fewer analysis frames per second, then keyframes only, then speech beam 1;
it steps back up once it has room again. :meth:`LiveAnalyzer.stats` reports the level and the lag.

**Bounded memory.** Signals, words, sentences, cuts, segment records and emitted spans older than the
look-behind are dropped; the transcriber holds at most ``speech_max_window_s`` of audio; nothing
decoded outlives its segment. The room's chat is a per-second series of 780 s (9 numbers a second)
and the messages of the last half minute or so.

**Restart.** :meth:`LiveAnalyzer.state` is a small JSON-able dict (analysed time, decided time of
each tier, emitted moments' ids and spans, the ids still provisional, degrade level, the room's
delay and audience feed); a fresh analyzer given it with :meth:`LiveAnalyzer.restore` re-analyses up
to ``warmup_s`` seconds before the analysed time from the buffer (when ``segments_for`` is given)
to warm its detectors, then continues without emitting any moment the earlier run had already
decided. Moments that were provisional then are final as they were: never emitted, confirmed or
replaced again. Events pushed again before the warm-up do not count towards the room's event delay.
A state of version 1 (before provisional moments) is read too.

Stream time: ``Segment.start`` is the stream time of the segment's first video frame (a segment
muxer cuts at keyframes and lists that time). A segment's own timestamps may be anything (continuous
or reset per file): the analyzer reads where the file's audio and start lie relative to its first
video frame, so audio, frames and cuts land on the stream clock to the sample and to the frame.
Segments whose timestamps run on are joined for a cut byte for byte; segments with reset timestamps
are laid end to end by ffmpeg's concat demuxer, which keeps a clip's edges within about a frame.

Speech recognition runs in the caller's thread through the transcriber's ``_transcribe_one(audio,
offset, progress, context_s=...)`` (what :class:`~ace.signals.speech.LiveTranscriber` calls): a proxy that sends
the audio window (8-20 s of 16 kHz float32, under 1.3 MB) to a shared pool of recognisers can stand
in for a :class:`~ace.signals.speech.Transcriber`; a ``beam_size`` attribute, when it has one, is
what the ``beam-1`` level lowers.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ace import media
from ace.clipper import render_clip, write_srt
from ace.config import Settings
from ace.errors import AceError, InputError, MediaError
from ace.fusion import FusionOptions, find_moments
from ace.live.chat import RoomChat, echoes
from ace.live.decode import SegmentTimes, decode_segment, segment_times
from ace.live.finality import AudienceFeed, MomentGate, finality_horizon, same_edges, same_moment, speech_reach
from ace.pipeline import fusion_options, product_clip_name
from ace.products.adwords import AdWordChecker
from ace.products.segments import PitchTracker
from ace.signals import AudioDetector, InteractionDetector, SpeechDetector, VisualDetector
from ace.signals.interaction import InteractionOptions
from ace.signals.speech import SAMPLE_RATE, LiveTranscriber, Transcriber, split_sentences
from ace.signals.visual import VisualOptions
from ace.types import AdWordHit, Clip, ClipPlan, Event, Moment, Product, ProductSegment, Segment, Sentence, Signal, Word
from models.scorer import HighlightModel, load_model

log = logging.getLogger("ace.live.analyzer")

__all__ = [
    "DEGRADE_LEVELS",
    "STATE_VERSION",
    "AudienceFeed",
    "Backpressure",
    "LiveAnalyzer",
    "LiveOptions",
    "LiveUpdate",
    "MomentGate",
    "finality_horizon",
    "fuse_window",
    "speech_reach",
]

#: Degrade levels, in the order analysis steps down when it falls behind (and back up in reverse):
#: 0 everything; 1 fewer analysis frames per second; 2 keyframes only (the decoder skips every other
#: picture); 3 speech recognition with beam size 1 as well (a no-op when the beam already is 1).
DEGRADE_LEVELS: tuple[str, ...] = ("full", "fewer-frames", "keyframes-only", "beam-1")

#: The stages of a segment's analysis whose time :meth:`LiveAnalyzer.stats` reports.
STAGES: tuple[str, ...] = ("decode", "audio and speech", "visual", "fusion and clips")

#: Version of :meth:`LiveAnalyzer.state`'s layout (2: the room's audience feed and the ids of the
#: moments still provisional; :meth:`LiveAnalyzer.restore` reads version 1 too).
STATE_VERSION = 2
_STATE_VERSIONS = (1, 2)

#: Word endings that end a sentence (as :func:`~ace.signals.speech.split_sentences` splits).
_SENTENCE_END = (".", "!", "?", "。", "！", "？", "…")
#: A pending unfinished sentence ends when the next committed word starts this much later (seconds).
_SENTENCE_GAP = 1.0
#: ... or when it has run this long without a sentence end.
_SENTENCE_MAX = 20.0
#: Visual options at the keyframes-only level: frames are a GOP apart, so a cut is decided on fewer
#: frames after it (the look-ahead would otherwise grow to ``cut_window`` GOPs).
_KEYFRAME_VISUAL = VisualOptions(cut_window=2)
#: Keyframes are assumed at least this often (per second) for the keyframes-only look-ahead.
_KEYFRAME_RATE = 0.5


@dataclass(frozen=True)
class LiveOptions:
    """How a :class:`LiveAnalyzer` trades latency, accuracy and cost. Times in seconds."""

    #: signals, words and cuts kept for fusion; must cover a longest clip plus the horizon
    look_behind_s: float = 180.0
    #: how far behind the analysed time a moment's end must be before it is emitted, final at once
    #: (no provisional step); None derives it per room from the fusion, interaction and visual
    #: settings and the room's audience feed (:func:`finality_horizon`: 10.5 s by default with an
    #: audience, 6 s without)
    horizon_s: float | None = None
    #: how long after stream time ``t`` the events for ``t`` may still arrive, at least (chat usually
    #: arrives before the video it reacts to; later events are counted in the next second); a room
    #: whose events arrive later waits for its own delay (:class:`~ace.live.finality.AudienceFeed`)
    event_delay_s: float = 1.0
    #: ... up to this much
    max_event_delay_s: float = 10.0
    #: start cutting a moment's clip in the background once its end is this close to being let out
    #: (seconds of analysed time), so the clip is ready when the moment is; 0 cuts only at once
    cut_ahead_s: float = 4.0
    #: when a moment is settled on every source but speech, decode the transcriber's buffer at once
    #: instead of at its next full window (:meth:`~ace.signals.speech.LiveTranscriber.hurry`)
    hurry_speech: bool = True
    #: ... only while the analysis trails the live edge by less than this (seconds)
    hurry_max_lag_s: float = 2.0
    #: the live transcriber's window, guard band, pause that makes a safe break, and longest window
    #: (:class:`~ace.signals.speech.LiveTranscriber`)
    speech_window_s: float = 8.0
    speech_guard_s: float = 1.0
    speech_min_gap_s: float = 0.25
    speech_max_window_s: float = 20.0
    #: seconds of audio the speech encoder sees per window, padding included; None: the settings'
    #: ``live_speech_context_s``, else the model's measured value (:func:`models.registry.live_context_s`)
    speech_context_s: float | None = None
    #: a gap in the stream up to this long is filled with silence; a longer one restarts the audio
    #: detectors and the transcriber at the far side
    max_fill_s: float = 3.0
    #: seconds re-analysed from the buffer after :meth:`LiveAnalyzer.restore` to warm the detectors
    warmup_s: float = 60.0
    #: analysis frames per second at the ``fewer-frames`` level (never more than the settings' rate)
    reduced_fps: float = 2.0
    #: frames per second sampled at the ``keyframes-only`` level (repeats of a keyframe are dropped)
    keyframe_fps: float = 1.0
    #: the deepest degrade level allowed (0 disables degrading)
    max_level: int = len(DEGRADE_LEVELS) - 1
    #: consecutive segments over budget before stepping down one level
    degrade_after: int = 3
    #: lag behind the live edge (seconds) that counts as over budget when it is still growing
    degrade_lag_s: float = 6.0
    #: consecutive segments with room to spare before stepping back up one level
    recover_after: int = 20
    #: ... room to spare: smoothed load (analysis time / segment length) under this
    recover_load: float = 0.6
    #: ... and a lag under this
    recover_lag_s: float = 3.0
    #: weight of the newest segment in the smoothed load
    load_alpha: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.max_level < len(DEGRADE_LEVELS):
            raise ValueError(f"max_level must be 0..{len(DEGRADE_LEVELS) - 1}, not {self.max_level}")
        if self.horizon_s is not None and self.horizon_s < 0:
            raise ValueError(f"horizon_s must be >= 0, not {self.horizon_s}")
        if self.cut_ahead_s < 0:
            raise ValueError(f"cut_ahead_s must be >= 0, not {self.cut_ahead_s}")
        if not 0 <= self.event_delay_s <= self.max_event_delay_s:
            raise ValueError(f"need 0 <= event_delay_s <= max_event_delay_s, not {self.event_delay_s} and "
                             f"{self.max_event_delay_s}")
        if self.degrade_after < 1 or self.recover_after < 1:
            raise ValueError("degrade_after and recover_after must be >= 1")
        if not 0 < self.load_alpha <= 1:
            raise ValueError("load_alpha must be in (0, 1]")


# ------------------------------------------------------------------------------------------- fusion


def fuse_window(stream_id: str, signals: Iterable[Signal], sentences: Sequence[Sentence], cuts: Sequence[float],
                t0: float, t1: float, options: FusionOptions) -> list[Moment]:
    """The batch :func:`~ace.fusion.find_moments` over the stream's window ``[t0, t1]`` only.

    Everything is moved to a local clock starting at ``t0`` (a whole second, so the per-second bins
    line up with the stream's seconds), fused, and moved back: the moments carry stream times, and
    their ids derive from ``stream_id`` and those times. Evidence outside the window is left out
    (interaction evidence by where fusion places it, ``interaction_lag`` earlier)."""
    t0 = float(math.floor(t0))
    if t1 <= t0:
        return []
    local: list[Signal] = []
    for s in signals:
        at = s.t - (options.interaction_lag if s.source == "interaction" else 0.0)
        if t0 <= at < t1:
            local.append(dataclasses.replace(s, t=s.t - t0))
    if not local:
        return []
    sents = [_shift_sentence(s, -t0) for s in sentences if s.end >= t0 and s.start <= t1]
    local_cuts = [c - t0 for c in cuts if t0 <= c <= t1]
    moments, _tl = find_moments(stream_id, local, t1 - t0, sents, local_cuts, options, top=0)
    return [dataclasses.replace(m, start=round(m.start + t0, 3), end=round(m.end + t0, 3), peak=round(m.peak + t0, 2))
            for m in moments]


def _shift_sentence(s: Sentence, dt: float) -> Sentence:
    return Sentence(s.start + dt, s.end + dt, s.text,
                    tuple(Word(w.start + dt, w.end + dt, w.text, w.probability) for w in s.words))


# -------------------------------------------------------------------------------------- backpressure


class Backpressure:
    """Chooses the degrade level (an index into :data:`DEGRADE_LEVELS`) from how long segments take.

    After each segment, :meth:`observe` gets the wall seconds its analysis took, the segment's length
    and the lag behind the live edge. The load is the smoothed ratio of the two. A segment is *over
    budget* when the load exceeds 1 or the lag is over ``degrade_lag_s`` and not shrinking;
    ``degrade_after`` such segments in a row step down one level (then the count starts again, so the
    step can take effect). ``recover_after`` segments in a row with a load under ``recover_load`` and
    a lag under ``recover_lag_s`` step back up one level.
    """

    def __init__(self, options: LiveOptions | None = None, level: int = 0):
        self.o = options or LiveOptions()
        self.level = min(max(0, level), self.o.max_level)
        self.load = 0.0
        self.changes = 0
        self._seen = 0
        self._over = 0
        self._under = 0
        self._last_lag = 0.0

    def observe(self, busy_s: float, segment_s: float, lag_s: float) -> int:
        o = self.o
        ratio = busy_s / max(segment_s, 1e-3)
        self.load = ratio if self._seen == 0 else self.load + o.load_alpha * (ratio - self.load)
        self._seen += 1
        over = self.load > 1.0 or (lag_s > o.degrade_lag_s and lag_s >= self._last_lag - 1e-6)
        under = self.load < o.recover_load and lag_s < o.recover_lag_s
        self._last_lag = lag_s
        if over:
            self._over, self._under = self._over + 1, 0
        elif under:
            self._over, self._under = 0, self._under + 1
        else:
            self._over = self._under = 0
        if self._over >= o.degrade_after and self.level < o.max_level:
            self.level += 1
            self._over = 0
            self.changes += 1
        elif self._under >= o.recover_after and self.level > 0:
            self.level -= 1
            self._under = 0
            self.changes += 1
        return self.level


# ------------------------------------------------------------------------------------------ analyzer


@dataclass
class LiveUpdate:
    """What one step of a :class:`LiveAnalyzer` produced.

    ``moments`` holds the moments let out in this step — new ones, final or provisional (ids in
    ``provisional``) — and the final version of earlier provisional ones that became final (ids in
    ``confirmed`` or ``replaced``; the same id as before, whatever their edges now). ``clips`` holds
    their clips, each with its ``state`` and ``revision``. A moment id is in at most one of the three
    sets; one in none of them is final at once."""

    moments: list[Moment] = field(default_factory=list)  #: moments let out in this step, in time order
    clips: list[Clip] = field(default_factory=list)  #: their clips (a failed cut is logged and missing)
    words: list[Word] = field(default_factory=list)  #: words the transcriber committed in this step
    analysed_until: float = 0.0  #: stream time analysed so far
    lag_s: float = 0.0  #: wall seconds the analysis trails the live edge
    level: int = 0  #: degrade level (index into DEGRADE_LEVELS)
    #: ids of new moments let out *provisional*: final with respect to every source but the audience;
    #: their clips have ``state="provisional"`` and are confirmed or replaced in a later step
    provisional: set[str] = field(default_factory=set)
    #: ids of provisional moments that are final now with the same edges and peak (or that no final
    #: candidate matched any more): their clip is the provisional one, captions written again from the
    #: transcript as it is now, ``state="final"``, same ``revision`` (also when cutting it again failed)
    confirmed: set[str] = field(default_factory=set)
    #: ids of provisional moments that are final now with other edges or peak: the moment is given
    #: with its first id; its clip was cut again under the same file names, ``revision`` + 1, ``state="final"``
    replaced: set[str] = field(default_factory=set)
    #: moment id -> wall seconds from the stream reaching the moment's end to its first clip (the
    #: provisional one, when there is one) being ready; only in the step that cut that first clip
    latency_s: dict[str, float] = field(default_factory=dict)
    #: moment id -> the same for its final clip (equal to ``latency_s`` for a moment final at once)
    final_latency_s: dict[str, float] = field(default_factory=dict)
    #: moment id -> the finality line that let it out: "media" or "chat"
    tiers: dict[str, str] = field(default_factory=dict)
    #: product pitches whose end became certain in this step, and their clips by segment id
    segments: list[ProductSegment] = field(default_factory=list)
    product_clips: dict[str, Clip] = field(default_factory=dict)
    #: ad-wording phrases heard in the sentences finished in this step
    ad_words: list[AdWordHit] = field(default_factory=list)


@dataclass(frozen=True)
class _SegmentClock:
    """Where a segment file's audio and its time 0 lie relative to its first video frame (seconds)."""

    audio: float | None  # None: no audio
    origin: float  # the file's time 0 (media's clock) minus the first video frame's time; <= 0


def _clock_of(t: SegmentTimes) -> _SegmentClock:
    video = t.video if t.video is not None else t.start
    audio = None if t.audio is None else t.audio - video
    return _SegmentClock(audio, t.start - video)


def _segment_clock(path: str) -> tuple[_SegmentClock, bool]:
    """The segment's clock and whether it has video (remembered per file)."""
    t = segment_times(path)
    return _clock_of(t), t.video is not None


class LiveAnalyzer:
    """Causal analysis of one stream (see the module docstring). Not thread-safe: one caller feeds it.

    ``transcriber`` is the speech recogniser (None: no speech evidence; captions stay empty); the
    analyzer works on a shallow copy so that stepping its own beam down never touches other streams.
    ``segments_for(t0, t1)`` returns the buffer's segments covering ``[t0, t1]`` (the ingest's
    ``RollingBuffer.covering``); without it clips are cut from the segments this analyzer has seen.
    ``clock`` gives wall time (``time.time`` by default; arrival times passed to
    :meth:`process_segment` must use the same clock). ``model`` reads the room's chat (default: the
    settings' ``scorer``).
    """

    def __init__(
        self,
        stream_id: str,
        settings: Settings,
        transcriber: Transcriber | None,
        clip_dir: str | Path,
        segments_for: Callable[[float, float], list[Segment]] | None = None,
        options: LiveOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
        model: HighlightModel | None = None,
        products: Sequence[Product] = (),
        ad_words: Sequence[str] | None = None,
    ):
        self.stream_id = stream_id
        self.settings = settings
        self.o = options or LiveOptions()
        self.clip_dir = Path(clip_dir)
        self.segments_for = segments_for
        self.fusion = fusion_options(settings)
        self._clock = clock
        self._speech = copy.copy(transcriber) if transcriber is not None else None
        from models.registry import live_context_s

        ctx = self.o.speech_context_s if self.o.speech_context_s is not None else settings.live_speech_context_s
        self._context_s = live_context_s(settings.model, ctx)
        self._beam = getattr(self._speech, "beam_size", 1)
        self.pressure = Backpressure(self.o)
        self.gate = MomentGate(stream_id, min_length=max(1.0, self.fusion.clip_min / 2),
                               keep_s=self.o.look_behind_s + self.fusion.clip_max)
        self._interaction_options = InteractionOptions()
        self._frame_mode = -1
        self._visual: VisualDetector | None = None
        self._reset_detectors()
        scorer = model or load_model(settings.scorer)
        # the room's chat, its delay and the chat tier; its series reaches back the model's causal baseline
        self.chat = RoomChat(scorer, self.fusion, event_delay_s=self.o.event_delay_s, interaction=self._interaction_options,
                             history_s=self.o.look_behind_s + 2 * scorer.baseline_s)
        # whether the room has an audience to wait for, and how late its events come
        self._feed = AudienceFeed(self.o.event_delay_s, self.o.max_event_delay_s, recent_s=self.o.look_behind_s)
        longest = self.o.horizon_s if self.o.horizon_s is not None else finality_horizon(
            self.fusion, self._interaction_options, self._look_ahead(), self.o.max_event_delay_s)
        min_look = self.fusion.clip_max + 2 * self.fusion.snap_window + longest + self.o.speech_max_window_s
        if self.o.look_behind_s < min_look:
            raise ValueError(f"look_behind_s ({self.o.look_behind_s}) must cover a longest clip, the horizon and the "
                             f"transcriber's longest window: at least {min_look:.1f} s with these settings")

        self._analysed = -math.inf  # stream time analysed so far (end of the last segment)
        self._started = False
        self._closed = False
        self._warm_from: float | None = None  # set by restore(): warm up before the next segment
        self._signals: deque[Signal] = deque()
        self._sentences: deque[Sentence] = deque()
        self._pending_words: list[Word] = []
        self._segments: deque[tuple[Segment, float]] = deque()  # (segment, arrival wall time)
        self._lag = 0.0
        # statistics
        self._busy: deque[tuple[float, float]] = deque(maxlen=512)  # (busy seconds, segment seconds)
        self._candidates: list[Moment] = []  # what the last fusion found
        self._hurries = 0  # early speech decodes for moments waiting on their words
        #: where the analysis thread's time goes, per stage: [CPU seconds, wall seconds] (:meth:`stats`)
        self._stages: dict[str, list[float]] = {name: [0.0, 0.0] for name in STAGES}
        self._latencies: deque[float] = deque(maxlen=512)  # to each moment's first clip
        self._final_latencies: deque[float] = deque(maxlen=512)  # to its final clip
        self._provisional_clips: dict[str, Clip | None] = {}  # the clip of each provisional moment (None: its cut failed)
        self._n_provisional = self._n_confirmed = self._n_replaced = 0  # clips published provisional, confirmed, cut again
        self._n_segments = 0
        self._n_clips = 0
        self._clip_errors = 0
        self._cut_s: deque[float] = deque(maxlen=256)  # wall seconds each clip took to cut
        self._ahead: dict[str, _CutAhead] = {}  # clips being cut before their moment is final, by moment id
        self._cutter: ThreadPoolExecutor | None = None  # the one thread that cuts them
        self._ahead_used = 0
        self._ahead_wasted = 0
        for stale in self.clip_dir.glob(".ace-ahead-*") if self.clip_dir.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed
        self._bad_segments = 0
        self._gaps = 0
        self._words_committed = 0
        self._late_events = 0
        # product pitches (ace.products.segments) and ad-wording checks over the finished sentences
        self._pitches = PitchTracker(stream_id, products) if products else None
        self._ad_words = AdWordChecker(settings.ad_words if ad_words is None else ad_words)
        self._closed_pitches: list[ProductSegment] = []
        self._new_hits: list[AdWordHit] = []

    # -- detectors ------------------------------------------------------------------------------

    def _reset_detectors(self) -> None:
        self._audio = AudioDetector()
        self._inter = InteractionDetector(self._interaction_options)
        self._speech_det = SpeechDetector(keywords=self.settings.keywords)
        self._live: LiveTranscriber | None = None
        self._audio_t: float | None = None  # stream time of the next audio sample expected
        self._cuts: list[float] = []
        self._visual = None
        self._frame_mode = -1
        self._last_frame: np.ndarray | None = None
        self._last_frame_t = -math.inf

    def _new_transcriber(self, start: float) -> LiveTranscriber | None:
        if self._speech is None:
            return None
        o = self.o
        return LiveTranscriber(self._speech, window=o.speech_window_s, guard=o.speech_guard_s,
                               min_gap=o.speech_min_gap_s, max_window=o.speech_max_window_s, start=start,
                               context_s=self._context_s)

    def _frame_settings(self, level: int) -> tuple[float, bool | str, int]:
        """(fps, skip mode, frame mode) for a degrade level."""
        fps = float(self.settings.analysis_fps)
        if level >= 2:
            return min(fps, self.o.keyframe_fps), "nokey", 2
        if level >= 1:
            return min(fps, self.o.reduced_fps), True, 1
        return fps, True, 0

    def _ensure_visual(self, level: int) -> None:
        _fps, _skip, mode = self._frame_settings(level)
        if mode == self._frame_mode and self._visual is not None:
            return
        if self._visual is not None:  # frames change meaning: a new baseline, the cuts carry over
            self._signals.extend(self._visual.flush())
            self._cuts = list(self._visual.cuts)
        if mode == 2:
            vis = VisualDetector(_KEYFRAME_VISUAL, fps=_KEYFRAME_RATE)
        else:
            vis = VisualDetector(fps=_fps)
        vis.cuts = self._cuts
        self._visual, self._frame_mode = vis, mode
        self._last_frame = None

    # -- public API -----------------------------------------------------------------------------

    def _look_ahead(self) -> float:
        """The visual detector's look-ahead (it follows the degrade level's frame rate)."""
        if self._visual is not None:
            return self._visual.look_ahead
        return VisualOptions().cut_window / float(self.settings.analysis_fps)

    @property
    def audience(self) -> bool:
        """Whether the room has an audience feed now (an event within ``look_behind_s`` of the
        analysed time): only then does the horizon wait for the audience."""
        return self._feed.active(self._analysed)

    @property
    def event_delay_s(self) -> float:
        """How late the room's events may arrive: ``event_delay_s``, or the 90th percentile of how
        late they did arrive when that is more, up to ``max_event_delay_s``."""
        return self._feed.delay_s

    @property
    def horizon_s(self) -> float:
        """The finality horizon in effect: with the audience's term while the room has an audience
        feed (:attr:`audience`, with the room's :attr:`event_delay_s`), without it otherwise."""
        if self.o.horizon_s is not None:
            return float(self.o.horizon_s)
        return finality_horizon(self.fusion, self._interaction_options, self._look_ahead(), self.event_delay_s,
                                audience=self.audience)

    @property
    def provisional_horizon_s(self) -> float:
        """The horizon without the audience's term: a moment this far behind (and clear of the speech
        frontier) is let out provisional. Equal to :attr:`horizon_s` in a room without an audience
        feed, and when ``LiveOptions.horizon_s`` is set (no provisional step then)."""
        if self.o.horizon_s is not None:
            return float(self.o.horizon_s)
        return finality_horizon(self.fusion, self._interaction_options, self._look_ahead(), audience=False)

    @property
    def chat_horizon_s(self) -> float:
        """The chat tier's finality horizon with the room's delay (:func:`ace.live.chat.chat_horizon`)."""
        return self.chat.horizon(self.horizon_s)

    @property
    def analysed_until(self) -> float:
        """Stream time analysed so far (the end of the last segment); -inf before the first."""
        return self._analysed

    @property
    def lag_s(self) -> float:
        """Wall seconds the analysis trailed the live edge when it finished the last segment: the
        time from the segment's arrival to the end of its analysis, queueing included."""
        return self._lag

    @property
    def level(self) -> int:
        return self.pressure.level

    @property
    def speech_frontier(self) -> float:
        """Stream time up to which the transcript is final (the analysed time without speech)."""
        if self._live is None or self._audio_t is None:
            return self._analysed
        return self._audio_t - self._live.buffered

    def push_events(self, events: Iterable[Event]) -> None:
        """Audience events, in stream time, any order. They are scored as the analysis passes them;
        an event for a second already scored counts in the next one."""
        before = self._inter.late
        events = list(events)
        # events pushed again after a restore (before the warm-up) say nothing about how late the room's come
        self._feed.push(events, self._analysed, measure=self._warm_from is None)
        if self._pitches is not None:
            self._pitches.add_events(events)
        self._inter.process_events(events)
        self._late_events += self._inter.late - before
        self.chat.push(events)

    def process_segment(self, seg: Segment, arrived: float | None = None) -> LiveUpdate:
        """Analyse the next segment; returns the moments that became final and their clips.

        ``arrived`` is the wall time (this analyzer's clock) at which the segment became available;
        by default the time of this call. A segment that ends at or before the analysed time (a
        replay after a restart) is skipped."""
        if self._closed:
            raise RuntimeError(f"stream {self.stream_id} was flushed; no more segments")
        began = self._clock()
        busy0 = time.perf_counter()
        arrived = began if arrived is None else float(arrived)
        if self._started and seg.end <= self._analysed + 1e-3:
            log.debug("%s: segment %d (%.2f-%.2f) already analysed", self.stream_id, seg.seq, seg.start, seg.end)
            return LiveUpdate(analysed_until=self._analysed, lag_s=self._lag, level=self.level)
        words: list[Word] = []
        if self._warm_from is not None:
            words.extend(self._warm_up(seg.start))
        words.extend(self._analyse(seg, arrived))
        with self._timed("fusion and clips"):
            update = self._emit(final=False)
        update.words = words
        busy = time.perf_counter() - busy0
        self._lag = max(0.0, self._clock() - arrived)
        self._busy.append((busy, seg.end - seg.start))
        old = self.level
        new = self.pressure.observe(busy, seg.end - seg.start, self._lag)
        if new != old:
            self._apply_level(old, new)
        update.lag_s, update.level = self._lag, self.level
        return update

    def flush(self) -> LiveUpdate:
        """The stream ended: commit the transcriber's rest, flush every detector and emit every
        pending moment. The analyzer takes no more segments afterwards; a second call returns nothing."""
        if self._closed:
            return LiveUpdate(analysed_until=self._analysed, lag_s=self._lag, level=self.level)
        words: list[Word] = []
        if self._warm_from is not None:  # restored, and the stream ended before another segment came
            words.extend(self._warm_up(self._analysed))
        if self._started:
            words += self._take_words(self._live.flush() if self._live is not None else [], final=True)
            self._signals.extend(self._audio.flush())
            if self._visual is not None:
                self._signals.extend(self._visual.flush())
            self._signals.extend(self._inter.flush(self._analysed))
            self.chat.advance(self._analysed, self._signals, self._analysed, final=True)
        update = self._emit(final=True) if self._started else LiveUpdate()
        self._closed = True
        self.close()
        update.words = words
        update.analysed_until, update.lag_s, update.level = self._analysed, self._lag, self.level
        return update

    def set_level(self, level: int) -> None:
        """Set the degrade level (a controller that sees the whole machine may know better); the
        automatic steps go on from there (``LiveOptions.max_level`` caps both)."""
        level = min(max(0, int(level)), self.o.max_level)
        old = self.pressure.level
        self.pressure.level = level
        if level != old:
            self._apply_level(old, level)

    def state(self) -> dict[str, Any]:
        """A small JSON-able snapshot to resume from (see :meth:`restore`)."""
        return {
            "version": STATE_VERSION,
            "stream_id": self.stream_id,
            "analysed_until": self._analysed if math.isfinite(self._analysed) else None,
            "level": self.level,
            **self.gate.state(),
            "audience": self._feed.state(),
            "audience_lag": self.chat.state(),
            "pitches": dict(self._pitches.counts) if self._pitches is not None else {},
        }

    def restore(self, state: dict[str, Any]) -> float | None:
        """Resume from :meth:`state` of an earlier analyzer of the same stream (before any segment).

        Returns the stream time from which the events should be pushed again (the warm-up start),
        or None when the state is empty. Segments ending at or before the analysed time are then
        skipped; the next one first re-analyses up to ``warmup_s`` seconds before it from
        ``segments_for`` (when given) so the detectors have their baselines again."""
        if self._started:
            raise RuntimeError("restore() must come before the first segment")
        if state.get("version") not in _STATE_VERSIONS:
            raise ValueError(f"unknown live analyzer state version {state.get('version')!r} (expected {STATE_VERSION})")
        if state.get("stream_id") != self.stream_id:
            raise ValueError(f"state of stream {state.get('stream_id')!r} given to stream {self.stream_id!r}")
        self.gate.restore(state)
        if state.get("provisional"):  # their clips stand as they were cut: final now
            log.info("%s: %d moments provisional before the restart are final as they were", self.stream_id,
                     len(state["provisional"]))
        self._feed.restore(state.get("audience"))
        self.chat.restore(state.get("audience_lag"))
        if self._pitches is not None and isinstance(state.get("pitches"), dict):
            self._pitches.counts.update({str(k): int(v) for k, v in state["pitches"].items()})
        self.set_level(int(state.get("level", 0)))
        until = state.get("analysed_until")
        if until is None:
            return None
        self._analysed = float(until)
        self._started = True
        self._warm_from = max(0.0, self._analysed - self.o.warmup_s)
        return self._warm_from

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Adds the analysis thread's CPU and wall time in the block to ``stage``."""
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            acc = self._stages[stage]
            acc[0] += time.thread_time() - cpu
            acc[1] += time.perf_counter() - wall

    def stats(self) -> dict[str, Any]:
        """Figures for metrics and dashboards."""
        busy = np.array([b for b, _ in self._busy]) if self._busy else np.zeros(0)
        seg = np.array([s for _, s in self._busy]) if self._busy else np.zeros(0)
        lat = np.array(self._latencies) if self._latencies else np.zeros(0)
        final_lat = np.array(self._final_latencies) if self._final_latencies else np.zeros(0)
        return {
            "stream_id": self.stream_id,
            "analysed_until": self._analysed if math.isfinite(self._analysed) else None,
            "lag_s": round(self._lag, 3),
            "level": self.level,
            "level_name": DEGRADE_LEVELS[self.level],
            "level_changes": self.pressure.changes,
            "load": round(self.pressure.load, 3),
            "segments": self._n_segments,
            "busy_mean_s": round(float(busy.mean()), 3) if busy.size else 0.0,
            "busy_p95_s": round(float(np.percentile(busy, 95)), 3) if busy.size else 0.0,
            "segment_mean_s": round(float(seg.mean()), 3) if seg.size else 0.0,
            "realtime": round(float(seg.sum() / busy.sum()), 2) if busy.size and busy.sum() > 0 else 0.0,
            "horizon_s": round(self.horizon_s, 3),
            "provisional_horizon_s": round(self.provisional_horizon_s, 3),
            "audience": self.audience,
            "event_delay_s": round(self.event_delay_s, 3),
            "chat_horizon_s": round(self.chat_horizon_s, 3),
            **self.chat.stats(),
            "speech_lag_s": round(self._analysed - self.speech_frontier, 3) if self._started and math.isfinite(self._analysed) else 0.0,
            "moments": self.gate.total,
            "chat_moments": self.gate.chat_total,
            "suppressed": self.gate.suppressed,
            "trimmed": self.gate.trimmed,
            "late_moments": self.gate.late,
            "clips": self._n_clips,
            "clip_errors": self._clip_errors,
            "cut_mean_s": round(float(np.mean(self._cut_s)), 3) if self._cut_s else None,
            "cut_max_s": round(float(max(self._cut_s)), 3) if self._cut_s else None,
            "cuts_ahead_used": self._ahead_used,
            "cuts_ahead_wasted": self._ahead_wasted,
            "provisional_clips": self._n_provisional,
            "confirmed_clips": self._n_confirmed,
            "replaced_clips": self._n_replaced,
            "provisional_pending": len(self.gate.provisional),
            **_latency_stats("latency", lat),
            **_latency_stats("final_latency", final_lat),
            # the analysis thread's time per stage since the start; the wall time of "audio and
            # speech" includes waiting for the speech pool, its CPU time does not
            "speech_hurries": self._hurries,
            "stages": {k: {"cpu_s": round(c, 3), "wall_s": round(w, 3)} for k, (c, w) in self._stages.items()},
            "bad_segments": self._bad_segments,
            "gaps": self._gaps,
            "late_events": self._late_events,
            "words_committed": self._words_committed,
            "transcriber_decodes": self._live.decodes if self._live is not None else 0,
            "signals_kept": len(self._signals),
            "sentences_kept": len(self._sentences),
            "segments_kept": len(self._segments),
        }

    # -- analysis -------------------------------------------------------------------------------

    def _apply_level(self, old: int, new: int) -> None:
        log.warning("%s: analysis %s to level %d (%s), lag %.1f s, load %.2f", self.stream_id,
                    "degrades" if new > old else "recovers", new, DEGRADE_LEVELS[new], self._lag, self.pressure.load)
        if self._speech is not None and hasattr(self._speech, "beam_size"):
            self._speech.beam_size = 1 if new >= 3 else self._beam

    def _warm_up(self, before: float) -> list[Word]:
        """After a restore: re-analyse the buffer's segments up to stream time ``before`` (no moment
        is emitted for what the earlier run decided, see MomentGate.floor)."""
        start, until = self._warm_from, self._analysed
        self._warm_from = None
        self._analysed = -math.inf
        self._started = False
        words: list[Word] = []
        if self.segments_for is not None and start is not None and start < until:
            try:
                earlier = sorted(self.segments_for(start, until), key=lambda s: s.start)
            except Exception:  # the buffer is someone else's; carry on cold rather than fail
                log.exception("%s: the buffer could not list segments for the warm-up", self.stream_id)
                earlier = []
            earlier = [s for s in earlier if s.end <= min(until, before) + 1e-3]
            t = time.perf_counter()
            for s in earlier:
                words.extend(self._analyse(s, self._clock()))
            if earlier:
                log.info("%s: warmed up on %.1f s of the buffer in %.2f s", self.stream_id,
                         earlier[-1].end - earlier[0].start, time.perf_counter() - t)
        if not self._started:  # nothing to warm up on: resume cold at this segment
            self._analysed = until
        return words

    def _analyse(self, seg: Segment, arrived: float) -> list[Word]:
        """Run the detectors over one segment; returns the words committed."""
        if not self._started:
            self._start_at(seg.start)
        elif seg.start > self._analysed + 0.1:
            self._gaps += 1
            log.info("%s: gap in the stream %.2f-%.2f", self.stream_id, self._analysed, seg.start)
        self._n_segments += 1
        words: list[Word] = []
        try:
            # one pass over the file in this process: clock, audio and analysis frames
            fps, skip, _mode = self._frame_settings(self.level)
            with self._timed("decode"):
                got = decode_segment(seg.path, fps=fps, width=self.settings.analysis_width, skip=skip)
            clock = _clock_of(got.times)
            with self._timed("audio and speech"):
                words = self._tap_audio(seg, clock, got.audio)
            if got.times.video is not None:
                with self._timed("visual"):
                    self._tap_frames(seg, clock, got.frames)
        except AceError as exc:  # a broken segment is a gap, not the end of the stream
            self._bad_segments += 1
            log.warning("%s: segment %d (%s) could not be analysed: %s", self.stream_id, seg.seq, seg.path, exc)
        self._analysed = max(self._analysed, seg.end)
        if self._hurry_wanted():
            with self._timed("audio and speech"):
                words.extend(self._take_words(self._live.hurry()))
            self._hurries += 1
        now = self._analysed - self.event_delay_s
        before = self._inter.late
        self._signals.extend(self._inter.process_events((), now=now))
        self._late_events += self._inter.late - before
        self.chat.advance(self._analysed, self._signals, self._lines(final=False)[0])
        self._segments.append((seg, arrived))
        self._prune()
        return words

    def _start_at(self, t: float) -> None:
        self._started = True
        self._analysed = t
        # the interaction detector counts seconds from 0; a stream joined later (or resumed) starts at
        # its own first second, else the empty seconds before it would make the room's baseline
        first = int(math.floor(t))
        self._inter._next = max(self._inter._next, first)
        for sec in [k for k in self._inter._buckets if k < first]:
            late = self._inter._buckets.pop(sec)  # pushed for before the start: count them at the start
            self._inter._buckets[first].extend(late)
        self.chat.start(t)
        self._ensure_visual(self.level)

    def _tap_audio(self, seg: Segment, clock: _SegmentClock, x: np.ndarray | None) -> list[Word]:
        if clock.audio is None or x is None:
            return []
        ta = seg.start + clock.audio  # stream time of the first sample
        words: list[Word] = []
        if self._audio_t is None:
            self._audio_t = seg.start
            self._live = self._new_transcriber(seg.start)
        gap = ta - self._audio_t
        if gap > self.o.max_fill_s:  # restart the audio side at the far side of the gap
            self._signals.extend(self._audio.flush())
            words.extend(self._take_words(self._live.flush() if self._live is not None else [], final=True))
            self._audio_t = ta
            self._live = self._new_transcriber(ta)
        elif gap > 0.5 / SAMPLE_RATE:
            x = np.concatenate([np.zeros(int(round(gap * SAMPLE_RATE)), np.float32), x])
        elif gap < -0.5 / SAMPLE_RATE:
            x = x[int(round(-gap * SAMPLE_RATE)):]
        if x.size == 0:
            return words
        self._signals.extend(self._audio.process_audio(self._audio_t, x))
        self._audio_t += x.size / SAMPLE_RATE
        if self._live is not None:
            words.extend(self._take_words(self._live.feed(x)))
        return words

    def _tap_frames(self, seg: Segment, clock: _SegmentClock, frames: Sequence[tuple[float, np.ndarray]]) -> None:
        self._ensure_visual(self.level)
        fps, _skip, mode = self._frame_settings(self.level)
        vis = self._visual
        assert vis is not None
        for ft, frame in frames:
            t = seg.start + ft + clock.origin  # the instant shown, on the stream clock
            if t >= seg.end - 0.5 / fps:
                break  # the next segment's first frame
            if t <= self._last_frame_t:
                continue
            if mode == 2 and self._last_frame is not None and (frame is self._last_frame or np.array_equal(frame, self._last_frame)):
                continue  # a keyframe repeated by the frame-rate filter
            self._last_frame, self._last_frame_t = frame, t
            self._signals.extend(vis.process_frame(round(t, 4), frame))

    def _take_words(self, words: Sequence[Word], final: bool = False) -> list[Word]:
        """Committed words -> finished sentences -> speech evidence. The last sentence waits for its
        end (punctuation, a pause of a second, or the end of the stream)."""
        self._words_committed += len(words)
        pending = self._pending_words
        if pending and words and words[0].start - pending[-1].end >= _SENTENCE_GAP:
            self._finish_sentences(split_sentences(pending))
            pending = []
        pending = pending + list(words)
        sents = split_sentences(pending) if pending else []
        if sents and not final:
            tail = sents[-1]
            done = tail.text.rstrip().endswith(_SENTENCE_END) or tail.end - tail.start >= _SENTENCE_MAX
            if not done:
                sents = sents[:-1]
                pending = list(tail.words)
            else:
                pending = []
        else:
            pending = []
        self._finish_sentences(sents)
        self._pending_words = pending
        return list(words)

    def _finish_sentences(self, sents: Sequence[Sentence]) -> None:
        if not sents:
            return
        self._sentences.extend(sents)
        self._signals.extend(self._speech_det.process_sentences(sents))
        self._new_hits.extend(self._ad_words.find(sents))
        if self._pitches is not None:
            self._pitches.cuts = sorted(self._visual.cuts if self._visual is not None else self._cuts)
            self._closed_pitches.extend(self._pitches.feed(sents))

    def _prune(self) -> None:
        keep = self._analysed - self.o.look_behind_s - 2 * self.fusion.interaction_lag
        # detectors answer with different delays (speech after its commit delay), so signals are
        # only roughly in time order: filter them all
        if self._signals and min(self._signals[0].t, self._signals[-1].t) < keep:
            self._signals = deque(s for s in self._signals if s.t >= keep)
        while self._sentences and self._sentences[0].end < keep:
            self._sentences.popleft()
        while self._segments and self._segments[0][0].end < keep:
            self._segments.popleft()
        cuts = self._cuts if self._visual is None else self._visual.cuts
        i = next((k for k, c in enumerate(cuts) if c >= keep), len(cuts))
        if i > 1:
            del cuts[: i - 1]  # the last old cut stays: the detector keeps cuts min_cut_gap apart
        # the detectors' diagnostic histories
        for hist in (self._audio.loudness, self._inter.engagement):
            j = next((k for k, (t, _v) in enumerate(hist) if t >= keep), len(hist))
            if j:
                del hist[:j]

    # -- moments and clips ----------------------------------------------------------------------

    def _fusion_inputs(self) -> tuple[list[Signal], list[Sentence], list[float], list[Word]]:
        sents = list(self._sentences)
        if self._pending_words:  # an unfinished sentence still keeps edges out of its words
            sents.extend(split_sentences(self._pending_words))
        words = [w for s in sents for w in s.words]
        cuts = list(self._visual.cuts) if self._visual is not None else list(self._cuts)
        return list(self._signals), sents, cuts, words

    def _hurry_wanted(self) -> bool:
        """Whether a moment the last fusion found is settled on every source but speech: its end lies
        behind the media part of the provisional line but beyond the speech line. Then the
        transcriber decodes what it holds now instead of at its next full window (one decode more,
        for a moment that would otherwise wait up to a window for its words)."""
        if not self.o.hurry_speech or self._live is None or not self._candidates:
            return False
        # only with time to spare: under load the extra decode would queue at the speech pool
        # behind every other stream's windows and hold this stream's analysis back
        if self.level > 0 or self._lag > self.o.hurry_max_lag_s:
            return False
        # as soon as a decode can bring the words a moment needs (up to ``speech_reach`` past its end,
        # clear of the guard band): often a step before the moment is settled on the media, so its
        # clip is cut ahead and ready when it is
        media = self._analysed - min(self.provisional_horizon_s, speech_reach(self.fusion) + self.o.speech_guard_s + 0.5)
        speech = self._speech_line()
        emitted = self.gate.emitted
        return any(speech < m.end <= media and not any(same_moment(m, s, e) for _i, s, e in emitted)
                   for m in self._candidates)

    def _speech_line(self) -> float:
        """The latest moment end whose words are all in: ``speech_reach`` before the speech frontier."""
        return self.speech_frontier - speech_reach(self.fusion)

    def _lines(self, final: bool) -> tuple[float, float, float]:
        """This step's lines: the latest end that is final, the latest that is final with respect to
        every source but the audience (moments up to it are let out provisional), and the chat
        tier's final line. Each lies ``speech_reach`` before the speech frontier at least; at the
        end of the stream (``final``) all three are the analysed time."""
        T = self._analysed
        if final:
            return T, T, T
        speech = self._speech_line()
        until = min(T - self.horizon_s, speech)
        return until, min(T - self.provisional_horizon_s, speech), min(T - self.chat_horizon_s, until)

    def _emit(self, final: bool) -> LiveUpdate:
        T = self._analysed
        update = LiveUpdate(analysed_until=T, lag_s=self._lag, level=self.level)
        if not math.isfinite(T):
            return update
        signals, sents, cuts, words = self._fusion_inputs()
        t0 = max(0.0, T - self.o.look_behind_s)
        candidates = fuse_window(self.stream_id, signals, sents, cuts, t0, T, self.fusion)
        self._candidates = candidates
        until, early, chat_until = self._lines(final)
        settled = self.gate.settle(candidates, until, words)  # provisional moments that are final now
        moments = self.gate.admit(candidates, until, words, provisional_until=early)
        update.provisional = {m.id for m in moments if m.id in self.gate.provisional}
        update.tiers = {m.id: "media" for m in moments}
        # the chat tier: what becomes strong with the room's chat, once that chat is all there
        chat_candidates = self.chat.candidates(self.stream_id, signals, sents, cuts, t0, T)
        shift = self.chat.lag.seconds - self.fusion.interaction_lag  # where the media tier put the same chat
        chat_candidates = [m for m in chat_candidates if not echoes(m, self.gate.emitted, shift)]
        if chat_candidates:
            more = self.gate.admit(chat_candidates, chat_until, words, tier="chat")
            update.tiers.update((m.id, "chat") for m in more)
            moments = moments + more
        for m in sorted(moments, key=lambda m: (m.start, m.end)):
            self._let_out(m, sents, update)
        for p, m in settled:
            self._settle(p, m, sents, update)
        update.moments = sorted(moments + [m for _p, m in settled], key=lambda m: (m.start, m.end))
        update.ad_words, self._new_hits = self._new_hits, []
        if self._pitches is not None:
            self._pitches.cuts = sorted(cuts)
            closed = self._pitches.finish() if final else self._pitches.advance(self.speech_frontier)
            pitches, self._closed_pitches = self._closed_pitches + closed, []
            for seg in pitches:
                update.segments.append(seg)
                clip = self._cut_pitch(seg, sents)
                if clip is not None:
                    update.product_clips[seg.id] = clip
                log.info("%s: product segment %s #%d %.2f-%.2f (confidence %.0f) emitted at %.2f", self.stream_id,
                         seg.product, seg.n, seg.start, seg.end, seg.confidence, T)
        if not final and self.o.cut_ahead_s > 0 and self.level == 0:
            ahead = self.o.cut_ahead_s
            # only moments whose words are in: edges snapped to sentences still to come move, and
            # their clips would be cut for nothing (a cut is a tenth of a stream's CPU)
            heard = self._speech_line()
            upcoming = [m for m in self.gate.preview(candidates, early, early + ahead, words) if m.end <= heard]
            upcoming += self.gate.preview_settle(candidates, until + ahead, words)  # those that will be cut again
            upcoming += self.gate.preview(chat_candidates, chat_until, chat_until + ahead, words, tier="chat")
            self._cut_ahead(upcoming, sents)
        return update

    def _let_out(self, m: Moment, sentences: Sequence[Sentence], update: LiveUpdate) -> None:
        """Cut a new moment's clip (provisional when the moment is) into ``update``."""
        provisional = m.id in update.provisional
        clip = self._cut(m, sentences)
        if provisional:
            clip = dataclasses.replace(clip, state="provisional") if clip is not None else None
            self._provisional_clips[m.id] = clip
        if clip is not None:
            update.clips.append(clip)
            latency = self._latency(m.end)
            update.latency_s[m.id] = latency
            self._latencies.append(latency)
            if provisional:
                self._n_provisional += 1
            else:
                update.final_latency_s[m.id] = latency
                self._final_latencies.append(latency)
        note = f", clip ready after {update.latency_s[m.id]:.1f} s" if m.id in update.latency_s else ""
        log.info("%s: moment %s %.2f-%.2f (score %.2f) emitted%s at %.2f by the %s tier%s", self.stream_id, m.id,
                 m.start, m.end, m.score, " provisional" if provisional else "", self._analysed, update.tiers[m.id], note)

    def _settle(self, p: Moment, m: Moment, sentences: Sequence[Sentence], update: LiveUpdate) -> None:
        """Provisional moment ``p`` is final now as ``m`` (the same id): confirm its clip when its
        edges and peak stayed (captions written again), else cut it again in place (``revision`` + 1;
        should that fail, the provisional clip is confirmed as it is)."""
        old = self._provisional_clips.pop(p.id, None)
        update.tiers[m.id] = "media"
        moved = not same_edges(m, p)
        clip = self._cut(m, sentences) if moved else None
        if clip is not None or (old is None and moved):
            update.replaced.add(m.id)
            if clip is not None and old is not None:
                clip = dataclasses.replace(clip, revision=old.revision + 1)
                self._n_replaced += 1
        else:
            update.confirmed.add(m.id)
            clip = self._confirm(old, sentences) if old is not None else self._cut(m, sentences)
            self._n_confirmed += old is not None
        log.info("%s: moment %s %.2f-%.2f is final (%s; provisional %.2f-%.2f) at %.2f", self.stream_id, m.id, m.start,
                 m.end, "replaced" if m.id in update.replaced else "confirmed", p.start, p.end, self._analysed)
        if clip is None:
            return
        update.clips.append(dataclasses.replace(clip, state="final"))
        latency = self._latency(m.end)
        update.final_latency_s[m.id] = latency
        self._final_latencies.append(latency)
        if old is None:  # its first clip
            update.latency_s[m.id] = latency
            self._latencies.append(latency)

    def _confirm(self, clip: Clip, sentences: Sequence[Sentence]) -> Clip:
        """A provisional clip, final: the same video and thumbnail, captions written again from the
        transcript as it is now (``clip_dir/<moment id>.srt``)."""
        srt = self.clip_dir / f"{clip.moment_id}.srt"
        try:
            write_srt(sentences, clip.start, clip.end, srt)
        except OSError as exc:
            log.warning("%s: writing the captions of clip %s again failed: %s", self.stream_id, clip.moment_id, exc)
            return dataclasses.replace(clip, state="final")
        return dataclasses.replace(clip, srt_path=str(srt), state="final")

    def _latency(self, end: float) -> float:
        """Wall seconds from the stream reaching stream time ``end`` until now."""
        ready = self._clock()
        return round(max(0.0, ready - self._reached(end, ready)), 3)

    def _reached(self, t: float, default: float) -> float:
        """Wall time at which the stream reached stream time ``t``: the arrival of the segment holding it."""
        for seg, arrived in self._segments:
            if seg.start - 1e-6 <= t <= seg.end + 1e-6:
                return arrived
        later = [a for s, a in self._segments if s.start >= t]
        return min(later) if later else default

    def _covering(self, start: float, end: float) -> list[Segment]:
        if self.segments_for is not None:
            try:
                segs = list(self.segments_for(start, end))
            except Exception:
                log.exception("%s: the buffer could not list segments for %.2f-%.2f", self.stream_id, start, end)
                segs = []
        else:
            segs = [s for s, _a in self._segments if s.end > start and s.start < end]
        segs = sorted({s.seq: s for s in segs}.values(), key=lambda s: s.start)
        return [s for s in segs if s.end > start - 1e-6 and s.start < end + 1e-6]

    def _holds(self, m: Moment) -> tuple[list[Segment], tuple[float, float]] | None:
        """What of the moment the buffer holds: its segments and the span to cut (the moment's own
        when the buffer holds all of it);
        when it holds only part (an outage inside the moment, a restart that lost the buffer before
        it), the longest unbroken run of segments it has of the moment (the one with the peak when
        there is one) and the part of the moment in it, if that is at least half a shortest clip
        (or half the moment); else None."""
        segs = self._covering(m.start, m.end)
        if segs and segs[0].start <= m.start + 0.05 and segs[-1].end >= m.end - 0.05 and _unbroken(segs):
            return segs, (m.start, m.end)
        runs: list[list[Segment]] = []
        for s in segs:
            if runs and s.start - runs[-1][-1].end <= _JOIN_GAP_S:
                runs[-1].append(s)
            else:
                runs.append([s])

        def held(run: list[Segment]) -> float:
            return min(m.end, run[-1].end) - max(m.start, run[0].start)

        with_peak = [r for r in runs if r[0].start <= m.peak <= r[-1].end]
        best = with_peak[0] if with_peak else max(runs, key=held, default=None)
        have = ", ".join(f"{r[0].start:.2f}-{r[-1].end:.2f}" for r in runs) or "nothing"
        if best is None or held(best) < 0.5 * min(self.settings.clip_min, m.end - m.start):
            log.warning("%s: the buffer no longer holds %.2f-%.2f for moment %s (has %s)", self.stream_id,
                        m.start, m.end, m.id, have)
            return None
        start, end = max(m.start, best[0].start), min(m.end, best[-1].end)
        log.info("%s: the buffer holds only %.2f-%.2f of moment %s (%.2f-%.2f; has %s): cutting that",
                 self.stream_id, start, end, m.id, m.start, m.end, have)
        return best, (start, end)

    def _render(self, m: Moment, segs: Sequence[Segment], span: tuple[float, float], sentences: Sequence[Sentence],
                out_dir: Path, clip_id: str | None = None, name: str | None = None) -> tuple[Clip, float]:
        """Join the segments and cut the moment's clip of ``span`` (the moment's, or the part of it
        the buffer holds) into ``out_dir``; returns the clip (times on the stream clock) and the wall
        seconds it took."""
        began = time.perf_counter()
        start, end = span
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".ace-join-", dir=out_dir) as tmp:
            joined = Path(tmp) / "joined.ts"
            base = join_segments(segs, joined)
            plan = ClipPlan(moment_id=clip_id or m.id, start=max(0.0, start - base), end=end - base, mode=self.settings.clip_mode)
            local = [_shift_sentence(s, -base) for s in sentences if s.end >= start - 1 and s.start <= end + 1]
            clip = render_clip(str(joined), plan, out_dir, local, thumb_at=min(max(m.peak, start), end) - base, name=name,
                               fmt=self.settings.clip_format, burn_captions=self.settings.burn_captions)
        clip = dataclasses.replace(clip, start=round(clip.start + base, 6), end=round(clip.end + base, 6))
        return clip, time.perf_counter() - began

    def _cut_pitch(self, seg: ProductSegment, sentences: Sequence[Sentence]) -> Clip | None:
        """A product segment's clip, ``<product>-<n>.mp4``, of what the buffer holds of it."""
        m = Moment(self.stream_id, seg.start, seg.end, seg.confidence / 100, (seg.start + seg.end) / 2)
        held = self._holds(m)
        if held is None:
            self._clip_errors += 1
            return None
        try:
            clip, _seconds = self._render(m, *held, sentences, self.clip_dir, clip_id=seg.id, name=product_clip_name(seg))
        except (AceError, OSError, ValueError) as exc:
            self._clip_errors += 1
            log.warning("%s: cutting product segment %s (%.2f-%.2f) failed: %s", self.stream_id, seg.id, seg.start, seg.end, exc)
            return None
        return clip

    def _cut(self, m: Moment, sentences: Sequence[Sentence]) -> Clip | None:
        job = self._ahead.pop(m.id, None)
        if job is not None:
            clip = self._take_ahead(job, m, sentences)
            if clip is not None:
                return clip
        held = self._holds(m)
        if held is None:
            self._clip_errors += 1
            return None
        try:
            if self.level > 0:  # behind analysis and speech while they cannot keep up (see _cut_thread)
                clip, seconds = self._cut_thread().submit(self._render, m, *held, list(sentences),
                                                          self.clip_dir).result()
            else:
                clip, seconds = self._render(m, *held, sentences, self.clip_dir)
        except (AceError, OSError, ValueError) as exc:
            self._clip_errors += 1
            log.warning("%s: cutting moment %s (%.2f-%.2f) failed: %s", self.stream_id, m.id, m.start, m.end, exc)
            return None
        self._n_clips += 1
        self._cut_s.append(seconds)
        return clip

    # -- cutting ahead ------------------------------------------------------------------------------

    def _cut_thread(self) -> ThreadPoolExecutor:
        """The stream's cutting thread, at ``nice`` +10 (:data:`CUT_AHEAD_NICE`), as are the ffmpeg
        processes it starts: it cuts ahead, and while the analysis is degraded it also makes the
        clips the analysis waits for, so that on a saturated machine (16 streams on 2 cores: cuts
        took a fifth of the CPU) the cuts, not the speech recognition every stream waits on, wait."""
        if self._cutter is None:
            self._cutter = ThreadPoolExecutor(1, thread_name_prefix=f"ace-cut-{self.stream_id}",
                                              initializer=_lower_priority)
        return self._cutter

    def _cut_ahead(self, upcoming: Sequence[Moment], sentences: Sequence[Sentence]) -> None:
        """Cut the clips of moments about to become final in the background (one thread per
        stream), dropping those whose moment changed or went away."""
        wanted = {m.id: m for m in upcoming}
        for mid, job in list(self._ahead.items()):
            if mid not in wanted or job.key != _ahead_key(wanted[mid]):
                self._discard(self._ahead.pop(mid))
        for m in upcoming:
            if m.id in self._ahead:
                continue
            held = self._holds(m)
            if held is None:
                continue
            self.clip_dir.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=".ace-ahead-", dir=self.clip_dir))
            future = self._cut_thread().submit(self._render, m, *held, list(sentences), folder)
            self._ahead[m.id] = _CutAhead(_ahead_key(m), future, folder)
            log.debug("%s: cutting moment %s (%.2f-%.2f) ahead", self.stream_id, m.id, m.start, m.end)

    def _take_ahead(self, job: _CutAhead, m: Moment, sentences: Sequence[Sentence]) -> Clip | None:
        """The clip cut ahead for the now final moment ``m``, moved to its place with captions from
        the transcript as it is now; None when it was cut for other edges or the cut failed."""
        if job.key != _ahead_key(m):
            self._discard(job)
            return None
        try:
            clip, seconds = job.future.result()
            final = {ext: self.clip_dir / f"{m.id}{ext}" for ext in (".mp4", ".srt", ".jpg")}
            write_srt(sentences, clip.start, clip.end, clip.srt_path)
            if clip.thumb_path:
                os.replace(clip.thumb_path, final[".jpg"])
            else:
                final[".jpg"].unlink(missing_ok=True)
            os.replace(clip.srt_path, final[".srt"])
            os.replace(clip.path, final[".mp4"])
        except (AceError, OSError, ValueError) as exc:
            log.info("%s: the clip cut ahead for moment %s failed (%s); cutting it again", self.stream_id, m.id, exc)
            self._discard(job)
            return None
        shutil.rmtree(job.folder, ignore_errors=True)
        self._ahead_used += 1
        self._n_clips += 1
        self._cut_s.append(seconds)
        return dataclasses.replace(clip, path=str(final[".mp4"]), srt_path=str(final[".srt"]),
                                   thumb_path=str(final[".jpg"]) if clip.thumb_path else "")

    def _discard(self, job: _CutAhead) -> None:
        self._ahead_wasted += 1
        job.future.cancel()
        job.future.add_done_callback(lambda _f, folder=job.folder: shutil.rmtree(folder, ignore_errors=True))

    def close(self) -> None:
        """Drop the clips being cut ahead and wait for the cutting thread to finish (:meth:`flush`
        does this; a stream stopped before its end calls it)."""
        for job in self._ahead.values():
            self._discard(job)
        self._ahead.clear()
        if self._cutter is not None:
            self._cutter.shutdown(wait=True, cancel_futures=True)
            self._cutter = None


@dataclass
class _CutAhead:
    """A clip being cut before its moment is final (:attr:`LiveOptions.cut_ahead_s`)."""

    key: tuple[str, float, float, float]  # the moment's id, start, end and peak it was cut for
    future: Future
    folder: Path  # where it is cut; removed once taken or dropped


#: ``nice`` increment of the thread that cuts ahead, and so of the ffmpeg processes it starts: a cut
#: ahead has seconds to spare, analysis and speech recognition have none
CUT_AHEAD_NICE = 10


def _lower_priority() -> None:
    try:  # on Linux a thread has its own nice value, and the processes it starts inherit it
        os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + CUT_AHEAD_NICE))
    except (AttributeError, OSError):  # not Linux, or not allowed: cut at the same priority
        pass


def _latency_stats(name: str, lat: np.ndarray) -> dict[str, float | None]:
    """``<name>_p50_s``, ``<name>_p95_s`` and ``<name>_max_s`` of the latencies (None without any)."""
    if not lat.size:
        return {f"{name}_p50_s": None, f"{name}_p95_s": None, f"{name}_max_s": None}
    return {f"{name}_p50_s": round(float(np.percentile(lat, 50)), 3), f"{name}_p95_s": round(float(np.percentile(lat, 95)), 3),
            f"{name}_max_s": round(float(lat.max()), 3)}


#: a pause between two segments that still counts as one unbroken run (ffmpeg's segment edges)
_JOIN_GAP_S = 0.25


def _unbroken(segs: Sequence[Segment]) -> bool:
    return all(b.start - a.end <= _JOIN_GAP_S for a, b in zip(segs, segs[1:]))


def _ahead_key(m: Moment) -> tuple[str, float, float, float]:
    return (m.id, m.start, m.end, m.peak)


#: how far a segment's own clock may stray from the segment list's times and still count as running on
_CONTINUOUS_TOL = 0.5


def join_segments(segments: Sequence[Segment], dst: str | Path) -> float:
    """Join consecutive MPEG-TS segments into ``dst``; returns the stream time of ``dst``'s time 0
    (media's clock: the file's first timestamp).

    Segments whose timestamps run on from one to the next (the segment muxer's default) are simply
    concatenated, byte for byte, which MPEG-TS allows; otherwise (timestamps reset per segment) they
    are remuxed with ffmpeg's concat demuxer, which lays them end to end."""
    if not segments:
        raise InputError("no segments to join")
    dst = Path(dst)
    clocks = []
    for s in segments:
        t = segment_times(s.path)  # remembered from the analysis
        clocks.append(t.video if t.video is not None else t.start)
    first_clock, _ = _segment_clock(segments[0].path)
    base = segments[0].start + first_clock.origin
    # timestamps that run on differ from the segment list's times by a frame or two at most (the
    # first segment's list time counts from its audio, which may lead the video); timestamps that
    # restart in every segment are off by whole segments
    continuous = all(abs((c - clocks[0]) - (s.start - segments[0].start)) < _CONTINUOUS_TOL
                     for s, c in zip(segments, clocks))
    if continuous:
        with open(dst, "wb") as out:
            for s in segments:
                with open(s.path, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        return base
    listing = dst.with_suffix(".txt")
    quoted = (Path(s.path).resolve().as_posix().replace("'", "'\\''") for s in segments)
    listing.write_text("".join(f"file '{q}'\n" for q in quoted), encoding="utf-8")
    cmd = [media.ffmpeg_binary(), "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0",
           "-i", "file:" + str(listing.resolve()), "-map", "0", "-c", "copy", "-f", "mpegts", "file:" + str(dst.resolve())]
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise MediaError(f"joining {len(segments)} segments failed (exit {proc.returncode})",
                         proc.stderr.decode("utf-8", "replace")[-2000:], proc.returncode)
    return base
