"""Tuning rules of the BAOAB estimator: burn-in detection, friction, threshold curve."""

import math

import numpy as np

from lmatrank.langevin._kinetic import (FRICTION_FACTOR, mser_burn_in, plan_baoab,
                                        threshold_curve)
from lmatrank.langevin._modes import (baoab_half_count_eigenvalue,
                                      baoab_integrated_autocorrelation)


def test_mser_finds_the_end_of_a_noisy_transient():
    rng = np.random.default_rng(0)
    curve = np.r_[np.linspace(0.0, 50.0, 300), np.full(2700, 50.0)] + rng.normal(0, 1, 3000)
    burn = mser_burn_in(curve)
    assert 250 <= burn <= 450
    assert mser_burn_in(rng.normal(0, 1, 3000)) < 600  # stationary: little is discarded


def test_friction_follows_the_resolution_target():
    p = plan_baoab(lam_max=1.0, n_chains=8, budget_steps=2000, lam_lo=1e-4)
    assert p["gamma"] == FRICTION_FACTOR * math.sqrt(1e-4)
    assert p["friction"] == math.exp(-p["gamma"] * p["h"])
    assert p["resolvable"]
    far = plan_baoab(lam_max=1.0, n_chains=8, budget_steps=200, lam_lo=1e-9)
    assert not far["resolvable"]


def test_friction_constant_is_near_the_best_for_the_slowest_mode():
    # integrated autocorrelation of the slowest resolved mode is smallest near
    # gamma = 2 .. 3 sqrt(lam_lo) (critical damping region)
    lam_lo, h = 1e-3, 1.9
    taus = {f: baoab_integrated_autocorrelation(np.array([lam_lo]), h,
                                                math.exp(-f * math.sqrt(lam_lo) * h))[0]
            for f in (0.5, 1.0, 2.5, 6.0, 15.0)}
    best = min(taus, key=taus.get)
    assert best in (1.0, 2.5)
    assert taus[2.5] < 1.5 * taus[best]


def test_half_count_eigenvalue_decreases_like_one_over_time_squared():
    h, c = 1.9, math.exp(-1e-3 * 1.9)  # underdamped down to lam ~ 2.5e-7
    half = baoab_half_count_eigenvalue(h, c, 800, lam_max=1.0)
    ratio = half[99] / half[799]  # 8x more steps
    assert 20 < ratio < 200  # ~ 64 for sqrt(kappa) mixing (EM would give ~8)


def test_threshold_curve_pairs_counts_with_resolutions():
    trace = np.tile(np.minimum(np.arange(1, 501) / 10.0, 10.0)[:, None], (1, 4))
    out = threshold_curve(trace, 1.9, 0.98, 1.0)
    assert out["resolution"].shape == out["count"].shape == out["steps"].shape
    assert out["count"][-1] == 10.0
