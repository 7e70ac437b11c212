"""Observable application state. Views read it and call its methods; it calls the API.

Nothing here knows about controls: the same state drives the web client, the desktop client
and the unit tests. Without a :class:`Session` (a token and the role the server gave it) every
route shows the sign-in screen; a 401 from any call ends the session.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import flet as ft

from kensa.client.masking import MaskDraft
from kensa.client.offline_queue import PhotoQueue, QueuedPhoto
from kensa.client.photo import Photo
from kensa.client.reviewing import Reviewing
from kensa.client.teaching import DetectorVersions, TeachForm, Teaching
from kensa.contract.client import ApiClient, ApiError, InspectionId, Query
from kensa.contract.constants import ANOMALY_LABEL, DEFAULT_SERVER_URL, USER_ROLES
from kensa.contract.schemas import (
    AgreementPublic,
    DatasetPublic,
    DetectorVersionPublic,
    FindingPublic,
    InspectionPublic,
    JobPublic,
    PseudoLabelList,
    ReviewItem,
    SamplePublic,
    StatsPublic,
)

SIGN_IN = "/sign-in"
ROUTES = ("/capture", "/result", "/history", "/detail", "/review", "/charts", "/teach", "/models",
          "/demo", "/settings")
# the lowest role a route is for (default: operator)
NEEDS_ROLE = {"/review": "manager", "/charts": "manager", "/teach": "manager",
              "/models": "manager"}
SESSION_ENDED = "Your session ended. Sign in again."
THEMES = ("light", "dark", "system")
DATE_RANGES = {"today": 0, "7 days": 7, "30 days": 30, "all": None}
PAGE_SIZE = 24
VERDICT_WORDS = {"ok": "OK", "defect": "Defect", "review": "Needs review"}


@dataclass(frozen=True)
class ClientSettings:
    """What a tablet remembers about itself (persisted client-side)."""

    server_url: str = DEFAULT_SERVER_URL
    station: str = "line-1"
    operator: str = ""
    theme: str = "light"
    demo_idle_seconds: int = 90

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientSettings:
        """Known keys only (an old ``role`` setting is dropped: the role is the server's)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        settings = cls(**known)
        if settings.theme not in THEMES:
            settings = replace(settings, theme="light")
        return settings


@dataclass(frozen=True)
class Session:
    """Who is signed in: the token, and the user and role the server reported for it."""

    token: str
    username: str
    role: str
    expires_at: str = ""  # ISO datetime; "" = unknown (a preset kiosk token)
    server: str = ""  # the API address the token belongs to

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session | None:
        """A stored session, or None when it is unreadable or has expired."""
        try:
            session = cls(**{k: str(data[k]) for k in cls.__dataclass_fields__ if k in data})
        except (TypeError, KeyError):
            return None
        return None if not session.token or session.expired() else session

    def expired(self, now: datetime | None = None) -> bool:
        if not self.expires_at:
            return False
        try:
            ends = datetime.fromisoformat(self.expires_at)
        except ValueError:
            return True
        if ends.tzinfo is None:
            ends = ends.replace(tzinfo=UTC)
        return ends <= (now or datetime.now(UTC))

    def at_least(self, role: str) -> bool:
        rank = {name: i for i, name in enumerate(USER_ROLES)}
        return rank.get(self.role, -1) >= rank[role]


def sign_in_problem(exc: ApiError, server: str) -> str:
    """Why a sign-in failed, in words a person at the tablet can act on."""
    if exc.unreachable:
        return (f"Cannot reach the server at {server}. Check the network and the server "
                "address.")
    if exc.status == 401:
        return "Wrong user name or password."
    if exc.status == 429:
        wait = f"{exc.retry_after} seconds" if exc.retry_after else "a minute"
        return f"Too many failed sign-ins. Wait {wait}, then try again."
    return f"Could not sign in: {exc.message}"


@dataclass(frozen=True)
class HistoryFilter:
    """The history and charts filter. ``days`` None = all time."""

    days: int | None = 30
    verdict: str | None = None
    has_defect: bool | None = None
    labels: tuple[str, ...] = ()
    station: str = ""

    def query(self, today: date | None = None) -> Query:
        today = today or datetime.now(UTC).date()
        start = end = None
        if self.days is not None:
            start = (today - timedelta(days=self.days)).isoformat()
            end = today.isoformat()  # the API includes the whole day of a date ``end``
        return Query(start=start, end=end, labels=self.labels, verdict=self.verdict,
                     has_defect=self.has_defect, station=self.station.strip() or None)

    def toggle_label(self, label: str) -> HistoryFilter:
        labels = tuple(x for x in self.labels if x != label)
        if len(labels) == len(self.labels):
            labels = (*self.labels, label)
        return replace(self, labels=labels)


@ft.observable
@dataclass
class AppState(Teaching, Reviewing):
    """Everything the screens show. Mutate only through the methods."""

    api: ApiClient
    queue_store: PhotoQueue
    settings: ClientSettings = field(default_factory=ClientSettings)
    session: Session | None = None  # None: the sign-in screen
    route: str = "/capture"
    busy: str = ""  # what the app is waiting for, in words; "" when idle
    error: str = ""  # the last problem, in plain words
    notice: str = ""  # the last good news (sent, restored, ...)
    online: bool = True
    photo: Photo | None = None
    current: InspectionPublic | None = None  # the inspection on the result / detail screen
    layers: tuple[str, ...] = ("masks",)
    queue: list[QueuedPhoto] = field(default_factory=list)
    filters: HistoryFilter = field(default_factory=HistoryFilter)
    history: list[InspectionPublic] = field(default_factory=list)
    history_total: int = 0
    defect_ratio: float = 0.0
    last_deleted: uuid.UUID | None = None  # the inspection an undo would restore
    bucket: str = "day"
    stats: StatsPublic | None = None
    agreement: AgreementPublic | None = None  # machine vs person on the charts
    highlight: str | None = None  # label highlighted in the charts
    demo_step: int = 1
    samples: list[SamplePublic] = field(default_factory=list)  # the demo booth's strips
    page_size: int = PAGE_SIZE
    teach: TeachForm = field(default_factory=TeachForm)  # the Teach screen's photos and choice
    good_set: DatasetPublic | None = None  # the station's good set (None: not made yet)
    job: JobPublic | None = None  # the train job the Teach screen follows
    teach_versions: tuple[DetectorVersionPublic, ...] = ()  # the taught detector's versions
    models: list[DetectorVersions] = field(default_factory=list)  # the Models screen
    reviews: list[ReviewItem] = field(default_factory=list)  # the open review queue (a page)
    review_total: int = 0  # open entries matching the Review screen's filter
    review_open: int = 0  # open entries at every station: the navigation badge
    review_here: bool = False  # the Review screen shows this station's entries only
    review_skipped: tuple[str, ...] = ()  # inspection ids skipped on this tablet
    review_labels: tuple[str, ...] = ()  # the labels chosen for the entry shown
    review_mask: MaskDraft | None = None  # the mask painted on the entry shown (None: brush off)
    mask_tool: str = "brush"  # brush | eraser
    mask_size: str = "M"  # a key of masking.BRUSH_SIZES
    mask_version: int = 0  # bumped on every stroke (the mask is changed in place)
    pseudo: PseudoLabelList | None = None  # proposed labels for a bulk confirm
    pseudo_confidence: float = 0.9  # the lowest finding score a proposal may have
    settings_version: int = 0  # bumped after settings change (views re-read inputs)

    # signing in --------------------------------------------------------------------------------
    @property
    def signed_in(self) -> bool:
        return self.session is not None

    @property
    def role(self) -> str:
        return self.session.role if self.session else ""

    @property
    def operator_name(self) -> str:
        """Recorded with each photo: the Operator setting, else the signed-in user."""
        return self.settings.operator or (self.session.username if self.session else "")

    async def sign_in(self, username: str, password: str) -> bool:
        """Ask the server for a token; keep it and the role the server reports."""
        username = username.strip()
        if not username or not password:
            self.error = "Enter your user name and password."
            return False
        self.clear_messages()
        self.busy = "Signing in…"
        try:
            token = await self.api.sign_in(username, password)
            user = await self.api.me()
        except ApiError as exc:
            self.api.token = None
            self.error = sign_in_problem(exc, self.api.base_url)
            self.online = not exc.unreachable
            return False
        finally:
            self.busy = ""
        self.online = True
        self.session = Session(token=token.access_token, username=user.username, role=user.role,
                               expires_at=token.expires_at.isoformat(), server=self.api.base_url)
        self.route = self.route if self.may_open(self.route) else "/capture"
        return True

    async def resume(self, session: Session) -> bool:
        """Use a stored (or preset) token again. The server confirms who it is; when it cannot
        be reached the stored session is kept, so photos can still be taken and queued."""
        if session.expired():
            self.session_ended()
            return False
        self.api.token = session.token
        try:
            user = await self.api.me()
        except ApiError as exc:
            if exc.unreachable:
                self.online = False
                self.session = session
                return True
            self.session_ended()
            return False
        self.online = True
        self.session = replace(session, username=user.username, role=user.role,
                               server=self.api.base_url)
        if not self.may_open(self.route):
            self.route = "/capture"
        return True

    def session_ended(self, message: str = SESSION_ENDED) -> None:
        """Back to the sign-in screen (a 401: the token expired or was revoked)."""
        self.api.token = None
        self.session = None
        self._forget()
        self.notice = ""
        self.error = message

    async def sign_out(self) -> None:
        """Revoke the token on the server (if it can be reached) and forget it here."""
        with contextlib.suppress(ApiError):
            await self.api.sign_out()
        self.api.token = None
        self.session = None
        self._forget()
        self.clear_messages()
        self.notice = "Signed out."

    def _forget(self) -> None:
        """What the last user saw is not the next one's business."""
        self.history, self.history_total, self.defect_ratio = [], 0, 0.0
        self.stats, self.agreement = None, None
        self.current = None
        self.last_deleted = None
        self.filters = HistoryFilter()
        self.teach, self.good_set, self.job, self.teach_versions = TeachForm(), None, None, ()
        self.models = []
        self.reviews, self.review_total, self.review_open = [], 0, 0
        self.review_skipped, self.review_labels, self.review_mask = (), (), None
        self.pseudo = None

    def _failed(self, exc: ApiError, message: str | None = None) -> None:
        """Show a failed call; a 401 ends the session instead."""
        if exc.status == 401:
            self.session_ended()
            return
        self.error = message or exc.message
        self.online = not exc.unreachable

    # navigation and small things --------------------------------------------------------------
    @property
    def is_manager(self) -> bool:
        """Manager or admin: filters, charts, delete."""
        return self.session is not None and self.session.at_least("manager")

    def may_open(self, route: str) -> bool:
        return (self.session is not None and route in ROUTES
                and self.session.at_least(NEEDS_ROLE.get(route, "operator")))

    @property
    def routes(self) -> list[str]:
        """The routes this role may open, in navigation order."""
        return [r for r in ROUTES if self.may_open(r)]

    def go(self, route: str) -> None:
        self.clear_messages()
        self.route = route if self.may_open(route) else "/capture"

    def clear_messages(self) -> None:
        self.error = ""
        self.notice = ""

    def update_settings(self, **changes: Any) -> ClientSettings:
        self.settings = ClientSettings.from_dict({**asdict(self.settings), **changes})
        self.settings_version += 1
        return self.settings

    def toggle_layer(self, layer: str) -> None:
        if layer in self.layers:
            self.layers = tuple(x for x in self.layers if x != layer)
        else:
            self.layers = (*self.layers, layer)

    # capture ------------------------------------------------------------------------------------
    def set_photo(self, filename: str, data: bytes) -> None:
        self.error = ""
        self.photo = Photo(filename=filename, data=data)

    async def send_photo(self, note: str = "") -> InspectionPublic | None:
        """Send the previewed photo. If the server cannot be reached it is queued on the device."""
        if self.photo is None:
            self.error = "Take or pick a photo first."
            return None
        photo = self.photo
        self.clear_messages()
        self.busy = "The server is analysing the photo…"
        try:
            record = await self.api.create_inspection(
                photo.data, photo.filename, station=self.settings.station,
                operator=self.operator_name, note=note,
            )
        except ApiError as exc:
            if exc.unreachable:
                self.queue_store.add(photo.data, photo.filename, self.settings.station,
                                     self.operator_name, note)
                self.online = False
                self.photo = None
                self.refresh_queue()
                self.notice = ("The photo is saved on this device and will be sent when the "
                               "server is back.")
            else:
                self._failed(exc, f"The server did not accept the photo: {exc.message}")
            return None
        finally:
            self.busy = ""
        self.online = True
        self.photo = None
        self.show_record(record)
        self.route = "/result"
        return record

    def show_record(self, record: InspectionPublic) -> None:
        self.current = record
        default = "masks" if any(f.label for f in record.findings) else None
        has_map = record.anomaly_score is not None
        self.layers = tuple(x for x in (default, "heatmap" if has_map else None) if x)

    # queue ----------------------------------------------------------------------------------------
    def refresh_queue(self) -> None:
        self.queue = self.queue_store.items()

    async def flush_queue(self) -> int:
        """Send queued photos oldest first; stop at the first unreachable. Returns how many went."""
        sent = 0
        for item in self.queue_store.items():
            if item.error:
                continue  # refused before; waits for the person to retry or discard
            try:
                await self.api.create_inspection(
                    self.queue_store.read(item), item.filename, station=item.station,
                    operator=item.operator, note=item.note,
                )
            except ApiError as exc:
                if exc.unreachable:
                    self.online = False
                    break
                if exc.status == 401:
                    self.session_ended()
                    break
                self.queue_store.mark_error(item, exc.message)
                self.error = f"The server refused the queued photo {item.filename}: {exc.message}"
                continue
            self.queue_store.remove(item)
            self.online = True
            sent += 1
        self.refresh_queue()
        if sent:
            self.notice = f"Sent {sent} queued photo{'s' if sent != 1 else ''}."
        return sent

    def retry_queued(self, item_id: str) -> None:
        for item in self.queue_store.items():
            if item.id == item_id:
                self.queue_store.mark_error(item, "")
        self.refresh_queue()

    def discard_queued(self, item_id: str) -> None:
        for item in self.queue_store.items():
            if item.id == item_id:
                self.queue_store.remove(item)
        self.refresh_queue()

    # history --------------------------------------------------------------------------------------
    async def load_history(self, more: bool = False) -> None:
        offset = len(self.history) if more and self.is_manager else 0
        # An operator sees the latest records only: no filters, no paging (the server's rule).
        query = self.filters.query() if self.is_manager else Query()
        self.busy = "Loading history…"
        try:
            page = await self.api.list_inspections(query, limit=self.page_size, offset=offset)
        except ApiError as exc:
            self._failed(exc)
            return
        finally:
            self.busy = ""
        self.online = True
        self.history = [*self.history, *page.items] if more else list(page.items)
        self.history_total = page.total
        self.defect_ratio = page.defect_ratio or 0.0

    @property
    def has_more(self) -> bool:
        return self.is_manager and len(self.history) < self.history_total

    async def set_filters(self, **changes: Any) -> None:
        self.filters = replace(self.filters, **changes)
        await self.load_history()

    async def toggle_label_filter(self, label: str) -> None:
        self.filters = self.filters.toggle_label(label)
        await self.load_history()

    async def open_detail(self, inspection_id: InspectionId) -> None:
        try:
            record = await self.api.get_inspection(inspection_id)
        except ApiError as exc:
            self._failed(exc)
            return
        self.show_record(record)
        self.route = "/detail"

    async def delete(self, inspection_id: uuid.UUID) -> bool:
        """Soft-delete; the id is kept in ``last_deleted`` for :meth:`undo_delete`."""
        if not self.is_manager:
            self.error = "Only a manager can delete inspections."
            return False
        try:
            await self.api.delete_inspection(inspection_id)
        except ApiError as exc:
            self._failed(exc, f"Could not delete: {exc.message}")
            return False
        self.last_deleted = inspection_id
        self.history = [r for r in self.history if r.id != inspection_id]
        self.history_total = max(0, self.history_total - 1)
        if self.current and self.current.id == inspection_id:
            self.current = None
            self.route = "/history"
        return True

    async def undo_delete(self) -> bool:
        inspection_id = self.last_deleted
        if inspection_id is None:
            return False
        try:
            await self.api.restore_inspection(inspection_id)
        except ApiError as exc:
            self._failed(exc, f"Could not restore: {exc.message}")
            return False
        self.last_deleted = None
        self.notice = "Inspection restored."
        await self.load_history()
        return True

    # charts ---------------------------------------------------------------------------------------
    async def load_stats(self, bucket: str | None = None) -> None:
        if bucket:
            self.bucket = bucket
        self.busy = "Loading charts…"
        query = self.filters.query()
        try:
            self.stats = await self.api.stats(query, bucket=self.bucket)
            # machine vs person over the same period and station (labels/verdict not applied)
            self.agreement = await self.api.agreement(query, bucket=self.bucket)
        except ApiError as exc:
            self._failed(exc)
        finally:
            self.busy = ""

    def toggle_highlight(self, label: str | None) -> None:
        self.highlight = None if label is None or label == self.highlight else label

    # demo booth -----------------------------------------------------------------------------------
    async def load_samples(self) -> None:
        """The demo booth's sample strips from the server (once; again after a failure)."""
        if self.samples:
            return
        try:
            self.samples = await self.api.samples()
        except ApiError as exc:
            self._failed(exc, f"The sample strips could not be loaded: {exc.message}")

    async def demo_send_sample(self, sample: SamplePublic) -> InspectionPublic | None:
        try:
            data = await self.api.fetch_bytes(sample.image_url)
        except ApiError as exc:
            self._failed(exc, f"The sample strip could not be loaded: {exc.message}")
            return None
        return await self.demo_send(f"sample_{sample.name}.png", data)

    async def demo_send(self, filename: str, data: bytes) -> InspectionPublic | None:
        self.set_photo(filename, data)
        self.demo_step = 2
        record = await self.send_photo(note="demo booth")
        self.route = "/demo"
        self.demo_step = 3 if record else 1
        return record

    async def demo_show_history(self) -> None:
        self.filters = HistoryFilter(days=7)
        self.highlight = None
        await self.load_history()
        if self.is_manager:  # the charts are a manager's
            await self.load_stats("day")
        self.demo_step = 4

    def demo_reset(self) -> None:
        self.demo_step = 1
        self.photo = None
        self.current = None
        self.highlight = None
        self.clear_messages()


def label_names(records: list[InspectionPublic]) -> list[str]:
    """Distinct finding labels in ``records``, sorted."""
    return sorted({f.label for r in records for f in r.findings if f.label})


def explain(finding: FindingPublic) -> str:
    """One line, in words, of what a finding says."""
    label = (finding.label or ANOMALY_LABEL).replace("_", " ")
    parts = [label.capitalize()]
    if finding.area_px:
        parts.append(f"{finding.area_px:,} pixels that look unlike good steel"
                     if label == ANOMALY_LABEL else f"over {finding.area_px:,} pixels")
    parts.append(f"score {finding.score:.2f}")
    return f"{', '.join(parts)} (found by {finding.detector or 'detector'})."


def short_id(record: InspectionPublic) -> str:
    """A short, readable form of the record id (UUIDs are long)."""
    return str(record.id)[:8]
