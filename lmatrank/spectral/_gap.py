r"""Threshold (spectral gap) rules for eigenvalue counts.

Two gap rules locate a spectral gap from already computed counts. They are
diagnostics (``info["gap_threshold"]`` of the spectral methods), not the
threshold of a result, which is always :func:`lmatrank.count_threshold` (except in
the published reproduction ``chebyshev_rank(faithful=True)``):

:func:`find_gap`
    The rule of the published Ubaru–Saad code (``find_gap.m``), reproduced
    exactly. It works on the KPM density
    of states ``yy`` sampled on the published grid ``xx`` and uses *absolute*
    tolerances (0.5 (N+1), -0.01, 0.25) on a density whose unit is
    ``1/lambda``. Consequence (a grid artefact, not a feature of the
    spectrum): when ``lambda_max >> 1`` the density values are all tiny, the
    rule stops at the first grid point and returns
    ``eps = lmin + 1.25 (lmax - lmin) / (N + 1)``, about 1.24 % of ``lambda_max``
    for ``N = 100``, wherever the true gap is.

:func:`plateau_threshold`
    A scale-invariant rule (this package's design). The eigenvalue count
    ``r(eps)`` is available for every ``eps`` from the same moments (or Ritz
    values, or sketch eigenvalues) at no extra product, so the rule looks at the
    count itself on a logarithmic grid *relative to* ``|lambda|_max``::

        u_j = log10(eps_j / |lambda|_max),   u from log10(floor) to log10(0.5)

    and returns the geometric centre of the flattest stretch of ``r`` versus
    ``u`` (the plateau a spectral gap produces), preferring lower thresholds on
    ties. Multiplying the matrix by ``s > 0`` multiplies the returned ``eps``
    by ``s`` and leaves the count unchanged. ``floor`` is the method's
    resolution limit (e.g. the Chebyshev filter's resolution at the lower end
    of the spectrum); below it a count is not informative.
"""

from __future__ import annotations

import numpy as np

__all__ = ["find_gap", "plateau_threshold"]


def find_gap(xx, yy):
    r"""The published Ubaru–Saad gap rule (``find_gap.m``), exactly.

    Parameters
    ----------
    xx : ndarray, shape (npts,)
        DOS grid (eigenvalue scale), ascending.
    yy : ndarray, shape (npts,)
        DOS values on `xx`.

    Returns
    -------
    eps : float
        ``(xx[i1] + xx[i2]) / 2``.
    info : dict
        ``indx1``, ``indx2`` (0-based), ``ysum``, ``tol``, the smoothed
        density ``smoothed`` and ``fallback`` (True when no point satisfied the
        first test and the last grid point was used; the published code
        fails in that case).

    Notes
    -----
    1. ``tol1 = (npts + 1) / 2``.
    2. Smoothing with ``p = 3``: ``zz = |yy|``; for ``ii = 2..p``:
       ``zz[:npts-ii] += yy[ii:]``; ``yy = zz / (p + 1)``.
    3. ``tt[i] = yy[i+1] - yy[i]``, ``tt[-1] = 0``.
    4. ``indx1`` = first ``i`` with ``yy[i] <= tol1`` and ``tt[i] >= -0.01``;
       ``ysum = sum(yy[:indx1+1]) / (npts + 1)``.
    5. ``tol = 0.25 (1 - ysum)``; ``indx2`` = first ``i > indx1`` with
       ``yy[i] >= tol``, else ``indx1 + 1``.
    6. ``eps = (xx[indx1] + xx[indx2]) / 2``.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.spectral import find_gap
    >>> xx = np.linspace(0.0, 1000.0, 11)
    >>> eps, info = find_gap(xx, np.full(11, 1e-3))     # tiny density: first grid point
    >>> float(eps), info["indx1"], info["indx2"]
    (50.0, 0, 1)
    """
    xx = np.asarray(xx, dtype=np.float64)
    yy = np.asarray(yy, dtype=np.float64)
    if xx.ndim != 1 or yy.shape != xx.shape or len(xx) < 2:
        raise ValueError(f"xx and yy must be 1-D of the same length >= 2, got {xx.shape} "
                         f"and {yy.shape}")
    if not (np.all(np.isfinite(xx)) and np.all(np.isfinite(yy))):
        raise ValueError("xx and yy must be finite")
    npts = len(yy)
    tol1 = (npts + 1) / 2
    p = 3
    zz = np.abs(yy)
    for ii in range(2, p + 1):
        zz[: npts - ii] += yy[ii:npts]
    ys = zz / (p + 1)
    tt = np.zeros(npts)
    tt[: npts - 1] = ys[1:] - ys[:-1]
    hits = np.flatnonzero((ys <= tol1) & (tt >= -0.01))
    fallback = len(hits) == 0
    indx1 = int(hits[0]) if not fallback else npts - 2
    ysum = float(np.sum(ys[: indx1 + 1])) / (npts + 1)
    tol = 0.25 * (1.0 - ysum)
    later = np.flatnonzero(ys[indx1 + 1:] >= tol)
    indx2 = indx1 + 1 + int(later[0]) if len(later) else indx1 + 1
    eps = 0.5 * (xx[indx1] + xx[indx2])
    return float(eps), dict(indx1=indx1, indx2=indx2, ysum=ysum, tol=tol, smoothed=ys,
                            fallback=fallback)


