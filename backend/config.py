"""Service settings from the environment (prefix ``KENSA_``) or arguments.

Defaults put everything under one data directory, ``./kensa-data`` relative to the working
directory (``KENSA_DATA_DIR``): the SQLite database ``kensa.db``, trained detectors in
``models/`` and stored photos, masks and overlays in ``blobs/``. ``DATABASE_URL`` (or
``KENSA_DATABASE_URL``) switches to PostgreSQL, e.g. ``postgresql+psycopg://user@host/kensa``,
or MariaDB/MySQL, e.g. ``mysql+pymysql://user:password@host/kensa?charset=utf8mb4``.

Blobs go to the local folder unless an S3-compatible object store is configured, either as one
URL, ``KENSA_STORAGE_URL=s3://bucket/some/prefix``, or field by field: ``KENSA_S3_BUCKET``,
``KENSA_S3_PREFIX``. The connection: ``KENSA_S3_ENDPOINT_URL`` (MinIO, Ceph, ...; omit for AWS),
``KENSA_S3_REGION``, ``KENSA_S3_ACCESS_KEY_ID``, ``KENSA_S3_SECRET_ACCESS_KEY`` (omit the keys
to use boto3's own credential chain: ``AWS_*`` variables, config files, instance roles).
A bucket given both ways must agree. Blobs that no row references and temporary leftovers of
interrupted writes are swept at startup once older than ``KENSA_STORAGE_SWEEP_GRACE_S``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("kensa-data")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KENSA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="root of database, models and blobs")
    database_url_override: str | None = Field(
        None,
        validation_alias=AliasChoices("KENSA_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="SQLAlchemy URL; default: SQLite file <data_dir>/kensa.db",
    )
    model_dir_override: Path | None = Field(
        None, validation_alias=AliasChoices("KENSA_MODEL_DIR", "model_dir"),
        description="detector artifacts, one directory each; default <data_dir>/models",
    )
    storage_dir_override: Path | None = Field(
        None, validation_alias=AliasChoices("KENSA_STORAGE_DIR", "storage_dir"),
        description="content-addressed blobs; default <data_dir>/blobs",
    )
    storage_url: str | None = Field(
        None, description="s3://bucket/prefix for an S3-compatible store; default: local folder",
    )
    s3_bucket: str | None = Field(None, description="S3 bucket (instead of storage_url)")
    s3_prefix: str = Field("", description="key prefix inside the bucket, e.g. 'kensa/'")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint; default AWS")
    s3_region: str | None = Field(None, description="S3 region, e.g. eu-central-1")
    s3_access_key_id: str | None = Field(None, description="default: boto3's credential chain")
    s3_secret_access_key: SecretStr | None = Field(None, description="with s3_access_key_id")
    storage_sweep_grace_s: float = Field(
        600.0, ge=0, description="startup sweep: only unreferenced blobs and temporary files "
                                 "older than this are removed (in-flight uploads of other "
                                 "replicas are younger)",
    )
    extra_models: list[Path] = Field(
        default_factory=list, description="more artifact directories to serve (--model)"
    )
    max_upload_mb: float = Field(20.0, gt=0, description="largest accepted photo")
    max_pixels: int = Field(
        25_000_000, gt=0, description="largest photo in pixels (width x height), refused with "
                                      "413 from its header before it is decoded")
    inspections_per_minute: int = Field(
        300, ge=1, description="uploads (POST /api/v1/inspections) one client (user or station "
                               "key, from one address) may send per minute; more get 429")
    inference_concurrency: int = Field(2, ge=1, description="detector calls at once")
    batch_max: int | None = Field(
        None, ge=1, description="dynamic batching: concurrent photos for one detector run as "
        "one batch of at most this many (1: no batching). Default: 8 on a GPU, 1 on the CPU, "
        "where two single runs on two cores beat one batch (docs/RESULTS.md, issue 12)")
    batch_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="how long a photo waits for others to join its batch "
                                        "(only while another request of that detector is in "
                                        "flight, so a lone client never waits)")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads (default: torch's own, or "
                                "OMP_NUM_THREADS); ONNX Runtime / OpenVINO engines use the same "
                                "number. With inference_concurrency batches at once, "
                                "concurrency x threads should not exceed the cores")
    demo_good_images: int = Field(40, ge=2, description="synthetic good strips for the demo")
    demo_tasks: list[Literal["anomaly", "classify", "segment"]] = Field(
        default_factory=lambda: ["anomaly", "classify", "segment"], min_length=1,
        description="demo detectors served when no trained one is found (services.demo)")
    version_poll_s: float = Field(
        5.0, ge=0, description="how often a replica checks the database for versions "
                               "activated elsewhere (0: never)")
    serve_client: bool = Field(True, description="mount the web client at /")
    device: str | None = Field(
        None, description="where detectors run (cpu, cuda, cuda:1); default cuda when present"
    )
    client_api_url: str | None = Field(
        None, validation_alias=AliasChoices("KENSA_CLIENT_API_URL", "client_api_url"),
        description="where the web client's sessions call the API; default: the address "
                    "the server was reached at",
    )
    web_secret_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("KENSA_WEB_SECRET_KEY", "FLET_SECRET_KEY",
                                      "web_secret_key"),
        description="signs the web client's upload URLs; default: a new random key per start",
    )

    job_runner: str = Field("local", description="local (worker subprocess) or celery")
    job_concurrency: int = Field(1, ge=1, description="training jobs at once (local runner)")
    job_heartbeat_s: float = Field(10.0, gt=0, description="how often a running job's worker "
                                                           "writes that it is alive")
    job_lost_after_s: float = Field(
        300.0, ge=0, description="a running job whose worker has not written for this long "
                                 "(its machine stopped, its process hung) is failed as lost, "
                                 "whichever host ran it (0: never)")
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker")
    celery_queue: str = Field("kensa", description="the Celery queue training jobs go to")

    @model_validator(mode="after")
    def _one_bucket(self) -> Settings:
        if self.storage_url is None:
            return self
        parts = urlsplit(self.storage_url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"storage_url must look like s3://bucket/prefix, got "
                             f"{self.storage_url!r}")
        prefix = parts.path.strip("/")
        if self.s3_bucket not in (None, parts.netloc) or (
                self.s3_prefix.strip("/") not in ("", prefix)):
            raise ValueError("storage_url and s3_bucket/s3_prefix name different places")
        return self

    @property
    def s3_location(self) -> tuple[str, str] | None:
        """(bucket, prefix) when blobs go to an S3-compatible store, else None."""
        if self.storage_url:
            parts = urlsplit(self.storage_url)
            return parts.netloc, parts.path.strip("/")
        if self.s3_bucket:
            return self.s3_bucket, self.s3_prefix.strip("/")
        return None

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def database_url(self) -> str:
        if self.database_url_override:
            return self.database_url_override
        return f"sqlite:///{(self.data_dir / 'kensa.db').resolve()}"

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def model_dir(self) -> Path:
        return self.model_dir_override or self.data_dir / "models"

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def storage_dir(self) -> Path:
        return self.storage_dir_override or self.data_dir / "blobs"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def ensure_dirs(self) -> None:
        for directory in (self.data_dir, self.model_dir, self.storage_dir):
            directory.mkdir(parents=True, exist_ok=True)


# -- accounts and web security (the "auth" block; kept apart from the other settings) ----------
class SecuritySettings(BaseSettings):
    """Sign-in, tokens, CORS. Mixed into :class:`Settings` below."""

    admin_password: str | None = Field(
        None, description="password of the first admin (default: random, printed once and "
                          "written to <data_dir>/initial-admin-password)")
    token_ttl_hours: float = Field(12.0, gt=0, description="how long a sign-in token lives")
    login_failures_per_minute: int = Field(
        5, ge=1, description="failed sign-ins allowed per username and per client address")
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header values served (exact names, "
                                          "'*.example.com', or '*' for any); others get 400. "
                                          "Default: localhost, this machine's names and any "
                                          "IP address")
    client_token: str | None = Field(
        None, description="TEMPORARY kiosk mechanism until the tablet has a sign-in screen: "
                          "the web client's sessions send this bearer token; at start the "
                          "service registers it as a token of the first admin")


# Settings gains the fields above without touching its class body (other blocks grow there).
Settings = type("Settings", (SecuritySettings, Settings), {  # type: ignore[misc]
    "__doc__": Settings.__doc__, "__module__": __name__,
    "model_config": Settings.model_config})


# -- the review loop (its own block, mixed in as above) ----------------------------------------
class ReviewSettings(BaseSettings):
    """Which inspections reach a person, and where confirmed photos go."""

    review_uncertain_share: float = Field(
        0.1, ge=0, le=1, description="of the inspections not already 'review': the share "
                                     "nearest the threshold (among the station's recent ones) "
                                     "queued for a person")
    review_random_share: float = Field(0.02, ge=0, le=1,
                                       description="a random share queued besides")
    review_window: int = Field(200, ge=1, description="recent inspections of the station the "
                                                      "uncertainty rank is taken over")
    review_stations: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per-station overrides, JSON: {\"line-2\": "
                                          "{\"uncertain_share\": 0.3, \"random_share\": 0}}")
    review_to_datasets: bool = Field(
        True, description="confirmed photos join the station's datasets automatically")
    review_good_dataset: str = Field("{station}-good",
                                     description="where a confirmed-good photo goes")
    review_labelled_dataset: str = Field(
        "{station}-labelled", description="where a confirmed defect (labels, mask) goes")
    review_holdout_share: float = Field(
        0.25, ge=0, lt=1, description="reviewed inspections a retrain holds out to compare "
                                      "the candidate with the active version")


Settings = type("Settings", (ReviewSettings, Settings), {  # type: ignore[misc]
    "__doc__": Settings.__doc__, "__module__": __name__,
    "model_config": Settings.model_config})


def effective_batch_max(settings: Settings) -> int:
    """``batch_max`` as set, else 8 when detectors run on a GPU and 1 on the CPU."""
    if settings.batch_max is not None:
        return settings.batch_max
    import torch  # the service has it; settings alone do not need it

    on_gpu = (settings.device or "").startswith("cuda") or (
        settings.device is None and torch.cuda.is_available())
    return 8 if on_gpu else 1
