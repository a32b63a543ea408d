"""BatchBALD: alrun's `alrun.acquire.batch.batchbald` vs `batchbald_redux.get_batchbald_batch` (BlackHC).

Same inputs on both sides: a pool of N items, C classes, T = K = 20 MC samples, drawn from a seeded
generator as a mix of confident and uncertain items; alrun gets probabilities [N, C, T], the peer
the log-probabilities [N, K, C] of the same numbers (converted outside the timing). Both compute in
float64 with 10,000 configurations: exact joint entropy while C^|B| <= 10,000, sampled beyond it.
The two draw their sampled configurations from different random streams, so their choices may part
once sampling starts; in the exact regime they must agree.

Each (case, contender) runs in a fresh process, so that peak memory is that of the call alone:
the resident high-water mark is reset just before the call (Linux /proc/self/clear_refs) and read
after it. Extra contenders: alrun in float32 (its default) and alrun with a 64 MiB working budget.

    python -m benchmarks.bench_batchbald --quick
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import itertools
import json
import time
from importlib.metadata import version

import torch

from benchmarks.common import in_subprocess, row, status_kib

K = 20
NUM_SAMPLES = 10_000
CONTENDERS = {
    "alrun": {"dtype": "float64", "max_memory_mb": 512},
    "alrun_f32": {"dtype": "float32", "max_memory_mb": 512},
    "alrun_64mib": {"dtype": "float64", "max_memory_mb": 64},
    "peer": {},
}


def pool_probs(n: int, c: int, k: int = K, seed: int = 0) -> torch.Tensor:
    """[N, C, K] float64: per-item logits plus sample noise of a per-item spread (0: all samples agree)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, c, 1, generator=g, dtype=torch.float64)
    spread = 3 * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)
    return (logits + spread * torch.randn(n, c, k, generator=g, dtype=torch.float64)).softmax(dim=1)


def _timed_peak(fn) -> tuple[float, float, object]:
    """(seconds, peak resident MiB added by the call, result), in this process."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = status_kib("VmRSS")
    tic = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - tic
    return seconds, max(0.0, (status_kib("VmHWM") - before) / 1024), out


def _quiet_redux():
    """batchbald_redux with its tqdm progress bars off (they cost time and flood the terminal)."""
    try:
        import batchbald_redux.batchbald as bb
        import batchbald_redux.joint_entropy as je
        from tqdm.auto import tqdm
    except ImportError:
        raise SystemExit("This benchmark compares against batchbald_redux: `pip install batchbald_redux`.") from None
    bb.tqdm = je.tqdm = functools.partial(tqdm, disable=True)
    return bb


def one(n: int, c: int, q: int, contender: str) -> dict:
    """Run one contender on one case in this (fresh) process: time, peak memory, chosen positions."""
    torch.manual_seed(0)  # batchbald_redux samples with torch's global generator
    probs = pool_probs(n, c)
    if contender == "peer":
        bb = _quiet_redux()
        log_probs_nkc = probs.permute(0, 2, 1).log().contiguous()
        bb.get_batchbald_batch(log_probs_nkc[:8], 2, NUM_SAMPLES, dtype=torch.double)  # warm-up
        seconds, peak, out = _timed_peak(
            lambda: bb.get_batchbald_batch(log_probs_nkc, q, NUM_SAMPLES, dtype=torch.double))
        indices = [int(i) for i in out.indices]
    else:
        from alrun.acquire.batch import batchbald

        opts = CONTENDERS[contender]
        kwargs = {"num_samples": NUM_SAMPLES, "dtype": getattr(torch, opts["dtype"]),
                  "max_memory_bytes": opts["max_memory_mb"] * 2**20}
        batchbald(probs[:8], 2, generator=torch.Generator().manual_seed(0), **kwargs)  # warm-up
        seconds, peak, out = _timed_peak(
            lambda: batchbald(probs, q, generator=torch.Generator().manual_seed(0), **kwargs))
        indices = out.indices.tolist()
    return {"seconds": seconds, "peak_mib": peak, "indices": indices}


def _agreement(a: list[int], b: list[int]) -> dict:
    prefix = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
    return {"same_selection": a == b, "same_prefix": prefix, "overlap": len(set(a) & set(b)) / len(a)}


def _case(name: str, n: int, c: int, q: int) -> dict:
    runs = {who: in_subprocess("benchmarks.bench_batchbald", "--one", str(n), str(c), str(q), who)
            for who in CONTENDERS}
    alrun, peer = runs["alrun"], runs["peer"]
    # pick i (0-based) joins a batch of i items: its joint entropy is exact while C^i <= NUM_SAMPLES
    exact_picks = min(q, next(i for i in itertools.count() if c**i > NUM_SAMPLES))
    return row(
        name, alrun["seconds"], peer["seconds"],
        peer=f"batchbald_redux {version('batchbald_redux')}",
        alrun_peak_mib=alrun["peak_mib"],
        peer_peak_mib=peer["peak_mib"],
        **_agreement(alrun["indices"], peer["indices"]),
        exact_picks=exact_picks,
        alrun_f32_s=runs["alrun_f32"]["seconds"],
        alrun_f32_peak_mib=runs["alrun_f32"]["peak_mib"],
        alrun_f32_same_prefix=_agreement(runs["alrun_f32"]["indices"], peer["indices"])["same_prefix"],
        alrun_64mib_s=runs["alrun_64mib"]["seconds"],
        alrun_64mib_peak_mib=runs["alrun_64mib"]["peak_mib"],
        alrun_64mib_same_selection=runs["alrun_64mib"]["indices"] == alrun["indices"],
        config=f"N={n}, C={c}, T={K}, Q={q}, num_samples={NUM_SAMPLES}, float64, one run per fresh process",
    )


def run(quick: bool) -> list[dict]:
    """An exact case (C=4, Q=7: 4^6 <= 10,000 configurations, every pick exact) and a CIFAR-like one
    (C=10: the first 5 picks exact, sampled after)."""
    if importlib.util.find_spec("batchbald_redux") is None:
        raise RuntimeError("This benchmark compares against batchbald_redux: `pip install batchbald_redux`.")
    n = 1000 if quick else 5000
    return [
        _case("batchbald_exact", n, 4, 7),
        _case("batchbald_sampled", n, 10, 8 if quick else 10),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller pools (about a minute on 2 cores)")
    parser.add_argument("--one", nargs=4, metavar=("N", "C", "Q", "CONTENDER"),
                        help="internal: run one contender in this process and print JSON")
    args = parser.parse_args()
    if args.one:
        n, c, q, who = args.one
        print(json.dumps(one(int(n), int(c), int(q), who)))
        return
    for result in run(args.quick):
        print(json.dumps(result))


if __name__ == "__main__":
    main()
