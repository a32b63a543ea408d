"""ProbCover (Yehuda et al., 2022): greedy max coverage of delta-balls, with the purity rule for the radius;
bfloat16 screening of pair blocks where the hardware multiplies it fast."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from alrun.acquire.diversity.geometry import (
    _check_common,
    _normalised,
    _sq_norms,
    pair_block_shape,
    sq_distances,
)
from alrun.acquire.diversity.purity import _purity_radius_and_labels, purity_radius  # noqa: F401 - also here

# ProbCover's balls on unit vectors: a first pass in bfloat16 where the hardware multiplies it fast
# (Intel AMX, CUDA), then float32 for the entries it cannot decide. For unit vectors the bfloat16
# dot product is within about 2 * 2^-8 of the exact one (each factor rounded by at most 2^-8
# relative, sum |a_i b_i| <= 1, float32 accumulation), so the squared distance 2 - 2 a.b within
# about 0.016: SCREEN_MARGIN leaves room over that. None: automatic; True / False force it (tests).
BF16_SCREEN: bool | None = None
SCREEN_MARGIN = 0.02
UNIT_TOL = 1e-5  # rows whose squared norm is this close to 1 are screened as unit vectors
# Gathering one undecided entry's float32 dot product costs about this many entries of a block product.
UNDECIDED_COST = 128
# ProbCover keeps the pairs inside a ball while they take at most max_memory_mb at this many bytes each
# (two int32 ends, and the reverse direction's int64 sort indices and int32 list while the graph is built).
EDGE_BYTES = 24



# --- ProbCover --------------------------------------------------------------------------------------


def _screen_in_bf16(x: Tensor) -> bool:
    if BF16_SCREEN is not None:
        return BF16_SCREEN and x.dtype == torch.float32
    if x.dtype != torch.float32:
        return False
    if x.device.type == "cuda":
        return True
    try:
        return x.device.type == "cpu" and bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probe: float32 throughout
        return False


def _bf16_bound(v: float, up: bool) -> float:
    """The nearest bfloat16 number >= v (up) or <= v: a threshold that a bfloat16 comparison keeps exact."""
    b = torch.tensor(v, dtype=torch.float32).bfloat16()
    towards = torch.tensor(math.inf if up else -math.inf, dtype=torch.bfloat16)
    while (float(b) < v) if up else (float(b) > v):
        b = torch.nextafter(b, towards)
    return float(b)


def _decide_exactly(inside: Tensor, undecided: Tensor, a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor,
                    r2: float) -> Tensor:
    """inside [n, m] with its undecided entries set from float32 distances: the cheaper of recomputing the
    rows that hold one, or gathering each entry's dot product (about UNDECIDED_COST block entries each)."""
    per_row = undecided.view(torch.uint8).sum(dim=1, dtype=torch.int32)  # [n]
    n_undecided = int(per_row.sum())
    if n_undecided == 0:
        return inside
    rows = per_row.nonzero().squeeze(1)
    if rows.numel() * b.shape[0] <= n_undecided * UNDECIDED_COST:
        if rows.numel() == a.shape[0]:
            return sq_distances(a, b, a_sq, b_sq) < r2
        inside[rows] = sq_distances(a[rows], b, a_sq[rows], b_sq) < r2
        return inside
    r, c = undecided.nonzero(as_tuple=True)
    piece = max(1, inside.numel() // a.shape[1])  # gathered rows no larger than the block itself
    for p in range(0, r.numel(), piece):
        rp, cp = r[p : p + piece], c[p : p + piece]
        exact = a_sq[rp] + b_sq[cp] - 2.0 * (a[rp] * b[cp]).sum(dim=1)
        inside[rp, cp] = exact.clamp_min_(0.0) < r2
    return inside


def inside_ball(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor, r2: float, a_lo: Tensor | None = None,
                b_lo: Tensor | None = None) -> Tensor:
    """||a_i - b_j||^2 < r2 as a bool block [n, m], for rows of norm <= 1 a [n, D], b [m, D] (norms^2 given).

    With a_lo / b_lo (the same rows in bfloat16) the block is decided in bfloat16 where the estimate is
    farther than SCREEN_MARGIN from r2 and in float32 elsewhere: the same answer as float32 throughout.
    """
    if a_lo is None or b_lo is None:
        return sq_distances(a, b, a_sq, b_sq) < r2
    inside = _inside_block(a, b, a_sq, b_sq, r2, a_lo, b_lo)
    return torch.zeros((a.shape[0], b.shape[0]), dtype=torch.bool, device=a.device) if inside is None else inside


def _inside_block(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor, r2: float, a_lo: Tensor, b_lo: Tensor
                  ) -> Tensor | None:
    """inside_ball's screened block, or None when no pair can be inside (most blocks, between clusters)."""
    dots = torch.mm(a_lo, b_lo.T)  # [n, m] bfloat16
    if bool((a_sq - 1).abs().max() <= UNIT_TOL) and bool((b_sq - 1).abs().max() <= UNIT_TOL):
        # unit rows: ||a - b||^2 < r2 <=> a.b > 1 - r2 / 2; a bfloat16 dot product is within
        # SCREEN_MARGIN / 2 of the exact one, so only the entries between the two bounds are undecided
        threshold = 1.0 - r2 / 2
        low = _bf16_bound(threshold - SCREEN_MARGIN / 2, up=False)
        if float(dots.max()) < low:
            return None
        inside = dots > _bf16_bound(threshold + SCREEN_MARGIN / 2, up=True)
        undecided = (dots >= low).logical_xor_(inside)
    else:  # rows of other norms (a zero embedding normalises to 0): the squared distance itself
        approx = dots.float().mul_(-2.0).add_(a_sq[:, None]).add_(b_sq)
        if float(approx.min()) >= r2 + SCREEN_MARGIN:
            return None
        inside = approx < r2
        undecided = approx.sub_(r2).abs_() <= SCREEN_MARGIN
    return _decide_exactly(inside, undecided, a, b, a_sq, b_sq, r2)


def _ball_block(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor, r2: float, a_lo: Tensor | None,
                b_lo: Tensor | None) -> Tensor | None:
    """inside_ball [n, m], or None when no pair is inside (known from the screening alone)."""
    if a_lo is None or b_lo is None:
        return sq_distances(a, b, a_sq, b_sq) < r2
    return _inside_block(a, b, a_sq, b_sq, r2, a_lo, b_lo)


def _cover(points: Tensor, p_sq: Tensor, lo: Tensor | None, centres: Tensor, r2: float, uncovered: Tensor,
           max_memory_mb: float, mark: bool = False) -> None:
    """Marks as covered (in place) every point within the radius of one of points[centres].

    mark=True sets those points to True instead (the ball itself, in a mask of False).
    """
    m = points.shape[0]
    rows, cols = pair_block_shape(centres.shape[0], m, max_memory_mb)
    for i in range(0, centres.shape[0], rows):
        c = centres[i : i + rows]
        for j in range(0, m, cols):
            inside = _ball_block(points[c], points[j : j + cols], p_sq[c], p_sq[j : j + cols], r2,
                                 *((lo[c], lo[j : j + cols]) if lo is not None else (None, None)))
            if inside is not None and mark:
                uncovered[j : j + cols] |= inside.any(dim=0)
            elif inside is not None:
                uncovered[j : j + cols] &= ~inside.any(dim=0)


def _add_edge_counts(counts: Tensor, src: Tensor, dst: Tensor, uncovered: Tensor) -> None:
    """counts[i] += the uncovered ends of the pairs (src, dst) that touch i, both ways (in place)."""
    m = counts.shape[0]
    if bool(uncovered.all()):
        counts += torch.bincount(src, minlength=m) + torch.bincount(dst, minlength=m)
    else:
        counts += torch.bincount(src[uncovered[dst]], minlength=m) + torch.bincount(dst[uncovered[src]], minlength=m)


def _ball_pass(points: Tensor, p_sq: Tensor, lo: Tensor | None, r2: float, uncovered: Tensor, max_memory_mb: float,
               max_edges: int) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """One pass over the pairs: (counts int64 [M], edges or None).

    counts[i] is how many uncovered points lie in i's ball (itself included). edges are the pairs
    (src, dst), int32 [E] each, src < dst, sorted by src, at distance below the radius, kept while they
    are at most ``max_edges`` (None past that). Distances are symmetric, so each block of rows meets
    itself and the points after it only: with edges, the pairs themselves; without, a block's rows
    count their columns and the columns past the rows' own square count the rows.
    """
    m = points.shape[0]
    counts = torch.zeros(m, dtype=torch.int64, device=points.device)
    unc_f = uncovered.to(torch.float32)  # counts as float32 products: exact below 2^24 per block
    src_parts: list[Tensor] = []
    dst_parts: list[Tensor] = []
    n_edges, keep_edges = 0, max_edges > 0
    rows, cols = pair_block_shape(m, m, max_memory_mb)
    for i in range(0, m, rows):
        i_end = min(i + rows, m)
        row_src: list[Tensor] = []
        row_dst: list[Tensor] = []
        if keep_edges:
            counts[i:i_end] += uncovered[i:i_end]  # each point lies in its own ball
        for j in range(i, m, cols):
            j_end = min(j + cols, m)
            inside = _ball_block(points[i:i_end], points[j:j_end], p_sq[i:i_end], p_sq[j:j_end], r2,
                                 *((lo[i:i_end], lo[j:j_end]) if lo is not None else (None, None)))
            if inside is None:
                continue
            if keep_edges:
                if j < i_end:
                    inside = inside.triu(i - j + 1)  # the rows' own square: the pairs with column > row, once
                r, c = inside.nonzero(as_tuple=True)
                row_src.append((r + i).int())
                row_dst.append((c + j).int())
                n_edges += r.numel()
                if n_edges > max_edges:  # too many to keep: count from here on
                    _add_edge_counts(counts, torch.cat(src_parts + row_src), torch.cat(dst_parts + row_dst), uncovered)
                    src_parts, dst_parts, row_src, row_dst, keep_edges = [], [], [], [], False
                continue
            inside_f = inside.to(torch.float32)
            counts[i:i_end] += (inside_f @ unc_f[j:j_end]).long()
            past = max(j, i_end)  # columns beyond the rows' own square: the reverse pairs
            if past < j_end:
                counts[past:j_end] += (unc_f[i:i_end] @ inside_f[:, past - j :]).long()
        if row_src:  # this block of rows' pairs, by source
            src, by_src = torch.sort(torch.cat(row_src), stable=True)
            src_parts.append(src)
            dst_parts.append(torch.cat(row_dst)[by_src])
    if not keep_edges:
        return counts, None
    empty = torch.empty(0, dtype=torch.int32, device=points.device)
    src, dst = (torch.cat(src_parts), torch.cat(dst_parts)) if src_parts else (empty, empty)
    _add_edge_counts(counts, src, dst, uncovered)
    return counts, (src, dst)


def _ranges(starts: Tensor, lengths: Tensor) -> Tensor:
    """The concatenation of arange(s, s + n) for each (s, n): int64 [sum(lengths)]."""
    ends = lengths.cumsum(0)
    total = int(ends[-1]) if ends.numel() else 0
    return torch.repeat_interleave(starts - (ends - lengths), lengths, output_size=total) + torch.arange(
        total, device=starts.device)


class _Adjacency:
    """Both directions of the pairs (src, dst), src < dst sorted by src, as two int32 CSR lists.

    Built in about 24 bytes per pair at its peak (sorting the reverse direction), 8 once built.
    """

    def __init__(self, src: Tensor, dst: Tensor, m: int) -> None:
        self.after = dst  # [E]: each point's neighbours after it, grouped by point (src is sorted)
        self.after_count = torch.bincount(src.long(), minlength=m)  # [M]
        del src
        by_dst = torch.sort(dst, stable=True).indices
        self.before = torch.repeat_interleave(torch.arange(m, dtype=torch.int32, device=dst.device),
                                              self.after_count, output_size=dst.shape[0])[by_dst]
        del by_dst
        self.before_count = torch.bincount(dst.long(), minlength=m)
        self.after_start = self.after_count.cumsum(0) - self.after_count
        self.before_start = self.before_count.cumsum(0) - self.before_count

    def neighbours(self, rows: Tensor) -> Tensor:
        """Every neighbour of each of rows (repeats kept): int64."""
        return torch.cat([self.after[_ranges(self.after_start[rows], self.after_count[rows])],
                          self.before[_ranges(self.before_start[rows], self.before_count[rows])]]).long()


def _greedy_on_graph(graph: _Adjacency, gains: Tensor, uncovered: Tensor, position: Tensor, k: int,
                     generator: torch.Generator, chosen: Tensor) -> None:
    """ProbCover's greedy on the ball graph, as the authors run it (fills ``chosen`` [k] in place).

    gains [M] (uncovered points in each ball) and uncovered [M] by row; position [n]: each candidate's
    row. Each pick covers its ball; each point newly covered leaves its own ball's count and its
    neighbours' (one scatter over their adjacency lists).
    """
    n = position.shape[0]
    taken = torch.zeros(n, dtype=torch.bool, device=gains.device)
    for step in range(k):
        best = int(gains[position].masked_fill(taken, -1).argmax())  # by candidate: the first of equal ones
        row = position[best : best + 1]
        if int(gains[row]) <= 0:
            _draw_rest(taken, k, step, generator, chosen)
            return
        chosen[step] = best
        taken[best] = True
        ball = torch.cat([row, graph.neighbours(row)])
        newly = ball[uncovered[ball]]
        uncovered[newly] = False
        gains.index_add_(0, newly, torch.full_like(newly, -1))
        touched = graph.neighbours(newly)
        gains.index_add_(0, touched, torch.full_like(touched, -1))


def _draw_rest(taken: Tensor, k: int, step: int, generator: torch.Generator, chosen: Tensor) -> None:
    """Everything is covered: chosen[step:] uniformly among the candidates not taken (in place)."""
    free = (~taken).nonzero().squeeze(1).cpu()
    rest = free[torch.randperm(free.shape[0], generator=generator, device=generator.device).cpu()]
    chosen[step:] = rest[: k - step]


def _greedy_without_graph(points: Tensor, p_sq: Tensor, lo: Tensor | None, r2: float, gains: Tensor,
                          uncovered: Tensor, position: Tensor, k: int, generator: torch.Generator,
                          max_memory_mb: float, chosen: Tensor) -> None:
    """ProbCover's greedy when the graph does not fit (fills ``chosen`` [k] in place): the same picks as
    :func:`_greedy_on_graph`, with each newly covered point's neighbours found again from the distances.

    gains [M] and uncovered [M] by row of points; position [n]: each candidate's row. Every point is
    newly covered at most once, so all steps together cost at most one pass over all the pairs.
    """
    n, m = position.shape[0], points.shape[0]
    taken = torch.zeros(n, dtype=torch.bool, device=gains.device)
    for step in range(k):
        best = int(gains[position].masked_fill(taken, -1).argmax())  # by candidate: the first of equal ones
        if int(gains[position[best]]) <= 0:
            _draw_rest(taken, k, step, generator, chosen)
            return
        chosen[step] = best
        taken[best] = True
        row = position[best : best + 1]
        ball = torch.zeros(m, dtype=torch.bool, device=points.device)
        _cover(points, p_sq, lo, row, r2, ball, max_memory_mb, mark=True)
        newly = (ball & uncovered).nonzero().squeeze(1)  # rows
        uncovered[newly] = False
        # each leaves its neighbours' balls and its own (at distance 0 it is one of its neighbours here)
        rows, cols = pair_block_shape(newly.shape[0], m, max_memory_mb)
        for i in range(0, newly.shape[0], rows):
            w = newly[i : i + rows]
            for j in range(0, m, cols):
                inside = _ball_block(points[w], points[j : j + cols], p_sq[w], p_sq[j : j + cols], r2,
                                     *((lo[w], lo[j : j + cols]) if lo is not None else (None, None)))
                if inside is not None:
                    gains[j : j + cols] -= inside.view(torch.uint8).sum(dim=0, dtype=torch.int64)


def probcover(embeddings: Tensor, k: int, *, generator: torch.Generator, labelled_embeddings: Tensor | None = None,
              radius: float | None = None, n_classes: int | None = None, purity: float = 0.95,
              max_memory_mb: float = 512.0) -> Tensor:
    """ProbCover (Yehuda et al., 2022): greedy max coverage of delta-balls around the picks.

    embeddings [N, D], labelled_embeddings [L, D] (or None) -> LongTensor [k].
    Over the L2-normalised pool and labelled points, a point's ball holds the points at distance
    < radius. Points in a labelled point's ball are covered from the start; each pick is then the
    candidate whose ball holds the most uncovered points (the first of equal ones, as the authors'
    argmax), and those become covered. Once every point is covered, the remaining picks are drawn
    uniformly by ``generator`` among the candidates not chosen (the authors' code would pick an
    arbitrary one there). ``radius=None`` chooses it by the paper's purity rule with ``n_classes``
    k-means clusters (see :func:`purity_radius`).

    One pass over the pairs (half of them, by symmetry; in bfloat16 where the hardware multiplies it
    fast, float32 for the pairs near the radius) counts each ball's uncovered points and keeps the
    pairs inside a ball, the authors' edge list, while it fits in ``max_memory_mb``; the greedy then
    runs on that graph. Balls too large for that keep no edge: each pick then finds the neighbours of
    the points it newly covers from the distances again (at most one more pass over all the pairs in
    all), with the same picks.
    Under the purity rule the points are visited cluster by cluster, so that the pairs near the radius
    gather in few blocks. Memory: O(N + L) plus the edges, beyond the ``max_memory_mb`` blocks.
    """
    x, lab = _check_common(embeddings, k, labelled_embeddings, max_memory_mb, generator)
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius > 0):
        raise ValueError(f"radius must be a positive number (a distance between normalised embeddings, "
                         f"0 to 2) or None for the purity rule, got {radius!r}.")
    if radius is None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"radius=None chooses the radius by the purity rule, which needs n_classes, "
                             f"an integer of at least 2, got {n_classes!r}.")
        if isinstance(purity, bool) or not isinstance(purity, (int, float)) or not 0 < purity <= 1:
            raise ValueError(f"purity must be a number in (0, 1], got {purity!r}.")
    n = x.shape[0]
    chosen = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return chosen
    points = _normalised(torch.cat([x, lab]))  # [M = N + L, D]: pool first
    m = points.shape[0]
    position = torch.arange(m, device=points.device)  # each point's row in the visiting order
    if radius is None:
        n_clusters = min(n_classes, m)
        radius = math.inf
        if n_clusters >= 2:
            radius, labels = _purity_radius_and_labels(points, n_clusters, purity, generator, max_memory_mb)
            order = torch.argsort(labels, stable=True).to(points.device)  # cluster by cluster
            points = points[order]
            position[order] = torch.arange(m, device=points.device)
    r2 = float(radius) ** 2
    p_sq = _sq_norms(points)
    lo = points.bfloat16() if _screen_in_bf16(points) else None  # [M, D] bfloat16 copy for the screening
    uncovered = torch.ones(m, dtype=torch.bool, device=points.device)  # by row of points
    if m > n:
        _cover(points, p_sq, lo, position[n:], r2, uncovered, max_memory_mb)
    max_edges = int(max_memory_mb * 2**20) // EDGE_BYTES
    counts, edges = _ball_pass(points, p_sq, lo, r2, uncovered, max_memory_mb, max_edges)
    if edges is None:
        _greedy_without_graph(points, p_sq, lo, r2, counts, uncovered, position[:n], k, generator, max_memory_mb,
                              chosen)
        return chosen
    del lo
    graph = _Adjacency(*edges, m)
    del edges
    _greedy_on_graph(graph, counts, uncovered, position[:n], k, generator, chosen)
    return chosen
