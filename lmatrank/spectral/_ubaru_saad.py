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

``faithful=True`` reproduces the published code (``KPM_DOS_and_Rank.m``, as
run for the AAAI 2024 comparison, see ``notes/ubaru_saad.md``): degree 50,
300 normalised Gaussian probes, a 100-point KPM DOS with Jackson damping,
the threshold from the published ``find_gap`` rule, Lanczos sigma damping for
the count, interval ``[0 - 1e-5, lambda_max + 1e-5]``. Its threshold is a grid
artefact when ``lambda_max >> 1`` (see :mod:`lmatrank.spectral._gap`); the
default (``faithful=False``) uses the scale-invariant plateau rule and
Rademacher probes (lower variance, same expectation) with otherwise the same
settings.

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

import warnings

import numpy as np

from .._errors import ConvergenceWarning
from .._result import RankEstimate, rounded_rank
from ._chebyshev import chebyshev_moments, count_from_moments, kpm_dos
from ._arrays import spectral_arrays
from ._common import (budget_probes, check_choice, check_int, spectrum_interval, unit_probes,
                      user_threshold)
from ._gap import find_gap, plateau_threshold

__all__ = ["chebyshev_rank", "kpm_rank"]

_PUBLISHED = dict(degree=50, n_probes=300, n_points=100, damping="sigma", gap_rule="published",
                  probes="gaussian")
_DEFAULT = dict(degree=50, n_probes=300, n_points=100, damping="sigma", gap_rule="plateau",
                probes="rademacher")
#: memory for the three recurrence blocks when block_size is automatic
_BLOCK_BYTES = 256 * 2**20


def _intervals(eps, lmin, lmax):
    """Eigenvalue intervals counted at threshold eps (positive part, negative part)."""
    pos = [(eps, lmax)] if eps < lmax else []
    neg = [(lmin, -eps)] if lmin < -eps else []
    return pos, neg


def _resolution_floor(degree, lmin, lmax, scale):
    """Relative threshold below which the degree-m filter cannot separate eigenvalues from 0."""
    c, h = 0.5 * (lmax + lmin), 0.5 * (lmax - lmin)
    t0 = np.clip((0.0 - c) / h, -1.0, 1.0)
    step = 2 * np.pi / (degree + 1)
    dt = step * np.sqrt(max(1.0 - t0 * t0, 0.0)) + 0.5 * step * step
    return float(np.clip(h * dt / scale, 1e-12, 0.05))


