"""Numba backend against the numpy reference (small sizes; compilation is cached)."""

import itertools
import math
import sys

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

import lmatrank
from lmatrank.backends import NumpyBackend, get_backend
from lmatrank.backends._numba import PARALLEL_MIN_ENTRIES, ROUNDING_RATIO_WARN, NumbaBackend
from lmatrank.operators import SquaredOperator, as_operator, as_preconditioner

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def _splitmix_reference(key, counter):
    """Pure-Python SplitMix64 output `counter` for seed `key` (the documented layout)."""
    z = (key + (counter + 1) * _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _random_laplacian(n, degree, rng, dtype=np.float64):
    """Graph Laplacian of a random graph (PSD, rank n - #components)."""
    m = n * degree // 2
    rows, cols = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = rows != cols
    W = sp.coo_array((np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(n, n)).tocsr()
    W = ((W + W.T) > 0).astype(np.float64)
    L = sp.diags_array(np.asarray(W.sum(axis=1)).ravel()) - W
    return sp.csr_array(L, dtype=dtype)


def _low_rank_sparse(n, rank, rng, dtype=np.float64):
    """Symmetric PSD sparse matrix of known rank with eigenvalues in [0.2, 1]:
    a block diagonal of random 10x10 blocks, symmetrically permuted."""
    blocks, left = [], rank
    while left > 0:
        r = min(5, left)
        Q = np.linalg.qr(rng.standard_normal((10, 10)))[0][:, :r]
        blocks.append((Q * rng.uniform(0.2, 1.0, r)) @ Q.T)
        left -= r
    M = sp.block_diag(blocks, format="csr")
    M = sp.block_diag([M, sp.csr_array((n - M.shape[0], n - M.shape[0]))], format="csr")
    p = rng.permutation(n)
    return sp.csr_array(M[p][:, p], dtype=dtype), rank


@pytest.fixture(scope="module")
def be():
    return NumbaBackend(reorder=False)


# ------------------------------------------------------------------ factory
def test_factory_and_auto_choice():
    assert isinstance(get_backend("numba"), NumbaBackend)
    assert get_backend(None).name == "numba"
    assert "numba" in lmatrank.backends.available_backends()


def test_factory_raises_importerror_without_numba(monkeypatch):
    from lmatrank.backends import _FACTORIES
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "lmatrank.backends._numba")
    monkeypatch.delitem(sys.modules, "lmatrank.backends._numba_kernels")
    with pytest.raises(ImportError):
        _FACTORIES["numba"]()
    assert get_backend(None).name == "numpy"  # auto falls back
    with pytest.raises(ValueError, match="backend 'numba' is not available"):
        get_backend("numba")


def test_kernels_compile_without_a_writable_cache_location():
    """Numba refuses cache=True where no cache directory can be written (here: a function
    without a source file); the kernels' decorator then compiles without the disk cache
    instead of making the backend unimportable."""
    from lmatrank.backends._numba_kernels import _jit

    namespace = {}
    exec(compile("def twice(x):\n    return 2 * x\n", "<no file>", "exec"), namespace)
    with pytest.raises(RuntimeError, match="no locator available"):
        numba.njit(cache=True)(namespace["twice"])
    twice = _jit()(namespace["twice"])
    assert twice(21) == 42
    assert type(twice._cache).__name__ == "NullCache"


def test_kernels_are_cached_on_disk():
    from lmatrank.backends import _numba_kernels as k

    assert type(k.em_kernel._cache).__name__ == "FunctionCache"
    assert type(k._em_rows._cache).__name__ == "FunctionCache"


def test_bad_options(be):
    with pytest.raises(ValueError, match="reorder must be"):
        NumbaBackend(reorder="yes")
    with pytest.raises(ValueError, match="fuse must be"):
        NumbaBackend(fuse="sometimes")
    with pytest.raises(ValueError, match="unknown noise kind"):
        be.noise(np.random.default_rng(0), (4, 2), "uniform", np.float64)
    op = as_operator(sp.eye_array(4, format="csr"), check_symmetry=False)
    with pytest.raises(ValueError, match="expected a block of shape"):
        be.matmat(op, np.ones((3, 2)))


# ------------------------------------------------------------------ products
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reorder", [False, True])
# widths: the single-column kernel, masked chunks only, one full chunk, a full chunk plus a
# masked one, four-chunk groups, and groups plus full and masked chunks
@pytest.mark.parametrize("b", [1, 2, 7, 8, 13, 32, 70])
def test_csr_product_matches_scipy(dtype, reorder, b):
    rng = np.random.default_rng(b)
    A = _random_laplacian(500, 6, rng, dtype)
    op = as_operator(A, check_symmetry=False)
    be = NumbaBackend(reorder=reorder)
    X = rng.standard_normal((500, b)).astype(dtype)
    Y = be.matmat(op, X)
    expected = A.astype(np.float64) @ X.astype(np.float64)
    tol = 50 * np.finfo(dtype).eps * (abs(A) @ abs(X.astype(np.float64))).max()
    assert Y.dtype == dtype and Y.shape == (500, b)
    np.testing.assert_allclose(Y, expected, rtol=0, atol=tol)
    assert op.matvecs == b
    assert be.sparse_plan(op).info["permuted"] is reorder


def test_csr_product_int64_indices_and_out(be):
    rng = np.random.default_rng(1)
    A = _random_laplacian(300, 4, rng)
    A.indices = A.indices.astype(np.int64)
    A.indptr = A.indptr.astype(np.int64)
    op = as_operator(A, check_symmetry=False)
    X = rng.standard_normal((300, 5))
    out = np.empty_like(X)
    assert be.matmat(op, X, out=out) is out
    np.testing.assert_allclose(out, A @ X, atol=1e-12)


def test_dense_squared_and_generic_products(be):
    rng = np.random.default_rng(2)
    D = rng.standard_normal((40, 40))
    D = D + D.T
    X = rng.standard_normal((40, 3))
    dense = as_operator(D, check_symmetry=False)
    out = np.empty_like(X)
    np.testing.assert_allclose(be.matmat(dense, X, out=out), D @ X, atol=1e-12)
    squared = SquaredOperator(as_operator(sp.csr_array(D), check_symmetry=False))
    np.testing.assert_allclose(be.matmat(squared, X), D @ (D @ X), atol=1e-10)
    assert squared.matvecs == 6
    generic = as_operator(aslinearoperator(D), check_symmetry=False)
    np.testing.assert_allclose(be.matmat(generic, X), D @ X, atol=1e-12)
    assert generic.matvecs == 3


def test_reorder_auto_decision():
    """RCM restores the locality of a randomly numbered grid; the natural grid order
    is already local and a random expander graph has no local order to find."""
    rng = np.random.default_rng(3)
    side = 300  # 2-D grid Laplacian, nnz ~ 450,000
    T = sp.diags_array([-np.ones(side - 1), 2 * np.ones(side), -np.ones(side - 1)],
                       offsets=[-1, 0, 1])
    grid = sp.csr_array(sp.kronsum(T, T))
    p = rng.permutation(side * side)
    shuffled = as_operator(sp.csr_array(grid[p][:, p]), check_symmetry=False)
    natural = as_operator(grid, check_symmetry=False)
    expander = as_operator(_random_laplacian(60_000, 10, rng), check_symmetry=False)
    be = NumbaBackend(reorder="auto")
    info = {name: be.sparse_plan(op).info
            for name, op in [("shuffled", shuffled), ("natural", natural), ("expander", expander)]}
    assert info["shuffled"]["permuted"], info
    assert info["shuffled"]["mean_distance_after"] * 4 <= info["shuffled"]["mean_distance_before"]
    assert not info["natural"]["permuted"], info
    assert not info["expander"]["permuted"], info
    X = rng.standard_normal((side * side, 4))
    np.testing.assert_allclose(be.matmat(shuffled, X), shuffled.matrix @ X, atol=1e-10)


# ------------------------------------------------------------------ noise
def test_counter_noise_layout_is_splitmix64(be):
    key = 0x1234_5678_9ABC_DEF0
    R = be.counter_noise(key, (5, 70), "rademacher")
    for i, c in [(0, 0), (0, 63), (0, 64), (3, 5), (4, 69)]:
        word = _splitmix_reference(key, i * 2 + c // 64)
        assert R[i, c] == (-1.0 if (word >> (c % 64)) & 1 else 1.0)
    G = be.counter_noise(key, (3, 5), "gaussian")
    for i, c in [(0, 0), (0, 1), (2, 4)]:
        word = _splitmix_reference(key, i * 3 + c // 2)
        u1 = ((word >> 32) + 0.5) / 2**32
        u2 = ((word & 0xFFFFFFFF) + 0.5) / 2**32
        trig = math.cos if c % 2 == 0 else math.sin
        assert G[i, c] == pytest.approx(math.sqrt(-2 * math.log(u1)) * trig(2 * math.pi * u2),
                                        rel=1e-12, abs=1e-12)


def test_noise_deterministic_for_rng(be):
    a = be.noise(np.random.default_rng(7), (100, 3), "gaussian", np.float64)
    b = be.noise(np.random.default_rng(7), (100, 3), "gaussian", np.float64)
    c = be.noise(np.random.default_rng(8), (100, 3), "gaussian", np.float64)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert be.noise(np.random.default_rng(7), (10,), "rademacher", np.float32).shape == (10,)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_noise_moments_and_correlations(be, kind):
    n, b = 20_000, 16
    X = be.noise(np.random.default_rng(11), (n, b), kind, np.float64)
    Y = be.noise(np.random.default_rng(12), (n, b), kind, np.float64)
    N = X.size
    assert abs(X.mean()) < 5 / math.sqrt(N)
    if kind == "rademacher":
        assert set(np.unique(X)) == {-1.0, 1.0}
    else:
        # Var of x^2 is 2, of x^4 is 96 for a standard normal
        assert abs((X**2).mean() - 1) < 5 * math.sqrt(2 / N)
        assert abs((X**4).mean() - 3) < 5 * math.sqrt(96 / N)
    var = (X**2).mean()
    bound = 5 / math.sqrt(n * b)  # one correlation from ~N pairs has sd 1/sqrt(pairs)
    lag_rows = (X[1:] * X[:-1]).mean() / var
    lag_cols = (X[:, 1:] * X[:, :-1]).mean() / var
    cross_key = (X * Y).mean() / var
    assert abs(lag_rows) < bound and abs(lag_cols) < bound and abs(cross_key) < bound
    # every pair of chains (columns) uncorrelated: b(b-1)/2 tests, Bonferroni-style margin
    C = (X.T @ X) / n / var
    off = C[~np.eye(b, dtype=bool)]
    assert np.abs(off).max() < 6 / math.sqrt(n)


# ------------------------------------------------------------------ steps vs reference
class _FixedNoise(NumpyBackend):
    """The numpy reference driven by a given noise block."""

    def __init__(self, xi):
        self.xi = xi

    def noise(self, gen, shape, kind, dtype):
        return self.xi.astype(dtype)


# Each combination of options is a kernel of its own (a few seconds to compile): the default
# run takes a set of combinations holding every pair of option values, -m slow all of them.
_UPDATE_OPTIONS = list(itertools.product([np.float64, np.float32], ["rademacher", "gaussian"],
                                         [False, True]))
_UPDATE_PAIRS = [(np.float64, "rademacher", False), (np.float64, "gaussian", True),
                 (np.float32, "rademacher", True), (np.float32, "gaussian", False)]


def _covers_all_pairs(rows, options):
    """Every pair of values of two different options occurs in some row of `rows`."""
    width = len(options[0])
    for a, b in itertools.combinations(range(width), 2):
        wanted = {(row[a], row[b]) for row in options}
        if wanted - {(row[a], row[b]) for row in rows}:
            return False
    return True


def _split_slow(options, fast):
    return [pytest.param(*row, marks=() if row in fast else pytest.mark.slow)
            for row in options]


@pytest.mark.parametrize(("dtype", "kind", "diagonal"), _split_slow(_UPDATE_OPTIONS, _UPDATE_PAIRS))
def test_em_update_equals_reference_with_same_noise(be, dtype, kind, diagonal):
    rng = np.random.default_rng(5)
    n, b = 257, 6
    precond = as_preconditioner(rng.uniform(0.5, 2, n) if diagonal else None, n, dtype)
    theta = rng.standard_normal((n, b)).astype(dtype)
    s_theta = rng.standard_normal((n, b)).astype(dtype)
    mine = theta.copy()
    quad, gnorm = be.em_update(mine, s_theta, eta=0.3, noise_std=0.7, precond=precond,
                               noise=kind, gen=np.random.default_rng(9))
    xi = be.counter_noise(be.last_key, (n, b), kind)
    ref = theta.copy()
    quad_ref, gnorm_ref = _FixedNoise(xi).em_update(ref, s_theta, eta=0.3, noise_std=0.7,
                                                     precond=precond, noise=kind, gen=None)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(mine, ref, rtol=0, atol=20 * eps)
    np.testing.assert_allclose(quad, quad_ref, rtol=1e-12 if dtype == np.float64 else 1e-5)
    np.testing.assert_allclose(gnorm, gnorm_ref, rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert quad.dtype == np.float64


@pytest.mark.parametrize(("reorder", "diagonal"), [
    (False, False), (True, True),
    pytest.param(False, True, marks=pytest.mark.slow),
    pytest.param(True, False, marks=pytest.mark.slow)])
def test_fused_em_step_equals_product_plus_update(reorder, diagonal):
    rng = np.random.default_rng(6)
    n, b = 400, 8
    op = as_operator(_random_laplacian(n, 6, rng), check_symmetry=False)
    precond = as_preconditioner(rng.uniform(0.5, 2, n) if diagonal else None, n)
    fused, plain = NumbaBackend(reorder=reorder, fuse=True), NumbaBackend(reorder=False)
    theta = rng.standard_normal((n, b))
    gen_a, gen_b = np.random.default_rng(1), np.random.default_rng(1)
    state = theta.copy()
    for _ in range(3):
        state, quad, gnorm = fused.em_step(op, state, eta=0.05, noise_std=0.2,
                                           precond=precond, noise="rademacher", gen=gen_a)
        s_theta = plain.matmat(op, theta)
        quad_ref, gnorm_ref = plain.em_update(theta, s_theta, eta=0.05, noise_std=0.2,
                                              precond=precond, noise="rademacher", gen=gen_b)
        np.testing.assert_allclose(state, theta, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(quad, quad_ref, rtol=1e-11)
        np.testing.assert_allclose(gnorm, gnorm_ref, rtol=1e-11)
    assert op.matvecs == 2 * 3 * b


@pytest.mark.parametrize("reorder", [False, True])
def test_baoab_update_and_fused_step_equal_reference(reorder):
    rng = np.random.default_rng(8)
    n, b = 300, 4
    op = as_operator(_random_laplacian(n, 5, rng), check_symmetry=False)
    precond = as_preconditioner(rng.uniform(0.5, 2, n), n)
    be = NumbaBackend(reorder=reorder, fuse=True)
    q0, p0 = rng.standard_normal((n, b)), rng.standard_normal((n, b))
    kw = dict(h=0.3, friction=0.8, temperature=0.5, precond=precond, noise="gaussian")
    # in-place update vs the numpy reference with the same noise
    q, p = q0.copy(), p0.copy()
    quad = be.baoab_update(q, p, op.matrix @ q0, gen=np.random.default_rng(3), **kw)
    xi = be.counter_noise(be.last_key, (n, b), "gaussian")
    q_ref, p_ref = q0.copy(), p0.copy()
    quad_ref = _FixedNoise(xi).baoab_update(q_ref, p_ref, op.matrix @ q0, gen=None, **kw)
    np.testing.assert_allclose(q, q_ref, atol=1e-12)
    np.testing.assert_allclose(p, p_ref, atol=1e-12)
    np.testing.assert_allclose(quad, quad_ref, rtol=1e-12)
    # fused step (same key: same generator seed) gives the same state
    p_fused = p0.copy()
    q_fused, quad_fused = be.baoab_step(op, q0.copy(), p_fused, gen=np.random.default_rng(3),
                                        **kw)
    np.testing.assert_allclose(q_fused, q, atol=1e-12)
    np.testing.assert_allclose(p_fused, p, atol=1e-12)
    np.testing.assert_allclose(quad_fused, quad, rtol=1e-11)


def test_dense_and_generic_fall_back_to_update(be):
    rng = np.random.default_rng(4)
    D = rng.standard_normal((50, 50))
    D = D @ D.T
    for op in (as_operator(D, check_symmetry=False),
               as_operator(aslinearoperator(D), check_symmetry=False)):
        theta = rng.standard_normal((50, 3))
        expected = theta.copy()
        nxt, quad, _ = be.em_step(op, theta, eta=1e-3, noise_std=0.0,
                                  precond=as_preconditioner(None, 50), noise="rademacher",
                                  gen=np.random.default_rng(0))
        assert nxt is theta
        np.testing.assert_allclose(theta, expected - 1e-3 * (D @ expected), atol=1e-10)
        np.testing.assert_allclose(quad, np.einsum("ij,ij->j", expected, D @ expected))


_STEP_OPTIONS = list(itertools.product(["em", "baoab"], [np.float64, np.float32],
                                       ["rademacher", "gaussian"], [False, True]))
_STEP_PAIRS = [("em", np.float64, "rademacher", False), ("em", np.float32, "gaussian", True),
               ("baoab", np.float64, "gaussian", True), ("baoab", np.float32, "rademacher", True),
               ("baoab", np.float32, "gaussian", False)]


def test_default_option_sets_hold_every_pair():
    assert _covers_all_pairs(_UPDATE_PAIRS, _UPDATE_OPTIONS)
    assert _covers_all_pairs(_STEP_PAIRS, _STEP_OPTIONS)
    assert not _covers_all_pairs(_STEP_PAIRS[1:], _STEP_OPTIONS)  # the check can fail


@pytest.mark.parametrize("b", [8, 13, 70])
@pytest.mark.parametrize(("scheme", "dtype", "kind", "reorder"),
                         _split_slow(_STEP_OPTIONS, _STEP_PAIRS))
def test_fused_and_two_pass_steps_are_bit_identical(scheme, dtype, kind, b, reorder):
    # fuse="auto" picks between the two by timing alone, so they must agree exactly; b = 70
    # has four-chunk groups, a full and a masked chunk, and a second Rademacher hash word
    rng = np.random.default_rng(12)
    n = 500
    op = as_operator(_random_laplacian(n, 6, rng, dtype), check_symmetry=False)
    precond = as_preconditioner(rng.uniform(0.5, 2, n), n)
    runs = []
    for fuse in (True, False):
        be = NumbaBackend(reorder=reorder, fuse=fuse)
        gen = np.random.default_rng(5)
        q = np.zeros((n, b), dtype=dtype)
        p = rng.standard_normal((n, b)).astype(dtype) if fuse else runs[0][2].copy()
        p_start = p.copy()
        quads = []
        for _ in range(4):
            if scheme == "em":
                q, quad, gnorm = be.em_step(op, q, eta=0.1, noise_std=0.3, precond=precond,
                                            noise=kind, gen=gen)
                quads.append(np.concatenate([quad, gnorm]))
            else:
                q, quad = be.baoab_step(op, q, p, h=0.4, friction=0.7, temperature=0.5,
                                        precond=precond, noise=kind, gen=gen)
                quads.append(quad)
        runs.append((q.copy(), np.array(quads), p_start, p.copy()))
    (q_fused, obs_fused, _, p_fused), (q_plain, obs_plain, _, p_plain) = runs
    assert q_fused.dtype == dtype and obs_fused.dtype == np.float64
    assert np.array_equal(q_fused, q_plain)
    assert np.array_equal(obs_fused, obs_plain)
    assert np.array_equal(p_fused, p_plain)
    assert np.abs(obs_fused).max() > 0


def test_fuse_auto_times_both_variants_then_keeps_one(monkeypatch):
    from lmatrank.backends import _numba
    from lmatrank.backends._numba import FUSE_TRIALS

    monkeypatch.setattr(_numba, "FUSE_RACE_MIN_ENTRIES", 0)  # race even on this small block
    rng = np.random.default_rng(13)
    n, b = 300, 4
    op = as_operator(_random_laplacian(n, 5, rng), check_symmetry=False)
    be = NumbaBackend(reorder=False)
    plan = be.sparse_plan(op)
    q, gen = np.zeros((n, b)), np.random.default_rng(0)
    for step in range(2 * FUSE_TRIALS + 5):
        q, _, _ = be.em_step(op, q, eta=0.1, noise_std=0.3, precond=as_preconditioner(None, n),
                             noise="rademacher", gen=gen)
        decided = ("em", b, "float64") in plan.info["fuse"]
        assert decided == (step + 1 >= 2 * (FUSE_TRIALS + 1))
    assert isinstance(plan.info["fuse"][("em", b, "float64")], bool)
    assert op.matvecs == (2 * FUSE_TRIALS + 5) * b


def test_fuse_auto_takes_two_passes_untimed_on_small_blocks():
    from lmatrank.backends._numba import FUSE_RACE_MIN_ENTRIES

    rng = np.random.default_rng(13)
    n, b = 300, 4
    op = as_operator(_random_laplacian(n, 5, rng), check_symmetry=False)
    assert max(n * b, op.matrix.nnz) < FUSE_RACE_MIN_ENTRIES
    be = NumbaBackend(reorder=False)
    q, gen = np.zeros((n, b)), np.random.default_rng(0)
    q_next, _, _ = be.em_step(op, q, eta=0.1, noise_std=0.3, precond=as_preconditioner(None, n),
                              noise="rademacher", gen=gen)
    plan = be.sparse_plan(op)
    assert plan.info["fuse"] == {("em", b, "float64"): False}
    assert plan.variant_times == {}
    assert q_next is q  # the two-pass step updates in place; a fused one would not


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("fuse", [True, False])
def test_steps_bitwise_deterministic_across_threads(fuse, monkeypatch):
    """The parallel kernels on one thread and on all, and the serial kernels, agree bit for
    bit."""
    from lmatrank.backends import _numba

    rng = np.random.default_rng(10)
    n, b = 10_000, 32
    assert n * b >= PARALLEL_MIN_ENTRIES  # really parallel
    # float32 (a third per-chunk sum, |theta|^2), Gaussian noise (per-chunk scratch rows), a
    # permutation and a preconditioner: every per-chunk path, and the kernels of a
    # combination test_fused_and_two_pass_steps_are_bit_identical compiles anyway
    op = as_operator(_random_laplacian(n, 8, rng, np.float32), check_symmetry=False)
    precond = as_preconditioner(rng.uniform(0.5, 2, n), n)
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS, "serial"):
        be = NumbaBackend(reorder=True, fuse=fuse)
        previous = numba.get_num_threads()
        if threads == "serial":
            monkeypatch.setattr(_numba, "PARALLEL_MIN_ENTRIES", n * b + 1)
        else:
            numba.set_num_threads(threads)
        try:
            state = np.zeros((n, b), dtype=np.float32)
            gen = np.random.default_rng(42)
            quads = []
            for _ in range(3):
                state, quad, gnorm = be.em_step(op, state, eta=0.05, noise_std=1.0,
                                                precond=precond, noise="gaussian", gen=gen)
                quads.append(np.concatenate([quad, gnorm, [be.rounding_ratio]]))
            assert be.sparse_plan(op).info["permuted"]
        finally:
            numba.set_num_threads(previous)
        results.append((state.copy(), np.array(quads)))
    for other in results[1:]:
        assert np.array_equal(results[0][0], other[0])
        assert np.array_equal(results[0][1], other[1])


@pytest.mark.parametrize("b", [1, 13])
def test_serial_and_parallel_products_and_noise_agree(b, monkeypatch):
    from lmatrank.backends import _numba

    rng = np.random.default_rng(14)
    n = 5000  # three chunks of rows
    op = as_operator(_random_laplacian(n, 6, rng), check_symmetry=False)
    X = rng.standard_normal((n, b))
    runs = []
    for threshold in (PARALLEL_MIN_ENTRIES, 0):  # serial (small block), then parallel drivers
        monkeypatch.setattr(_numba, "PARALLEL_MIN_ENTRIES", threshold)
        be = NumbaBackend(reorder=True)
        runs.append((be.matmat(op, X), be.counter_noise(99, (n, b), "rademacher")))
    assert be.sparse_plan(op).info["permuted"]  # the gather kernel ran too
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    np.testing.assert_allclose(runs[0][0], op.matrix @ X, atol=1e-10)


# ------------------------------------------------------------------ statistics
def _em_mean_from_zero(eigenvalues, eta, k):
    """Exact mean of the corrected EM observable after k steps from 0 (docs/theory.md)."""
    return float(np.sum(1 - (1 - eta * eigenvalues) ** (2 * k)))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_em_transient_mean_matches_theory(kind, dtype):
    """Mean of the corrected observable after k fused steps equals the exact
    polynomial filter, within 5 standard errors over independent chains."""
    rng = np.random.default_rng(20)
    A = _random_laplacian(300, 4, rng, dtype)
    lam = np.linalg.eigvalsh(A.toarray().astype(np.float64))
    op = as_operator(A, check_symmetry=False)
    be = NumbaBackend(reorder=False)
    eta, sigma2, k, b = 1.5 / lam.max(), 1.0, 60, 256
    state = np.zeros((300, b), dtype=dtype)
    gen = np.random.default_rng(21)
    precond = as_preconditioner(None, 300)
    for _ in range(k + 1):
        state, quad, gnorm = be.em_step(op, state, eta=eta, noise_std=math.sqrt(eta * sigma2),
                                        precond=precond, noise=kind, gen=gen)
    obs = (2 * quad - eta * gnorm) / sigma2  # observable of the state after k updates
    expected = _em_mean_from_zero(lam, eta, k)
    stderr = obs.std(ddof=1) / math.sqrt(b)
    assert abs(obs.mean() - expected) < 5 * stderr, (obs.mean(), expected, stderr)


def test_fused_baoab_stationary_mean_is_rank():
    rng = np.random.default_rng(30)
    A, rank = _low_rank_sparse(200, 40, rng)
    op = as_operator(A, check_symmetry=False)
    be = NumbaBackend(reorder=False)
    b, T, h = 64, 0.5, 1.5  # eigenvalues in [0.2, 1]: h^2 lambda_max < 4
    friction = math.exp(-1.0 * h)
    precond = as_preconditioner(None, 200)
    q = np.zeros((200, b))
    p = math.sqrt(T) * be.noise(np.random.default_rng(1), (200, b), "gaussian", np.float64)
    gen = np.random.default_rng(2)
    window = []
    for step in range(400):
        q, quad = be.baoab_step(op, q, p, h=h, friction=friction, temperature=T,
                                precond=precond, noise="rademacher", gen=gen)
        if step >= 100:
            window.append(quad / T)
    chain_means = np.mean(window, axis=0)
    stderr = chain_means.std(ddof=1) / math.sqrt(b)
    assert abs(chain_means.mean() - rank) < 5 * stderr + 0.05, (chain_means.mean(), stderr)


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")
@pytest.mark.parametrize("operator", ["sparse", "dense"])
def test_estimate_numba_vs_numpy_within_stderr(operator):
    rng = np.random.default_rng(40)
    A, rank = _low_rank_sparse(300 if operator == "sparse" else 120, 60, rng)
    M = A if operator == "sparse" else A.toarray()
    ests = {name: lmatrank.estimate_rank(M, method="langevin", backend=name, rng=7,
                                         max_matvecs=30_000)
            for name in ("numpy", "numba")}
    for est in ests.values():
        assert abs(est.estimate - rank) < 5 * est.stderr + 0.02 * rank, est
    a, b = ests["numpy"], ests["numba"]
    assert abs(a.estimate - b.estimate) < 5 * math.hypot(a.stderr, b.stderr) + 0.02 * rank
    assert b.info["backend"] == "numba"


@pytest.mark.filterwarnings("ignore::lmatrank.ConvergenceWarning")
def test_float32_estimate_matches_float64():
    rng = np.random.default_rng(50)
    A, rank = _low_rank_sparse(400, 50, rng)
    e64 = lmatrank.estimate_rank(A, method="langevin", backend="numba", rng=3,
                                 max_matvecs=40_000)
    e32 = lmatrank.estimate_rank(A.astype(np.float32), method="langevin", backend="numba",
                                 rng=4, max_matvecs=40_000)
    assert abs(e32.estimate - e64.estimate) < 5 * math.hypot(e32.stderr, e64.stderr)
    assert abs(e32.estimate - rank) < 5 * e32.stderr + 0.02 * rank


def test_float32_null_space_drift_is_measured_and_guarded():
    """A long float32 run on a matrix with a large null space: the null-space part
    of the state random-walks, but its rounding stays far below the noise; an
    artificially huge state trips the guard."""
    rng = np.random.default_rng(60)
    A, rank = _low_rank_sparse(400, 20, rng, np.float32)  # null space of dimension 380
    op = as_operator(A, check_symmetry=False)
    be = NumbaBackend(reorder=False)
    precond = as_preconditioner(None, 400)
    state = np.zeros((400, 16), dtype=np.float32)
    gen = np.random.default_rng(1)
    eta = 1.0
    for _ in range(2000):
        state, _, _ = be.em_step(op, state, eta=eta, noise_std=1.0, precond=precond,
                                 noise="rademacher", gen=gen)
    # the state did grow like sqrt(k) in the null space ...
    assert np.mean(state.astype(np.float64) ** 2) > 0.5 * 2000 * 380 / 400
    # ... and the guard's ratio matches eps^2 k / 12 (tiny)
    eps = np.finfo(np.float32).eps
    assert be.rounding_ratio < 2 * eps**2 * 2000 / 12 + 1e-15
    assert be.rounding_ratio < ROUNDING_RATIO_WARN
    huge = np.full((400, 16), 1e6, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="float32 state has grown"):
        be.em_step(op, huge, eta=eta, noise_std=1.0, precond=precond, noise="rademacher",
                   gen=gen)


def test_reorder_gives_same_estimate():
    rng = np.random.default_rng(70)
    A = _random_laplacian(2000, 6, rng)
    op_a = as_operator(A, check_symmetry=False)
    op_b = as_operator(A, check_symmetry=False)
    plain, reordered = NumbaBackend(reorder=False), NumbaBackend(reorder=True)
    precond = as_preconditioner(None, 2000)
    lam_max = 2 * A.diagonal().max()
    eta = 1.0 / lam_max
    sa, sb = np.zeros((2000, 8)), np.zeros((2000, 8))  # two-pass steps update in place
    ga, gb = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(50):
        sa, qa, na = plain.em_step(op_a, sa, eta=eta, noise_std=math.sqrt(eta), precond=precond,
                                   noise="rademacher", gen=ga)
        sb, qb, nb = reordered.em_step(op_b, sb, eta=eta, noise_std=math.sqrt(eta),
                                       precond=precond, noise="rademacher", gen=gb)
    assert reordered.sparse_plan(op_b).info["permuted"]
    np.testing.assert_allclose(sb, sa, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(2 * qb - eta * nb, 2 * qa - eta * na, rtol=1e-9)


def test_backend_instance_carries_options_through_estimate_rank():
    import lmatrank.backends

    rng = np.random.default_rng(71)
    A, rank = _low_rank_sparse(600, 40, rng)
    backend = lmatrank.backends.NumbaBackend(reorder=True, fuse=False)
    # 4000 products do not resolve numpy's default threshold: an honest bracket and a warning
    with pytest.warns(lmatrank.ConvergenceWarning, match="not the threshold"):
        res = lmatrank.estimate_rank(A, method="langevin", backend=backend, rng=3,
                                     max_matvecs=4000)
    assert not res.converged and res.interval[0] <= rank <= res.interval[1]
    assert res.info["backend"] == "numba"
    # the estimator drove this very object: its plan cache holds the reordered matrix
    plans = list(backend._plans.values())
    assert len(plans) == 1 and plans[0].info["permuted"]
    assert abs(res.rank - rank) <= max(4 * res.stderr, 1)
    with pytest.warns(lmatrank.ConvergenceWarning, match="not the threshold"):
        same = lmatrank.estimate_rank(A, method="langevin", backend="numba", rng=3,
                                      max_matvecs=4000)
    assert abs(same.estimate - res.estimate) < 1e-6 * rank  # reordering: rounding only


@pytest.mark.parametrize("bad, match", [(3, "backend must be .*a backend object"),
                                        (object(), "has no matmat, noise, em_update")])
def test_backend_object_is_checked(bad, match):
    with pytest.raises(TypeError, match=match):
        lmatrank.estimate_rank(np.eye(4), method="langevin", backend=bad)
