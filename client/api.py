"""The only place in the client that speaks HTTP: a small async wrapper over the kensa REST API.

Every failure becomes an :class:`ApiError` whose message can be shown to a person as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

API = "/api/v1"
OVERLAY_LAYERS = ("masks", "heatmap", "gradcam")


class ApiError(Exception):
    """A request failed. ``message`` is plain words; ``unreachable`` means: no answer at all."""

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.unreachable = unreachable


@dataclass(frozen=True)
class Query:
    """Filters for the inspection list and the statistics (all optional)."""

    start: str | None = None  # ISO date or datetime, inclusive
    end: str | None = None  # ISO date or datetime, exclusive
    labels: tuple[str, ...] = ()
    verdict: str | None = None  # ok | defect | review
    has_defect: bool | None = None
    station: str | None = None

    def params(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key in ("start", "end", "verdict", "station"):
            value = getattr(self, key)
            if value:
                out.append((key, str(value)))
        if self.has_defect is not None:
            out.append(("has_defect", "true" if self.has_defect else "false"))
        out.extend(("label", label) for label in self.labels)
        return out


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI validation errors
        return "; ".join(str(item.get("msg", item)) for item in detail if isinstance(item, dict))
    return str(detail or body)


class ApiClient:
    """Async client for one kensa server.

    ``base_url`` is where this process reaches the API; ``public_url`` is the prefix put in front
    of image paths shown by the UI (empty in the web client, where the browser loads images from
    the same origin that served the page). Without ``public_url`` the UI shows images from bytes
    fetched here (``inline_images``): a desktop window or a local page on another origin.
    """

    def __init__(
        self,
        base_url: str,
        *,
        public_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 120.0,
        token: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.inline_images = public_url is None
        self.public_url = (self.base_url if public_url is None else public_url).rstrip("/")
        self.token = token  # sent as "Authorization: Bearer <token>"
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=httpx.Timeout(timeout, connect=5),
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise ApiError(
                f"Cannot reach the server at {self.base_url}. Check the network and the address "
                "in Settings.",
                unreachable=True,
            ) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(
                "The server took too long to answer. Try again in a moment.", unreachable=True
            ) from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"The request failed: {exc}", unreachable=True) from exc
        if response.status_code >= 500:
            raise ApiError(
                f"The server had a problem ({response.status_code}): {_detail(response)}",
                status=response.status_code,
            )
        if response.status_code == 404:
            raise ApiError("That inspection does not exist (any more).", status=404)
        if response.status_code >= 400:
            raise ApiError(_detail(response) or "The server refused the request.",
                           status=response.status_code)
        return response

    # health -----------------------------------------------------------------------------------
    async def ready(self) -> bool:
        """True when the server answers /readyz with 200."""
        try:
            await self._request("GET", "/readyz")
        except ApiError:
            return False
        return True

    # inspections ------------------------------------------------------------------------------
    async def create_inspection(
        self,
        image: bytes,
        filename: str,
        *,
        station: str = "",
        operator: str = "",
        note: str = "",
        detectors: Iterable[str] = (),
    ) -> dict[str, Any]:
        data: dict[str, str] = {"station": station, "operator": operator, "note": note}
        names = ",".join(detectors)
        if names:
            data["detectors"] = names
        files = {"image": (filename, image, _content_type(filename))}
        response = await self._request("POST", f"{API}/inspections", data=data, files=files)
        return response.json()

    async def list_inspections(
        self, query: Query = Query(), *, limit: int = 24, offset: int = 0,
        include_deleted: bool = False,
    ) -> dict[str, Any]:
        params = [*query.params(), ("limit", str(limit)), ("offset", str(offset))]
        if include_deleted:
            params.append(("include_deleted", "true"))
        response = await self._request("GET", f"{API}/inspections", params=params)
        return response.json()

    async def get_inspection(self, inspection_id: int | str) -> dict[str, Any]:
        return (await self._request("GET", f"{API}/inspections/{inspection_id}")).json()

    async def delete_inspection(self, inspection_id: int | str) -> None:
        await self._request("DELETE", f"{API}/inspections/{inspection_id}")

    async def restore_inspection(self, inspection_id: int | str) -> dict[str, Any] | None:
        response = await self._request("POST", f"{API}/inspections/{inspection_id}/restore")
        return response.json() if response.content else None

    async def image_bytes(self, inspection_id: int | str, layers: Iterable[str] = ()) -> bytes:
        """The original photo, or the overlay with ``layers`` drawn on it."""
        names = ",".join(layers)
        if names:
            path = f"{API}/inspections/{inspection_id}/overlay"
            response = await self._request("GET", path, params={"layers": names})
        else:
            response = await self._request("GET", f"{API}/inspections/{inspection_id}/image")
        return response.content

    # statistics and detectors -------------------------------------------------------------------
    async def stats(self, query: Query = Query(), *, bucket: str = "day") -> dict[str, Any]:
        params = [*query.params(), ("bucket", bucket)]
        return (await self._request("GET", f"{API}/stats", params=params)).json()

    async def detectors(self) -> list[dict[str, Any]]:
        body = (await self._request("GET", f"{API}/detectors")).json()
        return body.get("items", body) if isinstance(body, Mapping) else body

    # URLs the UI hands to an Image control ------------------------------------------------------
    def image_src(self, inspection_id: int | str, layers: Iterable[str] = ()) -> str:
        names = ",".join(layers)
        if names:
            return f"{self.public_url}{API}/inspections/{inspection_id}/overlay?layers={names}"
        return f"{self.public_url}{API}/inspections/{inspection_id}/image"


def _content_type(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith(".png"):
        return "image/png"
    if lower.endswith((".bmp",)):
        return "image/bmp"
    if lower.endswith((".tif", ".tiff")):
        return "image/tiff"
    if lower.endswith(".webp"):
        return "image/webp"
    return "image/jpeg"
