"""Lanczos: extremes (contract used by the Langevin estimator) and batched reorthogonalised runs."""

import warnings

import numpy as np
import pytest

from lmatrank.spectral import batched_lanczos, lanczos_extremes


def test_lanczos_extremes_contract():
    A = np.diag(np.linspace(-2.0, 7.0, 150))
    out = lanczos_extremes(lambda X: A @ X, 150, rng=0, n_steps=60)
    assert set(out) == {"ritz_min", "ritz_max", "lambda_min", "lambda_max", "steps", "exact"}
    assert out["lambda_min"] <= -2.0 <= out["ritz_min"]
    assert out["ritz_max"] <= 7.0 <= out["lambda_max"]
    assert out["steps"] == 60 and not out["exact"]


def test_batched_reorthogonalisation_keeps_basis_orthonormal():
    rng = np.random.default_rng(1)
    n = 300
    # clustered spectrum: without reorthogonalisation orthogonality is lost quickly
    lam = np.r_[np.linspace(0, 1e-3, 200), np.linspace(1, 1000, 100)]
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (U * lam) @ U.T
    res = batched_lanczos(lambda X: A @ X, rng.standard_normal((n, 4)), 150)
    for lidx in range(4):
        Q = res.basis[lidx]
        assert Q.shape == (n, 150)
        assert np.abs(Q.T @ Q - np.eye(150)).max() < 1e-10
    plain = batched_lanczos(lambda X: A @ X, rng.standard_normal((n, 1)), 150,
                            reorthogonalize=False)
    assert plain.basis is None


def test_batched_breakdown_gives_exact_quadrature():
    lam = np.repeat([1.0, 2.0, 5.0], [10, 20, 30])
    A = np.diag(lam)
    calls = []
    V = np.ones((60, 3))
    V[:, 1] = np.r_[np.ones(30), np.zeros(30)]
    res = batched_lanczos(lambda X: calls.append(X.shape) or A @ X, V, 20)
    assert res.steps.tolist() == [3, 2, 3]
    assert all(shape == (60, 3) for shape in calls)   # one block product per step
    theta, S = res.ritz(1)
    np.testing.assert_allclose(theta, [1.0, 2.0])
    np.testing.assert_allclose(S[0] ** 2, [1 / 3, 2 / 3])


def test_errors():
    with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
        batched_lanczos(lambda X: X, np.ones((4, 1)), 0)
    with pytest.raises(ValueError, match="start block must be 2-D"):
        batched_lanczos(lambda X: X, np.ones(4), 2)
    with pytest.raises(ValueError, match="a Lanczos start vector is zero"):
        batched_lanczos(lambda X: X, np.zeros((4, 2)), 2)


def test_lanczos_past_an_invariant_subspace_stays_inside_the_spectrum():
    """Regression: breakdown is judged against |T| (~ |A|), not the current step's entries.

    On this rank-16 linear-network Hessian (n = 80) a probe's Krylov space is exhausted
    after ~18 steps; when breakdown was judged relative to that step's own (rounding-level)
    alpha and beta, the recurrence went on normalising noise and its Ritz values reached
    1e39, which made SLQ report rank 0.
    """
    from lmatrank import ConvergenceWarning, estimate_rank
    from lmatrank.backends import rademacher
    from lmatrank.operators import LinearNetworkHessian
    from lmatrank.spectral import batched_lanczos, lanczos

    H = LinearNetworkHessian.random_minimum(4, depth=5, rng=17191084742728717932)
    A = H.todense()
    lam = np.linalg.eigvalsh(A)
    res = batched_lanczos(lambda X: A @ X, rademacher(np.random.default_rng(1), (80, 200)), 50)
    for probe in range(200):
        theta, _ = res.ritz(probe)
        assert lam[0] - 1e-8 * lam[-1] <= theta.min() and theta.max() <= lam[-1] * (1 + 1e-8)
    single = lanczos(lambda X: A @ X, np.ones(80), 50)
    assert single.breakdown and single.ritz()[0].max() <= lam[-1] * (1 + 1e-8)
    # numpy's default threshold (1.8e-14 |A| here) lies below the Lanczos recurrence's own
    # rounding: SLQ's interval stays open above and it says so with a ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = estimate_rank(H, method="slq", rng=800570262358437078)
    assert abs(est.estimate - 16) <= 5 * est.stderr + 1
    assert est.interval[0] <= 16 <= est.interval[1]
