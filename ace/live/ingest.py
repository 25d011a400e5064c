"""Live ingest: one ffmpeg per stream copies the source into short MPEG-TS segments on local disk.

Sources (:func:`source_kind`)::

    hls    http(s) URL whose path ends in .m3u8
    http   any other http(s) URL (HTTP-FLV, MPEG-TS over http, a file on a web server)
    rtmp   rtmp:// or rtmps://
    rtsp   rtsp:// or rtsps:// (always RTP over the RTSP TCP connection)
    file   a local path or a file: URL, played at real speed by default (rehearsal)

Each kind gets its own ``-protocol_whitelist``, so a playlist can never make ffmpeg read local files or
use another of its protocols (``concat:``, ``subfile:``, ``data:``, ``pipe:`` ...).

How a stream is followed (:class:`Ingest`)

* ffmpeg copies the first video and the first audio track (no re-encoding; H.264/AAC sources are the
  norm) into segments of about ``segment_s`` (cut at the next keyframe) and appends a line
  ``name,start,end`` to a CSV list each time a segment is closed. :meth:`Ingest.poll` reads the new
  lines and returns them as :class:`~ace.types.Segment` in **stream time**: seconds since the stream
  started for ACE, continuous across ffmpeg restarts.
* http(s) inputs use ffmpeg's own reconnect options and ``rw_timeout``; when ffmpeg exits anyway
  (an HLS playlist that cannot be reloaded makes it exit at once; a live HTTP-FLV response that ends
  is not resumed in place; RTMP and RTSP have no reconnect of their own), it is restarted after an
  exponential backoff with jitter. A running ffmpeg that delivers nothing for ``stall_timeout_s`` is
  restarted too. A restarted ffmpeg counts time from zero again, so its segments are moved to after
  the last segment of the previous run plus the outage as measured by the wall clock (give or take the
  source's start-up: a few seconds); that interval is recorded as a gap (:attr:`RollingBuffer.gaps`),
  never hidden: ``segment.start > previous.end`` tells a consumer too.
* An HLS playlist closed with ``#EXT-X-ENDLIST`` makes ffmpeg exit normally. A VOD playlist (closed
  when ACE first read it, just after the first segment) has reached its end: ``ended`` at once, never
  replayed. A live one (a read by ACE found it open, without ``#EXT-X-ENDLIST``) may only be a
  publisher restarting: for ``endlist_grace_s`` the ingest keeps reading the playlist (once a second,
  in the background, through the URL guard), ``reconnecting`` meanwhile, and starts ffmpeg again as
  soon as the playlist is open again; the time it was away becomes a gap like any other outage.
  Closed (or gone) for the whole grace period: ``ended``.
* The segments live in a :class:`RollingBuffer`: those that ended more than ``buffer_s`` before the
  newest one are deleted from disk. Memory is bounded by the same window; only paths and times are
  kept, never media. Each ffmpeg run writes ``folder/runNNNN/NNNNNN.ts``; the timestamps inside a
  file are ffmpeg's own, so read a segment from its beginning (as :mod:`ace.media` does: time 0 is
  the file's first timestamp) and add ``segment.start``.
* Nothing blocks for long: ffmpeg's stderr is drained by a thread that keeps only a tail, ACE's own
  reads of an HLS playlist (is it live? is it back?) run in a thread of their own, and
  :meth:`Ingest.poll` (call it every 0.2-1 s) reads what is new, supervises the process and restarts
  it when its backoff is due. Stopping an ffmpeg (:meth:`Ingest.stop`, a timeout) takes up to 3 s
  when it sits in a network wait. On Linux each ffmpeg gets SIGTERM when the thread that started it
  ends, so a crashed owner leaves no ffmpeg behind.

Status of an ingest (:attr:`Ingest.status`)::

    starting      ffmpeg runs (or is retried) but no segment has arrived yet
    live          segments are arriving
    reconnecting  after the first segment: ffmpeg exited and is restarted with backoff, or it runs
                  but no new segment came for a while (three segments' time, or longer for bursty HLS),
                  or a live HLS playlist was closed and is watched for ``endlist_grace_s``
    ended         a file reached its end, a VOD playlist was read to its end, a live HLS playlist
                  stayed closed for ``endlist_grace_s``, or a live source stayed away for ``ended_after_s``
    failed        no first segment within ``start_timeout_s``; a source that is not media, is refused
                  for good (HTTP 4xx) or has a codec MPEG-TS cannot carry by copy; or more than
                  ``max_restarts`` restarts in a row
    stopped       :meth:`Ingest.stop` was called

``ended``, ``failed`` and ``stopped`` are final: ffmpeg is not running any more. :attr:`Ingest.error`
says why in words a person can act on, followed by the tail of ffmpeg's stderr.

Errors::

    InputError     an unknown scheme or ffmpeg protocol, a missing local file, a bad option
    (network and media problems never raise: they show in ``status`` and ``error``)

Measured with tiny loopback sources (320x180, 1 s GOP) on two shared cores, polling every 0.2 s:

* first segment: a file played at real speed 2.2 s after start (2 s segments: one segment plus the
  next keyframe); RTMP and HTTP-FLV 3.7 s (1 s segments; ffmpeg spends about 2.5 s probing the FLV
  stream); HLS 0.2 s (ffmpeg starts three playlist segments behind the live edge and reads them at once).
* HLS with its web server stopped for 20 s: ffmpeg exits at the first playlist reload that fails, the
  ingest restarts it, and ffmpeg's own http reconnect (retries after 0, 1, 3 and 7 s) gets through
  0.2-6.2 s after the server is back; the gap recorded is 17-23 s (the backlog read at once makes
  the first media after the outage look up to one segment earlier than it came).
* RTMP publisher gone for 2 s: back 3.2-6.2 s after it returned (restart, refused once, restart).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import ctypes
import logging
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ace import media
from ace.errors import InputError
from ace.types import Segment

log = logging.getLogger("ace.live.ingest")

__all__ = [
    "SOURCE_KINDS",
    "STATUSES",
    "FINAL_STATUSES",
    "PROTOCOL_WHITELIST",
    "source_kind",
    "redact",
    "IngestOptions",
    "ingest_command",
    "RollingBuffer",
    "Ingest",
]

#: Kinds of source ACE can ingest, as :func:`source_kind` names them.
SOURCE_KINDS: tuple[str, ...] = ("hls", "http", "rtmp", "rtsp", "file")

#: Every value :attr:`Ingest.status` takes.
STATUSES: tuple[str, ...] = ("starting", "live", "reconnecting", "ended", "failed", "stopped")

#: Statuses after which the ingest does nothing more (ffmpeg is not running).
FINAL_STATUSES: frozenset[str] = frozenset({"ended", "failed", "stopped"})

#: URL schemes accepted, and the kind each maps to (http(s) becomes "hls" for .m3u8 paths).
_SCHEMES: dict[str, str] = {
    "http": "http",
    "https": "http",
    "rtmp": "rtmp",
    "rtmps": "rtmp",
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "file": "file",
}

#: ffmpeg protocols each kind may use (``-protocol_whitelist``). ``crypto`` is for AES-128 HLS.
PROTOCOL_WHITELIST: dict[str, str] = {
    "hls": "http,https,tcp,tls,crypto",
    "http": "http,https,tcp,tls",
    "rtmp": "rtmp,rtmps,tcp,tls",
    "rtsp": "tcp,tls,udp,rtp",
    "file": "file",
}

#: Name of the CSV segment list ffmpeg writes in its output folder.
SEGMENT_LIST = "segments.csv"
#: ffmpeg's file name pattern for segments in its output folder.
SEGMENT_PATTERN = "%06d.ts"

_GAP_TOLERANCE = 0.05  # seconds between segments that are rounding, not a gap
_TAIL_LINES = 60  # stderr lines kept per ffmpeg run
_ERROR_CHARS = 600  # characters of stderr's tail quoted in Ingest.error
_TERM_WAIT = 2.0  # seconds ffmpeg gets to finish its last segment after a second SIGTERM
_PLAYLIST_TIMEOUT = 3.0  # seconds for one read of an HLS playlist by ACE itself
_PLAYLIST_EVERY = 1.0  # seconds between reads of a closed playlist during endlist_grace_s
_LIVE_CHECKS = 5  # reads of an HLS playlist, at most, to learn whether it is live (5 s apart)
_RUN_DIR = re.compile(r"run\d{4,}$")
_PRIVATE_DATA = re.compile(r"codec (\S+), is muxed as a private data stream")
_SEGMENT_NAME = re.compile(r"(\d+)\.ts$")


# ------------------------------------------------------------------------------------------ sources


def source_kind(url: str) -> str:
    """The kind of a stream source: one of :data:`SOURCE_KINDS`.

    ``hls`` for an http(s) URL whose path ends in ``.m3u8``, ``http`` for any other http(s) URL,
    ``rtmp`` for rtmp(s), ``rtsp`` for rtsp(s), ``file`` for a local path or a ``file:`` URL.
    Anything else (another scheme, or one of ffmpeg's own protocols such as ``concat:``,
    ``subfile:``, ``data:``, ``pipe:``) raises :class:`~ace.errors.InputError` naming the allowed
    schemes. Network URLs must name a host.
    """
    if not isinstance(url, str) or not url.strip():
        raise InputError("empty stream URL")
    if url != url.strip() or any(ord(c) < 32 for c in url):
        raise InputError(f"stream URL contains spaces or control characters: {url!r}")
    scheme = _scheme(url)
    if scheme is None:
        return "file"
    kind = _SCHEMES.get(scheme)
    if kind is None:
        if os.path.isfile(url):  # a local file whose name has a colon; it reaches ffmpeg as file:
            return "file"
        allowed = ", ".join(f"{s}://" for s in _SCHEMES if s != "file")
        raise InputError(f"unsupported stream URL scheme {scheme!r} in {url!r}: use {allowed}, "
                         "a file: URL or a local path")
    if kind == "file":
        _file_path(url)  # validates the form
        return "file"
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise InputError(f"no host in stream URL {url!r}")
    if kind == "http" and parts.path.lower().endswith(".m3u8"):
        return "hls"
    return kind


def _scheme(url: str) -> str | None:
    """The URL scheme in lower case, or None for a plain path (no ``scheme:`` prefix)."""
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", url)
    if not m or len(m.group(1)) < 2:  # "C:\..." is a drive letter, not a scheme
        return None
    return m.group(1).lower()


def _file_path(url: str) -> Path:
    """The local path a ``file:`` URL or plain path names (absolute, not resolved)."""
    if _scheme(url) == "file":
        parts = urllib.parse.urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"file URL names a remote host: {url!r}")
        path = urllib.parse.unquote(parts.path) if url.lower().startswith("file://") else url[5:]
        if not path:
            raise InputError(f"file URL names no file: {url!r}")
        return Path(path).expanduser().absolute()
    return Path(url).expanduser().absolute()


def redact(url: str) -> str:
    """The URL without user info and query string, for logs and error messages."""
    if _scheme(url) in (None, "file"):
        return url
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# ------------------------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How a stream is ingested. Every field has a default that suits a live show."""

    #: target segment length in seconds; segments are cut at the first keyframe after it
    segment_s: float = 2.0
    #: rolling buffer size in seconds of stream time: older segments are deleted from disk
    buffer_s: float = 600.0
    #: ffmpeg gives up on a network read or write that stalls this long (http(s), RTMP, RTSP)
    rw_timeout_s: float = 10.0
    #: http(s): ffmpeg's own reconnect keeps trying for up to this many seconds before it exits
    reconnect_delay_max_s: float = 10.0
    #: wait before the first restart of an ffmpeg that exited; doubled for each restart in a row
    backoff_initial_s: float = 1.0
    #: the longest wait between restarts
    backoff_max_s: float = 30.0
    #: each wait is multiplied by a random factor in [1 - jitter, 1 + jitter]
    backoff_jitter: float = 0.3
    #: restarts in a row without a new segment before the stream is ``failed``; None: no limit
    max_restarts: int | None = None
    #: no first segment within this many seconds of start: ``failed`` (and ffmpeg stopped); a source
    #: whose first segment is being written (long GOP) gets ``stall_timeout_s`` more
    start_timeout_s: float = 20.0
    #: a running ffmpeg that delivers no segment for this long is stopped and restarted (live sources)
    stall_timeout_s: float = 30.0
    #: a live source that delivered segments and then stays away this long is ``ended``; None: never
    ended_after_s: float | None = 300.0
    #: HLS: a playlist that was live (ACE saw it without ``#EXT-X-ENDLIST``) and is then closed is
    #: followed this many seconds more (``reconnecting``) in case the publisher restarts; ingest resumes
    #: when it is open again, else the stream is ``ended``. A VOD playlist (closed from the first read)
    #: ends at once. 0: every closed playlist ends the stream at once
    endlist_grace_s: float = 30.0
    #: read a local file at its native rate (``-re``), like a live stream; False: as fast as possible
    realtime_file: bool = True
    #: destinations a network source may reach although they are loopback, private or link-local
    #: (``ACE_URL_ALLOWLIST``; see :class:`ace.netguard.AddressPolicy`)
    allow: tuple[str, ...] = ()
    #: check network sources with :mod:`ace.netguard` and read http(s) ones through its proxy, so a
    #: hostile playlist cannot make ffmpeg fetch internal URLs. Off only for trusted sources.
    guard: bool = True

    def __post_init__(self) -> None:
        positive = ("segment_s", "buffer_s", "rw_timeout_s", "backoff_initial_s", "backoff_max_s",
                    "start_timeout_s", "stall_timeout_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"IngestOptions.{name} must be positive, got {getattr(self, name)!r}")
        if self.reconnect_delay_max_s < 0:
            raise InputError(f"IngestOptions.reconnect_delay_max_s must be >= 0, got {self.reconnect_delay_max_s!r}")
        if not 0 <= self.backoff_jitter < 1:
            raise InputError(f"IngestOptions.backoff_jitter must be in [0, 1), got {self.backoff_jitter!r}")
        if self.buffer_s < self.segment_s:
            raise InputError(f"IngestOptions.buffer_s ({self.buffer_s}) must hold at least one segment "
                             f"(segment_s={self.segment_s})")
        if self.stall_timeout_s <= 2 * self.segment_s:
            raise InputError(f"IngestOptions.stall_timeout_s ({self.stall_timeout_s}) must be longer than two "
                             f"segments (segment_s={self.segment_s})")
        if self.max_restarts is not None and self.max_restarts < 0:
            raise InputError(f"IngestOptions.max_restarts must be >= 0 or None, got {self.max_restarts!r}")
        if self.ended_after_s is not None and not self.ended_after_s > 0:
            raise InputError(f"IngestOptions.ended_after_s must be positive or None, got {self.ended_after_s!r}")
        if not self.endlist_grace_s >= 0:
            raise InputError(f"IngestOptions.endlist_grace_s must be >= 0, got {self.endlist_grace_s!r}")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based) of a run of failures."""
        base = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(attempt, 30))
        r = (rng or random).uniform(-self.backoff_jitter, self.backoff_jitter)
        return max(0.0, base * (1.0 + r))


def ingest_command(url: str, out_dir: str | os.PathLike, options: IngestOptions | None = None) -> list[str]:
    """The ffmpeg command that copies ``url`` into segments in ``out_dir``.

    Segments are ``out_dir/000000.ts``, ``000001.ts``, ... (MPEG-TS, first video and first audio track
    copied); ffmpeg appends ``name,start,end`` to ``out_dir/segments.csv`` as each one is closed, in
    seconds from the first packet of this run. Raises InputError for an unsupported URL.
    """
    opts = options or IngestOptions()
    kind = source_kind(url)
    out = Path(os.fspath(out_dir)).absolute()
    rw_us = str(int(round(opts.rw_timeout_s * 1e6)))
    inp: list[str] = []
    if kind in ("hls", "http"):
        # reconnect: retry a refused or dropped connection for up to reconnect_delay_max_s, and resume
        # a seekable (file-like) response where it broke off. A live HTTP-FLV response is not
        # seekable and is not resumed in place (-reconnect_streamed): the server answers a reconnect
        # with a fresh FLV stream that the demuxer cannot follow (measured: "Unable to seek to the next
        # packet", then silence). ffmpeg exits at its end instead and the ingest restarts it.
        # 5xx too: through ACE's URL guard an origin that refuses connections answers "502" from the
        # proxy, where a direct connection would see a network error; both are worth retrying
        inp += ["-reconnect", "1", "-reconnect_on_network_error", "1", "-reconnect_on_http_error", "5xx",
                "-reconnect_delay_max", str(int(round(opts.reconnect_delay_max_s))), "-rw_timeout", rw_us]
        if kind == "hls":  # the playlist: resume reading it in place
            inp[2:2] = ["-reconnect_streamed", "1"]
        src = url
    elif kind == "rtmp":
        # rtmp's own -timeout means "listen for a connection": only the generic I/O timeout applies
        inp += ["-rw_timeout", rw_us]
        src = url
    elif kind == "rtsp":
        inp += ["-rtsp_transport", "tcp", "-timeout", rw_us]  # socket I/O timeout, microseconds
        src = url
    else:
        if opts.realtime_file:
            inp += ["-re"]
        src = "file:" + str(_file_path(url))
    return [
        media.ffmpeg_binary(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "warning", "-y",
        *inp, "-protocol_whitelist", PROTOCOL_WHITELIST[kind], "-i", src,
        "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy",
        "-f", "segment", "-segment_time", f"{opts.segment_s:g}", "-segment_format", "mpegts",
        "-segment_list", str(out / SEGMENT_LIST), "-segment_list_type", "csv",
        "-segment_list_flags", "live", "-reset_timestamps", "0",
        str(out / SEGMENT_PATTERN),
    ]


# ----------------------------------------------------------------------------------- rolling buffer


class RollingBuffer:
    """The segments of one stream on disk, in stream time, oldest first.

    :meth:`add` appends a segment; a start later than the newest end (beyond rounding) records a gap.
    Segments that ended more than ``buffer_s`` before the newest end are deleted from disk (a reader
    that still has one open keeps reading it). Gaps that ended more than ``buffer_s`` before the newest
    end are forgotten; :attr:`gap_count` and :attr:`gap_seconds` count all of them.
    """

    def __init__(self, folder: str | os.PathLike, buffer_s: float = 600.0, stream_id: str = ""):
        if not buffer_s > 0:
            raise InputError(f"buffer_s must be positive, got {buffer_s!r}")
        self.folder = Path(os.fspath(folder))
        self.buffer_s = float(buffer_s)
        self.stream_id = stream_id
        self._segments: collections.deque[Segment] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._gaps: collections.deque[tuple[float, float]] = collections.deque()
        self._next_seq = 0
        self.gap_count = 0
        self.gap_seconds = 0.0
        self.deleted = 0

    def add(self, path: str | os.PathLike, start: float, end: float) -> Segment:
        """Append the segment at ``path`` covering ``[start, end)`` in stream time; returns it."""
        if not end > start:
            raise InputError(f"segment {path} has no duration ({start}..{end})")
        latest = self.latest_end
        if latest is not None:
            if start - latest > _GAP_TOLERANCE:
                self.add_gap(latest, start)
            elif latest - start > _GAP_TOLERANCE:
                log.warning("%s: segment %s starts %.3f s before the previous one ends",
                            self.stream_id, path, latest - start)
        seg = Segment(self.stream_id, self._next_seq, float(start), float(end), str(path))
        self._next_seq += 1
        self._segments.append(seg)
        try:
            self._sizes.append(os.path.getsize(path))
        except OSError:
            self._sizes.append(0)
        self._trim()
        return seg

    def add_gap(self, t0: float, t1: float) -> None:
        """Record that stream time ``[t0, t1)`` has no media."""
        if t1 <= t0:
            return
        self._gaps.append((float(t0), float(t1)))
        self.gap_count += 1
        self.gap_seconds += t1 - t0
        log.info("%s: gap of %.1f s in stream time %.1f..%.1f", self.stream_id, t1 - t0, t0, t1)

    def _trim(self) -> None:
        latest = self.latest_end
        if latest is None:
            return
        horizon = latest - self.buffer_s
        while self._segments and self._segments[0].end <= horizon:
            old = self._segments.popleft()
            self._sizes.popleft()
            self._delete(old.path)
        while self._gaps and self._gaps[0][1] <= horizon:
            self._gaps.popleft()

    def _delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.deleted += 1

    def segments(self) -> list[Segment]:
        """The segments on disk, oldest first."""
        return list(self._segments)

    def covering(self, t0: float, t1: float) -> list[Segment]:
        """The segments that overlap stream time ``[t0, t1)``, oldest first (empty inside a gap)."""
        if t1 <= t0:
            return []
        return [s for s in self._segments if s.end > t0 and s.start < t1]

    @property
    def gaps(self) -> list[tuple[float, float]]:
        """Intervals of stream time with no media, ``(start, end)``, oldest first."""
        return list(self._gaps)

    @property
    def latest_end(self) -> float | None:
        """End of the newest segment in stream time; None before the first."""
        return self._segments[-1].end if self._segments else None

    @property
    def earliest_start(self) -> float | None:
        """Start of the oldest segment still on disk; None when empty."""
        return self._segments[0].start if self._segments else None

    @property
    def media_seconds(self) -> float:
        """Seconds of media on disk (gaps excluded)."""
        return sum(s.end - s.start for s in self._segments)

    @property
    def bytes(self) -> int:
        """Bytes of segment files on disk (as measured when each was added)."""
        return sum(self._sizes)

    def __len__(self) -> int:
        return len(self._segments)

    def __iter__(self) -> Iterator[Segment]:
        return iter(list(self._segments))

    def clear(self) -> None:
        """Delete every segment file and forget them (gaps too)."""
        while self._segments:
            self._delete(self._segments.popleft().path)
        self._sizes.clear()
        self._gaps.clear()


# ------------------------------------------------------------------------------------ ffmpeg runs


class _StderrReader(threading.Thread):
    """Drains one ffmpeg's stderr; keeps the last lines and the moment the pipe closed (its exit)."""

    def __init__(self, pipe: Any):
        super().__init__(daemon=True, name="ace-ingest-stderr")
        self._pipe = pipe
        self.lines: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.closed_at: float | None = None
        #: the codec ffmpeg said it cannot put into MPEG-TS (it writes it as opaque data instead)
        self.uncopyable: str | None = None
        self.start()

    def run(self) -> None:
        try:
            for raw in iter(self._pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self.lines.append(line)
                    m = _PRIVATE_DATA.search(line)
                    if m and self.uncopyable is None:
                        self.uncopyable = m.group(1)
        except (OSError, ValueError):
            pass
        finally:
            self.closed_at = time.monotonic()
            with contextlib.suppress(OSError):
                self._pipe.close()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(slots=True)
class _Run:
    """One ffmpeg process and what has been read of its segment list."""

    index: int
    folder: Path
    proc: subprocess.Popen
    stderr: _StderrReader
    started: float  # monotonic
    csv_offset: int = 0
    offset: float | None = None  # stream time = ffmpeg time + offset (known from the first segment)
    segments: int = 0
    last_name_index: int = -1
    latency: float | None = None  # wall - ffmpeg time at the latest segment seen while running
    exited_at: float | None = None
    returncode: int | None = None


def _writing_media(run: _Run) -> bool:
    """Whether a run's ffmpeg has started writing its first segment (media is arriving, but a long
    GOP keeps the segment open)."""
    try:
        return os.path.getsize(run.folder / (SEGMENT_PATTERN % 0)) > 0
    except OSError:
        return False


def _set_pdeathsig() -> None:  # runs in the child between fork and exec (Linux only)
    _PRCTL(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG: ffmpeg gets SIGTERM if we die


_PRCTL: Any = None
if sys.platform.startswith("linux"):
    try:
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        _PRCTL = None


# ------------------------------------------------------------------------------------- diagnosis

#: (pattern in ffmpeg's stderr, words for people, permanent before the first segment)
_DIAGNOSES: tuple[tuple[re.Pattern[str], str, bool], ...] = tuple(
    (re.compile(p, re.IGNORECASE), words, permanent) for p, words, permanent in (
        (r"not on whitelist|protocol not found", "the source uses an ffmpeg protocol that is not allowed", True),
        (r"no such file or directory", "no such file", True),
        (r"could not find codec parameters",
         "the stream's first frames were incomplete (it may have stopped while starting)", False),
        (r"invalid data found when processing input|unable to find a suitable output format|"
         r"moov atom not found",
         "not media: the source is not an audio/video stream ffmpeg can read (invalid data found when "
         "processing input)", True),
        (r"server returned (4\d\d[^\r\n]*)|http error (4\d\d[^\r\n]*)", "HTTP {0}", True),
        (r"server returned (5\d\d[^\r\n]*)|http error (5\d\d[^\r\n]*)", "HTTP {0}", False),
        (r"is muxed as a private data stream|not currently supported in container|"
         r"could not find tag for codec|could not write header",
         "the source's codecs cannot be copied into MPEG-TS segments (only stream copy is supported; "
         "H.264/HEVC with AAC/MP3/AC-3/Opus are)", True),
        (r"does not contain any stream|matches no streams", "no audio or video track in the source", True),
        (r"failed to resolve hostname|name or service not known|temporary failure in name resolution",
         "host name not found", False),
        (r"connection refused", "connection refused", False),
        (r"connection reset by peer", "connection reset by peer", False),
        (r"connection timed out|operation timed out|timed out", "connection timed out", False),
        (r"failed to reload playlist", "HLS playlist could not be reloaded", False),
        (r"network is unreachable|no route to host", "network unreachable", False),
        (r"input/output error", "input/output error", False),
        (r"end of file", "the source ended the stream (end of file)", False),
    )
)


@dataclass(frozen=True, slots=True)
class _Playlist:
    """What ACE read in an HLS media playlist."""

    ended: bool  # closed: #EXT-X-ENDLIST
    sequence: int  # #EXT-X-MEDIA-SEQUENCE (0 when absent)
    segments: int  # media segments listed
    master: bool = False  # a master playlist: it lists variants, nothing about the stream being live


def _read_playlist(url: str, timeout: float = _PLAYLIST_TIMEOUT, opener: Any = None) -> _Playlist | None:
    """The HLS playlist at ``url``; None when it cannot be read or is not a playlist (an outage, not an
    end). A master playlist says nothing about ``ended`` (its variants would have to be read instead).
    ``opener`` (the guard's, for an untrusted source) does the reading."""
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "ace"})
    try:
        with (opener.open(req, timeout=timeout) if opener is not None else urllib.request.urlopen(req, timeout=timeout)) as r:
            text = r.read(1 << 20).decode("utf-8", "replace")
    except Exception as e:  # the source is gone: an outage, not an end
        log.debug("HLS playlist %s not readable: %s", redact(url), e)
        return None
    if not text.lstrip("\ufeff \t\r\n").startswith("#EXTM3U"):
        return None
    if "#EXT-X-STREAM-INF" in text:
        return _Playlist(ended=False, sequence=0, segments=0, master=True)
    m = re.search(r"^#EXT-X-MEDIA-SEQUENCE:\s*(\d+)", text, re.MULTILINE)
    return _Playlist(ended="#EXT-X-ENDLIST" in text, sequence=int(m.group(1)) if m else 0,
                     segments=len(re.findall(r"^#EXTINF:", text, re.MULTILINE)))


