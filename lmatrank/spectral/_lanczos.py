"""Block-free Lanczos for extreme eigenvalue estimates of a symmetric operator.

Used to choose the Langevin step size (``eta = 1.9 / lambda_max``), to detect
indefinite input, and by the spectral peers for the Chebyshev interval.
Full reorthogonalisation is done blockwise (``v - Q (Q^T v)``, twice), not in
a column loop. Ritz values lie inside the spectrum, so the reported extreme
Ritz values are *inner* bounds; :func:`lanczos_extremes` also returns padded
outer estimates using the residual norm of the extreme Ritz pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["LanczosResult", "lanczos", "lanczos_extremes"]


@dataclass
class LanczosResult:
    """Tridiagonal factorisation ``Q^T A Q = T`` from Lanczos."""

    alpha: np.ndarray
    beta: np.ndarray
    basis: np.ndarray | None
    breakdown: bool

    @property
    def steps(self) -> int:
        return len(self.alpha)

    def ritz(self):
        """Ritz values (ascending) and the eigenvectors of ``T``."""
        if self.steps == 1:
            return self.alpha.copy(), np.ones((1, 1))
        return scipy.linalg.eigh_tridiagonal(self.alpha, self.beta[: self.steps - 1])


def lanczos(apply, v0, n_steps, *, keep_basis=False, reorthogonalize=True):
    """Run `n_steps` of Lanczos on the symmetric map `apply` from `v0`.

    Parameters
    ----------
    apply : callable
        ``apply(v)`` for a column block ``v`` of shape ``(n, 1)``.
    v0 : ndarray, shape (n,)
        Start vector (need not be normalised).
    n_steps : int
        Maximum number of steps (stops early on breakdown).
    keep_basis, reorthogonalize : bool
        Keep the Lanczos vectors; reorthogonalise fully against them
        (blockwise, twice) — this needs the basis anyway.

    Returns
    -------
    LanczosResult
    """
    n = v0.shape[0]
    n_steps = int(min(n_steps, n))
    work_dtype = np.float64
    store = keep_basis or reorthogonalize
    Q = np.empty((n, n_steps), dtype=work_dtype) if store else None
    alpha = np.zeros(n_steps)
    beta = np.zeros(n_steps)
    q = np.asarray(v0, dtype=work_dtype).copy()
    norm = np.linalg.norm(q)
    if norm == 0:
        raise ValueError("Lanczos start vector is zero")
    q /= norm
    q_prev = np.zeros_like(q)
    b_prev = 0.0
    breakdown = False
    steps = 0
    for k in range(n_steps):
        if store:
            Q[:, k] = q
        w = np.asarray(apply(q[:, None]), dtype=work_dtype)[:, 0]
        a = q @ w
        w -= a * q + b_prev * q_prev
        if reorthogonalize:
            for _ in range(2):  # "twice is enough" (Kahan–Parlett)
                w -= Q[:, : k + 1] @ (Q[:, : k + 1].T @ w)
        b = np.linalg.norm(w)
        alpha[k], beta[k] = a, b
        steps = k + 1
        scale = max(abs(a), b, 1e-300)
        if b <= 1e-12 * scale * np.sqrt(n):
            breakdown = True
            break
        q_prev, q, b_prev = q, w / b, b
    basis = Q[:, :steps] if keep_basis else None
    return LanczosResult(alpha[:steps], beta[:steps], basis, breakdown)


def lanczos_extremes(apply, n, *, rng, n_steps=None, dtype=np.float64):
    """Estimate the extreme eigenvalues of a symmetric operator.

    Returns
    -------
    dict
        ``ritz_min``, ``ritz_max`` (inner bounds), ``lambda_min``,
        ``lambda_max`` (padded by the Ritz residual norms
        ``|beta_k s_k|``, outer estimates), ``steps`` (= products used),
        ``exact`` (True on breakdown or when ``steps == n``: the Krylov space
        is invariant and the Ritz values are eigenvalues).

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.spectral import lanczos_extremes
    >>> A = np.diag(np.arange(1.0, 101.0))
    >>> out = lanczos_extremes(lambda X: A @ X, 100, rng=0, n_steps=40)
    >>> bool(abs(out["lambda_max"] - 100) < 1e-3 * 100), out["steps"]
    (True, 40)
    """
    rng = np.random.default_rng(rng)
    if n_steps is None:
        n_steps = int(min(n, max(30, 2 * np.sqrt(n)), 80))
    v0 = rng.standard_normal(n).astype(dtype)
    res = lanczos(apply, v0, n_steps)
    theta, S = res.ritz()
    b_last = res.beta[res.steps - 1]
    exact = res.breakdown or res.steps == n
    resid = np.abs(b_last * S[-1, :]) if not exact else np.zeros_like(theta)
    return {
        "ritz_min": float(theta[0]),
        "ritz_max": float(theta[-1]),
        "lambda_min": float(theta[0] - resid[0]),
        "lambda_max": float(theta[-1] + resid[-1]),
        "steps": res.steps,
        "exact": bool(exact),
    }
