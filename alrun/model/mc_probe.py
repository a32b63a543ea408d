"""A probe that proves a built model gives MC-Dropout samples that are reproducible and genuinely stochastic.

After the model is built, :func:`check_mc` runs MC inference (the same path as the job's: alrun.model.inference)
on a handful of the job's inputs three times: twice with one generator and one global seed (the outputs
must be equal: nothing in `forward` draws randomness alrun does not seed) and once with another (the T
samples of a run must differ, and so must the two runs: the dropout is active while sampling). With a
heuristic that scores the disagreement between samples (alrun.config.schema.NEEDS_MC_SAMPLES) a failed check
stops the job with one sentence naming the likely cause; with the others a model whose samples do not
vary runs with T = 1. A functional dropout call in a user's `forward` (which alrun cannot see or seed)
is a warning naming its file and line.
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import dataclass

import torch
from torch import nn

from alrun.config.components import CUSTOM
from alrun.config.schema import NEEDS_MC_SAMPLES, ModelSpec, RunSpec
from alrun.core.errors import ModelError
from alrun.core.seeding import generator, seed_global
from alrun.model.builders import SeededDropout, resolve_name
from alrun.model.custom import MC_HEAD, mc_head
from alrun.model.inference import mc_probs

log = logging.getLogger("alrun")

PROBE_ITEMS = 4  # inputs in the probe batch
PROBE_SAMPLES = 4  # T of each probe run
# two probabilities closer than this count as equal on a GPU, whose kernels need not repeat bit for bit
GPU_TOLERANCE = 1e-5
# split and full passes run the head's matrix products at different batch sizes, whose sums may round apart
SPLIT_TOLERANCE = 1e-4
# heuristics that need one dropout mask per sample shared by every candidate (alrun draws those only for
# its own dropout layers)
CONSISTENT = ("batchbald",)

# F.dropout(, torch.nn.functional.alpha_dropout(, torch.dropout(, a bare dropout2d( ... (not self.dropout(...))
_FUNCTIONAL = re.compile(
    r"(?:\b(?:F|functional|nn\.functional|torch\.nn\.functional|torch)\.|(?<![\w.]))"
    r"(?:feature_)?(?:alpha_)?dropout(?:[123]d)?\s*\(")
_warned: set[tuple[str, int]] = set()


@dataclass(frozen=True)
class FunctionalDropout:
    """A functional dropout call found in the source of a module's `forward`."""

    file: str
    line: int
    call: str  # the call's text, e.g. "F.dropout(h, 0.3, training=self.training)"

    @property
    def tied_to_training(self) -> bool:
        """Whether it follows the module's mode (`training=self.training`), so it is off while sampling."""
        return "self.training" in self.call


@dataclass(frozen=True)
class ProbeResult:
    """What the probe saw, and the number of MC samples the job uses."""

    n_samples: int  # T for evaluation and acquisition: mc_samples, or 1 for a model whose samples do not vary
    reproducible: bool  # the same generator and global seed gave the same probabilities
    stochastic: bool  # the T samples of a run differ, and so do two runs with different generators


def _call_text(source: str, start: int) -> str:
    """The text of the call whose name starts at `start`, up to its closing parenthesis (one line)."""
    depth, i = 0, source.index("(", start)
    for j in range(i, min(len(source), i + 400)):
        depth += {"(": 1, ")": -1}.get(source[j], 0)
        if depth == 0:
            return " ".join(source[start : j + 1].split())
    return " ".join(source[start : i + 1].split())


def functional_dropout_calls(model: nn.Module) -> list[FunctionalDropout]:
    """Functional dropout calls in the `forward` of every class of `model`'s modules that is not torch's
    or alrun's own (their source read with inspect; classes without source are skipped)."""
    found: dict[tuple[str, int], FunctionalDropout] = {}
    seen: set[type] = set()
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls in seen or "forward" not in cls.__dict__ or cls.__module__.split(".")[0] in ("torch", "alrun"):
                continue
            seen.add(cls)
            try:
                lines, first = inspect.getsourcelines(cls.__dict__["forward"])
                file = inspect.getsourcefile(cls.__dict__["forward"]) or "?"
            except (OSError, TypeError):
                continue
            source = "".join(lines)
            for match in _FUNCTIONAL.finditer(source):
                line_start = source.rfind("\n", 0, match.start()) + 1
                if "#" in source[line_start : match.start()]:
                    continue  # in a comment
                line = first + source.count("\n", 0, match.start())
                found.setdefault((file, line), FunctionalDropout(file, line, _call_text(source, match.start())))
    return list(found.values())


