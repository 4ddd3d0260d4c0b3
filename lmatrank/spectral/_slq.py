r"""Stochastic Lanczos quadrature (SLQ) eigenvalue count (``method="slq"``).

For a unit probe ``v``, ``m`` Lanczos steps give a tridiagonal ``T_m`` with
Ritz values ``theta_k`` and weights ``tau_k^2 = (e_1^T y_k)^2``; the
``m``-point Gauss quadrature of the spectral measure of ``v`` gives

    n v^T h(A) v  ~  n sum_k tau_k^2 h(theta_k),

and the average over probes estimates ``tr h(A)``. With ``h`` the indicator of
``|lambda| > eps`` this is the numerical rank; the Ritz values and weights are
kept, so the count at any other threshold (``eps/2``, ``2 eps``, a gap rule)
and the inertia cost no product.

The threshold is the library's rule (:func:`lmatrank.count_threshold`, with
``|lambda|_max`` the largest Ritz value magnitude). Gauss quadrature alone
cannot tell a cluster of eigenvalues at 0 from one just above the threshold (its
nodes stay away from such a cluster), so the interval comes from the
Chebyshev–Markov–Stieltjes inequalities: for each probe, the Gauss–Radau rule
with a node prescribed at the threshold ``tau`` (the Lanczos matrix extended by
one row, exact for polynomials of degree ``2 m``) bounds the probe's spectral
measure of ``(tau, inf)`` from below by the weights of its nodes above ``tau``
and from above by those weights plus the weight of the node at ``tau`` [3]_
(likewise at ``-tau`` for the negative part). The per-probe bounds are averaged
and widened by their sampling error (Student's t), so the interval covers both
the eigenvalues the quadrature cannot place and the probe noise. All probes share one block product per
Lanczos step, and each probe is fully reorthogonalised against its own basis
blockwise (:func:`~lmatrank.spectral.batched_lanczos`). The probes are drawn on
the host and moved once per block to the backend's array namespace, where the
Lanczos bases live (CuPy for device input or ``backend="cupy"``); only the
tridiagonal coefficients come back.

References
----------
.. [1] S. Ubaru, J. Chen, Y. Saad, "Fast estimation of tr(f(A)) via stochastic
   Lanczos quadrature", SIAM J. Matrix Anal. Appl. 38(4), 2017.
.. [2] G. H. Golub, G. Meurant, "Matrices, Moments and Quadrature with
   Applications", Princeton University Press, 2010.
.. [3] N. I. Akhiezer, "The Classical Moment Problem", Oliver & Boyd, 1965,
   ch. 3 (Chebyshev–Markov–Stieltjes inequalities).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from .._result import RankEstimate
from ._arrays import spectral_arrays
from ._common import (MIN_PROBES, bracketed_result, budget_probes, check_bool, check_budget,
                      check_choice, check_int, contract_threshold, degree_for, filter_resolution,
                      fix_message, sampling_z, unit_probes, converged_width)
from ._gap import plateau_threshold
from ._lanczos import batched_lanczos

__all__ = ["slq_rank", "radau_bounds"]

_BLOCK_BYTES = 256 * 2**20


def radau_bounds(alpha, beta, x):
    r"""Bounds on ``mu((x, inf))`` for a probe's spectral measure from its Lanczos matrix.

    `alpha` (``m``) and `beta` (``m``: the last entry is the norm of the residual after
    ``m`` steps) define the Gauss rule; the Gauss–Radau rule with a node prescribed at
    `x` extends the Jacobi matrix by ``alpha_{m+1} = x + beta_m^2 d_m``,
    ``(T_m - x I) d = e_m``. By the Chebyshev–Markov–Stieltjes inequalities every
    measure with the same moments of degree ``<= 2m`` satisfies
    ``sigma((x, inf)) <= mu((x, inf)) <= sigma([x, inf))``.

    Returns
    -------
    lower, upper : float

    Examples
    --------
    Two eigenvalues, 0 and 1, with equal weight; one Lanczos step (``alpha = 0.5``,
    residual ``0.5``) sees only their mean, the Radau rule through ``x`` sees more:

    >>> lo, hi = radau_bounds(np.array([0.5]), np.array([0.5]), 1e-9)
    >>> round(lo, 6), round(hi, 6)          # the mass at 0 may lie just above 1e-9
    (0.5, 1.0)
    >>> lo, hi = radau_bounds(np.array([0.5]), np.array([0.5]), 0.5)
    >>> round(lo, 6), round(hi, 6)          # mean 0.5: all mass could sit at 0.5
    (0.0, 1.0)
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    m = alpha.size
    b_last = float(beta[m - 1]) if beta.size >= m else 0.0
    theta, S = scipy.linalg.eigh_tridiagonal(alpha, beta[: m - 1]) if m > 1 else (
        alpha.copy(), np.ones((1, 1)))
    if b_last == 0.0 or not np.isfinite(b_last):
        # invariant Krylov space: the Gauss rule is the probe's measure itself
        w = S[0] ** 2
        return float(w[theta > x].sum()), float(w[theta >= x].sum())
    # d_m of (T_m - x I) d = e_m, from the eigen-decomposition (stable for any x)
    denom = theta - x
    tiny = np.finfo(np.float64).tiny
    denom = np.where(np.abs(denom) < tiny, tiny, denom)
    d_m = float(np.sum(S[m - 1] ** 2 / denom))
    a_ext = x + b_last * b_last * d_m
    if not np.isfinite(a_ext):     # x is a Gauss node: it is its own canonical rule
        w = S[0] ** 2
        return float(w[theta > x].sum()), float(w[theta >= x].sum())
    nodes, V = scipy.linalg.eigh_tridiagonal(np.r_[alpha, a_ext], beta[:m])
    w = V[0] ** 2
    j = int(np.argmin(np.abs(nodes - x)))
    above = nodes > x
    above[j] = False
    lower = float(w[above].sum())
    return lower, lower + float(w[j])


