"""Which device a job runs on, and the process-wide settings a job sets for it.

A job uses the devices it is given: under SLURM (one GPU per job) the scheduler sets
CUDA_VISIBLE_DEVICES, so the job sees one GPU, `cuda:0`. When several jobs share a machine that
shows them several GPUs (the joblib launcher, or submitit_local with `gpus_per_node` set to all of
them), `auto` gives each job a GPU no other alrun job holds, for the job's lifetime
(:func:`claimed_device`): jobs finish out of order, so a GPU picked by the job's number alone could
still be busy while another idles.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from alrun.core.errors import ConfigError
from alrun.core.filelock import exclusive_nowait

log = logging.getLogger("alrun")


def choose_device(name: str, job_index: int = 0, device_count: int | None = None) -> str:
    """The concrete device string for a job: `cpu`, or `cuda:N`.

    name: `auto` (a GPU when there is one, else the CPU), `cpu`, `cuda` (a GPU, spread like
    auto) or `cuda:N` (that GPU). job_index: the job's number in the sweep (Hydra's
    `hydra.job.num`). device_count: the visible CUDA devices (default: torch's count).
    """
    count = torch.cuda.device_count() if device_count is None else device_count
    if name == "cpu" or (name == "auto" and count == 0):
        return "cpu"
    if name in ("auto", "cuda"):
        if count == 0:
            raise ConfigError(f"`device={name}` is not allowed: this machine has no CUDA device (use auto or cpu).")
        return f"cuda:{job_index % count}"
    if name.startswith("cuda:"):
        index = name.split(":", 1)[1]
        if count == 0:
            raise ConfigError(f"`device={name}` is not allowed: this machine has no CUDA device (use auto or cpu).")
        if not index.isdigit() or int(index) >= count:
            raise ConfigError(
                f"`device={name}` is not allowed: this job sees {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1}; use auto to spread jobs over them)."
            )
        return name
    raise ConfigError(f"`device={name}` is not allowed: use auto, cpu, cuda or cuda:N.")


def resolve_device(name: str, job_index: int = 0) -> torch.device:
    """:func:`choose_device` as a torch.device."""
    return torch.device(choose_device(name, job_index))


BF16_MIN_CAPABILITY = (8, 0)  # Ampere: native bfloat16 tensor cores; below it bfloat16 is emulated (slow)


def amp_precision(capability: tuple[int, int] | str) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, whether a GradScaler is needed) for a device's compute capability (major, minor), or
    `"cpu"` (full precision, no scaler): bfloat16 from capability 8.0 (A100, H100), where it is native;
    float16 with loss scaling below (V100 7.0, T4 7.5), whose bfloat16 is only emulated."""
    if capability == "cpu":
        return None, False
    if tuple(capability) >= BF16_MIN_CAPABILITY:
        return torch.bfloat16, False
    return torch.float16, True


def channels_last(model: torch.nn.Module, input_ndim: int) -> bool:
    """Put `model`'s 4-D weights in channels_last (faster convolutions on CUDA) where that is safe: the input is
    4-D ([B, C, H, W]) and no parameter or buffer is 5-D (a Conv3d, whose weights torch cannot put in
    channels_last). Returns whether it did; a conversion that fails partway leaves the model as it was
    (contiguous weights) and is logged in one sentence."""
    tensors = [*model.parameters(), *model.buffers()]
    if input_ndim != 4 or any(t.dim() == 5 for t in tensors) or not any(t.dim() == 4 for t in tensors):
        return False
    try:
        model.to(memory_format=torch.channels_last)
    except Exception as exc:  # noqa: BLE001 - a custom module's own `_apply`, an unsupported tensor: keep the layout
        for t in (*model.parameters(), *model.buffers()):  # the ones converted before the failure
            if not t.is_contiguous():
                t.data = t.data.contiguous()
        log.info("The model's weights stay in the default layout: channels_last failed (%s).",
                 str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    return True


GPU_LOCK_DIR = Path("/tmp/alrun-gpu-locks")  # one folder per machine, as the GPUs are; not $TMPDIR (per SLURM job)


def gpu_lock_dir() -> Path:
    """Where the per-GPU locks live: $ALRUN_GPU_LOCK_DIR, else :data:`GPU_LOCK_DIR`, the same path for every
    job and user of the machine whatever its TMPDIR (SLURM sites set one per job, which would hide the
    jobs' claims from each other)."""
    configured = os.environ.get("ALRUN_GPU_LOCK_DIR")
    return Path(configured) if configured else GPU_LOCK_DIR


def shared_folder(folder: Path) -> None:
    """Create `folder` for every user of the machine (mode 1777, as /tmp: each may add lock files, none may
    remove another's); a folder that exists is left as it is, and one that cannot be made is left to the
    lock, which then runs unlocked and says so."""
    try:
        folder.mkdir(parents=True)
    except OSError:  # it exists (the common case), or cannot be made
        return
    with contextlib.suppress(OSError):
        folder.chmod(0o1777)


def gpu_identity(index: int) -> str:
    """A name for visible GPU `index` that is the same in every process on the machine: its UUID, else its
    CUDA_VISIBLE_DEVICES entry, else the index. (Jobs that each see one GPU as `cuda:0` must not
    share one lock.)"""
    try:
        return str(torch.cuda.get_device_properties(index).uuid)
    except Exception:  # no CUDA here (tests), or a torch without `uuid`
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        return visible[index] if index < len(visible) else str(index)


@contextlib.contextmanager
def claimed_device(
    name: str,
    job_index: int = 0,
    device_count: int | None = None,
    *,
    lock_dir: Path | None = None,
    identity: Callable[[int], str] | None = None,
    poll_s: float = 0.5,
) -> Iterator[str | None]:
    """For `device=auto` or `cuda` on a machine with GPUs: hold a free GPU for the block; yields `cuda:N`.

    Each GPU has a lock file (:func:`alrun.core.filelock.exclusive_nowait`); the job tries them starting at
    its own number in the sweep (so on an idle machine job k gets `cuda:(k % count)`, as before) and
    holds the first free one until the block ends. When every GPU is held the job waits, trying
    again every `poll_s` seconds, and takes the first one released. The kernel releases a lock when
    its process ends, so a killed job never leaves its GPU claimed. Yields None where nothing is
    claimed (cpu, cuda:N, no GPU, an invalid name: :func:`choose_device` decides those). Where locks
    are not available the job runs on `cuda:(k % count)`, unlocked, and says so. `identity` names
    GPU i's lock (default :func:`gpu_identity`).
    """
    count = torch.cuda.device_count() if device_count is None else device_count
    if name not in ("auto", "cuda") or count == 0:
        yield None
        return
    folder = gpu_lock_dir() if lock_dir is None else lock_dir
    shared_folder(folder)
    names = [(identity or gpu_identity)(i) for i in range(count)]
    order = [(job_index + i) % count for i in range(count)]
    waiting_since = None
    while True:
        for index in order:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in names[index])
            with exclusive_nowait(folder / f"gpu-{safe}.lock") as held:
                if held is False:
                    continue
                if held is None:
                    log.warning("GPU locks cannot be used in %s, so this job takes cuda:%d without claiming it.",
                                folder, job_index % count)
                    yield f"cuda:{job_index % count}"
                    return
                if waiting_since is not None:
                    log.info("cuda:%d is free now, after %.0f s of waiting", index, time.monotonic() - waiting_since)
                yield f"cuda:{index}"
                return
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.info("all %d GPUs are held by other alrun jobs: waiting for one to be released", count)
        time.sleep(poll_s)


CUBLAS_DETERMINISTIC = ":4096:8"  # the cuBLAS workspace setting torch's deterministic mode needs


@contextlib.contextmanager
def job_determinism(enabled: bool) -> Iterator[None]:
    """`deterministic=true` for the block: torch's deterministic algorithms, cuDNN without autotuning or
    nondeterministic kernels; torch's earlier settings are restored when it ends, so that under the basic
    launcher (one process, job after job) the next job runs as its own config says. False changes nothing.

    An op without a deterministic CUDA kernel then warns, naming itself, instead of stopping a long run
    (`warn_only`). cuBLAS reads `CUBLAS_WORKSPACE_CONFIG` once per process, at its first use: the entry point
    sets it when the command line asks for determinism (:func:`alrun.cli.main`); set here when CUDA is
    not initialised yet, else a job that finds it missing says so.
    """
    if not enabled:
        yield
        return
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():
            log.warning("CUDA was already in use in this process without CUBLAS_WORKSPACE_CONFIG, so cuBLAS may "
                        "not be deterministic in this job: set CUBLAS_WORKSPACE_CONFIG=%s before alrun starts.",
                        CUBLAS_DETERMINISTIC)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
