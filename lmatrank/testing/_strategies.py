"""Hypothesis strategies that draw symmetric problems whose spectrum is known exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy
from scipy.sparse.linalg import LinearOperator

from ..operators import KroneckerProduct, LinearNetworkHessian

__all__ = ["KnownSpectrum", "as_dense", "graph_laplacians", "kronecker_operators",
           "linear_network_hessians", "linear_operators", "symmetric_matrices"]

SPARSE_FORMATS = ("csr", "csc", "coo")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SEEDS = st.integers(0, 2**32 - 1)


@dataclass(frozen=True, repr=False)
class KnownSpectrum:
    """A symmetric matrix or operator with its exact spectrum and an unambiguous gap.

    Attributes
    ----------
    matrix : ndarray, scipy.sparse array, LinearOperator or structured operator
        The problem, shape ``(n, n)``, in `dtype`.
    eigenvalues : ndarray, shape (n,), float64
        The exact eigenvalues of the construction, ascending (as
        :func:`numpy.linalg.eigvalsh` orders them).
    gap : (float, float)
        ``(gap_lo, gap_hi)`` with ``0 < gap_lo < gap_hi``: no eigenvalue magnitude of
        the stored `matrix` lies in the open interval, rounding included, so every
        threshold ``gap_lo <= tau < gap_hi`` counts ``#{|lambda| > tau} == rank``.
    rounding : float
        A bound on how far the stored matrix's eigenvalues lie from `eigenvalues`
        (the rounding of its construction and of the dtype cast). `gap` already
        accounts for it.
    dtype : numpy.dtype
        Working dtype of `matrix` (float32 or float64).
    kind : str
        What drew it: ``"dense"``, ``"csr"``/``"csc"``/``"coo"``, ``"laplacian"``,
        ``"kronecker"``, ``"linear-network"``, and ``"... as LinearOperator"``.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.testing import KnownSpectrum
    >>> p = KnownSpectrum(np.diag([3.0, -1.0, 0.0]), np.array([-1.0, 0.0, 3.0]),
    ...                   gap=(1e-12, 0.5), rounding=1e-15, dtype=np.dtype("float64"),
    ...                   kind="dense")
    >>> p.n, p.rank, p.inertia, p.count_above(2.0)
    (3, 2, (1, 1, 1), 1)
    """

    matrix: object
    eigenvalues: np.ndarray
    gap: tuple
    rounding: float
    dtype: np.dtype
    kind: str

    @property
    def n(self) -> int:
        """Order of the matrix."""
        return int(self.eigenvalues.size)

    @property
    def rank(self) -> int:
        """The count ``#{|lambda| > tau}`` for every threshold ``tau`` in `gap`."""
        return int(np.count_nonzero(np.abs(self.eigenvalues) >= self.gap[1]))

    @property
    def inertia(self) -> tuple:
        """``(n_pos, n_neg, n_zero)`` at thresholds in `gap` (magnitudes below the gap
        count as zero)."""
        lam = self.eigenvalues
        n_pos = int(np.count_nonzero(lam >= self.gap[1]))
        n_neg = int(np.count_nonzero(lam <= -self.gap[1]))
        return n_pos, n_neg, self.n - n_pos - n_neg

    @property
    def lam_max(self) -> float:
        """``max |lambda|`` of the exact spectrum (0.0 for the zero matrix)."""
        return float(np.abs(self.eigenvalues).max()) if self.n else 0.0

    def count_above(self, tau) -> int:
        """``#{|lambda| > tau}`` over the exact eigenvalues.

        The stored matrix has the same count when `tau` is farther than
        `rounding` from every eigenvalue magnitude (always so inside `gap`).
        """
        return int(np.count_nonzero(np.abs(self.eigenvalues) > float(tau)))

    def threshold_in_gap(self, where=0.5) -> float:
        """A threshold inside `gap`: ``gap_lo**(1 - where) * gap_hi**where``.

        ``where=0.5`` is the geometric middle; 0 and 1 are the ends.
        """
        where = float(where)
        if not 0.0 <= where <= 1.0:
            raise ValueError(f"where must lie in [0, 1], got {where}")
        lo, hi = self.gap
        return float(math.exp((1.0 - where) * math.log(lo) + where * math.log(hi)))

    def _repr_pretty_(self, printer, cycle):  # Hypothesis and IPython print the short form
        printer.text(repr(self))

    def __repr__(self):
        lam = self.eigenvalues
        spectrum = (np.array2string(lam, precision=4, max_line_width=200) if lam.size <= 12
                    else f"{lam.size} values in [{lam.min():.4g}, {lam.max():.4g}]")
        return (f"KnownSpectrum(kind={self.kind!r}, n={self.n}, rank={self.rank}, "
                f"inertia={self.inertia}, gap=({self.gap[0]:.3g}, {self.gap[1]:.3g}), "
                f"dtype={self.dtype}, eigenvalues={spectrum})")


