"""Graphs for the backbones: normalised user-item adjacency, item kNN graphs and their cache.

* :func:`normalized_adjacency` - LightGCN's ``Â = D^-1/2 A D^-1/2`` over the ``(U+I)`` bipartite graph
  (He et al., SIGIR 2020, eq. 7), as a ``torch.sparse`` tensor.
* :func:`bipartite_edge_values` / :func:`bipartite_adjacency` - the same normalisation on an edge list,
  used by FREEDOM's degree-sensitive edge pruning, which rebuilds the graph every epoch.
* :func:`knn_graph` - top-``k`` cosine neighbours per item (:mod:`cliper.knn`: blocks on and above the
  diagonal of the symmetric similarity matrix, never the full ``I x I`` matrix at once)
  with MMRec's ``compute_normalized_laplacian`` values.
* :class:`GraphCache` - derived graphs keyed by a SHA-256 of the *content* that built them (feature
  bytes + parameters), in memory and optionally on disk under ``.cache/cliper/graphs/``. MMRec keys
  its file by ``knn_k`` and the image weight only, so new features silently reuse a stale graph; here
  any change of the features changes the key.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cliper import io, knn

logger = logging.getLogger(__name__)

DEGREE_EPS = 1e-7  # MMRec adds this to degrees before the inverse square root
KNN_CHUNK_ROWS = knn.KNN_BLOCK  # side of the similarity blocks computed at once
GRAPH_CACHE_SUBDIR = ".cache/cliper/graphs"
GRAPH_FORMAT_VERSION = 1  # bump when the way a graph is built changes
MEMORY_CACHE_ENTRIES = 8
INT32_LIMIT = 2**31  # CSR index arrays stay int64 from here on


# --------------------------------------------------------------------------- user-item graphs


def unique_edges(users: np.ndarray, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """De-duplicated (user, item) pairs as int64 tensors (a binary interaction matrix, as MMRec)."""
    pairs = np.unique(np.stack([np.asarray(users, np.int64), np.asarray(items, np.int64)], 1), axis=0)
    return torch.from_numpy(pairs[:, 0].copy()), torch.from_numpy(pairs[:, 1].copy())


def bipartite_edge_values(
    users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """``1 / sqrt(deg(u) deg(i))`` per edge (MMRec FREEDOM ``_normalize_adj_m``)."""
    ones = torch.ones_like(users, dtype=torch.float32)
    deg_u = torch.zeros(n_users, device=users.device).index_add_(0, users, ones) + DEGREE_EPS
    deg_i = torch.zeros(n_items, device=items.device).index_add_(0, items, ones) + DEGREE_EPS
    return deg_u.pow(-0.5)[users] * deg_i.pow(-0.5)[items]


def bipartite_adjacency(
    users: torch.Tensor, items: torch.Tensor, values: torch.Tensor, n_users: int, n_items: int
) -> torch.Tensor:
    """Symmetric ``(U+I) x (U+I)`` sparse CSR matrix with ``values`` on (u, U+i) and (U+i, u)."""
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    return to_csr(sparse_coo(torch.stack([rows, cols]), torch.cat([values, values]), (n, n)))


def sparse_coo(indices: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Coalesced COO tensor (indices are built here, so invariant checks are skipped)."""
    return torch.sparse_coo_tensor(indices, values, size, check_invariants=False).coalesce()


def to_csr(adj: torch.Tensor) -> torch.Tensor:
    """Sparse CSR copy of ``adj`` (about 2.5x faster ``sparse.mm`` than COO on CPU).

    Indices are int32 when they fit: the CPU ``sparse.mm`` kernel works on int32 indices and
    otherwise converts both index arrays on every call (half the time of a LightGCN product).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = adj.coalesce().to_sparse_csr()
    if csr.values().numel() >= INT32_LIMIT or max(csr.shape) >= INT32_LIMIT:
        return csr
    return torch.sparse_csr_tensor(
        csr.crow_indices().to(torch.int32),
        csr.col_indices().to(torch.int32),
        csr.values(),
        csr.shape,
        check_invariants=False,  # converted from a valid CSR
    )


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """LightGCN's normalised adjacency ``D^-1/2 A D^-1/2`` of the train interactions (sparse CSR)."""
    u, i = unique_edges(users, items)
    return bipartite_adjacency(u, i, bipartite_edge_values(u, i, n_users, n_items), n_users, n_items)


class _SparseMM(torch.autograd.Function):
    """``adj @ x`` whose backward multiplies by a precomputed ``adj_t`` (PyTorch's CSR backward
    re-sorts the transpose on every call, which dominated the FREEDOM epoch on CPU)."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, torch.sparse.mm(ctx.adj_t, grad)


def spmm(adj: torch.Tensor, x: torch.Tensor, adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """Sparse ``adj @ x`` with a cheap backward; ``adj_t=None`` means ``adj`` is symmetric."""
    if not x.requires_grad:
        return torch.sparse.mm(adj, x)
    return _SparseMM.apply(adj, adj if adj_t is None else adj_t, x)


def propagate_mean(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN propagation over symmetric ``adj``: mean of ``[E, ÂE, Â²E, …]`` (eq. 8, α_k = 1/(K+1))."""
    total, layer = ego, ego
    for _ in range(n_layers):
        layer = spmm(adj, layer)
        total = total + layer  # a running sum, then / (K+1): the stacked mean, without the stack
    return total / (n_layers + 1)


# --------------------------------------------------------------------------- item kNN graphs


def knn_indices(features: torch.Tensor, k: int, chunk_rows: int = KNN_CHUNK_ROWS) -> torch.Tensor:
    """Indices ``[I, k]`` of each row's top-``k`` cosine neighbours (itself included, as MMRec).

    Args:
        features: ``[I, D]`` item features.
        k: neighbours per item (clipped to ``I``).
        chunk_rows: side of the similarity blocks held at once (:func:`cliper.knn.topk_cosine`).
    """
    return knn.topk_cosine(features, k, chunk_rows)


