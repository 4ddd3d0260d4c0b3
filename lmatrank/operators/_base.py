"""Normalisation of user inputs into a product-counting symmetric operator.

Every method in lmatrank sees its matrix through :class:`CountingOperator`:
block products ``S @ X`` with ``X`` of shape ``(n, b)``, counted as ``b``
single-vector products, in a fixed floating dtype.

Accepted inputs
---------------
- ``numpy.ndarray`` of shape ``(n, n)``;
- every ``scipy.sparse`` matrix or array format (converted once to CSR);
- ``scipy.sparse.linalg.LinearOperator`` (its ``matmat`` is used);
- any object with ``.shape == (n, n)`` and a ``matmat`` method or ``@``
  (structured operators of this package, ...);
- CPU torch tensors and torch-based operators (curvlinops), through
  :func:`lmatrank.torch.as_linear_operator`; GPU inputs (CuPy, torch CUDA) are
  kept on the device for the CuPy backend.

Dtype rules: float32 and float64 are kept, in either byte order (products run in
native byte order); float16 is computed in float32 and ``op.precision`` records
float16, the precision whose rounding the default threshold must judge; integer
and boolean inputs are promoted to float64; complex and object dtypes are refused
(``TypeError``).

Validation: sparse inputs are checked structurally (index arrays in range,
``indptr`` non-decreasing with the right length and end) in O(nnz) before any
kernel sees them, entries must be finite, and :meth:`CountingOperator.matmat`
refuses products with non-finite values (``ValueError`` naming the product).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from .._checks import check_int
from .._xp import device_host_apply, device_namespace, host_linear_operator, root_module

__all__ = ["CountingOperator", "SquaredOperator", "as_operator", "check_symmetric"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# operators that take and return torch tensors (wrapped by lmatrank._xp.host_linear_operator)
_TORCH_MODULES = ("torch", "curvlinops")


def _result_dtype(dtype) -> np.dtype:
    """Working dtype for an input dtype, or a TypeError naming the problem."""
    if dtype is None:
        return np.dtype(np.float64)
    dtype = np.dtype(dtype)
    if dtype.kind in "fc" or dtype.kind in "biu":
        dtype = dtype.newbyteorder("=")  # byte order never changes the precision
    if dtype.kind == "c":
        raise TypeError(f"complex matrices are not supported (dtype {dtype}); "
                        "lmatrank estimates the rank of real symmetric matrices")
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype in _FLOATS:
        return dtype
    if dtype == np.dtype(np.float16):  # computed in float32; op.precision keeps float16
        return np.dtype(np.float32)
    if dtype.kind == "f":  # longdouble
        return np.dtype(np.float64)
    raise TypeError(f"unsupported dtype {dtype}; expected a real floating or integer dtype")


class CountingOperator:
    """A square real operator that applies block products and counts them.

    Parameters
    ----------
    matmat : callable
        ``matmat(X) -> S @ X`` for ``X`` of shape ``(n, b)``.
    n : int
        Order of the operator.
    dtype : numpy dtype
        Working dtype (float32 or float64).
    kind : {"dense", "sparse", "generic"}
        What `matrix` holds, so that backends can use specialised kernels.
    matrix : ndarray, scipy.sparse CSR array, or object
        The underlying matrix (dense / CSR) or the user's operator.

    Attributes
    ----------
    matvecs : int
        Number of single-vector products applied so far.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import as_operator
    >>> op = as_operator(np.eye(3), check_symmetry=False)
    >>> op.matmat(np.ones((3, 2))).shape, op.matvecs
    ((3, 2), 2)
    """

    def __init__(self, matmat, n, dtype, *, kind="generic", matrix=None, name=None):
        self._matmat = matmat
        self.n = int(n)
        self.shape = (self.n, self.n)
        self.dtype = np.dtype(dtype)
        self.kind = kind
        self.matrix = matrix
        self.name = name or kind
        self.matvecs = 0
        # the dtype whose rounding the input carries (float16 inputs run in float32)
        self.precision = self.dtype
        # ||S x|| / ||x|| of the symmetry probes (None: no probe ran)
        self.probe_norm = None
        # spectral-norm size of the products' rounding noise, measured by the symmetry
        # probe (None: not measured); raises the default threshold of noisy operators
        self.noise_floor = None

    def count(self, b: int) -> None:
        """Record ``b`` single-vector products done outside :meth:`matmat`."""
        self.matvecs += int(b)

    def matmat(self, X):
        """Return ``S @ X`` for a block ``X`` of shape ``(n, b)``; counts ``b``.

        Raises ``ValueError`` when the operator returns NaN or Inf, naming the
        product count at which it happened.
        """
        if X.ndim != 2 or X.shape[0] != self.n:
            raise ValueError(f"expected a block of shape ({self.n}, b), got {X.shape}")
        self.matvecs += X.shape[1]
        Y = self._matmat(X)
        Y = np.asarray(Y)
        if Y.shape != X.shape:
            raise ValueError(f"operator returned shape {Y.shape} for a block of shape {X.shape}")
        if Y.dtype != self.dtype:
            Y = Y.astype(self.dtype, copy=False)
        _check_finite_product(Y, self.matvecs)
        return Y

    def __matmul__(self, X):
        X = np.asarray(X)
        if X.ndim == 1:
            return self.matmat(X[:, None])[:, 0]
        return self.matmat(X)

    def as_linear_operator(self) -> LinearOperator:
        """A scipy LinearOperator view that counts products through this object."""
        return LinearOperator(self.shape, matvec=lambda x: self @ np.ravel(x),
                              matmat=self.matmat, rmatvec=lambda x: self @ np.ravel(x),
                              dtype=self.dtype)

    def todense(self) -> np.ndarray:
        """Dense copy (uses ``n`` products for generic operators)."""
        if self.kind == "dense":
            return np.array(self.matrix, dtype=self.dtype)
        if self.kind == "sparse":
            return self.matrix.toarray().astype(self.dtype, copy=False)
        return self.matmat(np.eye(self.n, dtype=self.dtype))

    def __repr__(self) -> str:
        return f"<CountingOperator {self.name} n={self.n} dtype={self.dtype} matvecs={self.matvecs}>"


class SquaredOperator(CountingOperator):
    """``S @ S`` applied as two products with `base` (both counted on `base`).

    Used to count the rank of an indefinite symmetric ``S``: ``rank(S) =
    rank(S**2)`` and ``S**2`` is positive semi-definite.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import SquaredOperator, as_operator
    >>> base = as_operator(np.diag([2.0, -3.0]), check_symmetry=False)
    >>> sq = SquaredOperator(base)
    >>> sq.matmat(np.ones((2, 1))).ravel(), base.matvecs
    (array([4., 9.]), 2)
    """

    def __init__(self, base: CountingOperator):
        self.base = base
        super().__init__(lambda X: base.matmat(base.matmat(X)), base.n, base.dtype,
                         kind="squared", matrix=base, name=f"({base.name})^2")

    @property
    def matvecs(self):
        return self.base.matvecs

    @matvecs.setter
    def matvecs(self, value):  # products are counted on the base operator
        pass

    def count(self, b):
        self.base.count(2 * b)


def _device_namespace(A):
    return device_namespace(A)  # duck typing on the object: imports neither cupy nor torch


def _device_operator(A, dtype):
    """CountingOperator over a matrix that lives on a GPU (CuPy array, cupyx sparse or
    LinearOperator, torch CUDA operator).

    ``op.matrix`` keeps the device object, which the CuPy backend applies to
    device-resident chains directly. ``op.matmat`` takes and returns host blocks: it
    serves only the few set-up products (symmetry probes, Lanczos bounds), each of
    which moves one block across the bus; the dynamics never do.
    """
    shape = tuple(A.shape)
    _check_square(shape, "operator")
    work = _result_dtype(getattr(A, "dtype", None) if dtype is None else dtype)
    return CountingOperator(device_host_apply(A), shape[0], work, kind="generic", matrix=A,
                            name=f"device:{type(A).__name__}")


def _check_finite_product(Y, count):
    """Refuse a product block holding NaN or Inf (a sum first: O(size), no temporary)."""
    if Y.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = Y.sum()
    if np.isfinite(total) or np.all(np.isfinite(Y)):  # an overflowing sum of finite values
        return
    raise ValueError(f"operator returned non-finite values (NaN or Inf) at product {count}")


_INDEX_KINDS = "iu"


def _index_array(values, what):
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype.kind not in _INDEX_KINDS:
        raise ValueError(f"malformed sparse matrix: {what} must be a 1-D integer array, "
                         f"got dtype {arr.dtype} and shape {arr.shape}")
    return arr


def _check_range(idx, bound, what):
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= bound):
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise ValueError(f"malformed sparse matrix: {what} index {bad} out of range [0, {bound})")


def _check_compressed(indptr, indices, n_data, major, minor, what="indptr"):
    """The CSR/CSC/BSR invariants, O(nnz): indptr of length major+1, starting at 0,
    non-decreasing, ending at most at the number of stored entries; indices in range."""
    indptr = _index_array(indptr, "indptr")
    indices = _index_array(indices, "indices")
    if indptr.size != major + 1:
        raise ValueError(f"malformed sparse matrix: indptr has length {indptr.size}, "
                         f"expected {major + 1}")
    if int(indptr[0]) != 0:
        raise ValueError(f"malformed sparse matrix: indptr[0] = {int(indptr[0])}, expected 0")
    if major and np.any(np.diff(indptr.astype(np.int64)) < 0):
        raise ValueError("malformed sparse matrix: indptr is not non-decreasing")
    end = int(indptr[-1])
    if end > indices.size or end > n_data:
        raise ValueError(f"malformed sparse matrix: indptr[-1] = {end} exceeds the "
                         f"{min(indices.size, n_data)} stored entries")
    _check_range(indices[:end], minor, "column" if what == "indptr" else what)


def _validate_sparse(A):
    """Structural check of a scipy.sparse matrix/array before any conversion or kernel.

    Returns the matrix to convert (LIL/DOK/DIA inputs as COO). Raises ValueError
    naming the defect (index out of range, indptr malformed, lengths that disagree).
    """
    shape = _check_shape(A.shape, "matrix")
    fmt = A.format
    if fmt in ("lil", "dok", "dia"):
        A = A.tocoo()
        fmt = "coo"
    n_data = np.asarray(A.data).shape[0] if np.ndim(A.data) else 0
    if fmt in ("csr", "csc"):
        major, minor = (shape[0], shape[1]) if fmt == "csr" else (shape[1], shape[0])
        if np.ndim(A.data) != 1:
            raise ValueError("malformed sparse matrix: data must be 1-D")
        _check_compressed(A.indptr, A.indices, n_data, major, minor)
    elif fmt == "bsr":
        r, c = A.blocksize
        if r < 1 or c < 1 or shape[0] % r or shape[1] % c:
            raise ValueError(f"malformed sparse matrix: blocksize {A.blocksize} does not "
                             f"divide shape {shape}")
        if np.ndim(A.data) != 3 or tuple(np.shape(A.data)[1:]) != (r, c):
            raise ValueError("malformed sparse matrix: BSR data must have shape (nnzb, R, C)")
        _check_compressed(A.indptr, A.indices, n_data, shape[0] // r, shape[1] // c,
                          what="block column")
    elif fmt == "coo":
        row, col = _index_array(A.row, "row"), _index_array(A.col, "col")
        if np.ndim(A.data) != 1 or not (row.size == col.size == n_data):
            raise ValueError(f"malformed sparse matrix: COO row, col and data lengths differ "
                             f"({row.size}, {col.size}, {n_data})")
        _check_range(row, shape[0], "row")
        _check_range(col, shape[1], "column")
    return A


def _precision(input_dtype, requested, work):
    """float16 when the input (and no explicit working dtype) is float16, else `work`."""
    if requested is None and input_dtype is not None \
            and np.dtype(input_dtype).newbyteorder("=") == np.dtype(np.float16):
        return np.dtype(np.float16)
    return work


def _check_finite_values(values, what):
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contains non-finite values (NaN or Inf)")


def _check_shape(shape, what):
    """`shape` as a tuple of Python ints; ValueError for a non-integral or negative entry."""
    try:
        entries = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} shape must be a tuple of integers, got {shape!r}") from None
    return tuple(check_int(f"{what} shape[{i}]", s, minimum=0) for i, s in enumerate(entries))


def _check_square(shape, what):
    shape = _check_shape(shape, what)
    if len(shape) != 2:
        raise ValueError(f"{what} must be 2-D (a square matrix), got shape {tuple(shape)}")
    if shape[0] != shape[1]:
        raise ValueError(f"{what} must be square, got shape {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {tuple(shape)})")


def as_operator(A, *, dtype=None, check_symmetry=True, rng=None, symmetry_rtol=None,
                fresh=False):
    """Normalise `A` into a :class:`CountingOperator`.

    Parameters
    ----------
    A : array_like, sparse matrix/array, LinearOperator or operator-like
        The symmetric matrix. See the module docstring for accepted types.
    dtype : {None, numpy.float32, numpy.float64}, optional
        Working dtype; default: from `A` (ints promoted to float64).
    check_symmetry : bool, optional
        Run the probe-based symmetry test of :func:`check_symmetric` (default True).
        Its products are counted.
    rng : numpy.random.Generator or seed, optional
        Source of the symmetry probes.
    symmetry_rtol : float, optional
        Tolerance of the symmetry test; default: see :func:`check_symmetric`.
    fresh : bool, optional
        When `A` is already a CountingOperator, wrap it in a new one whose count
        starts at zero (default: return `A` itself).

    Returns
    -------
    CountingOperator

    Raises
    ------
    TypeError
        Unsupported type or dtype (complex, object, ...).
    ValueError
        Not 2-D, not square, empty, non-finite entries, not symmetric.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from lmatrank.operators import as_operator
    >>> op = as_operator(sp.diags([1.0, 2.0, 0.0]).tocoo())
    >>> op.kind, op.n, op.dtype
    ('sparse', 3, dtype('float64'))
    >>> as_operator(np.ones((2, 3)))
    Traceback (most recent call last):
    ...
    ValueError: matrix must be square, got shape (2, 3)
    """
    if isinstance(A, CountingOperator):
        if not fresh:
            return A
        op = CountingOperator(A.matmat, A.n, A.dtype if dtype is None else _result_dtype(dtype),
                              kind=A.kind, matrix=A.matrix, name=A.name)
        if check_symmetry:
            check_symmetric(op, rng=rng, rtol=symmetry_rtol)
        return op
    if root_module(A) in _TORCH_MODULES and _device_namespace(A) is None:
        A = host_linear_operator(A)  # torch tensors/operators on the CPU
    if sp.issparse(A):
        _check_square(A.shape, "matrix")
        work = _result_dtype(A.dtype) if dtype is None else _result_dtype(dtype)
        precision = _precision(A.dtype, dtype, work)
        A = _validate_sparse(A)
        M = sp.csr_array(A, dtype=work)
        M.sum_duplicates()
        _check_finite_values(M.data, "matrix")
        op = CountingOperator(lambda X: M @ X, M.shape[0], work, kind="sparse", matrix=M,
                              name=f"sparse[{A.format}]")
        op.precision = precision
    elif _device_namespace(A) is not None:
        op = _device_operator(A, dtype)
    elif isinstance(A, LinearOperator):
        _check_square(A.shape, "operator")
        work = _result_dtype(A.dtype if dtype is None else dtype)
        op = CountingOperator(A.matmat, A.shape[0], work, kind="generic", matrix=A,
                              name=type(A).__name__)
    elif isinstance(A, np.ndarray) or isinstance(A, (list, tuple)) or isinstance(A, numbers.Number):
        arr = np.asarray(A)
        if arr.dtype == object:
            raise TypeError("object arrays are not supported; pass a numeric array")
        _check_square(arr.shape, "matrix")
        work = _result_dtype(arr.dtype if dtype is None else dtype)
        M = np.ascontiguousarray(arr, dtype=work)
        _check_finite_values(M, "matrix")
        op = CountingOperator(lambda X: M @ X, M.shape[0], work, kind="dense", matrix=M,
                              name="dense")
        op.precision = _precision(arr.dtype, dtype, work)
    elif hasattr(A, "shape") and (hasattr(A, "matmat") or hasattr(A, "__matmul__")):
        shape = tuple(A.shape)
        _check_square(shape, "operator")
        work = _result_dtype(getattr(A, "dtype", None) if dtype is None else dtype)
        apply = A.matmat if hasattr(A, "matmat") else (lambda X: A @ X)
        op = CountingOperator(apply, shape[0], work, kind="generic", matrix=A,
                              name=type(A).__name__)
    else:
        raise TypeError(
            f"cannot use an object of type {type(A).__name__} as a matrix: expected an ndarray, "
            "a scipy.sparse matrix, a LinearOperator, or an object with .shape and matmat/@")
    if check_symmetry:
        check_symmetric(op, rng=rng, rtol=symmetry_rtol)
    return op


def check_symmetric(op: CountingOperator, *, rng=None, n_probes=3, rtol=None):
    """Probe-based symmetry test: ``X^T (S X)`` must be a symmetric ``k x k`` matrix.

    With ``k = n_probes`` Gaussian probes ``X`` and ``Y = S X``, the test refuses
    ``S`` when ``||X^T Y - Y^T X||_F > rtol * ||X||_F ||Y||_F``. The default
    ``rtol`` is ``1e3 * sqrt(n) * eps(dtype)``, which allows for the rounding of
    the products; the test is relative to the operator's own scale, so a matrix
    and any positive multiple of it pass or fail together. The check also
    refuses operators that return non-finite values. Costs `n_probes` products.

    The asymmetry it measures is also the size of the products' own noise: for a
    product ``(S + E) X`` with an unstructured error ``E`` of entry size ``e``,
    ``X^T E X - (X^T E X)^T`` has entries ``~ sqrt(2) e ||x_i|| ||x_j||`` and
    ``||E||_2 ~ 2 e sqrt(n)``. That estimate of ``||E||_2`` is stored in
    ``op.noise_floor``: eigenvalues below it are not properties of the matrix
    (autodiff Hessian-vector products carry noise far above ``n eps |lambda|_max``).

    Raises
    ------
    ValueError
        If `op` is detectably non-symmetric or returns non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import as_operator, check_symmetric
    >>> bool(check_symmetric(as_operator(np.eye(4), check_symmetry=False), rng=0) < 1e-12)
    True
    >>> check_symmetric(as_operator(np.triu(np.ones((4, 4))), check_symmetry=False), rng=0)
    Traceback (most recent call last):
    ...
    ValueError: matrix is not symmetric: ...
    """
    rng = np.random.default_rng(rng)
    k = min(n_probes, op.n)
    X = rng.standard_normal((op.n, k)).astype(op.dtype)
    Y = op.matmat(X)
    if not np.all(np.isfinite(Y)):
        raise ValueError("operator returned non-finite values (NaN or Inf) on a probe vector")
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    # work with Y / 2**e, max |entry| in [0.5, 1): exact, and no overflow in the norms of
    # matrices scaled by 1e300 (nor underflow at 1e-300); results are scaled back by 2**e
    y_max = float(np.max(np.abs(Y64))) if Y64.size else 0.0
    e = math.frexp(y_max)[1] if y_max > 0 else 0
    Y64 = np.ldexp(Y64, -e)
    M = X64.T @ Y64
    scale = np.linalg.norm(X64) * np.linalg.norm(Y64)
    # a lower bound on |lambda|_max (probe Rayleigh quotient of the norm), for scaling
    op.probe_norm = math.ldexp(float(np.linalg.norm(Y64) / np.linalg.norm(X64)), e) \
        if scale > 0 else 0.0
    if rtol is None:
        rtol = 1e3 * np.sqrt(op.n) * np.finfo(op.dtype).eps
    asym = np.linalg.norm(M - M.T)
    if k >= 2:
        mean_sq_norm = float(np.sum(X64 * X64)) / k
        entry = asym / (math.sqrt(2.0 * k * (k - 1)) * mean_sq_norm)
        op.noise_floor = math.ldexp(2.0 * math.sqrt(op.n) * entry, e)
    if scale > 0 and asym > rtol * scale:
        raise ValueError(
            f"matrix is not symmetric: probe test gives relative asymmetry {asym / scale:.3g} "
            f"> {rtol:.3g} (pass check_symmetry=False to skip this test)")
    return asym / scale if scale > 0 else 0.0
