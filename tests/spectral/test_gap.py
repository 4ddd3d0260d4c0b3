"""Threshold rules: the published find_gap (exact reproduction) and the plateau rule."""

import numpy as np
import pytest

from lmatrank.spectral import (chebyshev_moments, find_gap, kpm_dos, kpm_grid,
                               plateau_threshold)


def test_find_gap_hand_computed():
    # smoothing p=3: ys = [5, 2, 0, .75, 1.5, 1.5, 1.5, .75, .75], tt = [-3, -2, .75, ...];
    # tol1 = 5 -> indx1 = 2 (first ys <= 5 with tt >= -0.01), ysum = 7/10, tol = 0.075,
    # indx2 = 3 (first later ys >= tol), eps = (xx[2] + xx[3]) / 2 = 2.5
    yy = np.array([20, 8, 0, 0, 0, 0, 3, 3, 3], dtype=float)
    eps, info = find_gap(np.arange(9.0), yy)
    np.testing.assert_allclose(info["smoothed"], [5, 2, 0, .75, 1.5, 1.5, 1.5, .75, .75])
    assert (info["indx1"], info["indx2"], eps) == (2, 3, 2.5)
    assert info["ysum"] == pytest.approx(0.7) and info["tol"] == pytest.approx(0.075)
    assert not info["fallback"]


def test_find_gap_second_index_falls_back_to_next_point():
    yy = np.array([20, 8, 0, 0, 0, 0, 0, 0, 0], dtype=float)   # nothing significant later
    eps, info = find_gap(np.arange(9.0) * 10, yy)
    assert (info["indx1"], info["indx2"], eps) == (2, 3, 25.0)


def test_find_gap_grid_artefact_when_lambda_max_is_large():
    # a well-separated spectrum (rank 30 of 120, eigenvalues in [0.5, 1] * L): the published
    # rule ignores the gap and stops at the first grid point when L >> 1:
    # eps = lmin + 1.25 (lmax - lmin) / (N + 1) ~ 1.24 % of lmax for N = 100
    n = 120
    lam = np.r_[np.linspace(0.5, 1.0, 30), np.zeros(n - 30)]
    for L in (1e3, 1e6):
        A = np.diag(L * lam)
        lmin, lmax = -1e-5, L + 1e-5
        Y = chebyshev_moments(lambda X: A @ X, np.eye(n) / 1.0, 50,
                              center=(lmax + lmin) / 2, half_width=(lmax - lmin) / 2) / 1.0
        xx, yy = kpm_dos(Y, lmin=lmin, lmax=lmax, n_points=100)
        eps, info = find_gap(xx, yy)
        assert (info["indx1"], info["indx2"]) == (0, 1)
        assert eps == pytest.approx(lmin + 1.25 * (lmax - lmin) / 101, rel=1e-9)
        assert eps / lmax == pytest.approx(0.012376, abs=1e-6)
    assert len(kpm_grid(100)) == len(xx)


def test_plateau_is_scale_invariant_and_prefers_the_lowest_gap():
    # two gaps: (0, 1e-5) -> count 65 and (1e-4, 2) -> count 40; the rule takes the lowest
    # plateau above its floor
    lam = np.r_[np.linspace(2.0, 10.0, 40), np.linspace(1e-5, 1e-4, 25), np.zeros(35)]
    found = []
    for s in (1.0, 1e-6, 1e8):
        count = lambda e, s=s: (s * lam[:, None] > np.asarray(e)[None, :]).sum(0)  # noqa: E731
        eps, info = plateau_threshold(count, 10.0 * s, floor=1e-9)
        assert 0 < eps < 1e-5 * s and int(count(np.array([eps]))[0]) == 65
        eps, info = plateau_threshold(count, 10.0 * s, floor=3e-5)
        assert 1e-4 * s < eps < 2.0 * s and int(count(np.array([eps]))[0]) == 40
        assert info["spread"][info["index"]] == 0
        found.append(eps / s)
    np.testing.assert_allclose(found, found[0], rtol=1e-9)


def test_errors():
    with pytest.raises(ValueError, match="xx and yy must be 1-D of the same length"):
        find_gap(np.arange(3.0), np.ones(4))
    with pytest.raises(ValueError, match="xx and yy must be finite"):
        find_gap(np.arange(3.0), np.array([1.0, np.nan, 1.0]))
    count = lambda e: np.zeros(len(e))  # noqa: E731
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        plateau_threshold(count, 0.0, floor=1e-3)
    with pytest.raises(ValueError, match="floor must lie in"):
        plateau_threshold(count, 1.0, floor=0.9)
    with pytest.raises(ValueError, match="n_grid must be an integer >= 5"):
        plateau_threshold(count, 1.0, floor=1e-3, n_grid=3)
    with pytest.raises(ValueError, match="window must be finite and > 0"):
        plateau_threshold(count, 1.0, floor=1e-3, window=0)
