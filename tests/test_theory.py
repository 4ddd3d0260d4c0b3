"""Tests for lmatrank.theory: closed forms checked against brute force.

Continuous time: Theorem 1 against numerical integration of the Ito covariance,
Propositions 1, 3, 4 and Corollaries 1-3 against their definitions. Discrete
time: EM means against the exact covariance recursion, the variance of the
time average against direct double sums and a small Monte-Carlo run.
"""

import doctest

import numpy as np
import pytest
from scipy import integrate, linalg

from lmatrank import theory

SEEDS = [0, 1, 2]


# ---------------------------------------------------------------------------
# random test matrices
# ---------------------------------------------------------------------------


def random_orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def symmetric_with_eigenvalues(rng, eigenvalues):
    basis = random_orthogonal(rng, len(eigenvalues))
    matrix = (basis * np.asarray(eigenvalues)) @ basis.T
    return 0.5 * (matrix + matrix.T)


def random_spd(rng, n, low=0.4, high=2.5):
    return symmetric_with_eigenvalues(rng, rng.uniform(low, high, n))


def spd_power(matrix, power):
    w, v = np.linalg.eigh(matrix)
    return (v * w**power) @ v.T


def random_hessian(rng, n, kind, rank=None):
    """PSD of the given rank (exact zeros in a random basis) or indefinite."""
    if kind == "psd":
        rank = n - 2 if rank is None else rank
        eigenvalues = np.concatenate([rng.uniform(0.2, 2.0, rank), np.zeros(n - rank)])
    elif kind == "pd":
        eigenvalues = rng.uniform(0.2, 2.0, n)
    else:  # indefinite: at least one eigenvalue of each sign
        eigenvalues = np.concatenate([[-0.8, 1.5], rng.uniform(-1.0, 2.0, n - 2)])
    return symmetric_with_eigenvalues(rng, eigenvalues)


def brute_force_expected_loss(H, G, Sigma, t):
    """(1/2) int_0^t Tr(H e^{-GHs} G Sigma G e^{-HGs}) ds by adaptive quadrature."""
    noise = G @ Sigma @ G

    def integrand(s):
        propagator = linalg.expm(-s * (G @ H))
        return 0.5 * np.trace(H @ propagator @ noise @ propagator.T)

    value, _ = integrate.quad(integrand, 0.0, t, epsabs=0.0, epsrel=1e-12, limit=200)
    return value


def paper_printed_expected_loss(H, G, Sigma, t):
    """Eq. (5) exactly as printed: 1/4 Tr(Sigma G (I - e^{-2 G H t}))."""
    n = H.shape[0]
    return 0.25 * np.trace(Sigma @ G @ (np.eye(n) - linalg.expm(-2.0 * t * (G @ H))))


# ---------------------------------------------------------------------------
# Theorem 1
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["psd", "indefinite"])
def test_theorem1_matches_integrated_covariance(seed, kind):
    rng = np.random.default_rng(seed)
    n = 6
    H = random_hessian(rng, n, kind)
    G = random_spd(rng, n)
    Sigma = random_spd(rng, n)  # general covariance, not sigma^2 G^-1
    for t in (0.3, 1.1):
        expected = brute_force_expected_loss(H, G, Sigma, t)
        got = theory.expected_loss(H, t, G=G, Sigma=Sigma)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_printed_theorem1_differs_in_general_but_not_for_rank_revealing_noise(seed):
    rng = np.random.default_rng(seed)
    n, t = 6, 0.7
    H = random_hessian(rng, n, "indefinite")
    G = random_spd(rng, n)
    Sigma = random_spd(rng, n)
    truth = brute_force_expected_loss(H, G, Sigma, t)
    assert abs(paper_printed_expected_loss(H, G, Sigma, t) - truth) > 1e-4 * abs(truth)
    sigma2 = 0.3
    Sigma_rank = sigma2 * np.linalg.inv(G)
    printed = paper_printed_expected_loss(H, G, Sigma_rank, t)
    assert theory.expected_loss(H, t, G=G, sigma2=sigma2) == pytest.approx(printed, rel=1e-10)
    assert theory.expected_loss(H, t, G=G, Sigma=Sigma_rank) == pytest.approx(printed, rel=1e-10)


