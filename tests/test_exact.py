"""method="exact": the common threshold rule, rounding-aware interval, product-noise floor."""

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator

from lmatrank import estimate_rank


def low_rank(n, r, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    return scale * (U * rng.uniform(1.0, 10.0, r)) @ U.T


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_threshold_is_numpys_for_the_input_precision(dtype):
    A = low_rank(80, 9, 0).astype(dtype)
    est = estimate_rank(A, method="exact")
    assert est.rank == np.linalg.matrix_rank(A, hermitian=True) == 9
    lam_max = np.abs(np.linalg.eigvalsh(A.astype(np.float64))).max()
    assert est.threshold == pytest.approx(80 * np.finfo(dtype).eps * lam_max, rel=1e-6)
    assert est.info["threshold_source"] == "numpy default"
    assert est.interval == (9, 9) and est.converged and est.resolution < est.threshold


def test_rtol_and_atol_follow_the_numpy_convention():
    A = np.diag([4.0, 1.0, 1e-3, 1e-7, 0.0])
    assert estimate_rank(A, method="exact", rtol=1e-4).rank == 3
    est = estimate_rank(A, method="exact", rtol=1e-4, atol=0.5)
    assert est.rank == 2 and est.threshold == 0.5 and est.info["threshold_source"] == "atol"


def test_noisy_products_raise_the_default_threshold_to_their_noise():
    # a LinearOperator whose products carry unstructured noise far above n eps (as autodiff
    # Hessian-vector products do): its tiny eigenvalues are noise, not rank
    A = low_rank(60, 7, 1)
    rng = np.random.default_rng(2)
    noise = 3e-13 * rng.standard_normal((60, 60))
    op = LinearOperator((60, 60), matvec=lambda x: A @ x + noise @ x,
                        matmat=lambda X: A @ X + noise @ X, dtype=np.float64)
    est = estimate_rank(op, method="exact", check_symmetry=True, rng=0)
    assert est.info["threshold_source"] == "product noise"
    assert est.threshold > np.linalg.norm(noise, 2) / 4
    assert est.rank == 7


def test_threshold_below_eigvalsh_rounding_is_not_claimed_resolved():
    A = low_rank(50, 5, 3) + np.diag(np.full(50, 1e-17))
    est = estimate_rank(A, method="exact", atol=1e-18)
    assert est.resolution > est.threshold
    lo, hi = est.interval
    assert lo <= est.rank <= hi
    assert not est.converged and hi - lo > 0
