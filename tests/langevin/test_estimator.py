"""Langevin estimator: exact means from theory, invariances, paper mode, divergence."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

import lmatrank
from lmatrank import DivergenceError, estimate_rank
from lmatrank.langevin._modes import em_window_filters
from tests._matrices import em_window_mean, psd_with_rank, random_orthogonal, \
    symmetric_with_spectrum

# These tests check the statistics of the estimator (unbiased window means, stderr, tuning);
# their runs count at numpy's default threshold, which no fixed budget resolves, so each
# run ends with a ConvergenceWarning (the threshold contract is tested with the warning
# expected in test_honest_count.py).
pytestmark = pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")


BUDGET = 6000
# the tests of the Euler–Maruyama estimator (exact filter means from theory)
EM = dict(method="langevin", scheme="em")


def check_unbiased(est, eigenvalues, n_sigma=5.0):
    """|estimate - exact mean of the run's window| <= n_sigma stderr (+ rounding)."""
    info = est.info
    expected = em_window_mean(eigenvalues, info["eta"], info["burn_in"], info["n_steps"])
    assert est.stderr > 0
    assert abs(est.estimate - expected) <= n_sigma * est.stderr + 1e-9 * expected, \
        (est.estimate, expected, est.stderr)
    return expected


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_corrected_estimate_is_unbiased_for_the_window(seed, noise):
    A, lam = psd_with_rank(np.random.default_rng(seed), 60, 25, cond=30.0)
    est = estimate_rank(A, **EM, rng=seed, noise=noise, max_matvecs=BUDGET, n_chains=16)
    expected = check_unbiased(est, lam)
    assert abs(expected - 25) < 0.05  # the window is past the burn-in for cond 30
    assert est.rank == 25


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_preconditioned_run_is_unbiased(kind):
    rng = np.random.default_rng(7)
    A, _ = psd_with_rank(rng, 40, 15, cond=10.0)
    if kind == "diagonal":
        G = rng.uniform(0.2, 5.0, 40)
        root = np.sqrt(G)
        similar = root[:, None] * A * root[None, :]
    else:
        B = rng.standard_normal((40, 40))
        G = B @ B.T / 40 + 0.5 * np.eye(40)
        L = np.linalg.cholesky(G)
        similar = L.T @ A @ L
    lam = np.linalg.eigvalsh(similar)
    lam[np.abs(lam) < 1e-10 * lam.max()] = 0.0
    est = estimate_rank(A, **EM, rng=1, preconditioner=G, max_matvecs=BUDGET, n_chains=16)
    check_unbiased(est, lam)
    assert est.rank == 15


def test_uncorrected_observable_has_the_paper_bias():
    """Paper observable: stationary mean sum 2/(2 - eta lambda) > rank; corrected removes it."""
    A, lam = psd_with_rank(np.random.default_rng(3), 30, 10, cond=3.0)
    eta = 1.5 / lam.max()
    common = dict(rng=2, eta=eta, n_steps=400, n_avg=300, n_chains=64)
    raw = estimate_rank(A, **EM, corrected=False, **common)
    fixed = estimate_rank(A, **EM, corrected=True, **common)
    nz = lam[lam > 0]
    a2 = (1 - eta * nz) ** 2
    k = np.arange(100, 400)[:, None]
    expected_raw = np.mean(np.sum((1 - a2 ** k) * 2 / (2 - eta * nz), axis=1))
    assert abs(raw.estimate - expected_raw) <= 5 * raw.stderr
    assert expected_raw > 10 * 1.15  # a real bias, detectable at this stderr
    assert abs(fixed.estimate - 10) <= 5 * fixed.stderr


def test_indefinite_input_runs_on_the_square():
    rng = np.random.default_rng(11)
    eig = np.concatenate([np.geomspace(1, 5, 20), -np.geomspace(1, 5, 10), np.zeros(20)])
    A, lam = symmetric_with_spectrum(rng, eig)
    est = estimate_rank(A, **EM, rng=0, max_matvecs=BUDGET, n_chains=16)
    assert est.info["squared"]
    check_unbiased(est, lam ** 2)
    assert est.rank == 30


def test_forced_psd_mode_on_indefinite_input_raises_instead_of_returning():
    eig = np.concatenate([np.ones(5), -np.ones(5)])
    A, _ = symmetric_with_spectrum(np.random.default_rng(0), eig)
    with pytest.raises(DivergenceError, match="diverged"):
        estimate_rank(A, **EM, rng=0, spectrum="psd", eta=0.5, n_steps=3000, n_chains=2)


