"""SLQ, Chebyshev and KPM follow the public contract: the threshold is the library's rule,
the interval holds the true count, ``converged`` only when the interval is narrow.

One fast test per failure class seen on real matrices and hostile input, and coverage
against ``eigvalsh`` on gapped and gap-free spectra at several thresholds.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

import lmatrank
from lmatrank._result import count_threshold
from lmatrank.spectral._common import (converged_width, filter_resolution, sampling_z,
                                       width_limit)
from lmatrank.spectral._slq import radau_bounds

SPECTRAL = ["slq", "chebyshev", "kpm"]
# small settings: the count bracket's linear programs grow with the number of moments
SMALL = {"slq": dict(n_steps=25, n_probes=40), "chebyshev": dict(degree=30, n_probes=60),
         "kpm": dict(degree=20, n_probes=60)}


def _rotated(lam, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((lam.size, lam.size)))
    A = (U * lam) @ U.T
    return 0.5 * (A + A.T)


def _path_laplacian(n):
    main = np.r_[1.0, 2.0 * np.ones(n - 2), 1.0]
    return sp.diags([main, -np.ones(n - 1), -np.ones(n - 1)], [0, 1, -1]).toarray()


def _truth(A, threshold):
    return int(np.sum(np.abs(np.linalg.eigvalsh(A)) > threshold))


def _run(A, method, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = lmatrank.estimate_rank(A, method=method, rng=0, **{**SMALL[method], **options})
    conv_warnings = [w for w in caught if issubclass(w.category, lmatrank.ConvergenceWarning)]
    return est, conv_warnings


def _check_contract(est, truth, warned):
    lo, hi = est.interval
    assert lo <= truth <= hi, (est, truth)
    assert lo <= est.rank <= hi
    if est.converged:
        # within the contract's max(4, 2%), and narrow enough that the rank is right
        assert hi - lo <= min(width_limit(est.rank), converged_width(est.rank)) and not warned
        assert abs(est.rank - truth) <= max(1, 0.005 * truth)
    else:
        assert len(warned) == 1 and "method='langevin', 'sketch' or 'exact'" in \
            str(warned[0].message)


# ----------------------------------------------------------------------------- slq, path
def test_slq_path_laplacian_is_not_counted_full_rank():
    """Lanczos nodes never come near the single zero eigenvalue of a path Laplacian; the
    Gauss-Radau bounds at the threshold still place it."""
    A = _path_laplacian(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
        est = lmatrank.estimate_rank(A, method="slq", rng=0)
    lo, hi = est.interval
    assert lo <= 99 <= hi
    assert not est.converged or est.rank == 99
    assert not (est.rank == 100 and est.stderr == 0.0 and est.converged)


@pytest.mark.parametrize("method", SPECTRAL)
def test_many_probes_converge_on_a_resolved_gap(method):
    A = _rotated(np.r_[np.linspace(0.5, 1.0, 20), np.zeros(40)], 13)
    est, warned = _run(A, method, rtol=0.1, n_probes=1500)
    _check_contract(est, 20, warned)
    assert est.converged and est.rank == 20


@pytest.mark.parametrize("method", SPECTRAL)
def test_singular_matrix_is_never_full_rank_with_zero_error(method):
    lam = np.r_[np.linspace(0.5, 1.0, 30), np.zeros(50)]
    est, warned = _run(_rotated(lam), method)
    _check_contract(est, 30, warned)
    assert est.interval[0] <= 30          # the 50 zeros are not certified as nonzero
    assert est.rank < 80 or not est.converged


# ----------------------------------------------------------------------------- threshold rule
@pytest.mark.parametrize("method", SPECTRAL)
def test_threshold_is_the_contract_rule_not_the_gap_rule(method):
    """Eigenvalues spread over [1e-4, 1] with zeros: the old gap rules picked ~0.5
    |lambda|max and counted a handful; the contract counts at numpy's default."""
    lam = np.r_[np.geomspace(1e-4, 1.0, 40), np.zeros(40)]
    A = _rotated(lam, 1)
    est, warned = _run(A, method)
    ref, source = count_threshold(est.info["lambda_abs_max"], 80, "float64")
    assert est.threshold == ref and est.info["threshold_source"] == source
    gap = est.info["gap_threshold"]
    assert gap > 100 * est.threshold           # the gap rule is a diagnostic, not the answer
    _check_contract(est, _truth(A, est.threshold), warned)


