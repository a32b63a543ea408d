"""Batch-aware acquisition: BatchBALD and stochastic batches, for large query sizes.

Top-Q by a per-item score labels near-duplicates together: their scores are equally high and
nothing tells the second copy that the first is already in the batch. Two remedies:

- :func:`batchbald` (Kirsch, van Amersfoort & Gal, 2019) grows the batch greedily, each time
  adding the item that most increases the batch's joint mutual information I(y_1..y_b; w). It
  needs MC samples drawn with *consistent* dropout masks (sample t uses the same mask for every
  item), so that sample t is one model w_t for the whole pool.
- :func:`stochastic_batch` (Kirsch, Farquhar et al., 2023, "Stochastic batch acquisition") draws
  the Q items without replacement with probabilities from the scores: power (p ~ score^beta),
  softmax (p ~ exp(beta * score)) or soft-rank (p ~ rank^-beta). No extra cost over top-Q.

Shapes: probs [N, C, T] (alrun's order everywhere); inside BatchBALD the T MC samples are the
K models w_1..w_K, so per-candidate probabilities are read as [B, K, C].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from alrun.acquire import heuristics
from alrun.core.errors import ConfigError

_TINY = torch.finfo(torch.float64).tiny  # clamp for log(0); log(_TINY) is about -708
FIRST_CHUNK = 16  # candidates scored in the first chunk of each lazy greedy step (see _best_candidate)


@dataclass(frozen=True)
class BatchSelection:
    """A batch chosen from a pool of N items.

    indices: [Q] int64 positions into the N axis, in selection order.
    scores: [Q] float64; for BatchBALD the estimated joint mutual information of the first i items,
    for the stochastic heuristics the base score (BALD or entropy) of each chosen item.
    """

    indices: torch.Tensor
    scores: torch.Tensor


# --- per-item terms -------------------------------------------------------------------------------


def conditional_entropy_n(probs_nct: torch.Tensor) -> torch.Tensor:
    """E_t H[p(y | x, w_t)]: [N, C, T] -> [N] (float64)."""
    p = probs_nct.double()
    return -torch.special.xlogy(p, p).sum(dim=1).mean(dim=1)


def predictive_entropy_n(probs_nct: torch.Tensor) -> torch.Tensor:
    """H[mean_t p(y | x, w_t)]: [N, C, T] -> [N] (float64)."""
    mean_nc = probs_nct.double().mean(dim=2)
    return -torch.special.xlogy(mean_nc, mean_nc).sum(dim=1)


def _per_item_chunked(fn: Callable[[torch.Tensor], torch.Tensor], probs_nct: torch.Tensor,
                      max_memory_bytes: int) -> torch.Tensor:
    """fn over chunks of items so that its float64 temporaries stay within the budget: [N]."""
    n, c, t = probs_nct.shape
    rows = max(1, max_memory_bytes // (4 * c * t * 8))
    return torch.cat([fn(probs_nct[i : i + rows]) for i in range(0, n, rows)])


# --- configurations of the batch's labels ---------------------------------------------------------


@dataclass(frozen=True)
class Configurations:
    """Label configurations y_B of the batch so far, with their likelihood under every model w_k.

    log_lik_mk: [M, K] float64, log p(y_B = configuration m | w_k).
    origin_m: [M] int64, the model each *sampled* configuration was drawn from; None when all
    M = C^|B| configurations are enumerated (exact joint entropy).
    """

    log_lik_mk: torch.Tensor
    origin_m: torch.Tensor | None = None

    @property
    def exact(self) -> bool:
        return self.origin_m is None


def empty_configurations(k: int, device: torch.device | str = "cpu") -> Configurations:
    """The empty batch: one configuration, likelihood 1 under every model."""
    return Configurations(torch.zeros(1, k, dtype=torch.float64, device=device))


def extend_exact(configs: Configurations, probs_kc: torch.Tensor) -> Configurations:
    """Every configuration times every label of one more item: [M, K] -> [M * C, K]."""
    log_p_ck = torch.log(probs_kc.double().clamp_min(_TINY)).T
    m, k = configs.log_lik_mk.shape
    return Configurations((configs.log_lik_mk[:, None, :] + log_p_ck[None, :, :]).reshape(m * log_p_ck.shape[0], k))


def draw_origins(k: int, num_samples: int, device: torch.device | str = "cpu") -> Configurations:
    """Empty sampled configurations: num_samples // K per model (stratified over the K models)."""
    per_model = max(1, num_samples // k)
    origin_m = torch.arange(k, device=device).repeat_interleave(per_model)
    return Configurations(torch.zeros(k * per_model, k, dtype=torch.float64, device=device), origin_m)


def extend_sampled(configs: Configurations, probs_kc: torch.Tensor, generator: torch.Generator) -> Configurations:
    """Extend each sampled configuration by a label drawn from its own model: [M, K] -> [M, K].

    Configuration m was drawn from p(. | w_origin(m)); adding y ~ p(y | x, w_origin(m)) keeps it a
    draw from the joint of the larger batch, so the samples grow with the batch and are never redrawn.
    """
    cdf_kc = probs_kc.double().cumsum(dim=1)
    cdf_mc = cdf_kc[configs.origin_m]
    u_m = torch.rand(cdf_mc.shape[0], generator=generator, device=generator.device, dtype=torch.float64)
    target_m1 = u_m.to(cdf_mc.device)[:, None] * cdf_mc[:, -1:]
    labels_m = torch.searchsorted(cdf_mc, target_m1, right=True).squeeze(1).clamp_max(probs_kc.shape[1] - 1)
    log_p_km = torch.log(probs_kc.double().clamp_min(_TINY))[:, labels_m]
    return Configurations(configs.log_lik_mk + log_p_km.T, configs.origin_m)


def log_marginal_m(configs: Configurations) -> torch.Tensor:
    """log p(y_B = configuration m) = log mean_k p(y_B | w_k): [M]."""
    return torch.logsumexp(configs.log_lik_mk, dim=1) - math.log(configs.log_lik_mk.shape[1])


def joint_entropy(configs: Configurations) -> float:
    """H[y_B]: exact sum over all configurations, or the Monte-Carlo mean of -log p over the samples."""
    log_q_m = log_marginal_m(configs)
    if configs.exact:
        return float(-(log_q_m.exp() * log_q_m).sum())
    return float(-log_q_m.mean())


def posterior_weights(configs: Configurations, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_mk, pi_m): p(w_k | y_B = m) (rows sum to 1) and the weight of configuration m in the average
    over configurations (its probability when exact, its share of the samples when sampled). Normalising
    per row keeps the arithmetic finite for any batch size, where the raw joint probabilities underflow.
    Sampled configurations with equal likelihood rows give equal terms, so they are scored once with
    their count as weight: confident models draw the same configuration many times.
    """
    if configs.exact:
        log_lik_mk = configs.log_lik_mk
        pi_m = log_marginal_m(configs).exp()
    else:
        log_lik_mk, counts_m = torch.unique(configs.log_lik_mk, dim=0, return_counts=True)
        pi_m = counts_m.double() / configs.log_lik_mk.shape[0]
    return torch.softmax(log_lik_mk, dim=1).to(dtype), pi_m.to(dtype)


def conditional_entropy_given_batch(w_mk: torch.Tensor, pi_m: torch.Tensor, probs_bkc: torch.Tensor,
                                    workspace: torch.Tensor | None = None) -> torch.Tensor:
    """H[y_x | y_B] for each of B candidates: [B, K, C] -> [B] (float64).

    p(y_x | y_B = m) = sum_k w_mk p(y_x | w_k), one matrix product for the whole chunk; then the
    entropy of each row, averaged over configurations with weights pi_m. `workspace`: a flat buffer
    of at least 2 * M * B * C elements of w's dtype that holds both [M, B * C] intermediates, so that
    repeated calls reuse one allocation (None: allocated here).
    """
    b, k, c = probs_bkc.shape
    size = w_mk.shape[0] * b * c
    if workspace is None:
        workspace = torch.empty(2 * size, dtype=w_mk.dtype, device=w_mk.device)
    p_k_bc = probs_bkc.to(w_mk.dtype).permute(1, 0, 2).reshape(k, b * c)
    r_m_bc = torch.matmul(w_mk, p_k_bc, out=workspace[:size].view(-1, b * c))
    rlogr_m_bc = torch.clamp_min(r_m_bc, torch.finfo(w_mk.dtype).tiny, out=workspace[size : 2 * size].view(-1, b * c))
    rlogr_m_bc.log_().mul_(r_m_bc)
    # the weighted sum over configurations as one mat-vec, then the sum over classes
    return -(pi_m @ rlogr_m_bc).view(b, c).sum(dim=1).double()


# --- BatchBALD --------------------------------------------------------------------------------------


class Workspace:
    """One flat buffer for the chunks' intermediates, grown only when a chunk needs more: fresh
    allocations of varying sizes per chunk would fault in new pages and fragment the heap, and one
    allocation sized for the largest possible chunk costs its page faults even when lazy steps score
    a few dozen candidates."""

    def __init__(self, dtype: torch.dtype, device: torch.device | str) -> None:
        self.buffer = torch.empty(0, dtype=dtype, device=device)

    def take(self, numel: int) -> torch.Tensor:
        """A flat view of `numel` elements (contents undefined)."""
        if self.buffer.numel() < numel:
            self.buffer = torch.empty(0, dtype=self.buffer.dtype, device=self.buffer.device)  # release first
            self.buffer = torch.empty(numel, dtype=self.buffer.dtype, device=self.buffer.device)
        return self.buffer[:numel]


def _add_to_batch(configs: Configurations, probs_nkc: torch.Tensor, chosen: list[int], num_samples: int,
                  generator: torch.Generator) -> Configurations:
    """The configurations of the batch after chosen[-1] joined it: exact while C^|B| <= num_samples."""
    c = probs_nkc.shape[2]
    if configs.exact and c ** len(chosen) <= num_samples:
        return extend_exact(configs, probs_nkc[chosen[-1]])
    if configs.exact:  # past the budget: sample configurations of the whole batch once, then grow them
        configs = draw_origins(probs_nkc.shape[1], num_samples, probs_nkc.device)
        for i in chosen:
            configs = extend_sampled(configs, probs_nkc[i], generator)
        return configs
    return extend_sampled(configs, probs_nkc[chosen[-1]], generator)


def _best_candidate(w_mk: torch.Tensor, pi_m: torch.Tensor, probs_nkc: torch.Tensor, cond_n: torch.Tensor,
                    bounds_n: torch.Tensor, rows: int,
                    workspace: Workspace | None = None) -> tuple[int, float, torch.Tensor, torch.Tensor]:
    """The candidate with the largest gain I(y_x; w | y_B) = H[y_x | y_B] - E_w H[y_x | w], lazily.

    bounds_n: [N] an upper bound of every candidate's gain (-inf for chosen items). The gain of an
    item never grows as the batch grows (submodularity), so its last computed gain is a bound: visit
    candidates by decreasing bound and stop once the best gain found beats every bound left. While the
    joint entropy is exact this is exactly the greedy choice (up to rounding) and usually evaluates a
    small part of the pool. Sampled estimates are submodular only approximately, so once the batch's
    information nears its ceiling (log K) the lazy choice can differ from a full scan among
    near-equal gains.
    Returns (position, gain, evaluated positions, their gains).
    """
    n_open = int(torch.isfinite(bounds_n).sum())
    order = torch.argsort(bounds_n, descending=True, stable=True)[:n_open]
    best_pos, best_gain = -1, -math.inf
    seen, gains = [], []
    # chunks start small and double up to `rows`: usually a few dozen evaluations settle the step, and
    # one memory-sized chunk would evaluate hundreds of candidates whose bounds are already beaten
    start, size = 0, min(rows, FIRST_CHUNK)
    while start < n_open:
        idx = order[start : start + size]
        start, size = start + size, min(rows, 2 * size)
        if best_gain >= float(bounds_n[idx[0]]):
            break
        buffer = workspace.take(2 * w_mk.shape[0] * len(idx) * probs_nkc.shape[2]) if workspace is not None else None
        gain_b = conditional_entropy_given_batch(w_mk, pi_m, probs_nkc[idx], buffer) - cond_n[idx]
        top_gain, top = gain_b.max(dim=0)
        if float(top_gain) > best_gain:
            best_pos, best_gain = int(idx[top]), float(top_gain)
        seen.append(idx)
        gains.append(gain_b)
    return best_pos, best_gain, torch.cat(seen), torch.cat(gains)


def batchbald(
    probs: torch.Tensor,
    batch_size: int,
    *,
    num_samples: int = 10_000,
    generator: torch.Generator | None = None,
    max_memory_bytes: int = 512 * 2**20,
    dtype: torch.dtype = torch.float32,
) -> BatchSelection:
    """Greedy BatchBALD: the `batch_size` items maximising the joint mutual information I(y_B; w).

    probs: [N, C, T] MC-Dropout probabilities drawn with consistent masks (sample t is one model
    for every item: alrun.model.inference.mc_probs(..., consistent=True)). The joint entropy of the
    batch is exact while its C^|B| label configurations number at most `num_samples`, and is
    estimated from `num_samples` configurations drawn with `generator` beyond that (seeded 0 when
    None). `max_memory_bytes` bounds the working memory beyond `probs` itself: candidates are scored
    in chunks that fit it. `dtype` is that of the big matrix products (float64 for reference runs).
    Note that I(y_B; w) <= log T: past a few dozen items every gain is close to 0, and the choice
    says little more than random; the stochastic heuristics are the cheaper choice for large Q.
    Returns positions into the N axis in selection order.
    """
    n, c, k = probs.shape
    q = min(int(batch_size), n)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    itemsize = torch.finfo(dtype).bits // 8
    m_max = max(num_samples, k)  # the most configurations held at once (exact or sampled)
    state_bytes = m_max * k * (8 + itemsize) * 2  # likelihoods, weights and their temporaries

    def candidate_bytes(m: int) -> int:  # the [M, C] products and logs of one candidate, and its inputs
        return 2 * m * c * itemsize + k * c * (itemsize + probs.element_size())

    per_candidate = candidate_bytes(m_max)
    if state_bytes + per_candidate > max_memory_bytes:
        raise ConfigError(
            f"`num_samples={num_samples}` needs about {(state_bytes + per_candidate) / 2**20:.0f} MiB of working "
            f"memory, more than the budget of {max_memory_bytes / 2**20:.0f} MiB: lower it or raise the budget."
        )
    cond_n = _per_item_chunked(conditional_entropy_n, probs, max_memory_bytes)
    # BALD is the gain of every item into the empty batch, so it is the first bound of each gain
    bounds_n = _per_item_chunked(predictive_entropy_n, probs, max_memory_bytes) - cond_n
    probs_nkc = probs.permute(0, 2, 1)  # a view: the K models before the classes
    configs = empty_configurations(k, probs.device)
    chosen: list[int] = []
    scores: list[float] = []
    workspace = Workspace(dtype, probs.device)
    for _ in range(q):
        if chosen:
            configs = _add_to_batch(configs, probs_nkc, chosen, num_samples, generator)
        w_mk, pi_m = posterior_weights(configs, dtype)
        rows = min(n, max(1, (max_memory_bytes - state_bytes) // candidate_bytes(w_mk.shape[0])))
        pos, gain, seen, gains = _best_candidate(w_mk, pi_m, probs_nkc, cond_n, bounds_n, rows, workspace)
        bounds_n[seen] = gains
        bounds_n[pos] = -math.inf
        batch_mi = joint_entropy(configs) - float(cond_n[chosen].sum()) if chosen else 0.0
        chosen.append(pos)
        scores.append(batch_mi + gain)
    return BatchSelection(torch.tensor(chosen, dtype=torch.int64), torch.tensor(scores, dtype=torch.float64))


# --- stochastic batches ---------------------------------------------------------------------------


def gumbel_top_k(log_weights_n: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k positions drawn without replacement with p ~ exp(log_weights): [N] -> [k] (Gumbel top-k)."""
    u_n = torch.rand(log_weights_n.shape[0], generator=generator, device=generator.device, dtype=torch.float64)
    gumbel_n = -torch.log(-torch.log(u_n.clamp_min(_TINY))).to(log_weights_n.device)
    keys_n = log_weights_n.double() + gumbel_n
    return torch.argsort(keys_n, descending=True, stable=True)[:k]


def power_log_weights(scores_n: torch.Tensor, beta: float) -> torch.Tensor:
    """p ~ score^beta (scores >= 0; a zero score is drawn only after every positive one)."""
    return beta * torch.log(scores_n.double().clamp_min(_TINY))


def softmax_log_weights(scores_n: torch.Tensor, beta: float) -> torch.Tensor:
    """p ~ exp(beta * score)."""
    return beta * scores_n.double()


def softrank_log_weights(scores_n: torch.Tensor, beta: float) -> torch.Tensor:
    """p ~ rank^-beta, rank 1 for the highest score (ties: lower position first)."""
    order = torch.argsort(scores_n.double(), descending=True, stable=True)
    ranks_n = torch.empty_like(order, dtype=torch.float64)
    ranks_n[order] = torch.arange(1, order.shape[0] + 1, dtype=torch.float64, device=order.device)
    return -beta * torch.log(ranks_n)


@dataclass(frozen=True)
class StochasticRule:
    """A stochastic batch heuristic: the per-item heuristic it samples from, and how scores become weights."""

    base: str  # a name in alrun.acquire.heuristics.REGISTRY
    log_weights: Callable[[torch.Tensor, float], torch.Tensor]


STOCHASTIC: dict[str, StochasticRule] = {
    "power_bald": StochasticRule("bald", power_log_weights),
    "power_entropy": StochasticRule("entropy", power_log_weights),
    "softmax_bald": StochasticRule("bald", softmax_log_weights),
    "softrank_bald": StochasticRule("bald", softrank_log_weights),
}


def stochastic_batch(name: str, scores_n: torch.Tensor, batch_size: int, *, generator: torch.Generator,
                     beta: float = 1.0) -> BatchSelection:
    """Draw `batch_size` of N items without replacement by the rule `name` from base scores [N].

    beta (the "coldness") sharpens the draw: 0 is uniform random, large beta approaches top-Q.
    """
    rule = STOCHASTIC[name]
    positions = gumbel_top_k(rule.log_weights(scores_n, float(beta)), min(int(batch_size), scores_n.shape[0]),
                             generator)
    return BatchSelection(positions.cpu(), scores_n.double()[positions].cpu())


def _from_probs(name: str) -> Callable[..., BatchSelection]:
    def select(probs: torch.Tensor, batch_size: int, *, beta: float = 1.0,
               generator: torch.Generator | None = None) -> BatchSelection:
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        scores_n = heuristics.get(STOCHASTIC[name].base)(probs)
        return stochastic_batch(name, scores_n, batch_size, generator=generator, beta=beta)

    select.__name__ = name
    select.__doc__ = (f"{name}: probs [N, C, T] -> a batch of `batch_size` drawn without replacement "
                      f"({STOCHASTIC[name].log_weights.__doc__.strip()} with {STOCHASTIC[name].base} scores).")
    return select


power_bald = _from_probs("power_bald")
power_entropy = _from_probs("power_entropy")
softmax_bald = _from_probs("softmax_bald")
softrank_bald = _from_probs("softrank_bald")
