"""The registered spectral rank methods against exact eigvalsh counts.

Chebyshev/KPM: the expectation of the estimate is exactly ``tr psi(A)`` for the
damped polynomial filter ``psi`` the method used (reconstructed here from
``info``), so the test checks (1) the statistical part, |estimate - tr psi| <=
5 stderr, and (2) the deterministic filter error |tr psi - eigvalsh count| <
0.5 on spectra whose gaps exceed the filter's resolution. SLQ: spectra with few
distinct eigenvalues make Lanczos break down, so Gauss quadrature is exact and
only the 5-stderr statistical error remains. Sketch: exact on exactly low-rank input.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

import lmatrank
from lmatrank.spectral import chebyshev_series, damping_coefficients, step_coefficients

# unconverged results warn by design (tests/spectral/test_contract.py checks the warnings);
# here only the numbers are checked
pytestmark = pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")


def _spectral_matrix(lam, rng):
    n = len(lam)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (U * lam) @ U.T
    return 0.5 * (A + A.T)


def _forms(A):
    return {"dense": A, "sparse": sp.csr_array(A), "linop": aslinearoperator(A)}


PSD = np.r_[np.linspace(1.0, 10.0, 40), np.zeros(160)]                               # rank 40
INDEF = np.r_[np.linspace(3.0, 10.0, 30), -np.linspace(3.0, 8.0, 20), np.zeros(150)]  # 30 + 20


def _filter_trace(est, lam):
    """tr psi(A): the exact expectation of a Chebyshev/KPM filter estimate
    (``info["filter_estimate"]``, the damped step at ``info["point_threshold"]``)."""
    info = est.info
    lmin, lmax, eps = info["lambda_min"], info["lambda_max"], info["point_threshold"]
    c, h = 0.5 * (lmax + lmin), 0.5 * (lmax - lmin)
    m = 2 * info["degree"] if info["doubling"] else info["degree"]
    coef = step_coefficients(m, (eps - c) / h, (lmax - c) / h)
    if lmin < -eps:
        coef = coef + step_coefficients(m, (lmin - c) / h, (-eps - c) / h)
    return float(np.sum(chebyshev_series(damping_coefficients(m, info["damping"]) * coef,
                                         (lam - c) / h)))


@pytest.mark.parametrize("method, degree", [("chebyshev", 50), ("kpm", 30)])
@pytest.mark.parametrize("lam, rtol", [(PSD, 0.05), (INDEF, 0.1)], ids=["psd", "indefinite"])
def test_chebyshev_kpm_against_eigvalsh(method, degree, lam, rtol):
    rng = np.random.default_rng(7)
    A = _spectral_matrix(lam, rng)
    forms = _forms(A) if method == "chebyshev" and rtol == 0.05 else {"dense": A}
    truth = int(np.sum(lam != 0))
    for kind, M in forms.items():
        est = lmatrank.estimate_rank(M, method=method, rng=11, n_probes=100, degree=degree,
                                     rtol=rtol)
        assert int(np.sum(np.abs(lam) > est.threshold)) == truth   # threshold inside the gap
        expected = _filter_trace(est, lam)
        assert abs(est.info["filter_estimate"] - expected) <= 5 * est.stderr, kind
        assert est.interval[0] <= truth <= est.interval[1], (kind, est)
        assert not est.converged or est.rank == truth, (kind, est)
        assert est.resolution <= est.threshold or not est.converged
        assert est.matvecs == 3 + est.info["lanczos_matvecs"] + 100 * degree
        n_pos, n_neg = int(np.sum(lam > 0)), int(np.sum(lam < 0))
        assert abs(est.info["n_positive"] - n_pos) < 5 * est.stderr + 0.5
        assert abs(est.info["n_negative"] - n_neg) < 5 * est.stderr + 0.5
        assert {"count_half_threshold", "count_double_threshold", "dos", "gap_threshold"} \
            <= set(est.info)


def test_chebyshev_rtol_atol_and_scale_invariance():
    rng = np.random.default_rng(2)
    lam = np.r_[np.linspace(4.0, 10.0, 30), np.linspace(0.05, 0.5, 30), np.zeros(140)]
    A = _spectral_matrix(lam, rng)
    est = lmatrank.estimate_rank(A, method="chebyshev", rng=3, rtol=0.2, n_probes=100)
    assert est.threshold == pytest.approx(0.2 * 10.0, rel=1e-6)
    assert est.info["threshold_source"] == "rtol"
    assert abs(est.info["filter_estimate"] - _filter_trace(est, lam)) <= 5 * est.stderr
    assert est.interval[0] <= 30 <= est.interval[1]
    assert not est.converged or est.rank == 30
    est2 = lmatrank.estimate_rank(A, method="chebyshev", rng=3, atol=2.0, n_probes=100)
    assert est2.threshold == 2.0 and est2.estimate == pytest.approx(est.estimate, rel=1e-6)
    assert est2.info["threshold_source"] == "atol"
    big = lmatrank.estimate_rank(1e6 * A, method="chebyshev", rng=3, rtol=0.2, n_probes=100)
    assert big.estimate == pytest.approx(est.estimate, rel=1e-6)
    assert big.interval == est.interval
    # the sensitivity counts come from the same moments
    assert est.info["count_half_threshold"] >= est.info["count_double_threshold"] - 1


def test_chebyshev_faithful_uses_published_settings():
    rng = np.random.default_rng(4)
    lam = 1e3 * np.r_[np.linspace(0.5, 1.0, 30), np.zeros(120)]
    A = _spectral_matrix(lam, rng)
    est = lmatrank.estimate_rank(A, method="chebyshev", faithful=True, rng=5)
    info = est.info
    assert (info["degree"], info["n_probes"], info["damping"], info["probes"]) == \
        (50, 300, "sigma", "gaussian")
    assert len(info["dos"]["eigenvalues"]) == 125
    assert info["lambda_min"] == -1e-5 and info["lambda_max"] >= 1e3 + 1e-5
    # grid artefact: eps = lmin + 1.25 (lmax - lmin) / 101
    assert est.threshold == pytest.approx(-1e-5 + 1.25 * (info["lambda_max"] + 1e-5) / 101,
                                          rel=1e-9)
    assert info["threshold_source"] == "published find_gap (faithful=True)"
    assert est.estimate == pytest.approx(info["filter_estimate"]) or est.converged
    assert abs(info["filter_estimate"] - _filter_trace(est, lam)) <= 5 * est.stderr
    truth = int(np.sum(lam > est.threshold))
    assert est.interval[0] <= truth <= est.interval[1]
    assert est.matvecs == 3 + info["lanczos_matvecs"] + 300 * 50


@pytest.mark.parametrize("lam", [
    np.repeat([0.0, 1.0, 3.0, 7.0], [150, 20, 20, 10]),
    np.repeat([-4.0, -1.0, 0.0, 2.0, 9.0], [15, 10, 150, 15, 10])], ids=["psd", "indefinite"])
def test_slq_exact_quadrature_against_eigvalsh(lam):
    rng = np.random.default_rng(8)
    A = _spectral_matrix(lam, rng)
    truth = int(np.sum(lam != 0))
    for kind, M in _forms(A).items():
        est = lmatrank.estimate_rank(M, method="slq", rng=9, n_steps=20, n_probes=60)
        assert abs(est.estimate - truth) <= 5 * est.stderr + 1e-8, kind
        assert est.stderr > 0
        # one block product per Lanczos step; all probes break down after <= 5 steps
        assert (est.matvecs - 3) % 60 == 0 and est.matvecs - 3 <= 60 * 5
        assert abs(est.info["n_negative"] - np.sum(lam < 0)) <= 5 * est.stderr + 1e-8
    # a user threshold between distinct eigenvalues
    est = lmatrank.estimate_rank(A, method="slq", rng=9, n_steps=20, n_probes=60, atol=1.5)
    assert abs(est.estimate - np.sum(np.abs(lam) > 1.5)) <= 5 * est.stderr + 1e-8


def test_slq_full_krylov_space_is_exact_for_any_spectrum():
    rng = np.random.default_rng(10)
    lam = np.r_[rng.uniform(0.5, 3.0, 60), np.zeros(40)]
    A = _spectral_matrix(lam, rng)
    est = lmatrank.estimate_rank(A, method="slq", rng=1, n_steps=100, n_probes=30, rtol=0.05)
    assert abs(est.estimate - np.sum(lam > 0.05 * lam.max())) <= 5 * est.stderr + 1e-6


@pytest.mark.parametrize("r, kinds", [(1, ("dense", "sparse", "linop")),
                                      (37, ("dense", "sparse", "linop")), (150, ("linop",))])
def test_sketch_exact_on_exactly_low_rank(r, kinds):
    rng = np.random.default_rng(r)
    n = 400
    G = rng.standard_normal((n, r))
    signs = np.where(np.arange(r) % 3 == 0, -1.0, 1.0)
    A = (G * signs) @ G.T                          # indefinite, rank exactly r
    for kind in kinds:
        est = lmatrank.estimate_rank(_forms(A)[kind], method="sketch", rng=2)
        assert est.rank == r and est.converged and est.stderr == 0.0, kind
        assert est.info["n_negative"] == int(np.sum(signs < 0))
        # symmetry probes, the sketch, its two-pass Rayleigh-Ritz reading
        assert est.matvecs == 3 + est.info["sketch_width"] + est.info["rayleigh_ritz_products"]
        assert est.info["rayleigh_ritz_products"] >= r
        assert est.info["sketch_width"] >= r + 10


def test_sketch_numerically_low_rank_with_rtol():
    rng = np.random.default_rng(3)
    lam = np.r_[np.linspace(1.0, 10.0, 50), 1e-8 * rng.uniform(size=250)]
    A = _spectral_matrix(lam, rng)
    est = lmatrank.estimate_rank(A, method="sketch", rng=4, rtol=1e-4)
    assert est.rank == 50 and est.converged
    assert est.info["count_half_threshold"] == est.info["count_double_threshold"] == 50


def test_sketch_memory_and_budget_limits():
    rng = np.random.default_rng(5)
    G = rng.standard_normal((300, 120))
    A = G @ G.T
    with pytest.raises(ValueError, match="first sketch block .* > max_memory"):
        lmatrank.estimate_rank(A, method="sketch", max_memory=1000)
    est = lmatrank.estimate_rank(A, method="sketch", rng=1, max_memory=3 * 8 * 300 * 60)
    assert not est.converged and est.info["lower_bound"] and est.rank <= 120
    assert "max_memory" in est.info["reason"]
    est = lmatrank.estimate_rank(A, method="sketch", rng=1, max_matvecs=80)
    assert not est.converged and est.matvecs <= 80
    with pytest.raises(ValueError, match="max_matvecs=5 is too small for method='sketch'"):
        lmatrank.estimate_rank(A, method="sketch", max_matvecs=5)


def test_zero_matrix_and_probe_budget():
    Z = np.zeros((50, 50))
    for method in ("chebyshev", "kpm", "slq"):
        assert lmatrank.estimate_rank(Z, method=method, rng=0).rank == 0
    A = np.diag(np.r_[np.ones(10), np.zeros(90)])
    est = lmatrank.estimate_rank(A, method="chebyshev", rng=0, max_matvecs=3 + 30 + 50 * 20,
                                 rtol=0.1)
    assert est.info["n_probes"] == 20 and "20 of 300 probes" in est.info["budget"]
    assert est.interval[0] <= 10 <= est.interval[1] and est.matvecs <= 3 + 30 + 50 * 20
    est = lmatrank.estimate_rank(A, method="slq", rng=0, n_steps=10, max_matvecs=3 + 10 * 7,
                                 rtol=0.1)
    assert est.info["n_probes"] == 7 and est.interval[0] <= 10 <= est.interval[1]


def test_sketch_zero_matrix():
    est = lmatrank.estimate_rank(np.zeros((50, 50)), method="sketch", rng=0)
    assert est.rank == 0 and est.interval == (0, 0) and est.converged


def test_reproducible_with_rng():
    A = np.diag(np.r_[np.linspace(1, 2, 10), np.zeros(90)])
    for method in ("chebyshev", "kpm", "slq", "sketch"):
        a = lmatrank.estimate_rank(A, method=method, rng=42)
        b = lmatrank.estimate_rank(A, method=method, rng=42)
        assert a.estimate == b.estimate and a.threshold == b.threshold


@pytest.mark.parametrize("method, options, exc, message", [
    ("chebyshev", dict(degree=0), ValueError, "degree must be a positive integer"),
    ("chebyshev", dict(n_probes=1.5), ValueError, "n_probes must be an integer"),
    ("chebyshev", dict(n_probes=1), ValueError, "n_probes must be >= 2"),
    ("chebyshev", dict(n_points=1), ValueError, "n_points must be an integer >= 2"),
    ("chebyshev", dict(damping="gauss"), ValueError, "damping must be one of"),
    ("chebyshev", dict(damping=3), TypeError, "damping must be a string"),
    ("chebyshev", dict(gap_rule="median"), ValueError, "gap_rule must be one of"),
    ("chebyshev", dict(probes="uniform"), ValueError, "probes must be one of"),
    ("chebyshev", dict(spectrum="neg"), ValueError, "spectrum must be one of"),
    ("chebyshev", dict(faithful="yes"), TypeError, "faithful must be True or False"),
    ("chebyshev", dict(doubling=1), TypeError, "doubling must be True or False"),
    ("chebyshev", dict(lanczos_steps=0), ValueError, "lanczos_steps must be a positive integer"),
    ("chebyshev", dict(block_size=0), ValueError, "block_size must be a positive integer"),
    ("chebyshev", dict(max_matvecs=10), lmatrank.BudgetError,
     "max_matvecs=10 is too small for method='chebyshev'"),
    ("kpm", dict(max_matvecs=0), ValueError, "max_matvecs must be a positive integer"),
    ("kpm", dict(n_probes=1), ValueError, "n_probes must be >= 2"),
    ("slq", dict(n_steps=0), ValueError, "n_steps must be a positive integer"),
    ("slq", dict(n_probes=1), ValueError, "n_probes must be >= 2"),
    ("slq", dict(reorthogonalize=None), TypeError, "reorthogonalize must be True or False"),
    ("slq", dict(floor=0.7), ValueError, "floor must be a number in"),
    ("slq", dict(floor="x"), TypeError, "floor must be a real number"),
    ("slq", dict(max_matvecs=20, n_steps=50), lmatrank.BudgetError,
     "max_matvecs=20 is too small for method='slq'"),
])
def test_option_errors(method, options, exc, message):
    A = np.diag(np.r_[np.ones(5), np.zeros(35)])
    with pytest.raises(exc, match=message):
        lmatrank.estimate_rank(A, method=method, **options)


def test_unknown_option_is_type_error():
    with pytest.raises(TypeError, match="unknown option.*n_chains"):
        lmatrank.estimate_rank(np.eye(4), method="slq", n_chains=3)


@pytest.mark.parametrize("method", ["chebyshev", "kpm", "slq"])
def test_threshold_below_the_filter_resolution_is_flagged(method):
    """rtol far below what the polynomial resolves: a wide bracket and a warning naming
    the fix, never a silent number."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((300, 40))
    A = B @ B.T + 1e-8 * np.eye(300)            # rank 40 + a floor at 1e-8
    small = dict(degree=20, n_probes=30) if method != "slq" else dict(n_steps=20, n_probes=30)
    with pytest.warns(lmatrank.ConvergenceWarning, match="'sketch' or 'exact'"):
        est = lmatrank.estimate_rank(A, method=method, rtol=1e-6, rng=0, **small)
    truth = int(np.sum(np.abs(np.linalg.eigvalsh(A)) > est.threshold))
    assert truth == 40 and not est.converged and est.threshold < est.resolution
    assert est.interval[0] <= truth <= est.interval[1]
    assert est.interval[0] <= est.rank <= est.interval[1]
