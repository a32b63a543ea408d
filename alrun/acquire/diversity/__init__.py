"""Acquisition that reads the data's geometry: CoreSet, BADGE, TypiClust and ProbCover.

Pure functions over tensors. Each takes the pool candidates' embeddings ``embeddings: [N, D]``
(the input of the model's last linear layer) and returns ``k`` distinct positions into the N
candidates, int64 ``[k]``, in selection order. Randomness comes only from the ``generator`` passed
in. Distances are computed block by block so that no block of the distance matrix is larger than
``max_memory_mb``; nothing holds an ``N x N`` or ``N x L`` matrix.

- :func:`coreset`: k-center greedy (Sener & Savarese, 2018).
- :func:`badge`: k-means++ seeding on gradient embeddings (Ash et al., 2020).
- :func:`typiclust`: the most typical point of the least labelled clusters (Hacohen et al., 2022, TPC-RP).
- :func:`probcover`: greedy max coverage of delta-balls (Yehuda et al., 2022).

TypiClust and ProbCover work on L2-normalised embeddings, as the authors' implementation does (it
normalises its self-supervised features): ProbCover's radius is then a distance on the unit sphere
(0 to 2). CoreSet and BADGE use the embeddings as they are, as their papers do.
"""

from alrun.acquire.diversity.coreset_badge import badge, coreset
from alrun.acquire.diversity.coverage import inside_ball, pair_block_shape, probcover, purity_radius
from alrun.acquire.diversity.geometry import BYTES_PER_ENTRY, block_shape, sq_distances
from alrun.acquire.diversity.typicality import typiclust

__all__ = ["BYTES_PER_ENTRY", "badge", "block_shape", "coreset", "inside_ball", "pair_block_shape", "probcover",
           "purity_radius", "sq_distances", "typiclust"]