#: Safety factor on the backward error ``m sqrt(n) eps |A|`` of the Lanczos recurrence.
LANCZOS_ERROR_FACTOR = 4.0


def _widened_bounds(alpha, beta, tau, delta):
    """Bounds on ``mu((tau, inf))`` valid for every measure within `delta` of the computed one:
    the lower one at ``tau + delta``, the upper one at ``tau - delta`` (all the mass when that
    is not positive)."""
    lower = radau_bounds(alpha, beta, tau + delta)[0]
    upper = radau_bounds(alpha, beta, tau - delta)[1] if tau > delta else 1.0
    return lower, upper


def slq_rank(op, *, rtol=None, atol=None, rng=None, n_steps=50, n_probes=100,
             probes="rademacher", reorthogonalize=True, block_size=None, floor=1e-6,
             max_matvecs=None, backend=None):
    r"""Eigenvalue count ``#{|lambda| > threshold}`` by stochastic Lanczos quadrature.

    Called through :func:`lmatrank.estimate_rank` with ``method="slq"``.

    Parameters
    ----------
    op : CountingOperator
        Symmetric operator (PSD or indefinite).
    rtol, atol : float, optional
        Count ``|lambda| > max(atol, rtol * |lambda|_max)`` with ``|lambda|_max``
        the largest Ritz value magnitude; neither: numpy's default
        ``n eps |lambda|_max`` (raised to the operator's product noise), see
        :func:`lmatrank.count_threshold`.
    rng : seed or Generator, optional
        Probe vectors.
    n_steps : int
        Lanczos steps per probe (products per probe; capped at ``n``). Default 50.
        The quadrature resolves ``|lambda|`` down to about
        ``|lambda|_max (pi / (2 n_steps))^2`` (PSD) or ``|lambda|_max pi / (2 n_steps)``
        (indefinite) from 0.
    n_probes : int
        Number of probes (>= 2: the interval needs a sampling error). Default 100.
    probes : {"rademacher", "gaussian"}
        Probe distribution (normalised, ``E[v v^T] = I / n``).
    reorthogonalize : bool
        Full blocked reorthogonalisation (default True; without it the
        quadrature degrades once Ritz values converge).
    block_size : int, optional
        Probes per block (default: as many as fit in 256 MiB of basis storage).
    floor : float
        Smallest threshold, relative to ``|lambda|_max``, the diagnostic gap rule
        (``info["gap_threshold"]``) looks at.
    max_matvecs : int, optional
        Budget; fewer probes when it binds (a wider interval); ``lmatrank.BudgetError``,
        before any product, when it cannot pay for two probes.
    backend : {None, "numpy", "numba", "cupy"} or backend object
        Where the products, probe blocks and Lanczos bases live (None: host
        numpy for host input, the CuPy backend for input on a CUDA device);
        see :func:`~lmatrank.spectral.chebyshev_rank`.

    Returns
    -------
    RankEstimate
        ``interval``: the Gauss–Radau bounds averaged over probes, widened by their
        sampling error; ``converged`` when it is at most ``max(4, 2%)`` wide (else a
        ConvergenceWarning names the ``n_steps``/``n_probes`` or method that would
        resolve it). ``estimate``/``stderr``: the Gauss count at
        ``max(threshold, resolution)`` (eigenvalues the quadrature cannot separate
        from 0 are not counted) and its standard error over probes. ``info``:
        ``n_positive``, ``n_negative``, ``count_half_threshold``,
        ``count_double_threshold``, ``ritz_values``/``weights`` (per probe),
        ``gap_threshold`` and ``gap`` (a diagnostic gap rule, never the threshold),
        ``threshold_source``, ``n_probes``, ``n_steps``.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> A = np.diag(np.r_[np.linspace(1.0, 5.0, 25), -np.linspace(1.0, 2.0, 10), np.zeros(65)])
    >>> est = lmatrank.estimate_rank(A, method="slq", rng=0, rtol=1e-3)
    >>> lo, hi = est.interval
    >>> bool(lo <= 35 <= hi)
    True
    """
    n_steps = check_int("n_steps", n_steps)
    n_probes = check_int("n_probes", n_probes)
    if n_probes < MIN_PROBES:
        raise ValueError(f"n_probes must be >= {MIN_PROBES} (a standard error needs two "
                         f"probes), got {n_probes}")
    probes = check_choice("probes", probes, ("gaussian", "rademacher"))
    reorthogonalize = check_bool("reorthogonalize", reorthogonalize)
    block_size = check_int("block_size", block_size, allow_none=True)
    max_matvecs = check_int("max_matvecs", max_matvecs, allow_none=True)
    if isinstance(floor, (bool, np.bool_)) or not isinstance(floor, (int, float, np.floating)):
        raise TypeError(f"floor must be a real number, got {type(floor).__name__}")
    if not 0 < floor < 0.5:
        raise ValueError(f"floor must be a number in (0, 0.5), got {floor!r}")
    n = op.n
    m = min(n_steps, n)
    check_budget("slq", max_matvecs, op.matvecs, MIN_PROBES * m,
                 f"{MIN_PROBES} probes of {m} Lanczos steps")
    arrays = spectral_arrays(op, backend)
    gen = np.random.default_rng(rng)
    used = budget_probes(max_matvecs, op.matvecs, m, n_probes)
    if block_size is None:
        block_size = max(1, min(used, _BLOCK_BYTES // (8 * n * m))) if reorthogonalize else used
    thetas, weights, tridiagonals = [], [], []
    for start in range(0, used, block_size):
        count = min(block_size, used - start)
        V = unit_probes(gen, n, count, probes, dtype=op.dtype)
        res = batched_lanczos(arrays.apply, V, m, reorthogonalize=reorthogonalize,
                              dtype=op.dtype, xp=arrays.xp)
        for lidx in range(count):
            theta, S = res.ritz(lidx)
            k = int(res.steps[lidx])
            thetas.append(theta)
            weights.append(S[0, :] ** 2)
            tridiagonals.append((res.alpha[lidx, :k].copy(), res.beta[lidx, :k].copy(),
                                 bool(k < m)))
    # pad to a rectangle (probes that broke down early have fewer nodes, weight 0)
    width = max(len(t) for t in thetas)
    Theta = np.zeros((used, width))
    Wts = np.zeros((used, width))
    for lidx, (t, w) in enumerate(zip(thetas, weights)):
        Theta[lidx, : len(t)] = t
        Wts[lidx, : len(w)] = w
    scale = float(np.abs(Theta).max())
    info = dict(n_steps=m, n_probes=used, probes=probes, reorthogonalize=bool(reorthogonalize),
                ritz_values=Theta, weights=Wts, lambda_abs_max=scale)
    if scale == 0.0:
        tau, source = contract_threshold(op, 0.0, rtol=rtol, atol=atol)
        info.update(reason="all Ritz values are zero: the operator is zero",
                    threshold_source=source)
        return RankEstimate(rank=0, estimate=0.0, stderr=0.0, threshold=tau,
                            matvecs=op.matvecs, method="slq", converged=True, info=info,
                            resolution=0.0, interval=(0, 0))

    def per_probe(eps):
        pos = n * np.sum(Wts * (Theta > eps), axis=1)
        neg = n * np.sum(Wts * (Theta < -eps), axis=1)
        return pos, neg

    def mean_count(eps_values):
        return np.array([sum(x.mean() for x in per_probe(e)) for e in np.atleast_1d(eps_values)])

    tau, source = contract_threshold(op, scale, rtol=rtol, atol=atol)
    # outer bounds of the spectrum from the extreme Ritz pairs of every probe
    lam_hi, lam_lo = 0.0, 0.0
    for (alpha, beta, broke), theta in zip(tridiagonals, thetas):
        k = alpha.size
        _, S = (scipy.linalg.eigh_tridiagonal(alpha, beta[: k - 1]) if k > 1
                else (alpha, np.ones((1, 1))))
        resid = 0.0 if broke else np.abs(beta[k - 1] * S[-1, :])
        lam_hi = max(lam_hi, float(np.max(theta + resid)))
        lam_lo = min(lam_lo, float(np.min(theta - resid)))
    # the negative side is bounded whenever the outer bound allows eigenvalues below -tau;
    # the resolution is judged from the Ritz values (an inner bound: a clearly negative one
    # proves a negative eigenvalue)
    indefinite = lam_lo < -tau
    ritz_min = float(Theta[Wts > 0].min()) if np.any(Wts > 0) else 0.0
    clearly_negative = ritz_min < -math.sqrt(np.finfo(op.dtype).eps) * scale
    resolution = filter_resolution(2 * m, ritz_min if clearly_negative else 0.0, lam_hi)
    point = max(tau, resolution)
    pos, neg = per_probe(point)
    samples = pos + neg
    estimate = float(samples.mean())
    stderr = float(samples.std(ddof=1) / math.sqrt(used))
    # Chebyshev-Markov-Stieltjes bounds per probe, at +tau (and -tau when indefinite). The
    # computed Lanczos matrix is exact for a nearby matrix A + E (Paige), |E| of order
    # m sqrt(n) eps |A|: the bounds hold for A at tau widened by that backward error (with a
    # safety factor: at 1x a trained network's Hessian, 33 eigenvalues within 1e-11 of a
    # 1e-12 threshold, still gave a lower bound above the truth)
    delta = LANCZOS_ERROR_FACTOR * m * math.sqrt(n) * float(np.finfo(op.dtype).eps) * lam_hi
    bounds = np.zeros((used, 2))
    for lidx, (alpha, beta, broke) in enumerate(tridiagonals):
        b = beta.copy()
        if broke:
            b[-1] = 0.0
        bounds[lidx] = _widened_bounds(alpha, b, tau, delta)
        if indefinite:
            # mu((-inf, -tau)) for A is mu((tau, inf)) for -A
            bounds[lidx] += _widened_bounds(-alpha, b, tau, delta)
        bounds[lidx, 1] = min(bounds[lidx, 1], 1.0)
    bounds *= n
    z = sampling_z(used)
    se = bounds.std(axis=0, ddof=1) / math.sqrt(used)
    slack = 1e-9 * n + 1e-6       # rounding of the quadrature weights
    lo = bounds[:, 0].mean() - z * se[0] - slack
    hi = bounds[:, 1].mean() + z * se[1] + slack
    info.update(per_probe=samples, per_probe_bounds=bounds, n_positive=float(pos.mean()),
                n_negative=float(neg.mean()),
                count_half_threshold=float(mean_count(tau / 2)[0]),
                count_double_threshold=float(mean_count(2 * tau)[0]),
                threshold_source=source, point_threshold=point, lambda_max=lam_hi,
                lambda_min=lam_lo, indefinite=bool(clearly_negative),
                resolution=resolution, bracket_z=z)
    gap_eps, gap = plateau_threshold(mean_count, scale, floor=floor)
    info.update(gap_threshold=gap_eps, gap=gap)
    if used < n_probes:
        info["budget"] = f"max_matvecs allowed {used} of {n_probes} probes"
    sampling = z * float(se.sum())
    fix = fix_message(param="n_steps", value=m,
                      needed=degree_for(resolution, m, tau, n) if resolution > tau else None,
                      sampling=sampling, limit=converged_width(estimate), n_probes=used)
    return bracketed_result(op, method="slq", estimate=estimate, stderr=stderr, threshold=tau,
                            resolution=resolution, bracket=(lo, hi, True),
                            info=info, fix=fix)
