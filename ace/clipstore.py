"""Clip storage: where finished clips, captions (.srt) and thumbnails (.jpg) live, readable by every
node of the cluster and by the HTTP API.

ffmpeg cuts a clip to a local file first; :meth:`ClipStorage.put` then copies it in under a *key*
(``"<tenant>/<stream_id>/<moment_id>.mp4"``) and returns its *location*, the string the database
keeps. Two backends, chosen by one setting string (``ACE_CLIP_STORAGE``), see :func:`clip_storage`:

``""`` / ``None``
    the folder ``DATA_DIR/clipstore`` (created when missing): fine for one machine.
a folder path (``/mnt/ace-clips``, ``file:///mnt/ace-clips``)
    a shared file system (NFS, CephFS, ...) mounted at the same path on every node. The folder must
    already exist, so that a share that is not mounted fails loudly instead of filling a local disk.
    Location: the absolute path of the file (under the folder's resolved path).
``s3://bucket/prefix``
    S3-compatible object storage (AWS, MinIO, Ceph RGW, ...) through fsspec and s3fs.
    Credentials come from botocore's usual sources (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role); the endpoint of a non-AWS server from
    ``endpoint_url`` or else ``ACE_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``. Location:
    ``s3://bucket/prefix/key``.

Keys and locations are not trusted. A key must be a relative ``/``-separated path without empty
parts, ``.``/``..``, backslashes or control characters, else :class:`ace.errors.InputError`. A
location read back from the database is only used when the storage :meth:`owns <ClipStorage.owns>`
it, else :class:`ForeignLocationError` (an ``InputError``); a location that is owned but names no
file gives ``FileNotFoundError``.

Writes are atomic: the folder backend writes a hidden temp file next to the target and renames it
(``os.replace``); an S3 object only becomes visible once fully uploaded. :meth:`ClipStorage.open`
returns a *seekable* binary stream, so an HTTP server answers ``Range`` requests by ``seek`` and
``read``; on S3 it reads by ranged GETs a block at a time (never the whole object) and fails with
``fsspec.exceptions.FileExpired`` if the object is replaced while it is being read.

::

    storage = clip_storage(settings_value, data_dir)       # "", "/mnt/ace-clips" or "s3://clips/ace"
    loc = storage.put("/tmp/cut/m1.mp4", "default/s1/m1.mp4")
    if storage.owns(loc):
        with storage.open(loc) as f:
            f.seek(1000); chunk = f.read(65536)
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import secrets
import shutil
import stat
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO, cast

from ace.errors import InputError

__all__ = [
    "DEFAULT_FOLDER",
    "ClipStorage",
    "FolderStorage",
    "ForeignLocationError",
    "S3Storage",
    "check_key",
    "clip_storage",
]

#: The folder under DATA_DIR that an empty setting means.
DEFAULT_FOLDER = "clipstore"

#: Longest key, bytes of UTF-8 (S3 allows 1024 for the whole object key, prefix included).
MAX_KEY_BYTES = 1024
#: Longest part of a key, bytes of UTF-8 (the usual file-name limit).
MAX_PART_BYTES = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,254}")
_READ_BLOCK = 4 << 20  # bytes an S3 read fetches at a time


class ForeignLocationError(InputError):
    """A location that this clip storage does not own (outside its folder, bucket or prefix)."""


def check_key(key: str) -> str:
    """``key`` if it is a safe relative storage key, else :class:`InputError`.

    Refused: non-strings, empty keys, absolute keys, backslashes, NUL and other control characters,
    empty parts (``a//b``, a leading or trailing ``/``), ``.`` and ``..`` parts, and over-long keys.
    """
    if not isinstance(key, str) or not key:
        raise InputError(f"clip storage key must be a non-empty string, not {key!r}")
    if key.startswith("/"):
        raise InputError(f"clip storage key must be relative: {key!r}")
    if "\\" in key:
        raise InputError(f"clip storage key must not contain a backslash: {key!r}")
    if _CONTROL.search(key):
        raise InputError(f"clip storage key must not contain control characters: {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError(f"clip storage key is not valid text: {key!r}") from None
    if size > MAX_KEY_BYTES:
        raise InputError(f"clip storage key is longer than {MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InputError(f"clip storage key has an empty, '.' or '..' part: {key!r}")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise InputError(f"clip storage key has a part longer than {MAX_PART_BYTES} bytes")
    return key


def _source(local_path: str | Path) -> Path:
    path = Path(local_path)
    if not path.is_file():
        raise InputError(f"no file to put into clip storage: {path}")
    return path


class ClipStorage(ABC):
    """Where clips live. Subclasses: :class:`FolderStorage`, :class:`S3Storage`.

    Every method that takes a location refuses one the storage does not own with
    :class:`ForeignLocationError`; :meth:`owns` itself never raises.
    """

    #: The storage in the form the setting takes: a folder path or ``s3://bucket/prefix``.
    spec: str

    @abstractmethod
    def put(self, local_path: str | Path, key: str) -> str:
        """Copy the local file in under ``key`` and return its location. Putting the same key again
        replaces the content (same location, no duplicate). Readers never see a partial file."""

    @abstractmethod
    def owns(self, location: str) -> bool:
        """Whether ``location`` names a file inside this storage (never raises)."""

    @abstractmethod
    def exists(self, location: str) -> bool:
        """Whether the owned ``location`` names an existing file."""

    @abstractmethod
    def open(self, location: str) -> BinaryIO:
        """A seekable binary read stream of the owned ``location`` (``FileNotFoundError`` when
        there is none). Close it (``with storage.open(loc) as f:``)."""

    @abstractmethod
    def size(self, location: str) -> int:
        """Size in bytes of the file at the owned ``location`` (``FileNotFoundError`` when none)."""

    @abstractmethod
    def delete(self, location: str) -> None:
        """Remove the file at the owned ``location``; nothing happens when it is already gone."""

    def _refuse(self, location: object) -> ForeignLocationError:
        return ForeignLocationError(f"location {location!r} is not in clip storage {self.spec}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class FolderStorage(ClipStorage):
    """Clips as files in a folder (a shared file system mounted at the same path on every node).

    ``create``: make the folder when it is missing (else a missing folder is an ``InputError``).
    Locations are absolute paths under the folder's resolved path (symbolic links followed once,
    here). A location whose resolved path leaves the folder (``..``, a symbolic link pointing out)
    is not owned. Empty sub-folders are left behind by :meth:`delete`.
    """

    def __init__(self, root: str | Path, *, create: bool = False):
        root = Path(root).expanduser()
        if create:
            root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise InputError(f"clip storage folder does not exist (is the share mounted?): {root}")
        self.root = root.resolve()
        self.spec = str(self.root)

    def _resolve(self, location: object) -> Path | None:
        if not isinstance(location, str) or not location or "\x00" in location:
            return None
        path = Path(location)
        if not path.is_absolute():
            return None
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        return real if self.root in real.parents else None

    def _owned(self, location: str) -> Path:
        real = self._resolve(location)
        if real is None:
            raise self._refuse(location)
        return real

    def owns(self, location: str) -> bool:
        return self._resolve(location) is not None

    def put(self, local_path: str | Path, key: str) -> str:
        check_key(key)
        src = _source(local_path)
        parts = key.split("/")
        folder = self.root
        for part in parts[:-1]:  # one level at a time: never create or write through a link
            folder = folder / part
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
            if folder.is_symlink() or not folder.is_dir():
                raise self._refuse(str(folder))
        dest = folder / parts[-1]
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
        # O_EXCL: never write through a file or link that is already there; 0o666 & ~umask, like ffmpeg
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)
        return str(dest)

    def exists(self, location: str) -> bool:
        return self._owned(location).is_file()

    def open(self, location: str) -> BinaryIO:
        real = self._owned(location)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(real, flags)  # O_NOFOLLOW: a link swapped in after the check is not followed
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileNotFoundError(f"not a file: {location}")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def size(self, location: str) -> int:
        st = self._owned(location).stat()
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(f"not a file: {location}")
        return st.st_size

    def delete(self, location: str) -> None:
        real = self._owned(location)
        if real.is_dir():
            raise IsADirectoryError(f"not a file: {location}")
        real.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class S3Storage(ClipStorage):
    """Clips as objects under ``s3://bucket/prefix/`` of an S3-compatible store (fsspec + s3fs).

    ``endpoint_url``: the server of a non-AWS store (MinIO, Ceph, ...); None means AWS or botocore's
    ``AWS_ENDPOINT_URL``. ``storage_options``: more keyword arguments for ``s3fs.S3FileSystem``
    (``key``, ``secret``, ``client_kwargs={"region_name": ...}``, ...). Listings are never cached
    (several nodes write the same bucket): every check asks the server.
    """

    def __init__(self, url: str, *, endpoint_url: str | None = None, storage_options: dict[str, Any] | None = None):
        self.bucket, self.prefix = _parse_s3(url)
        self.spec = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        try:
            import s3fs
        except ImportError as e:  # pragma: no cover - depends on the installation
            raise InputError(f"clip storage {self.spec} needs the s3fs package (pip install s3fs)") from e
        options: dict[str, Any] = {"use_listings_cache": False}
        if endpoint_url:
            options["endpoint_url"] = endpoint_url
        options.update(storage_options or {})
        self.fs = s3fs.S3FileSystem(**options)

    def _key_path(self, key: str) -> str:
        return f"{self.bucket}/{self.prefix}/{key}" if self.prefix else f"{self.bucket}/{key}"

    def _path(self, location: object) -> str | None:
        """``bucket/full/key`` of an owned location, else None."""
        if not isinstance(location, str) or not location.startswith("s3://"):
            return None
        bucket, _, key = location.removeprefix("s3://").partition("/")
        if bucket != self.bucket:
            return None
        if self.prefix:
            head = self.prefix + "/"
            if not key.startswith(head):
                return None
            key = key.removeprefix(head)
        try:
            check_key(key)
        except InputError:
            return None
        return self._key_path(key)

    def _owned(self, location: str) -> str:
        path = self._path(location)
        if path is None:
            raise self._refuse(location)
        return path

    def owns(self, location: str) -> bool:
        return self._path(location) is not None

    def put(self, local_path: str | Path, key: str) -> str:
        check_key(key)
        if self.prefix and len(f"{self.prefix}/{key}".encode()) > MAX_KEY_BYTES:
            raise InputError(f"clip storage key is longer than {MAX_KEY_BYTES} bytes with the prefix")
        src = _source(local_path)
        path = self._key_path(key)
        extra: dict[str, Any] = {}
        content_type, _ = mimetypes.guess_type(key)
        if content_type:
            extra["ContentType"] = content_type
        self.fs.put_file(str(src), path, **extra)
        return f"s3://{path}"

    def _info(self, path: str) -> dict[str, Any]:
        info = self.fs.info(path, refresh=True)
        if info.get("type") != "file":  # a "folder" (a key prefix) is not a clip
            raise FileNotFoundError(path)
        return info

    def exists(self, location: str) -> bool:
        path = self._owned(location)
        try:
            self._info(path)
        except FileNotFoundError:
            return False
        return True

    def open(self, location: str) -> BinaryIO:
        path = self._owned(location)
        return cast(BinaryIO, self.fs.open(path, "rb", block_size=_READ_BLOCK, cache_type="readahead"))

    def size(self, location: str) -> int:
        return int(self._info(self._owned(location))["size"])

    def delete(self, location: str) -> None:
        path = self._owned(location)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)


def _parse_s3(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of ``s3://bucket[/prefix]``."""
    if not url.startswith("s3://"):
        raise InputError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise InputError(f"bad bucket name in clip storage URL {url!r}")
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except InputError as e:
            raise InputError(f"bad prefix in clip storage URL {url!r}: {e}") from None
    return bucket, prefix