def knn_graph(features: torch.Tensor, k: int, chunk_rows: int = KNN_CHUNK_ROWS) -> torch.Tensor:
    """Sparse ``[I, I]`` kNN graph with values ``d_r^-1/2 d_c^-1/2`` (MMRec ``compute_normalized_laplacian``).

    MMRec uses the *row* degree for both ends of an edge; every row has exactly ``k`` entries,
    so all values equal ``1/k``. Kept as written for parity.
    """
    ind = knn_indices(features, k, chunk_rows)
    n = ind.shape[0]
    rows = torch.arange(n, device=ind.device).repeat_interleave(ind.shape[1])
    cols = ind.reshape(-1)
    deg = torch.zeros(n, device=ind.device).index_add_(0, rows, torch.ones_like(rows, dtype=torch.float32))
    inv = (deg + DEGREE_EPS).pow(-0.5)
    return sparse_coo(torch.stack([rows, cols]), inv[rows] * inv[cols], (n, n))


def _mix(image_graph: torch.Tensor, text_graph: torch.Tensor, image_weight: float) -> torch.Tensor:
    """``w·S_v + (1-w)·S_t``, coalesced."""
    return (image_weight * image_graph + (1.0 - image_weight) * text_graph).coalesce()


def mixed_knn_graph(image: torch.Tensor, text: torch.Tensor, k: int, image_weight: float) -> torch.Tensor:
    """FREEDOM's frozen item graph ``w·S_v + (1-w)·S_t`` (Zhou & Shen, MM 2023, eq. 3), sparse COO."""
    return _mix(knn_graph(image, k), knn_graph(text, k), image_weight)


def views_knn_graph(views: torch.Tensor, k: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_v diag(a_v) S_{t,v}``: one kNN graph per view of ``views`` ``[V, I, D]``, sparse COO.

    ``weights`` ``[I, V]`` (rows summing to 1) scale item ``i``'s row of view ``v``'s graph by
    ``a_{i,v}``; ``None`` is the plain mean ``1/V``. Each view keeps its own neighbours (the
    description's material, the brand field's brand), where one graph of a fused vector keeps the
    neighbours of the attributes that dominate its cosine.
    """
    per_view = [knn_graph(view, k) for view in views]  # V is the handful of text views, not items
    indices = torch.cat([g.indices() for g in per_view], 1)
    if weights is None:
        values = torch.cat([g.values() for g in per_view]) / len(per_view)
    else:
        values = torch.cat([g.values() * weights[g.indices()[0], v] for v, g in enumerate(per_view)])
    return sparse_coo(indices, values, per_view[0].shape)  # coalescing sums an edge's views


def mixed_views_knn_graph(
    image: torch.Tensor, views: torch.Tensor, k: int, image_weight: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``w·S_v + (1-w)·Σ_v diag(a_v) S_{t,v}``: FREEDOM's mixed graph with a text graph per view."""
    return _mix(knn_graph(image, k), views_knn_graph(views, k, weights), image_weight)


# --------------------------------------------------------------------------- cache


class GraphCache:
    """Content-addressed cache of sparse graphs: memory (LRU) plus an optional directory.

    Args:
        directory: where ``<sha256>.pt`` files go; ``None`` keeps the cache in memory only.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.builds = 0  # how many graphs were computed (not served from the cache)

    @staticmethod
    def key(kind: str, arrays: tuple[torch.Tensor, ...], params: dict[str, Any]) -> str:
        """SHA-256 of the arrays' bytes, ``kind``, ``params`` and the graph format version."""
        host = tuple(a.detach().cpu().float().numpy() for a in arrays)
        return io.sha256_array(*host, extra={"kind": kind, "params": params, "version": GRAPH_FORMAT_VERSION})

    def get_or_build(
        self,
        kind: str,
        arrays: tuple[torch.Tensor, ...],
        params: dict[str, Any],
        build: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """The cached graph for (kind, arrays, params), building and storing it when absent."""
        key = self.key(kind, arrays, params)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self.directory / f"{kind}-{key}.pt" if self.directory is not None else None
        graph = None
        if path is not None and path.exists():
            try:
                raw = torch.load(path, map_location="cpu", weights_only=True)
                graph = sparse_coo(raw["indices"], raw["values"], tuple(raw["size"]))
                logger.info("graph cache hit %s", path)
            except (RuntimeError, EOFError, OSError, KeyError) as exc:  # a corrupt file is rebuilt, not fatal
                logger.warning("ignoring unreadable cached graph %s: %s", path, exc)
        if graph is None:
            graph = build().cpu().coalesce()
            self.builds += 1
            if path is not None:
                raw = {"indices": graph.indices(), "values": graph.values(), "size": list(graph.shape)}
                with io.atomic_path(path) as tmp:
                    torch.save(raw, tmp)
        self._memory[key] = graph
        while len(self._memory) > MEMORY_CACHE_ENTRIES:
            self._memory.popitem(last=False)
        return graph


_DEFAULT_CACHE = GraphCache()


def configure_cache(directory: str | Path | None) -> GraphCache:
    """Point the process-wide graph cache at ``directory`` (e.g. ``root/.cache/cliper/graphs``).

    Called by entry points (the train stage); the library never picks a directory on its own.
    """
    global _DEFAULT_CACHE
    _DEFAULT_CACHE = GraphCache(directory)
    return _DEFAULT_CACHE


def default_cache() -> GraphCache:
    """The process-wide :class:`GraphCache` (memory-only unless :func:`configure_cache` was called)."""
    return _DEFAULT_CACHE
