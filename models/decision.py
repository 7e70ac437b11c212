"""The one verdict policy every detector uses.

A score is read relative to its threshold: ``s = score / threshold`` (1.0 = exactly at it).
With a task's review band ``(low, high)``:

- ``s < low``          -> ``ok``
- ``low <= s < high``  -> ``review`` (a person should look)
- ``s >= high``        -> ``defect``

The band means the same for every task; each task only chooses where its default band sits:

- good-only anomaly detectors: ``(1.0, 1.15)`` — the calibrated threshold is a quantile of good
  scores, so a score just *past* it may be a good outlier: review first, defect beyond 1.15.
- labelled classifiers and segmenters: ``(0.8, 1.0)`` — their thresholds are tuned on labelled
  defects, so at or past the threshold is a defect and just *below* it is worth a look.

A segmenter applies the band per pixel: its defect mask is ``p >= threshold x high``, its
review mask ``p >= threshold x low`` (``cut``).
"""

from __future__ import annotations

from kensa.models.types import Verdict

Band = tuple[float, float]
"""``(low, high)`` on the normalised score ``s = score / threshold``."""

ANOMALY_BAND: Band = (1.0, 1.15)
CLASSIFY_BAND: Band = (0.8, 1.0)
SEGMENT_BAND: Band = (0.8, 1.0)


def check_band(band: Band) -> Band:
    low, high = float(band[0]), float(band[1])
    if not 0 < low <= high:
        raise ValueError(f"a review band needs 0 < low <= high, got {band}")
    return low, high


def normalized(score: float, threshold: float) -> float:
    """``score / threshold``; the threshold must be positive."""
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    return float(score) / float(threshold)


def verdict_for(score: float, threshold: float, band: Band) -> Verdict:
    """The verdict of one score under the policy above."""
    low, high = check_band(band)
    s = normalized(score, threshold)
    if s >= high:
        return Verdict.DEFECT
    if s >= low:
        return Verdict.REVIEW
    return Verdict.OK


def cut(threshold: float, band: Band, verdict: Verdict) -> float:
    """The raw score from which ``verdict`` (review or defect) starts: ``threshold x low``
    or ``threshold x high``."""
    low, high = check_band(band)
    if verdict == Verdict.DEFECT:
        return float(threshold) * high
    if verdict == Verdict.REVIEW:
        return float(threshold) * low
    raise ValueError("only review and defect start at a cut")
