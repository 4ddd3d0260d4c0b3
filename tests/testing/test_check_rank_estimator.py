"""check_rank_estimator: passes a correct rank function, fails wrong ones with a shrunk
counterexample (numpy's matrix_rank passes; scipy's interpolative estimate_rank through a
LinearOperator reports rank + 1 and is caught on a 2 x 2 matrix)."""

import re

import numpy as np
import pytest
import scipy.linalg.interpolative as sli
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from lmatrank import RankEstimate
from lmatrank.testing import as_dense, check_rank_estimator
from lmatrank.testing._conformance import CHECKS


def numpy_rank(A, rtol=None, atol=None):
    """numpy.linalg.matrix_rank (numpy 2: absolute `tol`) as ``func(A, rtol=, atol=)``."""
    M = as_dense(A).astype(np.float64)
    lam_max = float(np.abs(np.linalg.eigvalsh(M)).max())
    if rtol is None and atol is None:
        return int(np.linalg.matrix_rank(M, hermitian=True))
    return int(np.linalg.matrix_rank(M, tol=max(atol or 0.0, (rtol or 0.0) * lam_max),
                                     hermitian=True))


def scipy_id_rank(A, rtol=None, atol=None):
    """scipy.linalg.interpolative.estimate_rank through a LinearOperator (`eps` relative)."""
    L = A if isinstance(A, LinearOperator) else aslinearoperator(A)
    eps = rtol or 0.0
    if atol:
        norm = sli.estimate_spectral_norm(L)
        if norm == 0:
            return 0
        eps = max(eps, atol / norm)
    return int(sli.estimate_rank(L, eps))


def test_numpy_matrix_rank_passes_every_check():
    check_rank_estimator(numpy_rank, max_examples=8)


def test_scipy_interpolative_fails_with_a_shrunk_counterexample():
    with pytest.raises(AssertionError) as info:
        check_rank_estimator(scipy_id_rank, max_examples=8)
    message = str(info.value)
    assert "check 'rtol' failed" in message
    # shrunk to the smallest matrix it gets wrong: order 2, rank 1, answered 2
    assert re.search(r"rank 2 != 1; check 'rtol': dense matrix of order n=2", message), message
    assert "true rank 1" in message and "got 2" in message and "threshold" in message


def test_off_by_one_is_shrunk_to_the_zero_matrix_of_order_one():
    with pytest.raises(AssertionError, match=r"rank 1 != 0.*order n=1"):
        check_rank_estimator(lambda A, rtol=None, atol=None: numpy_rank(A, rtol, atol) + 1,
                             max_examples=10, checks=["atol"])


def test_counting_signed_eigenvalues_fails_the_indefinite_check():
    def positive_only(A, rtol=None, atol=None):
        lam = np.linalg.eigvalsh(as_dense(A).astype(np.float64))
        tau = max(atol or 0.0, (rtol or 0.0) * np.abs(lam).max())
        return int(np.count_nonzero(lam > tau))
    with pytest.raises(AssertionError, match="check 'indefinite' failed"):
        check_rank_estimator(positive_only, checks=["indefinite"], max_examples=10)


def test_a_function_ignoring_atol_fails():
    with pytest.raises(AssertionError, match="check 'atol' failed"):
        check_rank_estimator(lambda A, rtol=None, atol=None: numpy_rank(A, rtol=rtol),
                             checks=["atol"], max_examples=10)


def test_exceptions_become_assertion_errors_naming_the_problem():
    def fussy(A, rtol=None, atol=None):
        if isinstance(A, LinearOperator):
            raise TypeError("no operators")
        return numpy_rank(A, rtol, atol)
    with pytest.raises(AssertionError, match="raised TypeError: no operators.*order n=1"):
        check_rank_estimator(fussy, checks=["LinearOperator"], max_examples=5)


def _estimate(rank, *, threshold, interval, converged=True):
    return RankEstimate(rank=rank, estimate=float(rank), stderr=0.0, threshold=threshold,
                        matvecs=1, method="test", converged=converged, interval=interval)


def test_rank_estimate_contract_fields_are_checked():
    def threshold_of(A, rtol, atol):
        lam_max = float(np.abs(np.linalg.eigvalsh(as_dense(A).astype(float))).max())
        return max(atol or 0.0, (rtol or 0.0) * lam_max)

    def honest(A, rtol=None, atol=None):
        r = numpy_rank(A, rtol, atol)
        return _estimate(r, threshold=threshold_of(A, rtol, atol), interval=(r, r))
    check_rank_estimator(honest, max_examples=5)

    def wrong_threshold(A, rtol=None, atol=None):
        r = numpy_rank(A, rtol, atol)
        return _estimate(r, threshold=2 * threshold_of(A, rtol, atol), interval=(r, r))
    with pytest.raises(AssertionError, match="threshold .* is not the requested"):
        check_rank_estimator(wrong_threshold, max_examples=5, checks=["rtol"])

    def bracket_misses(A, rtol=None, atol=None):
        r = numpy_rank(A, rtol, atol)
        return _estimate(r + 1, threshold=threshold_of(A, rtol, atol), interval=(r + 1, r + 2),
                         converged=False)
    with pytest.raises(AssertionError, match=r"interval \(1, 2\) misses the true rank 0"):
        check_rank_estimator(bracket_misses, max_examples=5, checks=["rtol"], exact=False)

    def overconfident(A, rtol=None, atol=None):
        r = numpy_rank(A, rtol, atol)
        return _estimate(r + 1, threshold=threshold_of(A, rtol, atol), interval=(r, r + 1))
    with pytest.raises(AssertionError, match="converged=True but rank 1 != 0"):
        check_rank_estimator(overconfident, max_examples=5, checks=["rtol"], exact=False)

    def honest_bracket(A, rtol=None, atol=None):
        r = numpy_rank(A, rtol, atol)
        return _estimate(r + 1, threshold=threshold_of(A, rtol, atol), interval=(r, r + 1),
                         converged=False)
    check_rank_estimator(honest_bracket, max_examples=5, checks=["rtol"], exact=False)
    with pytest.raises(AssertionError, match="rank 1 != 0"):
        check_rank_estimator(honest_bracket, max_examples=5, checks=["rtol"])


def test_reproducibility_is_checked_when_func_takes_rng():
    calls = []

    def drifting(A, rtol=None, atol=None, rng=None):
        calls.append(rng)
        return numpy_rank(A, rtol, atol) + (len(calls) % 2 == 0)
    with pytest.raises(AssertionError):
        check_rank_estimator(drifting, checks=["reproducible"], max_examples=3)
    assert all(isinstance(seed, int) for seed in calls)

    def seeded(A, rtol=None, atol=None, rng=None):
        return numpy_rank(A, rtol, atol)
    check_rank_estimator(seeded, checks=["reproducible"], max_examples=3)


def test_bad_arguments():
    with pytest.raises(TypeError, match="func must be callable"):
        check_rank_estimator(3)
    with pytest.raises(ValueError, match="unknown check"):
        check_rank_estimator(numpy_rank, checks=["nope"])
    with pytest.raises(ValueError, match="max_n must be an integer >= 1"):
        check_rank_estimator(numpy_rank, max_n=0)
    assert set(CHECKS) >= {"rtol", "atol", "indefinite", "float32", "sparse", "LinearOperator",
                           "reproducible"}