@pytest.mark.parametrize("method", SPECTRAL)
def test_noise_floor_raises_the_default_threshold(method):
    A = _rotated(np.r_[np.linspace(0.5, 1.0, 10), np.zeros(30)], 2)
    from lmatrank.operators import as_operator
    from lmatrank.spectral import chebyshev_rank, slq_rank
    from lmatrank.spectral._ubaru_saad import kpm_rank

    op = as_operator(A)
    op.noise_floor = 1e-3
    func = {"slq": slq_rank, "chebyshev": chebyshev_rank, "kpm": kpm_rank}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
        est = func(op, rng=0, **SMALL[method])
    assert est.threshold == 1e-3 and est.info["threshold_source"] == "product noise"
    assert est.interval[0] <= 10 <= est.interval[1]


# ----------------------------------------------------------------------------- scale
@pytest.mark.parametrize("method", SPECTRAL)
def test_extreme_scaling_changes_only_the_scaled_fields(method):
    lam = np.r_[np.linspace(0.25, 1.0, 12), np.zeros(48)]
    A = _rotated(lam, 3)
    A = A / 2.0 ** math.frexp(np.abs(A).max())[1]
    results = []
    for k in (0, -600, 600):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
            results.append(lmatrank.estimate_rank(np.ldexp(A, k), method=method, rng=4,
                                                  rtol=0.05, **SMALL[method]))
    ref = results[0]
    for k, est in zip((-600, 600), results[1:]):
        assert (est.rank, est.estimate, est.stderr, est.interval, est.converged) == \
            (ref.rank, ref.estimate, ref.stderr, ref.interval, ref.converged)
        assert est.threshold == math.ldexp(ref.threshold, k)
        assert est.resolution == math.ldexp(ref.resolution, k)
    assert ref.interval[0] <= 12 <= ref.interval[1]


@pytest.mark.parametrize("method", SPECTRAL)
@pytest.mark.parametrize("factor", [2.0 ** 20, 2.0 ** -20])
def test_moderate_scale_without_rescaling_is_finite(method, factor):
    """Inside the band estimate_rank leaves alone, the methods see the raw scale."""
    lam = factor * np.r_[np.linspace(0.5, 1.0, 12), np.zeros(28)]
    est, warned = _run(_rotated(lam, 5), method, rtol=0.1)
    assert np.isfinite(est.threshold) and est.threshold == pytest.approx(0.1 * factor, rel=1e-3)
    _check_contract(est, 12, warned)


