"""The one typed client of the kensa REST API, for the tablet app and the command line.

Async over httpx (the CLI drives it with ``asyncio.run``). Answers are parsed into the wire
schemas of :mod:`kensa.contract.schemas`; every failure becomes an :class:`ApiError` whose
message can be shown to a person as is.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from kensa.contract.constants import API_PREFIX, DEFAULT_SERVER_URL
from kensa.contract.schemas import (
    AgreementPublic,
    DatasetImagesAdded,
    DatasetPublic,
    DetectorKindPublic,
    DetectorPublic,
    DetectorVersionPublic,
    InspectionList,
    InspectionPublic,
    JobPublic,
    PseudoLabelConfirmed,
    PseudoLabelList,
    ReviewList,
    ReviewPublic,
    SamplePublic,
    StatsPublic,
    TokenPublic,
    UserPublic,
)

InspectionId = uuid.UUID | str
MISSING_INSPECTION = "That inspection does not exist (any more)."
_DETECTORS = TypeAdapter(list[DetectorPublic])
_SAMPLES = TypeAdapter(list[SamplePublic])
_DATASETS = TypeAdapter(list[DatasetPublic])
_JOBS = TypeAdapter(list[JobPublic])
_KINDS = TypeAdapter(list[DetectorKindPublic])
_VERSIONS = TypeAdapter(list[DetectorVersionPublic])
_REVIEWS = TypeAdapter(list[ReviewPublic])


class ApiError(Exception):
    """A request failed. ``message`` is plain words; ``unreachable`` means: no answer at all."""

    def __init__(self, message: str, status: int | None = None, unreachable: bool = False,
                 retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.unreachable = unreachable
        self.retry_after = retry_after  # seconds, from a 429's or 503's Retry-After


@dataclass(frozen=True)
class Query:
    """Filters for the inspection list and the statistics (all optional)."""

    start: str | None = None  # ISO date or datetime, inclusive
    end: str | None = None  # ISO date or datetime, exclusive
    labels: tuple[str, ...] = ()
    verdict: str | None = None  # ok | defect | review
    has_defect: bool | None = None
    station: str | None = None
    reviewed: bool | None = None  # has a human verdict
    human_verdict: str | None = None  # ok | defect
    disagreement: bool | None = None  # human verdict differs from the machine's ok/defect

    def params(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for key in ("start", "end", "verdict", "station", "human_verdict"):
            value = getattr(self, key)
            if value:
                out.append((key, str(value)))
        for key in ("has_defect", "reviewed", "disagreement"):
            value = getattr(self, key)
            if value is not None:
                out.append((key, "true" if value else "false"))
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


def _seg(value: str) -> str:
    """A name as one URL path segment."""
    return quote(str(value), safe="")


def content_type(filename: str) -> str:
    """The photo's media type from its name (JPEG when unknown)."""
    guessed = mimetypes.guess_type(filename)[0]
    return guessed if guessed and guessed.startswith("image/") else "image/jpeg"


