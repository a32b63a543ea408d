"""data: the sources (digits, npz, CIFAR, MNIST, ImageFolder/MIO-TCD, a user's function), the pathologies
(label noise, class imbalance), the checks, the DataBundle. :func:`load_dataset` returns every source as
in-memory tensors. Imports only config and core."""

from alrun.data.bundle import DataBundle
from alrun.data.sources import SOURCES, load_dataset

__all__ = ["DataBundle", "SOURCES", "load_dataset"]
