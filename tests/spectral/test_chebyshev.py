"""Chebyshev building blocks: damping, step coefficients, block moments, KPM DOS."""

import numpy as np
import pytest
from scipy.integrate import quad

from lmatrank.spectral import (chebyshev_moments, chebyshev_series, count_from_moments,
                               damping_coefficients, jackson_damping, kpm_dos, kpm_grid,
                               sigma_damping, step_coefficients)


def test_jackson_hand_values_and_published_form():
    # m = 2, theta = pi/4: g = [1, cos(pi/4), 1/4] by hand
    np.testing.assert_allclose(jackson_damping(2), [1.0, np.cos(np.pi / 4), 0.25], atol=1e-15)
    # the published code's "slightly simpler" form is the same sequence
    for m in (1, 5, 50):
        k = np.arange(m + 1)
        th, a1 = np.pi / (m + 2), 1.0 / (m + 2)
        simple = a1 * np.sin((k + 1) * th) / np.sin(th) + (1 - (k + 1) * a1) * np.cos(k * th)
        np.testing.assert_allclose(jackson_damping(m), simple, rtol=1e-12, atol=1e-15)


def test_sigma_closed_form():
    m = 7
    th = np.pi / (m + 1)
    expected = [1.0] + [np.sin(k * th) / (k * th) for k in range(1, m + 1)]
    np.testing.assert_allclose(sigma_damping(m), expected, rtol=1e-14)
    assert damping_coefficients(m, "none").tolist() == [1.0] * (m + 1)


@pytest.mark.parametrize("a, b", [(-0.3, 0.7), (-1.0, 0.2), (0.5, 1.0)])
def test_step_coefficients_are_chebyshev_projections(a, b):
    m = 8
    gam = step_coefficients(m, a, b)
    for k in range(m + 1):
        # c_k = (2 - delta_k0)/pi * int_a^b T_k(t) / sqrt(1 - t^2) dt = (2 - d)/pi int cos(k u) du
        val, _ = quad(lambda u: np.cos(k * u), np.arccos(b), np.arccos(a))
        assert gam[k] == pytest.approx((2 - (k == 0)) / np.pi * val, abs=1e-12)


def test_step_series_converges_to_indicator_away_from_edges():
    gam = step_coefficients(400, -0.2, 0.4) * jackson_damping(400)
    t = np.array([-0.9, -0.4, 0.0, 0.2, 0.6, 0.95])
    np.testing.assert_allclose(chebyshev_series(gam, t), [0, 0, 1, 1, 0, 0], atol=1e-3)
    assert np.all(step_coefficients(5, 0.5, 0.5) == 0)   # empty interval


def test_moments_match_dense_chebyshev_polynomials():
    rng = np.random.default_rng(3)
    n, m = 40, 9
    A = rng.standard_normal((n, n))
    A = A + A.T
    lam = np.linalg.eigvalsh(A)
    c, h = 0.5 * (lam[-1] + lam[0]), 0.55 * (lam[-1] - lam[0])
    B = (A - c * np.eye(n)) / h
    V = rng.standard_normal((n, 5))
    calls = []
    Y = chebyshev_moments(lambda X: calls.append(X.shape[1]) or A @ X, V, m,
                          center=c, half_width=h)
    assert calls == [5] * m                      # one block product per degree, all probes
    T_prev, T = np.eye(n), B.copy()
    dense = [T_prev, T]
    for _ in range(2, m + 1):
        T_prev, T = T, 2 * B @ T - T_prev
        dense.append(T)
    for k in range(m + 1):
        np.testing.assert_allclose(Y[k], np.einsum("ij,ij->j", V, dense[k] @ V),
                                   rtol=1e-10, atol=1e-9)
    Yd = chebyshev_moments(lambda X: A @ X, V, m, center=c, half_width=h, doubling=True)
    assert Yd.shape == (2 * m + 1, 5)
    Y2 = chebyshev_moments(lambda X: A @ X, V, 2 * m, center=c, half_width=h)
    np.testing.assert_allclose(Yd, Y2, rtol=1e-8, atol=1e-8)


def test_count_from_moments_is_trace_of_filter():
    lam = np.r_[np.linspace(1, 3, 7), np.zeros(13)]
    A = np.diag(lam)
    Y = chebyshev_moments(lambda X: A @ X, np.eye(20), 30, center=1.5, half_width=1.6)
    # unit probes e_i summed = exact trace; per-probe counts are n * psi(lambda_i)
    counts = count_from_moments(Y, 20, [(0.5, 3.1)], center=1.5, half_width=1.6)
    g = sigma_damping(30) * step_coefficients(30, (0.5 - 1.5) / 1.6, (3.1 - 1.5) / 1.6)
    np.testing.assert_allclose(counts, 20 * chebyshev_series(g, (lam - 1.5) / 1.6), atol=1e-10)


def test_kpm_grid_and_published_normalisation():
    t = kpm_grid(100)
    h = 2 / 101
    assert len(t) == 125
    np.testing.assert_allclose(t[:100], -1 + h + 0.5 * h * np.arange(100), atol=1e-14)
    np.testing.assert_allclose(t[100:], h + 2 * h * np.arange(25), atol=1e-14)
    Y = np.zeros((11, 3))
    Y[0] = 1.0
    xx, yy = kpm_dos(Y, lmin=0.0, lmax=4.0)
    assert np.sum(yy) * (xx[1] - xx[0]) == pytest.approx(1.0)
    # moments of the semicircle-free "uniform in arccos" measure: density 1/(pi sqrt(1-t^2))
    np.testing.assert_allclose(yy / yy[50], 1 / np.sqrt(1 - t ** 2) * np.sqrt(1 - t[50] ** 2),
                               rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="degree must be an integer >= 1"):
        jackson_damping(0)
    with pytest.raises(ValueError, match="unknown damping 'gauss'"):
        damping_coefficients(3, "gauss")
    with pytest.raises(ValueError, match="half_width must be > 0"):
        chebyshev_moments(lambda X: X, np.ones((3, 1)), 2, center=0.0, half_width=0.0)
    with pytest.raises(ValueError, match="probes must be a 2-D block"):
        chebyshev_moments(lambda X: X, np.ones(3), 2, center=0.0, half_width=1.0)
    with pytest.raises(ValueError, match="n_points must be an integer >= 2"):
        kpm_grid(1)
