"""Service settings from the environment (prefix ``KENSA_``) or arguments.

Defaults put everything under one data directory, ``./kensa-data`` relative to the working
directory (``KENSA_DATA_DIR``): the SQLite database ``kensa.db``, trained detectors in
``models/`` and stored photos, masks and overlays in ``blobs/``. ``DATABASE_URL`` (or
``KENSA_DATABASE_URL``) switches to PostgreSQL, e.g. ``postgresql+psycopg://user@host/kensa``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, computed_field
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
    extra_models: list[Path] = Field(
        default_factory=list, description="more artifact directories to serve (--model)"
    )
    max_upload_mb: float = Field(20.0, gt=0, description="largest accepted photo")
    max_pixels: int = Field(50_000_000, gt=0, description="decompression-bomb guard")
    inference_concurrency: int = Field(2, ge=1, description="detector calls at once")
    demo_good_images: int = Field(40, ge=2, description="synthetic good strips for the demo")
    serve_client: bool = Field(True, description="mount the web client at /")
    device: str | None = Field(
        None, description="where detectors run (cpu, cuda, cuda:1); default cuda when present"
    )

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
    client_token: str | None = Field(
        None, description="TEMPORARY kiosk mechanism until the tablet has a sign-in screen: "
                          "the web client's sessions send this bearer token; at start the "
                          "service registers it as a token of the first admin")


# Settings gains the fields above without touching its class body (other blocks grow there).
Settings = type("Settings", (SecuritySettings, Settings), {  # type: ignore[misc]
    "__doc__": Settings.__doc__, "__module__": __name__,
    "model_config": Settings.model_config})
