"""Shared fixtures: a short sample show made once per session, the public recordings, Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ace.config import Settings

ROOT = Path(__file__).resolve().parent.parent


#: the Mandarin sample show the tests share: long enough for one product to be pitched twice
ZH_DURATION, ZH_SEED = 300.0, 5


@pytest.fixture(scope="session")
def zh_show(tmp_path_factory):
    """A 300 s, 640x360 Mandarin sample show with product pitches (made once; needs the zh voice)."""
    import shutil

    from samples.show import make_sample_show
    from samples.voice_zh import available

    why = available()
    if why:
        pytest.skip(why)
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("needs ffmpeg and ffprobe")
    return make_sample_show(tmp_path_factory.mktemp("zh_show"), duration=ZH_DURATION, seed=ZH_SEED, size=(640, 360), fps=30,
                            lang="zh", cache_dir=tmp_path_factory.mktemp("voices"))


@pytest.fixture(scope="session")
def eval_data() -> Path:
    """The public recordings with ground truth (``ACE_EVAL_DATA``, default ../shared/data)."""
    path = Path(os.environ.get("ACE_EVAL_DATA") or ROOT.parent / "shared" / "data")
    if not (path / "README.md").is_file():
        pytest.skip(f"public recordings not found at {path} (set ACE_EVAL_DATA)")
    return path


@pytest.fixture(scope="session")
def short_show(tmp_path_factory):
    """A 90 s, 640x360 sample show with planted highlights, events and truth (made once)."""
    from samples.show import make_sample_show

    return make_sample_show(tmp_path_factory.mktemp("sample"), duration=90.0, seed=3, size=(640, 360))


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Default settings with the data folder (database, caches) in a temp folder."""
    return Settings(data_dir=tmp_path / "data", cpu_threads=1, speech_workers=2)


PG_URL = os.environ.get("ACE_TEST_DATABASE_URL", "")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="set ACE_TEST_DATABASE_URL to a PostgreSQL database to run these"),
        ),
    ]
)
def db_url(request, tmp_path):
    """The database to test on: SQLite in a temp folder, and PostgreSQL when ``ACE_TEST_DATABASE_URL``
    names one (its ACE tables are dropped and recreated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'ace.db'}"
        return
    import ace.controlplane  # noqa: F401 - its tables too
    from ace.store import Store

    store = Store(PG_URL)
    store.drop_all()
    store.close()
    yield PG_URL


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """One local Ray instance per test module, with a fixed CPU count."""
    from workers.cluster import init_ray, shutdown_ray

    shutdown_ray()
    init_ray(num_cpus=2, data_dir=tmp_path_factory.mktemp("raydata"))
    yield
    shutdown_ray()


#: the bucket of :func:`s3_server`
BUCKET = "ace-clips"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto's) on a free loopback port, with the clip bucket
    :data:`BUCKET`; yields ``(endpoint URL, boto3 client)``."""
    pytest.importorskip("s3fs")
    pytest.importorskip("flask")  # moto's server
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance-metadata service
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client
    server.stop()
