"""as_operator: input normalisation, dtype rules, product counting, symmetry probe."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from lmatrank.operators import CountingOperator, SquaredOperator, as_operator, check_symmetric
from tests._matrices import psd_with_rank

SPARSE_FORMATS = ["csr", "csc", "coo", "bsr", "lil", "dok", "dia"]


@pytest.fixture
def matrix():
    A, _ = psd_with_rank(np.random.default_rng(0), 12, 5)
    return A


class DuckOperator:
    """Minimal operator-like object: shape, dtype and @ only."""

    def __init__(self, A):
        self.A = A
        self.shape = A.shape
        self.dtype = A.dtype

    def __matmul__(self, X):
        return self.A @ X


@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
def test_every_sparse_format_gives_the_dense_product(matrix, fmt, container):
    S = container(matrix).asformat(fmt)
    op = as_operator(S, rng=0)
    X = np.random.default_rng(1).standard_normal((12, 3))
    np.testing.assert_allclose(op.matmat(X), matrix @ X, rtol=1e-12, atol=1e-12)
    assert op.kind == "sparse"


@pytest.mark.parametrize("wrap", [np.asarray, aslinearoperator, DuckOperator, lambda A: A.tolist()])
def test_inputs_agree_and_products_are_counted(matrix, wrap):
    op = as_operator(wrap(matrix), check_symmetry=False)
    X = np.ones((12, 4))
    np.testing.assert_allclose(op.matmat(X), matrix @ X, rtol=1e-12)
    assert op.matvecs == 4
    op @ np.ones(12)
    assert op.matvecs == 5


def test_symmetry_probe_products_are_counted(matrix):
    op = as_operator(matrix, rng=0)
    assert op.matvecs == 3


@pytest.mark.parametrize("dtype, expected", [
    (np.float32, np.float32), (np.float64, np.float64), (np.int64, np.float64),
    (np.int8, np.float64), (bool, np.float64), (np.float16, np.float32),
    (">f4", np.float32), (">f8", np.float64), (">i4", np.float64)])
def test_dtype_rules(dtype, expected):
    op = as_operator(np.eye(4, dtype=dtype), rng=0)
    assert op.dtype == np.dtype(expected) and op.dtype.isnative
    assert op.matmat(np.ones((4, 2), dtype=expected)).dtype == np.dtype(expected)
    if np.dtype(dtype).isnative and np.dtype(dtype) != np.float16:  # scipy.sparse can't
        sparse = as_operator(sp.csr_array(np.eye(4, dtype=dtype)), rng=0)
        assert sparse.dtype == np.dtype(expected)


def test_precision_records_float16_input():
    assert as_operator(np.eye(4, dtype=np.float16), rng=0).precision == np.float16
    assert as_operator(np.eye(4, dtype=np.float16), dtype=np.float64, rng=0).precision == np.float64
    assert as_operator(np.eye(4, dtype=">f4"), rng=0).precision == np.float32


def test_non_finite_product_names_the_product():
    from scipy.sparse.linalg import LinearOperator
    calls = []

    def matmat(X):
        calls.append(X.shape[1])
        return X * (np.inf if len(calls) > 1 else 1.0)

    op = as_operator(LinearOperator((5, 5), matvec=lambda x: x, matmat=matmat), rng=0)
    assert op.matvecs == 3
    with pytest.raises(ValueError, match="non-finite values .* at product 5"):
        op.matmat(np.ones((5, 2)))


@pytest.mark.parametrize("shape", [(4.5, 4.5), (-1, -1), ("a", "a")])
def test_operator_shape_must_be_integral(shape):
    class Op:
        dtype = np.float64

        def __init__(self):
            self.shape = shape

        def matmat(self, X):
            return X

    with pytest.raises((ValueError, TypeError), match="shape"):
        as_operator(Op())


def test_symmetry_probe_scale_free_at_extreme_scales():
    A = np.diag([1.0, 0.5, 0.0])
    for k in (-1000, 1000):
        op = as_operator(np.ldexp(A, k), rng=0)
        assert np.isfinite(op.probe_norm) and op.probe_norm > 0
        assert np.isfinite(op.noise_floor)


def test_requested_dtype_overrides(matrix):
    assert as_operator(matrix, dtype=np.float32, rng=0).dtype == np.float32
    assert as_operator(sp.csr_array(matrix), dtype=np.float32, rng=0).dtype == np.float32


@pytest.mark.parametrize("bad, exc, match", [
    (np.ones((3, 4)), ValueError, "must be square"),
    (np.ones(4), ValueError, "must be 2-D"),
    (np.ones((2, 2, 2)), ValueError, "must be 2-D"),
    (np.ones((0, 0)), ValueError, "is empty"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), ValueError, "non-finite"),
    (np.array([[1.0, np.inf], [np.inf, 1.0]]), ValueError, "non-finite"),
    (sp.csr_array(np.array([[np.nan, 0.0], [0.0, 1.0]])), ValueError, "non-finite"),
    (np.eye(3, dtype=complex), TypeError, "complex"),
    (sp.eye(3, dtype=complex), TypeError, "complex"),
    (np.array([[1, 0], [0, "a"]], dtype=object), TypeError, "object arrays"),
    (np.array([[1.0, 2.0], [0.0, 1.0]]), ValueError, "not symmetric"),
    (sp.csr_array(np.array([[1.0, 2.0], [0.0, 1.0]])), ValueError, "not symmetric"),
    ("not a matrix", TypeError, "cannot use an object of type str"),
    (aslinearoperator(np.ones((3, 2))), ValueError, "must be square"),
])
def test_bad_inputs_are_refused(bad, exc, match):
    with pytest.raises(exc, match=match):
        as_operator(bad, rng=0)


def test_operator_returning_nan_is_refused():
    class Broken(DuckOperator):
        def __matmul__(self, X):
            return np.full_like(X, np.nan)

    with pytest.raises(ValueError, match="non-finite values"):
        as_operator(Broken(np.eye(3)), rng=0)


@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e12])
def test_symmetry_test_is_scale_invariant(matrix, scale):
    check_symmetric(as_operator(scale * matrix, check_symmetry=False), rng=0)
    skew = np.triu(np.ones((12, 12)), 1)
    with pytest.raises(ValueError, match="not symmetric"):
        as_operator(scale * (matrix + 1e-3 * skew), rng=0)


def test_symmetry_check_can_be_turned_off():
    op = as_operator(np.array([[1.0, 2.0], [0.0, 1.0]]), check_symmetry=False)
    assert op.matvecs == 0


def test_rounding_level_asymmetry_passes(matrix):
    noisy = matrix + 1e-15 * np.random.default_rng(3).standard_normal(matrix.shape)
    as_operator(noisy, rng=0)


def test_squared_operator_counts_two_products_on_the_base(matrix):
    base = as_operator(matrix, check_symmetry=False)
    sq = SquaredOperator(base)
    X = np.ones((12, 3))
    np.testing.assert_allclose(sq.matmat(X), matrix @ (matrix @ X), rtol=1e-12)
    assert base.matvecs == 6 and sq.matvecs == 6


def test_counting_operator_checks_block_shape(matrix):
    op = as_operator(matrix, check_symmetry=False)
    with pytest.raises(ValueError, match="expected a block of shape"):
        op.matmat(np.ones((5, 2)))


def test_fresh_wrapper_restarts_the_count(matrix):
    op = as_operator(matrix, check_symmetry=False)
    op.matmat(np.ones((12, 2)))
    again = as_operator(op, fresh=True, check_symmetry=False)
    assert isinstance(again, CountingOperator) and again.matvecs == 0
    assert as_operator(op) is op


def test_cpu_torch_tensors_are_accepted(matrix):
    torch = pytest.importorskip("torch")
    op = as_operator(torch.from_numpy(matrix), rng=0)
    X = np.ones((12, 2))
    np.testing.assert_allclose(op.matmat(X), matrix @ X, rtol=1e-12)
    assert op.dtype == np.float64 and op.matvecs == 5
