"""A detector version's held-out figures in words, and its state as a coloured chip."""

from __future__ import annotations

from typing import Any

import flet as ft

from kensa.contract.schemas import DetectorVersionPublic, iso_utc

STATES = {
    # state: (background, words)
    "active": ("#2E7D32", "Active"),
    "shadow": ("#B26A00", "Shadow"),
    "candidate": ("#546E7A", "Candidate"),
}


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) lines of a train job's held-out evaluation."""
    rows = []
    auroc = metrics.get("image_auroc")
    n_defect = metrics.get("n_holdout_defect") or 0
    rows.append(("Held-out AUROC", f"{auroc:.3f} ({n_defect} defective photos)"
                 if auroc is not None else "- (no defective photos held out)"))
    rate = metrics.get("false_alarm_rate")
    n_good = metrics.get("n_holdout_good")
    if rate is not None:
        rows.append(("False alarms", f"{rate:.0%} of {n_good} held-out good photos"
                     if n_good is not None else f"{rate:.0%}"))
    threshold = metrics.get("threshold")
    if isinstance(threshold, int | float):
        method = metrics.get("threshold_method")
        rows.append(("Threshold", f"{threshold:.3f}" + (f" ({method})" if method else "")))
    if metrics.get("n_fit") is not None:
        calibration = metrics.get("n_calibration")
        rows.append(("Fitted on", f"{metrics['n_fit']} good photos"
                     + (f", {calibration} to calibrate" if calibration else "")))
    if isinstance(metrics.get("fit_seconds"), int | float):
        rows.append(("Fit time", f"{metrics['fit_seconds']:.1f} s"))
    return rows


def made(version: DetectorVersionPublic) -> str:
    """When and by whom a version was made."""
    when = (iso_utc(version.created_at) or "")[:16].replace("T", " ")
    return f"{when or '-'} UTC · by {version.created_by or '-'}"


def agreement_text(version: DetectorVersionPublic) -> str | None:
    found = version.shadow_agreement
    if found is None:
        return None
    if not found.inspections:
        return "No inspections beside the active version yet."
    return (f"Agreed with the active version on {found.agreeing} of {found.inspections} "
            f"inspections ({found.rate:.0%}).")


@ft.component
def StateChip(state: str):
    bg, words = STATES.get(state, ("#546E7A", state.capitalize()))
    return ft.Container(
        bgcolor=bg, border_radius=8, padding=ft.Padding.symmetric(horizontal=10, vertical=4),
        content=ft.Text(words, size=15, weight=ft.FontWeight.BOLD, color=ft.Colors.WHITE))


@ft.component
def MetricsTable(metrics: dict[str, Any], width: int = 170):
    return ft.Column(spacing=4, controls=[
        ft.Row(controls=[ft.Text(k, size=15, width=width, color=ft.Colors.ON_SURFACE_VARIANT),
                         ft.Text(v, size=16, expand=True)])
        for k, v in metric_rows(metrics)
    ])
