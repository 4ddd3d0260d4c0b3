r"""Hessian of a deep linear network at a global minimum, applied matrix-free.

This is the test problem of the "Linear Networks" section of Bar, Mulayoff,
Michaeli and Talmon (AAAI 2024), eqs. (22)-(26), whose Hessian and its rank
``d_x * d_y`` are due to Mulayoff and Michaeli, "Unique properties of flat
minima in deep networks" (ICML 2020).

Model and loss
--------------
A depth-``M`` linear network ``g(x) = W_M ... W_1 x`` with ``W_k`` of shape
``(d_k, d_{k-1})``, ``d_0 = d_x``, ``d_M = d_y``. With input covariance
``Sigma_x`` (SPD) and cross-covariance ``Sigma_yx = E[y x^T] = T Sigma_x``, the
population quadratic loss (23) is, up to a constant,

    L(theta) = tr(A Sigma_x A^T) - 2 tr(A Sigma_yx^T) + tr(T Sigma_x T^T)
             = || (A - T) Sigma_x^{1/2} ||_F^2,        A = W_M ... W_1,

where the constant is chosen so that ``L = 0`` on the set of global minima
``{A = T}``. Here ``T`` (:attr:`LinearNetworkHessian.target`) is the end-to-end
map of the weights the operator is built from, so those weights *are* a global
minimum of the loss this module defines.

Parameter vector (vec convention)
---------------------------------
``theta = [vec(W_1); vec(W_2); ...; vec(W_M)]`` with the **column-major** ``vec``
of the paper (stack the columns): ``vec(W) = W.ravel(order="F")``, i.e. entry
``W_k[p, q]`` sits at ``offset_k + q * d_k + p``. The operator, ``todense``,
``loss``, ``gradient``, ``pack`` and ``unpack`` all use this convention.

Hessian
-------
Write ``L_k = W_M ... W_{k+1}`` (``d_y x d_k``, identity for ``k = M``) and
``R_k = W_{k-1} ... W_1`` (``d_{k-1} x d_x``, identity for ``k = 1``). Then
``dA = sum_k L_k dW_k R_k``, so by identity (26) the Jacobian of ``vec(A)`` is
``J = [J_1, ..., J_M]`` with ``J_k = R_k^T kron L_k``. At a global minimum the
residual vanishes and only the Gauss-Newton term survives:

    H = 2 J^T (Sigma_x kron I_{d_y}) J = 2 Phi Phi^T,
    Phi_k = J_k^T (Sigma_x^{1/2} kron I) = (R_k Sigma_x^{1/2}) kron L_k^T
          = (W_{k-1} ... W_1 Sigma_x^{1/2}) kron (W_M ... W_{k+1})^T,

which is eqs. (24)-(25) with the products ordered by decreasing layer index and
``Sigma_x^{1/2}`` appearing once, on the input side. (Read literally, eq. (25)
also puts ``Sigma_x^{1/2}`` inside the second factor; that is dimensionally
possible only when ``d_k = d_x`` and does not give the Hessian unless
``Sigma_x = I``, so it is taken to be a typesetting slip.)

Products ``H @ V`` for a block ``V`` of ``b`` vectors never form ``Phi``: the
block is reshaped into stacks ``V_k`` of shape ``(b, d_k, d_{k-1})``, then

    U = sum_k L_k V_k R_k,      (H V)_k = 2 L_k^T (U Sigma_x) R_k^T,

with batched matrix products, ``O(M d^3 b)`` work and no Python loop over the
columns.

Rank
----
``rank(H) = rank(J) <= d_x d_y``, with equality whenever ``Sigma_x`` is
nonsingular and the end-to-end map ``T`` has full rank ``min(d_x, d_y)`` (which
forces every hidden width to be at least ``min(d_x, d_y)``): if ``d_y <= d_x``,
``L_1`` has full row rank and ``J_1 = I kron L_1`` alone is onto; if
``d_x <= d_y``, ``R_M`` has full column rank and ``J_M = R_M^T kron I`` is onto.
This is the ``rank(H) = d_x d_y`` result of Mulayoff and Michaeli (2020).

References
----------
.. [1] N. Bar, R. Mulayoff, T. Michaeli, R. Talmon, "Estimating the rank of
   large Hessians / matrices via Langevin dynamics", AAAI 2024, eqs. (22)-(26).
.. [2] R. Mulayoff, T. Michaeli, "Unique properties of flat minima in deep
   networks", ICML 2020.
"""

