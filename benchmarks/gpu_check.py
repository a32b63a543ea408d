"""One paper-scale active-learning step on the device at hand, with AMP off and on.

    python -m benchmarks.gpu_check --quick --record # first on a GPU machine: every CUDA path in about a minute
    python -m benchmarks.gpu_check                  # on the GPU when there is one: the paper-scale figures
    python -m benchmarks.gpu_check --root DIR       # real CIFAR-10 (torchvision's format) instead of synthetic tensors
    python -m benchmarks.gpu_check --quick          # seconds, on the CPU when there is no GPU (tests, CI)
    python -m benchmarks.gpu_check --record         # also write the output into benchmarks/RESULTS.md
    python -m benchmarks.gpu_check --fp16           # the float16 + GradScaler path (V100, T4) on any CUDA GPU

The paper's setup as `+experiment=noise` (Table 1) composes it at `scale=paper`: VGG-16 on CIFAR-10-sized
images (3x32x32, 10 classes), SGD for the configured epochs on 500 labels, MC-Dropout inference with
T = 20 over a 10,000-item pool, BALD's top-100. Random initial weights unless `--weights FILE` (a VGG-16
state dict) is given: the speed is the same, and the GPU machine may have no network.

Printed first: which precision `amp=true` takes on this device and why (the GPU's name and compute
capability: bfloat16 from 8.0, else float16 with loss scaling). Then for AMP off and on: training images/s,
MC-inference items/s and its cost in deterministic passes, peak memory, the time of one AL step; how far
AMP's probabilities are from float32's (the same weights and masks) and whether BALD's top-100 picks agree;
whether a run repeats bit for bit with `deterministic=true`, and the ops torch warned have no deterministic
kernel; the predicted wall time of Table 1 at `scale=paper` from the measured rates (the model is printed
with it). Progress goes to stderr as it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from alrun.acquire.acquisition import acquire
from alrun.acquire.heuristics import MODEL_FREE, bald
from alrun.config.schema import ModelSpec, RunSpec, run_spec_from_dict
from alrun.core.devices import BF16_MIN_CAPABILITY, CUBLAS_DETERMINISTIC, amp_precision, channels_last, job_determinism
from alrun.core.seeding import generator
from alrun.model.builders import build_model, fold_for_inference, keep_mask
from alrun.model.inference import InferenceBatch, amp_dtype, autocast, grad_scaler, mc_probs, to_device
from alrun.train.fit import fit
from benchmarks.common import cpu_model

HERE = Path(__file__).resolve().parent
CIFAR10_TRAIN = 50_000  # CIFAR-10's training images: the pool of Table 1 at scale=paper (pool_limit null)
MARK_START, MARK_END = "<!-- gpu_check:start -->", "<!-- gpu_check:end -->"


@dataclass(frozen=True)
class Sizes:
    labelled: int
    pool: int
    query: int
    inference_batch: int


PAPER_SIZES = Sizes(labelled=500, pool=10_000, query=100, inference_batch=256)
QUICK_SIZES = Sizes(labelled=16, pool=32, query=8, inference_batch=16)
QUICK_HIDDEN = 256  # --quick: a narrower classifier (VGG-16's fc6 alone has 103 M weights at 4096)


def table1_config() -> tuple[RunSpec, dict[str, list[str]]]:
    """The job spec of Table 1 at scale=paper (`+experiment=noise`) and its sweep grid, composed from
    alrun's own configs, so the check follows them."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from alrun.cli import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=noise"], return_hydra_config=True)
    grid = {k: str(v).split(",") for k, v in OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True).items()}
    with open_dict(cfg):
        del cfg["hydra"]  # its run-time values (output folder) exist only inside a run
    plain = OmegaConf.to_container(cfg, resolve=True)
    return run_spec_from_dict(plain), grid


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n standardised CIFAR-10-sized images [n, 3, 32, 32] and labels [n] (random: speed does not depend on them)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # the process's high-water mark back to its current size
        except OSError:
            pass


