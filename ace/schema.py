"""ACE's database tables (SQLAlchemy Core): what :class:`ace.store.Store` reads and writes, and
the values their columns take. The control plane's own tables (``streams``, ``jobs``) are in
:mod:`ace.controlplane`, on the same :data:`metadata`.

Tables (every row has a ``tenant``, ``"default"`` unless given, and every read can filter by it)::

    shows    id PK, tenant, path, name, duration, settings_hash, status, error, created_at, updated_at
    moments  id PK, show_id FK shows, tenant, start, end, score, peak, reasons (JSON), transcript,
             clip_path, rank (1 = the show's best, 0 = not ranked), confidence (0-100, calibrated),
             strong (reached the threshold on its own; weak ones are only the show's best few),
             created_at
    clips    moment_id PK FK moments, show_id FK shows, tenant, path, start, end, mode, srt_path,
             thumb_path, seconds, created_at, format, burned, state (provisional | final: a live clip
             published before its moment was final; replaced or confirmed in place later), revision
             (how often it was cut again in place)
    ramp_decisions  id PK, show_id FK shows, tenant, t, level, share, reason
    reviews  moment_id PK FK moments, tenant, verdict (approve | reject), note, updated_at
    api_tokens  id PK, tenant, name, hash (SHA-256 of the secret; the secret itself is never
             stored), created_at, revoked_at
    sessions  id PK (SHA-256 of the session secret, which is never stored), tenant, token_id FK
             api_tokens (the token signed in with), created_at, expires_at, revoked_at
    product_segments  id PK (ProductSegment.id), show_id FK shows, tenant, product (its id), name, n,
             start, end, confidence (0-100), heard (JSON), evidence (JSON), clip_path, srt_path,
             thumb_path, clip_start, clip_end, mode, seconds (the product clip; "" / 0 when not
             cut), ad_words (JSON: the hits said inside the segment), created_at
    ad_word_hits  id PK (derived from show, phrase and time), show_id FK shows, tenant, phrase,
             start, end, text, segment_id (the product segment it was said in, or NULL), moment_id
             (the moment whose clip it was said in, or NULL), created_at
    tenant_settings  (tenant, key) PK, value (JSON), updated_at: a tenant's own settings, such as
             its ad-wording list (:meth:`Store.ad_words_for`) and its publish webhook
    publications  id PK, (clip_id, tenant) unique, show_id, status (pending | sent | failed),
             attempts, last_error, response_status, remote_id (the receiver's id), target (the
             webhook's origin and path), created_at, updated_at, sent_at: a clip sent to the tenant's
             webhook (:meth:`Store.claim_publication`)
    clip_audience  (clip_id, tenant, kind, user) PK, created_at: the distinct users the platform
             reported viewing (``view``) or clicking through (``click``) a published clip

``shows.products`` (JSON, NULL when none was given) keeps the show's product list as
:func:`ace.products.catalog.product_to_dict` writes it.

``status`` is one of :data:`SHOW_STATUSES`. Times of the media are float seconds; ``created_at`` /
``updated_at`` are wall-clock UTC. A column added after the first release says so: ``Store.create_all``
adds it to an older database with its server default.
"""

from __future__ import annotations

import sqlalchemy as sa

#: A show's life: pending -> running -> done | failed.
SHOW_STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed")
DEFAULT_TENANT = "default"

metadata = sa.MetaData()

shows_table = sa.Table(
    "shows",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("path", sa.Text, nullable=False, server_default=""),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("duration", sa.Float, nullable=False, server_default="0"),
    sa.Column("settings_hash", sa.String, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="ck_shows_status"),
    # added later: create_all adds it to an older database (NULL: no product list given)
    sa.Column("products", sa.JSON, nullable=True),
)