class ApiClient:
    """Async client for one kensa server.

    ``base_url`` is where this process reaches the server; ``public_url`` is the prefix put in
    front of image paths shown by a UI (empty in the web client, where the browser loads images
    from the same origin that served the page). Without ``public_url``, or whenever a token is
    used (a browser cannot send it with an ``<img>`` request), a UI shows images from bytes
    fetched here (``inline_images``).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER_URL,
        *,
        public_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 120.0,
        token: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._by_url = public_url is not None
        self.public_url = (self.base_url if public_url is None else public_url).rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=httpx.Timeout(timeout, connect=5),
        )
        self.token = token

    @property
    def token(self) -> str | None:
        """A sign-in token or a station key, sent as a bearer token (None: send none)."""
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._token = value or None
        if self._token:
            self._http.headers["Authorization"] = f"Bearer {self._token}"
        else:
            self._http.headers.pop("Authorization", None)

    @property
    def inline_images(self) -> bool:
        """True when a UI must show pictures from bytes fetched here, not by URL."""
        return not self._by_url or self._token is not None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, *, missing: str | None = None,
                       **kwargs: Any) -> httpx.Response:
        """One request; ``missing`` is the words for a 404 (default: the server's detail)."""
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
        status = response.status_code
        wait = response.headers.get("Retry-After", "")
        retry_after = int(wait) if wait.isdigit() else None
        if status >= 500:
            raise ApiError(f"The server had a problem ({status}): {_detail(response)}",
                           status=status, retry_after=retry_after)
        if status == 404:
            raise ApiError(missing or _detail(response) or "Not found.", status=404)
        if status >= 400:
            raise ApiError(_detail(response) or "The server refused the request.", status=status,
                           retry_after=retry_after)
        return response

    async def _inspection(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._request(method, f"{API_PREFIX}/inspections{path}",
                                   missing=MISSING_INSPECTION, **kwargs)

    # accounts ---------------------------------------------------------------------------------
    async def sign_in(self, username: str, password: str) -> TokenPublic:
        """Trade a username and password for a token; this client sends it from now on."""
        response = await self._request("POST", f"{API_PREFIX}/auth/token",
                                       data={"username": username, "password": password})
        token = TokenPublic.model_validate_json(response.content)
        self.token = token.access_token
        return token

    async def me(self) -> UserPublic:
        """Who the token belongs to (its role is the server's word)."""
        response = await self._request("GET", f"{API_PREFIX}/auth/me")
        return UserPublic.model_validate_json(response.content)

    async def sign_out(self) -> None:
        """Revoke this client's token on the server and stop sending it (also when the server
        cannot be reached or the token was already dead)."""
        try:
            if self.token:
                await self._request("POST", f"{API_PREFIX}/auth/logout")
        finally:
            self.token = None

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
        image: bytes | IO[bytes],
        filename: str,
        *,
        station: str = "",
        operator: str = "",
        note: str = "",
        detectors: Iterable[str] = (),
    ) -> InspectionPublic:
        data: dict[str, str] = {"station": station, "operator": operator, "note": note}
        names = ",".join(detectors)
        if names:
            data["detectors"] = names
        files = {"image": (filename, image, content_type(filename))}
        response = await self._inspection("POST", "", data=data, files=files)
        return InspectionPublic.model_validate_json(response.content)

    async def list_inspections(
        self, query: Query = Query(), *, limit: int = 24, offset: int = 0,
        include_deleted: bool = False,
    ) -> InspectionList:
        params = [*query.params(), ("limit", str(limit)), ("offset", str(offset))]
        if include_deleted:
            params.append(("include_deleted", "true"))
        response = await self._inspection("GET", "", params=params)
        return InspectionList.model_validate_json(response.content)

    async def get_inspection(self, inspection_id: InspectionId) -> InspectionPublic:
        response = await self._inspection("GET", f"/{inspection_id}")
        return InspectionPublic.model_validate_json(response.content)

    async def delete_inspection(self, inspection_id: InspectionId) -> None:
        await self._inspection("DELETE", f"/{inspection_id}")

    async def restore_inspection(self, inspection_id: InspectionId) -> InspectionPublic | None:
        response = await self._inspection("POST", f"/{inspection_id}/restore")
        return InspectionPublic.model_validate_json(response.content) if response.content else None

    def image_path(self, inspection_id: InspectionId, layers: Iterable[str] = ()) -> str:
        """The API path of the original photo, or of the overlay with ``layers`` drawn on it."""
        names = ",".join(layers)
        if names:
            return f"{API_PREFIX}/inspections/{inspection_id}/overlay?layers={names}"
        return f"{API_PREFIX}/inspections/{inspection_id}/image"

    async def image_bytes(self, inspection_id: InspectionId, layers: Iterable[str] = ()) -> bytes:
        """The original photo, or the overlay with ``layers`` drawn on it."""
        return await self.fetch_bytes(self.image_path(inspection_id, layers))

    # the review queue and human verdicts --------------------------------------------------------
    async def reviews(self, status: str = "open", *, station: str | None = None,
                      limit: int = 24, offset: int = 0) -> ReviewList:
        """The review queue, oldest first (``status``: open | done); ``open`` is the count of
        open entries (at ``station``) for a badge."""
        params = [("status", status), ("limit", str(limit)), ("offset", str(offset))]
        if station:
            params.append(("station", station))
        response = await self._request("GET", f"{API_PREFIX}/reviews", params=params)
        return ReviewList.model_validate_json(response.content)

    async def review(self, inspection_id: InspectionId, decision: str, *,
                     labels: Iterable[str] = (), comment: str | None = None,
                     mask: bytes | None = None) -> InspectionPublic:
        """Record a person's verdict (``ok`` | ``defect``) beside the machine's; ``mask`` is a
        PNG at the photo's size (non-zero = defect). A re-review replaces the current one and
        keeps the earlier in the record's history. Returns the updated record."""
        path = f"/{inspection_id}/review"
        if mask is None:
            body: dict[str, Any] = {"decision": decision, "labels": list(labels)}
            if comment:
                body["comment"] = comment
            response = await self._inspection("POST", path, json=body)
        else:
            # a dict (lists for repeated fields): httpx sends a list of pairs with files as a
            # sync stream, which an AsyncClient refuses
            data: dict[str, Any] = {"decision": decision, "labels": list(labels)}
            if comment:
                data["comment"] = comment
            response = await self._inspection(
                "POST", path, data=data, files={"mask": ("mask.png", mask, "image/png")})
        return InspectionPublic.model_validate_json(response.content)

    async def pseudo_labels(self, *, station: str | None = None, min_confidence: float = 0.9,
                            limit: int = 50, offset: int = 0) -> PseudoLabelList:
        """Unreviewed inspections whose classifier and segmenter agree with high confidence:
        proposed labels, newest first."""
        params = [("min_confidence", str(min_confidence)), ("limit", str(limit)),
                  ("offset", str(offset))]
        if station:
            params.append(("station", station))
        response = await self._request("GET", f"{API_PREFIX}/reviews/pseudo-labels",
                                       params=params)
        return PseudoLabelList.model_validate_json(response.content)

    async def confirm_pseudo_labels(self, inspection_ids: Iterable[InspectionId], *,
                                    min_confidence: float = 0.9) -> PseudoLabelConfirmed:
        """Record the proposals as reviews by the signed-in manager (all or nothing)."""
        body = {"inspection_ids": [str(i) for i in inspection_ids],
                "min_confidence": min_confidence}
        response = await self._request("POST", f"{API_PREFIX}/reviews/pseudo-labels/confirm",
                                       json=body)
        return PseudoLabelConfirmed.model_validate_json(response.content)

    def review_mask_path(self, inspection_id: InspectionId) -> str:
        """The API path of the current review's mask (``ReviewPublic.mask_url``)."""
        return f"{API_PREFIX}/inspections/{inspection_id}/review/mask"

    async def review_history(self, inspection_id: InspectionId) -> list[ReviewPublic]:
        """Every human verdict on the inspection, oldest first (``current`` marks the one)."""
        response = await self._inspection("GET", f"/{inspection_id}/reviews")
        return _REVIEWS.validate_json(response.content)

    async def agreement(self, query: Query = Query(), *, detector: str | None = None,
                        bucket: str = "day") -> AgreementPublic:
        """Machine vs human verdicts: confusion, false-alarm and miss rates, per detector
        version and per bucket (``query``: start, end, station are used)."""
        params = [(k, v) for k, v in query.params() if k in ("start", "end", "station")]
        params.append(("bucket", bucket))
        if detector:
            params.append(("detector", detector))
        response = await self._request("GET", f"{API_PREFIX}/stats/agreement", params=params)
        return AgreementPublic.model_validate_json(response.content)

    # statistics and detectors -------------------------------------------------------------------
    async def stats(self, query: Query = Query(), *, bucket: str = "day") -> StatsPublic:
        params = [*query.params(), ("bucket", bucket)]
        response = await self._request("GET", f"{API_PREFIX}/stats", params=params)
        return StatsPublic.model_validate_json(response.content)

    async def detectors(self) -> list[DetectorPublic]:
        response = await self._request("GET", f"{API_PREFIX}/detectors")
        return _DETECTORS.validate_json(response.content)

    async def set_threshold(self, name: str, threshold: float,
                            label: str | None = None) -> DetectorPublic:
        """Change a detector's decision threshold now (saved with its artifact)."""
        body: dict[str, Any] = {"threshold": threshold}  # the server judges it (ThresholdUpdate)
        if label:
            body["label"] = label
        response = await self._request("PATCH", f"{API_PREFIX}/detectors/{name}", json=body)
        return DetectorPublic.model_validate_json(response.content)

    async def detector_kinds(self) -> list[DetectorKindPublic]:
        """Every registered detector kind (``trainable``: a train job can fit it)."""
        response = await self._request("GET", f"{API_PREFIX}/detectors/kinds")
        return _KINDS.validate_json(response.content)

    # datasets, jobs, versions -------------------------------------------------------------------
    async def create_dataset(self, name: str, station: str | None = None) -> DatasetPublic:
        body: dict[str, Any] = {"name": name}
        if station:
            body["station"] = station
        response = await self._request("POST", f"{API_PREFIX}/datasets", json=body)
        return DatasetPublic.model_validate_json(response.content)

    async def datasets(self) -> list[DatasetPublic]:
        response = await self._request("GET", f"{API_PREFIX}/datasets")
        return _DATASETS.validate_json(response.content)

    async def get_dataset(self, dataset: str) -> DatasetPublic:
        """A dataset by id or name."""
        response = await self._request("GET", f"{API_PREFIX}/datasets/{_seg(dataset)}")
        return DatasetPublic.model_validate_json(response.content)

    async def add_images(self, dataset: str, images: Iterable[tuple[str, bytes]],
                         label: str = "good") -> DatasetImagesAdded:
        """Upload ``(filename, bytes)`` photos into a dataset under one label."""
        files = [("image", (name, data, content_type(name))) for name, data in images]
        response = await self._request("POST", f"{API_PREFIX}/datasets/{_seg(dataset)}/images",
                                       data={"label": label}, files=files)
        return DatasetImagesAdded.model_validate_json(response.content)

    async def add_from_history(self, dataset: str, inspection_ids: Iterable[InspectionId],
                               label: str = "good") -> DatasetImagesAdded:
        """Add stored inspection photos to a dataset under one label."""
        body = {"inspection_ids": [str(i) for i in inspection_ids], "label": label}
        response = await self._request("POST", f"{API_PREFIX}/datasets/{_seg(dataset)}/images",
                                       json=body)
        return DatasetImagesAdded.model_validate_json(response.content)

    async def train(self, dataset: str, detector: str, name: str, *,
                    config: dict[str, Any] | None = None, quick: bool = False,
                    created_by: str | None = None) -> JobPublic:
        """Start a train job: fit a ``detector`` kind on ``dataset`` as the instance ``name``."""
        body: dict[str, Any] = {"kind": "train", "dataset": dataset, "detector": detector,
                                "name": name, "config": config or {}, "quick": quick}
        if created_by:
            body["created_by"] = created_by
        response = await self._request("POST", f"{API_PREFIX}/jobs", json=body)
        return JobPublic.model_validate_json(response.content)

    async def job(self, job_id: uuid.UUID | str) -> JobPublic:
        response = await self._request("GET", f"{API_PREFIX}/jobs/{job_id}")
        return JobPublic.model_validate_json(response.content)

    async def jobs(self) -> list[JobPublic]:
        """The latest jobs, newest first."""
        response = await self._request("GET", f"{API_PREFIX}/jobs")
        return _JOBS.validate_json(response.content)

    async def cancel_job(self, job_id: uuid.UUID | str) -> JobPublic:
        response = await self._request("POST", f"{API_PREFIX}/jobs/{job_id}/cancel")
        return JobPublic.model_validate_json(response.content)

    async def versions(self, name: str) -> list[DetectorVersionPublic]:
        """Every trained version of the detector ``name``, oldest first."""
        response = await self._request("GET", f"{API_PREFIX}/detectors/{_seg(name)}/versions")
        return _VERSIONS.validate_json(response.content)

    async def activate(self, name: str, version: str) -> DetectorVersionPublic:
        """Serve ``version`` of ``name`` for new inspections (rollback: an older one)."""
        response = await self._request(
            "POST", f"{API_PREFIX}/detectors/{_seg(name)}/versions/{version}/activate")
        return DetectorVersionPublic.model_validate_json(response.content)

    async def shadow(self, name: str, version: str) -> DetectorVersionPublic:
        """Run ``version`` beside the active one (stored, not shown)."""
        response = await self._request(
            "POST", f"{API_PREFIX}/detectors/{_seg(name)}/versions/{version}/shadow")
        return DetectorVersionPublic.model_validate_json(response.content)

    # demo samples -------------------------------------------------------------------------------
    async def samples(self) -> list[SamplePublic]:
        """The sample strips the demo booth offers."""
        response = await self._request("GET", f"{API_PREFIX}/samples")
        return _SAMPLES.validate_json(response.content)

    # any image path the API hands out -----------------------------------------------------------
    async def fetch_bytes(self, path: str) -> bytes:
        """The body at an API path such as ``image_url`` or ``thumbnail_url``."""
        return (await self._request("GET", path)).content

    def src(self, path: str) -> str:
        """What an Image control loads for an API path (see ``public_url``)."""
        return f"{self.public_url}{path}"

    def image_src(self, inspection_id: InspectionId, layers: Iterable[str] = ()) -> str:
        return self.src(self.image_path(inspection_id, layers))
