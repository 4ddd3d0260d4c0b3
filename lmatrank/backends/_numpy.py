"""Numpy reference backend: the readable definition every faster backend is tested against."""

from __future__ import annotations

import numpy as np

__all__ = ["NumpyBackend", "rademacher"]


def rademacher(gen: np.random.Generator, shape, dtype=np.float64) -> np.ndarray:
    """Independent +-1 entries (zero mean, unit variance) from random bytes.

    Eight signs per random byte: about ten times cheaper than Gaussian draws,
    and the mean of any quadratic observable is the same (docs/theory.md, "Noise:
    Rademacher instead of Gaussian").

    Examples
    --------
    >>> import numpy as np
    >>> from lmatrank.backends import rademacher
    >>> x = rademacher(np.random.default_rng(0), (1000, 4))
    >>> np.unique(x).tolist(), bool(abs(x.mean()) < 0.05)
    ([-1.0, 1.0], True)
    """
    size = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(gen.bytes((size + 7) // 8), dtype=np.uint8), count=size)
    out = bits.astype(dtype).reshape(shape)
    out *= -2
    out += 1
    return out


class NumpyBackend:
    """Reference implementation of the backend interface.

    The interface (all a new backend must provide):

    ``name``
        Short name used by ``backend=...``.
    ``matmat(op, X)``
        Block product with the counting operator ``op``.
    ``noise(gen, shape, kind, dtype)``
        A block of iid zero-mean unit-variance noise (``kind`` is
        ``"rademacher"`` or ``"gaussian"``).
    ``em_update(theta, s_theta, *, eta, noise_std, precond, noise, gen)``
        One Euler–Maruyama step (paper eq. 21 with ``Sigma = sigma^2 G^-1``),
        in place on ``theta``; returns the per-chain observables of the
        *current* state, in float64: ``quad = theta^T S theta`` and
        ``gnorm = (S theta)^T G (S theta)``.
    ``baoab_update(q, p, s_q, *, h, friction, temperature, precond, noise, gen)``
        One step of preconditioned BAOAB kinetic Langevin dynamics, in place on
        the ``(n, c)`` blocks ``q`` (positions) and ``p`` (velocities,
        ``p = G pi`` for momenta ``pi``), given ``s_q = S q`` of the current
        positions. ``friction`` is ``c = exp(-gamma h)``. The step is::

            p -= h G s_q                      # closing B of the previous step + opening B
            q += (h / 2) p                    # A
            p  = c p + sqrt(T (1 - c^2)) L xi # O  (L L^T = G, xi iid unit variance)
            q += (h / 2) p                    # A

        i.e. the two half kicks around a product are merged (the caller starts
        from ``q = 0``, where the first half kick vanishes, and never uses
        ``p``). Returns the per-chain ``quad = q^T s_q`` of the *incoming*
        state in float64 (the rank observable times ``T``). The caller then
        computes ``S q`` of the new positions: one product per step.

    Examples
    --------
    One EM step of two chains on ``S = diag(2, 0)``:

    >>> import numpy as np
    >>> from lmatrank.backends import NumpyBackend
    >>> from lmatrank.operators import as_operator, as_preconditioner
    >>> op = as_operator(np.diag([2.0, 0.0]), check_symmetry=False)
    >>> theta = np.ones((2, 2))
    >>> be = NumpyBackend()
    >>> quad, gnorm = be.em_update(theta, be.matmat(op, theta), eta=0.1, noise_std=0.0,
    ...                            precond=as_preconditioner(None, 2), noise="rademacher",
    ...                            gen=np.random.default_rng(0))
    >>> quad, gnorm          # theta^T S theta and |S theta|^2 before the step
    (array([2., 2.]), array([4., 4.]))
    >>> theta[:, 0]          # theta - eta S theta (no noise here)
    array([0.8, 1. ])
    """

    name = "numpy"

    def matmat(self, op, X):
        return op.matmat(X)

    def noise(self, gen, shape, kind, dtype):
        if kind == "rademacher":
            return rademacher(gen, shape, dtype)
        if kind == "gaussian":
            return gen.standard_normal(shape, dtype=dtype)
        raise ValueError(f"unknown noise kind {kind!r}; expected 'rademacher' or 'gaussian'")

    def em_update(self, theta, s_theta, *, eta, noise_std, precond, noise, gen):
        g_s_theta = precond.apply(s_theta)
        quad = np.einsum("ij,ij->j", theta, s_theta, dtype=np.float64)
        gnorm = np.einsum("ij,ij->j", s_theta, g_s_theta, dtype=np.float64)
        xi = precond.apply_factor(self.noise(gen, theta.shape, noise, theta.dtype))
        theta -= eta * g_s_theta
        theta += noise_std * xi
        return quad, gnorm

    def baoab_update(self, q, p, s_q, *, h, friction, temperature, precond, noise, gen):
        quad = np.einsum("ij,ij->j", q, s_q, dtype=np.float64)
        p -= h * precond.apply(s_q)
        q += (0.5 * h) * p
        p *= friction
        p += np.sqrt(temperature * (1.0 - friction * friction)) * precond.apply_factor(
            self.noise(gen, p.shape, noise, p.dtype))
        q += (0.5 * h) * p
        return quad
