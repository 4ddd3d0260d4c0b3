"""Tuning rules of the BAOAB estimator: burn-in detection, friction, threshold curve."""

import math

import numpy as np

from lmatrank.langevin._kinetic import (FRICTION_FACTOR, mser_burn_in, plan_baoab,
                                        threshold_curve)
from lmatrank.langevin._modes import (baoab_half_count_eigenvalue,
                                      baoab_integrated_autocorrelation)

import pytest  # noqa: E402

# These tests check the statistics of the estimator (unbiased window means, stderr, tuning);
# their runs count at numpy's default threshold, which no fixed budget resolves, so each
# run ends with a ConvergenceWarning (the threshold contract is tested with the warning
# expected in test_honest_count.py).
pytestmark = pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")



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


# ---------------------------------------------------------------- plateau search (issue #4)

import warnings  # noqa: E402

import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from lmatrank import ConvergenceWarning, estimate_rank  # noqa: E402
from lmatrank.langevin._kinetic import half_count_schedule  # noqa: E402
from lmatrank.langevin._modes import baoab_half_count_eigenvalue as _half  # noqa: E402


def test_half_count_schedule_reproduces_the_constant_friction_curve():
    h, c = 1.9, math.exp(-0.05 * 1.9)
    exact = _half(h, c, 300, lam_max=1.0, grid=120)
    np.testing.assert_allclose(half_count_schedule(h, np.full(300, c), lam_max=1.0), exact)
    # higher friction for the second half: overdamped small modes are counted later
    mixed = half_count_schedule(h, np.r_[np.full(150, c), np.full(150, c ** 8)], lam_max=1.0)
    assert np.all(mixed[:150] == exact[:150]) and mixed[-1] >= exact[-1]


def test_gapped_spectrum_stops_on_a_plateau_before_the_budget():
    # rank 60, eigenvalues in [0.3, 1], then zeros: flat count below 0.3
    A = sp.diags(np.r_[np.geomspace(0.3, 1.0, 60), np.zeros(240)]).tocsr()
    est = estimate_rank(A, method="langevin", rng=3, max_matvecs=12000, target_rse=0.01,
                        plateau=True)
    default = estimate_rank(A, method="langevin", rng=3, max_matvecs=12000, target_rse=0.01)
    assert default.info["stop_reason"] != "plateau"
    assert est.info["stop_reason"] == "plateau" and est.info["accuracy_met"]
    assert est.matvecs < 0.75 * 12000
    plateau = est.info["plateau"]
    assert plateau["bottom"] < plateau["top"] < 0.3
    # the count refers to numpy's default threshold: the bracket holds it, honestly wide
    assert est.interval[0] <= 60 <= est.interval[1]
    assert abs(est.estimate - 60) <= 5 * est.stderr


def test_continuous_spectrum_does_not_stop_on_a_false_plateau():
    # 200 eigenvalues log-uniform over 8 decades: ~10 per factor 4 of resolution
    A = sp.diags(np.r_[np.geomspace(1e-8, 1.0, 200), np.zeros(100)]).tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = estimate_rank(A, method="langevin", rng=4, max_matvecs=6000, target_rse=0.01,
                            plateau=True)
    assert est.info["stop_reason"].startswith("budget end, no plateau")
    assert est.info["plateau"] is None
    assert est.matvecs > 6000 - 8  # ran to the budget
    checks = est.info["plateau_checks"]
    assert checks and not any(chk["agrees"] for chk in checks)


def test_plateau_option_is_baoab_only():
    with pytest.raises(ValueError, match="plateau apply to scheme='baoab'"):
        estimate_rank(np.eye(5), method="langevin", scheme="em", plateau=True)
