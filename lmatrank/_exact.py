"""Exact rank by dense symmetric eigendecomposition (``method="exact"``)."""

from __future__ import annotations

import math

import numpy as np

from ._result import RankEstimate, count_threshold

__all__ = ["EXACT_MAX_N", "count_eigenvalues", "exact_rank", "eigvalsh_error"]

#: Largest order the exact method accepts by default: a float64 n x n copy of
#: 10,000^2 is 800 MB and eigvalsh needs about three of them.
EXACT_MAX_N = 10_000


def eigvalsh_error(n, lam_max):
    """Bound on the absolute error of eigenvalues computed by ``numpy.linalg.eigvalsh``.

    LAPACK's symmetric eigensolvers are backward stable: the computed eigenvalues are
    exact for ``A + E`` with ``||E||_2 <= p(n) eps ||A||_2``, and by Weyl's inequality
    each eigenvalue moves by at most ``||E||_2``. ``p(n) = sqrt(n)`` is the observed
    growth (the proven bound is a low-degree polynomial; in practice the error stays
    within ``sqrt(n) eps ||A||``), and it keeps numpy's default threshold
    ``n eps ||A||`` above the band for every ``n``.

    >>> bool(eigvalsh_error(100, 1.0) < 1e-13)
    True
    """
    return math.sqrt(n) * float(np.finfo(np.float64).eps) * float(lam_max)


def exact_rank(op, *, rtol=None, atol=None, rng=None, max_n=EXACT_MAX_N):
    """Count eigenvalues with ``|lambda| > threshold`` from a dense ``eigvalsh``.

    The threshold follows the common rule (:func:`lmatrank.count_threshold`):
    ``max(atol, rtol |lambda|_max)``, or numpy's ``matrix_rank`` default
    ``n eps |lambda|_max`` (``eps`` of the input's precision) raised to the measured
    noise of the operator's products. Operators that are not dense or sparse are
    materialised with ``n`` products (counted).

    The count is exact up to the rounding of ``eigvalsh`` itself
    (:func:`eigvalsh_error`): eigenvalues within that distance of the threshold
    could lie on either side, and `interval` includes them; ``resolution`` is that
    distance. ``info`` holds the eigenvalues and the inertia (``n_positive``,
    ``n_negative``).

    Raises
    ------
    ValueError
        When ``n > max_n`` (default :data:`EXACT_MAX_N`).

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> est = lmatrank.estimate_rank(np.diag([2.0, -1.0, 1e-9, 0.0]), method="exact")
    >>> est.rank, est.interval, est.info["n_negative"]
    (3, (3, 3), 1)
    >>> lmatrank.estimate_rank(np.diag([2.0, -1.0, 1e-9, 0.0]), method="exact", rtol=1e-6).rank
    2
    """
    if op.n > max_n:
        raise ValueError(
            f"method='exact' forms the dense {op.n}x{op.n} matrix; n={op.n} exceeds its limit "
            f"max_n={max_n} (pass max_n=... to override, or use method='langevin')")
    dense = op.todense().astype(np.float64, copy=False)
    return count_eigenvalues(np.linalg.eigvalsh(dense), getattr(op, "precision", op.dtype),
                             rtol=rtol, atol=atol, noise_floor=op.noise_floor,
                             matvecs=op.matvecs)


def count_eigenvalues(eigenvalues, precision, *, rtol, atol, noise_floor=None, matvecs=0,
                      method="exact", wrap_info=None):
    """The ``method="exact"`` result from the ascending eigenvalues of a dense ``eigvalsh``.

    `precision` is the dtype whose ``eps`` enters numpy's default threshold;
    `noise_floor` the measured noise of the products (None: not measured).
    `wrap_info`, if given, turns the exact method's ``info`` into the reported one
    (a caller such as ``method="auto"`` nests it).

    >>> count_eigenvalues(np.array([-1.0, 0.0, 1e-20, 3.0]), np.float64, rtol=None,
    ...                   atol=None).interval
    (2, 2)
    """
    n = eigenvalues.size
    largest = float(max(-eigenvalues[0], eigenvalues[-1]))
    threshold, source = count_threshold(largest, n, precision, rtol=rtol, atol=atol,
                                        noise_floor=noise_floor)
    error = eigvalsh_error(n, largest)
    # |lambda| > t counts n - #(lambda <= t) + #(lambda < -t): one search for all the cuts
    cuts = np.array([threshold, threshold + error, max(threshold - error, 0.0)])
    above = n - np.searchsorted(eigenvalues, cuts, side="right")
    below = np.searchsorted(eigenvalues, -cuts, side="left")
    positive, negative = int(above[0]), int(below[0])
    rank = positive + negative
    interval = (int(above[1] + below[1]), int(above[2] + below[2]))
    # a threshold below the rounding of eigvalsh is not resolved, unless no eigenvalue
    # falls in the band where the rounding could move it across
    converged = threshold >= error or interval[0] == interval[1]
    info = dict(eigenvalues=eigenvalues, n_positive=positive, n_negative=negative,
                lambda_max=largest, threshold_source=source)
    return RankEstimate(rank=rank, estimate=float(rank), stderr=0.0, threshold=float(threshold),
                        matvecs=matvecs, method=method, converged=converged,
                        resolution=error, interval=interval,
                        info=info if wrap_info is None else wrap_info(info))
