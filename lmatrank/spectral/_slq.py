r"""Stochastic Lanczos quadrature (SLQ) eigenvalue count (``method="slq"``).

For a unit probe ``v``, ``m`` Lanczos steps give a tridiagonal ``T_m`` with
Ritz values ``theta_k`` and weights ``tau_k^2 = (e_1^T y_k)^2``; the
``m``-point Gauss quadrature of the spectral measure of ``v`` gives

    n v^T h(A) v  ~  n sum_k tau_k^2 h(theta_k),

and the average over probes estimates ``tr h(A)``. With ``h`` the indicator of
``|lambda| > eps`` this is the numerical rank; the Ritz values and weights are
kept, so the count at any other threshold (``eps/2``, ``2 eps``, the plateau
rule) and the inertia cost no product. All probes share one block product per
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
"""

from __future__ import annotations

import numpy as np

from .._result import RankEstimate, rounded_rank
from ._arrays import spectral_arrays
from ._common import budget_probes, check_choice, check_int, unit_probes, user_threshold
from ._gap import plateau_threshold
from ._lanczos import batched_lanczos

__all__ = ["slq_rank"]

_BLOCK_BYTES = 256 * 2**20


def slq_rank(op, *, rtol=None, atol=None, rng=None, n_steps=50, n_probes=100,
             probes="rademacher", reorthogonalize=True, block_size=None, floor=1e-6,
             max_matvecs=None, backend=None):
    r"""Eigenvalue count ``#{|lambda| > eps}`` by stochastic Lanczos quadrature.

    Called through :func:`lmatrank.estimate_rank` with ``method="slq"``.

    Parameters
    ----------
    op : CountingOperator
        Symmetric operator (PSD or indefinite).
    rtol, atol : float, optional
        Count ``|lambda| > max(atol, rtol * |lambda|_max)`` with ``|lambda|_max``
        the largest Ritz value magnitude. Default: the scale-invariant plateau
        rule (:func:`~lmatrank.spectral.plateau_threshold`) on the quadrature
        count.
    rng : seed or Generator, optional
        Probe vectors.
    n_steps : int
        Lanczos steps per probe (products per probe; capped at ``n``). Default 50.
    n_probes : int
        Number of probes. Default 100.
    probes : {"rademacher", "gaussian"}
        Probe distribution (normalised, ``E[v v^T] = I / n``).
    reorthogonalize : bool
        Full blocked reorthogonalisation (default True; without it the
        quadrature degrades once Ritz values converge).
    block_size : int, optional
        Probes per block (default: as many as fit in 256 MiB of basis storage).
    floor : float
        Smallest threshold, relative to ``|lambda|_max``, the plateau rule looks at.
    max_matvecs : int, optional
        Budget; fewer probes (``converged=False``) when it binds; ``ValueError``
        when it cannot pay for one probe.
    backend : {None, "numpy", "numba", "cupy"} or backend object
        Where the products, probe blocks and Lanczos bases live (None: host
        numpy for host input, the CuPy backend for input on a CUDA device);
        see :func:`~lmatrank.spectral.chebyshev_rank`.

    Returns
    -------
    RankEstimate
        ``stderr``: standard deviation of per-probe counts over ``sqrt(n_probes)``.
        ``info``: ``n_positive``, ``n_negative``, ``count_half_threshold``,
        ``count_double_threshold``, ``ritz_values``/``weights`` (per probe),
        ``threshold_rule``, ``gap``, ``n_probes``, ``n_steps``.

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> A = np.diag(np.r_[np.linspace(1.0, 5.0, 25), -np.linspace(1.0, 2.0, 10), np.zeros(65)])
    >>> est = lmatrank.estimate_rank(A, method="slq", rng=0)
    >>> abs(est.estimate - 35) < 5 * est.stderr + 1
    True
    """
    n_steps = check_int("n_steps", n_steps)
    n_probes = check_int("n_probes", n_probes)
    probes = check_choice("probes", probes, ("gaussian", "rademacher"))
    if not isinstance(reorthogonalize, (bool, np.bool_)):
        raise ValueError(f"reorthogonalize must be True or False, got {reorthogonalize!r}")
    block_size = check_int("block_size", block_size, allow_none=True)
    max_matvecs = check_int("max_matvecs", max_matvecs, allow_none=True)
    if isinstance(floor, bool) or not (isinstance(floor, (int, float)) and 0 < floor < 0.5):
        raise ValueError(f"floor must be a number in (0, 0.5), got {floor!r}")
    arrays = spectral_arrays(op, backend)
    gen = np.random.default_rng(rng)
    n = op.n
    m = min(n_steps, n)
    used = budget_probes("slq", max_matvecs, op.matvecs, m, n_probes)
    if block_size is None:
        block_size = max(1, min(used, _BLOCK_BYTES // (8 * n * m))) if reorthogonalize else used
    thetas, weights = [], []
    for start in range(0, used, block_size):
        count = min(block_size, used - start)
        V = unit_probes(gen, n, count, probes, dtype=op.dtype)
        res = batched_lanczos(arrays.apply, V, m, reorthogonalize=reorthogonalize,
                              dtype=op.dtype, xp=arrays.xp)
        for lidx in range(count):
            theta, S = res.ritz(lidx)
            thetas.append(theta)
            weights.append(S[0, :] ** 2)
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
        info.update(reason="all Ritz values are zero: the operator is zero")
        return RankEstimate(rank=0, estimate=0.0, stderr=0.0, threshold=0.0,
                            matvecs=op.matvecs, method="slq", converged=True, info=info)

    def per_probe(eps):
        pos = n * np.sum(Wts * (Theta > eps), axis=1)
        neg = n * np.sum(Wts * (Theta < -eps), axis=1)
        return pos, neg

    def mean_count(eps_values):
        return np.array([sum(x.mean() for x in per_probe(e)) for e in np.atleast_1d(eps_values)])

    eps = user_threshold(rtol, atol, scale)
    if eps is not None:
        info["threshold_rule"] = "user (rtol/atol)"
    else:
        eps, gap = plateau_threshold(mean_count, scale, floor=floor)
        info.update(threshold_rule="plateau (scale-invariant)", gap=gap)
    pos, neg = per_probe(eps)
    samples = pos + neg
    estimate = float(samples.mean())
    stderr = float(samples.std(ddof=1) / np.sqrt(used)) if used > 1 else np.inf
    info.update(per_probe=samples, n_positive=float(pos.mean()), n_negative=float(neg.mean()),
                count_half_threshold=float(mean_count(eps / 2)[0]),
                count_double_threshold=float(mean_count(2 * eps)[0]))
    converged = used == n_probes
    if not converged:
        info["reason"] = f"max_matvecs allowed {used} of {n_probes} probes"
    return RankEstimate(rank=rounded_rank(estimate, op.n), estimate=estimate, stderr=stderr,
                        threshold=float(eps), matvecs=op.matvecs, method="slq",
                        converged=converged, info=info)
