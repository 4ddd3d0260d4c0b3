"""Matrix-free Kronecker products ``A kron B`` through identity (26).

Bar, Mulayoff, Michaeli and Talmon (AAAI 2024, "Linear Networks" section)
apply Hessians with Kronecker structure without forming them, using

    vec(M1 M2 M3) = (M3^T kron M1) vec(M2)                              (26)

for column-major ``vec``. The Hessians themselves come from Mulayoff and
Michaeli, "Unique properties of flat minima in deep networks", ICML 2020.

Index convention
----------------
:class:`KroneckerProduct` matches :func:`numpy.kron` entry for entry: for
``A`` of order ``ma`` and ``B`` of order ``mb``,

    kron(A, B)[i*mb + j, k*mb + l] = A[i, k] * B[j, l].

A vector ``x`` of length ``ma*mb`` is therefore read as the ``(ma, mb)`` matrix
``X = x.reshape(ma, mb)`` in numpy's *row-major* order, and
``kron(A, B) @ x == (A @ X @ B.T).reshape(-1)``. (This is identity (26)
written for row-major vec: ``vec_r(M1 M2 M3) = (M1 kron M3^T) vec_r(M2)``.) A
block of ``b`` columns is processed as one ``(ma, mb, b)`` stack: one matrix
product with ``A`` over the first axis and one batched product with ``B`` over
the second; there is no Python loop over the columns and the ``n x n``
product is never formed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._base import _result_dtype

__all__ = ["KroneckerProduct"]

#: Largest factor order for which :attr:`KroneckerProduct.theoretical_rank`
#: runs ``numpy.linalg.matrix_rank`` (an O(m^3) SVD).
MAX_EXACT_RANK_ORDER = 2048

#: Largest order :meth:`KroneckerProduct.todense` will build (n*n entries).
MAX_DENSE_ORDER = 20000


def _as_factor(F, dtype, what):
    """Validated copy of one factor (dense ndarray, CSR array or KroneckerProduct)."""
    if isinstance(F, KroneckerProduct):
        if F.dtype != dtype:
            F = KroneckerProduct(*F.factors, dtype=dtype)
        return F
    if sp.issparse(F):
        _check_square_factor(F.shape, what)
        M = sp.csr_array(F, dtype=dtype)
        M.sum_duplicates()
        if not np.all(np.isfinite(M.data)):
            raise ValueError(f"{what} contains non-finite values (NaN or Inf)")
        return M
    M = np.ascontiguousarray(F, dtype=dtype)
    if not np.all(np.isfinite(M)):
        raise ValueError(f"{what} contains non-finite values (NaN or Inf)")
    return M


def _check_square_factor(shape, what):
    if len(shape) != 2:
        raise ValueError(f"{what} must be 2-D (a square matrix), got shape {tuple(shape)}")
    if shape[0] != shape[1]:
        raise ValueError(f"{what} must be square, got shape {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {tuple(shape)})")


def _factor_dtype(F, what):
    """dtype of a raw factor, refusing unsupported containers and dtypes."""
    if isinstance(F, KroneckerProduct) or sp.issparse(F):
        dtype = F.dtype
    elif isinstance(F, (np.ndarray, list, tuple)):
        arr = np.asarray(F)
        if arr.dtype == object:
            raise TypeError(f"{what}: object arrays are not supported; pass a numeric array")
        _check_square_factor(arr.shape, what)
        dtype = arr.dtype
    else:
        raise TypeError(f"{what} must be an ndarray, a scipy.sparse matrix or a "
                        f"KroneckerProduct, got {type(F).__name__}")
    try:
        return _result_dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None


def _apply_rows(F, X2):
    """``F @ X2`` for a factor `F` of order m and ``X2`` of shape ``(m, k)``."""
    if isinstance(F, (KroneckerProduct, _XpKronecker)):
        return F.matmat(X2)
    return F @ X2


def _kron_matmat(A, B, ma, mb, X, xp, b_dense):
    """``kron(A, B) @ X`` in the array namespace `xp`: the one implementation of identity (26).

    `A`, `B` are factors living where `X` lives (dense arrays, sparse matrices
    or Kronecker products); `b_dense` says whether `B` is a dense array, which
    allows one batched product over the ``ma`` slices.
    """
    b = X.shape[1]
    # Row-major: X[k*mb + l, c] = X3[k, l, c].
    # Step 1: Z[i, l, c] = sum_k A[i, k] X3[k, l, c]  -- one (ma, mb*b) product.
    Z = _apply_rows(A, xp.ascontiguousarray(X).reshape(ma, mb * b))
    Z = xp.asarray(Z).reshape(ma, mb, b)
    # Step 2: Y[i, j, c] = sum_l B[j, l] Z[i, l, c]  -- product over the middle axis.
    if b_dense:
        Y = xp.matmul(B, Z)                                 # batched over i
    else:
        Zt = xp.ascontiguousarray(Z.transpose(1, 0, 2)).reshape(mb, ma * b)
        Y = xp.asarray(_apply_rows(B, Zt)).reshape(mb, ma, b).transpose(1, 0, 2)
    return Y.reshape(ma * mb, b)


class _XpKronecker:
    """A :class:`KroneckerProduct` whose factors live in another array namespace.

    Made by :meth:`KroneckerProduct.to_device`; :meth:`matmat` takes and
    returns arrays of that namespace (no validation, no host round trip) and
    computes exactly what the host product computes.
    """

    def __init__(self, kron, xp, move):
        A, B = kron.factors
        self._A = A.to_device(xp, move) if isinstance(A, KroneckerProduct) else move(A)
        self._B = B.to_device(xp, move) if isinstance(B, KroneckerProduct) else move(B)
        self._b_dense = isinstance(B, np.ndarray)
        self.ma, self.mb = kron.ma, kron.mb
        self.shape = kron.shape
        self.dtype = kron.dtype
        self._xp = xp

    def matmat(self, X):
        xp = self._xp
        Y = _kron_matmat(self._A, self._B, self.ma, self.mb, X, xp, self._b_dense)
        return xp.ascontiguousarray(Y)


def _host_move(xp):
    """Default `move` of :meth:`KroneckerProduct.to_device`: sparse factors kept, arrays via xp."""
    return lambda F: F if sp.issparse(F) else xp.asarray(F)


class KroneckerProduct:
    """The Kronecker product ``A kron B`` of two square matrices, applied matrix-free.

    Parameters
    ----------
    A, B : ndarray, scipy.sparse matrix/array, or KroneckerProduct
        Square factors of orders ``ma`` and ``mb``. Nested products are allowed,
        e.g. ``KroneckerProduct(KroneckerProduct(A, B), C)``.
    dtype : {None, numpy.float32, numpy.float64}, optional
        Working dtype. Default: float32 if both factors are float32, otherwise
        float64 (integers and booleans are promoted).

    Attributes
    ----------
    shape : tuple of int
        ``(ma*mb, ma*mb)``.
    dtype : numpy.dtype
        Working dtype; every product is returned in it.
    factors : tuple
        The validated factors ``(A, B)`` (dense ndarray, ``scipy.sparse.csr_array``
        or KroneckerProduct).

    Notes
    -----
    The operator equals ``numpy.kron(A, B)`` entry for entry (see the module
    docstring for the index convention). It is symmetric exactly when both
    factors are symmetric (or both antisymmetric); symmetry is not enforced
    here -- :func:`lmatrank.operators.as_operator` tests it when the product is
    used for rank estimation.

    A product with a block of ``b`` vectors costs ``b * ma * mb * (ma + mb)``
    multiply-adds for dense factors (instead of ``b * (ma*mb)**2``).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import KroneckerProduct
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> B = np.diag([1.0, 0.0, 4.0])
    >>> K = KroneckerProduct(A, B)
    >>> K.shape, K.dtype
    ((6, 6), dtype('float64'))
    >>> X = np.arange(12.0).reshape(6, 2)
    >>> np.allclose(K @ X, np.kron(A, B) @ X)
    True
    >>> K.theoretical_rank          # rank(A) * rank(B) = 2 * 2
    4
    """

    def __init__(self, A, B, *, dtype=None):
        work = np.result_type(_factor_dtype(A, "factor A"), _factor_dtype(B, "factor B"))
        work = _result_dtype(work if dtype is None else dtype)
        self._A = _as_factor(A, work, "factor A")
        self._B = _as_factor(B, work, "factor B")
        self.dtype = work
        self.ma = int(self._A.shape[0])
        self.mb = int(self._B.shape[0])
        n = self.ma * self.mb
        self.shape = (n, n)
        self._rank = None
        self._rank_known = False

    # ------------------------------------------------------------------ products
    @property
    def factors(self):
        """The factors ``(A, B)`` as stored (validated, in the working dtype)."""
        return (self._A, self._B)

    def matmat(self, X):
        """Return ``kron(A, B) @ X`` for a block ``X`` of shape ``(n, b)``.

        Parameters
        ----------
        X : ndarray, shape (n, b)

        Returns
        -------
        ndarray, shape (n, b), C-contiguous, in :attr:`dtype`.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != self.shape[0]:
            raise ValueError(f"expected a block of shape ({self.shape[0]}, b), got {X.shape}")
        if X.dtype != self.dtype:
            if X.dtype.kind not in "biuf":
                raise TypeError(f"unsupported block dtype {X.dtype}")
            X = X.astype(self.dtype)
        Y = _kron_matmat(self._A, self._B, self.ma, self.mb, X, np,
                         isinstance(self._B, np.ndarray))
        return np.ascontiguousarray(Y, dtype=self.dtype)

    def to_device(self, xp, move=None):
        """This operator with its factors in the array namespace `xp` (e.g. cupy).

        The product of the returned object is the same code as :meth:`matmat`
        (identity (26) in `xp`), on blocks of `xp` arrays.

        Parameters
        ----------
        xp : module
            Array namespace (``numpy``, ``cupy``, ...) of the blocks.
        move : callable, optional
            ``move(F)`` copies a host factor (dense ndarray or scipy CSR array)
            to where `xp` computes; the backend that owns the device passes its
            own (e.g. to build cupyx sparse matrices). Default: ``xp.asarray``
            for dense factors, sparse factors kept as they are.

        Returns
        -------
        object
            With ``shape``, ``dtype`` and ``matmat(X)`` for `xp` blocks ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from lmatrank.operators import KroneckerProduct
        >>> K = KroneckerProduct(np.diag([1.0, 2.0]), np.eye(3))
        >>> X = np.ones((6, 2))
        >>> bool(np.array_equal(K.to_device(np).matmat(X), K @ X))
        True
        """
        return _XpKronecker(self, xp, _host_move(xp) if move is None else move)

    def __matmul__(self, X):
        X = np.asarray(X)
        if X.ndim == 1:
            return self.matmat(X[:, None])[:, 0]
        if X.ndim == 2:
            return self.matmat(X)
        raise ValueError(f"expected a vector or a 2-D block, got an array of shape {X.shape}")

    def transpose(self):
        """``kron(A, B)^T = kron(A^T, B^T)`` as a new KroneckerProduct."""
        return KroneckerProduct(_transpose(self._A), _transpose(self._B), dtype=self.dtype)

    @property
    def T(self):
        """Alias of :meth:`transpose`."""
        return self.transpose()

    def todense(self):
        """Dense ``numpy.kron(A, B)`` (refused for orders above 20000).

        Raises
        ------
        ValueError
            If the order exceeds ``MAX_DENSE_ORDER`` (20000).
        """
        n = self.shape[0]
        if n > MAX_DENSE_ORDER:
            raise ValueError(f"todense() refused: order {n} > {MAX_DENSE_ORDER} "
                             f"({n * n * self.dtype.itemsize / 2**30:.1f} GiB)")
        return np.kron(_dense(self._A), _dense(self._B)).astype(self.dtype, copy=False)

    # ---------------------------------------------------------------- rank helper
    @property
    def theoretical_rank(self):
        """``rank(A) * rank(B)`` when cheaply known, else ``None``.

        The rank of a Kronecker product is the product of the ranks of its
        factors. Each factor's rank is computed with
        :func:`numpy.linalg.matrix_rank` (default tolerance, ``m * eps *
        sigma_max``) when the factor is a dense ndarray of order at most
        ``MAX_EXACT_RANK_ORDER`` (2048), or recursively for a nested
        KroneckerProduct; for a sparse factor (or a larger one) the value is
        ``None``. It is the rank of the exact product of the stored factors; a
        numerical rank of ``kron(A, B)`` with a tolerance relative to its own
        largest singular value ``sigma_max(A) sigma_max(B)`` can differ when a
        factor has singular values near its tolerance. Computed once, cached.
        """
        if not self._rank_known:
            ra, rb = _factor_rank(self._A), _factor_rank(self._B)
            self._rank = None if ra is None or rb is None else int(ra) * int(rb)
            self._rank_known = True
        return self._rank

    def __repr__(self):
        return (f"<KroneckerProduct {_describe(self._A)} kron {_describe(self._B)} "
                f"shape={self.shape} dtype={self.dtype}>")


def _transpose(F):
    if isinstance(F, KroneckerProduct):
        return F.transpose()
    return F.T


def _dense(F):
    if isinstance(F, KroneckerProduct):
        return F.todense()
    if sp.issparse(F):
        return F.toarray()
    return F


def _factor_rank(F):
    if isinstance(F, KroneckerProduct):
        return F.theoretical_rank
    if isinstance(F, np.ndarray) and F.shape[0] <= MAX_EXACT_RANK_ORDER:
        return int(np.linalg.matrix_rank(F))
    return None


def _describe(F):
    if isinstance(F, KroneckerProduct):
        return f"({_describe(F._A)} kron {_describe(F._B)})"
    kind = "sparse" if sp.issparse(F) else "dense"
    return f"{kind}[{F.shape[0]}]"
