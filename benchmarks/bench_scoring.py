"""Scoring BALD and entropy on MC probabilities [N=50,000, C=10, T=20] (float32): time and peak memory.

alrun: `alrun.acquire.heuristics.bald` / `entropy` on the torch tensor. BaaL: `BALD().get_uncertainties` /
`Entropy().get_uncertainties` (what its `ActiveLearningLoop` calls) on the same numpy array (what
its `predict_on_dataset` returns). Peak memory is the resident memory a single call adds on top
of the input, each measured once in a fresh process (`python -m benchmarks.bench_scoring
--memory LIB HEURISTIC FILE`) so that no freed memory is reused unseen.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import in_subprocess, interleaved_best, peak_extra_mib, require_baal, row

N, C, T = 50_000, 10, 20


def make_probs(n: int = N, seed: int = 0) -> np.ndarray:
    """Softmax of random logits: probabilities [n, C, T] float32, confident and unsure items mixed."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, T, generator=g) * torch.rand(n, 1, 1, generator=g).mul(6)
    return logits.softmax(dim=1).numpy()


def scorers(name: str, probs: np.ndarray) -> dict:
    """name -> {"alrun": fn, "baal": fn}, each a call that scores the whole array once."""
    require_baal()
    from baal.active.heuristics import BALD, Entropy

    from alrun.acquire import heuristics

    tensor = torch.from_numpy(probs)  # shares the memory: no copy for alrun either
    peer = {"bald": BALD(), "entropy": Entropy()}[name]
    return {"alrun": lambda: heuristics.get(name)(tensor), "baal": lambda: peer.get_uncertainties(probs)}


def _memory_main(lib: str, name: str, path: str) -> None:
    probs = np.load(path)
    scorers(name, probs[:16].copy())[lib]()  # first use: library code paged in, thread pools started
    print(json.dumps({"peak_extra_mib": peak_extra_mib(scorers(name, probs)[lib])}))


def run(quick: bool) -> list[dict]:
    probs = make_probs()
    repeats = 15 if quick else 30  # each call takes milliseconds: many repeats, so that one falls in a quiet moment
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "probs.npy")
        np.save(path, probs)
        for name in ("bald", "entropy"):
            fns = scorers(name, probs)
            a, b = fns["alrun"]().double().numpy(), fns["baal"]().astype(np.float64)
            err = float(np.abs(a - b).max())
            best = interleaved_best(fns, repeats)
            mem = {lib: in_subprocess("benchmarks.bench_scoring", "--memory", lib, name, path)["peak_extra_mib"]
                   for lib in ("alrun", "baal")}
            rows.append(row(
                f"score_{name}", best["alrun"], best["baal"],
                **{
                    "alrun peak MiB": mem["alrun"],
                    "baal peak MiB": mem["baal"],
                    "max |alrun - baal|": err,
                    "config": f"probs [{N}, {C}, {T}] float32 ({probs.nbytes / 2**20:.0f} MiB), best of {repeats}",
                },
            ))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Peak memory of one scoring call, in a fresh process.")
    parser.add_argument("--memory", nargs=3, metavar=("LIB", "HEURISTIC", "FILE"), required=True)
    _memory_main(*parser.parse_args().memory)
