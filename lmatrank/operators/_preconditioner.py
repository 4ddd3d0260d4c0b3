"""Preconditioners ``G`` for preconditioned Langevin dynamics.

The dynamics (paper eq. 21 with ``Sigma = sigma^2 G^-1``) needs two things
from ``G``: the product ``G @ Y`` and a factor ``L`` with ``L L^T = G`` to colour
the noise. Only the noise *covariance* enters the mean of the quadratic
observable, so any factor works — the symmetric root ``G^(1/2)`` (diagonal
case) and the Cholesky factor (dense case) give identical expectations.

Accepted forms:

- ``None``: ``G = I``;
- a positive 1-D vector ``g``: ``G = diag(g)`` (Adam-style);
- a dense symmetric positive definite ``(n, n)`` array (Cholesky factor used);
- a :class:`Preconditioner` built from two callables (``apply`` and
  ``apply_factor``) for operators whose factor the user knows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Preconditioner", "as_preconditioner"]


class Preconditioner:
    """An SPD preconditioner ``G = L L^T`` applied to blocks.

    Parameters
    ----------
    apply : callable
        ``apply(Y) -> G @ Y`` for blocks ``Y`` of shape ``(n, b)``.
    apply_factor : callable
        ``apply_factor(Z) -> L @ Z`` with ``L L^T = G``.
    apply_factor_transpose : callable
        ``apply_factor_transpose(Z) -> L^T @ Z`` (needed to form the symmetric
        similarity ``L^T S L`` whose spectrum equals that of ``G S``).
    n : int
        Order.
    diagonal : ndarray, optional
        The diagonal of ``G`` when ``G`` is diagonal (lets kernels fuse it).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import as_preconditioner
    >>> G = as_preconditioner(np.array([1.0, 4.0]), 2)
    >>> G.apply(np.ones((2, 1))).ravel(), G.apply_factor(np.ones((2, 1))).ravel()
    (array([1., 4.]), array([1., 2.]))
    """

    def __init__(self, apply, apply_factor, apply_factor_transpose, n, *, diagonal=None,
                 name="custom"):
        self.apply = apply
        self.apply_factor = apply_factor
        self.apply_factor_transpose = apply_factor_transpose
        self.n = int(n)
        self.diagonal = diagonal
        self.name = name

    @property
    def is_identity(self) -> bool:
        return self.name == "identity"

    def __repr__(self):
        return f"<Preconditioner {self.name} n={self.n}>"


def _identity(n):
    same = lambda Y: Y  # noqa: E731
    return Preconditioner(same, same, same, n, name="identity")


def as_preconditioner(G, n, dtype=np.float64) -> Preconditioner:
    """Normalise a user preconditioner for an operator of order `n`.

    Raises
    ------
    ValueError
        Wrong shape, non-positive entries, non-finite entries, or a dense ``G``
        that is not symmetric positive definite.
    TypeError
        Unsupported type.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import as_preconditioner
    >>> G = as_preconditioner(np.array([[4.0, 2.0], [2.0, 2.0]]), 2)   # Cholesky factor L
    >>> L = G.apply_factor(np.eye(2))
    >>> np.allclose(L @ L.T, [[4.0, 2.0], [2.0, 2.0]]), G.name
    (True, 'dense')
    >>> as_preconditioner(np.array([1.0, -1.0]), 2)
    Traceback (most recent call last):
    ...
    ValueError: diagonal preconditioner must be strictly positive
    """
    if G is None:
        return _identity(n)
    if isinstance(G, Preconditioner):
        if G.n != n:
            raise ValueError(f"preconditioner has order {G.n}, operator has order {n}")
        return G
    if callable(G) and not isinstance(G, np.ndarray):
        raise TypeError("a callable preconditioner must be wrapped in "
                        "lmatrank.operators.Preconditioner(apply, apply_factor, ...)")
    arr = np.asarray(G)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"preconditioner must be real numeric, got dtype {arr.dtype}")
    arr = arr.astype(dtype)
    if not np.all(np.isfinite(arr)):
        raise ValueError("preconditioner contains non-finite values")
    if arr.ndim == 1:
        if arr.shape[0] != n:
            raise ValueError(f"diagonal preconditioner has length {arr.shape[0]}, expected {n}")
        if not np.all(arr > 0):
            raise ValueError("diagonal preconditioner must be strictly positive")
        g = arr[:, None]
        root = np.sqrt(arr)[:, None]
        return Preconditioner(lambda Y: g * Y, lambda Z: root * Z, lambda Z: root * Z, n,
                              diagonal=arr, name="diagonal")
    if arr.ndim == 2:
        if arr.shape != (n, n):
            raise ValueError(f"dense preconditioner has shape {arr.shape}, expected ({n}, {n})")
        if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12 * np.abs(arr).max()):
            raise ValueError("dense preconditioner must be symmetric")
        try:
            L = np.linalg.cholesky(arr)
        except np.linalg.LinAlgError:
            raise ValueError("dense preconditioner must be positive definite") from None
        return Preconditioner(lambda Y: arr @ Y, lambda Z: L @ Z, lambda Z: L.T @ Z, n,
                              name="dense")
    raise ValueError(f"preconditioner must be 1-D (diagonal) or 2-D, got shape {arr.shape}")
