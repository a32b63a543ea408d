"""CoreSet, BADGE, TypiClust and ProbCover (alrun/acquire/diversity/) on fixtures whose answer is known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from alrun.acquire import diversity as dv
from alrun.acquire.diversity import coreset_badge, coverage, geometry, purity, typicality


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def on_circle(angles: list[float]) -> torch.Tensor:
    """Points on a great circle of the unit sphere in 3-D: already normalised, chord = 2 sin(angle gap / 2)."""
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin(), torch.zeros_like(a)], dim=1)


def chord(gap: float) -> float:
    return 2 * math.sin(abs(gap) / 2)


# --- CoreSet ----------------------------------------------------------------------------------------


def test_coreset_on_a_line_picks_the_farthest_point_each_time():
    pool = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    labelled = torch.tensor([[0.0]])
    # 10 is farthest from 0; then 3 (3 from 0, 7 from 10); then 1 and 2 are both 1 away: the first of them
    assert dv.coreset(pool, 3, generator=gen(), labelled_embeddings=labelled).tolist() == [4, 3, 1]


def test_coreset_without_labelled_points_draws_the_first_pick_then_goes_farthest():
    pool = torch.tensor([[0.0], [1.0], [4.0], [10.0]])
    firsts = set()
    for seed in range(20):
        picks = dv.coreset(pool, 2, generator=gen(seed)).tolist()
        firsts.add(picks[0])
        farthest = max(range(4), key=lambda i: abs(pool[i, 0] - pool[picks[0], 0]))
        assert picks[1] == farthest
    assert len(firsts) > 1  # the first pick is drawn, not fixed


def test_coreset_matches_k_center_greedy_on_the_full_distance_matrix():
    torch.manual_seed(1)
    pool, labelled = torch.randn(200, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    d = torch.cdist(pool, torch.cat([labelled]))
    mins, expected = d.min(dim=1).values, []
    for _ in range(15):
        i = int(mins.argmax())
        expected.append(i)
        mins = torch.minimum(mins, torch.cdist(pool, pool[i : i + 1]).squeeze(1))
    got = dv.coreset(pool, 15, generator=gen(), labelled_embeddings=labelled)
    assert got.tolist() == expected and got.dtype == torch.int64


# --- BADGE ------------------------------------------------------------------------------------------


def badge_fixture() -> tuple[torch.Tensor, torch.Tensor]:
    """Item 0 has the largest gradient; item 1 duplicates it; items 2 and 3 lie elsewhere."""
    h = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    p = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.6, 0.4]], dtype=torch.float64)
    return h, p


def explicit_gradients(h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    a = torch.nn.functional.one_hot(p.argmax(1), p.shape[1]).to(p.dtype) - p
    return (a[:, :, None] * h[:, None, :]).flatten(1)  # [N, C * D]


def test_badge_picks_the_largest_gradient_first_and_never_its_duplicate_next():
    h, p = badge_fixture()
    for seed in range(30):
        picks = dv.badge(h, p, 3, generator=gen(seed)).tolist()
        assert picks[0] == 0
        assert 1 not in picks  # at distance 0 from item 0: probability 0 while items 2 and 3 remain


def test_badge_second_pick_follows_squared_distances_of_the_explicit_gradient_embedding():
    h, p = badge_fixture()
    g = explicit_gradients(h, p)
    d2 = ((g - g[0]) ** 2).sum(1)
    expected = d2 / d2.sum()  # k-means++: proportional to the squared distance to the first pick
    runs = 3000
    counts = torch.zeros(4)
    for seed in range(runs):
        counts[dv.badge(h, p, 2, generator=gen(seed))[1]] += 1
    freq = counts / runs
    se = (expected * (1 - expected) / runs).sqrt()
    assert counts[0] == 0 and counts[1] == 0
    assert ((freq - expected).abs() <= 5 * se + 1e-9).all(), (freq, expected)


def test_badge_with_duplicates_only_left_still_returns_distinct_picks():
    h = torch.ones(5, 3)
    p = torch.full((5, 2), 0.5)
    picks = dv.badge(h, p, 5, generator=gen())
    assert sorted(picks.tolist()) == [0, 1, 2, 3, 4]


# --- TypiClust --------------------------------------------------------------------------------------


def blob(direction: int, scale: float = 0.02) -> torch.Tensor:
    """13 points around a unit axis: its centre, a ring of 6 at distance 1 and a ring of 6 at 2 (x scale),
    in the plane tangent to the sphere there. The centre is the densest point (mean distance to its
    6 nearest: 1 x scale; every other point's is larger)."""
    offsets = [(0.0, 0.0)]
    offsets += [(math.cos(t), math.sin(t)) for t in [i * math.pi / 3 for i in range(6)]]
    offsets += [(2 * math.cos(t), 2 * math.sin(t)) for t in [i * math.pi / 3 + math.pi / 6 for i in range(6)]]
    axes = [0, 1, 2]
    axes.remove(direction)
    pts = torch.zeros(len(offsets), 3, dtype=torch.float64)
    pts[:, direction] = 1.0
    for row, (u, v) in enumerate(offsets):
        pts[row, axes[0]] = scale * u
        pts[row, axes[1]] = scale * v
    return pts


def blobs_pool() -> tuple[torch.Tensor, list[int]]:
    """Three blobs, shuffled deterministically; returns the pool and the positions of the three centres."""
    pts = torch.cat([blob(0), blob(1), blob(2)])
    order = torch.randperm(pts.shape[0], generator=gen(5))
    pool = pts[order]
    centres = [int((order == c).nonzero()) for c in (0, 13, 26)]
    return pool, centres


def test_typiclust_picks_the_densest_point_of_each_blob():
    pool, centres = blobs_pool()
    for seed in range(3):
        picks = dv.typiclust(pool, 3, generator=gen(seed))
        assert sorted(picks.tolist()) == sorted(centres)


def test_typiclust_goes_first_to_the_clusters_without_labelled_points():
    pool, centres = blobs_pool()
    labelled = blob(0)[:1] * 1.0001  # next to blob 0's centre: that cluster is covered
    picks = dv.typiclust(pool, 2, generator=gen(), labelled_embeddings=labelled)
    assert sorted(picks.tolist()) == sorted(centres[1:])


def test_typiclust_visits_the_larger_cluster_first_among_equally_labelled_ones():
    small = blob(1)
    big = torch.cat([blob(0), blob(0)[7:] * torch.tensor([1.0, 1.5, 1.5], dtype=torch.float64)])  # 19 points
    pool = torch.cat([small, big])
    picks = dv.typiclust(pool, 2, generator=gen())
    assert picks.tolist() == [13, 0]  # the big blob's centre (position 13), then the small one's


# --- ProbCover --------------------------------------------------------------------------------------


def test_probcover_picks_the_ball_covering_most_uncovered_points():
    # A: 5 points within 0.04 rad; B: 3 points within 0.02; C: 1 point; far apart on the circle
    pool = on_circle([0.0, 0.01, -0.01, 0.02, -0.02, 1.0, 1.01, 1.02, 2.0, 3.0])
    picks = dv.probcover(pool, 4, generator=gen(), radius=0.1)
    # A's first point covers all of A, then B's, then the singletons in order of position
    assert picks.tolist() == [0, 5, 8, 9]


def test_probcover_counts_the_labelled_balls_as_covered_then_draws_at_random():
    pool = on_circle([0.0, 0.01, -0.01, 0.02, -0.02, 1.0, 1.01, 1.02, 2.0])
    labelled = on_circle([0.005])  # covers A
    runs = [dv.probcover(pool, 4, generator=gen(seed), labelled_embeddings=labelled, radius=0.1).tolist()
            for seed in range(10)]
    for picks in runs:
        assert picks[:2] == [5, 8] and len(set(picks)) == 4
        assert set(picks[2:]) <= {0, 1, 2, 3, 4, 6, 7}  # everything covered: uniform among the rest
    assert len({tuple(p[2:]) for p in runs}) > 1


def test_probcover_each_pick_has_the_largest_marginal_coverage():
    torch.manual_seed(3)
    pool, labelled = torch.randn(300, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    radius = 0.6
    pts = torch.nn.functional.normalize(torch.cat([pool, labelled]), dim=1)
    ball = torch.cdist(pts, pts) < radius  # [M, M]
    covered = ball[300:].any(dim=0)
    picks = dv.probcover(pool, 12, generator=gen(), labelled_embeddings=labelled, radius=radius)
    for i in picks.tolist():
        gains = (ball[:300] & ~covered).sum(dim=1)
        assert i == int(gains.argmax()) and gains[i] > 0  # the most, and the first of equal ones
        covered |= ball[i]


def eager_probcover(pool: torch.Tensor, labelled: torch.Tensor, radius: float, k: int) -> list[int]:
    """The greedy straight from the full float32 distance matrix, while some ball still gains."""
    pts = torch.nn.functional.normalize(torch.cat([pool, labelled]), dim=1)
    sq = geometry._sq_norms(pts)
    ball = dv.sq_distances(pts, pts, sq, sq) < radius**2  # [M, M]
    n = pool.shape[0]
    covered = ball[n:].any(dim=0)
    picks: list[int] = []
    for _ in range(k):
        gains = (ball[:n] & ~covered).sum(dim=1)
        gains[picks] = -1
        if int(gains.max()) <= 0:
            break
        picks.append(int(gains.argmax()))  # the first of equal ones
        covered |= ball[picks[-1]]
    return picks


@pytest.mark.parametrize("shape", [(7, 5), (5, 7), (1024, 4096)])
@pytest.mark.parametrize("edge_bytes", [coverage.EDGE_BYTES, 10**12, "overflow"])
@pytest.mark.parametrize("screen", [False, True])
def test_probcover_graph_or_none_any_blocks_pick_as_the_eager_greedy(monkeypatch, shape, edge_bytes, screen):
    # blocks of rows and columns of every shape, with the edge list kept, never kept (each pick finds its
    # neighbours again), or dropped in the middle of the pass: the eager greedy's picks every time
    pool, labelled, _ = random_problem(n=300, n_lab=20, d=6)
    monkeypatch.setattr(coverage, "BF16_SCREEN", screen)
    monkeypatch.setattr(geometry, "PAIR_BLOCK_ROWS", shape[0])
    monkeypatch.setattr(geometry, "PAIR_BLOCK_COLS", shape[1])
    if edge_bytes == "overflow":  # room for about 500 pairs of the roughly 4,000 inside a ball
        edge_bytes = int(2**20 / 500)
    monkeypatch.setattr(coverage, "EDGE_BYTES", edge_bytes)
    expected = eager_probcover(pool, labelled, 0.8, 40)
    assert len(expected) > 10
    picks = dv.probcover(pool, 40, generator=gen(), labelled_embeddings=labelled, radius=0.8, max_memory_mb=1.0)
    assert picks.tolist()[: len(expected)] == expected


def test_probcover_purity_rule_visits_clusters_in_order_and_still_picks_as_the_eager_greedy():
    pool, labelled, _ = random_problem(n=400, n_lab=10, d=5)
    pts = torch.nn.functional.normalize(torch.cat([pool, labelled]), dim=1)
    radius = dv.purity_radius(pts, 4, 0.9, generator=gen(3))  # the same draws as probcover's own
    expected = eager_probcover(pool, labelled, radius, 30)
    picks = dv.probcover(pool, 30, generator=gen(3), labelled_embeddings=labelled, n_classes=4, purity=0.9)
    assert len(expected) > 5 and picks.tolist()[: len(expected)] == expected


def test_purity_radius_is_the_largest_delta_with_enough_pure_balls():
    a, b = [0.0, 0.1, 0.2], [1.0, 1.1, 1.3]
    pts = on_circle(a + b)
    # distance from each point to the nearest point of the other cluster, sorted
    r = sorted([chord(1.0 - x) for x in a] + [chord(x - 0.2) for x in b])
    assert dv.purity_radius(pts, 2, 1.0, generator=gen()) == pytest.approx(r[0])  # every ball pure
    assert dv.purity_radius(pts, 2, 0.5, generator=gen()) == pytest.approx(r[3])  # 3 of 6 pure


def test_probcover_purity_rule_puts_one_pick_in_each_separated_cluster():
    pool = on_circle([0.0, 0.05, 0.1, 0.15, 2.0, 2.05, 2.1])
    picks = dv.probcover(pool, 2, generator=gen(), n_classes=2, purity=1.0)
    # purity 1: the radius is the gap between the clusters (0.15 to 2.0), so any ball covers its whole
    # cluster and nothing of the other: the larger cluster's first point, then the other's
    assert picks.tolist() == [0, 4]


# --- all four ---------------------------------------------------------------------------------------


def run_all(pool: torch.Tensor, labelled: torch.Tensor, probs: torch.Tensor, k: int, seed: int,
            max_memory_mb: float = 512.0) -> dict[str, list[int]]:
    return {
        "coreset": dv.coreset(pool, k, generator=gen(seed), labelled_embeddings=labelled,
                              max_memory_mb=max_memory_mb).tolist(),
        "badge": dv.badge(pool, probs, k, generator=gen(seed), max_memory_mb=max_memory_mb).tolist(),
        "typiclust": dv.typiclust(pool, k, generator=gen(seed), labelled_embeddings=labelled,
                                  max_memory_mb=max_memory_mb).tolist(),
        "probcover": dv.probcover(pool, k, generator=gen(seed), labelled_embeddings=labelled, n_classes=4,
                                  max_memory_mb=max_memory_mb).tolist(),
    }


def random_problem(n: int = 400, n_lab: int = 20, d: int = 8, c: int = 4):
    g = gen(11)
    pool = torch.randn(n, d, generator=g)
    labelled = torch.randn(n_lab, d, generator=g)
    probs = torch.softmax(torch.randn(n, c, generator=g), dim=1)
    return pool, labelled, probs


def test_seeded_repeats_are_identical_and_picks_distinct():
    pool, labelled, probs = random_problem()
    first = run_all(pool, labelled, probs, 25, seed=4)
    assert run_all(pool, labelled, probs, 25, seed=4) == first
    for name, picks in first.items():
        assert len(set(picks)) == 25 and all(0 <= i < 400 for i in picks), name


def test_k_equal_to_the_pool_returns_every_candidate_once():
    pool, labelled, probs = random_problem(n=30)
    for name, picks in run_all(pool, labelled, probs, 30, seed=0).items():
        assert sorted(picks) == list(range(30)), name


def test_block_shape_stays_within_the_budget():
    for n_rows, n_cols, mb in [(10**5, 10**5, 1.0), (50, 7, 512.0), (3, 10**8, 0.5), (10**6, 10**6, 1e-6)]:
        rows, cols = dv.block_shape(n_rows, n_cols, mb)
        assert 1 <= rows <= n_rows and 1 <= cols <= n_cols
        assert rows * cols * dv.BYTES_PER_ENTRY <= max(mb * 2**20, dv.BYTES_PER_ENTRY)
    assert dv.block_shape(50, 7, 512.0) == (50, 7)  # small problems: one block


def test_distance_blocks_stay_within_a_tiny_budget_and_give_the_same_picks(monkeypatch):
    monkeypatch.setattr(coverage, "BF16_SCREEN", False)  # every ProbCover block through sq_distances too
    pool, labelled, probs = random_problem(n=500, n_lab=100)
    budget_mb = 0.02  # 1,310 entries a block; the full pool x (pool + labelled) matrix takes 500 * 600 * 16 B = 4.6 MiB
    expected = run_all(pool, labelled, probs, 12, seed=2)
    shapes: list[tuple[int, int]] = []
    real = dv.sq_distances

    def recording(a, b, a_sq, b_sq):
        shapes.append((a.shape[0], b.shape[0]))
        return real(a, b, a_sq, b_sq)

    for module in (geometry, coreset_badge, typicality, coverage, purity):  # each binds the name it calls
        monkeypatch.setattr(module, "sq_distances", recording)
    assert run_all(pool, labelled, probs, 12, seed=2, max_memory_mb=budget_mb) == expected
    biggest = max(r * c for r, c in shapes)
    assert biggest * dv.BYTES_PER_ENTRY <= budget_mb * 2**20
    assert len(shapes) > 100  # many blocks, not one


@pytest.mark.parametrize("n, k, budget_mb", [
    (600, 3, 0.001),  # 3 clusters of about 200 points; 65 entries a block: a row of a cluster does not fit
    (90, 1, 0.0002),  # one cluster of 90; 13 entries a block, fewer than K = 20: blocks of one column
])
def test_typiclust_blocks_stay_within_a_tiny_budget_and_give_the_same_picks(monkeypatch, n, k, budget_mb):
    pool = torch.randn(n, 8, generator=gen(5))
    expected = dv.typiclust(pool, k, generator=gen(1))
    shapes: list[tuple[int, int]] = []  # the distance blocks of the typicality (k-means++ takes [N, 1] columns)
    real, real_typical, typical = dv.sq_distances, typicality._most_typical, []

    def recording(a, b, a_sq, b_sq):
        if typical:
            shapes.append((a.shape[0], b.shape[0]))
        return real(a, b, a_sq, b_sq)

    def most_typical(*args):
        typical.append(True)
        try:
            return real_typical(*args)
        finally:
            typical.pop()

    for module in (geometry, coreset_badge, typicality, coverage, purity):  # each binds the name it calls
        monkeypatch.setattr(module, "sq_distances", recording)
    monkeypatch.setattr(typicality, "_most_typical", most_typical)
    assert dv.typiclust(pool, k, generator=gen(1), max_memory_mb=budget_mb).tolist() == expected.tolist()
    assert len(shapes) > 100  # many blocks, not one
    assert max(r * c for r, c in shapes) * dv.BYTES_PER_ENTRY <= budget_mb * 2**20
    assert max(c for _, c in shapes) < n // (2 * k)  # column blocks narrower than any cluster


def test_the_most_typical_point_is_the_same_at_any_budget():
    # clusters of many sizes, blocks from 1 column to whole rows: a wrong running top-K, or a point counted as
    # its own neighbour, moves the typicality
    g = gen(9)
    for m in (7, 12, 41, 90, 150):
        for n_neighbours in (1, 3, 20):
            x = geometry._normalised(torch.randn(m, 5, generator=g))
            whole = typicality._most_typical(x, n_neighbours, 512.0)
            assert [typicality._most_typical(x, n_neighbours, mb) for mb in (0.0002, 0.0006, 0.002)] == [whole] * 3, m


@pytest.mark.parametrize("call, words", [
    (lambda: dv.coreset(torch.randn(5, 2), 6, generator=gen()), "k must be"),
    (lambda: dv.coreset(torch.randn(5, 2), -1, generator=gen()), "k must be"),
    (lambda: dv.coreset(torch.randn(5), 1, generator=gen()), "2-D"),
    (lambda: dv.coreset(torch.tensor([[0.0], [math.nan]]), 1, generator=gen()), "NaN"),
    (lambda: dv.coreset(torch.randn(5, 2), 1, generator=gen(), labelled_embeddings=torch.randn(3, 4)), "dimensions"),
    (lambda: dv.coreset(torch.randn(5, 2), 1, generator=gen(), max_memory_mb=0), "max_memory_mb"),
    (lambda: dv.coreset(torch.randn(5, 2), 1, generator=0), "generator"),
    (lambda: dv.badge(torch.randn(5, 2), torch.rand(4, 3), 1, generator=gen()), "probs has 4 rows"),
    (lambda: dv.typiclust(torch.randn(5, 2), 1, generator=gen(), n_neighbours=0), "n_neighbours"),
    (lambda: dv.probcover(torch.randn(5, 2), 1, generator=gen(), radius=-1.0), "radius"),
    (lambda: dv.probcover(torch.randn(5, 2), 1, generator=gen()), "n_classes"),
    (lambda: dv.probcover(torch.randn(5, 2), 1, generator=gen(), n_classes=2, purity=1.5), "purity"),
])
def test_bad_inputs_raise_one_sentence(call, words):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert words in message
    assert message.endswith(".") and "\n" not in message and ". " not in message.rstrip(".")


def test_bfloat16_screening_decides_every_ball_as_float32_does():
    x = torch.nn.functional.normalize(torch.randn(300, 256, generator=gen(7)), dim=1)
    sq = geometry._sq_norms(x)
    d2 = dv.sq_distances(x, x, sq, sq)
    lo = x.bfloat16()
    # a low quantile: few entries near the radius (checked one by one); the median: many (the block again)
    for q in (0.01, 0.5):
        r2 = float(torch.quantile(d2.flatten(), q))
        assert torch.equal(dv.inside_ball(x, x, sq, sq, r2, lo, lo), d2 < r2)


@pytest.mark.parametrize("labelled", [False, True])
def test_probcover_picks_the_same_with_and_without_bfloat16_screening(monkeypatch, labelled):
    pool, lab, _ = random_problem(n=400, n_lab=30, d=16)
    picks = {}
    for screen in (False, True):
        monkeypatch.setattr(coverage, "BF16_SCREEN", screen)
        # a set radius: the purity rule's is a distance in the data, where rounding alone decides the ball
        picks[screen] = dv.probcover(pool, 20, generator=gen(1), labelled_embeddings=lab if labelled else None,
                                     radius=1.0).tolist()
    assert picks[True] == picks[False]


def test_the_benchmark_runs_small_and_its_section_survives_benchmarks_run(tmp_path):
    from benchmarks import bench_diversity, run

    rows = bench_diversity.run_all(n=300, n_lab=20, d=16, c=10, q=10)
    assert [name for name, *_ in rows][:3] == ["coreset", "badge", "typiclust"] and len(rows) == 4
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\nold table\n")
    for _ in range(2):  # a second record replaces the first
        bench_diversity.record(bench_diversity.section(rows, "cmd", 300, 20, 16, 10, 2, "0", "0"), out)
    text = out.read_text()
    assert text.count(bench_diversity.MARK_START) == 1 and "| coreset |" in text and "old table" in text
    assert bench_diversity.kept_section(out).startswith(bench_diversity.MARK_START)
    assert "bench_diversity" not in run.discover()  # benchmarks/run.py keeps the section, never runs it