def peak_mib(device: torch.device) -> tuple[float, str]:
    """(MiB, what it is): CUDA's peak allocated memory, or on the CPU the process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "peak GPU memory allocated"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "peak process memory (CPU run: no GPU)"
    except OSError:
        pass
    return float("nan"), "peak memory (not measurable here)"


def deterministic_pass_s(model: torch.nn.Sequential, x: torch.Tensor, batch: int, amp: bool) -> float:
    """Seconds for one pass of the network without dropout over x (the trunk folded as MC inference folds it)."""
    device = next(model.parameters()).device
    net = fold_for_inference(model).eval()
    sync(device)
    tic = time.perf_counter()
    with torch.inference_mode(), autocast(device, amp):
        for start in range(0, x.shape[0], batch):
            net(to_device(x[start : start + batch], device)).float().softmax(dim=-1)
    sync(device)
    return time.perf_counter() - tic


def one_mode(model: torch.nn.Sequential, initial: dict, x_lab: torch.Tensor, y_lab: torch.Tensor,
             x_pool: torch.Tensor, spec: RunSpec, sizes: Sizes, amp: bool) -> dict:
    """Train from `initial`, MC inference + BALD over the pool, a deterministic pass: the figures of one AMP mode."""
    device = next(model.parameters()).device
    t = spec.mc_samples
    # warm-up (cuDNN's plans, allocator, lazy init), untimed, then the weights reset
    fit(model, x_lab[: spec.train.batch_size], y_lab[: spec.train.batch_size], replace(spec.train, epochs=1),
        generator(0, "warmup"), generator(0, "warmup/dropout", device), amp)
    list(mc_probs(model, x_pool[: sizes.inference_batch], t, batch_size=sizes.inference_batch,
                  generator=generator(0, "warmup/mc", device), amp=amp))
    model.load_state_dict(initial)
    reset_peak(device)
    sync(device)
    tic = time.perf_counter()
    fit(model, x_lab, y_lab, spec.train, generator(0, "train/0"), generator(0, "dropout/0", device), amp)
    sync(device)
    time_train = time.perf_counter() - tic
    chosen = acquire(model, x_pool, "bald", sizes.query, t, mc_generator=generator(0, "mc/0", device),
                     acquisition_generator=generator(0, "acquire/0"),
                     batch_size=InferenceBatch(sizes.inference_batch), amp=amp)
    peak, peak_what = peak_mib(device)
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    det = deterministic_pass_s(model, x_pool, sizes.inference_batch, amp)
    n_lab, n_pool = x_lab.shape[0], x_pool.shape[0]
    return {
        "train_images_per_s": n_lab * spec.train.epochs / time_train,
        "mc_items_per_s": n_pool / chosen.time_infer,
        "mc_over_deterministic": chosen.time_infer / det,
        "deterministic_items_per_s": n_pool / det,
        "peak_mib": peak,
        "peak_what": peak_what,
        "time_train": time_train,
        "time_infer": chosen.time_infer,
        "time_select": chosen.time_select,
        "step_s": time_train + chosen.time_infer + chosen.time_select,
        "trained": trained,
    }


def agreement(model: torch.nn.Sequential, x_pool: torch.Tensor, spec: RunSpec, sizes: Sizes) -> dict:
    """AMP against float32 on the same weights and the same dropout masks: max |p_amp - p_fp32| over the
    MC probabilities [N, C, T], and BALD's top-`query` picks from each."""
    device = next(model.parameters()).device
    probs = {}
    for amp in (False, True):
        probs[amp] = mc_probs(model, x_pool, spec.mc_samples, batch_size=sizes.inference_batch,
                              generator=generator(0, "agreement", device), amp=amp).cpu()
    picks = {amp: set(torch.topk(bald(p), sizes.query).indices.tolist()) for amp, p in probs.items()}
    # are the masks the same draws in both dtypes? (else the difference also holds MC noise)
    dtype = amp_dtype(device, True) or torch.float32
    masks = [keep_mask((4096, 64), 0.5, generator(0, "masks", device), d, device).float()
             for d in (torch.float32, dtype)]
    return {
        "max_abs_diff": float((probs[True] - probs[False]).abs().max()),
        "picks_agree": picks[True] == picks[False],
        "picks_shared": len(picks[True] & picks[False]),
        "same_masks": bool(torch.equal(masks[0], masks[1])),
    }


