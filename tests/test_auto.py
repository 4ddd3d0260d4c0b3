"""method="auto": sketch for small rank, BAOAB Langevin otherwise; choice recorded."""

import warnings

import numpy as np
import pytest

from lmatrank import ConvergenceWarning, estimate_rank


def test_auto_picks_the_sketch_for_small_rank():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((300, 40))
    est = estimate_rank(G @ G.T, method="auto", rng=1)
    assert est.method == "auto"
    assert est.info["choice"] == "sketch" and "converged" in est.info["reason"]
    assert est.rank == 40 and est.matvecs < 120


def test_auto_falls_back_to_langevin_when_the_rank_exceeds_the_cap():
    rng = np.random.default_rng(1)
    n, r = 200, 150
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    A = U @ np.diag(np.linspace(1.0, 4.0, r)) @ U.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # a small memory budget caps the sketch below the rank
        est = estimate_rank(A, method="auto", rng=2, max_memory=3 * 8 * n * 64,
                            max_matvecs=6000)
    assert est.info["choice"] == "langevin"
    assert est.info["pilot"]["converged"] is False
    assert est.info["detail"]["scheme"] == "baoab"
    assert abs(est.estimate - r) <= 5 * est.stderr + 0.5
    assert est.matvecs <= 6000


def test_auto_rejects_bad_budgets():
    A = np.eye(4)
    with pytest.raises(ValueError, match="max_memory"):
        estimate_rank(A, method="auto", max_memory=0)
    with pytest.raises(ValueError, match="max_matvecs"):
        estimate_rank(A, method="auto", max_matvecs=0)
