r"""Randomized numerical rank from a growing sketch ``Y = S Omega`` (``method="sketch"``).

In the spirit of M. Meier and Y. Nakatsukasa, "Fast randomized numerical
rank estimation for numerically low-rank matrices", Linear Algebra Appl. 686
(2024): the rank is read from a random sketch whose width grows in blocks
until the sketch itself is visibly rank deficient, i.e. until it holds at
least ``oversample`` directions below the threshold. For symmetric ``S`` the
sketch also gives eigenvalue estimates with signs at no further product:
with ``Q`` an orthonormal basis of the numerical range of ``Y``, the
single-pass Rayleigh–Ritz (Halko, Martinsson & Tropp 2011, §5.5)

    X (Q^T Omega) = Q^T Y   (least squares),   S ~ Q sym(X) Q^T

recovers ``Q^T S Q``; its eigenvalues are counted against
``max(atol, rtol * |lambda|_max)``. For an exactly rank-``r`` ``S`` and a
Gaussian ``Omega`` with more than ``r`` columns, ``range(Y) = range(S)`` with
probability one and the count is exact.

Cost: the products (the final width ``k``) plus ``O(n k^2)`` flops per growth
step; memory ``~ 3 n k`` floats, checked against ``max_memory`` before each
block.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .._result import RankEstimate
from ._common import check_int, check_positive

__all__ = ["sketch_rank"]


def _sketch_eigenvalues(Y, Omega, sketch_tol):
    """Eigenvalue estimates of S from Y = S Omega (float64), and the sketch's singular values."""
    Qy, R = scipy.linalg.qr(Y, mode="economic", check_finite=False)
    U, sv, _ = scipy.linalg.svd(R, check_finite=False)
    if sv.size == 0 or sv[0] == 0:
        return np.zeros(0), sv
    keep = int(np.sum(sv > sketch_tol * sv[0]))
    Q = Qy @ U[:, :keep]
    QtO = Q.T @ Omega
    QtY = Q.T @ Y
    # X QtO = QtY  <=>  QtO^T X^T = QtY^T
    Xt, *_ = scipy.linalg.lstsq(QtO.T, QtY.T, check_finite=False)
    X = 0.5 * (Xt + Xt.T)
    return np.linalg.eigvalsh(X), sv