def test_too_large_eta_never_returns_a_number():
    A, lam = psd_with_rank(np.random.default_rng(0), 30, 10, cond=10.0)
    with pytest.raises(DivergenceError, match="unstable"):
        estimate_rank(A, **EM, rng=0, eta=2.5 / lam.max())


def test_automatic_step_backs_off_when_lambda_max_is_underestimated(monkeypatch):
    from lmatrank.langevin import _estimator

    A, lam = psd_with_rank(np.random.default_rng(4), 30, 10, cond=10.0)
    monkeypatch.setattr(_estimator, "STEP_FACTOR", 2.6)  # deliberately unstable first try
    est = estimate_rank(A, **EM, rng=0, spectrum="psd", max_matvecs=8000)
    assert len(est.info["backoffs"]) >= 1
    assert est.info["eta"] * lam.max() < 2
    assert abs(est.estimate - 10) < 5 * est.stderr + 0.1


def test_input_types_give_the_same_result():
    A, _ = psd_with_rank(np.random.default_rng(5), 50, 20)
    runs = [estimate_rank(M, **EM, rng=9, max_matvecs=3000)
            for M in (A, sp.csr_array(A), sp.coo_matrix(A), aslinearoperator(A))]
    for est in runs[1:]:
        assert est.rank == runs[0].rank and est.matvecs == runs[0].matvecs
        assert est.estimate == pytest.approx(runs[0].estimate, rel=1e-9)


def test_scaling_by_a_power_of_two_is_exactly_invisible():
    A, _ = psd_with_rank(np.random.default_rng(6), 40, 15)
    a = estimate_rank(A, **EM, rng=3, max_matvecs=3000)
    b = estimate_rank(4.0 * A, **EM, rng=3, max_matvecs=3000)
    assert a.estimate == b.estimate and a.stderr == b.stderr
    assert b.info["eta"] == a.info["eta"] / 4


@pytest.mark.parametrize("seed", [0, 1])
def test_permutation_and_orthogonal_similarity_invariance(seed):
    rng = np.random.default_rng(seed)
    A, _ = psd_with_rank(rng, 50, 20, cond=20.0)
    perm = rng.permutation(50)
    Q = random_orthogonal(rng, 50)
    base = estimate_rank(A, **EM, rng=seed, max_matvecs=BUDGET, n_chains=16)
    for M in (A[np.ix_(perm, perm)], Q @ A @ Q.T):
        other = estimate_rank((M + M.T) / 2, **EM, rng=seed + 100, max_matvecs=BUDGET, n_chains=16)
        assert abs(other.estimate - base.estimate) <= 5 * np.hypot(base.stderr, other.stderr)


def test_float32_input_matches_float64_within_stderr():
    A, _ = psd_with_rank(np.random.default_rng(8), 50, 20, cond=10.0)
    e64 = estimate_rank(A, **EM, rng=1, max_matvecs=BUDGET, n_chains=16)
    e32 = estimate_rank(A.astype(np.float32), **EM, rng=2, max_matvecs=BUDGET, n_chains=16)
    assert e32.info["rank_curve"].dtype == np.float64
    assert abs(e32.estimate - e64.estimate) <= 5 * np.hypot(e32.stderr, e64.stderr)


@pytest.mark.parametrize("options", [EM, dict(method="langevin"), {}])
def test_zero_matrix_has_rank_zero(options):
    est = estimate_rank(np.zeros((10, 10)), **options, rng=0)
    assert est.rank == 0 and est.estimate == 0.0 and est.converged


def test_paper_mode_settings_and_accounting():
    A, _ = psd_with_rank(np.random.default_rng(0), 20, 5, cond=5.0)
    A *= 1e3  # keep eta = 1e-4 stable and fast-mixing: lambda in [1e3, 5e3]
    est = estimate_rank(A, **EM, rng=0, paper=True, n_steps=1500, n_avg=1000)
    info = est.info
    assert (info["noise"], info["corrected"], info["n_chains"]) == ("gaussian", False, 1)
    assert (info["eta"], info["sigma2"], info["n_steps"], info["n_avg"]) == (1e-4, 2e-5, 1500, 1000)
    assert est.matvecs == 1500 + info["lanczos_matvecs"] + 3
    assert info["rank_curve"].shape == (1500,)
    np.testing.assert_allclose(info["loss_curve"], info["rank_curve"] * 2e-5 / 4)


