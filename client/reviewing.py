"""The review loop on the tablet: the part of :class:`~kensa.client.state.AppState` behind the
Review screen and the open-review count on the navigation (its fields live on the state).

The queue comes from ``GET /reviews?status=open`` (oldest first); the person's answer goes to
``POST /inspections/{id}/review`` and never changes the machine's verdict. Skipped entries move
to the back of the queue on this tablet only. A defect mask can be painted over the photo
(brush and eraser, starting from the machine's masks); it goes with a ``defect`` answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from kensa.client.masking import BRUSH_SIZES, MaskDraft, Point, fit_scale, to_photo
from kensa.contract.client import ApiError
from kensa.contract.schemas import ReviewItem

REVIEW_PAGE = 50
PSEUDO_PAGE = 200  # proposals confirmed at once
REASONS = {
    "review": "The machine was not sure (verdict: needs review).",
    "uncertain": "The score was close to the threshold.",
    "random": "Picked at random to check the machine.",
    "manual": "Reviewed on request.",
}


class Reviewing:
    """Review-queue methods of the app state (``AppState`` mixes them in)."""

    @property
    def review_item(self) -> ReviewItem | None:
        """The entry on the Review screen: the oldest one not skipped (else the oldest)."""
        fresh = [r for r in self.reviews if str(r.inspection.id) not in self.review_skipped]
        return (fresh or self.reviews or [None])[0]

    def _show_review(self) -> None:
        item = self.review_item
        self.review_mask = None
        self.mask_version += 1
        if item is None:
            self.current, self.review_labels = None, ()
            return
        self.show_record(item.inspection)
        machine = {f.label for f in item.inspection.findings if f.label}
        self.review_labels = tuple(sorted(machine))

    async def load_reviews(self) -> None:
        """The open queue (at this station if ``review_here``) and the badge count."""
        station = self.settings.station if self.review_here else None
        try:
            page = await self.api.reviews("open", station=station, limit=REVIEW_PAGE)
        except ApiError as exc:
            self._failed(exc, f"Could not load the reviews: {exc.message}")
            return
        self.online = True
        self.reviews = list(page.items)
        self.review_total = page.total
        if not station:
            self.review_open = page.open
        self._show_review()
        await self.load_pseudo_labels()

    async def refresh_review_count(self) -> None:
        """The number of open reviews for the navigation badge (managers only; quiet)."""
        if not self.is_manager:
            self.review_open = 0
            return
        try:
            self.review_open = (await self.api.reviews("open", limit=1)).open
        except ApiError as exc:
            if exc.status == 401:
                self.session_ended()

    async def set_review_here(self, here: bool) -> None:
        self.review_here = here
        self.review_skipped = ()
        await self.load_reviews()

    def toggle_review_label(self, label: str) -> None:
        if label in self.review_labels:
            self.review_labels = tuple(x for x in self.review_labels if x != label)
        else:
            self.review_labels = (*self.review_labels, label)

    def skip_review(self) -> None:
        item = self.review_item
        if item is None:
            return
        key = str(item.inspection.id)
        if key in self.review_skipped:  # everything skipped once: start the round again
            self.review_skipped = ()
        self.review_skipped = (*self.review_skipped, key)
        self._show_review()

    async def decide(self, decision: str, comment: str = "", mask: bytes | None = None
                     ) -> bool:
        """Record the person's ``ok`` or ``defect`` (with the chosen labels and an optional
        mask PNG) on the entry shown, then show the next one."""
        item = self.review_item
        if item is None:
            return False
        if mask is None and decision == "defect" and self.review_mask is not None:
            mask = self.review_mask.png()  # the painted mask (None when nothing is marked)
        labels = self.review_labels if decision == "defect" else ()
        self.clear_messages()
        self.busy = "Saving the review…"
        try:
            await self.api.review(item.inspection.id, decision, labels=labels,
                                  comment=comment.strip() or None, mask=mask)
        except ApiError as exc:
            self._failed(exc, f"The review was not saved: {exc.message}")
            return False
        finally:
            self.busy = ""
        self.online = True
        short = str(item.inspection.id)[:8]
        words = "OK" if decision == "ok" else "defect" + (
            f" ({', '.join(labels)})" if labels else "") + (" with a mask" if mask else "")
        self.reviews = [r for r in self.reviews if r.inspection.id != item.inspection.id]
        self.review_skipped = tuple(k for k in self.review_skipped if k != str(
            item.inspection.id))
        self.review_total = max(0, self.review_total - 1)
        self.review_open = max(0, self.review_open - 1)
        self.notice = f"#{short} marked {words}."
        if not self.reviews and self.review_total:
            await self.load_reviews()  # the next page
        else:
            self._show_review()
        return True

    # the mask painted on the photo -------------------------------------------------------------
    async def start_mask(self) -> bool:
        """Open the brush on the entry shown, starting from the machine's finding masks."""
        item = self.review_item
        if item is None:
            return False
        record = item.inspection
        pngs = []
        for finding in record.findings:
            if not finding.mask_url:
                continue
            try:
                pngs.append(await self.api.fetch_bytes(finding.mask_url))
            except ApiError as exc:
                self._failed(exc, f"The machine's mask could not be loaded: {exc.message}")
                return False
        self.review_mask = MaskDraft.from_pngs(record.width, record.height, pngs)
        self.mask_version += 1
        return True

    def stop_mask(self) -> None:
        """Close the brush and forget the painted mask (the answer then carries none)."""
        self.review_mask = None
        self.mask_version += 1

    def set_mask_tool(self, tool: str) -> None:
        self.mask_tool = "eraser" if tool == "eraser" else "brush"

    def set_mask_size(self, size: str) -> None:
        if size in BRUSH_SIZES:
            self.mask_size = size

    def paint_mask(self, points: Sequence[Point], view: tuple[float, float]) -> bool:
        """A brush or eraser stroke through ``points`` of the painting area (``view``: its
        width and height, the photo drawn in it with ``BoxFit.CONTAIN``)."""
        draft = self.review_mask
        if draft is None or not points or min(view) <= 0:
            return False
        scale, _, _ = fit_scale(view, draft.size)
        draft.stroke([to_photo(p, view, draft.size) for p in points],
                     BRUSH_SIZES[self.mask_size] / scale, erase=self.mask_tool == "eraser")
        self.mask_version += 1
        return True

    def undo_mask(self) -> None:
        if self.review_mask is not None and self.review_mask.undo():
            self.mask_version += 1

    def clear_mask(self) -> None:
        if self.review_mask is not None:
            self.review_mask.clear()
            self.mask_version += 1

    # pseudo-labels: where classifier and segmenter agree -----------------------------------------
    async def load_pseudo_labels(self) -> None:
        """The proposals (at this station if ``review_here``); quiet when they cannot be had."""
        station = self.settings.station if self.review_here else None
        try:
            self.pseudo = await self.api.pseudo_labels(
                station=station, min_confidence=self.pseudo_confidence, limit=PSEUDO_PAGE)
        except ApiError as exc:
            self.pseudo = None
            if exc.status == 401:
                self.session_ended()

    async def confirm_pseudo_labels(self) -> bool:
        """Confirm every proposal shown as a review by the signed-in manager."""
        shown = self.pseudo.items if self.pseudo else []
        if not shown:
            return False
        self.clear_messages()
        self.busy = "Confirming the proposed labels…"
        try:
            done = await self.api.confirm_pseudo_labels(
                [p.inspection.id for p in shown], min_confidence=self.pseudo.min_confidence)
        except ApiError as exc:
            self._failed(exc, f"The proposed labels were not confirmed: {exc.message}")
            await self.load_pseudo_labels()
            return False
        finally:
            self.busy = ""
        self.notice = f"{done.confirmed} proposed labels confirmed."
        await self.load_reviews()
        return True
