"""Named random generators derived from one root seed.

Every random choice of a job draws from ``generator(seed, name)``; the name says what it is
for and, for per-step choices, which step (``"train/3"``). Because a step's generators are a
pure function of (seed, step), resuming a job needs no saved RNG state.
"""

from __future__ import annotations

import hashlib

import torch


def derived_seed(seed: int, name: str) -> int:
    """A 63-bit integer seed from the root seed and a name (stable across runs and machines)."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, name: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch.Generator on `device`, seeded from (seed, name)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derived_seed(seed, name))
    return gen