# ----------------------------------------------------------------------------- degree 5
def test_chebyshev_degree_five_is_honest():
    lam = np.r_[np.linspace(0.3, 1.0, 12), np.zeros(48)]
    A = _rotated(lam, 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = lmatrank.estimate_rank(A, method="chebyshev", degree=5, rng=0)
    truth = _truth(A, est.threshold)
    lo, hi = est.interval
    assert lo <= truth <= hi
    assert not est.converged and any("degree=" in str(w.message) for w in caught)
    # a threshold the low degree resolves: converged and right
    with warnings.catch_warnings():
        warnings.simplefilter("error", lmatrank.ConvergenceWarning)
        ok = lmatrank.estimate_rank(A, method="chebyshev", degree=40, rtol=0.15, rng=0)
    assert ok.converged and ok.rank == 12


# ----------------------------------------------------------------------------- budget
@pytest.mark.parametrize("method", SPECTRAL)
@pytest.mark.parametrize("budget", [5, 40])
def test_budget_too_small_raises_before_any_product(method, budget):
    A = _rotated(np.r_[np.ones(12), np.zeros(48)], 7)
    calls = []
    op = LinearOperator(A.shape, matvec=lambda x: A @ x,
                                  matmat=lambda X: calls.append(X.shape[1]) or A @ X,
                                  dtype=A.dtype)
    with pytest.raises(lmatrank.BudgetError, match=f"max_matvecs={budget} is too small"):
        lmatrank.estimate_rank(op, method=method, max_matvecs=budget, rng=0)
    assert sum(calls) <= 3        # the symmetry probe only: the method spent nothing


@pytest.mark.parametrize("method", SPECTRAL)
def test_budget_binding_uses_fewer_probes_and_stays_honest(method):
    A = _rotated(np.r_[np.linspace(0.5, 1.0, 12), np.zeros(48)], 8)
    per = SMALL[method].get("degree") or SMALL[method]["n_steps"]
    budget = 3 + 60 + 3 * per
    est, warned = _run(A, method, rtol=0.1, max_matvecs=budget)
    assert est.matvecs <= budget and est.info["n_probes"] >= 2
    _check_contract(est, 12, warned)


# ----------------------------------------------------------------------------- n_probes
@pytest.mark.parametrize("method", SPECTRAL)
def test_one_probe_is_refused_and_two_give_a_finite_error(method):
    A = _rotated(np.r_[np.linspace(0.5, 1.0, 12), np.zeros(48)], 9)
    with pytest.raises(ValueError, match="n_probes must be >= 2"):
        lmatrank.estimate_rank(A, method=method, n_probes=1, rng=0)
    est, warned = _run(A, method, n_probes=2, rtol=0.1)
    assert np.isfinite(est.stderr) and np.isfinite(est.estimate)
    _check_contract(est, 12, warned)


# ----------------------------------------------------------------------------- coverage
SPECTRA = {
    "gapped": np.r_[np.linspace(0.2, 1.0, 25), np.zeros(55)],
    "graded": np.r_[np.geomspace(1e-7, 1.0, 30), np.zeros(50)],
    "no_gap": np.geomspace(1e-9, 1.0, 80),
    "indefinite": np.r_[np.linspace(0.3, 1.0, 15), -np.linspace(0.2, 0.8, 10), np.zeros(55)],
}


@pytest.mark.parametrize("method", SPECTRAL)
@pytest.mark.parametrize("kind", sorted(SPECTRA))
@pytest.mark.parametrize("rtol", [None, 1e-6, 1e-2])
def test_interval_holds_the_eigvalsh_count(method, kind, rtol):
    A = _rotated(SPECTRA[kind], 10)
    est, warned = _run(A, method, rtol=rtol)
    _check_contract(est, _truth(A, est.threshold), warned)


def test_a_resolved_gap_converges_without_a_warning():
    # eigenvectors on the coordinate axes: Rademacher probes have no sampling error, so
    # the bracket is the filters' alone (a resolved gap: exact)
    A = np.diag(SPECTRA["gapped"])
    for method in SPECTRAL:
        with warnings.catch_warnings():
            warnings.simplefilter("error", lmatrank.ConvergenceWarning)
            est = lmatrank.estimate_rank(A, method=method, rng=1, rtol=0.05)
        assert est.converged and est.rank == 25 and est.resolution <= est.threshold, method


# ----------------------------------------------------------------------------- building blocks
def test_radau_bounds_hold_for_random_measures():
    from lmatrank.spectral import batched_lanczos

    rng = np.random.default_rng(12)
    for trial in range(40):
        lam = np.r_[rng.uniform(-1.0, 1.0, 20), 10.0 ** rng.uniform(-8, 0, 30), np.zeros(30)]
        v = rng.standard_normal(lam.size)
        v /= np.linalg.norm(v)
        res = batched_lanczos(lambda X: lam[:, None] * X, v[:, None], int(rng.integers(2, 15)))
        k = int(res.steps[0])
        for x in (1e-12, 1e-4, 0.05, 0.5):
            lo, hi = radau_bounds(res.alpha[0, :k], res.beta[0, :k], x)
            true = float(np.sum(v ** 2 * (lam > x)))
            assert lo - 1e-10 <= true <= hi + 1e-10


def test_resolution_and_sampling_helpers():
    assert filter_resolution(100, 0.0, 1.0) < filter_resolution(50, 0.0, 1.0)
    assert filter_resolution(50, -1.0, 1.0) > filter_resolution(50, 0.0, 1.0)
    assert sampling_z(10 ** 6) == pytest.approx(3.0, abs=0.01)
    assert sampling_z(3) > sampling_z(30) > 3.0
