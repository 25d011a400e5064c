"""ACE's exceptions. Third-party errors are converted at the boundary into one of these.

::

    AceError
    ├── InputError            bad input from a user: missing file, unreadable events, bad option
    │   ├── MediaError        ffmpeg/ffprobe could not read or write media (carries stderr's tail)
    │   │   └── NoStreamError the media lacks a track the operation needs (no video / no audio)
    │   └── EventFormatError  a file that is not interaction events at all
    ├── ModelError            a speech model could not be found or loaded
    └── StoreError            the database refused an operation
"""

from __future__ import annotations


class AceError(Exception):
    """Base of every error ACE raises on purpose."""


class InputError(AceError):
    """Bad input from a user."""


class MediaError(InputError):
    """ffmpeg or ffprobe failed. ``stderr`` holds the tail of what it printed."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None):
        self.stderr = stderr
        self.returncode = returncode
        tail = stderr.strip()[-600:]
        super().__init__(f"{message}: {tail}" if tail else message)


class NoStreamError(MediaError):
    """The media has no track of the kind needed (e.g. no audio)."""


class EventFormatError(InputError):
    """A file that is not an interaction-event file in any known format."""


class ModelError(AceError):
    """A speech model could not be resolved or loaded."""


class StoreError(AceError):
    """The database refused an operation."""