def _hls_ended(url: str, timeout: float = _PLAYLIST_TIMEOUT, opener: Any = None) -> bool:
    """Whether the HLS media playlist at ``url`` is closed (``#EXT-X-ENDLIST``). False when it
    cannot be read or is a master playlist (see :func:`_read_playlist`)."""
    playlist = _read_playlist(url, timeout, opener)
    return playlist is not None and playlist.ended and not playlist.master


class _PlaylistProbe(threading.Thread):
    """One read of an HLS playlist in the background, so that a slow server never holds up
    :meth:`Ingest.poll` or :meth:`Ingest.stop`. Done when it is no longer alive; ``playlist`` is then
    the result (None: unreadable)."""

    def __init__(self, url: str, opener: Any):
        super().__init__(daemon=True, name="ace-ingest-playlist")
        self._url = url
        self._opener = opener
        self.playlist: _Playlist | None = None
        self.start()

    def run(self) -> None:
        self.playlist = _read_playlist(self._url, opener=self._opener)


def _diagnose(stderr: str, returncode: int | None = None) -> tuple[str, bool]:
    """A reason for people, and whether it is permanent, from ffmpeg's stderr (and exit status)."""
    for pattern, words, permanent in _DIAGNOSES:
        m = pattern.search(stderr)
        if m:
            groups = [g for g in m.groups() if g]
            return (words.format(groups[0].strip()) if groups else words), permanent
    if returncode == 0:
        return "the source ended the stream (end of file)", False
    last = stderr.strip().splitlines()[-1:] or [""]
    if last[0].strip():
        return last[0].strip()[:200], False
    return (f"ffmpeg exited with status {returncode}" if returncode is not None else "ffmpeg stopped"), False


