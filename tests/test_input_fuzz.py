"""Hypothesis fuzz of the input layer of ``estimate_rank``.

Shapes, dtypes (both byte orders), dense and sparse formats (including malformed index
arrays), scales from 2**-1000 to 2**1000, non-finite entries and operators that fail
after k products. Every call must end in a correct answer (``method="exact"``, compared
with ``numpy.linalg.matrix_rank(hermitian=True)`` at the reported threshold) or in
ValueError / TypeError / an lmatrank error: never another exception.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator

import lmatrank
from lmatrank import estimate_rank

ALLOWED = (ValueError, TypeError, lmatrank.DivergenceError)
DTYPES = ["<f8", ">f8", "<f4", ">f4", "<f2", "<i8", ">i4", "bool", "complex128", "object"]
FORMATS = ["dense", "csr", "csc", "coo", "bsr", "dia", "lil", "dok", "operator",
           "malformed", "failing", "list"]


@st.composite
def matrices(draw):
    n = draw(st.integers(1, 6))
    r = draw(st.integers(0, n))
    B = np.array(draw(st.lists(st.integers(-3, 3), min_size=n * r, max_size=n * r)),
                 dtype=np.float64).reshape(n, r)
    signs = np.array(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=r, max_size=r)))
    A = (B * signs) @ B.T  # integer entries: exact in every dtype below
    k = draw(st.integers(-1000, 1000))
    dtype = draw(st.sampled_from(DTYPES))
    fmt = draw(st.sampled_from(FORMATS))
    poison = draw(st.sampled_from([None, None, None, np.nan, np.inf]))
    after = draw(st.integers(0, 10))
    shape_ok = draw(st.sampled_from([True, True, True, False]))
    return dict(A=A, k=k, dtype=dtype, fmt=fmt, poison=poison, after=after, shape_ok=shape_ok,
                bad_index=draw(st.integers(-5, 50)))


def _build(case):
    A = case["A"]
    if np.dtype(case["dtype"]).kind == "f":
        with np.errstate(over="ignore", under="ignore"):
            A = np.ldexp(A, case["k"])
    with np.errstate(over="ignore", invalid="ignore"):
        arr = A.astype(case["dtype"]) if case["dtype"] != "object" else A.astype(object)
    if case["poison"] is not None and arr.size and arr.dtype.kind == "f":
        arr = arr.copy()
        arr.flat[0] = case["poison"]
    if not case["shape_ok"]:
        arr = arr[:, :-1] if arr.shape[1] > 1 else arr.ravel()
    fmt = case["fmt"]
    if fmt == "dense":
        return arr
    if fmt == "list":
        return arr.tolist()
    if fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok"):
        if arr.dtype.kind not in "biuf" or not arr.dtype.isnative or arr.dtype == np.float16 \
                or arr.ndim != 2:
            return arr
        return sp.csr_array(arr).asformat(fmt)
    if fmt == "malformed":
        if arr.ndim != 2 or arr.dtype.kind not in "fiub" or not arr.dtype.isnative \
                or arr.dtype == np.float16:
            return arr
        M = sp.csr_array(arr)
        if M.nnz:
            M.indices[-1] = case["bad_index"]
        else:
            M.indptr = M.indptr.copy()
            M.indptr[-1] = abs(case["bad_index"]) + 1
        return M
    dense = np.asarray(arr, dtype=np.float64) if arr.dtype.kind in "biuf" else arr
    if dense.ndim != 2 or dense.dtype.kind != "f":
        return dense
    count = [0]

    def matmat(X):
        count[0] += X.shape[1]
        Y = dense @ X
        if fmt == "failing" and count[0] > case["after"]:
            Y[0, 0] = np.nan
        return Y

    op = LinearOperator(dense.shape, matvec=lambda x: matmat(x[:, None])[:, 0],
                        matmat=matmat, dtype=np.float64)
    op.reference = dense  # the truth, without spending (or poisoning) another product
    return op


def _reference(matrix):
    if isinstance(matrix, LinearOperator):
        return matrix.reference
    if sp.issparse(matrix):
        return matrix.toarray().astype(np.float64)
    return np.asarray(matrix, dtype=np.float64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrices(), st.sampled_from(["exact", "exact", "sketch"]))
def test_input_layer_answers_right_or_refuses_cleanly(case, method):
    matrix = _build(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = estimate_rank(matrix, method=method, rng=0)
        except ALLOWED:
            return
    assert np.isfinite(est.threshold) and est.threshold >= 0
    if method != "exact":
        assert 0 <= est.rank <= np.shape(matrix)[0]
        return
    dense = _reference(matrix)
    eigs = np.abs(np.linalg.eigvalsh(dense))
    tol = est.threshold
    if np.any(np.abs(eigs - tol) <= 1e-6 * max(tol, eigs.max(initial=0.0))):
        return  # an eigenvalue on the threshold: either count is right
    assert est.rank == np.linalg.matrix_rank(dense, tol=tol, hermitian=True)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([0, 1, 2, 5, 9, 40]), st.sampled_from([np.nan, np.inf, -np.inf]),
       st.sampled_from(["exact", "slq", "sketch", "chebyshev"]))
def test_operator_failing_after_k_products_is_named(after, value, method):
    A = np.diag([3.0, 2.0, 1.0, 0.0, 0.0, 0.0])
    count = [0]

    def matmat(X):
        count[0] += X.shape[1]
        Y = A @ X
        if count[0] > after:
            Y[-1, -1] = value
        return Y

    op = LinearOperator(A.shape, matvec=lambda x: A @ x, matmat=matmat, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = estimate_rank(op, method=method, rng=0)
        except ValueError as exc:
            assert "non-finite values" in str(exc) or isinstance(exc, lmatrank.BudgetError), exc
            return
    assert count[0] <= after, "a run that met non-finite products returned a number"
    assert est.rank == 3 or method != "exact"


@pytest.mark.parametrize("k", [-1000, 1000])
def test_scale_fuzz_boundaries_bit_identical(k):
    A = np.diag([0.75, 0.5, 0.0, 0.0])
    a = estimate_rank(np.ldexp(A, k), method="exact")
    b = estimate_rank(np.ldexp(A, -k), method="exact")
    assert a.rank == b.rank == 2 and a.threshold == np.ldexp(b.threshold, 2 * k)
