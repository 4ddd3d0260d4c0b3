"""Exact rank by dense symmetric eigendecomposition (``method="exact"``)."""

from __future__ import annotations

import numpy as np

from ._result import RankEstimate

__all__ = ["EXACT_MAX_N", "exact_rank"]

#: Largest order the exact method accepts by default: a float64 n x n copy of
#: 10,000^2 is 800 MB and eigvalsh needs about three of them.
EXACT_MAX_N = 10_000


def exact_rank(op, *, rtol=None, atol=None, rng=None, max_n=EXACT_MAX_N):
    """Count eigenvalues with ``|lambda| > max(atol, rtol * |lambda|_max)``.

    With ``rtol = atol = None`` the threshold is numpy's ``matrix_rank`` default,
    ``|lambda|_max * n * eps``. Operators that are not dense or sparse are
    materialised with ``n`` products (counted). The eigenvalues are returned in
    ``info["eigenvalues"]`` with the inertia (``n_positive``, ``n_negative``).

    Raises
    ------
    ValueError
        When ``n > max_n`` (default :data:`EXACT_MAX_N`).
    """
    if op.n > max_n:
        raise ValueError(
            f"method='exact' forms the dense {op.n}x{op.n} matrix; n={op.n} exceeds its limit "
            f"max_n={max_n} (pass max_n=... to override, or use method='langevin')")
    dense = op.todense().astype(np.float64, copy=False)
    eigenvalues = np.linalg.eigvalsh(dense)
    largest = float(np.abs(eigenvalues).max())
    if rtol is None and atol is None:
        threshold = largest * op.n * np.finfo(op.dtype).eps
    else:
        threshold = max(atol or 0.0, (rtol or 0.0) * largest)
    positive = int(np.sum(eigenvalues > threshold))
    negative = int(np.sum(eigenvalues < -threshold))
    rank = positive + negative
    return RankEstimate(rank=rank, estimate=float(rank), stderr=0.0, threshold=float(threshold),
                        matvecs=op.matvecs, method="exact", converged=True,
                        info=dict(eigenvalues=eigenvalues, n_positive=positive,
                                  n_negative=negative))
