"""Batch-aware acquisition: BatchBALD against brute force, on a repeated pool, and the stochastic batches."""

from __future__ import annotations

import itertools
import math
import re

import pandas as pd
import pytest
import torch

from alrun.acquire import batch, heuristics
from alrun.acquire.acquisition import acquire
from alrun.core.errors import ConfigError
from alrun.model.builders import mlp
from alrun.model.inference import mc_probs
from tests.conftest import run_alrun

STOCHASTIC = sorted(batch.STOCHASTIC)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _probs(seed: int, n: int, c: int, t: int, sharpness: float = 3.0) -> torch.Tensor:
    """[N, C, T]: items of varied uncertainty (per-item spread of the T samples' logits)."""
    g = _gen(seed)
    logits = 2 * torch.randn(n, c, 1, generator=g) + sharpness * torch.rand(n, 1, 1, generator=g) * torch.randn(
        n, c, t, generator=g)
    return logits.double().softmax(dim=1)


def repeated_pool(n_distinct: int = 40, c: int = 10, t: int = 20, copies: int = 3, seed: int = 0) -> torch.Tensor:
    """A Repeated-MNIST-style pool [n_distinct * copies, C, T]: item d sits at d*copies .. d*copies+copies-1.

    Every sample is confident (0.95); item d's samples agree on one class except 1 + d % 5 of them
    that say another, so BALD grows with d % 5 and each item tells apart a different set of samples.
    Copies are identical, as consistent dropout masks make them.
    """
    g = _gen(seed)
    votes_dt = torch.randint(c, (n_distinct, 1), generator=g).expand(n_distinct, t).clone()
    for d in range(n_distinct):
        dissent = torch.randperm(t, generator=g)[: 1 + d % 5]
        votes_dt[d, dissent] = (votes_dt[d, 0] + 1 + torch.randint(c - 1, (1,), generator=g)) % c
    probs = torch.full((n_distinct, c, t), 0.05 / (c - 1), dtype=torch.float64)
    probs.scatter_(1, votes_dt[:, None, :], 0.95)
    return probs.repeat_interleave(copies, dim=0)


def brute_force_mi(probs_nct: torch.Tensor, items: list[int]) -> float:
    """I(y_B; w) by enumerating every label configuration of the items (the definition)."""
    p = probs_nct[items].double()
    joint = 0.0
    for config in itertools.product(range(p.shape[1]), repeat=len(items)):
        lik_k = torch.ones(p.shape[2], dtype=torch.float64)
        for i, y in enumerate(config):
            lik_k = lik_k * p[i, y]
        q = float(lik_k.mean())
        joint -= q * math.log(q) if q > 0 else 0.0
    return joint - float(batch.conditional_entropy_n(p).sum())


def top_q(scores: torch.Tensor, q: int) -> torch.Tensor:
    return torch.argsort(scores.double(), descending=True, stable=True)[:q]


# --- BatchBALD ------------------------------------------------------------------------------------


def test_batch_of_one_is_balds_top_item():
    probs = _probs(0, n=200, c=10, t=20)
    chosen = batch.batchbald(probs, 1)
    bald = heuristics.bald(probs)
    assert chosen.indices.tolist() == [int(bald.argmax())]
    assert chosen.scores[0].item() == pytest.approx(bald.max().item(), abs=1e-5)


def test_exact_greedy_equals_brute_force_greedy():
    probs = _probs(1, n=14, c=3, t=6)
    chosen = batch.batchbald(probs, 4, num_samples=10_000, dtype=torch.float64)
    picked: list[int] = []
    for _ in range(4):
        picked.append(max((i for i in range(14) if i not in picked), key=lambda i: brute_force_mi(probs, picked + [i])))
    assert chosen.indices.tolist() == picked
    expected = [brute_force_mi(probs, picked[: i + 1]) for i in range(4)]
    assert chosen.scores.tolist() == pytest.approx(expected, abs=1e-9)


