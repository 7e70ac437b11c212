"""Teaching a station and deploying its models: the part of :class:`~kensa.client.state.AppState`
behind the Teach and Models screens and "Add to good set" (its fields live on the state).

Each station has one good set, the dataset ``<station>-good`` (the name the server's review loop
puts confirmed-good photos under, ``review_good_dataset``): teaching uploads the new photos
into it and trains on all of it, and History adds stored photos to it. A train job is followed by
polling ``GET /jobs/{id}``; its result is shown beside the version that is active now.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from kensa.client.photo import Photo
from kensa.contract.client import ApiError
from kensa.contract.schemas import (
    JOB_FINAL,
    DatasetPublic,
    DetectorVersionPublic,
    InspectionPublic,
    JobPublic,
)

DEFAULT_KIND = "patchcore"
UPLOAD_BATCH = 8  # photos per upload request
POLL_SECONDS = 0.5


def good_set_name(station: str) -> str:
    """The dataset that holds a station's good photos."""
    return f"{station.strip() or 'station'}-good"


def default_instance(station: str, kind: str) -> str:
    """The detector name a taught station gets unless someone types another."""
    return f"{station.strip() or 'station'}-{kind}"


@dataclass(frozen=True)
class DetectorVersions:
    """One detector name and its trained versions (oldest first)."""

    name: str
    versions: tuple[DetectorVersionPublic, ...] = ()
    loaded: str | None = None  # the version the server runs now, if any

    @property
    def active(self) -> DetectorVersionPublic | None:
        return next((v for v in self.versions if v.state == "active"), None)


@dataclass(frozen=True)
class TeachForm:
    """What the Teach screen has collected before it starts."""

    photos: tuple[Photo, ...] = ()
    selected: int | None = None  # the thumbnail a retake or remove applies to
    kind: str = DEFAULT_KIND
    name: str = ""  # "" = default_instance(station, kind)
    kinds: tuple[str, ...] = field(default=(DEFAULT_KIND,))


