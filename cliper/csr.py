"""Row-compressed (CSR) index arrays for user -> items lists, numpy only.

Shared by the evaluator (train-item masks, targets) and the served pyfunc model (items a user
has seen), which must not import torch.
"""

from __future__ import annotations

import numpy as np


def build_csr(n_rows: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indptr ``[n_rows + 1]``, cols sorted by row then col) of a row-compressed 0/1 matrix."""
    rows = np.asarray(rows, np.int64)
    order = np.lexsort((cols, rows))
    counts = np.bincount(rows, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, np.asarray(cols)[order].astype(np.int64)


def expand_rows(indptr: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``rows``, column) of every stored entry of the selected CSR rows (vectorised)."""
    starts, lens = indptr[rows], indptr[rows + 1] - indptr[rows]
    row_pos = np.repeat(np.arange(len(rows)), lens)
    offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    return row_pos, cols[np.repeat(starts, lens) + offsets]
