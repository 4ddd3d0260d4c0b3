"""Numpy reference backend: the readable definition every faster backend is tested against."""

from __future__ import annotations

import numpy as np

__all__ = ["NumpyBackend", "rademacher"]


def rademacher(gen: np.random.Generator, shape, dtype=np.float64) -> np.ndarray:
    """Independent +-1 entries (zero mean, unit variance) from random bytes.

    Eight signs per random byte: about ten times cheaper than Gaussian draws,
    and the mean of any quadratic observable is the same (DESIGN §4.2).
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
