"""Settings, read from ``ACE_*`` environment variables (and a ``.env`` file) with documented defaults.

Every setting can be overridden per run by the CLI's options; library code takes a ``Settings``
object (or the defaults) and never reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ace.products.adwords import DEFAULT_AD_WORDS

#: Phrases that signal an exciting moment in a live sale or game show (English and Chinese).
DEFAULT_KEYWORDS: tuple[str, ...] = (
    "link is up",
    "three two one",
    "3 2 1",
    "go go go",
    "limited time",
    "flash sale",
    "sold out",
    "right now",
    "oh my god",
    "let's go",
    "wow",
    "amazing",
    "incredible",
    "秒杀",
    "上链接",
    "抢",
    "三二一",
    "库存",
    "太棒了",
)


class Settings(BaseSettings):
    """ACE's settings. Environment variables are the field names upper-cased with ``ACE_`` in front
    (``ACE_DATA_DIR``, ``ACE_DATABASE_URL``, ``ACE_MODEL``, ...)."""

    model_config = SettingsConfigDict(env_prefix="ACE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "data", description="Where ACE keeps its database, caches, Ray's temp files and the sample show.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite at DATA_DIR/ace.db. PostgreSQL: postgresql+psycopg://user:pw@host/db")
    model: str = Field("tiny.en", description="Speech model: a name (tiny.en, base, ...), a local CTranslate2 folder, or a hub id.")
    device: str = Field("auto", description="auto | cpu | cuda. auto uses CUDA when a GPU is present.")
    compute_type: str = Field("auto", description="CTranslate2 compute type; auto is float16 on CUDA, int8 on CPU.")
    beam_size: int = Field(1, ge=1, le=10, description="Beam size for speech recognition (1 is greedy and fastest).")
    language: str | None = Field(None, description="Spoken language code; None lets the model detect it (English-only models force 'en').")
    cpu_threads: int = Field(0, ge=0, description="Threads per speech-recognition worker on the CPU; 0 means cores / workers.")
    speech_workers: int = Field(0, ge=0, le=64, description="Parts of a show transcribed at once; 0 means one per core on the CPU, 1 on a GPU.")
    speech_pool: bool = Field(True, description="Live streams on Ray share a pool of speech recognisers (one per core, or one per GPU) instead of loading a model each.")
    speech_batch: int | None = Field(None, ge=1, le=256, description="Most live audio windows a speech recogniser of the pool decodes together (windows of several streams in one batch); 1: one window at a time; unset: 32 on a GPU, 1 on the CPU (where batches of 16 measured 0.8x the throughput; its encoder batches at most 2).")
    speech_batch_wait_ms: float = Field(50.0, ge=0, le=5000, description="Longest a live audio window waits at the speech pool for others to join its batch (milliseconds).")
    speech_vad_skip: bool = Field(True, description="Live streams run the voice-activity filter on each audio window themselves and send only windows with speech to the speech pool (music, silence and crowd noise never reach the recogniser).")
    live_speech_context_s: float | None = Field(None, gt=0, le=30, description="Seconds of audio Whisper's encoder sees per live window, padding included; unset: the model's measured value (15 for tiny.en, which halves its work at the same accuracy), else 30.")
    analysis_fps: float = Field(4.0, gt=0, le=30, description="Frames per second the visual detector looks at.")
    analysis_width: int = Field(160, ge=32, le=1920, description="Width of the grey frames the visual detector looks at.")
    clip_min: float = Field(8.0, gt=0, description="Shortest clip, seconds.")
    clip_max: float = Field(60.0, gt=0, description="Longest clip, seconds.")
    clip_mode: str = Field("exact", description="exact (frame-accurate smart cut) or fast (stream copy from the keyframe before).")
    clip_format: str = Field("source", description="Shape of the clips: source (the stream's own frame), vertical (9:16, following the subject) or square (1:1, following the subject); a stream or job may ask for its own.")
    burn_captions: bool = Field(False, description="Burn word-timed captions into the clips' pictures (the .srt sidecar is written either way).")
    threshold: float = Field(0.45, gt=0, lt=1, description="Fused score a moment of a show without chat must reach to count as strong (with chat, the highlight model's learned confidence threshold applies).")
    top: int | None = Field(None, ge=0, le=1000, description="Fewest moments a recorded show returns, strong or not; None: one per 5 minutes of show, at least 1.")
    scorer: str = Field("default", description="Highlight model for chat: 'default' (the one ACE ships) or a file written by `ace train`.")
    keywords: tuple[str, ...] = Field(DEFAULT_KEYWORDS, description="Excitement phrases for the speech detector.")
    ad_words: tuple[str, ...] = Field(DEFAULT_AD_WORDS, description="Ad-wording phrases flagged in what the host says (absolute claims such as '最好', '第一', 'best ever'; 'phrase!exception' spares a longer word, e.g. '第一!第一次'), as a JSON list in the environment (ACE_AD_WORDS='[\"最好\", \"best ever\"]'). A tenant may keep its own list (PUT /settings/ad-words), which replaces this one for its shows.")
    eval_data: Path = Field(Path("../shared/data"), description="Folder of public recordings with ground truth (ace eval, some tests).")
    ramp_tick_s: float = Field(30.0, ge=1, le=3600, description="How often the traffic-ramp actor decides (seconds).")
    ramp_pool: float = Field(20000.0, ge=0, description="Promoted impressions the ramp spreads over live rooms each tick.")
    ramp_sink: str = Field("", description="Where ramp decisions go for the platform: a JSONL path or an http(s) webhook URL; empty means DATA_DIR/ramp/decisions.jsonl, 'none' sends nowhere.")
    api_host: str = Field("127.0.0.1", description="Back office (HTTP API and web page) host; 0.0.0.0 to expose it.")
    api_port: int = Field(8000, ge=1, le=65535, description="Back office port.")
    url_allowlist: tuple[str, ...] = Field((), description="Hosts, IPs or networks (optionally host:port) that submitted URLs may reach although they are loopback, private or link-local (comma-separated in the environment: ACE_URL_ALLOWLIST='[\"127.0.0.1\", \"10.0.0.0/8\"]' as JSON).")
    clip_storage: str = Field("", description="Where clips, captions and thumbnails are kept for every node and the API: empty keeps them in the data folder where they are cut (one machine); a folder on a shared file system, mounted at the same path on every node; or s3://bucket/prefix for S3-compatible object storage (credentials from the AWS_* variables, endpoint from ACE_S3_ENDPOINT).")
    s3_endpoint: str = Field("", description="Endpoint URL of an S3-compatible server for s3:// clip storage (MinIO, Ceph, ...); empty: AWS, or AWS_ENDPOINT_URL.")
    local_dir: Path | None = Field(None, description="This node's own working folder (live stream buffers, clips being cut, batch jobs' files); None: the data folder. Set it per node (ACE_LOCAL_DIR) when the data folder is shared.")
    media_root: Path | None = Field(None, description="The only folder batch jobs may read recorded shows from by path; None means DATA_DIR/media.")
    api_rate: float = Field(200.0, gt=0, description="Requests per second each API token may make (bursts up to twice that).")
    api_max_body: int = Field(4 << 20, ge=1024, description="Largest request body the API accepts, bytes.")
    api_max_events: int = Field(10000, ge=1, description="Most interaction events one request may carry.")
    api_max_streams: int = Field(50, ge=1, description="Most live streams one tenant may run at once.")
    api_max_submits: int = Field(8, ge=1, description="Stream submissions handled at once; more wait briefly, then get 503 with Retry-After.")
    ray_address: str | None = Field(None, description="Existing Ray cluster to join; None starts a local one.")

    @field_validator("clip_format")
    @classmethod
    def _clip_format(cls, v: str) -> str:
        from ace.reframe.path import check_format

        return check_format(str(v).strip().lower())

    @field_validator("ad_words", mode="before")
    @classmethod
    def _ad_words(cls, v):
        from ace.errors import InputError
        from ace.products.adwords import parse_ad_words

        if isinstance(v, str):  # a single phrase
            v = [v]
        try:
            return parse_ad_words(v, "ad_words")
        except InputError as e:
            raise ValueError(str(e)) from None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ace.db').resolve()}"

    @property
    def media_dir(self) -> Path:
        return Path(self.media_root) if self.media_root else self.data_dir / "media"

    @property
    def work_dir(self) -> Path:
        """This node's working folder (:attr:`local_dir`, else the data folder)."""
        return Path(self.local_dir) if self.local_dir else self.data_dir

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


def get_settings(**overrides) -> Settings:
    """Settings from the environment, with keyword overrides (``None`` values are ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def clip_settings(settings: Settings, clip_format: str | None = None, burn_captions: bool | None = None) -> Settings:
    """``settings`` with a stream's or job's own clip shape and captions (unset ones keep the
    settings' values); ValueError for an unknown shape."""
    from ace.reframe import check_format

    update: dict = {}
    if clip_format:
        update["clip_format"] = check_format(str(clip_format).strip().lower())
    if burn_captions is not None:
        update["burn_captions"] = bool(burn_captions)
    return settings.model_copy(update=update) if update else settings
