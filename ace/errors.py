"""ACE's exceptions. Third-party errors are converted at the boundary into one of these.

::

    AceError
    ├── InputError            bad input from a user: missing file, unreadable events, bad option
    │   ├── MediaError        ffmpeg/ffprobe could not read or write media (carries stderr's tail)
    │   │   └── NoStreamError the media lacks a track the operation needs (no video / no audio)
    │   ├── EventFormatError  a file that is not interaction events at all
    │   └── Refused           understood but not acceptable (a refused URL, an unknown category)
    ├── NotFound              no such stream, job or clip for this tenant (another tenant's answers the same)
    ├── StreamFinished        the stream has ended, failed or been stopped: it takes no more calls
    ├── Busy                  too much at once, or the controller is restarting: try again later
    │   └── TooManyStreams    the tenant already runs as many live streams as it may
    ├── ModelError            a speech model could not be found or loaded
    └── StoreError            the database refused an operation

The control plane's errors (``Refused`` .. ``TooManyStreams``) cross Ray as they are: the back office
and the commands catch these types, whichever process raised them.
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


class Refused(InputError, ValueError):
    """The request is understood but not acceptable (a refused URL, an unknown category, ...); a
    ValueError too, for callers that catch bad values as such."""


class NotFound(AceError, LookupError):
    """No such stream, job or clip for this tenant (another tenant's id answers the same)."""


class StreamFinished(AceError):
    """The stream has ended, failed or been stopped: it takes no more events (its status, moments
    and clips still answer)."""


class Busy(AceError):
    """Too much at once, or a part of the cluster is restarting: try again after ``retry_after`` seconds
    (``status``: the HTTP status the back office answers with)."""

    def __init__(self, message: str, retry_after: float = 1.0, status: int = 503):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status

    def __reduce__(self):  # keeps retry_after and status when it crosses processes (Ray pickles it)
        return (self.__class__, (str(self), self.retry_after, self.status))


class TooManyStreams(Busy):
    """The tenant already runs as many live streams as it may (HTTP 429)."""

    def __init__(self, message: str, retry_after: float = 30.0, status: int = 429):
        super().__init__(message, retry_after, status)
