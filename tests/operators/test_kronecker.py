"""Tests of the matrix-free Kronecker product (identity (26) of the paper)."""

import numpy as np
import pytest
import scipy.sparse as sp

from lmatrank.operators._base import as_operator
from lmatrank.operators._kronecker import KroneckerProduct

SEEDS = [0, 1, 2]


def _random_factor(rng, m, kind, dtype):
    """A square factor of order m: dense, or sparse in a given scipy format."""
    M = rng.standard_normal((m, m))
    if kind == "dense":
        return M.astype(dtype)
    M[rng.random((m, m)) < 0.5] = 0.0
    return sp.csr_matrix(M).asformat(kind).astype(dtype)


def _dense(F):
    if isinstance(F, KroneckerProduct):
        return np.kron(_dense(F.factors[0]), _dense(F.factors[1]))
    return F.toarray() if sp.issparse(F) else np.asarray(F)


def _leaf_orders(F):
    if isinstance(F, KroneckerProduct):
        return _leaf_orders(F.factors[0]) + _leaf_orders(F.factors[1])
    return [F.shape[0]]


def _assert_product_close(K, X, reference_matrix):
    """Compare K @ X with the float64 product of the exact Kronecker matrix.

    Elementwise rounding bound: each output entry is a two-stage (or, nested,
    multi-stage) sum over k = sum of the leaf orders terms, so
    |error| <= (k + 2) * eps * (|kron(A, B)| @ |X|) (standard gamma_k bound).
    """
    Y = K @ X
    assert Y.shape == X.shape and Y.dtype == K.dtype
    Xw = X.astype(K.dtype).astype(np.float64)
    ref = reference_matrix @ Xw
    k = sum(_leaf_orders(K))
    bound = (k + 2) * np.finfo(K.dtype).eps * (np.abs(reference_matrix) @ np.abs(Xw))
    assert np.all(np.abs(Y - ref) <= bound + np.finfo(np.float64).tiny)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kinds", [("dense", "dense"), ("csr", "dense"), ("dense", "coo"),
                                   ("csc", "csr")])
@pytest.mark.parametrize("ma,mb", [(1, 4), (3, 1), (3, 5), (6, 2)])
@pytest.mark.parametrize("b", [1, 7])
def test_matmat_matches_np_kron(seed, dtype, kinds, ma, mb, b):
    rng = np.random.default_rng(seed)
    A = _random_factor(rng, ma, kinds[0], dtype)
    B = _random_factor(rng, mb, kinds[1], dtype)
    K = KroneckerProduct(A, B)
    assert K.shape == (ma * mb, ma * mb)
    assert K.dtype == np.dtype(dtype)
    Kd = np.kron(_dense(A).astype(np.float64), _dense(B).astype(np.float64))
    X = rng.standard_normal((ma * mb, b))
    _assert_product_close(K, X, Kd)
    assert np.array_equal(K.todense(), np.kron(_dense(K.factors[0]), _dense(K.factors[1])))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["left", "right", "both", "deep"])