from __future__ import annotations

import numpy as np

from ._base import _result_dtype

__all__ = ["LinearNetworkHessian", "random_minimum"]

#: Largest number of parameters for which :meth:`LinearNetworkHessian.todense` works.
MAX_DENSE_PARAMS = 20000


def _as_weight(W, k):
    arr = np.asarray(W)
    if arr.dtype == object:
        raise TypeError(f"weights[{k}]: object arrays are not supported")
    if arr.ndim != 2:
        raise ValueError(f"weights[{k}] must be a 2-D matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"weights[{k}] is empty (shape {arr.shape})")
    try:
        _result_dtype(arr.dtype)
    except TypeError as exc:
        raise TypeError(f"weights[{k}]: {exc}") from None
    return arr


def _matmul3(left, X, right, matmul=np.matmul):
    """``left @ X @ right`` for a stack ``X`` of shape (b, r, s); `left`/`right`
    are 2-D matrices or None (identity). Picks the cheaper association.
    `matmul` is the array namespace's (``cupy.matmul`` on the device)."""
    if left is None:
        return X if right is None else matmul(X, right)
    if right is None:
        return matmul(left, X)
    p, r = left.shape
    s, q = right.shape
    if p * r * s + p * s * q <= r * s * q + p * r * q:
        return matmul(matmul(left, X), right)
    return matmul(left, matmul(X, right))


class _HessianFactors:
    """The fixed products a Hessian product needs, in one array namespace.

    ``left[k] = L_k``, ``right[k] = R_k``, ``left_t[k] = L_k^T`` and
    ``sigma_right_t[k] = Sigma_x R_k^T`` (None: identity), plus the layer
    shapes and the offsets of the layers in the parameter vector.
    """

    def __init__(self, left, right, left_t, sigma_right_t, shapes, offsets):
        self.left, self.right = left, right
        self.left_t, self.sigma_right_t = left_t, sigma_right_t
        self.shapes, self.offsets = shapes, offsets

    def moved(self, move):
        """The same factors copied with `move` (None entries stay identities)."""
        def each(Ms):
            return [None if M is None else move(np.ascontiguousarray(M)) for M in Ms]
        return _HessianFactors(each(self.left), each(self.right), each(self.left_t),
                               each(self.sigma_right_t), self.shapes, self.offsets)


def _hessian_matmat(f, X, xp):
    """``H @ X`` in the array namespace `xp`: the one implementation of the block product.

    ``U = sum_k L_k V_k R_k`` and ``(H V)_k = 2 L_k^T (U Sigma_x) R_k^T`` with
    batched products over the ``b`` columns of ``X`` (shape ``(P, b)``).
    """
    c = X.shape[1]
    # column-major vec of each (rows, cols) layer: stacks V_k of shape (c, rows, cols)
    V = [X[a:b].T.reshape(c, s, r).swapaxes(1, 2)
         for (r, s), a, b in zip(f.shapes, f.offsets[:-1], f.offsets[1:])]
    # Forward: U = J v = sum_k L_k V_k R_k, a (b, d_y, d_x) stack.
    U = None
    for Lk, Vk, Rk in zip(f.left, V, f.right):
        term = _matmul3(Lk, Vk, Rk, matmul=xp.matmul)
        U = term.copy() if U is None else U.__iadd__(term)
    U *= 2
    # Backward: (H v)_k = 2 L_k^T U Sigma_x R_k^T.
    out = [_matmul3(Lt, U, SRt, matmul=xp.matmul)
           for Lt, SRt in zip(f.left_t, f.sigma_right_t)]
    cols = [xp.swapaxes(S, 1, 2).reshape(c, -1) for S in out]
    return xp.ascontiguousarray(xp.concatenate(cols, axis=1).T)


class _XpHessian:
    """A :class:`LinearNetworkHessian` applied in another array namespace.

    Made by :meth:`LinearNetworkHessian.to_device`; :meth:`matmat` takes and
    returns arrays of that namespace and runs the host product's code.
    """

    def __init__(self, hessian, xp, move):
        self._factors = hessian._factors.moved(move)
        self.shape = hessian.shape
        self.dtype = hessian.dtype
        self._xp = xp

    def matmat(self, X):
        return _hessian_matmat(self._factors, X, self._xp).astype(self.dtype, copy=False)


class LinearNetworkHessian:
    r"""Hessian of the quadratic loss of a deep linear network at a global minimum.

    Parameters
    ----------
    weights : sequence of 2-D array_like
        ``W_1, ..., W_M`` with ``W_k`` of shape ``(d_k, d_{k-1})`` (general
        rectangular layers). Their product ``W_M ... W_1`` defines the target
        map ``T``, so the weights are a global minimum of :meth:`loss`.
    sigma_x : array_like, shape (d_x, d_x), optional
        Input covariance, symmetric positive definite. Default: identity.
    dtype : {None, numpy.float32, numpy.float64}, optional
        Working dtype. Default: float32 if all inputs are float32, else float64.

    Attributes
    ----------
    shape : tuple of int
        ``(P, P)`` with ``P = n_params``.
    dtype : numpy.dtype
    weights : tuple of ndarray
        The layers ``W_1, ..., W_M`` (read-only copies in :attr:`dtype`).
    sigma_x : ndarray
        Input covariance (read-only).
    depth : int
        ``M``.
    n_params : int
        ``P = sum_k d_k d_{k-1}``.
    d_x, d_y : int
        Input and output dimensions.
    layer_shapes : tuple of tuple of int
        Shapes of the layers.
    target : ndarray, shape (d_y, d_x)
        End-to-end map ``T = W_M ... W_1`` at the minimum.
    theta_min : ndarray, shape (P,)
        The minimum as a parameter vector (column-major vec, see module docstring).

    Notes
    -----
    See the module docstring for the derivation ``H = 2 J^T (Sigma_x kron I) J =
    2 Phi Phi^T`` (eqs. (24)-(25) of the paper), the vec convention and the rank
    condition. ``H`` is the Hessian of :meth:`loss` at :attr:`theta_min` (no
    factor 1/2).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import LinearNetworkHessian
    >>> H = LinearNetworkHessian.random_minimum(3, depth=4, rng=0)
    >>> H.shape, H.depth, H.theoretical_rank
    ((36, 36), 4, 9)
    >>> int(np.linalg.matrix_rank(H.todense()))
    9
    >>> V = np.random.default_rng(1).standard_normal((36, 2))
    >>> np.allclose(H @ V, H.todense() @ V)
    True
    >>> float(H.loss(H.theta_min))
    0.0
    """

    def __init__(self, weights, sigma_x=None, *, dtype=None):
        if isinstance(weights, np.ndarray) and weights.ndim == 2:
            raise TypeError("weights must be a sequence of 2-D matrices W_1, ..., W_M, "
                            "got a single 2-D array (wrap it in a list for depth 1)")
        raw = [_as_weight(W, k) for k, W in enumerate(weights)]
        if not raw:
            raise ValueError("weights is empty: need at least one layer")
        for k in range(1, len(raw)):
            if raw[k].shape[1] != raw[k - 1].shape[0]:
                raise ValueError(
                    f"incompatible layer shapes: weights[{k}] has shape {raw[k].shape} but "
                    f"weights[{k - 1}] has shape {raw[k - 1].shape}; W_(k+1) needs as many "
                    "columns as W_k has rows")
        d_x, d_y = raw[0].shape[1], raw[-1].shape[0]
        if sigma_x is None:
            sig = None
            dtypes = [W.dtype for W in raw]
        else:
            sig = np.asarray(sigma_x)
            if sig.dtype == object:
                raise TypeError("sigma_x: object arrays are not supported")
            if sig.shape != (d_x, d_x):
                raise ValueError(f"sigma_x must have shape ({d_x}, {d_x}) (d_x x d_x), "
                                 f"got {sig.shape}")
            try:
                _result_dtype(sig.dtype)
            except TypeError as exc:
                raise TypeError(f"sigma_x: {exc}") from None
            dtypes = [W.dtype for W in raw] + [sig.dtype]
        work = _result_dtype(np.result_type(*dtypes) if dtype is None else dtype)
        self.dtype = work
        Ws = []
        for k, W in enumerate(raw):
            W = np.array(W, dtype=work, order="C")
            if not np.all(np.isfinite(W)):
                raise ValueError(f"weights[{k}] contains non-finite values (NaN or Inf)")
            W.setflags(write=False)
            Ws.append(W)
        self.weights = tuple(Ws)
        self._sigma_identity = sig is None
        if sig is None:
            sig = np.eye(d_x, dtype=work)
        else:
            sig = np.array(sig, dtype=np.float64)
            if not np.all(np.isfinite(sig)):
                raise ValueError("sigma_x contains non-finite values (NaN or Inf)")
            scale = np.linalg.norm(sig)
            if np.linalg.norm(sig - sig.T) > 100 * d_x * np.finfo(work).eps * scale:
                raise ValueError("sigma_x must be symmetric")
            sig = 0.5 * (sig + sig.T)
            try:
                np.linalg.cholesky(sig)
            except np.linalg.LinAlgError:
                raise ValueError("sigma_x must be positive definite (Cholesky failed)") from None
            sig = sig.astype(work)
        sig.setflags(write=False)
        self.sigma_x = sig

        self.depth = len(Ws)
        self.d_x, self.d_y = int(d_x), int(d_y)
        self.layer_shapes = tuple(W.shape for W in Ws)
        sizes = [W.size for W in Ws]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_params = int(self._offsets[-1])
        self.shape = (self.n_params, self.n_params)

        # Fixed prefix/suffix products at the minimum.
        # right[k] = R_k = W_{k-1}...W_1 (None = identity for k = 1)
        # left[k]  = L_k = W_M...W_{k+1} (None = identity for k = M)
        right = [None]
        for W in Ws[:-1]:
            right.append(W if right[-1] is None else W @ right[-1])
        left = [None]
        for W in reversed(Ws[1:]):
            left.append(W if left[-1] is None else left[-1] @ W)
        left.reverse()
        self._left = left
        self._right = right
        self._left_t = [None if Lk is None else np.ascontiguousarray(Lk.T) for Lk in left]
        # Sigma_x R_k^T, used on the way back (None = identity).
        if self._sigma_identity:
            self._sigma_right_t = [None if Rk is None else np.ascontiguousarray(Rk.T)
                                   for Rk in right]
        else:
            self._sigma_right_t = [sig if Rk is None else np.ascontiguousarray(sig @ Rk.T)
                                   for Rk in right]

        theta = self.pack(self.weights)
        theta.setflags(write=False)
        self.theta_min = theta
        target = self._end_to_end(self.unpack(theta[:, None]))[0]
        target.setflags(write=False)
        self.target = target
        self._rank = None
        self._rank_known = False

    # ----------------------------------------------------------- vectorisation
    def pack(self, weights):
        """Parameter vector(s) from layers (column-major vec, layers in order).

        Parameters
        ----------
        weights : sequence of ndarray
            Either 2-D layers ``W_k`` of shapes :attr:`layer_shapes`, giving a
            vector of shape ``(P,)``, or stacks of shape ``(c, d_k, d_{k-1})``,
            giving ``(P, c)``.

        Returns
        -------
        ndarray, shape (P,) or (P, c)
        """
        weights = [np.asarray(W) for W in weights]
        if len(weights) != self.depth:
            raise ValueError(f"expected {self.depth} layers, got {len(weights)}")
        single = weights[0].ndim == 2
        for k, (W, shp) in enumerate(zip(weights, self.layer_shapes)):
            if W.shape[-2:] != shp or W.ndim != (2 if single else 3):
                raise ValueError(f"layer {k} has shape {W.shape}, expected {shp} "
                                 "(or a stack (c, *shape))")
        if single:
            return np.concatenate([W.ravel(order="F") for W in weights])
        c = weights[0].shape[0]
        cols = [np.swapaxes(W, 1, 2).reshape(c, -1) for W in weights]
        return np.ascontiguousarray(np.concatenate(cols, axis=1).T)

    def unpack(self, theta):
        """Layers from parameter vector(s); inverse of :meth:`pack`.

        Parameters
        ----------
        theta : ndarray, shape (P,) or (P, c)

        Returns
        -------
        list of ndarray
            Shapes ``(d_k, d_{k-1})`` for 1-D `theta`, stacks ``(c, d_k, d_{k-1})``
            for 2-D `theta` (views where possible).
        """
        theta = np.asarray(theta)
        if theta.ndim not in (1, 2) or theta.shape[0] != self.n_params:
            raise ValueError(f"expected theta of shape ({self.n_params},) or "
                             f"({self.n_params}, c), got {theta.shape}")
        if theta.ndim == 1:
            return [theta[a:b].reshape(s, r).T
                    for (r, s), a, b in zip(self.layer_shapes, self._offsets[:-1],
                                            self._offsets[1:])]
        c = theta.shape[1]
        return [theta[a:b].T.reshape(c, s, r).swapaxes(1, 2)
                for (r, s), a, b in zip(self.layer_shapes, self._offsets[:-1],
                                        self._offsets[1:])]

    # ------------------------------------------------------------- products
    def matmat(self, X):
        """Return ``H @ X`` for a block ``X`` of shape ``(P, b)``.

        Cost ``O(M d^3 b)``; no Python loop over the ``b`` columns and no
        ``Phi`` or ``H`` is formed.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != self.n_params:
            raise ValueError(f"expected a block of shape ({self.n_params}, b), got {X.shape}")
        if X.dtype != self.dtype:
            if X.dtype.kind not in "biuf":
                raise TypeError(f"unsupported block dtype {X.dtype}")
            X = X.astype(self.dtype)
        return _hessian_matmat(self._factors, X, np).astype(self.dtype, copy=False)

    @property
    def _factors(self):
        return _HessianFactors(self._left, self._right, self._left_t, self._sigma_right_t,
                               self.layer_shapes, self._offsets)

    def to_device(self, xp, move=None):
        """This Hessian with its fixed products in the array namespace `xp` (e.g. cupy).

        The prefix and suffix products ``L_k``, ``R_k`` (formed once on the
        host in the working dtype) are copied with `move`; the product of the
        returned object is the same code as :meth:`matmat`, on `xp` blocks.

        Parameters
        ----------
        xp : module
            Array namespace (``numpy``, ``cupy``, ...) of the blocks.
        move : callable, optional
            ``move(M)`` copies a host ndarray to where `xp` computes (default
            ``xp.asarray``).

        Returns
        -------
        object
            With ``shape``, ``dtype`` and ``matmat(X)`` for `xp` blocks ``X``.

        Examples
        --------
        >>> import numpy as np
        >>> from lmatrank.operators import random_minimum
        >>> H = random_minimum(2, depth=3, rng=0)
        >>> X = np.ones((H.n_params, 2))
        >>> bool(np.array_equal(H.to_device(np).matmat(X), H @ X))
        True
        """
        return _XpHessian(self, xp, xp.asarray if move is None else move)

    def __matmul__(self, X):
        X = np.asarray(X)
        if X.ndim == 1:
            return self.matmat(X[:, None])[:, 0]
        if X.ndim == 2:
            return self.matmat(X)
        raise ValueError(f"expected a vector or a 2-D block, got an array of shape {X.shape}")

    def todense(self):
        """Dense Hessian ``2 J^T (Sigma_x kron I) J`` built from ``J_k = R_k^T kron L_k``.

        Independent of :meth:`matmat` (uses :func:`numpy.kron`), for small
        networks and tests.

        Raises
        ------
        ValueError
            If ``n_params > 20000``.
        """
        if self.n_params > MAX_DENSE_PARAMS:
            raise ValueError(f"todense() refused: n_params = {self.n_params} > "
                             f"{MAX_DENSE_PARAMS}; use matmat/@ instead")
        blocks = []
        for (r, s), Lk, Rk in zip(self.layer_shapes, self._left, self._right):
            Lm = np.eye(self.d_y, dtype=self.dtype) if Lk is None else Lk
            Rm = np.eye(self.d_x, dtype=self.dtype) if Rk is None else Rk
            blocks.append(np.kron(Rm.T, Lm))
        J = np.concatenate(blocks, axis=1)                          # (d_x d_y, P)
        weighted = np.kron(self.sigma_x, np.eye(self.d_y, dtype=self.dtype)) @ J
        H = 2.0 * (J.T @ weighted)
        return (0.5 * (H + H.T)).astype(self.dtype, copy=False)

    # -------------------------------------------------------------- the loss
    def _end_to_end(self, stacks):
        A = stacks[0]
        for W in stacks[1:]:
            A = np.matmul(W, A)
        return A

    def _work_theta(self, theta):
        theta = np.asarray(theta)
        if theta.dtype.kind not in "biuf":
            raise TypeError(f"unsupported theta dtype {theta.dtype}")
        work = _result_dtype(np.result_type(theta.dtype, self.dtype))
        if theta.ndim not in (1, 2) or theta.shape[0] != self.n_params:
            raise ValueError(f"expected theta of shape ({self.n_params},) or "
                             f"({self.n_params}, c), got {theta.shape}")
        single = theta.ndim == 1
        theta2 = theta[:, None] if single else theta
        return theta2.astype(work, copy=False), single, work

    def loss(self, theta):
        """Quadratic loss ``L(theta) = tr((A - T) Sigma_x (A - T)^T)``, zero at the minimum.

        Equals ``tr(A Sigma_x A^T) - 2 tr(A Sigma_yx^T) + tr(T Sigma_x T^T)`` with
        ``Sigma_yx = T Sigma_x`` and ``A = W_M ... W_1`` read from `theta`.

        Parameters
        ----------
        theta : ndarray, shape (P,) or (P, c)
            One parameter vector, or ``c`` chains as columns.

        Returns
        -------
        float (numpy scalar) for 1-D `theta`, ndarray of shape (c,) otherwise.
        """
        theta2, single, work = self._work_theta(theta)
        A = self._end_to_end(self.unpack(theta2))
        E = A - self.target.astype(work, copy=False)
        ES = E if self._sigma_identity else np.matmul(E, self.sigma_x.astype(work, copy=False))
        values = np.einsum("cij,cij->c", ES, E)
        return values[0] if single else values

    def gradient(self, theta):
        """Gradient of :meth:`loss`: ``dL/dW_k = 2 L_k^T (A - T) Sigma_x R_k^T``.

        ``L_k``, ``R_k`` and ``A`` are evaluated at `theta` (one forward pass of
        prefix products, one backward pass; ``O(M d^3 c)`` for ``c`` chains, no
        Python loop over the chains).

        Parameters
        ----------
        theta : ndarray, shape (P,) or (P, c)

        Returns
        -------
        ndarray, shape (P,) or (P, c), same vec convention as `theta`.
        """
        theta2, single, work = self._work_theta(theta)
        Ws = self.unpack(theta2)
        prefix = [None]                                  # R_k at theta, None = identity
        for W in Ws[:-1]:
            prefix.append(W if prefix[-1] is None else np.matmul(W, prefix[-1]))
        A = Ws[-1] if prefix[-1] is None else np.matmul(Ws[-1], prefix[-1])
        G = 2.0 * (A - self.target.astype(work, copy=False))
        if not self._sigma_identity:
            G = np.matmul(G, self.sigma_x.astype(work, copy=False))
        grads = [None] * self.depth
        back = G                                          # L_k^T G at theta
        for k in range(self.depth - 1, -1, -1):
            Rk = prefix[k]
            grads[k] = back if Rk is None else np.matmul(back, np.swapaxes(Rk, 1, 2))
            if k > 0:
                back = np.matmul(np.swapaxes(Ws[k], 1, 2), back)
        g = self.pack(grads)
        return g[:, 0] if single else g

    # ------------------------------------------------------------------ rank
    def gram_eigenvalues(self):
        """Eigenvalues of the ``d_x d_y x d_x d_y`` Gram matrix ``2 Phi^T Phi``, descending.

        ``H = 2 Phi Phi^T`` and ``2 Phi^T Phi`` have the same nonzero eigenvalues,
        so this is the exact spectrum of ``H`` apart from its ``P - d_x d_y``
        structural zeros -- at ``O((d_x d_y)^3)`` cost instead of ``O(P^3)``.
        The Gram matrix is Kronecker-structured,

            2 Phi^T Phi = 2 sum_k (Sigma_x^{1/2} R_k^T R_k Sigma_x^{1/2}) kron (L_k L_k^T),

        and is formed densely (refused when ``d_x d_y > 20000``).

        Returns
        -------
        ndarray, shape (d_x * d_y,), float64

        Examples
        --------
        >>> import numpy as np
        >>> from lmatrank.operators import random_minimum
        >>> H = random_minimum(3, rng=0)
        >>> lam_H = np.linalg.eigvalsh(H.todense())[::-1]
        >>> np.allclose(H.gram_eigenvalues(), lam_H[:9])
        True
        """
        m = self.d_x * self.d_y
        if m > MAX_DENSE_PARAMS:
            raise ValueError(f"gram_eigenvalues() refused: d_x * d_y = {m} > {MAX_DENSE_PARAMS}")
        sig = self.sigma_x.astype(np.float64)
        evals, evecs = np.linalg.eigh(sig)
        root = (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T
        gram = np.zeros((m, m))
        for Lk, Rk in zip(self._left, self._right):
            inner = np.eye(self.d_x) if Rk is None else Rk.T.astype(np.float64) @ Rk
            outer = np.eye(self.d_y) if Lk is None else Lk.astype(np.float64) @ Lk.T
            gram += np.kron(root @ inner @ root, outer)
        gram = (gram + gram.T)  # 2 * symmetric part
        return np.linalg.eigvalsh(gram)[::-1]

    @property
    def sigma_yx(self):
        """Cross-covariance ``Sigma_yx = T Sigma_x`` consistent with the minimum."""
        return self.target @ self.sigma_x

    @property
    def theoretical_rank(self):
        """``d_x * d_y`` (Mulayoff & Michaeli 2020) when the rank condition holds, else None.

        The condition (see the module docstring) is that ``Sigma_x`` is
        nonsingular (enforced at construction) and the end-to-end map ``T`` has
        full rank ``min(d_x, d_y)`` -- checked once with
        :func:`numpy.linalg.matrix_rank` (default tolerance); it implies that
        all hidden widths are at least ``min(d_x, d_y)``. For a single layer the
        Hessian is ``2 Sigma_x kron I`` and the value is always ``d_x d_y``.
        When ``T`` is rank deficient the Hessian rank depends on the minimum
        and ``None`` is returned.
        """
        if not self._rank_known:
            full = (self.depth == 1
                    or np.linalg.matrix_rank(self.target) == min(self.d_x, self.d_y))
            self._rank = self.d_x * self.d_y if full else None
            self._rank_known = True
        return self._rank

    @classmethod
    def random_minimum(cls, d, depth=5, *, rng=None, dtype=np.float64):
        """Random global minimum of the paper's protocol; see :func:`random_minimum`."""
        return random_minimum(d, depth, rng=rng, dtype=dtype)

    def __repr__(self):
        widths = [self.d_x] + [shp[0] for shp in self.layer_shapes]
        return (f"<LinearNetworkHessian widths={widths} n_params={self.n_params} "
                f"dtype={self.dtype}>")


def _haar_orthogonal(d, rng):
    """Haar-distributed orthogonal matrix: QR of a Gaussian with the sign fix."""
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    signs = np.sign(np.diag(R))
    signs[signs == 0] = 1.0
    return Q * signs


def random_minimum(d, depth=5, *, rng=None, dtype=np.float64):
    """A random global minimum of a square depth-`depth` linear network (paper protocol).

    Follows the "Linear Networks" protocol of Bar et al. (AAAI 2024), also
    described in docs/numerics.md: ``Sigma_x = I``, ``Sigma_yx = R R^T / sqrt(d)`` with
    ``R`` a standard Gaussian ``d x d`` matrix, ``T = Sigma_yx Sigma_x^-1``,
    ``T^(1/M)`` the symmetric PSD root from :func:`numpy.linalg.eigh`, ``P`` a
    Haar orthogonal matrix (QR of a Gaussian with sign fix) and

        W_1 = P T^(1/M),  W_i = P T^(1/M) P^-1 (1 < i < M),  W_M = T^(1/M) P^-1,

    so that ``W_M ... W_1 = T^(1/M) (P^-1 P) T^(1/M) ... (P^-1 P) T^(1/M) = T``
    (the order of ``P`` and ``P^-1`` in the protocol is consistent with this
    product; depth 1 gives ``W_1 = T``).

    Parameters
    ----------
    d : int
        Width of every layer (``d_x = d_y = d``); ``d**2 * depth`` parameters.
    depth : int, optional
        Number of layers ``M`` (default 5, as in the paper).
    rng : numpy.random.Generator or seed, optional
        Anything :func:`numpy.random.default_rng` accepts. ``R`` is drawn first,
        then the Gaussian matrix whose QR gives ``P``.
    dtype : {numpy.float64, numpy.float32}, optional
        Working dtype of the returned operator (the construction runs in float64).

    Returns
    -------
    LinearNetworkHessian
        Its :attr:`~LinearNetworkHessian.target` is ``T`` (as the product of the
        constructed layers, equal to ``R R^T / sqrt(d)`` up to rounding) and its
        :attr:`~LinearNetworkHessian.theoretical_rank` is ``d**2``.

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.operators import random_minimum
    >>> H = random_minimum(4, rng=np.random.default_rng(7))
    >>> H.n_params, H.theoretical_rank
    (80, 16)
    >>> R = np.random.default_rng(7).standard_normal((4, 4))
    >>> np.allclose(H.target, R @ R.T / 2.0)
    True
    """
    d = int(d)
    depth = int(depth)
    if d < 1:
        raise ValueError(f"d must be a positive integer, got {d}")
    if depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth}")
    rng = np.random.default_rng(rng)
    R = rng.standard_normal((d, d))
    sigma_yx = R @ R.T / np.sqrt(d)
    T = sigma_yx                                   # Sigma_x = I
    evals, evecs = np.linalg.eigh(T)
    root = (evecs * np.clip(evals, 0.0, None) ** (1.0 / depth)) @ evecs.T
    if depth == 1:
        weights = [T]
    else:
        P = _haar_orthogonal(d, rng)
        P_inv = P.T
        middle = P @ root @ P_inv
        weights = [P @ root] + [middle] * (depth - 2) + [root @ P_inv]
    H = LinearNetworkHessian(weights, None, dtype=dtype)
    err = np.linalg.norm(H.target - T)
    if not err <= 1e3 * d * depth * np.finfo(H.dtype).eps * np.linalg.norm(T):
        raise RuntimeError(f"internal error: W_M...W_1 differs from T by {err:.3g}")
    return H