moments_table = sa.Table(
    "moments",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("show_id", sa.String, sa.ForeignKey("shows.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("start", sa.Float, nullable=False),
    sa.Column("end", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("peak", sa.Float, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("transcript", sa.Text, nullable=False, server_default=""),
    sa.Column("clip_path", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # added after the first release: create_all adds them to an older database, with these defaults
    sa.Column("rank", sa.Integer, nullable=False, server_default="0"),
    sa.Column("confidence", sa.Float, nullable=False, server_default="0"),
    sa.Column("strong", sa.Boolean, nullable=False, server_default=sa.true()),
)

#: how :meth:`Store.list_moments` can order a show's moments
MOMENT_ORDERS: tuple[str, ...] = ("time", "rank")

clips_table = sa.Table(
    "clips",
    metadata,
    sa.Column("moment_id", sa.String, sa.ForeignKey("moments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("show_id", sa.String, sa.ForeignKey("shows.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("start", sa.Float, nullable=False),
    sa.Column("end", sa.Float, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("srt_path", sa.Text, nullable=False, server_default=""),
    sa.Column("thumb_path", sa.Text, nullable=False, server_default=""),
    sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # the clip's shape (source, vertical, square) and whether captions are burned into it
    sa.Column("format", sa.String(16), nullable=False, server_default="source"),
    sa.Column("burned", sa.Boolean, nullable=False, server_default=sa.false()),
    # a live clip published before its moment was final (provisional), or final; how often it was
    # cut again in place (create_all adds both to an older database: final, 0)
    sa.Column("state", sa.String(16), nullable=False, server_default="final"),
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
)

ramp_table = sa.Table(
    "ramp_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("show_id", sa.String, sa.ForeignKey("shows.id", ondelete="CASCADE"), nullable=False),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("t", sa.Float, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_ramp_decisions_show_t", "show_id", "t"),
)

reviews_table = sa.Table(
    "reviews",
    metadata,
    sa.Column("moment_id", sa.String, sa.ForeignKey("moments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("verdict", sa.String(8), nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("verdict IN ('approve', 'reject')", name="ck_reviews_verdict"),
)

tokens_table = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

#: the web page's sign-in sessions: a session lives until ``expires_at``, until it is revoked
#: (sign-out), or until the API token it was opened with is revoked, whichever comes first
sessions_table = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String, nullable=False, index=True),
    sa.Column("token_id", sa.String(16), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

#: each product's pitch (a 看点) in a show, with its clip when one was cut
product_segments_table = sa.Table(
    "product_segments",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("show_id", sa.String, sa.ForeignKey("shows.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("product", sa.String, nullable=False),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("n", sa.Integer, nullable=False, server_default="1"),
    sa.Column("start", sa.Float, nullable=False),
    sa.Column("end", sa.Float, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False, server_default="0"),
    sa.Column("heard", sa.JSON, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("clip_path", sa.Text, nullable=False, server_default=""),
    sa.Column("srt_path", sa.Text, nullable=False, server_default=""),
    sa.Column("thumb_path", sa.Text, nullable=False, server_default=""),
    sa.Column("clip_start", sa.Float, nullable=False, server_default="0"),
    sa.Column("clip_end", sa.Float, nullable=False, server_default="0"),
    sa.Column("mode", sa.String(16), nullable=False, server_default=""),
    sa.Column("seconds", sa.Float, nullable=False, server_default="0"),
    sa.Column("ad_words", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_product_segments_show_start", "show_id", "start"),
)

#: ad-wording phrases heard in a show, with the product segment and the moment's clip they fall in
ad_word_hits_table = sa.Table(
    "ad_word_hits",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("show_id", sa.String, sa.ForeignKey("shows.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("tenant", sa.String, nullable=False, server_default=DEFAULT_TENANT, index=True),
    sa.Column("phrase", sa.Text, nullable=False),
    sa.Column("start", sa.Float, nullable=False),
    sa.Column("end", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False, server_default=""),
    sa.Column("segment_id", sa.String, nullable=True),
    sa.Column("moment_id", sa.String, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

#: a tenant's own settings (its ad-wording list, ...), one JSON value per key
tenant_settings_table = sa.Table(
    "tenant_settings",
    metadata,
    sa.Column("tenant", sa.String, primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: the key of a tenant's ad-wording list in ``tenant_settings``
AD_WORDS_KEY = "ad_words"
#: the key of a tenant's publish webhook (``{"url": ..., "secret": ...}``) in ``tenant_settings``
PUBLISH_KEY = "publish"

#: A publication's life: pending (being delivered) -> sent | failed.
PUBLICATION_STATUSES: tuple[str, ...] = ("pending", "sent", "failed")
#: What the platform reports of a published clip's audience.
AUDIENCE_KINDS: tuple[str, ...] = ("view", "click")

#: clips sent to the tenant's publish webhook, one row per clip and tenant
publications_table = sa.Table(
    "publications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("clip_id", sa.String, nullable=False),
    sa.Column("tenant", sa.String, nullable=False, index=True),
    sa.Column("show_id", sa.String, nullable=False, server_default="", index=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("remote_id", sa.String(200), nullable=True),
    sa.Column("target", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("clip_id", "tenant", name="uq_publications_clip_tenant"),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_publications_status"),
)

#: the distinct users who viewed or clicked a published clip, as the platform reported them
clip_audience_table = sa.Table(
    "clip_audience",
    metadata,
    sa.Column("clip_id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String, primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("user", sa.String(200), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('view', 'click')", name="ck_clip_audience_kind"),
)

#: what an API token looks like: ``ace_`` + 8 hex (its id) + ``_`` + 43 url-safe characters
TOKEN_PREFIX = "ace_"
#: what a session secret looks like: ``aces_`` + 43 url-safe characters (never an API token)
SESSION_PREFIX = "aces_"
