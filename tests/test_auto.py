"""method="auto": cheap decisions first (full sketch / first block / pilot), caps, choice recorded."""

import warnings

import numpy as np
import pytest

from lmatrank import ConvergenceWarning, estimate_rank
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from lmatrank._auto import DEFAULT_MAX_FLOPS, SMALL_EXPLICIT_N, exact_bytes
from lmatrank.operators import LinearNetworkHessian
from lmatrank.spectral._sketch import sketch_bytes, sketch_flops


# below this memory cap dense eigvalsh of n = 300 does not fit: the matrix-free path runs
NO_EXACT_300 = exact_bytes(300) - 1


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_auto_answers_small_explicit_matrices_exactly(kind):
    rng = np.random.default_rng(0)
    G = rng.standard_normal((SMALL_EXPLICIT_N + 100, 40))   # above the small-matrix path
    A = G @ G.T
    A = {"dense": A, "sparse": sp.csr_array(A)}[kind]
    est = estimate_rank(A, method="auto", rng=1, rtol=1e-9)
    assert est.info["choice"] == "exact" and "eigvalsh" in est.info["reason"]
    assert est.rank == 40 and est.interval == (40, 40) and est.converged
    # symmetry probes, the first sketch block (not rank deficient), then eigvalsh
    assert est.info["pilot"]["first_block"] == dict(width=32, rank=32)
    assert est.matvecs == 3 + 32


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_auto_shortcut_for_tiny_explicit_matrices_matches_exact(kind):
    rng = np.random.default_rng(0)
    G = rng.standard_normal((SMALL_EXPLICIT_N, 40))
    A = {"dense": G @ G.T, "sparse": sp.csr_array(G @ G.T)}[kind]
    for tol in ({}, {"rtol": 1e-3}, {"atol": 5.0}):
        est = estimate_rank(A, method="auto", rng=1, **tol)
        ref = estimate_rank(A, method="exact", rng=1, **tol)
        assert "small explicit matrix" in est.info["reason"] and est.matvecs == 0
        assert (est.rank, est.interval, est.threshold, est.converged) \
            == (ref.rank, ref.interval, ref.threshold, ref.converged)
        np.testing.assert_array_equal(est.info["detail"]["eigenvalues"],
                                      ref.info["eigenvalues"])


@pytest.mark.parametrize("make, reason", [
    (lambda A: np.triu(A), "not symmetric"),
    (lambda A: np.where(np.eye(len(A), dtype=bool), np.nan, A), "finite"),
    (lambda A: A[:, :-1], "square"),
])
def test_auto_shortcut_leaves_bad_input_to_the_general_checks(make, reason):
    A = make(np.random.default_rng(0).standard_normal((20, 20)) + np.eye(20))
    A = 0.5 * (A + A.T) if reason == "finite" else A
    with pytest.raises(ValueError, match=reason):
        estimate_rank(A, method="auto")


def test_auto_weighs_the_sketch_against_densifying_an_operator():
    # an operator costs n products to densify, a sketch of a rank-40 matrix about 64
    G = np.random.default_rng(0).standard_normal((300, 40))
    est = estimate_rank(aslinearoperator(G @ G.T), method="auto", rng=1, rtol=1e-9)
    assert est.info["choice"] == "sketch" and est.matvecs < 300
    assert est.rank == 40 and est.interval == (40, 40) and est.converged


