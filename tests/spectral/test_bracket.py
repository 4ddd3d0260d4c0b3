"""count_bracket: rigorous bounds on an eigenvalue count from filtered traces."""

import numpy as np
import pytest
from numpy.polynomial import chebyshev

from lmatrank.spectral._bracket import CountBracket, bracket_grid, count_bracket

HORIZONS = np.geomspace(1.0, 1e4, 20)


def exponential_filters(lam):
    return -np.expm1(-2.0 * np.outer(HORIZONS, lam))


def chebyshev_filters(lam, degree=30):
    return chebyshev.chebvander(2.0 * np.asarray(lam) - 1.0, degree - 1).T


def spectrum(kind, rng, n=100):
    r = int(rng.integers(5, 60))
    if kind == "gapped":
        return np.r_[rng.uniform(0.05, 1.0, r), np.zeros(n - r)]
    if kind == "graded":
        return np.r_[10.0 ** rng.uniform(-6, 0, r), np.zeros(n - r)]
    return 10.0 ** rng.uniform(-9, 0, n)      # no gap, no null space


@pytest.mark.parametrize("filters", [exponential_filters, chebyshev_filters])
@pytest.mark.parametrize("kind", ["gapped", "graded", "dense"])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_traces_give_a_bracket_that_holds_the_count(filters, kind, seed):
    rng = np.random.default_rng(seed)
    lam = spectrum(kind, rng)
    moments = filters(lam).sum(axis=1)
    for tau in (1e-2, 1e-4):
        lo, hi = count_bracket(filters, moments, 0.0, tau=tau, n=lam.size,
                               lam_max=1.0).interval()
        assert lo <= np.sum(lam > tau) <= hi


@pytest.mark.parametrize("filters, width", [(exponential_filters, 0), (chebyshev_filters, 12)])
def test_a_gap_the_filters_resolve_narrows_the_bracket(filters, width):
    # polynomials of degree 30 rise from 0 to 1 only over a band near the edge of the
    # spectrum: their bracket narrows but need not close
    lam = np.r_[np.linspace(0.1, 1.0, 10), np.zeros(90)]
    bracket = count_bracket(filters, filters(lam).sum(axis=1), 0.0, tau=0.05, n=100, lam_max=1.0)
    lo, hi = bracket.interval()
    assert bracket.solved and lo <= 10 <= hi and hi - lo <= width


def test_eigenvalues_below_the_horizon_widen_the_bracket_instead_of_being_missed():
    # five eigenvalues at 1e-7 are invisible to horizons up to 1e4: at tau = 1e-8 the count
    # (15) is not determined, and the upper bound must say so
    lam = np.r_[np.linspace(0.1, 1.0, 10), np.full(5, 1e-7), np.zeros(85)]
    moments = exponential_filters(lam).sum(axis=1)
    lo, hi = count_bracket(exponential_filters, moments, 0.0, tau=1e-8, n=100,
                           lam_max=1.0).interval()
    assert lo <= 10 and hi >= 15 and hi - lo > 4


@pytest.mark.parametrize("seed", range(4))
def test_sampling_noise_is_covered_at_three_standard_errors(seed):
    rng = np.random.default_rng(seed)
    lam = np.r_[np.linspace(0.1, 1.0, 20), np.zeros(80)]
    stderr = np.full(HORIZONS.size, 0.3)
    moments = exponential_filters(lam).sum(axis=1) + stderr * rng.standard_normal(HORIZONS.size)
    lo, hi = count_bracket(exponential_filters, moments, stderr, tau=1e-2, n=100,
                           lam_max=1.0).interval()
    assert lo <= 20 <= hi
    assert hi - lo <= 8    # noise of 0.3 per trace: a bracket, not [0, n]


def test_indefinite_domain_counts_magnitudes():
    lam = np.r_[np.linspace(0.2, 1.0, 6), -np.linspace(0.3, 0.9, 4), np.zeros(40)]
    filters = lambda x: np.vstack([np.asarray(x) ** (2 * k) for k in range(1, 12)])  # noqa: E731
    moments = filters(lam).sum(axis=1)
    lo, hi = count_bracket(filters, moments, 0.0, tau=1e-3, n=lam.size, lam_max=1.0,
                           lam_min=-1.0).interval()
    assert lo <= 10 <= hi


def test_non_finite_measurements_give_the_trivial_bracket():
    bracket = count_bracket(exponential_filters, np.full(HORIZONS.size, np.nan), 0.0, tau=1e-2,
                            n=50, lam_max=1.0)
    assert bracket == CountBracket(0.0, 50.0, False)


def test_grid_is_dense_at_the_threshold_and_covers_the_interval():
    grid = bracket_grid(1e-3, 2.0, -0.5)
    assert grid.min() == -0.5 and grid.max() == 2.0 and 0.0 in grid
    assert np.sum((grid > 1e-3) & (grid < 1.01e-3)) >= 10
    assert np.sum((grid < -1e-3) & (grid > -1.01e-3)) >= 10


def test_large_n_linear_program_is_solved_in_units_of_n():
    # recorded from a 3-D grid Laplacian run at n = 1e6 (two chains): HiGHS reported
    # numerical difficulties (status 4) on the unscaled objective, and the estimator fell
    # back to the trivial bracket [0, n]
    from pathlib import Path

    from lmatrank.spectral._bracket import _bound

    data = np.load(Path(__file__).with_name("data") / "lp_large_n.npz")
    n, upper = float(data["n"]), bool(data["upper"])
    solved = _bound(data["phi"], data["ind"], data["moments"], data["stderr"], n, 1.0, upper)
    assert solved is not None
    value, coef = solved
    # a lower bound of the count of a matrix of order 1e6 with ~999,8xx eigenvalues above
    assert 0.99 * n < value <= n
    # the combination is a valid minorant of the indicator on the constraint grid
    assert np.all(coef[0] + coef[1:] @ data["phi"] <= data["ind"] + 1e-7)