def test_lazy_evaluation_equals_scoring_every_candidate():
    """The lazy greedy loop must choose what scoring the whole pool at every step chooses."""
    probs = _probs(2, n=120, c=4, t=8)
    chosen = batch.batchbald(probs, 5, num_samples=4**5, dtype=torch.float64)  # exact throughout
    probs_nkc = probs.permute(0, 2, 1)
    cond_n = batch.conditional_entropy_n(probs)
    configs, picked = batch.empty_configurations(8), []
    for _ in range(5):
        if picked:
            configs = batch.extend_exact(configs, probs_nkc[picked[-1]])
        w_mk, pi_m = batch.posterior_weights(configs, torch.float64)
        gains = batch.conditional_entropy_given_batch(w_mk, pi_m, probs_nkc) - cond_n
        gains[picked] = -math.inf
        picked.append(int(gains.argmax()))
    assert chosen.indices.tolist() == picked


def test_lazy_steps_score_a_small_part_of_the_pool(monkeypatch):
    """Each step scores candidates in chunks that start at FIRST_CHUNK and double: a memory-sized
    first chunk would score hundreds whose bounds the best gain already beats."""
    probs = _probs(7, n=3000, c=4, t=8)
    scored = []
    real = batch.conditional_entropy_given_batch

    def counting(w_mk, pi_m, probs_bkc, workspace=None):
        scored.append(probs_bkc.shape[0])
        return real(w_mk, pi_m, probs_bkc, workspace)

    monkeypatch.setattr(batch, "conditional_entropy_given_batch", counting)
    batch.batchbald(probs, 6, num_samples=4**6, dtype=torch.float64)
    steps = [[]]
    for size in scored:
        if size == batch.FIRST_CHUNK and steps[-1]:
            steps.append([])
        steps[-1].append(size)
    assert len(steps) == 6
    for sizes in steps:
        assert sizes == [batch.FIRST_CHUNK * 2**i for i in range(len(sizes))]
    assert sum(scored) < 6 * 3000 / 2  # a full scan per step would score 6 x 3,000