def test_nested_factors(seed, dtype, layout):
    rng = np.random.default_rng(seed)
    A, B, C, D = (_random_factor(rng, m, kind, dtype)
                  for m, kind in [(2, "dense"), (3, "csr"), (4, "dense"), (2, "coo")])
    if layout == "left":
        K = KroneckerProduct(KroneckerProduct(A, B), C)
    elif layout == "right":
        K = KroneckerProduct(C, KroneckerProduct(A, B))
    elif layout == "both":
        K = KroneckerProduct(KroneckerProduct(A, B), KroneckerProduct(C, D))
    else:
        K = KroneckerProduct(KroneckerProduct(KroneckerProduct(D, A), B), C)
    Kd = _dense(K).astype(np.float64)
    for b in (1, 5):
        X = rng.standard_normal((K.shape[0], b))
        _assert_product_close(K, X, Kd)
    assert np.allclose(K.todense(), Kd, rtol=0, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_index_convention_matches_np_kron(seed):
    """Column i*mb + j of the operator is column i*mb + j of np.kron(A, B)."""
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((3, 3)), rng.standard_normal((4, 4))
    K = KroneckerProduct(A, B)
    columns = K @ np.eye(12)
    assert np.allclose(columns, np.kron(A, B), rtol=1e-14, atol=1e-14)
    # identity (26), row-major form: kron(A, B) @ x == (A @ X @ B.T).ravel()
    x = rng.standard_normal(12)
    assert np.allclose(K @ x, (A @ x.reshape(3, 4) @ B.T).ravel(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("seed", SEEDS)
def test_vector_product_and_transpose(seed):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((2, 2)), rng.standard_normal((5, 5))
    K = KroneckerProduct(sp.csr_array(A), B)
    x = rng.standard_normal(10)
    y = K @ x
    assert y.shape == (10,)
    assert np.allclose(y, np.kron(A, B) @ x, rtol=1e-13, atol=1e-13)
    assert np.allclose(K.T @ x, np.kron(A, B).T @ x, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="vector or a 2-D block"):
        K @ np.ones((10, 1, 1))


def test_dtype_rules():
    i = np.eye(2, dtype=np.int64)
    f32 = np.eye(3, dtype=np.float32)
    assert KroneckerProduct(i, i).dtype == np.float64
    assert KroneckerProduct(f32, f32).dtype == np.float32
    assert KroneckerProduct(f32, np.eye(2)).dtype == np.float64
    assert KroneckerProduct(f32, np.eye(2, dtype=bool)).dtype == np.float64
    K = KroneckerProduct(f32, f32)
    assert (K @ np.ones(9)).dtype == np.float32           # float64 input, float32 operator
    assert KroneckerProduct(f32, f32, dtype=np.float64).dtype == np.float64
    # a float32 nested product inside a float64 one is promoted, not computed in float32
    nested = KroneckerProduct(KroneckerProduct(f32, f32), np.eye(2))
    assert nested.factors[0].dtype == np.float64


@pytest.mark.parametrize("seed", SEEDS)
def test_theoretical_rank(seed):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((5, 2))
    A = G @ G.T                                  # rank 2, order 5
    B = rng.standard_normal((3, 3))              # rank 3
    K = KroneckerProduct(A, B)
    assert K.theoretical_rank == 6
    assert np.linalg.matrix_rank(K.todense()) == 6
    assert KroneckerProduct(K, np.eye(2)).theoretical_rank == 12
    assert KroneckerProduct(sp.csr_array(A), B).theoretical_rank is None


def test_symmetric_factors_pass_as_operator():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    B = rng.standard_normal((3, 3))
    K = KroneckerProduct(A + A.T, sp.csr_array(B @ B.T))
    op = as_operator(K, rng=1)
    assert op.shape == (12, 12) and op.dtype == np.float64
    Y = op.matmat(np.eye(12)[:, :4])
    assert op.matvecs == 3 + 4                    # 3 symmetry probes + the block
    assert np.allclose(Y, K.todense()[:, :4])


def test_bad_inputs():
    good = np.eye(2)
    with pytest.raises(ValueError, match="factor A must be square"):
        KroneckerProduct(np.ones((2, 3)), good)
    with pytest.raises(ValueError, match="factor B must be 2-D"):
        KroneckerProduct(good, np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="factor B must be square"):
        KroneckerProduct(good, sp.csr_array(np.ones((2, 3))))
    with pytest.raises(ValueError, match="empty"):
        KroneckerProduct(np.ones((0, 0)), good)
    with pytest.raises(TypeError, match="complex"):
        KroneckerProduct(good + 0j, good)
    with pytest.raises(TypeError, match="complex"):
        KroneckerProduct(good, sp.csr_array(good + 1j))
    with pytest.raises(TypeError, match="object"):
        KroneckerProduct(np.array([[1, None], [None, 1]], dtype=object), good)
    with pytest.raises(TypeError, match="must be an ndarray, a scipy.sparse matrix"):
        KroneckerProduct("abc", good)
    bad = good.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="factor A contains non-finite"):
        KroneckerProduct(bad, good)
    with pytest.raises(ValueError, match="factor B contains non-finite"):
        KroneckerProduct(good, sp.csr_array(np.array([[np.inf, 0.0], [0.0, 1.0]])))
    K = KroneckerProduct(good, good)
    with pytest.raises(ValueError, match=r"block of shape \(4, b\)"):
        K.matmat(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"block of shape \(4, b\)"):
        K.matmat(np.ones(4))
    big = KroneckerProduct(sp.eye_array(200), sp.eye_array(101))
    with pytest.raises(ValueError, match="todense\\(\\) refused"):
        big.todense()


def test_to_device_runs_the_host_product_on_moved_factors():
    # the device copy (here numpy stands in for the device namespace) moves every leaf factor
    # once with the backend's `move` and computes exactly the host product
    rng = np.random.default_rng(11)
    A = rng.standard_normal((3, 3))
    C = sp.random(4, 4, density=0.5, random_state=2, format="csr")
    K = KroneckerProduct(KroneckerProduct(A, C), A.T)
    moved = []

    def move(F):
        moved.append(type(F).__name__)
        return F
    dev = K.to_device(np, move)
    assert sorted(moved) == ["csr_array", "ndarray", "ndarray"]
    assert dev.shape == K.shape and dev.dtype == K.dtype
    X = rng.standard_normal((K.shape[0], 5))
    np.testing.assert_array_equal(dev.matmat(X), K @ X)
