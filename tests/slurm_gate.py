"""A heuristic for the SLURM tests: BALD's scores, and a gate that holds a chosen job mid-sweep until released.

    heuristic=custom heuristic._target_=tests.slurm_gate.score ++heuristic.gate=DIR

A job whose folder name is a line of DIR/hold waits at its 3rd call in the process (the pre-flight check,
then step 0's acquisition, then step 1's: step 0 is checkpointed by then) while its name stays in DIR/hold,
after writing DIR/<folder name>.waiting (its SLURM job id). Only in the job's first SLURM attempt: a requeued
attempt (SLURM_RESTART_COUNT > 0) runs through, as does a job outside SLURM. The scores are BALD's, so a held
and resumed job ends with the steps of one that was never held. It waits at most 5 minutes, so a broken test
cannot hang.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from alrun.acquire.heuristics import bald

MAX_HOLD_S = 300
_calls = 0


def _held(gate: Path, name: str) -> bool:
    try:
        return name in (gate / "hold").read_text().split()
    except OSError:
        return False


def score(probs: torch.Tensor, gate: str = "") -> torch.Tensor:
    """BALD's scores of probs [N, C, T] -> [N]; holds the job at its 3rd call when the gate says so."""
    global _calls
    _calls += 1
    first_attempt = os.environ.get("SLURM_RESTART_COUNT", "0") == "0" and "SLURM_JOB_ID" in os.environ
    if gate and _calls == 3 and first_attempt:
        from hydra.core.hydra_config import HydraConfig

        name = Path(HydraConfig.get().runtime.output_dir).name
        folder = Path(gate)
        if _held(folder, name):
            job = f"{os.environ.get('SLURM_ARRAY_JOB_ID', '')}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
            (folder / f"{name}.waiting").write_text(job if job != "_" else os.environ["SLURM_JOB_ID"])
            deadline = time.monotonic() + MAX_HOLD_S
            while _held(folder, name) and time.monotonic() < deadline:
                time.sleep(0.2)
    return bald(probs)