def plateau_threshold(count, scale, *, floor, n_grid=61, top=0.5, window=0.5):
    r"""Scale-invariant threshold: centre of the flattest window of the count on a log grid.

    The count ``r(eps)`` is evaluated on ``n_grid`` thresholds
    ``eps_j = scale * 10**u_j`` with ``u`` uniform from ``log10(floor)`` to
    ``log10(top)``. For each ``j`` the *spread* ``max - min`` of ``r`` over the
    window ``|u - u_j| <= window / 2`` (in decades) is computed; the returned
    threshold is the grid point with the smallest spread (the lowest one on
    ties). A spectral gap of at least `window` decades gives a window of
    (nearly) constant count; using the spread over a window rather than a
    pointwise slope makes the rule immune to the ripples of a damped
    polynomial filter. Without a gap it returns the threshold where the count
    changes least per decade.

    Parameters
    ----------
    count : callable
        ``count(eps_array) -> counts`` (vectorised): the eigenvalue count above
        each threshold, computed from already-available data.
    scale : float
        ``|lambda|_max`` (estimate); the grid is relative to it.
    floor : float
        Smallest relative threshold considered (the method's resolution), in
        ``(0, top)``.
    n_grid : int
        Number of grid points (>= 5).
    top : float
        Largest relative threshold considered (default 0.5).
    window : float
        Window width in decades (> 0).

    Returns
    -------
    eps : float
        Absolute threshold.
    info : dict
        ``grid`` (absolute thresholds), ``counts``, ``spread``, ``index``.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.spectral import plateau_threshold
    >>> lam = np.concatenate([np.linspace(1, 10, 30), np.full(70, 1e-6)])
    >>> count = lambda e: (lam[:, None] > np.asarray(e)[None, :]).sum(0)
    >>> eps, info = plateau_threshold(count, 10.0, floor=1e-4)
    >>> bool(1e-5 < eps < 1.0), int(count(np.array([eps]))[0])
    (True, 30)
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    if not (0 < floor < top):
        raise ValueError(f"floor must lie in (0, top={top}), got {floor!r}")
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 5:
        raise ValueError(f"n_grid must be an integer >= 5, got {n_grid!r}")
    if not (np.isfinite(window) and window > 0):
        raise ValueError(f"window must be finite and > 0 (decades), got {window!r}")
    u = np.linspace(np.log10(floor), np.log10(top), n_grid)
    grid = scale * 10.0 ** u
    counts = np.asarray(count(grid), dtype=np.float64)
    spread = np.empty(n_grid)
    for j in range(n_grid):
        inside = np.abs(u - u[j]) <= 0.5 * window + 1e-12
        spread[j] = counts[inside].max() - counts[inside].min()
    j = int(np.argmin(spread))
    return float(grid[j]), dict(grid=grid, counts=counts, spread=spread, index=j)
