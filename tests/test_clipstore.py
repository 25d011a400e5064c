"""Clip storage: the folder backend, and the S3 backend against a real local S3 server (moto)."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ace.clipstore import (
    DEFAULT_FOLDER,
    FolderStorage,
    ForeignLocationError,
    S3Storage,
    check_key,
    clip_storage,
)
from ace.errors import InputError

BAD_KEYS = [
    "",
    "/abs/clip.mp4",
    "../clip.mp4",
    "a/../../clip.mp4",
    "a/./clip.mp4",
    "a//clip.mp4",
    "a/clip.mp4/",
    "a\\..\\clip.mp4",
    "a/cl\x00ip.mp4",
    "a/cl\nip.mp4",
    "..",
    ".",
    "x" * 256,
    "a/" * 600 + "b",
]


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- keys, settings


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_refused(key):
    with pytest.raises(InputError):
        check_key(key)


@pytest.mark.parametrize("key", ["default/s1/m1.mp4", "t/s/m.srt", "clip.jpg", "租户/流/1.mp4", ".hidden/x"])
def test_good_keys(key):
    assert check_key(key) == key


def test_non_string_key_refused():
    with pytest.raises(InputError):
        check_key(None)  # type: ignore[arg-type]


def test_default_is_a_folder_under_data_dir(tmp_path):
    for spec in (None, "", "  "):
        storage = clip_storage(spec, tmp_path / "data")
        assert isinstance(storage, FolderStorage)
        assert storage.root == (tmp_path / "data" / DEFAULT_FOLDER).resolve()
        assert storage.root.is_dir()


def test_explicit_folder_must_exist(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        clip_storage(str(tmp_path / "not-mounted"), tmp_path)
    assert not (tmp_path / "not-mounted").exists()
    (tmp_path / "share").mkdir()
    assert clip_storage(str(tmp_path / "share"), tmp_path).root == (tmp_path / "share").resolve()
    assert clip_storage(f"file://{tmp_path / 'share'}", tmp_path).root == (tmp_path / "share").resolve()


@pytest.mark.parametrize("spec", ["gs://bucket/x", "http://host/x", "file://relative/x", "s3://", "s3://a/x", "s3://bucket/../x", "s3://b@d/x"])
def test_bad_specs_refused(tmp_path, spec):
    with pytest.raises(InputError):
        clip_storage(spec, tmp_path)


# ----------------------------------------------------------------------------- folder backend


@pytest.fixture
def folder(tmp_path) -> FolderStorage:
    return clip_storage("", tmp_path / "data")  # type: ignore[return-value]


def test_folder_put_read_delete(folder, tmp_path):
    src = _file(tmp_path / "cut" / "m1.mp4", b"0123456789" * 1000)
    loc = folder.put(src, "default/s1/m1.mp4")
    assert loc == str(folder.root / "default" / "s1" / "m1.mp4")
    assert os.path.isabs(loc) and folder.owns(loc)
    assert folder.exists(loc)
    assert folder.size(loc) == 10000
    with folder.open(loc) as f:
        assert f.read() == src.read_bytes()
        assert f.seekable()
        f.seek(9995)
        assert f.read(100) == b"56789"
    assert src.exists()  # put copies; the local cut stays for the caller to remove
    folder.delete(loc)
    assert not folder.exists(loc)
    folder.delete(loc)  # already gone: fine
    with pytest.raises(FileNotFoundError):
        folder.size(loc)
    with pytest.raises(FileNotFoundError):
        folder.open(loc)


def test_folder_put_is_idempotent_and_atomic(folder, tmp_path):
    loc1 = folder.put(_file(tmp_path / "a.mp4", b"first"), "t/s/m.mp4")
    loc2 = folder.put(_file(tmp_path / "b.mp4", b"second, longer"), "t/s/m.mp4")
    assert loc1 == loc2
    assert Path(loc1).read_bytes() == b"second, longer"
    assert sorted(p.name for p in Path(loc1).parent.iterdir()) == ["m.mp4"]  # no temp left behind


def test_folder_failed_copy_leaves_old_clip_and_no_temp(folder, tmp_path, monkeypatch):
    loc = folder.put(_file(tmp_path / "a.mp4", b"complete clip"), "t/s/m.mp4")

    def broken(src, dst, length=0):
        dst.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfileobj", broken)
    with pytest.raises(OSError, match="disk full"):
        folder.put(_file(tmp_path / "b.mp4", b"new clip"), "t/s/m.mp4")
    assert Path(loc).read_bytes() == b"complete clip"
    assert sorted(p.name for p in Path(loc).parent.iterdir()) == ["m.mp4"]


def test_folder_concurrent_puts_of_one_key(folder, tmp_path):
    sources = [_file(tmp_path / f"{i}.mp4", bytes([i]) * 50000) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        locations = set(pool.map(lambda src: folder.put(src, "t/s/same.mp4"), sources))  # re-raises
    assert len(locations) == 1
    data = (folder.root / "t" / "s" / "same.mp4").read_bytes()
    assert data in {s.read_bytes() for s in sources}  # one whole clip, never a mix
    assert os.listdir(folder.root / "t" / "s") == ["same.mp4"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_folder_put_refuses_bad_keys(folder, tmp_path, key):
    src = _file(tmp_path / "a.mp4", b"x")
    with pytest.raises(InputError):
        folder.put(src, key)
    assert list(folder.root.iterdir()) == []


def test_folder_put_of_missing_file(folder, tmp_path):
    with pytest.raises(InputError):
        folder.put(tmp_path / "nope.mp4", "t/s/m.mp4")


def test_folder_refuses_foreign_locations(folder, tmp_path):
    outside = _file(tmp_path / "secret.txt", b"secret")
    inside = folder.put(_file(tmp_path / "a.mp4", b"clip"), "t/s/m.mp4")
    # a symbolic link inside the folder that points out, to a file and to a folder
    (folder.root / "t" / "s" / "evil.mp4").symlink_to(outside)
    (folder.root / "t" / "escape").symlink_to(tmp_path)
    foreign = [
        str(outside),
        str(folder.root / ".." / "secret.txt"),
        f"{inside}/../../../../secret.txt",
        str(folder.root),  # the folder itself is not a clip
        str(folder.root / "t" / "s" / "evil.mp4"),
        str(folder.root / "t" / "escape" / "secret.txt"),
        "t/s/m.mp4",  # relative
        "/etc/passwd",
        "s3://bucket/t/s/m.mp4",
        "",
        "\x00",
        f"{inside}\x00",
    ]
    for loc in foreign:
        assert not folder.owns(loc), loc
        for op in (folder.exists, folder.open, folder.size, folder.delete):
            with pytest.raises(ForeignLocationError):
                op(loc)
    assert not folder.owns(None)  # type: ignore[arg-type]
    assert outside.read_bytes() == b"secret"
    # writing through the linked sub-folder is refused too, and nothing lands outside
    with pytest.raises(InputError):
        folder.put(_file(tmp_path / "b.mp4", b"x"), "t/escape/new.mp4")
    assert not (tmp_path / "new.mp4").exists()
    with pytest.raises(InputError):
        folder.put(_file(tmp_path / "c.mp4", b"x"), "t/escape/deeper/new.mp4")
    assert not (tmp_path / "deeper").exists()
    # the link to a file is replaced by a put (the rename replaces the link, not its target)
    loc = folder.put(_file(tmp_path / "d.mp4", b"clip"), "t/s/evil.mp4")
    assert folder.owns(loc) and folder.size(loc) == 4 and outside.read_bytes() == b"secret"


def test_folder_locations_survive_a_linked_root(tmp_path):
    real = tmp_path / "export"
    real.mkdir()
    (tmp_path / "mnt").symlink_to(real)
    storage = clip_storage(str(tmp_path / "mnt"), tmp_path)
    loc = storage.put(_file(tmp_path / "a.mp4", b"clip"), "t/s/m.mp4")
    assert loc.startswith(str(real.resolve()))
    assert storage.owns(str(tmp_path / "mnt" / "t" / "s" / "m.mp4"))  # the same file by the link
    assert storage.size(loc) == 4


# ----------------------------------------------------------------------------- S3 backend (moto server)

from tests.conftest import BUCKET


@pytest.fixture
def s3(s3_server, tmp_path) -> S3Storage:
    storage = clip_storage(f"s3://{BUCKET}/ace/clips/", tmp_path, endpoint_url=s3_server[0])
    assert isinstance(storage, S3Storage)
    return storage


def _keys(client, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_s3_put_read_delete(s3, s3_server, tmp_path):
    _, client = s3_server
    assert s3.spec == f"s3://{BUCKET}/ace/clips"
    data = os.urandom(300_000)
    loc = s3.put(_file(tmp_path / "m1.mp4", data), "default/s1/m1.mp4")
    assert loc == f"s3://{BUCKET}/ace/clips/default/s1/m1.mp4"
    assert s3.owns(loc) and s3.exists(loc)
    assert s3.size(loc) == len(data)
    head = client.head_object(Bucket=BUCKET, Key="ace/clips/default/s1/m1.mp4")
    assert head["ContentType"] == "video/mp4"
    with s3.open(loc) as f:
        assert f.seekable()
        f.seek(250_000)
        assert f.read(10) == data[250_000:250_010]
        f.seek(0)
        assert f.read() == data
    s3.delete(loc)
    assert not s3.exists(loc)
    s3.delete(loc)  # already gone: fine
    with pytest.raises(FileNotFoundError):
        s3.size(loc)
    with pytest.raises(FileNotFoundError):
        s3.open(loc)
    assert _keys(client, "ace/clips/default/s1/") == []


def test_s3_put_is_idempotent(s3, s3_server, tmp_path):
    _, client = s3_server
    loc1 = s3.put(_file(tmp_path / "a.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n"), "t/s2/m.srt")
    loc2 = s3.put(_file(tmp_path / "b.srt", b"replaced"), "t/s2/m.srt")
    assert loc1 == loc2
    assert _keys(client, "ace/clips/t/s2/") == ["ace/clips/t/s2/m.srt"]
    with s3.open(loc1) as f:
        assert f.read() == b"replaced"


def test_s3_open_streams(s3, tmp_path):
    data = os.urandom(9 << 20)
    loc = s3.put(_file(tmp_path / "big.mp4", data), "t/s3/big.mp4")
    with s3.open(loc) as f:
        assert f.read(100) == data[:100]
        assert len(f.cache.cache) < len(data)  # a block was fetched, not the whole object
        f.seek(len(data) - 5)
        assert f.read() == data[-5:]
    s3.delete(loc)


def test_s3_other_nodes_see_changes(s3, s3_server, tmp_path):
    """A second client (another node) sees puts and deletes at once: nothing is cached."""
    _, client = s3_server
    other = clip_storage(f"s3://{BUCKET}/ace/clips", tmp_path, endpoint_url=s3_server[0], storage_options={"skip_instance_cache": True})
    loc = f"s3://{BUCKET}/ace/clips/t/s4/m.jpg"
    assert not other.exists(loc)
    assert s3.put(_file(tmp_path / "m.jpg", b"\xff\xd8jpeg"), "t/s4/m.jpg") == loc
    assert other.exists(loc) and other.size(loc) == 6
    client.delete_object(Bucket=BUCKET, Key="ace/clips/t/s4/m.jpg")
    assert not s3.exists(loc) and not other.exists(loc)


def test_s3_folder_like_prefix_is_not_a_clip(s3, tmp_path):
    s3.put(_file(tmp_path / "m.mp4", b"clip"), "t/s5/m.mp4")
    prefix = f"s3://{BUCKET}/ace/clips/t/s5"
    assert s3.owns(prefix) and not s3.exists(prefix)
    with pytest.raises(FileNotFoundError):
        s3.size(prefix)


def test_s3_refuses_bad_keys_and_foreign_locations(s3, s3_server, tmp_path):
    _, client = s3_server
    src = _file(tmp_path / "a.mp4", b"x")
    for key in BAD_KEYS:
        with pytest.raises(InputError):
            s3.put(src, key)
    client.put_object(Bucket=BUCKET, Key="other/secret.mp4", Body=b"secret")
    client.put_object(Bucket=BUCKET, Key="ace/clipsX/m.mp4", Body=b"secret")
    foreign = [
        f"s3://{BUCKET}/other/secret.mp4",
        f"s3://{BUCKET}/ace/clipsX/m.mp4",  # the prefix matches whole parts only
        f"s3://{BUCKET}/ace/clips",
        f"s3://{BUCKET}/ace/clips/",
        f"s3://{BUCKET}/ace/clips/../../other/secret.mp4",
        f"s3://{BUCKET}/ace/clips/t//m.mp4",
        f"s3://{BUCKET}/ace/clips/t\\m.mp4",
        "s3://other-bucket/ace/clips/t/m.mp4",
        f"S3://{BUCKET}/ace/clips/t/m.mp4",
        f"{BUCKET}/ace/clips/t/m.mp4",
        "/etc/passwd",
        "",
    ]
    for loc in foreign:
        assert not s3.owns(loc), loc
        for op in (s3.exists, s3.open, s3.size, s3.delete):
            with pytest.raises(ForeignLocationError):
                op(loc)
    assert _keys(client, "other/") == ["other/secret.mp4"]
    assert _keys(client, "ace/clipsX/") == ["ace/clipsX/m.mp4"]


def test_s3_without_prefix(s3_server, tmp_path):
    endpoint, client = s3_server
    storage = clip_storage(f"s3://{BUCKET}", tmp_path, endpoint_url=endpoint)
    loc = storage.put(_file(tmp_path / "m.mp4", b"clip"), "root-level/m.mp4")
    assert loc == f"s3://{BUCKET}/root-level/m.mp4"
    assert storage.size(loc) == 4
    storage.delete(loc)
    assert _keys(client, "root-level/") == []
