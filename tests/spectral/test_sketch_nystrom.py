"""Sketch cores against eigvalsh truth: exactness, thresholds, contract fields, budget, bits."""

import warnings

import numpy as np
import pytest

import lmatrank
from lmatrank.operators import as_operator
from lmatrank.spectral._sketch import GrowingSketch


def _spectrum_matrix(lam, seed):
    n = lam.size
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (Q * lam) @ Q.T


def _truth(A, threshold):
    return int(np.sum(np.abs(np.linalg.eigvalsh(A)) > threshold))


def _quiet(A, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmatrank.ConvergenceWarning)
        return lmatrank.estimate_rank(A, method="sketch", **kw)


@pytest.mark.parametrize("r", [1, 17, 60])
def test_exact_on_exactly_low_rank_psd_with_nystrom_core(r):
    rng = np.random.default_rng(r)
    G = rng.standard_normal((240, r)) * np.geomspace(1.0, 1e-4, r)
    A = G @ G.T
    est = lmatrank.estimate_rank(A, method="sketch", rng=3)
    assert est.info["core"] == "nystrom" and est.info["fallback"] is None
    assert est.rank == r == _truth(A, est.threshold)
    assert est.interval == (r, r) and est.converged
    assert est.resolution <= est.threshold
    assert est.info["threshold_source"] in ("numpy default", "product noise")


def test_indefinite_input_falls_back_to_gram_schmidt_and_stays_exact():
    lam = np.zeros(200)
    lam[:40] = np.geomspace(1.0, 1e-6, 40) * np.where(np.arange(40) % 3 == 0, -1.0, 1.0)
    A = _spectrum_matrix(lam, 1)
    est = lmatrank.estimate_rank(A, method="sketch", rng=2)
    assert est.info["core"] == "gram-schmidt" and "positive definite" in est.info["fallback"]
    assert est.rank == 40 == _truth(A, est.threshold) and est.converged
    assert est.info["n_negative"] == 14


def test_float32_input_is_exact_at_its_own_threshold():
    rng = np.random.default_rng(5)
    G = rng.standard_normal((300, 25)).astype(np.float32)
    A = G @ G.T
    est = lmatrank.estimate_rank(A, method="sketch", rng=0)
    assert est.threshold >= 300 * np.finfo(np.float32).eps * 0.5 * np.abs(
        np.linalg.eigvalsh(A.astype(np.float64))).max()
    assert est.rank == 25 and est.interval == (25, 25) and est.converged


@pytest.mark.parametrize("floor,expect", [(1e-3, "above"), (1e-5, "below")])
def test_floor_of_small_eigenvalues_just_below_or_above_rtol(floor, expect):
    lam = np.full(220, floor)
    lam[:30] = np.geomspace(1.0, 1e-2, 30)
    A = _spectrum_matrix(lam, 7)
    rtol = 1e-4
    est = _quiet(A, rng=1, rtol=rtol)
    truth = _truth(A, est.threshold)
    lo, hi = est.interval
    assert lo <= truth <= hi          # never confidently wrong
    if expect == "below":
        assert est.rank == truth == 30 and est.converged
    else:
        assert truth == 220 and est.rank == 220


def test_floor_at_the_threshold_is_never_confidently_wrong():
    # half of a floor of 190 eigenvalues above rtol, half below: a sketch cannot see it cheaply
    lam = np.concatenate([np.geomspace(1.0, 1e-2, 30), np.geomspace(2e-4, 5e-5, 190)])
    A = _spectrum_matrix(lam, 9)
    est = _quiet(A, rng=4, rtol=1e-4)
    truth = _truth(A, est.threshold)
    lo, hi = est.interval
    assert lo <= truth <= hi
    if est.converged:
        assert est.rank == truth


def test_rtol_and_atol_follow_count_threshold():
    rng = np.random.default_rng(2)
    G = rng.standard_normal((150, 20)) * np.geomspace(1.0, 1e-6, 20)
    A = G @ G.T
    lam_max = np.abs(np.linalg.eigvalsh(A)).max()
    est = lmatrank.estimate_rank(A, method="sketch", rng=0, rtol=1e-6)
    assert est.info["threshold_source"] == "rtol"
    assert est.threshold == pytest.approx(1e-6 * lam_max, rel=1e-8)
    assert est.rank == _truth(A, est.threshold)
    est = lmatrank.estimate_rank(A, method="sketch", rng=0, atol=1e-3 * lam_max)
    assert est.info["threshold_source"] == "atol" and est.rank == _truth(A, est.threshold)


def test_budget_error_before_any_product():
    A = np.eye(100)
    op = as_operator(A)
    spent = op.matvecs
    with pytest.raises(lmatrank.BudgetError, match="max_matvecs=5 is too small"):
        lmatrank.spectral.sketch_rank(op, max_matvecs=5)
    assert op.matvecs == spent
    with pytest.raises(lmatrank.BudgetError, match="max_memory"):
        lmatrank.estimate_rank(A, method="sketch", max_memory=1000)


def test_full_rank_within_budget_reports_a_lower_bound_and_warns():
    A = np.diag(np.linspace(1.0, 2.0, 120))
    with pytest.warns(lmatrank.ConvergenceWarning, match="did not resolve"):
        est = lmatrank.estimate_rank(A, method="sketch", rng=0, max_matvecs=60)
    assert not est.converged and est.interval[1] == 120 and est.interval[0] <= 120


def test_same_rng_gives_the_same_bits():
    rng = np.random.default_rng(8)
    G = rng.standard_normal((180, 33))
    A = G @ G.T
    a = lmatrank.estimate_rank(A, method="sketch", rng=11)
    b = lmatrank.estimate_rank(A, method="sketch", rng=11)
    assert np.array_equal(a.info["eigenvalues"], b.info["eigenvalues"])
    assert (a.rank, a.interval, a.threshold, a.resolution) == (b.rank, b.interval, b.threshold,
                                                               b.resolution)


def test_nystrom_eigenvalues_are_lower_bounds_and_exact_on_the_range():
    rng = np.random.default_rng(4)
    G = rng.standard_normal((160, 24)) * np.geomspace(1.0, 1e-3, 24)
    A = G @ G.T
    sk = GrowingSketch(as_operator(A, check_symmetry=False), np.random.default_rng(0))
    sk.grow(20)
    lam = np.sort(np.linalg.eigvalsh(A))[::-1]
    mu = np.sort(sk.eigenvalues())[::-1]
    assert np.all(mu <= lam[:20] + 1e-12)          # Nystrom A <= S
    sk.grow(20)
    mu = np.sort(sk.eigenvalues())[::-1]
    np.testing.assert_allclose(mu[:24], lam[:24], rtol=1e-8)
    assert sk.rank >= 24 and sk.core == "nystrom"  # the cheap Schur count never undercounts