def warn_functional_dropout(calls: list[FunctionalDropout], model_name: str) -> None:
    """One warning per call site (once per process): what alrun does with it and what to use instead."""
    for call in calls:
        if (call.file, call.line) in _warned:
            continue
        _warned.add((call.file, call.line))
        if call.tied_to_training:
            effect = ("it follows the module's mode, so it is off while alrun draws MC samples (eval mode, with only "
                      "dropout modules switched on) and adds nothing to them")
        else:
            effect = ("it draws from torch's global generator, which alrun seeds per (seed, step, phase) so runs "
                      "repeat, but BatchBALD's masks shared across candidates do not reach it")
        log.warning("%s: %s:%d calls functional dropout (`%s`): %s; an nn.Dropout module in the head is seen, "
                    "seeded and sampled by alrun.", model_name, call.file, call.line, call.call, effect)


def dropout_rates(model: nn.Module) -> list[float]:
    """The rate p of every dropout module (torch's kinds, alrun's seeded ones, kept subclasses) in `model`."""
    return [float(m.p) for m in model.modules() if isinstance(m, nn.Dropout)]


def kept_dropouts(model: nn.Module) -> list[nn.Module]:
    """Dropout modules alrun did not replace by its seeded ones: subclasses with their own forward."""
    return [m for m in model.modules() if isinstance(m, nn.Dropout) and not isinstance(m, SeededDropout)]


def probe_probs(model: nn.Module, x: torch.Tensor, n_samples: int, seed: int, name: str,
                amp: bool = False, split: bool = True, batch_size: int | None = None) -> torch.Tensor:
    """MC probabilities [N, C, T] of x [N, ...] as the job's inference draws them: dropout masks from the
    generator (seed, name) and torch's global generator seeded from (seed, name), which is restored after.
    `split=False`: T full passes, the reference a split is checked against (`batch_size`: items per chunk, by
    default all of x)."""
    device = next(model.parameters()).device
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed_global(seed, name)
        return mc_probs(model, x, n_samples, generator=generator(seed, name, device),
                        batch_size=batch_size or x.shape[0], amp=amp, split=split).float().cpu()


def _equal(a: torch.Tensor, b: torch.Tensor, exact: bool) -> bool:
    return torch.equal(a, b) if exact else bool((a - b).abs().max() <= GPU_TOLERANCE)


def run_probe(model: nn.Module, x: torch.Tensor, seed: int, amp: bool = False) -> tuple[bool, bool]:
    """(reproducible, stochastic) of the model's MC samples on the probe batch x: [N, ...] (see the module)."""
    exact = next(model.parameters()).device.type == "cpu"
    first = probe_probs(model, x, PROBE_SAMPLES, seed, "probe/a", amp)
    again = probe_probs(model, x, PROBE_SAMPLES, seed, "probe/a", amp)
    other = probe_probs(model, x, PROBE_SAMPLES, seed, "probe/b", amp)
    varies = not _equal(first, first[:, :, :1].expand_as(first), exact)
    return _equal(first, again, exact), varies and not _equal(first, other, exact)


def _why_identical(model: nn.Module, calls: list[FunctionalDropout]) -> str:
    """The likely reason a model's MC samples do not vary (a clause of the error sentence)."""
    rates = dropout_rates(model)
    tied = [c for c in calls if c.tied_to_training]
    if tied and not any(rates):
        where = ", ".join(f"{c.file}:{c.line}" for c in tied)
        return (f"its dropout is functional dropout tied to self.training ({where}), which is off while alrun "
                "samples in eval mode; use an nn.Dropout module instead")
    if not rates:
        return "it has no dropout layer; add an nn.Dropout module (e.g. before the last layer)"
    if not any(rates):
        return (f"every dropout rate of the layers it builds is 0 (p = {', '.join(f'{p:g}' for p in rates)}); "
                "give them a rate above 0")
    return ("its dropout does not reach the output while sampling (a dropout drawn once in a part computed once "
            "per item, or switched off in forward); put it in the head as an nn.Dropout module")