def test_auto_skips_exact_when_the_products_exceed_the_budget():
    G = np.random.default_rng(0).standard_normal((300, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = estimate_rank(aslinearoperator(G @ G.T), method="auto", rng=1, max_matvecs=250)
    assert est.info["choice"] != "exact" and est.matvecs <= 250
    assert est.interval[0] <= 40 <= est.interval[1]


def test_auto_picks_the_sketch_for_small_rank():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((300, 40))
    est = estimate_rank(G @ G.T, method="auto", rng=1, max_memory=NO_EXACT_300)
    assert est.method == "auto"
    assert est.info["choice"] == "sketch" and "pilot rank ~40" in est.info["reason"]
    assert est.rank == 40 and est.interval == (40, 40) and est.converged


def test_first_block_reveals_a_small_rank_without_a_pilot():
    rng = np.random.default_rng(3)
    n, r = 4000, 12
    G = rng.standard_normal((n, r))
    from scipy.sparse.linalg import aslinearoperator
    op = aslinearoperator(G) @ aslinearoperator(G.T)
    # n = 4000: a full-width sketch exceeds the default flop cap
    assert sketch_flops(n, n) > DEFAULT_MAX_FLOPS
    est = estimate_rank(op, rng=0)
    assert est.info["choice"] == "sketch" and "first sketch block" in est.info["reason"]
    assert est.rank == r and "langevin" not in est.info["pilot"]
    assert est.matvecs <= 3 + 32


def test_pilot_sends_a_mid_rank_to_the_sketch_and_a_flop_cap_to_langevin():
    H = LinearNetworkHessian.random_minimum(12, depth=5, rng=5)   # n = 720, rank 144
    no_exact = exact_bytes(720) - 1
    est = estimate_rank(H, rng=1, max_flops=5e8, max_memory=no_exact)  # full width too costly
    assert est.info["choice"] == "sketch" and "pilot rank" in est.info["reason"]
    assert est.rank == 144
    pilot = est.info["pilot"]
    assert pilot["first_block"]["rank"] == 32
    assert 0.5 * 144 < pilot["langevin"]["estimate"] < 1.5 * 144
    # counted once: probes + first block + pilot (in the pilot's count), then the sketch's growth
    assert est.matvecs == pilot["langevin"]["matvecs"] + est.info["detail"]["sketch_width"] - 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lang = estimate_rank(H, rng=1, max_flops=1e6, max_matvecs=6000, max_memory=no_exact)
    assert lang.info["choice"] == "langevin" and "flops" in lang.info["reason"]
    assert abs(lang.estimate - 144) <= 5 * lang.stderr + 0.01 * 144
    assert lang.matvecs <= 6000


def test_auto_falls_back_to_langevin_when_memory_is_short():
    rng = np.random.default_rng(1)
    n, r = 200, 150
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    A = U @ np.diag(np.linspace(1.0, 4.0, r)) @ U.T
    memory = sketch_bytes(n, 64, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = estimate_rank(A, method="auto", rng=2, max_memory=memory, max_matvecs=6000)
    assert est.info["choice"] == "langevin" and "memory" in est.info["reason"]
    assert est.info["pilot"]["fits"]["memory"] is False
    assert est.info["detail"]["scheme"] == "baoab"
    assert abs(est.estimate - r) <= 5 * est.stderr + 0.5
    assert est.matvecs <= 6000


def test_auto_rejects_bad_budgets():
    A = np.eye(4)
    with pytest.raises(ValueError, match="max_memory"):
        estimate_rank(A, method="auto", max_memory=0)
    with pytest.raises(ValueError, match="max_matvecs"):
        estimate_rank(A, method="auto", max_matvecs=0)
    with pytest.raises(ValueError, match="max_flops"):
        estimate_rank(A, method="auto", max_flops=-1.0)


def test_auto_sketch_uses_the_given_backend():
    from lmatrank.backends import NumpyBackend

    class CountingBackend(NumpyBackend):
        name = "counting-numpy"

        def __init__(self):
            self.blocks = 0

        def matmat(self, op, X):
            self.blocks += 1
            return super().matmat(op, X)

    rng = np.random.default_rng(31)
    B = rng.standard_normal((300, 40))
    A = B @ B.T  # rank 40
    backend = CountingBackend()
    res = estimate_rank(A, method="auto", rng=2, backend=backend, max_memory=NO_EXACT_300)
    plain = estimate_rank(A, method="auto", rng=2, max_memory=NO_EXACT_300)
    assert res.rank == plain.rank == 40
    assert backend.blocks > 0  # the sketch's products went through the backend
    assert res.matvecs == plain.matvecs