def sketch_rank(op, *, rtol=None, atol=None, rng=None, block_size=None, growth=1.5,
                oversample=10, max_rank=None, max_memory=2**30, max_matvecs=None):
    r"""Numerical rank from a randomized sketch grown until it is rank deficient.

    Called through :func:`lmatrank.estimate_rank` with ``method="sketch"``.

    Parameters
    ----------
    op : CountingOperator
        Symmetric operator.
    rtol, atol : float, optional
        Count ``|lambda| > max(atol, rtol * |lambda|_max)`` among the sketch's
        eigenvalue estimates (``|lambda|_max`` from the sketch). Default: numpy's
        ``matrix_rank`` convention ``|lambda|_max * n * eps(dtype)``, which makes
        the method exact for exactly low-rank matrices.
    rng : seed or Generator, optional
        Gaussian test matrix.
    block_size : int, optional
        Width of the first block (default ``min(n, 32)``).
    growth : float
        Each new block has ``max(block_size, (growth - 1) * k)`` columns for a
        current width ``k`` (``growth=1``: fixed blocks). Default 1.5.
    oversample : int
        Stop once ``k - count >= oversample`` (default 10), or ``k = n``.
    max_rank : int, optional
        Largest sketch width (default ``n``); reaching it before the stopping
        rule gives ``converged=False`` and a lower bound.
    max_memory : int
        Byte budget for the sketch (``Omega``, ``Y`` and work space,
        ``~ 3 * 8 * n * k``). A first block that does not fit raises
        ``ValueError``; a later block that does not fit stops the growth with
        ``converged=False``. Default 1 GiB.
    max_matvecs : int, optional
        Product budget, handled like `max_memory`.

    Returns
    -------
    RankEstimate
        ``stderr`` is 0 (the sketch gives a deterministic bound, not a
        statistical average; when ``converged`` is False the estimate is a
        lower bound, ``info["lower_bound"] = True``). ``info``: ``eigenvalues``
        (sketch estimates), ``sketch_width``, ``singular_values`` (of ``Y``),
        ``n_positive``, ``n_negative``, ``count_half_threshold``,
        ``count_double_threshold``.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> rng = np.random.default_rng(0)
    >>> G = rng.standard_normal((300, 70))
    >>> est = lmatrank.estimate_rank(G @ G.T, method="sketch", rng=1)
    >>> est.rank, est.converged
    (70, True)
    """
    n = op.n
    block_size = check_int("block_size", min(n, 32) if block_size is None else block_size)
    growth = check_positive("growth", growth)
    if growth < 1:
        raise ValueError(f"growth must be >= 1, got {growth!r}")
    oversample = check_int("oversample", oversample)
    max_rank = check_int("max_rank", n if max_rank is None else max_rank)
    max_memory = check_int("max_memory", max_memory)
    max_matvecs = check_int("max_matvecs", max_matvecs, allow_none=True)
    gen = np.random.default_rng(rng)
    bytes_per_column = 3 * 8 * n
    width_cap = min(n, max_rank)
    first = min(block_size, width_cap)
    if first * bytes_per_column > max_memory:
        raise ValueError(
            f"the first sketch block ({first} columns of length {n}) needs "
            f"{first * bytes_per_column} bytes > max_memory={max_memory}")
    if max_matvecs is not None and op.matvecs + first > max_matvecs:
        raise ValueError(
            f"max_matvecs={max_matvecs} is too small for method='sketch': {op.matvecs} products "
            f"already spent and the first block needs {first}")
    eps_mach = np.finfo(op.dtype).eps
    sketch_tol = max(n, 1) * eps_mach
    Omega = np.empty((n, 0))
    Y = np.empty((n, 0))
    reason = None
    converged = False
    while True:
        k = Omega.shape[1]
        want = first if k == 0 else max(block_size, int(np.ceil((growth - 1) * k)))
        want = min(want, width_cap - k)
        if k > 0:
            if want <= 0:
                reason = f"sketch width reached max_rank={max_rank}" if max_rank < n else None
                converged = max_rank >= n
                break
            if (k + want) * bytes_per_column > max_memory:
                reason = f"the next block would exceed max_memory={max_memory} bytes"
                break
            if max_matvecs is not None and op.matvecs + want > max_matvecs:
                reason = f"the next block would exceed max_matvecs={max_matvecs}"
                break
        block = gen.standard_normal((n, want))
        Yb = np.asarray(op.matmat(block.astype(op.dtype, copy=False)), dtype=np.float64)
        if not np.all(np.isfinite(Yb)):
            raise ValueError("operator returned non-finite values on a sketch block")
        Omega = np.hstack([Omega, block])
        Y = np.hstack([Y, Yb])
        k = Omega.shape[1]
        mu, sv = _sketch_eigenvalues(Y, Omega, sketch_tol)
        scale = float(np.abs(mu).max()) if mu.size else 0.0
        eps = _threshold(rtol, atol, scale, n, eps_mach)
        count = int(np.sum(np.abs(mu) > eps))
        if k - count >= oversample or k >= n:
            converged = True
            break
    info = dict(eigenvalues=mu, singular_values=sv, sketch_width=k, oversample=oversample,
                lambda_abs_max=scale,
                threshold_rule="user (rtol/atol)" if (rtol is not None or atol is not None)
                else "numpy matrix_rank default (|lambda|_max * n * eps)")
    if reason:
        info["reason"] = reason
    info["lower_bound"] = not converged
    info.update(n_positive=int(np.sum(mu > eps)), n_negative=int(np.sum(mu < -eps)),
                count_half_threshold=int(np.sum(np.abs(mu) > eps / 2)),
                count_double_threshold=int(np.sum(np.abs(mu) > 2 * eps)))
    return RankEstimate(rank=count, estimate=float(count), stderr=0.0, threshold=float(eps),
                        matvecs=op.matvecs, method="sketch", converged=converged, info=info)


def _threshold(rtol, atol, scale, n, eps_mach):
    if rtol is None and atol is None:
        return scale * n * eps_mach
    return max(atol or 0.0, (rtol or 0.0) * scale)