def as_dense(A):
    """Dense float ndarray of any matrix or operator a strategy draws.

    Accepts ndarrays, scipy.sparse matrices/arrays, scipy ``LinearOperator`` (applied to
    the identity) and objects with ``todense()`` or ``matmat`` (structured operators).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from lmatrank.testing import as_dense
    >>> as_dense(sp.eye(2, format="csr")).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if isinstance(A, KnownSpectrum):
        A = A.matrix
    if isinstance(A, np.ndarray):
        return A
    if sp.issparse(A):
        return A.toarray()
    if isinstance(A, LinearOperator):
        return np.asarray(A.matmat(np.eye(A.shape[1], dtype=A.dtype)))
    if hasattr(A, "todense"):
        return np.asarray(A.todense())
    if hasattr(A, "matmat"):
        return np.asarray(A.matmat(np.eye(A.shape[1])))
    return np.asarray(A)


# ----------------------------------------------------------------------------- helpers

def _value(draw, x):
    """Draw `x` when it is a strategy, else take it as given."""
    return draw(x) if isinstance(x, SearchStrategy) else x


def _dtype(draw, dtype):
    dtype = np.dtype(_value(draw, dtype))
    if dtype not in _FLOAT_DTYPES:
        raise InvalidArgument(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _rounding(n, dtype, scale):
    """Bound on the spectral-norm error of building an order-`n` symmetric matrix of norm
    `scale` in float64 (elementwise <= n eps64 scale) and casting it to `dtype`."""
    eps64 = float(np.finfo(np.float64).eps)
    return float((n * n * eps64 + n * float(np.finfo(dtype).eps)) * scale) or 1e-300


def _orthogonal(rng, n):
    """Haar-distributed orthogonal matrix (QR of a Gaussian with the sign fix)."""
    if n == 0:
        return np.zeros((0, 0))
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    signs = np.sign(np.diag(R))
    signs[signs == 0] = 1.0
    return Q * signs


def _blocks(rng, lam):
    """Sparse symmetric matrix with exactly the spectrum `lam` (up to rounding): 1x1 and
    2x2 rotated blocks on the diagonal, symmetrically permuted. Returns a COO array."""
    n = lam.size
    order = rng.permutation(n)
    rows, cols, vals = [], [], []
    i = 0
    while i < n:
        if i + 1 < n and rng.random() < 0.6:
            a, b = lam[order[i]], lam[order[i + 1]]
            t = rng.uniform(0.1, 1.4)
            c, s = math.cos(t), math.sin(t)
            block = np.array([[c * c * a + s * s * b, c * s * (a - b)],
                              [c * s * (a - b), s * s * a + c * c * b]])
            for p in range(2):
                for q in range(2):
                    if block[p, q] != 0.0:
                        rows.append(i + p), cols.append(i + q), vals.append(block[p, q])
            i += 2
        else:
            if lam[order[i]] != 0.0:
                rows.append(i), cols.append(i), vals.append(lam[order[i]])
            i += 1
    perm = rng.permutation(n)
    return sp.coo_array((np.array(vals, dtype=np.float64),
                         (perm[np.array(rows, dtype=np.intp)],
                          perm[np.array(cols, dtype=np.intp)])), shape=(n, n))


def _to_format(M, fmt, dtype):
    if fmt not in SPARSE_FORMATS:
        raise InvalidArgument(f"sparse format must be one of {SPARSE_FORMATS}, got {fmt!r}")
    return sp.coo_array(M).asformat(fmt).astype(dtype)


# ---------------------------------------------------------------------------- strategies

@st.composite
def symmetric_matrices(draw, *, n=st.integers(1, 20), rank=None, inertia=None,
                       condition=100.0, gap=100.0, dtype=np.float64, sparse=False,
                       tail=st.booleans(), psd=False):
    """Symmetric matrices with a known graded spectrum and a controlled gap.

    The eigenvalue magnitudes above the gap lie in ``[s / condition, s]`` (``s`` a power
    of two, log-spaced positions drawn by Hypothesis: they shrink toward all equal);
    below the gap there are exact zeros or, with `tail`, a graded tail of small
    eigenvalues of either sign at least `gap` times smaller. The eigenvectors come from a
    random orthogonal matrix (dense) or, for sparse output, from 1x1 and 2x2 rotations
    permuted symmetrically, so that the spectrum stays exact. Every argument may be a
    value or a strategy.

    Parameters
    ----------
    n : int or strategy, optional
        Order (default 1 to 20). Ignored when `inertia` is given.
    rank : int or strategy, optional
        Number of eigenvalues above the gap (default: drawn in ``[0, n]``).
    inertia : (int, int, int) or strategy, optional
        ``(n_pos, n_neg, n_zero)`` at thresholds in the gap; overrides `n` and `rank`.
    condition : float or strategy, optional
        Largest ratio between the magnitudes above the gap (default 100). Lowered
        where the dtype's rounding would otherwise eat the gap.
    gap : float or strategy, optional
        ``gap_hi / gap_lo`` is at least this (default 100; must be > 1).
    dtype : {numpy.float64, numpy.float32} or strategy, optional
    sparse : bool, {"csr", "csc", "coo"} or strategy, optional
        Dense ndarray (False), a scipy.sparse array in a drawn format (True) or the
        given format.
    tail : bool or strategy, optional
        Allow a graded tail of small nonzero eigenvalues below the gap (default: drawn).
    psd : bool, optional
        Only nonnegative eigenvalues (when `inertia` is not given).

    Returns
    -------
    strategy of KnownSpectrum

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import given, settings
    >>> from lmatrank.testing import symmetric_matrices
    >>> @settings(max_examples=20, deadline=None, derandomize=True)
    ... @given(symmetric_matrices(n=8, inertia=None, sparse=True))
    ... def test_counts(p):
    ...     lam = np.linalg.eigvalsh(p.matrix.toarray())
    ...     assert np.count_nonzero(np.abs(lam) > p.threshold_in_gap()) == p.rank
    >>> test_counts()
    """
    dtype = _dtype(draw, dtype)
    inertia = _value(draw, inertia)
    if inertia is not None:
        n_pos, n_neg, n_zero = (int(v) for v in inertia)
        if min(n_pos, n_neg, n_zero) < 0 or n_pos + n_neg + n_zero < 1:
            raise InvalidArgument(f"inertia must be three counts >= 0 with a positive sum, "
                                  f"got {inertia}")
        n = n_pos + n_neg + n_zero
    else:
        n = int(_value(draw, n))
        if n < 1:
            raise InvalidArgument(f"n must be >= 1, got {n}")
        r = _value(draw, rank)
        r = draw(st.integers(0, n)) if r is None else int(r)
        if not 0 <= r <= n:
            raise InvalidArgument(f"rank must lie in [0, n={n}], got {r}")
        n_neg = 0 if psd else draw(st.integers(0, r))
        n_pos, n_zero = r - n_neg, n - r
    condition = float(_value(draw, condition))
    ratio = float(_value(draw, gap))
    if not condition >= 1.0:
        raise InvalidArgument(f"condition must be >= 1, got {condition}")
    if not ratio > 1.0:
        raise InvalidArgument(f"gap must be > 1, got {ratio}")
    fmt = _value(draw, sparse)
    if fmt is True:
        fmt = draw(st.sampled_from(SPARSE_FORMATS))
    with_tail = bool(_value(draw, tail))
    r = n_pos + n_neg

    scale = 2.0 ** draw(st.integers(-3, 3))
    delta = _rounding(n, dtype, scale)
    # lowest magnitude above the gap: s / condition, but keep gap_hi / gap_lo >= 4 ratio
    room = scale / (4.0 * ratio * delta)
    if r and room < 1.0:
        raise InvalidArgument(f"gap={ratio:g} is not resolvable in {dtype} at n={n}: the "
                              f"rounding ({delta / scale:.2g} relative) leaves no room")
    cond = max(1.0, min(condition, room))
    positions = draw(st.lists(st.floats(0.0, 1.0), min_size=r, max_size=r)) if r else []
    mags = scale * cond ** -np.asarray(positions, dtype=np.float64)
    if r:
        mags[0] = scale  # lambda_max is exactly the scale
    low = float(mags.min()) if r else scale
    tail_max = 0.0
    small = np.zeros(n_zero)
    if with_tail and n_zero:
        tail_max = (low - delta) / (2.0 * ratio) - delta
        if tail_max > 0:
            tail_pos = draw(st.lists(st.floats(0.0, 1.0), min_size=n_zero, max_size=n_zero))
            signs = draw(st.lists(st.booleans(), min_size=n_zero, max_size=n_zero))
            small = tail_max * 10.0 ** (-3.0 * np.asarray(tail_pos))
            small = np.where(signs, -small, small)
            small[np.asarray(tail_pos) == 1.0] = 0.0
        else:
            tail_max = 0.0
    lam = np.concatenate([mags[:n_pos], -mags[n_pos:], small])
    gap_lo = (float(np.abs(small).max()) if n_zero else 0.0) + delta
    gap_hi = (low - delta) if r else scale
    rng = np.random.default_rng(draw(_SEEDS))
    if fmt:
        A = _to_format(_blocks(rng, lam), fmt, dtype)
    else:
        U = _orthogonal(rng, n)
        A = (U * lam) @ U.T
        A = ((A + A.T) / 2).astype(dtype)
    kind = fmt if fmt else "dense"
    return KnownSpectrum(A, np.sort(lam), (gap_lo, gap_hi), delta, dtype, kind)


@st.composite
def graph_laplacians(draw, *, n=st.integers(1, 20), components=None, weighted=st.booleans(),
                     dtype=np.float64, sparse=True):
    """Graph Laplacians ``L = D - W`` of `components` connected components: rank
    ``n - components``.

    Each component is a random spanning tree plus random extra edges; weights are
    multiples of 1/16 in ``[1/16, 2]`` (exact in float32 and float64, so the zero
    eigenvalues are exact). The nonzero eigenvalues come from
    :func:`numpy.linalg.eigvalsh` in float64 (the smallest is the least algebraic
    connectivity of the components).

    Parameters
    ----------
    n : int or strategy, optional
        Number of nodes (default 1 to 20; a drawn order below `components` is raised to it).
    components : int or strategy, optional
        Number of connected components, ``1 <= components <= n`` (default: drawn).
    weighted : bool or strategy, optional
        Weights drawn in ``[1/16, 2]`` (True) or all 1 (False).
    dtype : {numpy.float64, numpy.float32} or strategy, optional
    sparse : bool, {"csr", "csc", "coo"} or strategy, optional
        scipy.sparse array (True: CSR) or dense ndarray (False).

    Returns
    -------
    strategy of KnownSpectrum

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from lmatrank.testing import graph_laplacians
    >>> @settings(max_examples=10, deadline=None, derandomize=True)
    ... @given(graph_laplacians(n=6, components=2))
    ... def test_rank(p):
    ...     assert p.rank == 4 and p.inertia == (4, 0, 2)
    >>> test_rank()
    """
    dtype = _dtype(draw, dtype)
    drawn_n = isinstance(n, SearchStrategy)
    n = int(_value(draw, n))
    if n < 1:
        raise InvalidArgument(f"n must be >= 1, got {n}")
    c = _value(draw, components)
    c = draw(st.integers(1, n)) if c is None else int(c)
    if drawn_n and c > n:
        n = c                                          # a drawn order grows to fit
    if not 1 <= c <= n:
        raise InvalidArgument(f"components must lie in [1, n={n}], got {c}")
    weighted = bool(_value(draw, weighted))
    fmt = _value(draw, sparse)
    if fmt is True:
        fmt = "csr"
    rng = np.random.default_rng(draw(_SEEDS))
    # split the nodes into c nonempty groups
    cuts = np.sort(rng.choice(np.arange(1, n), size=c - 1, replace=False)) if c > 1 else []
    groups = np.split(rng.permutation(n), cuts)
    W = np.zeros((n, n))
    for g in groups:
        for k in range(1, g.size):                     # random spanning tree
            W[g[k], g[rng.integers(0, k)]] = 1.0
        extra = rng.integers(0, g.size + 1)
        for _ in range(extra):
            i, j = rng.choice(g, size=2) if g.size > 1 else (g[0], g[0])
            if i != j:
                W[i, j] = 1.0
    W = np.triu(W + W.T, 1)
    if weighted:
        W = W * rng.integers(1, 33, size=W.shape) / 16.0
    W = W + W.T
    L = np.diag(W.sum(axis=1)) - W                     # exact: dyadic weights, small sums
    lam = np.linalg.eigvalsh(L)
    lam[:c] = 0.0                                      # one exact zero per component
    lam_max = float(lam[-1])
    delta = _rounding(n, np.dtype(np.float64), max(lam_max, 1.0))
    gap_lo = delta
    gap_hi = float(lam[c] - delta) if c < n else 1.0
    A = _to_format(L, fmt, dtype) if fmt else L.astype(dtype)
    return KnownSpectrum(A, lam, (gap_lo, gap_hi), delta, dtype, "laplacian")


@st.composite
def kronecker_operators(draw, factors=None, *, dtype=np.float64):
    """:class:`lmatrank.operators.KroneckerProduct` of two drawn symmetric factors.

    The spectrum of ``A kron B`` is the set of products ``alpha_i beta_j`` of the factor
    spectra, so rank and inertia multiply: ``rank = rank(A) rank(B)``.

    Parameters
    ----------
    factors : strategy of KnownSpectrum, optional
        Draws each factor (default: dense :func:`symmetric_matrices` of order 1 to 5
        with exact zeros below the gap).
    dtype : {numpy.float64, numpy.float32} or strategy, optional

    Returns
    -------
    strategy of KnownSpectrum

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import given, settings
    >>> from lmatrank.testing import kronecker_operators
    >>> @settings(max_examples=10, deadline=None, derandomize=True)
    ... @given(kronecker_operators())
    ... def test_spectrum(p):
    ...     assert np.allclose(np.linalg.eigvalsh(p.matrix.todense()), p.eigenvalues)
    >>> test_spectrum()
    """
    dtype = _dtype(draw, dtype)
    if factors is None:
        factors = symmetric_matrices(n=st.integers(1, 5), tail=False, dtype=dtype)
    a, b = draw(factors), draw(factors)
    lam = np.sort(np.outer(a.eigenvalues, b.eigenvalues).ravel())
    la, lb = a.lam_max, b.lam_max
    delta = (a.rounding * lb + la * b.rounding + a.rounding * b.rounding
             + _rounding(lam.size, dtype, la * lb))
    big = np.abs(lam)[np.abs(lam) >= a.gap[1] * b.gap[1]]
    small = np.abs(lam)[np.abs(lam) < a.gap[1] * b.gap[1]]
    gap_lo = (float(small.max()) if small.size else 0.0) + delta
    gap_hi = float(big.min()) - delta if big.size else max(la * lb, 1.0)
    if not gap_hi > gap_lo:
        raise InvalidArgument("the factor strategy leaves no gap in the Kronecker product "
                              "(use factors with exact zeros below their gap)")
    K = KroneckerProduct(a.matrix, b.matrix, dtype=dtype)
    return KnownSpectrum(K, lam, (gap_lo, gap_hi), delta, dtype, "kronecker")


@st.composite
def linear_network_hessians(draw, *, d=st.integers(1, 3), depth=st.integers(1, 3),
                            dtype=np.float64):
    """Hessians of deep linear networks at a global minimum
    (:class:`lmatrank.operators.LinearNetworkHessian`): rank ``d**2`` of
    ``depth * d**2`` parameters.

    The end-to-end map is ``T = Q diag(s) Q^T`` with ``s`` drawn in ``[1, 4]`` (shrinking
    to the identity), split into layers ``P T^(1/M)``, ``P T^(1/M) P^T``, ...,
    ``T^(1/M) P^T`` with a random orthogonal ``P``. The nonzero spectrum comes from
    :meth:`~lmatrank.operators.LinearNetworkHessian.gram_eigenvalues` (a
    ``d**2 x d**2`` eigenproblem); the other ``(depth - 1) d**2`` eigenvalues are zero.

    Parameters
    ----------
    d : int or strategy, optional
        Layer width (default 1 to 3).
    depth : int or strategy, optional
        Number of layers (default 1 to 3).
    dtype : {numpy.float64, numpy.float32} or strategy, optional

    Returns
    -------
    strategy of KnownSpectrum

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from lmatrank.testing import linear_network_hessians
    >>> @settings(max_examples=5, deadline=None, derandomize=True)
    ... @given(linear_network_hessians(d=2))
    ... def test_rank(p):
    ...     assert p.rank == 4 and p.n == 4 * p.matrix.depth
    >>> test_rank()
    """
    dtype = _dtype(draw, dtype)
    d = int(_value(draw, d))
    M = int(_value(draw, depth))
    if d < 1 or M < 1:
        raise InvalidArgument(f"d and depth must be >= 1, got d={d}, depth={M}")
    s = 1.0 + 3.0 * np.asarray(draw(st.lists(st.floats(0.0, 1.0), min_size=d, max_size=d)))
    rng = np.random.default_rng(draw(_SEEDS))
    Q = _orthogonal(rng, d)
    T = (Q * s) @ Q.T
    root = (Q * s ** (1.0 / M)) @ Q.T
    if M == 1:
        weights = [T]
    else:
        P = _orthogonal(rng, d)
        weights = [P @ root] + [P @ root @ P.T] * (M - 2) + [root @ P.T]
    H = LinearNetworkHessian(weights, None, dtype=dtype)
    gram = np.sort(H.gram_eigenvalues())
    lam = np.concatenate([np.zeros(H.n_params - gram.size), gram])
    lam_max = float(gram[-1])
    delta = 10.0 * M * _rounding(H.n_params, dtype, lam_max)
    gap_hi = float(gram[0]) - delta
    if not gap_hi > 4.0 * delta:
        raise InvalidArgument(f"linear network d={d}, depth={M} in {dtype}: rounding "
                              "covers the smallest nonzero eigenvalue")
    return KnownSpectrum(H, lam, (delta, gap_hi), delta, dtype, "linear-network")


def _matvec_only(p, dtype):
    A = p.matrix
    if isinstance(A, LinearOperator):
        def apply(x):
            return A.matvec(x)
    else:
        def apply(x):
            return np.asarray(A @ x)
    dt = np.dtype(dtype) if dtype is not None else p.dtype
    if dt not in _FLOAT_DTYPES:
        raise InvalidArgument(f"dtype must be float32 or float64, got {dt}")

    def matvec(x):
        return np.asarray(apply(np.asarray(x, dtype=p.dtype).ravel())).astype(dt, copy=False)
    L = LinearOperator(A.shape, matvec=matvec, rmatvec=matvec, dtype=dt)
    delta = p.rounding if dt == p.dtype else p.rounding + _rounding(p.n, dt, p.lam_max)
    lo, hi = p.gap
    gap = (lo - p.rounding + delta, hi + p.rounding - delta)
    if not gap[1] > gap[0]:
        raise InvalidArgument(f"casting to {dt} leaves no gap")
    return replace(p, matrix=L, gap=gap, rounding=delta, dtype=dt,
                   kind=f"{p.kind} as LinearOperator")


def linear_operators(strategy, *, dtype=None):
    """Wrap the problems another strategy draws as matvec-only scipy ``LinearOperator``.

    Only ``matvec`` (and ``rmatvec``, the same map: the problems are symmetric) is
    given, so blocks are applied one column at a time -- the least a matrix-free code
    can assume.

    Parameters
    ----------
    strategy : strategy of KnownSpectrum
        E.g. ``symmetric_matrices()`` or ``kronecker_operators()``.
    dtype : numpy dtype, optional
        The operator's dtype (default: the problem's). Products are computed in the
        problem's dtype and cast.

    Returns
    -------
    strategy of KnownSpectrum

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from scipy.sparse.linalg import LinearOperator
    >>> from lmatrank.testing import linear_operators, symmetric_matrices
    >>> @settings(max_examples=5, deadline=None, derandomize=True)
    ... @given(linear_operators(symmetric_matrices(n=4)))
    ... def test_kind(p):
    ...     assert isinstance(p.matrix, LinearOperator) and p.matrix.shape == (4, 4)
    >>> test_kind()
    """
    if not isinstance(strategy, SearchStrategy):
        raise InvalidArgument(f"linear_operators needs a strategy, got {type(strategy).__name__}")
    return strategy.map(lambda p: _matvec_only(p, dtype))
