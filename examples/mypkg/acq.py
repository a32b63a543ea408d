"""Acquisition functions over MC-Dropout probabilities `probs: [N, C, T]` (N candidates, C classes,
T samples).

* `score` is a scorer: probs -> scores [N], the highest labelled first (`heuristic=custom
  heuristic._target_=mypkg.acq.score`).
* `margin` is a scorer too, chosen through the config file conf/heuristic/mymargin.yaml beside alrun's
  own heuristics (`alrun --config-dir examples/mypkg/conf heuristic=mymargin,bald,random`).
* `balanced_top` is a batch selector (`heuristic.batch=true`): (probs, k, generator) -> k distinct
  indices; its samples share one dropout mask per sample t across all items, as BatchBALD's.
* `coreset` is a batch selector that reads the model's embeddings (it names `embeddings` and
  `labelled_embeddings`, so alrun computes them): k-center greedy, through conf/heuristic/mycoreset.yaml
  (`alrun --config-dir examples/mypkg/conf heuristic=mycoreset,coreset,random`).
"""

from __future__ import annotations

import torch


def score(probs: torch.Tensor) -> torch.Tensor:
    """Mean over samples of each sample's uncertainty 1 - max_c p_t(c): [N, C, T] -> [N]."""
    return (1.0 - probs.max(dim=1).values).mean(dim=1)


def balanced_top(probs: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The k highest-scoring items, taken round-robin over the predicted classes (ties broken at random)."""
    scores = score(probs) + 1e-9 * torch.rand(probs.shape[0], generator=generator, dtype=probs.dtype)
    predicted = probs.mean(dim=2).argmax(dim=1)
    queues = [idx[scores[idx].argsort(descending=True)] for c in predicted.unique()
              for idx in [(predicted == c).nonzero().squeeze(1)]]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < k:
        for queue in queues:
            if depth < len(queue) and len(chosen) < k:
                chosen.append(int(queue[depth]))
        depth += 1
    return torch.tensor(chosen, dtype=torch.long)


def margin(probs: torch.Tensor) -> torch.Tensor:
    """1 minus the gap between the two most probable classes of the mean predictive: [N, C, T] -> [N]."""
    top2 = probs.mean(dim=2).topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def coreset(probs: torch.Tensor, k: int, generator: torch.Generator, embeddings: torch.Tensor,
            labelled_embeddings: torch.Tensor) -> torch.Tensor:
    """k-center greedy (Sener & Savarese 2018): each pick is the candidate farthest from the labelled set and the
    picks so far. embeddings [N, D], labelled_embeddings [L, D] -> k indices."""
    dist = torch.cdist(embeddings, labelled_embeddings).min(dim=1).values if len(labelled_embeddings) \
        else torch.full((len(embeddings),), float("inf"))
    chosen = []
    for _ in range(k):
        i = int(dist.argmax())
        chosen.append(i)
        dist = torch.minimum(dist, torch.cdist(embeddings, embeddings[i : i + 1]).squeeze(1))
    return torch.tensor(chosen, dtype=torch.long)
