r"""Ubaru–Saad numerical rank by a Chebyshev step filter and Hutchinson probes.

``method="chebyshev"`` and ``method="kpm"`` of :func:`lmatrank.estimate_rank`.

The count of eigenvalues with ``|lambda| > eps`` is ``tr h(A)`` for ``h`` the
indicator of ``[eps, lmax]`` (and of ``[lmin, -eps]`` for indefinite input).
``h`` is expanded in damped Chebyshev polynomials on the Lanczos interval
``[lmin, lmax]``, and the trace is estimated with unit probes:
``r ~ n mean_l sum_k g_k gamma_k v_l^T T_k(B) v_l``. The moments
``v_l^T T_k(B) v_l`` are computed once (one block product per degree for all
probes) and serve the KPM density of states, the threshold rule, the count,
the inertia and the counts at ``eps/2`` and ``2 eps`` at no further product.

The threshold is the library's rule (:func:`lmatrank.count_threshold`, with
``|lambda|_max`` from Lanczos). The gap rules of the published code are kept as
diagnostics (``info["gap_threshold"]``, ``info["gap"]``), never as the threshold of
the default result. The interval comes from the measured moments: the Hutchinson
estimates of ``tr T_k(B)`` and their standard errors over probes bound the count by
two linear programs (:func:`~lmatrank.spectral._bracket.count_bracket`); a degree-``m``
polynomial cannot separate 0 from eigenvalues much below ``|lambda|_max / m^2``, so
near a cluster of eigenvalues at 0 the bracket is wide and ``converged`` is False.
The point estimate is the bracket's midpoint when it is narrow, otherwise the
damped step filter at ``max(threshold, resolution)`` clipped into the interval.

``faithful=True`` reproduces the published code (``KPM_DOS_and_Rank.m``, as
run for the AAAI 2024 comparison): degree 50, 300 normalised Gaussian probes, a
100-point KPM DOS with Jackson damping, the threshold from the published
``find_gap`` rule, Lanczos sigma damping for the count, interval
``[0 - 1e-5, lambda_max + 1e-5]``. In that mode (and only without ``rtol``/``atol``)
``threshold`` is the gap rule's threshold, ``info["threshold_source"]`` says so
(``"published find_gap (faithful=True)"``), ``info["contract_threshold"]`` gives the
library's rule, and the interval and ``converged`` refer to the gap threshold. That
threshold is a grid artefact when ``lambda_max >> 1`` (see
:mod:`lmatrank.spectral._gap`).

The probes are drawn on the host with the numpy Generator (so the result does
not depend on where the products run) and moved to the backend's array
namespace once per block; the Chebyshev recurrence runs there (CuPy for device
inputs or ``backend="cupy"``) and only the moments come back.

References
----------
.. [1] S. Ubaru, Y. Saad, "Fast methods for estimating the numerical rank of
   large matrices", ICML 2016.
.. [2] S. Ubaru, Y. Saad, A.-K. Seghouane, "Fast estimation of approximate
   matrix ranks using spectral densities", Neural Computation 29(5), 2017.
.. [3] L. Lin, Y. Saad, C. Yang, "Approximating spectral densities of large
   matrices", SIAM Review 58(1), 2016.
"""

from __future__ import annotations

import numpy as np

from .._result import RankEstimate
from ._arrays import spectral_arrays
from ._bracket import count_bracket
from ._chebyshev import chebyshev_moments, count_from_moments, kpm_dos
from ._common import (MIN_PROBES, bracketed_result, budget_probes, check_bool, check_budget,
                      check_choice, check_int, contract_threshold, degree_for, filter_resolution,
                      fix_message, sampling_z, spectrum_interval, unit_probes,
                      converged_width)
from ._gap import find_gap, plateau_threshold

__all__ = ["chebyshev_rank", "kpm_rank"]

_PUBLISHED = dict(degree=50, n_probes=300, n_points=100, damping="sigma", gap_rule="published",
                  probes="gaussian")
_DEFAULT = dict(degree=50, n_probes=300, n_points=100, damping="sigma", gap_rule="plateau",
                probes="rademacher")