def _ubaru_saad(op, *, name, rtol, atol, rng, faithful, degree, n_probes, n_points, damping,
                gap_rule, probes, doubling, spectrum, lanczos_steps, block_size, max_matvecs,
                backend):
    if not isinstance(faithful, (bool, np.bool_)):
        raise ValueError(f"faithful must be True or False, got {faithful!r}")
    base = _PUBLISHED if faithful else _DEFAULT
    degree = check_int("degree", base["degree"] if degree is None else degree)
    n_probes = check_int("n_probes", base["n_probes"] if n_probes is None else n_probes)
    n_points = check_int("n_points", base["n_points"] if n_points is None else n_points, minimum=2)
    damping = check_choice("damping", base["damping"] if damping is None else damping,
                           ("sigma", "jackson", "none"))
    gap_rule = check_choice("gap_rule", base["gap_rule"] if gap_rule is None else gap_rule,
                            ("published", "plateau"))
    probes = check_choice("probes", base["probes"] if probes is None else probes,
                          ("gaussian", "rademacher"))
    spectrum = check_choice("spectrum", spectrum, ("auto", "psd", "indefinite"))
    if not isinstance(doubling, (bool, np.bool_)):
        raise ValueError(f"doubling must be True or False, got {doubling!r}")
    lanczos_steps = check_int("lanczos_steps", lanczos_steps, allow_none=True)
    block_size = check_int("block_size", block_size, allow_none=True)
    max_matvecs = check_int("max_matvecs", max_matvecs, allow_none=True)
    arrays = spectral_arrays(op, backend)
    gen = np.random.default_rng(rng)
    n = op.n
    steps_planned = lanczos_steps or int(min(n, max(30, 2 * np.sqrt(n)), 80))
    budget_probes(name, max_matvecs, op.matvecs + steps_planned, degree, 1)

    bounds = spectrum_interval(op, gen, lanczos_steps=lanczos_steps, spectrum=spectrum,
                               pad_abs=1e-5 if faithful else None, arrays=arrays)
    lmin, lmax, scale = bounds["lmin"], bounds["lmax"], bounds["scale"]
    info = dict(faithful=bool(faithful), degree=degree, damping=damping, gap_rule=gap_rule,
                probes=probes, doubling=bool(doubling), lambda_min=lmin, lambda_max=lmax,
                lambda_abs_max=scale, indefinite=bounds["indefinite"], lanczos=bounds["lanczos"],
                lanczos_matvecs=bounds["lanczos"]["steps"])
    if scale == 0.0:
        info.update(reason="Lanczos found the operator to be zero")
        return RankEstimate(rank=0, estimate=0.0, stderr=0.0, threshold=0.0,
                            matvecs=op.matvecs, method=name, converged=True, info=info)

    used_probes = budget_probes(name, max_matvecs, op.matvecs, degree, n_probes)
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

    def per_probe(eps):
        pos, neg = _intervals(eps, lmin, lmax)
        p = count_from_moments(Y, n, pos, center=center, half_width=half_width, damping=damping)
        q = count_from_moments(Y, n, neg, center=center, half_width=half_width, damping=damping)
        return p, q

    def mean_count(eps_values):
        return np.array([sum(x.mean() for x in per_probe(e)) for e in np.atleast_1d(eps_values)])

    xx, yy = kpm_dos(Y, lmin=lmin, lmax=lmax, n_points=n_points, damping="jackson")
    info["dos"] = dict(eigenvalues=xx, density=yy)
    eps = user_threshold(rtol, atol, scale)
    floor = _resolution_floor(Y.shape[0] - 1, lmin, lmax, scale)
    unresolved = None
    if eps is not None:
        info["threshold_rule"] = "user (rtol/atol)"
        if eps < floor * scale:
            unresolved = (f"threshold {eps:.3g} is below the resolution {floor * scale:.3g} of a "
                          f"degree-{Y.shape[0] - 1} Chebyshev filter: eigenvalues between 0 and "
                          "it are not separated (raise degree, or use method='sketch'/'langevin')")
    elif gap_rule == "published" and not bounds["indefinite"]:
        eps, gap_info = find_gap(xx, yy)
        info.update(threshold_rule="published find_gap", gap=gap_info)
    else:
        eps, gap_info = plateau_threshold(mean_count, scale, floor=floor)
        rule = "plateau (scale-invariant)"
        if gap_rule == "published":
            rule += "; published find_gap assumes PSD input and was not used"
        info.update(threshold_rule=rule, gap=gap_info)

    pos, neg = per_probe(eps)
    samples = pos + neg
    estimate = float(samples.mean())
    stderr = float(samples.std(ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else np.inf
    info.update(n_probes=used_probes, per_probe=samples,
                n_positive=float(pos.mean()), n_negative=float(neg.mean()),
                count_half_threshold=float(mean_count(eps / 2)[0]),
                count_double_threshold=float(mean_count(2 * eps)[0]))
    info["resolution"] = floor * scale
    converged = used_probes == n_probes and unresolved is None
    if used_probes < n_probes:
        info["reason"] = f"max_matvecs allowed {used_probes} of {n_probes} probes"
    if unresolved is not None:
        info["reason"] = unresolved
        warnings.warn(unresolved, ConvergenceWarning, stacklevel=4)
    return RankEstimate(rank=rounded_rank(estimate, op.n), estimate=estimate, stderr=stderr,
                        threshold=float(eps), matvecs=op.matvecs, method=name,
                        converged=converged, info=info)


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
    >>> import numpy as np, lmatrank
    >>> rng = np.random.default_rng(0)
    >>> U, _ = np.linalg.qr(rng.standard_normal((200, 40)))
    >>> A = U @ np.diag(np.linspace(1.0, 10.0, 40)) @ U.T        # rank 40
    >>> est = lmatrank.estimate_rank(A, method="chebyshev", rng=1)
    >>> abs(est.estimate - 40) < 5 * est.stderr + 1
    True
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
    >>> est = lmatrank.estimate_rank(A, method="kpm", rng=0)
    >>> abs(est.estimate - 30) < 5 * est.stderr + 1, sorted(est.info["dos"])
    (True, ['density', 'eigenvalues'])
    """
    if faithful and doubling:
        doubling = False  # the published code has no doubling
    return _ubaru_saad(op, name="kpm", rtol=rtol, atol=atol, rng=rng, faithful=faithful,
                       degree=degree, n_probes=n_probes, n_points=n_points, damping=damping,
                       gap_rule=gap_rule, probes=probes, doubling=doubling, spectrum=spectrum,
                       lanczos_steps=lanczos_steps, block_size=block_size,
                       max_matvecs=max_matvecs, backend=backend)