def check_mc(model: nn.Module, x_probe: torch.Tensor, heuristic: str, mc_samples: int, seed: int,
             model_name: str, scan_source: bool = True, consistent: bool | None = None) -> ProbeResult:
    """Probe `model` on x_probe [N, ...] (a few of the job's inputs) and decide how the job samples it.

    With a heuristic in NEEDS_MC_SAMPLES, samples that do not repeat for one generator, or do not vary,
    stop the job with one ModelError sentence; batchbald also refuses dropout subclasses kept with their
    own forward (their masks are not shared across candidates). With other heuristics a model whose
    samples do not vary runs with T = 1 (said in the log), and samples that do not repeat are a warning.
    `model_name`: how the sentence names the model (e.g. "`model._target_=pkg.Net`"). `scan_source`:
    look for functional dropout in the modules' source (a user's model; alrun's built-ins have none).
    `consistent`: whether the heuristic needs masks shared across candidates (None: heuristic=batchbald).
    The probe runs in full precision (no autocast), so that a GPU's kernels repeat it exactly.
    """
    calls = functional_dropout_calls(model) if scan_source else []
    warn_functional_dropout(calls, model_name)
    reproducible, stochastic = run_probe(model, x_probe[:PROBE_ITEMS], seed)
    needs_mc = heuristic in NEEDS_MC_SAMPLES
    kept = kept_dropouts(model)
    if (heuristic in CONSISTENT if consistent is None else consistent) and kept:
        kinds = ", ".join(sorted({type(m).__name__ for m in kept}))
        which = "heuristic=custom with heuristic.batch=true" if heuristic == "custom" else f"heuristic={heuristic}"
        raise ModelError(f"{which} needs one dropout mask per sample shared by every candidate, which "
                         f"alrun draws only for torch's dropout modules, but {model_name} keeps {kinds} with its "
                         "own forward; use bald (or another per-item heuristic) with it.")
    if not reproducible:
        cause = ("its forward draws randomness alrun does not seed (numpy or Python random, its own torch.Generator, "
                 "or a state that changes between calls)")
        if needs_mc:
            raise ModelError(f"{model_name} gives different MC-Dropout samples for the same generator on a probe "
                             f"batch of {x_probe[:PROBE_ITEMS].shape[0]} inputs: {cause}; draw it from torch's "
                             "generator (alrun seeds it per step) or use nn.Dropout modules.")
        log.warning("%s gives different outputs for the same seed on a probe batch: %s, so this job's results "
                    "will not repeat run to run.", model_name, cause)
    if stochastic:
        return ProbeResult(mc_samples, reproducible, stochastic)
    if needs_mc:
        raise ModelError(f"{model_name} gives identical MC-Dropout samples on a probe batch of "
                         f"{x_probe[:PROBE_ITEMS].shape[0]} inputs, so heuristic={heuristic} would score every "
                         f"candidate 0: {_why_identical(model, calls)}, or use a heuristic that needs no MC samples "
                         "(random, entropy, margin).")
    if heuristic == "custom":  # the user's scorer may read T samples: give it what it asked for
        log.warning("%s gives identical MC-Dropout samples (no active dropout): the custom heuristic gets %d copies "
                    "of one prediction.", model_name, mc_samples)
        return ProbeResult(mc_samples, reproducible, stochastic)
    if mc_samples != 1:
        log.info("%s has no active dropout (its MC samples do not vary), so heuristic=%s runs with T = 1 instead of "
                 "mc_samples=%d.", model_name, heuristic, mc_samples)
    return ProbeResult(1, reproducible, stochastic)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def check_split(model: nn.Module, x_probe: torch.Tensor, seed: int, model_name: str) -> None:
    """A network split at `model.head` (the trunk: whatever its forward runs before the head) must sample as T
    full passes do, from the same masks; on the probe batch it is compared, and a network whose output also
    depends on something computed outside the head in a way the repeat breaks is refused in one sentence."""
    head = mc_head(model)
    if head is None:
        return
    x = x_probe[:PROBE_ITEMS]
    try:
        # one chunk each way, so both draw their masks in the same order (full passes chunk by batch / T items)
        split = probe_probs(model, x, PROBE_SAMPLES, seed, "probe/split", batch_size=x.shape[0] * PROBE_SAMPLES)
    except Exception as exc:  # noqa: BLE001 - a forward that cannot take the repeated input: said in one sentence
        raise ModelError(f"{model_name} cannot be sampled with `model.head={getattr(model, MC_HEAD)}`: its forward "
                         f"fails with the head's input repeated ({type(exc).__name__}: {_first_line(exc)}); drop "
                         "model.head to run T full passes.") from None
    full = probe_probs(model, x, PROBE_SAMPLES, seed, "probe/split", split=False,
                       batch_size=x.shape[0] * PROBE_SAMPLES)
    gap = float((split - full).abs().max())
    if not gap <= SPLIT_TOLERANCE:
        raise ModelError(f"{model_name} split at `model.head={getattr(model, MC_HEAD)}` samples differently from "
                         f"T full passes on a probe batch (probabilities differ by up to {gap:.2g}): something "
                         "outside the head is random or reads the head's output; name a head that holds all of it, "
                         "or drop model.head to run T full passes.")


def model_label(spec: ModelSpec, input_shape: tuple[int, ...]) -> str:
    """How a sentence names the job's model: `model._target_=...`, `model.backbone=...` or `model.name=...`."""
    if spec.name == CUSTOM:
        return f"`model._target_={spec.target}`"
    if spec.backbone is not None:
        return f"`model.backbone={spec.backbone}`"
    return f"`model.name={resolve_name(spec, input_shape)}`"


def probe_job_model(model: nn.Module, spec: RunSpec, input_shape: tuple[int, ...], x_train: torch.Tensor) -> int:
    """:func:`check_mc` for a job's model on its first training inputs; returns the job's T."""
    consistent = spec.heuristic in CONSISTENT or (spec.heuristic == "custom"
                                                  and bool((spec.heuristic_params or {}).get("batch", False)))
    check_split(model, x_train, spec.seed, model_label(spec.model, input_shape))
    return check_mc(model, x_train[:PROBE_ITEMS], spec.heuristic, spec.mc_samples, spec.seed,
                    model_label(spec.model, input_shape), scan_source=spec.model.name == CUSTOM,
                    consistent=consistent).n_samples