NONDETERMINISTIC = re.compile(r"^(\S+) does not have a deterministic implementation")


def repeats_bit_for_bit(model: torch.nn.Sequential, initial: dict, x_lab: torch.Tensor, y_lab: torch.Tensor,
                        x_pool: torch.Tensor, spec: RunSpec, sizes: Sizes) -> tuple[bool, list[str]]:
    """With `deterministic=true` (and AMP on, the default): one epoch of training and MC inference, twice from
    the same weights and seeds; whether the weights and probabilities are bit-identical, and the ops torch
    warned have no deterministic kernel (`warn_only`), which would explain a difference."""
    device = next(model.parameters()).device
    runs = []
    with job_determinism(True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            model.load_state_dict(initial)
            fit(model, x_lab, y_lab, replace(spec.train, epochs=1), generator(0, "train/0"),
                generator(0, "dropout/0", device), True)
            probs = mc_probs(model, x_pool, spec.mc_samples, batch_size=sizes.inference_batch,
                             generator=generator(0, "mc/0", device), amp=True).cpu()
            runs.append(([v.detach().clone() for v in model.state_dict().values()], probs))
    same_weights = all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))
    ops = sorted({m.group(1) for w in caught if (m := NONDETERMINISTIC.match(str(w.message)))})
    return same_weights and torch.equal(runs[0][1], runs[1][1]), ops


def predicted_table1(spec: RunSpec, grid: dict[str, list[str]], figures: dict, n_pool: int, n_test: int) -> dict:
    """Seconds for every job of Table 1, one job at a time, from the measured rates.

    Model: a step at L labels costs epochs * L / (training images/s) to train, n_test / (MC items/s)
    to evaluate (T samples on the test set), and, unless it is the last step or the heuristic is
    model-free (random), (n_pool - L) / (MC items/s) plus the measured selection time per item to
    score the rest of the pool. Fixed costs per step (weight reset, checkpoint) are left out.
    """
    heuristics = grid.get("heuristic", [spec.heuristic])
    others = int(np.prod([len(v) for k, v in grid.items() if k != "heuristic"]))
    sizes = list(range(spec.initial_labelled, spec.max_labelled + 1, spec.query_size))
    if sizes[-1] != spec.max_labelled:
        sizes.append(spec.max_labelled)
    select_per_item = figures["time_select"] / max(figures["pool_n"], 1)
    total = 0.0
    for heuristic in heuristics:
        job = 0.0
        for i, labelled in enumerate(sizes):
            job += spec.train.epochs * labelled / figures["train_images_per_s"] + n_test / figures["mc_items_per_s"]
            if i < len(sizes) - 1 and heuristic not in MODEL_FREE:
                job += (n_pool - labelled) * (1 / figures["mc_items_per_s"] + select_per_item)
        total += job * others
    return {"jobs": len(heuristics) * others, "steps": len(sizes), "seconds": total}


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h ({seconds / 86400:,.2f} days)"


def precision_path(capability: tuple[int, int] | str, name: str, fp16: bool = False) -> str:
    """What `amp=true` computes in on a device and why, in one line: `capability` is the GPU's (major, minor)
    or "cpu"; `fp16` says that --fp16 forced the float16 path."""
    if capability == "cpu":
        return "amp=on computes in: float32 (alrun autocasts on CUDA only); loss scaling: off -- the CPU path"
    dtype, scaled = (torch.float16, True) if fp16 else amp_precision(capability)
    cc, bound = f"{capability[0]}.{capability[1]}", ".".join(map(str, BF16_MIN_CAPABILITY))
    native = tuple(capability) >= BF16_MIN_CAPABILITY
    why = (f"{name} has compute capability {cc} ({'>=' if native else '<'} {bound}: bfloat16 "
           f"{'native' if native else 'only emulated'})")
    if fp16:
        why = f"forced by --fp16 ({why}, which alrun would use {'bfloat16' if native else 'float16'} on)"
    path = "bfloat16 path" if dtype == torch.bfloat16 else "float16 + GradScaler path"
    return (f"amp=on computes in: {str(dtype).removeprefix('torch.')}; "
            f"loss scaling: {'on (GradScaler)' if scaled else 'off'} -- the {path}: {why}")


