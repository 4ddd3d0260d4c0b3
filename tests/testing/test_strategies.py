"""lmatrank.testing strategies: the metadata (rank, inertia, eigenvalues, gap) is exact.

Every drawn problem is compared with ``eigvalsh`` of its dense form: the eigenvalues lie
within the reported rounding of the exact ones, no eigenvalue magnitude lies inside the gap,
and rank / inertia are the counts above the gap.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from scipy.sparse.linalg import LinearOperator

import lmatrank
from lmatrank.operators import KroneckerProduct, LinearNetworkHessian
from lmatrank.testing import (KnownSpectrum, as_dense, graph_laplacians, kronecker_operators,
                              linear_network_hessians, linear_operators, symmetric_matrices)

EXACT = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = st.sampled_from([np.float64, np.float32])


def assert_metadata_exact(p):
    M = as_dense(p.matrix)
    assert M.shape == (p.n, p.n) and M.dtype == p.dtype
    if isinstance(p.matrix, np.ndarray) or sp.issparse(p.matrix):
        np.testing.assert_array_equal(M, M.T)                        # stored symmetric
    else:                                                            # products: rounding
        assert np.linalg.norm(M - M.T, 2) <= 2 * p.rounding
    M = (M.astype(np.float64) + M.T.astype(np.float64)) / 2
    lam = np.linalg.eigvalsh(M)
    assert np.all(np.diff(p.eigenvalues) >= 0)                       # ascending
    assert np.max(np.abs(lam - p.eigenvalues)) <= p.rounding, p
    lo, hi = p.gap
    assert 0 < lo < hi
    mags = np.abs(lam)
    assert not np.any((mags > lo) & (mags < hi)), p                  # nothing inside the gap
    n_pos, n_neg, n_zero = p.inertia
    assert n_pos == np.count_nonzero(lam >= hi) == np.count_nonzero(lam > lo)
    assert n_neg == np.count_nonzero(lam <= -hi) == np.count_nonzero(lam < -lo)
    assert n_pos + n_neg + n_zero == p.n and p.rank == n_pos + n_neg
    for tau in (lo, p.threshold_in_gap(), np.nextafter(hi, 0)):
        assert p.count_above(tau) == p.rank == np.count_nonzero(mags > tau)


@EXACT
@given(symmetric_matrices(n=st.integers(1, 60), dtype=DTYPES))
def test_dense_metadata_matches_eigvalsh(p):
    assert isinstance(p.matrix, np.ndarray) and p.kind == "dense"
    assert_metadata_exact(p)


@EXACT
@given(symmetric_matrices(n=st.integers(1, 60), sparse=True, dtype=DTYPES))
def test_sparse_metadata_matches_eigvalsh(p):
    assert sp.issparse(p.matrix) and p.matrix.format == p.kind
    assert_metadata_exact(p)


@EXACT
@given(st.integers(0, 5), st.integers(1, 5), st.integers(0, 5), st.booleans(), DTYPES,
       st.data())
def test_indefinite_inertia_is_exact(n_pos, n_neg, n_zero, sparse, dtype, data):
    p = data.draw(symmetric_matrices(inertia=(n_pos, n_neg, n_zero), sparse=sparse,
                                     dtype=dtype))
    assert p.inertia == (n_pos, n_neg, n_zero) and p.rank == n_pos + n_neg
    assert_metadata_exact(p)


@settings(EXACT, max_examples=10)
@given(symmetric_matrices(n=st.integers(100, 200), dtype=DTYPES, condition=1e4, gap=10.0,
                          sparse=st.booleans()))
def test_larger_orders(p):
    assert_metadata_exact(p)


@EXACT
@given(symmetric_matrices(n=12, rank=5, psd=True, tail=False, condition=1e3, gap=1e4))
def test_psd_exact_zeros_condition_and_gap(p):
    lam = p.eigenvalues
    assert np.all(lam >= 0) and np.count_nonzero(lam) == 5 and p.inertia == (5, 0, 7)
    big = lam[lam > 0]
    assert big.max() / big.min() <= 1e3 * (1 + 1e-12)
    assert p.gap[1] / p.gap[0] >= 1e4
    assert_metadata_exact(p)


@EXACT
@given(graph_laplacians(n=st.integers(1, 40), dtype=DTYPES,
                        sparse=st.sampled_from([True, False, "csc"])))
def test_laplacian_rank_is_n_minus_components(p):
    assert p.kind == "laplacian"
    M = as_dense(p.matrix)
    np.testing.assert_array_equal(M.sum(axis=1), 0.0)                # exact row sums
    assert np.all(p.eigenvalues >= 0)
    n_zero = p.inertia[2]
    assert p.rank == p.n - n_zero and p.inertia[1] == 0
    assert_metadata_exact(p)


@settings(EXACT, max_examples=10)
@given(st.integers(1, 6), st.data())
def test_laplacian_components_as_requested(c, data):
    p = data.draw(graph_laplacians(n=st.integers(c, 12), components=c, weighted=True))
    assert p.inertia[2] == c and p.rank == p.n - c
    assert_metadata_exact(p)


@EXACT
@given(kronecker_operators(dtype=DTYPES))
def test_kronecker_spectrum_is_the_product_of_the_factor_spectra(p):
    assert isinstance(p.matrix, KroneckerProduct) and p.kind == "kronecker"
    assert p.matrix.theoretical_rank in (None, p.rank)
    assert_metadata_exact(p)


@settings(EXACT, max_examples=15)
@given(linear_network_hessians(d=st.integers(1, 3), depth=st.integers(1, 4), dtype=DTYPES))
def test_linear_network_rank_is_d_squared(p):
    H = p.matrix
    assert isinstance(H, LinearNetworkHessian)
    assert p.rank == H.d_x ** 2 == H.theoretical_rank and p.n == H.depth * H.d_x ** 2
    assert p.inertia == (p.rank, 0, p.n - p.rank)
    assert_metadata_exact(p)


@EXACT
@given(linear_operators(st.one_of(symmetric_matrices(sparse=st.booleans()), graph_laplacians(),
                                  kronecker_operators(), linear_network_hessians()),
                        dtype=np.float32))
def test_linear_operators_are_matvec_only_with_the_same_spectrum(p):
    L = p.matrix
    assert isinstance(L, LinearOperator) and L.dtype == np.float32
    assert p.kind.endswith("as LinearOperator")
    assert type(L).__name__ == "_CustomLinearOperator"              # matvec only
    assert_metadata_exact(p)


def test_draws_are_reproducible_and_shrink_to_small_simple_problems():
    from hypothesis import find

    def draws():
        out = []

        @settings(max_examples=10, derandomize=True, database=None, deadline=None)
        @given(symmetric_matrices(sparse=st.booleans()))
        def collect(p):
            out.append(p)
        collect()
        return out
    a, b = draws(), draws()
    assert len(a) == len(b)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(as_dense(p.matrix), as_dense(q.matrix))
        np.testing.assert_array_equal(p.eigenvalues, q.eigenvalues)
    # the minimal problem with rank >= 2 is a 2 x 2 with equal eigenvalues
    small = find(symmetric_matrices(), lambda p: p.rank >= 2,
                 settings=settings(database=None, derandomize=True))
    assert small.n == 2 and small.eigenvalues[0] == small.eigenvalues[1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n must be >= 1"),
    (dict(n=3, rank=4), "rank must lie in"),
    (dict(inertia=(0, 0, 0)), "inertia must be"),
    (dict(gap=1.0), "gap must be > 1"),
    (dict(condition=0.5), "condition must be >= 1"),
    (dict(dtype=np.int64), "dtype must be float32 or float64"),
    (dict(sparse="dok"), "sparse format must be one of"),
    (dict(n=5, rank=3, gap=1e30), "not resolvable"),
])
def test_bad_arguments_raise_invalid_argument(kwargs, match):
    @settings(max_examples=1, database=None)
    @given(symmetric_matrices(**kwargs))
    def draw(p):
        pass
    with pytest.raises(InvalidArgument, match=match):
        draw()


def test_known_spectrum_helpers():
    p = KnownSpectrum(np.diag([4.0, -1.0, 0.0]), np.array([-1.0, 0.0, 4.0]), (1e-3, 0.5),
                      1e-16, np.dtype(np.float64), "dense")
    assert (p.n, p.rank, p.inertia, p.lam_max) == (3, 2, (1, 1, 1), 4.0)
    assert p.count_above(2.0) == 1 and p.count_above(0.0) == 2
    assert p.threshold_in_gap(0) == pytest.approx(1e-3) and p.threshold_in_gap(1) == 0.5
    with pytest.raises(ValueError, match="where must lie in"):
        p.threshold_in_gap(2.0)
    assert "rank=2" in repr(p) and "inertia=(1, 1, 1)" in repr(p)


def test_linear_operators_needs_a_strategy():
    with pytest.raises(InvalidArgument, match="needs a strategy"):
        linear_operators(np.eye(3))


def test_import_lmatrank_does_not_import_the_testing_package():
    import subprocess
    import sys

    code = ("import sys, lmatrank; lmatrank.estimate_rank([[1.0]], method='exact'); "
            "print('lmatrank.testing' in sys.modules, 'hypothesis' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
    assert "testing" not in lmatrank.__all__
