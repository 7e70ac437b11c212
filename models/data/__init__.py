"""Datasets: on-disk layouts, augmentation pipelines, tiling and the synthetic steel generator."""

from kensa.models.data.samples import Sample

__all__ = ["Sample"]
