"""The fast paths give the same answers as the plain ones: dropout masks, repeated heads, float32 scores,
and the benchmark runner's bookkeeping (no timings are asserted anywhere)."""

import math

import pytest
import torch

from alrun.acquire import heuristics
from alrun.acquire.acquisition import top_positions
from alrun.model.builders import SeededDropout, fold_for_inference, scaled_keep_mask
from alrun.model.inference import mc_probs


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_keep_mask_values_and_rate(p):
    keep = 1 - p
    mask = scaled_keep_mask((200, 500), keep, torch.Generator().manual_seed(0), torch.float32, torch.device("cpu"))
    assert mask.shape == (200, 500) and mask.dtype == torch.float32
    values = mask.unique().tolist()
    assert values == [0.0, pytest.approx(1 / keep)]
    rate = (mask > 0).double().mean().item()
    sigma = math.sqrt(keep * (1 - keep) / mask.numel())
    assert abs(rate - keep) < 5 * sigma + 2**-16


def test_keep_mask_is_seeded_and_draws_all_16_bit_values():
    a = scaled_keep_mask((7, 9), 0.5, torch.Generator().manual_seed(3), torch.float64, torch.device("cpu"))
    b = scaled_keep_mask((7, 9), 0.5, torch.Generator().manual_seed(3), torch.float64, torch.device("cpu"))
    c = scaled_keep_mask((7, 9), 0.5, torch.Generator().manual_seed(4), torch.float64, torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # keep so close to 1 that the 16-bit threshold would overflow: every unit is kept
    assert torch.equal(scaled_keep_mask((5,), 1 - 1e-7, None, torch.float32, torch.device("cpu")),
                       torch.full((5,), 1 / (1 - 1e-7)))


@pytest.mark.parametrize("shared", [False, True])
def test_forward_repeated_equals_forward_on_the_repeated_input(shared):
    layer = SeededDropout(0.3).train()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    t = 5
    layer.shared_mask_samples = t if shared else None
    layer.generator = torch.Generator().manual_seed(9)
    fast = layer.forward_repeated(x, t)
    layer.reset_shared_masks()
    layer.generator = torch.Generator().manual_seed(9)
    plain = layer(x.repeat_interleave(t, dim=0))
    assert fast.shape == (4 * t, 6)
    assert torch.allclose(fast, plain, rtol=0, atol=1e-7)
    assert (fast == 0).any()
    layer.eval()
    assert torch.equal(layer.forward_repeated(x, t), x.repeat_interleave(t, dim=0))


def test_forward_repeated_into_a_reused_buffer():
    layer = SeededDropout(0.25).train()
    layer.generator = torch.Generator().manual_seed(5)
    x1, x2 = torch.randn(3, 7), torch.randn(2, 7)
    with torch.inference_mode():
        fresh = [layer.forward_repeated(x, 4) for x in (x1, x2)]
        layer.generator = torch.Generator().manual_seed(5)
        buffer = torch.empty(3 * 4 * 7)
        first = layer.forward_repeated(x1, 4, out=buffer).clone()
        second = layer.forward_repeated(x2, 4, out=buffer)
    assert torch.equal(first, fresh[0]) and torch.equal(second, fresh[1])
    assert second.data_ptr() == buffer.data_ptr()


def test_forward_repeated_keeps_gradients():
    layer = SeededDropout(0.5).train()
    x = torch.randn(3, 4, requires_grad=True)
    layer.forward_repeated(x, 2).sum().backward()
    assert x.grad is not None and x.grad.shape == (3, 4)


def _probs(dtype, n=300, c=6, t=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(n, 1, 1, generator=g, dtype=torch.float64) * 30
    logits = torch.randn(n, c, t, generator=g, dtype=torch.float64) * scale
    return logits.softmax(dim=1).to(dtype)  # some entries underflow to exactly 0 in float32


@pytest.mark.parametrize("name", ["bald", "entropy"])
def test_float32_scores_match_float64(name):
    p32 = _probs(torch.float32)
    assert (p32 == 0).any()
    fn = heuristics.get(name)
    s32, s64 = fn(p32), fn(p32.double())
    assert s32.dtype == torch.float32 and torch.isfinite(s32).all()
    assert torch.allclose(s32.double(), s64, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", ["bald", "entropy"])
def test_internal_chunks_do_not_change_scores(name, monkeypatch):
    probs = _probs(torch.float64, n=50)
    whole = heuristics.get(name)(probs)
    monkeypatch.setattr(heuristics, "_CHUNK_ENTRIES", 100)  # two items per chunk
    monkeypatch.setattr(heuristics, "_ENTROPY_CHUNK_ENTRIES", 100)
    assert torch.equal(heuristics.get(name)(probs), whole)


def test_benchmark_runner_finds_modules_and_formats_rows():
    from benchmarks import run

    names = run.discover()
    assert names[:3] == ["bench_inference", "bench_scoring", "bench_step"]
    r = {"name": "x", "alrun_s": 0.5, "peer_s": 6.0, "speedup": 12.0, "alrun items/s": 2000.0, "config": "T=20"}
    assert run.line(r) == "x: alrun 0.500 s, baal 6.000 s, speedup 12.0x"
    md = run.markdown([r], ["bench_y: RuntimeError: boom"], {"cpu": "test cpu"}, "python -m benchmarks.run",
                      "2026-01-01 00:00", 1.0, "0.00, 0.00, 0.00")
    assert "| x |  | 0.5 | baal | 6 | 12.0x | alrun items/s: 2000; config: T=20 |" in md
    assert "- cpu: test cpu" in md and "bench_y: RuntimeError: boom" in md


@pytest.mark.parametrize("k", [0, 1, 5, 37, 200, 250])
def test_top_positions_equal_a_stable_descending_sort(k):
    g = torch.Generator().manual_seed(k)
    scores = torch.randint(0, 6, (200,), generator=g).float() / 5  # many ties
    expected = torch.argsort(scores.double(), descending=True, stable=True)[:k]
    assert torch.equal(top_positions(scores, k), expected)
    scores[3] = float("nan")
    expected = torch.argsort(scores.double(), descending=True, stable=True)[:k]
    assert torch.equal(top_positions(scores, k), expected)


@pytest.mark.parametrize("side", [4, 8])  # 4 px: the pool sees 1x1 and the folded weight is used; 8 px: 2x2, not
def test_pool_flatten_linear_folding_is_exact(side):
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
        torch.nn.AdaptiveAvgPool2d((3, 3)), torch.nn.Flatten(), torch.nn.Linear(8 * 9, 5), torch.nn.ReLU(),
    )
    folded = fold_for_inference(trunk)
    assert len(folded) == len(trunk) - 2
    x = torch.randn(6, 3, side, side)
    with torch.inference_mode():
        assert torch.allclose(folded(x), trunk(x), rtol=1e-5, atol=1e-6)
    assert (folded[3]._folded is not None) == (side == 4)


def test_folded_trunk_gives_the_same_mc_probabilities_as_full_passes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d((2, 2)), torch.nn.Flatten(), torch.nn.Linear(16, 8),
        torch.nn.ReLU(), SeededDropout(0.5), torch.nn.Linear(8, 3),
    )
    x = torch.randn(5, 3, 3, 3)  # the conv leaves 1x1
    split = mc_probs(model, x, 4, generator=torch.Generator().manual_seed(2))
    full = mc_probs(model, x, 4, generator=torch.Generator().manual_seed(2), split=False)
    assert torch.allclose(split, full, atol=1e-6)


def test_top_positions_break_ties_with_the_generator():
    scores = torch.tensor([0.0] * 50 + [2.0] + [1.0] * 100)  # one clear winner, then 100 tied items

    def picks(seed):
        return top_positions(scores, 6, generator=torch.Generator().manual_seed(seed)).tolist()

    first = picks(0)
    assert first[0] == 50 and all(51 <= p < 151 for p in first[1:]) and len(set(first)) == 6
    assert picks(0) == first  # the same generator state gives the same picks
    assert len({tuple(picks(seed)) for seed in range(5)}) == 5  # and other states others
    assert picks(0)[1:] != list(range(51, 56))  # not the lowest positions, which were picked before
    # the full sort (NaN present) breaks ties the same way
    with_nan = torch.cat([scores, torch.tensor([float("nan")])])
    nan_picks = top_positions(with_nan, 6, generator=torch.Generator().manual_seed(1)).tolist()
    assert nan_picks[0] == 151 and nan_picks[1] == 50 and all(51 <= p < 151 for p in nan_picks[2:])


@pytest.mark.parametrize("k", [1, 37, 200])
def test_top_positions_with_a_generator_keep_the_order_of_scores(k):
    scores = torch.randint(0, 6, (200,), generator=torch.Generator().manual_seed(k)).float()
    chosen = top_positions(scores, k, generator=torch.Generator().manual_seed(9))
    expected = torch.sort(scores, descending=True).values[:k]
    assert torch.equal(scores[chosen], expected) and len(set(chosen.tolist())) == k


def test_acquire_breaks_ties_at_random():
    from alrun.acquire.acquisition import acquire

    # no dropout: every MC sample agrees, every BALD score is 0, and the acquisition is a pure tie-break
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x = torch.randn(80, 4, generator=torch.Generator().manual_seed(0))

    def picks(seed):
        return acquire(model, x, "bald", 5, 2, mc_generator=None,
                       acquisition_generator=torch.Generator().manual_seed(seed)).positions.tolist()

    assert picks(3) == picks(3) and picks(3) != picks(4) and picks(3) != [0, 1, 2, 3, 4]