def _with_tail(message: str, stderr: str) -> str:
    """The message, then the last whole lines of ffmpeg's stderr (up to about _ERROR_CHARS)."""
    lines: list[str] = []
    size = 0
    for line in reversed(stderr.strip().splitlines()):
        if lines and size + len(line) > _ERROR_CHARS:
            break
        lines.append(line[-_ERROR_CHARS:])
        size += len(line) + 1
    tail = "\n".join(reversed(lines))
    return f"{message}\nffmpeg: {tail}" if tail else message


# ----------------------------------------------------------------------------------------- ingest


class Ingest:
    """Follows one stream: runs ffmpeg into a :class:`RollingBuffer` under ``folder`` and supervises it.

    A plain object meant to be held by one owner (an actor) and polled::

        ing = Ingest("room-1", "https://cdn.example/live/room1.m3u8", "/data/live/room-1")
        ing.start()
        while ing.status not in FINAL_STATUSES:
            for seg in ing.poll():       # new closed segments, stream time
                analyse(seg.path, seg.start)
            time.sleep(0.5)
        ing.stop()

    ``folder`` belongs to the ingest: each ffmpeg run writes into its own ``folder/runNNNN``; leftovers
    of an earlier ingest there are deleted by :meth:`start`. Not thread-safe: call it from one thread.

    Stream time is set here, and only here: the first run starts at ``origin`` (0 for a new stream;
    a resumed stream's analysed time plus the outage, so the gap is kept and times never run back),
    and each later run right after the previous one plus the outage between them.
    """

    def __init__(self, stream_id: str, url: str, folder: str | os.PathLike,
                 options: IngestOptions | None = None, *, rng: random.Random | None = None, origin: float = 0.0):
        self.stream_id = str(stream_id)
        self.origin = float(origin)
        self.url = url
        self.kind = source_kind(url)
        self.options = options or IngestOptions()
        self.folder = Path(os.fspath(folder)).absolute()
        self.buffer = RollingBuffer(self.folder, self.options.buffer_s, self.stream_id)
        self._rng = rng or random.Random()
        self._status = "starting"
        self._error = ""
        self._run: _Run | None = None
        self._runs = 0
        self._run_dirs: collections.deque[Path] = collections.deque()
        self._started_at: float | None = None
        self._first_segment_at: float | None = None
        self._last_segment_at: float | None = None  # monotonic, when the newest segment was read
        self._last_data_at: float | None = None  # monotonic, when the previous run's last media arrived
        self._reason = ""  # the last exit's reason in words, and ffmpeg's stderr then
        self._reason_tail = ""
        self._deleted_seen = 0
        self._arrivals: collections.deque[float] = collections.deque(maxlen=16)  # when segments were read
        self._restart_at: float | None = None
        self._failures = 0  # restarts in a row without a new segment
        self._pending: list[Segment] = []
        self._segments_total = 0
        self._proxy: Any = None  # the netguard proxy http(s) sources are read through
        # HLS: ACE's own reads of the playlist (through the guard), for telling a live playlist that
        # was closed (maybe a publisher restarting) from a VOD playlist that reached its end
        self._hls_live_seen = False  # a read found the playlist open (no #EXT-X-ENDLIST): it was live
        self._hls_checked = False  # a read after the first segment answered (open or closed)
        self._probe: _PlaylistProbe | None = None  # the read in progress
        self._probe_at = 0.0  # monotonic: no new read before
        self._live_checks = 0  # reads started to learn whether the playlist is live
        self._endlist_since: float | None = None  # monotonic: a live playlist was found closed then
        #: ffmpeg restarts so far (after an exit or a stall, including retries before the first segment)
        self.reconnects = 0

    # -------------------------------------------------------------------------------- public API

    @property
    def status(self) -> str:
        """One of :data:`STATUSES`."""
        return self._status

    @property
    def error(self) -> str:
        """Why the stream failed, ended early or is reconnecting (with ffmpeg's stderr tail); "" when fine."""
        return self._error

    @property
    def gaps(self) -> list[tuple[float, float]]:
        """Intervals of stream time with no media (outages), oldest first, within the buffer."""
        return self.buffer.gaps

    def segments(self) -> list[Segment]:
        """Every segment still in the rolling buffer."""
        return self.buffer.segments()

    def covering(self, t0: float, t1: float) -> list[Segment]:
        """Segments of the rolling buffer that overlap stream time ``[t0, t1)``."""
        return self.buffer.covering(t0, t1)

    def start(self) -> None:
        """Start ffmpeg. Raises InputError for a missing local file or a missing ffmpeg binary;
        network and media problems show in :attr:`status` / :attr:`error` instead."""
        if self._started_at is not None:
            raise InputError(f"ingest of {self.stream_id} already started")
        if self.kind == "file":
            path = _file_path(self.url)
            if not path.is_file():
                raise InputError(f"no such file: {path}")
        media.ffmpeg_binary()
        if self.kind != "file" and self.options.guard:
            from ace.netguard import AddressPolicy, GuardProxy, check_url

            policy = AddressPolicy(self.options.allow)
            check_url(self.url, policy=policy)  # InputError: a refused destination
            if self.kind in ("hls", "http"):
                self._proxy = GuardProxy(policy).start()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._clear_leftovers()
        self._started_at = time.monotonic()
        log.info("%s: ingest %s (%s) into %s", self.stream_id, redact(self.url), self.kind, self.folder)
        self._launch()

    def poll(self) -> list[Segment]:
        """New closed segments since the last call, oldest first; also supervises ffmpeg.

        Returns quickly (it reads a small CSV and checks the process). Call it regularly, every
        0.2-1 s: restarts and timeouts are acted on here.
        """
        out, self._pending = self._pending, []
        if self._status in FINAL_STATUSES or self._started_at is None:
            return out
        now = time.monotonic()
        run = self._run
        if run is not None:
            out += self._collect(run, now)
            if run.proc.poll() is not None:
                out += self._finish(run, now)
        if self._status in FINAL_STATUSES:
            return out
        if self.kind == "hls":
            self._follow_playlist(now)
            if self._status in FINAL_STATUSES:
                return out
        if self._run is None and self._restart_at is not None and now >= self._restart_at:
            self._launch()
        self._watchdogs(now)
        if self.buffer.deleted != self._deleted_seen:
            self._deleted_seen = self.buffer.deleted
            self._prune_run_dirs()
        return out

    def stop(self) -> None:
        """Stop ffmpeg (it closes its last segment; the next :meth:`poll` returns it). Status ``stopped``
        unless the stream had already ``ended`` or ``failed``. The buffer stays on disk (see :meth:`discard`)."""
        run = self._run
        if run is not None:
            self._terminate(run)
            self._pending += self._finish(run, time.monotonic(), stopping=True)
        self._restart_at = None
        self._endlist_since = None
        self._probe = None  # a read in progress fails on the closed proxy and is forgotten
        if self._status not in FINAL_STATUSES:
            self._set_status("stopped")
        self._close_proxy()

    def discard(self) -> None:
        """Stop, then delete the rolling buffer's files and folders."""
        self.stop()
        self._pending = []
        self.buffer.clear()
        for d in list(self._run_dirs):
            shutil.rmtree(d, ignore_errors=True)
        self._run_dirs.clear()

    def seconds_behind_live(self) -> float | None:
        """Wall seconds since the newest segment was read (about how stale the buffer is); None before
        the first segment."""
        if self._last_segment_at is None:
            return None
        return max(0.0, time.monotonic() - self._last_segment_at)

    def stats(self) -> dict[str, Any]:
        """Numbers for metrics and the status page (plain JSON types)."""
        now = time.monotonic()
        run = self._run
        return {
            "stream_id": self.stream_id,
            "url": redact(self.url),
            "kind": self.kind,
            "status": self._status,
            "error": self._error,
            "reconnects": self.reconnects,
            "segments_total": self._segments_total,
            "segments_buffered": len(self.buffer),
            "buffered_media_s": round(self.buffer.media_seconds, 3),
            "buffered_bytes": self.buffer.bytes,
            "latest_end": self.buffer.latest_end,
            "earliest_start": self.buffer.earliest_start,
            "gaps": self.buffer.gap_count,
            "gap_s": round(self.buffer.gap_seconds, 3),
            "seconds_behind_live": self.seconds_behind_live(),
            "first_segment_s": (None if self._first_segment_at is None or self._started_at is None
                                else round(self._first_segment_at - self._started_at, 3)),
            "uptime_s": None if self._started_at is None else round(now - self._started_at, 3),
            "ffmpeg_pid": run.proc.pid if run is not None and run.proc.poll() is None else None,
            "runs": self._runs,
        }

    def __enter__(self) -> Ingest:
        if self._started_at is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Ingest({self.stream_id!r}, {redact(self.url)!r}, status={self._status!r})"

    # --------------------------------------------------------------------------------- internals

    def _opener(self):
        if self._proxy is None:
            return None
        from ace.netguard import guarded_opener

        return guarded_opener(self._proxy)

    def _close_proxy(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None

    def _set_status(self, status: str, error: str | None = None) -> None:
        if error is not None:
            self._error = error
        if status != self._status:
            log.info("%s: %s -> %s%s", self.stream_id, self._status, status,
                     f" ({self._error.splitlines()[0]})" if self._error and status != "live" else "")
            self._status = status
        if status in FINAL_STATUSES and (self._run is None or self._run.proc.poll() is not None):
            self._close_proxy()

    def _clear_leftovers(self) -> None:
        for entry in self.folder.iterdir():
            if entry.is_dir() and _RUN_DIR.match(entry.name):
                names = os.listdir(entry)
                if all(n == SEGMENT_LIST or _SEGMENT_NAME.match(n) for n in names):
                    shutil.rmtree(entry, ignore_errors=True)

    def _launch(self) -> None:
        self._restart_at = None
        while (self.folder / f"run{self._runs:04d}").exists():  # never reuse a folder that is not ours
            self._runs += 1
        folder = self.folder / f"run{self._runs:04d}"
        folder.mkdir(parents=True)
        self._run_dirs.append(folder)
        cmd = ingest_command(self.url, folder, self.options)
        kw: dict[str, Any] = {}
        if self._proxy is not None:
            from ace.netguard import guard_command, guarded_env

            cmd = guard_command(cmd, self.kind, self._proxy.url)
            kw["env"] = guarded_env()
        log.debug("%s: run %d: %s", self.stream_id, self._runs, shlex.join(cmd))
        if _PRCTL is not None:
            kw["preexec_fn"] = _set_pdeathsig
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, **kw)
        except OSError as e:
            self._set_status("failed", f"cannot run ffmpeg: {e}")
            return
        self._run = _Run(self._runs, folder, proc, _StderrReader(proc.stderr), time.monotonic())
        self._runs += 1

    def _collect(self, run: _Run, now: float, *, after_exit: bool = False) -> list[Segment]:
        """Read the new complete lines of the run's segment list and add them to the buffer."""
        path = run.folder / SEGMENT_LIST
        try:
            with open(path, "rb") as f:
                f.seek(run.csv_offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        run.csv_offset += end + 1
        out: list[Segment] = []
        for row in csv.reader(data[: end + 1].decode("utf-8", "replace").splitlines()):
            if len(row) < 3:
                continue
            try:
                name, t0, t1 = row[0], float(row[1]), float(row[2])
            except ValueError:
                log.warning("%s: unreadable segment list line %r", self.stream_id, row)
                continue
            m = _SEGMENT_NAME.search(name)
            if m:
                run.last_name_index = max(run.last_name_index, int(m.group(1)))
            seg = self._add(run, run.folder / os.path.basename(name), t0, t1, now, after_exit)
            if seg is not None:
                out.append(seg)
        return out

    def _add(self, run: _Run, path: Path, t0: float, t1: float, now: float, after_exit: bool) -> Segment | None:
        if t1 <= t0 or not path.exists():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        if run.offset is None:
            run.offset = self._offset_for_new_run(run, t0, t1, now)
        if not after_exit:  # closed while ffmpeg ran: the source is live
            run.latency = now - t1
            if not run.segments:  # waits are measured within one ffmpeg run, never across an outage
                self._arrivals.clear()
            self._arrivals.append(now)
            if self._status in ("starting", "reconnecting"):
                self._set_status("live", "")
        seg = self.buffer.add(path, t0 + run.offset, t1 + run.offset)
        run.segments += 1
        self._segments_total += 1
        self._last_segment_at = now
        self._failures = 0
        if self._first_segment_at is None:
            self._first_segment_at = now
        return seg

    def _offset_for_new_run(self, run: _Run, t0: float, t1: float, now: float) -> float:
        """Where a run's ffmpeg time lands in stream time: right after the previous run's last segment
        plus the outage measured by the wall clock (from the last data of the old run to the first
        data of the new one)."""
        latest = self.buffer.latest_end
        if latest is None or self._last_data_at is None:
            return self.origin - t0
        first_data = max(run.started, now - (t1 - t0))
        outage = max(0.0, first_data - self._last_data_at)
        return latest + outage - t0

    def _finish(self, run: _Run, now: float, *, stopping: bool = False, stalled: bool = False) -> list[Segment]:
        """The run's ffmpeg has exited: read its last segments, clean up, decide what comes next."""
        run.stderr.join(timeout=1.0)
        rc = run.proc.wait()
        run.returncode = rc
        run.exited_at = run.stderr.closed_at or now
        out = self._collect(run, now, after_exit=True)
        self._drop_unlisted(run)
        self._run = None
        # when did the last media of this run arrive? (the last segment may have been closed at exit)
        if run.segments:
            last_end = (self.buffer.latest_end or 0.0) - (run.offset or 0.0)
            guess = run.exited_at if run.latency is None else min(run.exited_at, last_end + run.latency)
            self._last_data_at = guess
        stderr = run.stderr.text
        if stopping:
            return out
        if run.stderr.uncopyable:
            # its segments carry the track as opaque data that no reader decodes: refuse the source
            self._restart_at = None
            self._set_status("failed", _with_tail(
                f"cannot ingest {redact(self.url)}: its {run.stderr.uncopyable} track cannot be copied into "
                "MPEG-TS segments (only stream copy is supported; H.264/HEVC with AAC/MP3/AC-3/Opus are)",
                stderr))
            return out
        reason, permanent = _diagnose(stderr, rc)
        if stalled:
            reason, permanent = f"no media for {self.options.stall_timeout_s:g} s ({reason})", False
        self._reason, self._reason_tail = reason, stderr
        log.info("%s: ffmpeg run %d exited (code %s) after %d segments: %s",
                 self.stream_id, run.index, rc, run.segments, reason)
        if self.kind == "file":
            if rc == 0 and self._segments_total:
                self._set_status("ended", "")
            elif rc == 0:
                self._set_status("failed", _with_tail(f"no media in {self.url}", stderr))
            else:
                self._set_status("failed", _with_tail(f"cannot read {self.url}: {reason}", stderr))
            return out
        src = redact(self.url)
        if self.kind == "hls" and rc == 0 and self._segments_total:
            probe = self._probe
            if probe is not None:  # the read that tells whether the playlist was live: wait for it
                probe.join(timeout=_PLAYLIST_TIMEOUT + 1.0)
                self._probe = None
                self._note_playlist(probe.playlist)
            playlist = _read_playlist(self.url, opener=self._opener())
            self._note_playlist(playlist)
            if playlist is not None and playlist.ended and not playlist.master:
                # the publisher closed the playlist (#EXT-X-ENDLIST): not an outage; restarting ffmpeg
                # on it would replay its last segments again and again
                grace = self.options.endlist_grace_s
                if not self._hls_live_seen or not grace > 0:
                    self._set_status("ended", "")  # a VOD playlist read to its end
                    return out
                # a live playlist closed: maybe a publisher restarting; watch it for endlist_grace_s
                self._endlist_since = now
                self._probe_at = now + _PLAYLIST_EVERY
                self._restart_at = None
                log.info("%s: live HLS playlist closed (#EXT-X-ENDLIST, media sequence %d); waiting up "
                         "to %g s for it to come back", self.stream_id, playlist.sequence, grace)
                self._set_status("reconnecting", _with_tail(
                    f"the publisher closed the live playlist {src} (#EXT-X-ENDLIST); waiting up to {grace:g} s "
                    "for it to come back live", stderr))
                return out
        if self._first_segment_at is None:
            if permanent:
                self._set_status("failed", _with_tail(f"cannot ingest {src}: {reason}", stderr))
                return out
            self._schedule_restart(now, _with_tail(f"no media from {src} yet: {reason}", stderr))
            return out
        self._schedule_restart(now, _with_tail(f"source lost ({src}): {reason}", stderr))
        return out

    def _schedule_restart(self, now: float, error: str) -> None:
        limit = self.options.max_restarts
        if limit is not None and self._failures >= limit:
            s = "" if limit == 1 else "s"
            self._set_status("failed", f"gave up after {limit} restart{s} in a row: {error}")
            return
        delay = self.options.backoff(self._failures, self._rng)
        self._failures += 1
        self.reconnects += 1
        self._restart_at = now + delay
        if self._status != "starting":
            self._set_status("reconnecting", error)
        else:
            self._error = error
        log.info("%s: restarting ffmpeg in %.1f s (restart %d in a row)", self.stream_id, delay, self._failures)

    def _note_playlist(self, playlist: _Playlist | None) -> None:
        """Remember what a read of the HLS playlist says about the stream having been live."""
        if playlist is None:
            return
        self._hls_checked = True
        if not playlist.ended and not playlist.master:
            self._hls_live_seen = True

    def _follow_playlist(self, now: float) -> None:
        """HLS, ACE's own reads of the playlist (in the background, through the URL guard): once after
        the first segment, to learn whether the stream is live; and once a second while a live playlist
        that was closed is awaited (``endlist_grace_s``): ffmpeg starts again as soon as it is open again,
        and the stream is ``ended`` when the grace period is over."""
        probe, playlist = self._probe, None
        done = probe is not None and not probe.is_alive()
        if done:
            self._probe = None
            playlist = probe.playlist
            self._note_playlist(playlist)
        since = self._endlist_since
        if since is None:
            if (not self._hls_checked and self._probe is None and self._run is not None
                    and self._first_segment_at is not None and self._live_checks < _LIVE_CHECKS
                    and now >= self._probe_at):
                self._live_checks += 1
                self._probe = _PlaylistProbe(self.url, self._opener())
                self._probe_at = now + 5.0  # an unreadable answer is tried again, a few times
            return
        src = redact(self.url)
        if done and playlist is not None and not playlist.ended and not playlist.master:
            # open again: a new ffmpeg follows it; its segments land after the outage (a gap), as
            # after any restart (_offset_for_new_run)
            log.info("%s: HLS playlist open again after %.1f s (media sequence %d, %d segments); resuming",
                     self.stream_id, now - since, playlist.sequence, playlist.segments)
            self._endlist_since = None
            self.reconnects += 1
            self._set_status("reconnecting", f"the live playlist {src} is open again after #EXT-X-ENDLIST; "
                             "resuming")
            self._launch()
            return
        grace = self.options.endlist_grace_s
        if now - since >= grace:
            self._endlist_since = None
            self._probe = None
            self._set_status("ended", f"the publisher closed the live playlist {src} (#EXT-X-ENDLIST) and it "
                             f"did not come back live within {grace:g} s")
            return
        if self._probe is None and now >= self._probe_at:
            self._probe = _PlaylistProbe(self.url, self._opener())
            self._probe_at = now + _PLAYLIST_EVERY

    def _watchdogs(self, now: float) -> None:
        opts = self.options
        src = redact(self.url)
        run = self._run
        if run is not None and run.stderr.uncopyable:
            self._terminate(run)
            self._pending += self._finish(run, now)  # fails the stream
            return
        if (self._status == "starting" and self._started_at is not None
                and now - self._started_at > opts.start_timeout_s
                and not (run is not None and _writing_media(run)
                         and now - self._started_at < opts.start_timeout_s + opts.stall_timeout_s)):
            tail = ""
            if run is not None:
                tail = run.stderr.text
                self._terminate(run)
                self._pending += self._finish(run, now, stopping=True)
            if tail:
                reason = _diagnose(tail)[0]
            else:
                reason, tail = self._reason or "the source did not answer", self._reason_tail
            msg = f"no media from {src} within {opts.start_timeout_s:g} s: {reason}"
            self._restart_at = None
            self._set_status("failed", _with_tail(msg, tail))
            return
        if self.kind == "file" or self._last_segment_at is None:
            return
        idle = now - self._last_segment_at
        if opts.ended_after_s is not None and idle > opts.ended_after_s:
            if run is not None:
                self._terminate(run)
                self._pending += self._finish(run, now, stopping=True)
            self._restart_at = None
            first = self._error.splitlines()[0] if self._error else ""
            self._set_status("ended", f"no media from {src} for {opts.ended_after_s:g} s: the stream is "
                             "considered over" + (f" (last error: {first})" if first else ""))
            return
        if run is None:
            return
        if self._status == "live" and idle > self._stall_after():
            # ffmpeg still runs (its own http reconnect, or a source that went quiet): say so
            reason = _diagnose(run.stderr.text)[0] if run.stderr.text else "the source went quiet"
            self._set_status("reconnecting", _with_tail(
                f"no new media from {src} for {idle:.0f} s: {reason}", run.stderr.text))
        if now - max(self._last_segment_at, run.started) > opts.stall_timeout_s:
            log.warning("%s: no media for %.0f s; restarting ffmpeg", self.stream_id, idle)
            self._terminate(run)
            self._pending += self._finish(run, now, stalled=True)

    def _stall_after(self) -> float:
        """Seconds without a new segment after which a running ffmpeg counts as stalled: three target
        segments, two of the newest, or half as much again as the longest recent wait between segments
        (HLS delivers in bursts, one playlist segment at a time), plus two seconds."""
        newest = self.buffer.segments()[-1:] if len(self.buffer) else []
        longest = max((s.end - s.start for s in newest), default=0.0)
        a = self._arrivals
        wait = max((b - x for x, b in zip(a, list(a)[1:])), default=0.0)
        return max(3.0 * self.options.segment_s, 2.0 * longest, 1.5 * wait) + 2.0

    def _terminate(self, run: _Run) -> None:
        """Stop a run's ffmpeg, letting it close its current segment: SIGTERM; a second SIGTERM
        interrupts a blocking network wait (ffmpeg ignores one signal there); then SIGKILL."""
        proc = run.proc
        for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGTERM, _TERM_WAIT), (signal.SIGKILL, None)):
            if proc.poll() is not None:
                return
            if sig == signal.SIGKILL:
                log.warning("%s: ffmpeg (pid %d) ignored SIGTERM; killing it", self.stream_id, proc.pid)
            with contextlib.suppress(OSError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            return

    def _drop_unlisted(self, run: _Run) -> None:
        """Delete segment files ffmpeg started but never listed (killed mid-segment)."""
        try:
            names = os.listdir(run.folder)
        except FileNotFoundError:
            return
        for n in names:
            m = _SEGMENT_NAME.match(n)
            if m and int(m.group(1)) > run.last_name_index:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(run.folder / n)
        self._prune_run_dirs()

    def _prune_run_dirs(self) -> None:
        """Remove folders of finished runs once the buffer has deleted all their segments."""
        current = self._run.folder if self._run is not None else None
        for d in list(self._run_dirs):
            if d == current:
                continue
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                self._run_dirs.remove(d)
                continue
            if all(n == SEGMENT_LIST for n in names):
                shutil.rmtree(d, ignore_errors=True)
                self._run_dirs.remove(d)