def test_info_reports_resolution_and_drift():
    A, lam = psd_with_rank(np.random.default_rng(1), 40, 10, cond=10.0)
    with pytest.warns(lmatrank.ConvergenceWarning, match="not the threshold"):
        est = estimate_rank(A, **EM, rng=0, max_matvecs=4000)
    info = est.info
    # the count refers to numpy's default threshold, which no budget resolves
    assert info["threshold_source"] == "numpy default" and not est.converged
    assert est.threshold < est.resolution
    # the reported resolution is half counted by the averaging window's filter
    window = (info["burn_in"], info["n_steps"])
    filt = em_window_filters(np.array([est.resolution]), info["eta"], [window])[0, 0]
    assert filt == pytest.approx(0.5, abs=0.01)
    assert est.interval[0] <= 10 <= est.interval[1]
    assert abs(info["drift"]) <= 5 * info["drift_stderr"]


def test_rtol_sets_the_burn_in_that_resolves_the_threshold():
    A, lam = psd_with_rank(np.random.default_rng(2), 60, 20, cond=1e3)
    # eigenvalues spread over [1, 1e3] lie close to tau: the count is honestly bracketed
    with pytest.warns(lmatrank.ConvergenceWarning, match="only known to lie in"):
        est = estimate_rank(A, **EM, rng=0, rtol=1e-2, max_matvecs=20000)
    assert est.interval[0] <= int(np.sum(np.abs(lam) > est.threshold)) <= est.interval[1]
    info = est.info
    tau = 1e-2 * lam.max()
    assert (1 - info["eta"] * tau) ** (2 * info["burn_in"]) <= 1.01e-3
    with pytest.warns(RuntimeWarning, match="only known to lie in"):
        small = estimate_rank(A, **EM, rng=0, rtol=1e-4, max_matvecs=3000)
    assert not small.converged
    truth = int(np.sum(np.abs(lam) > small.threshold))
    assert small.interval[0] <= truth <= small.interval[1]


# --- issue #2 acceptance problems (fresh seeds, default settings) ---------------------------

def test_acceptance_psd_rank_120_two_decades():
    rng = np.random.default_rng(2024)
    A, _ = symmetric_with_spectrum(rng, np.concatenate([np.geomspace(1, 100, 120), np.zeros(380)]))
    est = estimate_rank(A, rng=17)
    assert est.matvecs <= 20000
    assert abs(est.estimate - 120) <= 2 and abs(est.estimate - 120) <= 5 * est.stderr + 0.5


def test_acceptance_indefinite_80_plus_40_minus():
    rng = np.random.default_rng(2025)
    eig = np.concatenate([np.geomspace(1, 10, 80), -np.geomspace(1, 10, 40), np.zeros(180)])
    A, _ = symmetric_with_spectrum(rng, eig)
    est = estimate_rank(A, rng=18)
    assert est.matvecs <= 20000
    assert abs(est.estimate - 120) <= 2 and abs(est.estimate - 120) <= 5 * est.stderr + 0.5


def test_acceptance_sparse_kronecker_rank_84():
    rng = np.random.default_rng(2026)
    B, _ = symmetric_with_spectrum(rng, np.concatenate([np.arange(1.0, 8.0), np.zeros(5)]))
    C, _ = symmetric_with_spectrum(rng, np.concatenate([np.arange(1.0, 13.0), np.zeros(8)]))
    K = sp.csr_array(np.kron(B, C))
    est = estimate_rank(K, rng=19)
    assert est.matvecs <= 20000
    assert abs(est.estimate - 84) <= 1 and abs(est.estimate - 84) <= 5 * est.stderr + 0.5


@pytest.mark.parametrize("corrected", [True, False])
def test_unstable_em_run_is_caught_whichever_sign_the_observable_takes(corrected):
    """With eta lambda_max > 2 the corrected observable runs to -inf, the raw one to +inf."""
    from lmatrank.backends import NumpyBackend
    from lmatrank.langevin._dynamics import DivergedRun, run_euler_maruyama
    from lmatrank.operators import as_operator, as_preconditioner

    op = as_operator(np.diag([1.0, 10.0, 0.0]), check_symmetry=False)
    with pytest.raises(DivergedRun):
        run_euler_maruyama(op, NumpyBackend(), n_chains=2, n_steps=400, eta=0.25, sigma2=1.0,
                           precond=as_preconditioner(None, 3), noise="rademacher",
                           gen=np.random.default_rng(0), corrected=corrected)