#: Chebyshev moments passed to the count bracket (see _ubaru_saad)
_BRACKET_DEGREE = 40
#: memory for the three recurrence blocks when block_size is automatic
_BLOCK_BYTES = 256 * 2**20


def _intervals(eps, lmin, lmax):
    """Eigenvalue intervals counted at threshold eps (positive part, negative part)."""
    pos = [(eps, lmax)] if eps < lmax else []
    neg = [(lmin, -eps)] if lmin < -eps else []
    return pos, neg


def _chebyshev_filters(center, half_width, degree):
    """``phi_k(lambda) = T_k((lambda - c) / h)``, ``k = 1..degree``: what one eigenvalue
    contributes to the measured moments (the Chebyshev basis, well conditioned)."""

    def filters(lam):
        t = np.clip((np.asarray(lam, dtype=np.float64) - center) / half_width, -1.0, 1.0)
        return np.polynomial.chebyshev.chebvander(t, degree)[:, 1:].T

    return filters


def _ubaru_saad(op, *, name, rtol, atol, rng, faithful, degree, n_probes, n_points, damping,
                gap_rule, probes, doubling, spectrum, lanczos_steps, block_size, max_matvecs,
                backend):
    faithful = check_bool("faithful", faithful)
    base = _PUBLISHED if faithful else _DEFAULT
    degree = check_int("degree", base["degree"] if degree is None else degree)
    n_probes = check_int("n_probes", base["n_probes"] if n_probes is None else n_probes)
    if n_probes < MIN_PROBES:
        raise ValueError(f"n_probes must be >= {MIN_PROBES} (a standard error needs two "
                         f"probes), got {n_probes}")
    n_points = check_int("n_points", base["n_points"] if n_points is None else n_points, minimum=2)
    damping = check_choice("damping", base["damping"] if damping is None else damping,
                           ("sigma", "jackson", "none"))
    gap_rule = check_choice("gap_rule", base["gap_rule"] if gap_rule is None else gap_rule,
                            ("published", "plateau"))
    probes = check_choice("probes", base["probes"] if probes is None else probes,
                          ("gaussian", "rademacher"))
    spectrum = check_choice("spectrum", spectrum, ("auto", "psd", "indefinite"))
    doubling = check_bool("doubling", doubling)
    lanczos_steps = check_int("lanczos_steps", lanczos_steps, allow_none=True)
    block_size = check_int("block_size", block_size, allow_none=True)
    max_matvecs = check_int("max_matvecs", max_matvecs, allow_none=True)
    n = op.n
    steps_planned = min(n, lanczos_steps or int(min(n, max(30, 2 * np.sqrt(n)), 80)))
    check_budget(name, max_matvecs, op.matvecs, steps_planned + MIN_PROBES * degree,
                 f"{steps_planned} Lanczos steps and {MIN_PROBES} probes of degree {degree}")
    arrays = spectral_arrays(op, backend)
    gen = np.random.default_rng(rng)

    bounds = spectrum_interval(op, gen, lanczos_steps=lanczos_steps, spectrum=spectrum,
                               pad_abs=1e-5 if faithful else None, arrays=arrays)
    lmin, lmax, scale = bounds["lmin"], bounds["lmax"], bounds["scale"]
    info = dict(faithful=bool(faithful), degree=degree, damping=damping, gap_rule=gap_rule,
                probes=probes, doubling=bool(doubling), lambda_min=lmin, lambda_max=lmax,
                lambda_abs_max=scale, indefinite=bounds["indefinite"], lanczos=bounds["lanczos"],
                lanczos_matvecs=bounds["lanczos"]["steps"])
    if scale == 0.0:
        tau, source = contract_threshold(op, 0.0, rtol=rtol, atol=atol)
        info.update(reason="Lanczos found the operator to be zero", threshold_source=source)
        return RankEstimate(rank=0, estimate=0.0, stderr=0.0, threshold=tau,
                            matvecs=op.matvecs, method=name, converged=True, info=info,
                            resolution=0.0, interval=(0, 0))

    used_probes = budget_probes(max_matvecs, op.matvecs, degree, n_probes)
    if block_size is None:
        block_size = max(1, min(used_probes, _BLOCK_BYTES // (24 * n)))
    center, half_width = 0.5 * (lmax + lmin), 0.5 * (lmax - lmin)
    blocks = []
    for start in range(0, used_probes, block_size):
        count = min(block_size, used_probes - start)
        V = unit_probes(gen, n, count, probes, dtype=op.dtype)
        blocks.append(chebyshev_moments(arrays.apply, V, degree, center=center,
                                        half_width=half_width, doubling=doubling, xp=arrays.xp))
    Y = np.concatenate(blocks, axis=1)
    if not np.all(np.isfinite(Y)):
        raise ValueError("Chebyshev moments are not finite: the spectrum is not inside "
                         f"[{lmin:.6g}, {lmax:.6g}] (pass spectrum='indefinite' or a larger "
                         "lanczos_steps)")
    n_moments = Y.shape[0] - 1

    def per_probe(eps):
        pos, neg = _intervals(eps, lmin, lmax)
        p = count_from_moments(Y, n, pos, center=center, half_width=half_width, damping=damping)
        q = count_from_moments(Y, n, neg, center=center, half_width=half_width, damping=damping)
        return p, q

    def mean_count(eps_values):
        return np.array([sum(x.mean() for x in per_probe(e)) for e in np.atleast_1d(eps_values)])

    xx, yy = kpm_dos(Y, lmin=lmin, lmax=lmax, n_points=n_points, damping="jackson")
    info["dos"] = dict(eigenvalues=xx, density=yy)
    resolution = filter_resolution(n_moments, lmin, lmax)
    # the gap rule is a diagnostic (info["gap_threshold"]); the threshold is the contract's
    if gap_rule == "published" and not bounds["indefinite"]:
        gap_eps, gap_info = find_gap(xx, yy)
        rule = "published find_gap"
    else:
        floor = float(np.clip(resolution / scale, 1e-12, 0.05))
        gap_eps, gap_info = plateau_threshold(mean_count, scale, floor=floor)
        rule = "plateau (scale-invariant)"
        if gap_rule == "published":
            rule += "; published find_gap assumes PSD input and was not used"
    info.update(gap_threshold=gap_eps, gap=gap_info, gap_rule_used=rule)
    eps, source = contract_threshold(op, scale, rtol=rtol, atol=atol)
    if faithful and rtol is None and atol is None:
        # the published estimator counts above its gap threshold: report that threshold
        eps, source = gap_eps, "published find_gap (faithful=True)"
        info["contract_threshold"] = contract_threshold(op, scale, rtol=None, atol=None)[0]
    info["threshold_source"] = source
    point = eps if faithful else max(eps, resolution)
    pos, neg = per_probe(point)
    samples = pos + neg
    estimate = float(samples.mean())
    stderr = float(samples.std(ddof=1) / np.sqrt(len(samples)))
    info.update(n_probes=used_probes, per_probe=samples, point_threshold=point,
                n_positive=float(pos.mean()), n_negative=float(neg.mean()),
                count_half_threshold=float(mean_count(eps / 2)[0]),
                count_double_threshold=float(mean_count(2 * eps)[0]), resolution=resolution)
    if used_probes < n_probes:
        info["budget"] = f"max_matvecs allowed {used_probes} of {n_probes} probes"
    # bracket from the measured moments n v^T T_k(B) v (Hutchinson), k = 1..K: the linear
    # programs of count_bracket lose accuracy (and time) beyond about 40 Chebyshev moments
    # (measured: exact moments of degree 50-64 gave [0, n] where degree 40 gave a bound), so
    # the bracket uses the first _BRACKET_DEGREE of them
    K = min(n_moments, _BRACKET_DEGREE)
    moments = n * Y[1:K + 1].mean(axis=1)
    moment_se = n * Y[1:K + 1].std(axis=1, ddof=1) / np.sqrt(used_probes)
    z = sampling_z(used_probes)
    found = count_bracket(_chebyshev_filters(center, half_width, K), moments, moment_se,
                          tau=eps, n=n, lam_max=lmax, lam_min=min(lmin, 0.0), z=z)
    info.update(bracket=(found.lo, found.hi), bracket_solved=found.solved, bracket_z=z,
                bracket_degree=K, filter_resolution=resolution)
    # what the bracket separates (the point estimate's filter uses every moment)
    resolution = filter_resolution(K, lmin, lmax)
    info["resolution"] = resolution
    products = "degree" if not doubling else "degree (2 moments per product)"
    needed = None
    if resolution > eps:
        target = degree_for(resolution, K, eps, 100 * K)
        needed = int(np.ceil(target / 2)) if doubling else target
    sampling = 2 * z * float(np.sqrt(np.sum(moment_se ** 2)) / max(np.sqrt(n_moments), 1))
    if needed is not None and K < n_moments:
        needed = None       # more degree does not help the bracket (capped at K moments)
    fix = fix_message(param=products.split()[0], value=degree, needed=needed,
                      sampling=sampling, limit=converged_width(estimate), n_probes=used_probes)
    if resolution > eps and K < n_moments:
        fix = (f"the bracket uses {K} Chebyshev moments, which separate |lambda| >= "
               f"{resolution:.3g} from 0 (method='slq' with more n_steps resolves further); "
               + fix)
    return bracketed_result(op, method=name, estimate=estimate, stderr=stderr, threshold=eps,
                            resolution=resolution, bracket=(found.lo, found.hi, found.solved), info=info,
                            fix=fix, stacklevel=5)


def chebyshev_rank(op, *, rtol=None, atol=None, rng=None, faithful=False, degree=None,
                   n_probes=None, n_points=None, damping=None, gap_rule=None, probes=None,
                   doubling=False, spectrum="auto", lanczos_steps=None, block_size=None,
                   max_matvecs=None, backend=None):
    r"""Ubaru–Saad rank estimate: damped Chebyshev step filter + Hutchinson trace.

    Called through :func:`lmatrank.estimate_rank` with ``method="chebyshev"``.

    Parameters
    ----------
    op : CountingOperator
        Symmetric operator (PSD or indefinite).
    rtol, atol : float, optional
        Count ``|lambda| > max(atol, rtol * |lambda|_max)``. Default: the
        threshold rule `gap_rule` chooses.
    rng : seed or Generator, optional
        Probes and the Lanczos start vector.
    faithful : bool
        Published defaults (degree 50, 300 normalised Gaussian probes, 100 DOS
        points, ``find_gap``, sigma damping, interval ``[0 - 1e-5, lambda_max +
        1e-5]``). Default False: same degree/probes/damping with the
        scale-invariant plateau rule, Rademacher probes and a relative pad.
    degree : int
        Chebyshev degree ``m`` (products per probe). Default 50.
    n_probes : int
        Number of probes. Default 300.
    n_points : int
        ``N`` of the published KPM grid (``N + N/4`` points). Default 100.
    damping : {"sigma", "jackson", "none"}
        Damping of the step filter used for the count (the DOS always uses
        Jackson). Default "sigma".
    gap_rule : {"published", "plateau"}
        Threshold rule when neither `rtol` nor `atol` is given (see
        :mod:`lmatrank.spectral._gap`). For indefinite input the plateau rule
        is always used (the published rule assumes PSD input).
    probes : {"gaussian", "rademacher"}
        Probe distribution (both normalised to unit length / ``E[v v^T] = I/n``).
    doubling : bool
        KPM moment doubling: ``2 m`` moments from ``m`` products.
    spectrum : {"auto", "psd", "indefinite"}
        Interval choice: PSD uses ``[0 - pad, lambda_max + pad]``; indefinite
        the Lanczos outer bounds; auto decides from the smallest Ritz value.
    lanczos_steps : int, optional
        Lanczos steps for the bounds (default ``min(n, max(30, 2 sqrt(n)), 80)``).
    block_size : int, optional
        Probes per block product (default: all, within 256 MiB of work space).
    max_matvecs : int, optional
        Budget; fewer probes are used (``converged=False``) when it binds, and
        a budget that cannot pay for one probe raises ``ValueError``.
    backend : {None, "numpy", "numba", "cupy"} or backend object
        Where the products and the length-``n`` arrays (probe blocks, Lanczos
        vectors, Chebyshev recurrence) live. None: host numpy for host input,
        the CuPy backend for input on a CUDA device. A backend's array
        namespace ``xp`` is used when it has one (numpy otherwise); only the
        moments and Lanczos coefficients cross to the host. Results are
        identical in form (Python floats, host arrays in ``info``).

    Returns
    -------
    RankEstimate
        ``stderr`` is the standard deviation of the per-probe counts over
        ``sqrt(n_probes)``. ``info``: ``lambda_min``/``lambda_max`` (interval),
        ``threshold_rule``, ``gap`` (rule diagnostics), ``dos`` (KPM DOS),
        ``n_positive``/``n_negative`` (inertia), ``count_half_threshold``,
        ``count_double_threshold``, ``per_probe``, ``n_probes``.

    Examples
    --------
    A threshold inside a gap the filter resolves (eigenvectors on the axes, so that
    Rademacher probes carry no sampling error): the bracket closes.

    >>> import numpy as np, warnings, lmatrank
    >>> A = np.diag(np.r_[np.linspace(1.0, 10.0, 40), np.zeros(160)])      # rank 40
    >>> est = lmatrank.estimate_rank(A, method="chebyshev", rtol=0.05, rng=1)
    >>> est.rank, est.interval, est.converged
    (40, (40, 40), True)

    At numpy's default threshold (about ``1e-13 |lambda|_max``) no polynomial of
    degree 50 can tell the 160 zeros from eigenvalues just above it: a wide, honest
    bracket and a warning.

    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = lmatrank.estimate_rank(A, method="chebyshev", rng=1)
    >>> est.interval[0] <= 40 <= est.interval[1], est.converged, len(caught)
    (True, False, 1)
    """
    return _ubaru_saad(op, name="chebyshev", rtol=rtol, atol=atol, rng=rng, faithful=faithful,
                       degree=degree, n_probes=n_probes, n_points=n_points, damping=damping,
                       gap_rule=gap_rule, probes=probes, doubling=doubling, spectrum=spectrum,
                       lanczos_steps=lanczos_steps, block_size=block_size,
                       max_matvecs=max_matvecs, backend=backend)


def kpm_rank(op, *, rtol=None, atol=None, rng=None, faithful=False, degree=None, n_probes=None,
             n_points=None, damping="jackson", gap_rule=None, probes=None, doubling=True,
             spectrum="auto", lanczos_steps=None, block_size=None, max_matvecs=None,
             backend=None):
    r"""KPM variant of :func:`chebyshev_rank`: Jackson damping and moment doubling.

    Called through :func:`lmatrank.estimate_rank` with ``method="kpm"``. Same
    options as :func:`chebyshev_rank`; the defaults differ: ``damping="jackson"``
    (the KPM kernel, no negative densities) and ``doubling=True`` (``2 m``
    moments from ``m`` products, twice the resolution at the same cost). The
    density of states is returned in ``info["dos"]`` (``eigenvalues``,
    ``density``, on the published grid). ``backend`` chooses where the
    recurrence runs (see :func:`chebyshev_rank`).

    Examples
    --------
    >>> import numpy as np, lmatrank
    >>> A = np.diag(np.r_[np.linspace(1.0, 2.0, 30), np.zeros(120)])
    >>> est = lmatrank.estimate_rank(A, method="kpm", rtol=0.05, rng=0)
    >>> est.rank, est.interval, sorted(est.info["dos"])
    (30, (30, 30), ['density', 'eigenvalues'])
    """
    if faithful and doubling:
        doubling = False  # the published code has no doubling
    return _ubaru_saad(op, name="kpm", rtol=rtol, atol=atol, rng=rng, faithful=faithful,
                       degree=degree, n_probes=n_probes, n_points=n_points, damping=damping,
                       gap_rule=gap_rule, probes=probes, doubling=doubling, spectrum=spectrum,
                       lanczos_steps=lanczos_steps, block_size=block_size,
                       max_matvecs=max_matvecs, backend=backend)
