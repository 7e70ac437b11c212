"""The composition root of the service: the API (``kensa.backend``) with the tablet web client
(``kensa.client``) mounted at ``/``. Neither wing imports the other; only this module joins them."""

from __future__ import annotations

from fastapi import FastAPI

from kensa.backend.config import Settings
from kensa.backend.main import create_app as create_api


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API, plus the web client at ``/`` unless ``settings.serve_client`` is off."""
    settings = settings or Settings()
    app = create_api(settings)
    if settings.serve_client:
        from kensa.client.web import mount_client

        secret = settings.web_secret_key
        mount_client(app, data_dir=settings.data_dir, max_upload_bytes=settings.max_upload_bytes,
                     api_url=settings.client_api_url,
                     secret_key=secret.get_secret_value() if secret else None,
                     token=settings.client_token)
    return app