def test_expected_loss_vectorised_over_t_and_default_identity():
    rng = np.random.default_rng(5)
    H = random_hessian(rng, 5, "indefinite")
    times = np.array([[0.0, 0.2], [0.5, 1.5]])
    values = theory.expected_loss(H, times, sigma2=0.5)
    assert values.shape == times.shape
    for t, value in zip(times.ravel(), values.ravel()):
        assert theory.expected_loss(H, float(t), sigma2=0.5) == pytest.approx(value, rel=1e-14)
        assert value == pytest.approx(
            brute_force_expected_loss(H, np.eye(5), 0.5 * np.eye(5), t), rel=1e-9, abs=1e-14
        )
    assert theory.expected_loss(H, 0.0) == 0.0
    assert isinstance(theory.expected_loss(H, 1.0), float)


# ---------------------------------------------------------------------------
# Proposition 1, Corollaries 1-3
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_proposition1_is_large_time_limit_of_theorem1(seed):
    rng = np.random.default_rng(seed)
    n = 6
    H = random_hessian(rng, n, "psd", rank=3)
    G = random_spd(rng, n)
    Sigma = random_spd(rng, n)
    M = spd_power(G, 0.5) @ H @ spd_power(G, 0.5)
    eigenvalues = np.linalg.eigvalsh(M)
    t_large = 60.0 / np.min(eigenvalues[eigenvalues > 1e-8])
    assert theory.expected_loss(H, t_large, G=G, Sigma=Sigma) == pytest.approx(
        theory.stationary_loss(H, G=G, Sigma=Sigma), rel=1e-12
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rank", [1, 4, 7])
def test_corollary2_rank_revealing_loss(seed, rank):
    rng = np.random.default_rng(seed)
    n, sigma2 = 8, 0.37
    H = random_hessian(rng, n, "psd", rank=rank)
    G = random_spd(rng, n)
    for loss in (
        theory.stationary_loss(H, G=G, Sigma=sigma2 * np.linalg.inv(G)),
        theory.stationary_loss(H, G=G, sigma2=sigma2),
    ):
        assert 4.0 * loss / sigma2 == pytest.approx(rank, abs=1e-8)
        assert theory.rank_from_loss(loss, sigma2) == pytest.approx(rank, abs=1e-8)


def test_stationary_loss_tolerance_and_rank_from_loss_vectorised():
    H = np.diag([3.0, 1e-3, 1e-16, 0.0])
    assert theory.stationary_loss(H) == pytest.approx(0.5)  # 1e-16 below n*eps*max
    assert theory.stationary_loss(H, tol=1e-2) == pytest.approx(0.25)
    assert theory.stationary_loss(H, tol=0.0) == pytest.approx(0.75)
    ranks = theory.rank_from_loss(np.array([0.25, 0.5]), 0.5)
    np.testing.assert_allclose(ranks, [2.0, 4.0])


@pytest.mark.parametrize("seed", SEEDS)
def test_corollary1_pd_hessian(seed):
    rng = np.random.default_rng(seed)
    n = 6
    H = random_hessian(rng, n, "pd")
    G = random_spd(rng, n)
    Sigma = random_spd(rng, n)
    expected = 0.25 * np.trace(Sigma @ G)
    assert theory.pd_stationary_loss(G, Sigma) == pytest.approx(expected, rel=1e-13)
    assert theory.stationary_loss(H, G=G, Sigma=Sigma) == pytest.approx(expected, rel=1e-12)
    assert theory.expected_loss(H, 200.0, G=G, Sigma=Sigma) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_corollary3_maximal_preconditioner(seed):
    rng = np.random.default_rng(seed)
    n = 5
    Sigma = random_spd(rng, n, 0.1, 3.0)
    best = theory.maximal_loss_preconditioner(Sigma)
    assert np.linalg.norm(best, "fro") == pytest.approx(1.0)
    best_loss = theory.pd_stationary_loss(best, Sigma)
    assert best_loss == pytest.approx(np.linalg.norm(Sigma, "fro") / 4)
    for _ in range(200):
        G = random_spd(rng, n, 0.01, 3.0)
        G /= np.linalg.norm(G, "fro")
        assert theory.pd_stationary_loss(G, Sigma) <= best_loss * (1 + 1e-12)


# ---------------------------------------------------------------------------
# eqs. (13), (14)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["psd", "indefinite"])
def test_loss_rate_is_derivative_of_expected_loss(seed, kind):
    rng = np.random.default_rng(seed)
    n, step = 6, 1e-5
    H = random_hessian(rng, n, kind)
    G = random_spd(rng, n)
    Sigma = random_spd(rng, n)
    times = np.array([0.1, 0.6, 1.3])
    finite_difference = (
        theory.expected_loss(H, times + step, G=G, Sigma=Sigma)
        - theory.expected_loss(H, times - step, G=G, Sigma=Sigma)
    ) / (2 * step)
    np.testing.assert_allclose(
        theory.loss_rate(H, times, G=G, Sigma=Sigma), finite_difference, rtol=1e-7
    )
    # value at t = 0 from the definition: 1/2 Tr(Sigma G H G)
    assert theory.loss_rate(H, 0.0, G=G, Sigma=Sigma) == pytest.approx(
        0.5 * np.trace(Sigma @ G @ H @ G), rel=1e-11
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_trace_slope_is_eq13_at_zero_with_inverse_sqrt_preconditioner(seed):
    rng = np.random.default_rng(seed)
    n = 6
    H = random_hessian(rng, n, "indefinite")
    Sigma = random_spd(rng, n, 0.1, 4.0)
    slope = theory.trace_slope(H)
    assert slope == pytest.approx(0.5 * np.trace(H), rel=1e-14)
    assert theory.loss_rate(H, 0.0, G=spd_power(Sigma, -0.5), Sigma=Sigma) == pytest.approx(
        slope, rel=1e-10, abs=1e-12
    )


# ---------------------------------------------------------------------------
# Proposition 3
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("regime", ["high_noise", "low_noise"])
def test_proposition3_equal_frobenius_norm(seed, regime):
    rng = np.random.default_rng(seed)
    n = 6
    if regime == "high_noise":
        Sigma = random_spd(rng, n, 0.3, 4.0)
        Sigma *= 1.5 * n / np.trace(Sigma)
    else:
        Sigma = random_spd(rng, n, 0.02, 2.0)
        Sigma *= 0.6 * n / np.trace(Sigma)
    result = theory.compare_preconditioners(Sigma)
    assert result["trace_exceeds_n"] is (regime == "high_noise")

    # the paper's normalisation (appendix A.4), evaluated with Corollary 1
    G_identity = np.sqrt(np.trace(np.linalg.inv(Sigma)) / n) * np.eye(n)
    G_inverse_sqrt = spd_power(Sigma, -0.5)
    norm = np.linalg.norm(G_inverse_sqrt, "fro")
    assert np.linalg.norm(G_identity, "fro") == pytest.approx(norm)
    assert result["frobenius_norm"] == pytest.approx(norm)
    assert result["loss_identity"] == pytest.approx(
        theory.pd_stationary_loss(G_identity, Sigma), rel=1e-12
    )
    assert result["loss_inverse_sqrt"] == pytest.approx(
        theory.pd_stationary_loss(G_inverse_sqrt, Sigma), rel=1e-12
    )
    # At equal Frobenius norm G = I wins in BOTH regimes: Tr(Sigma) > n is not needed.
    assert result["identity_larger"]
    assert result["loss_identity"] > result["loss_inverse_sqrt"]

    # Unnormalised G = I vs G = Sigma^(-1/2): Tr(Sigma) > n is sufficient.
    assert result["unnormalised_loss_identity"] == pytest.approx(
        theory.pd_stationary_loss(np.eye(n), Sigma)
    )
    if result["trace_exceeds_n"]:
        assert result["unnormalised_identity_larger"]


def test_proposition3_edge_cases():
    # equality for Sigma proportional to I
    result = theory.compare_preconditioners(0.3 * np.eye(4))
    assert result["loss_identity"] == pytest.approx(result["loss_inverse_sqrt"], rel=1e-14)
    assert not result["identity_larger"]
    # Tr(Sigma) > n is not necessary for the unnormalised comparison
    result = theory.compare_preconditioners(np.diag([0.01, 1.9]))
    assert not result["trace_exceeds_n"]
    assert result["unnormalised_identity_larger"]
    # and small noise makes Sigma^(-1/2) win unnormalised
    result = theory.compare_preconditioners(np.diag([0.2, 0.5]))
    assert not result["unnormalised_identity_larger"]


# ---------------------------------------------------------------------------
# Proposition 4
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_proposition4_loss_below_start_after_bound(seed):
    rng = np.random.default_rng(seed)
    n = 6
    H = random_hessian(rng, n, "indefinite")
    G = random_spd(rng, n)
    Sigma = random_spd(rng, n, 0.05, 3.0)
    bound = theory.escape_time_bound(H, G=G, Sigma=Sigma)
    assert bound > 0
    times = bound * np.array([1.0 + 1e-9, 1.2, 2.0, 5.0])
    assert np.all(theory.expected_loss(H, times, G=G, Sigma=Sigma) < 0.0)
    # the loss rises first (f(theta_0) = 0 is crossed from above)
    assert theory.expected_loss(H, 1e-3 * bound, G=G, Sigma=Sigma) > 0.0


def test_proposition4_identity_case_matches_chen_du_tong():
    H = np.diag([2.0, 1.0, 0.5, -0.25])
    assert theory.escape_time_bound(H) == pytest.approx(np.log(4) / 0.5)
    assert theory.escape_time_bound(H, Sigma=3.0 * np.eye(4)) == pytest.approx(np.log(4) / 0.5)


# ---------------------------------------------------------------------------
# Euler--Maruyama means
# ---------------------------------------------------------------------------


def em_covariances(H, G, eta, sigma2, n_steps):
    """Exact EM covariances C_0..C_n: C_{k+1} = A C_k A^T + eta sigma^2 G."""
    n = H.shape[0]
    A = np.eye(n) - eta * G @ H
    covariance = np.zeros((n, n))
    covariances = [covariance]
    for _ in range(n_steps):
        covariance = A @ covariance @ A.T + eta * sigma2 * G
        covariances.append(covariance)
    return covariances


def observable_means(H, G, eta, sigma2, covariance):
    plain = (4.0 / sigma2) * 0.5 * np.trace(H @ covariance)
    correction = (4.0 / sigma2) * (eta / 4.0) * np.trace(H @ G @ H @ covariance)
    return plain - correction, plain


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("step_factor", [0.3, 1.0, 1.5, 1.95, 2.3])
def test_em_expected_rank_matches_covariance_recursion(seed, step_factor):
    rng = np.random.default_rng(seed)
    n, sigma2 = 5, 0.7
    H = random_hessian(rng, n, "psd", rank=3)
    G = random_spd(rng, n)
    G_sqrt = spd_power(G, 0.5)
    eigenvalues = np.linalg.eigvalsh(G_sqrt @ H @ G_sqrt)
    eta = step_factor / eigenvalues[-1]
    steps = [0, 1, 2, 7, 30]
    covariances = em_covariances(H, G, eta, sigma2, max(steps))
    corrected = theory.em_expected_rank(eigenvalues, eta, steps)
    plain = theory.em_expected_rank(eigenvalues, eta, steps, corrected=False)
    for i, k in enumerate(steps):
        want_corrected, want_plain = observable_means(H, G, eta, sigma2, covariances[k])
        scale = max(1.0, abs(want_plain))
        assert corrected[i] == pytest.approx(want_corrected, abs=1e-10 * scale)
        assert plain[i] == pytest.approx(want_plain, abs=1e-10 * scale)


@pytest.mark.parametrize("seed", SEEDS)
def test_em_stationary_rank_exact_for_every_stable_step(seed):
    rng = np.random.default_rng(seed)
    rank = 4
    eigenvalues = np.concatenate([rng.uniform(0.01, 1.0, rank), [1.0], np.zeros(3)])
    for step_factor in np.linspace(0.05, 1.99, 15):
        eta = step_factor / eigenvalues.max()
        assert theory.em_stationary_rank(eigenvalues, eta) == rank + 1
        plain = theory.em_stationary_rank(eigenvalues, eta, corrected=False)
        positive = eigenvalues[eigenvalues > 0]
        assert plain == pytest.approx(np.sum(2.0 / (2.0 - eta * positive)), rel=1e-14)
        assert plain > rank + 1
    # removable singularity of the plain observable at eta * lambda = 2: mean 4k
    assert theory.em_expected_rank([2.0, 0.0], 1.0, 3, corrected=False) == 12.0
    assert theory.em_expected_rank([2.0], 1.0, 3) == 0.0
    # long-run limit of the transient formula
    eta = 1.5
    assert theory.em_expected_rank(eigenvalues, eta, 10**6) == pytest.approx(rank + 1, abs=1e-9)
    assert theory.em_expected_rank(eigenvalues, eta, 10**6, corrected=False) == pytest.approx(
        theory.em_stationary_rank(eigenvalues, eta, corrected=False), rel=1e-12
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_em_stationary_rank_matches_discrete_lyapunov(seed):
    rng = np.random.default_rng(seed)
    n, sigma2 = 5, 1.3
    H = random_hessian(rng, n, "pd")
    G = random_spd(rng, n)
    G_sqrt = spd_power(G, 0.5)
    eigenvalues = np.linalg.eigvalsh(G_sqrt @ H @ G_sqrt)
    eta = 1.8 / eigenvalues[-1]
    A = np.eye(n) - eta * G @ H
    covariance = linalg.solve_discrete_lyapunov(A, eta * sigma2 * G)
    corrected, plain = observable_means(H, G, eta, sigma2, covariance)
    assert corrected == pytest.approx(theory.em_stationary_rank(eigenvalues, eta), rel=1e-9)
    assert plain == pytest.approx(
        theory.em_stationary_rank(eigenvalues, eta, corrected=False), rel=1e-9
    )


def test_em_filter_and_resolution():
    values = theory.em_filter(np.array([0.0, 0.1, 1.0, 1.9, 2.0]), 1.0, 3)
    np.testing.assert_allclose(values, 1.0 - (1.0 - np.array([0.0, 0.1, 1.0, 1.9, 2.0])) ** 6)
    # broadcasting over k, and the k-sum of filters is em_expected_rank
    grid = theory.em_filter([[0.2], [0.7]], 0.5, np.array([0, 1, 10]))
    assert grid.shape == (2, 3)
    np.testing.assert_allclose(
        grid.sum(axis=0), theory.em_expected_rank([0.2, 0.7], 0.5, [0, 1, 10]), rtol=1e-14
    )
    # relative accuracy for tiny eta * lambda: 1 - (1 - x)^2 = 2x - x^2
    assert theory.em_filter(1e-13, 1.0, 1) == pytest.approx(2e-13, rel=1e-12)
    assert isinstance(theory.em_filter(0.3, 1.0, 4), float)
    for level in (0.1, 0.5, 0.9):
        steps = np.array([1, 5, 100, 10**5])
        resolution = theory.em_resolution(0.3, steps, level=level)
        assert resolution.shape == steps.shape
        np.testing.assert_allclose(theory.em_filter(resolution, 0.3, steps), level, rtol=1e-10)
    # close to the continuous-time filter's resolution log 2 / (2 t) for large k
    continuous = np.log(2) / (2 * 0.01 * 1e4)
    assert theory.em_resolution(0.01, 10**4) == pytest.approx(continuous, rel=1e-3)


def test_em_autocorrelation_time_matches_lag_sum():
    eigenvalues = np.array([0.0, 0.05, 0.5, 1.0, 1.7])
    eta = 1.0
    tau = theory.em_autocorrelation_time(eigenvalues, eta)
    assert np.isinf(tau[0])
    r = (1.0 - eta * eigenvalues[1:]) ** 2
    lags = np.arange(1, 4000)
    direct = 1.0 + 2.0 * np.sum(r[:, None] ** lags, axis=1)
    np.testing.assert_allclose(tau[1:], direct, rtol=1e-12)


# ---------------------------------------------------------------------------
# variance of the time average
# ---------------------------------------------------------------------------


def direct_window_variance(eigenvalues, eta, k_burn, n_avg, stationary):
    """(2/N^2) sum_i sum_{j,m in W} r^|j-m| w_min^2 by explicit double sums."""
    window = np.arange(k_burn, k_burn + n_avg, dtype=float)
    j, m = np.meshgrid(window, window, indexing="ij")
    total = 0.0
    for lam in eigenvalues:
        if lam == 0:
            continue
        r = (1.0 - eta * lam) ** 2
        weight = 1.0 if stationary else (1.0 - r ** np.minimum(j, m)) ** 2
        total += np.sum(r ** np.abs(j - m) * weight)
    return 2.0 * total / n_avg**2


@pytest.mark.parametrize("n_avg", [1, 2, 7, 40])
@pytest.mark.parametrize("k_burn", [0, 3, 25])
def test_em_rank_variance_matches_direct_sums(k_burn, n_avg):
    # 1e-6 and 3e-6 exercise the series branch (stationary) and the far branch (transient)
    eigenvalues = np.array([0.0, 3e-6, 1e-3, 0.2, 0.5, 1.0, 1.6, 1.99])
    eta = 1.0
    for stationary in (True, False):
        want = direct_window_variance(eigenvalues, eta, k_burn, n_avg, stationary)
        got = theory.em_rank_variance(eigenvalues, eta, k_burn, n_avg, stationary=stationary)
        # absolute rounding of the closed form ~ 8 eps (K + N) / (N * 1e-3)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-11)


def test_em_rank_variance_limits():
    eigenvalues = np.array([1e-7, 0.01, 0.3, 1.2])
    eta, n_avg = 1.0, 3000
    stationary = theory.em_rank_variance(eigenvalues, eta, 0, n_avg)
    # exact transient formula tends to the stationary one after a long burn-in
    # (the 1e-7 mode never equilibrates: compare the others)
    resolved = eigenvalues[1:]
    assert theory.em_rank_variance(resolved, eta, 10**5, n_avg, stationary=False) == pytest.approx(
        theory.em_rank_variance(resolved, eta, 0, n_avg), rel=1e-10
    )
    # the 1e-7 mode contributes about 2 (fully correlated) in the stationary model
    assert stationary - theory.em_rank_variance(resolved, eta, 0, n_avg) == pytest.approx(
        2.0, rel=1e-3
    )
    # large N: (2/N) sum tau
    tau = theory.em_autocorrelation_time(resolved, eta)
    big_n = 10**7
    assert theory.em_rank_variance(resolved, eta, 0, big_n) == pytest.approx(
        2.0 / big_n * tau.sum(), rel=1e-4
    )
    assert theory.em_rank_variance([0.0, 0.0], 1.0, 5, 10) == 0.0


def simulate_window_averages(rng, s_diag, g_diag, eta, sigma2, k_burn, n_avg, n_chains, start):
    """Time averages of the corrected observable for G, S diagonal (vectorised over chains)."""
    lam = g_diag * s_diag
    theta = np.zeros((n_chains, s_diag.size))
    if start == "stationary":  # exact stationary law of the EM chain (null modes at 0)
        positive = lam > 0
        std = np.zeros_like(lam)
        std[positive] = np.sqrt(
            sigma2 * g_diag[positive] / (lam[positive] * (2.0 - eta * lam[positive]))
        )
        theta = rng.standard_normal(theta.shape) * std
    noise_scale = np.sqrt(eta * sigma2 * g_diag)
    total = np.zeros(n_chains)
    for step in range(k_burn + n_avg):
        if step >= k_burn:
            gradient = theta * s_diag
            total += (4.0 / sigma2) * (
                0.5 * np.sum(theta * gradient, axis=1)
                - 0.25 * eta * np.sum(gradient * g_diag * gradient, axis=1)
            )
        theta = theta - eta * g_diag * s_diag * theta
        theta += noise_scale * rng.standard_normal(theta.shape)
    return total / n_avg


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("start", ["zero", "stationary"])
def test_em_rank_variance_against_monte_carlo(seed, start):
    rng = np.random.default_rng(seed)
    s_diag = np.array([2.0, 1.0, 0.3, 0.0])
    g_diag = np.array([0.5, 1.5, 1.0, 2.0])
    eigenvalues = g_diag * s_diag  # of G S
    eta, sigma2, k_burn, n_avg, n_chains = 0.8, 0.05, 10, 150, 4000
    averages = simulate_window_averages(
        rng, s_diag, g_diag, eta, sigma2, k_burn, n_avg, n_chains, start
    )
    predicted = theory.em_rank_variance(
        eigenvalues, eta, k_burn, n_avg, stationary=(start == "stationary")
    )
    # MC standard error of the sample variance from the sample fourth moment
    # (chi-square standard error 2 s^4/(n-1) plus the excess-kurtosis term)
    centred = averages - averages.mean()
    sample_variance = centred @ centred / (n_chains - 1)
    fourth = np.mean(centred**4)
    variance_stderr = np.sqrt(
        (fourth - sample_variance**2 * (n_chains - 3) / (n_chains - 1)) / n_chains
    )
    assert abs(sample_variance - predicted) < 5.0 * variance_stderr
    # the treated-as-independent variance (2 r / N) is clearly rejected
    naive = 2.0 * np.count_nonzero(eigenvalues) / n_avg
    assert abs(sample_variance - naive) > 5.0 * variance_stderr
    # and the mean is the EM filter averaged over the window (or the rank)
    if start == "zero":
        window = np.arange(k_burn, k_burn + n_avg)
        mean = np.mean(theory.em_expected_rank(eigenvalues, eta, window))
    else:
        mean = theory.em_stationary_rank(eigenvalues, eta)
    assert abs(averages.mean() - mean) < 5.0 * np.sqrt(sample_variance / n_chains)


# ---------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------

H2 = np.diag([1.0, 2.0])
SADDLE = np.diag([1.0, -1.0])
NOT_SYMMETRIC = np.array([[1.0, 2.0], [0.0, 1.0]])
NOT_PD = np.diag([1.0, -1.0])
SINGULAR = np.diag([1.0, 0.0])

ERROR_CASES = [
    (lambda: theory.expected_loss(np.ones((2, 3)), 1.0), "square"),
    (lambda: theory.expected_loss(np.ones(3), 1.0), "2-D"),
    (lambda: theory.expected_loss(np.zeros((0, 0)), 1.0), "empty"),
    (lambda: theory.expected_loss(np.array([[1.0, np.nan], [np.nan, 1.0]]), 1.0), "non-finite"),
    (lambda: theory.expected_loss(np.eye(2) * 1j, 1.0), "complex"),
    (lambda: theory.expected_loss(np.array([["a", "b"], ["c", "d"]]), 1.0), "numeric"),
    (lambda: theory.expected_loss(NOT_SYMMETRIC, 1.0), "H must be symmetric"),
    (lambda: theory.expected_loss(H2, 1.0, G=NOT_PD), "G must be positive definite"),
    (lambda: theory.expected_loss(H2, 1.0, G=SINGULAR), "G must be positive definite"),
    (lambda: theory.expected_loss(H2, 1.0, G=np.eye(3)), "expected \\(2, 2\\)"),
    (lambda: theory.expected_loss(H2, 1.0, Sigma=NOT_PD), "Sigma must be positive semidefinite"),
    (lambda: theory.expected_loss(H2, 1.0, Sigma=np.eye(2), sigma2=1.0), "not both"),
    (lambda: theory.expected_loss(H2, 1.0, sigma2=0.0), "sigma2 must be positive"),
    (lambda: theory.expected_loss(H2, 1.0, sigma2="x"), "sigma2 must be a positive"),
    (lambda: theory.expected_loss(H2, -1.0), "t must be >= 0"),
    (lambda: theory.expected_loss(H2, [1.0, np.inf]), "t must be finite"),
    (lambda: theory.loss_rate(H2, -0.5), "t must be >= 0"),
    (lambda: theory.trace_slope(NOT_SYMMETRIC), "symmetric"),
    (lambda: theory.stationary_loss(SADDLE), "positive semidefinite"),
    (lambda: theory.stationary_loss(H2, tol=-1.0), "tol must be non-negative"),
    (lambda: theory.stationary_loss(H2, tol="x"), "tol must be a non-negative number"),
    (lambda: theory.pd_stationary_loss(NOT_PD, np.eye(2)), "G must be positive definite"),
    (lambda: theory.pd_stationary_loss(np.eye(2), NOT_PD), "Sigma must be positive semidefinite"),
    (lambda: theory.pd_stationary_loss(np.eye(2), np.eye(3)), "Sigma has shape"),
    (lambda: theory.rank_from_loss(1.0, -2.0), "sigma2 must be positive"),
    (lambda: theory.rank_from_loss(np.nan, 1.0), "loss must be finite"),
    (lambda: theory.maximal_loss_preconditioner(SINGULAR), "Sigma must be positive definite"),
    (lambda: theory.compare_preconditioners(NOT_PD), "Sigma must be positive definite"),
    (lambda: theory.escape_time_bound(H2), "not a saddle"),
    (lambda: theory.escape_time_bound(SINGULAR), "not a saddle"),
    (lambda: theory.escape_time_bound(SADDLE, Sigma=SINGULAR), "Sigma G must be positive definite"),
    (lambda: theory.escape_time_bound(SADDLE, G=NOT_PD), "G must be positive definite"),
    (lambda: theory.em_filter(0.5, 0.0, 1), "eta must be positive"),
    (lambda: theory.em_filter(np.inf, 1.0, 1), "lam contains non-finite"),
    (lambda: theory.em_filter(0.5, 1.0, 1.5), "k must be integer-valued"),
    (lambda: theory.em_filter(0.5, 1.0, -1), "k must be >= 0"),
    (lambda: theory.em_resolution(1.0, 0), "k must be >= 1"),
    (lambda: theory.em_resolution(1.0, 10, level=1.0), "level must be in"),
    (lambda: theory.em_resolution(1.0, 10, level="x"), "level must be a number"),
    (lambda: theory.em_resolution(-1.0, 10), "eta must be positive"),
    (lambda: theory.em_expected_rank([[1.0]], 1.0, 1), "eigenvalues must be 1-D"),
    (lambda: theory.em_expected_rank([np.nan], 1.0, 1), "non-finite"),
    (lambda: theory.em_expected_rank([1.0], -1.0, 1), "eta must be positive"),
    (lambda: theory.em_expected_rank([1.0], 1.0, [1, -2]), "k must be >= 0"),
    (lambda: theory.em_stationary_rank([1.0, 0.5], 2.0), "unstable step"),
    (lambda: theory.em_stationary_rank([1.0, -0.5], 1.0), "negative eigenvalue"),
    (lambda: theory.em_autocorrelation_time([3.0], 1.0), "unstable step"),
    (lambda: theory.em_autocorrelation_time([-1.0], 1.0), "negative eigenvalue"),
    (lambda: theory.em_rank_variance([1.0], 2.5, 0, 10), "unstable step"),
    (lambda: theory.em_rank_variance([1.0], 1.0, -1, 10), "k_burn must be >= 0"),
    (lambda: theory.em_rank_variance([1.0], 1.0, 0, 0), "n_avg must be >= 1"),
    (lambda: theory.em_rank_variance([1.0], 1.0, 0, 2.5), "n_avg must be integer-valued"),
]


@pytest.mark.parametrize("call, match", ERROR_CASES)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_tiny_roundoff_asymmetry_is_accepted():
    rng = np.random.default_rng(3)
    H = random_hessian(rng, 4, "indefinite")
    perturbed = H.copy()
    perturbed[0, 1] += 1e-14
    assert theory.expected_loss(perturbed, 0.7) == pytest.approx(
        theory.expected_loss(H, 0.7), rel=1e-12
    )


def test_docstring_examples():
    result = doctest.testmod(theory, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
