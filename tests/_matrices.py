"""Test matrices with known spectra (shared by the test modules)."""

from __future__ import annotations

import numpy as np


def random_orthogonal(rng, n):
    """Haar-distributed orthogonal matrix (QR of a Gaussian with the sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def symmetric_with_spectrum(rng, eigenvalues):
    """``U diag(eigenvalues) U^T`` with a random orthogonal ``U``; returns (A, eigenvalues)."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    U = random_orthogonal(rng, eigenvalues.size)
    A = (U * eigenvalues) @ U.T
    return (A + A.T) / 2, eigenvalues


def psd_with_rank(rng, n, rank, cond=100.0):
    """PSD matrix of order n with `rank` nonzero eigenvalues log-spaced on [1, cond], exact zeros."""
    nonzero = np.geomspace(1.0, cond, rank) if rank else np.zeros(0)
    return symmetric_with_spectrum(rng, np.concatenate([nonzero, np.zeros(n - rank)]))


def em_window_mean(eigenvalues, eta, burn_in, n_steps):
    """Exact mean of the corrected EM rank observable averaged over steps burn_in..n_steps-1.

    From theta_0 = 0 the mean at step k is sum_i 1 - (1 - eta lambda_i)^(2k) (zero
    eigenvalues contribute nothing); this averages it over the window in closed form.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = lam[lam != 0]
    a2 = (1.0 - eta * lam) ** 2
    count = n_steps - burn_in
    # sum_{k=burn}^{n_steps-1} a2^k = a2^burn (1 - a2^count) / (1 - a2)
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = np.where(a2 < 1.0, a2 ** burn_in * (1.0 - a2 ** count) / (1.0 - a2), count)
    return float(np.sum(1.0 - geometric / count))
