"""Named random generators derived from one root seed.

Every random choice of a job draws from ``generator(seed, name)``; the name says what it is
for and, for per-step choices, which step (``"train/3"``). Because a step's generators are a
pure function of (seed, step), resuming a job needs no saved RNG state. Torch's global generator,
which alrun's own code never draws from, is seeded the same way (:func:`seed_global`) before each
phase, for the randomness of a user's model that alrun does not own.
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


def seed_global(seed: int, name: str) -> None:
    """Seed torch's global generators (the CPU's and every CUDA device's) from (seed, name).

    alrun's own random choices never draw from them; a user's model may (``F.dropout(x, training=True)``,
    ``torch.rand`` in forward, a dropout subclass kept with its own forward). The loop seeds them before
    each phase of each step (``"train/3"``, ``"eval/3"``, ``"acquire/3"``), so that randomness repeats run
    to run and a resumed job draws what an uninterrupted one draws.
    """
    torch.manual_seed(derived_seed(seed, f"global/{name}"))
