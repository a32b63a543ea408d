"""Data sources and pathologies. :func:`load_dataset` returns every source as in-memory tensors."""

from alrun.data.bundle import DataBundle
from alrun.data.sources import SOURCES, load_dataset

__all__ = ["DataBundle", "SOURCES", "load_dataset"]