def clip_storage(
    spec: str | None,
    data_dir: str | Path,
    *,
    endpoint_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ClipStorage:
    """The clip storage that the setting ``spec`` (``ACE_CLIP_STORAGE``) names.

    * ``None`` / ``""``: the folder ``data_dir/clipstore``, created when missing;
    * ``s3://bucket[/prefix]``: :class:`S3Storage`; its endpoint is ``endpoint_url`` (the setting
      ``ACE_S3_ENDPOINT``), else botocore's own (``AWS_ENDPOINT_URL``, else AWS);
    * ``file:///path`` or a path: :class:`FolderStorage` on an existing folder (a relative path is
      taken from the current folder).

    Other URL schemes are an :class:`InputError`.
    """
    spec = (spec or "").strip()
    if not spec:
        return FolderStorage(Path(data_dir) / DEFAULT_FOLDER, create=True)
    if spec.startswith("s3://"):
        return S3Storage(spec, endpoint_url=endpoint_url or None, storage_options=storage_options)
    if spec.startswith("file://"):
        path = spec.removeprefix("file://")
        if not path.startswith("/"):
            raise InputError(f"file:// clip storage URL must name an absolute path: {spec!r}")
        return FolderStorage(path)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", spec):
        raise InputError(f"unsupported clip storage {spec!r}: use a folder path or s3://bucket/prefix")
    return FolderStorage(spec)


def storage_for(settings: Any) -> ClipStorage | None:
    """The clip storage that ``settings`` (an :class:`ace.config.Settings`) name, or None when
    ``clip_storage`` is empty: then clips stay where they were cut, in the data folder (one machine)."""
    spec = (getattr(settings, "clip_storage", "") or "").strip()
    if not spec:
        return None
    return clip_storage(spec, settings.data_dir, endpoint_url=getattr(settings, "s3_endpoint", "") or None)


def publish_clip(storage: ClipStorage | None, clip: Any, tenant: str, show_id: str, *, keep_local: bool = False) -> Any:
    """Put a clip's files (video, captions, thumbnail) into ``storage`` under
    ``<tenant>/<show_id>/<file name>`` and return the clip with their locations instead of the local
    paths (the local files are removed unless ``keep_local``); unchanged without a storage. A file already published
    (its path is a location of ``storage``) is left as it is."""
    import dataclasses

    if storage is None:
        return clip
    changes = {}
    for field in ("path", "srt_path", "thumb_path"):
        local = getattr(clip, field, "") or ""
        if not local or storage.owns(local):
            continue
        loc = storage.put(local, f"{tenant}/{show_id}/{Path(local).name}")
        if not keep_local:
            try:
                os.unlink(local)
            except OSError:
                pass
        changes[field] = loc
    return dataclasses.replace(clip, **changes) if changes else clip