def test_repeated_pool_top_q_picks_copies_batchbald_does_not():
    probs = repeated_pool()
    q = 10
    top_items = (top_q(heuristics.bald(probs), q) // 3).tolist()
    bb_items = (batch.batchbald(probs, q, generator=_gen(0)).indices // 3).tolist()
    assert len(set(top_items)) <= 4  # three copies of each of the best items
    assert len(set(bb_items)) == q  # no item twice
    assert len(set(bb_items)) > len(set(top_items))


def test_consistent_masks_make_copies_identical_and_batchbald_spreads_over_them():
    """The same pool built the way the loop builds it: a dropout network, consistent MC masks."""
    model = mlp(8, 10, 64, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.5)  # a random network this sharp disagrees with itself under dropout, like a trained one
    x = torch.randn(40, 8, generator=_gen(0)).repeat_interleave(3, dim=0)
    probs = mc_probs(model, x, 20, consistent=True, generator=_gen(1))
    assert torch.equal(probs[0], probs[1]) and torch.equal(probs[0], probs[2])
    independent = mc_probs(model, x[:2], 20, consistent=False, generator=_gen(1))
    assert not torch.equal(independent[0], independent[1])
    q = 9
    top_items = set((top_q(heuristics.bald(probs), q) // 3).tolist())
    bb_items = set((batch.batchbald(probs, q, generator=_gen(0)).indices // 3).tolist())
    assert len(top_items) == 3 and len(bb_items) > len(top_items)


def test_exact_and_sampled_joint_entropy_agree():
    probs_nkc = _probs(3, n=8, c=4, t=10, sharpness=2.0).permute(0, 2, 1)
    batch_items, candidates = [0, 1, 2], probs_nkc[3:]
    exact = batch.empty_configurations(10)
    for i in batch_items:
        exact = batch.extend_exact(exact, probs_nkc[i])
    sampled = batch.draw_origins(10, 40_000)
    for i in batch_items:
        sampled = batch.extend_sampled(sampled, probs_nkc[i], _gen(7))
    assert exact.exact and not sampled.exact
    assert exact.log_lik_mk.shape == (4**3, 10) and sampled.log_lik_mk.shape == (40_000, 10)
    h_exact, h_sampled = batch.joint_entropy(exact), batch.joint_entropy(sampled)
    assert h_exact == pytest.approx(brute_force_mi(probs_nkc.permute(0, 2, 1), batch_items)
                                    + float(batch.conditional_entropy_n(probs_nkc[batch_items].permute(0, 2, 1)).sum()))
    assert h_sampled == pytest.approx(h_exact, abs=0.03)
    given_exact = batch.conditional_entropy_given_batch(*batch.posterior_weights(exact, torch.float64), candidates)
    given_sampled = batch.conditional_entropy_given_batch(*batch.posterior_weights(sampled, torch.float64), candidates)
    assert torch.allclose(given_sampled, given_exact, atol=0.03)


def test_sampled_regime_is_seeded():
    probs = _probs(4, n=60, c=10, t=20)
    # 10^4 > 2000 configurations: sampled from the fourth item on
    first = batch.batchbald(probs, 25, num_samples=2000, generator=_gen(3))
    again = batch.batchbald(probs, 25, num_samples=2000, generator=_gen(3))
    other = batch.batchbald(probs, 25, num_samples=2000, generator=_gen(4))
    assert torch.equal(first.indices, again.indices) and torch.equal(first.scores, again.scores)
    assert not torch.equal(first.indices, other.indices)
    assert len(set(first.indices.tolist())) == 25 and torch.isfinite(first.scores).all()
    # T = 20 models carry at most log 20 nats; the estimate exceeds it only by sampling noise
    assert first.scores.max().item() < math.log(20) + 0.25


def test_long_batches_stay_finite_where_joint_probabilities_underflow():
    k, c, n = 5, 3, 80
    votes_nk = torch.randint(c, (n, k), generator=_gen(0))
    probs_nkc = torch.full((n, k, c), 1e-12, dtype=torch.float64).scatter_(2, votes_nk[:, :, None], 1.0)
    configs = batch.draw_origins(k, 500)
    for i in range(n):
        configs = batch.extend_sampled(configs, probs_nkc[i], _gen(i))
    assert (configs.log_lik_mk.exp() == 0).any()  # (1e-12)^80: the raw products are gone
    w_mk, pi_m = batch.posterior_weights(configs, torch.float64)
    assert torch.isfinite(w_mk).all() and torch.allclose(w_mk.sum(dim=1), torch.ones(len(w_mk), dtype=torch.float64))
    assert pi_m.sum().item() == pytest.approx(1.0)
    assert 0 <= batch.joint_entropy(configs) <= math.log(k) + 1e-9


def test_memory_budget_changes_chunks_not_choices():
    probs = _probs(5, n=150, c=5, t=10)
    roomy = batch.batchbald(probs, 6, num_samples=200, generator=_gen(0), dtype=torch.float64)
    tight = batch.batchbald(probs, 6, num_samples=200, generator=_gen(0), dtype=torch.float64,
                            max_memory_bytes=200 * 10 * 8 * 4 + 2 * 200 * 5 * 8 * 3)  # a few candidates per chunk
    assert torch.equal(roomy.indices, tight.indices)
    assert torch.allclose(roomy.scores, tight.scores, atol=1e-9)


def test_budget_too_small_for_num_samples_says_so():
    with pytest.raises(ConfigError, match="num_samples=100000"):
        batch.batchbald(_probs(6, n=10, c=3, t=4), 2, num_samples=100_000, max_memory_bytes=2**20)


def test_batch_larger_than_pool_takes_every_item_once():
    chosen = batch.batchbald(_probs(7, n=5, c=3, t=4), 9)
    assert sorted(chosen.indices.tolist()) == list(range(5))


# --- stochastic batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_picks_fewer_copies_than_top_q(name):
    probs, q = repeated_pool(), 10
    top_distinct = len(set((top_q(heuristics.bald(probs), q) // 3).tolist()))
    select = getattr(batch, name)
    distinct = [len(set((select(probs, q, generator=_gen(s)).indices // 3).tolist())) for s in range(10)]
    assert sum(distinct) / len(distinct) > top_distinct + 2


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_same_seed_same_batch_and_no_repeats(name):
    probs = _probs(8, n=100, c=5, t=8)
    select = getattr(batch, name)
    a, b, c = (select(probs, 20, generator=_gen(s)) for s in (1, 1, 2))
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    assert len(set(a.indices.tolist())) == 20 and a.indices.max() < 100


def test_gumbel_top_one_draws_with_the_weights():
    log_w = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    g = _gen(0)
    counts = torch.bincount(torch.stack([batch.gumbel_top_k(log_w, 1, g) for _ in range(6000)]).flatten(), minlength=3)
    assert torch.allclose(counts / 6000, torch.tensor([0.6, 0.3, 0.1]), atol=0.025)


def test_weights_of_each_rule():
    scores = torch.tensor([0.2, 0.8, 0.0, 0.4])
    assert torch.allclose(batch.power_log_weights(scores, 2.0)[[0, 1, 3]].exp(), scores[[0, 1, 3]].double() ** 2)
    assert batch.power_log_weights(scores, 1.0)[2] < -700  # zero score: drawn only after the others
    assert torch.allclose(batch.softmax_log_weights(scores, 3.0), 3.0 * scores.double())
    ranks = torch.tensor([3.0, 1.0, 4.0, 2.0], dtype=torch.float64)
    assert torch.allclose(batch.softrank_log_weights(scores, 1.0).exp(), 1 / ranks)


def test_cold_limit_is_top_q_and_zero_beta_ignores_scores():
    probs = _probs(9, n=60, c=5, t=8)
    bald = heuristics.bald(probs)
    hot = batch.softrank_bald(probs, 10, beta=200.0, generator=_gen(0))
    assert hot.indices.tolist() == top_q(bald, 10).tolist()
    flat = batch.power_bald(probs, 10, beta=0.0, generator=_gen(0))
    assert flat.indices.tolist() == batch.gumbel_top_k(torch.zeros(60), 10, _gen(0)).tolist()


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("heuristic", "params", "fragment"), [
    ("power_bald", {"beta": -1}, "`heuristic.beta=-1` is not allowed: it must be a number of at least 0"),
    ("softrank_bald", {"temperature": 2}, "softrank_bald takes beta"),
    ("batchbald", {"num_samples": 0}, "`heuristic.num_samples=0`"),
    ("batchbald", {"max_memory_mb": "lots"}, "`heuristic.max_memory_mb=lots`"),
    ("bald", {"beta": 1.0}, "bald takes no settings"),
])
def test_heuristic_settings_are_checked(heuristic, params, fragment):
    from alrun.config.schema import run_spec_from_dict

    with pytest.raises(ConfigError, match=re.escape(fragment)):
        run_spec_from_dict({"heuristic": {"name": heuristic, **params}})


def test_heuristic_settings_reach_the_spec():
    from alrun.config.schema import run_spec_from_dict

    spec = run_spec_from_dict({"heuristic": {"name": "batchbald", "num_samples": 500, "max_memory_mb": 64}})
    assert spec.heuristic == "batchbald" and spec.heuristic_params == {"num_samples": 500, "max_memory_mb": 64}


# --- in the loop ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["batchbald", "power_bald", "softrank_bald"])
def test_acquire_dispatches_batch_heuristics(name):
    model = mlp(6, 4, 16, 0.5)
    x = torch.randn(50, 6, generator=_gen(0))

    def run():
        return acquire(model, x, name, 7, 8, mc_generator=_gen(1), acquisition_generator=_gen(2),
                       heuristic_params={"beta": 2.0} if name != "batchbald" else {"num_samples": 500})

    first, second = run(), run()
    assert first.positions.shape == (7,) and len(set(first.positions.tolist())) == 7
    assert torch.equal(first.positions, second.positions)


def test_cli_runs_batchbald_and_a_stochastic_heuristic(tmp_path):
    sweep = tmp_path / "sweep"
    run_alrun(["scale=smoke", "heuristic=batchbald,power_bald", "seed=0", f"hydra.sweep.dir={sweep}"], tmp_path)
    for name in ("batchbald", "power_bald"):
        steps = pd.read_csv(sweep / f"heuristic={name},seed=0" / "steps.csv")
        assert steps["labelled"].tolist() == [20, 30, 40, 50]
        assert (steps["time_acquire"].iloc[:-1] > 0).all() and steps["time_acquire"].iloc[-1] == 0
    summary = pd.read_csv(sweep / "summary.csv")
    assert set(summary["heuristic"]) == {"batchbald", "power_bald"}
