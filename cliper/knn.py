"""Top-``k`` cosine neighbours of every row, from the upper triangle of the similarity matrix.

The ``I x I`` cosine matrix is symmetric, so only the part on and above the diagonal is computed,
one panel of ``block`` rows at a time: panel ``a`` (rows ``a..a+block`` against columns ``a..I``)
gives those rows their top-``k`` over the columns ``>= a`` and, read down its columns, gives every
later row its top-``k`` among the panel's rows; running top-``k`` lists merge the pieces. That
halves the matrix products (nearly all the cost of FREEDOM's item graph) against computing every
row in full, and memory is ``O(block · I + I · k)``: linear, never quadratic in the number of
items. Each similarity is still one dot product of two normalised rows; only the order of float
operations can differ.
"""

from __future__ import annotations

import torch

KNN_BLOCK = 1024  # rows of one panel of the similarity matrix


def normalize_rows(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    x = features.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _merge(
    values: torch.Tensor, indices: torch.Tensor, start: int, cand_v: torch.Tensor, cand_i: torch.Tensor
) -> None:
    """Keep the best ``k`` of the running lists of rows ``start..`` and the candidates ``[rows, c]``."""
    stop = start + cand_v.shape[0]
    all_v = torch.cat([values[start:stop], cand_v], 1)
    all_i = torch.cat([indices[start:stop], cand_i], 1)
    best_v, pos = torch.topk(all_v, values.shape[1], dim=1)
    values[start:stop] = best_v
    indices[start:stop] = torch.gather(all_i, 1, pos)


def topk_cosine(features: torch.Tensor, k: int, block: int = KNN_BLOCK) -> torch.Tensor:
    """Indices ``[I, k]`` of each row's ``k`` most cosine-similar rows (itself included), best first.

    Args:
        features: ``[I, D]``.
        k: neighbours per row (clipped to ``I``).
        block: rows of the similarity panel held at once.
    """
    x = normalize_rows(features)
    n = x.shape[0]
    k = min(int(k), n)
    values = torch.full((n, k), -torch.inf, device=x.device)
    indices = torch.zeros((n, k), dtype=torch.long, device=x.device)
    for a in range(0, n, block):
        stop = min(a + block, n)
        sims = x[a:stop] @ x[a:].T  # rows a..stop against columns a..n
        v, i = torch.topk(sims, min(k, sims.shape[1]), dim=1)
        _merge(values, indices, a, v, i + a)
        if stop < n:  # the same panel read down its columns: later rows against rows a..stop
            v, i = torch.topk(sims[:, stop - a :], min(k, stop - a), dim=0)
            _merge(values, indices, stop, v.T, i.T + a)
    return indices
