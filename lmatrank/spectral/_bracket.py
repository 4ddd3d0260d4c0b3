"""Honest brackets for an eigenvalue count from filtered traces.

Every stochastic method in lmatrank measures, with a known sampling error, a few
numbers of the form

    m_k = sum_i phi_k(lambda_i),        k = 1, ..., K,

for filters ``phi_k`` it knows exactly: Langevin's expected observable after ``t``
steps (``1 - (1 - eta lambda)^(2t)`` for Euler–Maruyama, a 2x2 mode recursion for
BAOAB), Chebyshev moments ``tr T_k(A)``, Lanczos quadrature. What the user asks for
is the count ``N(tau) = #{|lambda_i| > tau}``, which is none of the ``m_k``; but the
``m_k`` bound it (the Chebyshev–Markov–Stieltjes moment problem):

- **upper bound**: if ``c_0 + sum_k c_k phi_k(lambda) >= 1[|lambda| > tau]`` for every
  ``lambda`` in the spectral interval, then ``N(tau) <= c_0 n + sum_k c_k m_k`` for every
  spectrum consistent with the measurements (``n`` eigenvalues in all);
- **lower bound**: if ``d_0 + sum_k d_k phi_k(lambda) <= 1[|lambda| > tau]`` everywhere,
  then ``N(tau) >= d_0 n + sum_k d_k m_k``.

Both best bounds are small linear programs (K + 1 coefficients, constraints on a
grid that is dense near ``tau``). The sampling error enters through
``sum_k |c_k| s_k >= sd(sum_k c_k m_hat_k)`` (triangle inequality, whatever the
correlations of the ``m_hat_k``): the programs optimise ``c . m_hat + z sum |c_k|
s_k``, so the bound they return already holds at ``z`` standard errors.

The bracket is tight when the spectrum has a gap around ``tau`` that the filters
resolve; it widens by exactly the eigenvalues the filters cannot place on either
side of ``tau``. Filters with ``phi_k(0) = 0`` (the Langevin ones) are blind to the
null space, so exact zeros cost nothing; polynomial filters see them, and a large
null space widens their brackets. A program that fails (numerically or as
infeasible) gives the trivial bracket ``[0, n]``, never a bound.

References: Lin, Saad & Yang, *Approximating spectral densities of large matrices*,
SIAM Review 58 (2016); Cohen-Steiner, Kong, Sohler & Valiant, *Approximating the
spectrum of a graph*, KDD 2018 (spectra from moments by linear programming).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from .._result import INTERVAL_Z

__all__ = ["CountBracket", "count_bracket", "bracket_grid"]

# points of the constraint grid: log-spaced over the spectral interval, linear over it,
# and clustered on both sides of tau (where the indicator jumps)
_LOG_POINTS = 160
_LINEAR_POINTS = 60
_TAU_POINTS = 80
_CHEBYSHEV_POINTS = 240
# the combinations found on the grid are verified on a grid this many times denser, and the
# bound is corrected by their worst violation there (times n): rigorous between grid points
_VERIFY_DENSITY = 8
_EXCHANGE_ROUNDS = 5
# HiGHS has been seen to stall on badly scaled polynomial programs: a program that does not
# finish in this time gives the trivial bracket
_LP_SECONDS = 10.0
_EXCHANGE_POINTS = 64
_VIOLATION_TOL = 1e-6
# relative size of the rounding of a measured trace (and of the grid's discretisation):
# a floor under the stderr that keeps the programs bounded on exact, nearly collinear data
_ROUNDING = 1e-7
# bound on the coefficients of the normalised filters: between grid points a combination
# with bounded coefficients cannot dip far below its values on the grid
_MAX_COEFFICIENT = 100


@dataclass(frozen=True)
class CountBracket:
    """Confidence bounds on ``#{|lambda| > tau}``.

    Attributes
    ----------
    lo, hi : float
        Lower and upper bounds (real-valued; the count is an integer between them).
    solved : bool
        Both linear programs succeeded (otherwise ``lo = 0``, ``hi = n``).
    """

    lo: float
    hi: float
    solved: bool

    def interval(self):
        """The integer interval ``(ceil(lo), floor(hi))`` (with a small rounding allowance).

        >>> CountBracket(9.2, 12.9, True).interval()
        (10, 12)
        """
        lo = math.ceil(self.lo - 1e-6)
        hi = math.floor(self.hi + 1e-6)
        return int(lo), int(max(lo, hi))


def bracket_grid(tau, lam_max, lam_min=0.0, density=1):
    """Constraint points covering ``[lam_min, lam_max]``, dense near ``+-tau`` and near 0,
    with Chebyshev points (which resolve polynomial filters); `density` multiplies the count.

    >>> g = bracket_grid(1e-3, 1.0)
    >>> bool(g[0] == 0.0 and g[-1] == 1.0 and np.any((g > 1e-3) & (g < 1.001e-3)))
    True
    """
    lam_max = float(lam_max)
    tau = float(tau)
    top = max(lam_max, abs(lam_min))
    floor = max(min(tau * 1e-6, top * 1e-12), top * 1e-300) if top > 0 else 1e-300
    positive = [np.geomspace(floor, top, density * _LOG_POINTS),
                np.linspace(0.0, top, density * _LINEAR_POINTS)]
    chebyshev = 0.5 * (lam_max + lam_min) + 0.5 * (lam_max - lam_min) * np.cos(
        np.linspace(0.0, np.pi, density * _CHEBYSHEV_POINTS))
    positive.append(np.abs(chebyshev))
    if tau > 0:
        offsets = np.geomspace(1e-9, 1.0, density * _TAU_POINTS // 2)
        positive += [tau * (1.0 + offsets), tau * (1.0 - offsets[:-1]), [tau]]
    positive = np.concatenate(positive)
    points = [positive[positive <= lam_max]]
    if lam_min < 0:
        points.append(-positive[positive <= -lam_min])
    grid = np.unique(np.concatenate(points + [[0.0, lam_max, min(lam_min, 0.0)]]))
    return grid


def _bound(phi, ind, moments, stderr, n, z, upper):
    """One linear program: the best upper (or lower) bound on the count."""
    K, m = phi.shape
    # variables: [c_0, c_1..c_K, u_1..u_K], u_k >= |c_k| carries the sampling penalty
    sign = 1.0 if upper else -1.0
    # in units of n: the terms of the objective (n, moments up to n, stderr) then stay
    # of order one, which HiGHS needs at large n (it reported numerical difficulties)
    unit = max(float(n), 1.0)
    cost = np.concatenate([[sign * n], sign * moments, z * stderr]) / unit
    ones = np.ones((m, 1))
    if upper:   # -(c_0 + phi^T c) <= -ind
        A_grid = np.hstack([-ones, -phi.T, np.zeros((m, K))])
        b_grid = -ind
    else:       # d_0 + phi^T d <= ind
        A_grid = np.hstack([ones, phi.T, np.zeros((m, K))])
        b_grid = ind
    eye = np.eye(K)
    A_abs = np.vstack([np.hstack([np.zeros((K, 1)), eye, -eye]),
                       np.hstack([np.zeros((K, 1)), -eye, -eye])])
    A_ub = np.vstack([A_grid, A_abs])
    b_ub = np.concatenate([b_grid, np.zeros(2 * K)])
    bounds = [(-n_coef, n_coef) for n_coef in [_MAX_COEFFICIENT] * (K + 1)] + [(0, None)] * K
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs",
                  options=dict(time_limit=_LP_SECONDS))
    if res.status != 0 or not np.isfinite(res.fun):
        return None
    return sign * float(res.fun) * unit, res.x[:K + 1]


def _worst_violation(violation, combination, ind):
    """Largest violation on the fine grid, allowing between neighbouring points for the
    interpolation error of a smooth function, ``|second difference| / 8``; intervals
    across the jump of the indicator are not charged (the grid is dense there)."""
    curvature = np.zeros_like(combination)
    curvature[1:-1] = np.abs(combination[2:] - 2.0 * combination[1:-1] + combination[:-2])
    curvature = np.maximum(curvature[1:], curvature[:-1])
    same_side = ind[1:] == ind[:-1]
    between = np.maximum(violation[1:], violation[:-1]) + 0.125 * curvature
    return float(max(violation.max(), between[same_side].max(initial=0.0)))


def _semi_infinite_bound(phi, ind, phi_fine, ind_fine, moments, stderr, n, z, upper):
    """The bound of :func:`_bound` with its constraints enforced on the fine grid too.

    An exchange (cutting-plane) loop: solve on the coarse grid, add the fine-grid points
    the combination violates most, solve again. Whatever violation is left after the
    last round is charged to the bound (``n`` times it), so the result stays rigorous on
    the fine grid.
    """
    for _ in range(_EXCHANGE_ROUNDS):
        solved = _bound(phi, ind, moments, stderr, n, z, upper)
        if solved is None:
            return None
        value, coef = solved
        combination = coef[0] + coef[1:] @ phi_fine
        violation = (ind_fine - combination) if upper else (combination - ind_fine)
        worst = _worst_violation(violation, combination, ind_fine)
        if worst <= _VIOLATION_TOL:
            break
        add = np.argsort(violation)[-_EXCHANGE_POINTS:]
        add = add[violation[add] > _VIOLATION_TOL]
        phi = np.hstack([phi, phi_fine[:, add]])
        ind = np.concatenate([ind, ind_fine[add]])
    return value + n * max(0.0, worst) if upper else value - n * max(0.0, worst)


def count_bracket(filters, moments, stderr, *, tau, n, lam_max, lam_min=0.0, z=INTERVAL_Z,
                  grid=None):
    """Bound ``#{|lambda| > tau}`` from measured filtered traces.

    Parameters
    ----------
    filters : callable
        ``filters(lam)`` for a 1-D array of eigenvalues returns the ``(K, len(lam))``
        array ``phi_k(lam)``: the expected contribution of one eigenvalue ``lam`` to
        each measured quantity.
    moments : array_like, shape (K,)
        The measured ``m_hat_k`` (estimates of ``sum_i phi_k(lambda_i)``).
    stderr : array_like, shape (K,) or scalar
        Standard errors of `moments` (0 for exact values). Correlations need not be
        known: the bound uses ``sum |c_k| s_k``, which dominates the true standard
        error of any combination.
    tau : float
        Count ``|lambda| > tau`` (``tau >= 0``).
    n : int
        Number of eigenvalues (the order of the matrix).
    lam_max : float
        An upper bound on the largest eigenvalue.
    lam_min : float, optional
        A lower bound on the smallest eigenvalue (0 for PSD operators; negative
        for indefinite ones).
    z : float, optional
        Standard errors of sampling allowance (default 3).
    grid : array_like, optional
        Constraint points (default :func:`bracket_grid`).

    Returns
    -------
    CountBracket

    Examples
    --------
    Continuous-time Langevin filters ``1 - exp(-2 lambda t)`` at 24 horizons, on a
    spectrum with 10 eigenvalues in ``[0.1, 1]``, 5 at ``1e-7`` and 85 zeros:

    >>> lam = np.r_[np.linspace(0.1, 1.0, 10), np.full(5, 1e-7), np.zeros(85)]
    >>> t = np.geomspace(1.0, 1e3, 24)
    >>> phi = lambda x: -np.expm1(-2.0 * np.outer(t, x))
    >>> m = phi(lam).sum(axis=1)
    >>> count_bracket(phi, m, 0.0, tau=1e-3, n=100, lam_max=1.0).interval()
    (10, 10)
    >>> lo, hi = count_bracket(phi, m, 0.0, tau=1e-8, n=100, lam_max=1.0).interval()
    >>> lo <= 15 <= hi, hi > 15          # the horizon cannot see 1e-8: honest, wide
    (True, True)
    """
    moments = np.asarray(moments, dtype=np.float64).ravel()
    K = moments.size
    stderr = np.broadcast_to(np.asarray(stderr, dtype=np.float64), (K,)).copy()
    tau = float(tau)
    trivial = CountBracket(0.0, float(n), False)
    if not (np.all(np.isfinite(moments)) and np.all(np.isfinite(stderr))
            and math.isfinite(tau) and math.isfinite(lam_max)):
        return trivial
    if grid is None:
        grid = bracket_grid(tau, lam_max, lam_min)
    grid = np.asarray(grid, dtype=np.float64)
    phi = np.asarray(filters(grid), dtype=np.float64).reshape(K, grid.size)
    if not np.all(np.isfinite(phi)):
        return trivial
    # normalise each filter to unit size: exponential filters are nearly collinear
    scale = np.abs(phi).max(axis=1)
    scale[scale == 0] = 1.0
    phi = phi / scale[:, None]
    moments, stderr = moments / scale, stderr / scale
    stderr = np.maximum(stderr, _ROUNDING * np.maximum(1.0, np.abs(moments)))
    fine = bracket_grid(tau, lam_max, lam_min, density=_VERIFY_DENSITY)
    phi_fine = np.asarray(filters(fine), dtype=np.float64).reshape(K, fine.size) / scale[:, None]
    ind_fine = (np.abs(fine) > tau).astype(np.float64)
    bounds = []
    for upper in (True, False):
        found = _semi_infinite_bound(phi, (np.abs(grid) > tau).astype(np.float64), phi_fine,
                                     ind_fine, moments, stderr, n, z, upper)
        if found is None:
            return trivial
        bounds.append(found)
    hi, lo = bounds
    lo, hi = max(0.0, lo), min(float(n), hi)
    if lo > hi:  # measurements inconsistent with any spectrum beyond z standard errors
        return trivial
    return CountBracket(lo, hi, True)