class Teaching:
    """Teach, Models and good-set methods of the app state (``AppState`` mixes them in; they
    use its ``api``, ``settings``, ``session`` and message fields)."""

    # -- the teach form ------------------------------------------------------------------------
    def instance_name(self) -> str:
        return self.teach.name.strip() or default_instance(self.settings.station,
                                                           self.teach.kind)

    def add_teach_photos(self, photos: list[Photo]) -> None:
        self.error = ""
        self.teach = replace(self.teach, photos=(*self.teach.photos, *photos), selected=None)

    def select_teach_photo(self, index: int | None) -> None:
        same = index == self.teach.selected
        self.teach = replace(self.teach, selected=None if same else index)

    def replace_teach_photo(self, index: int, photo: Photo) -> None:
        photos = list(self.teach.photos)
        if 0 <= index < len(photos):
            photos[index] = photo
        self.teach = replace(self.teach, photos=tuple(photos), selected=None)

    def remove_teach_photo(self, index: int) -> None:
        photos = [p for i, p in enumerate(self.teach.photos) if i != index]
        self.teach = replace(self.teach, photos=tuple(photos), selected=None)

    def set_teach_choice(self, *, kind: str | None = None,
                         name: str | None = None) -> None:
        self.teach = replace(self.teach, kind=kind or self.teach.kind,
                             name=self.teach.name if name is None else name)

    async def load_teach(self) -> None:
        """The kinds a train job can fit, and the station's good set (None while it is empty)."""
        try:
            kinds = [k.kind for k in await self.api.detector_kinds()  # good photos teach these
                     if k.trainable and k.learns_from == "good-only"]
            self.good_set = await self._good_set(create=False)
        except ApiError as exc:
            self._failed(exc, f"Could not load the teaching choices: {exc.message}")
            return
        if kinds:
            kind = self.teach.kind if self.teach.kind in kinds else (
                DEFAULT_KIND if DEFAULT_KIND in kinds else kinds[0])
            self.teach = replace(self.teach, kinds=tuple(kinds), kind=kind)

    async def _good_set(self, station: str | None = None,
                        create: bool = True) -> DatasetPublic | None:
        station = self.settings.station if station is None else station
        name = good_set_name(station)
        try:
            return await self.api.get_dataset(name)
        except ApiError as exc:
            if exc.status != 404 or not create:
                if exc.status == 404:
                    return None
                raise
        try:
            return await self.api.create_dataset(name, station=station or None)
        except ApiError as exc:
            if exc.status == 409:  # made by another tablet a moment ago
                return await self.api.get_dataset(name)
            raise

    # -- teaching -------------------------------------------------------------------------------
    @property
    def teaching(self) -> bool:
        return self.job is not None and self.job.status not in JOB_FINAL

    async def start_teaching(self) -> JobPublic | None:
        """Upload the new photos into the station's good set, start a train job on it and
        follow it to the end."""
        photos = self.teach.photos
        held = self.good_set.counts.get("good", 0) if self.good_set else 0
        if not photos and not held:
            self.error = "Take photos of good parts first."
            return None
        self.clear_messages()
        self.job, self.teach_versions = None, ()
        try:
            self.busy = "Preparing the good set…"
            dataset = await self._good_set()
            for start in range(0, len(photos), UPLOAD_BATCH):
                batch = photos[start:start + UPLOAD_BATCH]
                self.busy = f"Uploading photos {start + len(batch)} of {len(photos)}…"
                added = await self.api.add_images(str(dataset.id),
                                                  [(p.filename, p.data) for p in batch])
                dataset = dataset.model_copy(update={"counts": added.counts})
            self.good_set = dataset
            self.teach = replace(self.teach, photos=(), selected=None)
            self.busy = "Starting the training…"
            self.job = await self.api.train(str(dataset.id), self.teach.kind,
                                            self.instance_name(),
                                            created_by=self.session.username
                                            if self.session else None)
        except ApiError as exc:
            self._failed(exc, f"Could not start the training: {exc.message}")
            return None
        finally:
            self.busy = ""
        self.online = True
        return await self.follow_job()

    async def follow_job(self) -> JobPublic | None:
        """Poll the job until it ends; then load its detector's versions for the comparison."""
        while self.job is not None and self.job.status not in JOB_FINAL:
            await asyncio.sleep(POLL_SECONDS)
            if not self.signed_in or self.job is None:
                return None
            try:
                self.job = await self.api.job(self.job.id)
            except ApiError as exc:
                if exc.unreachable:
                    self.online = False
                    continue  # keep following once the server is back
                self._failed(exc)
                return None
            self.online = True
        job = self.job
        if job is not None and job.status == "succeeded":
            await self._load_teach_versions(job)
        return job

    async def _load_teach_versions(self, job: JobPublic) -> None:
        try:
            self.teach_versions = tuple(await self.api.versions(str(job.params.get("name"))))
        except ApiError as exc:
            self._failed(exc)

    async def cancel_teaching(self) -> None:
        if self.job is None or not self.teaching:
            return
        try:
            self.job = await self.api.cancel_job(self.job.id)
        except ApiError as exc:
            self._failed(exc, f"Could not cancel: {exc.message}")

    def teach_again(self) -> None:
        self.job, self.teach_versions = None, ()
        self.clear_messages()

    async def use_taught_model(self) -> bool:
        """Activate the version the finished job made."""
        job = self.job
        if job is None or job.status != "succeeded" or not job.version:
            return False
        name = str(job.params.get("name"))
        if not await self.activate_version(name, job.version):
            return False
        await self._load_teach_versions(job)
        return True

    # -- models ---------------------------------------------------------------------------------
    async def load_models(self) -> None:
        """Every detector name the server runs or has trained, with its versions."""
        self.busy = "Loading models…"
        try:
            loaded = {d.name: d.version for d in await self.api.detectors()}
            trained = [str(j.params["name"]) for j in await self.api.jobs()
                       if j.version and j.params.get("name")]
            names = sorted(set(loaded) | set(trained))
            models = [DetectorVersions(name=n, versions=tuple(await self.api.versions(n)),
                                       loaded=loaded.get(n)) for n in names]
        except ApiError as exc:
            self._failed(exc, f"Could not load the models: {exc.message}")
            return
        finally:
            self.busy = ""
        self.online = True
        self.models = sorted(models, key=lambda m: (not m.versions, m.name))

    async def activate_version(self, name: str, version: str) -> bool:
        """Deploy ``version`` of ``name`` (rollback = an older one) for new inspections."""
        return await self._deploy(name, version, shadow=False)

    async def shadow_version(self, name: str, version: str) -> bool:
        """Run ``version`` beside the active one: stored, not shown."""
        return await self._deploy(name, version, shadow=True)

    async def _deploy(self, name: str, version: str, shadow: bool) -> bool:
        self.clear_messages()
        self.busy = f"{'Starting the shadow' if shadow else 'Activating'} {name} {version}…"
        try:
            if shadow:
                await self.api.shadow(name, version)
            else:
                await self.api.activate(name, version)
        except ApiError as exc:
            self._failed(exc, f"Could not {'shadow' if shadow else 'activate'} {version}: "
                              f"{exc.message}")
            return False
        finally:
            self.busy = ""
        self.notice = (f"{name} {version} now runs in the shadow of the active version."
                       if shadow else f"{name} {version} now inspects every new photo.")
        if self.models:
            await self.load_models()
        return True

    # -- the good set from history ----------------------------------------------------------------
    async def add_to_good_set(self, record: InspectionPublic) -> bool:
        """Add a stored inspection's photo to its station's good set."""
        station = record.station or self.settings.station
        try:
            dataset = await self._good_set(station)
            added = await self.api.add_from_history(str(dataset.id), [record.id])
        except ApiError as exc:
            self._failed(exc, f"Could not add the photo to the good set: {exc.message}")
            return False
        if station == self.settings.station:
            self.good_set = dataset.model_copy(update={"counts": added.counts})
        good = added.counts.get("good", 0)
        self.notice = (f"Added to the good set of {station} ({good} good "
                       f"photo{'s' if good != 1 else ''}).")
        return True
