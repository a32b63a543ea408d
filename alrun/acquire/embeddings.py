"""The model's embedding of its inputs, for heuristics that read the data's geometry (CoreSet, BADGE, ...).

The embedding of an input is what the model's last ``nn.Linear`` layer reads: the hidden layer of the
MLP head for the built-ins (on frozen backbone features, the head's input to its output layer), for a
custom model the last ``nn.Linear`` inside ``model.head`` when `model.head` is set, else the last
``nn.Linear`` in module order (``model.modules()``). It is taken by a forward hook from one
deterministic pass (eval mode: dropout off, BatchNorm on its running statistics), batched on the
job's device, which gives the predictive probabilities of that same pass too: BADGE's gradient
embedding is the outer product of (one-hot(argmax p) - p) and the embedding, in closed form, so no
backward pass is needed. Only [N, D] and [N, C] are kept, on the CPU.

Dropout is off here, so this pass cannot share the MC-Dropout pass's head outputs: a heuristic that
reads both (a custom one asking for `probs` and `embeddings`) costs one MC pass and one plain pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alrun.core.errors import ModelError
from alrun.model.custom import mc_head

# the inputs a heuristic can ask for beside `probs`, by parameter name
INPUTS = ("embeddings", "labelled_embeddings", "labelled_targets")


@dataclass(frozen=True)
class Embedded:
    """One deterministic pass over N inputs: the last Linear layer's input and the softmax output."""

    embeddings: torch.Tensor  # [N, D] float32, CPU
    probs: torch.Tensor  # [N, C] float32, CPU


def last_linear(model: nn.Module, heuristic: str | None = None) -> nn.Linear:
    """The layer whose input is the embedding: the last nn.Linear of `model.head` (a custom model's
    head, alrun.model.custom) when it has one, else the last nn.Linear of the model in module order.
    One ModelError sentence when the model has none (naming `heuristic` when given)."""
    head = mc_head(model)
    for scope in ((head, model) if head is not None else (model,)):
        linears = [m for m in scope.modules() if isinstance(m, nn.Linear)]
        if linears:
            return linears[-1]
    who = f"heuristic={heuristic}" if heuristic else "The heuristic"
    raise ModelError(f"{who} reads the model's embeddings (the input of its last nn.Linear layer), but "
                     f"{type(model).__name__} has no nn.Linear layer; give it a linear output layer or use a "
                     "heuristic that reads probabilities only.")


def embed(model: nn.Module, x: torch.Tensor, *, batch_size=512, amp: bool = False) -> Embedded:
    """Embeddings [N, D] and predictive probabilities [N, C] of x [N, ...] from one deterministic pass.

    `batch_size`: items per forward (an int, or the job's alrun.model.inference.InferenceBatch, which a CUDA
    out-of-memory error halves for the rest of the job). The model's train / eval modes are restored after.
    """
    from alrun.model.inference import InferenceBatch, autocast, to_device

    layer = last_linear(model)
    device = next(model.parameters()).device
    batch = batch_size if isinstance(batch_size, InferenceBatch) else InferenceBatch(int(batch_size))
    modes = [(m, m.training) for m in model.modules()]
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple) -> None:
        captured.append(args[0])

    handle = layer.register_forward_pre_hook(hook)
    embeddings: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, amp):
            start = 0
            while start < x.shape[0]:
                captured.clear()
                try:
                    xb = to_device(x[start : start + batch.size], device)
                    logits = model(xb)
                except torch.cuda.OutOfMemoryError:
                    logits = None  # handled below, once the failed batch's tensors are released
                if logits is None:
                    captured.clear()
                    torch.cuda.empty_cache()
                    batch.halve()
                    continue
                if len(captured) != 1:
                    raise ModelError(f"The model's last nn.Linear layer ran {len(captured)} times in one forward "
                                     "pass, so its input is no embedding of the batch; give the model one linear "
                                     "output layer.")
                b = xb.shape[0]
                embeddings.append(captured[0].reshape(b, -1).float().cpu())
                probs.append(logits.float().softmax(dim=-1).cpu())
                start += b
    finally:
        handle.remove()
        for module, training in modes:
            module.train(training)
    if not embeddings:
        return Embedded(torch.empty(0, layer.in_features), torch.empty(0, layer.out_features))
    return Embedded(torch.cat(embeddings), torch.cat(probs))