@contextlib.contextmanager
def forced_fp16(enabled: bool):
    """--fp16: alrun's precision choice returns float16 with a GradScaler for every GPU for the block (the path
    of capability < 8.0, V100 and T4, run on whatever GPU is here)."""
    if not enabled:
        yield
        return
    import alrun.model.inference

    real = alrun.model.inference.amp_precision
    alrun.model.inference.amp_precision = lambda capability: (
        (None, False) if capability == "cpu" else (torch.float16, True))
    try:
        yield
    finally:
        alrun.model.inference.amp_precision = real


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_model()} ({torch.get_num_threads()} torch threads)"


def note(started: float, what: str) -> None:
    """Progress on stderr (a run on a lent GPU shows how far it got even if its time runs out)."""
    print(f"gpu_check: {time.monotonic() - started:6.1f} s  {what}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> list[str]:
    """Measure and return the printed lines."""
    with forced_fp16(args.fp16):
        return _run(args)


def _run(args: argparse.Namespace) -> list[str]:
    started = time.monotonic()
    # as `deterministic=true` sets it for a job; here before the first cuBLAS call, which reads it once
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: torch sees no CUDA device here (torch {torch.__version__}).")
        if device.index is None:  # one device for every figure, the one `cuda` means now
            device = torch.device("cuda", torch.cuda.current_device())
    if args.fp16 and device.type != "cuda":
        raise SystemExit("--fp16 needs a CUDA device: on the CPU alrun computes in float32.")
    sizes = QUICK_SIZES if args.quick else PAPER_SIZES
    spec, grid = table1_config()
    model_spec: ModelSpec = replace(spec.model, pretrained=False, weights_path=args.weights)
    if args.quick:  # one epoch of one batch, a narrow classifier: seconds on a CPU
        spec = replace(spec, train=replace(spec.train, epochs=1, batch_size=sizes.labelled))
        model_spec = replace(model_spec, hidden=QUICK_HIDDEN)
    pixel_stats, n_pool_paper = None, CIFAR10_TRAIN
    if args.root:
        from alrun.config.schema import DatasetSpec
        from alrun.data import load_dataset

        bundle = load_dataset(DatasetSpec(name="cifar10", root=args.root))
        if bundle.x_train.shape[0] < sizes.labelled + sizes.pool:
            raise SystemExit(f"{args.root} holds {bundle.x_train.shape[0]} training images; the check needs "
                             f"{sizes.labelled + sizes.pool}.")
        order = torch.randperm(bundle.x_train.shape[0], generator=torch.Generator().manual_seed(0))
        x_all, y_all = bundle.x_train[order], torch.as_tensor(bundle.y_train)[order]
        pixel_stats, n_pool_paper, data = bundle.pixel_stats, bundle.x_train.shape[0], f"CIFAR-10 from {args.root}"
    else:
        x_all, y_all = synthetic(sizes.labelled + sizes.pool, seed=0)
        data = "synthetic tensors (standard normal), CIFAR-10's shape"
    x_lab, y_lab = x_all[: sizes.labelled], y_all[: sizes.labelled]
    x_pool = x_all[sizes.labelled : sizes.labelled + sizes.pool]
    if device.type == "cuda":
        x_lab, x_pool = x_lab.to(device), x_pool.to(device)  # as the loop holds the data on the GPU
    model = build_model(model_spec, (3, 32, 32), 10, 0, pixel_stats).to(device)
    # as the loop does on CUDA: only where every weight and the input are 4-D
    layout = channels_last(model, x_lab.ndim) if device.type == "cuda" else False
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else "cpu"
    lines = [
        f"gpu_check on {device_name(device)} ({device}), torch {torch.__version__}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        + (" -- QUICK: reduced sizes, the figures are not the paper's" if args.quick else ""),
        f"setup: VGG-16 (hidden {model_spec.hidden}, dropout {model_spec.dropout}, "
        f"{'weights ' + args.weights if args.weights else 'random initial weights'}), {data}; "
        f"{sizes.labelled} labels x {spec.train.epochs} epochs "
        f"({spec.train.optimizer}, batch {spec.train.batch_size}); "
        f"MC inference T = {spec.mc_samples} over {sizes.pool} items (batch {sizes.inference_batch}); "
        f"BALD top-{sizes.query}; weights in {'channels_last' if layout else 'the default layout'}",
        precision_path(capability, device_name(device), args.fp16),
    ]
    # the path alrun's own code takes must be the one printed (a mismatch is a bug to see, not to hide)
    dtype, scaled = amp_dtype(device, True), grad_scaler(device, True).is_enabled()
    if device.type == "cuda":
        lines.append(f"{'torch.cuda.is_bf16_supported(including_emulation=False)':<48} "
                     f"{torch.cuda.is_bf16_supported(including_emulation=False)} (torch's answer, for the "
                     f"current device {torch.cuda.current_device()}; alrun decides by capability: {dtype}, "
                     f"loss scaling {'on' if scaled else 'off'})")
    note(started, lines[2])
    results = {}
    for amp in (False, True):
        results[amp] = {**one_mode(model, initial, x_lab, y_lab, x_pool, spec, sizes, amp), "pool_n": sizes.pool}
        note(started, f"amp={'on' if amp else 'off'}: trained and acquired")
    model.load_state_dict(results[False].pop("trained"))  # the agreement is measured on the float32-trained model
    results[True].pop("trained")
    agree = agreement(model, x_pool, spec, sizes)
    note(started, "AMP against float32 compared")
    # last: it sets global flags
    repeatable, nondeterministic = repeats_bit_for_bit(model, initial, x_lab, y_lab, x_pool, spec, sizes)
    note(started, "deterministic=true run twice")
    n_test = spec.dataset.max_test or 10_000

    def both(label: str, key: str, fmt: str) -> str:
        off, on = format(results[False][key], fmt), format(results[True][key], fmt)
        return f"{label:<48} amp=off {off:>12}   amp=on {on:>12}"

    lines += [
        both("training images/s", "train_images_per_s", ",.1f"),
        both(f"MC-inference items/s (T = {spec.mc_samples})", "mc_items_per_s", ",.1f"),
        both("MC inference / one deterministic pass (x)", "mc_over_deterministic", ".2f"),
        both("one deterministic pass items/s", "deterministic_items_per_s", ",.1f"),
        both(f"{results[False]['peak_what']} (MiB)", "peak_mib", ",.0f"),
        both("one AL step (s): train + MC inference + select", "step_s", ",.2f"),
        both("  of which train (s)", "time_train", ",.2f"),
        both("  of which MC inference and BALD scores (s)", "time_infer", ",.2f"),
        both("  of which selection (s)", "time_select", ",.4f"),
        f"{'AMP vs float32: max |p_amp - p_fp32|':<48} {agree['max_abs_diff']:.3g} over [{sizes.pool}, 10, "
        f"{spec.mc_samples}] probabilities (same weights; same dropout masks in both dtypes: {agree['same_masks']})",
        f"{'AMP vs float32: BALD top-' + str(sizes.query) + ' picks agree':<48} {agree['picks_agree']} "
        f"({agree['picks_shared']} of {sizes.query} shared)",
        f"{'deterministic=true: two runs bit-identical':<48} {repeatable} (amp=on; 1 epoch of training, then MC "
        "inference; same weights, seeds and device)",
        f"{'  ops torch warned have no deterministic kernel':<48} {', '.join(nondeterministic) or 'none'}",
    ]
    for amp in (False, True):
        p = predicted_table1(spec, grid, results[amp], n_pool_paper, n_test)
        lines.append(
            f"{'Table 1 at scale=paper, predicted, amp=' + ('on' if amp else 'off'):<48} {hours(p['seconds'])} "
            f"one job at a time on this {device.type.upper()}; {p['jobs']} jobs x {p['steps']} steps"
        )
    lines.append(
        f"  prediction model: step at L labels = {spec.train.epochs} x L / training images/s "
        f"+ {n_test:,} test items / MC items/s + ({n_pool_paper:,} - L) pool items x (1 / MC items/s + selection "
        f"per item), the last term except at the last step and for random; L = {spec.initial_labelled}, "
        f"{spec.initial_labelled + spec.query_size}, ..., {spec.max_labelled}; per-step fixed costs left out"
        + ("; QUICK: 1 epoch measured, the prediction still uses it, so it is not the paper's" if args.quick else "")
    )
    lines.append(f"gpu_check took {time.monotonic() - started:.0f} s, set-up and warm-ups included")
    return lines


def kept_section(path: Path) -> str:
    """The gpu_check section of an existing RESULTS.md (with its markers), or "": benchmarks/run.py keeps it."""
    text = path.read_text() if path.exists() else ""
    if MARK_START not in text or MARK_END not in text:
        return ""
    return text[text.index(MARK_START) : text.index(MARK_END) + len(MARK_END)] + "\n"


def record(lines: list[str], command: str, path: Path) -> None:
    """Put this run into RESULTS.md's gpu_check section, replacing an earlier entry for the same device and mode."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    modes = [flag for flag in ("--quick", "--fp16") if flag in command.split()]
    head = f"### {lines[0].split(' on ', 1)[1].split(' (', 1)[0]}{' (' + ', '.join(modes) + ')' if modes else ''}"
    entry = "\n".join([head, "", f"`{command}`:", "", "```", *lines, "```", ""])
    if MARK_START in text:
        before, rest = text.split(MARK_START, 1)
        block, after = rest.split(MARK_END, 1)
    else:
        before, block, after = text.rstrip("\n") + "\n\n", "", "\n"
    entries = [e for e in re.split(r"(?m)^(?=### )", block) if e.startswith("### ")]
    entries = [e for e in entries if e.splitlines()[0] != head] + [entry]
    intro = ("## GPU check\n\nWritten by `python -m benchmarks.gpu_check --record` (one entry per device and mode; "
             "do not edit by hand). A CPU entry only shows that the check runs: the figures that matter come "
             "from a GPU.\n\n")
    path.write_text(before + MARK_START + "\n" + intro + "\n".join(e.rstrip("\n") + "\n" for e in entries) + MARK_END
                    + after)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 1 epoch: seconds, on the CPU too")
    parser.add_argument("--root", help="CIFAR-10 in torchvision's format (default: synthetic tensors)")
    parser.add_argument("--weights", help="a VGG-16 state-dict file (default: random initial weights)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the GPU when there is one)")
    parser.add_argument("--fp16", action="store_true",
                        help="the float16 + GradScaler path (capability < 8.0: V100, T4) on any CUDA GPU")
    parser.add_argument("--record", action="store_true", help="write the output into benchmarks/RESULTS.md")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="the file --record writes")
    args = parser.parse_args(argv)
    argv_used = argv if argv is not None else sys.argv[1:]
    lines = run(args)
    for line in lines:
        print(line, flush=True)
    if args.record:
        shown, skip = [], False  # the command as recorded: without --out and its path (a local file name)
        for a in argv_used:
            if not skip and not a.startswith("--out"):
                shown.append(a)
            skip = a == "--out"
        command = "python -m benchmarks.gpu_check" + "".join(f" {a}" for a in shown)
        record(lines, command, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
